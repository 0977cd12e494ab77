//! The per-node task supervisor: a small, long-lived process (`noded supervisor`) that starts
//! every task through `isolation`, owns its stdout/stderr pipes and rotating log files, reaps
//! it, keeps its exit status and removes its cgroup. The node daemon talks to it over a unix
//! socket ([`protocol`]), so killing or upgrading the node daemon leaves tasks running; a new
//! node daemon lists the supervisor's tasks and reattaches.
//!
//! One per node rather than one per task: a task costs a table entry, two pipes and two small
//! buffers here (Nomad spends two helper processes of 15–20 MB per task). The loop is
//! single-threaded; blocking cgroup removal runs on a helper thread.
//!
//! Owns processes and their output; must not know about jobs or talk to servers.
//!
//! Layout: this file starts the process ([`run`]) and holds the state every part shares
//! ([`Supervisor`]); `server` answers the socket, `tasks` is the task table and each task's
//! lifecycle, `exec` the `alloc exec` sessions, `reaper` the one place that waits for
//! children, `spec` turns a launch into a `SandboxSpec`, and `background` is the low-priority
//! thread for work no request waits for. The children use what this file defines; siblings
//! use each other in one direction only (`server` → `tasks`, `exec` → `tasks`, `reaper` →
//! `tasks`/`exec`).

pub mod client;

pub mod logsink;
pub mod logwriter;
pub mod protocol;

mod background;
mod exec;
mod reaper;
mod server;
mod spec;
mod tasks;

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::rc::Rc;

use anyhow::Context;
use isolation::cgroup::{CgroupLayout, CgroupManager};
use isolation::sandbox;

use background::Background;
use exec::ExecEntry;
use protocol::Response;
use tasks::TaskEntry;

pub use spec::{cgroup_limits, sandbox_spec, HOST_SECRET_PATHS};

/// Default name of the cgroup parent every task cgroup lives under.
pub const CGROUP_PARENT: &str = "noded";
/// Most tasks one supervisor runs.
const MAX_TASKS: usize = 10_000;
/// Most `alloc exec` sessions running at once.
const MAX_EXECS: usize = 256;

/// What the parts of the supervisor share: the tables of tasks and exec sessions, the cgroup
/// manager and the background thread. Single-threaded (the runtime is), hence `RefCell`.
struct Supervisor {
    tasks: RefCell<HashMap<String, Rc<TaskEntry>>>,
    execs: RefCell<HashMap<String, Rc<ExecEntry>>>,
    /// Running tasks and exec sessions by the pid of their process, for the reaper.
    by_pid: RefCell<HashMap<i32, Child>>,
    cgroups: CgroupManager,
    staging_dir: PathBuf,
    background: Background,
}

/// A direct child of the supervisor the reaper knows by pid.
enum Child {
    Task(Rc<TaskEntry>),
    Exec(Rc<ExecEntry>),
}

/// An error answer that names no step.
fn err(message: impl Into<String>) -> Response {
    Response::Error {
        step: None,
        message: message.into(),
        permanent: false,
    }
}

/// An error answer naming the step that failed (a caller shows it; trying again may help).
fn step_err(step: &str, message: impl Into<String>) -> Response {
    Response::Error {
        step: Some(step.to_string()),
        message: message.into(),
        permanent: false,
    }
}

/// The answer for a sandbox that did not start: the kernel step that failed, and whether
/// trying again can help.
fn spawn_err(e: &sandbox::SpawnError) -> Response {
    Response::Error {
        step: e.step().map(|s| s.phrase().to_string()),
        message: e.to_string(),
        permanent: e.is_permanent(),
    }
}

/// Runs the supervisor until its socket is gone or (with `exit_with_parent`) its parent exits.
pub fn run(
    socket: PathBuf,
    state_dir: PathBuf,
    cgroup_parent: &str,
    exit_with_parent: bool,
) -> anyhow::Result<()> {
    init_logging();
    crate::sys::become_subreaper().context("becoming a child subreaper")?;
    let staging_dir = state_dir.join("rootfs");
    for dir in [&state_dir, &staging_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let layout = CgroupLayout::detect().context("detecting the cgroup layout")?;
    let cgroups = CgroupManager::new(layout, cgroup_parent)
        .with_context(|| format!("preparing the cgroup parent {cgroup_parent:?}"))?;
    // Held for this process's life: a second supervisor on the parent stops here, before it
    // touches the socket or anybody's tasks.
    let _claim = cgroups
        .claim_parent()
        .context("claiming the cgroup parent")?;
    stop_orphaned_tasks(&cgroups);
    let parent_pidfd = if exit_with_parent {
        let ppid = nix::unistd::getppid().as_raw();
        Some(crate::sys::pidfd_open(ppid).context("watching the parent process")?)
    } else {
        None
    };
    // Plain tokio or tokio-uring, by the log writer (see `logsink`); either is one thread.
    let runtime = logsink::SupervisorRuntime::start(logsink::LogBackend::configured()?)
        .context("starting the supervisor's runtime")?;
    let supervisor = Rc::new(Supervisor {
        tasks: RefCell::new(HashMap::new()),
        execs: RefCell::new(HashMap::new()),
        by_pid: RefCell::new(HashMap::new()),
        cgroups,
        staging_dir,
        background: Background::start().context("starting the supervisor's background thread")?,
    });
    runtime.block_on(async move {
        let listener = server::listen(&socket)?;
        tracing::info!(pid = std::process::id(), socket = %socket.display(), "supervisor ready");
        tokio::task::spawn_local(reaper::reap_children(supervisor.clone()));
        supervisor.refill_spare_cgroups();
        let shutdown = shutdown_requested(parent_pidfd)?;
        let reason = server::serve(listener, supervisor.clone(), shutdown).await;
        tracing::info!("{reason}: stopping every task");
        supervisor.stop_everything().await;
        let _ = std::fs::remove_file(&socket);
        Ok(())
    })
}

/// Logs to stderr (the agent's, or the journal's), at `RUST_LOG` or info.
fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(crate::terminal::stderr_is_terminal())
        .with_target(false)
        .try_init();
}

/// Resolves, with the reason, when the supervisor is to stop every task and exit: its parent
/// (a dev agent on a temporary data dir) exited, or SIGTERM/SIGINT reached the supervisor
/// itself, which is a node shutdown. (Restarting or upgrading the node daemon never signals
/// the supervisor.)
fn shutdown_requested(
    parent_pidfd: Option<OwnedFd>,
) -> anyhow::Result<impl Future<Output = &'static str>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("watching SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("watching SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = parent_exit(parent_pidfd) => "the agent exited",
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

/// Resolves when the process behind `pidfd` exits; never without one.
async fn parent_exit(pidfd: Option<OwnedFd>) {
    let Some(fd) = pidfd else {
        return std::future::pending().await;
    };
    match crate::sys::async_fd(fd) {
        Ok(afd) => {
            let _ = afd.readable().await;
        }
        Err(e) => {
            tracing::warn!("watching the parent: {e}");
            std::future::pending().await
        }
    }
}

/// Stops the tasks a supervisor that is gone left in the parent (it died: killed, crashed or
/// OOM-killed). Their output pipes and exit status went with it and nothing can reattach to
/// them; left alone they would run unmanaged, and their cgroups would block their restart
/// under the same name. The claim on the parent (taken first) proves the old supervisor is
/// gone. Their node daemon sees the tasks as lost and restarts them by their policy.
fn stop_orphaned_tasks(cgroups: &CgroupManager) {
    let names = match cgroups.list() {
        Ok(names) => names,
        Err(e) => {
            tracing::warn!("listing task cgroups left by an earlier supervisor: {e}");
            return;
        }
    };
    for name in names {
        match cgroups.open(&name) {
            Ok(Some(cgroup)) => {
                let pids = cgroup.pids().unwrap_or_default();
                match cgroup.destroy() {
                    Ok(()) => tracing::warn!(
                        task = %name,
                        ?pids,
                        "stopped a task left running by a supervisor that is gone (its output and exit status went with it); the node daemon restarts it by its restart policy"
                    ),
                    Err(e) => {
                        tracing::warn!(task = %name, "stopping a task left by an earlier supervisor: {e}")
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(task = %name, "opening a task cgroup left by an earlier supervisor: {e}")
            }
        }
    }
}
