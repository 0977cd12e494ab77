//! `noded node pool info [-json] NAME`.

use anyhow::anyhow;
use clap::Args;
use controlplane::model::NodePool;

use super::super::super::global::ApiCommand;
use super::super::super::http::ApiClient;
use super::super::super::output::OutputArgs;
use super::super::super::Exit;
use super::{pool_path, render_pool};

#[derive(Debug, Args)]
pub struct NodePoolInfo {
    #[command(flatten)]
    out: OutputArgs,
    /// The node pool's name.
    name: String,
}

impl ApiCommand for NodePoolInfo {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let pool: NodePool = api
            .get_now(&pool_path(&self.name), &[])
            .await
            .map_err(|e| anyhow!("Error reading node pool: {e}"))?;
        self.out.print(&pool, render_pool)
    }
}
