//! `noded job eval`: a new evaluation of a job, followed like `job run`.

use std::time::Duration;

use anyhow::anyhow;
use clap::Args;

use super::super::global::ApiCommand;
use super::super::http::{urlencode, ApiClient};
use super::super::output::json;
use super::super::Exit;
use super::monitor::monitor;

#[derive(Debug, Args)]
pub struct JobEval {
    /// Reschedule the job's failed allocations even if their reschedule policy is spent.
    #[arg(long = "force-reschedule")]
    force_reschedule: bool,
    /// Return after creating the evaluation, without monitoring.
    #[arg(long)]
    detach: bool,
    /// Print the evaluation's answer as JSON (implies -detach).
    #[arg(long)]
    json: bool,
    /// Show full ids.
    #[arg(long)]
    verbose: bool,
    /// The job (id or unique prefix).
    job: String,
}

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct Evaluated {
    #[serde(rename = "EvalID")]
    eval_id: String,
    eval_create_index: u64,
    job_modify_index: u64,
}

impl ApiCommand for JobEval {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let job = super::fetch_job(api, &self.job).await?;
        let body = serde_json::json!({
            "JobID": job.id,
            "EvalOptions": { "ForceReschedule": self.force_reschedule },
        });
        let evaluated: Evaluated = api
            .put(&format!("/v1/job/{}/evaluate", urlencode(&job.id)), &body)
            .await
            .map_err(|e| anyhow!("Error evaluating job: {e}"))?;
        if self.json {
            println!("{}", json(&evaluated)?);
            return Ok(Exit::Ok);
        }
        if self.detach {
            println!("Created eval ID: {:?}", evaluated.eval_id);
            return Ok(Exit::Ok);
        }
        let _ = self.verbose;
        monitor(
            api,
            &evaluated.eval_id,
            job.job_type,
            Duration::from_secs(600),
        )
        .await
    }
}
