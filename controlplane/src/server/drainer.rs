//! The node drainer: on the leader, moves allocations off draining nodes a few at a time and
//! ends each drain when nothing is left to move (after Nomad's `nomad/drainer`).
//!
//! [`decide`] is the whole policy, a pure function of (state, now): which allocations to mark
//! for migration (`desired_transition.migrate`), which evaluations make the scheduler act on
//! them, and which drains are complete. The scheduler does the moving: it places a replacement
//! while the original keeps running and stops the original once the replacement is healthy or
//! the drain's deadline passed (noded goes beyond Nomad here, which stops first:
//! hashicorp/nomad#5876). [`run`] is the leader loop that feeds [`decide`] each change of
//! nodes or allocations, and a tick for deadlines, and proposes what it returns.
//!
//! Per task group of each job, at most `migrate.max_parallel` (default 1) allocations migrate
//! at a time: an allocation marked for migration counts until the scheduler stops it, whatever
//! node it is on. Batch allocations are left to finish until the force deadline. System jobs
//! go last (once nothing else is left on the node), and not at all with `ignore_system_jobs`.
//! At the force deadline (or with a negative deadline: "force now") everything left is marked.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::Server;
use crate::model::time::parse_rfc3339;
use crate::model::{
    trigger, Allocation, DesiredStatus, DesiredTransition, EvalStatus, Evaluation, JobType, Node,
};
use crate::scheduler::tainted::{drain_deadline_passed, live_replacement};
use crate::state::{Command, State, Table};

/// How often the drainer looks again without a change (force deadlines pass by the clock).
pub const DRAINER_TICK: Duration = Duration::from_secs(1);
/// How long it waits after a proposal failed before it tries again.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

/// What the drainer wants proposed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DrainDecision {
    /// Allocations to mark for migration.
    pub transitions: BTreeMap<String, DesiredTransition>,
    /// Evaluations for the jobs whose allocations were marked, or whose migrating allocations
    /// can now be stopped (replacement healthy, or deadline passed).
    pub evals: Vec<Evaluation>,
    /// Draining nodes with nothing left to move.
    pub complete: Vec<String>,
}

impl DrainDecision {
    pub fn is_empty(&self) -> bool {
        self.transitions.is_empty() && self.evals.is_empty() && self.complete.is_empty()
    }
}

/// Decides, for every draining node of `state` at `now` (Unix nanoseconds), what to mark, what
/// to evaluate and which drains are done. Ids of new evaluations come from `new_id`.
pub fn decide(state: &State, now: i64, new_id: &mut dyn FnMut() -> String) -> DrainDecision {
    let mut decision = DrainDecision::default();
    // (namespace, job) → the node whose drain asks for it.
    let mut eval_jobs: BTreeMap<(String, String), String> = BTreeMap::new();
    for node in state.nodes() {
        let Some(strategy) = &node.drain_strategy else {
            continue;
        };
        let forced = drain_deadline_passed(&node, now);
        let must_move: Vec<Arc<Allocation>> = state
            .allocs_by_node(&node.id)
            .into_iter()
            .filter(|a| !a.is_terminal())
            .filter(|a| !(is_system(a) && strategy.ignore_system_jobs))
            .collect();
        if must_move.is_empty() {
            decision.complete.push(node.id.clone());
            continue;
        }
        // System allocations serve the node itself (log shippers, agents): they go last.
        let others: Vec<&Arc<Allocation>> = must_move.iter().filter(|a| !is_system(a)).collect();
        let movable: Vec<&Arc<Allocation>> = if others.is_empty() {
            must_move.iter().collect()
        } else {
            others
        };
        mark(
            state,
            &node,
            forced,
            &movable,
            &mut decision,
            &mut eval_jobs,
        );
        for alloc in &must_move {
            if ready_to_stop(state, &node, now, alloc) && !has_due_eval(state, alloc, now) {
                eval_jobs
                    .entry((alloc.namespace.clone(), alloc.job_id.clone()))
                    .or_insert_with(|| node.id.clone());
            }
        }
    }
    for ((namespace, job_id), node_id) in eval_jobs {
        let Some(job) = state.job(&namespace, &job_id) else {
            continue;
        };
        decision.evals.push(Evaluation {
            id: new_id(),
            namespace,
            priority: job.priority,
            eval_type: job.job_type.as_str().to_string(),
            triggered_by: trigger::NODE_DRAIN.to_string(),
            job_id,
            job_modify_index: job.job_modify_index,
            node_id,
            status: EvalStatus::Pending,
            ..Default::default()
        });
    }
    decision
}

/// Marks what may migrate now among `movable` (the node's live allocations to move this
/// round), per job and task group.
fn mark(
    state: &State,
    node: &Node,
    forced: bool,
    movable: &[&Arc<Allocation>],
    decision: &mut DrainDecision,
    eval_jobs: &mut BTreeMap<(String, String), String>,
) {
    let mut groups: BTreeMap<(String, String, String), Vec<&Arc<Allocation>>> = BTreeMap::new();
    for alloc in movable {
        groups
            .entry((
                alloc.namespace.clone(),
                alloc.job_id.clone(),
                alloc.task_group.clone(),
            ))
            .or_default()
            .push(alloc);
    }
    for ((namespace, job_id, group), mut allocs) in groups {
        allocs.retain(|a| !a.desired_transition.should_migrate());
        allocs.sort_by(|a, b| (a.name_index(), &a.id).cmp(&(b.name_index(), &b.id)));
        let job_type = allocs.first().map(|a| a.job_type()).unwrap_or_default();
        let room = if forced || matches!(job_type, JobType::System | JobType::Sysbatch) {
            allocs.len()
        } else if job_type == JobType::Batch {
            // Left to finish: a batch allocation restarted elsewhere loses its work.
            0
        } else {
            let in_flight = migrating_in_group(state, &namespace, &job_id, &group);
            max_parallel(state, &namespace, &job_id, &group).saturating_sub(in_flight)
        };
        for alloc in allocs.into_iter().take(room) {
            decision.transitions.insert(
                alloc.id.clone(),
                DesiredTransition {
                    migrate: Some(true),
                    ..Default::default()
                },
            );
            eval_jobs
                .entry((namespace.clone(), job_id.clone()))
                .or_insert_with(|| node.id.clone());
        }
    }
}

/// Allocations of the group, on any node, marked for migration and not yet stopped: each
/// takes one of the group's `max_parallel` slots until the scheduler stops it.
fn migrating_in_group(state: &State, namespace: &str, job_id: &str, group: &str) -> usize {
    state
        .allocs_by_job(namespace, job_id)
        .iter()
        .filter(|a| a.task_group == group && !a.is_terminal())
        .filter(|a| a.desired_transition.should_migrate())
        .count()
}

/// The group's `migrate.max_parallel` (the current job's; default 1, at least 1).
fn max_parallel(state: &State, namespace: &str, job_id: &str, group: &str) -> usize {
    state
        .job(namespace, job_id)
        .and_then(|j| {
            j.group(group)
                .and_then(|g| g.migrate.as_ref())
                .and_then(|m| m.max_parallel)
        })
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(1)
        .max(1)
}

/// Whether the scheduler would now stop this migrating allocation: its replacement is healthy,
/// or the drain's deadline passed. (The same rule as the scheduler's, so an evaluation asked
/// for here always has something to do.)
fn ready_to_stop(state: &State, node: &Node, now: i64, alloc: &Allocation) -> bool {
    if alloc.desired_status != DesiredStatus::Run || !alloc.desired_transition.should_migrate() {
        return false;
    }
    let job_allocs = state.allocs_by_job(&alloc.namespace, &alloc.job_id);
    match live_replacement(&job_allocs, alloc) {
        Some(r) => {
            drain_deadline_passed(node, now)
                || r.deployment_status.as_ref().is_some_and(|d| d.is_healthy())
        }
        None => false,
    }
}

/// Whether the job already has an evaluation waiting to run now (not a delayed one): asking
/// for another would only repeat it.
fn has_due_eval(state: &State, alloc: &Allocation, now: i64) -> bool {
    state
        .evals_by_job(&alloc.namespace, &alloc.job_id)
        .iter()
        .any(|e| {
            e.status == EvalStatus::Pending && parse_rfc3339(&e.wait_until).is_none_or(|t| t <= now)
        })
}

fn is_system(alloc: &Allocation) -> bool {
    matches!(alloc.job_type(), JobType::System | JobType::Sysbatch)
}

/// The leader's drainer loop: decides on every change of nodes or allocations (and every
/// [`DRAINER_TICK`], for deadlines) and proposes the result. Runs until the future is dropped
/// (leadership lost, shutdown).
pub(super) async fn run(server: Arc<Server>) {
    let tables = [Table::Nodes, Table::Allocs];
    let mut seen = 0;
    loop {
        let (state, _) = server.store.wait_for(&tables, seen, DRAINER_TICK).await;
        seen = state.max_index(&tables).max(1);
        let decision = decide(
            &state,
            crate::model::now_unix_nanos(),
            &mut crate::model::new_id,
        );
        if decision.is_empty() {
            continue;
        }
        if let Err(e) = propose(&server, decision).await {
            tracing::warn!("drainer: {e}; trying again in {RETRY_AFTER_ERROR:?}");
            tokio::time::sleep(RETRY_AFTER_ERROR).await;
        }
    }
}

async fn propose(server: &Server, decision: DrainDecision) -> Result<(), super::ServerError> {
    let now = crate::model::now_unix_nanos();
    if !decision.transitions.is_empty() || !decision.evals.is_empty() {
        let marked: BTreeSet<&String> = decision.transitions.keys().collect();
        tracing::info!(
            allocs = marked.len(),
            evals = decision.evals.len(),
            "drainer: migrating allocations"
        );
        server
            .propose(Command::AllocUpdateDesiredTransition {
                transitions: decision.transitions,
                evals: decision.evals,
                now,
            })
            .await?;
    }
    for node_id in decision.complete {
        tracing::info!(node_id = %node_id, "drainer: node drain complete");
        server
            .propose(Command::NodeDrainComplete { node_id, now })
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
