//! A region server: accepts changes (jobs, nodes, allocation updates) and turns them into Raft
//! commands, and on the leader runs the scheduling pipeline — eval broker → scheduler workers →
//! plan applier — that turns evaluations into committed allocations.
//!
//! Consensus comes in through the [`Consensus`] trait (implemented by `crate::raft::RaftNode`),
//! so the pipeline is the same whatever carries Raft traffic. Owns no I/O of its own beyond
//! spawning tasks; everything it commits goes through `Consensus::propose`.

pub mod autopilot;
pub mod blocked;
pub mod broker;
pub mod deployments;
pub mod dispatch;
pub mod drainer;
mod evals;
pub mod heartbeat;
pub mod node_rpc;
mod nodes;
pub mod periodic;
pub mod plan;
pub mod planner;
mod raft_consensus;
pub mod scaling;
mod services;
mod versions;
mod worker;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::model::{
    new_id, now_unix_nanos, trigger, AllocClientUpdate, EvalStatus, Evaluation, Job, Node,
    NodeStatus,
};
use crate::scheduler::Plan;
use crate::state::{Command, CommandResponse, Effects, EffectsReceiver, State, StateStore};
pub use broker::EvalBroker;
pub use evals::{
    EvalSelection, JobEvaluateResponse, FAILED_FOLLOW_UP_BASE, FAILED_FOLLOW_UP_JITTER,
    MAX_EVAL_DELETE,
};
pub use nodes::{
    AllocStopResponse, NodeDrainUpdateResponse, NodeUpdateResponse, DEFAULT_GC_INTERVAL,
};
pub use plan::{JobPlanResponse, PlanAnnotations};
pub use versions::{JobStabilityResponse, JobTagResponse};

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
    /// Refused by the cluster's policy, not by what was asked (403).
    #[error("{0}")]
    Forbidden(String),
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
    /// Node heartbeat TTLs and grace.
    pub heartbeat: heartbeat::HeartbeatConfig,
    /// How often the leader collects garbage (Nomad's `job_gc_interval`, 5m).
    pub gc_interval: Duration,
    /// How old finished objects must be before they are collected (Nomad's
    /// `job_gc_threshold`, `eval_gc_threshold`, `batch_eval_gc_threshold`,
    /// `node_gc_threshold`).
    pub gc_thresholds: crate::state::GcThresholds,
    /// How many versions of a job without a tag are kept (Nomad's `job_tracked_versions`,
    /// 6; 1 to [`crate::state::MAX_JOB_TRACKED_VERSIONS`]). Carried in every registration, so
    /// all servers prune alike.
    pub job_tracked_versions: u64,
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
            heartbeat: heartbeat::HeartbeatConfig::default(),
            gc_interval: DEFAULT_GC_INTERVAL,
            gc_thresholds: crate::state::GcThresholds::default(),
            job_tracked_versions: crate::state::JOB_TRACKED_VERSIONS,
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
    /// Blocked evaluations waiting for capacity on a class they may use (leader only).
    blocked: Mutex<blocked::BlockedEvals>,
    plan_tx: mpsc::Sender<PlanRequest>,
    /// Since when each server has been (un)healthy, for autopilot's `StableSince`.
    autopilot_history: Mutex<autopilot::StableHistory>,
    /// Each node's heartbeat deadline; kept on the leader only.
    heartbeats: Mutex<heartbeat::HeartbeatTimers>,
    /// The origin of the heartbeat timers' clock.
    started: Instant,
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
            blocked: Mutex::new(blocked::BlockedEvals::default()),
            plan_tx,
            autopilot_history: Mutex::new(autopilot::StableHistory::default()),
            heartbeats: Mutex::new(heartbeat::HeartbeatTimers::default()),
            started: Instant::now(),
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
    pub async fn register_job(&self, job: Job) -> Result<JobRegisterResponse, ServerError> {
        self.register_job_enforced(job, None).await
    }

    /// [`Server::register_job`] with Nomad's `EnforceIndex`: with `Some(n)` the job is only
    /// registered if its `JobModifyIndex` is still `n` (0: only if it does not exist),
    /// checked when the entry is applied, so two racing submitters cannot both pass.
    pub async fn register_job_enforced(
        &self,
        mut job: Job,
        enforce_index: Option<u64>,
    ) -> Result<JobRegisterResponse, ServerError> {
        self.check_registrations_allowed(false)?;
        job.canonicalize();
        let warnings = self.driver_warnings(&job);
        // A periodic or parameterized parent is never scheduled: its children are (Nomad
        // registers it without an evaluation, and answers an empty EvalID).
        let eval = (!job.is_parent()).then(|| Evaluation {
            id: new_id(),
            namespace: job.namespace.clone(),
            priority: job.priority,
            eval_type: job.job_type.as_str().to_string(),
            triggered_by: trigger::JOB_REGISTER.to_string(),
            job_id: job.id.clone(),
            status: EvalStatus::Pending,
            ..Default::default()
        });
        let eval_id = eval.as_ref().map(|e| e.id.clone()).unwrap_or_default();
        let response = self
            .propose(Command::JobRegister {
                job: Box::new(job),
                eval,
                now: now_unix_nanos(),
                enforce_index,
                tracked_versions: Some(self.config.job_tracked_versions),
            })
            .await?;
        Ok(JobRegisterResponse {
            eval_create_index: if eval_id.is_empty() {
                0
            } else {
                response.index
            },
            eval_id,
            job_modify_index: response.job_modify_index,
            warnings: warnings.join("\n"),
            index: response.index,
        })
    }

    /// Nomad's load-shedding switch: while the scheduler configuration says
    /// `RejectJobRegistration`, job registration, dispatch and scale are refused unless the
    /// caller holds a management token. noded has no ACL tokens yet, so no caller is
    /// management (as Nomad documents for a cluster without ACLs: no user can register); the
    /// ACL issue passes the token's answer in `management`.
    pub fn check_registrations_allowed(&self, management: bool) -> Result<(), ServerError> {
        if management
            || !self
                .store
                .snapshot()
                .scheduler_config()
                .reject_job_registration
        {
            return Ok(());
        }
        Err(ServerError::Forbidden(format!(
            "{REGISTRATION_DISABLED}; an operator can allow them again with `noded operator scheduler set-config -reject-job-registration=false`"
        )))
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
        // A constraint no ready node meets: accepted (a node that fits may join), said now.
        if !nodes.is_empty() {
            for (group, constraint) in crate::scheduler::unsatisfiable_constraints(job, &nodes) {
                let at = if group.is_empty() {
                    String::new()
                } else {
                    format!("group {group:?} → ")
                };
                warnings.push(format!(
                    "{at}constraint {constraint:?}: no ready node satisfies it ({} ready); \
                     the job waits in a blocked evaluation until one joins",
                    nodes.len()
                ));
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
        // The evaluations the registration calls for ride in the same entry (Nomad's
        // `createNodeEvals`): system jobs to place on the node, jobs to look at again.
        let state = self.store.snapshot();
        let original = state.node(&node.id);
        let now = now_unix_nanos();
        let command = if crate::state::should_create_node_eval(original.as_deref(), &node) {
            let triggered_by = if original.is_some() {
                trigger::NODE_UPDATE
            } else {
                trigger::NODE_REGISTER
            };
            let mut registered = node.clone();
            if registered.status == NodeStatus::Initializing {
                // What the state machine makes of it: the evaluations judge the node as it
                // will be.
                registered.status = NodeStatus::Ready;
            }
            let evals = state.node_evals(&registered, triggered_by, &mut new_id);
            if evals.is_empty() {
                Command::NodeRegister {
                    node: Box::new(node),
                    now,
                }
            } else {
                Command::NodeRegisterWithEvals {
                    node: Box::new(node),
                    evals,
                    now,
                }
            }
        } else {
            Command::NodeRegister {
                node: Box::new(node),
                now,
            }
        };
        let response = self.propose(command).await?;
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
        let evals = reconnect_evals(&state, &updates);
        let response = self
            .propose(Command::AllocClientUpdate {
                updates,
                evals,
                now: now_unix_nanos(),
            })
            .await?;
        Ok(response.index)
    }

    /// The operator changes the scheduler configuration.
    /// With `cas`, only if its modify index is still that. Returns whether it was written,
    /// and the index of the entry.
    pub async fn set_scheduler_config(
        &self,
        config: crate::model::SchedulerConfiguration,
        cas: Option<u64>,
    ) -> Result<(bool, u64), ServerError> {
        config.validate().map_err(ServerError::BadRequest)?;
        let response = self
            .propose(Command::SchedulerSetConfig { config, cas })
            .await?;
        Ok((!response.cas_mismatch, response.index))
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

    // ---- what node daemons ask ----

    /// A node's heartbeat. Only the leader keeps the timers: elsewhere the answer is
    /// [`HeartbeatOutcome::NotLeader`] with the leader's address, for the transport to
    /// forward. A node the servers marked down or disconnected is ready again (with
    /// evaluations for the jobs that had allocations there); an unknown node must register.
    pub async fn node_heartbeat(&self, node_id: &str) -> Result<HeartbeatOutcome, ServerError> {
        if !*self.consensus.leadership().borrow() {
            return Ok(HeartbeatOutcome::NotLeader(self.consensus.leader_address()));
        }
        let state = self.store.snapshot();
        let Some(node) = state.node(node_id) else {
            return Err(ServerError::NotFound(format!(
                "node {node_id:?} not found: it must register before it heartbeats"
            )));
        };
        if node.status != NodeStatus::Ready {
            let triggered_by = if node.status == NodeStatus::Disconnected {
                trigger::RECONNECT
            } else {
                trigger::NODE_UPDATE
            };
            let evals = state.node_update_evals(node_id, triggered_by, &mut new_id);
            tracing::info!(
                node_id,
                from = node.status.as_str(),
                "node is back: marking it ready"
            );
            self.propose(Command::NodeUpdateStatus {
                node_id: node_id.to_string(),
                status: NodeStatus::Ready,
                evals,
                now: now_unix_nanos(),
            })
            .await?;
        }
        let config = self.config.heartbeat;
        let ttl = config.ttl(state.node_count(), stagger());
        if let Ok(mut timers) = self.heartbeats.lock() {
            timers.beat(node_id, self.started.elapsed(), ttl, config.grace);
        }
        Ok(HeartbeatOutcome::Ttl(ttl))
    }

    /// A node's allocations once the allocation index passes `min_index`, or after `wait`
    /// (at most [`node_rpc::MAX_ALLOCS_WAIT`]), from this server's own state.
    pub async fn node_allocs(
        &self,
        node_id: &str,
        min_index: u64,
        wait: Duration,
    ) -> (Vec<Arc<crate::model::Allocation>>, u64) {
        let table = [crate::state::Table::Allocs];
        let wait = wait.min(node_rpc::MAX_ALLOCS_WAIT);
        let (state, _) = self.store.wait_for(&table, min_index, wait).await;
        (
            state.allocs_by_node(node_id),
            state.max_index(&table).max(1),
        )
    }

    /// How many nodes have a running heartbeat timer (on the leader; 0 elsewhere).
    pub fn heartbeat_timers(&self) -> usize {
        self.heartbeats.lock().map(|t| t.len()).unwrap_or(0)
    }

    /// The leader's heartbeat timers: started for every ready node (at the failover TTL when
    /// leadership is gained, so that nodes have time to find the new leader), and a node
    /// whose deadline passes is proposed down or disconnected, with evaluations for its jobs.
    async fn run_heartbeats(self: Arc<Self>) {
        let config = self.config.heartbeat;
        {
            let state = self.store.snapshot();
            let now = self.started.elapsed();
            if let Ok(mut timers) = self.heartbeats.lock() {
                timers.clear();
                timers.ensure(
                    ready_nodes(&state).iter().map(String::as_str),
                    now,
                    config.failover_ttl,
                );
                tracing::info!(
                    nodes = timers.len(),
                    ttl_s = config.failover_ttl.as_secs(),
                    "heartbeat timers started at the failover TTL"
                );
            }
        }
        let mut tick = tokio::time::interval(HEARTBEAT_CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let state = self.store.snapshot();
            let now = self.started.elapsed();
            let ready = ready_nodes(&state);
            let missed = match self.heartbeats.lock() {
                Ok(mut timers) => {
                    // Nodes registered through another server since: a normal first TTL.
                    let ttl = config.ttl(ready.len(), stagger()) + config.grace;
                    timers.ensure(ready.iter().map(String::as_str), now, ttl);
                    timers.retain(|id| ready.contains(id));
                    timers.expired(now)
                }
                Err(_) => return,
            };
            for node_id in missed {
                self.mark_missed(&node_id).await;
            }
        }
    }

    /// Proposes a node that missed its heartbeat down (or disconnected), with evaluations for
    /// the jobs that had allocations on it. When that cannot commit now, the node is tried
    /// again shortly.
    async fn mark_missed(&self, node_id: &str) {
        let state = self.store.snapshot();
        if state
            .node(node_id)
            .is_none_or(|n| n.status != NodeStatus::Ready)
        {
            return;
        }
        let status = crate::scheduler::missed_heartbeat_status(&state, node_id);
        let evals = state.node_update_evals(node_id, trigger::NODE_UPDATE, &mut new_id);
        tracing::warn!(
            node_id,
            status = status.as_str(),
            evals = evals.len(),
            "node missed its heartbeat"
        );
        let result = self
            .propose(Command::NodeUpdateStatus {
                node_id: node_id.to_string(),
                status,
                evals,
                now: now_unix_nanos(),
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(
                node_id,
                "marking a node that missed its heartbeat {}: {e}; retrying",
                status.as_str()
            );
            if let Ok(mut timers) = self.heartbeats.lock() {
                timers.beat(
                    node_id,
                    self.started.elapsed(),
                    HEARTBEAT_CHECK_INTERVAL * 4,
                    Duration::ZERO,
                );
            }
        }
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
                    _ = self.clone().run_heartbeats() => {}
                    // The drainer's decisions are proposed by the leader only; its state is
                    // all in the replicated state, so a new leader picks up where it was.
                    _ = drainer::run(self.clone()) => {}
                    // Launches periodic jobs; its memory is the replicated launch table.
                    _ = periodic::run(self.clone()) => {}
                    // Moves deployments along from allocation health and deadlines; its
                    // memory is only what it proposed last, the rest is in the state.
                    _ = deployments::watcher::run(self.clone()) => {}
                    _ = wait_until(&mut leadership, false) => {}
                    _ = shutdown.changed() => return,
                }
                self.store.unsubscribe_effects();
                if let Ok(mut timers) = self.heartbeats.lock() {
                    timers.clear();
                }
                self.broker.clear();
                self.blocked_evals().clear();
                tracing::info!("leadership lost: eval broker disabled");
            } else {
                tokio::select! {
                    r = leadership.changed() => if r.is_err() { return },
                    _ = shutdown.changed() => return,
                }
            }
        }
    }

    fn restore_broker(self: &Arc<Self>) {
        let state = self.store.snapshot();
        self.broker
            .set_paused(state.scheduler_config().pause_eval_broker);
        let mut blocked = Vec::new();
        for eval in state.evals() {
            match eval.status {
                EvalStatus::Pending => self.enqueue((*eval).clone()),
                EvalStatus::Blocked => blocked.push((*eval).clone()),
                _ => {}
            }
        }
        self.track_blocked(blocked);
    }

    fn enqueue(&self, eval: Evaluation) {
        if let Err(e) = self.broker.enqueue(eval) {
            tracing::warn!("{e}");
        }
    }

    fn blocked_evals(&self) -> std::sync::MutexGuard<'_, blocked::BlockedEvals> {
        match self.blocked.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The blocked-evaluation tracker's figures (leader only; zero elsewhere).
    pub fn blocked_stats(&self) -> blocked::BlockedStats {
        self.blocked_evals().stats()
    }

    /// Hands newly blocked evaluations to the tracker: those that missed a capacity change
    /// go to the broker now, and those a newer one of the same job supersedes are canceled.
    fn track_blocked(self: &Arc<Self>, evals: Vec<Evaluation>) {
        if evals.is_empty() {
            return;
        }
        let mut requeue = Vec::new();
        let mut cancel = Vec::new();
        {
            let mut tracker = self.blocked_evals();
            for eval in evals {
                match tracker.block(eval) {
                    blocked::Blocked::Tracked { superseded } => {
                        cancel.extend(superseded.map(|e| *e))
                    }
                    blocked::Blocked::Stale(eval) => cancel.push(*eval),
                    blocked::Blocked::Unblocked(eval) => requeue.push(*eval),
                    blocked::Blocked::Full => tracing::warn!(
                        limit = blocked::MAX_BLOCKED,
                        "blocked evaluation tracker full; the evaluation stays blocked in the state until leadership changes"
                    ),
                }
            }
        }
        for eval in requeue {
            self.enqueue(eval);
        }
        if !cancel.is_empty() {
            let server = self.clone();
            tokio::spawn(async move { server.cancel_superseded(cancel).await });
        }
    }

    /// Marks blocked evaluations a newer one of the same job replaced `canceled` (Nomad's
    /// duplicate blocked evaluation reaping); one no longer blocked in the state is left.
    async fn cancel_superseded(&self, evals: Vec<Evaluation>) {
        let state = self.store.snapshot();
        let evals: Vec<Evaluation> = evals
            .into_iter()
            .filter(|e| {
                state
                    .eval(&e.id)
                    .is_some_and(|s| s.status == EvalStatus::Blocked)
            })
            .map(|mut eval| {
                eval.status = EvalStatus::Canceled;
                eval.status_description = format!(
                    "existing blocked evaluation exists for job {:?}",
                    eval.job_id
                );
                eval
            })
            .collect();
        if evals.is_empty() {
            return;
        }
        if let Err(e) = self.update_evals(evals).await {
            tracing::warn!("canceling superseded blocked evaluations: {e}");
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
                    self.unblock(&BTreeSet::new());
                    continue;
                }
            };
            if effect.state_replaced {
                // A snapshot was restored: what the broker holds came from a state that is
                // gone. The effect lists every pending and blocked evaluation of the new one.
                tracing::info!("state restored from a snapshot: eval broker rebuilt");
                self.broker.clear();
                self.blocked_evals().clear();
            }
            if effect.scheduler_config_changed {
                let paused = self.store.snapshot().scheduler_config().pause_eval_broker;
                if paused != self.broker.paused() {
                    tracing::info!(
                        paused,
                        "eval broker pause changed by the scheduler configuration"
                    );
                }
                self.broker.set_paused(paused);
            }
            for id in &effect.deleted_evals {
                self.broker.remove(id);
                self.blocked_evals().remove(id);
            }
            for eval in effect.pending_evals {
                self.enqueue(eval);
            }
            self.track_blocked(effect.blocked_evals);
            if effect.capacity_changed {
                self.unblock(&effect.unblock_classes);
            }
        }
    }

    /// Capacity changed on `classes` (empty: on which is not known): the blocked evaluations
    /// that may use it get another scheduler run.
    fn unblock(&self, classes: &BTreeSet<String>) {
        let state = self.store.snapshot();
        // The effect carries no index; the state's newest is at or after it, which at worst
        // retries an evaluation once more than needed.
        let index = state.latest_index();
        let evals = {
            let mut tracker = self.blocked_evals();
            tracker.retain(|e| {
                state
                    .eval(&e.id)
                    .is_some_and(|s| s.status == EvalStatus::Blocked)
            });
            tracker.unblock(classes, index)
        };
        for eval in evals {
            if let Some(current) = state.eval(&eval.id) {
                self.enqueue((*current).clone());
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

/// What a heartbeat got: the TTL of the next, or the leader to send it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    Ttl(Duration),
    NotLeader(Option<String>),
}

/// How often the leader looks for nodes whose heartbeat deadline passed: how late past its
/// deadline a node may be noticed.
const HEARTBEAT_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Nomad's words for a registration refused by `RejectJobRegistration`.
pub const REGISTRATION_DISABLED: &str =
    "Job registration, dispatch, and scale are disabled by the scheduler configuration";

/// The nodes heartbeat timers run for: those the state holds ready.
fn ready_nodes(state: &State) -> BTreeSet<String> {
    state
        .nodes()
        .iter()
        .filter(|n| n.status == NodeStatus::Ready)
        .map(|n| n.id.clone())
        .collect()
}

/// A number in `[0, 1)` from fresh randomness (a v4 id's random bits), to stagger TTLs.
fn stagger() -> f64 {
    let id = uuid::Uuid::new_v4().as_u128();
    // 2^20 steps are plenty for a stagger.
    (id & 0xF_FFFF) as f64 / f64::from(0x10_0000)
}

/// One evaluation per job whose `unknown` allocation its reconnected client now reports on
/// (running, or finished): the scheduler decides which copy keeps running (Nomad's
/// reconnect follow-up).
fn reconnect_evals(state: &State, updates: &[AllocClientUpdate]) -> Vec<Evaluation> {
    let mut jobs = BTreeSet::new();
    for update in updates {
        let Some(alloc) = state.alloc(&update.id) else {
            continue;
        };
        if update.client_status != crate::model::ClientStatus::Unknown
            && crate::scheduler::tainted::needs_to_reconnect(&alloc)
        {
            jobs.insert((
                alloc.namespace.clone(),
                alloc.job_id.clone(),
                alloc.node_id.clone(),
            ));
        }
    }
    jobs.into_iter()
        .filter_map(|(namespace, job_id, node_id)| {
            let job = state.job(&namespace, &job_id)?;
            Some(Evaluation {
                id: new_id(),
                namespace,
                priority: job.priority,
                eval_type: job.job_type.as_str().to_string(),
                triggered_by: trigger::RECONNECT.to_string(),
                job_id,
                job_modify_index: job.job_modify_index,
                node_id,
                status: EvalStatus::Pending,
                ..Default::default()
            })
        })
        .collect()
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
mod broker_tests;
#[cfg(test)]
mod children_tests;
#[cfg(test)]
mod plan_tests;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
