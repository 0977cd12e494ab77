//! `noded job ...`.

mod allocs;
mod children;
mod deployments;
pub mod diff;
mod dispatch;
mod eval;
pub mod history;
mod init;
mod inspect;
pub(crate) mod monitor;
mod periodic;
pub mod plan;
mod revert;
mod run;
mod scale;
mod spec;
pub(super) mod status;
mod stop;
mod tag;
mod validate;

use clap::Subcommand;

use super::global::Api;
use super::Exit;

pub use monitor::EXIT_PLACEMENT;

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submit a job and follow it until it runs (service) or finishes (batch).
    Run(Api<run::JobRun>),
    /// Check a jobspec without submitting it.
    Validate(validate::JobValidate),
    /// Show all jobs, or one job's status and allocations.
    Status(Api<status::JobStatus>),
    /// Stop a job (and with -purge, forget it).
    Stop(Api<stop::JobStop>),
    /// Print a job as API JSON.
    Inspect(Api<inspect::JobInspect>),
    /// Write an example jobspec.
    Init(init::JobInit),
    /// Create a new evaluation of a job (optionally force-rescheduling its failed
    /// allocations) and follow it.
    Eval(Api<eval::JobEval>),
    /// Show a job's allocations.
    Allocs(Api<allocs::JobAllocs>),
    /// Start an instance of a parameterized job.
    Dispatch(Api<dispatch::JobDispatch>),
    /// Act on a periodic job (`periodic force`).
    #[command(subcommand)]
    Periodic(periodic::PeriodicCommand),
    /// Change the count of a job's group.
    Scale(Api<scale::JobScale>),
    /// Register a kept version of a job again (by number or tag), as a new version.
    Revert(Api<revert::JobRevert>),
    /// Name a version of a job (`tag apply`), or remove its name (`tag unset`).
    #[command(subcommand)]
    Tag(tag::TagCommand),
    /// Show what submitting a jobspec would change, from a dry run of the scheduler.
    Plan(Api<plan::JobPlan>),
    /// Show a job's versions, and with -p what each changed.
    History(Api<history::JobHistory>),
    /// Promote the canaries of a job's newest deployment.
    Promote(Api<super::deployment::JobPromote>),
    /// List a job's deployments (-latest: only the newest).
    Deployments(Api<deployments::JobDeployments>),
}

impl JobCommand {
    pub async fn run(self) -> anyhow::Result<Exit> {
        match self {
            JobCommand::Run(c) => c.run().await,
            JobCommand::Validate(c) => c.run(),
            JobCommand::Status(c) => c.run().await,
            JobCommand::Stop(c) => c.run().await,
            JobCommand::Inspect(c) => c.run().await,
            JobCommand::Init(c) => c.run(),
            JobCommand::Eval(c) => c.run().await,
            JobCommand::Allocs(c) => c.run().await,
            JobCommand::Dispatch(c) => c.run().await,
            JobCommand::Periodic(c) => c.run().await,
            JobCommand::Scale(c) => c.run().await,
            JobCommand::Revert(c) => c.run().await,
            JobCommand::Tag(c) => c.run().await,
            JobCommand::Plan(c) => c.run().await,
            JobCommand::History(c) => c.run().await,
            JobCommand::Promote(c) => c.run().await,
            JobCommand::Deployments(c) => c.run().await,
        }
    }
}

/// The job `prefix` names (an exact id wins), read whole.
pub(super) async fn fetch_job(
    api: &super::http::ApiClient,
    prefix: &str,
) -> anyhow::Result<controlplane::model::Job> {
    let stub: controlplane::model::JobListStub = super::resolve::resolve(api, prefix).await?;
    api.get_now(
        &format!("/v1/job/{}", super::http::urlencode(&stub.id)),
        &[],
    )
    .await
    .map_err(|e| anyhow::anyhow!("Error querying job: {e}"))
}
