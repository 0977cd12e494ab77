//! What this node made for one allocation's network, as its client state keeps it: written
//! before the kernel objects are made, so that a daemon that dies half-way knows what to remove
//! and never leases the address twice, and cleared once they are gone.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use netns::Mapping;
use serde::{Deserialize, Serialize};

/// An allocation's network objects on this node (bridge and none modes; host mode has none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocNetwork {
    /// `bridge` or `none`.
    pub mode: String,
    /// The named network namespace, under `/run/netns`.
    pub namespace: String,
    /// The host side of the veth pair into the bridge (bridge mode).
    #[serde(default)]
    pub host_veth: Option<String>,
    /// The address leased from the bridge subnet (bridge mode).
    #[serde(default)]
    pub address: Option<Ipv4Addr>,
    /// The host ports mapped into the namespace, both protocols of each port.
    #[serde(default)]
    pub mappings: Vec<Mapping>,
}

impl AllocNetwork {
    pub fn namespace_path(&self) -> PathBuf {
        netns::namespace::path(&self.namespace)
    }
}
