//! Bridge networking for allocations, without CNI: a named network namespace per allocation,
//! a bridge owned by noded, veth pairs, an IPAM, and nftables rules (masquerade, isolation
//! between allocations, and the port-map fallback when eBPF is unavailable).

pub mod portmap;

pub use portmap::{Mapping, PortMapBackend, PortMapError, Proto};
