//! `/v1/status/*`, `/v1/regions` and `/v1/agent/*`.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ApiResult};
use super::extract::{query_all, QueryOptions, WriteOptions};
use super::reply::Reply;
use super::ApiContext;

pub async fn leader(State(ctx): State<ApiContext>) -> ApiResult<Reply> {
    Reply::json(
        &ctx.server()?
            .consensus()
            .leader_address()
            .unwrap_or_default(),
    )
}

/// `GET /v1/status/peers`: the voters' RPC addresses. With a cluster layer, from the Raft
/// configuration this server knows; without one the region is this one server, the leader.
pub async fn peers(State(ctx): State<ApiContext>) -> ApiResult<Reply> {
    if let Some(cluster) = &ctx.cluster {
        let config = cluster.raft_configuration(true).await?;
        let peers: Vec<String> = config
            .servers
            .into_iter()
            .filter(|s| s.voter)
            .map(|s| s.address)
            .collect();
        return Reply::json(&peers);
    }
    let peers: Vec<String> = ctx
        .server()?
        .consensus()
        .leader_address()
        .into_iter()
        .collect();
    Reply::json(&peers)
}

pub async fn self_info(State(ctx): State<ApiContext>) -> ApiResult<Reply> {
    let mut info = ctx.agent.self_info();
    // A client-only agent has no server figures to give (Nomad's client agents leave them
    // out too); its `client` part comes from `AgentInfo`.
    if let (Some(obj), Some(server)) = (info.as_object_mut(), &ctx.server) {
        let broker = server.broker().stats();
        let blocked = server.blocked_stats();
        let state = server.state();
        obj.insert(
            "stats".to_string(),
            serde_json::json!({
                "raft": server.consensus().stats(),
                "nomad": {
                    "leader": server.consensus().leader_address().is_some(),
                    "broker_ready": broker.total_ready,
                    "broker_total": broker.total_ready + broker.total_unacked + broker.total_blocked + broker.total_waiting,
                    "broker": broker,
                    "blocked_evals": blocked,
                    "state_index": state.latest_index(),
                    "known_nodes": state.node_count(),
                }
            }),
        );
    }
    Reply::json(&info)
}

/// 200 when the server has a leader and the client (if any) is healthy; 500 otherwise, with the
/// reason — the shape Nomad's health check tooling expects.
pub async fn health(State(ctx): State<ApiContext>) -> ApiResult<Response> {
    let mut body = serde_json::json!({});
    let mut ok = true;
    // A client-only agent reports its client only, as Nomad's do.
    if let Some(server) = &ctx.server {
        let server_ok = server.consensus().leader_address().is_some();
        body["server"] = serde_json::json!({
            "ok": server_ok,
            "message": if server_ok { "ok" } else { "no known leader" },
        });
        ok = server_ok;
    }
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

/// `GET /v1/regions`: the regions this agent knows (its own, until federation).
pub async fn regions(State(ctx): State<ApiContext>) -> ApiResult<Reply> {
    Reply::json(&[ctx.server()?.config().region.as_str()])
}

/// `GET /v1/agent/members`: the servers of the gossip pool.
pub async fn members(State(ctx): State<ApiContext>, _q: QueryOptions) -> ApiResult<Reply> {
    let cluster = ctx.cluster_endpoints()?;
    let (name, region, dc) = cluster.local_member();
    Reply::json(&serde_json::json!({
        "ServerName": name,
        "ServerRegion": region,
        "ServerDC": dc,
        "Members": cluster.members(),
    }))
}

/// `GET /v1/agent/servers`: the server addresses this agent's client uses.
pub async fn servers(State(ctx): State<ApiContext>, _q: QueryOptions) -> ApiResult<Reply> {
    Reply::json(&ctx.cluster_endpoints()?.servers())
}

/// `PUT/POST /v1/agent/servers?address=ip:port&address=…`: replaces that list.
pub async fn set_servers(
    State(ctx): State<ApiContext>,
    _w: WriteOptions,
    RawQuery(raw): RawQuery,
) -> ApiResult<Reply> {
    let addresses = non_empty(query_all(raw.as_deref(), "address")?);
    if addresses.is_empty() {
        return Err(ApiError::bad_request(
            "missing server address: give one or more ?address=ip:port",
        ));
    }
    ctx.cluster_endpoints()?.set_servers(addresses).await?;
    Reply::json(&serde_json::Value::Null)
}

/// `PUT/POST /v1/agent/join?address=…`: joins the servers there. As in Nomad, a failure to
/// join is reported in the answer's `error`, with `num_joined` 0.
pub async fn join(
    State(ctx): State<ApiContext>,
    _w: WriteOptions,
    RawQuery(raw): RawQuery,
) -> ApiResult<Reply> {
    let addresses = non_empty(query_all(raw.as_deref(), "address")?);
    if addresses.is_empty() {
        return Err(ApiError::bad_request(
            "missing address to join: give one or more ?address=ip:port",
        ));
    }
    let cluster = ctx.cluster_endpoints()?;
    let (joined, error) = match cluster.join(addresses).await {
        Ok(n) => (n, String::new()),
        Err(e) => (0, e.to_string()),
    };
    Reply::json(&serde_json::json!({ "num_joined": joined, "error": error }))
}

/// `PUT/POST /v1/agent/force-leave?node=NAME[&prune=true]`.
pub async fn force_leave(State(ctx): State<ApiContext>, w: WriteOptions) -> ApiResult<Reply> {
    let node = w.string("node").to_string();
    if node.is_empty() {
        return Err(ApiError::bad_request(
            "missing node to force leave: give ?node=NAME (a name from `noded server members`)",
        ));
    }
    let prune = w.flag("prune")?;
    ctx.cluster_endpoints()?.force_leave(node, prune).await?;
    Reply::json(&serde_json::Value::Null)
}

fn non_empty(values: Vec<String>) -> Vec<String> {
    values.into_iter().filter(|v| !v.is_empty()).collect()
}
