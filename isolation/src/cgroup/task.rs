//! One task's cgroup ([`TaskCgroup`]): what a child needs to join it ([`CgroupJoin`]), its
//! processes, signals, cpuset, OOM count, statistics and destruction.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::dir::{keyed, read, write, CgroupDir, DirKind};
use super::limits::validate_cpu_list;
use super::{v1, v2, CgroupError, CgroupFs, CgroupStats};

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

/// One task's cgroup (one directory per hierarchy).
#[derive(Debug, Clone)]
pub struct TaskCgroup {
    pub(super) name: String,
    pub(super) dirs: Vec<CgroupDir>,
    pub(super) fs: Arc<dyn CgroupFs>,
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
