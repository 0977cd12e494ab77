//! Rescheduling failed allocations: delays per delay function, attempts in the interval,
//! delayed follow-up evaluations, forced reschedules; and the in-place/destructive split of
//! `tasks_updated`.

use std::time::Duration;

use super::reschedule::{self, Decision, DESC_RESCHEDULED};
use super::testkit::{node, World, SEC};
use super::*;
use crate::model::time::parse_rfc3339;
use crate::model::*;
use crate::state::Command;

/// The test kit's job with rollouts off (`update { max_parallel = 0 }`): these scenarios are
/// about the reschedule policy alone. Under a deployment (Nomad's default for service jobs)
/// a failed allocation waits for the deployment watcher instead, as `deployment_tests`
/// checks.
fn job(id: &str, job_type: JobType, count: i64, cpu: i64, mem: i64) -> Job {
    let mut j = super::testkit::job(id, job_type, count, cpu, mem);
    for g in &mut j.task_groups {
        if let Some(u) = g.update.as_mut() {
            u.max_parallel = Some(0);
        }
    }
    j
}

fn with_policy(mut j: Job, policy: ReschedulePolicy) -> Job {
    j.task_groups[0].reschedule_policy = Some(policy);
    j.canonicalize();
    j
}

fn policy(function: &str, attempts: i64, unlimited: bool, max_delay_s: u64) -> ReschedulePolicy {
    ReschedulePolicy {
        attempts: Some(attempts),
        interval: Some(Duration::from_secs(3600)),
        delay: Some(Duration::from_secs(5)),
        delay_function: Some(function.into()),
        max_delay: Some(Duration::from_secs(max_delay_s)),
        unlimited: Some(unlimited),
    }
}

/// The one live allocation of `job_id` fails now; the run that follows must create a delayed
/// evaluation. Runs it when it is due and returns (the delay waited, the replacement).
fn fail_and_reschedule(w: &mut World, job_id: &str) -> (i64, Allocation) {
    let live = w.live(job_id);
    assert_eq!(live.len(), 1);
    let failed = live[0].clone();
    w.report(&failed.id, ClientStatus::Failed);
    let failed_at = w.env.now;
    let plan = w.rerun(job_id, trigger::ALLOC_FAILURE);
    assert_eq!(plan.created_evals.len(), 1, "{plan:?}");
    let follow_up = plan.created_evals[0].clone();
    assert_eq!(follow_up.triggered_by, trigger::RETRY_FAILED_ALLOC);
    assert_eq!(follow_up.status, EvalStatus::Pending);
    let due = parse_rfc3339(&follow_up.wait_until).unwrap();
    assert_eq!(
        w.state.alloc(&failed.id).unwrap().followup_eval_id,
        follow_up.id,
        "the failed allocation names its follow-up"
    );
    // Another run before it is due creates nothing more.
    let again = w.rerun(job_id, trigger::ALLOC_FAILURE);
    assert!(
        again.created_evals.is_empty() && again.is_no_op(),
        "{again:?}"
    );
    w.env.now = due;
    w.schedule(&follow_up);
    let replacement = w.live(job_id)[0].clone();
    assert_eq!(replacement.previous_allocation, failed.id);
    assert_eq!(replacement.name, failed.name);
    let stopped = w.state.alloc(&failed.id).unwrap();
    assert_eq!(stopped.desired_status, DesiredStatus::Stop);
    assert_eq!(stopped.desired_description, DESC_RESCHEDULED);
    assert_eq!(stopped.next_allocation, replacement.id);
    // Let it run a while before it fails in turn.
    w.report(&replacement.id, ClientStatus::Running);
    w.env.now += SEC;
    ((due - failed_at) / SEC, (*replacement).clone())
}

fn delays(function: &str, max_delay_s: u64, n: usize) -> Vec<i64> {
    let mut w = World::new(vec![node("n1", 8000, 8192), node("n2", 8000, 8192)]);
    let j = with_policy(
        job("web", JobType::Service, 1, 100, 100),
        policy(function, 0, true, max_delay_s),
    );
    w.register(&j);
    let mut out = Vec::new();
    for _ in 0..n {
        let (delay, replacement) = fail_and_reschedule(&mut w, "web");
        let events = &replacement.reschedule_tracker.as_ref().unwrap().events;
        assert_eq!(events.last().unwrap().delay, delay * SEC);
        out.push(delay);
    }
    out
}

#[test]
fn constant_delays_are_all_the_same() {
    assert_eq!(delays("constant", 0, 3), vec![5, 5, 5]);
}

#[test]
fn exponential_delays_double_up_to_max_delay() {
    assert_eq!(delays("exponential", 20, 5), vec![5, 10, 20, 20, 20]);
}

#[test]
fn fibonacci_delays_add_the_last_two() {
    assert_eq!(delays("fibonacci", 3600, 5), vec![5, 5, 10, 15, 25]);
}

#[test]
fn the_tracker_stays_bounded_when_unlimited() {
    let mut w = World::new(vec![node("n1", 8000, 8192)]);
    let j = with_policy(
        job("web", JobType::Service, 1, 100, 100),
        policy("constant", 0, true, 0),
    );
    w.register(&j);
    let mut last = None;
    for _ in 0..reschedule::MAX_PAST_EVENTS + 3 {
        last = Some(fail_and_reschedule(&mut w, "web").1);
    }
    let events = last.unwrap().reschedule_tracker.unwrap().events;
    assert_eq!(events.len(), reschedule::MAX_PAST_EVENTS + 1);
}

#[test]
fn attempts_exhausted_leave_the_allocation_failed() {
    let mut w = World::new(vec![node("n1", 8000, 8192)]);
    // Batch's default: one attempt in 24 h, 5 s constant.
    let j = job("b", JobType::Batch, 1, 100, 100);
    w.register(&j);
    let (delay, replacement) = fail_and_reschedule(&mut w, "b");
    assert_eq!(delay, 5);
    w.report(&replacement.id, ClientStatus::Failed);
    w.env.now += 60 * SEC;
    let plan = w.rerun("b", trigger::ALLOC_FAILURE);
    assert!(plan.is_no_op() && plan.created_evals.is_empty(), "{plan:?}");
    let after = w.state.alloc(&replacement.id).unwrap();
    assert_eq!(after.client_status, ClientStatus::Failed);
    assert_eq!(
        after.desired_status,
        DesiredStatus::Run,
        "left failed, counted"
    );
    let job = w.state.job("default", "b").unwrap();
    assert_eq!(w.state.job_summary(&job).summary["g"].failed, 2);
}

#[test]
fn a_forced_reschedule_ignores_the_policy() {
    let mut w = World::new(vec![node("n1", 8000, 8192)]);
    let j = with_policy(
        job("web", JobType::Service, 1, 100, 100),
        ReschedulePolicy {
            attempts: Some(0),
            unlimited: Some(false),
            ..Default::default()
        },
    );
    w.register(&j);
    let failed = w.live("web")[0].clone();
    w.report(&failed.id, ClientStatus::Failed);
    assert!(
        w.rerun("web", trigger::ALLOC_FAILURE).is_no_op(),
        "no policy: stays"
    );
    w.apply(Command::AllocUpdateDesiredTransition {
        transitions: [(
            failed.id.clone(),
            DesiredTransition {
                force_reschedule: Some(true),
                ..Default::default()
            },
        )]
        .into(),
        evals: vec![],
        now: w.env.now,
    });
    w.rerun("web", trigger::JOB_REGISTER);
    let live = w.live("web");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].previous_allocation, failed.id);
}

#[test]
fn failed_allocations_due_together_share_one_follow_up() {
    let mut w = World::new(vec![node("n1", 8000, 8192)]);
    w.register(&job("web", JobType::Service, 3, 100, 100));
    let live = w.live("web");
    w.report(&live[0].id, ClientStatus::Failed);
    w.env.now += 2 * SEC;
    w.report(&live[1].id, ClientStatus::Failed);
    w.env.now += 10 * SEC;
    w.report(&live[2].id, ClientStatus::Failed);
    let plan = w.rerun("web", trigger::ALLOC_FAILURE);
    // Service default: 30 s; the first two are 2 s apart (one batch), the third 12 s later.
    assert_eq!(plan.created_evals.len(), 2, "{:?}", plan.created_evals);
    let ids: Vec<String> = live
        .iter()
        .map(|a| w.state.alloc(&a.id).unwrap().followup_eval_id.clone())
        .collect();
    assert_eq!(ids[0], ids[1]);
    assert_ne!(ids[0], ids[2]);
}

#[test]
fn next_delay_follows_each_function_from_the_tracker() {
    let mut j = with_policy(
        job("web", JobType::Service, 1, 100, 100),
        policy("fibonacci", 0, true, 3600),
    );
    let mut alloc = Allocation {
        task_group: "g".into(),
        job: Some(std::sync::Arc::new(j.clone())),
        ..Default::default()
    };
    let p = reschedule::policy_of(&alloc).unwrap();
    assert_eq!(reschedule::next_delay(&alloc, &p), 5 * SEC);
    let event = |delay_s: i64| RescheduleEvent {
        delay: delay_s * SEC,
        ..Default::default()
    };
    alloc.reschedule_tracker = Some(RescheduleTracker {
        events: vec![event(5), event(5), event(10)],
    });
    assert_eq!(reschedule::next_delay(&alloc, &p), 15 * SEC);
    j.task_groups[0].reschedule_policy = Some(policy("exponential", 0, true, 3600));
    alloc.job = Some(std::sync::Arc::new(j));
    let p = reschedule::policy_of(&alloc).unwrap();
    assert_eq!(reschedule::next_delay(&alloc, &p), 20 * SEC);
}

#[test]
fn a_failure_with_no_attempts_left_in_the_interval_is_not_rescheduled() {
    let j = with_policy(
        job("b", JobType::Batch, 1, 100, 100),
        policy("constant", 2, false, 0),
    );
    let now = 10_000 * SEC;
    let mut alloc = Allocation {
        task_group: "g".into(),
        job: Some(std::sync::Arc::new(j)),
        client_status: ClientStatus::Failed,
        modify_time: now,
        ..Default::default()
    };
    let at = |t: i64| RescheduleEvent {
        reschedule_time: t,
        delay: 5 * SEC,
        ..Default::default()
    };
    // Two attempts within the hour: none left.
    alloc.reschedule_tracker = Some(RescheduleTracker {
        events: vec![at(now - 100 * SEC), at(now - 50 * SEC)],
    });
    assert_eq!(reschedule::decide(&alloc, "e", now), Decision::Stay);
    // One of them outside the interval: one left, due after the delay.
    alloc.reschedule_tracker = Some(RescheduleTracker {
        events: vec![at(now - 4000 * SEC), at(now - 50 * SEC)],
    });
    assert_eq!(
        reschedule::decide(&alloc, "e", now),
        Decision::Later(now + 5 * SEC)
    );
}

#[test]
fn tasks_updated_splits_in_place_from_destructive_changes() {
    let base = job("web", JobType::Service, 1, 100, 100);
    let changed = |f: &dyn Fn(&mut Job)| {
        let mut j = base.clone();
        f(&mut j);
        tasks_updated(&base, &j, "g")
    };
    // In place.
    assert_eq!(changed(&|j| j.task_groups[0].count = 5), None);
    assert_eq!(
        changed(&|j| j.task_groups[0].tasks[0].kill_timeout = Some(Duration::from_secs(60))),
        None
    );
    assert_eq!(
        changed(&|j| j.task_groups[0].shutdown_delay = Some(Duration::from_secs(3))),
        None
    );
    assert_eq!(
        changed(&|j| j.task_groups[0].reschedule_policy = Some(policy("fibonacci", 3, false, 9))),
        None
    );
    assert_eq!(
        changed(&|j| j.task_groups[0].constraints.push(Constraint {
            l_target: "${attr.kernel.name}".into(),
            r_target: "linux".into(),
            operand: "=".into(),
        })),
        None
    );
    assert_eq!(
        changed(&|j| j.task_groups[0].services.push(Service {
            name: "web".into(),
            ..Default::default()
        })),
        None
    );
    // Destructive.
    type Change = Box<dyn Fn(&mut Job)>;
    let destructive: Vec<(&str, Change)> = vec![
        (
            "task driver",
            Box::new(|j: &mut Job| j.task_groups[0].tasks[0].driver = "raw_exec".into()),
        ),
        (
            "task env",
            Box::new(|j: &mut Job| {
                j.task_groups[0].tasks[0].env.insert("A".into(), "1".into());
            }),
        ),
        (
            "task user",
            Box::new(|j: &mut Job| j.task_groups[0].tasks[0].user = "nobody".into()),
        ),
        (
            "task meta",
            Box::new(|j: &mut Job| {
                j.meta.insert("owner".into(), "me".into());
            }),
        ),
        (
            "task resources",
            Box::new(|j: &mut Job| {
                j.task_groups[0].tasks[0]
                    .resources
                    .as_mut()
                    .unwrap()
                    .memory_mb = 512
            }),
        ),
        (
            "task resources",
            Box::new(|j: &mut Job| j.task_groups[0].tasks[0].resources.as_mut().unwrap().cores = 1),
        ),
        (
            "ephemeral disk",
            Box::new(|j: &mut Job| {
                j.task_groups[0].ephemeral_disk.as_mut().unwrap().size_mb = Some(900)
            }),
        ),
        (
            "network",
            Box::new(|j: &mut Job| j.task_groups[0].networks.push(NetworkResource::default())),
        ),
        (
            "task artifacts",
            Box::new(|j: &mut Job| {
                j.task_groups[0].tasks[0]
                    .artifacts
                    .push(TaskArtifact::default())
            }),
        ),
        (
            "task lifecycle",
            Box::new(|j: &mut Job| {
                j.task_groups[0].tasks[0].lifecycle = Some(TaskLifecycle::default())
            }),
        ),
        (
            "number of tasks",
            Box::new(|j: &mut Job| {
                let mut t = j.task_groups[0].tasks[0].clone();
                t.name = "side".into();
                j.task_groups[0].tasks.push(t);
            }),
        ),
    ];
    for (what, change) in destructive {
        let reason = changed(&*change);
        assert!(
            reason.as_deref().is_some_and(|r| r.starts_with(what)),
            "{what}: {reason:?}"
        );
    }
}

#[test]
fn service_updates_follow_tasks_updated() {
    let mut w = World::new(vec![node("n1", 8000, 8192)]);
    let v1 = job("web", JobType::Service, 2, 100, 100);
    w.register(&v1);
    let ids: Vec<String> = w.live("web").iter().map(|a| a.id.clone()).collect();
    let mut v2 = v1.clone();
    v2.task_groups[0].tasks[0].kill_timeout = Some(Duration::from_secs(20));
    let plan = w.register(&v2);
    assert!(plan.node_update.is_empty());
    assert_eq!(
        w.live("web")
            .iter()
            .map(|a| a.id.clone())
            .collect::<Vec<_>>(),
        ids
    );
    // A constraint the node no longer satisfies makes the update destructive.
    let mut v3 = v2.clone();
    v3.datacenters = vec!["elsewhere".into()];
    assert_eq!(tasks_updated(&v2, &v3, "g"), None);
    let plan = w.register(&v3);
    // Nothing can run in 'elsewhere': the replacements fail to place, and the old
    // allocations are not stopped for nothing (Nomad's `PopUpdate`): they keep serving, and
    // a blocked evaluation waits for a node that can take the new version.
    assert!(plan.node_update.is_empty(), "{plan:?}");
    assert!(plan.eval.failed_tg_allocs.contains_key("g"));
    assert_eq!(plan.created_evals.len(), 1);
    assert_eq!(plan.created_evals[0].status, EvalStatus::Blocked);
    assert_eq!(
        w.live("web")
            .iter()
            .map(|a| a.id.clone())
            .collect::<Vec<_>>(),
        ids
    );
}
