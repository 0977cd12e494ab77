use super::*;
use crate::model::*;

fn job(id: &str, count: i64) -> Job {
    let mut job = Job {
        id: id.into(),
        task_groups: vec![TaskGroup {
            name: "g".into(),
            count,
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
    job
}

fn eval_for(job: &Job, id: &str) -> Evaluation {
    Evaluation {
        id: id.into(),
        namespace: job.namespace.clone(),
        job_id: job.id.clone(),
        eval_type: job.job_type.as_str().into(),
        triggered_by: trigger::JOB_REGISTER.into(),
        status: EvalStatus::Pending,
        ..Default::default()
    }
}

#[test]
fn registering_a_job_stores_it_with_its_evaluation_in_one_step() {
    let mut state = State::default();
    let j = job("web", 1);
    let (resp, effects) = state.apply(
        5,
        &Command::JobRegister {
            job: Box::new(j.clone()),
            eval: Some(eval_for(&j, "e1")),
            now: 7,
        },
    );
    assert_eq!(resp.error, None);
    assert_eq!(resp.job_modify_index, 5);
    let stored = state.job("default", "web").unwrap();
    assert_eq!(stored.version, 0);
    assert_eq!(stored.create_index, 5);
    assert_eq!(stored.status, JobStatus::Pending);
    let eval = state.eval("e1").unwrap();
    assert_eq!(eval.job_modify_index, 5);
    assert_eq!(eval.create_index, 5);
    assert_eq!(effects.pending_evals.len(), 1);
    assert_eq!(state.table_index(Table::Jobs), 5);
    assert_eq!(state.table_index(Table::Evals), 5);
    assert_eq!(state.table_index(Table::Nodes), 0);
}

#[test]
fn a_changed_job_gets_a_new_version_and_an_unchanged_one_does_not() {
    let mut state = State::default();
    let j = job("web", 1);
    state.apply(
        1,
        &Command::JobRegister {
            job: Box::new(j.clone()),
            eval: None,
            now: 1,
        },
    );
    state.apply(
        2,
        &Command::JobRegister {
            job: Box::new(j.clone()),
            eval: None,
            now: 2,
        },
    );
    assert_eq!(state.job("default", "web").unwrap().version, 0);
    let j2 = job("web", 3);
    state.apply(
        3,
        &Command::JobRegister {
            job: Box::new(j2),
            eval: None,
            now: 3,
        },
    );
    let stored = state.job("default", "web").unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(stored.create_index, 1);
    assert_eq!(stored.job_modify_index, 3);
    assert_eq!(state.job_versions("default", "web").len(), 2);
}

#[test]
fn only_the_newest_versions_are_kept() {
    let mut state = State::default();
    for i in 0..10u64 {
        let j = job("web", i as i64 + 1);
        state.apply(
            i + 1,
            &Command::JobRegister {
                job: Box::new(j),
                eval: None,
                now: 0,
            },
        );
    }
    let versions = state.job_versions("default", "web");
    assert_eq!(versions.len() as u64, JOB_TRACKED_VERSIONS);
    assert_eq!(versions[0].version, 9);
}

#[test]
fn deregistering_an_unknown_job_is_rejected_without_change() {
    let mut state = State::default();
    let (resp, _) = state.apply(
        1,
        &Command::JobDeregister {
            namespace: "default".into(),
            job_id: "nope".into(),
            purge: false,
            eval: None,
            now: 0,
        },
    );
    assert!(resp.error.unwrap().contains("nope"));
    assert_eq!(state.table_index(Table::Jobs), 0);
}

#[test]
fn stop_then_purge() {
    let mut state = State::default();
    let j = job("web", 1);
    state.apply(
        1,
        &Command::JobRegister {
            job: Box::new(j),
            eval: None,
            now: 0,
        },
    );
    state.apply(
        2,
        &Command::JobDeregister {
            namespace: "default".into(),
            job_id: "web".into(),
            purge: false,
            eval: None,
            now: 0,
        },
    );
    let stopped = state.job("default", "web").unwrap();
    assert!(stopped.stop);
    assert_eq!(stopped.version, 1);
    state.apply(
        3,
        &Command::JobDeregister {
            namespace: "default".into(),
            job_id: "web".into(),
            purge: true,
            eval: None,
            now: 0,
        },
    );
    assert!(state.job("default", "web").is_none());
    assert!(state.job_versions("default", "web").is_empty());
}

fn alloc_for(job: &Job, id: &str, node: &str) -> Allocation {
    Allocation {
        id: id.into(),
        namespace: job.namespace.clone(),
        job_id: job.id.clone(),
        job: Some(std::sync::Arc::new(job.clone())),
        task_group: "g".into(),
        node_id: node.into(),
        name: format!("{}.g[0]", job.id),
        ..Default::default()
    }
}

#[test]
fn plans_and_client_updates_drive_the_job_status() {
    let mut state = State::default();
    let j = job("web", 1);
    state.apply(
        1,
        &Command::JobRegister {
            job: Box::new(j.clone()),
            eval: Some(eval_for(&j, "e1")),
            now: 0,
        },
    );
    let mut done = eval_for(&j, "e1");
    done.status = EvalStatus::Complete;
    state.apply(
        2,
        &Command::PlanApply(Box::new(PlanResult {
            eval: Some(done),
            allocs: vec![alloc_for(&j, "a1", "n1")],
            ..Default::default()
        })),
    );
    assert_eq!(
        state.job("default", "web").unwrap().status,
        JobStatus::Running
    );
    assert_eq!(state.allocs_by_node("n1").len(), 1);
    assert_eq!(state.alloc("a1").unwrap().create_index, 2);

    let (_, effects) = state.apply(
        3,
        &Command::AllocClientUpdate {
            updates: vec![AllocClientUpdate {
                id: "a1".into(),
                client_status: ClientStatus::Complete,
                ..Default::default()
            }],
            evals: vec![],
            now: 0,
        },
    );
    assert!(effects.capacity_changed);
    assert_eq!(state.job("default", "web").unwrap().status, JobStatus::Dead);
    assert_eq!(state.alloc("a1").unwrap().create_index, 2);
    assert_eq!(state.alloc("a1").unwrap().modify_index, 3);
}

#[test]
fn a_plan_never_rolls_back_what_the_client_reported() {
    let mut state = State::default();
    let j = job("web", 1);
    state.apply(
        1,
        &Command::JobRegister {
            job: Box::new(j.clone()),
            eval: None,
            now: 0,
        },
    );
    state.apply(
        2,
        &Command::PlanApply(Box::new(PlanResult {
            allocs: vec![alloc_for(&j, "a1", "n1")],
            ..Default::default()
        })),
    );
    state.apply(
        3,
        &Command::AllocClientUpdate {
            updates: vec![AllocClientUpdate {
                id: "a1".into(),
                client_status: ClientStatus::Running,
                ..Default::default()
            }],
            evals: vec![],
            now: 0,
        },
    );
    // A later in-place update carries the scheduler's (stale) client status.
    state.apply(
        4,
        &Command::PlanApply(Box::new(PlanResult {
            allocs: vec![alloc_for(&j, "a1", "n1")],
            ..Default::default()
        })),
    );
    assert_eq!(
        state.alloc("a1").unwrap().client_status,
        ClientStatus::Running
    );
}

#[test]
fn snapshot_round_trip_rebuilds_indexes() {
    let mut state = State::default();
    let j = job("web", 1);
    state.apply(
        1,
        &Command::JobRegister {
            job: Box::new(j.clone()),
            eval: Some(eval_for(&j, "e1")),
            now: 0,
        },
    );
    state.apply(
        2,
        &Command::PlanApply(Box::new(PlanResult {
            allocs: vec![alloc_for(&j, "a1", "n1")],
            ..Default::default()
        })),
    );
    let file = state.to_snapshot();
    let json = serde_json::to_vec(&file).unwrap();
    let back = State::from_snapshot(serde_json::from_slice(&json).unwrap()).unwrap();
    assert_eq!(back.to_snapshot(), file);
    assert_eq!(back.allocs_by_node("n1").len(), 1);
    assert_eq!(back.evals_by_job("default", "web").len(), 1);
    assert_eq!(back.table_index(Table::Allocs), 2);
}

#[test]
fn unknown_snapshot_format_is_refused() {
    let mut file = State::default().to_snapshot();
    file.format_version = 99;
    assert!(State::from_snapshot(file).unwrap_err().contains("99"));
}

#[test]
fn prefixes_find_ids() {
    let mut state = State::default();
    let j = job("web", 1);
    state.apply(
        1,
        &Command::JobRegister {
            job: Box::new(j.clone()),
            eval: None,
            now: 0,
        },
    );
    state.apply(
        2,
        &Command::PlanApply(Box::new(PlanResult {
            allocs: vec![
                alloc_for(&j, "abc1", "n"),
                alloc_for(&j, "abd2", "n"),
                alloc_for(&j, "b", "n"),
            ],
            ..Default::default()
        })),
    );
    assert_eq!(
        state.ids_with_prefix(Table::Allocs, "ab"),
        vec!["abc1", "abd2"]
    );
    assert_eq!(state.ids_with_prefix(Table::Allocs, "abc"), vec!["abc1"]);
    assert_eq!(state.ids_with_prefix(Table::Jobs, "w"), vec!["web"]);
}

#[tokio::test]
async fn blocking_queries_wake_on_their_table_only() {
    let store = std::sync::Arc::new(StateStore::new());
    let j = job("web", 1);
    store.apply(
        1,
        &Command::JobRegister {
            job: Box::new(j.clone()),
            eval: None,
            now: 0,
        },
    );
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .wait_for(&[Table::Nodes], 1, std::time::Duration::from_millis(300))
                .await
                .1
        })
    };
    // A jobs change does not wake a nodes query...
    store.apply(
        2,
        &Command::JobRegister {
            job: Box::new(job("api", 1)),
            eval: None,
            now: 0,
        },
    );
    assert_eq!(waiter.await.unwrap(), WaitOutcome::TimedOut);
    // ...a node change does.
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .wait_for(&[Table::Nodes], 1, std::time::Duration::from_secs(5))
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    store.apply(
        3,
        &Command::NodeRegister {
            node: Box::new(Node {
                id: "n1".into(),
                ..Default::default()
            }),
            now: 0,
        },
    );
    let (state, outcome) = waiter.await.unwrap();
    assert_eq!(outcome, WaitOutcome::Changed);
    assert_eq!(state.node("n1").unwrap().status, NodeStatus::Ready);
}
