//! `noded job allocs [-all] [-json] [-verbose] JOB`: a job's allocations.

use anyhow::anyhow;
use clap::Args;
use controlplane::model::AllocListStub;

use super::super::global::ApiCommand;
use super::super::http::{urlencode, ApiClient};
use super::super::output::OutputArgs;
use super::super::Exit;
use super::fetch_job;
use super::status::render_allocs;

#[derive(Debug, Args)]
pub struct JobAllocs {
    /// Also allocations of an earlier job with the same id (as Nomad's `-all`).
    #[arg(long)]
    all: bool,
    /// Show full ids.
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    out: OutputArgs,
    /// The job's ID (or a unique prefix).
    job: String,
}

impl ApiCommand for JobAllocs {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let job = fetch_job(api, &self.job).await?;
        let query = if self.all {
            vec![("all", "true".to_string())]
        } else {
            vec![]
        };
        let allocs: Vec<AllocListStub> = api
            .get_now(
                &format!("/v1/job/{}/allocations", urlencode(&job.id)),
                &query,
            )
            .await
            .map_err(|e| anyhow!("Error retrieving allocations: {e}"))?;
        let verbose = self.verbose;
        self.out
            .print(&allocs, |allocs| render_allocs(allocs, verbose))
    }
}
