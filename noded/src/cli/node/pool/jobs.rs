//! `noded node pool jobs [-json] NAME`.

use anyhow::anyhow;
use clap::Args;
use controlplane::model::JobListStub;

use super::super::super::format::table;
use super::super::super::global::ApiCommand;
use super::super::super::http::ApiClient;
use super::super::super::output::OutputArgs;
use super::super::super::Exit;
use super::pool_path;

#[derive(Debug, Args)]
pub struct NodePoolJobs {
    #[command(flatten)]
    out: OutputArgs,
    /// The node pool's name.
    name: String,
}

impl ApiCommand for NodePoolJobs {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let jobs: Vec<JobListStub> = api
            .get_now(&format!("{}/jobs", pool_path(&self.name)), &[])
            .await
            .map_err(|e| anyhow!("Error listing node pool jobs: {e}"))?;
        self.out.print(&jobs, |jobs| {
            if jobs.is_empty() {
                return format!("No jobs in node pool {:?}\n", self.name);
            }
            let mut rows = vec![["ID", "Namespace", "Type", "Priority", "Status"]
                .map(String::from)
                .to_vec()];
            rows.extend(jobs.iter().map(|j| {
                vec![
                    j.id.clone(),
                    j.namespace.clone(),
                    j.job_type.as_str().into(),
                    j.priority.to_string(),
                    j.status.as_str().into(),
                ]
            }));
            table(&rows)
        })
    }
}
