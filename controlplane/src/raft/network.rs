//! How Raft reaches other servers: the plug a transport fits into.
//!
//! openraft talks to peers through [`RaftNetworkFactory`]/[`RaftNetwork`]. Those traits are
//! implemented here once, by [`Network`] and [`PeerClient`], on top of a much smaller
//! [`RaftTransport`]: "deliver this [`RaftRequest`] to server N at this address and bring back
//! its [`RaftReply`], within this time". A transport moves messages; it knows nothing of
//! openraft's error taxonomy, which is mapped here.
//!
//! The only transport today is [`SingleVoterNetwork`]: regions have exactly one server, and
//! [`RaftNode::start`](super::RaftNode::start) refuses any membership with more, so it is never
//! asked to deliver anything. If it is, it fails with an `Unreachable` error that says multi-server
//! regions are not supported yet and names the peer. Server-to-server Raft over QUIC arrives in the
//! `federation` crate as another [`RaftTransport`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError as OpenraftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes, RaftNetwork, RaftNetworkFactory};
use serde::{Deserialize, Serialize};

use super::TypeConfig;

/// A Raft message from one server to another.
#[derive(Clone, Serialize, Deserialize)]
pub enum RaftRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
}

impl RaftRequest {
    /// The kind of message, as openraft names it.
    pub fn kind(&self) -> RPCTypes {
        match self {
            RaftRequest::AppendEntries(_) => RPCTypes::AppendEntries,
            RaftRequest::Vote(_) => RPCTypes::Vote,
            RaftRequest::InstallSnapshot(_) => RPCTypes::InstallSnapshot,
        }
    }
}

impl std::fmt::Debug for RaftRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Entries can be large; the kind is what a log line needs.
        write!(f, "RaftRequest::{}", self.kind())
    }
}

/// The answer of the peer's Raft to a [`RaftRequest`], including the errors its Raft returned.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftReply {
    AppendEntries(Result<AppendEntriesResponse<u64>, OpenraftError<u64>>),
    Vote(Result<VoteResponse<u64>, OpenraftError<u64>>),
    InstallSnapshot(Result<InstallSnapshotResponse<u64>, OpenraftError<u64, InstallSnapshotError>>),
}

/// Why a transport could not deliver a request or bring back a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The peer cannot be reached at all (no route, refused, not supported): openraft backs off.
    #[error("{0}")]
    Unreachable(String),
    /// No reply within the time given.
    #[error("no reply from node {target} within {timeout_ms} ms")]
    Timeout { target: u64, timeout_ms: u64 },
    /// The connection failed in flight, or the reply could not be read.
    #[error("{0}")]
    Network(String),
}

/// Delivers Raft messages between servers. Implemented by [`SingleVoterNetwork`] today and by
/// the QUIC fabric later.
pub trait RaftTransport: Send + Sync + 'static {
    /// Sends `request` to server `target` at `address` and returns its reply, within `timeout`.
    fn send(
        &self,
        target: u64,
        address: &str,
        request: RaftRequest,
        timeout: Duration,
    ) -> impl Future<Output = Result<RaftReply, TransportError>> + Send;
}

/// The transport of a single-server region: there is no one to talk to.
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
    async fn send(
        &self,
        target: u64,
        address: &str,
        request: RaftRequest,
        _timeout: Duration,
    ) -> Result<RaftReply, TransportError> {
        Err(TransportError::Unreachable(format!(
            "multi-server regions are not supported yet: server {} was asked to send a raft {} \
             request to server {target} at {address:?}, but this build has no server-to-server \
             raft transport; run one server per region",
            self.local_id,
            request.kind()
        )))
    }
}

/// openraft's network factory over a [`RaftTransport`].
#[derive(Debug)]
pub struct Network<T> {
    local_id: u64,
    transport: Arc<T>,
}

impl<T: RaftTransport> Network<T> {
    pub fn new(local_id: u64, transport: T) -> Network<T> {
        Network {
            local_id,
            transport: Arc::new(transport),
        }
    }
}

impl<T: RaftTransport> RaftNetworkFactory<TypeConfig> for Network<T> {
    type Network = PeerClient<T>;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient<T> {
        PeerClient {
            local_id: self.local_id,
            target,
            node: node.clone(),
            transport: self.transport.clone(),
        }
    }
}

/// openraft's connection to one peer, over a [`RaftTransport`].
#[derive(Debug)]
pub struct PeerClient<T> {
    local_id: u64,
    target: u64,
    node: BasicNode,
    transport: Arc<T>,
}

/// A reply of the wrong kind: the peer (or the transport) is broken.
#[derive(Debug, thiserror::Error)]
#[error("node {target} answered a {sent} request with a {got} reply")]
struct MismatchedReply {
    target: u64,
    sent: RPCTypes,
    got: &'static str,
}

impl<T: RaftTransport> PeerClient<T> {
    async fn call<E: std::error::Error>(
        &self,
        request: RaftRequest,
        option: &RPCOption,
    ) -> Result<RaftReply, RPCError<u64, BasicNode, E>> {
        let action = request.kind();
        let timeout = option.hard_ttl();
        self.transport
            .send(self.target, &self.node.addr, request, timeout)
            .await
            .map_err(|e| match e {
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

    fn remote<E: std::error::Error>(&self, e: E) -> RemoteError<u64, BasicNode, E> {
        RemoteError::new_with_node(self.target, self.node.clone(), e)
    }

    fn mismatch<E: std::error::Error>(
        &self,
        sent: RPCTypes,
        reply: &RaftReply,
    ) -> RPCError<u64, BasicNode, E> {
        let got = match reply {
            RaftReply::AppendEntries(_) => "AppendEntries",
            RaftReply::Vote(_) => "Vote",
            RaftReply::InstallSnapshot(_) => "InstallSnapshot",
        };
        RPCError::Network(NetworkError::new(&MismatchedReply {
            target: self.target,
            sent,
            got,
        }))
    }
}

impl<T: RaftTransport> RaftNetwork<TypeConfig> for PeerClient<T> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, OpenraftError<u64>>> {
        match self.call(RaftRequest::AppendEntries(rpc), &option).await? {
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
        RPCError<u64, BasicNode, OpenraftError<u64, InstallSnapshotError>>,
    > {
        match self
            .call(RaftRequest::InstallSnapshot(rpc), &option)
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
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, OpenraftError<u64>>> {
        match self.call(RaftRequest::Vote(rpc), &option).await? {
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
        let mut factory = Network::new(1, SingleVoterNetwork::new(1));
        let mut client = factory
            .new_client(7, &BasicNode::new("10.0.0.7:4647"))
            .await;
        let option = RPCOption::new(Duration::from_millis(100));
        let err = client.vote(vote_request(), option).await.unwrap_err();
        let RPCError::Unreachable(unreachable) = err else {
            panic!("expected Unreachable, got {err:?}");
        };
        let message = unreachable.to_string();
        assert!(
            message.contains("multi-server regions are not supported yet"),
            "{message}"
        );
        assert!(message.contains("server 7"), "{message}");
        assert!(message.contains("10.0.0.7:4647"), "{message}");
        assert!(message.contains("Vote"), "{message}");
    }

    /// A transport that answers with whatever it is told to, to check the mapping.
    struct Scripted(std::sync::Mutex<Option<Result<RaftReply, TransportError>>>);

    impl RaftTransport for Scripted {
        async fn send(
            &self,
            _target: u64,
            _address: &str,
            _request: RaftRequest,
            _timeout: Duration,
        ) -> Result<RaftReply, TransportError> {
            self.0
                .lock()
                .unwrap()
                .take()
                .unwrap_or(Err(TransportError::Network("script exhausted".into())))
        }
    }

    async fn vote_via(
        reply: Result<RaftReply, TransportError>,
    ) -> RPCError<u64, BasicNode, OpenraftError<u64>> {
        let mut factory = Network::new(1, Scripted(std::sync::Mutex::new(Some(reply))));
        let mut client = factory.new_client(2, &BasicNode::new("peer")).await;
        client
            .vote(vote_request(), RPCOption::new(Duration::from_millis(50)))
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn transport_failures_map_to_openraft_errors_that_keep_their_meaning() {
        let timeout = vote_via(Err(TransportError::Timeout {
            target: 2,
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
