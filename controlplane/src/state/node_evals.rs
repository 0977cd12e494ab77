//! Which evaluations a change to a node calls for (Nomad's `createNodeEvals` and
//! `shouldCreateNodeEval`): the jobs with allocations on it (to replace or stop them) and every
//! system job that selects it (to place on it, or stop there). Read-only over the state; the
//! caller proposes the evaluations in the same Raft entry as the node change.

use std::collections::BTreeSet;

use super::State;
use crate::model::{
    ClientStatus, DesiredStatus, EvalStatus, Evaluation, Job, JobType, Node, NodeStatus,
};

impl State {
    /// One pending evaluation per job the change to `node_id` concerns, for a node already in
    /// the state (down, drained, eligible again…): see [`State::node_evals`]. Ids come from
    /// `new_id` so the caller decides (random in a server, fixed in a test).
    pub fn node_update_evals(
        &self,
        node_id: &str,
        triggered_by: &str,
        new_id: &mut dyn FnMut() -> String,
    ) -> Vec<Evaluation> {
        match self.node(node_id) {
            Some(node) => self.node_evals(&node, triggered_by, new_id),
            // A node the state does not hold has no system jobs to place; its allocations
            // (if any are left) still need their jobs looked at.
            None => self.evals_for(self.alloc_jobs(node_id), node_id, triggered_by, new_id),
        }
    }

    /// One pending evaluation per job concerned by `node` as given (which may be newer than
    /// the state's copy, as on registration): jobs with allocations on it that still matter
    /// (service ones not finished on both sides, batch ones not finished), and every system
    /// job not stopped whose datacenters and node pool select it. Sysbatch jobs are left out,
    /// as Nomad leaves them out: they run what their registration (or periodic launch) placed,
    /// and a node event must not start their work on nodes that joined since.
    pub fn node_evals(
        &self,
        node: &Node,
        triggered_by: &str,
        new_id: &mut dyn FnMut() -> String,
    ) -> Vec<Evaluation> {
        let mut jobs = self.alloc_jobs(&node.id);
        for job in self.jobs(None) {
            if job.job_type == JobType::System
                && !job.stop
                && crate::scheduler::system_selects(&job, node)
            {
                jobs.insert((job.namespace.clone(), job.id.clone()));
            }
        }
        self.evals_for(jobs, &node.id, triggered_by, new_id)
    }

    /// (namespace, job) of the allocations on `node_id` a node event should look at again.
    fn alloc_jobs(&self, node_id: &str) -> BTreeSet<(String, String)> {
        let mut jobs = BTreeSet::new();
        for alloc in self.allocs_by_node(node_id) {
            let relevant = match alloc.job_type() {
                JobType::Service => {
                    alloc.desired_status == DesiredStatus::Run || !alloc.client_status.is_terminal()
                }
                JobType::Batch => !matches!(
                    alloc.client_status,
                    ClientStatus::Failed | ClientStatus::Complete | ClientStatus::Lost
                ),
                JobType::System => {
                    alloc.desired_status == DesiredStatus::Run && !alloc.client_status.is_terminal()
                }
                JobType::Sysbatch => false,
            };
            if relevant {
                jobs.insert((alloc.namespace.clone(), alloc.job_id.clone()));
            }
        }
        jobs
    }

    fn evals_for(
        &self,
        jobs: BTreeSet<(String, String)>,
        node_id: &str,
        triggered_by: &str,
        new_id: &mut dyn FnMut() -> String,
    ) -> Vec<Evaluation> {
        jobs.into_iter()
            .filter_map(|(namespace, job_id)| {
                let job = self.job(&namespace, &job_id)?;
                Some(node_eval(&job, node_id, triggered_by, new_id()))
            })
            .collect()
    }
}

fn node_eval(job: &Job, node_id: &str, triggered_by: &str, id: String) -> Evaluation {
    Evaluation {
        id,
        namespace: job.namespace.clone(),
        priority: job.priority,
        eval_type: job.job_type.as_str().to_string(),
        triggered_by: triggered_by.to_string(),
        job_id: job.id.clone(),
        job_modify_index: job.job_modify_index,
        node_id: node_id.to_string(),
        status: EvalStatus::Pending,
        ..Default::default()
    }
}

/// Whether a node's (re-)registration calls for evaluations (Nomad's `shouldCreateNodeEval`):
/// a new node, a status change, or a change to what feasibility reads (datacenter, name,
/// class, attributes, meta, drivers, host volumes). Resources are left out: more room wakes
/// blocked evaluations instead.
pub fn should_create_node_eval(original: Option<&Node>, updated: &Node) -> bool {
    if matches!(updated.status, NodeStatus::Down | NodeStatus::Disconnected) {
        return true;
    }
    let Some(original) = original else {
        return true;
    };
    let drivers = |n: &Node| {
        n.drivers
            .iter()
            .map(|(name, d)| (name.clone(), d.detected, d.healthy, d.attributes.clone()))
            .collect::<Vec<_>>()
    };
    // Registration makes an initializing node ready: that is no change of status.
    let status = |s: NodeStatus| match s {
        NodeStatus::Initializing => NodeStatus::Ready,
        s => s,
    };
    status(original.status) != status(updated.status)
        || original.datacenter != updated.datacenter
        || original.name != updated.name
        || original.node_class != updated.node_class
        || original.node_pool != updated.node_pool
        || original.attributes != updated.attributes
        || original.meta != updated.meta
        || drivers(original) != drivers(updated)
        || original.host_volumes != updated.host_volumes
}
