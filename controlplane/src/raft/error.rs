//! Errors of the Raft layer. Each message says what failed, where (path, node id, index) and,
//! where there is one, what the operator can do about it.

use std::path::PathBuf;

use super::codec::CodecError;

/// A failure of the durable parts: the redb log and the snapshot files.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create directory {path}: {source}; check that the data dir is writable")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "raft log {path} is locked by another process: another noded server is probably running \
         with the same data dir; stop it, or give this server its own data_dir"
    )]
    Locked { path: PathBuf },
    #[error(
        "cannot open raft log {path}: {source}; check that noded may read and write it, and if \
         the file is damaged restore it (with the snapshots beside it) from a backup"
    )]
    Open {
        path: PathBuf,
        source: Box<redb::DatabaseError>,
    },
    #[error("raft log {path}: {op} failed: {source}")]
    Redb {
        path: PathBuf,
        op: &'static str,
        source: Box<redb::Error>,
    },
    #[error(
        "raft log {path}: {what} cannot be read: {source}; the file is corrupt or was written \
         by a newer noded"
    )]
    Decode {
        path: PathBuf,
        what: String,
        source: CodecError,
    },
    #[error("raft log {path}: cannot encode {what}: {source}")]
    Encode {
        path: PathBuf,
        what: String,
        source: CodecError,
    },
    #[error(
        "raft log {path} has store format {found}, this build reads format {expected}; it was \
         written by a different noded version"
    )]
    StoreFormat {
        path: PathBuf,
        found: String,
        expected: u8,
    },
    #[error("snapshot {path}: {op} failed: {source}")]
    SnapshotIo {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error(
        "snapshot {path} cannot be loaded: {reason}. The server cannot rebuild its state \
         without it: restore {path} from a backup, or move the server's data dir aside and \
         start afresh (this loses the region's state){older}"
    )]
    SnapshotCorrupt {
        path: PathBuf,
        reason: String,
        /// A hint naming the older snapshot kept beside it, if any.
        older: String,
    },
    #[error("received snapshot {snapshot_id} is invalid: {reason}")]
    SnapshotInvalid { snapshot_id: String, reason: String },
    #[error("background storage task for {what} failed: {reason}")]
    Task { what: &'static str, reason: String },
}

impl StoreError {
    pub(crate) fn redb(
        path: &std::path::Path,
        op: &'static str,
        e: impl Into<redb::Error>,
    ) -> Self {
        StoreError::Redb {
            path: path.to_path_buf(),
            op,
            source: Box::new(e.into()),
        }
    }

    pub(crate) fn snapshot_io(path: &std::path::Path, op: &'static str, e: std::io::Error) -> Self {
        StoreError::SnapshotIo {
            path: path.to_path_buf(),
            op,
            source: e,
        }
    }
}

/// Starting or stopping a [`RaftNode`](super::RaftNode) failed.
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("invalid raft config: {field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the state store passed to the raft node already holds state (index {index}); start \
         needs an empty StateStore, which it fills from the snapshot and the log in {data_dir}"
    )]
    StateNotEmpty { index: u64, data_dir: PathBuf },
    #[error(
        "the raft membership stored in {data_dir} is {membership}, which does not include this \
         server (node {node_id}): the data dir belongs to another server, or this server was \
         removed from the region. Start this server with its own data dir (an empty one joins \
         the region afresh through retry_join), or with the node id the data dir belongs to"
    )]
    UnsupportedMembership {
        data_dir: PathBuf,
        node_id: u64,
        membership: String,
    },
    #[error("raft could not {action} on node {node_id}: {reason}")]
    Consensus {
        node_id: u64,
        action: &'static str,
        reason: String,
    },
    #[error(
        "node {node_id} did not become leader of its single-server region within {waited_ms} ms \
         (last raft metrics: {metrics}); check the log for storage errors in {data_dir}"
    )]
    NoLeadership {
        node_id: u64,
        waited_ms: u64,
        metrics: String,
        data_dir: PathBuf,
    },
    #[error(
        "{what} was still in use {waited_ms} ms after raft shut down; a background task did \
         not stop (the process may exit: what is on disk is consistent)"
    )]
    ShutdownIncomplete { what: String, waited_ms: u64 },
}

/// A proposal (a write through Raft) failed. Travels between servers when a follower forwards
/// a write to the leader, so variants are only ever added.
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ProposeError {
    /// This server is not the leader; the hint names the one it knows of.
    #[error("{}", not_leader_message(.leader))]
    NotLeader { leader: Option<(u64, String)> },
    /// The Raft core has stopped (shutdown, or an earlier fatal error).
    #[error("raft has shut down on this server; the command was not applied")]
    Shutdown,
    /// The log or state machine storage failed; Raft stops on such an error.
    #[error("raft storage failed, raft has stopped on this server: {0}")]
    Storage(String),
    /// No answer within the bound. The command may still be committed and applied later.
    #[error(
        "no commit within {after_ms} ms; the command may still be applied later, so check the \
         state before retrying"
    )]
    Timeout { after_ms: u64 },
    /// A failure that is a bug, not a condition (the Raft core panicked).
    #[error("raft failed internally: {0}")]
    Internal(String),
    /// A follower forwarded the command to the leader and lost the answer on the way: the
    /// command may or may not have been applied.
    #[error(
        "forwarded the write to the leader (node {leader_id} at {leader}) but got no answer: \
         {reason}; the command may still be applied, so check the state before retrying"
    )]
    Forward {
        leader_id: u64,
        leader: String,
        reason: String,
    },
    /// The leader cannot reach a quorum of servers, so nothing can be committed or read
    /// linearizably.
    #[error(
        "the raft leader cannot reach a quorum of servers ({0}); the region accepts no writes \
         and no consistent reads until a majority of servers is reachable"
    )]
    NoQuorum(String),
    /// The request was refused by the server it reached.
    #[error("{0}")]
    Refused(String),
}

fn not_leader_message(leader: &Option<(u64, String)>) -> String {
    match leader {
        Some((id, addr)) => {
            format!("this server is not the raft leader; send the request to node {id} at {addr}")
        }
        None => "this server is not the raft leader and no leader is known yet; retry shortly"
            .to_string(),
    }
}
