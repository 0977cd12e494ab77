//! Network blocks (the group's, or one left in a task's resources): mode and ports, port
//! labels unique across the group, static ports not taken twice.

use std::collections::BTreeMap;

use model::NetworkResource;

use super::Validator;
use crate::error::FieldPath;

/// Highest port number.
const PORT_MAX: i64 = 65_535;

impl Validator<'_> {
    pub(super) fn network(
        &mut self,
        n: &NetworkResource,
        np: &FieldPath,
        labels: &mut BTreeMap<String, String>,
        group: bool,
    ) {
        let mode = n.mode.as_str();
        if !(mode.is_empty()
            || ["host", "bridge", "none"].contains(&mode)
            || mode.starts_with("cni/"))
        {
            self.err(
                &np.field("mode").key("Mode"),
                format!("network mode must be host, bridge, none or cni/<name> (got {mode:?})"),
            );
        }
        if !group {
            self.warn(
                np,
                "a network block inside resources is deprecated; move it to the group",
            );
        }
        // Where a port's `to` means something: a namespace of its own with mapped ports.
        let maps_ports = mode == "bridge" || mode.starts_with("cni/");
        self.hostname_and_dns(n, np, mode);
        let mut statics: BTreeMap<(i64, String), String> = BTreeMap::new();
        for ports in [&n.reserved_ports, &n.dynamic_ports] {
            for p in ports {
                let pp = np.labeled("port", &p.label).key("Port").key(&p.label);
                if p.label.is_empty() {
                    self.err(&pp, "a port needs a label: port \"http\" { … }");
                    continue;
                }
                if let Some(prev) = labels.insert(p.label.to_lowercase(), p.label.clone()) {
                    self.err(&pp, format!("port label {:?} collides with {prev:?} (labels are compared ignoring case); rename one", p.label));
                }
                if p.value < 0 || p.value > PORT_MAX {
                    self.err(
                        &pp.field("static").key("Value"),
                        format!("static port {} is out of range; use 1-{PORT_MAX}", p.value),
                    );
                }
                if p.to < -1 || p.to > PORT_MAX {
                    self.err(&pp.field("to").key("To"), format!("to = {} is out of range; use 0-{PORT_MAX}, or -1 for the same as the host port", p.to));
                } else if p.to != 0 && !maps_ports {
                    // Nomad accepts it and does nothing with it outside bridge mode; a port
                    // the author thinks is mapped but is not is worse than an error.
                    self.err(
                        &pp.field("to").key("To"),
                        format!(
                            "to = {} only applies in bridge mode (network mode is {}); remove it, or set mode = \"bridge\"",
                            p.to,
                            shown_mode(mode)
                        ),
                    );
                }
                if p.value > 0 {
                    if let Some(prev) =
                        statics.insert((p.value, p.host_network.clone()), p.label.clone())
                    {
                        if !p.ignore_collision {
                            self.err(
                                &pp.field("static").key("Value"),
                                format!("static port {} is also used by port {prev:?}", p.value),
                            );
                        }
                    }
                }
            }
        }
        if n.mbits.is_some() {
            self.warn(
                &np.field("mbits").key("MBits"),
                "mbits is deprecated and ignored",
            );
        }
    }

    /// `hostname`: a DNS name (unless interpolated at runtime), in bridge mode only (the
    /// allocation's own UTS namespace and `/etc/hosts`); `dns.servers`: IP addresses.
    fn hostname_and_dns(&mut self, n: &NetworkResource, np: &FieldPath, mode: &str) {
        if !n.hostname.is_empty() {
            let hp = np.field("hostname").key("Hostname");
            if mode != "bridge" {
                self.err(
                    &hp,
                    format!(
                        "hostname only applies in bridge mode (network mode is {}); remove it, or set mode = \"bridge\"",
                        shown_mode(mode)
                    ),
                );
            } else if !n.hostname.contains("${") {
                if let Some(problem) = model::hostname_problem(&n.hostname) {
                    self.err(
                        &hp,
                        format!(
                            "hostname {:?} is not a valid DNS name: {problem}",
                            n.hostname
                        ),
                    );
                }
            }
        }
        if let Some(dns) = &n.dns {
            for (i, server) in dns.servers.iter().enumerate() {
                if server.parse::<std::net::IpAddr>().is_err() {
                    self.err(
                        &np.field("dns")
                            .key("DNS")
                            .field(&format!("servers[{i}]"))
                            .key("Servers")
                            .key(&i.to_string()),
                        format!("{server:?} is not an IP address; a DNS server is written like \"8.8.8.8\" or \"2001:4860:4860::8888\""),
                    );
                }
            }
        }
    }
}

/// A network mode as the messages show it (`""` is host).
fn shown_mode(mode: &str) -> String {
    if mode.is_empty() {
        "host, the default".to_string()
    } else {
        format!("{mode:?}")
    }
}
