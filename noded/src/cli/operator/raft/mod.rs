//! `noded operator raft ...`: the Raft peers of the region.

mod list_peers;
mod remove_peer;
mod transfer_leadership;

use clap::{Args, Subcommand};

use super::super::global::Api;
use super::super::Exit;

#[derive(Debug, Subcommand)]
pub enum RaftCommand {
    /// List the Raft peers.
    ListPeers(Api<list_peers::ListPeers>),
    /// Remove a peer from the Raft configuration.
    RemovePeer(Api<remove_peer::RemovePeer>),
    /// Hand leadership to another peer.
    TransferLeadership(Api<transfer_leadership::TransferLeadership>),
}

impl RaftCommand {
    pub async fn run(self) -> anyhow::Result<Exit> {
        match self {
            RaftCommand::ListPeers(c) => c.run().await,
            RaftCommand::RemovePeer(c) => c.run().await,
            RaftCommand::TransferLeadership(c) => c.run().await,
        }
    }
}

/// `-peer-address` or `-peer-id`, exactly one.
#[derive(Debug, Args)]
pub struct PeerArgs {
    /// The peer's Raft address (`ip:port`), as `list-peers` shows it.
    #[arg(long = "peer-address", conflicts_with = "peer_id")]
    peer_address: Option<String>,
    /// The peer's Raft ID, as `list-peers` shows it.
    #[arg(long = "peer-id")]
    peer_id: Option<String>,
}

impl PeerArgs {
    /// The query naming the peer, or an error saying to give one.
    fn query(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        match (&self.peer_address, &self.peer_id) {
            (Some(a), None) => Ok(vec![("address", a.clone())]),
            (None, Some(i)) => Ok(vec![("id", i.clone())]),
            _ => Err(anyhow::anyhow!(
                "Missing peer: give -peer-id=ID or -peer-address=IP:PORT (see `noded operator raft list-peers`)"
            )),
        }
    }
}
