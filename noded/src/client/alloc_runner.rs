//! One allocation on this node: builds its directory, runs its tasks, turns their states into
//! the allocation's client status (Nomad's rules), and stops everything when the servers say so
//! or when a task fails for good (the group fails together) or its leader task ends.

use std::collections::BTreeMap;
use std::sync::Arc;

use controlplane::model::{
    AllocClientUpdate, Allocation, ClientStatus, DesiredStatus, TaskLifecycleState, TaskState,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::allocdir::{AllocDir, DirOwner};
use super::task_runner::{KillRequest, TaskControl, TaskRunner, TaskUpdate};
use super::taskenv::{self, NodeContext, TaskPaths};
use super::ClientShared;
use crate::driver::TaskContext;
use crate::supervisor::protocol::TaskStatus;

/// User requests (`alloc signal`, `alloc restart`) queued for one allocation before the
/// HTTP handler waits; each is answered quickly (the work is spawned).
const ALLOC_CONTROL_QUEUE: usize = 16;
/// Task state changes queued from an allocation's task runners before they wait; the runner
/// takes each at once (a report is a queue send, see `report`).
const TASK_UPDATE_QUEUE: usize = 64;
/// User requests queued for one task before the allocation's dispatcher waits.
const TASK_CONTROL_QUEUE: usize = 8;

/// Nomad's client status from task states: any failed → failed; else any running → running;
/// else any pending → pending; else complete.
pub fn client_status(states: &BTreeMap<String, TaskState>) -> ClientStatus {
    let (mut failed, mut running, mut pending) = (false, false, false);
    for s in states.values() {
        match s.state {
            TaskLifecycleState::Dead if s.failed => failed = true,
            TaskLifecycleState::Dead => {}
            TaskLifecycleState::Running => running = true,
            TaskLifecycleState::Pending => pending = true,
        }
    }
    if failed {
        ClientStatus::Failed
    } else if running {
        ClientStatus::Running
    } else if pending || states.is_empty() {
        ClientStatus::Pending
    } else {
        ClientStatus::Complete
    }
}

fn describe(status: ClientStatus) -> &'static str {
    match status {
        ClientStatus::Pending => "No tasks have started",
        ClientStatus::Running => "Tasks are running",
        ClientStatus::Complete => "All tasks have completed",
        ClientStatus::Failed => "Failed tasks",
        ClientStatus::Lost | ClientStatus::Unknown => "",
    }
}

/// What a user asks of an allocation's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocAction {
    Signal(i32),
    Restart,
}

/// A request for one task (or every running task when `task` is `None`).
#[derive(Debug)]
pub struct AllocControl {
    pub task: Option<String>,
    pub action: AllocAction,
    pub reply: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// A running allocation, as the client holds it.
#[derive(Debug)]
pub struct AllocRunnerHandle {
    pub alloc_id: String,
    updates: watch::Sender<Arc<Allocation>>,
    controls: mpsc::Sender<AllocControl>,
    pub done: watch::Receiver<bool>,
}

impl AllocRunnerHandle {
    /// Passes a newer version of the allocation (e.g. desired status stop).
    pub fn update(&self, alloc: Arc<Allocation>) {
        self.updates.send_replace(alloc);
    }

    pub fn is_done(&self) -> bool {
        *self.done.borrow()
    }

    /// A sender for control requests (usable after the runners lock is released).
    pub fn controls_clone(&self) -> mpsc::Sender<AllocControl> {
        self.controls.clone()
    }
}

/// Signals or restarts a task (or all of them) and waits for the answer.
pub async fn control_via(
    controls: &mpsc::Sender<AllocControl>,
    task: Option<String>,
    action: AllocAction,
) -> Result<(), String> {
    let (reply, rx) = tokio::sync::oneshot::channel();
    controls
        .send(AllocControl {
            task,
            action,
            reply,
        })
        .await
        .map_err(|_| "the allocation is no longer running on this node".to_string())?;
    rx.await
        .map_err(|_| "the allocation stopped before answering".to_string())?
}

/// Starts an allocation runner. `reattach` holds the supervisor's records of this allocation's
/// tasks, keyed by task name, for a node daemon that restarted.
pub fn start(
    shared: Arc<ClientShared>,
    alloc: Arc<Allocation>,
    reattach: BTreeMap<String, TaskStatus>,
) -> AllocRunnerHandle {
    let (updates_tx, updates_rx) = watch::channel(alloc.clone());
    let (done_tx, done_rx) = watch::channel(false);
    let (controls_tx, controls_rx) = mpsc::channel(ALLOC_CONTROL_QUEUE);
    let alloc_id = alloc.id.clone();
    tokio::spawn(async move {
        run(shared, alloc, updates_rx, controls_rx, reattach).await;
        done_tx.send_replace(true);
    });
    AllocRunnerHandle {
        alloc_id,
        updates: updates_tx,
        controls: controls_tx,
        done: done_rx,
    }
}

async fn run(
    shared: Arc<ClientShared>,
    alloc: Arc<Allocation>,
    mut alloc_updates: watch::Receiver<Arc<Allocation>>,
    mut controls_rx: mpsc::Receiver<AllocControl>,
    reattach: BTreeMap<String, TaskStatus>,
) {
    let Some(job) = alloc.job.clone() else {
        tracing::warn!(alloc = %alloc.id, "allocation carries no job; nothing to run");
        return;
    };
    let Some(group) = job.group(&alloc.task_group).cloned() else {
        tracing::warn!(alloc = %alloc.id, "task group {:?} is not in the job", alloc.task_group);
        return;
    };
    let mut states: BTreeMap<String, TaskState> = alloc.task_states.clone();
    let mut reported: Option<(ClientStatus, BTreeMap<String, TaskState>)> = None;

    let dir = match AllocDir::new(&shared.allocs_root, &alloc.id) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(alloc = %alloc.id, "{e}");
            return;
        }
    };
    let shared_error = shared
        .alloc_dirs
        .build_shared(&dir)
        .err()
        .map(|e| format!("building the allocation directory: {e}"));

    let node = NodeContext {
        node_id: shared.node_id.clone(),
        node_name: shared.node_name.clone(),
        datacenter: shared.datacenter.clone(),
        region: shared.region.clone(),
    };
    let (update_tx, mut update_rx) = mpsc::channel::<TaskUpdate>(TASK_UPDATE_QUEUE);
    let mut kills: BTreeMap<String, watch::Sender<Option<KillRequest>>> = BTreeMap::new();
    let mut task_controls: BTreeMap<String, mpsc::Sender<TaskControl>> = BTreeMap::new();
    let mut runners = JoinSet::new();
    for task in &group.tasks {
        let (kill_tx, kill_rx) = watch::channel(None);
        kills.insert(task.name.clone(), kill_tx);
        let (control_tx, control_rx) = mpsc::channel(TASK_CONTROL_QUEUE);
        task_controls.insert(task.name.clone(), control_tx);
        let Some(driver) = shared.drivers.get(&task.driver) else {
            // A driver this node lacks: the scheduler should not have placed it here.
            let mut state = states.get(&task.name).cloned().unwrap_or_default();
            state.state = TaskLifecycleState::Dead;
            state.failed = true;
            state.events.push(controlplane::model::TaskEvent::new(
                controlplane::model::event_type::DRIVER_FAILURE,
                format!("driver {:?} is not available on this node", task.driver),
            ));
            states.insert(task.name.clone(), state);
            continue;
        };
        let user_name = if task.user.is_empty() {
            driver.default_user().to_string()
        } else {
            task.user.clone()
        };
        let mut setup_error = shared_error.clone();
        let mut owner = DirOwner { uid: 0, gid: 0 };
        match isolation::user::lookup(&user_name, std::path::Path::new("/etc")) {
            Ok(user) => {
                owner = DirOwner {
                    uid: user.uid,
                    gid: user.gid,
                }
            }
            Err(e) => setup_error = setup_error.or(Some(format!("user: {e}"))),
        }
        if setup_error.is_none() {
            if let Err(e) = shared.alloc_dirs.build_task(&dir, &task.name, owner) {
                setup_error = Some(format!("building the task directory: {e}"));
            }
        }
        let task_dir = dir.task_dir(&task.name);
        let paths = if driver.sees_host_paths() {
            TaskPaths::host(&dir.shared_dir(), &task_dir)
        } else {
            TaskPaths::jailed()
        };
        let nomad = taskenv::nomad_variables(&alloc, &job, task, &paths, &node);
        let env = match taskenv::task_environment(&nomad, &task.env, |value| {
            shared.interpolate(value, &nomad)
        }) {
            Ok(env) => env,
            Err(e) => {
                setup_error = setup_error.or(Some(e));
                nomad.clone()
            }
        };
        let allocated = alloc
            .allocated_resources
            .tasks
            .get(&task.name)
            .cloned()
            .unwrap_or_else(|| requested_resources(task));
        // Without reserved cores the task lives on the node's shared cores.
        let shared_cores = allocated
            .cpu
            .reserved_cores
            .is_empty()
            .then(|| shared.shared_cores.subscribe());
        let runner = TaskRunner {
            task: task.clone(),
            job_type: job.job_type,
            ctx: TaskContext {
                task_id: format!("{}.{}", alloc.id, task.name),
                allocated,
                env,
                alloc_dir: dir.shared_dir(),
                task_dir,
                logs_dir: dir.logs_dir(),
            },
            driver: driver.clone(),
            supervisor: shared.supervisor.clone(),
            updates: update_tx.clone(),
            kill: kill_rx,
            control: control_rx,
            previous: alloc.task_states.get(&task.name).cloned(),
            reattach: reattach.get(&task.name).cloned(),
            setup_error,
            shared_cores,
        };
        let name = task.name.clone();
        runners.spawn(async move { (name, runner.run().await) });
    }
    drop(update_tx);
    if shared_error.is_none() {
        let names: Vec<&str> = group.tasks.iter().map(|t| t.name.as_str()).collect();
        if let Err(e) = dir.discard_spare_task(&names) {
            tracing::warn!(alloc = %alloc.id, "removing the unused spare task dir: {e}");
        }
    }

    let leader = group
        .tasks
        .iter()
        .find(|t| t.leader)
        .map(|t| t.name.clone());
    let mut stopping = false;
    if alloc.desired_status != DesiredStatus::Run {
        stopping = true;
        stop_all(&kills, "allocation is not wanted (desired status stop)");
    }
    report(&shared, &alloc.id, &states, &mut reported).await;
    loop {
        tokio::select! {
            Some(update) = update_rx.recv() => {
                let failed_for_good = update.state.state == TaskLifecycleState::Dead && update.state.failed;
                let leader_done = leader.as_deref() == Some(update.task.as_str())
                    && update.state.state == TaskLifecycleState::Dead;
                states.insert(update.task.clone(), update.state);
                if !stopping && failed_for_good {
                    stopping = true;
                    stop_all(&kills, &format!("sibling task {:?} failed", update.task));
                }
                if !stopping && leader_done {
                    stopping = true;
                    stop_all(&kills, &format!("leader task {:?} is dead", update.task));
                }
                report(&shared, &alloc.id, &states, &mut reported).await;
            }
            Some(joined) = runners.join_next() => {
                if let Ok((name, state)) = joined {
                    states.insert(name, state);
                    report(&shared, &alloc.id, &states, &mut reported).await;
                }
                if runners.is_empty() {
                    break;
                }
            }
            changed = alloc_updates.changed(), if !stopping => {
                if changed.is_err() {
                    stopping = true;
                    stop_all(&kills, "the client is shutting down");
                    continue;
                }
                let newest = alloc_updates.borrow_and_update().clone();
                if newest.desired_status != DesiredStatus::Run {
                    stopping = true;
                    let reason = if newest.desired_description.is_empty() {
                        "allocation stopped".to_string()
                    } else {
                        newest.desired_description.clone()
                    };
                    stop_all(&kills, &reason);
                }
            }
            Some(control) = controls_rx.recv() => dispatch_control(control, &states, &task_controls),
            else => break,
        }
    }
    while let Some(update) = update_rx.recv().await {
        states.insert(update.task, update.state);
    }
    report(&shared, &alloc.id, &states, &mut reported).await;
    // Tasks are gone: release the host mounts; the directory stays for logs until GC.
    if let Err(e) = dir.unmount_all() {
        tracing::warn!(alloc = %alloc.id, "unmounting task secrets: {e}");
    }
}

/// Routes a user's request to the named task (or to every running one), answering without
/// holding up the runner's loop (a restart waits for the kill).
fn dispatch_control(
    control: AllocControl,
    states: &BTreeMap<String, TaskState>,
    task_controls: &BTreeMap<String, mpsc::Sender<TaskControl>>,
) {
    let targets: Vec<String> = match &control.task {
        Some(t) if task_controls.contains_key(t) => vec![t.clone()],
        Some(t) => {
            let _ = control.reply.send(Err(format!(
                "task {t:?} is not in this allocation (tasks: {})",
                task_controls.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
            return;
        }
        None => states
            .iter()
            .filter(|(_, s)| s.state == TaskLifecycleState::Running)
            .map(|(name, _)| name.clone())
            .collect(),
    };
    if targets.is_empty() {
        let _ = control
            .reply
            .send(Err("no task of this allocation is running".to_string()));
        return;
    }
    let senders: Vec<(String, mpsc::Sender<TaskControl>)> = targets
        .into_iter()
        .filter_map(|t| task_controls.get(&t).cloned().map(|s| (t, s)))
        .collect();
    let action = control.action;
    let reply = control.reply;
    tokio::spawn(async move {
        let mut errors = Vec::new();
        for (name, sender) in senders {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let message = match action {
                AllocAction::Signal(signal) => TaskControl::Signal { signal, reply: tx },
                AllocAction::Restart => TaskControl::Restart { reply: tx },
            };
            let result = match sender.send(message).await {
                Ok(()) => rx
                    .await
                    .unwrap_or_else(|_| Err("the task ended".to_string())),
                Err(_) => Err("the task has finished".to_string()),
            };
            if let Err(e) = result {
                errors.push(format!("task {name:?}: {e}"));
            }
        }
        let _ = reply.send(if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        });
    });
}

/// What a task asked for, for an allocation that carries no allocated resources (written by
/// an older server).
fn requested_resources(
    task: &controlplane::model::Task,
) -> controlplane::model::AllocatedTaskResources {
    let r = task.resources.clone().unwrap_or_default();
    controlplane::model::AllocatedTaskResources {
        cpu: controlplane::model::AllocatedCpuResources {
            cpu_shares: r.cpu,
            reserved_cores: Vec::new(),
        },
        memory: controlplane::model::AllocatedMemoryResources {
            memory_mb: r.memory_mb,
            memory_max_mb: 0,
        },
    }
}

fn stop_all(kills: &BTreeMap<String, watch::Sender<Option<KillRequest>>>, reason: &str) {
    for tx in kills.values() {
        if tx.borrow().is_none() {
            tx.send_replace(Some(KillRequest {
                reason: reason.to_string(),
            }));
        }
    }
}

async fn report(
    shared: &ClientShared,
    alloc_id: &str,
    states: &BTreeMap<String, TaskState>,
    reported: &mut Option<(ClientStatus, BTreeMap<String, TaskState>)>,
) {
    let status = client_status(states);
    if reported
        .as_ref()
        .is_some_and(|(s, t)| *s == status && t == states)
    {
        return;
    }
    *reported = Some((status, states.clone()));
    shared
        .send_update(AllocClientUpdate {
            id: alloc_id.to_string(),
            client_status: status,
            client_description: describe(status).to_string(),
            task_states: states.clone(),
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(state: TaskLifecycleState, failed: bool) -> TaskState {
        TaskState {
            state,
            failed,
            ..Default::default()
        }
    }

    #[test]
    fn client_status_follows_nomads_rules() {
        use TaskLifecycleState::*;
        let m = |v: Vec<TaskState>| -> BTreeMap<String, TaskState> {
            v.into_iter()
                .enumerate()
                .map(|(i, s)| (i.to_string(), s))
                .collect()
        };
        assert_eq!(client_status(&m(vec![])), ClientStatus::Pending);
        assert_eq!(
            client_status(&m(vec![st(Pending, false), st(Running, false)])),
            ClientStatus::Running
        );
        assert_eq!(
            client_status(&m(vec![st(Dead, false), st(Dead, false)])),
            ClientStatus::Complete
        );
        assert_eq!(
            client_status(&m(vec![st(Dead, true), st(Running, false)])),
            ClientStatus::Failed
        );
        assert_eq!(
            client_status(&m(vec![st(Dead, false), st(Pending, false)])),
            ClientStatus::Pending
        );
    }
}
