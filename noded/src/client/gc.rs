//! Garbage collection of terminal allocations on this node (Nomad's client GC): their
//! directories (logs included), mounts, task cgroups (through the supervisor's `Remove`) and
//! records are destroyed, oldest terminal first, when
//! - the allocations' filesystem is above `gc_disk_usage_threshold` % of its space or
//!   `gc_inode_usage_threshold` % of its inodes, or
//! - more than `gc_max_allocs` allocations (live and terminal) are on the node,
//!
//! checked every `gc_interval` (not at once when an allocation ends: its logs stay readable
//! until the next check); at most
//! `gc_parallel_destroys` destroys run at a time. `/v1/client/gc` collects every terminal
//! allocation now, `/v1/client/allocation/:id/gc` one. A live allocation is never collected.
//!
//! The decision is a pure function ([`plan`]) of the candidates, the count and the usage.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, Semaphore};

use super::allocdir::AllocDir;
use super::ClientShared;
use crate::supervisor::protocol::{Request, Response};

/// The client's garbage-collection settings: the agent's `client { gc_* }` keys, defaults
/// Nomad's.
pub use super::settings::GcSettings as GcConfig;

/// How full the allocations' filesystem is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskUsage {
    pub used_percent: f64,
    pub inodes_used_percent: f64,
}

/// `statvfs` of the filesystem holding `path`.
pub fn disk_usage(path: &Path) -> Result<DiskUsage, nix::Error> {
    let s = nix::sys::statvfs::statvfs(path)?;
    let percent = |free: u64, total: u64| {
        if total == 0 {
            0.0
        } else {
            (total.saturating_sub(free)) as f64 * 100.0 / total as f64
        }
    };
    Ok(DiskUsage {
        used_percent: percent(s.blocks_available(), s.blocks()),
        inodes_used_percent: percent(s.files_available(), s.files()),
    })
}

/// Why collecting is needed now, if it is (Nomad's order: disk, inodes, count).
pub fn gc_reason(
    config: &GcConfig,
    total_allocs: usize,
    usage: Option<DiskUsage>,
) -> Option<String> {
    if let Some(u) = usage {
        if u.used_percent > config.disk_usage_threshold {
            return Some(format!(
                "disk usage of {:.0} is over gc threshold of {:.0}",
                u.used_percent, config.disk_usage_threshold
            ));
        }
        if u.inodes_used_percent > config.inode_usage_threshold {
            return Some(format!(
                "inode usage of {:.0} is over gc threshold of {:.0}",
                u.inodes_used_percent, config.inode_usage_threshold
            ));
        }
    }
    (total_allocs > config.max_allocs).then(|| {
        format!(
            "number of allocations ({total_allocs}) is over the limit ({})",
            config.max_allocs
        )
    })
}

/// What to collect now: the reason and the allocations, oldest terminal first. Over a usage
/// threshold, one at a time (usage is measured again after each); over the count, as many as
/// bring the count to the limit. `candidates` are terminal allocations with when they ended.
pub fn plan(
    config: &GcConfig,
    candidates: &[(String, i64)],
    total_allocs: usize,
    usage: Option<DiskUsage>,
) -> Option<(String, Vec<String>)> {
    let reason = gc_reason(config, total_allocs, usage)?;
    let mut oldest: Vec<&(String, i64)> = candidates.iter().collect();
    oldest.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    let over_usage = gc_reason(config, 0, usage).is_some();
    let n = if over_usage {
        1
    } else {
        total_allocs.saturating_sub(config.max_allocs)
    };
    Some((
        reason,
        oldest
            .into_iter()
            .take(n)
            .map(|(id, _)| id.clone())
            .collect(),
    ))
}

/// Terminal allocations waiting to be collected, and the machinery to collect them.
#[derive(Debug)]
pub struct AllocGc {
    config: GcConfig,
    /// Alloc id → when it ended (unix nanoseconds).
    candidates: Mutex<BTreeMap<String, i64>>,
    destroys: Semaphore,
    trigger: Notify,
}

/// Limit on the rounds of one collection pass over a usage threshold (each collects one
/// allocation and measures again): the pass stops there and the next interval goes on.
const MAX_ROUNDS_PER_PASS: usize = 1000;

impl AllocGc {
    pub fn new(config: GcConfig) -> AllocGc {
        let permits = config.parallel_destroys.max(1);
        AllocGc {
            config,
            candidates: Mutex::new(BTreeMap::new()),
            destroys: Semaphore::new(permits),
            trigger: Notify::new(),
        }
    }

    pub fn config(&self) -> &GcConfig {
        &self.config
    }

    /// Marks a terminal allocation for collection.
    pub fn mark(&self, alloc_id: &str, ended_unix_nanos: i64) {
        if let Ok(mut c) = self.candidates.lock() {
            c.entry(alloc_id.to_string()).or_insert(ended_unix_nanos);
        }
    }

    /// Takes an allocation off the candidates (it runs again here).
    pub fn unmark(&self, alloc_id: &str) {
        if let Ok(mut c) = self.candidates.lock() {
            c.remove(alloc_id);
        }
    }

    pub fn is_candidate(&self, alloc_id: &str) -> bool {
        self.candidates
            .lock()
            .map(|c| c.contains_key(alloc_id))
            .unwrap_or(false)
    }

    pub fn candidate_count(&self) -> usize {
        self.candidates.lock().map(|c| c.len()).unwrap_or(0)
    }

    fn candidates(&self) -> Vec<(String, i64)> {
        self.candidates
            .lock()
            .map(|c| c.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    fn take(&self, alloc_id: &str) -> bool {
        self.candidates
            .lock()
            .map(|mut c| c.remove(alloc_id).is_some())
            .unwrap_or(false)
    }

    /// Asks the loop to check now rather than at the next interval.
    pub fn trigger(&self) {
        self.trigger.notify_one();
    }

    /// Every `interval` (or when triggered): collect while a reason holds. `live` counts the
    /// allocations still running here.
    pub async fn run(self: Arc<Self>, shared: Arc<ClientShared>, live: impl Fn() -> usize) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.config.interval) => {}
                _ = self.trigger.notified() => {}
            }
            self.keep_below_limits(&shared, &live).await;
        }
    }

    async fn keep_below_limits(&self, shared: &Arc<ClientShared>, live: &impl Fn() -> usize) {
        for _ in 0..MAX_ROUNDS_PER_PASS {
            let root = shared.allocs_root.clone();
            let usage = match tokio::task::spawn_blocking(move || disk_usage(&root)).await {
                Ok(Ok(u)) => Some(u),
                Ok(Err(e)) => {
                    tracing::warn!(dir = %shared.allocs_root.display(), "measuring disk usage for garbage collection: {e}");
                    None
                }
                Err(_) => None,
            };
            let candidates = self.candidates();
            let total = live() + candidates.len();
            let Some((reason, ids)) = plan(&self.config, &candidates, total, usage) else {
                return;
            };
            if ids.is_empty() {
                tracing::info!(%reason, "garbage collection skipped because no terminal allocations");
                return;
            }
            let batch = ids.iter().map(|id| self.collect(shared, id, &reason));
            futures::future::join_all(batch).await;
        }
    }

    /// Collects one terminal allocation; false if it is not a candidate (live, unknown, or
    /// collected already).
    pub async fn collect(&self, shared: &Arc<ClientShared>, alloc_id: &str, reason: &str) -> bool {
        if !self.take(alloc_id) {
            return false;
        }
        let Ok(_permit) = self.destroys.acquire().await else {
            return false;
        };
        tracing::info!(alloc = alloc_id, reason, "garbage collecting allocation");
        if let Err(e) = destroy(shared, alloc_id).await {
            tracing::warn!(alloc = alloc_id, "garbage collecting: {e}");
        }
        true
    }

    /// Collects every terminal allocation now (`/v1/client/gc`), `parallel_destroys` at a
    /// time; how many.
    pub async fn collect_all(&self, shared: &Arc<ClientShared>) -> usize {
        let ids: Vec<String> = self.candidates().into_iter().map(|(id, _)| id).collect();
        let runs = ids
            .iter()
            .map(|id| self.collect(shared, id, "forced full node collection"));
        futures::future::join_all(runs)
            .await
            .into_iter()
            .filter(|collected| *collected)
            .count()
    }
}

/// Removes what a terminal allocation left: its exited tasks' cgroups (the supervisor's
/// `Remove`), its mounts and directory (logs included), its record.
async fn destroy(shared: &Arc<ClientShared>, alloc_id: &str) -> Result<(), String> {
    let prefix = format!("{alloc_id}.");
    if let Ok(Response::Tasks { tasks }) = shared.supervisor.call(&Request::List).await {
        for t in tasks.iter().filter(|t| t.task_id.starts_with(&prefix)) {
            if t.exit.is_none() {
                // Candidates are terminal; a running task means the servers placed it here
                // again meanwhile. Never collect what runs.
                return Err(format!(
                    "task {} is running again: not collected",
                    t.task_id
                ));
            }
            match shared
                .supervisor
                .call(&Request::Remove {
                    task_id: t.task_id.clone(),
                })
                .await
            {
                Ok(Response::Ok) => {}
                Ok(other) => {
                    tracing::warn!(task = %t.task_id, "removing the task's cgroup: {other:?}")
                }
                Err(e) => tracing::warn!(task = %t.task_id, "removing the task's cgroup: {e}"),
            }
        }
    }
    let root = shared.allocs_root.clone();
    let id = alloc_id.to_string();
    let state = shared.state.clone();
    tokio::task::spawn_blocking(move || {
        AllocDir::new(&root, &id)
            .and_then(|d| d.destroy())
            .map_err(|e| format!("removing the allocation directory: {e}"))?;
        state
            .delete_alloc(&id)
            .map_err(|e| format!("forgetting the allocation: {e}"))
    })
    .await
    .map_err(|e| format!("garbage collection task failed: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(v: &[(&str, i64)]) -> Vec<(String, i64)> {
        v.iter().map(|(id, t)| (id.to_string(), *t)).collect()
    }

    const CALM: Option<DiskUsage> = Some(DiskUsage {
        used_percent: 10.0,
        inodes_used_percent: 10.0,
    });

    #[test]
    fn nothing_is_collected_below_every_limit() {
        let c = GcConfig::default();
        assert_eq!(plan(&c, &cands(&[("a", 1)]), 50, CALM), None);
        assert_eq!(plan(&c, &cands(&[("a", 1)]), 50, None), None);
    }

    #[test]
    fn over_the_count_the_oldest_terminal_ones_go_until_the_limit_is_met() {
        let c = GcConfig {
            max_allocs: 3,
            ..Default::default()
        };
        let (reason, ids) = plan(
            &c,
            &cands(&[("new", 30), ("old", 10), ("mid", 20)]),
            5,
            CALM,
        )
        .unwrap();
        assert_eq!(reason, "number of allocations (5) is over the limit (3)");
        assert_eq!(ids, ["old", "mid"]);
        // Live allocations count but are never candidates: with one candidate, one goes.
        let (_, ids) = plan(&c, &cands(&[("only", 5)]), 10, CALM).unwrap();
        assert_eq!(ids, ["only"]);
    }

    #[test]
    fn over_a_usage_threshold_the_oldest_goes_first_one_at_a_time() {
        let c = GcConfig::default();
        let full = Some(DiskUsage {
            used_percent: 91.0,
            inodes_used_percent: 10.0,
        });
        let (reason, ids) = plan(&c, &cands(&[("b", 2), ("a", 1)]), 2, full).unwrap();
        assert_eq!(reason, "disk usage of 91 is over gc threshold of 80");
        assert_eq!(ids, ["a"]);
        let inodes = Some(DiskUsage {
            used_percent: 10.0,
            inodes_used_percent: 75.0,
        });
        let (reason, ids) = plan(&c, &cands(&[("b", 2), ("a", 1)]), 2, inodes).unwrap();
        assert_eq!(reason, "inode usage of 75 is over gc threshold of 70");
        assert_eq!(ids, ["a"]);
    }

    #[test]
    fn over_a_limit_with_no_terminal_allocation_nothing_is_collected() {
        let c = GcConfig {
            max_allocs: 1,
            ..Default::default()
        };
        let (_, ids) = plan(&c, &[], 4, CALM).unwrap();
        assert!(ids.is_empty(), "live allocations are never collected");
    }

    #[test]
    fn disk_usage_of_a_real_filesystem_is_a_percentage() {
        let u = disk_usage(Path::new("/")).unwrap();
        assert!((0.0..=100.0).contains(&u.used_percent), "{u:?}");
        assert!((0.0..=100.0).contains(&u.inodes_used_percent), "{u:?}");
    }

    #[tokio::test]
    async fn at_most_parallel_destroys_permits_exist() {
        let gc = AllocGc::new(GcConfig {
            parallel_destroys: 0,
            ..Default::default()
        });
        assert_eq!(gc.destroys.available_permits(), 1, "0 is taken as 1");
        gc.mark("a", 5);
        gc.mark("a", 9);
        assert_eq!(
            gc.candidates(),
            cands(&[("a", 5)]),
            "the first end time stays"
        );
        assert!(gc.is_candidate("a"));
        gc.unmark("a");
        assert_eq!(gc.candidate_count(), 0);
    }
}
