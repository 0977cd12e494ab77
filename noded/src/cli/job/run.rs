//! `noded job run`: submit a jobspec and follow it.

use anyhow::anyhow;
use clap::Args;
use controlplane::jobspec;
use controlplane::server::JobRegisterResponse;

use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::output::json;
use super::super::Exit;
use super::monitor::monitor;
use super::spec::SpecArgs;

#[derive(Debug, Args)]
pub struct JobRun {
    #[command(flatten)]
    spec: SpecArgs,
    /// Return after submitting, without monitoring.
    #[arg(long)]
    detach: bool,
    /// Print the job as API JSON instead of submitting it.
    #[arg(long)]
    output: bool,
    /// Give up monitoring after this long (the job keeps running).
    #[arg(long = "monitor-timeout", default_value = "10m")]
    monitor_timeout: String,
    /// Register only if the job's modify index on the servers is still this one (as `job
    /// plan` printed it; 0 registers only a job that does not exist yet).
    #[arg(long = "check-index")]
    check_index: Option<u64>,
}

impl ApiCommand for JobRun {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let timeout = controlplane::model::duration::parse_go(&self.monitor_timeout)
            .map_err(|e| anyhow!("-monitor-timeout: {e}"))?;
        let job = self.spec.load_job()?;
        if self.output {
            println!("{}", json(&jobspec::to_api_json(&job))?);
            return Ok(Exit::Ok);
        }
        let body = match self.check_index {
            Some(index) => serde_json::json!({
                "Job": job,
                "EnforceIndex": true,
                "JobModifyIndex": index,
            }),
            None => serde_json::json!({ "Job": job }),
        };
        let response: JobRegisterResponse = match api.put("/v1/jobs", &body).await {
            Ok(r) => r,
            Err(e) if is_index_conflict(&e.to_string()) => {
                // The servers' words name both indexes; nothing was registered.
                eprintln!("{e}");
                eprintln!("Job not updated: plan it again (noded job plan) to see what changed, then run with the new index");
                return Ok(Exit::Code(1));
            }
            Err(e) => return Err(anyhow!("Error submitting job: {e}")),
        };
        if !response.warnings.is_empty() {
            eprintln!("Job Warnings:\n{}", response.warnings);
        }
        if job.is_parent() {
            // A periodic or parameterized job is not evaluated itself (as in Nomad): there
            // is nothing to follow until it launches or is dispatched.
            println!("Job registration successful");
            if job.is_periodic() {
                println!("Approximate next launch time: {}", next_launch_line(&job));
            }
            return Ok(Exit::Ok);
        }
        if self.detach {
            println!("Job registration successful");
            println!("Evaluation ID: {}", response.eval_id);
            return Ok(Exit::Ok);
        }
        monitor(api, &response.eval_id, job.job_type, timeout).await
    }
}

/// Whether a registration was refused by `-check-index` (Nomad's "Enforcing job modify
/// index" error).
fn is_index_conflict(message: &str) -> bool {
    message
        .to_lowercase()
        .contains("enforcing job modify index")
}

/// When a just-registered periodic job first launches, as `job run` tells it.
fn next_launch_line(job: &controlplane::model::Job) -> String {
    let now = controlplane::model::now_unix_nanos();
    let zone = controlplane::server::periodic::local_zone_name();
    match controlplane::server::periodic::next_launch(job, now, &zone) {
        Ok(Some(next)) => super::super::format::timestamp(next),
        Ok(None) => "none (the schedule never runs again)".into(),
        Err(e) => format!("unknown: {e}"),
    }
}
