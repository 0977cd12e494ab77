//! `/v1/operator/...`.

use axum::extract::State;

use super::error::{ApiError, ApiResult};
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

/// `PUT/POST /v1/operator/scheduler/configuration[?cas=N]`: the whole configuration in the
/// body; answers Nomad's `SchedulerSetConfigurationResponse`, `{"Updated": bool, "Index": n}`
/// (with `cas`, `Updated` says whether the stored modify index was still `N`).
pub async fn set_scheduler_config(
    State(ctx): State<ApiContext>,
    w: WriteOptions,
    body: Body<SchedulerConfiguration>,
) -> ApiResult<Reply> {
    let cas = if w.has("cas") {
        let text = w.string("cas");
        Some(text.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "Error parsing cas value: {text:?} is not a modify index (a whole number)"
            ))
        })?)
    } else {
        None
    };
    let mut config = body.value;
    if config.scheduler_algorithm.is_empty() {
        config.scheduler_algorithm = "binpack".to_string();
    }
    let (updated, index) = ctx.server()?.set_scheduler_config(config, cas).await?;
    Reply::write(
        &serde_json::json!({ "Updated": updated, "Index": index }),
        index,
    )
}
