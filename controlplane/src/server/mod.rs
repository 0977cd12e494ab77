//! A region server: accepts changes (jobs, nodes, allocation updates) and turns them into Raft
//! commands, and on the leader runs the scheduling pipeline — eval broker → scheduler workers →
//! plan applier — that turns evaluations into committed allocations.
//!
//! Consensus comes in through the [`Consensus`] trait (implemented by `crate::raft::RaftNode`),
//! so the pipeline is the same whatever carries Raft traffic. Owns no I/O of its own beyond
//! spawning tasks; everything it commits goes through `Consensus::propose`.

pub mod autopilot;
pub mod broker;
mod nodes;
pub mod planner;
mod raft_consensus;
mod worker;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::model::{
    new_id, now_unix_nanos, trigger, AllocClientUpdate, EvalStatus, Evaluation, Job, JobType, Node,
};
use crate::scheduler::Plan;
use crate::state::{Command, CommandResponse, Effects, EffectsReceiver, State, StateStore};
pub use broker::EvalBroker;
pub use nodes::{
    AllocStopResponse, NodeDrainUpdateResponse, NodeUpdateResponse, DEFAULT_GC_INTERVAL,
};

/// Why a proposal did not commit.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConsensusError {
    #[error("this server is not the leader (leader: {})", leader.as_deref().unwrap_or("unknown"))]
    NotLeader { leader: Option<String> },
    #[error("{0}")]
    Unavailable(String),
}

/// The replicated log, as the server pipeline needs it.
pub trait Consensus: Send + Sync + 'static {
    /// Commits `command` and returns once it is applied to the local state.
    fn propose(&self, command: Command) -> BoxFuture<'_, Result<CommandResponse, ConsensusError>>;
    /// `true` while this server leads.
    fn leadership(&self) -> watch::Receiver<bool>;
    /// The leader's RPC address, if known.
    fn leader_address(&self) -> Option<String>;
    /// Returns once this server's state holds everything committed when it was called (a
    /// linearizable read may follow), or an error when no leader with a quorum answers.
    fn read_barrier(&self) -> BoxFuture<'_, Result<(), ConsensusError>>;
    /// How long ago this server last heard from the leader (zero on the leader; `None` if
    /// never).
    fn last_contact(&self) -> Option<Duration>;
    /// Raft figures for `/v1/agent/self`.
    fn stats(&self) -> serde_json::Value;
}

/// A server-side failure, mapped to HTTP status codes at the API edge.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ServerError {
    /// The request is wrong; nothing was changed (400).
    #[error("{0}")]
    BadRequest(String),
    /// The object does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// No leader to commit through (500, as Nomad answers "No cluster leader").
    #[error("no cluster leader: {0}")]
    NoLeader(String),
    /// Anything else (500).
    #[error("{0}")]
    Internal(String),
}

impl From<ConsensusError> for ServerError {
    fn from(e: ConsensusError) -> Self {
        match e {
            ConsensusError::NotLeader { .. } => ServerError::NoLeader(e.to_string()),
            ConsensusError::Unavailable(m) => ServerError::Internal(m),
        }
    }
}

/// Plans waiting for the applier before workers submitting more wait for room: one per worker
/// of a large server, with room to spare. Bounded so that workers slow down when the applier
/// (one Raft commit per plan) is the bottleneck, rather than piling up plans against a state
/// that moves on under them.
pub const DEFAULT_PLAN_QUEUE_DEPTH: usize = 64;

/// How often evaluations held too long by a worker are taken back ([`broker::NACK_TIMEOUT`]
/// is the bound; this is only how late past it they are noticed).
const BROKER_EXPIRY_INTERVAL: Duration = Duration::from_secs(1);

/// Tunables of the scheduling pipeline.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub region: String,
    pub datacenter: String,
    /// Scheduler workers (Nomad defaults to one per core).
    pub num_schedulers: usize,
    /// Plans waiting for the applier before workers are slowed down.
    pub plan_queue_depth: usize,
    /// How often the leader collects garbage (Nomad's `job_gc_interval`, 5m).
    pub gc_interval: Duration,
    /// How old finished objects must be before they are collected (Nomad's
    /// `job_gc_threshold`, `eval_gc_threshold`, `batch_eval_gc_threshold`,
    /// `node_gc_threshold`).
    pub gc_thresholds: crate::state::GcThresholds,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            region: crate::model::DEFAULT_REGION.to_string(),
            datacenter: "dc1".to_string(),
            num_schedulers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            plan_queue_depth: DEFAULT_PLAN_QUEUE_DEPTH,
            gc_interval: DEFAULT_GC_INTERVAL,
            gc_thresholds: crate::state::GcThresholds::default(),
        }
    }
}

/// `PUT /v1/jobs` answer, in Nomad's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct JobRegisterResponse {
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub eval_create_index: u64,
    pub job_modify_index: u64,
    pub warnings: String,
    pub index: u64,
}

/// `DELETE /v1/job/:id` answer, in Nomad's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct JobDeregisterResponse {
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub eval_create_index: u64,
    pub job_modify_index: u64,
    pub index: u64,
}

struct PlanRequest {
    plan: Plan,
    reply: oneshot::Sender<Result<PlanApplied, ServerError>>,
}

/// What the applier committed of a plan.
#[derive(Debug, Clone)]
pub struct PlanApplied {
    pub index: u64,
    pub rejected_nodes: std::collections::BTreeMap<String, String>,
}

/// One region server.
pub struct Server {
    config: ServerConfig,
    store: Arc<StateStore>,
    consensus: Arc<dyn Consensus>,
    broker: Arc<EvalBroker>,
    /// Blocked evaluations to retry when capacity changes. Bounded by the state: every retry
    /// drops the ids no longer blocked there, and the scheduler keeps at most one blocked
    /// evaluation per job.
    blocked: Mutex<BTreeSet<String>>,
    plan_tx: mpsc::Sender<PlanRequest>,
    /// Since when each server has been (un)healthy, for autopilot's `StableSince`.
    autopilot_history: Mutex<autopilot::StableHistory>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Starts the pipeline's background tasks. Must run inside a tokio runtime.
    pub fn start(
        config: ServerConfig,
        store: Arc<StateStore>,
        consensus: Arc<dyn Consensus>,
    ) -> Arc<Server> {
        let (plan_tx, plan_rx) = mpsc::channel(config.plan_queue_depth.max(1));
        let (shutdown_tx, _) = watch::channel(false);
        let server = Arc::new(Server {
            config,
            store,
            consensus,
            broker: Arc::new(EvalBroker::new()),
            blocked: Mutex::new(BTreeSet::new()),
            plan_tx,
            autopilot_history: Mutex::new(autopilot::StableHistory::default()),
            shutdown_tx,
            tasks: Mutex::new(Vec::new()),
        });
        let mut tasks = vec![
            tokio::spawn(server.clone().run_leadership()),
            tokio::spawn(server.clone().run_plan_applier(plan_rx)),
            tokio::spawn(server.clone().run_broker_expiry()),
            tokio::spawn(server.clone().run_gc()),
        ];
        for n in 0..server.config.num_schedulers.max(1) {
            tasks.push(tokio::spawn(worker::run(server.clone(), n)));
        }
        if let Ok(mut slot) = server.tasks.lock() {
            slot.extend(tasks);
        }
        server
    }

    /// Stops the background tasks.
    pub async fn shutdown(&self) {
        self.shutdown_tx.send_replace(true);
        self.store.unsubscribe_effects();
        let tasks: Vec<JoinHandle<()>> = match self.tasks.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    pub fn store(&self) -> &Arc<StateStore> {
        &self.store
    }

    /// A consistent snapshot of the newest state.
    pub fn state(&self) -> State {
        self.store.snapshot()
    }

    pub fn consensus(&self) -> &Arc<dyn Consensus> {
        &self.consensus
    }

    pub fn broker(&self) -> &Arc<EvalBroker> {
        &self.broker
    }

    fn shutting_down(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    async fn propose(&self, command: Command) -> Result<CommandResponse, ServerError> {
        let response = self.consensus.propose(command).await?;
        match response.error {
            Some(e) => Err(ServerError::BadRequest(e)),
            None => Ok(response),
        }
    }

    // ---- what clients of the server ask ----

    /// Registers (or updates) a job and the evaluation that schedules it, in one Raft entry.
    /// The job must already be validated; here only what needs cluster state is checked.
    pub async fn register_job(&self, mut job: Job) -> Result<JobRegisterResponse, ServerError> {
        job.canonicalize();
        if matches!(job.job_type, JobType::System | JobType::Sysbatch) {
            return Err(ServerError::BadRequest(format!(
                "job {:?}: type {:?} cannot be scheduled yet; noded places \"service\" and \"batch\" jobs",
                job.id,
                job.job_type.as_str()
            )));
        }
        let warnings = self.driver_warnings(&job);
        let eval = Evaluation {
            id: new_id(),
            namespace: job.namespace.clone(),
            priority: job.priority,
            eval_type: job.job_type.as_str().to_string(),
            triggered_by: trigger::JOB_REGISTER.to_string(),
            job_id: job.id.clone(),
            status: EvalStatus::Pending,
            ..Default::default()
        };
        let eval_id = eval.id.clone();
        let response = self
            .propose(Command::JobRegister {
                job: Box::new(job),
                eval: Some(eval),
                now: now_unix_nanos(),
            })
            .await?;
        Ok(JobRegisterResponse {
            eval_id,
            eval_create_index: response.index,
            job_modify_index: response.job_modify_index,
            warnings: warnings.join("\n"),
            index: response.index,
        })
    }

    /// Tasks whose driver no ready node offers yet. As in Nomad, such a job is accepted (a
    /// region may have no client nodes yet, or they may be restarting): its evaluation waits,
    /// blocked, until a node with the driver is ready. The submitter is told why.
    fn driver_warnings(&self, job: &Job) -> Vec<String> {
        let state = self.store.snapshot();
        let nodes: Vec<Arc<Node>> = state
            .nodes()
            .into_iter()
            .filter(|n| n.status == crate::model::NodeStatus::Ready)
            .collect();
        let mut available: BTreeSet<String> = BTreeSet::new();
        for node in &nodes {
            for (name, info) in &node.drivers {
                if info.detected && info.healthy {
                    available.insert(name.clone());
                }
            }
        }
        let mut warnings = Vec::new();
        for group in &job.task_groups {
            for task in &group.tasks {
                if !available.contains(&task.driver) {
                    warnings.push(format!(
                        "group {:?} → task {:?}: no ready node has the {:?} driver yet \
                         (available: {}); the job waits until one does",
                        group.name,
                        task.name,
                        task.driver,
                        if available.is_empty() {
                            "none — no ready nodes".to_string()
                        } else {
                            available.iter().cloned().collect::<Vec<_>>().join(", ")
                        }
                    ));
                }
            }
        }
        warnings
    }

    /// Stops (or purges) a job and creates the evaluation that stops its allocations.
    pub async fn deregister_job(
        &self,
        namespace: &str,
        job_id: &str,
        purge: bool,
    ) -> Result<JobDeregisterResponse, ServerError> {
        let Some(job) = self.store.snapshot().job(namespace, job_id) else {
            return Err(ServerError::NotFound(format!(
                "job {job_id:?} not found in namespace {namespace:?}"
            )));
        };
        let eval = Evaluation {
            id: new_id(),
            namespace: namespace.to_string(),
            priority: job.priority,
            eval_type: job.job_type.as_str().to_string(),
            triggered_by: trigger::JOB_DEREGISTER.to_string(),
            job_id: job_id.to_string(),
            status: EvalStatus::Pending,
            ..Default::default()
        };
        let eval_id = eval.id.clone();
        let response = self
            .propose(Command::JobDeregister {
                namespace: namespace.to_string(),
                job_id: job_id.to_string(),
                purge,
                eval: Some(eval),
                now: now_unix_nanos(),
            })
            .await?;
        Ok(JobDeregisterResponse {
            eval_id,
            eval_create_index: response.index,
            job_modify_index: response.job_modify_index,
            index: response.index,
        })
    }

    /// A client registers its node (or re-registers after a restart).
    pub async fn register_node(&self, node: Node) -> Result<u64, ServerError> {
        if node.id.is_empty() {
            return Err(ServerError::BadRequest(
                "node registration without an ID".to_string(),
            ));
        }
        let response = self
            .propose(Command::NodeRegister {
                node: Box::new(node),
                now: now_unix_nanos(),
            })
            .await?;
        Ok(response.index)
    }

    /// A client reports its allocations' state.
    ///
    /// A status change the transition table refuses ([`ClientStatus::can_become`]: a finished
    /// allocation reported running again, say), and a report about an allocation the state
    /// does not have, are left out with a warning rather than refused: the client retries a
    /// refused batch whole, and neither would ever become acceptable.
    /// The state machine refuses it too, for a report that races another.
    ///
    /// [`ClientStatus::can_become`]: crate::model::ClientStatus::can_become
    pub async fn update_allocs(
        &self,
        mut updates: Vec<AllocClientUpdate>,
    ) -> Result<u64, ServerError> {
        let state = self.store.snapshot();
        updates.retain(|update| {
            let Some(alloc) = state.alloc(&update.id) else {
                tracing::warn!(alloc_id = %update.id, "ignoring a client update about an allocation the servers do not have");
                return false;
            };
            match alloc.client_status.check_transition(update.client_status) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(alloc_id = %update.id, "ignoring a client update: {e}");
                    false
                }
            }
        });
        if updates.is_empty() {
            return Ok(state.latest_index());
        }
        let response = self
            .propose(Command::AllocClientUpdate {
                updates,
                evals: Vec::new(),
                now: now_unix_nanos(),
            })
            .await?;
        Ok(response.index)
    }

    /// The operator changes the scheduler configuration.
    pub async fn set_scheduler_config(
        &self,
        config: crate::model::SchedulerConfiguration,
    ) -> Result<u64, ServerError> {
        config.validate().map_err(ServerError::BadRequest)?;
        let response = self.propose(Command::SchedulerSetConfig { config }).await?;
        Ok(response.index)
    }

    /// The region's health by autopilot's rules, from the cluster layer's `facts` and the
    /// replicated autopilot configuration; remembers each server's `StableSince`.
    pub fn autopilot_health(
        &self,
        facts: &[autopilot::ServerHealthFacts],
    ) -> autopilot::OperatorHealthReply {
        let config = self.store.snapshot().autopilot_config();
        let mut history = match self.autopilot_history.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        autopilot::compute_health(facts, &config, &mut history, now_unix_nanos())
    }

    /// The operator changes the autopilot configuration; with `cas`, only if its modify index
    /// is still that. Returns whether it was written, and the index of the entry.
    pub async fn set_autopilot_config(
        &self,
        config: crate::model::AutopilotConfiguration,
        cas: Option<u64>,
    ) -> Result<(bool, u64), ServerError> {
        config.validate().map_err(ServerError::BadRequest)?;
        let response = self
            .propose(Command::AutopilotSetConfig { config, cas })
            .await?;
        Ok((!response.cas_mismatch, response.index))
    }

    /// The operator restores a snapshot: every server replaces its state with the snapshot's
    /// (see [`Command::RestoreState`]). The archive must already be verified. Returns the
    /// index the restore was applied at.
    pub async fn restore_snapshot(
        &self,
        snapshot: crate::state::SnapshotFile,
    ) -> Result<u64, ServerError> {
        let response = self
            .propose(Command::RestoreState {
                snapshot: Box::new(snapshot),
            })
            .await?;
        Ok(response.index)
    }

    /// Hands a plan to the applier and waits for its verdict.
    pub(crate) async fn submit_plan(&self, plan: Plan) -> Result<PlanApplied, ServerError> {
        let (reply, rx) = oneshot::channel();
        self.plan_tx
            .send(PlanRequest { plan, reply })
            .await
            .map_err(|_| ServerError::Internal("the plan applier has stopped".to_string()))?;
        rx.await
            .map_err(|_| ServerError::Internal("the plan applier dropped a plan".to_string()))?
    }

    /// Marks evaluations with a final status outside a plan.
    pub(crate) async fn update_evals(&self, evals: Vec<Evaluation>) -> Result<u64, ServerError> {
        let response = self
            .propose(Command::EvalUpdate {
                evals,
                now: now_unix_nanos(),
            })
            .await?;
        Ok(response.index)
    }

    // ---- background tasks ----

    /// Follows leadership: the broker runs only on the leader and is rebuilt from the state
    /// each time leadership is gained.
    async fn run_leadership(self: Arc<Self>) {
        let mut leadership = self.consensus.leadership();
        let mut shutdown = self.shutting_down();
        loop {
            let leading = *leadership.borrow_and_update();
            if leading {
                let effects = self.store.subscribe_effects();
                self.restore_broker();
                tracing::info!("leadership gained: eval broker enabled");
                tokio::select! {
                    _ = self.clone().run_effects(effects) => {}
                    _ = wait_until(&mut leadership, false) => {}
                    _ = shutdown.changed() => return,
                }
                self.store.unsubscribe_effects();
                self.broker.clear();
                tracing::info!("leadership lost: eval broker disabled");
            } else {
                tokio::select! {
                    r = leadership.changed() => if r.is_err() { return },
                    _ = shutdown.changed() => return,
                }
            }
        }
    }

    fn restore_broker(&self) {
        let state = self.store.snapshot();
        let mut blocked = Vec::new();
        for eval in state.evals() {
            match eval.status {
                EvalStatus::Pending => self.enqueue((*eval).clone()),
                EvalStatus::Blocked => blocked.push(eval.id.clone()),
                _ => {}
            }
        }
        if let Ok(mut set) = self.blocked.lock() {
            set.extend(blocked);
        }
    }

    fn enqueue(&self, eval: Evaluation) {
        if let Err(e) = self.broker.enqueue(eval) {
            tracing::warn!("{e}");
        }
    }

    async fn run_effects(self: Arc<Self>, mut effects: EffectsReceiver) {
        while let Some(next) = effects.recv().await {
            let effect = match next {
                Effects::Apply(effect) => effect,
                Effects::Resync => {
                    // Some effects were dropped (the queue was full): what they would have
                    // said is in the state, so take everything from there, as on gaining
                    // leadership, and retry blocked evaluations in case capacity changed.
                    tracing::info!("eval broker resyncing from the state");
                    self.restore_broker();
                    self.unblock();
                    continue;
                }
            };
            if effect.state_replaced {
                // A snapshot was restored: what the broker holds came from a state that is
                // gone. The effect lists every pending and blocked evaluation of the new one.
                tracing::info!("state restored from a snapshot: eval broker rebuilt");
                self.broker.clear();
                if let Ok(mut set) = self.blocked.lock() {
                    set.clear();
                }
            }
            for eval in effect.pending_evals {
                self.enqueue(eval);
            }
            if let Ok(mut set) = self.blocked.lock() {
                set.extend(effect.blocked_evals.into_iter().map(|e| e.id));
            }
            if effect.capacity_changed {
                self.unblock();
            }
        }
    }

    /// Capacity changed: blocked evaluations get another scheduler run.
    fn unblock(&self) {
        let state = self.store.snapshot();
        let ids: Vec<String> = match self.blocked.lock() {
            Ok(mut set) => {
                set.retain(|id| {
                    state
                        .eval(id)
                        .is_some_and(|e| e.status == EvalStatus::Blocked)
                });
                set.iter().cloned().collect()
            }
            Err(_) => Vec::new(),
        };
        for id in ids {
            if let Some(eval) = state.eval(&id) {
                self.enqueue((*eval).clone());
            }
        }
    }

    async fn run_plan_applier(self: Arc<Self>, mut plans: mpsc::Receiver<PlanRequest>) {
        while let Some(request) = plans.recv().await {
            let state = self.store.snapshot();
            let verdict = planner::evaluate_plan(&state, &request.plan, now_unix_nanos());
            let result = self
                .propose(Command::PlanApply(Box::new(verdict.result)))
                .await
                .map(|r| PlanApplied {
                    index: r.index,
                    rejected_nodes: verdict.rejected_nodes,
                });
            // The worker may have given up waiting; nothing to do then.
            let _ = request.reply.send(result);
        }
    }

    async fn run_broker_expiry(self: Arc<Self>) {
        let mut tick = tokio::time::interval(BROKER_EXPIRY_INTERVAL);
        loop {
            tick.tick().await;
            for requeue in self.broker.expire() {
                if let broker::Requeue::GaveUp(eval) = requeue {
                    worker::give_up(
                        &self,
                        *eval,
                        "the scheduler worker holding it stopped answering",
                    )
                    .await;
                }
            }
        }
    }
}

async fn wait_until(rx: &mut watch::Receiver<bool>, value: bool) {
    loop {
        if *rx.borrow_and_update() == value {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
