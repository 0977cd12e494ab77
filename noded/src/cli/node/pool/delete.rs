//! `noded node pool delete NAME`.

use anyhow::anyhow;
use clap::Args;

use super::super::super::global::ApiCommand;
use super::super::super::http::ApiClient;
use super::super::super::Exit;
use super::pool_path;

#[derive(Debug, Args)]
pub struct NodePoolDelete {
    /// The node pool's name.
    name: String,
}

impl ApiCommand for NodePoolDelete {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let _: serde_json::Value = api
            .delete(&pool_path(&self.name), &[])
            .await
            .map_err(|e| anyhow!("Error deleting node pool: {e}"))?;
        println!("Successfully deleted node pool {:?}!", self.name);
        Ok(Exit::Ok)
    }
}
