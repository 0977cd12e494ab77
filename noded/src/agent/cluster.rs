//! The server's side of a multi-server region: Raft traffic over the QUIC fabric.
//!
//! [`FabricTransport`] is the [`RaftTransport`] of a real region: every server-to-server
//! message (Raft's own, forwarded writes, read indexes, introductions, joins) is one
//! request/response call of method [`METHOD_RAFT`] on the fabric, its body the message in
//! JSON. [`RaftService`] is the other end: it admits only servers of this region (a client
//! certificate, or a server of another region, is refused and logged on both sides) and hands
//! the message to the local [`RaftNode`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use controlplane::api::{
    ClusterEndpoints, Member, PeerRef, RaftConfiguration, RaftServer, SerfStatus, ServerHealthFacts,
};
use controlplane::raft::{
    JoinSettings, ProposeError, RaftConfig, RaftNode, RaftReply, RaftRequest, RaftTransport,
    ServerNode, TransportError,
};
use controlplane::server::ServerError;
use federation::{
    CallError, ErrorCode, Fabric, FabricConfig, Handler, PeerIdentity, RemoteError, Role,
    TlsMaterial,
};
use futures::future::BoxFuture;

use super::AgentConfig;

/// The fabric method that carries Raft messages.
pub const METHOD_RAFT: u16 = 1;
/// The port of a `retry_join` address that names none (Nomad's rpc port).
pub const DEFAULT_RPC_PORT: u16 = 4647;

/// Sends Raft messages to other servers over the fabric.
#[derive(Clone)]
pub struct FabricTransport {
    fabric: Fabric,
}

impl std::fmt::Debug for FabricTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FabricTransport")
            .field("local", &self.fabric.local_addr())
            .finish()
    }
}

impl FabricTransport {
    pub fn new(fabric: Fabric) -> FabricTransport {
        FabricTransport { fabric }
    }
}

impl RaftTransport for FabricTransport {
    fn send(
        &self,
        target: u64,
        address: &str,
        request: RaftRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<RaftReply, TransportError>> {
        let fabric = self.fabric.clone();
        let address = address.to_string();
        Box::pin(async move {
            let addr = resolve(&address)
                .await
                .map_err(TransportError::Unreachable)?;
            let body = serde_json::to_vec(&request).map_err(|e| {
                TransportError::Network(format!(
                    "cannot encode a raft {} request for {address}: {e}",
                    request.kind()
                ))
            })?;
            let reply = fabric
                .call(addr, METHOD_RAFT, Bytes::from(body), timeout)
                .await
                .map_err(|e| transport_error(&address, target, timeout, e))?;
            serde_json::from_slice(&reply).map_err(|e| {
                TransportError::Network(format!(
                    "server {target} at {address} answered a raft {} request with a reply \
                     this server cannot read ({e}); are both servers the same noded version?",
                    request.kind()
                ))
            })
        })
    }
}

/// What a failed call means to Raft: `Unreachable` only when nothing was delivered.
fn transport_error(address: &str, target: u64, timeout: Duration, e: CallError) -> TransportError {
    match e {
        CallError::Connect(reason) => TransportError::Unreachable(format!(
            "cannot connect to server {target} at {address}: {reason}"
        )),
        CallError::Timeout { .. } => TransportError::Timeout {
            address: address.to_string(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        },
        CallError::Remote(remote)
            if matches!(remote.code, ErrorCode::Refused | ErrorCode::Unavailable) =>
        {
            TransportError::Unreachable(format!("server at {address}: {remote}"))
        }
        other => TransportError::Network(format!("server at {address}: {other}")),
    }
}

/// `host:port`, `ip:port`, `host` or `ip` (Nomad's rpc port then) to one socket address.
pub async fn resolve(address: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = address.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_RPC_PORT));
    }
    let with_port = if address
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        address.to_string()
    } else {
        format!("{address}:{DEFAULT_RPC_PORT}")
    };
    let mut found = tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| format!("cannot resolve server address {address:?}: {e}"))?;
    found
        .next()
        .ok_or_else(|| format!("server address {address:?} resolves to no address"))
}

/// Receives Raft messages from other servers of this region.
#[derive(Debug)]
pub struct RaftService {
    region: String,
    node: OnceLock<Weak<RaftNode>>,
}

impl RaftService {
    pub fn new(region: impl Into<String>) -> Arc<RaftService> {
        Arc::new(RaftService {
            region: region.into(),
            node: OnceLock::new(),
        })
    }

    /// Connects the service to the node once it runs; messages before are answered
    /// "unavailable", which the sender treats as not delivered.
    pub fn attach(&self, node: &Arc<RaftNode>) {
        let _ = self.node.set(Arc::downgrade(node));
    }
}

impl Handler for RaftService {
    fn handle(
        &self,
        peer: PeerIdentity,
        method: u16,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, RemoteError>> {
        let admitted = peer.require_for(Role::Server, &self.region, "take part in raft");
        let node = self.node.get().and_then(Weak::upgrade);
        Box::pin(async move {
            if let Err(refused) = admitted {
                tracing::warn!(peer = %peer.dns_name(), "refused a raft message: {refused}");
                return Err(refused);
            }
            if method != METHOD_RAFT {
                return Err(RemoteError::new(
                    ErrorCode::BadRequest,
                    format!("unknown method {method}: servers answer method {METHOD_RAFT} (raft)"),
                ));
            }
            let Some(node) = node else {
                return Err(RemoteError::new(
                    ErrorCode::Unavailable,
                    "this server's raft is not running (starting or stopping)",
                ));
            };
            let request: RaftRequest = serde_json::from_slice(&body).map_err(|e| {
                RemoteError::new(
                    ErrorCode::BadRequest,
                    format!("cannot read the raft message: {e}; are both servers the same noded version?"),
                )
            })?;
            let reply = node.handle(request).await;
            serde_json::to_vec(&reply).map(Bytes::from).map_err(|e| {
                RemoteError::new(
                    ErrorCode::Internal,
                    format!("cannot encode the raft reply: {e}"),
                )
            })
        })
    }
}

/// Raft timings at `raft_multiplier = 1`: a heartbeat every 50 ms, elections after 250–450
/// ms of silence. openraft's followers refuse votes while the old leader's lease (the longest
/// election timeout) runs, so the first candidate after a leader's death is refused and a
/// new leader usually wins the second or third round: about two to three election timeouts,
/// which these keep under the failover goal of 1.5 s. `raft_multiplier` scales all three for
/// slow or loaded machines, as Nomad's does.
const BASE_HEARTBEAT_MS: u64 = 50;
const BASE_ELECTION_MIN_MS: u64 = 250;
const BASE_ELECTION_MAX_MS: u64 = 450;
/// A member that has not answered for this long is reported `failed`.
const MEMBER_FAILED_AFTER: Duration = Duration::from_secs(5);

/// The fabric's bounds for a server: keep-alives every second, so that a peer that died
/// without closing its connection is noticed (and re-dialled when it is back) within seconds.
fn server_limits() -> federation::Limits {
    federation::Limits {
        keep_alive: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(5),
        ..federation::Limits::default()
    }
}

/// A running server's Raft and the fabric it talks over.
#[derive(Debug)]
pub struct ServerRaft {
    pub raft: Arc<RaftNode>,
    pub fabric: Fabric,
}

/// Starts this server's side of the region: its certificate (generated for `-dev`, read
/// from `tls { … }` otherwise), the fabric on the rpc port, and Raft over it.
///
/// `handler` answers the fabric (raft traffic included: it hands that to `raft_service`,
/// which is connected to Raft here once it runs).
pub async fn start_raft(
    config: &AgentConfig,
    store: Arc<controlplane::state::StateStore>,
    handler: Arc<dyn Handler>,
    raft_service: &RaftService,
) -> anyhow::Result<ServerRaft> {
    let node_id = controlplane::raft::node_id::load_or_create(&config.data_dir)?;
    let advertise = config.advertise_rpc_addr();
    let tls = tls_material(config, advertise)?;
    let bind: SocketAddr = format!("{}:{}", config.bind_addr, config.rpc_port)
        .parse()
        .with_context(|| {
            format!(
                "bind address {:?} with rpc port {}",
                config.bind_addr, config.rpc_port
            )
        })?;
    let fabric = Fabric::bind(
        FabricConfig {
            bind,
            region: config.region.clone(),
            role: Role::Server,
            tls,
            limits: server_limits(),
        },
        Some(handler),
    )
    .await
    .with_context(|| format!("starting the rpc fabric on {bind} (udp)"))?;
    tracing::info!(%bind, %advertise, node_id, "rpc fabric listening (QUIC, mutual TLS)");

    let multiplier = u64::from(config.server.raft_multiplier.max(1));
    let mut raft_config = RaftConfig::new(&config.data_dir, node_id, advertise.to_string());
    raft_config.name = config.name.clone();
    raft_config.region = config.region.clone();
    raft_config.snapshot_every = config.server.raft_snapshot_threshold;
    raft_config.snapshot_log_lag = config.server.raft_trailing_logs;
    raft_config.heartbeat_interval_ms = BASE_HEARTBEAT_MS * multiplier;
    raft_config.election_timeout_min_ms = BASE_ELECTION_MIN_MS * multiplier;
    raft_config.election_timeout_max_ms = BASE_ELECTION_MAX_MS * multiplier;
    raft_config.join = JoinSettings {
        // A server that is told to expect nobody (0: join an existing region only) still
        // needs someone to find: retry_join says who (checked by the config).
        bootstrap_expect: if config.server.bootstrap_expect == 0 {
            u32::MAX
        } else {
            config.server.bootstrap_expect
        },
        retry_join: config.server.retry_join.clone(),
        retry_interval: config.server.retry_interval,
        retry_max: config.server.retry_max,
    };
    let transport = Arc::new(FabricTransport::new(fabric.clone()));
    let raft = Arc::new(
        RaftNode::start_with_transport(raft_config, store, transport)
            .await
            .context("starting raft")?,
    );
    raft_service.attach(&raft);
    Ok(ServerRaft { raft, fabric })
}

/// A client-only agent's fabric endpoint: it only dials servers, with the agent's
/// `client.<region>` certificate (from `tls { … }`), and answers no one.
pub async fn start_client_fabric(config: &AgentConfig) -> anyhow::Result<Fabric> {
    let (Some(ca), Some(cert), Some(key)) = (
        config.tls.ca_file.as_ref(),
        config.tls.cert_file.as_ref(),
        config.tls.key_file.as_ref(),
    ) else {
        anyhow::bail!(
            "this client has no tls certificate: run `noded tls cert create -client -region {}` \
             with the cluster CA, then set tls {{ rpc = true, ca_file, cert_file, key_file }} in \
             the agent config",
            config.region
        );
    };
    let tls = TlsMaterial::load(ca, cert, key)?;
    let identity = tls.identity()?;
    if identity.role != Role::Client || identity.region != config.region {
        anyhow::bail!(
            "the certificate {} is for {}, not a client of region {:?}: make one with `noded tls \
             cert create -client -region {}`",
            cert.display(),
            identity.dns_name(),
            config.region,
            config.region
        );
    }
    let bind: SocketAddr = format!("{}:0", config.bind_addr)
        .parse()
        .with_context(|| format!("bind address {:?}", config.bind_addr))?;
    let fabric = Fabric::bind(
        FabricConfig {
            bind,
            region: config.region.clone(),
            role: Role::Client,
            tls,
            limits: server_limits(),
        },
        None,
    )
    .await
    .with_context(|| format!("starting the rpc fabric on {bind} (udp)"))?;
    tracing::info!(local = %fabric.local_addr(), servers = ?config.client_servers, "client fabric ready (QUIC, mutual TLS)");
    Ok(fabric)
}

/// The server's certificate: from `tls { ca_file, cert_file, key_file }`, or for `-dev` a
/// CA and server certificate made now and kept in the (temporary) data dir.
fn tls_material(config: &AgentConfig, advertise: SocketAddr) -> anyhow::Result<TlsMaterial> {
    let files = (
        config.tls.ca_file.as_ref(),
        config.tls.cert_file.as_ref(),
        config.tls.key_file.as_ref(),
    );
    if let (Some(ca), Some(cert), Some(key)) = files {
        return Ok(TlsMaterial::load(ca, cert, key)?);
    }
    if !config.dev {
        anyhow::bail!(
            "this server has no tls certificate: run `noded tls ca create` and `noded tls cert \
             create -server -region {}`, then set tls {{ rpc = true, ca_file, cert_file, \
             key_file }} in the agent config",
            config.region
        );
    }
    let ca = federation::pki::create_ca("noded dev agent CA", 1)?;
    let cert =
        federation::pki::issue(&ca, Role::Server, &config.region, &[], &[advertise.ip()], 1)?;
    let dir = config.data_dir.join("tls");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in [
        ("noded-agent-ca.pem", &ca.cert_pem),
        (
            &format!("{}-server-noded.pem", config.region),
            &cert.cert_pem,
        ),
    ] {
        std::fs::write(dir.join(name), text)
            .with_context(|| format!("writing {}", dir.join(name).display()))?;
    }
    Ok(TlsMaterial {
        ca_pem: ca.cert_pem,
        cert_pem: cert.cert_pem,
        key_pem: cert.key_pem,
    })
}

/// What the HTTP API asks of the cluster (`/v1/agent/members`, `/v1/operator/raft/*`,
/// autopilot health), answered from the Raft node.
pub struct ClusterApi {
    raft: Arc<RaftNode>,
    name: String,
    region: String,
    datacenter: String,
    serf_port: u16,
    bootstrap_expect: u32,
    client_servers: Mutex<Vec<String>>,
}

impl std::fmt::Debug for ClusterApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterApi")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ClusterApi {
    pub fn new(config: &AgentConfig, raft: Arc<RaftNode>) -> ClusterApi {
        ClusterApi {
            raft,
            name: config.name.clone(),
            region: config.region.clone(),
            datacenter: config.datacenter.clone(),
            serf_port: config.serf_port,
            bootstrap_expect: config.server.bootstrap_expect,
            client_servers: Mutex::new(Vec::new()),
        }
    }

    fn member_name(&self, node: &ServerNode) -> String {
        if node.name.is_empty() {
            "(unknown)".to_string()
        } else {
            format!("{}.{}", node.name, self.region)
        }
    }

    fn status_of(&self, id: u64) -> SerfStatus {
        match self.raft.peer_contact(id) {
            Some(since) if since <= MEMBER_FAILED_AFTER => SerfStatus::Alive,
            _ => SerfStatus::Failed,
        }
    }

    /// Servers known here: the Raft members, then servers heard of that are not members.
    fn all_servers(&self) -> Vec<(u64, ServerNode, bool)> {
        let mut servers = self.raft.members();
        for known in self.raft.known_servers() {
            if !servers.iter().any(|(id, _, _)| *id == known.id) {
                servers.push((known.id, known.node, false));
            }
        }
        servers
    }

    fn find_peer(&self, peer: &PeerRef) -> Option<u64> {
        self.raft
            .members()
            .into_iter()
            .find(|(id, node, _)| match peer {
                PeerRef::Address(address) => node.addr == *address,
                PeerRef::Id(text) => id.to_string() == *text,
            })
            .map(|(id, _, _)| id)
    }
}

fn server_error(e: ProposeError) -> ServerError {
    match e {
        ProposeError::NotLeader { .. } | ProposeError::NoQuorum(_) => {
            ServerError::NoLeader(e.to_string())
        }
        ProposeError::Refused(message) => ServerError::BadRequest(message),
        other => ServerError::Internal(other.to_string()),
    }
}

impl ClusterEndpoints for ClusterApi {
    fn local_member(&self) -> (String, String, String) {
        (
            format!("{}.{}", self.name, self.region),
            self.region.clone(),
            self.datacenter.clone(),
        )
    }

    fn members(&self) -> Vec<Member> {
        let me = self.raft.config().node_id;
        let leader = self.raft.leader().map(|(id, _)| id);
        self.all_servers()
            .into_iter()
            .map(|(id, node, _voter)| {
                let rpc: Option<SocketAddr> = node.addr.parse().ok();
                let mut tags = std::collections::BTreeMap::new();
                tags.insert("region".to_string(), self.region.clone());
                tags.insert("role".to_string(), "nomad".to_string());
                tags.insert("build".to_string(), env!("CARGO_PKG_VERSION").to_string());
                tags.insert("id".to_string(), id.to_string());
                tags.insert("raft_vsn".to_string(), "3".to_string());
                if let Some(rpc) = rpc {
                    tags.insert("rpc_addr".to_string(), rpc.ip().to_string());
                    tags.insert("port".to_string(), rpc.port().to_string());
                }
                if id == me {
                    tags.insert("dc".to_string(), self.datacenter.clone());
                    tags.insert("expect".to_string(), self.bootstrap_expect.to_string());
                }
                if Some(id) == leader {
                    tags.insert("leader".to_string(), "1".to_string());
                }
                Member {
                    name: self.member_name(&node),
                    addr: rpc.map(|a| a.ip().to_string()).unwrap_or_default(),
                    port: self.serf_port,
                    tags,
                    status: self.status_of(id),
                    protocol_min: 1,
                    protocol_max: 5,
                    protocol_cur: 2,
                    delegate_min: 2,
                    delegate_max: 5,
                    delegate_cur: 4,
                }
            })
            .collect()
    }

    fn servers(&self) -> Vec<String> {
        let set = self
            .client_servers
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        if !set.is_empty() {
            return set;
        }
        self.raft
            .members()
            .into_iter()
            .filter(|(_, _, voter)| *voter)
            .map(|(_, node, _)| node.addr)
            .collect()
    }

    fn set_servers(&self, addresses: Vec<String>) -> BoxFuture<'_, Result<(), ServerError>> {
        Box::pin(async move {
            for address in &addresses {
                let valid = address
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
                if !valid {
                    return Err(ServerError::BadRequest(format!(
                        "server address {address:?} is not host:port; nothing was changed"
                    )));
                }
            }
            if let Ok(mut servers) = self.client_servers.lock() {
                *servers = addresses;
            }
            Ok(())
        })
    }

    fn join(&self, addresses: Vec<String>) -> BoxFuture<'_, Result<usize, ServerError>> {
        Box::pin(async move {
            let outcome = self.raft.introduce(&addresses).await;
            let joined = outcome.iter().filter(|(_, r)| r.is_ok()).count();
            if joined == 0 {
                let reasons: Vec<String> = outcome
                    .iter()
                    .filter_map(|(address, r)| r.as_ref().err().map(|e| format!("{address}: {e}")))
                    .collect();
                return Err(ServerError::BadRequest(format!(
                    "could not join any server: {}",
                    reasons.join("; ")
                )));
            }
            Ok(joined)
        })
    }

    fn force_leave(&self, node: String, _prune: bool) -> BoxFuture<'_, Result<(), ServerError>> {
        Box::pin(async move {
            let wanted = node
                .strip_suffix(&format!(".{}", self.region))
                .unwrap_or(&node)
                .to_string();
            let Some((id, server, _)) = self
                .raft
                .members()
                .into_iter()
                .find(|(_, n, _)| n.name == wanted)
            else {
                return Err(ServerError::NotFound(format!(
                    "no server named {node:?} in region {:?}",
                    self.region
                )));
            };
            if self.status_of(id) == SerfStatus::Alive {
                return Err(ServerError::BadRequest(format!(
                    "server {node:?} ({}) is alive; force-leave is for failed servers — stop                      it first, or use `noded operator raft remove-peer`",
                    server.addr
                )));
            }
            self.raft.remove_server(id).await.map_err(server_error)
        })
    }

    fn raft_configuration(
        &self,
        stale: bool,
    ) -> BoxFuture<'_, Result<RaftConfiguration, ServerError>> {
        Box::pin(async move {
            if !stale {
                self.raft.read_barrier().await.map_err(server_error)?;
            }
            let leader = self.raft.leader().map(|(id, _)| id);
            let servers = self
                .raft
                .members()
                .into_iter()
                .map(|(id, node, voter)| RaftServer {
                    id: id.to_string(),
                    node: self.member_name(&node),
                    address: node.addr.clone(),
                    leader: Some(id) == leader,
                    voter,
                    raft_protocol: "3".to_string(),
                })
                .collect();
            Ok(RaftConfiguration {
                index: self.raft.membership_index(),
                servers,
            })
        })
    }

    fn remove_peer(&self, peer: PeerRef) -> BoxFuture<'_, Result<(), ServerError>> {
        Box::pin(async move {
            let Some(id) = self.find_peer(&peer) else {
                return Err(ServerError::BadRequest(format!(
                    "{peer} was not found in the Raft configuration"
                )));
            };
            self.raft.remove_server(id).await.map_err(server_error)
        })
    }

    fn transfer_leadership(
        &self,
        peer: Option<PeerRef>,
    ) -> BoxFuture<'_, Result<String, ServerError>> {
        Box::pin(async move {
            let target = match &peer {
                None => None,
                Some(p) => Some(self.find_peer(p).ok_or_else(|| {
                    ServerError::BadRequest(format!("{p} was not found in the Raft configuration"))
                })?),
            };
            self.raft
                .transfer_leadership(target)
                .await
                .map(|(_, address)| address)
                .map_err(server_error)
        })
    }

    fn server_health(&self) -> BoxFuture<'_, Result<Vec<ServerHealthFacts>, ServerError>> {
        Box::pin(async move {
            let peers = self.raft.peers().await.map_err(server_error)?;
            Ok(peers
                .into_iter()
                .map(|p| ServerHealthFacts {
                    id: p.id.to_string(),
                    name: self.member_name(&p.node),
                    address: p.node.addr.clone(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    serf_status: self.status_of(p.id),
                    voter: p.voter,
                    leader: p.leader,
                    last_contact: p.last_contact_ms.map(Duration::from_millis),
                    last_term: p.last_term,
                    last_index: p.last_index,
                })
                .collect())
        })
    }

    fn current_term(&self) -> u64 {
        self.raft.stats().term
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn addresses_without_a_port_use_the_rpc_port() {
        assert_eq!(
            resolve("10.0.0.1").await.unwrap(),
            "10.0.0.1:4647".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            resolve("10.0.0.1:5000").await.unwrap(),
            "10.0.0.1:5000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(resolve("localhost").await.unwrap().port(), 4647);
        let err = resolve("no-such-host.invalid").await.unwrap_err();
        assert!(err.contains("no-such-host.invalid"), "{err}");
    }
}
