//! A plan: what one scheduler run wants changed. The plan applier checks it against the newest
//! state before anything is committed.

use std::collections::BTreeMap;

use std::sync::Arc;

use crate::model::{Allocation, Deployment, DeploymentStatusUpdate, Evaluation, Job};
use crate::state::{AllocPreemption, AllocStop};

/// The outcome a scheduler run proposes for one evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The evaluation this plan answers, with the status it should have once the plan commits.
    pub eval: Evaluation,
    /// The job's priority; the applier may order plans by it.
    pub priority: i32,
    /// Commit everything or nothing (`all_at_once`).
    pub all_at_once: bool,
    /// New placements and in-place updates, by node id.
    pub node_allocation: BTreeMap<String, Vec<Allocation>>,
    /// Allocations to stop, by node id.
    pub node_update: BTreeMap<String, Vec<AllocStop>>,
    /// Evaluations the scheduler wants created (a blocked evaluation for unplaced work).
    pub created_evals: Vec<Evaluation>,
    /// Lower-priority allocations evicted to make room for this plan's placements, by node.
    pub node_preemptions: BTreeMap<String, Vec<AllocPreemption>>,
    /// One evaluation (trigger `preemption`) per job with a preempted allocation, so that it
    /// is rescheduled: the applier creates those whose job lost an allocation on a node it
    /// accepted, even when it rejects other nodes.
    pub preemption_evals: Vec<Evaluation>,
    /// The state index the plan was computed against.
    pub snapshot_index: u64,
    /// The job version placed (none when the job is gone): the plan applier commits it once
    /// and the allocations running it without a copy each.
    pub job: Option<Arc<Job>>,
    /// The deployment this plan creates or updates (a job version with an `update` block
    /// rolling out).
    pub deployment: Option<Deployment>,
    /// Status changes of other deployments (an older version's cancelled).
    pub deployment_updates: Vec<DeploymentStatusUpdate>,
}

impl Plan {
    pub fn is_no_op(&self) -> bool {
        self.node_allocation.values().all(Vec::is_empty)
            && self.node_update.values().all(Vec::is_empty)
            && self.node_preemptions.values().all(Vec::is_empty)
    }

    pub fn placement_count(&self) -> usize {
        self.node_allocation.values().map(Vec::len).sum()
    }
}
