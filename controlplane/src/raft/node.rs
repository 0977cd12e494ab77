//! [`RaftNode`]: the Raft API the rest of the server uses.
//!
//! Starting a node opens (or creates) the log and the snapshots, restores the newest snapshot
//! into the [`StateStore`], lets openraft replay the committed log after it, bootstraps a
//! single-server membership if the log is new, and returns once this server leads and has applied
//! everything before its term. Proposals go through [`RaftNode::propose`] and come back with the
//! state machine's answer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, Fatal, RaftError as OpenraftError};
use openraft::{
    BasicNode, ChangeMembers, Raft, RaftMetrics, ServerState, SnapshotPolicy, StorageHelper,
};
use tokio::sync::watch;

use super::error::{ProposeError, RaftError, StoreError};
use super::log_store::{CommitTracker, LogStore, RAFT_DB_FILE};
use super::network::{Network, RaftTransport, SingleVoterNetwork};
use super::snapshot_dir::SNAPSHOT_DIR;
use super::state_machine::StateMachineStore;
use super::{Liveness, TypeConfig, SERVER_DIR};
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
/// How long [`RaftNode::shutdown`] waits for the log to close and a snapshot being written to
/// finish (a large state takes seconds to write).
const SHUTDOWN_CLOSE_WAIT: Duration = Duration::from_secs(60);

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
    commit: CommitTracker,
    log_liveness: Liveness,
    snapshot_liveness: Liveness,
    leadership: watch::Receiver<bool>,
    stopped: std::sync::atomic::AtomicBool,
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
    fn observe(&mut self, metrics: &RaftMetrics<u64, BasicNode>, node_id: u64) -> bool {
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
    /// Opens or creates this server's Raft state in `config.data_dir` and runs it, filling
    /// `store` (which must be empty) from the newest snapshot and the log. A new log is
    /// bootstrapped as a single-server region. Returns once this server is leader with all
    /// earlier entries applied, or an error after `config.startup_timeout_ms`.
    pub async fn start(config: RaftConfig, store: Arc<StateStore>) -> Result<RaftNode, RaftError> {
        let transport = SingleVoterNetwork::new(config.node_id);
        RaftNode::start_with_transport(config, store, transport).await
    }

    /// [`RaftNode::start`] with a given transport. Private until the membership checks allow
    /// more than one server.
    async fn start_with_transport<T: RaftTransport>(
        config: RaftConfig,
        store: Arc<StateStore>,
        transport: T,
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
        let (log, machine) = check_single_server_membership(&config, log, machine).await?;
        let commit = log.commit_tracker();
        let log_liveness = log.liveness();
        let snapshot_liveness = machine.snapshot_liveness();
        let openraft_config = Arc::new(config.openraft_config()?);
        let raft = Raft::new(
            node_id,
            openraft_config,
            Network::new(node_id, transport),
            log,
            machine,
        )
        .await
        .map_err(|e| consensus_error(node_id, "start", e))?;

        let leadership = spawn_leadership_watch(&raft, node_id);
        let mut node = RaftNode {
            raft,
            config,
            commit,
            log_liveness,
            snapshot_liveness,
            leadership,
            stopped: std::sync::atomic::AtomicBool::new(false),
        };
        match node.bootstrap_or_resume().await {
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

    async fn bootstrap_or_resume(&mut self) -> Result<(), RaftError> {
        let node_id = self.config.node_id;
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| consensus_error(node_id, "read its state", e))?;
        if !initialized {
            tracing::info!(
                node_id,
                data_dir = %self.config.data_dir.display(),
                "bootstrapping a new single-server raft region"
            );
            let members = BTreeMap::from([(node_id, BasicNode::new(&self.config.address))]);
            self.raft
                .initialize(members)
                .await
                .map_err(|e| consensus_error(node_id, "bootstrap a single-server region", e))?;
        } else {
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
        }
        self.wait_for_leadership().await?;
        self.update_own_address().await
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

    /// A server that restarts with a new address records it in the membership, so that
    /// [`RaftNode::leader`] reports where it can be reached now.
    async fn update_own_address(&self) -> Result<(), RaftError> {
        let node_id = self.config.node_id;
        let stored = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&node_id)
            .map(|n| n.addr.clone());
        if stored.as_deref() == Some(self.config.address.as_str()) {
            return Ok(());
        }
        tracing::info!(
            node_id,
            old = ?stored,
            new = %self.config.address,
            "recording this server's new address in the raft membership"
        );
        let nodes = BTreeMap::from([(node_id, BasicNode::new(&self.config.address))]);
        self.raft
            .change_membership(ChangeMembers::SetNodes(nodes), false)
            .await
            .map_err(|e| consensus_error(node_id, "record its new address", e))?;
        Ok(())
    }

    /// Commits `cmd` through Raft and returns the state machine's answer once it is applied
    /// here. On [`ProposeError::Timeout`] the command may still be applied later.
    pub async fn propose(&self, cmd: Command) -> Result<CommandResponse, ProposeError> {
        let after = Duration::from_millis(self.config.propose_timeout_ms);
        match tokio::time::timeout(after, self.raft.client_write(cmd)).await {
            Err(_) => Err(ProposeError::Timeout {
                after_ms: self.config.propose_timeout_ms,
            }),
            Ok(Ok(response)) => Ok(response.data),
            Ok(Err(e)) => Err(propose_error(e, |id| self.address_of(id))),
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

    /// Stops Raft and waits until the log file is closed (the data dir can be reopened).
    /// Stops Raft and waits until the data dir can be reopened. Takes `&self` so that a node
    /// shared by the server pipeline and the HTTP API can be stopped by the agent; calling it
    /// twice is harmless, and proposals after it fail with `ProposeError::Shutdown`.
    pub async fn shutdown(&self) -> Result<(), RaftError> {
        if self.stopped.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
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
    e: OpenraftError<u64, ClientWriteError<u64, BasicNode>>,
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

/// Refuses a stored membership other than "this server alone", before openraft runs: openraft
/// must never have a peer to call through [`SingleVoterNetwork`].
async fn check_single_server_membership(
    config: &RaftConfig,
    mut log: LogStore,
    mut machine: StateMachineStore,
) -> Result<(LogStore, StateMachineStore), RaftError> {
    let node_id = config.node_id;
    let membership = StorageHelper::new(&mut log, &mut machine)
        .get_membership()
        .await
        .map_err(|e| consensus_error(node_id, "read its stored membership", e))?;
    let effective = membership.effective().membership();
    let voters: Vec<u64> = effective.voter_ids().collect();
    let learners: Vec<u64> = effective.learner_ids().collect();
    let is_new = voters.is_empty() && learners.is_empty();
    if !is_new && (voters != [node_id] || !learners.is_empty()) {
        return Err(RaftError::UnsupportedMembership {
            data_dir: config.data_dir.clone(),
            node_id,
            membership: format!("voters {voters:?}, non-voters {learners:?}"),
        });
    }
    Ok((log, machine))
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
    ) -> RaftMetrics<u64, BasicNode> {
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
            propose_error(forward(Some(2), Some(BasicNode::new("b:1"))), lookup),
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
