//! Properties of the scheduler over generated clusters: small states (a few nodes with random
//! capacities, classes, datacenters, drivers, eligibility and status; jobs of all four types
//! with random counts and resources; their allocations in random client states; a job update
//! or stop) built through `State::apply`, then one evaluation per job scheduled, checked by
//! the plan applier's `evaluate_plan` and committed.
//!
//! Checked for every case: a service or batch group never runs more than its count; no node is
//! ever committed beyond its capacity; a stopped job places nothing and leaves nothing live;
//! a system job runs exactly once on every ready, eligible node that can run it (unless the
//! run recorded that node's exhaustion), and nowhere it cannot; the same state and evaluation
//! give the same plan; and a service job whose run placed everything is left alone by the
//! next run (convergence).
//!
//! `PROPTEST_CASES` overrides the number of cases (10,000 by default).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::testkit::{job, node, Env, World, SEC};
use super::*;
use crate::model::*;
use crate::state::Command;

#[derive(Debug, Clone)]
struct NodeSpec {
    cpu: i64,
    mem: i64,
    class: usize,
    dc: usize,
    driver: bool,
    eligible: bool,
    down_later: bool,
}

#[derive(Debug, Clone)]
struct JobSpec {
    job_type: JobType,
    count: i64,
    cpu: i64,
    mem: i64,
    only_dc1: bool,
    /// 0: unchanged, 1: scaled, 2: destructive change, 3: stopped.
    change: u8,
}

#[derive(Debug, Clone)]
struct Case {
    nodes: Vec<NodeSpec>,
    jobs: Vec<JobSpec>,
    /// Client statuses reported for existing allocations, by position.
    reports: Vec<u8>,
}

fn node_spec() -> impl Strategy<Value = NodeSpec> {
    (
        500i64..4000,
        256i64..4096,
        0usize..3,
        0usize..2,
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.15),
    )
        .prop_map(
            |(cpu, mem, class, dc, driver, eligible, down_later)| NodeSpec {
                cpu,
                mem,
                class,
                dc,
                driver,
                eligible,
                down_later,
            },
        )
}

fn job_spec() -> impl Strategy<Value = JobSpec> {
    (
        prop_oneof![
            Just(JobType::Service),
            Just(JobType::Batch),
            Just(JobType::System),
            Just(JobType::Sysbatch)
        ],
        0i64..5,
        50i64..1500,
        32i64..1024,
        prop::bool::weighted(0.3),
        0u8..4,
    )
        .prop_map(|(job_type, count, cpu, mem, only_dc1, change)| JobSpec {
            job_type,
            count,
            cpu,
            mem,
            only_dc1,
            change,
        })
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(node_spec(), 1..5),
        prop::collection::vec(job_spec(), 1..4),
        prop::collection::vec(0u8..6, 0..12),
    )
        .prop_map(|(nodes, jobs, reports)| Case {
            nodes,
            jobs,
            reports,
        })
}

fn build_node(i: usize, s: &NodeSpec) -> Node {
    let mut n = node(&format!("n{i}"), s.cpu, s.mem);
    n.node_class = ["", "small", "big"][s.class].to_string();
    n.datacenter = ["dc1", "dc2"][s.dc].to_string();
    n.attributes.insert("rack".into(), format!("r{}", i % 2));
    if !s.driver {
        n.drivers.clear();
    }
    n
}

fn build_job(i: usize, s: &JobSpec) -> Job {
    let mut j = job(&format!("j{i}"), s.job_type, s.count, s.cpu, s.mem);
    if s.only_dc1 {
        j.datacenters = vec!["dc1".into()];
    }
    j
}

fn changed_job(s: &JobSpec, j: &Job) -> Option<Job> {
    let mut j = j.clone();
    match s.change {
        1 => j.task_groups[0].count = (s.count + 2) % 5,
        2 => {
            j.task_groups[0].tasks[0]
                .env
                .insert("VERSION".into(), "2".into());
        }
        _ => return None,
    }
    Some(j)
}

/// Every node within its capacity, counting what the servers still want running.
fn assert_capacity(w: &World) {
    for n in w.state.nodes() {
        let mut used = ComparableResources::default();
        for a in w.state.allocs_by_node(&n.id) {
            if !a.is_terminal() {
                used.add(a.allocated_resources.comparable());
            }
        }
        assert!(
            used.fits_in(&n.allocatable()).is_ok(),
            "node {} overcommitted: {used:?} of {:?}",
            n.id,
            n.allocatable()
        );
    }
}

/// Schedules `eval` twice from the same state and env (same plan), commits what the applier
/// accepts, and returns the plan and whether all of it was accepted.
fn schedule_checked(w: &mut World, eval: &Evaluation) -> (Plan, bool) {
    let mut twin: Env = w.env.clone();
    let plan = match schedule(&w.state, eval, &mut w.env) {
        Ok(plan) => plan,
        Err(e) => match e {},
    };
    let again = match schedule(&w.state, eval, &mut twin) {
        Ok(plan) => plan,
        Err(e) => match e {},
    };
    assert_eq!(
        plan, again,
        "the same snapshot and evaluation gave two plans"
    );
    let verdict = crate::server::planner::evaluate_plan(&w.state, &plan, w.env.now);
    // The applier may refuse a node the scheduler placed on: it also counts allocations
    // stopped earlier whose clients still run them (a destructive update leaves its old
    // allocation running until its client stops it), which the worker answers by planning
    // again. What it accepts must fit.
    let accepted = verdict.fully_accepted();
    w.apply(Command::PlanApply(Box::new(verdict.result)));
    assert_capacity(w);
    (plan, accepted)
}

fn live(w: &World, job_id: &str) -> Vec<std::sync::Arc<Allocation>> {
    w.state
        .allocs_by_job("default", job_id)
        .into_iter()
        .filter(|a| !a.is_terminal())
        .collect()
}

fn check_case(c: &Case) {
    let nodes: Vec<Node> = c
        .nodes
        .iter()
        .enumerate()
        .map(|(i, s)| build_node(i, s))
        .collect();
    let mut w = World::new(nodes);
    for (i, s) in c.nodes.iter().enumerate() {
        if !s.eligible {
            w.apply(Command::NodeUpdateEligibility {
                node_id: format!("n{i}"),
                eligibility: eligibility::INELIGIBLE.into(),
                evals: vec![],
                now: w.env.now,
            });
        }
    }
    // First versions, scheduled.
    let jobs: Vec<Job> = c
        .jobs
        .iter()
        .enumerate()
        .map(|(i, s)| build_job(i, s))
        .collect();
    for j in &jobs {
        let eval = w.eval(&j.id, trigger::JOB_REGISTER);
        w.apply(Command::JobRegister {
            job: Box::new(j.clone()),
            eval: Some(eval.clone()),
            now: w.env.now,
            enforce_index: None,
            tracked_versions: None,
        });
        schedule_checked(&mut w, &eval);
    }
    // Clients report; some nodes go down; jobs change or stop.
    let mut existing: Vec<std::sync::Arc<Allocation>> = w.state.allocs_by_node("n0");
    for i in 1..c.nodes.len() {
        existing.extend(w.state.allocs_by_node(&format!("n{i}")));
    }
    w.env.now += SEC;
    for (alloc, report) in existing.iter().zip(&c.reports) {
        let status = match report {
            0 | 1 => ClientStatus::Running,
            2 => ClientStatus::Complete,
            3 => ClientStatus::Failed,
            _ => continue,
        };
        if alloc.client_status.can_become(status) {
            w.report(&alloc.id, status);
        }
    }
    for (i, s) in c.nodes.iter().enumerate() {
        if s.down_later {
            w.apply(Command::NodeUpdateStatus {
                node_id: format!("n{i}"),
                status: NodeStatus::Down,
                evals: vec![],
                now: w.env.now,
            });
        }
    }
    w.env.now += 60 * SEC;
    let mut stopped = BTreeSet::new();
    for (s, j) in c.jobs.iter().zip(&jobs) {
        if s.change == 3 {
            w.apply(Command::JobDeregister {
                namespace: "default".into(),
                job_id: j.id.clone(),
                purge: false,
                eval: None,
                now: w.env.now,
            });
            stopped.insert(j.id.clone());
        } else if let Some(v2) = changed_job(s, j) {
            w.apply(Command::JobRegister {
                job: Box::new(v2),
                eval: None,
                now: w.env.now,
                enforce_index: None,
                tracked_versions: None,
            });
        }
    }
    // One evaluation per job, then the properties.
    for j in &jobs {
        let eval = w.eval(&j.id, trigger::JOB_REGISTER);
        let (plan, accepted) = schedule_checked(&mut w, &eval);
        let current = w.state.job("default", &j.id);
        if stopped.contains(&j.id) {
            assert_eq!(plan.placement_count(), 0, "a stopped job placed {plan:?}");
            assert!(
                live(&w, &j.id).is_empty(),
                "a stopped job left allocations live"
            );
            continue;
        }
        let Some(current) = current else { continue };
        // Service and system jobs roll out under a deployment (Nomad's default
        // `max_parallel = 1`): one run replaces at most that many for a job update.
        if matches!(current.job_type, JobType::Service | JobType::System) {
            let replaced = plan
                .node_update
                .values()
                .flatten()
                .filter(|s| s.desired_description == DESC_JOB_UPDATED)
                .count();
            assert!(replaced <= 1, "{replaced} replaced at once: {plan:?}");
        }
        match current.job_type {
            JobType::Service | JobType::Batch => {
                let count = usize::try_from(current.task_groups[0].count).unwrap_or(0);
                let running = live(&w, &j.id).len();
                assert!(running <= count, "{running} live for count {count}");
            }
            // A node the applier refused is planned again by the worker: checked when whole.
            JobType::System | JobType::Sysbatch if accepted => {
                check_system(&w, &current, &plan);
            }
            JobType::System | JobType::Sysbatch => {}
        }
        if current.job_type == JobType::Service && accepted && plan.eval.failed_tg_allocs.is_empty()
        {
            let eval = w.eval(&j.id, trigger::JOB_REGISTER);
            let (next, _) = schedule_checked(&mut w, &eval);
            assert!(
                next.is_no_op(),
                "a converged service job changed again: {next:?}"
            );
        }
    }
}

/// At most one live allocation per node; none on a node that is down or cannot run it; one on
/// every node that is ready, eligible and can run it, unless this run found it without room
/// (or, for sysbatch, the work there already finished).
fn check_system(w: &World, job: &Job, plan: &Plan) {
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for a in live(w, &job.id) {
        *per_node.entry(a.node_id.clone()).or_default() += 1;
    }
    let exhausted = plan
        .eval
        .failed_tg_allocs
        .get("g")
        .is_some_and(|m| m.nodes_exhausted > 0);
    for n in w.state.nodes() {
        let here = per_node.get(&n.id).copied().unwrap_or(0);
        assert!(here <= 1, "{here} allocations of {} on {}", job.id, n.id);
        let can_run = system_selects(job, &n) && n.has_driver("exec");
        if n.status == NodeStatus::Down || !can_run {
            assert_eq!(here, 0, "{} runs on {} which cannot run it", job.id, n.id);
            continue;
        }
        if !n.is_schedulable() || here == 1 || exhausted {
            continue;
        }
        let finished_here = w
            .state
            .allocs_by_job("default", &job.id)
            .iter()
            .any(|a| a.node_id == n.id && a.client_status.is_terminal());
        assert!(
            job.job_type == JobType::Sysbatch && finished_here,
            "{} missing on ready, eligible, feasible node {}: {plan:?}",
            job.id,
            n.id
        );
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn scheduling_generated_clusters_keeps_every_invariant(c in case()) {
        check_case(&c);
    }
}
