//! `noded job scale [-detach] [-json] JOB [GROUP] COUNT`: change a group's count.

use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::Args;
use controlplane::server::JobRegisterResponse;

use super::super::global::ApiCommand;
use super::super::http::{urlencode, ApiClient};
use super::super::output::json;
use super::super::Exit;
use super::fetch_job;
use super::monitor::monitor;

const SCALE_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Args)]
pub struct JobScale {
    /// Return after scaling, without following the evaluation.
    #[arg(long)]
    detach: bool,
    /// Print the answer as JSON (implies -detach).
    #[arg(long)]
    json: bool,
    /// The job's ID (or a unique prefix).
    job: String,
    /// The group, then the count; the group may be left out when the job has only one.
    #[arg(num_args = 1..=2, required = true, value_name = "[GROUP] COUNT")]
    rest: Vec<String>,
}

impl ApiCommand for JobScale {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let (group, count) = match self.rest.as_slice() {
            [count] => (None, count),
            [group, count] => (Some(group.clone()), count),
            _ => bail!("usage: noded job scale JOB [GROUP] COUNT"),
        };
        let count: i64 = count
            .parse()
            .map_err(|_| anyhow!("Failed to convert count {count:?} to an integer"))?;
        let job = fetch_job(api, &self.job).await?;
        let group = match group {
            Some(g) => g,
            None if job.task_groups.len() == 1 => job.task_groups[0].name.clone(),
            None => bail!(
                "Group name required: job {:?} has {} groups ({}); name the one to scale",
                job.id,
                job.task_groups.len(),
                job.task_groups
                    .iter()
                    .map(|g| g.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let body = serde_json::json!({
            "Count": count,
            "Target": { "Group": group },
        });
        let response: JobRegisterResponse = api
            .put(&format!("/v1/job/{}/scale", urlencode(&job.id)), &body)
            .await
            .map_err(|e| anyhow!("Error submitting scaling request: {e}"))?;
        if self.json {
            println!("{}", json(&response)?);
            return Ok(Exit::Ok);
        }
        if !response.warnings.is_empty() {
            eprintln!("Job Warnings:\n{}\n", response.warnings);
        }
        if response.eval_id.is_empty() || self.detach {
            if !response.eval_id.is_empty() {
                println!("Evaluation ID: {}", response.eval_id);
            }
            return Ok(Exit::Ok);
        }
        monitor(api, &response.eval_id, job.job_type, SCALE_TIMEOUT).await
    }
}
