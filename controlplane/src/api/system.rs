//! `/v1/system/gc` and `/v1/system/reconcile/summaries`.

use axum::extract::State;

use super::error::ApiResult;
use super::extract::WriteOptions;
use super::reply::Reply;
use super::ApiContext;

/// `PUT /v1/system/gc`: collect everything that has finished, whatever its age.
pub async fn gc(State(ctx): State<ApiContext>, _w: WriteOptions) -> ApiResult<Reply> {
    let index = ctx.server()?.garbage_collect(true).await?;
    Reply::write(&serde_json::Value::Null, index)
}

/// `PUT /v1/system/reconcile/summaries`: job summaries are computed from the allocations on
/// every read, so they are always reconciled; answers the index they are current at.
pub async fn reconcile_summaries(
    State(ctx): State<ApiContext>,
    _w: WriteOptions,
) -> ApiResult<Reply> {
    let index = ctx.server()?.reconcile_summaries();
    Reply::write(&serde_json::Value::Null, index)
}
