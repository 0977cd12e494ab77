//! Raft for a region's servers: openraft wired to a durable redb log and the state machine.
//!
//! # What this module owns
//! - **Consensus**: the openraft instance ([`RaftNode`]), its configuration, bootstrapping a new
//!   region and resuming an existing one, and the leadership signal the rest of the server
//!   follows (the eval broker starts and stops with [`RaftNode::leadership`]).
//! - **The durable log** ([`LogStore`]): `<data_dir>/server/raft.redb` holds the log entries,
//!   the vote, the committed log id and the last purged log id. An append returns only after
//!   its redb transaction is durable (fsync).
//! - **Snapshots** ([`StateMachineStore`]): the state machine is the in-memory
//!   [`StateStore`](crate::state::StateStore); it is made durable by snapshot files in
//!   `<data_dir>/server/snapshots/` plus the log behind them. A restart is "newest snapshot +
//!   replay of the log after it".
//! - **The network plug** ([`Network`] over a [`RaftTransport`]).
//!
//! # What it must not touch
//! Cluster semantics. What a [`Command`] means, how state changes, what a
//! snapshot's state contains: all of that lives in [`crate::state`]. This module moves commands
//! through consensus in order and hands each committed one, with its log index, to
//! [`StateStore::apply`](crate::state::StateStore::apply); it never looks inside.
//!
//! # A region of servers
//! A region runs 3 or 5 servers in one group. This module knows how they form it
//! ([`formation`]: pure decisions; the loop in `node/membership.rs`), forward writes and read
//! indexes to the leader, and change membership (joins, removals, leadership transfer) — all
//! through a [`RaftTransport`], which knows nothing of QUIC: the binary plugs the fabric of
//! the `federation` crate in. [`SingleVoterNetwork`] is the transport of a region of one
//! started without a fabric ([`RaftNode::start`]); it answers every request with an
//! `Unreachable` error naming the peer.
//!
//! # On-disk formats
//! Every stored value (log entry, vote, log id, snapshot body) goes through [`codec`]: a leading
//! format byte, then the body (format 1 = JSON, because commands carry free-form JSON values and a
//! non-self-describing format cannot round-trip them). A reader that meets an unknown format byte
//! refuses with an error instead of guessing.

pub mod codec;
mod error;
pub mod formation;
mod log_store;
mod network;
mod node;
pub mod node_id;
mod snapshot_dir;
mod state_machine;

pub use error::{ProposeError, RaftError, StoreError};
pub use formation::{FormationState, JoinSettings};
pub use log_store::{LogStore, RAFT_DB_FILE};
pub use network::{
    Contacts, HelloReply, Network, PeerClient, PeerStatus, RaftReply, RaftRequest, RaftTransport,
    ServerInfo, SingleVoterNetwork, TransportError,
};
pub use node::{
    RaftConfig, RaftNode, RaftRole, RaftStats, DEFAULT_ELECTION_TIMEOUT_MAX_MS,
    DEFAULT_ELECTION_TIMEOUT_MIN_MS, DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_PROPOSE_TIMEOUT_MS,
    DEFAULT_SNAPSHOT_EVERY, DEFAULT_SNAPSHOT_LOG_LAG, DEFAULT_STARTUP_TIMEOUT_MS,
};
pub use snapshot_dir::{
    decode_snapshot_file, encode_snapshot_file, SnapshotDecodeError, KEEP_SNAPSHOTS, SNAPSHOT_DIR,
    SNAPSHOT_FILE_FORMAT, SNAPSHOT_MAGIC,
};
pub use state_machine::{SnapshotBuilder, StateMachineStore};

use crate::state::{Command, CommandResponse};

/// Tells whether something shared (the open log, the snapshot directory) is still held by any
/// task: shutdown waits until nothing holds them, so the data dir can be reopened at once.
#[derive(Clone)]
pub(crate) struct Liveness(std::sync::Weak<dyn std::any::Any + Send + Sync>);

impl Liveness {
    pub(crate) fn of<T: Send + Sync + 'static>(held: &std::sync::Arc<T>) -> Liveness {
        let weak: std::sync::Weak<T> = std::sync::Arc::downgrade(held);
        Liveness(weak)
    }

    pub(crate) fn is_held(&self) -> bool {
        self.0.strong_count() > 0
    }
}

impl std::fmt::Debug for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Liveness").field(&self.is_held()).finish()
    }
}

/// The directory under the data dir that holds everything a server keeps.
pub const SERVER_DIR: &str = "server";

openraft::declare_raft_types!(
    /// The types openraft runs with: commands and their responses from [`crate::state`], u64 node
    /// ids, the address as node data.
    ///
    /// Snapshot data is a file handle (`tokio::fs::File`) rather than an in-memory buffer: the
    /// state can be large (a million allocations). Building a snapshot streams the state into
    /// its file (no serialized copy in memory), and handing out the current snapshot (which
    /// openraft does at every start, and will do to send one to a follower) is an `open()`, not
    /// a read of the whole file. Loading and installing do read a file whole, because
    /// `serde_json` parses a slice much faster than a reader. The bytes behind the handle are
    /// exactly the snapshot file's bytes (header and body, see [`SNAPSHOT_MAGIC`]), so what
    /// travels between servers is what is stored.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = ServerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log entry as openraft hands it to storage.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id (term, leader, index).
pub type LogId = openraft::LogId<u64>;
/// The membership as stored with the log or a snapshot.
pub type StoredMembership = openraft::StoredMembership<u64, ServerNode>;
/// A snapshot's metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<u64, ServerNode>;

/// A server as the Raft membership records it: where its Raft traffic goes and its name.
///
/// Stored in the log and in snapshots. It reads what earlier versions wrote (openraft's
/// `BasicNode`, `{"addr": …}`): `name` was added later and defaults to empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerNode {
    /// The server's RPC address, `host:port`.
    pub addr: String,
    /// The server's name (the agent's `name`), as `/v1/agent/members` reports it.
    #[serde(default)]
    pub name: String,
}

impl ServerNode {
    pub fn new(addr: impl Into<String>, name: impl Into<String>) -> ServerNode {
        ServerNode {
            addr: addr.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ServerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.name.is_empty() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{} ({})", self.name, self.addr)
        }
    }
}
/// The storage error openraft expects from storage calls.
pub type StorageError = openraft::StorageError<u64>;
