//! `/v1/nodes` and `/v1/node/:id`.

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
    let (state, index) = q.block(ctx.server.store(), &[Table::Nodes]).await;
    let stubs: Vec<_> = state
        .nodes()
        .iter()
        .filter(|n| n.id.starts_with(&q.prefix))
        .map(|n| n.stub())
        .collect();
    Ok(json_with_index(&stubs, index, known_leader(&ctx)))
}

pub async fn read(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let q = QueryOptions::parse(params)?;
    let (state, index) = q.block(ctx.server.store(), &[Table::Nodes]).await;
    let node = state
        .node(&id)
        .ok_or_else(|| ApiError::not_found(format!("node {id:?} not found")))?;
    Ok(json_with_index(&*node, index, known_leader(&ctx)))
}

pub async fn allocations(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let q = QueryOptions::parse(params)?;
    let (state, index) = q.block(ctx.server.store(), &[Table::Allocs]).await;
    if state.node(&id).is_none() {
        return Err(ApiError::not_found(format!("node {id:?} not found")));
    }
    let allocs: Vec<_> = state
        .allocs_by_node(&id)
        .iter()
        .map(|a| (**a).clone())
        .collect();
    Ok(json_with_index(&allocs, index, known_leader(&ctx)))
}
