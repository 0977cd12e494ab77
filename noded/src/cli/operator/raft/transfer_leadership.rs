//! `noded operator raft transfer-leadership -peer-id=ID | -peer-address=IP:PORT`.

use anyhow::anyhow;
use clap::Args;

use super::super::super::global::ApiCommand;
use super::super::super::http::ApiClient;
use super::super::super::Exit;
use super::PeerArgs;

#[derive(Debug, Args)]
pub struct TransferLeadership {
    #[command(flatten)]
    peer: PeerArgs,
}

impl ApiCommand for TransferLeadership {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let query = self.peer.query()?;
        let reply: serde_json::Value = api
            .put_query::<(), _>("/v1/operator/raft/transfer-leadership", &query, None)
            .await
            .map_err(|e| anyhow!("Error transferring leadership: {e}"))?;
        let to = reply["To"]["Address"].as_str().unwrap_or(&query[0].1);
        println!("Transferred leadership to peer {to}");
        Ok(Exit::Ok)
    }
}
