//! One task's life on the node: set up, start through the supervisor, wait, apply the restart
//! policy, and stop on request (`kill_signal`, then SIGKILL after `kill_timeout`). Every step is
//! a task event, in Nomad's vocabulary, sent to the allocation runner as a new [`TaskState`].

use std::sync::Arc;
use std::time::Duration;

use controlplane::model::time::format_rfc3339;
use controlplane::model::{
    event_type, now_unix_nanos, JobType, Task, TaskEvent, TaskLifecycleState, TaskState,
};
use tokio::sync::{mpsc, oneshot, watch};

use super::cpuset::SharedCores;
use super::lifecycle::Stage;
use super::restart::{RestartDecision, RestartTracker, RunOutcome};
use super::state::{RestartState, StateStore, TaskHandle, TaskIntent, TaskRecord};
use crate::driver::{Driver, TaskContext};
use crate::supervisor::client::SupervisorClient;
use crate::supervisor::protocol::{ExitInfo, Request, Response, TaskStatus};

/// Times a task's `Wait` is asked again when the supervisor cannot be reached (it is being
/// replaced), [`WAIT_RETRY`] apart: ten seconds for a new supervisor to answer.
const WAIT_ATTEMPTS: usize = 50;
/// Pause between two of those attempts.
const WAIT_RETRY: Duration = Duration::from_millis(200);

/// Why a task is being stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillRequest {
    pub reason: String,
}

/// A request to a running task from outside (`alloc signal`, `alloc restart`).
#[derive(Debug)]
pub enum TaskControl {
    Signal {
        signal: i32,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Restart {
        reply: oneshot::Sender<Result<(), String>>,
        /// Why, for the task event (`None`: a user asked).
        reason: Option<String>,
    },
}

impl TaskControl {
    fn refuse(self, why: &str) {
        let reply = match self {
            TaskControl::Signal { reply, .. } | TaskControl::Restart { reply, .. } => reply,
        };
        let _ = reply.send(Err(why.to_string()));
    }
}

/// A task's new state, for the allocation runner.
#[derive(Debug, Clone)]
pub struct TaskUpdate {
    pub task: String,
    pub state: TaskState,
}

/// Everything a task runner needs.
pub struct TaskRunner {
    pub task: Task,
    pub job_type: JobType,
    pub ctx: TaskContext,
    pub driver: Arc<dyn Driver>,
    pub supervisor: SupervisorClient,
    pub updates: mpsc::Sender<TaskUpdate>,
    pub kill: watch::Receiver<Option<KillRequest>>,
    pub control: mpsc::Receiver<TaskControl>,
    /// The state the servers last saw (for a node daemon that restarted), if any.
    pub previous: Option<TaskState>,
    /// The supervisor's record of this task, when it is still known there (reattach).
    pub reattach: Option<TaskStatus>,
    /// A setup failure found before the task could be started (e.g. an unknown user).
    pub setup_error: Option<String>,
    /// The node's shared cores, for a task without reserved cores (`None` for one with them):
    /// it starts on them and is moved whenever they change.
    pub shared_cores: Option<watch::Receiver<SharedCores>>,
    /// Recorded as running before the node daemon restarted, and gone since (it died with its
    /// supervisor): handled by the restart policy as a task that failed.
    pub lost: Option<TaskHandle>,
    /// The restart tracker's recorded state (default for a new task).
    pub restart: RestartState,
    /// Where this task's record is written, before each act and after each change.
    pub record: TaskRecorder,
    /// The task's lifecycle stage (prestart, main, poststart, poststop; sidecar or not).
    pub stage: Stage,
    /// Open (`true`) once the group's lifecycle lets this task start (the allocation
    /// runner's coordinator); a task waits on it before its first start only.
    pub start_gate: watch::Receiver<bool>,
}

/// Writes one task's record to the client state.
#[derive(Debug, Clone)]
pub struct TaskRecorder {
    pub store: Arc<StateStore>,
    pub alloc_id: String,
    pub task: String,
    /// What the runner is doing, and the process it runs.
    pub intent: TaskIntent,
    pub handle: Option<TaskHandle>,
}

impl TaskRecorder {
    /// Writes the record (fsync'd). A failure is logged: the task goes on, and a crash before
    /// the next good write recovers from the previous record.
    async fn save(&self, state: &TaskState, restart: RestartState) {
        let record = TaskRecord {
            intent: self.intent,
            handle: self.handle.clone(),
            state: state.clone(),
            restart,
        };
        let store = self.store.clone();
        let (alloc, task) = (self.alloc_id.clone(), self.task.clone());
        let written =
            tokio::task::spawn_blocking(move || store.put_task(&alloc, &task, &record)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(alloc = %self.alloc_id, task = %self.task, "recording the task: {e}")
            }
            Err(e) => {
                tracing::warn!(alloc = %self.alloc_id, task = %self.task, "recording the task: {e}")
            }
        }
    }
}

/// Now, as the restart tracker counts time: since the unix epoch (so that a recorded tracker
/// means the same to the next node daemon).
fn wall_now() -> Duration {
    Duration::from_nanos(u64::try_from(now_unix_nanos()).unwrap_or(0))
}

impl std::fmt::Debug for TaskRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskRunner")
            .field("task", &self.task.name)
            .finish_non_exhaustive()
    }
}

/// Signal number for a name like "SIGINT" or "SIGTERM".
pub fn parse_signal(name: &str) -> Result<i32, String> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| format!("{name:?} is not a signal name (e.g. SIGINT, SIGTERM)"))
}

enum RunEnd {
    Exited(ExitInfo),
    Killed(Option<ExitInfo>),
    /// Not started. `Some(cause)` when starting again cannot help (see
    /// [`RunOutcome::UnrecoverableStartFailure`]).
    StartFailed(Option<String>),
    /// Killed on a user's restart request: start again at once, outside the restart policy.
    Restarted,
    /// Gone while the node daemon was away (see [`TaskRunner::lost`]).
    Lost,
}

impl TaskRunner {
    fn push(&self, state: &mut TaskState, event: TaskEvent) {
        push_event(state, event);
    }

    async fn send(&self, state: &TaskState) {
        self.record.save(state, self.restart).await;
        // The allocation runner is gone only when the whole client shuts down.
        let _ = self
            .updates
            .send(TaskUpdate {
                task: self.task.name.clone(),
                state: state.clone(),
            })
            .await;
    }

    fn kill_requested(&self) -> Option<KillRequest> {
        self.kill.borrow().clone()
    }

    /// Runs the task to its end and returns its final state.
    pub async fn run(mut self) -> TaskState {
        let mut state = self.previous.clone().unwrap_or_default();
        let mut tracker = RestartTracker::resume(
            self.task.restart_policy.clone().unwrap_or_default(),
            self.job_type,
            self.stage,
            self.restart,
        );
        let mut reattach = self.reattach.take();
        let mut lost = self.lost.take();
        if reattach.is_none() && lost.is_none() && state.state == TaskLifecycleState::Dead {
            // Finished before the node daemon restarted: nothing left to do.
            return state;
        }
        if reattach.is_none() && lost.is_none() {
            if state.state == TaskLifecycleState::Running {
                // It ran under the previous node daemon, and the supervisor does not know it
                // now: the supervisor died meanwhile, and the one started since stopped the
                // tasks it left. Say so before it starts again.
                let text = "the task was gone when the node daemon came back: its task supervisor had died and its tasks were stopped; starting it again";
                let mut e = TaskEvent::new(event_type::DRIVER_FAILURE, text);
                e.driver_error = text.to_string();
                self.push(&mut state, e);
            }
            if state.events.is_empty() {
                self.push(
                    &mut state,
                    TaskEvent::new(event_type::RECEIVED, "Task received by client"),
                );
                self.push(
                    &mut state,
                    TaskEvent::new(event_type::TASK_SETUP, "Building Task Directory"),
                );
                self.send(&state).await;
            }
            if let Some(why) = self.setup_error.clone() {
                let mut e = TaskEvent::new(event_type::SETUP_FAILURE, why.clone());
                e.setup_error = why;
                e.fails_task = true;
                self.push(&mut state, e);
                return self.finish(state, true).await;
            }
            // Never started yet: wait for its turn in the group's lifecycle. A task that ran
            // before (restarts, a daemon that came back) does not wait again, as in Nomad.
            if state.started_at.is_none() && !self.wait_for_start_gate().await {
                let kill = self.kill_requested().map(|k| k.reason).unwrap_or_default();
                let mut e = TaskEvent::new(event_type::KILLED, "Task killed before it started");
                e.kill_reason = kill;
                self.push(&mut state, e);
                return self.finish(state, false).await;
            }
        }
        loop {
            if let Some(kill) = self.kill_requested() {
                if reattach.is_none() {
                    let mut e = TaskEvent::new(event_type::KILLED, "Task killed before it started");
                    e.kill_reason = kill.reason;
                    self.push(&mut state, e);
                    return self.finish(state, false).await;
                }
            }
            let end = match (lost.take(), reattach.take()) {
                (Some(handle), _) => self.lost_while_away(&mut state, &handle).await,
                (None, Some(status)) => self.reattached(&mut state, status).await,
                (None, None) => self.start_and_wait(&mut state).await,
            };
            let outcome = match &end {
                RunEnd::Killed(exit) => {
                    let mut e = TaskEvent::new(event_type::KILLED, "Task successfully killed");
                    if let Some(x) = exit {
                        e.exit_code = i64::from(x.exit_code);
                        e.signal = i64::from(x.signal);
                    }
                    self.push(&mut state, e);
                    self.remove().await;
                    return self.finish(state, false).await;
                }
                RunEnd::StartFailed(None) => RunOutcome::StartFailure,
                RunEnd::Lost => RunOutcome::Failure,
                RunEnd::StartFailed(Some(_)) => RunOutcome::UnrecoverableStartFailure,
                RunEnd::Restarted => {
                    self.remove().await;
                    state.state = TaskLifecycleState::Pending;
                    state.restarts += 1;
                    state.last_restart = Some(format_rfc3339(now_unix_nanos()));
                    self.send(&state).await;
                    continue;
                }
                RunEnd::Exited(exit) => {
                    self.remove().await;
                    if exit.succeeded() {
                        RunOutcome::Success
                    } else {
                        RunOutcome::Failure
                    }
                }
            };
            let decision = tracker.next(outcome, wall_now());
            self.restart = tracker.state();
            match decision {
                RestartDecision::Complete => return self.finish(state, false).await,
                RestartDecision::Fail { mut reason } => {
                    if let RunEnd::StartFailed(Some(cause)) = &end {
                        // The one line `job run` shows says why, not only that.
                        reason = format!("{reason}: {cause}");
                    }
                    let mut e = TaskEvent::new(event_type::NOT_RESTARTING, reason.clone());
                    e.restart_reason = reason;
                    e.fails_task = true;
                    self.push(&mut state, e);
                    return self.finish(state, true).await;
                }
                RestartDecision::Restart { delay, reason } => {
                    let mut e = TaskEvent::new(
                        event_type::RESTARTING,
                        format!(
                            "Task restarting in {}",
                            controlplane::model::duration::format_go(delay)
                        ),
                    );
                    e.restart_reason = reason;
                    e.start_delay = i64::try_from(delay.as_nanos()).unwrap_or(i64::MAX);
                    self.push(&mut state, e);
                    state.state = TaskLifecycleState::Pending;
                    state.restarts += 1;
                    state.last_restart = Some(format_rfc3339(now_unix_nanos()));
                    self.send(&state).await;
                    if self.sleep_unless_killed(delay).await {
                        let kill = self.kill_requested().map(|k| k.reason).unwrap_or_default();
                        let mut e = TaskEvent::new(
                            event_type::KILLED,
                            "Task killed while waiting to restart",
                        );
                        e.kill_reason = kill;
                        self.push(&mut state, e);
                        return self.finish(state, false).await;
                    }
                }
            }
        }
    }

    /// Waits until the group's lifecycle lets the task start: true then, false when a kill
    /// came first (or the allocation runner is gone).
    async fn wait_for_start_gate(&mut self) -> bool {
        let mut kill_open = true;
        loop {
            if self.kill_requested().is_some() {
                return false;
            }
            if *self.start_gate.borrow_and_update() {
                return true;
            }
            tokio::select! {
                changed = self.start_gate.changed() => if changed.is_err() { return false },
                changed = self.kill.changed(), if kill_open => if changed.is_err() { kill_open = false },
                Some(control) = self.control.recv() => control.refuse("the task has not started yet (it waits for its lifecycle hook)"),
            }
        }
    }

    /// Sleeps `delay`; returns true if a kill arrived meanwhile.
    async fn sleep_unless_killed(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            if self.kill_requested().is_some() {
                return true;
            }
            tokio::select! {
                _ = &mut sleep => return false,
                changed = self.kill.changed() => if changed.is_err() { return false },
                Some(control) = self.control.recv() => control.refuse("the task is not running (it is waiting to restart)"),
            }
        }
    }

    async fn finish(&mut self, mut state: TaskState, failed: bool) -> TaskState {
        self.record.intent = TaskIntent::Done;
        self.record.handle = None;
        state.state = TaskLifecycleState::Dead;
        state.failed = failed;
        state.finished_at = Some(format_rfc3339(now_unix_nanos()));
        self.send(&state).await;
        state
    }

    async fn start_and_wait(&mut self, state: &mut TaskState) -> RunEnd {
        let mut launch = match self.driver.prepare(&self.task, &self.ctx) {
            Ok(l) => l,
            Err(e) => {
                // The task's config against this node's driver settings: the same next time.
                let message = e.to_string();
                let mut ev = TaskEvent::new(event_type::DRIVER_FAILURE, message.clone());
                ev.driver_error = message.clone();
                self.push(state, ev);
                self.send(state).await;
                // The failure line names the task already.
                let prefix = format!("task {:?}: ", e.task);
                let cause = message.strip_prefix(&prefix).unwrap_or(&message);
                return RunEnd::StartFailed(Some(cause.to_string()));
            }
        };
        if launch.limits.cpuset.is_empty() {
            if let Some(shared) = self.shared_cores.as_mut() {
                // Seen now: only later changes are pushed to the running task.
                if let Some(cpus) = shared.borrow_and_update().cpus() {
                    launch.limits.shared_cpuset = cpus.to_vec();
                }
            }
        }
        // Recorded before asking: after a crash here, the supervisor's list tells whether the
        // start happened (reattach) or not (start), never a second copy.
        self.record.intent = TaskIntent::Start;
        self.record.handle = None;
        self.record.save(state, self.restart).await;
        let started = self
            .supervisor
            .call(&Request::Start {
                launch: Box::new(launch),
            })
            .await;
        match started {
            Ok(Response::Started { pid, started_at }) => {
                self.record.intent = TaskIntent::Run;
                self.record.handle = Some(TaskHandle {
                    task_id: self.ctx.task_id.clone(),
                    pid,
                    started_at,
                });
                state.state = TaskLifecycleState::Running;
                state.started_at = Some(format_rfc3339(started_at));
                self.push(
                    state,
                    TaskEvent::new(
                        event_type::STARTED,
                        format!("Task started by client (pid {pid})"),
                    ),
                );
                self.send(state).await;
                self.wait_or_kill(state).await
            }
            Ok(Response::Error {
                step,
                message,
                permanent,
            }) => {
                let cause = match step {
                    Some(step) => format!("{step}: {message}"),
                    None => message,
                };
                self.start_failed(state, format!("failed to start task: {cause}"))
                    .await;
                RunEnd::StartFailed(permanent.then_some(cause))
            }
            Ok(other) => {
                self.start_failed(
                    state,
                    format!(
                        "failed to start task: unexpected answer from the supervisor: {other:?}"
                    ),
                )
                .await
            }
            Err(e) => {
                self.start_failed(state, format!("failed to start task: {e}"))
                    .await
            }
        }
    }

    async fn start_failed(&mut self, state: &mut TaskState, text: String) -> RunEnd {
        self.record.intent = TaskIntent::Wait;
        let mut ev = TaskEvent::new(event_type::DRIVER_FAILURE, text.clone());
        ev.driver_error = text;
        self.push(state, ev);
        self.send(state).await;
        RunEnd::StartFailed(None)
    }

    async fn reattached(&mut self, state: &mut TaskState, status: TaskStatus) -> RunEnd {
        if let Some(exit) = status.exit {
            // It ended while the node daemon was away: report it as any other exit.
            self.record.intent = TaskIntent::Wait;
            self.record.handle = None;
            run_ended(state, &exit);
            self.send(state).await;
            return RunEnd::Exited(exit);
        }
        self.record.intent = TaskIntent::Run;
        self.record.handle = Some(TaskHandle {
            task_id: status.task_id.clone(),
            pid: status.pid,
            started_at: status.started_at,
        });
        state.state = TaskLifecycleState::Running;
        if state.started_at.is_none() {
            state.started_at = Some(format_rfc3339(status.started_at));
        }
        self.push(
            state,
            TaskEvent::new(
                event_type::REATTACHED,
                format!("Reattached to running task (pid {})", status.pid),
            ),
        );
        self.send(state).await;
        if let Some(shared) = self.shared_cores.as_mut() {
            // Reservations may have changed while the node daemon was away.
            shared.mark_changed();
        }
        self.wait_or_kill(state).await
    }

    /// The task recorded as running is gone: say so, and let the restart policy decide.
    async fn lost_while_away(&mut self, state: &mut TaskState, handle: &TaskHandle) -> RunEnd {
        self.record.intent = TaskIntent::Wait;
        self.record.handle = None;
        gone_while_away(state, handle.pid);
        self.send(state).await;
        RunEnd::Lost
    }

    async fn wait_for_exit(&self) -> Result<ExitInfo, String> {
        wait_for_exit(&self.supervisor, &self.ctx.task_id).await
    }

    async fn wait_or_kill(&mut self, state: &mut TaskState) -> RunEnd {
        let supervisor = self.supervisor.clone();
        let supervisor_at_start = supervisor.pid();
        let task_id = self.ctx.task_id.clone();
        let exited = wait_for_exit(&supervisor, &task_id);
        tokio::pin!(exited);
        let mut kill_open = true;
        let mut shared_open = self.shared_cores.is_some();
        let exit = loop {
            if let Some(kill) = self.kill_requested() {
                return self.kill_task(state, kill).await;
            }
            let shared_changed = async {
                match self.shared_cores.as_mut() {
                    Some(shared) => shared.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                exit = &mut exited => break exit,
                changed = self.kill.changed(), if kill_open => if changed.is_err() { kill_open = false },
                changed = shared_changed, if shared_open => match changed {
                    Ok(()) => self.follow_shared_cores().await,
                    Err(_) => shared_open = false,
                },
                Some(control) = self.control.recv() => match control {
                    TaskControl::Signal { signal, reply } => {
                        let mut e = TaskEvent::new(event_type::SIGNALING, format!("Task being sent signal {signal}"));
                        e.details.insert("signal".into(), signal.to_string());
                        self.push(state, e);
                        self.send(state).await;
                        let result = match supervisor.call(&Request::Signal { task_id: task_id.clone(), signal }).await {
                            Ok(Response::Ok) => Ok(()),
                            Ok(Response::Error { message, .. }) => Err(message),
                            Ok(other) => Err(format!("unexpected answer from the supervisor: {other:?}")),
                            Err(e) => Err(e.to_string()),
                        };
                        let _ = reply.send(result);
                    }
                    TaskControl::Restart { reply, reason } => {
                        let why = reason.as_deref().unwrap_or("User requested task to restart");
                        self.push(state, TaskEvent::new(event_type::RESTART_SIGNAL, why));
                        let _ = reply.send(Ok(()));
                        let killed = self.kill_task(state, KillRequest { reason: "restart requested".into() }).await;
                        // As Nomad shows it: how the old process ended, then the restart.
                        if let RunEnd::Killed(Some(exit)) = &killed {
                            record_exit(state, exit);
                        }
                        let mut e = TaskEvent::new(event_type::RESTARTING, "Task restarting in 0s");
                        e.restart_reason = "User requested restart".into();
                        self.push(state, e);
                        return RunEnd::Restarted;
                    }
                },
            }
        };
        self.record.intent = TaskIntent::Wait;
        self.record.handle = None;
        match exit {
            Ok(exit) => {
                run_ended(state, &exit);
                self.send(state).await;
                RunEnd::Exited(exit)
            }
            Err(message) => {
                let text = if supervisor.pid() != supervisor_at_start {
                    // The Wait retried into a new supervisor, which stopped the task.
                    "the task supervisor died and was replaced; the task was stopped with it (its output had nowhere to go)".to_string()
                } else {
                    format!("lost track of the task: {message}")
                };
                let mut ev = TaskEvent::new(event_type::DRIVER_FAILURE, text);
                ev.driver_error = message.clone();
                self.push(state, ev);
                self.send(state).await;
                RunEnd::StartFailed(None)
            }
        }
    }

    /// Moves the running task onto the newest shared cores. A failure is logged and the task
    /// keeps running where it is: the next change tries again.
    async fn follow_shared_cores(&mut self) {
        let Some(shared) = self.shared_cores.as_mut() else {
            return;
        };
        let Some(cpus) = shared.borrow_and_update().cpus().map(<[u32]>::to_vec) else {
            return;
        };
        match self.supervisor.set_cpuset(&self.ctx.task_id, &cpus).await {
            Ok(()) => tracing::debug!(
                task = %self.ctx.task_id,
                cpus = %super::taskenv::cpuset_string(&cpus),
                "moved to the shared cores"
            ),
            Err(e) => tracing::warn!(
                task = %self.ctx.task_id,
                cpus = %super::taskenv::cpuset_string(&cpus),
                "cannot move the task to the shared cores: {e}"
            ),
        }
    }

    async fn kill_task(&mut self, state: &mut TaskState, kill: KillRequest) -> RunEnd {
        let timeout = self
            .task
            .kill_timeout
            .unwrap_or(controlplane::model::defaults::KILL_TIMEOUT);
        let signal_name = if self.task.kill_signal.is_empty() {
            controlplane::model::defaults::KILL_SIGNAL
        } else {
            &self.task.kill_signal
        };
        let signal = parse_signal(signal_name).unwrap_or(libc::SIGINT);
        let mut e = TaskEvent::new(
            event_type::KILLING,
            format!(
                "Sent {signal_name}. Waiting {} before force killing",
                controlplane::model::duration::format_go(timeout)
            ),
        );
        e.kill_reason = kill.reason;
        self.push(state, e);
        self.send(state).await;
        let grace_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let request = Request::Kill {
            task_id: self.ctx.task_id.clone(),
            signal,
            grace_ms,
        };
        if let Err(e) = self.supervisor.call(&request).await {
            tracing::warn!(task = %self.ctx.task_id, "kill: {e}");
        }
        let exit = self.wait_for_exit().await.ok();
        self.record.intent = TaskIntent::Wait;
        self.record.handle = None;
        RunEnd::Killed(exit)
    }

    async fn remove(&self) {
        match self
            .supervisor
            .call(&Request::Remove {
                task_id: self.ctx.task_id.clone(),
            })
            .await
        {
            Ok(Response::Ok) => {}
            Ok(Response::Error { message, .. }) => {
                tracing::warn!(task = %self.ctx.task_id, "cleanup: {message}")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(task = %self.ctx.task_id, "cleanup: {e}"),
        }
    }
}

/// Appends `event`, keeping the newest ten (as Nomad's client does).
fn push_event(state: &mut TaskState, event: TaskEvent) {
    const MAX_EVENTS: usize = 10;
    state.events.push(event);
    if state.events.len() > MAX_EVENTS {
        let excess = state.events.len() - MAX_EVENTS;
        state.events.drain(..excess);
    }
}

/// The state reported when a run exited, before the restart policy decides: the exit is an
/// event, and the task keeps its state (as Nomad's does) until the decision makes it pending
/// (restart) or dead ([`TaskRunner::finish`]). Dead here, not failed, would tell the servers
/// that a one-task allocation is complete, a terminal status they then hold for good, had
/// this report reached them and the decision's not (a node daemon killed in between).
fn run_ended(state: &mut TaskState, exit: &ExitInfo) {
    record_exit(state, exit);
}

/// The state reported when a task recorded as running was gone when the node daemon came
/// back, before the restart policy decides.
fn gone_while_away(state: &mut TaskState, pid: i32) {
    let text = format!(
        "the task (pid {pid}) was gone when the node daemon came back: its task supervisor had died and its tasks were stopped"
    );
    let mut e = TaskEvent::new(event_type::DRIVER_FAILURE, text.clone());
    e.driver_error = text;
    // Not dead before the restart policy decides (see `run_ended`).
    push_event(state, e);
}

fn record_exit(state: &mut TaskState, exit: &ExitInfo) {
    if exit.oom_killed {
        let mut e = TaskEvent::new(event_type::OOM_KILLED, "OOM Killed");
        e.exit_code = i64::from(exit.exit_code);
        e.signal = i64::from(exit.signal);
        push_event(state, e);
    }
    let mut e = TaskEvent::new(
        event_type::TERMINATED,
        format!(
            "Exit Code: {}{}",
            exit.exit_code,
            if exit.signal != 0 {
                format!(", Signal: {}", exit.signal)
            } else {
                String::new()
            }
        ),
    );
    e.exit_code = i64::from(exit.exit_code);
    e.signal = i64::from(exit.signal);
    if exit.oom_killed {
        e.details.insert("oom_killed".into(), "true".into());
    }
    push_event(state, e);
}

/// Waits for the supervisor to report the task's exit. A supervisor restart drops the
/// connection; the wait is asked again (bounded).
async fn wait_for_exit(supervisor: &SupervisorClient, task_id: &str) -> Result<ExitInfo, String> {
    let request = Request::Wait {
        task_id: task_id.to_string(),
    };
    let mut last = String::new();
    for _ in 0..WAIT_ATTEMPTS {
        match supervisor.call(&request).await {
            Ok(Response::Exited { exit }) => return Ok(exit),
            Ok(Response::Error { message, .. }) => return Err(message),
            Ok(other) => return Err(format!("unexpected answer from the supervisor: {other:?}")),
            Err(e) => {
                last = e.to_string();
                tokio::time::sleep(WAIT_RETRY).await;
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::alloc_runner::client_status;
    use controlplane::model::ClientStatus;
    use std::collections::BTreeMap;

    /// The one task of an allocation, as reported: its client status.
    fn reported(state: &TaskState) -> ClientStatus {
        client_status(&BTreeMap::from([("f".to_string(), state.clone())]))
    }

    #[test]
    fn an_exit_before_the_restart_decision_never_reports_the_allocation_complete() {
        // A service task exits (code 3); the report of that exit may reach the servers before
        // the restart policy's "pending" (a node daemon killed in between): dead and not
        // failed there would make the servers hold the allocation complete, for good.
        let mut state = TaskState {
            state: TaskLifecycleState::Running,
            ..Default::default()
        };
        run_ended(
            &mut state,
            &ExitInfo {
                exit_code: 3,
                ..Default::default()
            },
        );
        assert_eq!(
            state.state,
            TaskLifecycleState::Running,
            "as Nomad's: the exit is an event"
        );
        assert_eq!(reported(&state), ClientStatus::Running);
        assert_eq!(
            state.events.last().map(|e| e.event_type.as_str()),
            Some(event_type::TERMINATED)
        );

        // Recorded as running, gone when the daemon came back (its state was made pending).
        let mut state = TaskState::default();
        gone_while_away(&mut state, 42);
        assert_ne!(state.state, TaskLifecycleState::Dead);
        assert_eq!(reported(&state), ClientStatus::Pending);
        assert!(state
            .events
            .iter()
            .any(|e| e.driver_error.contains("pid 42")));
    }

    #[test]
    fn signal_names() {
        assert_eq!(parse_signal("SIGINT").unwrap(), libc::SIGINT);
        assert_eq!(parse_signal("sigterm").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("HUP").unwrap(), libc::SIGHUP);
        assert!(parse_signal("SIGNOPE").unwrap_err().contains("SIGNOPE"));
    }
}
