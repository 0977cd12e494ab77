//! `/v1/evaluations[/count]`, `/v1/evaluation/:id[/allocations]`, `DELETE /v1/evaluations`
//! and `/v1/job/:id/evaluate`.

use std::collections::{BTreeSet, VecDeque};

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::extract::{Body, QueryOptions, RequestBody, WriteOptions};
use super::filter::Filter;
use super::reply::Reply;
use super::ApiContext;
use crate::model::Evaluation;
use crate::server::EvalSelection;
use crate::state::{State as ClusterState, Table};

/// How many evaluations `?related=true` walks at most (a chain of follow-ups and blocked
/// evaluations is short; this bounds a pathological one).
pub const MAX_RELATED: usize = 1000;

fn eval_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("evaluation {id:?} not found"))
}

/// The evaluations `?prefix=`, `?namespace=`, `?job=` and `?status=` select, by id.
fn selected(state: &ClusterState, q: &QueryOptions) -> Vec<Evaluation> {
    let job = q.string("job");
    let status = q.string("status");
    let mut evals: Vec<_> = state
        .evals()
        .iter()
        .filter(|e| e.id.starts_with(&q.prefix) && q.covers(&e.namespace))
        .filter(|e| job.is_empty() || e.job_id == job)
        .filter(|e| status.is_empty() || e.status.as_str() == status)
        .map(|e| (**e).clone())
        .collect();
    evals.sort_by(|a, b| a.id.cmp(&b.id));
    evals
}

/// `GET /v1/evaluations`: `?filter=`, `?per_page=`/`?next_token=`, `?job=`, `?status=`.
pub async fn list(State(ctx): State<ApiContext>, q: QueryOptions) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Evals]).await?;
    Reply::page(selected(&state, &q), |e| e.id.clone(), &q, meta)
}

/// `GET /v1/evaluations/count`: `{"Count": n}` of what the list would hold unpaged.
pub async fn count(State(ctx): State<ApiContext>, q: QueryOptions) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Evals]).await?;
    let evals = super::reply::filtered(selected(&state, &q), &q)?;
    Reply::read(&serde_json::json!({ "Count": evals.len() }), meta)
}

/// Nomad's `EvaluationStub`: what `RelatedEvals` lists.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EvaluationStub {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
    pub priority: i32,
    #[serde(rename = "Type")]
    pub eval_type: String,
    pub triggered_by: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    #[serde(rename = "DeploymentID")]
    pub deployment_id: String,
    pub status: String,
    pub status_description: String,
    pub wait_until: Option<String>,
    pub next_eval: String,
    pub previous_eval: String,
    pub blocked_eval: String,
    pub create_index: u64,
    pub modify_index: u64,
    pub create_time: i64,
    pub modify_time: i64,
}

impl From<&Evaluation> for EvaluationStub {
    fn from(e: &Evaluation) -> Self {
        EvaluationStub {
            id: e.id.clone(),
            namespace: e.namespace.clone(),
            priority: e.priority,
            eval_type: e.eval_type.clone(),
            triggered_by: e.triggered_by.clone(),
            job_id: e.job_id.clone(),
            node_id: e.node_id.clone(),
            deployment_id: String::new(),
            status: e.status.as_str().to_string(),
            status_description: e.status_description.clone(),
            wait_until: (!e.wait_until.is_empty()).then(|| e.wait_until.clone()),
            next_eval: e.next_eval.clone(),
            previous_eval: e.previous_eval.clone(),
            blocked_eval: e.blocked_eval.clone(),
            create_index: e.create_index,
            modify_index: e.modify_index,
            create_time: e.create_time,
            modify_time: e.modify_time,
        }
    }
}

/// Every evaluation linked to `eval` through `PreviousEval`, `NextEval` and `BlockedEval`, in
/// either direction, transitively (Nomad's `EvalsRelatedToID`), oldest first; bounded by
/// [`MAX_RELATED`].
pub fn related(state: &ClusterState, eval: &Evaluation) -> Vec<EvaluationStub> {
    let job_evals = state.evals_by_job(&eval.namespace, &eval.job_id);
    let mut seen: BTreeSet<String> = BTreeSet::from([eval.id.clone()]);
    let mut queue: VecDeque<Evaluation> = VecDeque::from([eval.clone()]);
    let mut out = Vec::new();
    while let Some(current) = queue.pop_front() {
        if out.len() >= MAX_RELATED {
            break;
        }
        let mut links: Vec<String> = [
            &current.previous_eval,
            &current.next_eval,
            &current.blocked_eval,
        ]
        .into_iter()
        .filter(|id| !id.is_empty())
        .cloned()
        .collect();
        // Links pointing at this one from evaluations it does not name.
        links.extend(
            job_evals
                .iter()
                .filter(|e| {
                    e.previous_eval == current.id
                        || e.next_eval == current.id
                        || e.blocked_eval == current.id
                })
                .map(|e| e.id.clone()),
        );
        for id in links {
            if !seen.insert(id.clone()) {
                continue;
            }
            if let Some(linked) = state.eval(&id) {
                out.push(EvaluationStub::from(&*linked));
                queue.push_back((*linked).clone());
            }
        }
    }
    out.sort_by(|a, b| a.create_index.cmp(&b.create_index).then(a.id.cmp(&b.id)));
    out.truncate(MAX_RELATED);
    out
}

/// `GET /v1/evaluation/:id[?related=true]`.
pub async fn read(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Evals]).await?;
    let eval = state.eval(&id).ok_or_else(|| eval_not_found(&id))?;
    let mut json = serde_json::to_value(&*eval)
        .map_err(|e| ApiError::internal(format!("encoding evaluation {id}: {e}")))?;
    if q.flag("related")? {
        let stubs = serde_json::to_value(related(&state, &eval))
            .map_err(|e| ApiError::internal(format!("encoding related evaluations: {e}")))?;
        if let Some(obj) = json.as_object_mut() {
            obj.insert("RelatedEvals".to_string(), stubs);
        }
    }
    Reply::read(&json, meta)
}

pub async fn allocations(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Allocs, Table::Evals]).await?;
    let eval = state.eval(&id).ok_or_else(|| eval_not_found(&id))?;
    let stubs: Vec<_> = state
        .allocs_by_job(&eval.namespace, &eval.job_id)
        .iter()
        .filter(|a| a.eval_id == id)
        .map(|a| a.stub())
        .collect();
    Reply::read(&stubs, meta)
}

/// The body of `DELETE /v1/evaluations` (Nomad's `EvalDeleteRequest`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct EvalDeleteRequest {
    #[serde(rename = "EvalIDs")]
    eval_ids: Vec<String>,
    filter: String,
}

impl RequestBody for EvalDeleteRequest {
    const WHAT: &'static str = "evaluation delete request";
}

/// `DELETE /v1/evaluations`: `{"EvalIDs": [...]}` or `{"Filter": "..."}`; only while the eval
/// broker is paused. Answers `{"Count": n}`.
pub async fn delete(
    State(ctx): State<ApiContext>,
    _w: WriteOptions,
    body: Body<EvalDeleteRequest>,
) -> ApiResult<Reply> {
    let request = body.value;
    let which = match (request.eval_ids.is_empty(), request.filter.is_empty()) {
        (false, false) => {
            return Err(ApiError::bad_request(
                "evals cannot be deleted by both ID and filter; send EvalIDs or Filter",
            ))
        }
        (true, true) => {
            return Err(ApiError::bad_request(
                "evals must be deleted by either ID or filter; send EvalIDs or Filter",
            ))
        }
        (false, true) => EvalSelection::Ids(request.eval_ids),
        (true, false) => EvalSelection::Filter(
            Filter::parse(&request.filter)
                .map_err(|e| ApiError::bad_request(format!("Filter {:?}: {e}", request.filter)))?,
        ),
    };
    let (count, index) = ctx.server()?.delete_evals(which).await?;
    Reply::write(
        &serde_json::json!({ "Count": count, "Index": index }),
        index,
    )
}

/// The body of `POST /v1/job/:id/evaluate` (Nomad's `JobEvaluateRequest`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct JobEvaluateRequest {
    #[serde(rename = "JobID")]
    job_id: String,
    eval_options: EvalOptions,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct EvalOptions {
    force_reschedule: bool,
}

impl RequestBody for JobEvaluateRequest {
    const WHAT: &'static str = "job evaluate request";
    // Nomad's own client sends the body, but `curl -X POST` without one means "evaluate".
    const EMPTY_IS_DEFAULT: bool = true;
}

/// `POST /v1/job/:id/evaluate`: a new evaluation of the job (Nomad's `JobRegisterResponse`
/// shape back).
pub async fn job_evaluate(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    w: WriteOptions,
    body: Body<JobEvaluateRequest>,
) -> ApiResult<Reply> {
    let request = body.value;
    if !request.job_id.is_empty() && request.job_id != id {
        return Err(ApiError::bad_request(format!(
            "job ID {:?} in the body does not match {id:?} in the path",
            request.job_id
        )));
    }
    let response = ctx
        .server()?
        .evaluate_job(&w.namespace, &id, request.eval_options.force_reschedule)
        .await?;
    Reply::write(&response, response.index)
}
