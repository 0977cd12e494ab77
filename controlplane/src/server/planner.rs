//! The plan applier: the one place plans become state. Plans are checked one at a time against
//! the newest state — a node may have filled up or gone away since the worker took its snapshot
//! (optimistic concurrency) — and what still fits is committed through Raft.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::model::{Allocation, Job, NodeStatus, NodeUsage};
use crate::scheduler::Plan;
use crate::state::{AllocPreemption, PlanResult, State};

/// What the applier decided for one plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanVerdict {
    /// The part to commit.
    pub result: PlanResult,
    /// Nodes whose placements no longer fit, with the reason.
    pub rejected_nodes: BTreeMap<String, String>,
}

impl PlanVerdict {
    pub fn fully_accepted(&self) -> bool {
        self.rejected_nodes.is_empty()
    }
}

/// Checks `plan` against `state` (the newest one) and returns what may be committed. Pure.
///
/// Stops always apply. Placements apply per node: a node that is gone, not ready, or would be
/// over capacity rejects all of its placements; with `all_at_once` one rejected node rejects
/// every placement. The evaluation's outcome is committed only with a fully accepted plan — the
/// worker re-plans otherwise.
pub fn evaluate_plan(state: &State, plan: &Plan, now: i64) -> PlanVerdict {
    let mut rejected = BTreeMap::new();
    let mut accepted = Vec::new();
    let mut preemptions = Vec::new();
    for (node_id, allocs) in &plan.node_allocation {
        if allocs.is_empty() {
            continue;
        }
        match check_node(state, plan, node_id) {
            Ok(()) => {
                accepted.extend(allocs.iter().cloned());
                // Evictions go with the placements they make room for, never alone.
                // One the state no longer holds (collected since) frees nothing and is skipped.
                preemptions.extend(
                    plan.node_preemptions
                        .get(node_id)
                        .into_iter()
                        .flatten()
                        .filter(|p| state.alloc(&p.alloc_id).is_some())
                        .cloned(),
                );
            }
            Err(why) => {
                rejected.insert(node_id.clone(), why);
            }
        }
    }
    if plan.all_at_once && !rejected.is_empty() {
        accepted.clear();
        preemptions.clear();
    }
    let full = rejected.is_empty();
    let mut created_evals = if full {
        plan.created_evals.clone()
    } else {
        Vec::new()
    };
    created_evals.extend(preemption_evals(state, plan, &preemptions));
    let result = PlanResult {
        eval: full.then(|| plan.eval.clone()),
        allocs: normalize(accepted, plan.job.as_ref()),
        stops: plan.node_update.values().flatten().cloned().collect(),
        created_evals,
        now,
        preemptions,
        job: plan.job.clone(),
        // As Nomad's applier: the deployment and its status changes go with whatever part
        // of the plan is committed (a partial commit still started the rollout).
        deployment: plan.deployment.clone(),
        deployment_updates: plan.deployment_updates.clone(),
    };
    debug_assert_commits_fit(state, &result);
    PlanVerdict {
        result,
        rejected_nodes: rejected,
    }
}

/// Drops the job from every allocation that runs the plan's own version of it: the result
/// carries that version once and the state machine gives it back to them.
fn normalize(mut allocs: Vec<Allocation>, job: Option<&Arc<Job>>) -> Vec<Allocation> {
    let Some(job) = job else {
        return allocs;
    };
    for alloc in &mut allocs {
        let same = alloc.job.as_ref().is_some_and(|j| {
            Arc::ptr_eq(j, job)
                || (j.namespace == job.namespace
                    && j.id == job.id
                    && j.job_modify_index == job.job_modify_index)
        });
        if same {
            alloc.job = None;
        }
    }
    allocs
}

/// The plan's evaluations for jobs that lose an allocation to an accepted preemption.
fn preemption_evals(
    state: &State,
    plan: &Plan,
    preemptions: &[AllocPreemption],
) -> Vec<crate::model::Evaluation> {
    let jobs: BTreeSet<(String, String)> = preemptions
        .iter()
        .filter_map(|p| state.alloc(&p.alloc_id))
        .map(|a| (a.namespace.clone(), a.job_id.clone()))
        .collect();
    plan.preemption_evals
        .iter()
        .filter(|e| jobs.contains(&(e.namespace.clone(), e.job_id.clone())))
        .cloned()
        .collect()
}

/// What is committed never overcommits a node: the state machine must accept `result` against
/// the state it was decided on. Its check counts less than [`check_node`] (not the allocations
/// earlier plans stopped that still run), so this fails only if the two disagree about a
/// node, which is a bug. Debug builds only: it walks every allocation of every node placed on
/// again, and the state machine runs the same check in release builds before it writes.
fn debug_assert_commits_fit(state: &State, result: &PlanResult) {
    if !cfg!(debug_assertions) {
        return;
    }
    if let Err(e) = state.check_plan(result) {
        panic!("the plan applier accepted what overcommits a node: {e}");
    }
}

/// Whether `node_id`'s placements in `plan` still fit the newest state; why not otherwise.
fn check_node(state: &State, plan: &Plan, node_id: &str) -> Result<(), String> {
    let Some(node) = state.node(node_id) else {
        return Err("node no longer exists".to_string());
    };
    let placing = plan
        .node_allocation
        .get(node_id)
        .map(Vec::as_slice)
        .unwrap_or_default();
    // A node that is not ready takes no new allocation, but its existing ones may still be
    // updated in place: that is how the servers mark them `unknown` when it disconnects.
    let only_updates = placing
        .iter()
        .all(|p| state.alloc(&p.id).is_some_and(|a| a.node_id == node_id));
    if node.status != NodeStatus::Ready && !only_updates {
        return Err(format!("node is {}", node.status.as_str()));
    }
    let stopping: Vec<&str> = plan
        .node_update
        .get(node_id)
        .into_iter()
        .flatten()
        .map(|s| s.alloc_id.as_str())
        .chain(
            plan.node_preemptions
                .get(node_id)
                .into_iter()
                .flatten()
                .map(|p| p.alloc_id.as_str()),
        )
        .collect();
    // Counted: what still holds resources on the node (by its client's word, even if an
    // earlier plan stopped it), except what this plan stops or replaces; then the placements.
    // Sets, not lists: a node packed with thousands of allocations takes a plan of a thousand
    // placements, and a list scan per allocation would cost their product.
    let stopping: BTreeSet<&str> = stopping.into_iter().collect();
    let placing_ids: BTreeSet<&str> = placing.iter().map(|p| p.id.as_str()).collect();
    let staying: Vec<_> = state
        .allocs_by_node(node_id)
        .into_iter()
        .filter(|a| a.holds_resources())
        .filter(|a| !stopping.contains(a.id.as_str()) && !placing_ids.contains(a.id.as_str()))
        .collect();
    let counted = staying
        .iter()
        .map(|a| &a.allocated_resources)
        .chain(placing.iter().map(|a| &a.allocated_resources));
    NodeUsage::check(&node, counted)
        .map(|_| ())
        .map_err(|overcommit| overcommit.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use crate::state::Command;

    fn node(id: &str, cpu: i64) -> Node {
        Node {
            id: id.into(),
            status: NodeStatus::Ready,
            node_resources: NodeResources {
                cpu: NodeCpuResources {
                    cpu_shares: cpu,
                    total_cpu_cores: 4,
                    reservable_cpu_cores: vec![0, 1, 2, 3],
                },
                memory: NodeMemoryResources { memory_mb: 1024 },
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn alloc(id: &str, node: &str, cpu: i64) -> Allocation {
        let mut a = Allocation {
            id: id.into(),
            node_id: node.into(),
            job_id: "j".into(),
            ..Default::default()
        };
        a.allocated_resources.tasks.insert(
            "t".into(),
            AllocatedTaskResources {
                cpu: AllocatedCpuResources {
                    cpu_shares: cpu,
                    ..Default::default()
                },
                memory: AllocatedMemoryResources {
                    memory_mb: 10,
                    memory_max_mb: 0,
                },
            },
        );
        a
    }

    fn state_with(nodes: Vec<Node>, allocs: Vec<Allocation>) -> State {
        let mut s = State::default();
        let mut i = 0;
        for n in nodes {
            i += 1;
            s.apply(
                i,
                &Command::NodeRegister {
                    node: Box::new(n),
                    now: 0,
                },
            );
        }
        let (resp, _) = s.apply(
            i + 1,
            &Command::PlanApply(Box::new(PlanResult {
                allocs,
                ..Default::default()
            })),
        );
        assert_eq!(resp.error, None, "the fixture's allocations must fit");
        s
    }

    fn plan_placing(allocs: Vec<Allocation>) -> Plan {
        let mut plan = Plan {
            eval: Evaluation {
                id: "e".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        for a in allocs {
            plan.node_allocation
                .entry(a.node_id.clone())
                .or_default()
                .push(a);
        }
        plan
    }

    #[test]
    fn a_node_filled_since_the_snapshot_rejects_its_placements() {
        // Another plan already used 800 of 1000 MHz on n1.
        let state = state_with(
            vec![node("n1", 1000), node("n2", 1000)],
            vec![alloc("old", "n1", 800)],
        );
        let plan = plan_placing(vec![alloc("x", "n1", 300), alloc("y", "n2", 300)]);
        let verdict = evaluate_plan(&state, &plan, 0);
        assert!(!verdict.fully_accepted());
        assert!(verdict.rejected_nodes["n1"].contains("cpu exhausted"));
        assert_eq!(verdict.result.allocs.len(), 1);
        assert_eq!(verdict.result.allocs[0].id, "y");
        assert!(
            verdict.result.eval.is_none(),
            "the evaluation is not done yet"
        );
    }

    #[test]
    fn a_plan_result_carries_its_job_once_and_the_state_gives_it_back_to_each_allocation() {
        let mut state = state_with(vec![node("n1", 1000)], vec![]);
        let job = Arc::new(Job {
            id: "j".into(),
            job_modify_index: 7,
            ..Default::default()
        });
        let placed: Vec<Allocation> = ["x", "y"]
            .iter()
            .map(|id| Allocation {
                job: Some(job.clone()),
                ..alloc(id, "n1", 100)
            })
            .collect();
        let mut plan = plan_placing(placed);
        plan.job = Some(job.clone());
        let verdict = evaluate_plan(&state, &plan, 0);
        assert!(verdict.result.allocs.iter().all(|a| a.job.is_none()));
        assert_eq!(verdict.result.job.as_deref(), Some(&*job));
        // Through the log's encoding, as a follower applies it.
        let bytes = serde_json::to_vec(&verdict.result).unwrap();
        let decoded: PlanResult = serde_json::from_slice(&bytes).unwrap();
        let (resp, _) = state.apply(100, &Command::PlanApply(Box::new(decoded)));
        assert_eq!(resp.error, None);
        let (x, y) = (state.alloc("x").unwrap(), state.alloc("y").unwrap());
        assert_eq!(x.job.as_deref(), Some(&*job));
        // One decoded copy, shared.
        assert!(Arc::ptr_eq(
            x.job.as_ref().unwrap(),
            y.job.as_ref().unwrap()
        ));
    }

    #[test]
    fn all_at_once_rejects_everything() {
        let state = state_with(
            vec![node("n1", 1000), node("n2", 1000)],
            vec![alloc("old", "n1", 800)],
        );
        let mut plan = plan_placing(vec![alloc("x", "n1", 300), alloc("y", "n2", 300)]);
        plan.all_at_once = true;
        assert!(evaluate_plan(&state, &plan, 0).result.allocs.is_empty());
    }

    #[test]
    fn stops_in_the_same_plan_free_room() {
        let state = state_with(vec![node("n1", 1000)], vec![alloc("old", "n1", 800)]);
        let mut plan = plan_placing(vec![alloc("x", "n1", 800)]);
        plan.node_update.insert(
            "n1".into(),
            vec![crate::state::AllocStop {
                alloc_id: "old".into(),
                desired_status: DesiredStatus::Stop,
                desired_description: String::new(),
                client_status: None,
            }],
        );
        let verdict = evaluate_plan(&state, &plan, 0);
        assert!(verdict.fully_accepted(), "{:?}", verdict.rejected_nodes);
        assert_eq!(verdict.result.stops.len(), 1);
        assert!(verdict.result.eval.is_some());
    }

    #[test]
    fn in_place_updates_are_not_counted_twice() {
        let state = state_with(vec![node("n1", 1000)], vec![alloc("a", "n1", 800)]);
        let plan = plan_placing(vec![alloc("a", "n1", 800)]);
        assert!(evaluate_plan(&state, &plan, 0).fully_accepted());
    }

    #[test]
    fn two_allocations_cannot_hold_the_same_core() {
        let mut holder = alloc("old", "n1", 100);
        holder
            .allocated_resources
            .tasks
            .get_mut("t")
            .unwrap()
            .cpu
            .reserved_cores = vec![1];
        let state = state_with(vec![node("n1", 4000)], vec![holder]);
        let mut taker = alloc("new", "n1", 100);
        taker
            .allocated_resources
            .tasks
            .get_mut("t")
            .unwrap()
            .cpu
            .reserved_cores = vec![1];
        let verdict = evaluate_plan(&state, &plan_placing(vec![taker]), 0);
        assert!(
            verdict.rejected_nodes["n1"].contains("core 1"),
            "{:?}",
            verdict.rejected_nodes
        );
    }

    #[test]
    fn reserved_cores_must_be_ones_the_node_offers() {
        let state = state_with(vec![node("n1", 4000)], vec![]);
        let mut taker = alloc("new", "n1", 100);
        taker
            .allocated_resources
            .tasks
            .get_mut("t")
            .unwrap()
            .cpu
            .reserved_cores = vec![9];
        let verdict = evaluate_plan(&state, &plan_placing(vec![taker]), 0);
        assert!(
            verdict.rejected_nodes["n1"].contains("core 9 is not one this node offers"),
            "{:?}",
            verdict.rejected_nodes
        );
    }

    #[test]
    #[should_panic(expected = "the plan applier accepted what overcommits a node")]
    fn committing_what_overcommits_a_node_fires_the_applier_assertion() {
        let state = state_with(vec![node("n1", 1000)], vec![alloc("old", "n1", 800)]);
        debug_assert_commits_fit(
            &state,
            &PlanResult {
                allocs: vec![alloc("x", "n1", 300)],
                ..Default::default()
            },
        );
    }

    #[test]
    fn a_vanished_node_is_rejected() {
        let state = state_with(vec![], vec![]);
        let plan = plan_placing(vec![alloc("x", "gone", 1)]);
        assert_eq!(
            evaluate_plan(&state, &plan, 0).rejected_nodes["gone"],
            "node no longer exists"
        );
    }
}
