//! `/v1/operator/raft/*`: the Raft configuration, removing a peer, handing leadership over.

use axum::extract::{RawQuery, State};

use super::cluster::PeerRef;
use super::error::{ApiError, ApiResult};
use super::extract::{query_all, QueryOptions, WriteOptions};
use super::reply::Reply;
use super::ApiContext;

/// `GET /v1/operator/raft/configuration[?stale]`.
pub async fn configuration(State(ctx): State<ApiContext>, q: QueryOptions) -> ApiResult<Reply> {
    let config = ctx.cluster_endpoints()?.raft_configuration(q.stale).await?;
    Reply::json(&config)
}

/// `DELETE /v1/operator/raft/peer?id=…|address=…`.
pub async fn remove_peer(
    State(ctx): State<ApiContext>,
    _w: WriteOptions,
    RawQuery(raw): RawQuery,
) -> ApiResult<Reply> {
    let peer = one_peer(
        raw.as_deref(),
        "Must specify the peer's ID or address to remove",
    )?;
    ctx.cluster_endpoints()?.remove_peer(peer).await?;
    Reply::json(&serde_json::Value::Null)
}

/// `PUT/POST /v1/operator/raft/transfer-leadership?id=…|address=…`: answers Nomad's
/// `LeadershipTransferResponse`.
pub async fn transfer_leadership(
    State(ctx): State<ApiContext>,
    _w: WriteOptions,
    RawQuery(raw): RawQuery,
) -> ApiResult<Reply> {
    let peer = one_peer(raw.as_deref(), "must specify id or address")?;
    let to = ctx
        .cluster_endpoints()?
        .transfer_leadership(Some(peer.clone()))
        .await?;
    let (id, address) = match &peer {
        PeerRef::Id(id) => (id.clone(), to.clone()),
        PeerRef::Address(a) => (String::new(), a.clone()),
    };
    Reply::json(&serde_json::json!({
        "To": { "ID": id, "Address": address },
        "Noop": false,
        "Err": null,
    }))
}

/// Exactly one of `?id=` and `?address=`, once and not empty, with Nomad's messages.
fn one_peer(raw: Option<&str>, missing: &str) -> ApiResult<PeerRef> {
    let ids = query_all(raw, "id")?;
    let addresses = query_all(raw, "address")?;
    match (ids.as_slice(), addresses.as_slice()) {
        ([], []) => Err(ApiError::bad_request(missing)),
        ([_, ..], [_, ..]) => Err(ApiError::bad_request(
            "must specify either id or address, not both",
        )),
        ([id], []) if id.is_empty() => Err(ApiError::bad_request("id must be non-empty")),
        ([id], []) => Ok(PeerRef::Id(id.clone())),
        ([], [a]) if a.is_empty() => Err(ApiError::bad_request("address must be non-empty")),
        ([], [a]) => Ok(PeerRef::Address(a.clone())),
        (_, []) => Err(ApiError::bad_request("must specify only one id")),
        ([], _) => Err(ApiError::bad_request("must specify only one address")),
    }
}
