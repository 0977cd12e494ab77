//! `/v1/nodes`, `/v1/node/:id[/allocations]`, and what the operator does to a node: drain,
//! eligibility, evaluate, purge.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use super::extract::{Body, QueryOptions, RequestBody, WriteOptions};
use super::reply::Reply;
use super::ApiContext;
use crate::model::{DrainStrategy, NodeStubFields};
use crate::state::Table;

fn node_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("node {id:?} not found"))
}

/// `GET /v1/nodes?prefix=&resources=&os=` (and paging).
pub async fn list(State(ctx): State<ApiContext>, q: QueryOptions) -> ApiResult<Reply> {
    let fields = NodeStubFields {
        resources: q.flag("resources")?,
        os: q.flag("os")?,
    };
    let (state, meta) = ctx.read(&q, &[Table::Nodes]).await?;
    let mut stubs: Vec<_> = state
        .nodes()
        .iter()
        .filter(|n| n.id.starts_with(&q.prefix))
        .map(|n| n.stub_with(fields))
        .collect();
    stubs.sort_by(|a, b| a.id.cmp(&b.id));
    Reply::page(stubs, |n| n.id.clone(), &q, meta)
}

pub async fn read(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Nodes]).await?;
    let node = state.node(&id).ok_or_else(|| node_not_found(&id))?;
    Reply::read(&*node, meta)
}

pub async fn allocations(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Allocs]).await?;
    if state.node(&id).is_none() {
        return Err(node_not_found(&id));
    }
    let allocs: Vec<_> = state
        .allocs_by_node(&id)
        .iter()
        .map(|a| (**a).clone())
        .collect();
    Reply::read(&allocs, meta)
}

/// Nomad's `DrainSpec`: how a drain should go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct DrainSpec {
    /// Nanoseconds; 0 is no deadline, negative is "force now".
    deadline: i64,
    ignore_system_jobs: bool,
}

/// The body of `PUT /v1/node/:id/drain` (Nomad's `NodeUpdateDrainRequest`): `DrainSpec`
/// absent or null disables the drain.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct DrainRequest {
    #[serde(rename = "NodeID")]
    node_id: String,
    drain_spec: Option<DrainSpec>,
    mark_eligible: bool,
    meta: BTreeMap<String, String>,
}

impl RequestBody for DrainRequest {
    const WHAT: &'static str = "node drain request";
}

/// The path's node id must match one given in the body.
fn check_body_node(path_id: &str, body_id: &str) -> ApiResult<()> {
    if body_id.is_empty() || body_id == path_id {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "node ID {body_id:?} in the body does not match {path_id:?} in the URL"
    )))
}

/// `PUT/POST /v1/node/:id/drain`.
pub async fn drain(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    _w: WriteOptions,
    body: Body<DrainRequest>,
) -> ApiResult<Reply> {
    let request = body.value;
    check_body_node(&id, &request.node_id)?;
    let strategy = request.drain_spec.map(|spec| DrainStrategy {
        deadline: spec.deadline,
        ignore_system_jobs: spec.ignore_system_jobs,
        ..Default::default()
    });
    let response = ctx
        .server()?
        .update_drain(&id, strategy, request.mark_eligible, request.meta)
        .await?;
    Reply::write(&response, response.index)
}

/// The body of `PUT /v1/node/:id/eligibility` (Nomad's `NodeUpdateEligibilityRequest`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct EligibilityRequest {
    #[serde(rename = "NodeID")]
    node_id: String,
    eligibility: String,
}

impl RequestBody for EligibilityRequest {
    const WHAT: &'static str = "node eligibility request";
}

/// `PUT/POST /v1/node/:id/eligibility`.
pub async fn eligibility(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    _w: WriteOptions,
    body: Body<EligibilityRequest>,
) -> ApiResult<Reply> {
    let request = body.value;
    check_body_node(&id, &request.node_id)?;
    if request.eligibility.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{}: field Eligibility: missing; use \"eligible\" or \"ineligible\"",
            EligibilityRequest::WHAT
        )));
    }
    let response = ctx
        .server()?
        .update_eligibility(&id, &request.eligibility)
        .await?;
    Reply::write(&response, response.index)
}

/// `PUT/POST /v1/node/:id/evaluate`.
pub async fn evaluate(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    _w: WriteOptions,
) -> ApiResult<Reply> {
    let response = ctx.server()?.evaluate_node(&id).await?;
    Reply::write(&response, response.index)
}

/// `PUT/POST /v1/node/:id/purge[?force=true]`. `force` is noded's: Nomad purges a node
/// whatever runs on it; noded refuses while allocations there have not finished, unless
/// forced (they are then marked lost and replaced).
pub async fn purge(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    w: WriteOptions,
) -> ApiResult<Reply> {
    let force = w.flag("force")?;
    let response = ctx.server()?.purge_node(&id, force).await?;
    Reply::write(&response, response.index)
}
