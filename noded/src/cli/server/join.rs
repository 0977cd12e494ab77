//! `noded server join ADDR...`.

use anyhow::anyhow;
use clap::Args;

use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::Exit;

#[derive(Debug, Args)]
pub struct Join {
    /// Addresses (`ip:port`) of servers to join.
    #[arg(required = true)]
    addresses: Vec<String>,
}

#[derive(serde::Deserialize)]
struct JoinReply {
    num_joined: usize,
    error: String,
}

impl ApiCommand for Join {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let query: Vec<(&str, String)> = self
            .addresses
            .iter()
            .map(|a| ("address", a.clone()))
            .collect();
        let reply: JoinReply = api
            .put_query::<(), _>("/v1/agent/join", &query, None)
            .await
            .map_err(|e| anyhow!("Error joining: {e}"))?;
        if reply.num_joined == 0 {
            return Err(anyhow!("Error joining: {}", reply.error));
        }
        if !reply.error.is_empty() {
            eprintln!("Some servers were not joined: {}", reply.error);
        }
        println!("Joined {} servers successfully", reply.num_joined);
        Ok(Exit::Ok)
    }
}
