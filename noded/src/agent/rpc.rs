//! What a server answers on the fabric besides Raft: node daemons' RPC and the HTTP requests
//! client-only agents forward.
//!
//! One handler per agent ([`AgentService`]) dispatches on the fabric method:
//! - [`METHOD_RAFT`]: Raft traffic, servers of this region only ([`RaftService`]);
//! - [`METHOD_NODE`]: a node daemon's [`NodeRequest`] (register, heartbeat, its allocations,
//!   its reports), from `client.<region>` certificates — or from a server of this region
//!   forwarding a heartbeat to the leader, whose timers it resets;
//! - [`METHOD_HTTP`]: a `/v1` request a client-only agent (or a CLI certificate) could not
//!   answer itself, answered by this server's own router with all its checks.
//!
//! Bodies are JSON, except HTTP's, which carry a JSON head and the raw body
//! ([`encode_http`]).

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use controlplane::api::ForwardedRequest;
use controlplane::raft::RaftNode;
use controlplane::server::node_rpc::{NodeReply, NodeRequest};
use controlplane::server::{HeartbeatOutcome, Server, ServerError};
use federation::{ErrorCode, Fabric, Handler, PeerIdentity, RemoteError, Role};
use futures::future::BoxFuture;

use super::cluster::{resolve, RaftService, METHOD_RAFT};
use crate::rpc_wire::{decode_http, encode_http, METHOD_HTTP, METHOD_NODE};

/// How long a follower waits for the leader to take a heartbeat it forwards.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a server agent answers on the fabric.
#[derive(Debug, Clone)]
pub struct AgentService {
    inner: Arc<Inner>,
}

struct Inner {
    region: String,
    raft: Arc<RaftService>,
    server: OnceLock<Weak<Server>>,
    raft_node: OnceLock<Weak<RaftNode>>,
    router: OnceLock<Router>,
    fabric: OnceLock<Fabric>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentService")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl AgentService {
    pub fn new(region: &str, raft: Arc<RaftService>) -> AgentService {
        AgentService {
            inner: Arc::new(Inner {
                region: region.to_string(),
                raft,
                server: OnceLock::new(),
                raft_node: OnceLock::new(),
                router: OnceLock::new(),
                fabric: OnceLock::new(),
            }),
        }
    }

    /// Connects the parts that start after the fabric; until then their requests are answered
    /// "unavailable", which callers retry.
    pub fn attach_raft(&self, node: &Arc<RaftNode>, fabric: &Fabric) {
        let _ = self.inner.raft_node.set(Arc::downgrade(node));
        let _ = self.inner.fabric.set(fabric.clone());
    }

    /// The Raft part of the service, which `cluster::start_raft` connects to Raft.
    pub fn raft_service(&self) -> &RaftService {
        &self.inner.raft
    }

    pub fn attach_server(&self, server: &Arc<Server>, router: Router) {
        let _ = self.inner.server.set(Arc::downgrade(server));
        let _ = self.inner.router.set(router);
    }
}

impl Inner {
    fn server(&self) -> Result<Arc<Server>, RemoteError> {
        self.server.get().and_then(Weak::upgrade).ok_or_else(|| {
            RemoteError::new(
                ErrorCode::Unavailable,
                "this server is starting or stopping",
            )
        })
    }

    /// The region's servers' RPC addresses, the leader first.
    fn servers(&self) -> (String, Vec<String>) {
        let Some(node) = self.raft_node.get().and_then(Weak::upgrade) else {
            return (String::new(), Vec::new());
        };
        let leader = node.leader().map(|(_, addr)| addr).unwrap_or_default();
        let mut servers: Vec<String> = node
            .members()
            .into_iter()
            .filter(|(_, _, voter)| *voter)
            .map(|(_, server, _)| server.addr)
            .collect();
        servers.sort_by_key(|addr| *addr != leader);
        (leader, servers)
    }

    async fn handle_node(
        self: Arc<Self>,
        peer: PeerIdentity,
        body: Bytes,
    ) -> Result<Bytes, RemoteError> {
        let request: NodeRequest = serde_json::from_slice(&body).map_err(|e| {
            RemoteError::new(
                ErrorCode::BadRequest,
                format!("cannot read the node request: {e}; are the client and server the same noded version?"),
            )
        })?;
        let forwarded_by_server = peer.role == Role::Server;
        let allowed = match &request {
            // Only a heartbeat is forwarded between servers.
            NodeRequest::Heartbeat {
                forwarded: true, ..
            } => forwarded_by_server,
            _ => peer.role == Role::Client,
        };
        if !allowed || peer.region != self.region {
            let refused = RemoteError::new(
                ErrorCode::Refused,
                format!(
                    "{} may not send a node {} request to a server of region {:?}: a node needs a client certificate of this region (noded tls cert create -client -region {})",
                    peer.dns_name(),
                    request.kind(),
                    self.region,
                    self.region
                ),
            );
            tracing::warn!(peer = %peer.dns_name(), kind = request.kind(), "refused a node request: {refused}");
            return Err(refused);
        }
        let server = self.server()?;
        let reply = match request {
            NodeRequest::Register { node } => NodeReply::Registered {
                index: server.register_node(*node).await.map_err(remote_error)?,
            },
            NodeRequest::Heartbeat { node_id, forwarded } => {
                match server.node_heartbeat(&node_id).await.map_err(remote_error)? {
                    HeartbeatOutcome::Ttl(ttl) => {
                        let (leader, servers) = self.servers();
                        NodeReply::Heartbeat {
                            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
                            leader,
                            servers,
                        }
                    }
                    HeartbeatOutcome::NotLeader(Some(leader)) if !forwarded => {
                        return self.forward_heartbeat(&leader, node_id).await;
                    }
                    HeartbeatOutcome::NotLeader(leader) => {
                        return Err(RemoteError::new(
                            ErrorCode::Unavailable,
                            format!(
                                "this server is not the leader and cannot take the heartbeat (leader: {})",
                                leader.as_deref().unwrap_or("none known")
                            ),
                        ))
                    }
                }
            }
            NodeRequest::GetAllocs {
                node_id,
                min_index,
                wait_ms,
            } => {
                let (allocs, index) = server
                    .node_allocs(&node_id, min_index, Duration::from_millis(wait_ms))
                    .await;
                NodeReply::Allocs { allocs, index }
            }
            NodeRequest::UpdateAllocs { updates } => NodeReply::Updated {
                index: server.update_allocs(updates).await.map_err(remote_error)?,
            },
            NodeRequest::UpsertServices { services } => NodeReply::Updated {
                index: server
                    .upsert_services(services)
                    .await
                    .map_err(remote_error)?,
            },
            NodeRequest::DeleteServices { ids, alloc_ids } => NodeReply::Updated {
                index: server
                    .delete_services(ids, alloc_ids)
                    .await
                    .map_err(remote_error)?,
            },
            NodeRequest::GetServices { min_index, wait_ms } => {
                let (services, index) = server
                    .watch_services(min_index, Duration::from_millis(wait_ms))
                    .await;
                NodeReply::Services { services, index }
            }
            NodeRequest::DrainSelf {
                node_id,
                drain_strategy,
            } => NodeReply::Updated {
                index: server
                    .update_drain(&node_id, drain_strategy, false, drain_on_shutdown_meta())
                    .await
                    .map_err(remote_error)?
                    .index,
            },
        };
        serde_json::to_vec(&reply).map(Bytes::from).map_err(|e| {
            RemoteError::new(
                ErrorCode::Internal,
                format!("cannot encode the node reply: {e}"),
            )
        })
    }

    /// A follower hands a heartbeat to the leader (one hop: the leader does not forward it
    /// again) and passes its answer back.
    async fn forward_heartbeat(&self, leader: &str, node_id: String) -> Result<Bytes, RemoteError> {
        let fabric = self.fabric.get().cloned().ok_or_else(|| {
            RemoteError::new(
                ErrorCode::Unavailable,
                "this server's fabric is not running",
            )
        })?;
        let addr = resolve(leader)
            .await
            .map_err(|e| RemoteError::new(ErrorCode::Unavailable, e))?;
        let body = serde_json::to_vec(&NodeRequest::Heartbeat {
            node_id,
            forwarded: true,
        })
        .map_err(|e| RemoteError::new(ErrorCode::Internal, e.to_string()))?;
        fabric
            .call(addr, METHOD_NODE, Bytes::from(body), FORWARD_TIMEOUT)
            .await
            .map_err(|e| match e {
                federation::CallError::Remote(remote) => remote,
                other => RemoteError::new(
                    ErrorCode::Unavailable,
                    format!("forwarding the heartbeat to the leader at {leader}: {other}"),
                ),
            })
    }

    async fn handle_http(
        self: Arc<Self>,
        peer: PeerIdentity,
        body: Bytes,
    ) -> Result<Bytes, RemoteError> {
        if !matches!(peer.role, Role::Client | Role::Cli) || peer.region != self.region {
            let refused = RemoteError::new(
                ErrorCode::Refused,
                format!(
                    "{} may not forward HTTP requests to a server of region {:?}",
                    peer.dns_name(),
                    self.region
                ),
            );
            tracing::warn!(peer = %peer.dns_name(), "refused a forwarded request: {refused}");
            return Err(refused);
        }
        let router = self.router.get().cloned().ok_or_else(|| {
            RemoteError::new(
                ErrorCode::Unavailable,
                "this server's API is not running yet",
            )
        })?;
        let request = decode_http_request(body)?;
        let answer = controlplane::api::serve_forwarded(router, request).await;
        encode_http(&answer, answer.body.clone())
    }
}

impl Handler for AgentService {
    fn handle(
        &self,
        peer: PeerIdentity,
        method: u16,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, RemoteError>> {
        match method {
            METHOD_RAFT => self.inner.raft.handle(peer, method, body),
            METHOD_NODE | METHOD_HTTP => {
                let this = self.inner.clone();
                Box::pin(async move {
                    if method == METHOD_NODE {
                        this.handle_node(peer, body).await
                    } else {
                        this.handle_http(peer, body).await
                    }
                })
            }
            other => Box::pin(async move {
                Err(RemoteError::new(
                    ErrorCode::BadRequest,
                    format!(
                        "unknown method {other}: servers answer {METHOD_RAFT} (raft), {METHOD_NODE} (node) and {METHOD_HTTP} (http)"
                    ),
                ))
            }),
        }
    }
}

/// What a node's own drain says of itself in `last_drain.meta`.
pub fn drain_on_shutdown_meta() -> std::collections::BTreeMap<String, String> {
    [(
        "message".to_string(),
        "drain_on_shutdown: the node daemon is stopping".to_string(),
    )]
    .into()
}

fn remote_error(e: ServerError) -> RemoteError {
    match e {
        // The node RPC has no code for a policy refusal; none of its calls meets one today.
        ServerError::BadRequest(m) | ServerError::Forbidden(m) => {
            RemoteError::new(ErrorCode::BadRequest, m)
        }
        ServerError::NotFound(m) => RemoteError::new(ErrorCode::NotFound, m),
        ServerError::NoLeader(m) => RemoteError::new(ErrorCode::Unavailable, m),
        ServerError::Internal(m) => RemoteError::new(ErrorCode::Internal, m),
    }
}

fn decode_http_request(bytes: Bytes) -> Result<ForwardedRequest, RemoteError> {
    let (mut head, body): (ForwardedRequest, Bytes) =
        decode_http(bytes).map_err(|e| RemoteError::new(ErrorCode::BadRequest, e))?;
    head.body = body;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_request_round_trips_with_its_body_untouched() {
        let request = ForwardedRequest {
            method: "PUT".into(),
            uri: "/v1/jobs?region=global".into(),
            headers: vec![("x-nomad-token".into(), "secret".into())],
            body: Bytes::from_static(b"{\"Job\":{}}\x00\xff"),
        };
        let bytes = encode_http(&request, request.body.clone()).unwrap();
        let back = decode_http_request(bytes).unwrap();
        assert_eq!(back, request);
    }

    #[test]
    fn damaged_forwarded_messages_are_refused_not_panicked_on() {
        assert!(crate::rpc_wire::decode_http_response(Bytes::from_static(b"\x00\x00")).is_err());
        assert!(
            crate::rpc_wire::decode_http_response(Bytes::from_static(b"\x00\x00\x00\x09{}"))
                .is_err()
        );
        assert!(
            crate::rpc_wire::decode_http_response(Bytes::from_static(b"\x00\x00\x00\x02{x"))
                .is_err()
        );
        assert!(
            crate::rpc_wire::decode_http_response(Bytes::from_static(b"\xff\xff\xff\xff")).is_err()
        );
    }
}
