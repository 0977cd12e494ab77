//! `noded deployment list [-json] [-verbose]`.

use anyhow::anyhow;
use clap::Args;
use controlplane::model::Deployment;

use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::output::OutputArgs;
use super::super::Exit;

#[derive(Debug, Args)]
pub struct DeploymentList {
    /// Show full ids.
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    out: OutputArgs,
}

impl ApiCommand for DeploymentList {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let mut list: Vec<Deployment> = api
            .get_now("/v1/deployments", &[])
            .await
            .map_err(|e| anyhow!("Error retrieving deployments: {e}"))?;
        // Newest first, as Nomad lists them.
        list.sort_by(|a, b| b.create_index.cmp(&a.create_index).then(a.id.cmp(&b.id)));
        self.out
            .print(&list, |l| super::render_list(l, self.verbose))
    }
}
