//! What the operator and users ask of evaluations: force a new one for a job (`job eval`,
//! optionally force-rescheduling its failed allocations), delete some while the broker is
//! paused, and the follow-up evaluation of one the broker gave up on.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Server, ServerError};
use crate::model::{
    new_id, now_unix_nanos, trigger, ClientStatus, DesiredTransition, EvalStatus, Evaluation,
};
use crate::state::{Command, State};

/// The most evaluations one delete request may name (or its filter may match); a larger
/// clean-up takes several requests, each one Raft entry of bounded size.
pub const MAX_EVAL_DELETE: usize = 10_000;
/// Nomad's delay before a failed evaluation's follow-up runs (`failedEvalFollowupBaselineDelay`)
/// and the range of the random extra on top of it (`failedEvalFollowupDelayRange`), so that a
/// burst of failures does not come back as one burst.
pub const FAILED_FOLLOW_UP_BASE: Duration = Duration::from_secs(60);
pub const FAILED_FOLLOW_UP_JITTER: Duration = Duration::from_secs(5 * 60);

/// `POST /v1/job/:id/evaluate` answer, in Nomad's shape (`JobRegisterResponse`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct JobEvaluateResponse {
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub eval_create_index: u64,
    pub job_modify_index: u64,
    pub index: u64,
}

/// Which evaluations a delete asks for.
#[derive(Debug, Clone)]
pub enum EvalSelection {
    Ids(Vec<String>),
    /// Those whose JSON form matches (`DELETE /v1/evaluations` with `{Filter}`).
    Filter(crate::api::filter::Filter),
}

impl Server {
    /// A new evaluation of a job (Nomad's `Job.Evaluate`); with `force_reschedule`, its
    /// failed allocations that have not been replaced are marked to be rescheduled even if
    /// their reschedule policy is spent, in the same Raft entry.
    pub async fn evaluate_job(
        &self,
        namespace: &str,
        job_id: &str,
        force_reschedule: bool,
    ) -> Result<JobEvaluateResponse, ServerError> {
        let state = self.store.snapshot();
        let Some(job) = state.job(namespace, job_id) else {
            return Err(ServerError::NotFound(format!(
                "job {job_id:?} not found in namespace {namespace:?}"
            )));
        };
        if job.periodic.is_some() {
            return Err(ServerError::BadRequest(format!(
                "can't evaluate periodic job {job_id:?}: its launches are evaluated as they are made; force one with `noded job periodic force`"
            )));
        }
        if job.parameterized_job.is_some() {
            return Err(ServerError::BadRequest(format!(
                "can't evaluate parameterized job {job_id:?}: dispatch it with `noded job dispatch`, and evaluate the dispatched job"
            )));
        }
        let mut transitions = BTreeMap::new();
        if force_reschedule {
            for alloc in state.allocs_by_job(namespace, job_id) {
                let reschedules = job
                    .task_groups
                    .iter()
                    .find(|g| g.name == alloc.task_group)
                    .and_then(|g| g.reschedule_policy.as_ref())
                    .is_some_and(|r| r.unlimited == Some(true) || r.attempts.unwrap_or(0) > 0);
                if reschedules
                    && alloc.client_status == ClientStatus::Failed
                    && alloc.next_allocation.is_empty()
                    && alloc.desired_transition.force_reschedule != Some(true)
                {
                    transitions.insert(
                        alloc.id.clone(),
                        DesiredTransition {
                            force_reschedule: Some(true),
                            ..Default::default()
                        },
                    );
                }
            }
        }
        // Nomad's trigger for `job eval` is the registration one: the scheduler treats it as
        // a fresh look at the job as registered.
        let eval = Evaluation {
            id: new_id(),
            namespace: namespace.to_string(),
            priority: job.priority,
            eval_type: job.job_type.as_str().to_string(),
            triggered_by: trigger::JOB_REGISTER.to_string(),
            job_id: job_id.to_string(),
            job_modify_index: job.job_modify_index,
            status: EvalStatus::Pending,
            ..Default::default()
        };
        let eval_id = eval.id.clone();
        let response = self
            .propose(Command::AllocUpdateDesiredTransition {
                transitions,
                evals: vec![eval],
                now: now_unix_nanos(),
            })
            .await?;
        Ok(JobEvaluateResponse {
            eval_id,
            eval_create_index: response.index,
            job_modify_index: job.job_modify_index,
            index: response.index,
        })
    }

    /// Deletes evaluations (Nomad's `Eval.Delete`): only while the eval broker is paused, at
    /// most [`MAX_EVAL_DELETE`] at once, and only evaluations whose removal leaves the state
    /// consistent ([`State::eval_delete_unsafe`]); one unsafe id refuses the whole request.
    /// Returns how many were deleted and the index.
    pub async fn delete_evals(&self, which: EvalSelection) -> Result<(usize, u64), ServerError> {
        let state = self.store.snapshot();
        if !state.scheduler_config().pause_eval_broker {
            return Err(ServerError::BadRequest(
                "eval broker is enabled; eval broker must be paused to delete evals (noded operator scheduler set-config -pause-eval-broker=true)"
                    .to_string(),
            ));
        }
        let ids = select_for_delete(&state, &which)?;
        if ids.is_empty() {
            return Ok((0, state.latest_index()));
        }
        let count = ids.len();
        let response = self
            .propose(Command::EvalDelete {
                eval_ids: ids,
                now: now_unix_nanos(),
            })
            .await?;
        Ok((count, response.index))
    }
}

/// The ids a delete names, checked: each exists and is safe to delete, and there are at most
/// [`MAX_EVAL_DELETE`]. A filter selects only the safe ones (as Nomad's does).
fn select_for_delete(state: &State, which: &EvalSelection) -> Result<Vec<String>, ServerError> {
    let too_many = |n: usize| {
        ServerError::BadRequest(format!(
            "{n} evaluations asked to be deleted at once; the limit is {MAX_EVAL_DELETE} per request, delete them in batches"
        ))
    };
    match which {
        EvalSelection::Ids(ids) => {
            if ids.is_empty() {
                return Err(ServerError::BadRequest(
                    "evals must be deleted by either ID or filter".to_string(),
                ));
            }
            if ids.len() > MAX_EVAL_DELETE {
                return Err(too_many(ids.len()));
            }
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let Some(eval) = state.eval(id) else {
                    return Err(ServerError::NotFound(format!(
                        "eval not found: {id:?} is not an evaluation this cluster holds"
                    )));
                };
                if let Some(why) = state.eval_delete_unsafe(&eval) {
                    return Err(ServerError::BadRequest(format!(
                        "eval {id} is not safe to delete: {why}"
                    )));
                }
                out.push(id.clone());
            }
            out.sort();
            out.dedup();
            Ok(out)
        }
        EvalSelection::Filter(filter) => {
            let mut out = Vec::new();
            for eval in state.evals() {
                let json = serde_json::to_value(&*eval)
                    .map_err(|e| ServerError::Internal(format!("encoding an evaluation: {e}")))?;
                if filter.matches(&json) && state.eval_delete_unsafe(&eval).is_none() {
                    out.push(eval.id.clone());
                    if out.len() > MAX_EVAL_DELETE {
                        return Err(too_many(out.len()));
                    }
                }
            }
            Ok(out)
        }
    }
}

/// The failed evaluation and its follow-up, linked (`NextEval` / `PreviousEval`), to be
/// written in one entry: the follow-up runs the job again after [`FAILED_FOLLOW_UP_BASE`] plus
/// up to [`FAILED_FOLLOW_UP_JITTER`] (`jitter` in `[0, 1)`).
pub(crate) fn failed_with_follow_up(
    mut failed: Evaluation,
    why: &str,
    now_unix: i64,
    jitter: f64,
    id: String,
) -> Vec<Evaluation> {
    let extra = FAILED_FOLLOW_UP_JITTER.mul_f64(jitter.clamp(0.0, 1.0));
    let delay = FAILED_FOLLOW_UP_BASE + extra;
    let wait_until = now_unix.saturating_add(i64::try_from(delay.as_nanos()).unwrap_or(i64::MAX));
    let follow_up = Evaluation {
        id,
        namespace: failed.namespace.clone(),
        priority: failed.priority,
        eval_type: failed.eval_type.clone(),
        triggered_by: trigger::FAILED_FOLLOW_UP.to_string(),
        job_id: failed.job_id.clone(),
        job_modify_index: failed.job_modify_index,
        node_id: failed.node_id.clone(),
        status: EvalStatus::Pending,
        previous_eval: failed.id.clone(),
        wait_until: crate::model::time::format_rfc3339(wait_until),
        ..Default::default()
    };
    failed.status = EvalStatus::Failed;
    failed.status_description = format!("evaluation reached delivery limit ({why})");
    failed.next_eval = follow_up.id.clone();
    vec![failed, follow_up]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_evaluation_gets_a_linked_delayed_follow_up() {
        let failed = Evaluation {
            id: "e1".into(),
            namespace: "default".into(),
            job_id: "web".into(),
            priority: 70,
            eval_type: "service".into(),
            ..Default::default()
        };
        let now = 1_700_000_000_000_000_000;
        let out = failed_with_follow_up(failed, "plan rejected", now, 0.5, "f1".into());
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].status, EvalStatus::Failed);
        assert_eq!(out[0].next_eval, "f1");
        assert!(out[0].status_description.contains("delivery limit"));
        let f = &out[1];
        assert_eq!(
            (f.status, f.previous_eval.as_str(), f.triggered_by.as_str()),
            (EvalStatus::Pending, "e1", "failed-eval-follow-up")
        );
        assert_eq!((f.priority, f.job_id.as_str()), (70, "web"));
        let at = crate::model::time::parse_rfc3339(&f.wait_until).unwrap();
        assert_eq!(at - now, 60_000_000_000 + 150_000_000_000);
        // The delay is bounded whatever the jitter source says.
        let out = failed_with_follow_up(out[0].clone(), "x", now, 7.0, "f2".into());
        let at = crate::model::time::parse_rfc3339(&out[1].wait_until).unwrap();
        assert_eq!(at - now, 360_000_000_000);
    }
}
