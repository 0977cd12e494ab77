//! `/v1/allocations` and `/v1/allocation/:id`.

use axum::extract::{Path, State};

use super::error::{ApiError, ApiResult};
use super::extract::{QueryOptions, WriteOptions};
use super::reply::Reply;
use super::ApiContext;
use crate::model::AllocStubFields;
use crate::state::Table;

/// `GET /v1/allocations?prefix=&namespace=&resources=&task_states=` (and paging).
pub async fn list(State(ctx): State<ApiContext>, q: QueryOptions) -> ApiResult<Reply> {
    let fields = AllocStubFields {
        resources: q.flag("resources")?,
        task_states: q.flag_or("task_states", true)?,
    };
    let (state, meta) = ctx.read(&q, &[Table::Allocs]).await?;
    let mut stubs: Vec<_> = state
        .allocs()
        .iter()
        .filter(|a| a.id.starts_with(&q.prefix) && q.covers(&a.namespace))
        .map(|a| a.stub_with(fields))
        .collect();
    stubs.sort_by(|a, b| a.id.cmp(&b.id));
    Reply::page(stubs, |a| a.id.clone(), &q, meta)
}

pub async fn read(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Allocs]).await?;
    let alloc = state
        .alloc(&id)
        .ok_or_else(|| ApiError::not_found(format!("allocation {id:?} not found")))?;
    Reply::read(&*alloc, meta)
}

/// `PUT/POST /v1/allocation/:id/stop[?no_shutdown_delay=true]`: the allocation is migrated
/// (stopped and replaced elsewhere) by a new evaluation; answers `{"EvalID", "Index"}`.
pub async fn stop(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    w: WriteOptions,
) -> ApiResult<Reply> {
    let no_shutdown_delay = w.flag("no_shutdown_delay")?;
    let response = ctx.server()?.stop_alloc(&id, no_shutdown_delay).await?;
    Reply::write(&response, response.index)
}
