//! [`RaftNode`]: the Raft API the rest of the server uses.
//!
//! Starting a node opens (or creates) the log and the snapshots, restores the newest snapshot
//! into the [`StateStore`], lets openraft replay the committed log after it, bootstraps a
//! single-server membership if the log is new, and returns once this server leads and has applied
//! everything before its term. Proposals go through [`RaftNode::propose`] and come back with the
//! state machine's answer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, Fatal, RaftError as OpenraftError};
use openraft::{ChangeMembers, Raft, RaftMetrics, ServerState, SnapshotPolicy, StorageHelper};
use tokio::sync::watch;

use super::error::{ProposeError, RaftError, StoreError};
use super::formation::{FormationState, JoinSettings};
use super::log_store::{CommitTracker, LogStore, RAFT_DB_FILE};
use super::network::{
    Contacts, Network, RaftReply, RaftRequest, RaftTransport, ServerInfo, SingleVoterNetwork,
    TransportError,
};
use super::snapshot_dir::SNAPSHOT_DIR;
use super::state_machine::StateMachineStore;
use super::{Liveness, ServerNode, TypeConfig, SERVER_DIR};

mod membership;
use crate::state::{Command, CommandResponse, StateStore};

/// Build a snapshot after this many log entries since the last one.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 8192;
/// Keep this many entries of log behind a snapshot (a follower slightly behind catches up from
/// the log rather than a whole snapshot).
pub const DEFAULT_SNAPSHOT_LOG_LAG: u64 = 1024;
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 100;
pub const DEFAULT_ELECTION_TIMEOUT_MIN_MS: u64 = 1000;
pub const DEFAULT_ELECTION_TIMEOUT_MAX_MS: u64 = 2000;
/// How long [`RaftNode::start`] waits for leadership before giving up.
pub const DEFAULT_STARTUP_TIMEOUT_MS: u64 = 30_000;
/// How long [`RaftNode::propose`] waits for a commit.
pub const DEFAULT_PROPOSE_TIMEOUT_MS: u64 = 10_000;
/// Purge the log in batches of at least this many entries (one redb transaction each).
const PURGE_BATCH_ENTRIES: u64 = 256;
/// Entries per AppendEntries. Each must arrive, be written and be answered within the
/// heartbeat interval (openraft's deadline for it, 50 ms in a region of servers): openraft's
/// 300 entries of job registrations are about a megabyte, which a loaded host does not move
/// and fsync in 50 ms, and a follower that is far behind then gets the same batch retried
/// and timed out forever, while the leader can confirm no read.
const MAX_PAYLOAD_ENTRIES: u64 = 32;
/// How long [`RaftNode::shutdown`] waits for the log to close and a snapshot being written to
/// finish (a large state takes seconds to write).
const SHUTDOWN_CLOSE_WAIT: Duration = Duration::from_secs(60);
/// A snapshot is sent to a follower in chunks of this size.
const SNAPSHOT_CHUNK_BYTES: u64 = 1024 * 1024;
/// How long one snapshot chunk may take to reach a follower and be written there.
const INSTALL_SNAPSHOT_CHUNK_TIMEOUT_MS: u64 = 10_000;
/// The shortest time a forwarded request waits for the leader's answer.
const MIN_FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// A forwarded write is retried at most this many times when the leader changes under it.
const FORWARD_ATTEMPTS: u32 = 8;

/// How a server runs Raft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftConfig {
    /// The agent's data dir; Raft keeps `server/raft.redb` and `server/snapshots/` in it.
    pub data_dir: PathBuf,
    /// This server's id in the Raft group.
    pub node_id: u64,
    /// The address other servers reach this one at (reported by `/v1/status/leader`).
    pub address: String,
    /// Build a snapshot every this many log entries.
    pub snapshot_every: u64,
    /// Entries of log kept behind the newest snapshot when the log is purged.
    pub snapshot_log_lag: u64,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// How long [`RaftNode::start`] waits to become leader.
    pub startup_timeout_ms: u64,
    /// How long [`RaftNode::propose`] waits for a commit.
    pub propose_timeout_ms: u64,
    /// This server's name (the agent's `name`), recorded in the membership.
    pub name: String,
    /// The region this server belongs to; servers of other regions never join its group.
    pub region: String,
    /// How this server finds the others and forms the region.
    pub join: JoinSettings,
}

impl RaftConfig {
    /// A config with default snapshot policy and timeouts.
    pub fn new(data_dir: impl Into<PathBuf>, node_id: u64, address: impl Into<String>) -> Self {
        RaftConfig {
            data_dir: data_dir.into(),
            node_id,
            address: address.into(),
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            snapshot_log_lag: DEFAULT_SNAPSHOT_LOG_LAG,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            election_timeout_min_ms: DEFAULT_ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max_ms: DEFAULT_ELECTION_TIMEOUT_MAX_MS,
            startup_timeout_ms: DEFAULT_STARTUP_TIMEOUT_MS,
            propose_timeout_ms: DEFAULT_PROPOSE_TIMEOUT_MS,
            name: String::new(),
            region: "global".into(),
            join: JoinSettings::default(),
        }
    }

    /// This server as it introduces itself to others.
    pub fn server_info(&self) -> ServerInfo {
        ServerInfo {
            id: self.node_id,
            node: ServerNode::new(&self.address, &self.name),
            region: self.region.clone(),
        }
    }

    /// `<data_dir>/server`.
    pub fn server_dir(&self) -> PathBuf {
        self.data_dir.join(SERVER_DIR)
    }

    /// `<data_dir>/server/raft.redb`.
    pub fn log_path(&self) -> PathBuf {
        self.server_dir().join(RAFT_DB_FILE)
    }

    /// `<data_dir>/server/snapshots`.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.server_dir().join(SNAPSHOT_DIR)
    }

    fn validate(&self) -> Result<(), RaftError> {
        let invalid =
            |field: &'static str, reason: String| Err(RaftError::InvalidConfig { field, reason });
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "is empty; set the agent's data_dir".into());
        }
        if self.address.trim().is_empty() || self.address.chars().any(char::is_whitespace) {
            return invalid(
                "address",
                format!(
                    "{:?} is not an address (host:port, no spaces)",
                    self.address
                ),
            );
        }
        if self.snapshot_every == 0 {
            return invalid("snapshot_every", "must be at least 1 log entry".into());
        }
        if self.heartbeat_interval_ms == 0 {
            return invalid("heartbeat_interval_ms", "must be at least 1 ms".into());
        }
        if self.election_timeout_min_ms <= self.heartbeat_interval_ms {
            return invalid(
                "election_timeout_min_ms",
                format!(
                    "{} ms must be longer than heartbeat_interval_ms ({} ms)",
                    self.election_timeout_min_ms, self.heartbeat_interval_ms
                ),
            );
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return invalid(
                "election_timeout_max_ms",
                format!(
                    "{} ms must be longer than election_timeout_min_ms ({} ms)",
                    self.election_timeout_max_ms, self.election_timeout_min_ms
                ),
            );
        }
        if self.startup_timeout_ms == 0 {
            return invalid("startup_timeout_ms", "must be at least 1 ms".into());
        }
        if self.propose_timeout_ms == 0 {
            return invalid("propose_timeout_ms", "must be at least 1 ms".into());
        }
        if self.join.retry_interval.is_zero() && !self.join.is_alone() {
            return invalid("retry_interval", "must be longer than 0".into());
        }
        Ok(())
    }

    fn openraft_config(&self) -> Result<openraft::Config, RaftError> {
        let config = openraft::Config {
            cluster_name: "noded".to_string(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.snapshot_log_lag,
            purge_batch_size: PURGE_BATCH_ENTRIES.min(self.snapshot_every),
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            // A snapshot travels in chunks, each one request with this bound. openraft's
            // default (200 ms for 3 MiB) is for an in-memory link; a chunk over the fabric
            // is encoded, sent and written to disk on the far side.
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            install_snapshot_timeout: INSTALL_SNAPSHOT_CHUNK_TIMEOUT_MS,
            ..Default::default()
        };
        config.validate().map_err(|e| RaftError::InvalidConfig {
            field: "raft",
            reason: e.to_string(),
        })
    }
}

/// What this server is in its Raft group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftRole {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

impl RaftRole {
    /// The name Nomad's `/v1/agent/self` uses (`raft.state`).
    pub fn as_str(self) -> &'static str {
        match self {
            RaftRole::Leader => "Leader",
            RaftRole::Follower => "Follower",
            RaftRole::Candidate => "Candidate",
            RaftRole::Learner => "Learner",
            RaftRole::Shutdown => "Shutdown",
        }
    }

    fn from_state(state: ServerState) -> RaftRole {
        match state {
            ServerState::Leader => RaftRole::Leader,
            ServerState::Follower => RaftRole::Follower,
            ServerState::Candidate => RaftRole::Candidate,
            ServerState::Learner => RaftRole::Learner,
            ServerState::Shutdown => RaftRole::Shutdown,
        }
    }
}

/// Raft's counters, for `/v1/agent/self`. Indexes are `None` before anything exists (openraft's
/// first entry has index 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftStats {
    pub node_id: u64,
    pub role: RaftRole,
    pub term: u64,
    pub leader_id: Option<u64>,
    pub last_log_index: Option<u64>,
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub applied_term: Option<u64>,
    pub last_snapshot_index: Option<u64>,
    pub last_snapshot_term: Option<u64>,
    pub last_purged_index: Option<u64>,
    /// Voting members of the group.
    pub voters: Vec<u64>,
}

/// A running Raft member. Dropping it without [`RaftNode::shutdown`] stops Raft in the
/// background (the data dir stays locked until that finishes); `shutdown` waits for it.
pub struct RaftNode {
    raft: Raft<TypeConfig>,
    config: RaftConfig,
    transport: Arc<dyn RaftTransport>,
    commit: CommitTracker,
    log_liveness: Liveness,
    snapshot_liveness: Liveness,
    leadership: watch::Receiver<bool>,
    stopped: std::sync::atomic::AtomicBool,
    /// Servers this one has heard of (introductions sent and received), by node id.
    known: Arc<Mutex<BTreeMap<u64, ServerInfo>>>,
    /// When the leader's last AppendEntries reached this server.
    last_leader_contact: Mutex<Option<Instant>>,
    formation: watch::Receiver<FormationState>,
    /// Background tasks (forming the region, probing members), stopped at shutdown.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// When each peer last answered this server.
    contacts: Contacts,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("node_id", &self.config.node_id)
            .field("data_dir", &self.config.data_dir)
            .field("leading", &*self.leadership.borrow())
            .finish_non_exhaustive()
    }
}

/// Follows one leadership tenure: this server leads "with its state caught up" once, in its
/// current term, it has applied every entry that was in its log when the term's leadership
/// began. Entries of earlier terms can only sit at or below that index, so from then on the
/// state holds everything committed before this leader, and all that follows goes through it.
///
/// (A restarted single server may resume leadership in its old term without an election, with
/// log entries not yet applied; checking the term of the applied entry is not enough.)
#[derive(Debug, Default)]
struct Tenure {
    /// The term led, and the last log index when leadership in it was first seen.
    started: Option<(u64, Option<u64>)>,
}

impl Tenure {
    fn observe(&mut self, metrics: &RaftMetrics<u64, ServerNode>, node_id: u64) -> bool {
        let leads = metrics.running_state.is_ok()
            && metrics.state == ServerState::Leader
            && metrics.current_leader == Some(node_id);
        if !leads {
            self.started = None;
            return false;
        }
        let term = metrics.current_term;
        let target = match self.started {
            Some((t, target)) if t == term => target,
            _ => {
                self.started = Some((term, metrics.last_log_index));
                metrics.last_log_index
            }
        };
        let applied = metrics.last_applied.map(|l| l.index);
        match target {
            None => true,
            Some(target) => applied.is_some_and(|a| a >= target),
        }
    }
}

fn consensus_error(node_id: u64, action: &'static str, e: impl std::fmt::Display) -> RaftError {
    RaftError::Consensus {
        node_id,
        action,
        reason: e.to_string(),
    }
}

impl RaftNode {
    /// Opens or creates this server's Raft state in `config.data_dir` and runs it as a region
    /// of one, with no transport, filling `store` (which must be empty) from the newest
    /// snapshot and the log. A new log is bootstrapped as a single-server region. Returns once
    /// this server is leader with all earlier entries applied, or an error after
    /// `config.startup_timeout_ms`.
    pub async fn start(config: RaftConfig, store: Arc<StateStore>) -> Result<RaftNode, RaftError> {
        if !config.join.is_alone() {
            return Err(RaftError::InvalidConfig {
                field: "join",
                reason: "a server that joins others needs a transport; use \
                         RaftNode::start_with_transport"
                    .into(),
            });
        }
        let transport = Arc::new(SingleVoterNetwork::new(config.node_id));
        RaftNode::start_with_transport(config, store, transport).await
    }

    /// Opens or creates this server's Raft state and runs it over `transport`.
    ///
    /// - A new log of a server that is alone (`bootstrap_expect` 1, no `retry_join`) is
    ///   bootstrapped as a region of one, and a stored membership of this server alone is
    ///   resumed: both return once this server leads with everything earlier applied.
    /// - A new log of a server that has others to find starts forming the region in the
    ///   background ([`RaftNode::formation`] follows it) and returns at once; a stored
    ///   membership with other servers returns at once too, and elections do the rest.
    pub async fn start_with_transport(
        config: RaftConfig,
        store: Arc<StateStore>,
        transport: Arc<dyn RaftTransport>,
    ) -> Result<RaftNode, RaftError> {
        config.validate()?;
        let existing = store.snapshot();
        let holds_state = existing.latest_index() != 0
            || !existing.jobs(None).is_empty()
            || !existing.nodes().is_empty()
            || !existing.evals().is_empty()
            || !existing.allocs().is_empty();
        if holds_state {
            return Err(RaftError::StateNotEmpty {
                index: existing.latest_index(),
                data_dir: config.data_dir.clone(),
            });
        }
        drop(existing);

        let server_dir = config.server_dir();
        let log_path = config.log_path();
        let snapshot_dir = config.snapshot_dir();
        let (log, machine) = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&server_dir).map_err(|source| StoreError::CreateDir {
                path: server_dir.clone(),
                source,
            })?;
            let log = LogStore::open(&log_path)?;
            let machine = StateMachineStore::open(snapshot_dir, store)?;
            check_log_covers_snapshot(&log, &machine)?;
            Ok::<_, StoreError>((log, machine))
        })
        .await
        .map_err(|e| StoreError::Task {
            what: "opening the raft log and snapshots",
            reason: e.to_string(),
        })??;

        let node_id = config.node_id;
        let (log, machine, stored_voters) = check_stored_membership(&config, log, machine).await?;
        let commit = log.commit_tracker();
        let log_liveness = log.liveness();
        let snapshot_liveness = machine.snapshot_liveness();
        let openraft_config = Arc::new(config.openraft_config()?);
        let contacts = Contacts::default();
        let raft = Raft::new(
            node_id,
            openraft_config,
            Network::new(node_id, transport.clone(), contacts.clone()),
            log,
            machine,
        )
        .await
        .map_err(|e| consensus_error(node_id, "start", e))?;

        let leadership = spawn_leadership_watch(&raft, node_id);
        let (_, formation) = watch::channel(FormationState::Forming);
        let mut node = RaftNode {
            raft,
            config,
            transport,
            commit,
            log_liveness,
            snapshot_liveness,
            leadership,
            stopped: std::sync::atomic::AtomicBool::new(false),
            known: Arc::new(Mutex::new(BTreeMap::new())),
            last_leader_contact: Mutex::new(None),
            formation,
            tasks: Mutex::new(Vec::new()),
            contacts,
        };
        node.spawn(membership::probe_members(
            node.raft.clone(),
            node.transport.clone(),
            node.config.server_info(),
            node.contacts.clone(),
        ));
        match node.bootstrap_or_resume(stored_voters).await {
            Ok(()) => Ok(node),
            Err(e) => {
                // Release the data dir before reporting, so a retry can open it.
                if let Err(stop_error) = node.shutdown().await {
                    tracing::warn!(error = %stop_error, "raft did not stop cleanly after a failed start");
                }
                Err(e)
            }
        }
    }

    async fn bootstrap_or_resume(&mut self, stored_voters: Vec<u64>) -> Result<(), RaftError> {
        let node_id = self.config.node_id;
        let alone_in_log = stored_voters == [node_id];
        if stored_voters.is_empty() && !self.config.join.is_alone() {
            tracing::info!(
                node_id,
                bootstrap_expect = self.config.join.bootstrap_expect,
                retry_join = ?self.config.join.retry_join,
                "a new server: looking for the others to form the region"
            );
            let (tx, rx) = watch::channel(FormationState::Forming);
            self.formation = rx;
            let task = membership::form_region(
                self.raft.clone(),
                self.transport.clone(),
                self.config.clone(),
                self.known.clone(),
                tx,
            );
            self.spawn(task);
            return Ok(());
        }
        let (_, formed) = watch::channel(FormationState::Formed);
        self.formation = formed;
        if stored_voters.is_empty() {
            tracing::info!(
                node_id,
                data_dir = %self.config.data_dir.display(),
                "bootstrapping a new single-server raft region"
            );
            let members = BTreeMap::from([(node_id, self.own_node())]);
            self.raft
                .initialize(members)
                .await
                .map_err(|e| consensus_error(node_id, "bootstrap a single-server region", e))?;
        } else if alone_in_log {
            tracing::info!(
                node_id,
                data_dir = %self.config.data_dir.display(),
                "resuming raft from the stored log and snapshot"
            );
            // A server that led before resumes leading in its term at once. Otherwise it is alone
            // in the group: no need to sit out an election timeout first.
            let state = self
                .raft
                .with_raft_state(|st| st.server_state)
                .await
                .map_err(|e| consensus_error(node_id, "read its state", e))?;
            if state != ServerState::Leader {
                self.raft
                    .trigger()
                    .elect()
                    .await
                    .map_err(|e| consensus_error(node_id, "start an election", e))?;
            }
        } else {
            tracing::info!(
                node_id,
                voters = ?stored_voters,
                data_dir = %self.config.data_dir.display(),
                "resuming as a member of a multi-server region; the leader is found by election"
            );
            return Ok(());
        }
        self.wait_for_leadership().await?;
        self.update_own_address().await
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push(handle);
        }
    }

    fn own_node(&self) -> ServerNode {
        ServerNode::new(&self.config.address, &self.config.name)
    }

    async fn wait_for_leadership(&self) -> Result<(), RaftError> {
        let node_id = self.config.node_id;
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.config.startup_timeout_ms);
        let mut leadership = self.leadership.clone();
        loop {
            if *leadership.borrow_and_update() {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, leadership.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    let metrics = self.raft.metrics().borrow().clone();
                    let reason = match metrics.running_state {
                        Err(fatal) => fatal.to_string(),
                        Ok(()) => "raft stopped".to_string(),
                    };
                    return Err(consensus_error(node_id, "become leader", reason));
                }
                Err(_) => {
                    return Err(RaftError::NoLeadership {
                        node_id,
                        waited_ms: self.config.startup_timeout_ms,
                        metrics: self.raft.metrics().borrow().to_string(),
                        data_dir: self.config.data_dir.clone(),
                    })
                }
            }
        }
    }

    /// A single server that restarts with a new address or name records it in the
    /// membership, so that [`RaftNode::leader`] reports where it can be reached now.
    async fn update_own_address(&self) -> Result<(), RaftError> {
        let node_id = self.config.node_id;
        let stored = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&node_id)
            .cloned();
        let own = self.own_node();
        if stored.as_ref() == Some(&own) {
            return Ok(());
        }
        tracing::info!(
            node_id,
            old = ?stored,
            new = %own,
            "recording this server's new address in the raft membership"
        );
        let nodes = BTreeMap::from([(node_id, own)]);
        self.raft
            .change_membership(ChangeMembers::SetNodes(nodes), false)
            .await
            .map_err(|e| consensus_error(node_id, "record its new address", e))?;
        Ok(())
    }

    /// Commits `cmd` through Raft and returns the state machine's answer once it is applied
    /// on the leader. A follower forwards the command to the leader it knows of (and again to
    /// the next one if leadership moves meanwhile), all within `propose_timeout_ms`. On
    /// [`ProposeError::Timeout`] or [`ProposeError::Forward`] the command may still be
    /// applied later.
    pub async fn propose(&self, cmd: Command) -> Result<CommandResponse, ProposeError> {
        let deadline = Instant::now() + Duration::from_millis(self.config.propose_timeout_ms);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let leader = match self.propose_here(cmd.clone(), remaining).await {
                Err(ProposeError::NotLeader { leader }) => leader,
                other => return other,
            };
            let retry = match leader {
                Some(_) if self.leader_is_silent() => {
                    // The leader this server knows of has not been heard from for longer
                    // than an election takes to start: it is probably gone. Sending it the
                    // write would only wait out a timeout; wait for its successor instead.
                    attempt -= 1;
                    true
                }
                Some((leader_id, address)) if leader_id != self.config.node_id => {
                    match self
                        .forward(
                            leader_id,
                            &address,
                            RaftRequest::Propose(Box::new(cmd.clone())),
                            deadline,
                        )
                        .await
                    {
                        Forwarded::Reply(RaftReply::Propose(Err(ProposeError::NotLeader {
                            ..
                        })))
                        | Forwarded::NotDelivered => true,
                        Forwarded::Reply(RaftReply::Propose(result)) => return result,
                        Forwarded::Reply(other) => {
                            return Err(ProposeError::Internal(format!(
                                "node {leader_id} answered a forwarded write with a {} reply",
                                other.kind()
                            )))
                        }
                        Forwarded::Lost(e) => return Err(e),
                    }
                }
                _ => true,
            };
            if !retry || attempt >= FORWARD_ATTEMPTS || Instant::now() >= deadline {
                return Err(ProposeError::NotLeader {
                    leader: self.leader(),
                });
            }
            self.wait_for_leader_change(deadline).await;
        }
    }

    /// Proposes on this server only: `NotLeader` when it does not lead.
    async fn propose_here(
        &self,
        cmd: Command,
        within: Duration,
    ) -> Result<CommandResponse, ProposeError> {
        match tokio::time::timeout(within, self.raft.client_write(cmd)).await {
            Err(_) => Err(ProposeError::Timeout {
                after_ms: self.config.propose_timeout_ms,
            }),
            Ok(Ok(response)) => Ok(response.data),
            Ok(Err(e)) => Err(propose_error(e, |id| self.address_of(id))),
        }
    }

    /// Sends a request the leader must handle, mapping transport failures to what they mean
    /// for the caller.
    async fn forward(
        &self,
        leader_id: u64,
        address: &str,
        request: RaftRequest,
        deadline: Instant,
    ) -> Forwarded {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Forwarded::Lost(ProposeError::Timeout {
                after_ms: self.config.propose_timeout_ms,
            });
        }
        // A leader that dies with the request in flight must not hold the caller for the
        // whole propose timeout: give up after a few election timeouts.
        let bound = Duration::from_millis(self.config.election_timeout_max_ms * 4)
            .max(MIN_FORWARD_TIMEOUT)
            .min(remaining);
        match self
            .transport
            .send(leader_id, address, request, bound)
            .await
        {
            Ok(reply) => Forwarded::Reply(reply),
            Err(TransportError::Unreachable(reason)) => {
                tracing::debug!(leader_id, %address, %reason, "leader unreachable; will retry");
                Forwarded::NotDelivered
            }
            Err(e) => Forwarded::Lost(ProposeError::Forward {
                leader_id,
                leader: address.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// Whether this follower has gone longer than the shortest election timeout without
    /// hearing from its leader (a leader is never silent to itself).
    fn leader_is_silent(&self) -> bool {
        let silence = Duration::from_millis(self.config.election_timeout_min_ms);
        self.last_leader_contact()
            .is_some_and(|since| since > silence)
    }

    /// Waits a little for the leader to change (or become known), at most until `deadline`.
    async fn wait_for_leader_change(&self, deadline: Instant) {
        let pause = Duration::from_millis(self.config.heartbeat_interval_ms.max(20));
        let until = (Instant::now() + pause).min(deadline);
        let mut metrics = self.raft.metrics();
        let before = metrics.borrow_and_update().current_leader;
        let _ = tokio::time::timeout_at(until.into(), async {
            while metrics.changed().await.is_ok() {
                if metrics.borrow_and_update().current_leader != before {
                    return;
                }
            }
        })
        .await;
    }

    /// Makes the next read of the local state linearizable: returns once this server has
    /// applied everything the leader had committed when the barrier was asked for (Raft's
    /// read-index). The leader confirms it still leads with a round of heartbeats to a
    /// quorum; a follower asks the leader for that index and waits to apply it. A server
    /// that cannot reach a leader with a quorum gets an error: it must not answer from a
    /// state that may be stale.
    pub async fn read_barrier(&self) -> Result<(), ProposeError> {
        let deadline = Instant::now() + Duration::from_millis(self.config.propose_timeout_ms);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let index = match self.read_index_here(deadline).await {
                Ok(index) => index,
                Err(ProposeError::NotLeader { .. })
                    if self.leader_is_silent() && Instant::now() < deadline =>
                {
                    // As for writes: a silent leader is waited out, not asked.
                    attempt -= 1;
                    self.wait_for_leader_change(deadline).await;
                    continue;
                }
                Err(ProposeError::NotLeader {
                    leader: Some((leader_id, address)),
                }) if leader_id != self.config.node_id => {
                    match self
                        .forward(leader_id, &address, RaftRequest::ReadIndex, deadline)
                        .await
                    {
                        Forwarded::Reply(RaftReply::ReadIndex(Ok(index))) => index,
                        Forwarded::Reply(RaftReply::ReadIndex(Err(ProposeError::NotLeader {
                            ..
                        })))
                        | Forwarded::NotDelivered => {
                            if attempt >= FORWARD_ATTEMPTS || Instant::now() >= deadline {
                                return Err(ProposeError::NotLeader {
                                    leader: self.leader(),
                                });
                            }
                            self.wait_for_leader_change(deadline).await;
                            continue;
                        }
                        Forwarded::Reply(RaftReply::ReadIndex(Err(e))) | Forwarded::Lost(e) => {
                            return Err(e)
                        }
                        Forwarded::Reply(other) => {
                            return Err(ProposeError::Internal(format!(
                                "node {leader_id} answered a read index request with a {} reply",
                                other.kind()
                            )))
                        }
                    }
                }
                Err(ProposeError::NotLeader { .. })
                    if attempt < FORWARD_ATTEMPTS && Instant::now() < deadline =>
                {
                    self.wait_for_leader_change(deadline).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            return self.wait_applied(index, deadline).await;
        }
    }

    /// The leader's read index: confirmed leadership, then the index to wait for.
    async fn read_index_here(&self, deadline: Instant) -> Result<Option<u64>, ProposeError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, self.raft.get_read_log_id()).await {
            Err(_) => Err(ProposeError::Timeout {
                after_ms: self.config.propose_timeout_ms,
            }),
            Ok(Ok((read, _applied))) => Ok(read.map(|l| l.index)),
            Ok(Err(OpenraftError::APIError(CheckIsLeaderError::ForwardToLeader(forward)))) => {
                let leader = match (forward.leader_id, forward.leader_node) {
                    (Some(id), Some(node)) => Some((id, node.addr)),
                    (Some(id), None) => self.address_of(id).map(|addr| (id, addr)),
                    (None, _) => None,
                };
                Err(ProposeError::NotLeader { leader })
            }
            Ok(Err(OpenraftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)))) => {
                Err(ProposeError::NoQuorum(e.to_string()))
            }
            Ok(Err(OpenraftError::Fatal(Fatal::Stopped))) => Err(ProposeError::Shutdown),
            Ok(Err(OpenraftError::Fatal(e))) => Err(ProposeError::Internal(e.to_string())),
        }
    }

    async fn wait_applied(
        &self,
        index: Option<u64>,
        deadline: Instant,
    ) -> Result<(), ProposeError> {
        let Some(index) = index else {
            return Ok(());
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(remaining))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map(|_| ())
            .map_err(|e| match e {
                openraft::metrics::WaitError::Timeout(..) => ProposeError::Timeout {
                    after_ms: self.config.propose_timeout_ms,
                },
                openraft::metrics::WaitError::ShuttingDown => ProposeError::Shutdown,
            })
    }

    /// Handles a message from another server (the transport's server side calls this).
    pub async fn handle(&self, request: RaftRequest) -> RaftReply {
        match request {
            RaftRequest::AppendEntries(rpc) => {
                if let Ok(mut last) = self.last_leader_contact.lock() {
                    *last = Some(Instant::now());
                }
                RaftReply::AppendEntries(self.raft.append_entries(rpc).await)
            }
            RaftRequest::Vote(rpc) => RaftReply::Vote(self.raft.vote(rpc).await),
            RaftRequest::InstallSnapshot(rpc) => {
                RaftReply::InstallSnapshot(self.raft.install_snapshot(rpc).await)
            }
            RaftRequest::Propose(cmd) => {
                let within = Duration::from_millis(self.config.propose_timeout_ms);
                RaftReply::Propose(self.propose_here(*cmd, within).await)
            }
            RaftRequest::ReadIndex => {
                let deadline =
                    Instant::now() + Duration::from_millis(self.config.propose_timeout_ms);
                RaftReply::ReadIndex(self.read_index_here(deadline).await)
            }
            RaftRequest::Hello(from) => RaftReply::Hello(self.hello(from).await),
            RaftRequest::Join(from) => RaftReply::Join(self.add_server(from).await),
            RaftRequest::RemoveServer(id) => {
                RaftReply::RemoveServer(self.remove_server_here(id).await)
            }
            RaftRequest::Peers => RaftReply::Peers(self.peers_here()),
            RaftRequest::Elect => RaftReply::Elect(
                self.raft
                    .trigger()
                    .elect()
                    .await
                    .map_err(|e| ProposeError::Internal(e.to_string())),
            ),
            RaftRequest::TransferLeadership(to) => {
                RaftReply::TransferLeadership(self.transfer_leadership_here(to).await)
            }
        }
    }

    /// Sends `request` to the leader (this server first, when it leads, through `here`).
    async fn on_leader<T>(
        &self,
        request: RaftRequest,
        unpack: impl Fn(RaftReply) -> Option<Result<T, ProposeError>>,
    ) -> Result<T, ProposeError> {
        let deadline = Instant::now() + Duration::from_millis(self.config.propose_timeout_ms);
        let Some((leader_id, address)) = self.leader() else {
            return Err(ProposeError::NotLeader { leader: None });
        };
        let kind = request.kind();
        match self.forward(leader_id, &address, request, deadline).await {
            Forwarded::Reply(reply) => {
                let got = reply.kind();
                unpack(reply).unwrap_or_else(|| {
                    Err(ProposeError::Internal(format!(
                        "node {leader_id} answered a {kind} request with a {got} reply"
                    )))
                })
            }
            Forwarded::NotDelivered => Err(ProposeError::NotLeader {
                leader: Some((leader_id, address)),
            }),
            Forwarded::Lost(e) => Err(e),
        }
    }

    fn address_of(&self, node_id: u64) -> Option<String> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&node_id)
            .map(|n| n.addr.clone())
    }

    /// Whether this server leads and has applied everything committed before its term.
    pub fn is_leader(&self) -> bool {
        *self.leadership.borrow()
    }

    /// Follows [`RaftNode::is_leader`]: true while this server leads (with its state caught up),
    /// false otherwise and after shutdown.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.leadership.clone()
    }

    /// Follows how this server's region forms; `Failed` when `retry_max` ran out.
    pub fn formation(&self) -> watch::Receiver<FormationState> {
        self.formation.clone()
    }

    /// The current leader's id and address, if one is known.
    pub fn leader(&self) -> Option<(u64, String)> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        if metrics.running_state.is_err() {
            return None;
        }
        let id = metrics.current_leader?;
        let node = metrics.membership_config.membership().get_node(&id)?;
        Some((id, node.addr.clone()))
    }

    /// How long ago this server last heard from the leader: zero on the leader, `None` when
    /// it never has.
    pub fn last_leader_contact(&self) -> Option<Duration> {
        if self.is_leader() {
            return Some(Duration::ZERO);
        }
        self.last_leader_contact
            .lock()
            .ok()
            .and_then(|last| last.map(|t| t.elapsed()))
    }

    /// The members of the Raft group: id, node, and whether it votes.
    pub fn members(&self) -> Vec<(u64, ServerNode, bool)> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| (*id, node.clone(), voters.contains(id)))
            .collect()
    }

    /// Servers heard of while forming or through introductions, members or not.
    pub fn known_servers(&self) -> Vec<ServerInfo> {
        self.known
            .lock()
            .map(|known| known.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The index of the membership configuration in the log.
    pub fn membership_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .log_id()
            .map(|l| l.index)
            .unwrap_or(0)
    }

    /// Raft's counters now.
    pub fn stats(&self) -> RaftStats {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        RaftStats {
            node_id: self.config.node_id,
            role: RaftRole::from_state(m.state),
            term: m.current_term,
            leader_id: m.current_leader,
            last_log_index: m.last_log_index,
            commit_index: self.commit.get(),
            applied_index: m.last_applied.map(|l| l.index),
            applied_term: m.last_applied.map(|l| l.leader_id.term),
            last_snapshot_index: m.snapshot.map(|l| l.index),
            last_snapshot_term: m.snapshot.map(|l| l.leader_id.term),
            last_purged_index: m.purged.map(|l| l.index),
            voters: m.membership_config.membership().voter_ids().collect(),
        }
    }

    /// The config this node runs with.
    pub fn config(&self) -> &RaftConfig {
        &self.config
    }

    /// Stops Raft and waits until the data dir can be reopened. Takes `&self` so that a node
    /// shared by the server pipeline and the HTTP API can be stopped by the agent; calling it
    /// twice is harmless, and proposals after it fail with `ProposeError::Shutdown`.
    pub async fn shutdown(&self) -> Result<(), RaftError> {
        if self.stopped.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        if let Ok(mut tasks) = self.tasks.lock() {
            for task in tasks.drain(..) {
                task.abort();
            }
        }
        self.raft
            .shutdown()
            .await
            .map_err(|e| consensus_error(self.config.node_id, "shut down", e))?;
        let started = Instant::now();
        let held = [
            (&self.log_liveness, self.config.log_path()),
            (&self.snapshot_liveness, self.config.snapshot_dir()),
        ];
        for (liveness, path) in held {
            while liveness.is_held() {
                if started.elapsed() > SHUTDOWN_CLOSE_WAIT {
                    return Err(RaftError::ShutdownIncomplete {
                        what: path.display().to_string(),
                        waited_ms: u64::try_from(SHUTDOWN_CLOSE_WAIT.as_millis())
                            .unwrap_or(u64::MAX),
                    });
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        tracing::info!(node_id = self.config.node_id, "raft stopped");
        Ok(())
    }
}

/// What became of a request sent to the leader.
enum Forwarded {
    Reply(RaftReply),
    /// Never delivered (no connection): safe to retry.
    NotDelivered,
    /// Sent, but no answer came back: the request may have been handled.
    Lost(ProposeError),
}

impl Drop for RaftNode {
    fn drop(&mut self) {
        if self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        // Without this the core task would keep running (and keep the log locked) until the
        // runtime ends. Outside a runtime there is nothing left to stop.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let raft = self.raft.clone();
            handle.spawn(async move {
                if let Err(e) = raft.shutdown().await {
                    tracing::warn!(error = %e, "raft did not stop cleanly after its node was dropped");
                }
            });
        }
    }
}

/// What a failed `client_write` means to a proposer. `address_of` looks up a node's address
/// when openraft names the leader without it.
fn propose_error(
    e: OpenraftError<u64, ClientWriteError<u64, ServerNode>>,
    address_of: impl Fn(u64) -> Option<String>,
) -> ProposeError {
    match e {
        OpenraftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            let leader = match (forward.leader_id, forward.leader_node) {
                (Some(id), Some(node)) => Some((id, node.addr)),
                (Some(id), None) => address_of(id).map(|addr| (id, addr)),
                (None, _) => None,
            };
            ProposeError::NotLeader { leader }
        }
        OpenraftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            ProposeError::Internal(e.to_string())
        }
        OpenraftError::Fatal(Fatal::Stopped) => ProposeError::Shutdown,
        OpenraftError::Fatal(Fatal::StorageError(e)) => ProposeError::Storage(e.to_string()),
        OpenraftError::Fatal(Fatal::Panicked) => {
            ProposeError::Internal("the raft core task panicked".into())
        }
    }
}

/// Publishes leadership changes; ends (reporting `false`) when Raft stops.
fn spawn_leadership_watch(raft: &Raft<TypeConfig>, node_id: u64) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let mut metrics = raft.metrics();
    tokio::spawn(async move {
        let mut tenure = Tenure::default();
        loop {
            let leading = tenure.observe(&metrics.borrow_and_update(), node_id);
            tx.send_if_modified(|current| {
                let changed = *current != leading;
                *current = leading;
                changed
            });
            if metrics.changed().await.is_err() {
                tx.send_replace(false);
                return;
            }
        }
    });
    rx
}

/// Reads the stored membership before openraft runs and refuses one that does not include
/// this server (the data dir is another server's, or this server was removed). Returns the
/// stored voters (empty for a new log).
async fn check_stored_membership(
    config: &RaftConfig,
    mut log: LogStore,
    mut machine: StateMachineStore,
) -> Result<(LogStore, StateMachineStore, Vec<u64>), RaftError> {
    let node_id = config.node_id;
    let membership = StorageHelper::new(&mut log, &mut machine)
        .get_membership()
        .await
        .map_err(|e| consensus_error(node_id, "read its stored membership", e))?;
    let effective = membership.effective().membership();
    let voters: Vec<u64> = effective.voter_ids().collect();
    let learners: Vec<u64> = effective.learner_ids().collect();
    let is_new = voters.is_empty() && learners.is_empty();
    if !is_new && !voters.contains(&node_id) && !learners.contains(&node_id) {
        return Err(RaftError::UnsupportedMembership {
            data_dir: config.data_dir.clone(),
            node_id,
            membership: format!("voters {voters:?}, non-voters {learners:?}"),
        });
    }
    Ok((log, machine, voters))
}

/// A log purged past the newest snapshot cannot rebuild the state: say so before openraft
/// fails on the missing entries.
fn check_log_covers_snapshot(
    log: &LogStore,
    machine: &StateMachineStore,
) -> Result<(), StoreError> {
    let state = log.log_state()?;
    let Some(purged) = state.last_purged_log_id else {
        return Ok(());
    };
    let applied = machine.last_applied().map(|l| l.index);
    if applied.is_some_and(|a| a >= purged.index) {
        return Ok(());
    }
    Err(StoreError::SnapshotCorrupt {
        path: machine.snapshot_dir().to_path_buf(),
        reason: format!(
            "the log in {} has been purged up to index {}, but the newest snapshot here {}; the \
             entries in between are gone",
            log.path().display(),
            purged.index,
            match applied {
                Some(a) => format!("ends at index {a}"),
                None => "does not exist".to_string(),
            }
        ),
        older: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId};

    use super::*;

    fn metrics(
        state: ServerState,
        term: u64,
        last_log: u64,
        applied: u64,
    ) -> RaftMetrics<u64, ServerNode> {
        let mut m = RaftMetrics::new_initial(1);
        m.state = state;
        m.current_term = term;
        m.current_leader = (state == ServerState::Leader).then_some(1);
        m.last_log_index = Some(last_log);
        m.last_applied = Some(LogId::new(CommittedLeaderId::new(term, 1), applied));
        m
    }

    #[test]
    fn leadership_waits_until_the_log_present_at_the_start_of_the_term_is_applied() {
        let mut tenure = Tenure::default();
        assert!(!tenure.observe(&metrics(ServerState::Follower, 1, 9, 9), 1));
        // Resumed leadership with entries 8..=9 not yet applied.
        assert!(!tenure.observe(&metrics(ServerState::Leader, 1, 9, 7), 1));
        // New proposals raise the log, but only the start-of-tenure index counts.
        assert!(!tenure.observe(&metrics(ServerState::Leader, 1, 12, 8), 1));
        assert!(tenure.observe(&metrics(ServerState::Leader, 1, 12, 9), 1));
        assert!(tenure.observe(&metrics(ServerState::Leader, 1, 20, 15), 1));
        // Losing leadership ends the tenure; a new term starts a new one.
        assert!(!tenure.observe(&metrics(ServerState::Follower, 2, 20, 20), 1));
        assert!(!tenure.observe(&metrics(ServerState::Leader, 3, 22, 20), 1));
        assert!(tenure.observe(&metrics(ServerState::Leader, 3, 22, 22), 1));
    }

    #[test]
    fn client_write_failures_become_propose_errors_a_caller_can_act_on() {
        use openraft::error::ForwardToLeader;
        let lookup = |id: u64| (id == 3).then(|| "10.0.0.3:4647".to_string());
        let forward = |leader_id, leader_node| {
            OpenraftError::APIError(ClientWriteError::ForwardToLeader(ForwardToLeader {
                leader_id,
                leader_node,
            }))
        };
        assert_eq!(
            propose_error(forward(Some(2), Some(ServerNode::new("b:1", "b"))), lookup),
            ProposeError::NotLeader {
                leader: Some((2, "b:1".into()))
            }
        );
        assert_eq!(
            propose_error(forward(Some(3), None), lookup),
            ProposeError::NotLeader {
                leader: Some((3, "10.0.0.3:4647".into()))
            }
        );
        assert_eq!(
            propose_error(forward(None, None), lookup),
            ProposeError::NotLeader { leader: None }
        );
        assert_eq!(
            propose_error(OpenraftError::Fatal(Fatal::Stopped), lookup),
            ProposeError::Shutdown
        );
        let storage = openraft::StorageIOError::write_logs(openraft::AnyError::error("disk full"));
        let ProposeError::Storage(message) = propose_error(
            OpenraftError::Fatal(Fatal::StorageError(storage.into())),
            lookup,
        ) else {
            panic!("expected a storage error");
        };
        assert!(message.contains("disk full"), "{message}");
        assert!(matches!(
            propose_error(OpenraftError::Fatal(Fatal::Panicked), lookup),
            ProposeError::Internal(_)
        ));
    }

    #[test]
    fn another_server_leading_is_not_this_server_leading() {
        let mut tenure = Tenure::default();
        let mut m = metrics(ServerState::Leader, 1, 3, 3);
        m.current_leader = Some(2);
        assert!(!tenure.observe(&m, 1));
    }
}
