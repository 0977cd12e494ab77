//! The `/v1` HTTP API, in Nomad's shapes: PascalCase JSON, `X-Nomad-Index` and blocking queries
//! on reads, plain-text errors (400 for bad input, 404 for unknown ids, 500 only for the server's
//! own trouble — a panic in a handler is caught and answered 500).
//!
//! The only layer that knows about HTTP and JSON-on-the-wire. Server endpoints call
//! [`crate::server::Server`]; endpoints a node answers (`/v1/client/...`: logs, stats) go through
//! the [`ClientEndpoints`] trait, which the `noded` crate implements — this crate never touches
//! a task's files.

mod agent;
mod allocs;
mod client;
mod error;
mod jobs;
mod nodes;
mod query;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::Serialize;

pub use client::{
    AllocFileInfo, ClientError, ExecInput, ExecOutput, ExecRequest, ExecSession, LogFrame,
    LogOrigin, LogStream, LogsRequest,
};
pub use error::{ApiError, ApiResult};
pub use query::QueryOptions;

use crate::server::Server;

/// Largest request body accepted (a job spec is at most 1 MiB of HCL; its JSON is larger).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// What the node daemon serves through the HTTP API.
pub trait ClientEndpoints: Send + Sync + 'static {
    /// A task's stdout or stderr, as frames (a file name, an offset and the bytes).
    fn logs(
        &self,
        request: LogsRequest,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<LogFrame, ClientError>>, ClientError>>;

    /// Resource usage of an allocation's tasks, in Nomad's `AllocResourceUsage` shape.
    fn alloc_stats(
        &self,
        alloc_id: String,
    ) -> BoxFuture<'_, Result<serde_json::Value, ClientError>>;

    /// `ls` of a path in an allocation's directory.
    fn fs_list(
        &self,
        alloc_id: String,
        path: String,
    ) -> BoxFuture<'_, Result<Vec<AllocFileInfo>, ClientError>>;

    /// `stat` of a path in an allocation's directory.
    fn fs_stat(
        &self,
        alloc_id: String,
        path: String,
    ) -> BoxFuture<'_, Result<AllocFileInfo, ClientError>>;

    /// Bytes of a file in an allocation's directory (`limit = 0`: to the end).
    fn fs_read(
        &self,
        alloc_id: String,
        path: String,
        offset: u64,
        limit: u64,
    ) -> BoxFuture<'_, Result<Vec<u8>, ClientError>>;

    /// Sends `signal` (a name like "SIGHUP") to one task, or to every running task.
    fn signal(
        &self,
        alloc_id: String,
        task: Option<String>,
        signal: String,
    ) -> BoxFuture<'_, Result<(), ClientError>>;

    /// Restarts one task, or every running task, outside the restart policy.
    fn restart(
        &self,
        alloc_id: String,
        task: Option<String>,
    ) -> BoxFuture<'_, Result<(), ClientError>>;

    /// Starts a command inside a running task (same namespaces, root, cgroup, user, seccomp).
    fn exec(&self, request: ExecRequest) -> BoxFuture<'_, Result<ExecSession, ClientError>>;

    /// Whether the client is healthy, and why not.
    fn health(&self) -> (bool, String);
}

/// What `/v1/agent/self` reports about the agent around the API.
pub trait AgentInfo: Send + Sync + 'static {
    fn self_info(&self) -> serde_json::Value;
}

/// Everything a handler needs.
#[derive(Clone)]
pub struct ApiContext {
    pub server: Arc<Server>,
    pub client: Option<Arc<dyn ClientEndpoints>>,
    pub agent: Arc<dyn AgentInfo>,
}

impl std::fmt::Debug for ApiContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiContext")
            .field("client", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

/// The `/v1` router.
pub fn router(ctx: ApiContext) -> Router {
    Router::new()
        .route(
            "/v1/jobs",
            get(jobs::list).put(jobs::register).post(jobs::register),
        )
        .route(
            "/v1/jobs/parse",
            axum::routing::post(jobs::parse).put(jobs::parse),
        )
        .route(
            "/v1/validate/job",
            axum::routing::post(jobs::validate).put(jobs::validate),
        )
        .route(
            "/v1/job/{id}",
            get(jobs::read)
                .put(jobs::register_one)
                .post(jobs::register_one)
                .delete(jobs::deregister),
        )
        .route("/v1/job/{id}/allocations", get(jobs::allocations))
        .route("/v1/job/{id}/evaluations", get(jobs::evaluations))
        .route("/v1/job/{id}/summary", get(jobs::summary))
        .route("/v1/job/{id}/versions", get(jobs::versions))
        .route("/v1/allocations", get(allocs::list))
        .route("/v1/allocation/{id}", get(allocs::read))
        .route("/v1/evaluations", get(allocs::list_evals))
        .route("/v1/evaluation/{id}", get(allocs::read_eval))
        .route(
            "/v1/evaluation/{id}/allocations",
            get(allocs::eval_allocations),
        )
        .route("/v1/nodes", get(nodes::list))
        .route("/v1/node/{id}", get(nodes::read))
        .route("/v1/node/{id}/allocations", get(nodes::allocations))
        .route("/v1/status/leader", get(agent::leader))
        .route("/v1/status/peers", get(agent::peers))
        .route("/v1/agent/self", get(agent::self_info))
        .route("/v1/agent/health", get(agent::health))
        .route(
            "/v1/operator/scheduler/configuration",
            get(agent::scheduler_config)
                .put(agent::set_scheduler_config)
                .post(agent::set_scheduler_config),
        )
        .route("/v1/client/fs/logs/{alloc}", get(client::logs))
        .route("/v1/client/fs/ls/{alloc}", get(client::fs_ls))
        .route("/v1/client/fs/stat/{alloc}", get(client::fs_stat))
        .route("/v1/client/fs/cat/{alloc}", get(client::fs_read))
        .route("/v1/client/fs/readat/{alloc}", get(client::fs_read))
        .route(
            "/v1/client/allocation/{alloc}/stats",
            get(client::alloc_stats),
        )
        .route(
            "/v1/client/allocation/{alloc}/signal",
            axum::routing::post(client::alloc_signal).put(client::alloc_signal),
        )
        .route(
            "/v1/client/allocation/{alloc}/restart",
            axum::routing::post(client::alloc_restart).put(client::alloc_restart),
        )
        .route(
            "/v1/client/allocation/{alloc}/exec",
            get(client::alloc_exec),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_to_500,
        ))
        .with_state(ctx)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}

fn panic_to_500(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".to_string());
    tracing::error!("http handler panicked: {detail}");
    ApiError::internal(format!(
        "internal error: the request handler panicked ({detail}); this is a bug in noded"
    ))
    .into_response()
}

/// A JSON answer with the blocking-query headers.
pub(crate) fn json_with_index<T: Serialize>(value: &T, index: u64, known_leader: bool) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut headers = query::index_headers(index, known_leader);
            headers.insert(
                "content-type",
                axum::http::HeaderValue::from_static("application/json"),
            );
            (StatusCode::OK, headers, Bytes::from(body)).into_response()
        }
        Err(e) => ApiError::internal(format!("encoding the answer as JSON: {e}")).into_response(),
    }
}

/// Reads a JSON body into `T`, with a 400 naming the line, column and field on failure.
pub(crate) fn decode_body<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> ApiResult<T> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            ApiError::bad_request(format!("{what}: {inner}"))
        } else {
            ApiError::bad_request(format!("{what}: field {path}: {inner}"))
        }
    })
}

#[cfg(test)]
mod tests;
