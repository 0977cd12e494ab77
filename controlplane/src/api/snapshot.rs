//! `GET/PUT /v1/operator/snapshot`: the operator's backup of the whole state, as a verified
//! archive ([`crate::state::archive`]).

use axum::body::Body as HttpBody;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ApiResult};
use super::extract::{QueryOptions, WriteOptions};
use super::reply::Reply;
use super::ApiContext;
use crate::state::archive::{read_archive, write_archive};
use crate::state::{State as ClusterState, Table};

/// Largest archive `PUT /v1/operator/snapshot` accepts. The whole state travels in one Raft
/// entry, so this is also the bound on that entry.
pub const MAX_SNAPSHOT_BYTES: usize = 256 * 1024 * 1024;

/// `GET /v1/operator/snapshot`: the archive of the newest state (`?index=` waits for it to
/// pass that index first).
pub async fn save(State(ctx): State<ApiContext>, q: QueryOptions) -> ApiResult<Response> {
    let (state, meta) = ctx.read(&q, &Table::ALL).await?;
    let term = match &ctx.cluster {
        Some(cluster) => cluster.current_term(),
        None => ctx.server()?.consensus().stats()["term"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0),
    };
    let bytes = write_archive(&state, term, crate::model::now_unix_nanos())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert("X-Nomad-Index", HeaderValue::from(meta.index));
    Ok(response)
}

/// `PUT /v1/operator/snapshot`: the archive in the body. Verified whole (magic, version,
/// length, checksum, contents) before anything changes; then every server replaces its state
/// through one Raft entry.
pub async fn restore(
    State(ctx): State<ApiContext>,
    _w: WriteOptions,
    body: HttpBody,
) -> ApiResult<Reply> {
    let bytes = axum::body::to_bytes(body, MAX_SNAPSHOT_BYTES)
        .await
        .map_err(|e| {
            ApiError::bad_request(format!(
                "reading the snapshot: {e} (at most {MAX_SNAPSHOT_BYTES} bytes are accepted)"
            ))
        })?;
    let archive = read_archive(&bytes).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // The state machine refuses a body that does not rebuild, but by then it is a Raft
    // entry: check here, so a bad one is never proposed.
    ClusterState::from_snapshot(archive.state.clone())
        .map_err(|e| ApiError::bad_request(format!("snapshot not restored: {e}")))?;
    let index = ctx.server()?.restore_snapshot(archive.state).await?;
    Reply::write(&serde_json::json!({ "Index": index }), index)
}
