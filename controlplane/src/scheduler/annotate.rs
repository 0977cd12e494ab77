//! What a plan does to each task group's allocations, counted as Nomad's `DesiredUpdates`
//! (the "1 create, 2 in-place update" of `job plan`). Read from the plan itself, so whatever
//! the reconciler decides (rolling `max_parallel`, canaries) shows up here without a second
//! copy of its rules.

use std::collections::{BTreeMap, BTreeSet};

use super::tainted::DESC_MIGRATING;
use super::{Plan, DESC_JOB_UPDATED};
use crate::model::{DesiredStatus, DesiredUpdates};
use crate::state::State;

/// Per group of the plan's job: placements without a predecessor are creates; a stop for a
/// job update and its replacement one destructive update; a stop for a migration and its
/// replacement one migrate; an existing allocation written again an in-place update; any
/// other stop a destroy; a new allocation marked canary a canary; the evictions a group's
/// placements cause its preemptions; and a live allocation the plan leaves alone an ignore.
pub fn annotate(state: &State, plan: &Plan) -> BTreeMap<String, DesiredUpdates> {
    let mut out: BTreeMap<String, DesiredUpdates> = BTreeMap::new();
    if let Some(job) = &plan.job {
        for group in &job.task_groups {
            out.entry(group.name.clone()).or_default();
        }
    }
    let group_of = |id: &str| state.alloc(id).map(|a| a.task_group.clone());
    let mut touched: BTreeSet<&str> = BTreeSet::new();
    // Predecessors whose stop already counts for their replacement.
    let mut replaced: BTreeSet<&str> = BTreeSet::new();
    for stop in plan.node_update.values().flatten() {
        touched.insert(&stop.alloc_id);
        let Some(group) = group_of(&stop.alloc_id) else {
            continue;
        };
        let counts = out.entry(group).or_default();
        match stop.desired_description.as_str() {
            DESC_JOB_UPDATED => {
                counts.destructive_update += 1;
                replaced.insert(&stop.alloc_id);
            }
            DESC_MIGRATING => {
                counts.migrate += 1;
                replaced.insert(&stop.alloc_id);
            }
            _ => counts.stop += 1,
        }
    }
    let mut placed_by: BTreeMap<&str, &str> = BTreeMap::new();
    for alloc in plan.node_allocation.values().flatten() {
        touched.insert(&alloc.id);
        placed_by.insert(&alloc.id, &alloc.task_group);
        let counts = out.entry(alloc.task_group.clone()).or_default();
        if state.alloc(&alloc.id).is_some() {
            counts.in_place_update += 1;
        } else if alloc.deployment_status.as_ref().is_some_and(|d| d.canary) {
            counts.canary += 1;
        } else if !replaced.contains(alloc.previous_allocation.as_str()) {
            counts.place += 1;
        }
    }
    for eviction in plan.node_preemptions.values().flatten() {
        if let Some(group) = placed_by.get(eviction.preempted_by_allocation.as_str()) {
            out.entry(group.to_string()).or_default().preemptions += 1;
        }
    }
    let job_id = &plan.eval.job_id;
    for alloc in state.allocs_by_job(&plan.eval.namespace, job_id) {
        let live = alloc.desired_status == DesiredStatus::Run && !alloc.client_status.is_terminal();
        if live && !touched.contains(alloc.id.as_str()) {
            if let Some(counts) = out.get_mut(&alloc.task_group) {
                counts.ignore += 1;
            }
        }
    }
    out
}
