//! `noded deployment status [-monitor] [-verbose] [-json] ID`.

use std::time::Duration;

use clap::Args;
use controlplane::model::Deployment;

use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::output::OutputArgs;
use super::super::resolve::resolve;
use super::super::Exit;

/// How long `-monitor` follows a deployment (a progress deadline is 10 minutes by default).
const MONITOR_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, Args)]
pub struct DeploymentStatusCmd {
    /// Show full ids.
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    out: OutputArgs,
    /// Follow the deployment until it ends (exit 1 when it fails).
    #[arg(long)]
    monitor: bool,
    /// The deployment (id or unique prefix).
    deployment_id: String,
}

impl ApiCommand for DeploymentStatusCmd {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let d: Deployment = resolve(api, &self.deployment_id).await?;
        if self.monitor {
            return super::monitor::monitor_deployment(api, &d.id, self.verbose, MONITOR_TIMEOUT)
                .await;
        }
        self.out.print(&d, |d| super::render(d, self.verbose))
    }
}
