//! The operator's node commands and garbage collection, applied to a state.

use std::collections::BTreeMap;

use super::*;
use crate::model::*;

const T: i64 = 1_714_564_800_000_000_000; // 2024-05-01T12:00:00Z
const HOUR: i64 = 3_600_000_000_000;

/// A state with node n1 (ready, eligible), job "web" and one running allocation a1 on n1.
fn cluster() -> State {
    let mut state = State::default();
    let node = Node {
        id: "n1".into(),
        node_pool: "default".into(),
        status: NodeStatus::Ready,
        ..Default::default()
    };
    state.apply(
        1,
        &Command::NodeRegister {
            node: Box::new(node),
            now: T,
        },
    );
    let mut job = Job {
        id: "web".into(),
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
    state.apply(
        2,
        &Command::JobRegister {
            job: Box::new(job),
            eval: None,
            now: T,
            enforce_index: None,
            tracked_versions: None,
        },
    );
    let alloc = Allocation {
        id: "a1".into(),
        namespace: "default".into(),
        job_id: "web".into(),
        task_group: "g".into(),
        node_id: "n1".into(),
        eval_id: "e0".into(),
        ..Default::default()
    };
    let (r, _) = state.apply(
        3,
        &Command::PlanApply(Box::new(PlanResult {
            allocs: vec![alloc],
            now: T,
            ..Default::default()
        })),
    );
    assert_eq!(r.error, None);
    state.apply(
        4,
        &Command::AllocClientUpdate {
            updates: vec![AllocClientUpdate {
                id: "a1".into(),
                client_status: ClientStatus::Running,
                ..Default::default()
            }],
            evals: vec![],
            now: T,
        },
    );
    state
}

fn evals(state: &State, node: &str, trigger: &str) -> Vec<Evaluation> {
    let mut n = 0;
    state.node_update_evals(node, trigger, &mut || {
        n += 1;
        format!("ev{n}")
    })
}

fn drain(deadline: i64) -> Option<DrainStrategy> {
    Some(DrainStrategy {
        deadline,
        ..Default::default()
    })
}

#[test]
fn registering_records_an_event_once_and_keeps_what_the_servers_own() {
    let state = cluster();
    let node = state.node("n1").unwrap();
    assert_eq!(node.scheduling_eligibility, eligibility::ELIGIBLE);
    assert_eq!(node.events.len(), 1);
    assert_eq!(node.events[0].message, node_event_message::REGISTERED);
    assert_eq!(node.events[0].create_index, 1);

    let mut state = state;
    let cmd = Command::NodeUpdateDrain {
        node_id: "n1".into(),
        drain_strategy: drain(HOUR),
        mark_eligible: false,
        meta: BTreeMap::new(),
        evals: vec![],
        now: T,
    };
    assert_eq!(state.apply(5, &cmd).0.error, None);
    // The client re-registers with its own idea of these: the servers' stay.
    let fresh = Node {
        id: "n1".into(),
        status: NodeStatus::Ready,
        scheduling_eligibility: eligibility::ELIGIBLE.into(),
        ..Default::default()
    };
    state.apply(
        6,
        &Command::NodeRegister {
            node: Box::new(fresh),
            now: T + 1,
        },
    );
    let node = state.node("n1").unwrap();
    assert!(node.drain && node.drain_strategy.is_some());
    assert_eq!(node.scheduling_eligibility, eligibility::INELIGIBLE);
    assert_eq!(
        node.events.len(),
        2,
        "no event for a re-registration that changes nothing"
    );
}

#[test]
fn a_drain_starts_is_canceled_and_completes_as_nomads_does() {
    let mut state = cluster();
    let node_evals = evals(&state, "n1", trigger::NODE_DRAIN);
    assert_eq!(
        node_evals.len(),
        1,
        "one evaluation for the job on the node"
    );
    let (r, effects) = state.apply(
        5,
        &Command::NodeUpdateDrain {
            node_id: "n1".into(),
            drain_strategy: drain(HOUR),
            mark_eligible: false,
            meta: BTreeMap::from([("message".to_string(), "kernel".to_string())]),
            evals: node_evals,
            now: T,
        },
    );
    assert_eq!(r.error, None);
    assert_eq!(effects.pending_evals.len(), 1);
    assert_eq!(effects.pending_evals[0].triggered_by, trigger::NODE_DRAIN);
    let node = state.node("n1").unwrap();
    let strategy = node.drain_strategy.clone().unwrap();
    assert_eq!(strategy.started_at, "2024-05-01T12:00:00Z");
    assert_eq!(strategy.force_deadline, "2024-05-01T13:00:00Z");
    assert!(node.drain);
    assert_eq!(node.scheduling_eligibility, eligibility::INELIGIBLE);
    let last = node.last_drain.clone().unwrap();
    assert_eq!(last.status, drain_status::DRAINING);
    assert_eq!(last.meta["message"], "kernel");
    assert_eq!(
        node.events.last().unwrap().message,
        node_event_message::DRAIN_SET
    );
    assert_eq!(
        node.events.last().unwrap().subsystem,
        node_event_subsystem::DRAIN
    );

    // Eligible while draining is refused, and changes nothing.
    let before = state.node("n1").unwrap();
    let (r, _) = state.apply(
        6,
        &Command::NodeUpdateEligibility {
            node_id: "n1".into(),
            eligibility: eligibility::ELIGIBLE.into(),
            evals: vec![],
            now: T,
        },
    );
    assert!(r.error.unwrap().contains("while it is draining"));
    assert_eq!(state.node("n1").unwrap(), before);

    // Cancel with mark-eligible: canceled, eligible, capacity back.
    let (r, effects) = state.apply(
        7,
        &Command::NodeUpdateDrain {
            node_id: "n1".into(),
            drain_strategy: None,
            mark_eligible: true,
            meta: BTreeMap::new(),
            evals: vec![],
            now: T + HOUR / 2,
        },
    );
    assert_eq!(r.error, None);
    assert!(effects.capacity_changed);
    let node = state.node("n1").unwrap();
    assert!(!node.drain && node.drain_strategy.is_none());
    assert_eq!(node.scheduling_eligibility, eligibility::ELIGIBLE);
    let last = node.last_drain.clone().unwrap();
    assert_eq!(last.status, drain_status::CANCELED);
    assert_eq!(last.started_at, "2024-05-01T12:00:00Z");
    assert_eq!(
        last.meta["message"], "kernel",
        "kept when the cancel brings none"
    );
    assert_eq!(
        node.events.last().unwrap().message,
        node_event_message::DRAIN_DISABLED
    );

    // A second drain, then the drainer's completion: complete, and still ineligible.
    state.apply(
        8,
        &Command::NodeUpdateDrain {
            node_id: "n1".into(),
            drain_strategy: drain(0),
            mark_eligible: false,
            meta: BTreeMap::new(),
            evals: vec![],
            now: T + HOUR,
        },
    );
    assert_eq!(
        state
            .node("n1")
            .unwrap()
            .drain_strategy
            .clone()
            .unwrap()
            .force_deadline,
        "",
        "no deadline"
    );
    state.note_index(9);
    state.complete_node_drain(10, "n1", T + 2 * HOUR).unwrap();
    let node = state.node("n1").unwrap();
    assert!(node.drain_strategy.is_none() && !node.drain);
    assert_eq!(node.scheduling_eligibility, eligibility::INELIGIBLE);
    assert_eq!(
        node.last_drain.clone().unwrap().status,
        drain_status::COMPLETE
    );
    assert_eq!(
        node.events.last().unwrap().message,
        node_event_message::DRAIN_COMPLETE
    );
    assert_eq!(node.modify_index, 10);
    assert!(
        state.complete_node_drain(11, "n1", T).is_err(),
        "not draining any more"
    );
}

#[test]
fn eligibility_changes_record_events_and_free_capacity() {
    let mut state = cluster();
    let (r, effects) = state.apply(
        5,
        &Command::NodeUpdateEligibility {
            node_id: "n1".into(),
            eligibility: eligibility::INELIGIBLE.into(),
            evals: vec![],
            now: T,
        },
    );
    assert_eq!(r.error, None);
    assert!(!effects.capacity_changed);
    let node = state.node("n1").unwrap();
    assert_eq!(node.scheduling_eligibility, eligibility::INELIGIBLE);
    assert_eq!(
        node.events.last().unwrap().message,
        node_event_message::INELIGIBLE
    );
    let (r, effects) = state.apply(
        6,
        &Command::NodeUpdateEligibility {
            node_id: "n1".into(),
            eligibility: eligibility::ELIGIBLE.into(),
            evals: evals(&state, "n1", trigger::NODE_UPDATE),
            now: T,
        },
    );
    assert_eq!(r.error, None);
    assert!(effects.capacity_changed);
    assert_eq!(effects.pending_evals.len(), 1);
    for (wanted, needle) in [
        ("maybe", "invalid scheduling eligibility"),
        ("eligible", ""),
    ] {
        let (r, _) = state.apply(
            7 + u64::from(wanted == "eligible"),
            &Command::NodeUpdateEligibility {
                node_id: if needle.is_empty() { "nope" } else { "n1" }.into(),
                eligibility: wanted.into(),
                evals: vec![],
                now: T,
            },
        );
        let e = r.error.unwrap();
        assert!(
            e.contains(if needle.is_empty() {
                "node \"nope\" not found"
            } else {
                needle
            }),
            "{e}"
        );
    }
}

#[test]
fn events_are_bounded_oldest_first_out() {
    let mut state = cluster();
    for i in 0..(MAX_NODE_EVENTS as u64 + 5) {
        let wanted = if i % 2 == 0 {
            eligibility::INELIGIBLE
        } else {
            eligibility::ELIGIBLE
        };
        let (r, _) = state.apply(
            5 + i,
            &Command::NodeUpdateEligibility {
                node_id: "n1".into(),
                eligibility: wanted.into(),
                evals: vec![],
                now: T,
            },
        );
        assert_eq!(r.error, None);
    }
    let node = state.node("n1").unwrap();
    assert_eq!(node.events.len(), MAX_NODE_EVENTS);
    assert_ne!(node.events[0].message, node_event_message::REGISTERED);
    let indexes: Vec<u64> = node.events.iter().map(|e| e.create_index).collect();
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");
    assert_eq!(*indexes.last().unwrap(), 5 + MAX_NODE_EVENTS as u64 + 4);
}

#[test]
fn a_purge_is_refused_with_live_allocations_unless_forced() {
    let mut state = cluster();
    let (r, _) = state.apply(
        5,
        &Command::NodeDeregister {
            node_ids: vec!["n1".into()],
            force: false,
            evals: vec![],
            now: T,
        },
    );
    let e = r.error.unwrap();
    assert!(e.contains("1 allocation(s)") && e.contains("a1"), "{e}");
    assert!(state.node("n1").is_some());
    let (r, effects) = state.apply(
        6,
        &Command::NodeDeregister {
            node_ids: vec!["n1".into()],
            force: true,
            evals: evals(&state, "n1", trigger::NODE_UPDATE),
            now: T,
        },
    );
    assert_eq!(r.error, None);
    assert!(state.node("n1").is_none());
    assert_eq!(effects.pending_evals.len(), 1);
    let alloc = state.alloc("a1").unwrap();
    assert_eq!(alloc.client_status, ClientStatus::Lost);
    assert_eq!(alloc.desired_status, DesiredStatus::Stop);
    let (r, _) = state.apply(
        7,
        &Command::NodeDeregister {
            node_ids: vec!["n1".into()],
            force: true,
            evals: vec![],
            now: T,
        },
    );
    assert_eq!(r.error.unwrap(), "node \"n1\" not found");
}

#[test]
fn node_pools_follow_nomads_rules() {
    let mut state = cluster();
    assert_eq!(
        state
            .node_pools()
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["all", "default"]
    );
    let pool = |name: &str| NodePool {
        name: name.into(),
        description: "d".into(),
        ..Default::default()
    };
    for (i, (pools, needle)) in [
        (
            vec![pool("default")],
            "modifying node pool \"default\" is not allowed",
        ),
        (
            vec![pool("all")],
            "modifying node pool \"all\" is not allowed",
        ),
        (vec![pool("bad name")], "must match regex"),
    ]
    .into_iter()
    .enumerate()
    {
        let (r, _) = state.apply(5 + i as u64, &Command::NodePoolUpsert { pools });
        assert!(r.error.as_deref().unwrap_or("").contains(needle), "{r:?}");
    }
    assert_eq!(state.table_index(Table::NodePools), 0);
    let (r, _) = state.apply(
        8,
        &Command::NodePoolUpsert {
            pools: vec![pool("gpu")],
        },
    );
    assert_eq!(r.error, None);
    let (r, _) = state.apply(
        9,
        &Command::NodePoolUpsert {
            pools: vec![pool("gpu")],
        },
    );
    assert_eq!(r.error, None);
    let gpu = state.node_pool("gpu").unwrap();
    assert_eq!((gpu.create_index, gpu.modify_index), (8, 9));
    assert_eq!(state.table_index(Table::NodePools), 9);
    assert_eq!(state.ids_with_prefix(Table::NodePools, "g"), ["gpu"]);

    // A pool in use cannot go: a node in it, then an unfinished job asking for it.
    let node = Node {
        id: "n2".into(),
        node_pool: "gpu".into(),
        ..Default::default()
    };
    state.apply(
        10,
        &Command::NodeRegister {
            node: Box::new(node),
            now: T,
        },
    );
    assert_eq!(state.nodes_in_pool("gpu").len(), 1);
    assert_eq!(state.nodes_in_pool("all").len(), 2);
    let (r, _) = state.apply(
        11,
        &Command::NodePoolDelete {
            names: vec!["gpu".into()],
        },
    );
    assert!(r.error.unwrap().contains("has 1 node(s)"));
    state.apply(
        12,
        &Command::NodeDeregister {
            node_ids: vec!["n2".into()],
            force: false,
            evals: vec![],
            now: T,
        },
    );
    let mut job = (*state.job("default", "web").unwrap()).clone();
    job.node_pool = "gpu".into();
    job.id = "ml".into();
    state.apply(
        13,
        &Command::JobRegister {
            job: Box::new(job),
            eval: None,
            now: T,
            enforce_index: None,
            tracked_versions: None,
        },
    );
    let (r, _) = state.apply(
        14,
        &Command::NodePoolDelete {
            names: vec!["gpu".into()],
        },
    );
    assert!(r.error.unwrap().contains("non-terminal jobs (ml)"));
    state.apply(
        15,
        &Command::JobDeregister {
            namespace: "default".into(),
            job_id: "ml".into(),
            purge: true,
            eval: None,
            now: T,
        },
    );
    for (index, name, needle) in [
        (
            16,
            "default",
            "deleting node pool \"default\" is not allowed",
        ),
        (17, "nope", "node pool \"nope\" not found"),
    ] {
        let (r, _) = state.apply(
            index,
            &Command::NodePoolDelete {
                names: vec![name.into()],
            },
        );
        let e = r.error.unwrap();
        assert!(e.contains(needle), "{e}");
    }
    state = State::from_snapshot(state.to_snapshot()).unwrap();
    assert!(state.node_pool("gpu").is_some(), "pools survive a snapshot");
    let (r, _) = state.apply(
        18,
        &Command::NodePoolDelete {
            names: vec!["gpu".into()],
        },
    );
    assert_eq!(r.error, None);
    assert!(state.node_pool("gpu").is_none());
}

#[test]
fn stopping_an_allocation_marks_it_for_migration_with_an_evaluation() {
    let mut state = cluster();
    let eval = Evaluation {
        id: "stop-eval".into(),
        namespace: "default".into(),
        job_id: "web".into(),
        triggered_by: trigger::ALLOC_STOP.into(),
        status: EvalStatus::Pending,
        ..Default::default()
    };
    let transition = DesiredTransition {
        migrate: Some(true),
        ..Default::default()
    };
    let (r, effects) = state.apply(
        5,
        &Command::AllocUpdateDesiredTransition {
            transitions: BTreeMap::from([("a1".to_string(), transition.clone())]),
            evals: vec![eval],
            now: T,
        },
    );
    assert_eq!(r.error, None);
    assert_eq!(effects.pending_evals.len(), 1);
    let alloc = state.alloc("a1").unwrap();
    assert!(alloc.desired_transition.should_migrate());
    assert_eq!(alloc.modify_index, 5);
    let (r, _) = state.apply(
        6,
        &Command::AllocUpdateDesiredTransition {
            transitions: BTreeMap::from([("zz".to_string(), transition)]),
            evals: vec![],
            now: T,
        },
    );
    assert!(r.error.unwrap().contains("zz"));
}

#[test]
fn garbage_collection_takes_what_finished_long_enough_ago() {
    let mut state = cluster();
    let thresholds = gc::GcThresholds::default();
    assert_eq!(
        gc::collect(&state, T + 100 * HOUR, &thresholds, true),
        None,
        "everything runs"
    );
    // The job stops; its allocation completes; its evaluation finishes.
    let job = state.job("default", "web").unwrap();
    let mut eval = Evaluation {
        id: "e0".into(),
        namespace: "default".into(),
        job_id: "web".into(),
        eval_type: "service".into(),
        status: EvalStatus::Pending,
        ..Default::default()
    };
    state.apply(
        5,
        &Command::JobDeregister {
            namespace: "default".into(),
            job_id: job.id.clone(),
            purge: false,
            eval: Some(eval.clone()),
            now: T,
        },
    );
    eval.status = EvalStatus::Complete;
    state.apply(
        6,
        &Command::EvalUpdate {
            evals: vec![eval],
            now: T,
        },
    );
    state.apply(
        7,
        &Command::AllocClientUpdate {
            updates: vec![AllocClientUpdate {
                id: "a1".into(),
                client_status: ClientStatus::Complete,
                ..Default::default()
            }],
            evals: vec![],
            now: T,
        },
    );
    state.apply(
        8,
        &Command::NodeUpdateStatus {
            node_id: "n1".into(),
            status: NodeStatus::Down,
            evals: vec![],
            now: T,
        },
    );
    assert_eq!(state.job("default", "web").unwrap().status, JobStatus::Dead);

    // Younger than every threshold: nothing, unless forced.
    assert_eq!(gc::collect(&state, T + HOUR / 2, &thresholds, false), None);
    // Past the eval threshold only: the evaluation (and its allocation), not the job.
    let Some(Command::GarbageCollect {
        jobs,
        eval_ids,
        alloc_ids,
        node_ids,
        ..
    }) = gc::collect(&state, T + 2 * HOUR, &thresholds, false)
    else {
        panic!("something to collect after 2h");
    };
    assert!(jobs.is_empty() && node_ids.is_empty());
    assert_eq!(eval_ids, ["e0"]);
    assert_eq!(alloc_ids, ["a1"]);
    // Forced: everything, the down node too.
    let command = gc::collect(&state, T, &thresholds, true).unwrap();
    let Command::GarbageCollect { jobs, node_ids, .. } = &command else {
        panic!("{command:?}");
    };
    assert_eq!(jobs, &[("default".to_string(), "web".to_string())]);
    assert_eq!(node_ids, &["n1".to_string()]);

    // Something came back to life between collection and apply: it stays.
    let mut revived = state.clone();
    let mut job = (*revived.job("default", "web").unwrap()).clone();
    job.stop = false;
    job.priority = 70;
    let pending = Evaluation {
        id: "e-revived".into(),
        namespace: "default".into(),
        job_id: "web".into(),
        status: EvalStatus::Pending,
        ..Default::default()
    };
    revived.apply(
        9,
        &Command::JobRegister {
            job: Box::new(job),
            eval: Some(pending),
            now: T,
            enforce_index: None,
            tracked_versions: None,
        },
    );
    revived.apply(10, &command);
    assert!(
        revived.job("default", "web").is_some(),
        "a job registered again is kept"
    );

    let (r, _) = state.apply(9, &command);
    assert_eq!(r.error, None);
    assert!(state.job("default", "web").is_none());
    assert!(state.job_versions("default", "web").is_empty());
    assert!(state.eval("e0").is_none() && state.alloc("a1").is_none());
    assert!(state.allocs_by_node("n1").is_empty() && state.node("n1").is_none());
    assert_eq!(state.table_index(Table::Allocs), 9);
    assert_eq!(gc::collect(&state, T, &thresholds, true), None);
}

#[test]
fn a_batch_job_still_wanted_keeps_its_finished_allocations() {
    let mut state = cluster();
    let mut job = (*state.job("default", "web").unwrap()).clone();
    job.job_type = JobType::Batch;
    job.priority = 60;
    state.apply(
        5,
        &Command::JobRegister {
            job: Box::new(job),
            eval: None,
            now: T,
            enforce_index: None,
            tracked_versions: None,
        },
    );
    let eval = Evaluation {
        id: "e0".into(),
        namespace: "default".into(),
        job_id: "web".into(),
        eval_type: "batch".into(),
        status: EvalStatus::Complete,
        ..Default::default()
    };
    state.apply(
        6,
        &Command::EvalUpdate {
            evals: vec![eval],
            now: T,
        },
    );
    state.apply(
        7,
        &Command::AllocClientUpdate {
            updates: vec![AllocClientUpdate {
                id: "a1".into(),
                client_status: ClientStatus::Complete,
                ..Default::default()
            }],
            evals: vec![],
            now: T,
        },
    );
    let thresholds = gc::GcThresholds::default();
    assert_eq!(
        gc::collect(&state, T + 2 * HOUR, &thresholds, false),
        None,
        "batch waits 24h"
    );
    let Some(Command::GarbageCollect {
        eval_ids,
        alloc_ids,
        jobs,
        ..
    }) = gc::collect(&state, T + 25 * HOUR, &thresholds, false)
    else {
        panic!("the batch evaluation is old enough");
    };
    assert_eq!(eval_ids, ["e0"]);
    if state.job("default", "web").unwrap().status == JobStatus::Dead {
        assert_eq!(jobs.len(), 1);
    } else {
        assert!(
            alloc_ids.is_empty(),
            "a wanted batch job's allocations stay: {alloc_ids:?}"
        );
    }
}
