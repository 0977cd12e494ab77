//! A client-only agent's way to the servers: [`RemoteServers`] speaks the node RPC
//! (`NodeRequest` over fabric method `METHOD_NODE`) and forwards HTTP requests
//! (`METHOD_HTTP`) to whichever server of the region answers, with the agent's
//! `client.<region>` certificate.
//!
//! Servers are the configured ones (`client.servers`, `server_join.retry_join`) and those a
//! heartbeat reply names (the region's voters, leader first). A call goes to the server that
//! answered last; when that one cannot be reached or says "not now", the next is tried, each
//! at most once per call. A server's refusal or "bad request" is an answer, not a reason to
//! try another.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use controlplane::api::{ForwardedRequest, ForwardedResponse, ServerForwarder};
use controlplane::model::{AllocClientUpdate, Node, ServiceRegistration};
use controlplane::server::node_rpc::{NodeReply, NodeRequest};
use federation::{CallError, ErrorCode, Fabric};
use futures::future::BoxFuture;

use super::{HeartbeatError, NodeAllocs, ServerRpc, ServiceCatalog};
use crate::agent::cluster::resolve;
use crate::rpc_wire::{decode_http_response, encode_http, METHOD_HTTP, METHOD_NODE};

/// A register, heartbeat or report not answered within this is tried on the next server.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A blocking query's call may take this much longer than the wait it asks for.
const BLOCKING_SLACK: Duration = Duration::from_secs(30);
/// A forwarded HTTP request may be a blocking query of up to `MAX_WAIT` (plus jitter).
const HTTP_TIMEOUT: Duration = Duration::from_secs(11 * 60);
/// Servers learned from heartbeats, at most (a region has 3 or 5; this is a bound).
const MAX_KNOWN_SERVERS: usize = 16;

/// The servers of this client's region, reached over the fabric.
pub struct RemoteServers {
    fabric: Fabric,
    configured: Vec<String>,
    learned: Mutex<Vec<String>>,
    /// Index (into [`RemoteServers::candidates`]) of the server that answered last.
    preferred: AtomicUsize,
}

impl std::fmt::Debug for RemoteServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteServers")
            .field("configured", &self.configured)
            .finish_non_exhaustive()
    }
}

/// Why a call reached no server that answered it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// A server answered with an error (refused, bad request, not found, internal).
    #[error("server {server}: {error}")]
    Answered {
        server: String,
        error: federation::RemoteError,
    },
    /// No server could be reached or would answer now.
    #[error("no server answered ({tried}): {last}")]
    Unreachable { tried: String, last: String },
}

impl RemoteServers {
    /// `configured`: addresses as written (`host`, `host:port`; Nomad's rpc port when none).
    pub fn new(fabric: Fabric, configured: Vec<String>) -> RemoteServers {
        RemoteServers {
            fabric,
            configured,
            learned: Mutex::new(Vec::new()),
            preferred: AtomicUsize::new(0),
        }
    }

    /// Learned servers first (they are the region's voters as the leader sees them), then the
    /// configured ones not among them.
    fn candidates(&self) -> Vec<String> {
        let mut out: Vec<String> = self.learned.lock().map(|l| l.clone()).unwrap_or_default();
        for c in &self.configured {
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
        out
    }

    /// The servers a heartbeat named become the first to try, the leader first.
    fn learn(&self, servers: Vec<String>) {
        if servers.is_empty() {
            return;
        }
        if let Ok(mut learned) = self.learned.lock() {
            if *learned != servers {
                tracing::info!(?servers, "servers of the region");
                *learned = servers.into_iter().take(MAX_KNOWN_SERVERS).collect();
                self.preferred.store(0, Ordering::Relaxed);
            }
        }
    }

    /// One call, to the preferred server and then each other once.
    async fn call(
        &self,
        method: u16,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RemoteError> {
        let candidates = self.candidates();
        if candidates.is_empty() {
            return Err(RemoteError::Unreachable {
                tried: "none".into(),
                last: "no servers are configured (client.servers or client.server_join.retry_join)"
                    .into(),
            });
        }
        let start = self.preferred.load(Ordering::Relaxed) % candidates.len();
        let mut last = String::new();
        for step in 0..candidates.len() {
            let i = (start + step) % candidates.len();
            let server = &candidates[i];
            let addr = match resolve(server).await {
                Ok(a) => a,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match self.fabric.call(addr, method, body.clone(), timeout).await {
                Ok(reply) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(reply);
                }
                Err(CallError::Remote(error)) if error.code != ErrorCode::Unavailable => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Err(RemoteError::Answered {
                        server: server.clone(),
                        error,
                    });
                }
                Err(e) => last = format!("{server}: {e}"),
            }
        }
        Err(RemoteError::Unreachable {
            tried: candidates.join(", "),
            last,
        })
    }

    async fn node_call(
        &self,
        request: NodeRequest,
        timeout: Duration,
    ) -> Result<NodeReply, RemoteError> {
        let kind = request.kind();
        let body = serde_json::to_vec(&request).map_err(|e| RemoteError::Unreachable {
            tried: "none".into(),
            last: format!("cannot encode a node {kind} request: {e}"),
        })?;
        let reply = self.call(METHOD_NODE, Bytes::from(body), timeout).await?;
        serde_json::from_slice(&reply).map_err(|e| RemoteError::Unreachable {
            tried: "a server".into(),
            last: format!("the answer to a node {kind} request cannot be read ({e}); are the client and server the same noded version?"),
        })
    }
}

fn unexpected(kind: &str, reply: &NodeReply) -> String {
    format!("a server answered a node {kind} request with {reply:?}")
}

impl ServerRpc for RemoteServers {
    fn register_node(&self, node: Node) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(async move {
            match self
                .node_call(
                    NodeRequest::Register {
                        node: Box::new(node),
                    },
                    CALL_TIMEOUT,
                )
                .await
                .map_err(|e| e.to_string())?
            {
                NodeReply::Registered { index } => Ok(index),
                other => Err(unexpected("register", &other)),
            }
        })
    }

    fn update_allocs(&self, updates: Vec<AllocClientUpdate>) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(async move {
            match self
                .node_call(NodeRequest::UpdateAllocs { updates }, CALL_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?
            {
                NodeReply::Updated { index } => Ok(index),
                other => Err(unexpected("update-allocs", &other)),
            }
        })
    }

    fn node_allocs(
        &self,
        node_id: String,
        min_index: u64,
        wait: Duration,
    ) -> BoxFuture<'_, Result<NodeAllocs, String>> {
        Box::pin(async move {
            let request = NodeRequest::GetAllocs {
                node_id,
                min_index,
                wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            };
            match self
                .node_call(request, wait + BLOCKING_SLACK)
                .await
                .map_err(|e| e.to_string())?
            {
                NodeReply::Allocs { allocs, index } => Ok((allocs, index)),
                other => Err(unexpected("get-allocs", &other)),
            }
        })
    }

    fn heartbeat(&self, node_id: String) -> BoxFuture<'_, Result<Duration, HeartbeatError>> {
        Box::pin(async move {
            let request = NodeRequest::Heartbeat {
                node_id,
                forwarded: false,
            };
            match self.node_call(request, CALL_TIMEOUT).await {
                Ok(NodeReply::Heartbeat {
                    ttl_ms, servers, ..
                }) => {
                    self.learn(servers);
                    Ok(Duration::from_millis(ttl_ms))
                }
                Ok(other) => Err(HeartbeatError::Failed(unexpected("heartbeat", &other))),
                Err(RemoteError::Answered { error, .. }) if error.code == ErrorCode::NotFound => {
                    Err(HeartbeatError::UnknownNode(error.message))
                }
                Err(e) => Err(HeartbeatError::Failed(e.to_string())),
            }
        })
    }

    fn drain_self(
        &self,
        node_id: String,
        drain_strategy: Option<controlplane::model::DrainStrategy>,
    ) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(self.drain(node_id, drain_strategy))
    }

    fn upsert_services(
        &self,
        services: Vec<ServiceRegistration>,
    ) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(self.write(NodeRequest::UpsertServices { services }))
    }

    fn delete_services(
        &self,
        ids: Vec<String>,
        alloc_ids: Vec<String>,
    ) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(self.write(NodeRequest::DeleteServices { ids, alloc_ids }))
    }

    fn watch_services(
        &self,
        min_index: u64,
        wait: Duration,
    ) -> BoxFuture<'_, Result<ServiceCatalog, String>> {
        Box::pin(async move {
            let request = NodeRequest::GetServices {
                min_index,
                wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            };
            match self
                .node_call(request, wait + BLOCKING_SLACK)
                .await
                .map_err(|e| e.to_string())?
            {
                NodeReply::Services { services, index } => Ok((services, index)),
                other => Err(unexpected("get-services", &other)),
            }
        })
    }
}

impl RemoteServers {
    /// A write answered `Updated` with the index it was applied at.
    async fn write(&self, request: NodeRequest) -> Result<u64, String> {
        let kind = request.kind();
        match self
            .node_call(request, CALL_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?
        {
            NodeReply::Updated { index } => Ok(index),
            other => Err(unexpected(kind, &other)),
        }
    }

    async fn drain(
        &self,
        node_id: String,
        drain_strategy: Option<controlplane::model::DrainStrategy>,
    ) -> Result<u64, String> {
        self.write(NodeRequest::DrainSelf {
            node_id,
            drain_strategy,
        })
        .await
    }
}

impl ServerForwarder for RemoteServers {
    fn forward(
        &self,
        request: ForwardedRequest,
    ) -> BoxFuture<'_, Result<ForwardedResponse, String>> {
        Box::pin(async move {
            let body = encode_http(&request, request.body.clone()).map_err(|e| e.to_string())?;
            match self.call(METHOD_HTTP, body, HTTP_TIMEOUT).await {
                Ok(reply) => decode_http_response(reply),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

/// Shared so the agent can hand the same connection to the client and to its HTTP API.
pub type SharedRemote = Arc<RemoteServers>;
