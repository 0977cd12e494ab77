//! A single-server Raft node on a real data dir: bootstrap, proposals, restart (clean, dropped,
//! and a real `kill -9` of a child process), snapshots and log purging, and the errors an
//! operator meets (locked data dir, damaged snapshot, foreign membership, bad config).

// Helpers outside `#[test]` functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use controlplane::model::{
    Allocation, ClientStatus, DesiredStatus, EvalStatus, Evaluation, Job, Node, NodeStatus, Task,
    TaskGroup,
};
use controlplane::raft::{
    Entry, LogStore, ProposeError, RaftConfig, RaftError, RaftNode, RaftRole, ServerNode,
    StateMachineStore, StoreError,
};
use controlplane::state::{Command, CommandResponse, PlanResult, SnapshotFile, StateStore};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{
    CommittedLeaderId, EntryPayload, LogId, Membership, RaftLogReader, RaftSnapshotBuilder,
};

const ADDRESS: &str = "127.0.0.1:4647";

fn config(dir: &Path) -> RaftConfig {
    let mut config = RaftConfig::new(dir, 1, ADDRESS);
    config.startup_timeout_ms = 20_000;
    config
}

fn job(id: &str, count: i64) -> Job {
    let mut config = serde_json::Map::new();
    config.insert("command".into(), "/bin/sleep".into());
    config.insert(
        "args".into(),
        serde_json::json!(["1000", {"nested": [1.5, null, true]}]),
    );
    let mut job = Job {
        id: id.into(),
        task_groups: vec![TaskGroup {
            name: "web".into(),
            count,
            tasks: vec![Task {
                name: "server".into(),
                driver: "exec".into(),
                config,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    job.canonicalize();
    job
}

fn eval_for(job: &Job, id: &str, status: EvalStatus) -> Evaluation {
    Evaluation {
        id: id.into(),
        namespace: job.namespace.clone(),
        job_id: job.id.clone(),
        eval_type: job.job_type.as_str().into(),
        triggered_by: "job-register".into(),
        priority: 50,
        status,
        ..Default::default()
    }
}

fn client_node(id: &str) -> Node {
    Node {
        id: id.into(),
        name: format!("host-{id}"),
        datacenter: "dc1".into(),
        node_pool: "default".into(),
        status: NodeStatus::Ready,
        scheduling_eligibility: "eligible".into(),
        ..Default::default()
    }
}

fn alloc_for(job: &Job, eval: &Evaluation, node: &Node, id: &str) -> Allocation {
    Allocation {
        id: id.into(),
        namespace: job.namespace.clone(),
        eval_id: eval.id.clone(),
        name: format!("{}.web[0]", job.id),
        node_id: node.id.clone(),
        node_name: node.name.clone(),
        job_id: job.id.clone(),
        job: Some(Arc::new(job.clone())),
        task_group: "web".into(),
        desired_status: DesiredStatus::Run,
        client_status: ClientStatus::Pending,
        ..Default::default()
    }
}

async fn propose_ok(node: &RaftNode, command: Command) -> CommandResponse {
    let response = node.propose(command).await.unwrap();
    assert_eq!(response.error, None, "the state machine rejected a command");
    response
}

/// A job with its evaluation, a node, and the plan that places the job on it. Returns the
/// indexes the three commands were applied at.
async fn propose_workload(node: &RaftNode, suffix: &str) -> Vec<u64> {
    let web = job(&format!("web-{suffix}"), 1);
    let eval = eval_for(&web, &format!("eval-{suffix}"), EvalStatus::Pending);
    let host = client_node(&format!("node-{suffix}"));
    let mut indexes = Vec::new();
    let registered = propose_ok(
        node,
        Command::JobRegister {
            job: web.clone().into(),
            eval: Some(eval.clone()),
            now: 1_000,
            enforce_index: None,
            tracked_versions: None,
        },
    )
    .await;
    indexes.push(registered.index);
    let joined = propose_ok(
        node,
        Command::NodeRegister {
            node: host.clone().into(),
            now: 2_000,
        },
    )
    .await;
    indexes.push(joined.index);
    let mut done = eval.clone();
    done.status = EvalStatus::Complete;
    let plan = PlanResult {
        eval: Some(done),
        allocs: vec![alloc_for(&web, &eval, &host, &format!("alloc-{suffix}"))],
        now: 3_000,
        ..Default::default()
    };
    let planned = propose_ok(node, Command::PlanApply(plan.into())).await;
    indexes.push(planned.index);
    indexes
}

/// The state with its index set aside: a restarted leader commits one blank entry of its own,
/// which moves the index but nothing else.
fn content(mut file: SnapshotFile) -> SnapshotFile {
    file.latest_index = 0;
    file
}

/// The vote on disk is this server's, committed, in the term it last led.
async fn assert_vote_kept(dir: &Path, term: u64) {
    let mut log = LogStore::open(&dir.join("server/raft.redb")).unwrap();
    let vote = log.read_vote().await.unwrap().expect("no vote on disk");
    assert_eq!(vote.leader_id().term, term, "{vote:?}");
    assert_eq!(vote.leader_id().node_id, 1, "{vote:?}");
    assert!(vote.is_committed(), "{vote:?}");
}

fn assert_increasing(indexes: &[u64]) {
    assert!(
        indexes.windows(2).all(|w| w[0] < w[1]),
        "indexes are not increasing: {indexes:?}"
    );
}

#[tokio::test]
async fn a_new_data_dir_bootstraps_a_single_server_region_led_by_this_server() {
    let dir = tempfile::tempdir().unwrap();
    let node = RaftNode::start(config(dir.path()), Arc::new(StateStore::new()))
        .await
        .unwrap();
    assert!(node.is_leader());
    assert!(*node.leadership().borrow());
    assert_eq!(node.leader(), Some((1, ADDRESS.to_string())));
    let stats = node.stats();
    assert_eq!(stats.role, RaftRole::Leader);
    assert_eq!(stats.voters, vec![1]);
    assert_eq!(stats.leader_id, Some(1));
    assert!(stats.term >= 1);
    assert_eq!(stats.applied_index, stats.last_log_index);
    assert_eq!(stats.commit_index, stats.last_log_index);
    assert!(dir.path().join("server/raft.redb").is_file());
    assert!(dir.path().join("server/snapshots").is_dir());

    let mut leadership = node.leadership();
    node.shutdown().await.unwrap();
    // The watch ends with "not leading" once Raft has stopped.
    tokio::time::timeout(Duration::from_secs(5), async {
        while *leadership.borrow_and_update() {
            if leadership.changed().await.is_err() {
                break;
            }
        }
    })
    .await
    .unwrap();
    assert!(!*leadership.borrow());
}

#[tokio::test]
async fn state_survives_a_clean_restart_and_indexes_keep_increasing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(StateStore::new());
    let node = RaftNode::start(config(dir.path()), store.clone())
        .await
        .unwrap();
    let mut indexes = propose_workload(&node, "a").await;
    assert_increasing(&indexes);
    let before = store.snapshot().to_snapshot();
    let term_before = node.stats().term;
    node.shutdown().await.unwrap();
    assert_vote_kept(dir.path(), term_before).await;

    let restored = Arc::new(StateStore::new());
    let node = RaftNode::start(config(dir.path()), restored.clone())
        .await
        .unwrap();
    let after = restored.snapshot().to_snapshot();
    assert!(after.latest_index >= before.latest_index);
    assert_eq!(content(after), content(before));

    indexes.extend(propose_workload(&node, "b").await);
    assert_increasing(&indexes);
    let state = restored.snapshot();
    assert!(state.job("default", "web-a").is_some());
    assert!(state.job("default", "web-b").is_some());
    assert_eq!(state.allocs_by_node("node-b").len(), 1);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn dropping_a_node_without_shutdown_releases_the_data_dir_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(StateStore::new());
    let node = RaftNode::start(config(dir.path()), store.clone())
        .await
        .unwrap();
    propose_workload(&node, "a").await;
    let before = store.snapshot().to_snapshot();
    drop(node);

    // The dropped node stops in the background; until then the data dir stays locked.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (node, restored) = loop {
        let restored = Arc::new(StateStore::new());
        match RaftNode::start(config(dir.path()), restored.clone()).await {
            Ok(node) => break (node, restored),
            Err(RaftError::Store(StoreError::Locked { .. })) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("restart after drop failed: {e}"),
        }
    };
    assert_eq!(content(restored.snapshot().to_snapshot()), content(before));
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused_and_the_first_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let first = RaftNode::start(config(dir.path()), Arc::new(StateStore::new()))
        .await
        .unwrap();
    let err = RaftNode::start(config(dir.path()), Arc::new(StateStore::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RaftError::Store(StoreError::Locked { .. })),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("server/raft.redb"), "{message}");
    assert!(message.contains("another noded"), "{message}");
    propose_workload(&first, "a").await;
    first.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_data_dir_of_another_node_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    RaftNode::start(config(dir.path()), Arc::new(StateStore::new()))
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    let mut other = config(dir.path());
    other.node_id = 2;
    let err = RaftNode::start(other, Arc::new(StateStore::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RaftError::UnsupportedMembership { node_id: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("voters [1]"), "{err}");
    // The failed start released the data dir: the right node starts.
    RaftNode::start(config(dir.path()), Arc::new(StateStore::new()))
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_stored_membership_without_this_server_is_refused_before_raft_runs() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = dir.path().join("server/snapshots");
    {
        // A snapshot of a region of two other servers, as a copied data dir would hold.
        let mut machine = StateMachineStore::open(snapshots, Arc::new(StateStore::new())).unwrap();
        let members = BTreeMap::from([
            (2, ServerNode::new("127.0.0.8:4647", "b")),
            (3, ServerNode::new("127.0.0.9:4647", "c")),
        ]);
        let membership = Membership::new(vec![members.keys().copied().collect()], members);
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 0),
            payload: EntryPayload::Membership(membership),
        };
        machine.apply([entry]).await.unwrap();
        let mut builder = machine.get_snapshot_builder().await;
        builder.build_snapshot().await.unwrap();
    }
    let err = RaftNode::start(config(dir.path()), Arc::new(StateStore::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RaftError::UnsupportedMembership { node_id: 1, .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("voters [2, 3]"), "{message}");
    assert!(
        message.contains("does not include this server"),
        "{message}"
    );
}

#[tokio::test]
async fn a_restart_with_a_new_address_reports_the_new_address() {
    let dir = tempfile::tempdir().unwrap();
    RaftNode::start(config(dir.path()), Arc::new(StateStore::new()))
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    let mut moved = config(dir.path());
    moved.address = "127.0.0.2:4647".into();
    let node = RaftNode::start(moved, Arc::new(StateStore::new()))
        .await
        .unwrap();
    assert_eq!(node.leader(), Some((1, "127.0.0.2:4647".to_string())));
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_state_store_that_already_holds_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(StateStore::new());
    store.apply(
        5,
        &Command::NodeRegister {
            node: client_node("n").into(),
            now: 0,
        },
    );
    let err = RaftNode::start(config(dir.path()), store)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RaftError::StateNotEmpty { index: 5, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn an_invalid_config_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = config(dir.path());
    bad.address = String::new();
    let err = RaftNode::start(bad, Arc::new(StateStore::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RaftError::InvalidConfig {
                field: "address",
                ..
            }
        ),
        "{err}"
    );

    let mut bad = config(dir.path());
    bad.election_timeout_min_ms = bad.heartbeat_interval_ms;
    let err = RaftNode::start(bad, Arc::new(StateStore::new()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("election_timeout_min_ms"), "{err}");

    let mut bad = config(dir.path());
    bad.snapshot_every = 0;
    let err = RaftNode::start(bad, Arc::new(StateStore::new()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("snapshot_every"), "{err}");
    assert!(
        !dir.path().join("server").exists(),
        "a refused config created files"
    );
}

/// The HTTP API shares one node between handlers and awaits proposals inside spawned tasks.
#[test]
fn a_node_and_its_proposals_can_be_shared_across_tasks() {
    fn shared<T: Send + Sync + 'static>() {}
    fn sendable<T: Send>(_: &T) {}
    shared::<RaftNode>();
    shared::<Arc<RaftNode>>();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let node = Arc::new(
            RaftNode::start(config(dir.path()), Arc::new(StateStore::new()))
                .await
                .unwrap(),
        );
        let proposal = node.propose(Command::NodeRegister {
            node: client_node("n").into(),
            now: 0,
        });
        sendable(&proposal);
        let from_a_task = {
            let node = node.clone();
            tokio::spawn(async move {
                node.propose(Command::NodeRegister {
                    node: client_node("m").into(),
                    now: 0,
                })
                .await
            })
        };
        let first = proposal.await.unwrap();
        let second = from_a_task.await.unwrap().unwrap();
        assert_ne!(first.index, second.index);
        Arc::into_inner(node).unwrap().shutdown().await.unwrap();
    });
}

#[test]
fn not_leader_errors_name_the_leader_to_go_to() {
    let err = ProposeError::NotLeader {
        leader: Some((3, "10.0.0.3:4647".into())),
    };
    assert!(err.to_string().contains("node 3 at 10.0.0.3:4647"), "{err}");
    let err = ProposeError::NotLeader { leader: None };
    assert!(err.to_string().contains("no leader is known"), "{err}");
}

// ---- snapshots and purging ----

fn snapshot_config(dir: &Path) -> RaftConfig {
    let mut config = config(dir);
    config.snapshot_every = 16;
    config.snapshot_log_lag = 4;
    config
}

fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("server/snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    files.sort();
    files
}

/// Proposes enough to cause several snapshots and purges, waits for them, shuts down. Returns
/// the state before shutdown and the newest snapshot index.
async fn run_until_snapshotted(dir: &Path) -> (SnapshotFile, u64) {
    let store = Arc::new(StateStore::new());
    let node = RaftNode::start(snapshot_config(dir), store.clone())
        .await
        .unwrap();
    for round in 0..20 {
        propose_workload(&node, &round.to_string()).await;
    }
    // Snapshots are built and the log purged in the background. (openraft decides on a snapshot
    // when entries commit, so the newest one may trail the log by more than `snapshot_every`
    // once proposals stop.)
    let deadline = Instant::now() + Duration::from_secs(20);
    let stats = loop {
        let stats = node.stats();
        let snapshotted = stats.last_snapshot_index.is_some_and(|s| s >= 16);
        if snapshotted && stats.last_purged_index.is_some() {
            break stats;
        }
        assert!(Instant::now() < deadline, "no snapshot/purge: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let before = store.snapshot().to_snapshot();
    node.shutdown().await.unwrap();
    // A snapshot that was being built when `stats` was read has finished by now (shutdown waits
    // for it): the newest file on disk is the snapshot a restart uses.
    let newest = snapshot_files(dir).pop().unwrap();
    let name = newest.file_name().unwrap().to_str().unwrap();
    let index: u64 = name["snapshot-".len().."snapshot-".len() + 20]
        .parse()
        .unwrap();
    assert!(index >= stats.last_snapshot_index.unwrap());
    (before, index)
}

#[tokio::test]
async fn snapshots_are_taken_the_log_is_purged_and_a_restart_rebuilds_from_both() {
    let dir = tempfile::tempdir().unwrap();
    let (before, snapshot_index) = run_until_snapshotted(dir.path()).await;
    assert!(snapshot_index >= 16);
    let files = snapshot_files(dir.path());
    assert!(
        !files.is_empty() && files.len() <= 2,
        "snapshot files: {files:?}"
    );

    // The log no longer starts at 0: the state cannot be rebuilt from the log alone.
    let mut log = LogStore::open(&dir.path().join("server/raft.redb")).unwrap();
    let state = log.get_log_state().await.unwrap();
    let purged = state.last_purged_log_id.unwrap().index;
    assert!(
        purged > 0 && purged <= snapshot_index,
        "purged {purged}, snapshot {snapshot_index}"
    );
    let entries = log.try_get_log_entries(0..).await.unwrap();
    assert_eq!(entries.first().unwrap().log_id.index, purged + 1);
    drop(log);

    let restored = Arc::new(StateStore::new());
    let node = RaftNode::start(snapshot_config(dir.path()), restored.clone())
        .await
        .unwrap();
    assert_eq!(content(restored.snapshot().to_snapshot()), content(before));
    let stats = node.stats();
    assert_eq!(stats.last_snapshot_index, Some(snapshot_index));
    let next = propose_workload(&node, "after").await;
    assert!(next[0] > stats.applied_index.unwrap());
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_damaged_snapshot_stops_the_start_with_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    run_until_snapshotted(dir.path()).await;
    let newest = snapshot_files(dir.path()).pop().unwrap();
    let good = std::fs::read(&newest).unwrap();

    std::fs::write(&newest, &good[..good.len() / 2]).unwrap();
    let err = RaftNode::start(snapshot_config(dir.path()), Arc::new(StateStore::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RaftError::Store(StoreError::SnapshotCorrupt { .. })),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains(&newest.display().to_string()), "{message}");
    assert!(message.contains("cannot be decoded"), "{message}");

    let mut unknown = good.clone();
    unknown[8] = 9;
    std::fs::write(&newest, &unknown).unwrap();
    let err = RaftNode::start(snapshot_config(dir.path()), Arc::new(StateStore::new()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("format 9"), "{err}");

    std::fs::write(&newest, b"not a snapshot at all").unwrap();
    let err = RaftNode::start(snapshot_config(dir.path()), Arc::new(StateStore::new()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("header"), "{err}");

    // Nothing was changed by the failed starts: with the file repaired, the server starts.
    std::fs::write(&newest, &good).unwrap();
    RaftNode::start(snapshot_config(dir.path()), Arc::new(StateStore::new()))
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_missing_snapshot_behind_a_purged_log_is_an_error_not_a_silent_empty_state() {
    let dir = tempfile::tempdir().unwrap();
    run_until_snapshotted(dir.path()).await;
    for file in snapshot_files(dir.path()) {
        std::fs::remove_file(file).unwrap();
    }
    let err = RaftNode::start(snapshot_config(dir.path()), Arc::new(StateStore::new()))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("has been purged up to index"), "{message}");
    assert!(message.contains("does not exist"), "{message}");
}

// ---- kill -9 ----

const KILL9_CHILD_DIR: &str = "NODED_RAFT_TEST_KILL9_CHILD_DIR";
const KILL9_TEST: &str = "a_server_killed_with_sigkill_keeps_every_acknowledged_write";
const READY: &str = "RAFT-CHILD-READY";
const ACK: &str = "RAFT-CHILD-ACK ";

/// The child: runs a node, writes the state after a fixed workload, then keeps proposing and
/// acknowledging until it is killed.
fn run_kill9_child(dir: PathBuf) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let store = Arc::new(StateStore::new());
        let node = RaftNode::start(config(&dir), store.clone()).await.unwrap();
        propose_workload(&node, "base").await;
        let expected = serde_json::to_vec(&store.snapshot().to_snapshot()).unwrap();
        let path = dir.join("expected.json");
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&expected).unwrap();
        file.sync_all().unwrap();
        std::fs::write(dir.join("term"), node.stats().term.to_string()).unwrap();
        let mut out = std::io::stdout();
        writeln!(out, "{READY}").unwrap();
        out.flush().unwrap();
        for i in 0..100_000u64 {
            propose_ok(
                &node,
                Command::JobRegister {
                    job: job(&format!("churn-{i}"), 1).into(),
                    eval: None,
                    now: 0,
                    enforce_index: None,
                    tracked_versions: None,
                },
            )
            .await;
            writeln!(out, "{ACK}{i}").unwrap();
            out.flush().unwrap();
        }
    });
    // Never killed: the parent's wait failed. Exit loudly.
    std::process::exit(3);
}

#[test]
fn a_server_killed_with_sigkill_keeps_every_acknowledged_write() {
    if let Some(dir) = std::env::var_os(KILL9_CHILD_DIR) {
        run_kill9_child(PathBuf::from(dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([KILL9_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(KILL9_CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ready = false;
    let mut acked = BTreeSet::new();
    while acked.len() < 25 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                panic!("the child stopped reporting ({e}); ready={ready}, acked={acked:?}");
            }
        };
        if line == READY {
            ready = true;
        } else if let Some(i) = line.strip_prefix(ACK) {
            acked.insert(i.parse::<u64>().unwrap());
        }
    }
    // SIGKILL, mid-stream: no destructor, no flush, no clean close of the log.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child exited by itself: {status}");
    // Acknowledgements that were in the pipe when the child died count too.
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        if let Some(i) = line.strip_prefix(ACK) {
            acked.insert(i.parse::<u64>().unwrap());
        }
    }

    let expected: SnapshotFile =
        serde_json::from_slice(&std::fs::read(dir.path().join("expected.json")).unwrap()).unwrap();
    let term_before: u64 = std::fs::read_to_string(dir.path().join("term"))
        .unwrap()
        .parse()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        assert_vote_kept(dir.path(), term_before).await;
        let restored = Arc::new(StateStore::new());
        let node = RaftNode::start(config(dir.path()), restored.clone())
            .await
            .unwrap();
        let state = restored.snapshot();
        let after = state.to_snapshot();
        // The workload before the churn is there exactly as it was.
        for job in &expected.jobs {
            assert!(
                after.jobs.contains(job),
                "job {} changed or is missing",
                job.id
            );
        }
        for eval in &expected.evals {
            assert!(
                after.evals.contains(eval),
                "eval {} changed or is missing",
                eval.id
            );
        }
        for alloc in &expected.allocs {
            assert!(
                after.allocs.contains(alloc),
                "alloc {} changed or is missing",
                alloc.id
            );
        }
        assert_eq!(after.nodes, expected.nodes);
        // Every acknowledged write survived.
        for i in &acked {
            assert!(
                state.job("default", &format!("churn-{i}")).is_some(),
                "acknowledged job churn-{i} was lost"
            );
        }
        // And the log goes on from where it was.
        let response = propose_ok(
            &node,
            Command::JobRegister {
                job: job("after-crash", 1).into(),
                eval: None,
                now: 0,
                enforce_index: None,
                tracked_versions: None,
            },
        )
        .await;
        assert!(response.index > after.latest_index);
        node.shutdown().await.unwrap();
    });
}
