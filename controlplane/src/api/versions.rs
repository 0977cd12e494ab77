//! `/v1/job/:id/revert`, `/v1/job/:id/stable`, `/v1/job/:id/versions/:name/tag`: what an
//! operator does with a job's stored versions, in Nomad's request and answer shapes.

use axum::extract::{Path, State};
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use super::extract::{Body, RequestBody, WriteOptions};
use super::reply::Reply;
use super::ApiContext;

/// The body of `POST /v1/job/:id/revert` (Nomad's `JobRevertRequest`). `EnforceIndex` and
/// `JobModifyIndex` are noded's: `noded job revert -check-index N` (as `JobRegisterRequest`
/// spells them).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct JobRevertRequest {
    #[serde(rename = "JobID")]
    job_id: String,
    job_version: u64,
    enforce_prior_version: Option<u64>,
    enforce_index: bool,
    job_modify_index: u64,
    consul_token: String,
    vault_token: String,
    region: String,
    namespace: String,
    #[serde(rename = "SecretID")]
    secret_id: String,
}

impl RequestBody for JobRevertRequest {
    const WHAT: &'static str = "job revert request";
}

/// The body of `PUT /v1/job/:id/stable` (Nomad's `JobStabilityRequest`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct JobStabilityRequest {
    #[serde(rename = "JobID")]
    job_id: String,
    job_version: u64,
    stable: bool,
    region: String,
    namespace: String,
    #[serde(rename = "SecretID")]
    secret_id: String,
}

impl RequestBody for JobStabilityRequest {
    const WHAT: &'static str = "job stability request";
}

/// The body of `PUT /v1/job/:id/versions/:name/tag` (Nomad's `TagVersionRequest`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct TagVersionRequest {
    version: u64,
    /// Tag the current version (then `Version` must be 0).
    latest: bool,
    description: String,
    region: String,
    namespace: String,
    #[serde(rename = "SecretID")]
    secret_id: String,
}

impl RequestBody for TagVersionRequest {
    const WHAT: &'static str = "tag version request";
    // Nomad's CLI sends at least a version; a bare PUT tags version 0.
    const EMPTY_IS_DEFAULT: bool = true;
}

/// Nomad's checks of a body's `JobID` against the path.
fn check_job_id(in_body: &str, in_path: &str) -> ApiResult<()> {
    if in_body.is_empty() {
        return Err(ApiError::bad_request(
            "JobID must be specified in the body (the job's ID, as in the path)",
        ));
    }
    if in_body != in_path {
        return Err(ApiError::bad_request(format!(
            "Job ID does not match: {in_body:?} in the body, {in_path:?} in the path"
        )));
    }
    Ok(())
}

pub async fn revert(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    w: WriteOptions,
    body: Body<JobRevertRequest>,
) -> ApiResult<Reply> {
    let request = &body.value;
    check_job_id(&request.job_id, &id)?;
    let enforce_index = request.enforce_index.then_some(request.job_modify_index);
    let mut response = ctx
        .server()?
        .revert_job_checked(
            &w.namespace,
            &id,
            request.job_version,
            request.enforce_prior_version,
            enforce_index,
        )
        .await?;
    let mut warnings = body.ignored_warnings();
    if !response.warnings.is_empty() {
        warnings.push(std::mem::take(&mut response.warnings));
    }
    response.warnings = warnings.join("\n");
    Reply::write(&response, response.index)
}

pub async fn stable(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    w: WriteOptions,
    body: Body<JobStabilityRequest>,
) -> ApiResult<Reply> {
    let request = &body.value;
    check_job_id(&request.job_id, &id)?;
    let response = ctx
        .server()?
        .set_job_stability(&w.namespace, &id, request.job_version, request.stable)
        .await?;
    Reply::write(&response, response.index)
}

pub async fn tag_apply(
    State(ctx): State<ApiContext>,
    Path((id, name)): Path<(String, String)>,
    w: WriteOptions,
    body: Body<TagVersionRequest>,
) -> ApiResult<Reply> {
    let request = &body.value;
    if request.latest && request.version > 0 {
        return Err(ApiError::bad_request(format!(
            "version must be zero when tagging latest, got: {}",
            request.version
        )));
    }
    let version = (!request.latest).then_some(request.version);
    let response = ctx
        .server()?
        .tag_job_version(&w.namespace, &id, &name, version, &request.description)
        .await?;
    Reply::write(&response, response.index)
}

pub async fn tag_unset(
    State(ctx): State<ApiContext>,
    Path((id, name)): Path<(String, String)>,
    w: WriteOptions,
) -> ApiResult<Reply> {
    let response = ctx
        .server()?
        .untag_job_version(&w.namespace, &id, &name)
        .await?;
    Reply::write(&response, response.index)
}
