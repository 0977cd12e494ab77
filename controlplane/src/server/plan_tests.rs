//! The dry run of `job plan` on a scheduler test world: what it counts, and that it leaves
//! the state alone.

use std::time::Duration;

use super::plan::{dry_run, DryRunEnv, ZERO_TIME};
use crate::jobdiff::{words, DiffType};
use crate::model::{JobType, Service};
use crate::scheduler::testkit::{job, node, World, T0};

fn world() -> World {
    World::new(vec![node("n1", 4000, 4096), node("n2", 4000, 4096)])
}

fn plan_of(w: &World, j: &crate::model::Job) -> super::JobPlanResponse {
    dry_run(&w.state, j, true, &mut DryRunEnv::new(T0), "UTC").unwrap()
}

#[test]
fn a_new_job_plans_creates_and_writes_nothing() {
    let w = world();
    let j = job("web", JobType::Service, 2, 100, 64);
    let before = w.state.latest_index();
    let out = plan_of(&w, &j);
    assert_eq!(w.state.latest_index(), before);
    assert!(w.state.job("default", "web").is_none());
    let desired = &out.annotations.as_ref().unwrap().desired_tg_updates["g"];
    assert_eq!((desired.place, desired.ignore), (2, 0));
    assert_eq!(out.job_modify_index, 0);
    assert!(out.failed_tg_allocs.is_empty());
    assert_eq!(out.next_periodic_launch, ZERO_TIME);
    let diff = out.diff.as_ref().unwrap();
    assert_eq!(diff.diff_type, DiffType::Added);
    assert_eq!(diff.task_groups[0].updates["create"], 2);
    assert_eq!(out.exit_code(), 1);
}

#[test]
fn an_unchanged_job_plans_nothing_and_exits_zero() {
    let mut w = world();
    let j = job("web", JobType::Service, 2, 100, 64);
    w.register(&j);
    let current = w.state.job("default", "web").unwrap();
    let out = plan_of(&w, &j);
    assert_eq!(out.job_modify_index, current.job_modify_index);
    assert_ne!(out.job_modify_index, 0);
    let desired = &out.annotations.as_ref().unwrap().desired_tg_updates["g"];
    assert_eq!(desired.ignore, 2);
    assert_eq!(desired.place + desired.stop + desired.destructive_update, 0);
    assert_eq!(out.diff.as_ref().unwrap().diff_type, DiffType::None);
    assert_eq!(out.exit_code(), 0);
}

#[test]
fn an_in_place_change_updates_the_running_allocations() {
    let mut w = world();
    let j = job("web", JobType::Service, 2, 100, 64);
    w.register(&j);
    let mut changed = j.clone();
    let task = &mut changed.task_groups[0].tasks[0];
    task.kill_timeout = Some(Duration::from_secs(30));
    task.services.push(Service {
        name: "web".into(),
        provider: "nomad".into(),
        ..Default::default()
    });
    let out = plan_of(&w, &changed);
    let desired = &out.annotations.as_ref().unwrap().desired_tg_updates["g"];
    assert_eq!(desired.in_place_update, 2, "{desired:?}");
    assert_eq!(desired.place + desired.stop + desired.destructive_update, 0);
    let diff = out.diff.as_ref().unwrap();
    assert_eq!(diff.diff_type, DiffType::Edited);
    let task = &diff.task_groups[0].tasks[0];
    assert_eq!(task.annotations, vec![words::FORCES_IN_PLACE]);
    assert_eq!(diff.task_groups[0].updates["in-place update"], 2);
    // In-place updates create and destroy nothing: Nomad's exit code 0.
    assert_eq!(out.exit_code(), 0);
}

#[test]
fn a_destructive_change_replaces_allocations() {
    let mut w = world();
    let j = job("batch", JobType::Batch, 2, 100, 64);
    w.register(&j);
    let mut changed = j.clone();
    changed.task_groups[0].tasks[0]
        .config
        .insert("args".into(), serde_json::json!(["new"]));
    let out = plan_of(&w, &changed);
    let desired = &out.annotations.as_ref().unwrap().desired_tg_updates["g"];
    assert_eq!(desired.destructive_update, 2, "{desired:?}");
    assert_eq!(desired.place + desired.stop + desired.in_place_update, 0);
    let diff = out.diff.as_ref().unwrap();
    assert_eq!(
        diff.task_groups[0].tasks[0].annotations,
        vec![words::FORCES_DESTRUCTIVE]
    );
    assert_eq!(out.exit_code(), 1);
    // The state the plan read is the one it leaves: the old allocations still run.
    assert_eq!(w.live("batch").len(), 2);
}

#[test]
fn a_scale_down_destroys_and_what_does_not_fit_is_reported() {
    let mut w = world();
    let j = job("web", JobType::Service, 3, 100, 64);
    w.register(&j);
    let mut smaller = j.clone();
    smaller.task_groups[0].count = 1;
    let out = plan_of(&w, &smaller);
    let desired = &out.annotations.as_ref().unwrap().desired_tg_updates["g"];
    // The one kept runs the new version: updated in place, as Nomad counts it.
    assert_eq!(
        (desired.stop, desired.in_place_update),
        (2, 1),
        "{desired:?}"
    );
    let count = out.diff.as_ref().unwrap().task_groups[0]
        .fields
        .iter()
        .find(|f| f.name == "Count")
        .cloned()
        .unwrap();
    assert_eq!(count.annotations, vec![words::FORCES_DESTROY]);
    assert_eq!(out.exit_code(), 1);

    let huge = job("huge", JobType::Service, 1, 100, 1_000_000);
    let out = plan_of(&w, &huge);
    assert!(out.failed_tg_allocs.contains_key("g"), "{out:?}");
    assert_eq!(
        out.created_evals.len(),
        1,
        "a blocked evaluation would follow"
    );
}
