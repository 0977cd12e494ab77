//! Spare task cgroups, made before a task needs them (v1 and hybrid hosts).
//!
//! Making a v1 task cgroup is a `mkdir` on each of its hierarchies (memory, cpu, pids, cpuset),
//! and the kernel builds dozens of control files for each: the largest part of a task's
//! cgroup cost on the start path. Renaming a ready directory is one cheap kernfs operation,
//! so the manager keeps [`SPARE_CGROUPS`] of them, made off the start path
//! ([`CgroupManager::fill_spares`], called by the supervisor on a blocking thread after each
//! start), and [`CgroupManager::create`] renames one into place. Each spare already has its
//! cpuset's `cpus`/`mems` (a v1 cpuset refuses tasks without them) and the control files the
//! start path writes looked up once, so those opens find them in the dentry cache.
//!
//! Spares exist only where renaming a cgroup exists: cgroup v1. A v2 directory cannot be
//! renamed (the kernel has no rename for the unified hierarchy), so pure v2 hosts create task
//! cgroups directly (one `mkdir`, then `CLONE_INTO_CGROUP`), and on hybrid hosts the task's
//! directory in the v2 tree is still made at start.
//!
//! A spare is also made with the limits of the latest task that took one (see
//! [`SparePool::expected`]): tasks of one job share their limits, so the next start usually
//! finds them written and writes nothing. A spare whose limits differ (or are unknown) gets
//! every limit written at start, as a new directory does.
//!
//! Spares are named `.spare-<pid>-<n>`: task names cannot start with `.`, so the two never clash,
//! and [`CgroupManager::list`] leaves spares out. [`CgroupManager::remove_parent`] removes
//! them first; a manager made on a parent (at supervisor start) removes spares a previous
//! process left.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{v1, CgroupDir, CgroupError, CgroupLayout, CgroupLimits, CgroupManager, DirKind};

/// How many spares the manager keeps ready. Back-to-back starts take one each and the refill
/// runs meanwhile; a burst beyond this falls back to `mkdir`, which is correct, only slower.
pub const SPARE_CGROUPS: usize = 2;

/// Prefix of spare names (not a valid task name: task names cannot start with `.`).
pub(super) const SPARE_PREFIX: &str = ".spare-";

/// Control files the start path opens in a new task cgroup (limits and joining).
const WARM_FILES: [&str; 10] = [
    "memory.limit_in_bytes",
    "memory.memsw.limit_in_bytes",
    "memory.soft_limit_in_bytes",
    "memory.swappiness",
    "cpu.shares",
    "cpuset.cpus",
    "cpuset.mems",
    "pids.max",
    "tasks",
    "cgroup.procs",
];

/// A ready spare.
#[derive(Debug)]
struct Spare {
    name: String,
    /// The limits written into it when it was made, if all of them were.
    limits: Option<CgroupLimits>,
}

/// A spare handed to a start.
#[derive(Debug)]
pub(super) struct TakenSpare {
    pub name: String,
    /// Its v1 limits already are the task's: nothing to write.
    pub limits_written: bool,
}

/// The spares of one manager (shared by its clones).
#[derive(Debug, Default)]
pub(super) struct SparePool {
    ready: Vec<Spare>,
    /// The limits of the latest start that could take a spare: new spares are made with
    /// them.
    expected: Option<CgroupLimits>,
    /// Spares being made now (counted against [`SPARE_CGROUPS`]).
    making: usize,
    next: u64,
    /// Set by `remove_parent`: no spare is made or handed out any more.
    closed: bool,
}

pub(super) type SharedPool = Arc<Mutex<SparePool>>;

fn lock(pool: &SharedPool) -> MutexGuard<'_, SparePool> {
    // A panic while holding the lock leaves a consistent pool (plain pushes and pops).
    pool.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl CgroupManager {
    /// Whether this host's task cgroups can come from spares (v1 hierarchies exist).
    pub fn uses_spares(&self) -> bool {
        matches!(self.layout, CgroupLayout::V1 { .. }) && !self.spare_hierarchies().is_empty()
    }

    /// How many spares are ready now.
    pub fn spares_ready(&self) -> usize {
        lock(&self.spares).ready.len()
    }

    /// Makes spares until [`SPARE_CGROUPS`] are ready or being made. Blocking (several
    /// `mkdir`s): async callers run it on a blocking thread. Does nothing on v2.
    pub fn fill_spares(&self) -> Result<(), CgroupError> {
        if !self.uses_spares() {
            return Ok(());
        }
        loop {
            let (name, expected) = {
                let mut pool = lock(&self.spares);
                if pool.closed || pool.ready.len() + pool.making >= SPARE_CGROUPS {
                    return Ok(());
                }
                pool.making += 1;
                pool.next += 1;
                let name = format!("{SPARE_PREFIX}{}-{}", std::process::id(), pool.next);
                (name, pool.expected.clone())
            };
            let made = self.make_spare(&name, expected);
            let mut pool = lock(&self.spares);
            pool.making -= 1;
            match made {
                Ok(limits) if !pool.closed => pool.ready.push(Spare { name, limits }),
                Ok(_) => {
                    drop(pool);
                    self.remove_spare(&name);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The v1 hierarchies a spare spans: those of a task with a cpuset (every task the node
    /// daemon starts names its cpus).
    fn spare_hierarchies(&self) -> Vec<(PathBuf, DirKind)> {
        let with_cpuset = CgroupLimits {
            cpuset_cpus: Some(String::new()),
            ..CgroupLimits::default()
        };
        self.hierarchies_for(&with_cpuset)
            .into_iter()
            .filter(|(_, kind)| matches!(kind, DirKind::V1 { .. }))
            .collect()
    }

    /// Makes spare `name`, with `limits` written when given; returns the limits it has (none
    /// if writing them failed: the start then writes them all).
    fn make_spare(
        &self,
        name: &str,
        limits: Option<CgroupLimits>,
    ) -> Result<Option<CgroupLimits>, CgroupError> {
        let fs = self.fs.as_ref();
        let mut made: Vec<PathBuf> = Vec::new();
        let mut dirs: Vec<CgroupDir> = Vec::new();
        let result = (|| {
            for (root, kind) in self.spare_hierarchies() {
                let path = root.join(&self.parent).join(name);
                fs.create_dir(&path)
                    .map_err(|source| CgroupError::CreateDir {
                        path: path.clone(),
                        source,
                    })?;
                made.push(path.clone());
                let dir = CgroupDir { path, kind };
                if dir.has("cpuset") {
                    v1::inherit_cpuset(fs, &root.join(&self.parent), &dir.path)?;
                }
                for file in WARM_FILES {
                    // Only the lookup matters (it caches the entry); a file this controller
                    // does not have is cached as absent, which the start path asks too.
                    let _ = fs.exists(&dir.file(file));
                }
                dirs.push(dir);
            }
            Ok(())
        })();
        if let Err(e) = result {
            for path in made.iter().rev() {
                let _ = fs.remove_dir(path);
            }
            return Err(e);
        }
        let Some(limits) = limits else {
            return Ok(None);
        };
        for dir in &dirs {
            if let Err(e) = v1::apply_limits(fs, dir, &limits) {
                tracing::debug!(spare = name, error = %e, "writing the expected limits into a spare; the start writes them");
                return Ok(None);
            }
        }
        Ok(Some(limits))
    }

    /// Removes every directory of spare `name` (missing ones are fine).
    fn remove_spare(&self, name: &str) {
        for (root, _) in self.spare_hierarchies() {
            let path = root.join(&self.parent).join(name);
            match self.fs.remove_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a spare cgroup")
                }
            }
        }
    }

    /// Takes a ready spare for a task with `limits`, if the task's directories are the
    /// spare's (plus the v2 tree's, made by the caller). Spares made from now on get
    /// `limits`; one that has them already is preferred.
    pub(super) fn take_spare(&self, limits: &CgroupLimits) -> Option<TakenSpare> {
        if limits.cpuset_cpus.is_none() || !self.uses_spares() {
            return None;
        }
        let mut pool = lock(&self.spares);
        if pool.closed {
            return None;
        }
        if pool.expected.as_ref() != Some(limits) {
            pool.expected = Some(limits.clone());
        }
        let i = pool
            .ready
            .iter()
            .rposition(|s| s.limits.as_ref() == Some(limits))
            .or_else(|| pool.ready.len().checked_sub(1))?;
        let spare = pool.ready.remove(i);
        Some(TakenSpare {
            limits_written: spare.limits.as_ref() == Some(limits),
            name: spare.name,
        })
    }

    /// Renames spare `spare` to task `name` on every v1 hierarchy. On failure the renamed
    /// directories go back and the spare is removed; `Err` carries `AlreadyExists` when
    /// `name` is taken, any other error means "make the cgroup the slow way".
    pub(super) fn rename_spare(
        &self,
        spare: &str,
        name: &str,
    ) -> Result<Vec<CgroupDir>, CgroupError> {
        let fs = self.fs.as_ref();
        let mut renamed: Vec<(PathBuf, PathBuf)> = Vec::new();
        let mut dirs = Vec::new();
        for (root, kind) in self.spare_hierarchies() {
            let from = root.join(&self.parent).join(spare);
            let to = root.join(&self.parent).join(name);
            // kernfs refuses to rename onto an existing name (EEXIST): no need to look first.
            let outcome = fs.rename(&from, &to).map_err(|source| {
                if source.kind() == io::ErrorKind::AlreadyExists {
                    CgroupError::AlreadyExists { path: to.clone() }
                } else {
                    CgroupError::CreateDir {
                        path: to.clone(),
                        source,
                    }
                }
            });
            if let Err(e) = outcome {
                for (from, to) in renamed.iter().rev() {
                    let _ = fs.rename(to, from);
                }
                self.remove_spare(spare);
                return Err(e);
            }
            renamed.push((from, to.clone()));
            dirs.push(CgroupDir { path: to, kind });
        }
        Ok(dirs)
    }

    /// Removes spares of any process under this parent (at start, and before the parent
    /// itself goes).
    pub(super) fn remove_all_spares(&self) {
        let mut names = std::collections::BTreeSet::new();
        for (root, _) in self.spare_hierarchies() {
            if let Ok(children) = self.fs.child_dirs(&root.join(&self.parent)) {
                names.extend(children.into_iter().filter(|n| n.starts_with(SPARE_PREFIX)));
            }
        }
        lock(&self.spares)
            .ready
            .retain(|s| !names.contains(&s.name));
        for name in names {
            self.remove_spare(&name);
        }
    }

    /// Stops making and handing out spares, and removes them, after waiting (bounded) for a
    /// spare being made on another thread, so that none appears after the parent is gone.
    pub(super) fn close_spares(&self) {
        lock(&self.spares).closed = true;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while lock(&self.spares).making > 0 && std::time::Instant::now() < deadline {
            self.fs.pause(std::time::Duration::from_millis(1));
        }
        self.remove_all_spares();
    }
}
