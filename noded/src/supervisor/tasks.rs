//! The task table and each task's life in it: start (cgroup, pipes, log files, sandbox),
//! signal, kill with a grace period, move between cpus, exit (recorded by the reaper through
//! [`TaskEntry::record_exit`]), removal, and the stop of everything at a node shutdown.

use std::cell::RefCell;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use isolation::cgroup::{CgroupError, TaskCgroup, SPARE_CGROUPS};
use isolation::sandbox::{self, SandboxChild, Stdio};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::background::Background;
use super::logsink;
use super::logwriter::LogWriter;
use super::protocol::{
    self, ExitInfo, IsolationMode, LogSettings, Response, TaskLaunch, TaskStats, TaskStatus,
};
use super::spec::{cgroup_limits, sandbox_spec};
use super::{err, spawn_err, step_err, Child, Supervisor, MAX_TASKS};

/// How long `Remove` lets a task's log pumps drain what it wrote before it exited; longer
/// only when a leftover process still holds the pipe, which is not waited for.
const PUMP_DRAIN: Duration = Duration::from_millis(500);
/// How long a node shutdown waits for each killed task's exit before removing it anyway.
const SHUTDOWN_EXIT_WAIT: Duration = Duration::from_secs(5);

/// One task: its process, cgroup, output pumps and, once it ended, its exit.
pub(super) struct TaskEntry {
    pub(super) task_id: String,
    /// How it was started: what `alloc exec` enters matches it.
    pub(super) launch: TaskLaunch,
    pub(super) pid: i32,
    pidfd: Rc<OwnedFd>,
    /// With the small init (`pid` is the init's): where it reports the program's own end.
    init_status: Option<OwnedFd>,
    started_at: i64,
    pub(super) cgroup: Arc<TaskCgroup>,
    exit: RefCell<Option<ExitInfo>>,
    exited: Notify,
    kill_timer: RefCell<Option<JoinHandle<()>>>,
    /// The task's mount namespace, held until its exit is recorded (see
    /// [`hold_mount_namespace`]).
    mount_ns: RefCell<Option<OwnedFd>>,
    pumps: RefCell<Vec<JoinHandle<()>>>,
    /// The cgroup's removal, begun on a blocking thread as soon as the exit is recorded
    /// (see [`TaskEntry::record_exit`]); `Remove` awaits it.
    teardown: RefCell<Option<JoinHandle<Result<(), CgroupError>>>>,
}

impl TaskEntry {
    pub(super) fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// How the task ended, once it has.
    async fn exit(&self) -> ExitInfo {
        loop {
            let notified = self.exited.notified();
            if let Some(exit) = *self.exit.borrow() {
                return exit;
            }
            notified.await;
        }
    }

    /// Records how the task's main process ended (`exit_code`, `signal`) and wakes every
    /// waiter, then begins removing its cgroup (which kills whatever the task left running in
    /// it, as Nomad's executor does when a task's main process exits): the OOM count is read
    /// first, and nothing else of the cgroup is needed after the exit. Beginning here, on a
    /// blocking thread, takes the removal off the path of the `Remove` that follows every
    /// exit. The mount namespace goes on the background thread.
    pub(super) fn record_exit(&self, exit_code: i32, signal: i32, background: &Background) {
        // Behind an init, the program's end is the one it reported (the init exits with a
        // code only); nothing reported means the init was killed itself, with the program.
        let (exit_code, signal) = match self
            .init_status
            .as_ref()
            .and_then(|fd| sandbox::init_exit_status(fd.as_fd()))
        {
            Some(sandbox::ExitStatus::Exited(code)) => (code, 0),
            Some(sandbox::ExitStatus::Signaled { signal, .. }) => (128 + signal, signal),
            None => (exit_code, signal),
        };
        let oom = self.cgroup.oom_kill_count().map(|n| n > 0).unwrap_or(false);
        let exit = ExitInfo {
            exit_code,
            signal,
            oom_killed: oom,
            finished_at: controlplane::model::now_unix_nanos(),
        };
        tracing::info!(task = %self.task_id, pid = self.pid, code = exit.exit_code, signal = exit.signal, oom = exit.oom_killed, "task exited");
        *self.exit.borrow_mut() = Some(exit);
        if let Some(timer) = self.kill_timer.borrow_mut().take() {
            timer.abort();
        }
        self.exited.notify_waiters();
        let cgroup = self.cgroup.clone();
        *self.teardown.borrow_mut() = Some(tokio::task::spawn_blocking(move || cgroup.destroy()));
        if let Some(ns) = self.mount_ns.borrow_mut().take() {
            background.run(None, move || drop(ns));
        }
    }
}

/// A task's process just spawned, with the read ends of its output pipes and the log files
/// they go to.
struct Spawned {
    child: SandboxChild,
    stdout: (OwnedFd, LogWriter),
    stderr: (OwnedFd, LogWriter),
}

impl Supervisor {
    pub(super) fn get(&self, task_id: &str) -> Option<Rc<TaskEntry>> {
        self.tasks.borrow().get(task_id).cloned()
    }

    /// `Start`: a new task, unless one of that id is still in the table or the table is full.
    pub(super) fn start(self: &Rc<Self>, launch: TaskLaunch) -> Response {
        if let Err(e) = crate::client::allocdir::check_component("task id", &launch.task_id) {
            return err(e.to_string());
        }
        if let Some(existing) = self.get(&launch.task_id) {
            if !existing.has_exited() {
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

    /// Creates the task's cgroup, spawns it there, and starts pumping its output into its
    /// logs. A failed start leaves no cgroup behind.
    fn spawn_task(self: &Rc<Self>, launch: &TaskLaunch) -> Result<Rc<TaskEntry>, Response> {
        let limits = cgroup_limits(launch);
        let cgroup = self
            .cgroups
            .create(&launch.task_id, &limits)
            .map_err(|e| step_err("cgroup", e.to_string()))?;
        let cgroup = Arc::new(cgroup);
        let spawned = match self.spawn_in(launch, &cgroup) {
            Ok(spawned) => spawned,
            Err(failure) => {
                if let Err(e) = cgroup.destroy() {
                    tracing::warn!(task = %launch.task_id, "removing the cgroup of a failed start: {e}");
                }
                return Err(failure);
            }
        };
        // The next start's cgroup is made now, while this task runs: not during this
        // child's own cgroup joins (the kernel serialises them on one lock).
        self.refill_spare_cgroups();
        let Spawned {
            child,
            stdout,
            stderr,
        } = spawned;
        let entry = Rc::new(TaskEntry {
            task_id: launch.task_id.clone(),
            launch: launch.clone(),
            pid: child.pid,
            pidfd: Rc::new(child.pidfd),
            init_status: child.init_status,
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
            tokio::task::spawn_local(pump(stdout.0, stdout.1, launch.task_id.clone())),
            tokio::task::spawn_local(pump(stderr.0, stderr.1, launch.task_id.clone())),
        ];
        *entry.pumps.borrow_mut() = pumps;
        self.by_pid
            .borrow_mut()
            .insert(entry.pid, Child::Task(entry.clone()));
        Ok(entry)
    }

    /// Spawns the task's process in `cgroup`, its output on pipes. The log files are opened
    /// on a blocking thread while the child builds its sandbox (creating two files on ext4
    /// was ~50-100 us of the start path, measured with perf). The child execs only once they
    /// are open (its go-ahead): the program never runs without its logs, and a log failure
    /// fails the start before the program ran.
    fn spawn_in(&self, launch: &TaskLaunch, cgroup: &TaskCgroup) -> Result<Spawned, Response> {
        let stdio = |e: std::io::Error| step_err("stdio", e.to_string());
        let join = cgroup
            .join_handle()
            .map_err(|e| step_err("cgroup", e.to_string()))?;
        let (out_r, out_w) = pipe().map_err(stdio)?;
        let (err_r, err_w) = pipe().map_err(stdio)?;
        let (go_r, go_w) = pipe_pair().map_err(stdio)?;
        let logs = open_logs_then_go_ahead(launch.logs.clone(), go_w);
        let spec = sandbox_spec(
            launch,
            &self.staging_dir,
            join,
            Stdio::Fd(out_w),
            Stdio::Fd(err_w),
        );
        let mut spec = match spec {
            Ok(spec) => spec,
            // Dropping the go-ahead's read end lets the log opener finish unanswered. What
            // the spec is made of (user, capabilities, seccomp profile, rlimits) does not
            // change by trying again.
            Err((step, message)) => {
                return Err(Response::Error {
                    step: Some(step.to_string()),
                    message,
                    permanent: true,
                })
            }
        };
        spec.go_ahead = Some(go_r);
        let spawned = sandbox::spawn(&spec);
        // Our copies of the child's ends: the pumps see end of file only once they are shut.
        drop(spec);
        // Ready by now, unless the child failed before its wait; either way the job is short.
        let opened = logs
            .recv()
            .unwrap_or_else(|_| Err("the log files' opener stopped".to_string()));
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                if let (Err(message), Some(sandbox::Step::AwaitGoAhead)) = (&opened, e.step()) {
                    return Err(step_err("logs", message.clone()));
                }
                return Err(spawn_err(&e));
            }
        };
        match opened {
            Ok((stdout_log, stderr_log)) => Ok(Spawned {
                child,
                stdout: (out_r, stdout_log),
                stderr: (err_r, stderr_log),
            }),
            Err(message) => {
                // Not reached: the go-ahead is written only once both files are open.
                let _ = crate::sys::pidfd_send_signal(&child.pidfd, libc::SIGKILL);
                if let Err(e) = child.wait() {
                    tracing::warn!("reaping a task whose logs failed: {e}");
                }
                Err(step_err("logs", message))
            }
        }
    }

    /// Makes spare task cgroups on the background thread, off the start path, so that the next
    /// start renames one instead of creating it (see `isolation::cgroup`'s `spare`).
    pub(super) fn refill_spare_cgroups(&self) {
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

    /// `Wait`: answers when the task has exited.
    pub(super) async fn wait(&self, task_id: &str) -> Response {
        match self.get(task_id) {
            None => err(format!("no task {task_id:?} on this supervisor")),
            Some(task) => Response::Exited {
                exit: task.exit().await,
            },
        }
    }

    /// `Signal`: to the task's main process only (its pidfd: no pid reuse race).
    pub(super) fn signal(&self, task_id: &str, signal: i32) -> Response {
        match self.get(task_id) {
            None => err(format!("no task {task_id:?} on this supervisor")),
            Some(task) if task.has_exited() => err(format!("task {task_id:?} has already exited")),
            Some(task) => match crate::sys::pidfd_send_signal(&task.pidfd, signal) {
                Ok(()) => Response::Ok,
                Err(e) => err(format!(
                    "signal {signal} to task {task_id:?} (pid {}): {e}",
                    task.pid
                )),
            },
        }
    }

    /// `Kill`: `signal` to the main process now, then SIGKILL to every process of the task
    /// (through its cgroup) when `grace_ms` runs out before the exit.
    pub(super) fn kill(&self, task_id: &str, signal: i32, grace_ms: u64) -> Response {
        let Some(task) = self.get(task_id) else {
            return err(format!("no task {task_id:?} on this supervisor"));
        };
        if task.has_exited() {
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
            if !target.has_exited() {
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
    pub(super) async fn set_cpuset(&self, task_id: &str, cpus: &[u32]) -> Response {
        if cpus.is_empty() {
            return err(format!(
                "set_cpuset for task {task_id:?}: the cpu list is empty; a task needs at least one cpu"
            ));
        }
        let Some(task) = self.get(task_id) else {
            return err(format!("no task {task_id:?} on this supervisor"));
        };
        if task.has_exited() {
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

    /// `Remove`: forgets an exited task once its output is drained and its cgroup is gone.
    pub(super) async fn remove(&self, task_id: &str) -> Response {
        let Some(task) = self.get(task_id) else {
            // Already gone: removing twice is fine.
            return Response::Ok;
        };
        if !task.has_exited() {
            return err(format!("task {task_id:?} is still running; kill it first"));
        }
        // Let the pumps drain what the task wrote before it exited, briefly.
        let pumps: Vec<_> = task.pumps.borrow_mut().drain(..).collect();
        for p in pumps {
            if tokio::time::timeout(PUMP_DRAIN, p).await.is_err() {
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
            let cgroup = task.cgroup.clone();
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

    /// `List`: every task in the table, running or exited.
    pub(super) fn list(&self) -> Response {
        Response::Tasks {
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
        }
    }

    /// `Stats`: a running task's resource usage, from its cgroup.
    pub(super) fn stats(&self, task_id: &str) -> Response {
        let Some(task) = self.get(task_id) else {
            return err(format!("no task {task_id:?} on this supervisor"));
        };
        if task.has_exited() {
            // Its cgroup goes at the exit (see `record_exit`). The step tells a caller that
            // listed the task as running just before that it has exited since.
            return step_err(
                protocol::STEP_EXITED,
                format!("task {task_id:?} has exited: it has no resource usage any more"),
            );
        }
        match task.cgroup.stats() {
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
        }
    }

    /// A node shutdown (SIGTERM, or the agent of a temporary data dir went away): kill
    /// everything and clean up.
    pub(super) async fn stop_everything(&self) {
        let tasks: Vec<Rc<TaskEntry>> = self.tasks.borrow().values().cloned().collect();
        for t in &tasks {
            if !t.has_exited() {
                let _ = t.cgroup.signal_all(libc::SIGKILL);
            }
        }
        for t in &tasks {
            let _ = tokio::time::timeout(SHUTDOWN_EXIT_WAIT, t.exit()).await;
            let _ = self.remove(&t.task_id).await;
        }
        if let Err(e) = self.cgroups.remove_parent() {
            tracing::debug!("removing the cgroup parent: {e}");
        }
    }
}

/// Opens the task's log files on a blocking thread and, once both are open, writes the
/// child's go-ahead on `go_ahead`. The answer (the files, or why not) arrives on the
/// returned channel, which holds that one answer.
fn open_logs_then_go_ahead(
    settings: LogSettings,
    go_ahead: OwnedFd,
) -> std::sync::mpsc::Receiver<Result<(LogWriter, LogWriter), String>> {
    let (logs_tx, logs_rx) = std::sync::mpsc::sync_channel(1);
    tokio::task::spawn_blocking(move || {
        let opened = open_task_logs(&settings);
        if opened.is_ok() {
            if let Err(e) = nix::unistd::write(&go_ahead, b"g") {
                // The child is gone already (its own failure is reported).
                tracing::debug!("giving a task its go-ahead: {e}");
            }
        }
        drop(go_ahead);
        let _ = logs_tx.send(opened);
    });
    logs_rx
}

/// A close-on-exec pipe whose both ends block (for an exec session's stdio).
pub(super) fn pipe_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}

/// A close-on-exec pipe for a task's output: our read end does not block, the child's write
/// end does.
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

/// Opens (or continues) a task's `stdout` and `stderr` log files; the error names the file.
fn open_task_logs(logs: &LogSettings) -> Result<(LogWriter, LogWriter), String> {
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
