//! The client (node daemon): fingerprints this machine, registers it, watches the allocations
//! placed on it with a blocking query, runs each with an [`alloc_runner`], and reports their
//! state back in batches. Tasks run under the per-node supervisor, so a restarted client finds
//! its running tasks again and reattaches instead of restarting them.
//!
//! What the client did is recorded in `<state_dir>/client.db` ([`state`]) before it acts and
//! after each change; at start it reconciles that record with what the supervisor and the
//! allocation directories say ([`recovery`]) and runs its allocations again before any server
//! answers. Terminal allocations are garbage collected ([`gc`]).
//!
//! Owns everything done on the node; must not decide placement (that is the servers' job).

pub mod alloc_control;
pub mod alloc_runner;
pub mod allocdir;
pub(crate) mod backoff;
pub mod cpuset;
mod dispatch_payload;
pub mod exec;
pub mod fingerprint;
pub mod fs;
pub mod gc;
pub mod health;
pub mod heartbeat;
pub mod lifecycle;
pub mod logs;
pub mod network;
pub mod recovery;
pub mod remote;
pub mod restart;
pub mod services;
pub mod settings;
pub mod state;
pub mod task_runner;
pub mod taskenv;
mod updater;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use controlplane::api::{
    AllocFileInfo, ClientEndpoints, ClientError, ExecRequest, ExecSession, FsStreamRequest,
    LogFrame, LogsRequest,
};
use controlplane::model::{
    eligibility, AllocClientUpdate, Allocation, ClientHostVolumeConfig, DesiredStatus, Node,
    NodeStatus, ServiceRegistration,
};
use controlplane::server::Server;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::sync::{mpsc, watch};

use crate::driver::DriverRegistry;
use crate::supervisor::client::SupervisorClient;
use crate::supervisor::protocol::{Request, Response, TaskStats, TaskStatus};
use alloc_runner::{AllocRunnerHandle, TaskResume};
use allocdir::{AllocDir, SpareAllocDirs};
use backoff::{Backoff, BackoffPolicy};
use gc::AllocGc;
use network::manager::NetworkManager;
use network::record::AllocNetwork;
use recovery::{RecoveryPlan, TaskRecovery};
use state::{AllocRecord, StateStore};
pub use updater::UpdateError;

/// How often a disconnected client checks `stop_on_client_after`: how late past it an
/// allocation may be stopped.
const DISCONNECT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The group's `disconnect.stop_on_client_after` (or legacy `stop_after_client_disconnect`).
fn stop_on_client_after(alloc: &Allocation) -> Option<Duration> {
    let group = alloc.job.as_ref()?.group(&alloc.task_group)?;
    group
        .disconnect
        .as_ref()
        .and_then(|d| d.stop_on_client_after)
        .or(group.stop_after_client_disconnect)
}

/// How long past a drain's deadline a stopping client waits for the last allocations to stop.
const DRAIN_ON_SHUTDOWN_SLACK: Duration = Duration::from_secs(30);
/// Blocking-query wait for the allocation watcher.
const WATCH_WAIT: Duration = Duration::from_secs(300);
/// Retrying the allocation watcher's query after an error: 1 s (as before), doubling, at
/// most 30 s (Nomad's client waits 30 s and a stagger), up to a quarter shorter at random;
/// back to 1 s after an answer.
const WATCH_RETRY: BackoffPolicy = BackoffPolicy {
    first: Duration::from_secs(1),
    factor: 2,
    cap: Duration::from_secs(30),
    jitter: 0.25,
};
/// How long a shutting-down client waits for each allocation's tasks to stop.
const STOP_ALL_WAIT: Duration = Duration::from_secs(30);
/// Between the two samples of a task's first stats request (CPU percent is a rate).
const FIRST_CPU_SAMPLE_GAP: Duration = Duration::from_millis(100);
/// How often the client fingerprints the machine again; a change is re-registered.
pub const REFINGERPRINT_INTERVAL: Duration = Duration::from_secs(30);

/// A node's allocations and the index they were read at.
pub type NodeAllocs = (Vec<Arc<Allocation>>, u64);

/// What the client asks of the servers. In one process (`agent -dev`) it calls the server
/// directly; remote clients will speak RPC through the same trait.
pub trait ServerRpc: Send + Sync + 'static {
    fn register_node(&self, node: Node) -> BoxFuture<'_, Result<u64, String>>;
    fn update_allocs(&self, updates: Vec<AllocClientUpdate>) -> BoxFuture<'_, Result<u64, String>>;
    /// The node's allocations once the allocation index passes `min_index` (or `wait` runs out).
    fn node_allocs(
        &self,
        node_id: String,
        min_index: u64,
        wait: Duration,
    ) -> BoxFuture<'_, Result<NodeAllocs, String>>;
    /// "This node is alive": the TTL within which the next heartbeat must come.
    fn heartbeat(&self, node_id: String) -> BoxFuture<'_, Result<Duration, HeartbeatError>>;
    /// The node drains itself (`drain_on_shutdown`), or stops draining (`None`).
    fn drain_self(
        &self,
        node_id: String,
        drain_strategy: Option<controlplane::model::DrainStrategy>,
    ) -> BoxFuture<'_, Result<u64, String>>;
    /// Registers service instances of this node's allocations (or their new health).
    fn upsert_services(
        &self,
        services: Vec<ServiceRegistration>,
    ) -> BoxFuture<'_, Result<u64, String>>;
    /// Removes service instances by id, and every instance of `alloc_ids`.
    fn delete_services(
        &self,
        ids: Vec<String>,
        alloc_ids: Vec<String>,
    ) -> BoxFuture<'_, Result<u64, String>>;
    /// The whole catalog once its index passes `min_index` (or `wait` runs out).
    fn watch_services(
        &self,
        min_index: u64,
        wait: Duration,
    ) -> BoxFuture<'_, Result<ServiceCatalog, String>>;
}

/// The service catalog and the index it was read at.
pub type ServiceCatalog = (Vec<Arc<ServiceRegistration>>, u64);

/// Why a heartbeat was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    /// The servers do not know the node (purged, or a restored snapshot): register again.
    #[error("the servers do not know this node: {0}")]
    UnknownNode(String),
    #[error("{0}")]
    Failed(String),
}

impl ServerRpc for Arc<Server> {
    fn upsert_services(
        &self,
        services: Vec<ServiceRegistration>,
    ) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(async move {
            Server::upsert_services(self, services)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn delete_services(
        &self,
        ids: Vec<String>,
        alloc_ids: Vec<String>,
    ) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(async move {
            Server::delete_services(self, ids, alloc_ids)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn watch_services(
        &self,
        min_index: u64,
        wait: Duration,
    ) -> BoxFuture<'_, Result<ServiceCatalog, String>> {
        Box::pin(async move { Ok(Server::watch_services(self, min_index, wait).await) })
    }

    fn register_node(&self, node: Node) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(async move {
            Server::register_node(self, node)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn update_allocs(&self, updates: Vec<AllocClientUpdate>) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(async move {
            Server::update_allocs(self, updates)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn node_allocs(
        &self,
        node_id: String,
        min_index: u64,
        wait: Duration,
    ) -> BoxFuture<'_, Result<NodeAllocs, String>> {
        Box::pin(async move {
            let table = [controlplane::state::Table::Allocs];
            let (state, _) = self.store().wait_for(&table, min_index, wait).await;
            Ok((
                state.allocs_by_node(&node_id),
                state.max_index(&table).max(1),
            ))
        })
    }

    fn heartbeat(&self, node_id: String) -> BoxFuture<'_, Result<Duration, HeartbeatError>> {
        Box::pin(async move {
            use controlplane::server::{HeartbeatOutcome, ServerError};
            match self.node_heartbeat(&node_id).await {
                Ok(HeartbeatOutcome::Ttl(ttl)) => Ok(ttl),
                Ok(HeartbeatOutcome::NotLeader(leader)) => Err(HeartbeatError::Failed(format!(
                    "this server is not the leader (leader: {})",
                    leader.as_deref().unwrap_or("none known")
                ))),
                Err(ServerError::NotFound(m)) => Err(HeartbeatError::UnknownNode(m)),
                Err(e) => Err(HeartbeatError::Failed(e.to_string())),
            }
        })
    }

    fn drain_self(
        &self,
        node_id: String,
        drain_strategy: Option<controlplane::model::DrainStrategy>,
    ) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(async move {
            self.update_drain(
                &node_id,
                drain_strategy,
                false,
                crate::agent::rpc::drain_on_shutdown_meta(),
            )
            .await
            .map(|r| r.index)
            .map_err(|e| e.to_string())
        })
    }
}

/// Client settings (from the agent config).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `<data_dir>/client`: node id, supervisor socket and state.
    pub state_dir: PathBuf,
    /// `<data_dir>/alloc`.
    pub allocs_root: PathBuf,
    pub node_name: String,
    pub datacenter: String,
    pub region: String,
    pub node_pool: String,
    pub node_class: String,
    pub meta: BTreeMap<String, String>,
    pub http_addr: String,
    /// `unique.network.ip-address` unless `network_interface` names an interface.
    pub ip_address: String,
    /// `client.network_interface`: the node's address is this interface's first address
    /// (IPv4 preferred), read at start and at every re-fingerprint.
    pub network_interface: Option<String>,
    /// `client.servers`, each "host:port" (port 4647 added when it was left out).
    pub servers: Vec<String>,
    /// `client.server_join`.
    pub server_join: crate::agent::config::JoinSettings,
    /// `client.reserved`: kept out of placement (`Node.reserved_resources`).
    pub reserved: settings::ReservedConfig,
    /// `client.host_volume` blocks whose path exists, by name (`Node.host_volumes`).
    pub host_volumes: BTreeMap<String, ClientHostVolumeConfig>,
    /// The dynamic port range, inclusive (`Node.node_resources.Min/MaxDynamicPort`).
    pub min_dynamic_port: u16,
    pub max_dynamic_port: u16,
    /// `client.max_kill_timeout`: the longest `kill_timeout` a task gets.
    pub max_kill_timeout: Duration,
    /// `client.drain_on_shutdown`, if set.
    pub drain_on_shutdown: Option<settings::DrainOnShutdown>,
    /// `client.bridge_network_name`, `bridge_network_subnet`, `port_mapping`: for the
    /// network hook of `bridge` allocations and the fingerprint.
    pub network: settings::NetworkSettings,
    pub exec: crate::driver::ExecSettings,
    pub raw_exec_enabled: bool,
    /// The `gc_*` settings; `gc.max_allocs` terminal allocation dirs are kept for their logs
    /// before the oldest are removed.
    pub gc: settings::GcSettings,
    /// The supervisor stops its tasks and exits when the agent exits (dev agent on a temp dir).
    pub ephemeral: bool,
    /// The cgroup every task cgroup lives under.
    pub cgroup_parent: String,
    pub noded_exe: PathBuf,
    /// How registration is retried while no server answers.
    pub join: heartbeat::JoinPolicy,
}

/// State shared by the client's runners.
pub struct ClientShared {
    pub node_id: String,
    pub node_name: String,
    pub datacenter: String,
    pub region: String,
    pub allocs_root: PathBuf,
    /// Allocation directory layouts made ahead of the allocations that take them.
    pub alloc_dirs: Arc<SpareAllocDirs>,
    pub supervisor: SupervisorClient,
    pub drivers: DriverRegistry,
    /// The node's attributes, replaced when a re-fingerprint finds a change.
    attributes: RwLock<Arc<BTreeMap<String, String>>>,
    /// `client.meta`, as last (re)loaded.
    meta: RwLock<Arc<BTreeMap<String, String>>>,
    /// `client.max_kill_timeout`: no task waits longer between its kill signal and SIGKILL.
    pub max_kill_timeout: Duration,
    pub node_class: String,
    pub node_pool: String,
    /// The cores tasks without reserved cores run on; task runners follow it.
    pub shared_cores: watch::Sender<cpuset::SharedCores>,
    /// The cores tasks may use at all (from the fingerprint).
    usable_cores: Vec<u32>,
    updates: mpsc::Sender<AllocClientUpdate>,
    /// This node's record of its allocations and tasks (`client.db`).
    pub state: Arc<StateStore>,
    /// Terminal allocations waiting to be collected.
    pub gc: Arc<AllocGc>,
    /// Allocations' network namespaces, veths, leases and port mappings.
    pub network: Arc<NetworkManager>,
    /// Service registrations and checks of every allocation on this node.
    pub services: Arc<services::ServiceContext>,
}

impl std::fmt::Debug for ClientShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientShared")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl ClientShared {
    /// The node's attributes as last fingerprinted.
    pub fn attributes(&self) -> Arc<BTreeMap<String, String>> {
        match self.attributes.read() {
            Ok(a) => a.clone(),
            // A writer only swaps an `Arc`: the value is whole even if one panicked.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The node's `meta`, as last (re)loaded.
    pub fn meta(&self) -> Arc<BTreeMap<String, String>> {
        match self.meta.read() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_meta(&self, meta: BTreeMap<String, String>) {
        let next = Arc::new(meta);
        match self.meta.write() {
            Ok(mut m) => *m = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }

    fn set_attributes(&self, attributes: BTreeMap<String, String>) {
        let next = Arc::new(attributes);
        match self.attributes.write() {
            Ok(mut a) => *a = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }

    pub async fn send_update(&self, update: AllocClientUpdate) {
        // Closed only when the client shuts down.
        let _ = self.updates.send(update).await;
    }

    /// Resolves `${NOMAD_…}`, `${node.…}`, `${attr.…}` and `${meta.…}` in a task's env value.
    pub fn interpolate(
        &self,
        value: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<String, String> {
        let ctx = controlplane::jobspec::InterpolationContext {
            env: env.clone(),
            node_attrs: (*self.attributes()).clone(),
            node: [
                ("unique.id".to_string(), self.node_id.clone()),
                ("unique.name".to_string(), self.node_name.clone()),
                ("datacenter".to_string(), self.datacenter.clone()),
                ("region".to_string(), self.region.clone()),
                ("class".to_string(), self.node_class.clone()),
                ("pool".to_string(), self.node_pool.clone()),
            ]
            .into(),
            node_meta: (*self.meta()).clone(),
            ..Default::default()
        };
        controlplane::jobspec::interpolate(value, &ctx).map_err(|e| e.to_string())
    }
}

/// A running client.
pub struct Client {
    shared: Arc<ClientShared>,
    runners: Mutex<HashMap<String, AllocRunnerHandle>>,
    /// Allocations run again from their records at start, not yet seen in a server answer:
    /// those the first answer lacks are stopped.
    resumed: Mutex<BTreeSet<String>>,
    /// The `alloc_modify_index`/`modify_index` of each allocation as last recorded, so that
    /// an unchanged allocation is not written again.
    recorded: Mutex<HashMap<String, (u64, u64)>>,
    config: ClientConfig,
    /// The node as last registered; a re-fingerprint replaces it.
    node: RwLock<Node>,
    previous_cpu: Mutex<HashMap<String, (u64, i64)>>,
    /// When a server last took this node's heartbeat.
    contact: Arc<heartbeat::ServerContact>,
    /// `client.reserved` as last (re)loaded (SIGHUP changes it).
    reserved: RwLock<settings::ReservedConfig>,
    /// Wakes the re-fingerprint loop at once (a reload).
    refingerprint_now: tokio::sync::Notify,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("node_id", &self.shared.node_id)
            .finish_non_exhaustive()
    }
}

/// Reads the node's id from the state dir, or makes and stores a new one.
fn node_id(state_dir: &std::path::Path) -> std::io::Result<String> {
    let path = state_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if uuid::Uuid::parse_str(id.trim()).is_ok() => Ok(id.trim().to_string()),
        Ok(_) | Err(_) => {
            let id = controlplane::model::new_id();
            let tmp = state_dir.join("node-id.tmp");
            std::fs::write(&tmp, &id)?;
            std::fs::rename(&tmp, &path)?;
            Ok(id)
        }
    }
}

impl Client {
    /// Starts the client: supervisor, fingerprint, registration, then the watcher and updater.
    pub async fn start(
        config: ClientConfig,
        server: Arc<dyn ServerRpc>,
    ) -> anyhow::Result<Arc<Client>> {
        use anyhow::Context;
        std::fs::create_dir_all(&config.state_dir).with_context(|| {
            format!(
                "creating the client state dir {}",
                config.state_dir.display()
            )
        })?;
        std::fs::create_dir_all(&config.allocs_root).with_context(|| {
            format!(
                "creating the allocations dir {}",
                config.allocs_root.display()
            )
        })?;
        let alloc_dirs = SpareAllocDirs::start(&config.allocs_root).with_context(|| {
            format!(
                "preparing spare allocation directories in {}",
                config.allocs_root.display()
            )
        })?;
        let node_id = node_id(&config.state_dir).with_context(|| {
            format!("reading or writing {}/node-id", config.state_dir.display())
        })?;
        let supervisor = SupervisorClient::new(config.state_dir.join("supervisor.sock"));
        let supervisor_pid = supervisor
            .ensure_running(
                &config.noded_exe,
                &config.state_dir.join("supervisor"),
                &config.cgroup_parent,
                config.ephemeral,
            )
            .await
            .context("starting the task supervisor")?;
        tracing::info!(pid = supervisor_pid, socket = %supervisor.socket().display(), "task supervisor ready");
        let state_dir = config.state_dir.clone();
        let opened = tokio::task::spawn_blocking(move || StateStore::open_or_recover(&state_dir))
            .await
            .context("opening the client state")??;
        if let Some((aside, why)) = &opened.moved_aside {
            tracing::error!(
                moved_to = %aside.display(),
                "the client state was unreadable ({why}); it was moved aside and recovery falls back to the supervisor's tasks and the allocation directories"
            );
        }
        let recorded_state = opened.state;
        let state = Arc::new(opened.store);

        let ip_address = match &config.network_interface {
            Some(name) => fingerprint::interface_address(name)
                .map_err(|e| anyhow::anyhow!("client.network_interface = {name:?}: {e}"))?
                .to_string(),
            None => config.ip_address.clone(),
        };
        let network = Arc::new(network_manager(
            &config,
            &node_id,
            &ip_address,
            state.clone(),
        ));
        let print = fingerprint::gather_with(&fingerprint_config(&config, ip_address, &network));
        let mut exec_settings = config.exec.clone();
        exec_settings.mhz_per_core = print
            .attributes
            .get("cpu.frequency")
            .and_then(|f| f.parse().ok())
            .unwrap_or(1000);
        let health = exec_health();
        let mut drivers = DriverRegistry::default();
        drivers.register(Arc::new(crate::driver::ExecDriver::exec(
            exec_settings.clone(),
            health.clone(),
        )));
        drivers.register(Arc::new(crate::driver::ExecDriver::raw_exec(
            config.raw_exec_enabled,
            exec_settings,
            health,
        )));

        let facts = node_facts(&print, &drivers);
        let attributes = facts.attributes.clone();
        let node = Node {
            id: node_id.clone(),
            name: if config.node_name.is_empty() {
                print.hostname.clone()
            } else {
                config.node_name.clone()
            },
            datacenter: config.datacenter.clone(),
            node_pool: config.node_pool.clone(),
            node_class: config.node_class.clone(),
            http_addr: config.http_addr.clone(),
            attributes: attributes.clone(),
            meta: config.meta.clone(),
            node_resources: facts.resources.clone(),
            reserved_resources: facts.reserved.clone(),
            drivers: facts.drivers.clone(),
            host_volumes: config.host_volumes.clone(),
            status: NodeStatus::Ready,
            scheduling_eligibility: eligibility::ELIGIBLE.to_string(),
            ..Default::default()
        };
        let (updates_tx, updates_rx) = mpsc::channel(updater::UPDATE_QUEUE);
        let usable_cores = cpuset::usable_cores(&node.node_resources.cpu);
        if usable_cores.is_empty() {
            tracing::warn!("the fingerprint found no cpu cores: tasks without reserved cores will not be kept off reserved ones");
        }
        let shared = Arc::new(ClientShared {
            node_id: node_id.clone(),
            node_name: node.name.clone(),
            datacenter: config.datacenter.clone(),
            region: config.region.clone(),
            allocs_root: config.allocs_root.clone(),
            alloc_dirs,
            supervisor,
            drivers,
            attributes: RwLock::new(Arc::new(attributes)),
            meta: RwLock::new(Arc::new(config.meta.clone())),
            max_kill_timeout: config.max_kill_timeout,
            node_class: config.node_class.clone(),
            node_pool: config.node_pool.clone(),
            shared_cores: watch::channel(cpuset::shared_cores(&usable_cores, [])).0,
            usable_cores,
            updates: updates_tx,
            state,
            gc: Arc::new(AllocGc::new(config.gc.clone())),
            network,
            services: Arc::new(services::ServiceContext::new(server.clone())),
        });
        let reserved = config.reserved.clone();
        let client = Arc::new(Client {
            shared,
            runners: Mutex::new(HashMap::new()),
            resumed: Mutex::new(BTreeSet::new()),
            recorded: Mutex::new(HashMap::new()),
            config,
            node: RwLock::new(node.clone()),
            previous_cpu: Mutex::new(HashMap::new()),
            contact: Arc::new(heartbeat::ServerContact::new()),
            reserved: RwLock::new(reserved),
            refingerprint_now: tokio::sync::Notify::new(),
        });
        // Before any server answers: what this node was running runs on.
        let observed = recovery::Observed {
            supervisor: client.supervisor_tasks().await,
            alloc_dirs: alloc_dir_times(&client.config.allocs_root),
        };
        let plan = recovery::plan(&recorded_state, &observed);
        client.reconcile_networks(&plan).await;
        let unclaimed = client.recover(plan).await;
        tokio::spawn(updater::run_updater(server.clone(), updates_rx));
        let gc_client = Arc::downgrade(&client);
        tokio::spawn(
            client
                .shared
                .gc
                .clone()
                .run(client.shared.clone(), move || {
                    gc_client.upgrade().map(|c| c.live_allocs()).unwrap_or(0)
                }),
        );
        // Registered once here, so that a node that reaches its servers is known to them when
        // the agent reports healthy; otherwise the watcher keeps trying.
        let registered = match server.register_node(node.clone()).await {
            Ok(_) => {
                tracing::info!(node_id = %node_id, "node registered");
                true
            }
            Err(e) => {
                tracing::warn!(node_id = %node_id, "registering the node: {e}; running the allocations on record until the servers answer");
                false
            }
        };
        tokio::spawn(heartbeat::run(
            server.clone(),
            node.clone(),
            client.contact.clone(),
            client.config.join,
        ));
        tokio::spawn(client.clone().refingerprint(server.clone(), facts));
        tokio::spawn(client.clone().stop_when_disconnected());
        tokio::spawn(client.clone().watch(server, node, registered, unclaimed));
        Ok(client)
    }

    /// Removes the network objects no allocation that runs again owns (see
    /// [`NetworkManager::reconcile`]); those of allocations that run again are kept, with their
    /// leases. A failure is logged: the allocations still run, and the next start tries again.
    async fn reconcile_networks(&self, plan: &RecoveryPlan) {
        let live: BTreeMap<String, AllocNetwork> = plan
            .resume
            .iter()
            .filter_map(|(id, r)| Some((id.clone(), r.record.network.clone()?)))
            .collect();
        let network = self.shared.network.clone();
        match tokio::task::spawn_blocking(move || network.reconcile(live)).await {
            Ok(Ok(done)) if done != Default::default() => {
                tracing::info!(
                    namespaces = ?done.namespaces,
                    links = ?done.links,
                    mappings = done.mappings.len(),
                    endpoints = done.endpoints,
                    bridge_networking = done.fabric_removed,
                    "removed network objects no allocation owns"
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("reconciling allocation networks: {e}"),
            Err(e) => tracing::error!("reconciling allocation networks: {e}"),
        }
    }

    /// Carries out the recovery plan: cleans up what finished, runs again what was running
    /// (reattaching to its tasks), queues garbage. Returns the supervisor tasks no record
    /// claims, for the servers' first answer to settle.
    async fn recover(&self, plan: RecoveryPlan) -> BTreeMap<String, BTreeMap<String, TaskStatus>> {
        for task_id in &plan.remove {
            match self
                .shared
                .supervisor
                .call(&Request::Remove {
                    task_id: task_id.clone(),
                })
                .await
            {
                Ok(Response::Ok) => {}
                Ok(other) => {
                    tracing::warn!(task = %task_id, "cleaning up a finished task: {other:?}")
                }
                Err(e) => tracing::warn!(task = %task_id, "cleaning up a finished task: {e}"),
            }
        }
        for (id, ended) in &plan.gc_candidates {
            self.shared.gc.mark(id, *ended);
        }
        let Ok(mut runners) = self.runners.lock() else {
            return plan.unclaimed;
        };
        let allocs: Vec<Arc<Allocation>> = plan
            .resume
            .values()
            .map(|r| Arc::new(r.record.alloc.clone()))
            .collect();
        self.update_shared_cores(&allocs, &runners, &plan.unclaimed);
        for (id, resume) in plan.resume {
            let tasks: BTreeMap<String, TaskResume> = resume
                .tasks
                .into_iter()
                .map(|(name, (how, record))| {
                    let mut r = TaskResume {
                        record,
                        ..Default::default()
                    };
                    match how {
                        TaskRecovery::Reattach(status) => r.reattach = Some(status),
                        TaskRecovery::Lost(handle) => r.lost = Some(handle),
                        TaskRecovery::Start | TaskRecovery::Done => {}
                    }
                    (name, r)
                })
                .collect();
            let alloc = Arc::new(resume.record.alloc.clone());
            if let Ok(mut recorded) = self.recorded.lock() {
                recorded.insert(id.clone(), (alloc.alloc_modify_index, alloc.modify_index));
            }
            tracing::info!(alloc = %id, "running the allocation on record again");
            runners.insert(
                id.clone(),
                alloc_runner::start(self.shared.clone(), alloc, tasks),
            );
            if let Ok(mut resumed) = self.resumed.lock() {
                resumed.insert(id);
            }
        }
        plan.unclaimed
    }

    /// Allocations with a runner still running.
    fn live_allocs(&self) -> usize {
        self.runners
            .lock()
            .map(|r| r.values().filter(|h| !h.is_done()).count())
            .unwrap_or(0)
    }

    /// `client.drain_on_shutdown`: asks the servers to drain this node and waits until every
    /// allocation has moved off it (or the deadline, plus a little for the last stops, has
    /// passed). Tasks that remain keep running under the supervisor.
    pub async fn drain_on_shutdown(&self, server: &dyn ServerRpc) {
        let Some(spec) = self.config.drain_on_shutdown.clone() else {
            return;
        };
        let now = controlplane::model::now_unix_nanos();
        let deadline_ns = i64::try_from(spec.deadline.as_nanos()).unwrap_or(i64::MAX);
        let strategy = controlplane::model::DrainStrategy {
            // Nomad's convention: a negative deadline forces the drain now.
            deadline: if spec.force { -1 } else { deadline_ns },
            ignore_system_jobs: spec.ignore_system_jobs,
            force_deadline: if spec.force {
                controlplane::model::time::format_rfc3339(now)
            } else {
                controlplane::model::time::format_rfc3339(now.saturating_add(deadline_ns))
            },
            started_at: controlplane::model::time::format_rfc3339(now),
        };
        tracing::info!(
            deadline_s = spec.deadline.as_secs(),
            force = spec.force,
            "drain_on_shutdown: draining this node before stopping"
        );
        if let Err(e) = server
            .drain_self(self.shared.node_id.clone(), Some(strategy))
            .await
        {
            tracing::warn!(
                "drain_on_shutdown: the servers did not take the drain ({e}); stopping without it"
            );
            return;
        }
        let give_up = tokio::time::Instant::now()
            + if spec.force {
                Duration::ZERO
            } else {
                spec.deadline
            }
            + DRAIN_ON_SHUTDOWN_SLACK;
        loop {
            let live = self.live_allocs();
            if live == 0 {
                tracing::info!("drain_on_shutdown: every allocation moved off this node");
                return;
            }
            if tokio::time::Instant::now() >= give_up {
                tracing::warn!(live, "drain_on_shutdown: the deadline passed with allocations still running; they keep running under the supervisor");
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Nomad's `disconnect { stop_on_client_after }` (and the older
    /// `stop_after_client_disconnect`): while no server takes this node's heartbeats, an
    /// allocation whose group says so is stopped on the node once that long has passed since
    /// the last one, so that it never runs beside the replacement the servers placed.
    async fn stop_when_disconnected(self: Arc<Self>) {
        let mut tick = tokio::time::interval(DISCONNECT_CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let silent_for = self.contact.since();
            let Ok(runners) = self.runners.lock() else {
                return;
            };
            for runner in runners.values().filter(|r| !r.is_done()) {
                let alloc = runner.current();
                if alloc.desired_status != DesiredStatus::Run {
                    continue;
                }
                let Some(window) = stop_on_client_after(&alloc) else {
                    continue;
                };
                if silent_for >= window {
                    tracing::warn!(
                        alloc = %alloc.id,
                        silent_s = silent_for.as_secs(),
                        window_s = window.as_secs(),
                        "no server has answered for longer than the group's stop_on_client_after: stopping the allocation"
                    );
                    let mut stopped = (*alloc).clone();
                    stopped.desired_status = DesiredStatus::Stop;
                    stopped.desired_description =
                        "alloc stopped on the client after it lost contact with the servers (stop_on_client_after)".to_string();
                    runner.update(Arc::new(stopped));
                }
            }
        }
    }

    /// Says why once the client has given up reaching any server (`server_join.retry_max`).
    pub fn join_failure(&self) -> watch::Receiver<Option<String>> {
        self.contact.gave_up()
    }

    /// Tells `observer` where the node's bridge is, now and whenever it is made or removed
    /// (the agent's DNS server listens on its gateway).
    pub fn observe_bridge(&self, observer: network::manager::BridgeObserver) {
        self.shared.network.observe_bridge(observer);
    }

    /// The node as last registered.
    pub fn node(&self) -> Node {
        match self.node.read() {
            Ok(n) => n.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Every [`REFINGERPRINT_INTERVAL`]: fingerprints the machine again and, when
    /// [`fingerprint::facts_changed`] says the node changed, registers it again so the
    /// servers (and the scheduler) see it; the client's attributes follow. A failed
    /// registration is retried at the next interval.
    async fn refingerprint(
        self: Arc<Self>,
        server: Arc<dyn ServerRpc>,
        mut registered: fingerprint::NodeFacts,
    ) {
        let mut ticker = tokio::time::interval(REFINGERPRINT_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate: the node was fingerprinted a moment ago.
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.refingerprint_now.notified() => {}
            }
            let ip_address = match &self.config.network_interface {
                Some(name) => {
                    match fingerprint::interface_address(name) {
                        Ok(ip) => ip.to_string(),
                        Err(e) => {
                            tracing::warn!("client.network_interface = {name:?}: {e}; keeping the node's address");
                            registered
                                .attributes
                                .get("unique.network.ip-address")
                                .cloned()
                                .unwrap_or_default()
                        }
                    }
                }
                None => self.config.ip_address.clone(),
            };
            let mut config = fingerprint_config(&self.config, ip_address, &self.shared.network);
            config.reserved = match self.reserved.read() {
                Ok(r) => r.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            };
            // /proc, /sys and statvfs reads block.
            let print = match tokio::task::spawn_blocking(move || fingerprint::gather_with(&config))
                .await
            {
                Ok(print) => print,
                Err(e) => {
                    tracing::warn!("re-fingerprinting the node: {e}");
                    continue;
                }
            };
            let facts = node_facts(&print, &self.shared.drivers);
            let meta = self.shared.meta();
            let meta_changed = *meta != self.node().meta;
            if !fingerprint::facts_changed(&registered, &facts) && !meta_changed {
                continue;
            }
            let mut node = self.node();
            node.meta = (*meta).clone();
            node.attributes = facts.attributes.clone();
            node.node_resources = facts.resources.clone();
            node.reserved_resources = facts.reserved.clone();
            node.drivers = facts.drivers.clone();
            match server.register_node(node.clone()).await {
                Ok(_) => {
                    tracing::info!(node_id = %self.shared.node_id, "the node's fingerprint changed; registered it again");
                    self.shared.set_attributes(facts.attributes.clone());
                    match self.node.write() {
                        Ok(mut n) => *n = node,
                        Err(poisoned) => *poisoned.into_inner() = node,
                    }
                    registered = facts;
                }
                Err(e) => tracing::warn!(
                    node_id = %self.shared.node_id,
                    "registering the changed node: {e}; trying again in {}s",
                    REFINGERPRINT_INTERVAL.as_secs()
                ),
            }
        }
    }

    /// Takes a reloaded `client.meta` and `client.reserved` (SIGHUP): the node is
    /// fingerprinted again at once and registered with them; tasks started from now on see
    /// the new meta in `${meta.…}`.
    pub fn reload(&self, meta: BTreeMap<String, String>, reserved: settings::ReservedConfig) {
        self.shared.set_meta(meta);
        match self.reserved.write() {
            Ok(mut r) => *r = reserved,
            Err(poisoned) => *poisoned.into_inner() = reserved,
        }
        self.refingerprint_now.notify_one();
    }

    /// The pid of the task supervisor this client talks to (the current one, after a
    /// supervisor that died was replaced).
    pub fn supervisor_pid(&self) -> Option<i32> {
        self.shared.supervisor.pid()
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Tasks the supervisor runs (or ran), grouped by allocation id and task name.
    async fn supervisor_tasks(&self) -> BTreeMap<String, BTreeMap<String, TaskStatus>> {
        let mut out: BTreeMap<String, BTreeMap<String, TaskStatus>> = BTreeMap::new();
        match self.shared.supervisor.call(&Request::List).await {
            Ok(Response::Tasks { tasks }) => {
                for t in tasks {
                    if let Some((alloc, task)) = t.task_id.split_once('.') {
                        out.entry(alloc.to_string())
                            .or_default()
                            .insert(task.to_string(), t.clone());
                    }
                }
            }
            Ok(other) => tracing::warn!("listing supervised tasks: unexpected answer {other:?}"),
            Err(e) => tracing::warn!("listing supervised tasks: {e}"),
        }
        out
    }

    async fn watch(
        self: Arc<Self>,
        server: Arc<dyn ServerRpc>,
        node: Node,
        mut registered: bool,
        mut reattach: BTreeMap<String, BTreeMap<String, TaskStatus>>,
    ) {
        let mut index = 0;
        let mut first = true;
        let mut retry = Backoff::new(WATCH_RETRY);
        loop {
            if !registered {
                match server.register_node(node.clone()).await {
                    Ok(_) => {
                        tracing::info!(node_id = %self.shared.node_id, "node registered");
                        registered = true;
                        retry.succeeded();
                    }
                    Err(e) => {
                        let delay = retry.failed(backoff::stagger());
                        tracing::warn!(
                            failures = retry.failures(),
                            retry_in_ms = delay.as_millis() as u64,
                            "registering node {}: {e}",
                            self.shared.node_id
                        );
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                }
            }
            match server
                .node_allocs(self.shared.node_id.clone(), index, WATCH_WAIT)
                .await
            {
                Ok((allocs, new_index)) => {
                    retry.succeeded();
                    index = new_index;
                    self.record_allocs(&allocs).await;
                    if first {
                        self.stop_resumed_missing_from(&allocs);
                    }
                    self.reconcile(allocs, &mut reattach);
                    if first {
                        first = false;
                        // Tasks the supervisor still has for allocations this node no longer
                        // runs: stop them (e.g. the allocation was stopped while we were away).
                        for (alloc, tasks) in std::mem::take(&mut reattach) {
                            for task in tasks.keys() {
                                self.kill_orphan(&format!("{alloc}.{task}")).await;
                            }
                        }
                    }
                }
                Err(e) => {
                    let delay = retry.failed(backoff::stagger());
                    tracing::warn!(
                        failures = retry.failures(),
                        retry_in_ms = delay.as_millis() as u64,
                        "watching the allocations of node {}: {e}",
                        self.shared.node_id
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Records the allocations of a server answer that changed since last recorded (one
    /// transaction), before any runner acts on them.
    async fn record_allocs(&self, allocs: &[Arc<Allocation>]) {
        let changed: Vec<AllocRecord> = {
            let (Ok(recorded), Ok(runners)) = (self.recorded.lock(), self.runners.lock()) else {
                return;
            };
            allocs
                .iter()
                .filter(|a| {
                    let known = recorded.get(&a.id);
                    let fresh = known != Some(&(a.alloc_modify_index, a.modify_index));
                    // Only what this node runs or ran is recorded, not every stopped
                    // allocation the servers still list.
                    let ours = known.is_some()
                        || runners.contains_key(&a.id)
                        || (a.desired_status == DesiredStatus::Run
                            && !a.client_status.is_terminal());
                    fresh && ours
                })
                .map(|a| AllocRecord::new((**a).clone()))
                .collect()
        };
        if changed.is_empty() {
            return;
        }
        let store = self.shared.state.clone();
        let to_write = changed.clone();
        // Merged into existing records: what was reported and when it ended stay.
        let written = tokio::task::spawn_blocking(move || {
            for record in &to_write {
                let mut merged = false;
                store.update_alloc(&record.alloc.id, |r| {
                    r.alloc = record.alloc.clone();
                    merged = true;
                })?;
                if !merged {
                    store.put_allocs(&[record])?;
                }
            }
            Ok::<(), state::StateError>(())
        })
        .await;
        match written {
            Ok(Ok(())) => {
                if let Ok(mut recorded) = self.recorded.lock() {
                    for r in &changed {
                        recorded.insert(
                            r.alloc.id.clone(),
                            (r.alloc.alloc_modify_index, r.alloc.modify_index),
                        );
                    }
                }
            }
            Ok(Err(e)) => tracing::warn!("recording the allocations: {e}"),
            Err(e) => tracing::warn!("recording the allocations: {e}"),
        }
    }

    /// The servers' first answer: an allocation run again from its record that the servers no
    /// longer have for this node is stopped.
    fn stop_resumed_missing_from(&self, allocs: &[Arc<Allocation>]) {
        let resumed = match self.resumed.lock() {
            Ok(mut r) => std::mem::take(&mut *r),
            Err(_) => return,
        };
        let listed: BTreeSet<&str> = allocs.iter().map(|a| a.id.as_str()).collect();
        let Ok(runners) = self.runners.lock() else {
            return;
        };
        for id in resumed.iter().filter(|id| !listed.contains(id.as_str())) {
            if let Some(runner) = runners.get(id) {
                tracing::info!(alloc = %id, "the servers no longer have this allocation for this node: stopping it");
                let mut stopped = runner.current().as_ref().clone();
                stopped.desired_status = DesiredStatus::Stop;
                stopped.desired_description =
                    "allocation no longer exists on the servers".to_string();
                runner.update(Arc::new(stopped));
            }
        }
    }

    async fn kill_orphan(&self, task_id: &str) {
        tracing::info!(task = task_id, "stopping a task no allocation owns");
        let _ = self
            .shared
            .supervisor
            .call(&Request::Kill {
                task_id: task_id.to_string(),
                signal: libc::SIGKILL,
                grace_ms: 0,
            })
            .await;
        let _ = self
            .shared
            .supervisor
            .call(&Request::Wait {
                task_id: task_id.to_string(),
            })
            .await;
        let _ = self
            .shared
            .supervisor
            .call(&Request::Remove {
                task_id: task_id.to_string(),
            })
            .await;
    }

    fn reconcile(
        &self,
        allocs: Vec<Arc<Allocation>>,
        reattach: &mut BTreeMap<String, BTreeMap<String, TaskStatus>>,
    ) {
        let Ok(mut runners) = self.runners.lock() else {
            return;
        };
        // Before any runner starts: a new task then launches on the current shared cores.
        self.update_shared_cores(&allocs, &runners, reattach);
        for alloc in allocs {
            if let Some(runner) = runners.get(&alloc.id) {
                runner.update(alloc.clone());
                continue;
            }
            let known_tasks = reattach.remove(&alloc.id).unwrap_or_default();
            let wanted =
                alloc.desired_status == DesiredStatus::Run && !alloc.client_status.is_terminal();
            if !wanted && known_tasks.is_empty() {
                continue;
            }
            if known_tasks.is_empty() && self.shared.gc.is_candidate(&alloc.id) {
                // Finished here already (the servers have not applied its last update yet):
                // never run it a second time.
                continue;
            }
            self.shared.gc.unmark(&alloc.id);
            let handle = alloc_runner::start(
                self.shared.clone(),
                alloc.clone(),
                TaskResume::from_supervisor(known_tasks),
            );
            runners.insert(alloc.id.clone(), handle);
        }
        drop(runners);
        self.collect_garbage();
    }

    /// Recomputes the shared cores from the allocations on this node and, when they changed,
    /// publishes them: every running task without reserved cores is then moved by its runner.
    fn update_shared_cores(
        &self,
        allocs: &[Arc<Allocation>],
        runners: &HashMap<String, AllocRunnerHandle>,
        reattach: &BTreeMap<String, BTreeMap<String, TaskStatus>>,
    ) {
        let reserved = allocs
            .iter()
            .filter(|a| {
                let live = runners.get(&a.id).is_some_and(|r| !r.is_done())
                    || reattach.contains_key(&a.id);
                cpuset::holds_cores(a, live)
            })
            .flat_map(|a| cpuset::reserved_cores(a));
        let next = cpuset::shared_cores(&self.shared.usable_cores, reserved);
        self.shared.shared_cores.send_if_modified(|current| {
            if *current == next {
                return false;
            }
            match &next {
                cpuset::SharedCores::AllReserved(all) => tracing::warn!(
                    cores = %taskenv::cpuset_string(all),
                    "allocations reserve every core of this node; tasks without reserved cores keep running on all of them"
                ),
                cpuset::SharedCores::Shared(cpus) => tracing::info!(
                    cores = %taskenv::cpuset_string(cpus),
                    "shared cores changed"
                ),
                cpuset::SharedCores::Unknown => {}
            }
            *current = next.clone();
            true
        });
    }

    /// Forgets the runners that ended (their allocations are the garbage collector's now).
    fn collect_garbage(&self) {
        if let Ok(mut runners) = self.runners.lock() {
            runners.retain(|_, r| !r.is_done());
        }
    }

    /// `/v1/client/gc`: collects every terminal allocation now; how many.
    pub async fn gc_all(&self) -> usize {
        self.collect_garbage();
        self.shared.gc.collect_all(&self.shared).await
    }

    /// `/v1/client/allocation/:id/gc`: collects one terminal allocation now.
    pub async fn gc_alloc(&self, alloc_id: &str) -> Result<(), ClientError> {
        allocdir::check_component("allocation id", alloc_id)
            .map_err(|e| ClientError::BadRequest(e.to_string()))?;
        self.collect_garbage();
        let live = self
            .runners
            .lock()
            .map(|r| r.contains_key(alloc_id))
            .unwrap_or(false);
        if live {
            return Err(ClientError::BadRequest(format!(
                "allocation {alloc_id:?} is not terminal on this node: stop it first (alloc stop or job stop), then collect it"
            )));
        }
        if self
            .shared
            .gc
            .collect(&self.shared, alloc_id, "forced collection")
            .await
        {
            Ok(())
        } else {
            Err(ClientError::NotFound(format!(
                "no such allocation on this node, or it was garbage collected already: {alloc_id:?}"
            )))
        }
    }

    /// Removes the spare allocation directories (the agent is shutting down).
    pub fn remove_spare_alloc_dirs(&self) {
        if let Err(e) = self.shared.alloc_dirs.remove_all() {
            tracing::warn!("removing spare allocation directories: {e}");
        }
    }

    /// Stops every allocation's tasks (ephemeral dev agent shutting down).
    pub async fn stop_all(&self) {
        let ids: Vec<String> = match self.runners.lock() {
            Ok(r) => r.keys().cloned().collect(),
            Err(_) => Vec::new(),
        };
        let mut waits = Vec::new();
        if let Ok(runners) = self.runners.lock() {
            for id in &ids {
                if let Some(r) = runners.get(id) {
                    let mut stopped = Allocation {
                        id: id.clone(),
                        desired_status: DesiredStatus::Stop,
                        ..Default::default()
                    };
                    stopped.desired_description = "the agent is shutting down".to_string();
                    r.update(Arc::new(stopped));
                    waits.push(r.done.clone());
                }
            }
        }
        for mut done in waits {
            let _ = tokio::time::timeout(STOP_ALL_WAIT, done.wait_for(|d| *d)).await;
        }
    }

    /// Signals or restarts tasks of an allocation running here.
    pub async fn control(
        &self,
        alloc_id: &str,
        task: Option<String>,
        action: alloc_runner::AllocAction,
    ) -> Result<(), ClientError> {
        let controls = {
            let runners = self
                .runners
                .lock()
                .map_err(|_| ClientError::Internal("client state poisoned".into()))?;
            match runners.get(alloc_id) {
                Some(r) if !r.is_done() => r.controls_clone(),
                _ => {
                    return Err(ClientError::BadRequest(format!(
                        "allocation {alloc_id:?} is not running on this node"
                    )))
                }
            }
        };
        alloc_runner::control_via(&controls, task, action)
            .await
            .map_err(ClientError::BadRequest)
    }

    /// Whether the node's drivers are healthy.
    pub fn health(&self) -> (bool, String) {
        let node = self.node();
        let exec = node.drivers.get("exec");
        match exec {
            Some(d) if d.healthy => (true, "ok".to_string()),
            Some(d) => (
                false,
                format!("exec driver unhealthy: {}", d.health_description),
            ),
            None => (false, "no exec driver".to_string()),
        }
    }

    async fn alloc_stats(&self, alloc_id: String) -> Result<serde_json::Value, ClientError> {
        let dir = AllocDir::new(&self.config.allocs_root, &alloc_id)
            .map_err(|e| ClientError::BadRequest(e.to_string()))?;
        if !dir.root().exists() {
            return Err(ClientError::NotFound(format!(
                "allocation {alloc_id:?} is not on this node"
            )));
        }
        let tasks = self
            .supervisor_tasks()
            .await
            .remove(&alloc_id)
            .unwrap_or_default();
        let running: Vec<(String, String)> = tasks
            .into_iter()
            .filter(|(_, status)| status.exit.is_none())
            .map(|(name, status)| (name, status.task_id))
            .collect();
        self.forget_cpu_samples(&alloc_id, &running);
        // CPU percent is a rate: a task asked about for the first time is sampled twice,
        // FIRST_CPU_SAMPLE_GAP apart, rather than reported at 0 %.
        let mut unsampled = false;
        for (_, task_id) in &running {
            if !self.has_cpu_sample(task_id) {
                if let Some(stats) = self.task_stats(task_id).await? {
                    self.cpu_percent(task_id, &stats);
                    unsampled = true;
                }
            }
        }
        if unsampled {
            tokio::time::sleep(FIRST_CPU_SAMPLE_GAP).await;
        }
        let mut per_task = serde_json::Map::new();
        let mut total = TaskStats::default();
        let mut total_percent = 0.0;
        for (name, task_id) in running {
            // Exited since the list was taken: no usage to report, as for the others.
            let Some(stats) = self.task_stats(&task_id).await? else {
                continue;
            };
            let percent = self.cpu_percent(&task_id, &stats);
            total_percent += percent;
            total.memory_rss_bytes += stats.memory_rss_bytes;
            total.memory_cache_bytes += stats.memory_cache_bytes;
            total.memory_usage_bytes += stats.memory_usage_bytes;
            total.memory_max_usage_bytes += stats.memory_max_usage_bytes;
            total.cpu_total_ns += stats.cpu_total_ns;
            total.cpu_user_ns += stats.cpu_user_ns;
            total.cpu_system_ns += stats.cpu_system_ns;
            total.throttled_periods += stats.throttled_periods;
            total.throttled_time_ns += stats.throttled_time_ns;
            total.pids += stats.pids;
            total.timestamp = total.timestamp.max(stats.timestamp);
            per_task.insert(
                name,
                serde_json::json!({
                    "ResourceUsage": resource_usage(&stats, percent, self.mhz_per_core()),
                    "Timestamp": stats.timestamp,
                    "Pids": stats.pids,
                }),
            );
        }
        Ok(serde_json::json!({
            "ResourceUsage": resource_usage(&total, total_percent, self.mhz_per_core()),
            "Tasks": per_task,
            "Timestamp": total.timestamp,
        }))
    }

    fn mhz_per_core(&self) -> f64 {
        self.shared
            .attributes()
            .get("cpu.frequency")
            .and_then(|f| f.parse().ok())
            .unwrap_or(1000.0)
    }

    /// A running task's usage from the supervisor; `None` once it has exited.
    async fn task_stats(&self, task_id: &str) -> Result<Option<TaskStats>, ClientError> {
        match self
            .shared
            .supervisor
            .call(&Request::Stats {
                task_id: task_id.to_string(),
            })
            .await
        {
            Ok(Response::Stats { stats }) => Ok(Some(stats)),
            Ok(Response::Error {
                step: Some(step), ..
            }) if step == crate::supervisor::protocol::STEP_EXITED => Ok(None),
            Ok(Response::Error { message, .. }) => Err(ClientError::Internal(message)),
            Ok(other) => Err(ClientError::Internal(format!(
                "unexpected answer {other:?}"
            ))),
            Err(e) => Err(ClientError::Internal(e.to_string())),
        }
    }

    fn has_cpu_sample(&self, task_id: &str) -> bool {
        self.previous_cpu
            .lock()
            .map(|p| p.contains_key(task_id))
            .unwrap_or(false)
    }

    /// Drops the samples of this allocation's tasks that no longer run.
    fn forget_cpu_samples(&self, alloc_id: &str, running: &[(String, String)]) {
        let prefix = format!("{alloc_id}.");
        if let Ok(mut previous) = self.previous_cpu.lock() {
            previous.retain(|task_id, _| {
                !task_id.starts_with(&prefix) || running.iter().any(|(_, id)| id == task_id)
            });
        }
    }

    fn cpu_percent(&self, task_id: &str, stats: &TaskStats) -> f64 {
        let Ok(mut previous) = self.previous_cpu.lock() else {
            return 0.0;
        };
        let percent = match previous.get(task_id) {
            Some((cpu, ts)) if stats.timestamp > *ts && stats.cpu_total_ns >= *cpu => {
                (stats.cpu_total_ns - cpu) as f64 / (stats.timestamp - ts) as f64 * 100.0
            }
            _ => 0.0,
        };
        previous.insert(task_id.to_string(), (stats.cpu_total_ns, stats.timestamp));
        percent
    }
}

/// Nomad's `ResourceUsage` JSON from supervisor stats. `Percent` is of one core; `TotalTicks`
/// is the CPU used expressed in MHz (percent of a core × the core's MHz), as Nomad reports it.
fn resource_usage(s: &TaskStats, percent: f64, mhz_per_core: f64) -> serde_json::Value {
    serde_json::json!({
        "MemoryStats": {
            "RSS": s.memory_rss_bytes,
            "Cache": s.memory_cache_bytes,
            "Swap": 0,
            "Usage": s.memory_usage_bytes,
            "MaxUsage": s.memory_max_usage_bytes,
            "Measured": ["RSS", "Cache", "Usage", "Max Usage"],
        },
        "CpuStats": {
            "SystemMode": s.cpu_system_ns as f64 / 1e6,
            "UserMode": s.cpu_user_ns as f64 / 1e6,
            "TotalTicks": percent / 100.0 * mhz_per_core,
            "ThrottledPeriods": s.throttled_periods,
            "ThrottledTime": s.throttled_time_ns,
            "Percent": percent,
            "Measured": ["System Mode", "User Mode", "Throttled Periods", "Throttled Time", "Percent"],
        },
    })
}

/// Why the exec driver cannot run here, if it cannot.
/// The node's network manager: the node's IPv4 address and the interface holding it (where
/// other hosts' traffic to mapped ports arrives).
fn network_manager(
    config: &ClientConfig,
    node_id: &str,
    ip_address: &str,
    state: Arc<StateStore>,
) -> NetworkManager {
    let node_ip: Option<std::net::Ipv4Addr> = ip_address.parse().ok();
    let addrs = fingerprint::interface_addresses();
    let mut interfaces: BTreeSet<String> = addrs
        .iter()
        .filter(|(_, a)| node_ip.is_some_and(|ip| *a == std::net::IpAddr::V4(ip)))
        .map(|(name, _)| name.clone())
        .collect();
    // Ports on a host network arrive on its interface.
    interfaces.extend(
        config
            .network
            .host_networks
            .values()
            .filter_map(|h| h.pick(&addrs))
            .map(|(name, _)| name),
    );
    let interfaces: Vec<String> = interfaces.into_iter().collect();
    NetworkManager::new(config.network.clone(), node_id, node_ip, interfaces, state)
}

/// What the fingerprint needs from the client's settings.
fn fingerprint_config(
    config: &ClientConfig,
    ip_address: String,
    network: &NetworkManager,
) -> fingerprint::FingerprintConfig {
    fingerprint::FingerprintConfig {
        alloc_dir: config.allocs_root.clone(),
        ip_address,
        reserved: config.reserved.clone(),
        min_dynamic_port: config.min_dynamic_port,
        max_dynamic_port: config.max_dynamic_port,
        bridge_network: network.bridge_name().map(str::to_string),
        port_mapping: network.port_mapping().name().map(str::to_string),
        host_networks: config.network.host_networks.clone(),
    }
}

/// The node as the fingerprint and the drivers describe it: the machine's attributes plus
/// those of every detected, healthy driver (`driver.exec`, `driver.raw_exec`).
fn node_facts(
    print: &fingerprint::Fingerprint,
    drivers: &DriverRegistry,
) -> fingerprint::NodeFacts {
    let drivers = drivers.fingerprints();
    let mut attributes = print.attributes.clone();
    for info in drivers.values() {
        if info.detected && info.healthy {
            attributes.extend(info.attributes.clone());
        }
    }
    fingerprint::NodeFacts {
        attributes,
        resources: print.resources.clone(),
        reserved: print.reserved.clone(),
        drivers,
    }
}

fn exec_health() -> Result<(), String> {
    if !crate::sys::is_root() {
        return Err("the exec driver needs root (run the agent as root)".to_string());
    }
    isolation::cgroup::CgroupLayout::detect()
        .map(|_| ())
        .map_err(|e| format!("cgroups: {e}"))
}

/// The client's HTTP endpoints.
#[derive(Debug, Clone)]
pub struct ClientApi(pub Arc<Client>);

impl ClientEndpoints for ClientApi {
    fn logs(
        &self,
        request: LogsRequest,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<LogFrame, ClientError>>, ClientError>> {
        let root = self.0.config.allocs_root.clone();
        Box::pin(async move {
            let dir = AllocDir::new(&root, &request.alloc_id)
                .map_err(|e| ClientError::BadRequest(e.to_string()))?;
            if !dir.root().exists() {
                return Err(ClientError::NotFound(format!(
                    "allocation {:?} has no directory on this node (not placed here, or garbage collected)",
                    request.alloc_id
                )));
            }
            logs::stream(root, request)
        })
    }

    fn fs_list(
        &self,
        alloc_id: String,
        path: String,
    ) -> BoxFuture<'_, Result<Vec<AllocFileInfo>, ClientError>> {
        let root = self.0.config.allocs_root.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || fs::list(&root, &alloc_id, &path))
                .await
                .map_err(|e| ClientError::Internal(e.to_string()))?
        })
    }

    fn fs_stat(
        &self,
        alloc_id: String,
        path: String,
    ) -> BoxFuture<'_, Result<AllocFileInfo, ClientError>> {
        let root = self.0.config.allocs_root.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || fs::stat(&root, &alloc_id, &path))
                .await
                .map_err(|e| ClientError::Internal(e.to_string()))?
        })
    }

    fn fs_stream(
        &self,
        request: FsStreamRequest,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<LogFrame, ClientError>>, ClientError>> {
        let root = self.0.config.allocs_root.clone();
        Box::pin(fs::stream(root, request))
    }

    fn fs_read(
        &self,
        alloc_id: String,
        path: String,
        offset: u64,
        limit: u64,
    ) -> BoxFuture<'_, Result<Vec<u8>, ClientError>> {
        let root = self.0.config.allocs_root.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || fs::read(&root, &alloc_id, &path, offset, limit))
                .await
                .map_err(|e| ClientError::Internal(e.to_string()))?
        })
    }

    fn signal(
        &self,
        alloc_id: String,
        task: Option<String>,
        signal: String,
    ) -> BoxFuture<'_, Result<(), ClientError>> {
        Box::pin(async move {
            let number = task_runner::parse_signal(&signal).map_err(ClientError::BadRequest)?;
            self.0
                .control(&alloc_id, task, alloc_runner::AllocAction::Signal(number))
                .await
        })
    }

    fn exec(&self, request: ExecRequest) -> BoxFuture<'_, Result<ExecSession, ClientError>> {
        Box::pin(async move {
            allocdir::check_component("allocation id", &request.alloc_id)
                .map_err(|e| ClientError::BadRequest(e.to_string()))?;
            allocdir::check_component("task name", &request.task)
                .map_err(|e| ClientError::BadRequest(e.to_string()))?;
            let running = self
                .0
                .runners
                .lock()
                .map(|r| r.get(&request.alloc_id).is_some_and(|h| !h.is_done()))
                .unwrap_or(false);
            if !running {
                return Err(ClientError::BadRequest(format!(
                    "allocation {:?} is not running on this node",
                    request.alloc_id
                )));
            }
            let tasks = self
                .0
                .supervisor_tasks()
                .await
                .remove(&request.alloc_id)
                .unwrap_or_default();
            let running: Vec<&str> = tasks
                .iter()
                .filter(|(_, status)| status.exit.is_none())
                .map(|(name, _)| name.as_str())
                .collect();
            if !running.contains(&request.task.as_str()) {
                return Err(ClientError::BadRequest(format!(
                    "task {:?} is not running in allocation {:?} (running: {}); pick one with -task",
                    request.task,
                    request.alloc_id,
                    if running.is_empty() {
                        "none".to_string()
                    } else {
                        running.join(", ")
                    }
                )));
            }
            let task_id = format!("{}.{}", request.alloc_id, request.task);
            exec::start(
                &self.0.shared.supervisor,
                &task_id,
                request.command,
                request.tty,
            )
            .await
        })
    }

    fn restart(
        &self,
        alloc_id: String,
        task: Option<String>,
    ) -> BoxFuture<'_, Result<(), ClientError>> {
        Box::pin(async move {
            self.0
                .control(&alloc_id, task, alloc_runner::AllocAction::Restart)
                .await
        })
    }

    fn alloc_checks(
        &self,
        alloc_id: String,
    ) -> BoxFuture<'_, Result<serde_json::Value, ClientError>> {
        Box::pin(async move {
            let runs_here = self
                .0
                .runners
                .lock()
                .map(|r| r.get(&alloc_id).is_some_and(|h| !h.is_done()))
                .unwrap_or(false);
            let checks = self.0.shared.services.alloc_checks(&alloc_id);
            if !runs_here && checks.is_none() {
                return Err(ClientError::NotFound(format!(
                    "Unknown allocation \"{alloc_id}\": it does not run on this node"
                )));
            }
            let checks = checks.map(|c| (*c).clone()).unwrap_or_default();
            serde_json::to_value(checks).map_err(|e| ClientError::Internal(e.to_string()))
        })
    }

    fn alloc_stats(
        &self,
        alloc_id: String,
    ) -> BoxFuture<'_, Result<serde_json::Value, ClientError>> {
        Box::pin(self.0.alloc_stats(alloc_id))
    }

    fn health(&self) -> (bool, String) {
        self.0.health()
    }

    fn gc_all(&self) -> BoxFuture<'_, Result<(), ClientError>> {
        Box::pin(async move {
            let n = self.0.gc_all().await;
            tracing::info!(
                collected = n,
                "garbage collected every terminal allocation on request"
            );
            Ok(())
        })
    }

    fn gc_alloc(&self, alloc_id: String) -> BoxFuture<'_, Result<(), ClientError>> {
        Box::pin(async move { self.0.gc_alloc(&alloc_id).await })
    }
}

/// The allocation directories under `root` (spares excluded) with their modification time,
/// unix nanoseconds.
fn alloc_dir_times(root: &std::path::Path) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(dir = %root.display(), "listing allocation directories: {e}");
            return out;
        }
    };
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name.starts_with('.') || allocdir::check_component("allocation id", &name).is_err() {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_dir() {
            continue;
        }
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_nanos()).ok())
            .unwrap_or(0);
        out.insert(name, mtime);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use controlplane::model::{DisconnectStrategy, Job, TaskGroup};

    fn alloc_with(group: TaskGroup) -> Allocation {
        Allocation {
            task_group: group.name.clone(),
            job: Some(Arc::new(Job {
                task_groups: vec![group],
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn the_stop_window_comes_from_the_disconnect_block_or_the_older_key() {
        let group = |disconnect: Option<DisconnectStrategy>, legacy: Option<Duration>| TaskGroup {
            name: "g".into(),
            disconnect,
            stop_after_client_disconnect: legacy,
            ..Default::default()
        };
        let window = Duration::from_secs(30);
        let block = DisconnectStrategy {
            stop_on_client_after: Some(window),
            ..Default::default()
        };
        assert_eq!(
            stop_on_client_after(&alloc_with(group(Some(block), None))),
            Some(window)
        );
        assert_eq!(
            stop_on_client_after(&alloc_with(group(None, Some(Duration::from_secs(5))))),
            Some(Duration::from_secs(5))
        );
        assert_eq!(stop_on_client_after(&alloc_with(group(None, None))), None);
        assert_eq!(stop_on_client_after(&Allocation::default()), None);
    }
}
