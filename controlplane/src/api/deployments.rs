//! `/v1/deployments`, `/v1/deployment/...` and `/v1/job/:id/deployment[s]`: reading
//! deployments and what an operator does with them (promote, fail, pause/resume, set
//! allocation health, unblock), in Nomad's request and answer shapes.
//!
//! A write names the deployment by its full id and must be made in the deployment's own
//! namespace (`?namespace=`): the route's ACL check is on that namespace, so a token for one
//! namespace cannot change another's deployments by id.

use axum::extract::{Path, State};
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use super::extract::{Body, QueryOptions, RequestBody, WriteOptions};
use super::reply::Reply;
use super::ApiContext;
use crate::model::Deployment;
use crate::state::{State as ClusterState, Table};

fn deployment_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "deployment not found: no deployment has ID {id:?} (`noded deployment list` lists them)"
    ))
}

/// The deployments `?prefix=` and `?namespace=` select, by id.
fn selected(state: &ClusterState, q: &QueryOptions) -> Vec<Deployment> {
    let mut out: Vec<Deployment> = state
        .deployments()
        .iter()
        .filter(|d| d.id.starts_with(&q.prefix) && q.covers(&d.namespace))
        .map(|d| (**d).clone())
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// `GET /v1/deployments`: `?prefix=`, `?filter=`, `?per_page=`/`?next_token=`.
pub async fn list(State(ctx): State<ApiContext>, q: QueryOptions) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Deployments]).await?;
    Reply::page(selected(&state, &q), |d| d.id.clone(), &q, meta)
}

/// `GET /v1/deployment/:id`.
pub async fn read(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Deployments]).await?;
    let d = state
        .deployment(&id)
        .filter(|d| q.covers(&d.namespace))
        .ok_or_else(|| deployment_not_found(&id))?;
    Reply::read(&*d, meta)
}

/// `GET /v1/deployment/allocations/:id`: the allocations the deployment placed, as stubs.
pub async fn allocations(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Deployments, Table::Allocs]).await?;
    let d = state
        .deployment(&id)
        .filter(|d| q.covers(&d.namespace))
        .ok_or_else(|| deployment_not_found(&id))?;
    let mut stubs: Vec<_> = state
        .allocs_by_deployment(&d.id)
        .iter()
        .map(|a| a.stub())
        .collect();
    stubs.sort_by(|a, b| b.create_index.cmp(&a.create_index).then(a.id.cmp(&b.id)));
    Reply::read(&stubs, meta)
}

/// `GET /v1/job/:id/deployments[?all=true]`: the job's deployments, newest first (`all`
/// also lists those of a job registered again under the same id; noded keeps only the
/// current job's, so it changes nothing but is accepted).
pub async fn by_job(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Deployments]).await?;
    q.flag("all")?;
    let list: Vec<Deployment> = state
        .deployments_by_job(&q.namespace, &id)
        .iter()
        .map(|d| (**d).clone())
        .collect();
    Reply::read(&list, meta)
}

/// `GET /v1/job/:id/deployment`: the job's newest deployment, `null` without one (Nomad's
/// answer).
pub async fn latest_by_job(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Deployments]).await?;
    let latest = state
        .latest_deployment(&q.namespace, &id)
        .map(|d| (*d).clone());
    Reply::read(&latest, meta)
}

/// The deployment `id` of the request's namespace, for a write.
fn check_namespace(ctx: &ApiContext, id: &str, w: &WriteOptions) -> ApiResult<()> {
    let state = ctx.server()?.state();
    match state.deployment(id) {
        Some(d) if d.namespace == w.namespace => Ok(()),
        Some(d) => Err(ApiError::not_found(format!(
            "deployment not found: deployment {id:?} is in namespace {:?}, not {:?} (pass \
             -namespace {:?})",
            d.namespace, w.namespace, d.namespace
        ))),
        None => Err(deployment_not_found(id)),
    }
}

/// Nomad's check of a body's `DeploymentID` against the path (empty: the path's).
fn check_id(in_body: &str, in_path: &str) -> ApiResult<()> {
    if !in_body.is_empty() && in_body != in_path {
        return Err(ApiError::bad_request(format!(
            "Deployment ID does not match: {in_body:?} in the body, {in_path:?} in the path"
        )));
    }
    Ok(())
}

/// The body of `POST /v1/deployment/promote/:id` (Nomad's `DeploymentPromoteRequest`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct PromoteRequest {
    #[serde(rename = "DeploymentID")]
    deployment_id: String,
    all: bool,
    groups: Vec<String>,
    region: String,
    namespace: String,
    #[serde(rename = "SecretID")]
    secret_id: String,
}

impl RequestBody for PromoteRequest {
    const WHAT: &'static str = "deployment promote request";
}

pub async fn promote(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    w: WriteOptions,
    body: Body<PromoteRequest>,
) -> ApiResult<Reply> {
    check_id(&body.value.deployment_id, &id)?;
    check_namespace(&ctx, &id, &w)?;
    let request = body.value;
    let response = ctx
        .server()?
        .promote_deployment(&id, request.all, request.groups)
        .await?;
    Reply::write(&response, response.index)
}

/// The body of `POST /v1/deployment/fail/:id` and `/unblock/:id` (Nomad's
/// `DeploymentFailRequest`, `DeploymentUnblockRequest`); may be empty.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct IdRequest {
    #[serde(rename = "DeploymentID")]
    deployment_id: String,
    region: String,
    namespace: String,
    #[serde(rename = "SecretID")]
    secret_id: String,
}

impl RequestBody for IdRequest {
    const WHAT: &'static str = "deployment request";
    const EMPTY_IS_DEFAULT: bool = true;
}

pub async fn fail(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    w: WriteOptions,
    body: Body<IdRequest>,
) -> ApiResult<Reply> {
    check_id(&body.value.deployment_id, &id)?;
    check_namespace(&ctx, &id, &w)?;
    let response = ctx.server()?.fail_deployment(&id).await?;
    Reply::write(&response, response.index)
}

pub async fn unblock(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    w: WriteOptions,
    body: Body<IdRequest>,
) -> ApiResult<Reply> {
    check_id(&body.value.deployment_id, &id)?;
    check_namespace(&ctx, &id, &w)?;
    let response = ctx.server()?.unblock_deployment(&id).await?;
    Reply::write(&response, response.index)
}

/// The body of `POST /v1/deployment/pause/:id` (Nomad's `DeploymentPauseRequest`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct PauseRequest {
    #[serde(rename = "DeploymentID")]
    deployment_id: String,
    pause: bool,
    region: String,
    namespace: String,
    #[serde(rename = "SecretID")]
    secret_id: String,
}

impl RequestBody for PauseRequest {
    const WHAT: &'static str = "deployment pause request";
}

pub async fn pause(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    w: WriteOptions,
    body: Body<PauseRequest>,
) -> ApiResult<Reply> {
    check_id(&body.value.deployment_id, &id)?;
    check_namespace(&ctx, &id, &w)?;
    let response = ctx
        .server()?
        .pause_deployment(&id, body.value.pause)
        .await?;
    Reply::write(&response, response.index)
}

/// The body of `POST /v1/deployment/allocation-health/:id` (Nomad's
/// `DeploymentAllocHealthRequest`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct AllocHealthRequest {
    #[serde(rename = "DeploymentID")]
    deployment_id: String,
    #[serde(rename = "HealthyAllocationIDs")]
    healthy_allocation_ids: Vec<String>,
    #[serde(rename = "UnhealthyAllocationIDs")]
    unhealthy_allocation_ids: Vec<String>,
    region: String,
    namespace: String,
    #[serde(rename = "SecretID")]
    secret_id: String,
}

impl RequestBody for AllocHealthRequest {
    const WHAT: &'static str = "deployment allocation health request";
}

/// How many allocation ids one health request may carry.
pub const MAX_HEALTH_IDS: usize = 10_000;

pub async fn alloc_health(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    w: WriteOptions,
    body: Body<AllocHealthRequest>,
) -> ApiResult<Reply> {
    check_id(&body.value.deployment_id, &id)?;
    check_namespace(&ctx, &id, &w)?;
    let request = body.value;
    let n = request.healthy_allocation_ids.len() + request.unhealthy_allocation_ids.len();
    if n > MAX_HEALTH_IDS {
        return Err(ApiError::bad_request(format!(
            "{n} allocation ids in one health request; at most {MAX_HEALTH_IDS}: split it"
        )));
    }
    let response = ctx
        .server()?
        .set_deployment_alloc_health(
            &id,
            request.healthy_allocation_ids,
            request.unhealthy_allocation_ids,
        )
        .await?;
    Reply::write(&response, response.index)
}
