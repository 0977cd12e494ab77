//! The state machine's half of "a committed plan never overcommits a node": a plan is checked
//! against the state it is about to change, and the nodes it placed on are checked again once
//! it is written.
//!
//! What counts on a node is every allocation the servers still want running there and whose
//! client has not reported it finished (`!Allocation::is_terminal()`), plus the plan's own
//! placements; allocations the plan stops or replaces no longer count. The plan applier counts
//! more than that (also allocations stopped by earlier plans that still run), so a plan it
//! accepted always passes here, unless something changed in between.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{PlanResult, State};
use crate::model::{Allocation, NodeUsage, Overcommit};

/// Why the state machine refuses a whole plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanRefused {
    #[error("plan places allocations on node {node_id:?}, which is not registered")]
    UnknownNode { node_id: String },
    /// Allocations leave the state by garbage collection (finished ones only) or a snapshot
    /// restore, so a plan made before one can name an allocation the state no longer holds.
    #[error("plan stops allocation {alloc_id:?}, which the state does not hold (it was collected, or a snapshot was restored, since the plan was made)")]
    UnknownAlloc { alloc_id: String },
    #[error("plan would overcommit node {node_id:?}: {overcommit}")]
    Overcommit {
        node_id: String,
        overcommit: Overcommit,
    },
}

impl State {
    /// Whether `plan` may be written whole: every node it places on is registered and stays
    /// within its capacity (cpu, memory, disk, reserved cores, host ports).
    ///
    /// The plan applier checked the same against the newest state it had, but commands it did
    /// not see can be applied between its check and this one: a node re-registering with less
    /// capacity, say. That is input, not a bug, so the plan is refused (deterministically, on
    /// every server) rather than asserted; the worker re-plans.
    pub fn check_plan(&self, plan: &PlanResult) -> Result<(), PlanRefused> {
        // Preempted allocations are stopped (evicted) with the plan: they no longer count.
        let stopped: BTreeSet<&str> = plan
            .stops
            .iter()
            .map(|s| s.alloc_id.as_str())
            .chain(plan.preemptions.iter().map(|p| p.alloc_id.as_str()))
            .collect();
        if let Some(unknown) = stopped.iter().find(|id| !self.allocs.contains_key(**id)) {
            return Err(PlanRefused::UnknownAlloc {
                alloc_id: unknown.to_string(),
            });
        }
        for (node_id, placing) in placements_by_node(plan) {
            let Some(node) = self.nodes.get(node_id) else {
                return Err(PlanRefused::UnknownNode {
                    node_id: node_id.to_string(),
                });
            };
            let replaced: BTreeSet<&str> = placing.iter().map(|a| a.id.as_str()).collect();
            let staying: Vec<Arc<Allocation>> = self
                .allocs_by_node(node_id)
                .into_iter()
                .filter(|a| !a.is_terminal())
                .filter(|a| !stopped.contains(a.id.as_str()) && !replaced.contains(a.id.as_str()))
                .collect();
            let counted = staying
                .iter()
                .map(|a| &a.allocated_resources)
                .chain(placing.iter().map(|a| &a.allocated_resources));
            NodeUsage::check(node, counted).map_err(|overcommit| PlanRefused::Overcommit {
                node_id: node_id.to_string(),
                overcommit,
            })?;
        }
        Ok(())
    }

    /// After a plan is written: the allocations that count on every node it placed on fit
    /// that node. [`State::check_plan`] refused anything else before writing, so a failure
    /// here is a bug in how the plan was written (an index that lost an allocation, a
    /// placement counted twice): stop before that state is built upon.
    ///
    /// Walks every allocation of those nodes, so only in debug builds: the state machine is
    /// the hot path every change goes through.
    pub(super) fn debug_assert_plan_fits(&self, plan: &PlanResult) {
        if !cfg!(debug_assertions) {
            return;
        }
        for node_id in placements_by_node(plan).into_keys() {
            let Some(node) = self.nodes.get(node_id) else {
                panic!("plan placed allocations on node {node_id:?}, which is not registered");
            };
            let on_node = self.allocs_by_node(node_id);
            for alloc in &on_node {
                assert_eq!(
                    alloc.node_id, node_id,
                    "allocation {} is indexed under node {node_id:?} but placed on {:?}",
                    alloc.id, alloc.node_id
                );
            }
            let counted = on_node
                .iter()
                .filter(|a| !a.is_terminal())
                .map(|a| &a.allocated_resources);
            if let Err(e) = NodeUsage::check(node, counted) {
                panic!("a committed plan overcommitted node {node_id:?}: {e}");
            }
        }
    }
}

/// A plan's placements grouped by node.
fn placements_by_node(plan: &PlanResult) -> BTreeMap<&str, Vec<&Allocation>> {
    let mut by_node: BTreeMap<&str, Vec<&Allocation>> = BTreeMap::new();
    for alloc in &plan.allocs {
        by_node
            .entry(alloc.node_id.as_str())
            .or_default()
            .push(alloc);
    }
    by_node
}
