//! Resources: what a task asks of a node ([`Resources`], its networks and devices), what the
//! scheduler reserves for an allocation ([`AllocatedResources`]), and the two dimensions
//! placement compares ([`ComparableResources`]).
//!
//! Its own module because jobs, allocations and nodes all speak of resources; keeping them
//! here lets each of those depend on this one instead of on each other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::placement::{Affinity, Constraint};

/// What a task asks of its node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Resources {
    /// CPU in MHz.
    #[serde(rename = "CPU")]
    pub cpu: i64,
    /// Exclusive cores (instead of `CPU`).
    pub cores: i64,
    #[serde(rename = "MemoryMB")]
    pub memory_mb: i64,
    #[serde(rename = "MemoryMaxMB")]
    pub memory_max_mb: i64,
    #[serde(rename = "DiskMB")]
    pub disk_mb: Option<i64>,
    /// Deprecated task-level networks (Nomad still accepts them).
    pub networks: Vec<NetworkResource>,
    pub devices: Vec<RequestedDevice>,
    #[serde(rename = "NUMA")]
    pub numa: Option<NumaResource>,
    /// Size of the in-memory secrets directory.
    #[serde(rename = "SecretsMB")]
    pub secrets_mb: Option<i64>,
    /// Ignored by Nomad since 0.9; accepted for old jobs.
    #[serde(rename = "IOPS")]
    pub iops: Option<i64>,
}

/// A group's (or, deprecated, a task's) network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkResource {
    pub mode: String,
    pub device: String,
    #[serde(rename = "CIDR")]
    pub cidr: String,
    #[serde(rename = "IP")]
    pub ip: String,
    #[serde(rename = "DNS")]
    pub dns: Option<DnsConfig>,
    pub reserved_ports: Vec<Port>,
    pub dynamic_ports: Vec<Port>,
    pub hostname: String,
    #[serde(rename = "MBits")]
    pub mbits: Option<i64>,
    #[serde(rename = "CNI")]
    pub cni: Option<CniConfig>,
}

/// A port: static when `value` > 0, otherwise dynamic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Port {
    pub label: String,
    pub value: i64,
    pub to: i64,
    pub host_network: String,
    pub ignore_collision: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CniConfig {
    pub args: BTreeMap<String, String>,
}

/// A device (GPU, FPGA…) a task asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct RequestedDevice {
    pub name: String,
    pub count: Option<i64>,
    pub constraints: Vec<Constraint>,
    pub affinities: Vec<Affinity>,
}

/// NUMA placement of a task's cores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NumaResource {
    pub affinity: String,
    pub devices: Vec<String>,
}

/// Resources reduced to what placement compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ComparableResources {
    #[serde(rename = "CPU")]
    pub cpu_mhz: i64,
    #[serde(rename = "MemoryMB")]
    pub memory_mb: i64,
    /// The allocation's ephemeral disk (`ephemeral_disk { size }`).
    #[serde(rename = "DiskMB", default)]
    pub disk_mb: i64,
}

impl ComparableResources {
    pub fn add(&mut self, other: ComparableResources) {
        self.cpu_mhz += other.cpu_mhz;
        self.memory_mb += other.memory_mb;
        self.disk_mb += other.disk_mb;
    }

    pub fn subtract(&mut self, other: ComparableResources) {
        self.cpu_mhz -= other.cpu_mhz;
        self.memory_mb -= other.memory_mb;
        self.disk_mb -= other.disk_mb;
    }

    /// Whether `self` fits into `capacity`; on failure, the dimension that did not fit, in
    /// Nomad's order and words (`cpu`, `memory`, `disk`).
    pub fn fits_in(&self, capacity: &ComparableResources) -> Result<(), &'static str> {
        if self.cpu_mhz > capacity.cpu_mhz {
            return Err("cpu");
        }
        if self.memory_mb > capacity.memory_mb {
            return Err("memory");
        }
        if self.disk_mb > capacity.disk_mb {
            return Err("disk");
        }
        Ok(())
    }
}

/// Resources reserved for an allocation on its node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedResources {
    pub tasks: BTreeMap<String, AllocatedTaskResources>,
    pub shared: AllocatedSharedResources,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedTaskResources {
    pub cpu: AllocatedCpuResources,
    pub memory: AllocatedMemoryResources,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedCpuResources {
    /// MHz reserved; the client turns it into a cgroup cpu weight.
    pub cpu_shares: i64,
    pub reserved_cores: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedMemoryResources {
    #[serde(rename = "MemoryMB")]
    pub memory_mb: i64,
    #[serde(rename = "MemoryMaxMB")]
    pub memory_max_mb: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedSharedResources {
    #[serde(rename = "DiskMB")]
    pub disk_mb: i64,
    /// The group network as placed: its dynamic ports with the values chosen and its address
    /// on the node (Nomad's `AllocatedSharedResources.Networks`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkResource>,
    /// Every port of the group network with the host port it got: what the client binds and
    /// forwards (Nomad's `AllocatedSharedResources.Ports`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<AllocatedPortMapping>,
}

/// One port of an allocation on its node (Nomad's `AllocatedPortMapping`): `value` on the
/// host at `host_ip`, forwarded to `to` inside the allocation (0: the same as `value`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedPortMapping {
    pub label: String,
    pub value: i64,
    pub to: i64,
    #[serde(rename = "HostIP")]
    pub host_ip: String,
    pub ignore_collision: bool,
}

impl AllocatedResources {
    /// The total, as placement compares it.
    pub fn comparable(&self) -> ComparableResources {
        let mut total = ComparableResources::default();
        for t in self.tasks.values() {
            total.cpu_mhz += t.cpu.cpu_shares;
            total.memory_mb += t.memory.memory_mb;
        }
        total.disk_mb = self.shared.disk_mb;
        total
    }

    /// The host ports the allocation holds on its node (ports that may collide: those
    /// without `ignore_collision`).
    pub fn host_ports(&self) -> impl Iterator<Item = i64> + '_ {
        self.shared
            .ports
            .iter()
            .filter(|p| !p.ignore_collision)
            .map(|p| p.value)
    }
}

/// Longest hostname the kernel takes (`HOST_NAME_MAX`): a network's `hostname` becomes the
/// allocation's UTS hostname.
pub const HOSTNAME_MAX_BYTES: usize = 64;

/// Why `name` cannot be a network's `hostname`, or `None` when it can: dot-separated labels
/// of 1–63 letters, digits, `-` or `_`, not starting or ending with `-`, at most
/// [`HOSTNAME_MAX_BYTES`] in all (a DNS name, as Nomad requires, short enough for the
/// kernel).
pub fn hostname_problem(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Some("it is empty".to_string());
    }
    if name.len() > HOSTNAME_MAX_BYTES {
        return Some(format!(
            "it is {} bytes long; a hostname has at most {HOSTNAME_MAX_BYTES}",
            name.len()
        ));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Some(format!("label {label:?} must be 1 to 63 characters long"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Some(format!(
                "{c:?} is not allowed (letters, digits, '-' and '_' only)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!("label {label:?} starts or ends with '-'"));
        }
    }
    None
}

#[cfg(test)]
mod hostname_tests {
    use super::hostname_problem;

    #[test]
    fn hostnames_are_dns_names_the_kernel_takes() {
        for good in [
            "web",
            "web-1.example.com",
            "a_b",
            "x.",
            "a".repeat(63).as_str(),
        ] {
            assert_eq!(hostname_problem(good), None, "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("-web", "starts or ends"),
            ("we b", "not allowed"),
            ("a..b", "1 to 63"),
            (&"a.".repeat(40), "at most 64"),
            (&"a".repeat(64), "1 to 63"),
        ] {
            let problem = hostname_problem(bad).unwrap_or_default();
            assert!(problem.contains(why), "{bad:?}: {problem}");
        }
    }
}
