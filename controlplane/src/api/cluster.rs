//! What only the cluster layer (Raft membership, gossip, the QUIC transport) knows, as the
//! HTTP API needs it: the [`ClusterEndpoints`] trait, which `noded` implements over openraft,
//! and the shapes of its answers (Nomad's). Methods return facts; decisions (autopilot health,
//! failure tolerance) are made from them in [`crate::server::autopilot`].
//!
//! Errors are [`ServerError`]s and become HTTP answers as everywhere else: `BadRequest` (400)
//! for a request that cannot be done as asked (unknown peer, removing the last voter),
//! `NotFound` (404) for an unknown member, `NoLeader` / `Internal` (500) for the cluster's own
//! trouble. Messages say what, where and what to do, as every error of the API does.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use crate::server::autopilot::{SerfStatus, ServerHealthFacts};
use crate::server::ServerError;

/// One server in the gossip pool, in Nomad's `/v1/agent/members` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Member {
    /// `node.region`, e.g. `server-1.global`.
    pub name: String,
    /// The gossip (serf) address, an IP.
    pub addr: String,
    /// The gossip (serf) port (Nomad's default 4648).
    pub port: u16,
    /// Nomad's tags: `region`, `dc`, `role` ("nomad"), `build`, `port` (the RPC port),
    /// `bootstrap` ("1" on a bootstrapping server), `expect` (bootstrap_expect), `id` (the
    /// server id), `raft_vsn` ("3"), `rpc_addr`.
    pub tags: BTreeMap<String, String>,
    /// `alive`, `leaving`, `left` or `failed`.
    pub status: SerfStatus,
    pub protocol_min: u8,
    pub protocol_max: u8,
    pub protocol_cur: u8,
    pub delegate_min: u8,
    pub delegate_max: u8,
    pub delegate_cur: u8,
}

/// One server in the Raft configuration (Nomad's `RaftServer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RaftServer {
    #[serde(rename = "ID")]
    pub id: String,
    /// `node.region`, or "(unknown)" when gossip does not know the server.
    pub node: String,
    /// The Raft RPC address, `ip:port`.
    pub address: String,
    pub leader: bool,
    pub voter: bool,
    /// The Raft protocol version as text ("3").
    pub raft_protocol: String,
}

/// Nomad's `/v1/operator/raft/configuration` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RaftConfiguration {
    /// The Raft index of the membership entry this configuration comes from.
    pub index: u64,
    pub servers: Vec<RaftServer>,
}

/// A Raft peer named by the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRef {
    /// `ip:port`, as `RaftServer::address`.
    Address(String),
    /// The server id, as `RaftServer::id`.
    Id(String),
}

impl std::fmt::Display for PeerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerRef::Address(a) => write!(f, "address {a:?}"),
            PeerRef::Id(i) => write!(f, "id {i:?}"),
        }
    }
}

/// What the cluster layer answers for the API. Implemented by `noded` over the Raft node and
/// the server membership; absent on an agent that runs no server (the endpoints then answer
/// 501, as Nomad's do on a client).
pub trait ClusterEndpoints: Send + Sync + 'static {
    /// This server's name, region and datacenter (`/v1/agent/members`' `ServerName`,
    /// `ServerRegion`, `ServerDC`).
    fn local_member(&self) -> (String, String, String);

    /// Every server this one knows in its region's gossip pool, itself included, with its
    /// status (`alive`, `failed`, `left`). Never fails: what is known locally.
    fn members(&self) -> Vec<Member>;

    /// The server RPC addresses (`ip:port`) this agent's client uses, in the order it tries
    /// them (`GET /v1/agent/servers`).
    fn servers(&self) -> Vec<String>;

    /// Replaces the client's server list (`PUT /v1/agent/servers`). `addresses` is non-empty
    /// (the handler refuses an empty list); an address that does not parse as `host:port` is
    /// a `BadRequest` naming it, and nothing changes.
    fn set_servers(&self, addresses: Vec<String>) -> BoxFuture<'_, Result<(), ServerError>>;

    /// Joins this server to the servers at `addresses` (`PUT /v1/agent/join`); returns how
    /// many were joined. Failing to reach some is not an error while one joined; none
    /// joined is a `BadRequest` (or `Internal` for this server's own trouble) whose message
    /// names each address and why.
    fn join(&self, addresses: Vec<String>) -> BoxFuture<'_, Result<usize, ServerError>>;

    /// Moves the failed server named `node` (a member name, with or without `.region`) to
    /// `left`, so Raft stops replicating to it; `prune` drops it from the member list at
    /// once. An unknown name is `NotFound`; an alive member is `BadRequest` (force-leave is
    /// for failed servers).
    fn force_leave(&self, node: String, prune: bool) -> BoxFuture<'_, Result<(), ServerError>>;

    /// The Raft configuration as the leader (or, with `stale`, this server) knows it.
    /// `NoLeader` when not stale and there is no leader.
    fn raft_configuration(
        &self,
        stale: bool,
    ) -> BoxFuture<'_, Result<RaftConfiguration, ServerError>>;

    /// Removes a peer from the Raft configuration (through the leader). An unknown peer is a
    /// `BadRequest` "<peer> was not found in the Raft configuration"; removing the last voter
    /// is a `BadRequest` and nothing changes.
    fn remove_peer(&self, peer: PeerRef) -> BoxFuture<'_, Result<(), ServerError>>;

    /// Asks the leader to hand leadership to `peer` (to any up-to-date voter when `None`);
    /// returns the new leader's address once it leads. An unknown peer or a non-voter is a
    /// `BadRequest`; a peer that did not take over in time is `Internal`.
    fn transfer_leadership(
        &self,
        peer: Option<PeerRef>,
    ) -> BoxFuture<'_, Result<String, ServerError>>;

    /// The raw facts per server of the Raft configuration that autopilot judges (see
    /// [`ServerHealthFacts`]). Answered by the leader; `NoLeader` without one.
    fn server_health(&self) -> BoxFuture<'_, Result<Vec<ServerHealthFacts>, ServerError>>;

    /// The current Raft term of this server (for a snapshot's metadata).
    fn current_term(&self) -> u64;
}
