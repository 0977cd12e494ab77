//! What a server does with deployments for the operator (Nomad's `Deployment.*` RPCs):
//! promote canaries, fail, pause or resume, set allocation health by hand, unblock. Each
//! checks the newest state first (a 400/404 in Nomad's words with nothing written) and the
//! state machine checks again when it applies. The leader's [`watcher`] does the rest.

pub mod watcher;

use serde::{Deserialize, Serialize};

use super::{Server, ServerError};
use crate::model::{
    deployment_description, deployment_status, new_id, now_unix_nanos, trigger, Deployment,
    DeploymentStatusUpdate, EvalStatus, Evaluation,
};
use crate::state::{Command, State};

/// Nomad's words for changes refused on a deployment that ended.
pub mod refusal {
    pub const NO_FAIL: &str = "can't fail terminal deployment";
    pub const NO_PAUSE: &str = "can't pause terminal deployment";
    pub const NO_PROMOTE: &str = "can't promote terminal deployment";
    pub const NO_RESUME: &str = "can't resume terminal deployment";
    pub const NO_UNBLOCK: &str = "can't unblock terminal deployment";
    pub const NO_SET_HEALTH: &str = "can't set health of allocations for a terminal deployment";
    pub const RUNNING_NO_UNBLOCK: &str = "can't unblock running deployment";
}

/// The answer of every deployment write (Nomad's `DeploymentUpdateResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct DeploymentUpdateResponse {
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub eval_create_index: u64,
    pub deployment_modify_index: u64,
    /// The stable job version a revert went back to (registered again as a new version).
    pub reverted_job_version: Option<u64>,
    pub index: u64,
}

impl Server {
    /// The deployment `id` (exact), or Nomad's 404 "deployment not found".
    fn deployment_for_write(&self, id: &str) -> Result<(State, Deployment), ServerError> {
        if id.is_empty() {
            return Err(ServerError::BadRequest("missing deployment ID".to_string()));
        }
        let state = self.state();
        let Some(d) = state.deployment(id) else {
            return Err(ServerError::NotFound(format!(
                "deployment not found: no deployment has ID {id:?} (`noded deployment list` lists them)"
            )));
        };
        let d = (*d).clone();
        Ok((state, d))
    }

    /// Promotes the canaries of `groups` (or all groups) of a deployment (Nomad's
    /// `Deployment.Promote`): refused for a terminal deployment, one without canaries, or
    /// while a group lacks healthy canaries ("Task group \"web\" has 0/1 healthy allocations").
    pub async fn promote_deployment(
        &self,
        id: &str,
        all: bool,
        groups: Vec<String>,
    ) -> Result<DeploymentUpdateResponse, ServerError> {
        let (state, d) = self.deployment_for_write(id)?;
        if !d.active() {
            return Err(ServerError::BadRequest(refusal::NO_PROMOTE.to_string()));
        }
        if !all && groups.is_empty() {
            return Err(ServerError::BadRequest(
                "must promote all groups or name at least one (All or Groups)".to_string(),
            ));
        }
        if d.task_groups.values().all(|g| g.desired_canaries == 0) {
            return Err(ServerError::BadRequest(format!(
                "deployment {:?} has no canaries to promote: its groups roll out without them",
                d.id
            )));
        }
        let eval = follow_up_eval(&state, &d);
        let eval_id = eval.id.clone();
        let command = Command::DeploymentPromote {
            deployment_id: d.id.clone(),
            all,
            groups,
            eval: Some(eval),
            now: now_unix_nanos(),
        };
        dry_run(state, &command)?;
        let response = self.propose(command).await?;
        Ok(written(eval_id, response.index, None))
    }

    /// Fails a deployment (Nomad's `Deployment.Fail`): with `auto_revert` on any group, the
    /// latest stable version is registered again.
    pub async fn fail_deployment(&self, id: &str) -> Result<DeploymentUpdateResponse, ServerError> {
        let (state, d) = self.deployment_for_write(id)?;
        if !d.active() {
            return Err(ServerError::BadRequest(refusal::NO_FAIL.to_string()));
        }
        let auto_revert = d.task_groups.values().any(|g| g.auto_revert);
        let now = now_unix_nanos();
        let action = watcher::fail(
            &state,
            &d,
            deployment_description::FAILED_BY_USER,
            auto_revert,
            now,
            &mut new_id,
        );
        self.propose_failure(&d, action, now).await
    }

    /// Pauses (`pause`) or resumes a deployment (Nomad's `Deployment.Pause`); resuming asks
    /// the scheduler to go on.
    pub async fn pause_deployment(
        &self,
        id: &str,
        pause: bool,
    ) -> Result<DeploymentUpdateResponse, ServerError> {
        let (state, d) = self.deployment_for_write(id)?;
        if !d.active() {
            let words = if pause {
                refusal::NO_PAUSE
            } else {
                refusal::NO_RESUME
            };
            return Err(ServerError::BadRequest(words.to_string()));
        }
        let (status, description) = if pause {
            (deployment_status::PAUSED, deployment_description::PAUSED)
        } else {
            (deployment_status::RUNNING, deployment_description::RUNNING)
        };
        let now = now_unix_nanos();
        let eval = (!pause).then(|| follow_up_eval(&state, &d));
        let eval_id = eval.as_ref().map(|e| e.id.clone()).unwrap_or_default();
        let response = self
            .propose(Command::DeploymentStatusUpdate {
                update: DeploymentStatusUpdate {
                    deployment_id: d.id.clone(),
                    status: status.to_string(),
                    status_description: description.to_string(),
                    updated_at: now,
                },
                job: None,
                eval,
                now,
            })
            .await?;
        let mut out = written(eval_id, response.index, None);
        if pause {
            out.eval_create_index = 0;
        }
        Ok(out)
    }

    /// Marks allocations of a deployment healthy or unhealthy by hand (Nomad's
    /// `Deployment.SetAllocHealth`, for `health_check = "manual"`): any unhealthy one fails
    /// the deployment, reverting the job when its group has `auto_revert`.
    pub async fn set_deployment_alloc_health(
        &self,
        id: &str,
        healthy: Vec<String>,
        unhealthy: Vec<String>,
    ) -> Result<DeploymentUpdateResponse, ServerError> {
        let (state, d) = self.deployment_for_write(id)?;
        if healthy.is_empty() && unhealthy.is_empty() {
            return Err(ServerError::BadRequest(
                "must specify at least one healthy/unhealthy allocation ID".to_string(),
            ));
        }
        if !d.active() {
            return Err(ServerError::BadRequest(refusal::NO_SET_HEALTH.to_string()));
        }
        for alloc_id in healthy.iter().chain(&unhealthy) {
            match state.alloc(alloc_id) {
                Some(a) if a.deployment_id == d.id => {}
                Some(_) => {
                    return Err(ServerError::BadRequest(format!(
                        "allocation {alloc_id:?} is not part of deployment {:?}",
                        d.id
                    )))
                }
                None => {
                    return Err(ServerError::BadRequest(format!(
                        "unknown allocation {alloc_id:?} in deployment {:?}",
                        d.id
                    )))
                }
            }
        }
        let now = now_unix_nanos();
        let (update, job) = if unhealthy.is_empty() {
            (None, None)
        } else {
            let auto_revert = unhealthy.iter().any(|alloc_id| {
                state
                    .alloc(alloc_id)
                    .and_then(|a| d.task_groups.get(&a.task_group).map(|g| g.auto_revert))
                    .unwrap_or(false)
            });
            let (job, description) = if auto_revert {
                watcher::rollback(&state, &d, deployment_description::FAILED_ALLOCATIONS)
            } else {
                (None, deployment_description::FAILED_ALLOCATIONS.to_string())
            };
            let update = DeploymentStatusUpdate {
                deployment_id: d.id.clone(),
                status: deployment_status::FAILED.to_string(),
                status_description: description,
                updated_at: now,
            };
            (Some(update), job)
        };
        let reverted = job.as_ref().map(|j| j.version);
        let eval = follow_up_eval(&state, &d);
        let eval_id = eval.id.clone();
        let response = self
            .propose(Command::DeploymentAllocHealth {
                deployment_id: d.id.clone(),
                healthy,
                unhealthy,
                update,
                job,
                eval: Some(eval),
                now,
            })
            .await?;
        Ok(written(eval_id, response.index, reverted))
    }

    /// Unblocks a multiregion deployment (Nomad's `Deployment.Unblock`). noded's regions
    /// deploy on their own, so no deployment is ever blocked: always refused, in Nomad's
    /// words where it has them.
    pub async fn unblock_deployment(
        &self,
        id: &str,
    ) -> Result<DeploymentUpdateResponse, ServerError> {
        let (_, d) = self.deployment_for_write(id)?;
        if !d.active() {
            return Err(ServerError::BadRequest(refusal::NO_UNBLOCK.to_string()));
        }
        if d.status == deployment_status::RUNNING {
            return Err(ServerError::BadRequest(format!(
                "{}: deployment {:?} is single-region and never blocked (unblock applies only \
                 to multiregion deployments)",
                refusal::RUNNING_NO_UNBLOCK,
                d.id
            )));
        }
        Err(ServerError::BadRequest(format!(
            "deployment {:?} is {:?}, not a blocked multiregion deployment: noded deploys each \
             region on its own, so there is nothing to unblock (`noded deployment resume` \
             continues a paused one)",
            d.id, d.status
        )))
    }

    async fn propose_failure(
        &self,
        d: &Deployment,
        action: watcher::Action,
        now: i64,
    ) -> Result<DeploymentUpdateResponse, ServerError> {
        let watcher::Action::Fail { update, job, eval } = action else {
            return Err(ServerError::Internal(format!(
                "deployment {:?}: the failure was decided as something else",
                d.id
            )));
        };
        let reverted = job.as_ref().map(|j| j.version);
        let eval_id = eval.id.clone();
        let response = self
            .propose(Command::DeploymentStatusUpdate {
                update,
                job,
                eval: Some(eval),
                now,
            })
            .await?;
        Ok(written(eval_id, response.index, reverted))
    }
}

/// Applies `command` to a private copy of `state`: the state machine's refusal (unhealthy
/// canaries, an unknown group) is answered before anything enters the log.
fn dry_run(mut state: State, command: &Command) -> Result<(), ServerError> {
    let index = state.latest_index().saturating_add(1);
    let (response, _) = state.apply(index, command);
    match response.error {
        Some(e) => Err(ServerError::BadRequest(e)),
        None => Ok(()),
    }
}

/// The evaluation that follows an operator's change (Nomad's `getEval`).
fn follow_up_eval(state: &State, d: &Deployment) -> Evaluation {
    let job = state.job(&d.namespace, &d.job_id);
    Evaluation {
        id: new_id(),
        namespace: d.namespace.clone(),
        priority: job.as_ref().map(|j| j.priority).unwrap_or(d.eval_priority),
        eval_type: job
            .as_ref()
            .map(|j| j.job_type.as_str().to_string())
            .unwrap_or_else(|| "service".to_string()),
        triggered_by: trigger::DEPLOYMENT_WATCHER.to_string(),
        job_id: d.job_id.clone(),
        job_modify_index: job.as_ref().map(|j| j.job_modify_index).unwrap_or(0),
        status: EvalStatus::Pending,
        ..Default::default()
    }
}

fn written(eval_id: String, index: u64, reverted: Option<u64>) -> DeploymentUpdateResponse {
    DeploymentUpdateResponse {
        eval_create_index: if eval_id.is_empty() { 0 } else { index },
        eval_id,
        deployment_modify_index: index,
        reverted_job_version: reverted,
        index,
    }
}

#[cfg(test)]
mod tests;
