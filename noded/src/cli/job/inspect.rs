//! `noded job inspect`: a job (or one of its kept versions) as API JSON.

use anyhow::anyhow;
use clap::Args;
use controlplane::jobspec;
use controlplane::model::Job;

use super::super::global::ApiCommand;
use super::super::http::{urlencode, ApiClient};
use super::super::output::json;
use super::super::Exit;
use super::fetch_job;

#[derive(Debug, Args)]
pub struct JobInspect {
    /// Accepted for Nomad's sake: the output is JSON either way.
    #[arg(long)]
    json: bool,
    /// An older version of the job.
    #[arg(long)]
    version: Option<u64>,
    id: String,
}

impl ApiCommand for JobInspect {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let job = fetch_job(api, &self.id).await?;
        let job = match self.version {
            None => job,
            Some(v) => version_of(api, &job, v).await?,
        };
        println!("{}", json(&jobspec::to_api_json(&job))?);
        Ok(Exit::Ok)
    }
}

/// Version `version` of `job`, from the versions the servers keep.
async fn version_of(api: &ApiClient, job: &Job, version: u64) -> anyhow::Result<Job> {
    let versions: serde_json::Value = api
        .get_now(&format!("/v1/job/{}/versions", urlencode(&job.id)), &[])
        .await
        .map_err(|e| anyhow!("Error querying job versions: {e}"))?;
    let list: Vec<Job> = serde_json::from_value(versions["Versions"].clone())
        .map_err(|e| anyhow!("the agent's job versions are not readable: {e}"))?;
    let available: Vec<String> = list.iter().map(|j| j.version.to_string()).collect();
    list.into_iter()
        .find(|j| j.version == version)
        .ok_or_else(|| {
            anyhow!(
                "job {:?} has no version {version} (kept versions: {})",
                job.id,
                available.join(", ")
            )
        })
}
