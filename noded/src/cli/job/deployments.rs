//! `noded job deployments [-latest] [-json] [-verbose] JOB`.

use anyhow::anyhow;
use clap::Args;
use controlplane::model::{Deployment, JobListStub};

use super::super::deployment::{render, render_list};
use super::super::global::ApiCommand;
use super::super::http::{urlencode, ApiClient};
use super::super::output::OutputArgs;
use super::super::resolve::resolve;
use super::super::Exit;

#[derive(Debug, Args)]
pub struct JobDeployments {
    /// Show only the newest deployment.
    #[arg(long)]
    latest: bool,
    /// Show full ids.
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    out: OutputArgs,
    /// The job (id or unique prefix).
    job: String,
}

impl ApiCommand for JobDeployments {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let job: JobListStub = resolve(api, &self.job).await?;
        if self.latest {
            let latest: Option<Deployment> = api
                .get_now(&format!("/v1/job/{}/deployment", urlencode(&job.id)), &[])
                .await
                .map_err(|e| anyhow!("Error retrieving deployments: {e}"))?;
            return self.out.print(&latest, |d| match d {
                Some(d) => render(d, self.verbose),
                None => format!("Job {:?} has no deployment\n", job.id),
            });
        }
        let list: Vec<Deployment> = api
            .get_now(&format!("/v1/job/{}/deployments", urlencode(&job.id)), &[])
            .await
            .map_err(|e| anyhow!("Error retrieving deployments: {e}"))?;
        self.out.print(&list, |l| render_list(l, self.verbose))
    }
}
