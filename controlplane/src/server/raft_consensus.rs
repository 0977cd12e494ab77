//! The server pipeline's [`Consensus`] on top of a [`RaftNode`].

use futures::future::BoxFuture;
use tokio::sync::watch;

use super::{Consensus, ConsensusError};
use crate::raft::{ProposeError, RaftNode, RaftStats};
use crate::state::{Command, CommandResponse};

fn consensus_error(e: ProposeError) -> ConsensusError {
    match e {
        ProposeError::NotLeader { leader } => ConsensusError::NotLeader {
            leader: leader.map(|(_, address)| address),
        },
        other => ConsensusError::Unavailable(other.to_string()),
    }
}

impl Consensus for RaftNode {
    fn propose(&self, command: Command) -> BoxFuture<'_, Result<CommandResponse, ConsensusError>> {
        Box::pin(async move {
            RaftNode::propose(self, command)
                .await
                .map_err(consensus_error)
        })
    }

    fn read_barrier(&self) -> BoxFuture<'_, Result<(), ConsensusError>> {
        Box::pin(async move { RaftNode::read_barrier(self).await.map_err(consensus_error) })
    }

    fn last_contact(&self) -> Option<std::time::Duration> {
        self.last_leader_contact()
    }

    fn leadership(&self) -> watch::Receiver<bool> {
        RaftNode::leadership(self)
    }

    fn leader_address(&self) -> Option<String> {
        self.leader().map(|(_, address)| address)
    }

    fn stats(&self) -> serde_json::Value {
        stats_json(&RaftNode::stats(self))
    }
}

fn stats_json(s: &RaftStats) -> serde_json::Value {
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    // Nomad reports raft stats as strings.
    serde_json::json!({
        "node_id": s.node_id.to_string(),
        "state": s.role.as_str(),
        "term": s.term.to_string(),
        "leader_id": opt(s.leader_id),
        "last_log_index": opt(s.last_log_index),
        "commit_index": opt(s.commit_index),
        "applied_index": opt(s.applied_index),
        "last_snapshot_index": opt(s.last_snapshot_index),
        "last_snapshot_term": opt(s.last_snapshot_term),
        "num_peers": s.voters.len().saturating_sub(1).to_string(),
    })
}
