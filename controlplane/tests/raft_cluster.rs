//! Multi-server regions, in one process: real Raft nodes on real data dirs, connected by a
//! router that delivers messages between them and can cut any server off. The same code runs
//! over QUIC in the agent (the transport is the only difference); the multi-host tests in
//! `tests/` drive real processes in network namespaces.
//!
//! Covered here: forming a region through `retry_join` (bootstrapped exactly once), writes
//! forwarded from followers, linearizable reads, a leader isolated in a minority (acknowledges
//! nothing, the majority goes on, everything converges after healing), a server joining later
//! and one catching up from a snapshot, membership changes refused when they would be wrong,
//! and a restart of every server from disk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use controlplane::model::{Job, Task, TaskGroup};
use controlplane::raft::{
    FormationState, JoinSettings, ProposeError, RaftConfig, RaftNode, RaftReply, RaftRequest,
    RaftTransport, TransportError,
};
use controlplane::state::{Command, StateStore};
use futures::future::BoxFuture;

/// Delivers requests between the nodes of one test, by address; a cut server neither sends
/// nor receives.
#[derive(Default)]
struct Router {
    nodes: Mutex<HashMap<String, Weak<RaftNode>>>,
    cut: Mutex<BTreeSet<String>>,
}

struct RouterTransport {
    router: Arc<Router>,
    me: String,
}

impl RaftTransport for RouterTransport {
    fn send(
        &self,
        _target: u64,
        address: &str,
        request: RaftRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<RaftReply, TransportError>> {
        let router = self.router.clone();
        let me = self.me.clone();
        let address = address.to_string();
        Box::pin(async move {
            let cut = router.cut.lock().unwrap().clone();
            if cut.contains(&me) || cut.contains(&address) {
                return Err(TransportError::Unreachable(format!(
                    "{me} → {address}: partitioned"
                )));
            }
            let node = router.nodes.lock().unwrap().get(&address).cloned();
            let Some(node) = node.and_then(|n| n.upgrade()) else {
                return Err(TransportError::Unreachable(format!(
                    "{address}: not running"
                )));
            };
            // Through JSON, as the real transport: what cannot be encoded fails here too.
            let request: RaftRequest =
                serde_json::from_slice(&serde_json::to_vec(&request).unwrap()).unwrap();
            match tokio::time::timeout(timeout, node.handle(request)).await {
                Ok(reply) => {
                    if router.cut.lock().unwrap().contains(&address) {
                        return Err(TransportError::Network("cut while in flight".into()));
                    }
                    Ok(serde_json::from_slice(&serde_json::to_vec(&reply).unwrap()).unwrap())
                }
                Err(_) => Err(TransportError::Timeout {
                    address,
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap(),
                }),
            }
        })
    }
}

struct Region {
    router: Arc<Router>,
    dirs: Vec<tempfile::TempDir>,
    nodes: Vec<Option<Arc<RaftNode>>>,
    stores: Vec<Arc<StateStore>>,
    expect: u32,
}

fn address(i: usize) -> String {
    format!("10.9.0.{}:4647", i + 1)
}

fn config(dir: &Path, i: usize, expect: u32, peers: usize) -> RaftConfig {
    let mut config = RaftConfig::new(dir, 1000 + i as u64, address(i));
    config.name = format!("server-{i}");
    config.heartbeat_interval_ms = 50;
    config.election_timeout_min_ms = 300;
    config.election_timeout_max_ms = 600;
    config.propose_timeout_ms = 5_000;
    config.snapshot_every = 64;
    config.snapshot_log_lag = 8;
    config.join = JoinSettings {
        bootstrap_expect: expect,
        retry_join: (0..peers).filter(|p| *p != i).map(address).collect(),
        retry_interval: Duration::from_millis(100),
        retry_max: 0,
    };
    config
}

impl Region {
    async fn start(n: usize) -> Region {
        // `RUST_LOG=debug` shows what the servers did when a test fails.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let mut region = Region {
            router: Arc::new(Router::default()),
            dirs: (0..n).map(|_| tempfile::tempdir().unwrap()).collect(),
            nodes: vec![None; n],
            stores: Vec::new(),
            expect: u32::try_from(n).unwrap(),
        };
        region.stores = (0..n).map(|_| Arc::new(StateStore::new())).collect();
        for i in 0..n {
            region.launch(i).await;
        }
        region
    }

    async fn launch(&mut self, i: usize) {
        let store = Arc::new(StateStore::new());
        let transport = Arc::new(RouterTransport {
            router: self.router.clone(),
            me: address(i),
        });
        let peers = self.nodes.len().max(self.expect as usize);
        let node = Arc::new(
            RaftNode::start_with_transport(
                config(self.dirs[i].path(), i, self.expect, peers),
                store.clone(),
                transport,
            )
            .await
            .unwrap(),
        );
        self.router
            .nodes
            .lock()
            .unwrap()
            .insert(address(i), Arc::downgrade(&node));
        self.nodes[i] = Some(node);
        self.stores[i] = store;
    }

    async fn stop(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            node.shutdown().await.unwrap();
        }
    }

    fn node(&self, i: usize) -> &Arc<RaftNode> {
        self.nodes[i].as_ref().unwrap()
    }

    fn running(&self) -> impl Iterator<Item = (usize, &Arc<RaftNode>)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
    }

    /// Waits for one leader among the running, uncut servers, and returns its position.
    async fn leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let cut = self.router.cut.lock().unwrap().clone();
            let leaders: Vec<usize> = self
                .running()
                .filter(|(i, n)| n.is_leader() && !cut.contains(&address(*i)))
                .map(|(i, _)| i)
                .collect();
            if leaders.len() == 1 {
                return leaders[0];
            }
            assert!(
                Instant::now() < deadline,
                "no single leader within {timeout:?}: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn cut(&self, i: usize) {
        self.router.cut.lock().unwrap().insert(address(i));
    }

    fn heal(&self) {
        self.router.cut.lock().unwrap().clear();
    }

    /// Waits until every running server holds job `id`.
    async fn converge_on(&self, id: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for (i, _) in self.running() {
            while self.stores[i].snapshot().job("default", id).is_none() {
                assert!(
                    Instant::now() < deadline,
                    "server {i} did not receive job {id} within {timeout:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

fn register(id: &str) -> Command {
    let mut job = Job {
        id: id.into(),
        task_groups: vec![TaskGroup {
            name: "g".into(),
            count: 1,
            tasks: vec![Task {
                name: "t".into(),
                driver: "exec".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    job.canonicalize();
    Command::JobRegister {
        job: Box::new(job),
        eval: None,
        now: 1,
        enforce_index: None,
        tracked_versions: None,
    }
}

const ELECTION: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_form_one_region_through_retry_join_and_followers_forward_writes() {
    let region = Region::start(3).await;
    let leader = region.leader(ELECTION).await;
    for (_, node) in region.running() {
        let mut formation = node.formation();
        let deadline = Instant::now() + ELECTION;
        while *formation.borrow_and_update() != FormationState::Formed {
            assert!(
                Instant::now() < deadline,
                "a server did not see the region form"
            );
            let _ = tokio::time::timeout(Duration::from_millis(100), formation.changed()).await;
        }
    }
    // Bootstrapped once: one membership with all three as voters, everywhere.
    let deadline = Instant::now() + ELECTION;
    for (_, node) in region.running() {
        while node.stats().voters.len() != 3 {
            assert!(
                Instant::now() < deadline,
                "voters: {:?}",
                node.stats().voters
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let follower = (leader + 1) % 3;
    let response = region
        .node(follower)
        .propose(register("from-follower"))
        .await;
    assert_eq!(response.unwrap().error, None);
    region.converge_on("from-follower", ELECTION).await;
    // A linearizable read on a follower sees the write at once.
    region.node((leader + 2) % 3).read_barrier().await.unwrap();
    assert!(region.stores[(leader + 2) % 3]
        .snapshot()
        .job("default", "from-follower")
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_in_a_minority_acknowledges_nothing_and_the_region_converges_after() {
    let region = Region::start(3).await;
    let old = region.leader(ELECTION).await;
    region.node(old).propose(register("before")).await.unwrap();
    region.converge_on("before", ELECTION).await;

    region.cut(old);
    // The isolated leader cannot commit: its write fails (and is never acknowledged).
    let isolated = region.node(old).clone();
    let write = tokio::spawn(async move { isolated.propose(register("lost")).await });
    // Nor can it answer a linearizable read.
    let read = region.node(old).read_barrier().await;
    assert!(
        read.is_err(),
        "an isolated leader answered a consistent read"
    );

    // The majority elects a new leader and serves.
    let new = region.leader(ELECTION).await;
    assert_ne!(new, old);
    region.node(new).propose(register("after")).await.unwrap();
    let outcome = write.await.unwrap();
    assert!(
        matches!(
            outcome,
            Err(ProposeError::Timeout { .. }
                | ProposeError::NotLeader { .. }
                | ProposeError::Forward { .. })
        ),
        "the isolated leader acknowledged a write: {outcome:?}"
    );

    region.heal();
    region.converge_on("after", ELECTION).await;
    region.converge_on("before", ELECTION).await;
    // The old leader's unacknowledged write was overwritten by the new leader's log.
    for (i, _) in region.running() {
        assert!(
            region.stores[i].snapshot().job("default", "lost").is_none(),
            "server {i} applied a write that was never committed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_restarted_from_disk_rebuilds_the_same_state() {
    let mut region = Region::start(3).await;
    let leader = region.leader(ELECTION).await;
    for n in 0..100 {
        region
            .node(leader)
            .propose(register(&format!("job-{n}")))
            .await
            .unwrap();
    }
    region.converge_on("job-99", ELECTION).await;
    let before: Vec<usize> = (0..3)
        .map(|i| region.stores[i].snapshot().jobs(None).len())
        .collect();
    assert_eq!(before, [100, 100, 100]);
    for i in 0..3 {
        region.stop(i).await;
    }
    for i in 0..3 {
        region.launch(i).await;
    }
    let leader = region.leader(ELECTION).await;
    region
        .node(leader)
        .propose(register("after-restart"))
        .await
        .unwrap();
    region.converge_on("after-restart", ELECTION).await;
    for i in 0..3 {
        assert_eq!(
            region.stores[i].snapshot().jobs(None).len(),
            101,
            "server {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_far_behind_catches_up_from_a_snapshot_and_a_new_server_joins_as_a_voter() {
    let mut region = Region::start(3).await;
    let leader = region.leader(ELECTION).await;
    let behind = (leader + 1) % 3;
    region.stop(behind).await;
    // Far more than snapshot_every + the log kept behind it: the log it needs is purged.
    for n in 0..300 {
        region
            .node(leader)
            .propose(register(&format!("job-{n}")))
            .await
            .unwrap();
    }
    let purged = region.node(leader).stats().last_purged_index;
    assert!(purged.is_some(), "the leader never purged its log");
    region.launch(behind).await;
    region.converge_on("job-299", Duration::from_secs(20)).await;
    assert_eq!(region.stores[behind].snapshot().jobs(None).len(), 300);

    // A fourth server, started later with the same retry_join, is added as a voter.
    region.dirs.push(tempfile::tempdir().unwrap());
    region.nodes.push(None);
    region.stores.push(Arc::new(StateStore::new()));
    region.launch(3).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leader = region.leader(ELECTION).await;
        if region.node(leader).stats().voters.len() == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fourth server never became a voter"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    region.converge_on("job-299", ELECTION).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_unknown_id_or_the_last_voter_is_refused_and_changes_nothing() {
    let region = Region::start(3).await;
    let leader = region.leader(ELECTION).await;
    let node = region.node(leader);
    let err = node.remove_server(42).await.unwrap_err();
    assert!(err.to_string().contains("not a member"), "{err}");
    assert_eq!(node.stats().voters.len(), 3);
    let follower_id = 1000 + ((leader + 1) % 3) as u64;
    node.remove_server(follower_id).await.unwrap();
    assert_eq!(node.stats().voters.len(), 2);
    let other_id = 1000 + ((leader + 2) % 3) as u64;
    node.remove_server(other_id).await.unwrap();
    let err = node.remove_server(1000 + leader as u64).await.unwrap_err();
    assert!(err.to_string().contains("last voter"), "{err}");
    assert_eq!(node.stats().voters, vec![1000 + leader as u64]);
    node.propose(register("alone")).await.unwrap();
}
