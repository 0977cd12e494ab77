//! The agent's DNS settings, apart from the server so that the agent's config (which the
//! client reads too) does not depend on the server, which depends on the client.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::view::ViewSettings;

/// The agent's `dns { … }` block, after defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    pub enabled: bool,
    /// One address: loopback forwards names outside the domain, any other answers the
    /// catalog only (the config refuses `0.0.0.0`).
    pub bind: IpAddr,
    pub port: u16,
    /// Lowercase, no trailing dot.
    pub domain: String,
    pub ttl: Duration,
    /// Forward names outside the domain (true) or refuse them.
    pub forward: bool,
    /// Upstreams for forwarding; empty: the host's `/etc/resolv.conf`.
    pub recursors: Vec<SocketAddr>,
    /// The config asked for the server (a `dns` block): a port in use stops the agent.
    /// Otherwise that is only a warning, so that dev agents side by side still start.
    pub required: bool,
}

impl Default for DnsSettings {
    fn default() -> DnsSettings {
        DnsSettings {
            enabled: true,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8600,
            domain: "noded".into(),
            ttl: Duration::from_secs(5),
            forward: true,
            recursors: Vec::new(),
            required: false,
        }
    }
}

impl DnsSettings {
    pub fn view_settings(&self) -> ViewSettings {
        ViewSettings {
            domain: self.domain.clone(),
            ttl_secs: u32::try_from(self.ttl.as_secs()).unwrap_or(u32::MAX),
            forward: self.forward,
        }
    }
}
