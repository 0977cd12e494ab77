//! Port mapping: the types shared by every backend (eBPF in the `ebpf` crate, nftables in
//! this crate) and by the client that drives them.
//!
//! A mapping says: traffic to `host_ip:host_port` (and `127.0.0.1:host_port` from the host
//! itself) over `proto` goes to `alloc_ip:alloc_port` inside an allocation's namespace.

use std::fmt;
use std::net::Ipv4Addr;

/// The transport protocol of a mapping.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// The lower-case name, as nftables and Nomad's port specs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    /// The IP protocol number (`IPPROTO_TCP` / `IPPROTO_UDP`).
    pub fn ip_proto(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One port mapping: `host_ip:host_port` → `alloc_ip:alloc_port` for `proto`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Mapping {
    pub proto: Proto,
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub alloc_ip: Ipv4Addr,
    pub alloc_port: u16,
}

impl fmt::Display for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}:{} -> {}:{}",
            self.proto, self.host_ip, self.host_port, self.alloc_ip, self.alloc_port
        )
    }
}

/// A port-mapping backend: the kernel objects that carry mappings.
pub trait PortMapBackend: Send + Sync {
    /// `"ebpf"` or `"nftables"`: what the node's fingerprint reports.
    fn name(&self) -> &'static str;
    /// Adds a mapping; adding one that is already present succeeds.
    fn insert(&self, m: &Mapping) -> Result<(), PortMapError>;
    /// Removes a mapping; removing one that is absent succeeds.
    fn remove(&self, m: &Mapping) -> Result<(), PortMapError>;
    /// The mappings the kernel holds now (for reconcile after a restart).
    fn list(&self) -> Result<Vec<Mapping>, PortMapError>;
}

/// A port-mapping operation that failed: `what` names the operation and its object (the
/// mapping, the map or table), `reason` says why and, where one exists, what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct PortMapError {
    pub what: String,
    pub reason: String,
}

impl PortMapError {
    pub fn new(what: impl Into<String>, reason: impl Into<String>) -> Self {
        PortMapError {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
