//! `/v1/evaluations` and `/v1/evaluation/:id[/allocations]`.

use axum::extract::{Path, State};

use super::error::{ApiError, ApiResult};
use super::extract::QueryOptions;
use super::reply::Reply;
use super::ApiContext;
use crate::state::Table;

fn eval_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("evaluation {id:?} not found"))
}

pub async fn list(State(ctx): State<ApiContext>, q: QueryOptions) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Evals]).await?;
    let mut evals: Vec<_> = state
        .evals()
        .iter()
        .filter(|e| e.id.starts_with(&q.prefix) && q.covers(&e.namespace))
        .map(|e| (**e).clone())
        .collect();
    evals.sort_by(|a, b| a.id.cmp(&b.id));
    Reply::page(evals, |e| e.id.clone(), &q, meta)
}

pub async fn read(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Evals]).await?;
    let eval = state.eval(&id).ok_or_else(|| eval_not_found(&id))?;
    Reply::read(&*eval, meta)
}

pub async fn allocations(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Allocs]).await?;
    let eval = state.eval(&id).ok_or_else(|| eval_not_found(&id))?;
    let stubs: Vec<_> = state
        .allocs_by_job(&eval.namespace, &eval.job_id)
        .iter()
        .filter(|a| a.eval_id == id)
        .map(|a| a.stub())
        .collect();
    Reply::read(&stubs, meta)
}
