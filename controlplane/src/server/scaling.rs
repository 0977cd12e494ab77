//! Scaling a job's groups (`POST /v1/job/:id/scale`, after Nomad's `Job.Scale`), its scale
//! status (`GET /v1/job/:id/scale`) and the `scaling` blocks as policies
//! (`/v1/scaling/policies`).
//!
//! Policies are not a table of their own: they are read from the newest version of each job,
//! and a policy's id is derived from what it targets (namespace, job, group, task, type), so
//! it stays the same across versions of the job, as Nomad keeps it.

use sha2::{Digest, Sha256};

use super::{JobRegisterResponse, Server, ServerError};
use crate::model::{
    now_unix_nanos, trigger, EvalStatus, Evaluation, Job, JobScaleStatus, ScalingEvent,
    ScalingPolicy, TaskGroupScaleStatus,
};
use crate::state::{check_scaling_bounds, Command, State};

/// What a scaling asks for (the API's `ScalingRequest`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScaleRequest {
    pub group: String,
    /// `None`: only an event is recorded (an autoscaler reporting, say).
    pub count: Option<i64>,
    pub message: String,
    pub error: bool,
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
    /// With `Some`, the job's modify index must still be this.
    pub job_modify_index: Option<u64>,
}

impl Server {
    /// Scales one group of a job: a new version with the count and a `job-scaling`
    /// evaluation (none for a periodic or parameterized parent, whose children are
    /// scheduled), plus the scaling event; one Raft entry.
    pub async fn scale_job(
        &self,
        namespace: &str,
        job_id: &str,
        request: ScaleRequest,
    ) -> Result<JobRegisterResponse, ServerError> {
        let state = self.state();
        let Some(job) = state.job(namespace, job_id) else {
            return Err(ServerError::NotFound(format!("job {job_id:?} not found")));
        };
        let Some(group) = job.task_groups.iter().find(|g| g.name == request.group) else {
            return Err(ServerError::BadRequest(format!(
                "task group {:?} specified for scaling does not exist in job (groups: {})",
                request.group,
                job.task_groups
                    .iter()
                    .map(|g| g.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if let Some(count) = request.count {
            check_scaling_bounds(group, count).map_err(ServerError::BadRequest)?;
            job.scale_count_allowed(count)
                .map_err(ServerError::BadRequest)?;
            if let Some(expected) = request.job_modify_index {
                if expected != job.job_modify_index {
                    return Err(ServerError::BadRequest(format!(
                        "enforcing job modify index {expected}: job exists with conflicting job modify index: {}",
                        job.job_modify_index
                    )));
                }
            }
        }
        let now = now_unix_nanos();
        let eval = (request.count.is_some() && !job.is_parent()).then(|| Evaluation {
            id: crate::model::new_id(),
            namespace: namespace.to_string(),
            priority: job.priority,
            eval_type: job.job_type.as_str().to_string(),
            triggered_by: trigger::JOB_SCALING.to_string(),
            job_id: job_id.to_string(),
            status: EvalStatus::Pending,
            ..Default::default()
        });
        let eval_id = eval.as_ref().map(|e| e.id.clone());
        let event = ScalingEvent {
            time: now,
            count: request.count,
            previous_count: group.count,
            message: request.message,
            error: request.error,
            meta: request.meta,
            eval_id: eval_id.clone(),
            create_index: 0,
        };
        let response = self
            .propose(Command::JobScale {
                namespace: namespace.to_string(),
                job_id: job_id.to_string(),
                group: request.group,
                count: request.count,
                event,
                eval,
                now,
            })
            .await?;
        Ok(JobRegisterResponse {
            eval_create_index: if eval_id.is_some() { response.index } else { 0 },
            eval_id: eval_id.unwrap_or_default(),
            job_modify_index: response.job_modify_index,
            warnings: String::new(),
            index: response.index,
        })
    }
}

/// A job's scale status (Nomad's `JobScaleStatus`): per group the count asked, the live
/// allocations placed, running, healthy and unhealthy, and the recent scaling events.
pub fn scale_status(state: &State, job: &Job) -> JobScaleStatus {
    let events = state.scaling_events(&job.namespace, &job.id);
    let mut status = JobScaleStatus {
        job_id: job.id.clone(),
        namespace: job.namespace.clone(),
        job_create_index: job.create_index,
        job_modify_index: job.job_modify_index,
        job_stopped: job.stop,
        ..Default::default()
    };
    for group in &job.task_groups {
        status.task_groups.insert(
            group.name.clone(),
            TaskGroupScaleStatus {
                desired: group.count,
                events: events
                    .as_ref()
                    .and_then(|e| e.scaling_events.get(&group.name).cloned())
                    .unwrap_or_default(),
                ..Default::default()
            },
        );
    }
    for alloc in state.allocs_by_job(&job.namespace, &job.id) {
        let canary = alloc.deployment_status.as_ref().is_some_and(|d| d.canary);
        if canary
            || alloc.is_terminal()
            || alloc.client_status == crate::model::ClientStatus::Unknown
        {
            continue;
        }
        let Some(group) = status.task_groups.get_mut(&alloc.task_group) else {
            continue;
        };
        group.placed += 1;
        if alloc.client_status == crate::model::ClientStatus::Running {
            group.running += 1;
        }
        match alloc.deployment_status.as_ref().and_then(|d| d.healthy) {
            Some(true) => group.healthy += 1,
            Some(false) => group.unhealthy += 1,
            None => {}
        }
    }
    status
}

/// A stable policy id for what it targets: a UUID-shaped digest, the same for every version
/// of the job.
fn policy_id(target: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in target {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Every scaling policy of `state`: each group's `scaling` block (`horizontal`) and each
/// task's (`vertical_cpu`, `vertical_mem`), of jobs that are not children (a periodic or
/// dispatched child repeats its parent's). A stopped job's policies are disabled.
pub fn scaling_policies(state: &State) -> Vec<ScalingPolicy> {
    let mut out = Vec::new();
    for job in state.jobs(None) {
        if !job.parent_id.is_empty() {
            continue;
        }
        for group in &job.task_groups {
            if let Some(policy) = &group.scaling {
                out.push(policy_for(&job, &group.name, None, policy));
            }
            for task in &group.tasks {
                for policy in &task.scaling_policies {
                    out.push(policy_for(&job, &group.name, Some(&task.name), policy));
                }
            }
        }
    }
    out
}

fn policy_for(job: &Job, group: &str, task: Option<&str>, policy: &ScalingPolicy) -> ScalingPolicy {
    let policy_type = if policy.policy_type.is_empty() {
        "horizontal".to_string()
    } else {
        policy.policy_type.clone()
    };
    let mut target = std::collections::BTreeMap::from([
        ("Namespace".to_string(), job.namespace.clone()),
        ("Job".to_string(), job.id.clone()),
        ("Group".to_string(), group.to_string()),
    ]);
    if let Some(task) = task {
        target.insert("Task".to_string(), task.to_string());
    }
    ScalingPolicy {
        id: policy_id(&[
            &job.namespace,
            &job.id,
            group,
            task.unwrap_or(""),
            &policy_type,
        ]),
        namespace: job.namespace.clone(),
        policy_type,
        target,
        min: policy.min,
        max: policy.max,
        policy: policy.policy.clone(),
        enabled: Some(policy.enabled.unwrap_or(true) && !job.stop),
        create_index: job.create_index,
        modify_index: job.job_modify_index,
    }
}
