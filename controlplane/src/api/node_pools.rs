//! `/v1/node/pools` and `/v1/node/pool/:name[/nodes|/jobs]`.

use axum::extract::{Path, State};

use super::error::{ApiError, ApiResult};
use super::extract::{Body, QueryOptions, RequestBody, WriteOptions};
use super::reply::Reply;
use super::ApiContext;
use crate::model::NodePool;
use crate::state::Table;

impl RequestBody for NodePool {
    const WHAT: &'static str = "node pool";
}

fn pool_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("node pool {name:?} not found"))
}

/// `GET /v1/node/pools?prefix=` (and paging).
pub async fn list(State(ctx): State<ApiContext>, q: QueryOptions) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::NodePools]).await?;
    let pools: Vec<NodePool> = state
        .node_pools()
        .into_iter()
        .filter(|p| p.name.starts_with(&q.prefix))
        .collect();
    Reply::page(pools, |p| p.name.clone(), &q, meta)
}

/// `PUT/POST /v1/node/pools`: the body is one pool, created or replaced.
pub async fn upsert(
    State(ctx): State<ApiContext>,
    _w: WriteOptions,
    body: Body<NodePool>,
) -> ApiResult<Reply> {
    let mut pool = body.value;
    pool.create_index = 0;
    pool.modify_index = 0;
    let index = ctx.server()?.upsert_node_pools(vec![pool]).await?;
    Reply::write(&serde_json::Value::Null, index)
}

/// `GET /v1/node/pool/:name`.
pub async fn read(
    State(ctx): State<ApiContext>,
    Path(name): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::NodePools]).await?;
    let pool = state
        .node_pool(&name)
        .ok_or_else(|| pool_not_found(&name))?;
    Reply::read(&pool, meta)
}

/// `DELETE /v1/node/pool/:name`.
pub async fn delete(
    State(ctx): State<ApiContext>,
    Path(name): Path<String>,
    _w: WriteOptions,
) -> ApiResult<Reply> {
    let index = ctx.server()?.delete_node_pool(&name).await?;
    Reply::write(&serde_json::Value::Null, index)
}

/// `GET /v1/node/pool/:name/nodes?resources=&os=` (and paging).
pub async fn nodes(
    State(ctx): State<ApiContext>,
    Path(name): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let fields = crate::model::NodeStubFields {
        resources: q.flag("resources")?,
        os: q.flag("os")?,
    };
    let (state, meta) = ctx.read(&q, &[Table::NodePools, Table::Nodes]).await?;
    if state.node_pool(&name).is_none() {
        return Err(pool_not_found(&name));
    }
    let mut stubs: Vec<_> = state
        .nodes_in_pool(&name)
        .iter()
        .map(|n| n.stub_with(fields))
        .collect();
    stubs.sort_by(|a, b| a.id.cmp(&b.id));
    Reply::page(stubs, |n| n.id.clone(), &q, meta)
}

/// `GET /v1/node/pool/:name/jobs` (`?namespace=*` for every namespace).
pub async fn jobs(
    State(ctx): State<ApiContext>,
    Path(name): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let (state, meta) = ctx
        .read(&q, &[Table::NodePools, Table::Jobs, Table::Allocs])
        .await?;
    if state.node_pool(&name).is_none() {
        return Err(pool_not_found(&name));
    }
    let mut stubs: Vec<_> = state
        .jobs_in_pool(&name)
        .into_iter()
        .filter(|j| q.covers(&j.namespace))
        .map(|j| j.stub(state.job_summary(&j)))
        .collect();
    stubs.sort_by(|a, b| (&a.namespace, &a.id).cmp(&(&b.namespace, &b.id)));
    Reply::page(stubs, |s| format!("{}.{}", s.namespace, s.id), &q, meta)
}
