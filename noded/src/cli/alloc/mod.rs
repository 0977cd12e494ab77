//! `noded alloc ...`.

mod checks;
mod exec;
mod frames;
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
use super::http::{urlencode, ApiClient};
use super::job::fetch_job;
use super::resolve::resolve;
use super::Exit;

/// How the verbs that read or act on a running task reach it (shown by `alloc --help` and
/// theirs).
pub const NODE_HELP: &str =
    "logs, fs, exec, signal, restart, checks and status -stats are answered by \
the node that runs the allocation: the CLI asks the agent at -address (NODED_ADDR) for the \
allocation's node, then talks to that node's advertised HTTP address directly. When the node \
cannot be reached (connection refused, or no connection within 1 s) the request goes to \
-address instead, which answers it only if it runs that node's client.";

#[derive(Debug, Subcommand)]
pub enum AllocCommand {
    /// Show an allocation and its tasks' events.
    Status(Api<status::AllocStatus>),
    /// Print a task's stdout (or stderr).
    #[command(after_help = NODE_HELP)]
    Logs(Api<logs::AllocLogs>),
    /// Send a signal to a task (or to every running task).
    #[command(after_help = NODE_HELP)]
    Signal(Api<signal::AllocSignal>),
    /// Restart a task (or every running task) in place, outside its restart policy.
    #[command(after_help = NODE_HELP)]
    Restart(Api<restart::AllocRestart>),
    /// Run a command inside a running task (same namespaces, root, cgroup, user, seccomp).
    #[command(after_help = NODE_HELP)]
    Exec(Api<exec::AllocExec>),
    /// List a directory, print a file, or follow a file (-f) of the allocation.
    ///
    /// PATH is relative to the allocation directory (default: its root): alloc/logs holds
    /// the tasks' stdout and stderr, <task>/local a task's own files. -tail prints the end
    /// (10 lines, or -n lines, or -c bytes), -f keeps printing what is written until
    /// interrupted or the file is deleted.
    #[command(after_help = NODE_HELP)]
    Fs(Api<fs::AllocFs>),
    /// Stop an allocation; the scheduler places a replacement.
    Stop(Api<stop::AllocStop>),
    /// Show the latest result of each service check of an allocation.
    #[command(after_help = NODE_HELP)]
    Checks(Api<checks::AllocChecks>),
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
            AllocCommand::Checks(c) => c.run().await,
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

/// `-job`: one of the job's allocations (in `group` when given), a running one if any, else
/// the first (Nomad picks at random among them; a fixed pick keeps runs repeatable).
async fn alloc_of_job(
    api: &ApiClient,
    prefix: &str,
    group: Option<&str>,
) -> anyhow::Result<Allocation> {
    let job = fetch_job(api, prefix).await?;
    let mut allocs: Vec<AllocListStub> = api
        .get_now(&format!("/v1/job/{}/allocations", urlencode(&job.id)), &[])
        .await
        .map_err(|e| {
            anyhow!(
                "Error fetching allocations: error querying job {:?}: {e}",
                job.id
            )
        })?;
    if allocs.is_empty() {
        bail!("job {:?} doesn't exist or it has no allocations", job.id);
    }
    if let Some(group) = group {
        allocs.retain(|a| a.task_group == group);
        if allocs.is_empty() {
            bail!("task group {group:?} doesn't exist or it has no allocations");
        }
    }
    let pick = allocs
        .iter()
        .find(|a| a.client_status.as_str() == "running")
        .unwrap_or(&allocs[0]);
    fetch_alloc(api, &pick.id).await
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
