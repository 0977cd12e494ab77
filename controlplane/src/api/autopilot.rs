//! `/v1/operator/autopilot/*`: the replicated configuration (with check-and-set) and the
//! region's health, judged by [`crate::server::autopilot`] from the cluster layer's facts.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ApiResult};
use super::extract::{Body, QueryOptions, RequestBody, WriteOptions};
use super::reply::Reply;
use super::ApiContext;
use crate::model::AutopilotConfiguration;
use crate::state::Table;

impl RequestBody for AutopilotConfiguration {
    const WHAT: &'static str = "autopilot configuration";
}

/// `GET /v1/operator/autopilot/configuration`: the configuration itself (Nomad answers it
/// bare, not wrapped as the scheduler's is).
pub async fn configuration(State(ctx): State<ApiContext>, q: QueryOptions) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::AutopilotConfig]).await?;
    Reply::read(&*state.autopilot_config(), meta)
}

/// `PUT /v1/operator/autopilot/configuration[?cas=N]`: `true`, or with `cas` whether it was
/// written (the stored modify index was still `N`).
pub async fn set_configuration(
    State(ctx): State<ApiContext>,
    w: WriteOptions,
    body: Body<AutopilotConfiguration>,
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
    let (written, index) = ctx.server()?.set_autopilot_config(body.value, cas).await?;
    Reply::write(&written, index)
}

/// `GET /v1/operator/autopilot/health`: Nomad's `OperatorHealthReply`, answered 429 when the
/// region is not healthy (as Nomad does, so a health check needs only the status).
pub async fn health(State(ctx): State<ApiContext>, _q: QueryOptions) -> ApiResult<Response> {
    let facts = ctx.cluster_endpoints()?.server_health().await?;
    let reply = ctx.server()?.autopilot_health(&facts);
    let status = if reply.healthy {
        StatusCode::OK
    } else {
        StatusCode::TOO_MANY_REQUESTS
    };
    Ok((status, Reply::json(&reply)?).into_response())
}
