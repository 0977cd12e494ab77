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
//! # Files
//! `layout` (where the hierarchies are), `limits` (what a task's limits are), `manager` (the
//! parent and creating task cgroups, with `spare` cgroups made ahead of need), `task` (one
//! task's cgroup), `dir` (one directory of it and its control files), `v1` and `v2` (the
//! control files of each version), `fs` (the file operations, real or fake).

mod dir;
mod fs;
mod layout;
mod limits;
mod manager;
mod task;
mod v1;
mod v2;

#[cfg(test)]
mod fake;

pub use fs::{CgroupFs, RealCgroupFs};
pub use layout::{CgroupLayout, V1Hierarchy, MANAGED_V1_CONTROLLERS, MANAGED_V2_CONTROLLERS};
pub use limits::{validate_cpu_list, CgroupLimits, CpuQuota, MAX_CPU_SHARES};
pub use manager::{CgroupManager, ParentClaim, SPARE_CGROUPS};
pub use task::{
    CgroupJoin, JailCgroupMount, TaskCgroup, DESTROY_ATTEMPTS, DESTROY_MAX_BACKOFF, FREEZE_TIMEOUT,
    V1_JOIN_FILE,
};

use std::io;
use std::path::PathBuf;

// For the backends (`v1`, `v2`), which read and write through these.
use dir::{keyed, read, read_u64, write, CgroupDir};

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

#[cfg(test)]
mod tests;
