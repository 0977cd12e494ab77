//! The bench's network: a "host" namespace playing the agent's (noded's bridge, firewall and
//! eBPF port mapper, made with the crates' API as the client makes them), an "ext" namespace
//! playing another machine, and the guard that removes all of it.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use ebpf::{PortMapper, PortMapperConfig};
use netns::{Bridge, BridgeConfig, Firewall, Ipv4Cidr};

use crate::{Context, Result};

/// The host's address on the ext link: the mappings' `host_ip`.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The ext namespace's address: the clients'.
pub const EXT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const EXT_PREFIX: u8 = 24;

/// Everything the bench made; removed on drop.
pub struct Topology {
    /// `ndb-<pid>`: the prefix of every namespace of this run.
    pub run_id: String,
    pub host_ns: String,
    pub ext_ns: String,
    /// The host side of the ext link (tc programs attach here).
    pub ext_if: String,
    pub bridge: Bridge,
    pub firewall: Firewall,
    pub mapper: PortMapper,
    pub ebpf_open_ms: f64,
    pub pin_dir: PathBuf,
    /// Where the C floor pins its maps.
    pub floor_pin_dir: PathBuf,
    /// pid in base 36: short names for links.
    pub short: String,
    _cleanup: Cleanup,
}

fn base36(mut v: u32) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[(v % 36) as usize]);
        v /= 36;
        if v == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs `cmd args…`, failing with its stderr.
pub fn run(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .ctx(|| format!("running {cmd} {}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `f` on a thread inside the namespace `ns`.
pub fn in_ns<R: Send>(ns: &str, f: impl FnOnce() -> Result<R> + Send) -> Result<R> {
    netns::namespace::run_in(ns, f).ctx(|| format!("entering namespace {ns}"))?
}

/// Moves the calling thread into the namespace `ns` (for threads this bench owns).
pub fn enter(ns: &str) -> Result<()> {
    let path = netns::namespace::path(ns);
    let file = File::open(&path).ctx(|| format!("opening {}", path.display()))?;
    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .ctx(|| format!("entering {}", path.display()))
}

impl Topology {
    pub fn create() -> Result<Topology> {
        let pid = std::process::id();
        let run_id = format!("ndb-{pid}");
        let short = base36(pid);
        let cleanup = Cleanup {
            prefix: format!("{run_id}-"),
            host_ns: format!("{run_id}-host"),
            ext_if: format!("nbx{short}"),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/noded-netbench-{pid}")),
            floor_pin_dir: PathBuf::from(format!("/sys/fs/bpf/noded-netbench-{pid}-floor")),
        };
        let host_ns = cleanup.host_ns.clone();
        let ext_ns = format!("{run_id}-ext");
        let ext_if = cleanup.ext_if.clone();
        for ns in [&host_ns, &ext_ns] {
            netns::namespace::create(ns).ctx(|| format!("creating namespace {ns}"))?;
            netns::namespace::loopback_up(ns).ctx(|| format!("lo up in {ns}"))?;
        }
        // The ext link is scenery, not measured: `ip -n` (never `ip netns exec`).
        let host_addr = format!("{HOST_IP}/{EXT_PREFIX}");
        let ext_addr = format!("{EXT_IP}/{EXT_PREFIX}");
        run(
            "ip",
            &[
                "-n", &host_ns, "link", "add", &ext_if, "type", "veth", "peer", "name", "eth0",
                "netns", &ext_ns,
            ],
        )?;
        run(
            "ip",
            &["-n", &host_ns, "addr", "add", &host_addr, "dev", &ext_if],
        )?;
        run("ip", &["-n", &host_ns, "link", "set", &ext_if, "up"])?;
        run(
            "ip",
            &["-n", &ext_ns, "addr", "add", &ext_addr, "dev", "eth0"],
        )?;
        run("ip", &["-n", &ext_ns, "link", "set", "eth0", "up"])?;

        // The node-wide objects, as `NetworkManager::make_fabric` makes them.
        let subnet: Ipv4Cidr = Ipv4Cidr::new(Ipv4Addr::new(172, 26, 64, 0), 20)
            .ctx(|| "the bench subnet".to_string())?;
        let cgroup2_root = ebpf::cgroup2_root()
            .ok_or_else(|| "no cgroup2 mount for the eBPF port mapping".to_string())?;
        ebpf::probe().map_err(|u| format!("eBPF cannot run here: {}", u.reason))?;
        let config = PortMapperConfig {
            pin_dir: cleanup.pin_dir.clone(),
            cgroup2_root,
            interfaces: vec![ext_if.clone()],
        };
        let (bridge, firewall, mapper) = in_ns(&host_ns, || {
            let bridge = netns::bridge::ensure(&BridgeConfig {
                name: netns::bridge::DEFAULT_NAME.to_string(),
                subnet,
            })
            .ctx(|| "the bridge".to_string())?;
            let firewall = Firewall::ensure(&bridge).ctx(|| "the firewall".to_string())?;
            let mapper = PortMapper::open(&config).ctx(|| "the eBPF port mapper".to_string())?;
            Ok((bridge, firewall, mapper))
        })?;
        let ebpf_open_ms = mapper.setup_time().as_secs_f64() * 1e3;
        std::fs::create_dir_all(&cleanup.floor_pin_dir)
            .ctx(|| format!("creating {}", cleanup.floor_pin_dir.display()))?;
        Ok(Topology {
            run_id,
            host_ns,
            ext_ns,
            ext_if,
            bridge,
            firewall,
            mapper,
            ebpf_open_ms,
            pin_dir: cleanup.pin_dir.clone(),
            floor_pin_dir: cleanup.floor_pin_dir.clone(),
            short,
            _cleanup: cleanup,
        })
    }

    /// Detaches and unpins the eBPF port mapping (for the nftables run).
    pub fn remove_ebpf(&self) -> Result<()> {
        let (pin_dir, ifs) = (self.pin_dir.clone(), vec![self.ext_if.clone()]);
        in_ns(&self.host_ns, || {
            PortMapper::remove_all(&pin_dir, &ifs).ctx(|| "removing the eBPF port mapping".into())
        })
    }

    /// The name of an allocation namespace of this run.
    pub fn alloc_ns(&self, tag: &str) -> String {
        format!("{}-{tag}", self.run_id)
    }

    /// A host-side veth name of this run (≤ 15 bytes).
    pub fn veth(&self, tag: &str) -> String {
        format!("nb{}{tag}", self.short)
            .chars()
            .take(netns::MAX_IFNAME_LEN)
            .collect()
    }
}

/// Removes the eBPF pins (detaching the cgroup programs and tc filters), the floor's pins and
/// every namespace of this run (the host namespace takes its bridge, veths and nft tables
/// with it). Best effort, each step independent; failures are printed.
struct Cleanup {
    prefix: String,
    host_ns: String,
    ext_if: String,
    pin_dir: PathBuf,
    floor_pin_dir: PathBuf,
}

fn remove_pins(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => eprintln!("warning: removing {}: {e}", dir.display()),
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.pin_dir.exists() {
            let ifs = vec![self.ext_if.clone()];
            let removed = if netns::namespace::exists(&self.host_ns) {
                in_ns(&self.host_ns, || {
                    PortMapper::remove_all(&self.pin_dir, &ifs).map_err(|e| e.to_string())
                })
            } else {
                PortMapper::remove_all(&self.pin_dir, &[]).map_err(|e| e.to_string())
            };
            if let Err(e) = removed {
                eprintln!(
                    "warning: removing the eBPF pins {}: {e}; remove them by hand (rm -r)",
                    self.pin_dir.display()
                );
            }
        }
        remove_pins(&self.floor_pin_dir);
        match netns::namespace::list(&self.prefix) {
            Ok(names) => {
                for name in names {
                    if let Err(e) = netns::namespace::delete(&name) {
                        eprintln!("warning: deleting namespace {name}: {e}");
                    }
                }
            }
            Err(e) => eprintln!("warning: listing namespaces {}*: {e}", self.prefix),
        }
    }
}
