//! One allocation on this node: builds its directory, runs its tasks, turns their states into
//! the allocation's client status (Nomad's rules), and stops everything when the servers say so
//! or when a task fails for good (the group fails together) or its leader task ends.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use controlplane::model::{
    AllocClientUpdate, AllocDeploymentStatus, AllocNetworkStatus, Allocation, ClientStatus,
    DesiredStatus, Job, JobType, Task, TaskGroup, TaskLifecycleState, TaskState,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::allocdir::{AllocDir, DirOwner};
use super::health::HealthWatch;
use super::lifecycle::{Coordinator, Stage};
use super::network::record::AllocNetwork;
use super::network::task::{task_network, write_etc_files, NetworkMode, TaskNetwork};
use super::services::plan::NodeSide;
use super::services::{self, AllocServices};
use super::state::{Reported, TaskHandle, TaskIntent, TaskRecord};
use super::task_runner::{KillRequest, TaskControl, TaskRecorder, TaskRunner, TaskUpdate};
use super::taskenv::{self, NodeContext, TaskPaths};
use super::ClientShared;
use crate::driver::{Driver, TaskContext};
use crate::supervisor::protocol::TaskStatus;

/// User requests (`alloc signal`, `alloc restart`) queued for one allocation before the
/// HTTP handler waits; each is answered quickly (the work is spawned).
const ALLOC_CONTROL_QUEUE: usize = 16;
/// Task state changes queued from an allocation's task runners before they wait; the runner
/// takes each at once (a report is a queue send, see `report`).
const TASK_UPDATE_QUEUE: usize = 64;
/// User requests queued for one task before the allocation's dispatcher waits.
const TASK_CONTROL_QUEUE: usize = 8;

/// The client description (and kill reason) of an allocation stopped by its group's
/// `max_run_duration`, in Nomad's words.
pub const MAX_RUN_DURATION_EXCEEDED: &str = "allocation exceeded max_run_duration";

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

pub use super::alloc_control::{control_for, control_via, AllocAction, AllocControl};

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

    /// The newest version of the allocation this runner was given.
    pub fn current(&self) -> Arc<Allocation> {
        self.updates.borrow().clone()
    }

    /// A sender for control requests (usable after the runners lock is released).
    pub fn controls_clone(&self) -> mpsc::Sender<AllocControl> {
        self.controls.clone()
    }
}

/// How a task of an allocation comes back after the node daemon restarted.
#[derive(Debug, Clone, Default)]
pub struct TaskResume {
    /// The supervisor's record of the task (running, or exited while the daemon was away).
    pub reattach: Option<TaskStatus>,
    /// Recorded as running and gone since.
    pub lost: Option<TaskHandle>,
    /// This node's record of the task.
    pub record: Option<TaskRecord>,
}

impl TaskResume {
    /// From the supervisor's list alone (no record).
    pub fn from_supervisor(tasks: BTreeMap<String, TaskStatus>) -> BTreeMap<String, TaskResume> {
        tasks
            .into_iter()
            .map(|(name, status)| {
                (
                    name,
                    TaskResume {
                        reattach: Some(status),
                        ..Default::default()
                    },
                )
            })
            .collect()
    }
}

/// Starts an allocation runner. `resume` holds, by task name, what a node daemon that
/// restarted knows of this allocation's tasks (empty for a new allocation).
pub fn start(
    shared: Arc<ClientShared>,
    alloc: Arc<Allocation>,
    resume: BTreeMap<String, TaskResume>,
) -> AllocRunnerHandle {
    let (updates_tx, updates_rx) = watch::channel(alloc.clone());
    let (done_tx, done_rx) = watch::channel(false);
    let (controls_tx, controls_rx) = mpsc::channel(ALLOC_CONTROL_QUEUE);
    let alloc_id = alloc.id.clone();
    // check_restart restarts a task through the same controls a user's request takes.
    let own_controls = controls_tx.clone();
    tokio::spawn(async move {
        let id = alloc.id.clone();
        run(
            shared.clone(),
            alloc,
            updates_rx,
            (controls_rx, own_controls),
            resume,
        )
        .await;
        // Terminal here: recorded as such (a restarted daemon does not run it again) and
        // handed to the garbage collector.
        let ended = controlplane::model::now_unix_nanos();
        let store = shared.state.clone();
        let record_id = id.clone();
        let recorded = tokio::task::spawn_blocking(move || {
            store.update_alloc(&record_id, |r| r.terminal_at_unix_nanos = Some(ended))
        })
        .await;
        if let Ok(Err(e)) = recorded {
            tracing::warn!(alloc = %id, "recording the allocation as terminal: {e}");
        }
        // Collected at the next `gc_interval` check at the earliest (as Nomad's), so that a
        // finished allocation's logs can still be read for a while on a full disk.
        shared.gc.mark(&id, ended);
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
    (mut controls, own_controls): (mpsc::Receiver<AllocControl>, mpsc::Sender<AllocControl>),
    resume: BTreeMap<String, TaskResume>,
) {
    let Some(job) = alloc.job.clone() else {
        tracing::warn!(alloc = %alloc.id, "allocation carries no job; nothing to run");
        return;
    };
    let Some(group) = job.group(&alloc.task_group).cloned() else {
        tracing::warn!(alloc = %alloc.id, "task group {:?} is not in the job", alloc.task_group);
        return;
    };
    let dir = match AllocDir::new(&shared.allocs_root, &alloc.id) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(alloc = %alloc.id, "{e}");
            return;
        }
    };
    let node = NodeContext {
        node_id: shared.node_id.clone(),
        node_name: shared.node_name.clone(),
        datacenter: shared.datacenter.clone(),
        region: shared.region.clone(),
    };
    let mut shared_error = shared
        .alloc_dirs
        .build_shared(&dir)
        .err()
        .map(|e| format!("building the allocation directory: {e}"));
    let (network, network_error) = alloc_network(&shared, &alloc, &job, &group, &dir, &node).await;
    shared_error = shared_error.or(network_error);
    let setup = TaskSetup {
        shared: &shared,
        alloc: &alloc,
        job: &job,
        dir: &dir,
        node,
        shared_error,
        resume: &resume,
        network,
    };
    let mut running = Running::new(&alloc, &group, setup.network.network_status());
    let (update_tx, mut updates) = mpsc::channel::<TaskUpdate>(TASK_UPDATE_QUEUE);
    let mut runners = JoinSet::new();
    let mut task_envs = BTreeMap::new();
    for task in &group.tasks {
        let (kill_tx, kill_rx) = watch::channel(None);
        running.kills.insert(task.name.clone(), kill_tx);
        let (control_tx, control_rx) = mpsc::channel(TASK_CONTROL_QUEUE);
        running.task_controls.insert(task.name.clone(), control_tx);
        let (gate_tx, gate_rx) = watch::channel(false);
        running.gates.insert(task.name.clone(), gate_tx);
        let channels = RunnerChannels {
            updates: update_tx.clone(),
            kill: kill_rx,
            control: control_rx,
            start_gate: gate_rx,
        };
        match setup.runner(task, channels) {
            Ok(runner) => {
                task_envs.insert(task.name.clone(), runner.ctx.env.clone());
                let name = task.name.clone();
                runners.spawn(async move { (name, runner.run().await) });
            }
            Err(dead) => {
                running.states.insert(task.name.clone(), dead);
            }
        }
    }
    drop(update_tx);
    if setup.shared_error.is_none() {
        let names: Vec<&str> = group.tasks.iter().map(|t| t.name.as_str()).collect();
        if let Err(e) = dir.discard_spare_task(&names) {
            tracing::warn!(alloc = %alloc.id, "removing the unused spare task dir: {e}");
        }
    }
    let services = start_services(
        &shared,
        &setup,
        &group,
        task_envs,
        own_controls,
        running.view(),
    );
    running.checks = Some(services.checks());
    running.services = Some(services);
    if alloc.desired_status != DesiredStatus::Run {
        // Never started here: nothing to clean up after, so poststop tasks do not run.
        running
            .stop("allocation is not wanted (desired status stop)", true)
            .await;
    }
    // The first gates open (prestart tasks, or the main tasks of a group without hooks).
    running.lifecycle_step().await;
    running.report(&shared).await;
    running
        .supervise(
            &shared,
            &mut updates,
            &mut runners,
            &mut alloc_updates,
            &mut controls,
        )
        .await;
    while let Some(update) = updates.recv().await {
        running.states.insert(update.task, update.state);
    }
    running.report(&shared).await;
    if let Some(services) = running.services.take() {
        services.finish().await;
    }
    // Tasks are gone: release the host mounts; the directory stays for logs until GC.
    if let Err(e) = dir.unmount_all() {
        tracing::warn!(alloc = %alloc.id, "unmounting task secrets: {e}");
    }
    release_network(&shared, &alloc.id).await;
}

/// Starts the registration of the allocation's services (they appear as their tasks run).
fn start_services(
    shared: &Arc<ClientShared>,
    setup: &TaskSetup<'_>,
    group: &TaskGroup,
    task_envs: BTreeMap<String, BTreeMap<String, String>>,
    controls: mpsc::Sender<AllocControl>,
    view: services::View,
) -> AllocServices {
    let netns = setup
        .network
        .namespace_path
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let for_interpolation = shared.clone();
    AllocServices::start(
        shared.services.clone(),
        services::Setup {
            group: group.clone(),
            node: NodeSide {
                node_id: shared.node_id.clone(),
                datacenter: shared.datacenter.clone(),
                address: setup.network.host_ip.clone(),
                netns,
            },
            task_envs,
            alloc_env: taskenv::alloc_variables(setup.alloc, setup.job, &setup.node),
            interpolate: Arc::new(move |value, env| for_interpolation.interpolate(value, env)),
            controls,
            supervisor: shared.supervisor.clone(),
        },
        view,
    )
}

/// The allocation's network as its tasks see it, with its `hosts`/`resolv.conf` written;
/// or host mode and why not (every task reports it as its setup failure).
///
/// A `bridge` or `none` allocation that is still wanted gets its namespace (and veth, address
/// and port mappings) made here, before any task starts; [`release_network`] removes them
/// after the last task ends.
async fn alloc_network(
    shared: &Arc<ClientShared>,
    alloc: &Arc<Allocation>,
    job: &Job,
    group: &TaskGroup,
    dir: &AllocDir,
    node: &NodeContext,
) -> (TaskNetwork, Option<String>) {
    let host_ip = shared
        .attributes()
        .get("unique.network.ip-address")
        .cloned()
        .unwrap_or_default();
    let mode = match NetworkMode::parse(group.networks.first().map_or("", |n| n.mode.as_str())) {
        Ok(mode) => mode,
        Err(e) => return (TaskNetwork::host(host_ip), Some(e.to_string())),
    };
    let made = if mode.is_isolated() && alloc.desired_status == DesiredStatus::Run {
        let manager = shared.network.clone();
        let for_setup = alloc.clone();
        let made = tokio::task::spawn_blocking(move || manager.setup(&for_setup, mode))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        match made {
            Ok(made) => made,
            Err(e) => {
                return (
                    TaskNetwork::host(host_ip),
                    Some(format!("setting up the allocation's network: {e}")),
                )
            }
        }
    } else {
        None
    };
    let alloc_env = taskenv::alloc_variables(alloc, job, node);
    let network = match task_network(
        alloc,
        group,
        &host_ip,
        made.as_ref().map(AllocNetwork::namespace_path),
        made.as_ref().and_then(|m| m.address),
        Some(dir.etc_dir()),
        &|value| shared.interpolate(value, &alloc_env),
    ) {
        Ok(mut network) => {
            if network.mode == NetworkMode::Bridge {
                // The agent's DNS server on the bridge's gateway, when it serves there.
                network.node_dns = shared.network.bridge_dns();
            }
            network
        }
        Err(e) => return (TaskNetwork::host(host_ip), Some(e.to_string())),
    };
    match write_etc_files(&network) {
        Ok(()) => (network, None),
        Err(e) => (
            network,
            Some(format!("writing the allocation's /etc files: {e}")),
        ),
    }
}

/// Removes allocation `alloc_id`'s network objects (nothing for host mode): its tasks are gone.
async fn release_network(shared: &Arc<ClientShared>, alloc_id: &str) {
    let manager = shared.network.clone();
    let id = alloc_id.to_string();
    if let Err(e) = tokio::task::spawn_blocking(move || manager.teardown(&id)).await {
        tracing::warn!(alloc = %alloc_id, "removing the allocation's network: {e}");
    }
}

/// What building an allocation's task runners needs.
struct TaskSetup<'a> {
    shared: &'a Arc<ClientShared>,
    alloc: &'a Allocation,
    job: &'a Job,
    dir: &'a AllocDir,
    node: NodeContext,
    /// Why the allocation directory could not be built: every task reports it as its setup
    /// failure.
    shared_error: Option<String>,
    /// What a restarted node daemon knows of this allocation's tasks, by task name.
    resume: &'a BTreeMap<String, TaskResume>,
    /// The allocation's network, for every task.
    network: TaskNetwork,
}

impl TaskSetup<'_> {
    /// The runner of `task`, talking to the allocation runner through the given channels;
    /// or, for a task that cannot run on this node (its driver is missing), its dead state.
    fn runner(&self, task: &Task, channels: RunnerChannels) -> Result<TaskRunner, TaskState> {
        let RunnerChannels {
            updates,
            kill,
            control,
            start_gate,
        } = channels;
        let Some(driver) = self.shared.drivers.get(&task.driver) else {
            // A driver this node lacks: the scheduler should not have placed it here.
            let mut state = self
                .alloc
                .task_states
                .get(&task.name)
                .cloned()
                .unwrap_or_default();
            state.state = TaskLifecycleState::Dead;
            state.failed = true;
            state.events.push(controlplane::model::TaskEvent::new(
                controlplane::model::event_type::DRIVER_FAILURE,
                format!("driver {:?} is not available on this node", task.driver),
            ));
            return Err(state);
        };
        let mut setup_error = self.build_task_dir(task, driver.as_ref());
        let task_dir = self.dir.task_dir(&task.name);
        let paths = if driver.sees_host_paths() {
            TaskPaths::host(&self.dir.shared_dir(), &task_dir)
        } else {
            TaskPaths::jailed()
        };
        let nomad = taskenv::nomad_variables(
            self.alloc,
            self.job,
            task,
            &paths,
            &self.node,
            &self.network,
        );
        let env = match taskenv::task_environment(&nomad, &task.env, |value| {
            self.shared.interpolate(value, &nomad)
        }) {
            Ok(env) => env,
            Err(e) => {
                setup_error = setup_error.or(Some(e));
                nomad.clone()
            }
        };
        let allocated = self
            .alloc
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
            .then(|| self.shared.shared_cores.subscribe());
        let resume = self.resume.get(&task.name).cloned().unwrap_or_default();
        let previous = match &resume.record {
            // This node's record is newer than what the servers last saw. A task not done for
            // good runs again (reattached, or started), whatever state its record stopped in.
            Some(r) if r.intent != TaskIntent::Done => {
                let mut state = r.state.clone();
                state.state = TaskLifecycleState::Pending;
                state.failed = false;
                Some(state)
            }
            Some(r) => Some(r.state.clone()),
            None => self.alloc.task_states.get(&task.name).cloned(),
        };
        let mut bounded = task.clone();
        // `${NOMAD_PORT_http}` and friends in the driver's config (`args`, `command`…),
        // resolved with the task's whole environment, as Nomad does.
        if let Err(e) = interpolate_config(&mut bounded.config, &|value| {
            self.shared.interpolate(value, &env)
        }) {
            setup_error = setup_error.or(Some(e));
        }
        // The node's ceiling on how long a task may take to stop (Nomad's max_kill_timeout).
        let kill_timeout = bounded
            .kill_timeout
            .unwrap_or(controlplane::model::defaults::KILL_TIMEOUT);
        bounded.kill_timeout = Some(kill_timeout.min(self.shared.max_kill_timeout));
        Ok(TaskRunner {
            task: bounded,
            job_type: self.job.job_type,
            ctx: TaskContext {
                task_id: format!("{}.{}", self.alloc.id, task.name),
                allocated,
                env,
                alloc_dir: self.dir.shared_dir(),
                task_dir,
                logs_dir: self.dir.logs_dir(),
                network: self.network.clone(),
            },
            driver,
            supervisor: self.shared.supervisor.clone(),
            updates,
            kill,
            control,
            stage: Stage::of(task),
            start_gate,
            previous,
            reattach: resume.reattach,
            setup_error,
            shared_cores,
            lost: resume.lost,
            restart: resume
                .record
                .as_ref()
                .map(|r| r.restart)
                .unwrap_or_default(),
            record: TaskRecorder {
                store: self.shared.state.clone(),
                alloc_id: self.alloc.id.clone(),
                task: task.name.clone(),
                intent: resume
                    .record
                    .as_ref()
                    .map(|r| r.intent)
                    .unwrap_or(TaskIntent::Wait),
                handle: resume.record.and_then(|r| r.handle),
            },
        })
    }

    /// Builds `task`'s directory, owned by the user it runs as. Returns the setup failure
    /// the task reports: the allocation directory's, else the user lookup's, else the
    /// build's.
    fn build_task_dir(&self, task: &Task, driver: &dyn Driver) -> Option<String> {
        let user_name = if task.user.is_empty() {
            driver.default_user().to_string()
        } else {
            task.user.clone()
        };
        let mut setup_error = self.shared_error.clone();
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
            if let Err(e) = self
                .shared
                .alloc_dirs
                .build_task(self.dir, &task.name, owner)
            {
                setup_error = Some(format!("building the task directory: {e}"));
            }
        }
        // A dispatched job's payload, in place before the task starts.
        if let (None, Some(config), Some(payload)) =
            (&setup_error, &task.dispatch_payload, &self.job.payload)
        {
            let local = self.dir.task_dir(&task.name).join("local");
            if let Err(e) =
                super::dispatch_payload::write(&local, &config.file, payload, owner.uid, owner.gid)
            {
                setup_error = Some(e);
            }
        }
        setup_error
    }
}

/// The channels between the allocation runner and one task runner.
struct RunnerChannels {
    updates: mpsc::Sender<TaskUpdate>,
    kill: watch::Receiver<Option<KillRequest>>,
    control: mpsc::Receiver<TaskControl>,
    start_gate: watch::Receiver<bool>,
}

/// An allocation while its tasks run: their states, what was last reported, and the
/// handles that stop or control them.
struct Running {
    alloc_id: String,
    states: BTreeMap<String, TaskState>,
    reported: Option<LastReport>,
    kills: BTreeMap<String, watch::Sender<Option<KillRequest>>>,
    task_controls: BTreeMap<String, mpsc::Sender<TaskControl>>,
    /// The group's leader task: when it is dead, the others are stopped.
    leader: Option<String>,
    /// Every task has been asked to stop (once: the first reason is the one they report).
    stopping: bool,
    /// The order of the tasks (lifecycle hooks): who may start, when the group stops.
    coordinator: Coordinator,
    /// Each task's start gate, opened by the coordinator.
    gates: BTreeMap<String, watch::Sender<bool>>,
    /// A stop's kill waves still to send (leader, the others, sidecars), each once the
    /// previous wave's tasks are dead.
    kill_waves: VecDeque<Vec<String>>,
    /// The wave last sent.
    kill_wave: Vec<String>,
    /// Why the tasks are being killed (the first stop's reason).
    kill_reason: String,
    /// Whether poststop tasks are killed too (not only left to run after the others).
    poststop_killed: bool,
    /// When a batch group's `max_run_duration` is up (Unix nanoseconds), if it has one.
    max_run_deadline: Option<i64>,
    /// A client status that overrides the tasks' (max_run_duration: complete, as Nomad).
    forced_status: Option<(ClientStatus, &'static str)>,
    /// Whether the allocation became healthy (a drain stops the allocation it replaces only
    /// then); reported once decided.
    health: HealthWatch,
    /// The allocation's own network (bridge), sent with every report.
    network_status: Option<AllocNetworkStatus>,
    /// The newest allocation, with `network_status` as this node made it: what its services
    /// are computed from.
    alloc: Arc<Allocation>,
    /// Its services (registration and checks), from before the first report on.
    services: Option<AllocServices>,
    /// How its update-gating checks stand (deployment health with `health_check = "checks"`).
    checks: Option<watch::Receiver<services::ChecksHealth>>,
    /// How long tasks wait between their services' removal and their kill signal
    /// (`shutdown_delay`, the longest of the group's and its tasks').
    shutdown_delay: Duration,
}

impl Running {
    fn new(
        alloc: &Allocation,
        group: &TaskGroup,
        network_status: Option<AllocNetworkStatus>,
    ) -> Running {
        Running {
            alloc_id: alloc.id.clone(),
            states: alloc.task_states.clone(),
            reported: None,
            kills: BTreeMap::new(),
            task_controls: BTreeMap::new(),
            leader: group
                .tasks
                .iter()
                .find(|t| t.leader)
                .map(|t| t.name.clone()),
            stopping: false,
            coordinator: Coordinator::new(&group.tasks),
            gates: BTreeMap::new(),
            kill_waves: VecDeque::new(),
            kill_wave: Vec::new(),
            kill_reason: String::new(),
            poststop_killed: false,
            max_run_deadline: max_run_deadline(alloc, group),
            forced_status: None,
            health: HealthWatch::new(
                group,
                !alloc.deployment_id.is_empty(),
                controlplane::model::now_unix_nanos(),
            ),
            alloc: with_network_status(alloc, network_status.as_ref()),
            network_status,
            services: None,
            checks: None,
            shutdown_delay: shutdown_delay(alloc, group),
        }
    }

    fn view(&self) -> services::View {
        services::View {
            alloc: self.alloc.clone(),
            states: self.states.clone(),
        }
    }

    /// Asks every task to stop for `reason`, unless they were asked already: first the
    /// allocation's services leave the catalog, then `shutdown_delay` passes (clients stop
    /// using an instance before it goes away), then the kill, in Nomad's order: the leader,
    /// then the other tasks, then the sidecars, each wave once the previous one is dead.
    /// Poststop tasks are left to run once the others are dead, unless
    /// `including_poststop` (the allocation never ran here, its `max_run_duration` is up, or
    /// the client shuts down).
    async fn stop(&mut self, reason: &str, including_poststop: bool) {
        if self.stopping {
            if including_poststop && !self.poststop_killed {
                // A later, harder stop: the poststop tasks go too.
                self.poststop_killed = true;
                let poststop: Vec<String> = self
                    .kills
                    .keys()
                    .filter(|t| self.coordinator.stage(t) == Some(Stage::Poststop))
                    .cloned()
                    .collect();
                kill_tasks(&self.kills, &poststop, reason);
            }
            return;
        }
        self.stopping = true;
        self.poststop_killed = including_poststop;
        if let Some(services) = &self.services {
            services.deregister(services::DEREGISTER_WAIT).await;
        }
        if !self.shutdown_delay.is_zero() {
            tokio::time::sleep(self.shutdown_delay).await;
        }
        self.kill_reason = reason.to_string();
        self.kill_waves = self
            .coordinator
            .kill_waves(self.leader.as_deref(), including_poststop)
            .into();
        self.advance_kills();
    }

    /// Sends the next kill wave once every task of the previous one is dead.
    fn advance_kills(&mut self) {
        loop {
            let waiting = self.kill_wave.iter().any(|t| {
                self.states
                    .get(t)
                    .is_none_or(|s| s.state != TaskLifecycleState::Dead)
            });
            if waiting {
                return;
            }
            let Some(wave) = self.kill_waves.pop_front() else {
                return;
            };
            kill_tasks(&self.kills, &wave, &self.kill_reason);
            self.kill_wave = wave;
        }
    }

    /// After any task state change: the coordinator moves on and opens or closes the start
    /// gates; the group is stopped when a task failed, the leader is dead or only sidecars
    /// are left; the next kill wave goes out when the previous one is dead.
    async fn lifecycle_step(&mut self) {
        self.coordinator.update(&self.states);
        for (name, gate) in &self.gates {
            let open = self.coordinator.may_start(name);
            gate.send_if_modified(|g| std::mem::replace(g, open) != open);
        }
        if !self.stopping {
            if let Some(reason) = self
                .coordinator
                .kill_reason(&self.states, self.leader.as_deref())
            {
                self.stop(&reason.describe(), false).await;
            }
        }
        self.advance_kills();
    }

    /// Sleeps until the group's `max_run_duration` is up (forever without one).
    async fn max_run_due(&self) {
        match self.max_run_deadline {
            Some(at) => {
                let wait = at
                    .saturating_sub(controlplane::model::now_unix_nanos())
                    .max(0);
                tokio::time::sleep(Duration::from_nanos(u64::try_from(wait).unwrap_or(0))).await
            }
            None => std::future::pending().await,
        }
    }

    async fn report(&mut self, shared: &ClientShared) {
        if let Some(services) = &self.services {
            services.update(self.view());
        }
        self.health
            .observe(&self.states, controlplane::model::now_unix_nanos());
        report(
            shared,
            &self.alloc_id,
            &self.states,
            self.forced_status,
            self.health.decided(),
            self.network_status.as_ref(),
            &mut self.reported,
        )
        .await;
    }

    /// Sleeps until the allocation's health should be judged again (forever once decided).
    async fn health_due(&self) {
        match self.health.next_check(&self.states) {
            Some(at) => {
                let wait = at
                    .saturating_sub(controlplane::model::now_unix_nanos())
                    .max(0);
                tokio::time::sleep(Duration::from_nanos(u64::try_from(wait).unwrap_or(0))).await
            }
            None => std::future::pending().await,
        }
    }

    /// Follows the task runners until every one has ended: their state changes, the
    /// servers' newer versions of the allocation (a stop), and users' requests.
    async fn supervise(
        &mut self,
        shared: &ClientShared,
        updates: &mut mpsc::Receiver<TaskUpdate>,
        runners: &mut JoinSet<(String, TaskState)>,
        alloc_updates: &mut watch::Receiver<Arc<Allocation>>,
        controls: &mut mpsc::Receiver<AllocControl>,
    ) {
        // Held here: the select's other arms borrow `self`.
        let mut checks_rx = self.checks.take();
        loop {
            tokio::select! {
                Some(update) = updates.recv() => self.task_changed(shared, update).await,
                Some(joined) = runners.join_next() => {
                    if let Ok((name, state)) = joined {
                        self.states.insert(name, state);
                        self.lifecycle_step().await;
                        self.report(shared).await;
                    }
                    if runners.is_empty() {
                        break;
                    }
                }
                changed = alloc_updates.changed(), if !self.stopping => {
                    if changed.is_err() {
                        self.stop("the client is shutting down", true).await;
                        continue;
                    }
                    let newest = alloc_updates.borrow_and_update().clone();
                    // Moved into a new deployment by an in-place update (Nomad's health hook
                    // resets then): health is judged again, with the new update block, and
                    // the new verdict reported even if it is the same as the last one.
                    if newest.deployment_id != self.alloc.deployment_id
                        && !newest.deployment_id.is_empty()
                    {
                        if let Some(group) = newest.job.as_ref().and_then(|j| j.group(&newest.task_group)) {
                            self.health = HealthWatch::new(
                                group,
                                true,
                                controlplane::model::now_unix_nanos(),
                            );
                            if let Some(rx) = checks_rx.as_ref() {
                                self.health.set_checks(*rx.borrow());
                            }
                            self.reported = None;
                        }
                    }
                    // A canary promoted, tags changed: the services follow.
                    self.alloc = with_network_status(&newest, self.network_status.as_ref());
                    if let Some(services) = &self.services {
                        services.update(self.view());
                    }
                    if newest.desired_status != DesiredStatus::Run {
                        let reason = if newest.desired_description.is_empty() {
                            "allocation stopped"
                        } else {
                            newest.desired_description.as_str()
                        };
                        self.stop(reason, false).await;
                    }
                }
                // A batch group's time is up: every task goes, poststop ones too, and the
                // allocation is complete (as Nomad reports it).
                _ = self.max_run_due(), if !self.stopping && self.forced_status.is_none() => {
                    tracing::info!(alloc = %self.alloc_id, "{MAX_RUN_DURATION_EXCEEDED}");
                    self.forced_status = Some((ClientStatus::Complete, MAX_RUN_DURATION_EXCEEDED));
                    self.stop(MAX_RUN_DURATION_EXCEEDED, true).await;
                    self.report(shared).await;
                }
                Some(control) = controls.recv() => dispatch_control(control, &self.states, &self.task_controls),
                // Health passes with time alone (min_healthy_time, healthy_deadline).
                _ = self.health_due(), if !self.stopping => self.report(shared).await,
                // A check passed or failed: health may be decided now.
                Some(checks) = checks_changed(checks_rx.as_mut()), if !self.stopping => {
                    self.health.set_checks(checks);
                    self.report(shared).await;
                }
                else => break,
            }
        }
    }

    /// A task's new state: the lifecycle moves on (see [`Running::lifecycle_step`]).
    async fn task_changed(&mut self, shared: &ClientShared, update: TaskUpdate) {
        self.states.insert(update.task, update.state);
        self.lifecycle_step().await;
        self.report(shared).await;
    }
}

/// The next standing of the allocation's checks (never, without services or once the
/// registrar is gone).
async fn checks_changed(
    rx: Option<&mut watch::Receiver<services::ChecksHealth>>,
) -> Option<services::ChecksHealth> {
    let Some(rx) = rx else {
        return std::future::pending().await;
    };
    match rx.changed().await {
        Ok(()) => Some(*rx.borrow_and_update()),
        Err(_) => std::future::pending().await,
    }
}

/// `alloc` with the network status this node made for it (the servers' copy has it only
/// after the first report).
fn with_network_status(
    alloc: &Allocation,
    network_status: Option<&AllocNetworkStatus>,
) -> Arc<Allocation> {
    let mut a = alloc.clone();
    if let Some(status) = network_status {
        a.network_status = Some(status.clone());
    }
    Arc::new(a)
}

/// When a batch group's `max_run_duration` is up: the allocation's creation plus the
/// duration (Nomad anchors it there, so it survives task restarts and client restarts).
/// `None` for other job types, allocations without a creation time, or no duration.
fn max_run_deadline(alloc: &Allocation, group: &TaskGroup) -> Option<i64> {
    let batch = alloc
        .job
        .as_ref()
        .is_some_and(|j| matches!(j.job_type, JobType::Batch | JobType::Sysbatch));
    let duration = group.max_run_duration.filter(|d| !d.is_zero())?;
    if !batch || alloc.create_time <= 0 {
        return None;
    }
    let nanos = i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX);
    Some(alloc.create_time.saturating_add(nanos))
}

/// The wait between deregistration and kill: the longest `shutdown_delay` of the group and
/// its tasks, none when the allocation is marked `no_shutdown_delay` (`alloc stop
/// -no-shutdown-delay`).
fn shutdown_delay(alloc: &Allocation, group: &TaskGroup) -> Duration {
    if alloc.desired_transition.no_shutdown_delay == Some(true) {
        return Duration::ZERO;
    }
    group
        .tasks
        .iter()
        .map(|t| t.shutdown_delay)
        .chain(group.shutdown_delay)
        .max()
        .unwrap_or(Duration::ZERO)
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
    let reason = control.reason;
    let reply = control.reply;
    tokio::spawn(async move {
        let mut errors = Vec::new();
        for (name, sender) in senders {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let message = match action {
                AllocAction::Signal(signal) => TaskControl::Signal { signal, reply: tx },
                AllocAction::Restart => TaskControl::Restart {
                    reply: tx,
                    reason: reason.clone(),
                },
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

/// Most strings of a driver config interpolated, nested values included: a bound on work
/// for a hostile config.
const MAX_CONFIG_STRINGS: usize = 4096;

/// Resolves `${…}` in every string of a task's driver `config` (keys stay as written).
/// The error names the option: `config.args[1]: unknown reference …`.
fn interpolate_config(
    config: &mut serde_json::Map<String, serde_json::Value>,
    resolve: &dyn Fn(&str) -> Result<String, String>,
) -> Result<(), String> {
    fn walk(
        value: &mut serde_json::Value,
        path: &str,
        resolve: &dyn Fn(&str) -> Result<String, String>,
        budget: &mut usize,
    ) -> Result<(), String> {
        match value {
            serde_json::Value::String(s) => {
                *budget = budget.checked_sub(1).ok_or_else(|| {
                    format!("config: more than {MAX_CONFIG_STRINGS} strings to interpolate")
                })?;
                if s.contains("${") {
                    *s = resolve(s).map_err(|e| format!("{path}: {e}"))?;
                }
            }
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item, &format!("{path}[{i}]"), resolve, budget)?;
                }
            }
            serde_json::Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    walk(v, &format!("{path}.{k}"), resolve, budget)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    let mut budget = MAX_CONFIG_STRINGS;
    for (k, v) in config.iter_mut() {
        walk(v, &format!("config.{k}"), resolve, &mut budget)?;
    }
    Ok(())
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

/// Asks the named tasks to stop (those not asked already).
fn kill_tasks(
    kills: &BTreeMap<String, watch::Sender<Option<KillRequest>>>,
    tasks: &[String],
    reason: &str,
) {
    for tx in tasks.iter().filter_map(|t| kills.get(t)) {
        if tx.borrow().is_none() {
            tx.send_replace(Some(KillRequest {
                reason: reason.to_string(),
            }));
        }
    }
}

/// What was last reported: client status, task states, health.
type LastReport = (ClientStatus, BTreeMap<String, TaskState>, Option<bool>);

#[allow(clippy::too_many_arguments)]
async fn report(
    shared: &ClientShared,
    alloc_id: &str,
    states: &BTreeMap<String, TaskState>,
    forced: Option<(ClientStatus, &'static str)>,
    healthy: Option<bool>,
    network_status: Option<&AllocNetworkStatus>,
    reported: &mut Option<LastReport>,
) {
    // A forced status (max_run_duration) is reported once the tasks are gone: until then
    // they are still being killed, and the servers would hold a terminal status too early.
    let computed = client_status(states);
    let (status, description) = match forced {
        Some(forced) if !matches!(computed, ClientStatus::Running | ClientStatus::Pending) => {
            forced
        }
        _ => (computed, describe(computed)),
    };
    if reported
        .as_ref()
        .is_some_and(|(s, t, h)| *s == status && t == states && *h == healthy)
    {
        return;
    }
    *reported = Some((status, states.clone(), healthy));
    let deployment_status = healthy.map(|h| AllocDeploymentStatus {
        healthy: Some(h),
        timestamp: controlplane::model::time::format_rfc3339(controlplane::model::now_unix_nanos()),
        ..Default::default()
    });
    // Recorded before it is sent: a restarted daemon knows what the servers were told.
    let record = Reported {
        client_status: status,
        client_description: description.to_string(),
        task_states: states.clone(),
        deployment_status: deployment_status.clone(),
    };
    let store = shared.state.clone();
    let id = alloc_id.to_string();
    let written =
        tokio::task::spawn_blocking(move || store.update_alloc(&id, |r| r.reported = Some(record)))
            .await;
    if let Ok(Err(e)) = written {
        tracing::warn!(alloc = %alloc_id, "recording the reported status: {e}");
    }
    shared
        .send_update(AllocClientUpdate {
            id: alloc_id.to_string(),
            client_status: status,
            client_description: description.to_string(),
            task_states: states.clone(),
            deployment_status,
            network_status: network_status.cloned(),
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
    fn config_strings_are_interpolated_naming_the_option() {
        let mut config = serde_json::json!({
            "command": "/bin/server",
            "args": ["-port", "${NOMAD_PORT_http}", {"nested": "${NOMAD_PORT_http}x"}],
            "cpu_hard_limit": true,
        })
        .as_object()
        .cloned()
        .unwrap();
        let resolve = |v: &str| -> Result<String, String> {
            if v.contains("${nope}") {
                return Err("unknown reference ${nope}".into());
            }
            Ok(v.replace("${NOMAD_PORT_http}", "8080"))
        };
        interpolate_config(&mut config, &resolve).unwrap();
        assert_eq!(
            serde_json::Value::Object(config.clone()),
            serde_json::json!({
                "command": "/bin/server",
                "args": ["-port", "8080", {"nested": "8080x"}],
                "cpu_hard_limit": true,
            })
        );
        config.insert("args".into(), serde_json::json!(["ok", "${nope}"]));
        assert_eq!(
            interpolate_config(&mut config, &resolve).unwrap_err(),
            "config.args[1]: unknown reference ${nope}"
        );
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
