//! The `/v1` HTTP API, in Nomad's shapes: PascalCase JSON, `X-Nomad-Index` and blocking queries
//! on reads, plain-text errors (400 for bad input, 404 for unknown ids, 500 only for the server's
//! own trouble — a panic in a handler is caught and answered 500).
//!
//! One pattern for every endpoint: the route table ([`routes`]) declares method, path, what the
//! caller must hold ([`Requires`]) and the handler; a handler takes [`QueryOptions`] (reads) or
//! [`WriteOptions`] (writes), a [`Body`] when it has one, and answers with a [`Reply`], which
//! sets Nomad's index, leader and next-page headers. Adding an endpoint is one route line and
//! one handler.
//!
//! The only layer that knows about HTTP and JSON-on-the-wire. Server endpoints call
//! [`crate::server::Server`]; endpoints a node answers (`/v1/client/...`: logs, stats) go through
//! the [`ClientEndpoints`] trait, which the `noded` crate implements — this crate never touches
//! a task's files.

mod agent;
mod allocs;
mod autopilot;
mod client;
mod cluster;
mod deployments;
mod error;
mod evals;
mod exec;
mod extract;
pub mod filter;
mod forward;
mod jobs;
mod node_pools;
mod nodes;
mod operator;
mod operator_raft;
mod periodic;
mod reply;
mod routes;
mod services;
mod snapshot;
mod system;
mod versions;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

pub use client::{
    AllocFileInfo, ClientError, FsStreamRequest, LogFrame, LogOrigin, LogStream, LogsRequest,
    STREAM_HEARTBEAT,
};
pub use cluster::{
    ClusterEndpoints, Member, PeerRef, RaftConfiguration, RaftServer, SerfStatus, ServerHealthFacts,
};
pub use error::{ApiError, ApiResult};
pub use exec::{ExecInput, ExecOutput, ExecRequest, ExecSession};
pub use extract::{
    parse_go_bool, Body, QueryOptions, RequestBody, WriteOptions, DEFAULT_WAIT, MAX_PER_PAGE,
    MAX_WAIT,
};
pub use forward::{
    answered_locally, serve_forwarded, ForwardedRequest, ForwardedResponse, ServerForwarder,
};
pub use reply::{QueryMeta, Reply};
pub use routes::{Access, NamespaceCapability, NodePoolCapability, Requires, Route};
pub use services::{
    hash_with, list_stubs, Choose, MAX_CHOOSE, MAX_CHOOSE_KEY_LEN, MAX_SERVICE_NAME_LEN,
};
pub use snapshot::MAX_SNAPSHOT_BYTES;

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

    /// A file of an allocation's directory as frames (`/v1/client/fs/stream`), resolved as
    /// the other fs endpoints resolve paths; while `follow`, appends are sent as they come, a
    /// truncation restarts at 0 ("file truncated") and a deletion ends it ("file deleted").
    fn fs_stream(
        &self,
        request: FsStreamRequest,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<LogFrame, ClientError>>, ClientError>>;

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

    /// Garbage-collects every terminal allocation on this node now (`/v1/client/gc`).
    fn gc_all(&self) -> BoxFuture<'_, Result<(), ClientError>>;

    /// Garbage-collects one allocation now (`/v1/client/allocation/:id/gc`): `BadRequest` when
    /// it is not terminal, `NotFound` when it is not on this node (or collected already).
    fn gc_alloc(&self, alloc_id: String) -> BoxFuture<'_, Result<(), ClientError>>;

    /// The latest result of each service check of an allocation on this node, by check id
    /// (`/v1/client/allocation/:id/checks`, Nomad's `AllocCheckStatuses`); `NotFound` when
    /// the allocation does not run here.
    fn alloc_checks(
        &self,
        alloc_id: String,
    ) -> BoxFuture<'_, Result<serde_json::Value, ClientError>>;
}

/// What `/v1/agent/self` reports about the agent around the API.
pub trait AgentInfo: Send + Sync + 'static {
    fn self_info(&self) -> serde_json::Value;
}

/// Everything a handler needs.
#[derive(Clone)]
pub struct ApiContext {
    /// This agent's server; `None` on a client-only agent, which answers its own endpoints
    /// (`/v1/client/…`, `/v1/agent/self`…) and hands every other request to a server through
    /// `forwarder`.
    pub server: Option<Arc<Server>>,
    /// The agent's region (requests naming another are refused until federation).
    pub region: String,
    /// How a client-only agent reaches a server.
    pub forwarder: Option<Arc<dyn ServerForwarder>>,
    pub client: Option<Arc<dyn ClientEndpoints>>,
    pub agent: Arc<dyn AgentInfo>,
    /// Membership, Raft peers and autopilot facts; `None` on an agent that runs no server
    /// (those endpoints then answer 501, as Nomad's do on a client).
    pub cluster: Option<Arc<dyn ClusterEndpoints>>,
}

impl std::fmt::Debug for ApiContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiContext")
            .field("client", &self.client.is_some())
            .field("cluster", &self.cluster.is_some())
            .finish_non_exhaustive()
    }
}

impl ApiContext {
    /// The node-side endpoints of this agent, or a 400 saying to ask the node instead.
    pub(crate) fn client_endpoints(&self) -> ApiResult<Arc<dyn ClientEndpoints>> {
        self.client.clone().ok_or_else(|| {
            ApiError::bad_request(
                "this agent runs no client; ask the agent on the node that runs the allocation",
            )
        })
    }

    /// The cluster layer of this agent, or a 501 saying this agent has none to ask.
    pub(crate) fn cluster_endpoints(&self) -> ApiResult<Arc<dyn ClusterEndpoints>> {
        self.cluster.clone().ok_or_else(|| {
            ApiError::not_implemented(
                "this agent has no cluster membership to report (it runs no server, or its server layer does not provide one); ask a server agent",
            )
        })
    }

    /// This agent's server, or a 500 (only reached on a client-only agent by a route the
    /// forwarding layer answers locally, which is a bug).
    pub(crate) fn server(&self) -> ApiResult<&Arc<Server>> {
        self.server.as_ref().ok_or_else(|| {
            ApiError::internal(
                "this agent runs no server and answered a server endpoint itself; this is a bug in noded",
            )
        })
    }

    /// A 404 unless the state knows the allocation. A client-only agent has no state to ask:
    /// its client answers "not found" for allocations it does not run.
    pub(crate) fn known_alloc(&self, alloc: &str) -> ApiResult<()> {
        let Some(server) = &self.server else {
            return Ok(());
        };
        if server.state().alloc(alloc).is_none() {
            return Err(ApiError::not_found(format!(
                "allocation {alloc:?} not found"
            )));
        }
        Ok(())
    }
}

/// The `/v1` router, built from the route table ([`routes`]): every route declares what it
/// requires.
pub fn router(ctx: ApiContext) -> Router {
    let (router, declared) = routes::table().into_parts();
    let forwarding = ctx.server.is_none();
    let router = router
        // Last of the route layers, so it wraps every route above it: one that reached the
        // router without a declaration is refused before its handler runs.
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(routes::Declared::new(&declared)),
            routes::only_declared,
        ))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_to_500,
        ));
    let router = if forwarding {
        // Outermost: a client-only agent hands what it cannot answer to a server before any
        // route (or its declaration check) sees it; the server checks it as its own.
        router.layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            forward::forward_unless_local,
        ))
    } else {
        router
    };
    router.with_state(ctx)
}

/// Every declared route: method, path and what it requires (for documentation, the route
/// walk in the tests, and the ACL matrix to come).
pub fn declared_routes() -> Vec<Route> {
    routes::table().into_parts().1
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

#[cfg(test)]
mod tests;
