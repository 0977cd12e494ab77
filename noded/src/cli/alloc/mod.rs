//! `noded alloc ...`.

mod exec;
mod fs;
mod logs;
mod restart;
mod signal;
mod status;
mod stop;

use anyhow::{anyhow, bail};
use clap::Subcommand;
use controlplane::model::{AllocListStub, Allocation};

use super::format::short;
use super::global::Api;
use super::http::ApiClient;
use super::resolve::resolve;
use super::Exit;

#[derive(Debug, Subcommand)]
pub enum AllocCommand {
    /// Show an allocation and its tasks' events.
    Status(Api<status::AllocStatus>),
    /// Print a task's stdout (or stderr).
    Logs(Api<logs::AllocLogs>),
    /// Send a signal to a task (or to every running task).
    Signal(Api<signal::AllocSignal>),
    /// Restart a task (or every running task) in place, outside its restart policy.
    Restart(Api<restart::AllocRestart>),
    /// Run a command inside a running task (same namespaces, root, cgroup, user, seccomp).
    Exec(Api<exec::AllocExec>),
    /// List a directory or print a file of the allocation.
    Fs(Api<fs::AllocFs>),
    /// Stop an allocation; the scheduler places a replacement.
    Stop(Api<stop::AllocStop>),
}

impl AllocCommand {
    pub async fn run(self) -> anyhow::Result<Exit> {
        match self {
            AllocCommand::Status(c) => c.run().await,
            AllocCommand::Logs(c) => c.run().await,
            AllocCommand::Signal(c) => c.run().await,
            AllocCommand::Restart(c) => c.run().await,
            AllocCommand::Exec(c) => c.run().await,
            AllocCommand::Fs(c) => c.run().await,
            AllocCommand::Stop(c) => c.run().await,
        }
    }
}

/// The allocation `prefix` names (an exact id wins), read whole.
async fn fetch_alloc(api: &ApiClient, prefix: &str) -> anyhow::Result<Allocation> {
    let stub: AllocListStub = resolve(api, prefix).await?;
    api.get_now(&format!("/v1/allocation/{}", stub.id), &[])
        .await
        .map_err(|e| anyhow!("Error querying allocation: {e}"))
}

/// The task a command means: the one named, or the group's only task.
fn task_of(alloc: &Allocation, named: Option<&str>) -> anyhow::Result<String> {
    if let Some(task) = named {
        return Ok(task.to_string());
    }
    let tasks: Vec<String> = alloc
        .job
        .as_ref()
        .and_then(|j| j.group(&alloc.task_group))
        .map(|g| g.tasks.iter().map(|t| t.name.clone()).collect())
        .unwrap_or_default();
    match tasks.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("allocation {} has no tasks", short(&alloc.id)),
        many => bail!(
            "allocation {} has several tasks; name one ({})",
            short(&alloc.id),
            many.join(", ")
        ),
    }
}
