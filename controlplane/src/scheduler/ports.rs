//! Host ports for a group's `network` block on one node (Nomad's `NetworkIndex.AssignPorts`):
//! static ports must be free (not reserved by the node, not held by another allocation),
//! dynamic ones are picked from the node's dynamic range avoiding both. What is chosen goes
//! into the allocation (`AllocatedSharedResources.Ports` and `.Networks`), so the client binds
//! exactly these.

use std::collections::BTreeSet;

use super::rng::SplitMix64;
use crate::model::{AllocatedPortMapping, NetworkResource, Node};

/// Random picks of a dynamic port before scanning the whole range (Nomad's
/// `maxRandPortAttempts`).
const RANDOM_PORT_ATTEMPTS: usize = 20;

/// What a node offers one allocation's network: the network as placed (dynamic port values
/// filled in, the node's address) and every port with its host port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortOffer {
    pub network: NetworkResource,
    pub ports: Vec<AllocatedPortMapping>,
}

/// The node's address the ports are bound on.
fn host_ip(node: &Node) -> String {
    node.attributes
        .get("unique.network.ip-address")
        .cloned()
        .unwrap_or_default()
}

/// The address `port` is bound on: its host network's (`host_network`), else the node's.
/// Feasibility has checked that the node has the host network.
fn port_ip(node: &Node, port: &crate::model::Port, node_ip: &str) -> String {
    if port.host_network.is_empty() {
        return node_ip.to_string();
    }
    node.host_network_address(&port.host_network)
        .unwrap_or(node_ip)
        .to_string()
}

/// Assigns the ports `ask` wants on `node`, where `used` says which host ports the node
/// reserves or its allocations hold (this plan's counted). The error is Nomad's words, which
/// the metrics record as `network: <error>`.
pub fn assign(
    ask: &NetworkResource,
    node: &Node,
    used: &dyn Fn(i64) -> bool,
    rng: &mut SplitMix64,
) -> Result<PortOffer, String> {
    let ip = host_ip(node);
    let mut taken: BTreeSet<i64> = BTreeSet::new();
    let mut network = ask.clone();
    network.ip = ip.clone();
    let mut ports = Vec::new();
    for port in &ask.reserved_ports {
        if !(1..=65535).contains(&port.value) {
            return Err(format!("invalid port {} (out of range)", port.value));
        }
        if !port.ignore_collision && (used(port.value) || taken.contains(&port.value)) {
            return Err(format!(
                "reserved port collision {}={}",
                port.label, port.value
            ));
        }
        taken.insert(port.value);
        ports.push(mapping(
            port.label.clone(),
            port.value,
            port.to,
            &port_ip(node, port, &ip),
            port.ignore_collision,
        ));
    }
    let (lo, hi) = node.dynamic_port_range();
    let (lo, hi) = (i64::from(lo), i64::from(hi));
    for (i, port) in ask.dynamic_ports.iter().enumerate() {
        let free = |p: i64| !used(p) && !taken.contains(&p);
        let value = pick_dynamic(lo, hi, rng, &free).ok_or("dynamic port selection failed")?;
        taken.insert(value);
        network.dynamic_ports[i].value = value;
        ports.push(mapping(
            port.label.clone(),
            value,
            port.to,
            &port_ip(node, port, &ip),
            false,
        ));
    }
    Ok(PortOffer { network, ports })
}

fn mapping(label: String, value: i64, to: i64, ip: &str, ignore: bool) -> AllocatedPortMapping {
    AllocatedPortMapping {
        label,
        value,
        to,
        host_ip: ip.to_string(),
        ignore_collision: ignore,
    }
}

/// A free port in `lo..=hi`: a few random tries (cheap while the range is mostly free), then a
/// scan from a random start so that a crowded range still finds the last free port.
fn pick_dynamic(lo: i64, hi: i64, rng: &mut SplitMix64, free: &dyn Fn(i64) -> bool) -> Option<i64> {
    if lo > hi {
        return None;
    }
    let span = u64::try_from(hi - lo + 1).ok()?;
    for _ in 0..RANDOM_PORT_ATTEMPTS {
        let p = lo + i64::try_from(rng.below(span)).ok()?;
        if free(p) {
            return Some(p);
        }
    }
    let start = i64::try_from(rng.below(span)).ok()?;
    (0..hi - lo + 1)
        .map(|i| lo + (start + i) % (hi - lo + 1))
        .find(|p| free(*p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Port;

    fn assign(
        ask: &NetworkResource,
        node: &Node,
        used: &BTreeSet<i64>,
        rng: &mut SplitMix64,
    ) -> Result<PortOffer, String> {
        super::assign(ask, node, &|p| used.contains(&p), rng)
    }

    fn net(reserved: &[(&str, i64)], dynamic: &[&str]) -> NetworkResource {
        NetworkResource {
            reserved_ports: reserved
                .iter()
                .map(|(l, v)| Port {
                    label: l.to_string(),
                    value: *v,
                    ..Default::default()
                })
                .collect(),
            dynamic_ports: dynamic
                .iter()
                .map(|l| Port {
                    label: l.to_string(),
                    to: 8080,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn node(lo: u16, hi: u16) -> Node {
        let mut n = Node::default();
        n.node_resources.min_dynamic_port = lo;
        n.node_resources.max_dynamic_port = hi;
        n.attributes
            .insert("unique.network.ip-address".into(), "10.0.0.5".into());
        n
    }

    #[test]
    fn static_ports_collide_with_used_ones() {
        let used = BTreeSet::from([8080]);
        let err = assign(
            &net(&[("http", 8080)], &[]),
            &node(0, 0),
            &used,
            &mut SplitMix64::new(1),
        )
        .unwrap_err();
        assert_eq!(err, "reserved port collision http=8080");
        let ok = assign(
            &net(&[("http", 8081)], &[]),
            &node(0, 0),
            &used,
            &mut SplitMix64::new(1),
        )
        .unwrap();
        assert_eq!(ok.ports[0].value, 8081);
        assert_eq!(ok.ports[0].host_ip, "10.0.0.5");
        assert_eq!(ok.network.ip, "10.0.0.5");
    }

    #[test]
    fn dynamic_ports_come_from_the_range_and_avoid_used_ones() {
        let used: BTreeSet<i64> = (30000..=30008).collect();
        let offer = assign(
            &net(&[], &["a"]),
            &node(30000, 30009),
            &used,
            &mut SplitMix64::new(7),
        )
        .unwrap();
        assert_eq!(offer.ports[0].value, 30009, "the one free port is found");
        assert_eq!(offer.ports[0].to, 8080);
        assert_eq!(offer.network.dynamic_ports[0].value, 30009);
        let err = assign(
            &net(&[], &["a", "b"]),
            &node(30000, 30009),
            &used,
            &mut SplitMix64::new(7),
        )
        .unwrap_err();
        assert_eq!(err, "dynamic port selection failed");
    }

    #[test]
    fn default_range_is_nomads() {
        let offer = assign(
            &net(&[], &["a", "b"]),
            &node(0, 0),
            &BTreeSet::new(),
            &mut SplitMix64::new(3),
        )
        .unwrap();
        for p in &offer.ports {
            assert!((20000..=32000).contains(&p.value), "{p:?}");
        }
        assert_ne!(offer.ports[0].value, offer.ports[1].value);
    }
}
