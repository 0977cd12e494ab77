//! Children and counts of jobs: `POST /v1/job/:id/periodic/force`, `POST /v1/job/:id/dispatch`,
//! `GET|POST /v1/job/:id/scale`, `GET /v1/scaling/policies`, `GET /v1/scaling/policy/:id`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use base64::Engine;
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use super::extract::{Body, QueryOptions, RequestBody, WriteOptions};
use super::reply::Reply;
use super::ApiContext;
use crate::server::dispatch::DispatchRequest;
use crate::server::scaling::{scale_status, scaling_policies, ScaleRequest};
use crate::state::Table;

/// `POST /v1/job/:id/periodic/force`.
pub async fn force(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    w: WriteOptions,
) -> ApiResult<Reply> {
    let response = ctx.server()?.force_periodic(&w.namespace, &id).await?;
    Reply::write(&response, response.index)
}

/// The body of `POST /v1/job/:id/dispatch` (Nomad's `JobDispatchRequest`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct JobDispatchRequest {
    #[serde(rename = "JobID")]
    job_id: String,
    /// Base64, as Go encodes a `[]byte`.
    payload: String,
    meta: BTreeMap<String, String>,
    id_prefix_template: String,
    idempotency_token: String,
    priority: i64,
    region: String,
    namespace: String,
}

impl RequestBody for JobDispatchRequest {
    const WHAT: &'static str = "job dispatch request";
    const EMPTY_IS_DEFAULT: bool = true;
}

/// `POST /v1/job/:id/dispatch`.
pub async fn dispatch(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    w: WriteOptions,
    body: Body<JobDispatchRequest>,
) -> ApiResult<Reply> {
    let request = body.value;
    if !request.job_id.is_empty() && request.job_id != id {
        return Err(ApiError::bad_request(format!(
            "job ID {:?} in the body does not match {id:?} in the URL",
            request.job_id
        )));
    }
    if request.priority != 0 {
        return Err(ApiError::bad_request(
            "Priority is not supported on dispatch yet: the parameterized job's priority is used; leave it out",
        ));
    }
    let payload = base64::engine::general_purpose::STANDARD
        .decode(request.payload.as_bytes())
        .map_err(|e| {
            ApiError::bad_request(format!(
                "{}: Payload is not base64 ({e}); send the payload's bytes base64-encoded",
                JobDispatchRequest::WHAT
            ))
        })?;
    let idempotency_token = if request.idempotency_token.is_empty() {
        w.idempotency_token.clone()
    } else {
        request.idempotency_token
    };
    let response = ctx
        .server()?
        .dispatch_job(
            &w.namespace,
            &id,
            DispatchRequest {
                payload,
                meta: request.meta,
                id_prefix_template: request.id_prefix_template,
                idempotency_token,
            },
        )
        .await?;
    Reply::write(&response, response.index)
}

/// `GET /v1/job/:id/scale`.
pub async fn scale_status_read(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let (state, meta) = ctx
        .read(&q, &[Table::Jobs, Table::Allocs, Table::ScalingEvents])
        .await?;
    let job = state
        .job(&q.namespace, &id)
        .ok_or_else(|| ApiError::not_found(format!("job {id:?} not found")))?;
    Reply::read(&scale_status(&state, &job), meta)
}

/// The body of `POST /v1/job/:id/scale` (Nomad's `ScalingRequest`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct ScalingRequest {
    count: Option<i64>,
    target: BTreeMap<String, String>,
    error: bool,
    message: String,
    meta: Option<serde_json::Map<String, serde_json::Value>>,
    policy_override: bool,
    job_modify_index: u64,
    region: String,
    namespace: String,
}

impl RequestBody for ScalingRequest {
    const WHAT: &'static str = "scaling request";
}

/// `POST /v1/job/:id/scale`.
pub async fn scale(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    w: WriteOptions,
    body: Body<ScalingRequest>,
) -> ApiResult<Reply> {
    let mut warnings = body.ignored_warnings();
    let request = body.value;
    let Some(group) = request.target.get("Group").filter(|g| !g.is_empty()) else {
        return Err(ApiError::bad_request(format!(
            "{}: missing task group name for scaling action; set Target.Group",
            ScalingRequest::WHAT
        )));
    };
    if request.count.is_some() && request.error {
        return Err(ApiError::bad_request(format!(
            "{}: scaling action should not contain count if error is true",
            ScalingRequest::WHAT
        )));
    }
    // PolicyOverride overrides Sentinel policies in Nomad, never the group's min and max;
    // noded has no Sentinel, so it changes nothing.
    let _ = request.policy_override;
    let mut response = ctx
        .server()?
        .scale_job(
            &w.namespace,
            &id,
            ScaleRequest {
                group: group.clone(),
                count: request.count,
                message: request.message,
                error: request.error,
                meta: request.meta,
                job_modify_index: (request.job_modify_index != 0)
                    .then_some(request.job_modify_index),
            },
        )
        .await?;
    if request.policy_override {
        warnings.push("PolicyOverride has no effect: noded has no Sentinel policies".into());
    }
    response.warnings = warnings.join("\n");
    Reply::write(&response, response.index)
}

/// `GET /v1/scaling/policies` (`?job=`, `?type=` prefix, as Nomad filters).
pub async fn policies(State(ctx): State<ApiContext>, q: QueryOptions) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Jobs]).await?;
    let job = q.string("job");
    let policy_type = q.string("type");
    let stubs: Vec<serde_json::Value> = scaling_policies(&state)
        .into_iter()
        .filter(|p| q.covers(&p.namespace))
        .filter(|p| job.is_empty() || p.target.get("Job").is_some_and(|j| j == job))
        .filter(|p| p.policy_type.starts_with(policy_type))
        .map(|p| {
            serde_json::json!({
                "ID": p.id,
                "Enabled": p.enabled,
                "Type": p.policy_type,
                "Target": p.target,
                "CreateIndex": p.create_index,
                "ModifyIndex": p.modify_index,
            })
        })
        .collect();
    Reply::read(&stubs, meta)
}

/// `GET /v1/scaling/policy/:id`.
pub async fn policy(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Jobs]).await?;
    let policy = scaling_policies(&state)
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::not_found(format!("scaling policy {id:?} not found")))?;
    Reply::read(&policy, meta)
}
