//! `noded server force-leave [-prune] NAME`.

use anyhow::anyhow;
use clap::Args;

use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::Exit;

#[derive(Debug, Args)]
pub struct ForceLeave {
    /// Remove the failed or left server from the member list at once.
    #[arg(long)]
    prune: bool,
    /// The server's name, as `noded server members` shows it.
    node: String,
}

impl ApiCommand for ForceLeave {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let mut query = vec![("node", self.node.clone())];
        if self.prune {
            query.push(("prune", "true".to_string()));
        }
        let _: serde_json::Value = api
            .put_query::<(), _>("/v1/agent/force-leave", &query, None)
            .await
            .map_err(|e| anyhow!("Error force-leaving server {}: {e}", self.node))?;
        Ok(Exit::Ok)
    }
}
