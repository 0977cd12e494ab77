//! Dispatching a parameterized job (`POST /v1/job/:id/dispatch`, after Nomad's
//! `Job.Dispatch`): the request is checked against the job's `parameterized` block, and the
//! child `<parent>/dispatch-[<prefix>-]<unix seconds>-<8 hex>` is registered with its
//! evaluation in one Raft entry. The child carries the parent's meta merged with the
//! dispatch's, and the payload the client writes into the task's `local/` directory.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{Server, ServerError};
use crate::model::{
    dispatch_payload, new_id, now_unix_nanos, trigger, EvalStatus, Evaluation, Job,
    DISPATCH_LAUNCH_SUFFIX, DISPATCH_PAYLOAD_SIZE_LIMIT,
};
use crate::state::{Command, IDEMPOTENCY_TOKEN_USED};

/// What a dispatch asks for (the API's `JobDispatchRequest`, payload decoded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DispatchRequest {
    pub payload: Vec<u8>,
    pub meta: BTreeMap<String, String>,
    pub id_prefix_template: String,
    pub idempotency_token: String,
}

/// `POST /v1/job/:id/dispatch` answer, in Nomad's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct JobDispatchResponse {
    #[serde(rename = "DispatchedJobID")]
    pub dispatched_job_id: String,
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub eval_create_index: u64,
    pub job_create_index: u64,
    pub index: u64,
}

/// Checks a dispatch against the parameterized job, with Nomad's words; every offending
/// key is named.
pub fn validate_dispatch(parent: &Job, request: &DispatchRequest) -> Result<(), String> {
    let Some(config) = &parent.parameterized_job else {
        return Err(format!(
            "Specified job {:?} is not a parameterized job",
            parent.id
        ));
    };
    let has_payload = !request.payload.is_empty();
    match config.payload.as_str() {
        dispatch_payload::REQUIRED if !has_payload => {
            return Err("Payload is not provided but required by parameterized job".into())
        }
        dispatch_payload::FORBIDDEN if has_payload => {
            return Err("Payload provided but forbidden by parameterized job".into())
        }
        _ => {}
    }
    if request.payload.len() > DISPATCH_PAYLOAD_SIZE_LIMIT {
        return Err(format!(
            "Payload exceeds maximum size; {} > {DISPATCH_PAYLOAD_SIZE_LIMIT}",
            request.payload.len()
        ));
    }
    let permitted =
        |k: &String| config.meta_required.contains(k) || config.meta_optional.contains(k);
    let unpermitted: Vec<&str> = request
        .meta
        .keys()
        .filter(|k| !permitted(k))
        .map(String::as_str)
        .collect();
    if !unpermitted.is_empty() {
        return Err(format!(
            "Dispatch request included unpermitted metadata keys: [{}]",
            unpermitted.join(" ")
        ));
    }
    let mut missing: Vec<&str> = config
        .meta_required
        .iter()
        .filter(|k| !request.meta.contains_key(*k))
        .map(String::as_str)
        .collect();
    missing.sort_unstable();
    if !missing.is_empty() {
        return Err(format!(
            "Dispatch did not provide required meta keys: [{}]",
            missing.join(" ")
        ));
    }
    Ok(())
}

/// A dispatched child's id (Nomad's `DispatchedID`): the launch second and 8 random hex
/// digits, after the prefix template when one is given.
pub fn dispatched_id(parent_id: &str, id_prefix_template: &str, now: i64, random: &str) -> String {
    let secs = now.div_euclid(1_000_000_000);
    let random = random.get(..8).unwrap_or(random);
    if id_prefix_template.is_empty() {
        format!("{parent_id}{DISPATCH_LAUNCH_SUFFIX}{secs}-{random}")
    } else {
        format!("{parent_id}{DISPATCH_LAUNCH_SUFFIX}{id_prefix_template}-{secs}-{random}")
    }
}

/// The dispatched child of `parent`: its copy with the merged meta, the payload (base64, as
/// the API carries it) and the token. A periodic parameterized job's children stay periodic.
pub fn dispatched_child(parent: &Job, id: String, request: &DispatchRequest) -> Job {
    let mut child = parent.derive_child(id);
    child.periodic = parent.periodic.clone();
    child.dispatched = true;
    child.dispatch_idempotency_token = request.idempotency_token.clone();
    child
        .meta
        .extend(request.meta.iter().map(|(k, v)| (k.clone(), v.clone())));
    child.payload = (!request.payload.is_empty())
        .then(|| base64::engine::general_purpose::STANDARD.encode(&request.payload));
    child
}

impl Server {
    /// Dispatches the parameterized job `job_id`. With an idempotency token that a live
    /// child already holds, answers that child and registers nothing.
    pub async fn dispatch_job(
        &self,
        namespace: &str,
        job_id: &str,
        request: DispatchRequest,
    ) -> Result<JobDispatchResponse, ServerError> {
        let state = self.state();
        let Some(parent) = state.job(namespace, job_id) else {
            return Err(ServerError::NotFound(format!(
                "parameterized job {job_id:?} not found in namespace {namespace:?}"
            )));
        };
        if !parent.is_parameterized() {
            return Err(ServerError::BadRequest(format!(
                "Specified job {job_id:?} is not a parameterized job"
            )));
        }
        if parent.stop {
            return Err(ServerError::BadRequest(format!(
                "Specified job {job_id:?} is stopped"
            )));
        }
        validate_dispatch(&parent, &request).map_err(ServerError::BadRequest)?;
        if let Some(existing) =
            state.dispatched_with_token(namespace, job_id, &request.idempotency_token)
        {
            return Ok(existing_dispatch(&existing));
        }
        let now = now_unix_nanos();
        let id = dispatched_id(job_id, &request.id_prefix_template, now, &new_id());
        let child = dispatched_child(&parent, id, &request);
        let eval = (!child.is_periodic()).then(|| Evaluation {
            id: new_id(),
            namespace: namespace.to_string(),
            priority: child.priority,
            eval_type: child.job_type.as_str().to_string(),
            triggered_by: trigger::JOB_REGISTER.to_string(),
            job_id: child.id.clone(),
            status: EvalStatus::Pending,
            ..Default::default()
        });
        let eval_id = eval.as_ref().map(|e| e.id.clone()).unwrap_or_default();
        let dispatched_job_id = child.id.clone();
        let result = self
            .propose(Command::JobDispatch {
                child: Box::new(child),
                eval,
                now,
            })
            .await;
        match result {
            Ok(response) => Ok(JobDispatchResponse {
                dispatched_job_id,
                eval_create_index: if eval_id.is_empty() {
                    0
                } else {
                    response.index
                },
                eval_id,
                job_create_index: response.index,
                index: response.index,
            }),
            // Another dispatch with the same token committed first: answer its child.
            Err(ServerError::BadRequest(m)) if m.starts_with(IDEMPOTENCY_TOKEN_USED) => self
                .state()
                .dispatched_with_token(namespace, job_id, &request.idempotency_token)
                .map(|existing| existing_dispatch(&existing))
                .ok_or(ServerError::BadRequest(m)),
            Err(e) => Err(e),
        }
    }
}

/// The answer for a dispatch whose token a live child holds (Nomad: its id and indexes, no
/// evaluation).
fn existing_dispatch(existing: &Job) -> JobDispatchResponse {
    JobDispatchResponse {
        dispatched_job_id: existing.id.clone(),
        job_create_index: existing.create_index,
        index: existing.modify_index,
        ..Default::default()
    }
}
