//! Sequential proposals on a real disk: each commits in order, is applied, and the throughput
//! and commit latency are reported on stderr (a figure, not an assertion: speed is judged in
//! benches, never by a timed test).
//!
//! Run to see the figure:
//! `cargo test -p controlplane --test raft_commit_latency -- --nocapture`

use std::sync::Arc;
use std::time::{Duration, Instant};

use controlplane::model::{EvalStatus, Evaluation, Job, Task, TaskGroup};
use controlplane::raft::{RaftConfig, RaftNode};
use controlplane::state::{Command, StateStore};

/// Enough proposals for a p99 that means something, few enough to keep the test short.
const PROPOSALS: usize = 400;

fn job(id: &str) -> Job {
    let mut config = serde_json::Map::new();
    config.insert("command".into(), "/bin/sleep".into());
    config.insert("args".into(), serde_json::json!(["1000"]));
    let mut job = Job {
        id: id.into(),
        task_groups: vec![TaskGroup {
            name: "web".into(),
            count: 2,
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_proposals_commit_in_order_and_report_their_latency() {
    // The target dir is on the same disk as a real data dir would be (not a tmpfs).
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store = Arc::new(StateStore::new());
    let node = RaftNode::start(
        RaftConfig::new(dir.path(), 1, "127.0.0.1:4647"),
        store.clone(),
    )
    .await
    .unwrap();

    let mut latencies = Vec::with_capacity(PROPOSALS);
    let mut last_index = 0;
    let started = Instant::now();
    for i in 0..PROPOSALS {
        let job = job(&format!("job-{i}"));
        let eval = Evaluation {
            id: format!("eval-{i}"),
            namespace: job.namespace.clone(),
            job_id: job.id.clone(),
            eval_type: "service".into(),
            triggered_by: "job-register".into(),
            status: EvalStatus::Pending,
            ..Default::default()
        };
        let command = Command::JobRegister {
            job: job.into(),
            eval: Some(eval),
            now: i as i64,
            enforce_index: None,
            tracked_versions: None,
        };
        let sent = Instant::now();
        let response = node.propose(command).await.unwrap();
        latencies.push(sent.elapsed());
        assert_eq!(response.error, None);
        assert!(
            response.index > last_index,
            "index went from {last_index} to {}",
            response.index
        );
        last_index = response.index;
    }
    let elapsed = started.elapsed();

    let state = store.snapshot();
    assert_eq!(state.latest_index(), last_index);
    assert_eq!(state.jobs(None).len(), PROPOSALS);
    assert_eq!(state.evals().len(), PROPOSALS);

    latencies.sort();
    eprintln!(
        "raft sequential proposals on {}: {PROPOSALS} in {:.2} s = {:.0} proposals/s; commit \
         latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        dir.path().display(),
        elapsed.as_secs_f64(),
        PROPOSALS as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    node.shutdown().await.unwrap();
}
