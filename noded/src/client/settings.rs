//! The client's settings that the agent config reads and the client acts on: what is reserved
//! for the host, garbage collection, draining on shutdown, the dynamic port range, and the
//! range strings (`"0-1,3"`, `"22,80,8000-8100"`) Nomad writes cores and ports in.
//!
//! Pure: parsing and arithmetic only, so the agent config and the fingerprint share them.

use std::time::Duration;

/// Nomad's default dynamic port range (`min_dynamic_port`, `max_dynamic_port`).
pub const DEFAULT_MIN_DYNAMIC_PORT: u16 = 20000;
pub const DEFAULT_MAX_DYNAMIC_PORT: u16 = 32000;

/// `bridge_network_name`'s default: the bridge noded owns for `bridge` networks.
pub const DEFAULT_BRIDGE_NETWORK_NAME: &str = "noded0";
/// `bridge_network_subnet`'s default (Nomad's `bridge_network_subnet` default too).
pub fn default_bridge_network_subnet() -> Ipv4Cidr {
    Ipv4Cidr::containing(std::net::Ipv4Addr::new(172, 26, 64, 0), 20)
}
/// Longest interface name the kernel takes (IFNAMSIZ - 1).
pub const MAX_INTERFACE_NAME: usize = netns::MAX_IFNAME_LEN;
/// The longest prefix a bridge subnet may have: /31 and /32 leave no room for a gateway and
/// allocations.
const MAX_BRIDGE_PREFIX: u8 = 30;

pub use netns::Ipv4Cidr;

/// Reads `bridge_network_subnet`: `a.b.c.d/n` with the host bits zero, at most /30.
pub fn parse_bridge_subnet(text: &str) -> Result<Ipv4Cidr, String> {
    let subnet: Ipv4Cidr = text.parse().map_err(|e: netns::CidrError| e.to_string())?;
    if subnet.prefix() > MAX_BRIDGE_PREFIX {
        return Err(format!(
            "{text:?}: a /{} leaves no room for the bridge's gateway and allocations; use /{MAX_BRIDGE_PREFIX} or shorter",
            subnet.prefix()
        ));
    }
    Ok(subnet)
}

/// `client.port_mapping`: how host ports reach `bridge` allocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortMappingMode {
    /// eBPF when this node can load it, else nftables (the fingerprint says which is active).
    #[default]
    Auto,
    Ebpf,
    Nftables,
}

impl PortMappingMode {
    pub fn parse(text: &str) -> Result<PortMappingMode, String> {
        match text {
            "auto" => Ok(PortMappingMode::Auto),
            "ebpf" => Ok(PortMappingMode::Ebpf),
            "nftables" => Ok(PortMappingMode::Nftables),
            other => Err(format!(
                "{other:?} is not a port mapping: use \"auto\", \"ebpf\" or \"nftables\""
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PortMappingMode::Auto => "auto",
            PortMappingMode::Ebpf => "ebpf",
            PortMappingMode::Nftables => "nftables",
        }
    }
}

/// The client's `bridge` networking settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSettings {
    /// `bridge_network_name` (default `noded0`).
    pub bridge_network_name: String,
    /// `bridge_network_subnet` (default `172.26.64.0/20`).
    pub bridge_network_subnet: Ipv4Cidr,
    /// `port_mapping` (default `auto`).
    pub port_mapping: PortMappingMode,
    /// `host_network "name" { … }` blocks, by name: addresses ports may ask for by
    /// `host_network = "name"`.
    pub host_networks: std::collections::BTreeMap<String, HostNetwork>,
}

/// `client { host_network "public" { cidr, interface, reserved_ports } }` (Nomad's): the
/// address of `interface` (the first in `cidr` when both are given), or the first address of
/// the host in `cidr`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostNetwork {
    pub cidr: Option<Ipv4Cidr>,
    pub interface: Option<String>,
    /// Ports no task may take on it ("22,80,8000-8100"); kept off the whole node.
    pub reserved_ports: String,
}

impl HostNetwork {
    /// The host's address this network names among `addrs` (interface, address), if any.
    pub fn pick(
        &self,
        addrs: &[(String, std::net::IpAddr)],
    ) -> Option<(String, std::net::Ipv4Addr)> {
        addrs.iter().find_map(|(name, addr)| {
            let std::net::IpAddr::V4(v4) = addr else {
                return None;
            };
            let on_interface = self.interface.as_ref().is_none_or(|i| i == name);
            let in_cidr = self.cidr.is_none_or(|c| c.contains(*v4));
            (on_interface && in_cidr).then(|| (name.clone(), *v4))
        })
    }
}

impl Default for NetworkSettings {
    fn default() -> NetworkSettings {
        NetworkSettings {
            bridge_network_name: DEFAULT_BRIDGE_NETWORK_NAME.to_string(),
            bridge_network_subnet: default_bridge_network_subnet(),
            port_mapping: PortMappingMode::Auto,
            host_networks: std::collections::BTreeMap::new(),
        }
    }
}

/// Why `name` cannot be `bridge_network_name`: an interface name the kernel takes.
pub fn interface_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_INTERFACE_NAME {
        return Some(format!(
            "give an interface name of 1 to {MAX_INTERFACE_NAME} characters"
        ));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Some(
            "an interface name has no '/', ':' or spaces and is not \".\" or \"..\"".into(),
        );
    }
    None
}

/// The highest core id a `cores` range may name: far above any machine, low enough that a
/// typo ("0-99999999") cannot make a list of millions.
pub const MAX_CORE_ID: u32 = 4095;

/// `client { reserved { … } }`: what the host keeps for itself; placement sees the node's
/// resources minus these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReservedConfig {
    /// MHz.
    pub cpu_mhz: u64,
    pub memory_mb: u64,
    pub disk_mb: u64,
    /// Cores no task may reserve (`cores = "0-1"`), sorted, without duplicates.
    pub cores: Vec<u32>,
    /// Ports no task may take, as written (`"22,80,8000-8100"`), checked.
    pub reserved_ports: String,
    /// The same ports, sorted, without duplicates.
    pub ports: Vec<u16>,
}

/// The client's garbage collection of terminal allocations (Nomad's `gc_*` keys). The client
/// removes the oldest terminal allocation directories when one of the limits is passed.
#[derive(Debug, Clone, PartialEq)]
pub struct GcSettings {
    /// `gc_interval`: how often the limits are checked (default 1m).
    pub interval: Duration,
    /// `gc_disk_usage_threshold`: percent of the alloc dir's disk in use above which
    /// allocations are collected (default 80).
    pub disk_usage_threshold: f64,
    /// `gc_inode_usage_threshold`: the same for inodes (default 70).
    pub inode_usage_threshold: f64,
    /// `gc_max_allocs`: allocations (running or not) kept before terminal ones are collected
    /// (default 50).
    pub max_allocs: usize,
    /// `gc_parallel_destroys`: allocations destroyed at once (default 2).
    pub parallel_destroys: usize,
}

impl Default for GcSettings {
    fn default() -> GcSettings {
        GcSettings {
            interval: Duration::from_secs(60),
            disk_usage_threshold: 80.0,
            inode_usage_threshold: 70.0,
            max_allocs: 50,
            parallel_destroys: 2,
        }
    }
}

/// `client { drain_on_shutdown { … } }`: the client drains its node before it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainOnShutdown {
    /// How long the drain may take before the remaining allocations are stopped (default 1h).
    pub deadline: Duration,
    /// Stop every allocation at once, ignoring the jobs' `migrate` blocks.
    pub force: bool,
    /// Leave system jobs' allocations running.
    pub ignore_system_jobs: bool,
}

impl Default for DrainOnShutdown {
    fn default() -> DrainOnShutdown {
        DrainOnShutdown {
            deadline: Duration::from_secs(3600),
            force: false,
            ignore_system_jobs: false,
        }
    }
}

/// Reads a list of numbers and inclusive ranges ("0-1,3", "22, 80, 8000-8100") whose values
/// lie in `min..=max`; sorted, without duplicates. An empty string is an empty list. The
/// message says which part is wrong.
pub fn parse_ranges(spec: &str, min: u32, max: u32) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    if spec.trim().is_empty() {
        return Ok(out);
    }
    let number = |text: &str, part: &str| -> Result<u32, String> {
        let n: u32 = text
            .trim()
            .parse()
            .map_err(|_| format!("{part:?} is not a number or a range such as \"1-3\""))?;
        if n < min || n > max {
            return Err(format!("{n} is outside {min}-{max}"));
        }
        Ok(n)
    };
    for part in spec.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err("an empty entry (two commas, or a trailing one)".to_string());
        }
        match part.split_once('-') {
            None => out.push(number(part, part)?),
            Some((a, b)) => {
                let (start, end) = (number(a, part)?, number(b, part)?);
                if end < start {
                    return Err(format!(
                        "{part:?}: the range ends ({end}) before it starts ({start})"
                    ));
                }
                out.extend(start..=end);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Ports as Nomad's `ParsePortRanges` reads them: 1–65535.
pub fn parse_ports(spec: &str) -> Result<Vec<u16>, String> {
    parse_ranges(spec, 1, u32::from(u16::MAX)).map(|ports| {
        ports
            .into_iter()
            .filter_map(|p| u16::try_from(p).ok())
            .collect()
    })
}

/// Core ids: 0–[`MAX_CORE_ID`].
pub fn parse_cores(spec: &str) -> Result<Vec<u32>, String> {
    parse_ranges(spec, 0, MAX_CORE_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_read_numbers_and_inclusive_ranges_sorted_and_deduplicated() {
        assert_eq!(parse_cores("0-1,3").unwrap(), vec![0, 1, 3]);
        assert_eq!(parse_cores(" 3 , 1-2,2 ").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_cores("").unwrap(), Vec::<u32>::new());
        assert_eq!(
            parse_ports("22,80,8000-8002").unwrap(),
            vec![22, 80, 8000, 8001, 8002]
        );
        assert_eq!(parse_ports("65535").unwrap(), vec![65535]);
    }

    #[test]
    fn bad_ranges_say_what_is_wrong() {
        for (spec, want) in [
            ("0", "0 is outside 1-65535"),
            ("65536", "65536 is outside 1-65535"),
            ("80-22", "ends (22) before it starts (80)"),
            ("22,,80", "an empty entry"),
            ("22,", "an empty entry"),
            ("http", "\"http\" is not a number"),
            ("1-2-3", "\"1-2-3\" is not a number"),
            ("-5", "\"-5\" is not a number"),
        ] {
            let e = parse_ports(spec).unwrap_err();
            assert!(e.contains(want), "{spec}: {e}");
        }
        assert!(parse_cores("0-99999999")
            .unwrap_err()
            .contains("outside 0-4095"));
    }
}

#[cfg(test)]
mod network_tests {
    use super::*;

    #[test]
    fn bridge_subnets_parse_with_clear_errors() {
        assert_eq!(
            parse_bridge_subnet("172.26.64.0/20"),
            Ok(default_bridge_network_subnet())
        );
        let net = parse_bridge_subnet("10.10.0.0/16").unwrap();
        assert!(net.contains("10.10.255.1".parse().unwrap()));
        assert!(!net.contains("10.11.0.1".parse().unwrap()));
        for (bad, why) in [
            ("172.26.64.0", "ADDRESS/PREFIX"),
            ("172.26.64/20", "not an IPv4 address"),
            ("172.26.64.0/33", "from 0 to 32"),
            ("172.26.64.0/31", "no room for the bridge's gateway"),
            (
                "172.26.64.1/20",
                "host bits are set; the network is 172.26.64.0/20",
            ),
        ] {
            let e = parse_bridge_subnet(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!(PortMappingMode::parse("ebpf"), Ok(PortMappingMode::Ebpf));
        assert!(PortMappingMode::parse("iptables")
            .unwrap_err()
            .contains("\"auto\", \"ebpf\" or \"nftables\""));
        assert_eq!(interface_name_problem("noded0"), None);
        assert!(interface_name_problem("a-very-long-bridge-name").is_some());
        assert!(interface_name_problem("br/0").is_some());
    }
}
