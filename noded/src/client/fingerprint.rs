//! What a node is: CPU, memory, kernel, OS, cgroup layout, hostname, storage — read from
//! `/proc`, `/sys` and `/etc`, reported under Nomad's attribute names (`cpu.numcores`,
//! `kernel.version`, `unique.storage.volume`, …) so constraints written for Nomad keep
//! working — plus noded's own `noded.version`, `noded.bridge` and `noded.ebpf`.
//!
//! Parsing is pure (tested on captured text); [`gather_with`] does the reading. The client
//! gathers again every [`super::REFINGERPRINT_INTERVAL`] and re-registers the node when
//! [`facts_changed`] says so.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use controlplane::model::{
    DriverInfo, NodeCpuResources, NodeDiskResources, NodeMemoryResources,
    NodeReservedNetworkResources, NodeResources,
};

use super::settings::{self, ReservedConfig};

/// CPU facts from `/proc/cpuinfo`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CpuInfo {
    pub cores: u32,
    pub mhz: u32,
    pub model: String,
}

pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut info = CpuInfo::default();
    let mut mhz_sum = 0f64;
    let mut mhz_count = 0u32;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => info.cores += 1,
            "cpu MHz" => {
                if let Ok(v) = value.parse::<f64>() {
                    mhz_sum += v;
                    mhz_count += 1;
                }
            }
            "model name" if info.model.is_empty() => info.model = value.to_string(),
            _ => {}
        }
    }
    if mhz_count > 0 {
        info.mhz = (mhz_sum / f64::from(mhz_count)).round() as u32;
    }
    info
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// `ID` and `VERSION_ID` from `/etc/os-release`.
pub fn parse_os_release(text: &str) -> (String, String) {
    let mut id = String::new();
    let mut version = String::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').to_string();
        match k.trim() {
            "ID" => id = v,
            "VERSION_ID" => version = v,
            _ => {}
        }
    }
    (id, version)
}

/// The effective capability set from `/proc/self/status` (`CapEff:` in hex).
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// Linux capability numbers the detections below look for.
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

fn has_cap(cap_eff: u64, cap: u32) -> bool {
    cap_eff & (1u64 << cap) != 0
}

/// The filesystem `path` lives on, from `/proc/self/mountinfo`: the source of the mount with
/// the longest mount point that contains `path` (what `df` prints first, e.g. `/dev/vda1`).
pub fn mount_source(mountinfo: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        // "36 35 98:0 /root /mnt rw,noatime master:1 - ext3 /dev/root rw,errors=continue"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = left.split_whitespace().nth(4) else {
            continue;
        };
        let Some(source) = right.split_whitespace().nth(1) else {
            continue;
        };
        // mountinfo escapes spaces as \040.
        let mount_point = mount_point.replace("\\040", " ");
        if path.starts_with(&mount_point)
            && best
                .as_ref()
                .is_none_or(|(len, _)| mount_point.len() >= *len)
        {
            best = Some((mount_point.len(), source.to_string()));
        }
    }
    best.map(|(_, source)| source)
}

/// Whether the kernel has the bridge module as Nomad looks for it: loaded (`/sys/module/bridge`
/// exists), built in (`modules.builtin` lists `…/bridge.ko`), or loadable (`modules.dep` has
/// a `…/bridge.ko` entry, compressed or not).
pub fn bridge_module_available(loaded: bool, modules_builtin: &str, modules_dep: &str) -> bool {
    let builtin = modules_builtin
        .lines()
        .any(|l| l.trim_end().ends_with("/bridge.ko"));
    let loadable = modules_dep.lines().any(|l| {
        l.split_once(':').is_some_and(|(module, _)| {
            module.ends_with("/bridge.ko")
                || module.ends_with("/bridge.ko.xz")
                || module.ends_with("/bridge.ko.zst")
                || module.ends_with("/bridge.ko.gz")
        })
    });
    loaded || builtin || loadable
}

/// `noded.bridge`: this host could give allocations bridge networking — it has network
/// devices in sysfs, the bridge module, and this process holds `CAP_NET_ADMIN` to make
/// bridges and veth pairs. A detection only: nothing is created.
pub fn bridge_capable(sys_class_net: bool, bridge_module: bool, cap_eff: u64) -> bool {
    sys_class_net && bridge_module && has_cap(cap_eff, CAP_NET_ADMIN)
}

/// `noded.ebpf`: this host could attach eBPF programs to cgroups — the `bpf(2)` call answers,
/// a cgroup2 tree is mounted (cgroup programs attach there, even on hybrid hosts), and this
/// process holds `CAP_BPF` or `CAP_SYS_ADMIN`. A detection only: nothing is loaded.
pub fn ebpf_capable(bpf_syscall: bool, cgroup2_mounted: bool, cap_eff: u64) -> bool {
    bpf_syscall && cgroup2_mounted && (has_cap(cap_eff, CAP_BPF) || has_cap(cap_eff, CAP_SYS_ADMIN))
}

/// The address of interface `name` among `addrs` (interface, address): its first IPv4
/// address, else its first IPv6 one, as Nomad's network fingerprint picks.
pub fn pick_interface_address(addrs: &[(String, IpAddr)], name: &str) -> Result<IpAddr, String> {
    let mine: Vec<IpAddr> = addrs
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, a)| *a)
        .collect();
    if mine.is_empty() && !addrs.iter().any(|(n, _)| n == name) {
        let mut names: Vec<&str> = addrs.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        return Err(format!(
            "no interface {name:?} with an address on this host (interfaces with addresses: {}); name one of them or leave network_interface out",
            names.join(", ")
        ));
    }
    mine.iter()
        .find(|a| a.is_ipv4())
        .or_else(|| mine.first())
        .copied()
        .ok_or_else(|| format!("interface {name:?} has no address; give it one or name another"))
}

/// The address of this host's interface `name` (see [`pick_interface_address`]).
pub fn interface_address(name: &str) -> Result<IpAddr, String> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| format!("listing interfaces: {e}"))?;
    pick_interface_address(&list_addresses(addrs), name)
}

/// Every (interface, address) of this host; empty when they cannot be listed.
pub fn interface_addresses() -> Vec<(String, IpAddr)> {
    match nix::ifaddrs::getifaddrs() {
        Ok(addrs) => list_addresses(addrs),
        Err(e) => {
            tracing::warn!("listing interfaces: {e}");
            Vec::new()
        }
    }
}

fn list_addresses(addrs: nix::ifaddrs::InterfaceAddressIterator) -> Vec<(String, IpAddr)> {
    addrs
        .filter_map(|ifa| {
            let addr = ifa.address?;
            let ip = if let Some(v4) = addr.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else {
                IpAddr::V6(addr.as_sockaddr_in6()?.ip())
            };
            Some((ifa.interface_name, ip))
        })
        .collect()
}

/// The networks the node offers allocations (Nomad's `NodeNetworks`): `host` on the interface
/// holding the node's address `ip` (among `addrs`, alias `default`), one `host` network per
/// `client.host_network` found on the host (alias: its name; one that is not found is left
/// out and logged), and `bridge` on `bridge` when the client offers bridge networking.
pub fn node_networks(
    ip: &str,
    addrs: &[(String, IpAddr)],
    host_networks: &BTreeMap<String, settings::HostNetwork>,
    bridge: Option<&str>,
) -> Vec<controlplane::model::NodeNetworkResource> {
    use controlplane::model::{NodeNetworkAddress, NodeNetworkResource};
    let mut networks = Vec::new();
    if let Ok(address) = ip.parse::<IpAddr>() {
        let device = addrs
            .iter()
            .find(|(_, a)| *a == address)
            .map(|(name, _)| name.clone())
            .unwrap_or_default();
        networks.push(NodeNetworkResource {
            mode: "host".into(),
            device,
            addresses: vec![NodeNetworkAddress {
                family: if address.is_ipv4() { "ipv4" } else { "ipv6" }.into(),
                alias: "default".into(),
                address: ip.to_string(),
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    for (name, host_network) in host_networks {
        match host_network.pick(addrs) {
            Some((device, address)) => networks.push(NodeNetworkResource {
                mode: "host".into(),
                device,
                addresses: vec![NodeNetworkAddress {
                    family: "ipv4".into(),
                    alias: name.clone(),
                    address: address.to_string(),
                    reserved_ports: host_network.reserved_ports.clone(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            None => tracing::warn!(
                "client.host_network {name:?}: no address of this host matches (cidr {:?}, interface {:?}); ports asking for it are not placed here",
                host_network.cidr.map(|c| c.to_string()),
                host_network.interface
            ),
        }
    }
    if let Some(bridge) = bridge {
        networks.push(NodeNetworkResource {
            mode: "bridge".into(),
            device: bridge.to_string(),
            ..Default::default()
        });
    }
    networks
}

/// What the fingerprint is asked to take into account.
#[derive(Debug, Clone, Default)]
pub struct FingerprintConfig {
    /// The allocation directory: its filesystem is the node's disk.
    pub alloc_dir: PathBuf,
    /// `unique.network.ip-address`.
    pub ip_address: String,
    /// What the host keeps (`client.reserved`): reserved cores are not reservable by tasks.
    pub reserved: ReservedConfig,
    /// The dynamic port range put on the node's resources.
    pub min_dynamic_port: u16,
    pub max_dynamic_port: u16,
    /// The bridge allocations in bridge mode join, when the client offers bridge networking
    /// (its network set-up is ready): the node lists a `bridge` network.
    pub bridge_network: Option<String>,
    /// How the client maps host ports into allocations (`ebpf` or `nftables`), when bridge
    /// networking is offered: the `noded.port_mapping` attribute.
    pub port_mapping: Option<String>,
    /// `client.host_network` blocks: each found on the host is listed under its name.
    pub host_networks: BTreeMap<String, settings::HostNetwork>,
}

/// Everything fingerprinted about this machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint {
    pub attributes: BTreeMap<String, String>,
    pub resources: NodeResources,
    /// What the host keeps, in the node's shape (`Node.reserved_resources`).
    pub reserved: NodeResources,
    pub hostname: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The machine's totals, against which `client.reserved` is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineTotals {
    /// Cores × MHz.
    pub cpu_mhz: u64,
    /// MHz of one core.
    pub core_mhz: u64,
    pub memory_mb: u64,
    /// Size of the filesystem holding the allocation directory.
    pub disk_mb: u64,
    /// The cores this machine has online.
    pub cores: Vec<u32>,
}

/// CPU as the fingerprint reads it: (online cores, MHz per core, model name).
fn read_cpu() -> (Vec<u32>, u32, String) {
    let cpu = parse_cpuinfo(&read("/proc/cpuinfo"));
    let online = settings::parse_cores(read("/sys/devices/system/cpu/online").trim())
        .ok()
        .filter(|cores| !cores.is_empty());
    let cores = match online {
        Some(cores) => cores,
        None => {
            let n = if cpu.cores == 0 {
                std::thread::available_parallelism()
                    .map(|n| n.get() as u32)
                    .unwrap_or(1)
            } else {
                cpu.cores
            };
            (0..n).collect()
        }
    };
    let mhz = if cpu.mhz == 0 {
        tracing::warn!("/proc/cpuinfo gives no CPU speed; assuming 1000 MHz per core");
        1000
    } else {
        cpu.mhz
    };
    (cores, mhz, cpu.model)
}

/// Size and free space of the filesystem holding `path`, or of its nearest existing ancestor
/// (the alloc dir may not exist before the client first starts): (total, free) bytes.
fn filesystem_bytes(path: &Path) -> Option<(u64, u64)> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let stat = nix::sys::statvfs::statvfs(existing).ok()?;
    let frsize = stat.fragment_size();
    Some((
        stat.blocks().saturating_mul(frsize),
        stat.blocks_available().saturating_mul(frsize),
    ))
}

/// Reads the machine's totals (for checking `client.reserved` when the config is built).
pub fn machine_totals(alloc_dir: &Path) -> Result<MachineTotals, String> {
    let (cores, mhz, _) = read_cpu();
    let memory = parse_meminfo_total(&read("/proc/meminfo"))
        .ok_or_else(|| "cannot read MemTotal from /proc/meminfo".to_string())?;
    let (disk, _) = filesystem_bytes(alloc_dir)
        .ok_or_else(|| format!("cannot stat the filesystem of {}", alloc_dir.display()))?;
    Ok(MachineTotals {
        cpu_mhz: cores.len() as u64 * u64::from(mhz),
        core_mhz: u64::from(mhz),
        memory_mb: memory / MIB,
        disk_mb: disk / MIB,
        cores,
    })
}

const MIB: u64 = 1024 * 1024;

/// Reads the machine with the defaults: `data_dir`'s filesystem, nothing reserved.
pub fn gather(data_dir: &Path, ip_address: &str) -> Fingerprint {
    gather_with(&FingerprintConfig {
        alloc_dir: data_dir.to_path_buf(),
        ip_address: ip_address.to_string(),
        min_dynamic_port: settings::DEFAULT_MIN_DYNAMIC_PORT,
        max_dynamic_port: settings::DEFAULT_MAX_DYNAMIC_PORT,
        ..Default::default()
    })
}

/// Reads the machine. A fact that cannot be read is left out (and says so in the log) rather
/// than guessed, except CPU speed: a VM without `cpu MHz` gets 1000 MHz per core, logged.
pub fn gather_with(config: &FingerprintConfig) -> Fingerprint {
    let mut attrs = BTreeMap::new();
    let (cores, mhz, model) = read_cpu();
    let reserved = &config.reserved;
    let reservable: Vec<u32> = cores
        .iter()
        .copied()
        .filter(|c| !reserved.cores.contains(c))
        .collect();
    let numcores = cores.len() as u32;
    let total_compute = u64::from(numcores) * u64::from(mhz);
    attrs.insert("cpu.numcores".into(), numcores.to_string());
    attrs.insert("cpu.reservablecores".into(), reservable.len().to_string());
    attrs.insert("cpu.frequency".into(), mhz.to_string());
    attrs.insert("cpu.totalcompute".into(), total_compute.to_string());
    attrs.insert(
        "cpu.usablecompute".into(),
        (reservable.len() as u64 * u64::from(mhz)).to_string(),
    );
    attrs.insert("cpu.arch".into(), std::env::consts::ARCH.to_string());
    if !model.is_empty() {
        attrs.insert("cpu.modelname".into(), model);
    }
    let memory = parse_meminfo_total(&read("/proc/meminfo")).unwrap_or(0);
    attrs.insert("memory.totalbytes".into(), memory.to_string());

    let uname = nix::sys::utsname::uname().ok();
    let release = uname
        .as_ref()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let machine = uname
        .as_ref()
        .map(|u| u.machine().to_string_lossy().into_owned())
        .unwrap_or_default();
    attrs.insert("kernel.name".into(), "linux".into());
    // Nomad's is the whole release ("6.1.0-18-amd64"); `kernel.release` says the same.
    attrs.insert("kernel.version".into(), release.clone());
    attrs.insert("kernel.release".into(), release.clone());
    attrs.insert("kernel.arch".into(), machine);
    let (os, os_version) = parse_os_release(&read("/etc/os-release"));
    attrs.insert("os.name".into(), os);
    attrs.insert("os.version".into(), os_version);

    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".to_string());
    attrs.insert("unique.hostname".into(), hostname.clone());
    attrs.insert(
        "unique.network.ip-address".into(),
        config.ip_address.clone(),
    );
    attrs.insert(
        "nomad.version".into(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    attrs.insert(
        "noded.version".into(),
        env!("CARGO_PKG_VERSION").to_string(),
    );

    let mut cgroup2 = false;
    match isolation::cgroup::CgroupLayout::detect() {
        Ok(layout) => {
            let (version, mountpoint) = match &layout {
                isolation::cgroup::CgroupLayout::V2 { root } => {
                    cgroup2 = true;
                    ("v2", root.display().to_string())
                }
                isolation::cgroup::CgroupLayout::V1 {
                    hierarchies,
                    unified,
                } => {
                    cgroup2 = unified.is_some();
                    (
                        "v1",
                        hierarchies
                            .first()
                            .and_then(|h| h.mount_point.parent())
                            .map(|p| p.display().to_string())
                            .unwrap_or_default(),
                    )
                }
            };
            // Nomad's: "2" only for a pure cgroup2 host; hybrid hosts are "1".
            attrs.insert(
                "os.cgroups.version".into(),
                version.trim_start_matches('v').to_string(),
            );
            attrs.insert("unique.cgroup.version".into(), version.to_string());
            attrs.insert("unique.cgroup.mountpoint".into(), mountpoint);
        }
        Err(e) => tracing::warn!("cgroup layout: {e}"),
    }

    let cap_eff = parse_cap_eff(&read("/proc/self/status")).unwrap_or(0);
    let modules = format!("/lib/modules/{release}");
    let bridge_module = bridge_module_available(
        Path::new("/sys/module/bridge").exists(),
        &read(&format!("{modules}/modules.builtin")),
        &read(&format!("{modules}/modules.dep")),
    );
    let bridge = bridge_capable(Path::new("/sys/class/net").is_dir(), bridge_module, cap_eff);
    attrs.insert("noded.bridge".into(), bridge.to_string());
    if let Some(how) = config.port_mapping.as_ref().filter(|_| bridge) {
        attrs.insert("noded.port_mapping".into(), how.clone());
    }
    let bpf = crate::sys::probe_bpf_syscall();
    if let Err(e) = &bpf {
        tracing::debug!("bpf(2) is not available: {e}");
    }
    attrs.insert(
        "noded.ebpf".into(),
        ebpf_capable(bpf.is_ok(), cgroup2, cap_eff).to_string(),
    );

    let mut disk_mb = 0i64;
    match filesystem_bytes(&config.alloc_dir) {
        Some((total, free)) => {
            let volume = mount_source(&read("/proc/self/mountinfo"), &config.alloc_dir)
                .unwrap_or_else(|| config.alloc_dir.display().to_string());
            attrs.insert("unique.storage.volume".into(), volume);
            attrs.insert("unique.storage.bytesfree".into(), free.to_string());
            attrs.insert("unique.storage.bytestotal".into(), total.to_string());
            // Nomad's node disk is the filesystem's size, not what is free now.
            disk_mb = i64::try_from(total / MIB).unwrap_or(i64::MAX);
        }
        None => tracing::warn!(
            "cannot stat the filesystem of {}: the node reports no disk",
            config.alloc_dir.display()
        ),
    }

    let resources = NodeResources {
        cpu: NodeCpuResources {
            cpu_shares: i64::try_from(total_compute).unwrap_or(i64::MAX),
            total_cpu_cores: numcores,
            reservable_cpu_cores: reservable,
        },
        memory: NodeMemoryResources {
            memory_mb: i64::try_from(memory / MIB).unwrap_or(i64::MAX),
        },
        disk: NodeDiskResources { disk_mb },
        min_dynamic_port: config.min_dynamic_port,
        max_dynamic_port: config.max_dynamic_port,
        networks: None,
        node_networks: node_networks(
            &config.ip_address,
            &interface_addresses(),
            &config.host_networks,
            // Offered only where the host can make bridges and the client can map ports.
            config.bridge_network.as_deref().filter(|_| bridge),
        ),
    };
    Fingerprint {
        attributes: attrs,
        resources,
        reserved: reserved_resources(reserved, u64::from(mhz)),
        hostname,
    }
}

/// `client.reserved` in the node's shape. Reserved cores count as reserved compute too (no
/// task runs on them) and are listed in `Cpu.ReservableCpuCores` of the reserved resources.
pub fn reserved_resources(reserved: &ReservedConfig, core_mhz: u64) -> NodeResources {
    let cores_mhz = reserved.cores.len() as u64 * core_mhz;
    let mhz = reserved.cpu_mhz.saturating_add(cores_mhz);
    NodeResources {
        cpu: NodeCpuResources {
            cpu_shares: i64::try_from(mhz).unwrap_or(i64::MAX),
            total_cpu_cores: reserved.cores.len() as u32,
            reservable_cpu_cores: reserved.cores.clone(),
        },
        memory: NodeMemoryResources {
            memory_mb: i64::try_from(reserved.memory_mb).unwrap_or(i64::MAX),
        },
        disk: NodeDiskResources {
            disk_mb: i64::try_from(reserved.disk_mb).unwrap_or(i64::MAX),
        },
        min_dynamic_port: 0,
        max_dynamic_port: 0,
        networks: (!reserved.reserved_ports.is_empty()).then(|| NodeReservedNetworkResources {
            reserved_host_ports: reserved.reserved_ports.clone(),
        }),
        node_networks: Vec::new(),
    }
}

/// What a re-fingerprint compares: the parts of the node the fingerprint and the drivers set.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeFacts {
    pub attributes: BTreeMap<String, String>,
    pub resources: NodeResources,
    pub reserved: NodeResources,
    pub drivers: BTreeMap<String, DriverInfo>,
}

/// Attributes that move on their own and are not worth a re-registration: free disk space
/// changes with every file written.
const VOLATILE_ATTRIBUTES: [&str; 1] = ["unique.storage.bytesfree"];

/// Whether the node changed between two fingerprints in a way the servers must hear about:
/// attributes (but not free disk space), resources, or a driver's detection, health or
/// attributes (not its update time).
pub fn facts_changed(old: &NodeFacts, new: &NodeFacts) -> bool {
    let attrs = |f: &NodeFacts| {
        f.attributes
            .iter()
            .filter(|(k, _)| !VOLATILE_ATTRIBUTES.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    let drivers = |f: &NodeFacts| {
        f.drivers
            .iter()
            .map(|(name, d)| {
                (
                    name.clone(),
                    (
                        d.detected,
                        d.healthy,
                        d.health_description.clone(),
                        d.attributes.clone(),
                    ),
                )
            })
            .collect::<BTreeMap<_, _>>()
    };
    attrs(old) != attrs(new)
        || old.resources != new.resources
        || old.reserved != new.reserved
        || drivers(old) != drivers(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_gives_cores_speed_and_model() {
        let text = "processor\t: 0\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2596.142\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2596.000\n";
        let info = parse_cpuinfo(text);
        assert_eq!(
            info,
            CpuInfo {
                cores: 2,
                mhz: 2596,
                model: "AMD EPYC".into()
            }
        );
        assert_eq!(parse_cpuinfo("garbage"), CpuInfo::default());
    }

    #[test]
    fn meminfo_and_os_release() {
        assert_eq!(
            parse_meminfo_total("MemTotal:       24684084 kB\nMemFree: 1 kB"),
            Some(24684084 * 1024)
        );
        assert_eq!(parse_meminfo_total("nothing"), None);
        let (id, v) = parse_os_release("PRETTY_NAME=\"Debian\"\nID=debian\nVERSION_ID=\"12\"\n");
        assert_eq!((id.as_str(), v.as_str()), ("debian", "12"));
    }

    #[test]
    fn capabilities_mount_sources_and_modules() {
        let status = "Name:\tnoded\nCapPrm:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        let eff = parse_cap_eff(status).unwrap();
        assert!(has_cap(eff, CAP_NET_ADMIN) && has_cap(eff, CAP_BPF));
        assert_eq!(parse_cap_eff("CapEff:\tzz\n"), None);
        assert_eq!(parse_cap_eff("nothing"), None);

        let mountinfo = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
30 22 0:25 / /sys rw,nosuid shared:7 - sysfs sysfs rw
41 22 254:17 / /var/lib/noded rw,relatime shared:20 - xfs /dev/vdb rw
42 22 254:18 / /var/lib/noded\\040two rw,relatime shared:21 - xfs /dev/vdc rw
";
        let src = |p: &str| mount_source(mountinfo, Path::new(p));
        assert_eq!(src("/var/lib/noded/alloc").as_deref(), Some("/dev/vdb"));
        assert_eq!(src("/var/lib/noded two/alloc").as_deref(), Some("/dev/vdc"));
        // A prefix of a name is not a parent directory.
        assert_eq!(src("/var/lib/nodedx").as_deref(), Some("/dev/vda1"));
        assert_eq!(src("/tmp").as_deref(), Some("/dev/vda1"));
        assert_eq!(mount_source("", Path::new("/tmp")), None);

        let dep =
            "kernel/net/bridge/bridge.ko.xz: kernel/net/802/stp.ko.xz\nkernel/net/802/stp.ko.xz:\n";
        assert!(bridge_module_available(false, "", dep));
        assert!(bridge_module_available(
            false,
            "kernel/net/bridge/bridge.ko\n",
            ""
        ));
        assert!(bridge_module_available(true, "", ""));
        assert!(!bridge_module_available(
            false,
            "kernel/net/bridge/br_netfilter.ko\n",
            "kernel/net/bridge/br_netfilter.ko: kernel/net/bridge/bridge.ko\n"
        ));
    }

    #[test]
    fn bridge_and_ebpf_need_the_kernel_and_the_capability() {
        let net_admin = 1u64 << CAP_NET_ADMIN;
        assert!(bridge_capable(true, true, net_admin));
        assert!(!bridge_capable(true, true, 0));
        assert!(!bridge_capable(false, true, net_admin));
        assert!(!bridge_capable(true, false, net_admin));
        let bpf = 1u64 << CAP_BPF;
        let sys_admin = 1u64 << CAP_SYS_ADMIN;
        assert!(ebpf_capable(true, true, bpf));
        assert!(ebpf_capable(true, true, sys_admin));
        assert!(!ebpf_capable(true, true, net_admin));
        assert!(!ebpf_capable(false, true, bpf));
        assert!(!ebpf_capable(true, false, bpf));
    }

    #[test]
    fn reserved_cores_count_as_reserved_compute_and_ports_keep_their_spelling() {
        let reserved = ReservedConfig {
            cpu_mhz: 500,
            memory_mb: 256,
            disk_mb: 1024,
            cores: vec![0, 1],
            reserved_ports: "22,8000-8001".into(),
            ports: vec![22, 8000, 8001],
        };
        let r = reserved_resources(&reserved, 2000);
        assert_eq!(r.cpu.cpu_shares, 4500);
        assert_eq!(r.cpu.reservable_cpu_cores, vec![0, 1]);
        assert_eq!((r.memory.memory_mb, r.disk.disk_mb), (256, 1024));
        assert_eq!(
            r.networks.map(|n| n.reserved_host_ports).as_deref(),
            Some("22,8000-8001")
        );
        assert_eq!(
            reserved_resources(&ReservedConfig::default(), 2000),
            NodeResources::default()
        );
    }

    fn facts() -> NodeFacts {
        NodeFacts {
            attributes: [
                ("cpu.numcores", "2"),
                ("unique.storage.bytesfree", "1000"),
                ("kernel.version", "6.1.0"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            resources: NodeResources {
                memory: NodeMemoryResources { memory_mb: 1024 },
                ..Default::default()
            },
            reserved: NodeResources::default(),
            drivers: [(
                "exec".to_string(),
                DriverInfo {
                    detected: true,
                    healthy: true,
                    health_description: "Healthy".into(),
                    update_time: "2026-01-01T00:00:00Z".into(),
                    ..Default::default()
                },
            )]
            .into(),
        }
    }

    #[test]
    fn a_refingerprint_ignores_free_disk_and_driver_timestamps_but_not_real_changes() {
        let old = facts();
        assert!(!facts_changed(&old, &old.clone()));

        let mut new = old.clone();
        new.attributes
            .insert("unique.storage.bytesfree".into(), "999".into());
        if let Some(d) = new.drivers.get_mut("exec") {
            d.update_time = "2026-01-01T00:00:30Z".into();
        }
        assert!(!facts_changed(&old, &new), "jitter is not a change");

        let mut new = old.clone();
        new.attributes
            .insert("kernel.version".into(), "6.2.0".into());
        assert!(facts_changed(&old, &new), "an attribute changed");

        let mut new = old.clone();
        new.attributes.remove("cpu.numcores");
        assert!(facts_changed(&old, &new), "an attribute went away");

        let mut new = old.clone();
        new.resources.memory.memory_mb = 2048;
        assert!(facts_changed(&old, &new), "memory changed");

        let mut new = old.clone();
        new.reserved.cpu.cpu_shares = 100;
        assert!(facts_changed(&old, &new), "reserved changed");

        let mut new = old.clone();
        if let Some(d) = new.drivers.get_mut("exec") {
            d.healthy = false;
            d.health_description = "Unhealthy".into();
        }
        assert!(facts_changed(&old, &new), "a driver turned unhealthy");

        let mut new = old.clone();
        new.drivers.insert("raw_exec".into(), DriverInfo::default());
        assert!(facts_changed(&old, &new), "a driver appeared");
    }

    #[test]
    fn an_interface_gives_its_first_ipv4_address() {
        let v4 = |s: &str| -> IpAddr { s.parse().unwrap() };
        let addrs = vec![
            ("lo".to_string(), v4("127.0.0.1")),
            ("eth0".to_string(), v4("fe80::1")),
            ("eth0".to_string(), v4("10.0.0.7")),
            ("eth0".to_string(), v4("10.0.0.8")),
            ("wg0".to_string(), v4("fd00::2")),
        ];
        assert_eq!(pick_interface_address(&addrs, "eth0"), Ok(v4("10.0.0.7")));
        assert_eq!(pick_interface_address(&addrs, "wg0"), Ok(v4("fd00::2")));
        let e = pick_interface_address(&addrs, "eth9").unwrap_err();
        assert!(
            e.contains("no interface \"eth9\"") && e.contains("eth0, lo, wg0"),
            "{e}"
        );
    }

    #[test]
    fn the_node_lists_host_on_its_interface_and_bridge_when_offered() {
        let addrs = vec![
            ("lo".to_string(), "127.0.0.1".parse().unwrap()),
            ("eth0".to_string(), "10.0.0.7".parse().unwrap()),
        ];
        let none = BTreeMap::new();
        let host_only = node_networks("10.0.0.7", &addrs, &none, None);
        assert_eq!(host_only.len(), 1);
        assert_eq!(
            (host_only[0].mode.as_str(), host_only[0].device.as_str()),
            ("host", "eth0")
        );
        assert_eq!(host_only[0].addresses[0].alias, "default");
        let both = node_networks("10.0.0.7", &addrs, &none, Some("noded0"));
        assert_eq!(
            both.iter().map(|n| n.mode.as_str()).collect::<Vec<_>>(),
            ["host", "bridge"]
        );
        assert_eq!(both[1].device, "noded0");
        // No usable address: nothing to offer in host mode, and nothing guessed.
        assert!(node_networks("", &addrs, &none, None).is_empty());
        // A host network by cidr, one by interface, one the host does not have.
        let mut addrs = addrs;
        addrs.push(("eth1".to_string(), "203.0.113.5".parse().unwrap()));
        let host_networks = BTreeMap::from([
            (
                "public".to_string(),
                settings::HostNetwork {
                    cidr: Some("203.0.113.0/24".parse().unwrap()),
                    reserved_ports: "22".into(),
                    ..Default::default()
                },
            ),
            (
                "lan".to_string(),
                settings::HostNetwork {
                    interface: Some("eth0".into()),
                    ..Default::default()
                },
            ),
            (
                "gone".to_string(),
                settings::HostNetwork {
                    cidr: Some("192.0.2.0/24".parse().unwrap()),
                    ..Default::default()
                },
            ),
        ]);
        let all = node_networks("10.0.0.7", &addrs, &host_networks, None);
        let aliases: Vec<(&str, &str, &str)> = all
            .iter()
            .flat_map(|n| {
                n.addresses
                    .iter()
                    .map(move |a| (a.alias.as_str(), n.device.as_str(), a.address.as_str()))
            })
            .collect();
        assert_eq!(
            aliases,
            [
                ("default", "eth0", "10.0.0.7"),
                ("lan", "eth0", "10.0.0.7"),
                ("public", "eth1", "203.0.113.5")
            ]
        );
        assert_eq!(all[2].addresses[0].reserved_ports, "22");
    }
}
