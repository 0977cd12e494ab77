//! `/v1/status/*` and `/v1/agent/*`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error::ApiResult;
use super::reply::Reply;
use super::ApiContext;

pub async fn leader(State(ctx): State<ApiContext>) -> ApiResult<Reply> {
    Reply::json(&ctx.server.consensus().leader_address().unwrap_or_default())
}

pub async fn peers(State(ctx): State<ApiContext>) -> ApiResult<Reply> {
    let peers: Vec<String> = ctx
        .server
        .consensus()
        .leader_address()
        .into_iter()
        .collect();
    Reply::json(&peers)
}

pub async fn self_info(State(ctx): State<ApiContext>) -> ApiResult<Reply> {
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
    Reply::json(&info)
}

/// 200 when the server has a leader and the client (if any) is healthy; 500 otherwise, with the
/// reason — the shape Nomad's health check tooling expects.
pub async fn health(State(ctx): State<ApiContext>) -> ApiResult<Response> {
    let leader = ctx.server.consensus().leader_address();
    let server_ok = leader.is_some();
    let mut body = serde_json::json!({
        "server": {
            "ok": server_ok,
            "message": if server_ok { "ok" } else { "no known leader" },
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
    Ok((status, Reply::json(&body)?).into_response())
}
