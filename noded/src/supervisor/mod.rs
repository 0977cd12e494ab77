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

pub mod client;

pub mod logsink;
pub mod logwriter;
pub mod protocol;

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context;
use isolation::caps::CapabilitySet;
use isolation::cgroup::{CgroupLayout, CgroupLimits, CgroupManager, TaskCgroup, SPARE_CGROUPS};
use isolation::sandbox::{
    self, Bind, Filesystem, NamespaceSpec, RootfsSpec, SandboxSpec, SeccompPolicy, Stdio,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

use logwriter::LogWriter;
use protocol::{
    ExitInfo, IsolationMode, Request, Response, TaskLaunch, TaskStats, TaskStatus,
    MAX_MESSAGE_BYTES, PROTOCOL_VERSION,
};

/// Default name of the cgroup parent every task cgroup lives under.
pub const CGROUP_PARENT: &str = "noded";
/// Paths of the host's `/etc` a jailed task must not read (an empty read-only tmpfs covers them
/// when they exist).
pub const HOST_SECRET_PATHS: &[&str] = &[
    "/etc/noded.d",
    "/etc/noded",
    "/etc/nomad.d",
    "/etc/ssl/private",
];

/// The host's secret paths that exist now: the fixed ones plus SSH host private keys.
fn host_secret_paths() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = HOST_SECRET_PATHS.iter().map(PathBuf::from).collect();
    if let Ok(entries) = std::fs::read_dir("/etc/ssh") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("ssh_host_") && name.ends_with("_key") {
                out.push(e.path());
            }
        }
    }
    out
}
/// Most tasks one supervisor runs.
const MAX_TASKS: usize = 10_000;

struct TaskEntry {
    task_id: String,
    /// How it was started: what `alloc exec` enters matches it.
    launch: TaskLaunch,
    pid: i32,
    pidfd: Rc<OwnedFd>,
    started_at: i64,
    cgroup: std::sync::Arc<TaskCgroup>,
    exit: RefCell<Option<ExitInfo>>,
    exited: Notify,
    kill_timer: RefCell<Option<tokio::task::JoinHandle<()>>>,
    /// The task's mount namespace, held until its exit is recorded (see
    /// [`hold_mount_namespace`]).
    mount_ns: RefCell<Option<OwnedFd>>,
    pumps: RefCell<Vec<tokio::task::JoinHandle<()>>>,
    /// The cgroup's removal, begun on a blocking thread as soon as the exit is recorded
    /// (see [`record_exit`]); `Remove` awaits it.
    teardown: RefCell<Option<tokio::task::JoinHandle<Result<(), isolation::cgroup::CgroupError>>>>,
}

/// A command run inside a task by `alloc exec`.
struct ExecEntry {
    exec_id: String,
    pid: i32,
    exit: RefCell<Option<ExitInfo>>,
    exited: Notify,
    /// Kept to resize the terminal; the session's user holds its own copy.
    pty_master: Option<OwnedFd>,
}

/// A direct child of the supervisor the reaper knows by pid.
enum Child {
    Task(Rc<TaskEntry>),
    Exec(Rc<ExecEntry>),
}

/// Most `alloc exec` sessions running at once.
const MAX_EXECS: usize = 256;

/// An answer, and descriptors to pass with it.
struct Reply {
    response: Response,
    fds: Vec<OwnedFd>,
}

impl From<Response> for Reply {
    fn from(response: Response) -> Reply {
        Reply {
            response,
            fds: Vec::new(),
        }
    }
}

struct Supervisor {
    tasks: RefCell<HashMap<String, Rc<TaskEntry>>>,
    execs: RefCell<HashMap<String, Rc<ExecEntry>>>,
    /// Running tasks and exec sessions by the pid of their process, for the reaper.
    by_pid: RefCell<HashMap<i32, Child>>,
    cgroups: CgroupManager,
    staging_dir: PathBuf,
    background: Background,
}

/// Work no request waits for, on one thread of its own at a lower CPU priority (nice
/// [`BACKGROUND_NICE`]): making spare cgroups, and the teardown of exited tasks' mount
/// namespaces. On a small host that work lands while a task starts or exits. perf showed it,
/// run on a blocking thread, woken onto the CPU of the task just started: the task (whose
/// cgroup has the small CPU weight of its `cpu` MHz) then got a fraction of that CPU for
/// ~0.3 ms while the other CPU idled. So a job can be pinned to a CPU (the one the
/// supervisor's main thread is leaving), and the nice value makes it yield to that thread.
struct Background {
    jobs: std::sync::mpsc::Sender<BackgroundJob>,
}

/// A background job, and the CPU to run it on.
type BackgroundJob = (Option<usize>, Box<dyn FnOnce() + Send>);

/// Nice value of the background thread: low enough to yield to starts and exits, not so low
/// that it starves while holding a kernel lock (cgroup creation takes `cgroup_mutex`).
const BACKGROUND_NICE: i32 = 10;

impl Background {
    fn start() -> std::io::Result<Background> {
        let (jobs, queue) = std::sync::mpsc::channel::<BackgroundJob>();
        std::thread::Builder::new()
            .name("background".to_string())
            .spawn(move || {
                if let Err(e) = crate::sys::set_thread_nice(BACKGROUND_NICE) {
                    tracing::debug!("lowering the background thread's priority: {e}");
                }
                for (cpu, job) in queue {
                    let restore = cpu.and_then(crate::sys::pin_to_cpu);
                    job();
                    if let Some(previous) = restore {
                        crate::sys::restore_affinity(&previous);
                    }
                }
            })?;
        Ok(Background { jobs })
    }

    /// Queues `job`, to run on `cpu` when given (and allowed).
    fn run(&self, cpu: Option<usize>, job: impl FnOnce() + Send + 'static) {
        if self.jobs.send((cpu, Box::new(job))).is_err() {
            tracing::warn!("the background thread is gone; background work is skipped");
        }
    }
}

/// Runs the supervisor until its socket is gone or (with `exit_with_parent`) its parent exits.
pub fn run(
    socket: PathBuf,
    state_dir: PathBuf,
    cgroup_parent: &str,
    exit_with_parent: bool,
) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(crate::terminal::stderr_is_terminal())
        .with_target(false)
        .try_init();
    crate::sys::become_subreaper().context("becoming a child subreaper")?;

    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let staging_dir = state_dir.join("rootfs");
    std::fs::create_dir_all(&staging_dir)
        .with_context(|| format!("creating {}", staging_dir.display()))?;
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
        if socket.exists() {
            std::fs::remove_file(&socket)
                .with_context(|| format!("removing stale socket {}", socket.display()))?;
        }
        let listener = UnixListener::bind(&socket)
            .with_context(|| format!("listening on {}", socket.display()))?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
        tracing::info!(pid = std::process::id(), socket = %socket.display(), "supervisor ready");
        tokio::task::spawn_local(reap_children(supervisor.clone()));
        supervisor.refill_spare_cgroups();
        let parent_gone = async {
            match parent_pidfd {
                Some(fd) => match crate::sys::async_fd(fd) {
                    Ok(afd) => {
                        let _ = afd.readable().await;
                    }
                    Err(e) => {
                        tracing::warn!("watching the parent: {e}");
                        std::future::pending::<()>().await
                    }
                },
                None => std::future::pending::<()>().await,
            }
        };
        tokio::pin!(parent_gone);
        // SIGTERM/SIGINT to the supervisor itself is a node shutdown: stop every task and
        // clean up. (Restarting or upgrading the node daemon never signals the supervisor.)
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("watching SIGTERM")?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("watching SIGINT")?;
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let sup = supervisor.clone();
                        tokio::task::spawn_local(async move {
                            if let Err(e) = serve_connection(sup, stream).await {
                                tracing::debug!("connection: {e}");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = &mut parent_gone => {
                    tracing::info!("the agent exited: stopping every task");
                    supervisor.stop_everything().await;
                    let _ = std::fs::remove_file(&socket);
                    return Ok::<(), anyhow::Error>(());
                }
                _ = term.recv() => {
                    tracing::info!("SIGTERM: stopping every task");
                    supervisor.stop_everything().await;
                    let _ = std::fs::remove_file(&socket);
                    return Ok(());
                }
                _ = int.recv() => {
                    tracing::info!("SIGINT: stopping every task");
                    supervisor.stop_everything().await;
                    let _ = std::fs::remove_file(&socket);
                    return Ok(());
                }
            }
        }
    })
}

async fn serve_connection(sup: Rc<Supervisor>, stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read).take(MAX_MESSAGE_BYTES as u64);
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).await?;
    let response = match serde_json::from_slice::<Request>(&line) {
        Ok(Request::Exec {
            task_id,
            command,
            tty,
        }) => sup.exec(&task_id, &command, tty),
        Ok(request) => sup.handle(request).await.into(),
        Err(e) => Response::Error {
            step: None,
            message: format!("malformed request: {e}"),
            permanent: false,
        }
        .into(),
    };
    let mut out = serde_json::to_vec(&response.response).unwrap_or_else(|e| {
        format!("{{\"result\":\"error\",\"step\":null,\"message\":\"encoding the answer: {e}\"}}")
            .into_bytes()
    });
    out.push(b'\n');
    if response.fds.is_empty() {
        write.write_all(&out).await?;
        return write.shutdown().await;
    }
    // Descriptors ride on the first bytes of the answer (SCM_RIGHTS).
    let stream = reader
        .into_inner()
        .into_inner()
        .reunite(write)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let raw: Vec<i32> = response
        .fds
        .iter()
        .map(std::os::fd::AsRawFd::as_raw_fd)
        .collect();
    let mut sent = 0;
    while sent == 0 {
        stream.writable().await?;
        match stream.try_io(tokio::io::Interest::WRITABLE, || {
            crate::sys::send_with_fds(std::os::fd::AsRawFd::as_raw_fd(&stream), &out, &raw)
        }) {
            Ok(n) => sent = n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    let (_, mut write) = stream.into_split();
    write.write_all(&out[sent..]).await?;
    write.shutdown().await
}

fn err(message: impl Into<String>) -> Response {
    Response::Error {
        step: None,
        message: message.into(),
        permanent: false,
    }
}

impl Supervisor {
    fn get(&self, task_id: &str) -> Option<Rc<TaskEntry>> {
        self.tasks.borrow().get(task_id).cloned()
    }

    async fn handle(self: &Rc<Self>, request: Request) -> Response {
        match request {
            Request::Hello => Response::Hello {
                version: PROTOCOL_VERSION,
                pid: std::process::id() as i32,
            },
            Request::Start { launch } => self.start(*launch),
            Request::Exec { .. } => {
                err("exec requests are answered with descriptors; internal error")
            }
            Request::ExecResize {
                exec_id,
                rows,
                cols,
            } => {
                let Some(exec) = self.execs.borrow().get(&exec_id).cloned() else {
                    return err(format!("no exec session {exec_id:?}"));
                };
                match &exec.pty_master {
                    None => err(format!(
                        "exec session {exec_id:?} has no terminal to resize"
                    )),
                    Some(master) => {
                        match sandbox::set_pty_size(master.as_fd(), sandbox::PtySpec { rows, cols })
                        {
                            Ok(()) => Response::Ok,
                            Err(e) => err(format!("resizing the terminal of {exec_id:?}: {e}")),
                        }
                    }
                }
            }
            Request::ExecWait { exec_id } => {
                let Some(exec) = self.execs.borrow().get(&exec_id).cloned() else {
                    return err(format!("no exec session {exec_id:?}"));
                };
                let exit = loop {
                    let notified = exec.exited.notified();
                    if let Some(exit) = *exec.exit.borrow() {
                        break exit;
                    }
                    notified.await;
                };
                self.execs.borrow_mut().remove(&exec_id);
                Response::Exited { exit }
            }
            Request::Wait { task_id } => match self.get(&task_id) {
                None => err(format!("no task {task_id:?} on this supervisor")),
                Some(task) => loop {
                    let notified = task.exited.notified();
                    if let Some(exit) = *task.exit.borrow() {
                        break Response::Exited { exit };
                    }
                    notified.await;
                },
            },
            Request::Signal { task_id, signal } => match self.get(&task_id) {
                None => err(format!("no task {task_id:?} on this supervisor")),
                Some(task) if task.exit.borrow().is_some() => {
                    err(format!("task {task_id:?} has already exited"))
                }
                Some(task) => match crate::sys::pidfd_send_signal(&task.pidfd, signal) {
                    Ok(()) => Response::Ok,
                    Err(e) => err(format!(
                        "signal {signal} to task {task_id:?} (pid {}): {e}",
                        task.pid
                    )),
                },
            },
            Request::Kill {
                task_id,
                signal,
                grace_ms,
            } => self.kill(&task_id, signal, grace_ms),
            Request::Remove { task_id } => self.remove(&task_id).await,
            Request::SetCpuset { task_id, cpus } => self.set_cpuset(&task_id, &cpus).await,
            Request::List => Response::Tasks {
                tasks: self
                    .tasks
                    .borrow()
                    .values()
                    .map(|t| TaskStatus {
                        task_id: t.task_id.clone(),
                        pid: t.pid,
                        started_at: t.started_at,
                        exit: *t.exit.borrow(),
                    })
                    .collect(),
            },
            Request::Stats { task_id } => match self.get(&task_id) {
                None => err(format!("no task {task_id:?} on this supervisor")),
                // Its cgroup goes at the exit (see `record_exit`). The step tells a caller that
                // listed the task as running just before that it has exited since.
                Some(task) if task.exit.borrow().is_some() => Response::Error {
                    step: Some(protocol::STEP_EXITED.to_string()),
                    message: format!(
                        "task {task_id:?} has exited: it has no resource usage any more"
                    ),
                    permanent: false,
                },
                Some(task) => match task.cgroup.stats() {
                    Ok(s) => Response::Stats {
                        stats: TaskStats {
                            cpu_total_ns: s.cpu_usage_ns,
                            cpu_user_ns: s.cpu_user_ns,
                            cpu_system_ns: s.cpu_system_ns,
                            throttled_periods: s.cpu_throttled_periods,
                            throttled_time_ns: s.cpu_throttled_time_ns,
                            memory_rss_bytes: s.memory_rss_bytes,
                            memory_cache_bytes: s.memory_cache_bytes,
                            memory_usage_bytes: s.memory_usage_bytes,
                            memory_max_usage_bytes: s.memory_max_usage_bytes.unwrap_or(0),
                            pids: s.pids_current,
                            timestamp: controlplane::model::now_unix_nanos(),
                        },
                    },
                    Err(e) => err(format!("stats of task {task_id:?}: {e}")),
                },
            },
        }
    }

    fn start(self: &Rc<Self>, launch: TaskLaunch) -> Response {
        if let Err(e) = crate::client::allocdir::check_component("task id", &launch.task_id) {
            return err(e.to_string());
        }
        if let Some(existing) = self.get(&launch.task_id) {
            if existing.exit.borrow().is_none() {
                return err(format!(
                    "task {:?} is already running (pid {})",
                    launch.task_id, existing.pid
                ));
            }
            return err(format!(
                "task {:?} exited but was not removed yet; remove it first",
                launch.task_id
            ));
        }
        if self.tasks.borrow().len() >= MAX_TASKS {
            return err(format!("this supervisor already runs {MAX_TASKS} tasks"));
        }
        match self.spawn_task(&launch) {
            Ok(entry) => {
                let started_at = entry.started_at;
                let pid = entry.pid;
                self.tasks
                    .borrow_mut()
                    .insert(launch.task_id.clone(), entry);
                Response::Started { pid, started_at }
            }
            Err(failure) => failure,
        }
    }

    fn spawn_task(self: &Rc<Self>, launch: &TaskLaunch) -> Result<Rc<TaskEntry>, Response> {
        let fail = |step: &str, message: String| Response::Error {
            step: Some(step.to_string()),
            message,
            permanent: false,
        };
        let limits = cgroup_limits(launch);
        let cgroup = self
            .cgroups
            .create(&launch.task_id, &limits)
            .map_err(|e| fail("cgroup", e.to_string()))?;
        let cgroup = std::sync::Arc::new(cgroup);
        let cleanup = |resp: Response| {
            if let Err(e) = cgroup.destroy() {
                tracing::warn!(task = %launch.task_id, "removing the cgroup of a failed start: {e}");
            }
            resp
        };
        let join = cgroup
            .join_handle()
            .map_err(|e| cleanup(fail("cgroup", e.to_string())))?;
        let (out_r, out_w) = pipe().map_err(|e| cleanup(fail("stdio", e.to_string())))?;
        let (err_r, err_w) = pipe().map_err(|e| cleanup(fail("stdio", e.to_string())))?;
        let (go_r, go_w) = pipe_pair().map_err(|e| cleanup(fail("stdio", e.to_string())))?;

        // The log files are opened on a blocking thread while the child builds its sandbox
        // (creating two files on ext4 was ~50-100 us of the start path, measured with perf).
        // The child execs only once they are open (its go-ahead): the program never runs
        // without its logs, and a log failure fails the start before the program ran.
        let (logs_tx, logs_rx) = std::sync::mpsc::sync_channel(1);
        let settings = launch.logs.clone();
        tokio::task::spawn_blocking(move || {
            let opened = open_task_logs(&settings);
            if opened.is_ok() {
                if let Err(e) = nix::unistd::write(&go_w, b"g") {
                    // The child is gone already (its own failure is reported).
                    tracing::debug!("giving a task its go-ahead: {e}");
                }
            }
            drop(go_w);
            let _ = logs_tx.send(opened);
        });

        let spec = sandbox_spec(
            launch,
            &self.staging_dir,
            join,
            Stdio::Fd(out_w),
            Stdio::Fd(err_w),
        )
        .map(|mut spec| {
            spec.go_ahead = Some(go_r);
            spec
        });
        let spawned = match spec {
            Ok(spec) => sandbox::spawn(&spec),
            Err((step, message)) => {
                // Dropping the spec's go-ahead end lets the log opener finish unanswered.
                // What the spec is made of (user, capabilities, seccomp profile, rlimits)
                // does not change by trying again.
                return Err(cleanup(Response::Error {
                    step: Some(step.to_string()),
                    message,
                    permanent: true,
                }));
            }
        };
        // Ready by now, unless the child failed before its wait; either way the job is short.
        let opened = logs_rx
            .recv()
            .unwrap_or_else(|_| Err("the log files' opener stopped".to_string()));
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                if let (Err(message), Some(sandbox::Step::AwaitGoAhead)) = (&opened, e.step()) {
                    return Err(cleanup(fail("logs", message.clone())));
                }
                let step = e.step().map(|s| s.phrase().to_string());
                return Err(cleanup(Response::Error {
                    step,
                    message: e.to_string(),
                    permanent: e.is_permanent(),
                }));
            }
        };
        let (stdout_log, stderr_log) = match opened {
            Ok(logs) => logs,
            Err(message) => {
                // Not reached: the go-ahead is written only once both files are open.
                let _ = crate::sys::pidfd_send_signal(&child.pidfd, libc::SIGKILL);
                if let Err(e) = child.wait() {
                    tracing::warn!("reaping a task whose logs failed: {e}");
                }
                return Err(cleanup(fail("logs", message)));
            }
        };
        // The next start's cgroup is made now, while this task runs: not during this
        // child's own cgroup joins (the kernel serialises them on one lock).
        self.refill_spare_cgroups();
        let entry = Rc::new(TaskEntry {
            task_id: launch.task_id.clone(),
            launch: launch.clone(),
            pid: child.pid,
            pidfd: Rc::new(child.pidfd),
            started_at: controlplane::model::now_unix_nanos(),
            cgroup,
            exit: RefCell::new(None),
            exited: Notify::new(),
            kill_timer: RefCell::new(None),
            mount_ns: RefCell::new(hold_mount_namespace(launch, child.pid)),
            pumps: RefCell::new(Vec::new()),
            teardown: RefCell::new(None),
        });
        let pumps = vec![
            tokio::task::spawn_local(pump(out_r, stdout_log, launch.task_id.clone())),
            tokio::task::spawn_local(pump(err_r, stderr_log, launch.task_id.clone())),
        ];
        *entry.pumps.borrow_mut() = pumps;
        self.by_pid
            .borrow_mut()
            .insert(entry.pid, Child::Task(entry.clone()));
        Ok(entry)
    }

    /// Makes spare task cgroups on the background thread, off the start path, so that the next
    /// start renames one instead of creating it (see `isolation::cgroup`'s `spare`).
    fn refill_spare_cgroups(&self) {
        if !self.cgroups.uses_spares() || self.cgroups.spares_ready() >= SPARE_CGROUPS {
            return;
        }
        let cgroups = self.cgroups.clone();
        // This thread's CPU: it goes idle once the reply is written, while the new task runs
        // on another.
        let here = nix::sched::sched_getcpu().ok();
        self.background.run(here, move || {
            if let Err(e) = cgroups.fill_spares() {
                tracing::warn!(
                    "making spare task cgroups: {e} (tasks start without them, more slowly)"
                );
            }
        });
    }

    /// `alloc exec`: runs `command` inside the running task and hands the session's
    /// descriptors to the caller.
    fn exec(&self, task_id: &str, command: &[String], tty: bool) -> Reply {
        let Some(task) = self.get(task_id) else {
            return err(format!("no task {task_id:?} on this supervisor")).into();
        };
        if task.exit.borrow().is_some() {
            return err(format!("task {task_id:?} is not running")).into();
        }
        let Some((program, args)) = command.split_first() else {
            return err("exec needs a command").into();
        };
        if self.execs.borrow().len() >= MAX_EXECS {
            return err(format!("{MAX_EXECS} exec sessions are already running")).into();
        }
        let fail = |step: &str, message: String| -> Reply {
            Response::Error {
                step: Some(step.to_string()),
                message,
                permanent: false,
            }
            .into()
        };
        let join = match task.cgroup.join_handle() {
            Ok(j) => j,
            Err(e) => return fail("cgroup", e.to_string()),
        };
        let mut spec = match sandbox_spec(
            &task.launch,
            &self.staging_dir,
            join,
            Stdio::Null,
            Stdio::Null,
        ) {
            Ok(s) => s,
            Err((step, message)) => return fail(step, message),
        };
        // The session joins the task's cgroup: its limits, its accounting, and its end.
        let cgroup = spec.cgroup.take();
        let mut enter =
            sandbox::EnterSpec::matching(&spec, cgroup, task.pid, program.clone(), args.to_vec());
        let mut handed: Vec<OwnedFd> = Vec::new();
        if tty {
            enter.io = sandbox::EnterIo::Pty(sandbox::PtySpec::default());
        } else {
            let pipes = (pipe_pair(), pipe_pair(), pipe_pair());
            let ((in_r, in_w), (out_r, out_w), (err_r, err_w)) = match pipes {
                (Ok(a), Ok(b), Ok(c)) => (a, b, c),
                _ => return fail("stdio", "cannot create pipes".to_string()),
            };
            enter.io = sandbox::EnterIo::Streams {
                stdin: Stdio::Fd(in_r),
                stdout: Stdio::Fd(out_w),
                stderr: Stdio::Fd(err_w),
            };
            handed = vec![in_w, out_r, err_r];
        }
        let entered = match sandbox::enter(&enter) {
            Ok(e) => e,
            Err(e) => {
                let step = e.step().map(|s| s.phrase().to_string());
                return Response::Error {
                    step,
                    message: e.to_string(),
                    permanent: e.is_permanent(),
                }
                .into();
            }
        };
        drop(enter);
        let mut pty_master = None;
        if let Some(master) = entered.pty_master {
            match master.try_clone() {
                Ok(copy) => {
                    handed = vec![master];
                    pty_master = Some(copy);
                }
                Err(e) => return fail("pty", e.to_string()),
            }
        }
        let exec = Rc::new(ExecEntry {
            exec_id: controlplane::model::new_id(),
            pid: entered.child.pid,
            exit: RefCell::new(None),
            exited: Notify::new(),
            pty_master,
        });
        tracing::info!(task = task_id, exec = %exec.exec_id, pid = exec.pid, "exec session started");
        self.by_pid
            .borrow_mut()
            .insert(exec.pid, Child::Exec(exec.clone()));
        self.execs
            .borrow_mut()
            .insert(exec.exec_id.clone(), exec.clone());
        Reply {
            response: Response::ExecStarted {
                exec_id: exec.exec_id.clone(),
                pid: exec.pid,
                fds: u32::try_from(handed.len()).unwrap_or(0),
            },
            fds: handed,
        }
    }

    fn kill(&self, task_id: &str, signal: i32, grace_ms: u64) -> Response {
        let Some(task) = self.get(task_id) else {
            return err(format!("no task {task_id:?} on this supervisor"));
        };
        if task.exit.borrow().is_some() {
            return Response::Ok;
        }
        if signal != libc::SIGKILL {
            if let Err(e) = crate::sys::pidfd_send_signal(&task.pidfd, signal) {
                tracing::warn!(task = task_id, "sending signal {signal}: {e}");
            }
        }
        let delay = if signal == libc::SIGKILL {
            Duration::ZERO
        } else {
            Duration::from_millis(grace_ms)
        };
        let target = task.clone();
        let timer = tokio::task::spawn_local(async move {
            tokio::time::sleep(delay).await;
            if target.exit.borrow().is_none() {
                tracing::info!(task = %target.task_id, "grace period over: killing every process of the task");
                if let Err(e) = target.cgroup.signal_all(libc::SIGKILL) {
                    tracing::warn!(task = %target.task_id, "SIGKILL via the cgroup: {e}");
                    let _ = crate::sys::pidfd_send_signal(&target.pidfd, libc::SIGKILL);
                }
            }
        });
        if let Some(old) = task.kill_timer.borrow_mut().replace(timer) {
            old.abort();
        }
        Response::Ok
    }

    /// Moves a running task without reserved cores onto `cpus`. The cgroup write runs on a
    /// helper thread: the kernel migrates every thread of the task before it returns.
    async fn set_cpuset(&self, task_id: &str, cpus: &[u32]) -> Response {
        if cpus.is_empty() {
            return err(format!(
                "set_cpuset for task {task_id:?}: the cpu list is empty; a task needs at least one cpu"
            ));
        }
        let Some(task) = self.get(task_id) else {
            return err(format!("no task {task_id:?} on this supervisor"));
        };
        if task.exit.borrow().is_some() {
            return err(format!("task {task_id:?} has already exited"));
        }
        if !task.launch.limits.cpuset.is_empty() {
            // Its cores are reserved for it alone; only a new placement may change them.
            return err(format!(
                "task {task_id:?} runs on its reserved cores {}; its cpuset is not changed",
                crate::client::taskenv::cpuset_string(&task.launch.limits.cpuset)
            ));
        }
        let list = crate::client::taskenv::cpuset_string(cpus);
        let cgroup = task.cgroup.clone();
        let target = list.clone();
        match tokio::task::spawn_blocking(move || cgroup.set_cpuset(&target)).await {
            Ok(Ok(())) => {
                tracing::debug!(task = task_id, cpus = %list, "task moved to new cpus");
                Response::Ok
            }
            Ok(Err(e)) => err(format!("moving task {task_id:?} to cpus {list}: {e}")),
            Err(e) => err(format!("moving task {task_id:?} to cpus {list}: {e}")),
        }
    }

    async fn remove(&self, task_id: &str) -> Response {
        let Some(task) = self.get(task_id) else {
            // Already gone: removing twice is fine.
            return Response::Ok;
        };
        if task.exit.borrow().is_none() {
            return err(format!("task {task_id:?} is still running; kill it first"));
        }
        let cgroup = task.cgroup.clone();
        // Let the pumps drain what the task wrote before it exited, briefly.
        let pumps: Vec<_> = task.pumps.borrow_mut().drain(..).collect();
        for p in pumps {
            if tokio::time::timeout(Duration::from_millis(500), p)
                .await
                .is_err()
            {
                tracing::debug!(
                    task = task_id,
                    "log pump still open after exit (a leftover process holds the pipe)"
                );
            }
        }
        // Usually begun at the exit already; a failed early attempt is tried once more.
        let early = task.teardown.borrow_mut().take();
        let removed_early = match early {
            Some(handle) => match handle.await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::debug!(task = task_id, error = %e, "removing the cgroup at exit failed; trying again");
                    false
                }
                Err(_) => false,
            },
            None => false,
        };
        let destroyed = if removed_early {
            Ok(Ok(()))
        } else {
            tokio::task::spawn_blocking(move || cgroup.destroy()).await
        };
        match destroyed {
            Ok(Ok(())) => {
                self.tasks.borrow_mut().remove(task_id);
                Response::Ok
            }
            Ok(Err(e)) => err(format!("removing the cgroup of task {task_id:?}: {e}")),
            Err(e) => err(format!("removing the cgroup of task {task_id:?}: {e}")),
        }
    }

    /// The agent went away with a temporary data dir: kill everything and clean up.
    async fn stop_everything(&self) {
        let tasks: Vec<Rc<TaskEntry>> = self.tasks.borrow().values().cloned().collect();
        for t in &tasks {
            if t.exit.borrow().is_none() {
                let _ = t.cgroup.signal_all(libc::SIGKILL);
            }
        }
        for t in &tasks {
            let wait = async {
                loop {
                    let n = t.exited.notified();
                    if t.exit.borrow().is_some() {
                        return;
                    }
                    n.await;
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), wait).await;
            let _ = self.remove(&t.task_id).await;
        }
        if let Err(e) = self.cgroups.remove_parent() {
            tracing::debug!("removing the cgroup parent: {e}");
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

/// The cgroup limits of a task: `memory` is the hard limit, or the reservation when a
/// larger `memory_max` was granted (oversubscription).
pub fn cgroup_limits(launch: &TaskLaunch) -> CgroupLimits {
    let mib = 1024 * 1024;
    let memory = launch.limits.memory_mb.max(1);
    let hard = if launch.limits.memory_max_mb > memory {
        launch.limits.memory_max_mb
    } else {
        memory
    };
    CgroupLimits {
        memory_limit_bytes: hard * mib,
        memory_reservation_bytes: (hard > memory).then_some(memory * mib),
        cpu_shares_mhz: launch.limits.cpu_mhz,
        cpu_hard_limit: (launch.limits.cpu_quota_us > 0).then_some(isolation::cgroup::CpuQuota {
            quota_us: launch.limits.cpu_quota_us,
            period_us: 100_000,
        }),
        // Reserved cores pin the task; otherwise the shared cores it was given (which also
        // puts it in a cpuset cgroup, so that `SetCpuset` can move it later).
        cpuset_cpus: [&launch.limits.cpuset, &launch.limits.shared_cpuset]
            .into_iter()
            .find(|cpus| !cpus.is_empty())
            .map(|cpus| crate::client::taskenv::cpuset_string(cpus)),
        pids_max: (launch.limits.pids_max > 0).then_some(launch.limits.pids_max),
    }
}

/// The sandbox a task runs in, from its launch description, with its jail's root built on
/// `staging_dir`: also what `alloc exec` enters (same user, capabilities, rlimits, seccomp),
/// and what the start bench's floor spawns. Errors name the step.
pub fn sandbox_spec(
    launch: &TaskLaunch,
    staging_dir: &Path,
    join: isolation::cgroup::CgroupJoin,
    stdout: Stdio,
    stderr: Stdio,
) -> Result<SandboxSpec, (&'static str, String)> {
    let user = isolation::user::lookup(&launch.user, Path::new("/etc"))
        .map_err(|e| ("user", e.to_string()))?;
    let (filesystem, namespaces, capabilities, seccomp, work_dir) = match &launch.isolation {
        IsolationMode::Jail {
            chroot_env,
            capabilities,
            seccomp,
            host_pid,
            host_ipc,
            readonly_rootfs,
        } => {
            let mut root = RootfsSpec::new(staging_dir);
            root.system_dirs.clear();
            // The host's /etc is bound whole (as Nomad does); hide noded's own config and
            // credentials in it.
            root.masked_paths.extend(host_secret_paths());
            for (host, inside) in chroot_env {
                if host == inside
                    && sandbox::DEFAULT_SYSTEM_DIRS
                        .iter()
                        .any(|d| Path::new(d) == host)
                {
                    root.system_dirs.push(host.clone());
                } else {
                    root.ro_binds.push(Bind::new(host, inside));
                }
            }
            root.rw_binds = vec![
                Bind::new(&launch.alloc_dir, "/alloc"),
                Bind::new(launch.task_dir.join("secrets"), "/secrets"),
                Bind::new(launch.task_dir.join("tmp"), "/tmp"),
            ];
            let local = Bind::new(launch.task_dir.join("local"), "/local");
            if *readonly_rootfs {
                root.task_ro_binds.push(local);
            } else {
                root.rw_binds.push(local);
            }
            let mut ns = NamespaceSpec::isolated();
            ns.pid = !host_pid;
            ns.ipc = !host_ipc;
            let caps = CapabilitySet::parse_list(capabilities.iter())
                .map_err(|e| ("capabilities", e.to_string()))?;
            let policy = match seccomp.as_str() {
                "" | "default" => SeccompPolicy::Default,
                "unconfined" => SeccompPolicy::Unconfined,
                path => SeccompPolicy::from_profile_file(Path::new(path))
                    .map_err(|e| ("seccomp", e.to_string()))?,
            };
            let wd = if launch.work_dir.is_empty() {
                PathBuf::from("/")
            } else {
                PathBuf::from(&launch.work_dir)
            };
            (Filesystem::Jail(root), ns, caps, policy, wd)
        }
        IsolationMode::Host => {
            let wd = if launch.work_dir.is_empty() {
                launch.task_dir.clone()
            } else {
                PathBuf::from(&launch.work_dir)
            };
            (
                Filesystem::Host,
                NamespaceSpec::default(),
                // raw_exec keeps what the supervisor itself has, as Nomad's raw_exec keeps
                // the agent's privileges.
                own_capabilities(),
                SeccompPolicy::Unconfined,
                wd,
            )
        }
    };
    let ambient = CapabilitySet::parse_list(launch.ambient_capabilities.iter())
        .map_err(|e| ("capabilities", e.to_string()))?;
    let mut rlimits = Vec::new();
    for (name, soft, hard) in &launch.rlimits {
        let resource = rlimit_resource(name)
            .ok_or_else(|| ("rlimits", format!("unknown resource {name:?}")))?;
        rlimits.push(sandbox::Rlimit {
            resource,
            soft: *soft,
            hard: *hard,
        });
    }
    let mut env: Vec<(String, String)> = launch
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.sort();
    Ok(SandboxSpec {
        program: launch.command.clone(),
        args: launch.args.clone(),
        env,
        work_dir,
        user,
        filesystem,
        namespaces,
        hostname: None,
        cgroup: Some(join),
        capabilities,
        ambient_capabilities: ambient,
        rlimits,
        seccomp,
        stdin: Stdio::Null,
        stdout,
        stderr,
        go_ahead: None,
    })
}

/// The supervisor's own effective capabilities (from `/proc/self/status`).
fn own_capabilities() -> CapabilitySet {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .map(CapabilitySet::from_mask)
        .unwrap_or_default()
}

fn rlimit_resource(name: &str) -> Option<sandbox::RlimitResource> {
    use sandbox::RlimitResource as R;
    Some(match name {
        "as" => R::As,
        "core" => R::Core,
        "cpu" => R::Cpu,
        "data" => R::Data,
        "fsize" => R::Fsize,
        "locks" => R::Locks,
        "memlock" => R::Memlock,
        "msgqueue" => R::Msgqueue,
        "nice" => R::Nice,
        "nofile" => R::Nofile,
        "nproc" => R::Nproc,
        "rss" => R::Rss,
        "rtprio" => R::Rtprio,
        "rttime" => R::Rttime,
        "sigpending" => R::Sigpending,
        "stack" => R::Stack,
        _ => return None,
    })
}

/// A close-on-exec pipe whose both ends block (for an exec session's stdio).
fn pipe_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
    // The child's end must block like a normal stdout.
    let flags = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_GETFL)?;
    let mut flags = nix::fcntl::OFlag::from_bits_truncate(flags);
    flags.remove(nix::fcntl::OFlag::O_NONBLOCK);
    nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok((r, w))
}

/// Copies a task's output pipe into its log files until the pipe closes.
async fn pump(read: OwnedFd, log: LogWriter, task_id: String) {
    logsink::pump(read, logsink::LogSink::for_this_runtime(log), &task_id).await
}

/// Waits for the task to exit, records how, and wakes every waiter.
/// (exit code, signal) of a wait status; a signal death reads as 128 + signal, as shells say.
fn exit_code_of(status: nix::sys::wait::WaitStatus) -> (i32, i32) {
    use nix::sys::wait::WaitStatus;
    match status {
        WaitStatus::Exited(_, code) => (code, 0),
        WaitStatus::Signaled(_, sig, _) => (128 + sig as i32, sig as i32),
        _ => (-1, 0),
    }
}

/// Opens (or continues) a task's `stdout` and `stderr` log files; the error names the file.
fn open_task_logs(logs: &protocol::LogSettings) -> Result<(LogWriter, LogWriter), String> {
    let dir = nix::fcntl::open(
        &logs.dir,
        nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC
            | nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("opening log dir {}: {e}", logs.dir.display()))?;
    let open = |stream: &str| -> Result<LogWriter, String> {
        let name = format!("{}.{stream}", logs.prefix);
        let failed = |e: std::io::Error| format!("opening {name} in {}: {e}", logs.dir.display());
        let dir = dir.try_clone().map_err(failed)?;
        LogWriter::open(dir, &name, logs.max_files, logs.max_file_size_bytes).map_err(failed)
    };
    Ok((open("stdout")?, open("stderr")?))
}

/// Records how a task's main process ended and wakes every waiter, then begins removing its
/// cgroup (which kills whatever the task left running in it, as Nomad's executor does when
/// a task's main process exits): the OOM count is read first, and nothing else of the
/// cgroup is needed after the exit. Beginning here, on a blocking thread, takes the removal
/// off the path of the `Remove` that follows every exit.
fn record_exit(background: &Background, task: &TaskEntry, status: nix::sys::wait::WaitStatus) {
    let oom = task.cgroup.oom_kill_count().map(|n| n > 0).unwrap_or(false);
    let (exit_code, signal) = exit_code_of(status);
    let exit = ExitInfo {
        exit_code,
        signal,
        oom_killed: oom,
        finished_at: controlplane::model::now_unix_nanos(),
    };
    tracing::info!(task = %task.task_id, pid = task.pid, code = exit.exit_code, signal = exit.signal, oom = exit.oom_killed, "task exited");
    *task.exit.borrow_mut() = Some(exit);
    if let Some(timer) = task.kill_timer.borrow_mut().take() {
        timer.abort();
    }
    task.exited.notify_waiters();
    let cgroup = task.cgroup.clone();
    *task.teardown.borrow_mut() = Some(tokio::task::spawn_blocking(move || cgroup.destroy()));
    if let Some(ns) = task.mount_ns.borrow_mut().take() {
        background.run(None, move || drop(ns));
    }
}

/// A jailed task's mount namespace, held by fd so that its teardown happens when we drop
/// it, on the background thread after the exit is recorded, and not in the task's own exit:
/// unmounting the jail's ~35 mounts waits for an RCU grace period, which would delay the
/// exit (and every `Wait`er) by it. `None` when there is nothing to hold (a host-filesystem
/// task, or a task already gone).
fn hold_mount_namespace(launch: &TaskLaunch, pid: i32) -> Option<OwnedFd> {
    if !matches!(launch.isolation, IsolationMode::Jail { .. }) {
        return None;
    }
    nix::fcntl::open(
        format!("/proc/{pid}/ns/mnt").as_str(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()
}

/// Reaps every child that has exited: a task's main process gets its exit recorded; anything
/// else is an orphan of a task (reparented to us as the child subreaper) and is just reaped,
/// so no zombie outlives its task. One place calls wait, so no status is ever taken twice.
async fn reap_children(supervisor: Rc<Supervisor>) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let mut sigchld = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("watching SIGCHLD ({e}); reaping on a 100 ms timer instead");
            None
        }
    };
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                Ok(status) => {
                    let Some(pid) = status.pid() else { continue };
                    let child = supervisor.by_pid.borrow_mut().remove(&pid.as_raw());
                    match child {
                        Some(Child::Task(task)) => {
                            record_exit(&supervisor.background, &task, status)
                        }
                        Some(Child::Exec(exec)) => {
                            let (exit_code, signal) = exit_code_of(status);
                            tracing::info!(exec = %exec.exec_id, pid = exec.pid, code = exit_code, "exec session exited");
                            *exec.exit.borrow_mut() = Some(ExitInfo {
                                exit_code,
                                signal,
                                oom_killed: false,
                                finished_at: controlplane::model::now_unix_nanos(),
                            });
                            exec.exited.notify_waiters();
                        }
                        None => tracing::debug!(pid = pid.as_raw(), "reaped an orphan of a task"),
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!("reaping children: {e}");
                    break;
                }
            }
        }
        // SIGCHLD can coalesce and be missed around the handler's install: a slow timer too.
        match sigchld.as_mut() {
            Some(s) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), s.recv()).await;
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
