//! `noded job allocs [-all] [-json] [-verbose] JOB`: a job's allocations.

use anyhow::anyhow;
use clap::Args;
use controlplane::model::AllocListStub;

use super::super::format::{ago, short, table};
use super::super::global::ApiCommand;
use super::super::http::{urlencode, ApiClient};
use super::super::output::OutputArgs;
use super::super::Exit;
use super::fetch_job;

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
        self.out.print(&allocs, |allocs| render(allocs, verbose))
    }
}

fn render(allocs: &[AllocListStub], verbose: bool) -> String {
    if allocs.is_empty() {
        return "No allocations placed\n".to_string();
    }
    let id = |s: &str| {
        if verbose {
            s.to_string()
        } else {
            short(s).to_string()
        }
    };
    let mut rows = vec![[
        "ID",
        "Node ID",
        "Task Group",
        "Version",
        "Desired",
        "Status",
        "Created",
        "Modified",
    ]
    .map(String::from)
    .to_vec()];
    rows.extend(allocs.iter().map(|a| {
        vec![
            id(&a.id),
            id(&a.node_id),
            a.task_group.clone(),
            a.job_version.to_string(),
            a.desired_status.as_str().into(),
            a.client_status.as_str().into(),
            ago(a.create_time),
            ago(a.modify_time),
        ]
    }));
    table(&rows)
}
