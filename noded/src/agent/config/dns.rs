//! The agent's `dns { enabled, bind, port, domain, ttl, forward, recursors }` block: the DNS
//! server that answers the native service catalog (see `crate::dns`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use controlplane::model::duration::parse_go;
use serde::Deserialize;

use super::error::Report;
use crate::dns::settings::DnsSettings;
use crate::dns::view::{is_label, MAX_NAME_WIRE};

/// The longest TTL `dns.ttl` takes: answers follow health, a day-old answer is no answer.
pub const MAX_DNS_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest `dns.domain`: the service, tag and namespace labels need room in 255 bytes.
pub const MAX_DNS_DOMAIN: usize = 64;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DnsBlock {
    pub enabled: Option<bool>,
    pub bind: Option<String>,
    pub port: Option<u16>,
    pub domain: Option<String>,
    pub ttl: Option<String>,
    pub forward: Option<bool>,
    pub recursors: Option<Vec<String>>,
}

/// Takes what one `dns` block sets; every bad value is reported at its key.
pub fn apply_dns(d: &mut DnsSettings, block: &DnsBlock, report: Report<'_>) {
    if let Some(v) = block.enabled {
        d.enabled = v;
    }
    // Written down, the server is wanted: failing to listen then stops the agent (by
    // default it only warns, so that dev agents side by side still start).
    d.required = block.enabled != Some(false);
    if let Some(forward) = block.forward {
        d.forward = forward;
    }
    if let Some(text) = &block.bind {
        // Outside loopback the server answers the catalog only (names outside the domain
        // are refused there, see `dns::server::Shared::refuse_forwarding`).
        match text.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() => report(
                "dns.bind",
                format!("dns.bind = {text:?}: listening on every address would answer on public interfaces too; name one address (127.0.0.1 by default, or the node's address to answer the catalog to other machines)"),
            ),
            Ok(ip) => d.bind = ip,
            Err(_) => report("dns.bind", format!("dns.bind = {text:?} is not an IP address; use 127.0.0.1")),
        }
    }
    if let Some(port) = block.port {
        if port == 0 {
            report(
                "dns.port",
                "dns.port = 0: choose a port (default 8600)".into(),
            );
        } else {
            d.port = port;
        }
    }
    if let Some(text) = &block.domain {
        match domain(text) {
            Ok(v) => d.domain = v,
            Err(why) => report("dns.domain", format!("dns.domain = {text:?}: {why}")),
        }
    }
    if let Some(text) = &block.ttl {
        match parse_go(text) {
            Ok(t) if t > MAX_DNS_TTL => {
                report("dns.ttl", format!("dns.ttl = {text:?}: at most 24h"))
            }
            Ok(t) => d.ttl = t,
            Err(e) => report(
                "dns.ttl",
                format!("dns.ttl = {text:?}: {e} (write a Go duration such as \"5s\")"),
            ),
        }
    }
    if let Some(list) = &block.recursors {
        let mut out = Vec::new();
        for text in list {
            match recursor(text) {
                Ok(addr) => out.push(addr),
                Err(why) => report("dns.recursors", format!("dns.recursors: {text:?}: {why}")),
            }
        }
        d.recursors = out;
    }
}

/// A domain of DNS labels, lowercased, without the trailing dot.
fn domain(text: &str) -> Result<String, String> {
    let lower = text.trim_end_matches('.').to_ascii_lowercase();
    if lower.is_empty() {
        return Err("empty; write a domain such as \"noded\"".into());
    }
    if lower.len() > MAX_DNS_DOMAIN || lower.len() + 2 > MAX_NAME_WIRE {
        return Err(format!("longer than {MAX_DNS_DOMAIN} characters"));
    }
    if let Some(bad) = lower.split('.').find(|l| !is_label(l)) {
        return Err(format!(
            "{bad:?} is not a DNS label (1-63 of a-z, 0-9, '-' and '_')"
        ));
    }
    Ok(lower)
}

/// "ip" (port 53) or "ip:port" / "[v6]:port".
fn recursor(text: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        "not an IP address or ip:port (such as \"10.0.0.2\" or \"10.0.0.2:53\")".into()
    })
}
