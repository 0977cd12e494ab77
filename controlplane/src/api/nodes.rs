//! `/v1/nodes` and `/v1/node/:id[/allocations]`.

use axum::extract::{Path, State};

use super::error::{ApiError, ApiResult};
use super::extract::QueryOptions;
use super::reply::Reply;
use super::ApiContext;
use crate::model::NodeStubFields;
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
