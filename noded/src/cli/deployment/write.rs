//! `noded deployment promote|fail|pause|resume|unblock ID` and `noded job promote JOB`: the
//! operator's writes, each answering Nomad's `DeploymentUpdateResponse`; promote and fail
//! follow the evaluation they start unless `-detach`.

use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::Args;
use controlplane::model::{Deployment, JobType};
use controlplane::server::deployments::DeploymentUpdateResponse;

use super::super::format::short;
use super::super::global::ApiCommand;
use super::super::http::{urlencode, ApiClient};
use super::super::resolve::resolve;
use super::super::Exit;

const FOLLOW_TIMEOUT: Duration = Duration::from_secs(600);

async fn post<B: serde::Serialize>(
    api: &ApiClient,
    verb: &str,
    d: &Deployment,
    body: &B,
    what: &str,
) -> anyhow::Result<DeploymentUpdateResponse> {
    api.put(&format!("/v1/deployment/{verb}/{}", urlencode(&d.id)), body)
        .await
        .map_err(|e| anyhow!("Error {what} deployment: {e}"))
}

/// Follows the evaluation a write started, as `job run` does.
async fn follow(
    api: &ApiClient,
    r: &DeploymentUpdateResponse,
    detach: bool,
) -> anyhow::Result<Exit> {
    if detach || r.eval_id.is_empty() {
        if !r.eval_id.is_empty() {
            println!("Evaluation ID: {}", r.eval_id);
        }
        return Ok(Exit::Ok);
    }
    super::super::job::monitor::monitor(api, &r.eval_id, JobType::Service, FOLLOW_TIMEOUT).await
}

#[derive(Debug, Args)]
pub struct DeploymentPromote {
    /// Promote only this group's canaries (repeatable); all groups without it.
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// Return once promoted, without following the evaluation.
    #[arg(long)]
    detach: bool,
    /// Show full ids.
    #[arg(long)]
    verbose: bool,
    /// The deployment (id or unique prefix).
    deployment_id: String,
}

async fn promote(
    api: &ApiClient,
    d: &Deployment,
    groups: Vec<String>,
    detach: bool,
) -> anyhow::Result<Exit> {
    let body = serde_json::json!({
        "DeploymentID": d.id,
        "All": groups.is_empty(),
        "Groups": groups,
    });
    let r = post(api, "promote", d, &body, "promoting").await?;
    follow(api, &r, detach).await
}

impl ApiCommand for DeploymentPromote {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let d: Deployment = resolve(api, &self.deployment_id).await?;
        let _ = self.verbose;
        promote(api, &d, self.groups, self.detach).await
    }
}

/// `noded job promote [-group G]... [-detach] JOB`: promotes the job's newest deployment.
#[derive(Debug, Args)]
pub struct JobPromote {
    /// Promote only this group's canaries (repeatable); all groups without it.
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// Return once promoted, without following the evaluation.
    #[arg(long)]
    detach: bool,
    /// Show full ids.
    #[arg(long)]
    verbose: bool,
    /// The job.
    job: String,
}

impl ApiCommand for JobPromote {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let job: controlplane::model::JobListStub = resolve(api, &self.job).await?;
        let _ = self.verbose;
        promote_latest(api, &job.id, self.groups, self.detach).await
    }
}

/// Promotes the newest deployment of `job` (Nomad's words when it has none).
pub async fn promote_latest(
    api: &ApiClient,
    job: &str,
    groups: Vec<String>,
    detach: bool,
) -> anyhow::Result<Exit> {
    let latest: Option<Deployment> = api
        .get_now(&format!("/v1/job/{}/deployment", urlencode(job)), &[])
        .await
        .map_err(|e| anyhow!("Error retrieving deployment: {e}"))?;
    let Some(d) = latest else {
        bail!("Job {job:?} has no deployment to promote");
    };
    promote(api, &d, groups, detach).await
}

#[derive(Debug, Args)]
pub struct DeploymentFail {
    /// Return once failed, without following the evaluation.
    #[arg(long)]
    detach: bool,
    /// Show full ids.
    #[arg(long)]
    verbose: bool,
    /// The deployment (id or unique prefix).
    deployment_id: String,
}

impl ApiCommand for DeploymentFail {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let d: Deployment = resolve(api, &self.deployment_id).await?;
        let r = post(
            api,
            "fail",
            &d,
            &serde_json::json!({"DeploymentID": d.id}),
            "failing",
        )
        .await?;
        let mut msg = format!("Deployment {:?} failed", short(&d.id));
        if let Some(v) = r.reverted_job_version {
            msg.push_str(&format!(". Reverted job to version {v}."));
        }
        println!("{msg}");
        follow(api, &r, self.detach).await
    }
}

#[derive(Debug, Args)]
pub struct DeploymentPause {
    /// Show full ids.
    #[arg(long)]
    verbose: bool,
    /// The deployment (id or unique prefix).
    deployment_id: String,
}

impl ApiCommand for DeploymentPause {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let d: Deployment = resolve(api, &self.deployment_id).await?;
        let body = serde_json::json!({"DeploymentID": d.id, "Pause": true});
        post(api, "pause", &d, &body, "pausing").await?;
        println!("Deployment {:?} paused", short(&d.id));
        Ok(Exit::Ok)
    }
}

#[derive(Debug, Args)]
pub struct DeploymentResume {
    /// Return once resumed, without following the evaluation.
    #[arg(long)]
    detach: bool,
    /// Show full ids.
    #[arg(long)]
    verbose: bool,
    /// The deployment (id or unique prefix).
    deployment_id: String,
}

impl ApiCommand for DeploymentResume {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let d: Deployment = resolve(api, &self.deployment_id).await?;
        let body = serde_json::json!({"DeploymentID": d.id, "Pause": false});
        let r = post(api, "pause", &d, &body, "resuming").await?;
        println!("Deployment {:?} resumed", short(&d.id));
        follow(api, &r, self.detach).await
    }
}

#[derive(Debug, Args)]
pub struct DeploymentUnblock {
    /// Show full ids.
    #[arg(long)]
    verbose: bool,
    /// The deployment (id or unique prefix).
    deployment_id: String,
}

impl ApiCommand for DeploymentUnblock {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let d: Deployment = resolve(api, &self.deployment_id).await?;
        let body = serde_json::json!({"DeploymentID": d.id});
        post(api, "unblock", &d, &body, "unblocking").await?;
        println!("Deployment {:?} unblocked", short(&d.id));
        Ok(Exit::Ok)
    }
}
