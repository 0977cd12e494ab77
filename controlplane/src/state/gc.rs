//! Garbage collection: which finished jobs, evaluations, allocations and down nodes the servers
//! forget, as Nomad's core scheduler (`core_sched.go`) decides. [`collect`] is a pure function
//! of a state, "now" and the thresholds; what it returns is proposed as one
//! [`Command::GarbageCollect`], and [`State`] checks each object again when applying it.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::model::{JobStatus, JobType, NodeStatus};

use super::{Command, JobKey, State};

/// How old a finished object must be before it is collected (Nomad's server defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcThresholds {
    /// A dead job (stopped or finished) with nothing running (`job_gc_threshold`, 4h).
    pub job: Duration,
    /// A finished evaluation of a service job, with its finished allocations
    /// (`eval_gc_threshold`, 1h).
    pub eval: Duration,
    /// The same for batch jobs (`batch_eval_gc_threshold`, 24h).
    pub batch_eval: Duration,
    /// A node down this long with nothing running (`node_gc_threshold`, 24h).
    pub node: Duration,
    /// A finished deployment (`deployment_gc_threshold`, 1h).
    pub deployment: Duration,
}

impl Default for GcThresholds {
    fn default() -> Self {
        GcThresholds {
            job: Duration::from_secs(4 * 3600),
            eval: Duration::from_secs(3600),
            batch_eval: Duration::from_secs(24 * 3600),
            node: Duration::from_secs(24 * 3600),
            deployment: Duration::from_secs(3600),
        }
    }
}

/// Whether `then` (Unix nanos) is at least `threshold` before `now`; always with `force`.
fn old_enough(now: i64, then: i64, threshold: Duration, force: bool) -> bool {
    force || now.saturating_sub(then) >= i64::try_from(threshold.as_nanos()).unwrap_or(i64::MAX)
}

/// What may be collected in `state` at `now`; `force` ignores the ages (`PUT /v1/system/gc`).
/// `None` when there is nothing to collect.
pub fn collect(state: &State, now: i64, thresholds: &GcThresholds, force: bool) -> Option<Command> {
    let mut jobs: BTreeSet<JobKey> = BTreeSet::new();
    let mut evals: BTreeSet<String> = BTreeSet::new();
    let mut allocs: BTreeSet<String> = BTreeSet::new();

    // Jobs: dead, nothing pending or running, and quiet for long enough. They go with every
    // evaluation and allocation they have.
    for job in state.jobs(None) {
        if job.status != JobStatus::Dead {
            continue;
        }
        let job_evals = state.evals_by_job(&job.namespace, &job.id);
        let job_allocs = state.allocs_by_job(&job.namespace, &job.id);
        if job_evals.iter().any(|e| !e.status.is_terminal())
            || job_allocs.iter().any(|a| !a.is_terminal())
        {
            continue;
        }
        let last = job_evals
            .iter()
            .map(|e| e.modify_time)
            .chain(job_allocs.iter().map(|a| a.modify_time))
            .chain([job.submit_time])
            .max()
            .unwrap_or(0);
        if !old_enough(now, last, thresholds.job, force) {
            continue;
        }
        jobs.insert((job.namespace.clone(), job.id.clone()));
        evals.extend(job_evals.iter().map(|e| e.id.clone()));
        allocs.extend(job_allocs.iter().map(|a| a.id.clone()));
    }

    // Evaluations of jobs that stay: finished ones whose allocations have all finished. A
    // batch job that is still wanted keeps its finished allocations (its scheduler reads them
    // to know what already ran, as in Nomad).
    for eval in state.evals() {
        if evals.contains(&eval.id) || !eval.status.is_terminal() {
            continue;
        }
        let job = state.job(&eval.namespace, &eval.job_id);
        let batch = job
            .as_ref()
            .map(|j| matches!(j.job_type, JobType::Batch | JobType::Sysbatch))
            .unwrap_or(eval.eval_type == "batch" || eval.eval_type == "sysbatch");
        let threshold = if batch {
            thresholds.batch_eval
        } else {
            thresholds.eval
        };
        if !old_enough(now, eval.modify_time, threshold, force) {
            continue;
        }
        let its_allocs: Vec<_> = state
            .allocs_by_job(&eval.namespace, &eval.job_id)
            .into_iter()
            .filter(|a| a.eval_id == eval.id)
            .collect();
        if its_allocs
            .iter()
            .any(|a| !a.is_terminal() || !old_enough(now, a.modify_time, threshold, force))
        {
            continue;
        }
        let job_still_wanted = job
            .as_ref()
            .is_some_and(|j| !j.stop && j.status != JobStatus::Dead);
        evals.insert(eval.id.clone());
        if !(batch && job_still_wanted) {
            allocs.extend(its_allocs.iter().map(|a| a.id.clone()));
        }
    }

    // Nodes down for long enough with nothing left running on them.
    let node_ids: Vec<String> = state
        .nodes()
        .into_iter()
        .filter(|n| n.status == NodeStatus::Down)
        .filter(|n| {
            old_enough(
                now,
                n.status_updated_at.saturating_mul(1_000_000_000),
                thresholds.node,
                force,
            )
        })
        .filter(|n| state.allocs_by_node(&n.id).iter().all(|a| a.is_terminal()))
        .map(|n| n.id.clone())
        .collect();

    // Deployments that ended long enough ago (a purged job's go with it).
    let deployment_ids: Vec<String> = state
        .deployments()
        .into_iter()
        .filter(|d| !d.active() && !jobs.contains(&(d.namespace.clone(), d.job_id.clone())))
        .filter(|d| old_enough(now, d.modify_time, thresholds.deployment, force))
        .map(|d| d.id.clone())
        .collect();

    if jobs.is_empty()
        && evals.is_empty()
        && allocs.is_empty()
        && node_ids.is_empty()
        && deployment_ids.is_empty()
    {
        return None;
    }
    Some(Command::GarbageCollect {
        jobs: jobs.into_iter().collect(),
        eval_ids: evals.into_iter().collect(),
        alloc_ids: allocs.into_iter().collect(),
        node_ids,
        deployment_ids,
    })
}

impl State {
    /// Removes what a [`Command::GarbageCollect`] names, each only if it still qualifies: an
    /// evaluation finished, an allocation finished, a job dead with nothing unfinished, a node
    /// down with nothing running. Returns how many objects went.
    pub(super) fn apply_garbage_collect(
        &mut self,
        index: u64,
        jobs: &[(String, String)],
        eval_ids: &[String],
        alloc_ids: &[String],
        node_ids: &[String],
    ) -> usize {
        let mut removed = 0;
        let (mut evals_changed, mut allocs_changed, mut jobs_changed, mut nodes_changed) =
            (false, false, false, false);
        for id in eval_ids {
            let Some(eval) = self.evals.get(id).cloned() else {
                continue;
            };
            if !eval.status.is_terminal() {
                continue;
            }
            let k = super::key(&eval.namespace, &eval.job_id);
            if let Some(set) = self.evals_by_job.get_mut(&k) {
                set.remove(id);
                if set.is_empty() {
                    self.evals_by_job.remove(&k);
                }
            }
            self.evals.remove(id);
            evals_changed = true;
            removed += 1;
        }
        for id in alloc_ids {
            let Some(alloc) = self.allocs.get(id).cloned() else {
                continue;
            };
            if !alloc.is_terminal() {
                continue;
            }
            let k = super::key(&alloc.namespace, &alloc.job_id);
            if let Some(set) = self.allocs_by_job.get_mut(&k) {
                set.remove(id);
                if set.is_empty() {
                    self.allocs_by_job.remove(&k);
                }
            }
            if let Some(set) = self.allocs_by_node.get_mut(&alloc.node_id) {
                set.remove(id);
                if set.is_empty() {
                    self.allocs_by_node.remove(&alloc.node_id);
                }
            }
            self.allocs.remove(id);
            self.remove_alloc_services(index, id);
            allocs_changed = true;
            removed += 1;
        }
        for (namespace, job_id) in jobs {
            let k = super::key(namespace, job_id);
            let Some(job) = self.jobs.get(&k).cloned() else {
                continue;
            };
            let unfinished = self
                .evals_by_job(namespace, job_id)
                .iter()
                .any(|e| !e.status.is_terminal())
                || self
                    .allocs_by_job(namespace, job_id)
                    .iter()
                    .any(|a| !a.is_terminal());
            if job.status != JobStatus::Dead || unfinished {
                continue;
            }
            self.jobs.remove(&k);
            let versions: Vec<_> = self
                .job_versions
                .range((k.clone(), 0)..=(k.clone(), u64::MAX))
                .map(|(vk, _)| vk.clone())
                .collect();
            for vk in versions {
                self.job_versions.remove(&vk);
            }
            self.forget_job_extras(index, &k);
            jobs_changed = true;
            removed += 1;
        }
        for id in node_ids {
            let Some(node) = self.nodes.get(id) else {
                continue;
            };
            if node.status != NodeStatus::Down
                || self.allocs_by_node(id).iter().any(|a| !a.is_terminal())
            {
                continue;
            }
            self.nodes.remove(id);
            nodes_changed = true;
            removed += 1;
        }
        use super::Table;
        for (changed, tables) in [
            (evals_changed, &[Table::Evals][..]),
            (allocs_changed, &[Table::Allocs][..]),
            (jobs_changed, &[Table::Jobs, Table::JobVersions][..]),
            (nodes_changed, &[Table::Nodes][..]),
        ] {
            if changed {
                for table in tables {
                    self.touch(*table, index);
                }
            }
        }
        removed
    }
}
