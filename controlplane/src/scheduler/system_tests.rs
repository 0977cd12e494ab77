//! System and sysbatch scheduling: one allocation per ready, eligible, feasible node, following
//! nodes as they join, leave, drain and turn ineligible.

use std::collections::BTreeMap;
use std::time::Duration;

use super::testkit::{job, node, World, SEC};
use super::*;
use crate::model::*;
use crate::state::Command;

fn system(id: &str) -> Job {
    job(id, JobType::System, 1, 100, 128)
}

fn nodes(ids: &[&str]) -> Vec<Node> {
    ids.iter().map(|id| node(id, 4000, 4096)).collect()
}

fn node_event(w: &mut World, node_id: &str, triggered_by: &str) -> Vec<Evaluation> {
    let mut n = 0;
    let evals = w.state.node_update_evals(node_id, triggered_by, &mut || {
        n += 1;
        format!("node-eval-{node_id}-{n}")
    });
    w.apply(Command::EvalUpdate {
        evals: evals.clone(),
        now: w.env.now,
    });
    evals
}

#[test]
fn one_allocation_per_ready_eligible_feasible_node_and_none_elsewhere() {
    let mut no_driver = node("nodriver", 4000, 4096);
    no_driver.drivers.clear();
    let mut elsewhere = node("dc2node", 4000, 4096);
    elsewhere.datacenter = "dc2".into();
    let mut w = World::new(vec![
        node("n1", 4000, 4096),
        node("n2", 4000, 4096),
        no_driver,
        elsewhere,
        node("off", 4000, 4096),
    ]);
    w.apply(Command::NodeUpdateEligibility {
        node_id: "off".into(),
        eligibility: eligibility::INELIGIBLE.into(),
        evals: vec![],
        now: w.env.now,
    });
    let mut j = system("sys");
    j.datacenters = vec!["dc1".into()];
    let plan = w.register(&j);
    assert_eq!(w.live_nodes("sys"), vec!["n1", "n2"]);
    assert!(w.live("sys").iter().all(|a| a.name == "sys.g[0]"));
    // A node the group cannot run on is not a failure while the group runs somewhere.
    assert!(plan.eval.failed_tg_allocs.is_empty(), "{plan:?}");
    assert!(plan.created_evals.is_empty(), "no blocked evaluation");
    // Scheduling again changes nothing.
    assert!(w.rerun("sys", trigger::JOB_REGISTER).is_no_op());
}

#[test]
fn a_feasible_node_without_room_is_a_failure_with_one_blocked_evaluation() {
    let mut w = World::new(vec![node("n1", 4000, 4096), node("tiny", 50, 64)]);
    let plan = w.register(&system("sys"));
    assert_eq!(w.live_nodes("sys"), vec!["n1"]);
    let failed = &plan.eval.failed_tg_allocs["g"];
    assert_eq!(failed.nodes_exhausted, 1);
    assert_eq!(plan.created_evals.len(), 1);
    assert_eq!(plan.created_evals[0].status, EvalStatus::Blocked);
}

#[test]
fn a_group_no_node_can_run_reports_why_but_blocks_nothing() {
    let mut no_driver = node("n1", 4000, 4096);
    no_driver.drivers.clear();
    let mut w = World::new(vec![no_driver]);
    let plan = w.register(&system("sys"));
    assert_eq!(plan.placement_count(), 0);
    assert_eq!(
        plan.eval.failed_tg_allocs["g"].constraint_filtered["missing drivers"],
        1
    );
    assert!(plan.created_evals.is_empty());
}

#[test]
fn a_joining_node_gets_the_system_job_through_its_node_evaluation() {
    let mut w = World::new(nodes(&["n1"]));
    w.register(&system("sys"));
    // A service job with nothing on the new node gets no evaluation; sysbatch jobs neither.
    w.register(&job("web", JobType::Service, 1, 100, 128));
    w.register(&job("once", JobType::Sysbatch, 1, 100, 128));
    let joining = node("n2", 4000, 4096);
    let mut n = 0;
    let evals = w
        .state
        .node_evals(&joining, trigger::NODE_REGISTER, &mut || {
            n += 1;
            format!("reg-{n}")
        });
    assert_eq!(
        evals.iter().map(|e| e.job_id.as_str()).collect::<Vec<_>>(),
        vec!["sys"]
    );
    assert_eq!(evals[0].node_id, "n2");
    w.apply(Command::NodeRegisterWithEvals {
        node: Box::new(joining),
        evals: evals.clone(),
        now: w.env.now,
    });
    assert!(w.state.eval(&evals[0].id).is_some(), "in the same entry");
    w.schedule(&evals[0]);
    assert_eq!(w.live_nodes("sys"), vec!["n1", "n2"]);
    assert_eq!(w.live_nodes("once"), vec!["n1"], "sysbatch did not follow");
}

#[test]
fn a_node_that_goes_down_loses_its_allocation_and_nothing_moves() {
    let mut w = World::new(nodes(&["n1", "n2"]));
    w.register(&system("sys"));
    w.apply(Command::NodeUpdateStatus {
        node_id: "n2".into(),
        status: NodeStatus::Down,
        evals: vec![],
        now: w.env.now,
    });
    let evals = node_event(&mut w, "n2", trigger::NODE_UPDATE);
    assert_eq!(evals.len(), 1);
    let plan = w.schedule(&evals[0]);
    assert_eq!(
        plan.node_update["n2"][0].client_status,
        Some(ClientStatus::Lost)
    );
    assert_eq!(w.live_nodes("sys"), vec!["n1"]);
    // Back up: it gets a new one, naming the lost one as its predecessor.
    let lost = w
        .allocs("sys")
        .into_iter()
        .find(|a| a.node_id == "n2")
        .unwrap();
    w.apply(Command::NodeUpdateStatus {
        node_id: "n2".into(),
        status: NodeStatus::Ready,
        evals: vec![],
        now: w.env.now,
    });
    let evals = node_event(&mut w, "n2", trigger::NODE_UPDATE);
    w.schedule(&evals[0]);
    assert_eq!(w.live_nodes("sys"), vec!["n1", "n2"]);
    let again = w
        .live("sys")
        .into_iter()
        .find(|a| a.node_id == "n2")
        .unwrap();
    assert_eq!(again.previous_allocation, lost.id);
}

#[test]
fn a_drained_node_stops_its_allocation_and_an_ineligible_one_keeps_it() {
    let mut w = World::new(nodes(&["n1", "n2", "n3"]));
    w.register(&system("sys"));
    // n2 drains: the drainer marks its allocation to migrate.
    let on_n2 = w
        .live("sys")
        .into_iter()
        .find(|a| a.node_id == "n2")
        .unwrap();
    w.apply(Command::NodeUpdateDrain {
        node_id: "n2".into(),
        drain_strategy: Some(DrainStrategy::default()),
        mark_eligible: false,
        meta: BTreeMap::new(),
        evals: vec![],
        now: w.env.now,
    });
    w.apply(Command::AllocUpdateDesiredTransition {
        transitions: [(
            on_n2.id.clone(),
            DesiredTransition {
                migrate: Some(true),
                ..Default::default()
            },
        )]
        .into(),
        evals: vec![],
        now: w.env.now,
    });
    // n3 is only marked ineligible.
    w.apply(Command::NodeUpdateEligibility {
        node_id: "n3".into(),
        eligibility: eligibility::INELIGIBLE.into(),
        evals: vec![],
        now: w.env.now,
    });
    let plan = w.rerun("sys", trigger::NODE_DRAIN);
    assert_eq!(
        plan.node_update["n2"][0].desired_description,
        tainted::DESC_MIGRATING
    );
    assert_eq!(plan.placement_count(), 0, "nothing moves elsewhere");
    assert_eq!(w.live_nodes("sys"), vec!["n1", "n3"]);
    // A new job version that needs new allocations: not on the ineligible node.
    let mut v2 = system("sys");
    v2.task_groups[0].tasks[0]
        .env
        .insert("V".into(), "2".into());
    w.register(&v2);
    assert_eq!(w.live_nodes("sys"), vec!["n1"]);
    assert!(w.live("sys").iter().all(|a| a.job_version() == 1));
    // Eligible again: it gets the new version.
    w.apply(Command::NodeUpdateEligibility {
        node_id: "n3".into(),
        eligibility: eligibility::ELIGIBLE.into(),
        evals: vec![],
        now: w.env.now,
    });
    let evals = node_event(&mut w, "n3", trigger::NODE_UPDATE);
    assert_eq!(evals.len(), 1, "the system job selects n3");
    w.schedule(&evals[0]);
    assert_eq!(w.live_nodes("sys"), vec!["n1", "n3"]);
}

#[test]
fn system_updates_are_in_place_or_destructive_as_tasks_updated_says() {
    let mut w = World::new(nodes(&["n1", "n2"]));
    // Every node at once: rollouts at `max_parallel` are `deployment_tests`' subject.
    let mut v1 = system("sys");
    v1.task_groups[0].update.as_mut().unwrap().max_parallel = Some(0);
    w.register(&v1);
    let before: Vec<String> = w.live("sys").iter().map(|a| a.id.clone()).collect();
    let mut v2 = v1.clone();
    v2.task_groups[0].tasks[0].kill_timeout = Some(Duration::from_secs(30));
    assert_eq!(tasks_updated(&v1, &v2, "g"), None);
    let plan = w.register(&v2);
    assert!(plan.node_update.is_empty());
    let after: Vec<String> = w.live("sys").iter().map(|a| a.id.clone()).collect();
    assert_eq!(before, after, "updated in place");
    assert!(w.live("sys").iter().all(|a| a.job_version() == 1));
    let mut v3 = v2.clone();
    v3.task_groups[0].tasks[0]
        .config
        .insert("args".into(), serde_json::json!(["-x"]));
    assert!(tasks_updated(&v2, &v3, "g")
        .unwrap()
        .contains("task config"));
    let plan = w.register(&v3);
    assert_eq!(plan.node_update.values().flatten().count(), 2);
    for a in w.live("sys") {
        assert!(!before.contains(&a.id));
        assert!(
            before.contains(&a.previous_allocation),
            "replaced on the same node"
        );
    }
    assert_eq!(w.live_nodes("sys"), vec!["n1", "n2"]);
}

#[test]
fn sysbatch_does_not_run_finished_work_again() {
    let mut w = World::new(nodes(&["n1", "n2"]));
    let j = job("once", JobType::Sysbatch, 1, 100, 128);
    w.register(&j);
    let allocs = w.live("once");
    w.report(&allocs[0].id, ClientStatus::Complete);
    w.report(&allocs[1].id, ClientStatus::Failed);
    w.env.now += 60 * SEC;
    assert!(w.rerun("once", trigger::JOB_REGISTER).is_no_op());
    // A node that joins later gets the work when the job is evaluated again.
    w.add_node(node("n3", 4000, 4096));
    w.rerun("once", trigger::JOB_REGISTER);
    assert_eq!(w.live_nodes("once"), vec!["n3"]);
    // A new version that changes the task runs everywhere again.
    let mut v2 = j.clone();
    v2.task_groups[0].tasks[0]
        .env
        .insert("V".into(), "2".into());
    w.register(&v2);
    assert_eq!(w.live_nodes("once"), vec!["n1", "n2", "n3"]);
}

#[test]
fn stopping_a_system_job_stops_it_everywhere() {
    let mut w = World::new(nodes(&["n1", "n2"]));
    w.register(&system("sys"));
    w.apply(Command::JobDeregister {
        namespace: "default".into(),
        job_id: "sys".into(),
        purge: false,
        eval: None,
        now: w.env.now,
    });
    let plan = w.rerun("sys", trigger::JOB_DEREGISTER);
    assert_eq!(plan.node_update.values().flatten().count(), 2);
    assert!(w.live("sys").is_empty());
}
