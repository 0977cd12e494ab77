//! Task cgroups on cgroup v1 (hybrid hosts) and v2 behind one interface.
//!
//! Owns: finding the cgroup layout of the host ([`CgroupLayout::detect`]), a parent cgroup per
//! node daemon ([`CgroupManager`]), and per task ([`TaskCgroup`]) creating the directories,
//! writing limits, handing the spawner what it needs to place a child ([`CgroupJoin`]),
//! listing and signalling its processes, OOM counting, statistics and destruction.
//! Must not touch: processes outside its cgroups, or any cgroup outside `<root>/<parent>`.
//!
//! # Layout
//! Task cgroups live at `<hierarchy>/<parent>/<name>` on every managed hierarchy:
//! - pure v2: one directory under the cgroup2 mount (controllers enabled through the parent's
//!   `cgroup.subtree_control`);
//! - v1/hybrid: one directory per v1 hierarchy the task needs (co-mounted ones such as
//!   `cpu,cpuacct` count once): `memory`, `cpu`, `pids`, and `cpuset` only when the limits
//!   name cpus (the node daemon names them for every task when it knows the node's cores, so
//!   that [`TaskCgroup::set_cpuset`] can later move a task without reserved cores). When the host also mounts cgroup2 (hybrid), one more directory in the
//!   controller-less v2 tree gives `CLONE_INTO_CGROUP`, `cgroup.kill`, `cgroup.freeze`, CPU
//!   usage (`cpu.stat`) and a reliable process list; without it (pure v1) the task also gets
//!   `cpuacct` (CPU usage) and `freezer` (freeze before signalling) directories. Every
//!   directory costs a mkdir and an rmdir per task, so none is made without a use.
//!
//! # Why not cgroups-rs
//! The workspace offers cgroups-rs 0.5, but this module writes the files itself: cgroups-rs
//! hard-codes `/sys/fs/cgroup` for v2 (no fake root for tests, no v2 tree at
//! `/sys/fs/cgroup/unified`), unwraps inside `Hierarchy::root()`/`parent_control_group()`,
//! swallows read errors into zeros in its stats getters (and reads ~11 files for memory
//! stats), sleeps inside `delete()`, and knows neither `cgroup.kill` nor directory fds for
//! `CLONE_INTO_CGROUP`. The files involved are few and documented in the kernel's
//! cgroup-v1/cgroup-v2 docs; every access goes through [`CgroupFs`].
//!
//! # CPU mapping
//! `cpu_shares_mhz` is used as the v1 `cpu.shares` value directly (MHz as shares, minimum 2,
//! maximum 262144), as Nomad does. On v2 the same number is mapped onto `cpu.weight`
//! (1..=10000) with the formula runc and crun use:
//! `weight = 1 + (shares - 2) * 9999 / 262142`, so relative weights between tasks are kept.

mod fs;
mod spare;
mod v1;
mod v2;

#[cfg(test)]
mod fake;

pub use fs::{CgroupFs, RealCgroupFs};
pub use spare::SPARE_CGROUPS;

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// v1 controllers a task cgroup may be created in (when the host mounts them; see the module
/// docs for which ones a given task gets).
pub const MANAGED_V1_CONTROLLERS: [&str; 6] =
    ["memory", "cpu", "cpuacct", "cpuset", "pids", "freezer"];

/// v1 controllers every task cgroup gets.
const ALWAYS_V1_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// v1 controllers a task gets only when there is no cgroup2 tree to do their job.
const V1_ONLY_CONTROLLERS: [&str; 2] = ["cpuacct", "freezer"];

/// v2 controllers enabled for task cgroups (when the host offers them).
pub const MANAGED_V2_CONTROLLERS: [&str; 4] = ["cpuset", "cpu", "memory", "pids"];

/// The v1 file a freshly cloned child writes `0` into to join a task cgroup: `tasks` (move
/// the calling thread), not `cgroup.procs` (move the whole thread group).
///
/// Why: a v1 `cgroup.procs` write, and any write naming a pid, takes the kernel's global
/// `cgroup_threadgroup_rwsem` for writing. That is a percpu rwsem whose writer side goes
/// through `rcu_sync`: when no writer came by for about a grace period it has gone back to
/// the readers' fast path, and the next writer waits a full RCU grace period
/// (`synchronize_rcu`) before it gets the lock: 4–23 ms per write after ~300 ms of idle on
/// a 2-vCPU hybrid host (15.5 ms p50 for a task's three hierarchies), 0.02 ms back to back.
/// Moving *the current thread* (`0` written to `tasks`) is the one migration
/// the kernel does without that lock (`cgroup_procs_write_start`: "if the thread is
/// `current`, it won't exit(2) under our hands or change PID through exec(2) … we can skip
/// the global lock"), and the child is single-threaded at that point (cloned without
/// `CLONE_THREAD`), so moving its only thread moves the whole process. No host setting
/// changes (the alternative, the `favordynmods` mount option, flips a system-wide, and on
/// 6.18 irreversible, switch; see `xtask/src/bench/probe.rs`, which measures both files).
pub const V1_JOIN_FILE: &str = "tasks";

/// How often [`TaskCgroup::destroy`] kills and retries before giving up.
pub const DESTROY_ATTEMPTS: u32 = 40;

/// Longest wait between two destroy attempts (the waits grow 1, 2, 4 ... ms up to this).
pub const DESTROY_MAX_BACKOFF: Duration = Duration::from_millis(100);

/// How long a freeze may take before signalling goes ahead anyway.
pub const FREEZE_TIMEOUT: Duration = Duration::from_millis(500);

/// Largest v1 `cpu.shares` value the kernel accepts.
pub const MAX_CPU_SHARES: u64 = 262_144;

/// Errors of cgroup operations; each names the file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup filesystem found in /proc/self/mountinfo: mount cgroup2 at /sys/fs/cgroup (or the v1 controllers under /sys/fs/cgroup/<controller>)")]
    NoCgroupMounts,
    #[error("cannot read /proc/self/mountinfo: {0}")]
    Mountinfo(io::Error),
    #[error("invalid cgroup name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("invalid cgroup limit {field}: {reason}")]
    InvalidLimits { field: &'static str, reason: String },
    #[error("cgroup controller {controller:?} is not available at {path}: enable it in the parent's cgroup.subtree_control or mount the v1 hierarchy")]
    MissingController {
        controller: &'static str,
        path: PathBuf,
    },
    #[error("cgroup {path} already exists: open() and destroy() it first (left over from a previous run?)")]
    AlreadyExists { path: PathBuf },
    #[error("create cgroup {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("remove cgroup {path}: {source}")]
    RemoveDir { path: PathBuf, source: io::Error },
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("parse {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("signal {signal} to pid {pid} (from {path}): {source}")]
    Signal {
        pid: i32,
        signal: i32,
        path: PathBuf,
        source: io::Error,
    },
    #[error("task cgroup {name:?} has no cpuset directory (it was created without cpuset_cpus), so its cpus cannot be changed; restart the task to place it in a cpuset")]
    NoCpuset { name: String },
    #[error("cgroup parent {path} is in use by another process (it holds the parent's lock): one supervisor per cgroup parent; stop the other agent or give this one its own client.cgroup_parent")]
    ParentClaimed { path: PathBuf },
    #[error("cgroup {path} still holds processes {pids:?} after {attempts} kill attempts; they may be stuck in uninterruptible sleep (D state)")]
    Busy {
        path: PathBuf,
        pids: Vec<i32>,
        attempts: u32,
    },
}

/// One mounted v1 hierarchy (one mount may carry several controllers, e.g. `cpu,cpuacct`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// Controllers of the hierarchy, e.g. `["cpu", "cpuacct"]` or `["name=systemd"]`.
    pub controllers: Vec<String>,
    /// Where the hierarchy is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mount_point: PathBuf,
    /// Super options to mount the same hierarchy again (inside a jail), e.g. `memory`.
    pub mount_options: String,
}

impl V1Hierarchy {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    fn is_managed(&self) -> bool {
        MANAGED_V1_CONTROLLERS.iter().any(|c| self.has(c))
    }
}

/// Which cgroup version a host uses and where the hierarchies are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// v1 controllers, optionally with a controller-less cgroup2 tree beside them (hybrid).
    V1 {
        hierarchies: Vec<V1Hierarchy>,
        unified: Option<PathBuf>,
    },
    /// Pure cgroup2 mounted at `root`.
    V2 { root: PathBuf },
}

impl CgroupLayout {
    /// Reads the layout from `/proc/self/mountinfo`.
    pub fn detect() -> Result<CgroupLayout, CgroupError> {
        let text =
            std::fs::read_to_string("/proc/self/mountinfo").map_err(CgroupError::Mountinfo)?;
        CgroupLayout::from_mountinfo(&text)
    }

    /// The layout described by a mountinfo text. v1 wins over v2 when both are mounted (hybrid:
    /// the v1 hierarchies hold the controllers).
    pub fn from_mountinfo(mountinfo: &str) -> Result<CgroupLayout, CgroupError> {
        let mut hierarchies: Vec<V1Hierarchy> = Vec::new();
        let mut cgroup2: Vec<(PathBuf, bool)> = Vec::new();
        for line in mountinfo.lines() {
            let Some(mount) = MountLine::parse(line) else {
                continue;
            };
            match mount.fstype {
                "cgroup" => {
                    let controllers = v1_controllers(mount.super_options);
                    if controllers.is_empty()
                        || hierarchies.iter().any(|h| h.controllers == controllers)
                    {
                        continue;
                    }
                    let mount_options = mount
                        .super_options
                        .split(',')
                        .filter(|o| *o != "rw" && *o != "ro")
                        .collect::<Vec<_>>()
                        .join(",");
                    hierarchies.push(V1Hierarchy {
                        controllers,
                        mount_point: mount.mount_point,
                        mount_options,
                    });
                }
                "cgroup2" => cgroup2.push((mount.mount_point, mount.root == "/")),
                _ => {}
            }
        }
        let first_v2 = cgroup2
            .iter()
            .find(|(_, full)| *full)
            .or_else(|| cgroup2.first())
            .map(|(p, _)| p.clone());
        if !hierarchies.is_empty() {
            return Ok(CgroupLayout::V1 {
                hierarchies,
                unified: first_v2,
            });
        }
        match first_v2 {
            Some(root) => Ok(CgroupLayout::V2 { root }),
            None => Err(CgroupError::NoCgroupMounts),
        }
    }

    /// A pure-v2 layout rooted at `root` (a real mount or a fake tree in tests).
    pub fn v2_at(root: impl Into<PathBuf>) -> CgroupLayout {
        CgroupLayout::V2 { root: root.into() }
    }

    /// A v1 layout with one hierarchy per controller at `root/<controller>` and, with
    /// `unified`, a cgroup2 tree at `root/unified` (a fake tree in tests, or a subset of the
    /// real hierarchies).
    pub fn v1_at(root: &Path, controllers: &[&str], unified: bool) -> CgroupLayout {
        CgroupLayout::V1 {
            hierarchies: controllers
                .iter()
                .map(|c| V1Hierarchy {
                    controllers: vec![(*c).to_string()],
                    mount_point: root.join(c),
                    mount_options: (*c).to_string(),
                })
                .collect(),
            unified: unified.then(|| root.join("unified")),
        }
    }

    /// This layout without its cgroup2 tree (to exercise the pure-v1 code paths on a hybrid
    /// host).
    pub fn without_unified(&self) -> CgroupLayout {
        match self {
            CgroupLayout::V1 { hierarchies, .. } => CgroupLayout::V1 {
                hierarchies: hierarchies.clone(),
                unified: None,
            },
            other => other.clone(),
        }
    }

    pub fn is_v2(&self) -> bool {
        matches!(self, CgroupLayout::V2 { .. })
    }

    /// The v1 hierarchies task cgroups are made in.
    fn managed_v1(&self) -> Vec<&V1Hierarchy> {
        match self {
            CgroupLayout::V1 { hierarchies, .. } => {
                hierarchies.iter().filter(|h| h.is_managed()).collect()
            }
            CgroupLayout::V2 { .. } => Vec::new(),
        }
    }
}

/// The fields of a mountinfo line this module needs.
struct MountLine<'a> {
    root: &'a str,
    mount_point: PathBuf,
    fstype: &'a str,
    super_options: &'a str,
}

impl<'a> MountLine<'a> {
    fn parse(line: &'a str) -> Option<MountLine<'a>> {
        let fields: Vec<&str> = line.split(' ').collect();
        let separator = fields.iter().position(|f| *f == "-")?;
        Some(MountLine {
            root: fields.get(3)?,
            mount_point: crate::mount::unescape_mountinfo(fields.get(4)?),
            fstype: fields.get(separator + 1)?,
            super_options: fields.get(separator + 3)?,
        })
    }
}

/// Controller names of a v1 super-options string (`rw,cpu,cpuacct` → `[cpu, cpuacct]`).
fn v1_controllers(super_options: &str) -> Vec<String> {
    const NOT_CONTROLLERS: [&str; 8] = [
        "rw",
        "ro",
        "noprefix",
        "xattr",
        "clone_children",
        "cpuset_v2_mode",
        "favordynmods",
        "none",
    ];
    let mut controllers: Vec<String> = super_options
        .split(',')
        .filter(|o| !NOT_CONTROLLERS.contains(o) && !o.starts_with("release_agent="))
        .map(str::to_string)
        .collect();
    controllers.sort();
    controllers
}

/// CFS bandwidth limit: at most `quota_us` of CPU time per `period_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CpuQuota {
    pub quota_us: u64,
    pub period_us: u64,
}

/// Resource limits of a task cgroup. Swap is always off.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CgroupLimits {
    /// Hard memory limit (v1 `memory.limit_in_bytes`, v2 `memory.max`); > 0.
    pub memory_limit_bytes: u64,
    /// Soft limit / reservation when the hard limit is oversubscribed (`memory_max`): v1
    /// `memory.soft_limit_in_bytes`, v2 `memory.low`. Must not exceed the hard limit.
    pub memory_reservation_bytes: Option<u64>,
    /// CPU share in MHz: v1 `cpu.shares` (min 2), v2 `cpu.weight` (see the module docs).
    pub cpu_shares_mhz: u64,
    /// Optional hard CPU cap (v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`, v2 `cpu.max`).
    pub cpu_hard_limit: Option<CpuQuota>,
    /// CPUs the task may run on (`cpuset.cpus` syntax, e.g. `"0-1,3"`); default: the parent's.
    pub cpuset_cpus: Option<String>,
    /// Maximum number of processes and threads (`pids.max`); default: unlimited.
    pub pids_max: Option<u64>,
}

impl CgroupLimits {
    /// Checks the values before anything is written.
    pub fn validate(&self) -> Result<(), CgroupError> {
        let invalid = |field, reason: String| Err(CgroupError::InvalidLimits { field, reason });
        if self.memory_limit_bytes == 0 {
            return invalid("memory_limit_bytes", "must be greater than 0".to_string());
        }
        if self.memory_limit_bytes > i64::MAX as u64 {
            return invalid(
                "memory_limit_bytes",
                format!("{} is too large", self.memory_limit_bytes),
            );
        }
        if let Some(soft) = self.memory_reservation_bytes {
            if soft > self.memory_limit_bytes {
                return invalid(
                    "memory_reservation_bytes",
                    format!("{soft} exceeds the hard limit {}", self.memory_limit_bytes),
                );
            }
        }
        if self.cpu_shares_mhz > MAX_CPU_SHARES {
            return invalid(
                "cpu_shares_mhz",
                format!(
                    "{} exceeds the kernel maximum {MAX_CPU_SHARES}",
                    self.cpu_shares_mhz
                ),
            );
        }
        if let Some(q) = self.cpu_hard_limit {
            if !(1_000..=1_000_000).contains(&q.period_us) {
                return invalid(
                    "cpu_hard_limit.period_us",
                    format!("{} is outside 1000..=1000000", q.period_us),
                );
            }
            if q.quota_us < 1_000 {
                return invalid(
                    "cpu_hard_limit.quota_us",
                    format!("{} is below the kernel minimum 1000", q.quota_us),
                );
            }
        }
        if let Some(cpus) = &self.cpuset_cpus {
            validate_cpu_list(cpus)?;
        }
        if self.pids_max == Some(0) {
            return invalid("pids_max", "must be at least 1".to_string());
        }
        Ok(())
    }

    /// `cpu.shares` for v1: the MHz value clamped to 2..=262144.
    pub fn v1_cpu_shares(&self) -> u64 {
        self.cpu_shares_mhz.clamp(2, MAX_CPU_SHARES)
    }

    /// `cpu.weight` for v2 (1..=10000), mapped from [`Self::v1_cpu_shares`].
    pub fn v2_cpu_weight(&self) -> u64 {
        1 + (self.v1_cpu_shares() - 2) * 9_999 / (MAX_CPU_SHARES - 2)
    }
}

/// Checks a `cpuset.cpus` value (`"0-3,5"`) before it is written: digits, commas and dashes
/// only, and not empty (an empty v1 cpuset refuses tasks; an empty v2 one means "the
/// parent's", which would silently undo a confinement).
pub fn validate_cpu_list(cpus: &str) -> Result<(), CgroupError> {
    let trimmed = cpus.trim();
    let ok = !trimmed.is_empty()
        && trimmed
            .chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(CgroupError::InvalidLimits {
            field: "cpuset_cpus",
            reason: format!("{cpus:?} is not a cpu list such as \"0-3,5\""),
        })
    }
}

/// Resource usage of a task cgroup. Times in nanoseconds, sizes in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CgroupStats {
    pub cpu_usage_ns: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub cpu_periods: u64,
    pub cpu_throttled_periods: u64,
    pub cpu_throttled_time_ns: u64,
    pub memory_usage_bytes: u64,
    /// Anonymous memory (v1 `rss`, v2 `anon`).
    pub memory_rss_bytes: u64,
    /// Page cache (v1 `cache`, v2 `file`).
    pub memory_cache_bytes: u64,
    /// Peak usage (v1 `memory.max_usage_in_bytes`, v2 `memory.peak` where the kernel has it).
    pub memory_max_usage_bytes: Option<u64>,
    /// v1 `memory.failcnt`: how often the limit was hit (v2 has no equivalent).
    pub memory_failcnt: Option<u64>,
    pub pids_current: u64,
}

/// One directory of a task cgroup.
#[derive(Debug, Clone)]
struct CgroupDir {
    path: PathBuf,
    kind: DirKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DirKind {
    /// A v1 hierarchy with these controllers.
    V1 {
        controllers: Vec<String>,
        mount_options: String,
        mount_name: String,
    },
    /// The controller-less cgroup2 tree of a hybrid host.
    Unified,
    /// The cgroup2 tree of a pure-v2 host.
    V2,
}

impl CgroupDir {
    fn has(&self, controller: &str) -> bool {
        match &self.kind {
            DirKind::V1 { controllers, .. } => controllers.iter().any(|c| c == controller),
            DirKind::V2 => true,
            DirKind::Unified => false,
        }
    }

    fn is_v2_tree(&self) -> bool {
        matches!(self.kind, DirKind::V2 | DirKind::Unified)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

/// Creates, finds and lists task cgroups under one parent cgroup (e.g. `noded`).
#[derive(Debug, Clone)]
pub struct CgroupManager {
    layout: CgroupLayout,
    parent: String,
    fs: Arc<dyn CgroupFs>,
    /// Task cgroups made ahead of need (see `spare`).
    spares: spare::SharedPool,
}

fn validate_name(name: &str) -> Result<(), CgroupError> {
    let invalid = |reason| {
        Err(CgroupError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 200 {
        return invalid("must be 1 to 200 characters long");
    }
    if name.starts_with('.') {
        return invalid("must not start with '.'");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' || c == '@')
    {
        return invalid("may only contain letters, digits, '-', '_', '.' and '@'");
    }
    Ok(())
}

fn read(fs: &dyn CgroupFs, path: &Path) -> Result<String, CgroupError> {
    fs.read(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn write(fs: &dyn CgroupFs, path: &Path, value: &str) -> Result<(), CgroupError> {
    fs.write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

fn parse_u64(path: &Path, text: &str) -> Result<u64, CgroupError> {
    text.trim().parse::<u64>().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        reason: format!("expected a number, found {:?}", text.trim()),
    })
}

/// The value of `key` in a flat-keyed file (`key value` per line), if present.
fn keyed(path: &Path, text: &str, key: &str) -> Result<Option<u64>, CgroupError> {
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if parts.next() == Some(key) {
            let value = parts.next().unwrap_or("");
            return parse_u64(path, value).map(Some);
        }
    }
    Ok(None)
}

fn read_u64(fs: &dyn CgroupFs, path: &Path) -> Result<u64, CgroupError> {
    let text = read(fs, path)?;
    parse_u64(path, &text)
}

impl CgroupManager {
    /// A manager for `<hierarchy>/<parent_name>` on the real cgroup filesystems. Creates the
    /// parent cgroups if needed, copies v1 cpusets into them and enables the v2 controllers.
    pub fn new(layout: CgroupLayout, parent_name: &str) -> Result<CgroupManager, CgroupError> {
        CgroupManager::with_fs(layout, parent_name, Arc::new(RealCgroupFs))
    }

    /// Like [`CgroupManager::new`] over any [`CgroupFs`] (a fake tree in tests).
    pub fn with_fs(
        layout: CgroupLayout,
        parent_name: &str,
        fs: Arc<dyn CgroupFs>,
    ) -> Result<CgroupManager, CgroupError> {
        validate_name(parent_name)?;
        let manager = CgroupManager {
            layout,
            parent: parent_name.to_string(),
            fs,
            spares: spare::SharedPool::default(),
        };
        manager.prepare_parent()?;
        // Spares a previous process left under this parent (one process owns a parent).
        manager.remove_all_spares();
        Ok(manager)
    }

    pub fn layout(&self) -> &CgroupLayout {
        &self.layout
    }

    pub fn parent_name(&self) -> &str {
        &self.parent
    }

    /// `(hierarchy root, kind)` of every hierarchy a task cgroup may span (for parents,
    /// reattaching and listing).
    fn hierarchies(&self) -> Vec<(PathBuf, DirKind)> {
        self.hierarchies_where(|_| true)
    }

    /// The hierarchies a task with `limits` is created in (module docs).
    fn hierarchies_for(&self, limits: &CgroupLimits) -> Vec<(PathBuf, DirKind)> {
        let has_v2_tree = matches!(
            &self.layout,
            CgroupLayout::V1 {
                unified: Some(_),
                ..
            }
        );
        self.hierarchies_where(|h| {
            ALWAYS_V1_CONTROLLERS.iter().any(|c| h.has(c))
                || (limits.cpuset_cpus.is_some() && h.has("cpuset"))
                || (!has_v2_tree && V1_ONLY_CONTROLLERS.iter().any(|c| h.has(c)))
        })
    }

    fn hierarchies_where(&self, wanted: impl Fn(&V1Hierarchy) -> bool) -> Vec<(PathBuf, DirKind)> {
        match &self.layout {
            CgroupLayout::V2 { root } => vec![(root.clone(), DirKind::V2)],
            CgroupLayout::V1 { unified, .. } => {
                let mut out: Vec<(PathBuf, DirKind)> = self
                    .layout
                    .managed_v1()
                    .into_iter()
                    .filter(|h| wanted(h))
                    .map(|h| {
                        let mount_name = h
                            .mount_point
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_else(|| h.controllers.join(","));
                        (
                            h.mount_point.clone(),
                            DirKind::V1 {
                                controllers: h.controllers.clone(),
                                mount_options: h.mount_options.clone(),
                                mount_name,
                            },
                        )
                    })
                    .collect();
                if let Some(unified) = unified {
                    out.push((unified.clone(), DirKind::Unified));
                }
                out
            }
        }
    }

    fn prepare_parent(&self) -> Result<(), CgroupError> {
        let fs = self.fs.as_ref();
        for (root, kind) in self.hierarchies() {
            let parent = root.join(&self.parent);
            match fs.create_dir(&parent) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(CgroupError::CreateDir {
                        path: parent,
                        source,
                    })
                }
            }
            match kind {
                DirKind::V1 { controllers, .. } if controllers.iter().any(|c| c == "cpuset") => {
                    v1::inherit_cpuset(fs, &root, &parent)?;
                }
                DirKind::V2 => v2::enable_controllers(fs, &root, &parent)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Creates the task cgroup `name` with `limits` on every hierarchy. On failure nothing is
    /// left behind (directories created so far are removed).
    ///
    /// On v1 the directories come from a spare when one is ready (see `spare`): renamed to
    /// `name`, then the limits written as for a new one.
    pub fn create(&self, name: &str, limits: &CgroupLimits) -> Result<TaskCgroup, CgroupError> {
        validate_name(name)?;
        limits.validate()?;
        let fs = self.fs.as_ref();
        let mut created: Vec<CgroupDir> = Vec::new();
        // The v1 directories of a spare made with these limits need no writes.
        let mut written = 0;
        if let Some(spare) = self.take_spare(limits) {
            match self.rename_spare(&spare.name, name) {
                Ok(dirs) => {
                    if spare.limits_written {
                        written = dirs.len();
                    }
                    created = dirs;
                }
                Err(e @ CgroupError::AlreadyExists { .. }) => return Err(e),
                Err(e) => {
                    tracing::debug!(spare = %spare.name, error = %e, "spare cgroup unusable; creating one");
                }
            }
        }
        let result = (|| {
            for (root, kind) in self.hierarchies_for(limits) {
                if created
                    .iter()
                    .any(|d| d.path.starts_with(&root) && d.kind == kind)
                {
                    continue;
                }
                let path = root.join(&self.parent).join(name);
                match fs.create_dir(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        return Err(CgroupError::AlreadyExists { path });
                    }
                    Err(source) => return Err(CgroupError::CreateDir { path, source }),
                }
                created.push(CgroupDir { path, kind });
            }
            for dir in created.iter().skip(written) {
                match &dir.kind {
                    DirKind::V1 { .. } => v1::apply_limits(fs, dir, limits)?,
                    DirKind::V2 => v2::apply_limits(fs, dir, limits)?,
                    DirKind::Unified => {}
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            for dir in created.iter().rev() {
                if let Err(cleanup) = fs.remove_dir(&dir.path) {
                    tracing::warn!(path = %dir.path.display(), error = %cleanup, "cannot remove a half-created cgroup");
                }
            }
            return Err(e);
        }
        Ok(TaskCgroup {
            name: name.to_string(),
            dirs: created,
            fs: self.fs.clone(),
        })
    }

    /// Reattaches to an existing task cgroup (after a restart). `None` when no directory of it
    /// exists on any hierarchy; directories missing on some hierarchies are skipped.
    pub fn open(&self, name: &str) -> Result<Option<TaskCgroup>, CgroupError> {
        validate_name(name)?;
        let dirs: Vec<CgroupDir> = self
            .hierarchies()
            .into_iter()
            .map(|(root, kind)| CgroupDir {
                path: root.join(&self.parent).join(name),
                kind,
            })
            .filter(|d| self.fs.exists(&d.path))
            .collect();
        if dirs.is_empty() {
            return Ok(None);
        }
        Ok(Some(TaskCgroup {
            name: name.to_string(),
            dirs,
            fs: self.fs.clone(),
        }))
    }

    /// Names of every task cgroup under the parent, on any hierarchy (for garbage collection).
    /// Spares (see `spare`) are not task cgroups and are left out.
    pub fn list(&self) -> Result<Vec<String>, CgroupError> {
        let mut names = BTreeSet::new();
        for (root, _) in self.hierarchies() {
            let parent = root.join(&self.parent);
            match self.fs.child_dirs(&parent) {
                Ok(children) => names.extend(
                    children
                        .into_iter()
                        .filter(|n| !n.starts_with(spare::SPARE_PREFIX)),
                ),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(CgroupError::Read {
                        path: parent,
                        source,
                    })
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Removes the parent cgroups themselves (they must hold no task cgroup any more), and
    /// the spares first; no spare is made afterwards.
    /// Claims the parent for this process: an exclusive `flock` on its directory in the first
    /// managed hierarchy, held until the returned claim is dropped or the process ends (a crash
    /// included). One process owns a parent (its spares and its task cgroups); a second
    /// claim fails with [`CgroupError::ParentClaimed`] while the first holder lives. (The lock
    /// is not a cgroup file operation, so it does not go through [`CgroupFs`].)
    pub fn claim_parent(&self) -> Result<ParentClaim, CgroupError> {
        let Some((root, _)) = self.hierarchies().into_iter().next() else {
            return Err(CgroupError::NoCgroupMounts);
        };
        let path = root.join(&self.parent);
        let dir = std::fs::File::open(&path).map_err(|source| CgroupError::Open {
            path: path.clone(),
            source,
        })?;
        match nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(ParentClaim { _lock: lock }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(CgroupError::ParentClaimed { path }),
            Err((_, errno)) => Err(CgroupError::Open {
                path,
                source: errno.into(),
            }),
        }
    }

    pub fn remove_parent(&self) -> Result<(), CgroupError> {
        self.close_spares();
        for (root, _) in self.hierarchies() {
            let parent = root.join(&self.parent);
            match self.fs.remove_dir(&parent) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(CgroupError::RemoveDir {
                        path: parent,
                        source,
                    })
                }
            }
        }
        Ok(())
    }
}

/// A process's exclusive claim on a cgroup parent ([`CgroupManager::claim_parent`]).
#[derive(Debug)]
pub struct ParentClaim {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// One task's cgroup (one directory per hierarchy).
#[derive(Debug, Clone)]
pub struct TaskCgroup {
    name: String,
    dirs: Vec<CgroupDir>,
    fs: Arc<dyn CgroupFs>,
}

/// A cgroup mount to make inside a jail so the task sees its own cgroup at `/sys/fs/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailCgroupMount {
    /// `cgroup` or `cgroup2`.
    pub fstype: &'static str,
    /// Mount data (v1 super options such as `memory` or `cpu,cpuacct`; empty for cgroup2).
    pub data: String,
    /// Directory under `/sys/fs/cgroup`; empty for a pure-v2 mount at `/sys/fs/cgroup` itself.
    pub dir_name: String,
}

/// What [`crate::sandbox::spawn`] needs to start a child inside a [`TaskCgroup`]: file
/// descriptors opened in the parent, reusable for several spawns.
#[derive(Debug)]
pub struct CgroupJoin {
    /// v1 `tasks` files the child writes `0` into before anything else (see
    /// [`V1_JOIN_FILE`] for why not `cgroup.procs`).
    pub(crate) procs: Vec<(OwnedFd, PathBuf)>,
    /// A cgroup2 directory for `CLONE_INTO_CGROUP`.
    pub(crate) clone_into: Option<(OwnedFd, PathBuf)>,
    /// Mounts for the jail's `/sys/fs/cgroup`.
    pub(crate) jail_mounts: Vec<JailCgroupMount>,
}

impl CgroupJoin {
    pub(crate) fn procs_fds(&self) -> impl Iterator<Item = (RawFd, &Path)> {
        self.procs
            .iter()
            .map(|(fd, p)| (fd.as_raw_fd(), p.as_path()))
    }

    pub(crate) fn clone_into_fd(&self) -> Option<RawFd> {
        self.clone_into.as_ref().map(|(fd, _)| fd.as_raw_fd())
    }

    /// The directory `CLONE_INTO_CGROUP` targets (for error messages).
    pub fn clone_into_path(&self) -> Option<&Path> {
        self.clone_into.as_ref().map(|(_, p)| p.as_path())
    }

    pub fn jail_mounts(&self) -> &[JailCgroupMount] {
        &self.jail_mounts
    }
}

impl TaskCgroup {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every directory of this cgroup (one per hierarchy).
    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path.clone()).collect()
    }

    /// Opens what a child needs to join this cgroup (see [`CgroupJoin`]).
    pub fn join_handle(&self) -> Result<CgroupJoin, CgroupError> {
        let fs = self.fs.as_ref();
        let mut join = CgroupJoin {
            procs: Vec::new(),
            clone_into: None,
            jail_mounts: Vec::new(),
        };
        for dir in &self.dirs {
            match &dir.kind {
                DirKind::V1 {
                    mount_options,
                    mount_name,
                    ..
                } => {
                    let procs = dir.file(V1_JOIN_FILE);
                    let fd = fs
                        .open_for_write(&procs)
                        .map_err(|source| CgroupError::Open {
                            path: procs.clone(),
                            source,
                        })?;
                    join.procs.push((fd, procs));
                    join.jail_mounts.push(JailCgroupMount {
                        fstype: "cgroup",
                        data: mount_options.clone(),
                        dir_name: mount_name.clone(),
                    });
                }
                DirKind::Unified | DirKind::V2 => {
                    let fd = fs.open_dir(&dir.path).map_err(|source| CgroupError::Open {
                        path: dir.path.clone(),
                        source,
                    })?;
                    join.clone_into = Some((fd, dir.path.clone()));
                    join.jail_mounts.push(JailCgroupMount {
                        fstype: "cgroup2",
                        data: String::new(),
                        dir_name: if dir.kind == DirKind::Unified {
                            "unified".to_string()
                        } else {
                            String::new()
                        },
                    });
                }
            }
        }
        Ok(join)
    }

    /// The directory whose `cgroup.procs` lists the task's processes most reliably: the v2
    /// tree when there is one, else the v1 `pids`/`freezer`/`memory` hierarchy.
    fn primary(&self) -> Option<&CgroupDir> {
        self.dirs
            .iter()
            .find(|d| d.is_v2_tree())
            .or_else(|| self.dirs.iter().find(|d| d.has("pids")))
            .or_else(|| self.dirs.iter().find(|d| d.has("freezer")))
            .or_else(|| self.dirs.first())
    }

    fn dir_with(&self, controller: &str) -> Option<&CgroupDir> {
        self.dirs.iter().find(|d| d.has(controller))
    }

    fn read_procs(&self, dir: &CgroupDir) -> Result<Vec<i32>, CgroupError> {
        let path = dir.file("cgroup.procs");
        let text = match self.fs.read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(CgroupError::Read { path, source }),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.trim().parse::<i32>().map_err(|_| CgroupError::Parse {
                    path: path.clone(),
                    reason: format!("expected a pid, found {l:?}"),
                })
            })
            .collect()
    }

    /// Host pids of the processes in this cgroup.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        match self.primary() {
            Some(dir) => self.read_procs(dir),
            None => Ok(Vec::new()),
        }
    }

    /// Pids in any of this cgroup's directories (a process may have left one hierarchy only).
    fn all_pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = BTreeSet::new();
        for dir in &self.dirs {
            pids.extend(self.read_procs(dir)?);
        }
        Ok(pids.into_iter().collect())
    }

    /// Sends `signal` to every process of the cgroup. SIGKILL uses `cgroup.kill` where the
    /// kernel has it (v2, also the v2 tree of hybrid hosts); otherwise the cgroup is frozen,
    /// each process signalled and the cgroup thawed, so that forks cannot escape the signal.
    pub fn signal_all(&self, signal: i32) -> Result<(), CgroupError> {
        let fs = self.fs.as_ref();
        if let Some(dir) = self.dirs.iter().find(|d| d.is_v2_tree()) {
            let kill = dir.file("cgroup.kill");
            if signal == libc::SIGKILL && fs.exists(&kill) {
                return write(fs, &kill, "1");
            }
            let freeze = dir.file("cgroup.freeze");
            if fs.exists(&freeze) {
                write(fs, &freeze, "1")?;
                self.wait_frozen(|| {
                    let events = read(fs, &dir.file("cgroup.events"))?;
                    Ok(keyed(&dir.file("cgroup.events"), &events, "frozen")? == Some(1))
                })?;
                let result = self.signal_each(dir, signal);
                let thaw = write(fs, &freeze, "0");
                return result.and(thaw);
            }
        }
        if let Some(dir) = self.dir_with("freezer") {
            let state = dir.file("freezer.state");
            write(fs, &state, "FROZEN")?;
            self.wait_frozen(|| Ok(read(fs, &state)?.trim() == "FROZEN"))?;
            let result = self.signal_each(dir, signal);
            let thaw = write(fs, &state, "THAWED");
            return result.and(thaw);
        }
        match self.primary() {
            Some(dir) => self.signal_each(dir, signal),
            None => Ok(()),
        }
    }

    /// Polls `frozen` until it holds or [`FREEZE_TIMEOUT`] passes (then signalling goes on
    /// anyway: a process stuck in the kernel must not block a kill).
    fn wait_frozen(
        &self,
        frozen: impl Fn() -> Result<bool, CgroupError>,
    ) -> Result<(), CgroupError> {
        let step = Duration::from_millis(1);
        let mut waited = Duration::ZERO;
        while !frozen()? {
            if waited >= FREEZE_TIMEOUT {
                tracing::warn!(cgroup = %self.name, "cgroup did not freeze in time; signalling anyway");
                break;
            }
            self.fs.pause(step);
            waited += step;
        }
        Ok(())
    }

    fn signal_each(&self, dir: &CgroupDir, signal: i32) -> Result<(), CgroupError> {
        for pid in self.read_procs(dir)? {
            match self.fs.signal(pid, signal) {
                Ok(()) => {}
                // Exited in the meantime.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(source) => {
                    return Err(CgroupError::Signal {
                        pid,
                        signal,
                        path: dir.file("cgroup.procs"),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Moves the running task onto `cpus` (`cpuset.cpus` syntax, e.g. `"0-1,3"`): the kernel
    /// migrates its threads at once. Used to keep tasks without reserved cores off the cores
    /// reserved for others as reservations come and go. The task must have been created with
    /// [`CgroupLimits::cpuset_cpus`] on v1 (that is what gives it a cpuset directory); on v2 the
    /// parent must offer the `cpuset` controller. The cpus must lie within the parent's.
    pub fn set_cpuset(&self, cpus: &str) -> Result<(), CgroupError> {
        validate_cpu_list(cpus)?;
        let fs = self.fs.as_ref();
        if let Some(dir) = self.dirs.iter().find(|d| d.kind == DirKind::V2) {
            return v2::set_cpuset(fs, dir, cpus.trim());
        }
        match self.dir_with("cpuset") {
            Some(dir) => v1::set_cpuset(fs, dir, cpus.trim()),
            None => Err(CgroupError::NoCpuset {
                name: self.name.clone(),
            }),
        }
    }

    /// The cpus the task may run on now (`cpuset.cpus` of its cpuset directory), `None` when
    /// it has no cpuset directory (it runs wherever its parent does).
    pub fn cpuset(&self) -> Result<Option<String>, CgroupError> {
        let dir = match self.dirs.iter().find(|d| d.kind == DirKind::V2) {
            Some(dir) => dir,
            None => match self.dir_with("cpuset") {
                Some(dir) => dir,
                None => return Ok(None),
            },
        };
        let path = dir.file("cpuset.cpus");
        if !self.fs.exists(&path) {
            return Ok(None);
        }
        let cpus = read(self.fs.as_ref(), &path)?.trim().to_string();
        // Empty on v2 means "the parent's": no cpuset of its own.
        Ok((!cpus.is_empty()).then_some(cpus))
    }

    /// How many times the kernel's OOM killer killed a process of this cgroup (v2
    /// `memory.events` `oom_kill`, v1 `memory.oom_control` `oom_kill`).
    pub fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        let fs = self.fs.as_ref();
        if let Some(dir) = self.dirs.iter().find(|d| d.kind == DirKind::V2) {
            let path = dir.file("memory.events");
            let text = read(fs, &path)?;
            return Ok(keyed(&path, &text, "oom_kill")?.unwrap_or(0));
        }
        match self.dir_with("memory") {
            Some(dir) => {
                let path = dir.file("memory.oom_control");
                let text = read(fs, &path)?;
                Ok(keyed(&path, &text, "oom_kill")?.unwrap_or(0))
            }
            None => Err(CgroupError::MissingController {
                controller: "memory",
                path: self.primary().map(|d| d.path.clone()).unwrap_or_default(),
            }),
        }
    }

    /// Current resource usage.
    pub fn stats(&self) -> Result<CgroupStats, CgroupError> {
        let fs = self.fs.as_ref();
        if let Some(dir) = self.dirs.iter().find(|d| d.kind == DirKind::V2) {
            return v2::stats(fs, dir);
        }
        let mut stats = v1::stats(fs, &self.dirs)?;
        if !self.dirs.iter().any(|d| d.has("cpuacct")) {
            if let Some(dir) = self.dirs.iter().find(|d| d.kind == DirKind::Unified) {
                v2::cpu_usage(fs, dir, &mut stats)?;
            }
        }
        Ok(stats)
    }

    /// Kills whatever still runs in the cgroup and removes its directory on every hierarchy,
    /// retrying with bounded backoff ([`DESTROY_ATTEMPTS`]). Blocking (it sleeps between
    /// attempts): async callers run it on a blocking thread. Idempotent.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let fs = self.fs.as_ref();
        let mut backoff = Duration::from_millis(1);
        let mut last_error: Option<CgroupError> = None;
        for attempt in 0..DESTROY_ATTEMPTS {
            // The common case is an exited task: its primary directory is empty, and reading
            // that one file is enough to try the removal. A directory that still holds a
            // process makes the removal fail (EBUSY), and the next attempt looks at all of them.
            let pids = if attempt == 0 {
                match self.primary() {
                    Some(dir) => self.read_procs(dir)?,
                    None => Vec::new(),
                }
            } else {
                self.all_pids()?
            };
            if !pids.is_empty() {
                if let Err(e) = self.signal_all(libc::SIGKILL) {
                    tracing::debug!(cgroup = %self.name, error = %e, "kill during destroy failed");
                }
                // Fallback for processes outside the primary directory.
                for pid in pids {
                    let _ = fs.signal(pid, libc::SIGKILL);
                }
                fs.pause(backoff);
                backoff = (backoff * 2).min(DESTROY_MAX_BACKOFF);
                continue;
            }
            last_error = None;
            for dir in self.dirs.iter().rev() {
                match fs.remove_dir(&dir.path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => {
                        last_error = Some(CgroupError::RemoveDir {
                            path: dir.path.clone(),
                            source,
                        });
                    }
                }
            }
            match last_error {
                None => return Ok(()),
                Some(_) => {
                    fs.pause(backoff);
                    backoff = (backoff * 2).min(DESTROY_MAX_BACKOFF);
                }
            }
        }
        let pids = self.all_pids().unwrap_or_default();
        if !pids.is_empty() {
            return Err(CgroupError::Busy {
                path: self.primary().map(|d| d.path.clone()).unwrap_or_default(),
                pids,
                attempts: DESTROY_ATTEMPTS,
            });
        }
        match last_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl fmt::Display for TaskCgroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.primary() {
            Some(dir) => write!(f, "{}", dir.path.display()),
            None => write!(f, "{}", self.name),
        }
    }
}

#[cfg(test)]
mod tests;
