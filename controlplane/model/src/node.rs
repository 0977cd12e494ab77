//! Nodes: the machines clients run on, as they fingerprint and register themselves.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::resources::{AllocatedResources, ComparableResources};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    #[default]
    Initializing,
    Ready,
    Down,
    Disconnected,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Initializing => "initializing",
            NodeStatus::Ready => "ready",
            NodeStatus::Down => "down",
            NodeStatus::Disconnected => "disconnected",
        }
    }
}

/// Whether the scheduler may place new work on a node.
pub mod eligibility {
    pub const ELIGIBLE: &str = "eligible";
    pub const INELIGIBLE: &str = "ineligible";
}

/// What a node reports of one task driver.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DriverInfo {
    pub attributes: BTreeMap<String, String>,
    pub detected: bool,
    pub healthy: bool,
    pub health_description: String,
    /// RFC 3339.
    pub update_time: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeCpuResources {
    /// Total MHz: cores × MHz per core.
    pub cpu_shares: i64,
    pub total_cpu_cores: u32,
    pub reservable_cpu_cores: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeMemoryResources {
    #[serde(rename = "MemoryMB")]
    pub memory_mb: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeDiskResources {
    #[serde(rename = "DiskMB")]
    pub disk_mb: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeResources {
    pub cpu: NodeCpuResources,
    pub memory: NodeMemoryResources,
    pub disk: NodeDiskResources,
    /// The client's dynamic port range (`client { min_dynamic_port, max_dynamic_port }`),
    /// inclusive; 0 in both (an older client) means Nomad's defaults, 20000–32000.
    #[serde(default)]
    pub min_dynamic_port: u16,
    #[serde(default)]
    pub max_dynamic_port: u16,
    /// Only in a node's `ReservedResources`: ports the client keeps for the host
    /// (`client.reserved.reserved_ports`), as Nomad's `ReservedResources.Networks`. Left out of
    /// the JSON when unset, so `NodeResources` keeps Nomad's shape elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<NodeReservedNetworkResources>,
    /// The network modes and interfaces the client offers allocations (Nomad's
    /// `NodeResources.NodeNetworks`): `host` on the node's interface, `bridge` when the client
    /// can give an allocation its own namespace. Placement reads the modes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_networks: Vec<NodeNetworkResource>,
}

/// One network the client offers (Nomad's `NodeNetworkResource`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeNetworkResource {
    /// `host` or `bridge`.
    pub mode: String,
    /// The interface: the host's (host mode) or the bridge's.
    pub device: String,
    pub mac_address: String,
    pub speed: i64,
    pub addresses: Vec<NodeNetworkAddress>,
}

/// An address of a [`NodeNetworkResource`] (Nomad's `NodeNetworkAddress`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeNetworkAddress {
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// The host network name ports may ask for (`host_network`); `default` for the node's
    /// own address.
    pub alias: String,
    pub address: String,
    pub reserved_ports: String,
    pub gateway: String,
}

/// Nomad's `NodeReservedNetworkResources`: the host ports no task may take.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeReservedNetworkResources {
    /// A port list as written in the config: "22,80,8000-8100".
    pub reserved_host_ports: String,
}

impl NodeResources {
    pub fn comparable(&self) -> ComparableResources {
        ComparableResources {
            cpu_mhz: self.cpu.cpu_shares,
            memory_mb: self.memory.memory_mb,
            disk_mb: self.disk.disk_mb,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub datacenter: String,
    pub node_pool: String,
    pub node_class: String,
    #[serde(rename = "HTTPAddr")]
    pub http_addr: String,
    pub attributes: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    pub node_resources: NodeResources,
    pub reserved_resources: NodeResources,
    pub drivers: BTreeMap<String, DriverInfo>,
    pub status: NodeStatus,
    pub status_description: String,
    /// Unix seconds.
    pub status_updated_at: i64,
    pub scheduling_eligibility: String,
    pub drain: bool,
    /// Set while the node drains (`noded node drain -enable`); `None` otherwise.
    pub drain_strategy: Option<DrainStrategy>,
    /// The most recent drain, kept after it ends.
    pub last_drain: Option<DrainMetadata>,
    /// What happened to the node (registered, drain started, heartbeat missed…), oldest first,
    /// at most [`MAX_NODE_EVENTS`].
    pub events: Vec<NodeEvent>,
    /// The client's `host_volume` blocks, by name.
    pub host_volumes: BTreeMap<String, ClientHostVolumeConfig>,
    /// The node's computed class ([`Node::compute_class`]): nodes with the same one are alike
    /// for every placement rule that does not look at `unique.*` values, so the scheduler
    /// checks a rule once per class and a blocked evaluation waits on classes. Set by the
    /// servers when the node registers; a client's value is ignored.
    pub computed_class: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Nomad's default dynamic port range.
pub const DEFAULT_MIN_DYNAMIC_PORT: u16 = 20000;
pub const DEFAULT_MAX_DYNAMIC_PORT: u16 = 32000;

/// The most ports a port list may name (every port there is): a bound on what a list like
/// "1-65535" expands to.
const MAX_LISTED_PORTS: usize = 65536;

/// Parses a port list as Nomad writes them: "22,80,8000-8100" (spaces allowed, empty
/// entries ignored).
pub fn parse_port_list(spec: &str) -> Result<BTreeSet<u16>, String> {
    let mut ports = BTreeSet::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let port = |s: &str| -> Result<u16, String> {
            s.trim()
                .parse::<u16>()
                .map_err(|_| format!("{s:?} in port list {spec:?} is not a port (1-65535)"))
        };
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(part)?, port(part)?),
        };
        if lo > hi {
            return Err(format!("port range {part:?} in {spec:?} runs backwards"));
        }
        ports.extend(lo..=hi);
        if ports.len() > MAX_LISTED_PORTS {
            break;
        }
    }
    Ok(ports)
}

/// How many events a node keeps (Nomad keeps the latest 10).
pub const MAX_NODE_EVENTS: usize = 10;

/// How a node drains: Nomad's `DrainStrategy` (its `DrainSpec` fields inline).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DrainStrategy {
    /// Nanoseconds; 0 with `force_deadline` empty is "no deadline", negative is "force now".
    pub deadline: i64,
    pub ignore_system_jobs: bool,
    /// RFC 3339: when remaining allocations are stopped regardless; empty for no deadline.
    pub force_deadline: String,
    /// RFC 3339.
    pub started_at: String,
}

/// Nomad's `DrainMetadata`: what is kept of a drain.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DrainMetadata {
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// `draining`, `complete` or `canceled` ([`drain_status`]).
    pub status: String,
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    pub meta: BTreeMap<String, String>,
}

/// The values of [`DrainMetadata::status`].
pub mod drain_status {
    pub const DRAINING: &str = "draining";
    pub const COMPLETE: &str = "complete";
    pub const CANCELED: &str = "canceled";
}

/// Something that happened to a node, as Nomad's `NodeEvent`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeEvent {
    pub message: String,
    /// `Cluster`, `Drain`, `Driver`, `Heartbeat`… ([`node_event_subsystem`]).
    pub subsystem: String,
    pub details: BTreeMap<String, String>,
    /// RFC 3339.
    pub timestamp: String,
    pub create_index: u64,
}

/// The values of [`NodeEvent::subsystem`], as Nomad names them.
pub mod node_event_subsystem {
    pub const CLUSTER: &str = "Cluster";
    pub const DRAIN: &str = "Drain";
    pub const DRIVER: &str = "Driver";
    pub const HEARTBEAT: &str = "Heartbeat";
    pub const SERVER: &str = "Server";
}

/// The messages of the node events the servers write, in Nomad's words.
pub mod node_event_message {
    pub const REGISTERED: &str = "Node registered";
    pub const REREGISTERED: &str = "Node re-registered";
    pub const HEARTBEAT_MISSED: &str = "Node heartbeat missed";
    pub const REREGISTERED_BY_HEARTBEAT: &str = "Node reregistered by heartbeat";
    pub const DRAIN_SET: &str = "Node drain strategy set";
    pub const DRAIN_UPDATED: &str = "Node drain strategy updated";
    pub const DRAIN_DISABLED: &str = "Node drain disabled";
    pub const DRAIN_COMPLETE: &str = "Node drain complete";
    pub const ELIGIBLE: &str = "Node marked as eligible for scheduling";
    pub const INELIGIBLE: &str = "Node marked as ineligible for scheduling";
}

impl NodeEvent {
    /// An event of `subsystem` at `unix_nanos`; its create index is set when it is stored.
    pub fn new(subsystem: &str, message: &str, unix_nanos: i64) -> NodeEvent {
        NodeEvent {
            message: message.to_string(),
            subsystem: subsystem.to_string(),
            details: BTreeMap::new(),
            timestamp: crate::time::format_rfc3339(unix_nanos),
            create_index: 0,
        }
    }
}

/// Appends `event` to the node's events, dropping the oldest beyond [`MAX_NODE_EVENTS`]
/// (Nomad's `appendNodeEvents`). The caller sets the event's create index.
pub fn push_node_event(node: &mut Node, event: NodeEvent) {
    node.events.push(event);
    if node.events.len() > MAX_NODE_EVENTS {
        let excess = node.events.len() - MAX_NODE_EVENTS;
        node.events.drain(..excess);
    }
}

/// A `host_volume` block of a client's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ClientHostVolumeConfig {
    pub name: String,
    pub path: String,
    pub read_only: bool,
}

impl Node {
    /// The node's computed class: a stable digest of everything a placement rule may look
    /// at except values unique to the node (`unique.*` attributes and meta, ids, names,
    /// addresses). Like Nomad's `v1:<hash>`; the digest is FNV-1a over a canonical encoding,
    /// so every server computes the same class for the same node.
    pub fn compute_class(&self) -> String {
        let mut digest = Fnv1a::default();
        digest.field(&self.datacenter);
        digest.field(&self.node_pool);
        digest.field(&self.node_class);
        for (map, tag) in [(&self.attributes, "attr"), (&self.meta, "meta")] {
            for (k, v) in map.iter().filter(|(k, _)| !k.starts_with("unique.")) {
                digest.field(tag);
                digest.field(k);
                digest.field(v);
            }
        }
        for (name, d) in &self.drivers {
            digest.field("driver");
            digest.field(name);
            digest.field(if d.detected && d.healthy { "1" } else { "0" });
            for (k, v) in d
                .attributes
                .iter()
                .filter(|(k, _)| !k.starts_with("unique."))
            {
                digest.field(k);
                digest.field(v);
            }
        }
        for network in &self.node_resources.node_networks {
            digest.field("network");
            digest.field(&network.mode);
            for address in &network.addresses {
                digest.field(&address.alias);
            }
        }
        for (name, v) in &self.host_volumes {
            digest.field("volume");
            digest.field(name);
            digest.field(if v.read_only { "ro" } else { "rw" });
        }
        format!("v1:{}", digest.0)
    }

    /// Whether this node offers allocations network `mode` (Nomad's `NetworkChecker`): host
    /// and none everywhere (a node that lists no networks predates the list), others only
    /// where the client listed them.
    pub fn offers_network_mode(&self, mode: &str) -> bool {
        match mode {
            "" | "host" | "none" => true,
            _ => self
                .node_resources
                .node_networks
                .iter()
                .any(|n| n.mode == mode),
        }
    }

    /// Whether this node has `driver` detected and healthy.
    pub fn has_driver(&self, driver: &str) -> bool {
        self.drivers
            .get(driver)
            .is_some_and(|d| d.detected && d.healthy)
    }

    /// What placement may use: total minus reserved.
    pub fn allocatable(&self) -> ComparableResources {
        let mut total = self.node_resources.comparable();
        total.subtract(self.reserved_resources.comparable());
        total
    }

    /// The host ports no allocation may take: the client's `reserved.reserved_ports`, parsed.
    /// A list that does not parse reserves nothing here; the client refuses such a
    /// configuration when it starts, so a registered node never carries one.
    pub fn reserved_host_ports(&self) -> BTreeSet<u16> {
        let mut reserved = self
            .reserved_resources
            .networks
            .as_ref()
            .and_then(|n| parse_port_list(&n.reserved_host_ports).ok())
            .unwrap_or_default();
        // A host network's `reserved_ports` are kept off the whole node: host ports are
        // counted per node, not per address.
        for address in self
            .node_resources
            .node_networks
            .iter()
            .flat_map(|n| &n.addresses)
        {
            reserved.extend(parse_port_list(&address.reserved_ports).unwrap_or_default());
        }
        reserved
    }

    /// The address of host network `alias` (`client.host_network`; `default` is the node's
    /// own address), if the node has it.
    pub fn host_network_address(&self, alias: &str) -> Option<&str> {
        self.node_resources
            .node_networks
            .iter()
            .filter(|n| n.mode == "host")
            .flat_map(|n| &n.addresses)
            .find(|a| a.alias == alias)
            .map(|a| a.address.as_str())
    }

    /// The client's dynamic port range, inclusive (Nomad's defaults, 20000–32000, when the
    /// client sent none).
    pub fn dynamic_port_range(&self) -> (u16, u16) {
        let r = &self.node_resources;
        if r.min_dynamic_port == 0 && r.max_dynamic_port == 0 {
            (DEFAULT_MIN_DYNAMIC_PORT, DEFAULT_MAX_DYNAMIC_PORT)
        } else {
            (r.min_dynamic_port, r.max_dynamic_port)
        }
    }

    pub fn is_schedulable(&self) -> bool {
        self.status == NodeStatus::Ready
            && !self.drain
            && self.scheduling_eligibility != eligibility::INELIGIBLE
    }

    /// The short form listings use, with Nomad's default fields.
    pub fn stub(&self) -> NodeListStub {
        self.stub_with(NodeStubFields::default())
    }

    /// The short form with the optional fields `fields` asks for (`?resources=`, `?os=`).
    pub fn stub_with(&self, fields: NodeStubFields) -> NodeListStub {
        NodeListStub {
            address: self
                .attributes
                .get("unique.network.ip-address")
                .cloned()
                .unwrap_or_default(),
            id: self.id.clone(),
            datacenter: self.datacenter.clone(),
            name: self.name.clone(),
            node_class: self.node_class.clone(),
            node_pool: self.node_pool.clone(),
            version: self
                .attributes
                .get("nomad.version")
                .cloned()
                .unwrap_or_default(),
            drain: self.drain,
            scheduling_eligibility: self.scheduling_eligibility.clone(),
            status: self.status,
            status_description: self.status_description.clone(),
            drivers: self.drivers.clone(),
            node_resources: fields.resources.then(|| self.node_resources.clone()),
            reserved_resources: fields.resources.then(|| self.reserved_resources.clone()),
            attributes: fields.os.then(|| {
                let os = self.attributes.get("os.name").cloned().unwrap_or_default();
                BTreeMap::from([("os.name".to_string(), os)])
            }),
            create_index: self.create_index,
            modify_index: self.modify_index,
        }
    }
}

/// Which optional fields a node listing carries (Nomad's `NodeStubFields`); both off by
/// default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStubFields {
    /// `NodeResources` and `ReservedResources`.
    pub resources: bool,
    /// `Attributes`, holding only `os.name`.
    pub os: bool,
}

/// What a set of allocations uses of one node, added up allocation by allocation: the one
/// definition of "fits" that the plan applier and the state machine both check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeUsage {
    pub used: ComparableResources,
    /// Cores reserved exclusively (`resources { cores }`), each by one allocation.
    pub cores: BTreeSet<u32>,
    /// Host ports held, each by one allocation.
    pub ports: BTreeSet<i64>,
}

/// Why allocations do not fit on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overcommit {
    /// Two allocations reserve the same core.
    CoreTaken(u32),
    /// An allocation reserves a core the node does not offer for reservation.
    CoreNotReservable(u32),
    /// Two allocations hold the same host port.
    PortTaken(i64),
    /// An allocation holds a port the node reserves for itself, or no port at all.
    PortReserved(i64),
    /// cpu, memory or disk: more is used than the node can allocate.
    Exhausted {
        dimension: &'static str,
        used: ComparableResources,
    },
}

impl std::fmt::Display for Overcommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Overcommit::CoreTaken(core) => {
                write!(f, "core {core} is already reserved by another allocation")
            }
            Overcommit::CoreNotReservable(core) => {
                write!(f, "core {core} is not one this node offers for reservation")
            }
            Overcommit::PortTaken(port) => {
                write!(f, "port {port} is already held by another allocation")
            }
            Overcommit::PortReserved(port) => {
                write!(f, "port {port} is reserved by the node or is not a port")
            }
            Overcommit::Exhausted { dimension, used } => write!(
                f,
                "{dimension} exhausted (would use {} MHz / {} MB / {} MB disk)",
                used.cpu_mhz, used.memory_mb, used.disk_mb
            ),
        }
    }
}

impl NodeUsage {
    /// Counts `allocations` and checks that together they fit `node`.
    pub fn check<'a>(
        node: &Node,
        allocations: impl IntoIterator<Item = &'a AllocatedResources>,
    ) -> Result<NodeUsage, Overcommit> {
        let mut usage = NodeUsage::default();
        for resources in allocations {
            usage.add(resources)?;
        }
        usage.fits(node)?;
        Ok(usage)
    }

    /// Counts one allocation; a core an allocation counted before holds is refused.
    pub fn add(&mut self, resources: &AllocatedResources) -> Result<(), Overcommit> {
        self.used.add(resources.comparable());
        for task in resources.tasks.values() {
            for core in &task.cpu.reserved_cores {
                if !self.cores.insert(*core) {
                    return Err(Overcommit::CoreTaken(*core));
                }
            }
        }
        for port in resources.host_ports() {
            if !self.ports.insert(port) {
                return Err(Overcommit::PortTaken(port));
            }
        }
        Ok(())
    }

    /// Whether everything counted fits `node`: every reserved core is one it offers, and cpu
    /// and memory stay within what it can allocate.
    pub fn fits(&self, node: &Node) -> Result<(), Overcommit> {
        let reservable = &node.node_resources.cpu.reservable_cpu_cores;
        if let Some(core) = self.cores.iter().find(|c| !reservable.contains(c)) {
            return Err(Overcommit::CoreNotReservable(*core));
        }
        if !self.ports.is_empty() {
            let reserved = node.reserved_host_ports();
            let bad = |p: &i64| u16::try_from(*p).map_or(true, |p| p == 0 || reserved.contains(&p));
            if let Some(port) = self.ports.iter().find(|p| bad(p)) {
                return Err(Overcommit::PortReserved(*port));
            }
        }
        self.used
            .fits_in(&node.allocatable())
            .map_err(|dimension| Overcommit::Exhausted {
                dimension,
                used: self.used,
            })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeListStub {
    pub address: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub datacenter: String,
    pub name: String,
    pub node_class: String,
    pub node_pool: String,
    pub version: String,
    pub drain: bool,
    pub scheduling_eligibility: String,
    pub status: NodeStatus,
    pub status_description: String,
    pub drivers: BTreeMap<String, DriverInfo>,
    /// Only when the listing asked `?resources=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_resources: Option<NodeResources>,
    /// Only when the listing asked `?resources=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_resources: Option<NodeResources>,
    /// Only when the listing asked `?os=true`: `os.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, String>>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// FNV-1a, 64 bits: a tiny, stable, dependency-free digest for [`Node::compute_class`]
/// (not for anything an adversary chooses to collide: a collision only merges two classes'
/// cached feasibility, which the scheduler re-checks per node for `unique.*` rules anyway).
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    /// Adds one length-prefixed field, so ("ab", "c") and ("a", "bc") differ.
    fn field(&mut self, value: &str) {
        for byte in (value.len() as u64)
            .to_le_bytes()
            .iter()
            .chain(value.as_bytes())
        {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{
        AllocatedCpuResources, AllocatedMemoryResources, AllocatedTaskResources,
    };

    #[test]
    fn computed_class_ignores_what_is_unique_to_a_node() {
        let mut a = Node {
            id: "a".into(),
            name: "host-a".into(),
            datacenter: "dc1".into(),
            node_class: "web".into(),
            ..Default::default()
        };
        a.attributes.insert("kernel.name".into(), "linux".into());
        a.attributes
            .insert("unique.hostname".into(), "host-a".into());
        let mut b = a.clone();
        b.id = "b".into();
        b.name = "host-b".into();
        b.attributes
            .insert("unique.hostname".into(), "host-b".into());
        assert_eq!(a.compute_class(), b.compute_class());
        assert!(a.compute_class().starts_with("v1:"));
        b.attributes.insert("kernel.name".into(), "freebsd".into());
        assert_ne!(a.compute_class(), b.compute_class());
        let mut c = a.clone();
        c.meta.insert("rack".into(), "r1".into());
        assert_ne!(a.compute_class(), c.compute_class());
        // Field boundaries count: ("ab","c") is not ("a","bc").
        let mut d = a.clone();
        d.datacenter = "dc1w".into();
        d.node_class = "eb".into();
        assert_ne!(a.compute_class(), d.compute_class());
    }

    fn node(cpu: i64, memory_mb: i64, cores: &[u32]) -> Node {
        Node {
            node_resources: NodeResources {
                cpu: NodeCpuResources {
                    cpu_shares: cpu,
                    total_cpu_cores: 4,
                    reservable_cpu_cores: cores.to_vec(),
                },
                memory: NodeMemoryResources { memory_mb },
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn alloc(cpu: i64, memory_mb: i64, cores: &[u32]) -> AllocatedResources {
        let mut r = AllocatedResources::default();
        r.tasks.insert(
            "t".into(),
            AllocatedTaskResources {
                cpu: AllocatedCpuResources {
                    cpu_shares: cpu,
                    reserved_cores: cores.to_vec(),
                },
                memory: AllocatedMemoryResources {
                    memory_mb,
                    memory_max_mb: 0,
                },
            },
        );
        r
    }

    #[test]
    fn usage_fits_up_to_the_last_mhz_and_megabyte() {
        let n = node(1000, 512, &[0, 1]);
        let mut usage = NodeUsage::default();
        usage.add(&alloc(600, 256, &[0])).unwrap();
        usage.add(&alloc(400, 256, &[1])).unwrap();
        assert_eq!(usage.fits(&n), Ok(()));
        usage.add(&alloc(1, 0, &[])).unwrap();
        assert!(matches!(
            usage.fits(&n),
            Err(Overcommit::Exhausted {
                dimension: "cpu",
                ..
            })
        ));
    }

    #[test]
    fn a_core_is_reserved_once_and_only_if_the_node_offers_it() {
        let mut usage = NodeUsage::default();
        usage.add(&alloc(0, 0, &[1])).unwrap();
        assert_eq!(usage.add(&alloc(0, 0, &[1])), Err(Overcommit::CoreTaken(1)));
        let mut usage = NodeUsage::default();
        usage.add(&alloc(0, 0, &[7])).unwrap();
        assert_eq!(
            usage.fits(&node(1000, 512, &[0, 1])),
            Err(Overcommit::CoreNotReservable(7))
        );
    }
}
