//! `noded node pool list [-json] [-prefix P]`.

use anyhow::anyhow;
use clap::Args;
use controlplane::model::NodePool;

use super::super::super::global::ApiCommand;
use super::super::super::http::ApiClient;
use super::super::super::output::OutputArgs;
use super::super::super::Exit;
use super::render_pools;

#[derive(Debug, Args)]
pub struct NodePoolList {
    #[command(flatten)]
    out: OutputArgs,
    /// Only pools whose name starts with this.
    #[arg(long, default_value = "")]
    prefix: String,
}

impl ApiCommand for NodePoolList {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let pools: Vec<NodePool> = api
            .get_now("/v1/node/pools", &[("prefix", self.prefix.clone())])
            .await
            .map_err(|e| anyhow!("Error listing node pools: {e}"))?;
        self.out.print(&pools, |p| render_pools(p))
    }
}
