//! `noded job periodic force [-detach] [-json] JOB`: launch a periodic job now.

use std::time::Duration;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use controlplane::model::JobListStub;
use controlplane::server::periodic::PeriodicForceResponse;

use super::super::global::{Api, ApiCommand};
use super::super::http::{urlencode, ApiClient};
use super::super::output::json;
use super::super::resolve::resolve;
use super::super::Exit;
use super::monitor::monitor;

const FORCE_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Subcommand)]
pub enum PeriodicCommand {
    /// Launch a periodic job now, whatever its schedule.
    Force(Api<PeriodicForce>),
}

impl PeriodicCommand {
    pub async fn run(self) -> anyhow::Result<Exit> {
        match self {
            PeriodicCommand::Force(c) => c.run().await,
        }
    }
}

#[derive(Debug, Args)]
pub struct PeriodicForce {
    /// Return after launching, without following the evaluation.
    #[arg(long)]
    detach: bool,
    /// Print the answer as JSON (implies -detach).
    #[arg(long)]
    json: bool,
    /// The periodic job's ID (or a unique prefix).
    job: String,
}

impl ApiCommand for PeriodicForce {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let job: JobListStub = resolve(api, &self.job).await?;
        let response: PeriodicForceResponse = api
            .put(
                &format!("/v1/job/{}/periodic/force", urlencode(&job.id)),
                &serde_json::json!({}),
            )
            .await
            .map_err(|e| anyhow!("Error forcing periodic job {:?}: {e}", job.id))?;
        if self.json {
            println!("{}", json(&response)?);
            return Ok(Exit::Ok);
        }
        if self.detach {
            println!("Force periodic successful");
            println!("Evaluation ID: {}", response.eval_id);
            return Ok(Exit::Ok);
        }
        monitor(api, &response.eval_id, job.job_type, FORCE_TIMEOUT).await
    }
}
