//! `/v1/allocations`, `/v1/allocation/:id`, `/v1/evaluations`, `/v1/evaluation/:id`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;

use super::error::{ApiError, ApiResult};
use super::{json_with_index, ApiContext, QueryOptions};
use crate::state::Table;

fn known_leader(ctx: &ApiContext) -> bool {
    ctx.server.consensus().leader_address().is_some()
}

pub async fn list(
    State(ctx): State<ApiContext>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let q = QueryOptions::parse(params)?;
    let (state, index) = q.block(ctx.server.store(), &[Table::Allocs]).await;
    let stubs: Vec<_> = state
        .allocs()
        .iter()
        .filter(|a| a.id.starts_with(&q.prefix) && q.covers(&a.namespace))
        .map(|a| a.stub())
        .collect();
    Ok(json_with_index(&stubs, index, known_leader(&ctx)))
}

pub async fn read(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let q = QueryOptions::parse(params)?;
    let (state, index) = q.block(ctx.server.store(), &[Table::Allocs]).await;
    let alloc = state
        .alloc(&id)
        .ok_or_else(|| ApiError::not_found(format!("allocation {id:?} not found")))?;
    Ok(json_with_index(&*alloc, index, known_leader(&ctx)))
}

pub async fn list_evals(
    State(ctx): State<ApiContext>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let q = QueryOptions::parse(params)?;
    let (state, index) = q.block(ctx.server.store(), &[Table::Evals]).await;
    let evals: Vec<_> = state
        .evals()
        .iter()
        .filter(|e| e.id.starts_with(&q.prefix) && q.covers(&e.namespace))
        .map(|e| (**e).clone())
        .collect();
    Ok(json_with_index(&evals, index, known_leader(&ctx)))
}

pub async fn read_eval(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let q = QueryOptions::parse(params)?;
    let (state, index) = q.block(ctx.server.store(), &[Table::Evals]).await;
    let eval = state
        .eval(&id)
        .ok_or_else(|| ApiError::not_found(format!("evaluation {id:?} not found")))?;
    Ok(json_with_index(&*eval, index, known_leader(&ctx)))
}

pub async fn eval_allocations(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let q = QueryOptions::parse(params)?;
    let (state, index) = q.block(ctx.server.store(), &[Table::Allocs]).await;
    let eval = state
        .eval(&id)
        .ok_or_else(|| ApiError::not_found(format!("evaluation {id:?} not found")))?;
    let stubs: Vec<_> = state
        .allocs_by_job(&eval.namespace, &eval.job_id)
        .iter()
        .filter(|a| a.eval_id == id)
        .map(|a| a.stub())
        .collect();
    Ok(json_with_index(&stubs, index, known_leader(&ctx)))
}
