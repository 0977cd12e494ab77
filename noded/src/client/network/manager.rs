//! The kernel side of allocations' networks on this node: a named namespace per `bridge` or
//! `none` allocation, a veth into noded's bridge with an address leased from its subnet, and
//! the allocation's host ports mapped in (eBPF, or nftables where eBPF cannot run); made
//! before the allocation's tasks start, removed after they end, reconciled when the daemon
//! starts.
//!
//! The node-wide objects (the bridge, the masquerade and isolation tables, the port-mapping
//! programs) are made at the first `bridge` allocation, never at start: a node that runs no
//! bridge allocation changes nothing in its network. Every name carries the node's **tag**
//! (the first 8 hex digits of its ID), so that several agents on one machine (tests run one per
//! network namespace) never touch each other's namespaces, links or pins.
//!
//! Every call here is blocking (netlink round trips, nft runs): the allocation runner calls it
//! through `spawn_blocking`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use controlplane::model::Allocation;
use netns::nft::Endpoint;
use netns::{Bridge, BridgeConfig, Firewall, Ipam, Mapping, PortMapBackend, Proto};

use super::record::AllocNetwork;
use super::task::{alloc_port, NetworkMode};
use crate::client::settings::{NetworkSettings, PortMappingMode};
use crate::client::state::StateStore;

/// Where the node's eBPF objects are pinned: `<BPF_PIN_ROOT>/<tag>`.
pub const BPF_PIN_ROOT: &str = "/sys/fs/bpf/noded";

/// Why an allocation's network could not be made or removed: what, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct NetworkError {
    pub what: String,
    pub reason: String,
}

impl NetworkError {
    fn new(what: impl Into<String>, reason: impl std::fmt::Display) -> NetworkError {
        NetworkError {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

/// How host ports reach `bridge` allocations on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMapping {
    Ebpf,
    /// `why`: what made eBPF unusable (empty when nftables was asked for).
    Nftables {
        why: String,
    },
    /// Neither can run: the node offers no bridge networking.
    Unavailable {
        why: String,
    },
}

impl PortMapping {
    /// What `noded.port_mapping` says.
    pub fn name(&self) -> Option<&'static str> {
        match self {
            PortMapping::Ebpf => Some("ebpf"),
            PortMapping::Nftables { .. } => Some("nftables"),
            PortMapping::Unavailable { .. } => None,
        }
    }
}

/// Picks the port-mapping backend from `port_mapping` and what the probes found: eBPF when
/// asked for or when `auto` and it can run; nftables when asked for or as `auto`'s fallback.
/// Never silently no mapping: without either, bridge networking is not offered, with why.
pub fn choose_port_mapping(
    asked: PortMappingMode,
    ebpf: Result<(), String>,
    nft: Result<(), String>,
) -> PortMapping {
    match (asked, ebpf, nft) {
        (PortMappingMode::Ebpf | PortMappingMode::Auto, Ok(()), _) => PortMapping::Ebpf,
        (PortMappingMode::Ebpf, Err(why), _) => PortMapping::Unavailable {
            why: format!("client.port_mapping = \"ebpf\" but eBPF cannot run here: {why}"),
        },
        (PortMappingMode::Auto, Err(ebpf), Ok(())) => PortMapping::Nftables { why: ebpf },
        (PortMappingMode::Nftables, _, Ok(())) => PortMapping::Nftables { why: String::new() },
        (PortMappingMode::Auto, Err(ebpf), Err(nft)) => PortMapping::Unavailable {
            why: format!("eBPF cannot run here ({ebpf}) and nftables neither ({nft})"),
        },
        (PortMappingMode::Nftables, _, Err(nft)) => PortMapping::Unavailable {
            why: format!("client.port_mapping = \"nftables\" but nft cannot run here: {nft}"),
        },
    }
}

/// The namespace of allocation `alloc_id` on the node tagged `tag`.
pub fn namespace_name(tag: &str, alloc_id: &str) -> String {
    format!("noded-{tag}-{alloc_id}")
}

/// The prefix of every namespace of the node tagged `tag`.
fn namespace_prefix(tag: &str) -> String {
    format!("noded-{tag}-")
}

/// The prefix of every host-side veth of the node tagged `tag`: `nd` and 4 hex digits.
fn veth_prefix(tag: &str) -> String {
    format!("nd{}", tag.get(..4).unwrap_or(tag))
}

/// The host side of allocation `alloc_id`'s veth: the node's prefix and the first 8 hex
/// digits of the allocation ID (14 characters, within the kernel's 15).
pub fn veth_name(tag: &str, alloc_id: &str) -> String {
    let digits: String = alloc_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect();
    let name = format!("{}{digits}", veth_prefix(tag));
    debug_assert!(name.len() <= netns::MAX_IFNAME_LEN, "{name}");
    name
}

/// The node's tag: the first 8 hex digits of its ID.
pub fn node_tag(node_id: &str) -> String {
    node_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect()
}

/// The mappings of an allocation's ports into `alloc_ip`: both protocols of every port, from
/// its host port on its host address (or the node's) to its `to` (or the same port).
pub fn mappings_for(
    alloc: &Allocation,
    node_ip: Option<Ipv4Addr>,
    alloc_ip: Ipv4Addr,
) -> Result<Vec<Mapping>, NetworkError> {
    let mut mappings = Vec::new();
    for port in &alloc.allocated_resources.shared.ports {
        let what = || format!("port {:?}", port.label);
        let host_ip = match port.host_ip.parse::<Ipv4Addr>() {
            Ok(ip) => ip,
            Err(_) => node_ip.ok_or_else(|| {
                NetworkError::new(
                    what(),
                    format!(
                        "host address {:?} is not IPv4 and the node has no IPv4 address to map it on",
                        port.host_ip
                    ),
                )
            })?,
        };
        let host_port = u16::try_from(port.value)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                NetworkError::new(what(), format!("host port {} is out of range", port.value))
            })?;
        let alloc_port = u16::try_from(alloc_port(port))
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                NetworkError::new(what(), format!("to = {} is out of range", port.to))
            })?;
        for proto in [Proto::Tcp, Proto::Udp] {
            mappings.push(Mapping {
                proto,
                host_ip,
                host_port,
                alloc_ip,
                alloc_port,
            });
        }
    }
    Ok(mappings)
}

/// The node-wide objects bridge allocations share, made at the first one.
struct Fabric {
    bridge: Bridge,
    firewall: Firewall,
    ports: Box<dyn PortMapBackend>,
    ipam: Ipam,
}

/// What the manager knows: the records of live allocations' networks (leases included).
#[derive(Default)]
struct Known {
    records: BTreeMap<String, AllocNetwork>,
}

impl Known {
    fn leased(&self) -> BTreeSet<Ipv4Addr> {
        self.records.values().filter_map(|r| r.address).collect()
    }
}

/// What a reconcile found and removed (for the log and tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub namespaces: Vec<String>,
    pub links: Vec<String>,
    pub mappings: Vec<Mapping>,
    pub endpoints: usize,
    /// The node-wide objects an earlier daemon left with no bridge allocation to serve.
    pub fabric_removed: bool,
}

/// Makes and removes allocations' networks on this node.
pub struct NetworkManager {
    settings: NetworkSettings,
    tag: String,
    node_ip: Option<Ipv4Addr>,
    /// The interfaces other hosts reach the node on (eBPF's tc programs attach there).
    interfaces: Vec<String>,
    port_mapping: PortMapping,
    fabric: Mutex<Option<Arc<Fabric>>>,
    known: Mutex<Known>,
    state: Arc<StateStore>,
    /// Told when the bridge appears (its gateway) and goes (`None`): the agent's DNS server
    /// listens on the gateway for tasks. Called with the fabric lock held, so it sees the
    /// changes in order.
    bridge_observer: Mutex<Option<BridgeObserver>>,
    /// The gateway while a DNS server answers there (what the observer last said).
    bridge_dns: Mutex<Option<Ipv4Addr>>,
}

/// See [`NetworkManager::observe_bridge`]: returns whether it now serves DNS at the gateway.
pub type BridgeObserver = Box<dyn Fn(Option<Ipv4Addr>) -> bool + Send + Sync>;

impl std::fmt::Debug for NetworkManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkManager")
            .field("tag", &self.tag)
            .field("port_mapping", &self.port_mapping)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl NetworkManager {
    /// A manager for the node `node_id` reachable at `node_ip` on `interfaces`. Probes which
    /// port mapping can run; creates nothing.
    pub fn new(
        settings: NetworkSettings,
        node_id: &str,
        node_ip: Option<Ipv4Addr>,
        interfaces: Vec<String>,
        state: Arc<StateStore>,
    ) -> NetworkManager {
        let ebpf = ebpf::probe().map_err(|u| u.reason);
        let nft = probe_nft();
        let mut port_mapping = choose_port_mapping(settings.port_mapping, ebpf, nft);
        // Settings that cannot work here (the subnet is in use, the bridge's name is taken)
        // are found now, changing nothing, rather than at the first bridge allocation.
        if port_mapping.name().is_some() {
            if let Err(e) = netns::bridge::check(&BridgeConfig {
                name: settings.bridge_network_name.clone(),
                subnet: settings.bridge_network_subnet,
            }) {
                let why = match &e {
                    netns::Error::Config { .. } => format!("client.{e}"),
                    other => format!("checking the bridge settings: {other}"),
                };
                port_mapping = PortMapping::Unavailable { why };
            }
        }
        match &port_mapping {
            PortMapping::Ebpf => tracing::info!("bridge networking: ports mapped in eBPF"),
            PortMapping::Nftables { why } if why.is_empty() => {
                tracing::info!("bridge networking: ports mapped by nftables (client.port_mapping)")
            }
            PortMapping::Nftables { why } => tracing::warn!(
                "bridge networking: eBPF cannot run here ({why}); ports mapped by nftables"
            ),
            PortMapping::Unavailable { why } => {
                tracing::warn!("bridge networking is not offered: {why}")
            }
        }
        NetworkManager {
            settings,
            tag: node_tag(node_id),
            node_ip,
            interfaces,
            port_mapping,
            fabric: Mutex::new(None),
            known: Mutex::new(Known::default()),
            state,
            bridge_observer: Mutex::new(None),
            bridge_dns: Mutex::new(None),
        }
    }

    pub fn port_mapping(&self) -> &PortMapping {
        &self.port_mapping
    }

    /// The bridge allocations join, when this node offers bridge networking.
    pub fn bridge_name(&self) -> Option<&str> {
        self.port_mapping
            .name()
            .map(|_| self.settings.bridge_network_name.as_str())
    }

    fn pin_dir(&self) -> PathBuf {
        PathBuf::from(BPF_PIN_ROOT).join(&self.tag)
    }

    /// The node-wide objects, made at the first bridge allocation (and by a reconcile that
    /// finds an earlier daemon's).
    fn fabric_in(&self, slot: &mut Option<Arc<Fabric>>) -> Result<Arc<Fabric>, NetworkError> {
        if let Some(f) = slot.as_ref() {
            return Ok(f.clone());
        }
        let made = Arc::new(self.make_fabric()?);
        *slot = Some(made.clone());
        self.tell_bridge(Some(made.bridge.gateway));
        Ok(made)
    }

    /// Calls `observer` now with the bridge's gateway (`None` when there is no bridge), then
    /// whenever the bridge is made or removed. One observer; a second replaces the first.
    pub fn observe_bridge(&self, observer: BridgeObserver) {
        let slot = lock(&self.fabric);
        let serving = observer(slot.as_ref().map(|f| f.bridge.gateway));
        *lock(&self.bridge_dns) = slot.as_ref().map(|f| f.bridge.gateway).filter(|_| serving);
        *lock(&self.bridge_observer) = Some(observer);
    }

    fn tell_bridge(&self, gateway: Option<Ipv4Addr>) {
        if let Some(observer) = lock(&self.bridge_observer).as_ref() {
            let serving = observer(gateway);
            *lock(&self.bridge_dns) = gateway.filter(|_| serving);
        }
    }

    /// The address a DNS server answers tasks on (the bridge's gateway), while one does.
    pub fn bridge_dns(&self) -> Option<Ipv4Addr> {
        *lock(&self.bridge_dns)
    }

    /// Removes the node-wide objects (the eBPF programs and pins, the nftables tables, the
    /// bridge): the last bridge allocation is gone, and noded leaves nothing behind it. The
    /// next bridge allocation makes them again.
    fn remove_fabric(&self, slot: &mut Option<Arc<Fabric>>) -> Result<(), NetworkError> {
        let what = "removing bridge networking (no bridge allocation is left)";
        *slot = None;
        self.tell_bridge(None);
        if self.pin_dir().exists() {
            ebpf::PortMapper::remove_all(&self.pin_dir(), &self.interfaces)
                .map_err(|e| NetworkError::new(what, e))?;
        }
        Firewall::remove_all().map_err(|e| NetworkError::new(what, e))?;
        netns::bridge::remove(&self.settings.bridge_network_name)
            .map_err(|e| NetworkError::new(what, e))
    }

    fn make_fabric(&self) -> Result<Fabric, NetworkError> {
        let what = "setting up bridge networking";
        if let PortMapping::Unavailable { why } = &self.port_mapping {
            return Err(NetworkError::new(what, why));
        }
        let bridge = netns::bridge::ensure(&BridgeConfig {
            name: self.settings.bridge_network_name.clone(),
            subnet: self.settings.bridge_network_subnet,
        })
        .map_err(|e| NetworkError::new(what, e))?;
        let firewall = Firewall::ensure(&bridge).map_err(|e| NetworkError::new(what, e))?;
        let ports: Box<dyn PortMapBackend> = match &self.port_mapping {
            PortMapping::Ebpf => {
                let cgroup2_root = ebpf::cgroup2_root().ok_or_else(|| {
                    NetworkError::new(what, "no cgroup2 mount for the eBPF port mapping")
                })?;
                let mapper = ebpf::PortMapper::open(&ebpf::PortMapperConfig {
                    pin_dir: self.pin_dir(),
                    cgroup2_root,
                    interfaces: self.interfaces.clone(),
                })
                .map_err(|e| NetworkError::new(what, e))?;
                tracing::info!(opened = ?mapper.opened(), took = ?mapper.setup_time(), pins = %self.pin_dir().display(), "eBPF port mapping ready");
                Box::new(mapper)
            }
            _ => Box::new(
                netns::NftPortMapper::ensure(&bridge).map_err(|e| NetworkError::new(what, e))?,
            ),
        };
        let ipam = Ipam::new(bridge.subnet, bridge.gateway);
        Ok(Fabric {
            bridge,
            firewall,
            ports,
            ipam,
        })
    }

    /// Makes allocation `alloc`'s network for `mode`, or finds the one an earlier daemon made
    /// (the same namespace, address and veth: its tasks kept running). Host mode makes
    /// nothing. On failure nothing of it is left.
    pub fn setup(
        &self,
        alloc: &Allocation,
        mode: NetworkMode,
    ) -> Result<Option<AllocNetwork>, NetworkError> {
        match mode {
            NetworkMode::Host => Ok(None),
            NetworkMode::None => self.setup_none(alloc).map(Some),
            NetworkMode::Bridge => self.setup_bridge(alloc).map(Some),
        }
    }

    fn setup_none(&self, alloc: &Allocation) -> Result<AllocNetwork, NetworkError> {
        let record = AllocNetwork {
            mode: "none".into(),
            namespace: namespace_name(&self.tag, &alloc.id),
            host_veth: None,
            address: None,
            mappings: Vec::new(),
        };
        self.remember(&alloc.id, &record)?;
        let made = netns::namespace::create(&record.namespace)
            .and_then(|_| netns::namespace::loopback_up(&record.namespace));
        if let Err(e) = made {
            self.teardown(&alloc.id);
            return Err(NetworkError::new(
                format!("network namespace {}", record.namespace),
                e,
            ));
        }
        Ok(record)
    }

    fn setup_bridge(&self, alloc: &Allocation) -> Result<AllocNetwork, NetworkError> {
        // Held throughout: the last allocation's teardown removes the node-wide objects, and
        // must not do so under an allocation being set up.
        let mut slot = lock(&self.fabric);
        let fabric = self.fabric_in(&mut slot)?;
        let record = {
            let mut known = lock(&self.known);
            let address = match known.records.get(&alloc.id).and_then(|r| r.address) {
                Some(address) => address,
                None => fabric.ipam.lease(&known.leased()).ok_or_else(|| {
                    NetworkError::new(
                        "leasing an address",
                        format!(
                            "every address of {} (bridge_network_subnet) is leased to an allocation; use a larger subnet",
                            fabric.bridge.subnet
                        ),
                    )
                })?,
            };
            let record = AllocNetwork {
                mode: "bridge".into(),
                namespace: namespace_name(&self.tag, &alloc.id),
                host_veth: Some(veth_name(&self.tag, &alloc.id)),
                address: Some(address),
                mappings: mappings_for(alloc, self.node_ip, address)?,
            };
            // Leased in memory and on disk before any kernel object exists: a crash from here
            // on leaves a record that says what to remove, and the address is never leased
            // twice.
            known.records.insert(alloc.id.clone(), record.clone());
            record
        };
        if let Err(e) = self.persist(&alloc.id, Some(&record)) {
            lock(&self.known).records.remove(&alloc.id);
            return Err(e);
        }
        match self.make_bridge_objects(&fabric, &record) {
            Ok(()) => Ok(record),
            Err(e) => {
                self.teardown_in(&mut slot, &alloc.id);
                Err(e)
            }
        }
    }

    fn make_bridge_objects(
        &self,
        fabric: &Fabric,
        record: &AllocNetwork,
    ) -> Result<(), NetworkError> {
        let ns = &record.namespace;
        netns::namespace::create(ns)
            .map_err(|e| NetworkError::new(format!("network namespace {ns}"), e))?;
        if let (Some(veth), Some(address)) = (&record.host_veth, record.address) {
            match netns::veth::attach(&fabric.bridge, ns, veth, address) {
                // An earlier daemon made it (the allocation runs again): kept as it is.
                Ok(_) | Err(netns::Error::Exists { .. }) => {}
                Err(e) => {
                    return Err(NetworkError::new(
                        format!("veth {veth} into {}", fabric.bridge.name),
                        e,
                    ))
                }
            }
        }
        for m in &record.mappings {
            fabric
                .ports
                .insert(m)
                .map_err(|e| NetworkError::new(format!("mapping port {m}"), e))?;
        }
        let endpoints: Vec<Endpoint> = record.mappings.iter().map(Endpoint::of).collect();
        fabric
            .firewall
            .allow_endpoints(&endpoints)
            .map_err(|e| NetworkError::new("opening the mapped ports to other allocations", e))
    }

    /// Removes everything allocation `alloc_id`'s network had, then its record (and lease).
    /// Idempotent; a step that fails is logged and the others still run, and the record is
    /// kept so that the next start's reconcile tries again.
    pub fn teardown(&self, alloc_id: &str) {
        let mut slot = lock(&self.fabric);
        self.teardown_in(&mut slot, alloc_id);
    }

    fn teardown_in(&self, slot: &mut Option<Arc<Fabric>>, alloc_id: &str) {
        let Some(record) = lock(&self.known).records.get(alloc_id).cloned() else {
            return;
        };
        let mut failed = false;
        if !record.mappings.is_empty() {
            match self.fabric_in(slot) {
                Ok(fabric) => {
                    for m in &record.mappings {
                        if let Err(e) = fabric.ports.remove(m) {
                            tracing::warn!(alloc = %alloc_id, "removing port mapping {m}: {e}");
                            failed = true;
                        }
                    }
                    let endpoints: Vec<Endpoint> =
                        record.mappings.iter().map(Endpoint::of).collect();
                    if let Err(e) = fabric.firewall.disallow_endpoints(&endpoints) {
                        tracing::warn!(alloc = %alloc_id, "closing the mapped ports: {e}");
                        failed = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(alloc = %alloc_id, "removing port mappings: {e}");
                    failed = true;
                }
            }
        }
        if let Some(veth) = &record.host_veth {
            if let Err(e) = netns::veth::detach(veth) {
                tracing::warn!(alloc = %alloc_id, "removing veth {veth}: {e}");
                failed = true;
            }
        }
        if let Err(e) = netns::namespace::delete(&record.namespace) {
            tracing::warn!(alloc = %alloc_id, "removing namespace {}: {e}", record.namespace);
            failed = true;
        }
        if failed {
            return;
        }
        let bridges_left = {
            let mut known = lock(&self.known);
            known.records.remove(alloc_id);
            known.records.values().any(|r| r.host_veth.is_some())
        };
        if let Err(e) = self.persist(alloc_id, None) {
            tracing::warn!(alloc = %alloc_id, "forgetting the network record: {e}");
        }
        if record.host_veth.is_some() && !bridges_left {
            if let Err(e) = self.remove_fabric(slot) {
                tracing::warn!("{e}");
            }
        }
    }

    fn remember(&self, alloc_id: &str, record: &AllocNetwork) -> Result<(), NetworkError> {
        lock(&self.known)
            .records
            .insert(alloc_id.to_string(), record.clone());
        self.persist(alloc_id, Some(record)).inspect_err(|_| {
            lock(&self.known).records.remove(alloc_id);
        })
    }

    fn persist(&self, alloc_id: &str, record: Option<&AllocNetwork>) -> Result<(), NetworkError> {
        let record = record.cloned();
        self.state
            .update_alloc(alloc_id, |r| r.network = record)
            .map_err(|e| NetworkError::new("recording the allocation's network", e))
    }

    /// At start, before any allocation runs again: keeps the networks of `live` allocations
    /// (their tasks still run in them) and removes every namespace, veth, port mapping and
    /// isolation entry of this node that belongs to none of them — what a daemon killed
    /// between making and recording, or between stopping and removing, left behind.
    pub fn reconcile(
        &self,
        live: BTreeMap<String, AllocNetwork>,
    ) -> Result<Reconciled, NetworkError> {
        let mut done = Reconciled::default();
        // Known (with their leases) before any kernel work: a reconcile that fails half-way
        // must not let a live allocation's address be leased again.
        lock(&self.known).records = live.clone();
        let namespaces: BTreeSet<&str> = live.values().map(|r| r.namespace.as_str()).collect();
        let veths: BTreeSet<&str> = live
            .values()
            .filter_map(|r| r.host_veth.as_deref())
            .collect();
        let mappings: BTreeSet<Mapping> = live.values().flat_map(|r| r.mappings.clone()).collect();
        for name in netns::namespace::list(&namespace_prefix(&self.tag))
            .map_err(|e| NetworkError::new("listing network namespaces", e))?
        {
            if !namespaces.contains(name.as_str()) {
                netns::namespace::delete(&name)
                    .map_err(|e| NetworkError::new(format!("removing namespace {name}"), e))?;
                done.namespaces.push(name);
            }
        }
        for link in netns::veth::list(&veth_prefix(&self.tag))
            .map_err(|e| NetworkError::new("listing links", e))?
        {
            if !veths.contains(link.name.as_str()) {
                netns::veth::detach(&link.name)
                    .map_err(|e| NetworkError::new(format!("removing veth {}", link.name), e))?;
                done.links.push(link.name);
            }
        }
        // The node-wide objects are only reopened when an earlier daemon made them: a node
        // that never ran a bridge allocation changes nothing here. With no bridge allocation
        // left they go as well.
        let mut slot = lock(&self.fabric);
        let bridges_live = live.values().any(|r| r.host_veth.is_some());
        let exists = self.fabric_exists();
        if exists && !bridges_live {
            self.remove_fabric(&mut slot)?;
            done.fabric_removed = true;
        } else if exists {
            let fabric = self.fabric_in(&mut slot)?;
            for m in fabric
                .ports
                .list()
                .map_err(|e| NetworkError::new("listing port mappings", e))?
            {
                if !mappings.contains(&m) {
                    fabric
                        .ports
                        .remove(&m)
                        .map_err(|e| NetworkError::new(format!("removing mapping {m}"), e))?;
                    done.mappings.push(m);
                }
            }
            let wanted: BTreeSet<Endpoint> = mappings.iter().map(Endpoint::of).collect();
            let stale: Vec<Endpoint> = fabric
                .firewall
                .list_allowed()
                .map_err(|e| NetworkError::new("listing mapped endpoints", e))?
                .into_iter()
                .filter(|e| !wanted.contains(e))
                .collect();
            done.endpoints = stale.len();
            fabric
                .firewall
                .disallow_endpoints(&stale)
                .map_err(|e| NetworkError::new("closing stale endpoints", e))?;
        }
        Ok(done)
    }

    /// Whether an earlier daemon of this node made the node-wide objects: its bridge, its
    /// nftables tables or its eBPF pins.
    fn fabric_exists(&self) -> bool {
        let bridge = netns::bridge::get(&self.settings.bridge_network_name)
            .ok()
            .flatten()
            .is_some();
        let tables = Firewall::list_tables().is_ok_and(|t| !t.is_empty());
        bridge || tables || self.pin_dir().exists()
    }
}

/// Whether `nft` can run here (the fallback and the masquerade need it).
fn probe_nft() -> Result<(), String> {
    netns::nft::probe().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use controlplane::model::AllocatedPortMapping;

    #[test]
    fn the_backend_is_ebpf_when_it_can_run_else_nftables_and_never_nothing_silently() {
        let ok = || Ok(());
        let no = |why: &str| Err(why.to_string());
        assert_eq!(
            choose_port_mapping(PortMappingMode::Auto, ok(), ok()),
            PortMapping::Ebpf
        );
        assert_eq!(
            choose_port_mapping(PortMappingMode::Auto, no("no BTF"), ok()),
            PortMapping::Nftables {
                why: "no BTF".into()
            }
        );
        assert_eq!(
            choose_port_mapping(PortMappingMode::Nftables, ok(), ok()).name(),
            Some("nftables")
        );
        let PortMapping::Unavailable { why } =
            choose_port_mapping(PortMappingMode::Ebpf, no("no bpffs"), ok())
        else {
            panic!("eBPF asked for and missing must not fall back silently");
        };
        assert!(why.contains("client.port_mapping = \"ebpf\"") && why.contains("no bpffs"));
        let PortMapping::Unavailable { why } =
            choose_port_mapping(PortMappingMode::Auto, no("no BTF"), no("no nft"))
        else {
            panic!("nothing can map ports");
        };
        assert!(why.contains("no BTF") && why.contains("no nft"), "{why}");
    }

    #[test]
    fn names_carry_the_node_tag_and_fit_the_kernel() {
        let tag = node_tag("3f2a9c1e-77aa-4c1b-9d2e-0123456789ab");
        assert_eq!(tag, "3f2a9c1e");
        let alloc = "a1b2c3d4-e5f6-4a5b-8c7d-0123456789ab";
        assert_eq!(
            namespace_name(&tag, alloc),
            format!("noded-3f2a9c1e-{alloc}")
        );
        let veth = veth_name(&tag, alloc);
        assert_eq!(veth, "nd3f2aa1b2c3d4");
        assert!(veth.len() <= netns::MAX_IFNAME_LEN);
        assert!(veth.starts_with(&veth_prefix(&tag)));
        assert!(namespace_name(&tag, alloc).starts_with(&namespace_prefix(&tag)));
    }

    #[test]
    fn every_port_maps_both_protocols_to_its_to_port_or_its_own() {
        let mut alloc = Allocation::default();
        alloc.allocated_resources.shared.ports = vec![
            AllocatedPortMapping {
                label: "http".into(),
                value: 23456,
                to: 8080,
                host_ip: "10.0.0.7".into(),
                ..Default::default()
            },
            AllocatedPortMapping {
                label: "same".into(),
                value: 24000,
                to: -1,
                host_ip: String::new(),
                ..Default::default()
            },
        ];
        let alloc_ip = Ipv4Addr::new(172, 26, 64, 2);
        let node_ip = Ipv4Addr::new(10, 0, 0, 9);
        let m = mappings_for(&alloc, Some(node_ip), alloc_ip).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(
            (m[0].proto, m[0].host_ip, m[0].host_port, m[0].alloc_port),
            (Proto::Tcp, Ipv4Addr::new(10, 0, 0, 7), 23456, 8080)
        );
        assert_eq!(m[1].proto, Proto::Udp);
        // No host address on the port: the node's; `to = -1`: the host port itself.
        assert_eq!((m[2].host_ip, m[2].alloc_port), (node_ip, 24000));
        // A port the scheduler never filled in is an error, not a mapping of port 0.
        alloc.allocated_resources.shared.ports[0].value = 0;
        let e = mappings_for(&alloc, Some(node_ip), alloc_ip).unwrap_err();
        assert!(e.to_string().contains("port \"http\""), "{e}");
    }
}
