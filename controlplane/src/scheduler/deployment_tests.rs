//! Deployments as scheduler runs make them: created for a new job version, older ones
//! cancelled, destructive updates rolled at `max_parallel` as allocations turn healthy,
//! canaries placed and, after promotion, the rest replaced; paused and failed deployments
//! hold still. Health and promotion come through the state's commands, as the client and the
//! deployment watcher send them.

use std::sync::Arc;

use super::testkit::{job, node, World};
use super::*;
use crate::model::*;
use crate::state::Command;

/// Nomad's trigger for the watcher's evaluations.
const WATCHER: &str = "deployment-watcher";

/// A service job `web` of `count` with an `update` block.
fn web(count: i64, max_parallel: i64, canary: i64) -> Job {
    let mut j = job("web", JobType::Service, count, 100, 64);
    j.update = Some(UpdateStrategy {
        max_parallel: Some(max_parallel),
        canary: Some(canary),
        ..Default::default()
    });
    j.task_groups[0].update = None;
    j.canonicalize();
    j
}

/// The same job running another command: a destructive change.
fn next_version(j: &Job, command: &str) -> Job {
    let mut j = j.clone();
    j.task_groups[0].tasks[0]
        .config
        .insert("command".into(), serde_json::json!(command));
    j
}

fn world() -> World {
    World::new(vec![
        node("n1", 100_000, 100_000),
        node("n2", 100_000, 100_000),
    ])
}

fn latest(w: &World) -> Arc<Deployment> {
    w.state
        .latest_deployment("default", "web")
        .expect("the job has a deployment")
}

/// The client reports the allocations running, healthy or not (keeping their canary mark).
fn report_health(w: &mut World, ids: &[String], healthy: bool) {
    let updates = ids
        .iter()
        .map(|id| {
            let alloc = w.state.alloc(id).expect("allocation exists");
            let mut status = alloc.deployment_status.clone().unwrap_or_default();
            status.healthy = Some(healthy);
            AllocClientUpdate {
                id: id.clone(),
                client_status: ClientStatus::Running,
                deployment_status: Some(status),
                ..Default::default()
            }
        })
        .collect();
    w.apply(Command::AllocClientUpdate {
        updates,
        evals: vec![],
        now: w.env.now,
    });
}

/// What `job plan` would say of registering `job`: the run on a private copy of the state.
fn register_preview(
    w: &mut World,
    job: &Job,
) -> std::collections::BTreeMap<String, DesiredUpdates> {
    let mut private = World {
        state: w.state.clone(),
        index: w.index,
        env: w.env.clone(),
    };
    let eval = private.eval(&job.id, trigger::JOB_REGISTER);
    private.apply(Command::JobRegister {
        job: Box::new(job.clone()),
        eval: Some(eval.clone()),
        now: private.env.now,
        enforce_index: None,
        tracked_versions: None,
    });
    let plan = match schedule(&private.state, &eval, &mut private.env) {
        Ok(plan) => plan,
        Err(e) => match e {},
    };
    annotate(&private.state, &plan)
}

fn placed(plan: &Plan) -> Vec<&Allocation> {
    let mut v: Vec<&Allocation> = plan
        .node_allocation
        .values()
        .flatten()
        .filter(|a| a.create_index == 0 && a.client_status == ClientStatus::Pending)
        .collect();
    v.sort_by_key(|a| a.name.clone());
    v
}

fn stopped(plan: &Plan) -> Vec<&crate::state::AllocStop> {
    plan.node_update.values().flatten().collect()
}

fn live_ids(w: &World) -> Vec<String> {
    w.live("web").iter().map(|a| a.id.clone()).collect()
}

/// Live allocations running the job's current version.
fn on_current(w: &World) -> Vec<Arc<Allocation>> {
    let version = w.state.job("default", "web").map(|j| j.version);
    w.live("web")
        .into_iter()
        .filter(|a| Some(a.job_version()) == version)
        .collect()
}

#[test]
fn a_new_job_gets_a_deployment_and_an_unchanged_resubmission_none() {
    let mut w = world();
    let v1 = web(3, 1, 0);
    let plan = w.register(&v1);
    let d = plan
        .deployment
        .clone()
        .expect("a new job starts a deployment");
    assert_eq!(d.status, deployment_status::RUNNING);
    assert_eq!(d.status_description, deployment_description::RUNNING);
    assert_eq!(d.job_version, 0);
    let g = &d.task_groups["g"];
    assert_eq!((g.desired_total, g.desired_canaries), (3, 0));
    assert_eq!(g.progress_deadline, std::time::Duration::from_secs(600));
    assert_eq!(placed(&plan).len(), 3, "a new job is placed whole");
    assert!(placed(&plan).iter().all(|a| a.deployment_id == d.id));
    assert_eq!(latest(&w).task_groups["g"].placed_allocs, 3);

    let again = w.register(&v1);
    assert!(again.deployment.is_none() && again.is_no_op(), "{again:?}");
    assert_eq!(w.state.deployments_by_job("default", "web").len(), 1);

    // An in-place change is a new version: a new deployment, which the updated allocations
    // join (their health starts over); the old one is cancelled.
    let mut v2 = v1.clone();
    v2.task_groups[0].tasks[0].kill_timeout = Some(std::time::Duration::from_secs(9));
    let plan = w.register(&v2);
    let d2 = plan
        .deployment
        .clone()
        .expect("a new version starts a deployment");
    assert_ne!(d2.id, d.id);
    assert!(stopped(&plan).is_empty());
    let updated: Vec<&Allocation> = plan.node_allocation.values().flatten().collect();
    assert_eq!(updated.len(), 3);
    assert!(updated
        .iter()
        .all(|a| a.deployment_id == d2.id && a.deployment_status.is_none()));
    assert_eq!(
        plan.deployment_updates,
        vec![DeploymentStatusUpdate {
            deployment_id: d.id.clone(),
            status: deployment_status::CANCELLED.into(),
            status_description: deployment_description::NEWER_JOB.into(),
            updated_at: w.env.now,
        }]
    );
    assert_eq!(
        w.state.deployment(&d.id).unwrap().status,
        deployment_status::CANCELLED
    );
}

#[test]
fn a_job_without_max_parallel_has_no_deployment() {
    let mut w = world();
    let plan = w.register(&web(2, 0, 0));
    assert!(plan.deployment.is_none());
    assert!(placed(&plan).iter().all(|a| a.deployment_id.is_empty()));
}

#[test]
fn a_destructive_update_rolls_max_parallel_at_a_time_as_replacements_turn_healthy() {
    let mut w = world();
    let v1 = web(5, 2, 0);
    w.register(&v1);
    let old = live_ids(&w);
    report_health(&mut w, &old, true);

    let v2 = next_version(&v1, "/bin/false");
    let preview = register_preview(&mut w, &v2);
    assert_eq!(
        (preview["g"].destructive_update, preview["g"].ignore),
        (2, 3),
        "{preview:?}"
    );
    let plan = w.register(&v2);
    let d = plan
        .deployment
        .clone()
        .expect("the new version's deployment");
    assert_eq!(d.task_groups["g"].desired_total, 5);
    let stops = stopped(&plan);
    assert_eq!(stops.len(), 2, "{plan:?}");
    assert!(stops
        .iter()
        .all(|s| s.desired_description == DESC_JOB_UPDATED));
    let new = placed(&plan);
    assert_eq!(new.len(), 2);
    assert!(new.iter().all(|a| a.deployment_id == d.id));
    // Replacements keep the names of what they replace: the lowest first.
    let names: Vec<&str> = new.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["web.g[0]", "web.g[1]"]);
    assert_eq!(w.live("web").len(), 5, "three old ones keep running");

    // Nothing more until the replacements are healthy.
    let idle = w.rerun("web", WATCHER);
    assert!(idle.is_no_op(), "{idle:?}");
    let first: Vec<String> = on_current(&w).iter().map(|a| a.id.clone()).collect();
    report_health(&mut w, &first, true);
    assert_eq!(latest(&w).task_groups["g"].healthy_allocs, 2);

    let plan = w.rerun("web", WATCHER);
    assert_eq!((stopped(&plan).len(), placed(&plan).len()), (2, 2));
    assert_eq!(on_current(&w).len(), 4);
    // One healthy, one not yet: one more may go.
    let second: Vec<String> = on_current(&w)
        .iter()
        .filter(|a| !first.contains(&a.id))
        .map(|a| a.id.clone())
        .collect();
    report_health(&mut w, &second[..1], true);
    let plan = w.rerun("web", WATCHER);
    assert_eq!((stopped(&plan).len(), placed(&plan).len()), (1, 1));
    assert_eq!(on_current(&w).len(), 5);
    assert_eq!(w.live("web").len(), 5);
    assert_eq!(latest(&w).task_groups["g"].placed_allocs, 5);
}

#[test]
fn an_unhealthy_replacement_stops_the_rollout() {
    let mut w = world();
    let v1 = web(4, 1, 0);
    w.register(&v1);
    w.register(&next_version(&v1, "/bin/false"));
    let new: Vec<String> = on_current(&w).iter().map(|a| a.id.clone()).collect();
    assert_eq!(new.len(), 1);
    report_health(&mut w, &new, false);
    assert!(w.rerun("web", WATCHER).is_no_op());
}

#[test]
fn canaries_wait_for_promotion_then_the_rest_rolls() {
    let mut w = world();
    let v1 = web(3, 1, 1);
    w.register(&v1);
    let old = live_ids(&w);
    assert!(
        latest(&w).task_groups["g"].desired_canaries == 0,
        "nothing to canary at first"
    );

    let v2 = next_version(&v1, "/bin/false");
    let preview = register_preview(&mut w, &v2);
    assert_eq!(
        (
            preview["g"].canary,
            preview["g"].ignore,
            preview["g"].destructive_update
        ),
        (1, 3, 0),
        "`job plan` shows the canary and the old allocations left alone: {preview:?}"
    );
    let plan = w.register(&v2);
    let d = plan.deployment.clone().expect("deployment");
    assert_eq!(d.task_groups["g"].desired_canaries, 1);
    assert_eq!(
        d.status_description,
        deployment_description::RUNNING_NEEDS_PROMOTION
    );
    assert!(stopped(&plan).is_empty(), "old allocations keep running");
    let canaries = placed(&plan);
    assert_eq!(canaries.len(), 1);
    let canary = canaries[0].clone();
    assert!(canary.deployment_status.as_ref().is_some_and(|s| s.canary));
    assert_eq!(
        canary.name, "web.g[0]",
        "a canary takes the name it will replace"
    );
    assert_eq!(
        latest(&w).task_groups["g"].placed_canaries,
        vec![canary.id.clone()]
    );
    assert_eq!(w.live("web").len(), 4);

    // Healthy or not, nothing else happens before promotion.
    report_health(&mut w, std::slice::from_ref(&canary.id), true);
    assert!(w.rerun("web", WATCHER).is_no_op());
    assert!(old
        .iter()
        .all(|id| !w.state.alloc(id).unwrap().is_terminal()));

    w.apply(Command::DeploymentPromote {
        deployment_id: d.id.clone(),
        all: true,
        groups: vec![],
        eval: None,
        now: w.env.now,
    });
    let plan = w.rerun("web", WATCHER);
    // The old allocation under the canary's name goes; one more is replaced (max_parallel 1,
    // the canary is healthy).
    let stops = stopped(&plan);
    assert_eq!(stops.len(), 2, "{plan:?}");
    assert!(stops
        .iter()
        .any(|s| s.alloc_id == old[0] && s.desired_description == DESC_NOT_NEEDED));
    assert_eq!(placed(&plan).len(), 1);
    assert_eq!(placed(&plan)[0].name, "web.g[1]");
    assert!(!w.state.alloc(&canary.id).unwrap().is_terminal());

    let fresh: Vec<String> = placed(&plan).iter().map(|a| a.id.clone()).collect();
    report_health(&mut w, &fresh, true);
    let plan = w.rerun("web", WATCHER);
    assert_eq!((stopped(&plan).len(), placed(&plan).len()), (1, 1));
    assert_eq!(on_current(&w).len(), 3);
    assert_eq!(w.live("web").len(), 3);
    let mut names: Vec<String> = w.live("web").iter().map(|a| a.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["web.g[0]", "web.g[1]", "web.g[2]"]);
}

#[test]
fn blue_green_stops_every_old_allocation_on_promotion() {
    let mut w = world();
    let mut v1 = web(2, 2, 2);
    v1.update.as_mut().unwrap().auto_promote = Some(true);
    v1.task_groups[0].update.as_mut().unwrap().auto_promote = Some(true);
    w.register(&v1);
    let old = live_ids(&w);
    let plan = w.register(&next_version(&v1, "/bin/false"));
    let d = plan.deployment.clone().expect("deployment");
    assert_eq!(
        d.status_description,
        deployment_description::RUNNING_AUTO_PROMOTION
    );
    let canaries: Vec<String> = placed(&plan).iter().map(|a| a.id.clone()).collect();
    assert_eq!(canaries.len(), 2);
    assert_eq!(w.live("web").len(), 4, "blue and green side by side");
    report_health(&mut w, &canaries, true);
    w.apply(Command::DeploymentPromote {
        deployment_id: d.id.clone(),
        all: true,
        groups: vec![],
        eval: None,
        now: w.env.now,
    });
    let plan = w.rerun("web", WATCHER);
    assert!(placed(&plan).is_empty(), "{plan:?}");
    let mut stops: Vec<String> = stopped(&plan).iter().map(|s| s.alloc_id.clone()).collect();
    stops.sort();
    let mut expected = old.clone();
    expected.sort();
    assert_eq!(stops, expected);
    let mut live = live_ids(&w);
    live.sort();
    let mut want = canaries.clone();
    want.sort();
    assert_eq!(live, want);
    assert!(w.rerun("web", WATCHER).is_no_op());
}

fn set_status(w: &mut World, id: &str, status: &str, description: &str) {
    w.apply(Command::DeploymentStatusUpdate {
        update: DeploymentStatusUpdate {
            deployment_id: id.into(),
            status: status.into(),
            status_description: description.into(),
            updated_at: w.env.now,
        },
        job: None,
        eval: None,
        now: w.env.now,
    });
}

#[test]
fn a_paused_deployment_holds_its_rollout_until_resumed() {
    let mut w = world();
    let v1 = web(3, 1, 0);
    w.register(&v1);
    w.register(&next_version(&v1, "/bin/false"));
    let d = latest(&w);
    let new: Vec<String> = on_current(&w).iter().map(|a| a.id.clone()).collect();
    report_health(&mut w, &new, true);
    set_status(
        &mut w,
        &d.id,
        deployment_status::PAUSED,
        deployment_description::PAUSED,
    );
    assert!(w.rerun("web", WATCHER).is_no_op());
    // A lost allocation is still replaced while paused.
    let lost_node = w.live("web")[0].node_id.clone();
    let before = w
        .live("web")
        .iter()
        .filter(|a| a.node_id == lost_node)
        .count();
    w.apply(Command::NodeUpdateStatus {
        node_id: lost_node.clone(),
        status: NodeStatus::Down,
        evals: vec![],
        now: w.env.now,
    });
    let plan = w.rerun("web", trigger::NODE_UPDATE);
    assert_eq!(placed(&plan).len(), before, "{plan:?}");
    assert!(placed(&plan).iter().all(|a| a.deployment_id == d.id));
    set_status(
        &mut w,
        &d.id,
        deployment_status::RUNNING,
        deployment_description::RUNNING,
    );
    let healthy: Vec<String> = on_current(&w).iter().map(|a| a.id.clone()).collect();
    report_health(&mut w, &healthy, true);
    let plan = w.rerun("web", WATCHER);
    assert_eq!(stopped(&plan).len(), 1, "resumed: the rollout goes on");
}

#[test]
fn a_failed_deployment_places_nothing_and_stops_its_unpromoted_canaries() {
    let mut w = world();
    let v1 = web(3, 1, 1);
    w.register(&v1);
    let plan = w.register(&next_version(&v1, "/bin/false"));
    let d = plan.deployment.clone().expect("deployment");
    let canary = placed(&plan)[0].id.clone();
    set_status(
        &mut w,
        &d.id,
        deployment_status::FAILED,
        deployment_description::FAILED_BY_USER,
    );
    let plan = w.rerun("web", WATCHER);
    assert!(placed(&plan).is_empty(), "{plan:?}");
    let stops = stopped(&plan);
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].alloc_id, canary);
    assert_eq!(w.live("web").len(), 3, "the old version keeps serving");
    assert!(w.rerun("web", WATCHER).is_no_op());
}

#[test]
fn a_failed_rolling_deployment_replaces_nothing_more() {
    let mut w = world();
    let v1 = web(3, 1, 0);
    w.register(&v1);
    w.register(&next_version(&v1, "/bin/false"));
    let d = latest(&w);
    let new: Vec<String> = on_current(&w).iter().map(|a| a.id.clone()).collect();
    report_health(&mut w, &new, true);
    set_status(
        &mut w,
        &d.id,
        deployment_status::FAILED,
        deployment_description::FAILED_BY_USER,
    );
    assert!(w.rerun("web", WATCHER).is_no_op());
    // Its failed allocation is not rescheduled either (the watcher reverts the job).
    w.report(&new[0], ClientStatus::Failed);
    let plan = w.rerun("web", trigger::ALLOC_FAILURE);
    assert!(placed(&plan).is_empty(), "{plan:?}");
}

#[test]
fn a_failed_allocation_of_a_running_deployment_waits_for_the_watcher() {
    let mut w = world();
    w.register(&web(2, 1, 0));
    let ids = live_ids(&w);
    w.report(&ids[0], ClientStatus::Failed);
    let plan = w.rerun("web", trigger::ALLOC_FAILURE);
    assert!(plan.is_no_op() && plan.created_evals.is_empty(), "{plan:?}");
    // The watcher allows its replacement.
    w.apply(Command::AllocUpdateDesiredTransition {
        transitions: [(
            ids[0].clone(),
            DesiredTransition {
                reschedule: Some(true),
                ..Default::default()
            },
        )]
        .into(),
        evals: vec![],
        now: w.env.now,
    });
    let plan = w.rerun("web", trigger::ALLOC_FAILURE);
    assert_eq!(placed(&plan).len(), 1, "{plan:?}");
    assert_eq!(placed(&plan)[0].previous_allocation, ids[0]);
}

#[test]
fn stopping_the_job_cancels_its_deployment() {
    let mut w = world();
    w.register(&web(2, 1, 0));
    let d = latest(&w);
    let mut stopped_job = web(2, 1, 0);
    stopped_job.stop = true;
    let plan = w.register(&stopped_job);
    assert_eq!(plan.deployment_updates.len(), 1);
    assert_eq!(
        plan.deployment_updates[0].status_description,
        deployment_description::STOPPED_JOB
    );
    assert_eq!(
        w.state.deployment(&d.id).unwrap().status,
        deployment_status::CANCELLED
    );
    assert!(w.live("web").is_empty());
}

/// A system job `sys` with `update { max_parallel = N }` on four nodes.
fn system_world(max_parallel: i64) -> (World, Job) {
    let w = World::new(
        ["n1", "n2", "n3", "n4"]
            .iter()
            .map(|id| node(id, 4000, 4096))
            .collect(),
    );
    let mut j = job("sys", JobType::System, 1, 100, 64);
    j.update = Some(UpdateStrategy {
        max_parallel: Some(max_parallel),
        ..Default::default()
    });
    j.task_groups[0].update = None;
    j.canonicalize();
    (w, j)
}

fn sys_on_version(w: &World, version: u64) -> Vec<String> {
    w.live("sys")
        .iter()
        .filter(|a| a.job_version() == version)
        .map(|a| a.id.clone())
        .collect()
}

#[test]
fn a_system_job_rolls_out_max_parallel_nodes_at_a_time() {
    let (mut w, v1) = system_world(2);
    let plan = w.register(&v1);
    let d1 = plan
        .deployment
        .clone()
        .expect("a new system job starts a deployment");
    assert_eq!(d1.task_groups["g"].desired_total, 4, "one per node");
    assert_eq!(
        placed(&plan).len(),
        4,
        "a new system job is placed everywhere"
    );
    assert!(placed(&plan).iter().all(|a| a.deployment_id == d1.id));
    let ids: Vec<String> = w.live("sys").iter().map(|a| a.id.clone()).collect();
    report_health(&mut w, &ids, true);

    let plan = w.register(&next_version(&v1, "/bin/false"));
    let d2 = plan
        .deployment
        .clone()
        .expect("the new version's deployment");
    assert_eq!(d2.task_groups["g"].desired_total, 4);
    assert_eq!((stopped(&plan).len(), placed(&plan).len()), (2, 2));
    assert!(placed(&plan).iter().all(|a| a.deployment_id == d2.id));
    assert_eq!(
        plan.deployment_updates.len(),
        1,
        "the first deployment is cancelled"
    );
    assert_eq!(w.live("sys").len(), 4, "two nodes keep the old version");

    assert!(
        w.rerun("sys", WATCHER).is_no_op(),
        "nothing until they are healthy"
    );
    let fresh = sys_on_version(&w, 1);
    report_health(&mut w, &fresh, true);
    let plan = w.rerun("sys", WATCHER);
    assert_eq!((stopped(&plan).len(), placed(&plan).len()), (2, 2));
    assert_eq!(sys_on_version(&w, 1).len(), 4);
    assert!(
        plan.deployment.is_none(),
        "the deployment is not written again"
    );
}

#[test]
fn a_paused_system_deployment_replaces_nothing() {
    let (mut w, v1) = system_world(1);
    w.register(&v1);
    w.register(&next_version(&v1, "/bin/false"));
    let d = w.state.latest_deployment("default", "sys").unwrap();
    let fresh = sys_on_version(&w, 1);
    report_health(&mut w, &fresh, true);
    set_status(
        &mut w,
        &d.id,
        deployment_status::PAUSED,
        deployment_description::PAUSED,
    );
    assert!(w.rerun("sys", WATCHER).is_no_op());
    assert_eq!(sys_on_version(&w, 1).len(), 1);
}

#[test]
fn an_old_allocation_keeps_running_when_its_replacement_finds_no_room() {
    // One node with room for three small allocations; the new version wants more memory
    // than the node has left even after one old allocation is stopped.
    let mut w = World::new(vec![node("n1", 10_000, 300)]);
    let v1 = web(3, 1, 0);
    w.register(&v1);
    let old = live_ids(&w);
    let mut v2 = next_version(&v1, "/bin/false");
    v2.task_groups[0].tasks[0]
        .resources
        .as_mut()
        .unwrap()
        .memory_mb = 200;
    let plan = w.register(&v2);
    assert!(placed(&plan).is_empty());
    assert!(plan.node_update.is_empty(), "{plan:?}");
    assert!(plan.eval.failed_tg_allocs.contains_key("g"));
    assert_eq!(live_ids(&w), old, "the old version keeps serving");
}
