//! [`PortMapper`]: loads, pins and attaches the port-mapping programs once per node, reopens
//! them after an agent restart, and edits the pinned maps per allocation.

use std::fs::{self, File};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{
    ErrorKind, Link, MapCore, MapFlags, MapHandle, ProgramHandle, TcHook, TcHookBuilder, TC_EGRESS,
    TC_INGRESS,
};
use netns::portmap::{Mapping, PortMapBackend, PortMapError};

use crate::maps::{self, Maps, PmKey, PmVal, RevKey, RevVal};
use crate::probe::{bpffs_mounted, BPFFS};
use crate::skel::PortmapSkelBuilder;

/// The tc filter's handle and priority on every interface: fixed, so that a restarted agent
/// (and `remove_all`) finds the filter it attached without any state of its own. "nd".
pub const TC_HANDLE: u32 = 0x6e64;
pub const TC_PRIORITY: u32 = 0x6e64;

/// Pins, relative to the pin directory. The programs the tc filters run are pinned too, so
/// that a restarted agent can re-attach a filter (an interface recreated, a filter deleted by
/// hand) without loading anything.
const MAP_PINS: [&str; 3] = ["portmap", "portmap_rev", "udp_orig"];
const PROG_TC_INGRESS: &str = "prog_tc_ingress";
const PROG_TC_EGRESS: &str = "prog_tc_egress";
const LINK_PINS: [&str; 3] = ["link_connect4", "link_sendmsg4", "link_recvmsg4"];

fn all_pins() -> impl Iterator<Item = &'static str> {
    MAP_PINS
        .into_iter()
        .chain([PROG_TC_INGRESS, PROG_TC_EGRESS])
        .chain(LINK_PINS)
}

/// Where and on what a node's port mapping lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapperConfig {
    /// The node's pin directory on bpffs, `/sys/fs/bpf/noded/<tag>`.
    pub pin_dir: PathBuf,
    /// The cgroup2 mount the sock_addr programs attach to ([`crate::cgroup2_root`]).
    pub cgroup2_root: PathBuf,
    /// The node's external interfaces: tc ingress/egress are attached on each.
    pub interfaces: Vec<String>,
}

/// How [`PortMapper::open`] found the node's objects, and what it cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// Nothing was pinned: the object was loaded, pinned and attached.
    Loaded,
    /// The pins of an earlier agent were reopened; nothing was reloaded. `tc_reattached`
    /// counts tc filters that were missing (or ran another program) and were attached again.
    Reopened { tc_reattached: usize },
}

/// A port-mapping operation or setup step that failed: what, on which object, why.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error("mounting bpffs at {BPFFS}: {source} (mount it with `mount -t bpf bpf {BPFFS}`, or run the agent as root)")]
    MountBpffs { source: nix::Error },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{what}: {source}")]
    Bpf {
        what: String,
        source: libbpf_rs::Error,
    },
    #[error("interface {name:?} of the port mapper: {source} (check the client's network interface settings)")]
    Interface { name: String, source: nix::Error },
    #[error("pinned map {} is not the map this agent expects ({reason}): an agent of another version pinned it; remove {} (PortMapper::remove_all) and restart", path.display(), dir.display())]
    IncompatiblePin {
        path: PathBuf,
        dir: PathBuf,
        reason: String,
    },
    #[error("the network namespace cookie of the agent: {0}")]
    NetnsCookie(io::Error),
}

fn bpf(what: impl Into<String>) -> impl FnOnce(libbpf_rs::Error) -> EbpfError {
    let what = what.into();
    move |source| EbpfError::Bpf { what, source }
}

/// The node's port mapper: the pinned `portmap` and `portmap_rev` maps, edited per
/// allocation. The programs, links and tc filters belong to the pins, not to this value:
/// dropping it (or killing the agent) leaves traffic flowing.
#[derive(Debug)]
pub struct PortMapper {
    pin_dir: PathBuf,
    portmap: MapHandle,
    portmap_rev: MapHandle,
    /// Serialises the read-modify-write sequences of insert/remove within this process.
    edit: Mutex<()>,
    opened: Opened,
    setup_time: Duration,
}

impl PortMapper {
    /// Sets up (or reopens) the node's port mapping. Must be called from a thread in the
    /// agent's network namespace: the netns cookie, the interface names and the tc netlink
    /// socket all belong to the calling thread's namespace.
    ///
    /// Mounts bpffs at `/sys/fs/bpf` when needed. When every pin exists under `pin_dir` (a
    /// restarted agent), reopens the maps and re-checks the tc filters without reloading
    /// anything; when some exist (a setup interrupted half-way), removes them and starts
    /// over; otherwise loads the object with this namespace's cookie, pins maps and tc
    /// programs, attaches the cgroup programs to `cgroup2_root` as pinned bpf_links and the
    /// tc programs (clsact, direct-action, [`TC_HANDLE`]/[`TC_PRIORITY`]) to each interface.
    pub fn open(cfg: &PortMapperConfig) -> Result<PortMapper, EbpfError> {
        let start = Instant::now();
        ensure_bpffs()?;
        let present = all_pins().filter(|p| cfg.pin_dir.join(p).exists()).count();
        let opened = if present == all_pins().count() {
            let tc_reattached = reattach_tc(&cfg.pin_dir, &cfg.interfaces)?;
            for link in LINK_PINS {
                // Opening checks the pin is a live link; closing our fd again does not detach
                // it (the pin holds it).
                let path = cfg.pin_dir.join(link);
                let _link = Link::open(&path)
                    .map_err(bpf(format!("opening pinned link {}", path.display())))?;
            }
            Opened::Reopened { tc_reattached }
        } else {
            if present > 0 {
                tracing::warn!(pin_dir = %cfg.pin_dir.display(), present, "incomplete port-mapper pins (an interrupted setup): removing them and loading again");
                PortMapper::remove_all(&cfg.pin_dir, &cfg.interfaces)?;
            }
            load_and_attach(cfg)?;
            Opened::Loaded
        };
        let portmap = open_map(
            &cfg.pin_dir,
            "portmap",
            maps::PM_KEY_SIZE,
            maps::PM_VAL_SIZE,
        )?;
        let portmap_rev = open_map(
            &cfg.pin_dir,
            "portmap_rev",
            maps::REV_KEY_SIZE,
            maps::REV_VAL_SIZE,
        )?;
        Ok(PortMapper {
            pin_dir: cfg.pin_dir.clone(),
            portmap,
            portmap_rev,
            edit: Mutex::new(()),
            opened,
            setup_time: start.elapsed(),
        })
    }

    /// Whether `open` loaded the programs or reopened an earlier agent's pins.
    pub fn opened(&self) -> Opened {
        self.opened
    }

    /// Wall time `open` took (for the bench and the agent's log).
    pub fn setup_time(&self) -> Duration {
        self.setup_time
    }

    /// The pin directory this mapper edits.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Removes everything [`PortMapper::open`] created for `pin_dir`: the tc filters on
    /// `interfaces` (the clsact qdisc stays: other tools may have filters on it), the pinned
    /// links (which detaches the cgroup programs once no process holds them), maps and
    /// programs, and the directory. Idempotent; an interface that no longer exists is
    /// skipped. Call it from a thread in the agent's network namespace.
    pub fn remove_all(pin_dir: &Path, interfaces: &[String]) -> Result<(), EbpfError> {
        // bpf_tc_detach ignores the program fd (it matches handle and priority), but TcHook
        // wants one: any open fd will do when the pinned program is already gone.
        let devnull = File::open("/dev/null").map_err(|source| EbpfError::Io {
            what: "opening",
            path: PathBuf::from("/dev/null"),
            source,
        })?;
        for name in interfaces {
            let Some(ifindex) = ifindex_if_exists(name)? else {
                continue;
            };
            for point in [TC_INGRESS, TC_EGRESS] {
                let mut hook = tc_hook(devnull.as_fd(), ifindex, point);
                match hook.detach() {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    // No clsact qdisc at all: nothing of ours there either.
                    Err(e) if e.kind() == ErrorKind::InvalidInput => {}
                    Err(source) => {
                        return Err(EbpfError::Bpf {
                            what: format!("detaching the tc filter from {name}"),
                            source,
                        })
                    }
                }
            }
        }
        for pin in all_pins() {
            let path = pin_dir.join(pin);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(EbpfError::Io {
                        what: "unpinning",
                        path,
                        source,
                    })
                }
            }
        }
        match fs::remove_dir(pin_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(EbpfError::Io {
                what: "removing the pin directory (it holds objects noded did not pin)",
                path: pin_dir.to_path_buf(),
                source,
            }),
        }
    }

    fn kernel_maps(&self) -> KernelMaps<'_> {
        KernelMaps {
            fwd: &self.portmap,
            rev: &self.portmap_rev,
        }
    }

    fn portmap_error(&self, what: String, e: libbpf_rs::Error) -> PortMapError {
        let hint = if e.kind() == ErrorKind::TooBig {
            format!(
                "the map is full ({} entries): remove mappings of stopped allocations",
                maps::PORTMAP_MAX_ENTRIES
            )
        } else {
            format!(
                "{e} (the maps are pinned under {}; restart the agent to reopen them)",
                self.pin_dir.display()
            )
        };
        PortMapError::new(what, hint)
    }
}

impl PortMapBackend for PortMapper {
    fn name(&self) -> &'static str {
        "ebpf"
    }

    fn insert(&self, m: &Mapping) -> Result<(), PortMapError> {
        // A poisoned lock only means another edit panicked; the maps are still consistent
        // per entry, and insert re-establishes both of this mapping's entries.
        let _guard = self.edit.lock().unwrap_or_else(|p| p.into_inner());
        maps::insert(&mut self.kernel_maps(), m)
            .map_err(|e| self.portmap_error(format!("adding port mapping {m}"), e))
    }

    fn remove(&self, m: &Mapping) -> Result<(), PortMapError> {
        let _guard = self.edit.lock().unwrap_or_else(|p| p.into_inner());
        maps::remove(&mut self.kernel_maps(), m)
            .map_err(|e| self.portmap_error(format!("removing port mapping {m}"), e))
    }

    fn list(&self) -> Result<Vec<Mapping>, PortMapError> {
        let mut out = Vec::new();
        // Bounded by max_entries; a key removed between keys() and lookup() is skipped.
        for key in self.portmap.keys().take(maps::PORTMAP_MAX_ENTRIES) {
            let value = self
                .portmap
                .lookup(&key, MapFlags::ANY)
                .map_err(|e| self.portmap_error("listing port mappings".into(), e))?;
            let (Some(k), Some(v)) = (
                PmKey::decode(&key),
                value.as_deref().and_then(PmVal::decode),
            ) else {
                continue;
            };
            match maps::mapping_of(&k, &v) {
                Some(m) => out.push(m),
                None => tracing::warn!(
                    proto = k.proto,
                    port = k.host_port,
                    "portmap entry with an unknown protocol"
                ),
            }
        }
        out.sort();
        Ok(out)
    }
}

/// The kernel's maps behind the [`Maps`] operations the insert/remove rules are written in.
struct KernelMaps<'a> {
    fwd: &'a MapHandle,
    rev: &'a MapHandle,
}

fn delete_absent_ok(map: &MapHandle, key: &[u8]) -> libbpf_rs::Result<()> {
    match map.delete(key) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

impl Maps for KernelMaps<'_> {
    type Error = libbpf_rs::Error;
    fn fwd_get(&self, k: &PmKey) -> libbpf_rs::Result<Option<PmVal>> {
        Ok(self
            .fwd
            .lookup(&k.encode(), MapFlags::ANY)?
            .as_deref()
            .and_then(PmVal::decode))
    }
    fn fwd_put(&mut self, k: &PmKey, v: &PmVal) -> libbpf_rs::Result<()> {
        self.fwd.update(&k.encode(), &v.encode(), MapFlags::ANY)
    }
    fn fwd_del(&mut self, k: &PmKey) -> libbpf_rs::Result<()> {
        delete_absent_ok(self.fwd, &k.encode())
    }
    fn rev_get(&self, k: &RevKey) -> libbpf_rs::Result<Option<RevVal>> {
        Ok(self
            .rev
            .lookup(&k.encode(), MapFlags::ANY)?
            .as_deref()
            .and_then(RevVal::decode))
    }
    fn rev_put(&mut self, k: &RevKey, v: &RevVal) -> libbpf_rs::Result<()> {
        self.rev.update(&k.encode(), &v.encode(), MapFlags::ANY)
    }
    fn rev_del(&mut self, k: &RevKey) -> libbpf_rs::Result<()> {
        delete_absent_ok(self.rev, &k.encode())
    }
}

fn ensure_bpffs() -> Result<(), EbpfError> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|source| EbpfError::Io {
        what: "reading",
        path: PathBuf::from("/proc/self/mountinfo"),
        source,
    })?;
    if bpffs_mounted(&mountinfo, Path::new(BPFFS)) {
        return Ok(());
    }
    match nix::mount::mount(
        Some("bpf"),
        BPFFS,
        Some("bpf"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        None::<&str>,
    ) {
        Ok(()) => Ok(()),
        // Two agents (or tests) racing to mount: the loser sees EBUSY only when a bpffs is
        // already there, which is what we wanted.
        Err(nix::Error::EBUSY) => Ok(()),
        Err(source) => Err(EbpfError::MountBpffs { source }),
    }
}

fn open_map(
    dir: &Path,
    name: &str,
    key_size: usize,
    value_size: usize,
) -> Result<MapHandle, EbpfError> {
    let path = dir.join(name);
    let map = MapHandle::from_pinned_path(&path)
        .map_err(bpf(format!("opening pinned map {}", path.display())))?;
    if map.key_size() as usize != key_size || map.value_size() as usize != value_size {
        return Err(EbpfError::IncompatiblePin {
            reason: format!(
                "key/value sizes {}/{}, expected {key_size}/{value_size}",
                map.key_size(),
                map.value_size()
            ),
            path,
            dir: dir.to_path_buf(),
        });
    }
    Ok(map)
}

fn load_and_attach(cfg: &PortMapperConfig) -> Result<(), EbpfError> {
    fs::create_dir_all(&cfg.pin_dir).map_err(|source| EbpfError::Io {
        what: "creating the pin directory",
        path: cfg.pin_dir.clone(),
        source,
    })?;
    let cookie = crate::sys::netns_cookie().map_err(EbpfError::NetnsCookie)?;
    let mut object = MaybeUninit::uninit();
    let mut open = PortmapSkelBuilder::default()
        .open(&mut object)
        .map_err(bpf("opening the port-mapping BPF object"))?;
    let Some(rodata) = open.maps.rodata_data.as_deref_mut() else {
        return Err(EbpfError::Bpf {
            what: "setting the netns cookie".into(),
            source: libbpf_rs::Error::from(io::Error::other("the object has no .rodata")),
        });
    };
    rodata.target_netns_cookie = cookie;
    let mut skel = open.load().map_err(bpf(
        "loading the port-mapping BPF programs (the verifier's log is above)",
    ))?;

    let pin = |name: &str| cfg.pin_dir.join(name);
    skel.maps
        .portmap
        .pin(pin("portmap"))
        .map_err(bpf("pinning map portmap"))?;
    skel.maps
        .portmap_rev
        .pin(pin("portmap_rev"))
        .map_err(bpf("pinning map portmap_rev"))?;
    skel.maps
        .udp_orig
        .pin(pin("udp_orig"))
        .map_err(bpf("pinning map udp_orig"))?;
    skel.progs
        .noded_tc_ingress
        .pin(pin(PROG_TC_INGRESS))
        .map_err(bpf("pinning the tc ingress program"))?;
    skel.progs
        .noded_tc_egress
        .pin(pin(PROG_TC_EGRESS))
        .map_err(bpf("pinning the tc egress program"))?;

    let cgroup = File::open(&cfg.cgroup2_root).map_err(|source| EbpfError::Io {
        what: "opening the cgroup2 root",
        path: cfg.cgroup2_root.clone(),
        source,
    })?;
    let progs = [
        (&skel.progs.noded_connect4, LINK_PINS[0]),
        (&skel.progs.noded_sendmsg4, LINK_PINS[1]),
        (&skel.progs.noded_recvmsg4, LINK_PINS[2]),
    ];
    for (prog, link_pin) in progs {
        // A bpf_link attach is multi-attach: other agents' (and other tools') programs on
        // the same cgroup keep running next to ours.
        let mut link = prog.attach_cgroup(cgroup.as_raw_fd()).map_err(bpf(format!(
            "attaching {link_pin} to the cgroup2 root {}",
            cfg.cgroup2_root.display()
        )))?;
        link.pin(pin(link_pin))
            .map_err(bpf(format!("pinning {link_pin}")))?;
    }
    for name in &cfg.interfaces {
        let ifindex = ifindex(name)?;
        attach_tc(
            skel.progs.noded_tc_ingress.as_fd(),
            ifindex,
            TC_INGRESS,
            name,
        )?;
        attach_tc(skel.progs.noded_tc_egress.as_fd(), ifindex, TC_EGRESS, name)?;
    }
    // Dropping the skeleton closes our fds; pins, links and tc filters keep everything alive.
    Ok(())
}

/// Checks the filters on every interface and attaches the pinned program where a filter is
/// missing or runs another program. Returns how many were (re)attached.
fn reattach_tc(pin_dir: &Path, interfaces: &[String]) -> Result<usize, EbpfError> {
    let mut reattached = 0;
    for (point, pin) in [(TC_INGRESS, PROG_TC_INGRESS), (TC_EGRESS, PROG_TC_EGRESS)] {
        let path = pin_dir.join(pin);
        let prog = ProgramHandle::from_pinned_path(&path)
            .map_err(bpf(format!("opening pinned program {}", path.display())))?;
        for name in interfaces {
            let ifindex = ifindex(name)?;
            let mut hook = tc_hook(prog.as_fd(), ifindex, point);
            match hook.query() {
                Ok(id) if id == prog.id() => continue,
                _ => {
                    attach_tc(prog.as_fd(), ifindex, point, name)?;
                    reattached += 1;
                }
            }
        }
    }
    Ok(reattached)
}

fn tc_hook(fd: BorrowedFd<'_>, ifindex: i32, point: libbpf_rs::TcAttachPoint) -> TcHook {
    TcHookBuilder::new(fd)
        .ifindex(ifindex)
        .replace(true)
        .handle(TC_HANDLE)
        .priority(TC_PRIORITY)
        .hook(point)
}

fn attach_tc(
    fd: BorrowedFd<'_>,
    ifindex: i32,
    point: libbpf_rs::TcAttachPoint,
    name: &str,
) -> Result<(), EbpfError> {
    let dir = if point == TC_INGRESS {
        "ingress"
    } else {
        "egress"
    };
    let mut hook = tc_hook(fd, ifindex, point);
    // Creates the clsact qdisc; succeeds when it already exists.
    hook.create()
        .map_err(bpf(format!("creating the clsact qdisc on {name}")))?;
    hook.attach()
        .map_err(bpf(format!("attaching the tc {dir} filter on {name}")))?;
    Ok(())
}

fn ifindex(name: &str) -> Result<i32, EbpfError> {
    let idx = nix::net::if_::if_nametoindex(name).map_err(|source| EbpfError::Interface {
        name: name.to_string(),
        source,
    })?;
    i32::try_from(idx).map_err(|_| EbpfError::Interface {
        name: name.to_string(),
        source: nix::Error::ERANGE,
    })
}

fn ifindex_if_exists(name: &str) -> Result<Option<i32>, EbpfError> {
    match ifindex(name) {
        Ok(i) => Ok(Some(i)),
        Err(EbpfError::Interface {
            source: nix::Error::ENODEV,
            ..
        }) => Ok(None),
        Err(e) => Err(e),
    }
}
