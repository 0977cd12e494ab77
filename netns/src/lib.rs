//! Bridge networking for allocations, without CNI: a named network namespace per allocation,
//! a bridge owned by noded, veth pairs, an IPAM, and nftables rules (masquerade, isolation
//! between allocations, and the port-map fallback when eBPF is unavailable).
//!
//! Every function works on the network namespace of the calling thread ("the current
//! namespace"), except where a namespace name is passed; the kernel work runs on dedicated
//! threads, so the caller's thread never changes namespace and may be a tokio worker.

pub mod bridge;
mod cidr;
pub mod error;
mod exec;
pub mod ipam;
mod link;
pub mod namespace;
pub mod nft;
pub mod portmap;
pub mod sysctl;
#[cfg(feature = "testing")]
pub mod testing;
pub mod veth;

pub use bridge::{Bridge, BridgeConfig};
pub use cidr::{CidrError, Ipv4Cidr};
pub use error::{Error, Result};
pub use ipam::Ipam;
pub use link::MAX_IFNAME_LEN;
pub use nft::{Firewall, NftPortMapper};
pub use portmap::{Mapping, PortMapBackend, PortMapError, Proto};
