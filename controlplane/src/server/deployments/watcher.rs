//! The deployment watcher: on the leader, moves every active deployment along from its
//! allocations' health and its groups' progress deadlines (after Nomad's
//! `nomad/deploymentwatcher`).
//!
//! [`decide`] is the whole policy, a pure function of (state, now, memory): per active
//! deployment at most one [`Proposal`] — fail it (an unhealthy allocation its group cannot
//! replace: no progress deadline, or no reschedule attempts left; a passed progress deadline;
//! with `auto_revert`, the latest stable version registered again), allow the replacement of
//! unhealthy allocations that can still be rescheduled (Nomad's "allow replacements"), promote its
//! canaries (`auto_promote`), mark it successful, or ask the scheduler for the next step (an
//! evaluation after a health change). [`run`] is the leader loop that feeds it every change of
//! allocations, deployments or evaluations, and a tick for deadlines.
//!
//! Whether an evaluation is owed is read from the state, as Nomad does: a healthy allocation
//! whose health was written after the newest evaluation of the job the scheduler saw. So a new
//! leader rebuilds everything it needs from the state; its [`WatcherMemory`] only keeps it from
//! proposing again what it proposed last for a deployment that has not changed since (a refused
//! or lost proposal is not repeated every tick).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::super::Server;
use crate::model::time::parse_rfc3339;
use crate::model::{
    deployment_description, deployment_status, trigger, Allocation, Deployment, DeploymentState,
    DeploymentStatusUpdate, DesiredStatus, DesiredTransition, EvalStatus, Evaluation, Job,
};
use crate::scheduler::reschedule;
use crate::state::{same_spec, Command, State, Table};

/// How often the watcher looks again without a change (progress deadlines pass by the clock).
pub const WATCHER_TICK: Duration = Duration::from_secs(1);
/// How long it waits after a proposal failed before it tries again.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

/// What the watcher wants done with one deployment.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Fail the deployment (`update`), registering `job` again when it auto-reverts; the
    /// evaluation makes the scheduler act on the failure.
    Fail {
        update: DeploymentStatusUpdate,
        job: Option<Box<Job>>,
        eval: Evaluation,
    },
    /// Promote every group's canaries (all canary groups `auto_promote`, all healthy).
    Promote { eval: Evaluation },
    /// Every group is complete: the deployment succeeded (the state marks the version stable).
    Succeed { update: DeploymentStatusUpdate },
    /// Health changed since the scheduler last looked: it can take the next step.
    Evaluate { eval: Evaluation },
    /// Unhealthy allocations that may still be replaced within the progress deadline (Nomad's
    /// "allow replacements"): marked `DesiredTransition.Reschedule`, and an evaluation.
    AllowReplacements {
        alloc_ids: Vec<String>,
        eval: Evaluation,
    },
}

impl Action {
    fn kind(&self) -> &'static str {
        match self {
            Action::Fail { .. } => "fail",
            Action::Promote { .. } => "promote",
            Action::Succeed { .. } => "succeed",
            Action::Evaluate { .. } => "evaluate",
            Action::AllowReplacements { .. } => "allow-replacements",
        }
    }
}

/// One decision about one deployment, and what identifies it for [`WatcherMemory`].
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub deployment_id: String,
    pub action: Action,
    key: ProposalKey,
}

impl Proposal {
    /// The Raft command that carries this proposal.
    pub fn command(&self, now: i64) -> Command {
        match &self.action {
            Action::Fail { update, job, eval } => Command::DeploymentStatusUpdate {
                update: update.clone(),
                job: job.clone(),
                eval: Some(eval.clone()),
                now,
            },
            Action::Promote { eval } => Command::DeploymentPromote {
                deployment_id: self.deployment_id.clone(),
                all: true,
                groups: Vec::new(),
                eval: Some(eval.clone()),
                now,
            },
            Action::Succeed { update } => Command::DeploymentStatusUpdate {
                update: update.clone(),
                job: None,
                eval: None,
                now,
            },
            Action::Evaluate { eval } => Command::EvalUpdate {
                evals: vec![eval.clone()],
                now,
            },
            Action::AllowReplacements { alloc_ids, eval } => {
                Command::AllocUpdateDesiredTransition {
                    transitions: alloc_ids
                        .iter()
                        .map(|id| {
                            let allow = DesiredTransition {
                                reschedule: Some(true),
                                ..Default::default()
                            };
                            (id.clone(), allow)
                        })
                        .collect(),
                    evals: vec![eval.clone()],
                    now,
                }
            }
        }
    }
}

/// What a proposal was about: its kind, the deployment as it was (modify index) and the
/// newest health change of its allocations. The same key twice means nothing moved.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProposalKey {
    kind: &'static str,
    deployment_modify_index: u64,
    health_index: u64,
}

/// The leader's memory of what it proposed last per deployment. Lost with leadership on
/// purpose: everything else is read from the state.
#[derive(Debug, Default)]
pub struct WatcherMemory {
    last: BTreeMap<String, ProposalKey>,
}

impl WatcherMemory {
    /// Records what was proposed, so that [`decide`] does not propose it again unchanged.
    pub fn remember(&mut self, proposal: &Proposal) {
        self.last
            .insert(proposal.deployment_id.clone(), proposal.key.clone());
    }

    /// Forgets deployments that are no longer active (bounded by the active deployments).
    fn retain_active(&mut self, state: &State) {
        self.last
            .retain(|id, _| state.deployment(id).is_some_and(|d| d.active()));
    }
}

/// Decides, for every active deployment of `state` at `now` (Unix nanoseconds), what to
/// propose. Ids of new evaluations come from `new_id`. Proposals equal to the last one
/// remembered for their deployment are left out.
pub fn decide(
    state: &State,
    now: i64,
    memory: &WatcherMemory,
    new_id: &mut dyn FnMut() -> String,
) -> Vec<Proposal> {
    let mut out = Vec::new();
    for d in state.deployments() {
        if !d.active() {
            continue;
        }
        let Some(action) = decide_one(state, &d, now, new_id) else {
            continue;
        };
        let key = ProposalKey {
            kind: action.kind(),
            deployment_modify_index: d.modify_index,
            health_index: health_index(state, &d),
        };
        if memory.last.get(&d.id) == Some(&key) {
            continue;
        }
        out.push(Proposal {
            deployment_id: d.id.clone(),
            action,
            key,
        });
    }
    out
}

/// The one thing to do with an active deployment, most urgent first.
fn decide_one(
    state: &State,
    d: &Deployment,
    now: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Option<Action> {
    let unhealthy = unhealthy_allocs(state, d);
    // Nomad's `shouldFailEarly`: an unhealthy allocation fails the deployment at once when its
    // group has no progress deadline or it cannot be rescheduled any more; otherwise it may
    // be replaced, and the progress deadline decides.
    let fails_early = unhealthy.iter().find(|a| {
        d.task_groups
            .get(&a.task_group)
            .is_none_or(|g| g.progress_deadline.is_zero())
            || !reschedule_eligible(a)
    });
    if let Some(first) = fails_early {
        let auto_revert = d
            .task_groups
            .get(&first.task_group)
            .is_some_and(|g| g.auto_revert);
        return Some(fail(
            state,
            d,
            deployment_description::FAILED_ALLOCATIONS,
            auto_revert,
            now,
            new_id,
        ));
    }
    let replaceable: Vec<String> = unhealthy
        .iter()
        .filter(|a| {
            !a.desired_transition.should_reschedule() && a.desired_status == DesiredStatus::Run
        })
        .map(|a| a.id.clone())
        .collect();
    if !replaceable.is_empty() && d.active() {
        return Some(Action::AllowReplacements {
            alloc_ids: replaceable,
            eval: eval_for(state, d, new_id)?,
        });
    }
    // A paused deployment's deadlines stand still (they start again when it resumes).
    if d.status != deployment_status::RUNNING {
        return None;
    }
    if let Some(late) = past_deadline(d, now) {
        let auto_revert = late.iter().any(|g| g.auto_revert);
        return Some(fail(
            state,
            d,
            deployment_description::PROGRESS_DEADLINE,
            auto_revert,
            now,
            new_id,
        ));
    }
    if auto_promote_ready(state, d) {
        return Some(Action::Promote {
            eval: eval_for(state, d, new_id)?,
        });
    }
    if !d.task_groups.is_empty() && d.task_groups.values().all(group_done) {
        return Some(Action::Succeed {
            update: DeploymentStatusUpdate {
                deployment_id: d.id.clone(),
                status: deployment_status::SUCCESSFUL.to_string(),
                status_description: deployment_description::SUCCESSFUL.to_string(),
                updated_at: now,
            },
        });
    }
    if evaluation_owed(state, d) {
        return Some(Action::Evaluate {
            eval: eval_for(state, d, new_id)?,
        });
    }
    None
}

/// A failure of `d` with `base` as the reason; with `auto_revert`, Nomad's rollback: the
/// latest stable version registered again, unless it has the current spec.
pub fn fail(
    state: &State,
    d: &Deployment,
    base: &str,
    auto_revert: bool,
    now: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Action {
    let (job, description) = if auto_revert {
        rollback(state, d, base)
    } else {
        (None, base.to_string())
    };
    let eval = eval_for(state, d, new_id).unwrap_or_else(|| Evaluation {
        id: new_id(),
        namespace: d.namespace.clone(),
        priority: d.eval_priority,
        // The job is gone: the evaluation only lets the scheduler stop what is left.
        eval_type: "service".to_string(),
        triggered_by: trigger::DEPLOYMENT_WATCHER.to_string(),
        job_id: d.job_id.clone(),
        status: EvalStatus::Pending,
        ..Default::default()
    });
    Action::Fail {
        update: DeploymentStatusUpdate {
            deployment_id: d.id.clone(),
            status: deployment_status::FAILED.to_string(),
            status_description: description,
            updated_at: now,
        },
        job,
        eval,
    }
}

/// Nomad's `latestStableJob` + `handleRollbackValidity`: the newest stable version of the job;
/// registered again (as a new version, untagged, not yet stable) when its spec differs from
/// the current job's, otherwise nothing with the `rollback_noop` words.
pub fn rollback(state: &State, d: &Deployment, base: &str) -> (Option<Box<Job>>, String) {
    let stable = state
        .job_versions(&d.namespace, &d.job_id)
        .into_iter()
        .find(|j| j.stable);
    let Some(stable) = stable else {
        return (None, deployment_description::no_rollback_target(base));
    };
    let current = state.job(&d.namespace, &d.job_id);
    if current.as_deref().is_some_and(|c| same_spec(c, &stable)) {
        return (
            None,
            deployment_description::rollback_noop(base, stable.version),
        );
    }
    let mut job = (*stable).clone();
    job.version_tag = None;
    job.stable = false;
    (
        Some(Box::new(job)),
        deployment_description::rollback(base, stable.version),
    )
}

/// The allocations of `d`'s groups its clients found unhealthy.
fn unhealthy_allocs(state: &State, d: &Deployment) -> Vec<Arc<Allocation>> {
    state
        .allocs_by_deployment(&d.id)
        .into_iter()
        .filter(|a| d.task_groups.contains_key(&a.task_group))
        .filter(|a| {
            a.deployment_status
                .as_ref()
                .is_some_and(|s| s.healthy == Some(false))
        })
        .collect()
}

/// Nomad's `RescheduleEligible`: the allocation's reschedule policy has attempts left in its
/// interval (or is unlimited).
fn reschedule_eligible(alloc: &Allocation) -> bool {
    let Some(policy) = reschedule::policy_of(alloc) else {
        return false;
    };
    if policy.unlimited {
        return true;
    }
    policy.attempts > 0
        && reschedule::attempts_in_interval(alloc, &policy, reschedule::fail_time(alloc))
            < policy.attempts
}

/// Nomad's "done" group: no canaries waiting for promotion, and as many healthy allocations
/// as it wants.
///
/// It is also the test of success (Nomad's `isDeploymentComplete`): an unhealthy allocation
/// that was replaced does not hold the group back; one that cannot be replaced fails the
/// deployment first.
fn group_done(g: &DeploymentState) -> bool {
    (g.desired_canaries == 0 || g.promoted)
        && g.healthy_allocs >= g.desired_total.max(g.desired_canaries)
}

/// The groups not done whose `RequireProgressBy` passed (Nomad's progress cutoff), if any.
fn past_deadline(d: &Deployment, now: i64) -> Option<Vec<&DeploymentState>> {
    let late: Vec<&DeploymentState> = d
        .task_groups
        .values()
        .filter(|g| !group_done(g) && !g.progress_deadline.is_zero())
        .filter(|g| {
            parse_rfc3339(&g.require_progress_by)
                .filter(|t| *t > 0)
                .is_some_and(|by| now >= by)
        })
        .collect();
    (!late.is_empty()).then_some(late)
}

/// Nomad's `autoPromoteDeployment`: placed canaries waiting for promotion, every canary group
/// `auto_promote`, and exactly its desired number of canaries healthy.
fn auto_promote_ready(state: &State, d: &Deployment) -> bool {
    if !d.has_placed_canaries() || !d.requires_promotion() {
        return false;
    }
    let allocs = state.allocs_by_deployment(&d.id);
    d.task_groups
        .values()
        .filter(|g| g.desired_canaries > 0)
        .all(|g| {
            if !g.auto_promote || (g.placed_canaries.len() as u64) < g.desired_canaries {
                return false;
            }
            let healthy = g
                .placed_canaries
                .iter()
                .filter(|id| {
                    allocs.iter().any(|a| {
                        &a.id == *id
                            && !a.is_terminal()
                            && a.deployment_status.as_ref().is_some_and(|s| s.is_healthy())
                    })
                })
                .count() as u64;
            healthy >= g.desired_canaries
        })
}

/// The newest index at which a client's health verdict for an allocation of `d` was written.
fn health_index(state: &State, d: &Deployment) -> u64 {
    state
        .allocs_by_deployment(&d.id)
        .iter()
        .filter_map(|a| a.deployment_status.as_ref())
        .filter(|s| s.healthy.is_some())
        .map(|s| s.modify_index)
        .max()
        .unwrap_or(0)
}

/// Nomad's `jobEvalStatus` rule: an allocation turned healthy after the newest evaluation of
/// the job the scheduler saw (its snapshot, or its creation; cancelled ones saw nothing), and
/// no evaluation of the job is waiting already (at most one pending per job).
fn evaluation_owed(state: &State, d: &Deployment) -> bool {
    let evals = state.evals_by_job(&d.namespace, &d.job_id);
    if evals.iter().any(|e| e.status == EvalStatus::Pending) {
        return false;
    }
    let seen = evals
        .iter()
        .filter(|e| e.status != EvalStatus::Canceled)
        .map(|e| e.snapshot_index.max(e.create_index))
        .max()
        .unwrap_or(0);
    state
        .allocs_by_deployment(&d.id)
        .iter()
        .filter_map(|a| a.deployment_status.as_ref())
        .any(|s| s.is_healthy() && s.modify_index > seen)
}

/// An evaluation of the deployment's job (None when the job is gone: nothing to schedule).
fn eval_for(
    state: &State,
    d: &Deployment,
    new_id: &mut dyn FnMut() -> String,
) -> Option<Evaluation> {
    let job = state.job(&d.namespace, &d.job_id)?;
    Some(Evaluation {
        id: new_id(),
        namespace: d.namespace.clone(),
        priority: job.priority,
        eval_type: job.job_type.as_str().to_string(),
        triggered_by: trigger::DEPLOYMENT_WATCHER.to_string(),
        job_id: d.job_id.clone(),
        job_modify_index: job.job_modify_index,
        status: EvalStatus::Pending,
        ..Default::default()
    })
}

/// The leader's watcher loop: decides on every change of deployments, allocations or
/// evaluations (and every [`WATCHER_TICK`], for deadlines) and proposes the result. Runs until
/// the future is dropped (leadership lost, shutdown).
pub(in crate::server) async fn run(server: Arc<Server>) {
    let tables = [Table::Deployments, Table::Allocs, Table::Evals];
    let mut seen = 0;
    let mut memory = WatcherMemory::default();
    loop {
        let (state, _) = server.store.wait_for(&tables, seen, WATCHER_TICK).await;
        seen = state.max_index(&tables).max(1);
        memory.retain_active(&state);
        let proposals = decide(
            &state,
            crate::model::now_unix_nanos(),
            &memory,
            &mut crate::model::new_id,
        );
        let mut failed = false;
        for proposal in proposals {
            memory.remember(&proposal);
            let command = proposal.command(crate::model::now_unix_nanos());
            tracing::info!(
                deployment_id = %proposal.deployment_id,
                action = proposal.action.kind(),
                "deployment watcher"
            );
            match server.propose(command).await {
                Ok(_) => {}
                // Refused by the state machine (e.g. ended meanwhile): nothing to retry, and
                // the memory keeps it from being proposed again unchanged.
                Err(super::super::ServerError::BadRequest(e)) => {
                    tracing::debug!(deployment_id = %proposal.deployment_id, "deployment watcher: refused: {e}");
                }
                Err(e) => {
                    tracing::warn!(
                        "deployment watcher: {e}; trying again in {RETRY_AFTER_ERROR:?}"
                    );
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            // A lost proposal may be made again: forget, wait, look again.
            memory = WatcherMemory::default();
            tokio::time::sleep(RETRY_AFTER_ERROR).await;
        }
    }
}
