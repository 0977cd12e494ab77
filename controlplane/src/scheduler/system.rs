//! The system and sysbatch schedulers (Nomad's `SystemScheduler` and its node reconciler):
//! one allocation of each group on every ready, eligible node the job can run on, named
//! `<job>.<group>[0]`.
//!
//! Per node and group: an allocation on a node that is down or gone is lost (not replaced
//! elsewhere: it belongs to that node); one a drain marked to migrate is stopped; one on a node
//! the job no longer selects (datacenter, pool) is stopped; an ineligible or draining node
//! keeps its allocation until the job changes; a newer job version updates it in place or
//! replaces it on the same node, as [`super::tasks_updated`] says. A node with none gets one,
//! if it can run the group and has room. A node the group's rules filter out is not a failure;
//! a feasible node without room is, and only that creates a blocked evaluation.
//!
//! Sysbatch: a finished allocation (complete or failed) of the current job version is done
//! on its node and not run again; the client's restart policy is its only retry (Nomad's
//! sysbatch jobs have no reschedule policy).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::tainted::{
    client_status_state, disconnect_expired, duration_nanos, last_unknown, lost_after,
    needs_to_reconnect, DESC_LOST, DESC_MIGRATING,
};
use super::{
    deployment, feasible, tasks_updated, Run, SchedulerEnv, DESC_GROUP_REMOVED, DESC_JOB_UPDATED,
    DESC_NOT_NEEDED,
};
use crate::model::{
    AllocMetric, Allocation, ClientStatus, Job, JobType, Node, NodeStatus, TaskGroup,
};

/// The stop description of a system allocation on a node the job no longer selects.
pub const DESC_NODE_NOT_SELECTED: &str = "alloc not needed as node is no longer eligible";

/// What placing on one given node came to.
pub(super) enum NodePlacement {
    Placed,
    /// The node cannot run the group at all (its metrics say why): not a failure.
    Filtered(Box<AllocMetric>),
    /// It can but has no room: recorded as a failed placement a blocked evaluation retries.
    Exhausted,
}

/// What a system run decided for one existing allocation.
enum Verdict {
    /// It stays, counted on its node.
    Keep,
    /// It was stopped (or set aside): its node needs another only if `place_again`.
    Gone { place_again: bool },
}

impl Run<'_> {
    /// Reconciles a system or sysbatch job: every group on every node that should run it.
    pub(super) fn reconcile_system(&mut self, job: Arc<Job>, env: &mut dyn SchedulerEnv) {
        self.system = true;
        let allocs = self.allocs.clone();
        for alloc in allocs.iter().filter(|a| !a.is_terminal()) {
            if job.group(&alloc.task_group).is_none() {
                self.stop(alloc, DESC_GROUP_REMOVED);
            }
        }
        let nodes = self.state.nodes();
        for group in &job.task_groups {
            self.reconcile_system_group(&job, group, &allocs, &nodes, env);
        }
    }

    fn reconcile_system_group(
        &mut self,
        job: &Arc<Job>,
        group: &TaskGroup,
        allocs: &[Arc<Allocation>],
        nodes: &[Arc<Node>],
        env: &mut dyn SchedulerEnv,
    ) {
        let mine: Vec<&Arc<Allocation>> = allocs
            .iter()
            .filter(|a| a.task_group == group.name)
            .collect();
        self.system_rollout(job, group, &mine, env);
        // Live allocations by node, oldest first; and the newest finished one per node (a
        // replacement names it; for sysbatch it may mean the work is done).
        let mut live: BTreeMap<&str, Vec<&Arc<Allocation>>> = BTreeMap::new();
        let mut finished: BTreeMap<&str, &Arc<Allocation>> = BTreeMap::new();
        for alloc in &mine {
            if alloc.is_terminal() {
                let newer = finished
                    .get(alloc.node_id.as_str())
                    .is_none_or(|f| f.create_index < alloc.create_index);
                if newer {
                    finished.insert(alloc.node_id.as_str(), alloc);
                }
            } else {
                live.entry(alloc.node_id.as_str()).or_default().push(alloc);
            }
        }
        let mut needs: BTreeMap<String, String> = BTreeMap::new();
        let mut kept_nodes = 0usize;
        // Allocations stopped for a destructive update, by id: one whose replacement finds
        // no room keeps running.
        let mut replaced: BTreeMap<String, Arc<Allocation>> = BTreeMap::new();
        for (node_id, on_node) in live.iter_mut() {
            on_node.sort_by_key(|a| a.create_index);
            let mut kept = false;
            for alloc in on_node.iter() {
                if kept {
                    // One per node: a second copy (from a race) goes.
                    self.stop(alloc, DESC_NOT_NEEDED);
                    continue;
                }
                match self.system_existing(job, group, alloc) {
                    Verdict::Keep => kept = true,
                    Verdict::Gone { place_again } => {
                        if place_again {
                            needs.insert(node_id.to_string(), alloc.id.clone());
                            replaced.insert(alloc.id.clone(), Arc::clone(alloc));
                        }
                    }
                }
            }
            if kept {
                needs.remove(*node_id);
                kept_nodes += 1;
            }
        }
        let mut filtered = AllocMetric::default();
        let mut placed = 0usize;
        for node in nodes {
            let previous = match needs.remove(node.id.as_str()) {
                Some(previous) => previous,
                None if live.contains_key(node.id.as_str()) => continue,
                None => match finished.get(node.id.as_str()) {
                    Some(done) if job.job_type == JobType::Sysbatch && !rerun(job, group, done) => {
                        continue
                    }
                    Some(done) => done.id.clone(),
                    None => String::new(),
                },
            };
            if !feasible::job_selects(job, node) || !node.is_schedulable() {
                continue;
            }
            let old = replaced.get(&previous).cloned();
            match self.place_on_node(job, group, 0, previous, node, env) {
                NodePlacement::Placed => placed += 1,
                NodePlacement::Filtered(metric) => merge_filtered(&mut filtered, &metric),
                NodePlacement::Exhausted => {
                    // The new version does not fit where the old one runs: the old one keeps
                    // running (a node the new version cannot run on at all is left).
                    if let Some(old) = old {
                        self.unstop(&old);
                        kept_nodes += 1;
                    }
                }
            }
        }
        // A system group's deployment wants it on every node it runs on now.
        self.rollout
            .set_desired_total(&group.name, (kept_nodes + placed) as u64);
        // Nodes the group's rules filter out are reported only when the group runs nowhere:
        // otherwise they are simply not its nodes.
        if placed == 0 && live.is_empty() && filtered.nodes_filtered > 0 {
            self.failed.entry(group.name.clone()).or_insert(filtered);
        }
    }

    /// Decides one live allocation of a system job (see the module's rules).
    fn system_existing(
        &mut self,
        job: &Arc<Job>,
        group: &TaskGroup,
        alloc: &Arc<Allocation>,
    ) -> Verdict {
        if alloc.desired_transition.should_migrate() {
            self.stop(alloc, DESC_MIGRATING);
            return Verdict::Gone { place_again: false };
        }
        let node = self.state.node(&alloc.node_id);
        let status = node.as_ref().map(|n| n.status);
        match status {
            None | Some(NodeStatus::Down) => {
                self.stop_as(alloc, DESC_LOST, Some(ClientStatus::Lost));
                return Verdict::Gone { place_again: false };
            }
            Some(NodeStatus::Disconnected) => return self.system_disconnected(group, alloc),
            _ => {}
        }
        if needs_to_reconnect(alloc) {
            if disconnect_expired(alloc, group, self.now) {
                self.stop_as(alloc, DESC_LOST, Some(ClientStatus::Lost));
                return Verdict::Gone { place_again: false };
            }
            if alloc.client_status != ClientStatus::Unknown {
                // Back: its history now says what its client reported.
                let mut updated = self.pending_copy(alloc);
                updated
                    .alloc_states
                    .push(client_status_state(alloc.client_status, self.now));
                updated.eval_id = self.plan.eval.id.clone();
                self.update_alloc(updated);
            }
        }
        let Some(node) = node else {
            return Verdict::Keep;
        };
        if !feasible::job_selects(job, &node) {
            self.stop(alloc, DESC_NODE_NOT_SELECTED);
            return Verdict::Gone { place_again: false };
        }
        let current = alloc
            .job
            .as_ref()
            .is_some_and(|j| j.job_modify_index == job.job_modify_index);
        if current {
            return Verdict::Keep;
        }
        if !node.is_schedulable() {
            // An ineligible or draining node keeps what runs there, but not an old version.
            self.stop(alloc, DESC_NOT_NEEDED);
            return Verdict::Gone { place_again: false };
        }
        let in_place = alloc
            .job
            .as_ref()
            .is_some_and(|old| tasks_updated(old, job, &group.name).is_none())
            && self.still_feasible(job, group, &node.id);
        if in_place {
            let mut updated = self.pending_copy(alloc);
            updated.job = Some(job.clone());
            updated.eval_id = self.plan.eval.id.clone();
            let deployment_id = self.rollout.placement_id();
            if updated.deployment_id != deployment_id {
                updated.deployment_id = deployment_id;
                updated.deployment_status = None;
            }
            self.update_alloc(updated);
            Verdict::Keep
        } else if self.system_replace_budget == Some(0) {
            // Past the rollout's `max_parallel`: it keeps running the old version until the
            // deployment watcher's next evaluation.
            Verdict::Keep
        } else {
            if let Some(budget) = self.system_replace_budget.as_mut() {
                *budget -= 1;
            }
            self.stop(alloc, DESC_JOB_UPDATED);
            Verdict::Gone { place_again: true }
        }
    }

    /// A system group's rollout (Nomad 1.10's system deployments, without canaries): starts
    /// the group's deployment when it has an `update` block with `max_parallel > 0` and this
    /// version is new to it or changes some of its allocations, and sets how many
    /// allocations this run may replace: `max_parallel` less the deployment's allocations not
    /// healthy yet (an unhealthy one does not hold a slot, as in Nomad's system scheduler);
    /// none while the deployment is paused or failed.
    fn system_rollout(
        &mut self,
        job: &Arc<Job>,
        group: &TaskGroup,
        mine: &[&Arc<Allocation>],
        env: &mut dyn SchedulerEnv,
    ) {
        self.system_replace_budget = None;
        if !deployment::has_strategy(group) || job.job_type != JobType::System {
            return;
        }
        let live: Vec<Arc<Allocation>> = mine
            .iter()
            .filter(|a| !a.is_terminal())
            .map(|a| Arc::clone(a))
            .collect();
        let outdated = live.iter().any(|a| {
            a.job
                .as_ref()
                .is_none_or(|j| j.job_modify_index != job.job_modify_index)
        });
        let paused_or_failed = self.rollout.paused() || self.rollout.failed();
        let same_version_ended = self.rollout.old.as_ref().is_some_and(|d| {
            d.job_version == job.version && d.job_create_index == job.create_index
        });
        let all: Vec<Arc<Allocation>> = mine.iter().map(|a| Arc::clone(a)).collect();
        if self.rollout.group_state(&group.name).is_none()
            && !paused_or_failed
            && !same_version_ended
            && deployment::starts_deployment(job, group, &all, outdated)
        {
            let (priority, now) = (self.plan.priority, self.now);
            self.rollout
                .start_group(job, group, priority, now, || env.new_id());
        }
        if paused_or_failed {
            self.system_replace_budget = Some(0);
            return;
        }
        let Some(d) = self.rollout.current.as_ref() else {
            self.system_replace_budget = Some(deployment::max_parallel(group));
            return;
        };
        let pending = live
            .iter()
            .filter(|a| a.deployment_id == d.id)
            .filter(|a| {
                a.deployment_status
                    .as_ref()
                    .and_then(|s| s.healthy)
                    .is_none()
            })
            .count();
        self.system_replace_budget = Some(deployment::max_parallel(group).saturating_sub(pending));
    }

    /// A live allocation on a disconnected node: with a disconnect window, a running one
    /// becomes `unknown` and waits (a delayed evaluation marks it lost when the window ends);
    /// without one, or past it, it is lost. Never replaced elsewhere.
    fn system_disconnected(&mut self, group: &TaskGroup, alloc: &Arc<Allocation>) -> Verdict {
        let window = lost_after(group);
        let expired = alloc.client_status == ClientStatus::Unknown
            && disconnect_expired(alloc, group, self.now);
        if window.is_none() || expired || alloc.client_status == ClientStatus::Pending {
            self.stop_as(alloc, DESC_LOST, Some(ClientStatus::Lost));
            return Verdict::Gone { place_again: false };
        }
        let since = if alloc.client_status == ClientStatus::Unknown {
            last_unknown(alloc)
        } else {
            self.mark_unknown(alloc);
            Some(self.now)
        };
        if let (Some(since), Some(window)) = (since, window) {
            self.disconnect_expiries
                .insert(since.saturating_add(duration_nanos(window)));
        }
        Verdict::Keep
    }

    /// The allocation as this run has it so far (an earlier update of this run included).
    fn pending_copy(&self, alloc: &Allocation) -> Allocation {
        self.updates
            .get(&alloc.id)
            .cloned()
            .unwrap_or_else(|| alloc.clone())
    }
}

/// Whether a finished sysbatch allocation's node runs the group again: only for a newer job
/// version that changed what runs (an in-place change leaves finished work done).
fn rerun(job: &Job, group: &TaskGroup, done: &Allocation) -> bool {
    match &done.job {
        Some(old) if old.job_modify_index != job.job_modify_index => {
            tasks_updated(old, job, &group.name).is_some()
        }
        Some(_) => false,
        None => true,
    }
}

/// Adds one node's filter metrics to the group's.
fn merge_filtered(into: &mut AllocMetric, from: &AllocMetric) {
    into.nodes_evaluated += from.nodes_evaluated;
    into.nodes_in_pool += from.nodes_in_pool;
    into.nodes_filtered += from.nodes_filtered;
    for (k, v) in &from.class_filtered {
        *into.class_filtered.entry(k.clone()).or_default() += v;
    }
    for (k, v) in &from.constraint_filtered {
        *into.constraint_filtered.entry(k.clone()).or_default() += v;
    }
}
