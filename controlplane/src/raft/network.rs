//! How servers reach each other: the Raft messages, the plug a transport fits into, and the
//! few server-to-server calls a region needs beside Raft itself.
//!
//! openraft talks to peers through [`RaftNetworkFactory`]/[`RaftNetwork`]. Those traits are
//! implemented here once, by [`Network`] and [`PeerClient`], on top of a much smaller
//! [`RaftTransport`]: "deliver this [`RaftRequest`] to the server at this address and bring back
//! its [`RaftReply`], within this time". A transport moves messages; it knows nothing of
//! openraft's error taxonomy, which is mapped here. The QUIC fabric (the `federation` crate,
//! wired in the binary) is the transport of real regions; [`SingleVoterNetwork`] is the
//! transport of a region that has no one to talk to.
//!
//! Beside openraft's three messages, the same channel carries what makes a region out of
//! servers: a follower forwarding a write to the leader ([`RaftRequest::Propose`]) or asking it
//! for a read index ([`RaftRequest::ReadIndex`]), a server introducing itself while the region
//! forms ([`RaftRequest::Hello`]), and a new server asking the leader to be added
//! ([`RaftRequest::Join`]).
//!
//! # Wire compatibility
//! These types travel between servers of different versions during a rolling upgrade: variants
//! and fields are only ever added, never renamed or repurposed; golden fixtures pin the
//! encoding (`controlplane/tests/wire_fixtures.rs`).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError as OpenraftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RPCTypes, RaftNetwork, RaftNetworkFactory};
use serde::{Deserialize, Serialize};

use super::error::ProposeError;
use super::{ServerNode, TypeConfig};
use crate::state::{Command, CommandResponse};

/// Who a server is, as it introduces itself to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Its Raft node id.
    pub id: u64,
    /// Its RPC address and name.
    pub node: ServerNode,
    /// The region it serves.
    pub region: String,
}

/// The answer to [`RaftRequest::Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    /// The server that answers.
    pub server: ServerInfo,
    /// Whether it is already part of a formed region (its Raft holds a membership).
    pub formed: bool,
    /// The leader it knows of, if any: id and address.
    pub leader: Option<(u64, String)>,
    /// Every server it has heard of (itself included), so that servers listing only some of
    /// the others in `retry_join` still find them all.
    pub known: Vec<ServerInfo>,
}

/// One member of the group as the leader sees it (`/v1/operator/autopilot/health`,
/// `/v1/agent/members`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub id: u64,
    pub node: ServerNode,
    pub voter: bool,
    pub leader: bool,
    /// Milliseconds since the leader last heard from it (0 for the leader); `None`: never.
    pub last_contact_ms: Option<u64>,
    /// The log position the leader knows it has (the leader's own last entry for itself).
    pub last_index: u64,
    pub last_term: u64,
}

/// A message from one server to another.
#[derive(Clone, Serialize, Deserialize)]
pub enum RaftRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A write a follower received: the leader proposes it and answers with its result.
    Propose(Box<Command>),
    /// A follower asks the leader which log index a linearizable read must wait for.
    ReadIndex,
    /// A server introduces itself while the region forms.
    Hello(ServerInfo),
    /// A server asks the leader to add it to the group (as a learner, then a voter).
    Join(ServerInfo),
    /// An operator removes a server (by id) from the group: only the leader can.
    RemoveServer(u64),
    /// The leader's view of every member: replication progress and last contact.
    Peers,
    /// The leader hands leadership over: the receiver starts an election at once.
    Elect,
    /// An operator asks the leader to hand leadership to this server (any voter if `None`).
    TransferLeadership(Option<u64>),
}

impl RaftRequest {
    /// The kind of message, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            RaftRequest::AppendEntries(_) => "AppendEntries",
            RaftRequest::Vote(_) => "Vote",
            RaftRequest::InstallSnapshot(_) => "InstallSnapshot",
            RaftRequest::Propose(_) => "Propose",
            RaftRequest::ReadIndex => "ReadIndex",
            RaftRequest::Hello(_) => "Hello",
            RaftRequest::Join(_) => "Join",
            RaftRequest::RemoveServer(_) => "RemoveServer",
            RaftRequest::Peers => "Peers",
            RaftRequest::Elect => "Elect",
            RaftRequest::TransferLeadership(_) => "TransferLeadership",
        }
    }
}

impl std::fmt::Debug for RaftRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Entries can be large; the kind is what a log line needs.
        write!(f, "RaftRequest::{}", self.kind())
    }
}

/// The answer of the peer to a [`RaftRequest`], including the errors its Raft returned.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftReply {
    AppendEntries(Result<AppendEntriesResponse<u64>, OpenraftError<u64>>),
    Vote(Result<VoteResponse<u64>, OpenraftError<u64>>),
    InstallSnapshot(Result<InstallSnapshotResponse<u64>, OpenraftError<u64, InstallSnapshotError>>),
    Propose(Result<CommandResponse, ProposeError>),
    /// The index to wait for (`None`: nothing committed yet).
    ReadIndex(Result<Option<u64>, ProposeError>),
    Hello(HelloReply),
    Join(Result<(), ProposeError>),
    RemoveServer(Result<(), ProposeError>),
    Peers(Result<Vec<PeerStatus>, ProposeError>),
    Elect(Result<(), ProposeError>),
    /// The new leader's id and address.
    TransferLeadership(Result<(u64, String), ProposeError>),
}

impl RaftReply {
    /// The kind of reply, for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            RaftReply::AppendEntries(_) => "AppendEntries",
            RaftReply::Vote(_) => "Vote",
            RaftReply::InstallSnapshot(_) => "InstallSnapshot",
            RaftReply::Propose(_) => "Propose",
            RaftReply::ReadIndex(_) => "ReadIndex",
            RaftReply::Hello(_) => "Hello",
            RaftReply::Join(_) => "Join",
            RaftReply::RemoveServer(_) => "RemoveServer",
            RaftReply::Peers(_) => "Peers",
            RaftReply::Elect(_) => "Elect",
            RaftReply::TransferLeadership(_) => "TransferLeadership",
        }
    }
}

/// Why a transport could not deliver a request or bring back a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The peer cannot be reached at all (no route, refused, handshake failed): nothing was
    /// delivered, so the request may be retried.
    #[error("{0}")]
    Unreachable(String),
    /// No reply within the time given; the request may or may not have been handled.
    #[error("no reply from {address} within {timeout_ms} ms")]
    Timeout { address: String, timeout_ms: u64 },
    /// The connection failed in flight, or the reply could not be read.
    #[error("{0}")]
    Network(String),
}

/// Delivers messages between servers: the QUIC fabric in a real region.
pub trait RaftTransport: Send + Sync + 'static {
    /// Sends `request` to the server at `address` and returns its reply, within `timeout`.
    /// `target` is the peer's node id when known (0 while the region forms), for errors.
    fn send(
        &self,
        target: u64,
        address: &str,
        request: RaftRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<RaftReply, TransportError>>;
}

/// The transport of a single-server region started without a fabric: there is no one to talk
/// to, and [`RaftNode::start`](super::RaftNode::start) never creates a membership with peers.
#[derive(Debug, Clone, Copy)]
pub struct SingleVoterNetwork {
    local_id: u64,
}

impl SingleVoterNetwork {
    pub fn new(local_id: u64) -> SingleVoterNetwork {
        SingleVoterNetwork { local_id }
    }
}

impl RaftTransport for SingleVoterNetwork {
    fn send(
        &self,
        target: u64,
        address: &str,
        request: RaftRequest,
        _timeout: Duration,
    ) -> BoxFuture<'static, Result<RaftReply, TransportError>> {
        let message = format!(
            "server {} runs without a server-to-server transport and was asked to send a raft \
             {} request to server {target} at {address:?}; start the agent with its rpc \
             fabric (a non-dev server with tls configured) to run a multi-server region",
            self.local_id,
            request.kind()
        );
        Box::pin(async move { Err(TransportError::Unreachable(message)) })
    }
}

/// openraft's network factory over a [`RaftTransport`].
pub struct Network {
    local_id: u64,
    transport: Arc<dyn RaftTransport>,
    contacts: Contacts,
}

/// When each peer last answered this server (any reply counts), by node id: what the leader
/// knows of its followers' liveness, and what member probes learn on every server.
#[derive(Debug, Clone, Default)]
pub struct Contacts(Arc<std::sync::Mutex<std::collections::BTreeMap<u64, std::time::Instant>>>);

impl Contacts {
    pub fn record(&self, peer: u64) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(peer, std::time::Instant::now());
        }
    }

    /// How long ago `peer` last answered, if ever.
    pub fn since(&self, peer: u64) -> Option<Duration> {
        self.0
            .lock()
            .ok()
            .and_then(|map| map.get(&peer).map(|t| t.elapsed()))
    }
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("local_id", &self.local_id)
            .finish_non_exhaustive()
    }
}

impl Network {
    pub fn new(local_id: u64, transport: Arc<dyn RaftTransport>, contacts: Contacts) -> Network {
        Network {
            local_id,
            transport,
            contacts,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &ServerNode) -> PeerClient {
        PeerClient {
            local_id: self.local_id,
            target,
            node: node.clone(),
            transport: self.transport.clone(),
            contacts: self.contacts.clone(),
        }
    }
}

/// openraft's connection to one peer, over a [`RaftTransport`].
pub struct PeerClient {
    local_id: u64,
    target: u64,
    node: ServerNode,
    transport: Arc<dyn RaftTransport>,
    contacts: Contacts,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient")
            .field("local_id", &self.local_id)
            .field("target", &self.target)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// A reply of the wrong kind: the peer (or the transport) is broken.
#[derive(Debug, thiserror::Error)]
#[error("node {target} answered a {sent} request with a {got} reply")]
struct MismatchedReply {
    target: u64,
    sent: RPCTypes,
    got: &'static str,
}

impl PeerClient {
    async fn call<E: std::error::Error>(
        &self,
        request: RaftRequest,
        option: &RPCOption,
        action: RPCTypes,
    ) -> Result<RaftReply, RPCError<u64, ServerNode, E>> {
        let timeout = option.hard_ttl();
        let reply = self
            .transport
            .send(self.target, &self.node.addr, request, timeout)
            .await;
        if reply.is_ok() {
            self.contacts.record(self.target);
        }
        reply.map_err(|e| match e {
            TransportError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
            TransportError::Timeout { .. } => RPCError::Timeout(Timeout {
                action,
                id: self.local_id,
                target: self.target,
                timeout,
            }),
            TransportError::Network(_) => RPCError::Network(NetworkError::new(&e)),
        })
    }

    fn remote<E: std::error::Error>(&self, e: E) -> RemoteError<u64, ServerNode, E> {
        RemoteError::new_with_node(self.target, self.node.clone(), e)
    }

    fn mismatch<E: std::error::Error>(
        &self,
        sent: RPCTypes,
        reply: &RaftReply,
    ) -> RPCError<u64, ServerNode, E> {
        let got = reply.kind();
        RPCError::Network(NetworkError::new(&MismatchedReply {
            target: self.target,
            sent,
            got,
        }))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, ServerNode, OpenraftError<u64>>> {
        match self
            .call(
                RaftRequest::AppendEntries(rpc),
                &option,
                RPCTypes::AppendEntries,
            )
            .await?
        {
            RaftReply::AppendEntries(reply) => {
                reply.map_err(|e| RPCError::RemoteError(self.remote(e)))
            }
            other => Err(self.mismatch(RPCTypes::AppendEntries, &other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, ServerNode, OpenraftError<u64, InstallSnapshotError>>,
    > {
        match self
            .call(
                RaftRequest::InstallSnapshot(rpc),
                &option,
                RPCTypes::InstallSnapshot,
            )
            .await?
        {
            RaftReply::InstallSnapshot(reply) => {
                reply.map_err(|e| RPCError::RemoteError(self.remote(e)))
            }
            other => Err(self.mismatch(RPCTypes::InstallSnapshot, &other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, ServerNode, OpenraftError<u64>>> {
        match self
            .call(RaftRequest::Vote(rpc), &option, RPCTypes::Vote)
            .await?
        {
            RaftReply::Vote(reply) => reply.map_err(|e| RPCError::RemoteError(self.remote(e))),
            other => Err(self.mismatch(RPCTypes::Vote, &other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId, Vote};

    use super::*;

    fn vote_request() -> VoteRequest<u64> {
        VoteRequest::new(
            Vote::new(3, 1),
            Some(LogId::new(CommittedLeaderId::new(2, 1), 10)),
        )
    }

    #[tokio::test]
    async fn the_single_voter_network_refuses_with_an_unreachable_error_naming_the_peer() {
        let mut factory =
            Network::new(1, Arc::new(SingleVoterNetwork::new(1)), Contacts::default());
        let mut client = factory
            .new_client(7, &ServerNode::new("10.0.0.7:4647", "s7"))
            .await;
        let option = RPCOption::new(Duration::from_millis(100));
        let err = client.vote(vote_request(), option).await.unwrap_err();
        let RPCError::Unreachable(unreachable) = err else {
            panic!("expected Unreachable, got {err:?}");
        };
        let message = unreachable.to_string();
        assert!(
            message.contains("without a server-to-server transport"),
            "{message}"
        );
        assert!(message.contains("server 7"), "{message}");
        assert!(message.contains("10.0.0.7:4647"), "{message}");
        assert!(message.contains("Vote"), "{message}");
    }

    /// A transport that answers with whatever it is told to, to check the mapping.
    struct Scripted(std::sync::Mutex<Option<Result<RaftReply, TransportError>>>);

    impl RaftTransport for Scripted {
        fn send(
            &self,
            _target: u64,
            _address: &str,
            _request: RaftRequest,
            _timeout: Duration,
        ) -> BoxFuture<'static, Result<RaftReply, TransportError>> {
            let reply = self
                .0
                .lock()
                .unwrap()
                .take()
                .unwrap_or(Err(TransportError::Network("script exhausted".into())));
            Box::pin(async move { reply })
        }
    }

    async fn vote_via(
        reply: Result<RaftReply, TransportError>,
    ) -> RPCError<u64, ServerNode, OpenraftError<u64>> {
        let mut factory = Network::new(
            1,
            Arc::new(Scripted(std::sync::Mutex::new(Some(reply)))),
            Contacts::default(),
        );
        let mut client = factory.new_client(2, &ServerNode::new("peer", "")).await;
        client
            .vote(vote_request(), RPCOption::new(Duration::from_millis(50)))
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn transport_failures_map_to_openraft_errors_that_keep_their_meaning() {
        let timeout = vote_via(Err(TransportError::Timeout {
            address: "peer".into(),
            timeout_ms: 50,
        }))
        .await;
        assert!(matches!(timeout, RPCError::Timeout(t) if t.target == 2 && t.id == 1));

        let network = vote_via(Err(TransportError::Network("reset".into()))).await;
        assert!(matches!(network, RPCError::Network(_)));

        let remote = vote_via(Ok(RaftReply::Vote(Err(OpenraftError::Fatal(
            openraft::error::Fatal::Stopped,
        )))))
        .await;
        assert!(matches!(remote, RPCError::RemoteError(r) if r.target == 2));

        let mismatched = vote_via(Ok(RaftReply::AppendEntries(Ok(
            AppendEntriesResponse::Success,
        ))))
        .await;
        let RPCError::Network(e) = mismatched else {
            panic!("expected a network error, got {mismatched:?}");
        };
        assert!(e.to_string().contains("answered a Vote request"), "{e}");
    }
}
