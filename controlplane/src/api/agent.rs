//! `/v1/status/*` and `/v1/agent/*`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::ApiContext;

pub async fn leader(State(ctx): State<ApiContext>) -> Json<String> {
    Json(ctx.server.consensus().leader_address().unwrap_or_default())
}

pub async fn peers(State(ctx): State<ApiContext>) -> Json<Vec<String>> {
    Json(
        ctx.server
            .consensus()
            .leader_address()
            .into_iter()
            .collect(),
    )
}

pub async fn self_info(State(ctx): State<ApiContext>) -> Json<serde_json::Value> {
    let mut info = ctx.agent.self_info();
    if let Some(obj) = info.as_object_mut() {
        let (ready, total) = ctx.server.broker().stats();
        let state = ctx.server.state();
        obj.insert(
            "stats".to_string(),
            serde_json::json!({
                "raft": ctx.server.consensus().stats(),
                "nomad": {
                    "leader": ctx.server.consensus().leader_address().is_some(),
                    "broker_ready": ready,
                    "broker_total": total,
                    "state_index": state.latest_index(),
                    "known_nodes": state.nodes().len(),
                }
            }),
        );
    }
    Json(info)
}

/// 200 when the server has a leader and the client (if any) is healthy; 500 otherwise, with the
/// reason — the shape Nomad's health check tooling expects.
pub async fn health(State(ctx): State<ApiContext>) -> Response {
    let leader = ctx.server.consensus().leader_address();
    let server_ok = leader.is_some();
    let mut body = serde_json::json!({
        "server": {
            "ok": server_ok,
            "message": if server_ok { "ok".to_string() } else { "no known leader".to_string() },
        }
    });
    let mut ok = server_ok;
    if let Some(client) = &ctx.client {
        let (client_ok, message) = client.health();
        ok &= client_ok;
        body["client"] = serde_json::json!({ "ok": client_ok, "message": message });
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    (status, Json(body)).into_response()
}

/// `GET /v1/operator/scheduler/configuration`.
pub async fn scheduler_config(
    State(ctx): State<ApiContext>,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> super::ApiResult<Response> {
    let q = super::QueryOptions::parse(params)?;
    let (state, index) = q
        .block(ctx.server.store(), &[crate::state::Table::SchedulerConfig])
        .await;
    let body = serde_json::json!({ "SchedulerConfig": *state.scheduler_config(), "Index": index });
    Ok(super::json_with_index(&body, index, true))
}

/// `PUT/POST /v1/operator/scheduler/configuration`: the whole configuration in the body.
pub async fn set_scheduler_config(
    State(ctx): State<ApiContext>,
    body: bytes::Bytes,
) -> super::ApiResult<Response> {
    let mut config: crate::model::SchedulerConfiguration =
        super::decode_body(&body, "scheduler configuration")?;
    if config.scheduler_algorithm.is_empty() {
        config.scheduler_algorithm = "binpack".to_string();
    }
    let index = ctx.server.set_scheduler_config(config).await?;
    Ok(super::json_with_index(
        &serde_json::json!({ "Updated": true, "Index": index }),
        index,
        true,
    ))
}
