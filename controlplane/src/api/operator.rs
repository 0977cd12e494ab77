//! `/v1/operator/...`.

use axum::extract::State;

use super::error::ApiResult;
use super::extract::{Body, QueryOptions, RequestBody, WriteOptions};
use super::reply::Reply;
use super::ApiContext;
use crate::model::SchedulerConfiguration;
use crate::state::Table;

impl RequestBody for SchedulerConfiguration {
    const WHAT: &'static str = "scheduler configuration";
}

/// `GET /v1/operator/scheduler/configuration`.
pub async fn scheduler_config(State(ctx): State<ApiContext>, q: QueryOptions) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::SchedulerConfig]).await?;
    Reply::read(
        &serde_json::json!({ "SchedulerConfig": *state.scheduler_config(), "Index": meta.index }),
        meta,
    )
}

/// `PUT/POST /v1/operator/scheduler/configuration`: the whole configuration in the body.
pub async fn set_scheduler_config(
    State(ctx): State<ApiContext>,
    _w: WriteOptions,
    body: Body<SchedulerConfiguration>,
) -> ApiResult<Reply> {
    let mut config = body.value;
    if config.scheduler_algorithm.is_empty() {
        config.scheduler_algorithm = "binpack".to_string();
    }
    let index = ctx.server()?.set_scheduler_config(config).await?;
    Reply::write(
        &serde_json::json!({ "Updated": true, "Index": index }),
        index,
    )
}
