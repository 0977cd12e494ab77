//! `noded operator raft remove-peer -peer-id=ID | -peer-address=IP:PORT`.

use anyhow::anyhow;
use clap::Args;

use super::super::super::global::ApiCommand;
use super::super::super::http::ApiClient;
use super::super::super::Exit;
use super::PeerArgs;

#[derive(Debug, Args)]
pub struct RemovePeer {
    #[command(flatten)]
    peer: PeerArgs,
}

impl ApiCommand for RemovePeer {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let query = self.peer.query()?;
        let _: serde_json::Value = api
            .delete("/v1/operator/raft/peer", &query)
            .await
            .map_err(|e| anyhow!("Error removing peer: {e}"))?;
        println!("Removed peer with {}={}", query[0].0, query[0].1);
        Ok(Exit::Ok)
    }
}
