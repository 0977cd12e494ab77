//! The drainer's decisions, on states built through the state machine.

use std::sync::Arc;

use super::*;
use crate::model::time::format_rfc3339;
use crate::model::*;
use crate::state::PlanResult;

const T0: i64 = 1_700_000_000_000_000_000;
const SEC: i64 = 1_000_000_000;

struct World {
    state: State,
    index: u64,
    ids: u64,
}

impl World {
    fn new() -> World {
        World {
            state: State::default(),
            index: 0,
            ids: 0,
        }
    }

    fn apply(&mut self, cmd: Command) {
        self.index += 1;
        let (resp, _) = self.state.apply(self.index, &cmd);
        assert_eq!(resp.error, None);
    }

    fn node(&mut self, id: &str, drain: Option<DrainStrategy>) {
        let node = Node {
            id: id.into(),
            status: NodeStatus::Ready,
            drain: drain.is_some(),
            // A draining node is ineligible, as the operator's drain command makes it.
            scheduling_eligibility: if drain.is_some() {
                eligibility::INELIGIBLE.into()
            } else {
                eligibility::ELIGIBLE.into()
            },
            drain_strategy: drain,
            node_resources: NodeResources {
                cpu: NodeCpuResources {
                    cpu_shares: 100_000,
                    ..Default::default()
                },
                memory: NodeMemoryResources { memory_mb: 100_000 },
                disk: crate::model::NodeDiskResources { disk_mb: 100_000 },
                ..Default::default()
            },
            ..Default::default()
        };
        self.apply(Command::NodeRegister {
            node: Box::new(node),
            now: T0,
        });
    }

    fn job(&mut self, id: &str, job_type: JobType, max_parallel: i64) -> Arc<Job> {
        let mut job = Job {
            id: id.into(),
            job_type,
            task_groups: vec![TaskGroup {
                name: "g".into(),
                count: 1,
                tasks: vec![Task {
                    name: "t".into(),
                    driver: "exec".into(),
                    ..Default::default()
                }],
                migrate: Some(MigrateStrategy {
                    max_parallel: Some(max_parallel),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        job.canonicalize();
        self.apply(Command::JobRegister {
            job: Box::new(job),
            eval: None,
            now: T0,
            enforce_index: None,
            tracked_versions: None,
        });
        self.state.job("default", id).unwrap()
    }

    /// Places allocations `[from, to)` of `job` on `node`.
    fn place(&mut self, job: &Arc<Job>, node: &str, names: std::ops::Range<u64>) -> Vec<String> {
        let allocs: Vec<Allocation> = names
            .map(|i| {
                self.ids += 1;
                Allocation {
                    id: format!("{}-{i}-{}", job.id, self.ids),
                    namespace: "default".into(),
                    name: format!("{}.g[{i}]", job.id),
                    node_id: node.into(),
                    job_id: job.id.clone(),
                    job: Some(job.clone()),
                    task_group: "g".into(),
                    ..Default::default()
                }
            })
            .collect();
        let ids = allocs.iter().map(|a| a.id.clone()).collect();
        self.apply(Command::PlanApply(Box::new(PlanResult {
            allocs,
            now: T0,
            ..Default::default()
        })));
        ids
    }

    fn decide(&self, now: i64) -> DrainDecision {
        let mut n = 0;
        decide(&self.state, now, &mut || {
            n += 1;
            format!("eval-{n}")
        })
    }

    /// Commits a decision as the leader loop would.
    fn commit(&mut self, d: &DrainDecision, now: i64) {
        self.apply(Command::AllocUpdateDesiredTransition {
            transitions: d.transitions.clone(),
            evals: d.evals.clone(),
            now,
        });
        for node_id in &d.complete {
            self.apply(Command::NodeDrainComplete {
                node_id: node_id.clone(),
                now,
            });
        }
    }

    fn stop(&mut self, id: &str) {
        self.apply(Command::PlanApply(Box::new(PlanResult {
            stops: vec![crate::state::AllocStop {
                alloc_id: id.into(),
                desired_status: DesiredStatus::Stop,
                desired_description: "alloc is being migrated".into(),
                client_status: None,
            }],
            now: T0,
            ..Default::default()
        })));
    }

    fn finish_evals(&mut self) {
        let evals: Vec<Evaluation> = self
            .state
            .evals()
            .iter()
            .map(|e| Evaluation {
                status: EvalStatus::Complete,
                ..(**e).clone()
            })
            .collect();
        self.apply(Command::EvalUpdate { evals, now: T0 });
    }
}

fn draining() -> Option<DrainStrategy> {
    Some(DrainStrategy {
        started_at: format_rfc3339(T0),
        ..Default::default()
    })
}

#[test]
fn a_node_that_is_not_draining_is_left_alone() {
    let mut w = World::new();
    w.node("n1", None);
    let j = w.job("web", JobType::Service, 1);
    w.place(&j, "n1", 0..3);
    assert!(w.decide(T0).is_empty());
}

#[test]
fn max_parallel_allocations_migrate_at_a_time_per_group() {
    let mut w = World::new();
    w.node("n1", draining());
    let web = w.job("web", JobType::Service, 2);
    let api = w.job("api", JobType::Service, 1);
    let web_ids = w.place(&web, "n1", 0..4);
    w.place(&api, "n1", 0..2);

    let d = w.decide(T0);
    let marked: Vec<&String> = d.transitions.keys().collect();
    assert_eq!(marked.len(), 3, "2 of web, 1 of api: {marked:?}");
    assert!(d.transitions.contains_key(&web_ids[0]) && d.transitions.contains_key(&web_ids[1]));
    assert!(d.transitions.values().all(|t| t.migrate == Some(true)));
    let jobs: Vec<(&str, &str, &str)> = d
        .evals
        .iter()
        .map(|e| {
            (
                e.job_id.as_str(),
                e.triggered_by.as_str(),
                e.node_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        jobs,
        [("api", "node-drain", "n1"), ("web", "node-drain", "n1")]
    );
    assert!(d.complete.is_empty());
    w.commit(&d, T0);

    // Marked ones hold their slots until the scheduler stops them; the evaluations are
    // pending, so nothing is asked again.
    assert!(w.decide(T0).is_empty());
    w.finish_evals();
    assert!(w.decide(T0).is_empty(), "replacements are not healthy yet");

    // One original stopped: one more of web may go.
    w.stop(&web_ids[0]);
    let d = w.decide(T0);
    assert_eq!(d.transitions.keys().collect::<Vec<_>>(), [&web_ids[2]]);
}

#[test]
fn a_healthy_replacement_asks_for_an_evaluation_that_stops_the_original() {
    let mut w = World::new();
    w.node("n1", draining());
    w.node("n2", None);
    let web = w.job("web", JobType::Service, 1);
    let ids = w.place(&web, "n1", 0..1);
    let d = w.decide(T0);
    w.commit(&d, T0);
    w.finish_evals();
    // The scheduler placed a replacement on n2.
    let mut replacement = (*w.state.alloc(&ids[0]).unwrap()).clone();
    replacement.id = "replacement".into();
    replacement.node_id = "n2".into();
    replacement.previous_allocation = ids[0].clone();
    replacement.desired_transition = DesiredTransition::default();
    w.apply(Command::PlanApply(Box::new(PlanResult {
        allocs: vec![replacement],
        now: T0,
        ..Default::default()
    })));
    assert!(w.decide(T0).is_empty());
    w.apply(Command::AllocClientUpdate {
        updates: vec![AllocClientUpdate {
            id: "replacement".into(),
            client_status: ClientStatus::Running,
            deployment_status: Some(AllocDeploymentStatus {
                healthy: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }],
        evals: vec![],
        now: T0,
    });
    let d = w.decide(T0);
    assert!(d.transitions.is_empty());
    assert_eq!(d.evals.len(), 1);
    assert_eq!(d.evals[0].job_id, "web");
    w.commit(&d, T0);
    assert!(w.decide(T0).is_empty(), "its evaluation is pending");

    w.stop(&ids[0]);
    let d = w.decide(T0);
    assert_eq!(d.complete, ["n1"]);
    w.commit(&d, T0 + SEC);
    let n1 = w.state.node("n1").unwrap();
    assert!(n1.drain_strategy.is_none() && !n1.drain);
    assert_eq!(n1.scheduling_eligibility, eligibility::INELIGIBLE);
    assert_eq!(
        n1.last_drain.as_ref().unwrap().status,
        drain_status::COMPLETE
    );
    let event = n1.events.last().unwrap();
    assert_eq!(
        (event.message.as_str(), event.subsystem.as_str()),
        ("Node drain complete", node_event_subsystem::DRAIN)
    );
    assert!(w.decide(T0).is_empty());
}

#[test]
fn batch_allocations_finish_until_the_force_deadline_then_everything_goes() {
    let mut w = World::new();
    w.node(
        "n1",
        Some(DrainStrategy {
            deadline: 60 * SEC,
            force_deadline: format_rfc3339(T0 + 60 * SEC),
            ..Default::default()
        }),
    );
    let batch = w.job("b", JobType::Batch, 1);
    let web = w.job("web", JobType::Service, 1);
    let batch_ids = w.place(&batch, "n1", 0..2);
    w.place(&web, "n1", 0..3);
    let d = w.decide(T0);
    assert_eq!(d.transitions.len(), 1, "one web, no batch");
    assert!(!batch_ids.iter().any(|id| d.transitions.contains_key(id)));
    w.commit(&d, T0);
    w.finish_evals();

    let d = w.decide(T0 + 60 * SEC);
    assert_eq!(d.transitions.len(), 4, "everything left, past max_parallel");
    assert!(batch_ids.iter().all(|id| d.transitions.contains_key(id)));
}

#[test]
fn a_negative_deadline_forces_at_once() {
    let mut w = World::new();
    w.node(
        "n1",
        Some(DrainStrategy {
            deadline: -1,
            ..Default::default()
        }),
    );
    let web = w.job("web", JobType::Service, 1);
    w.place(&web, "n1", 0..3);
    assert_eq!(w.decide(T0).transitions.len(), 3);
}

#[test]
fn system_jobs_go_last_and_not_at_all_with_ignore_system_jobs() {
    let mut w = World::new();
    w.node("n1", draining());
    let sys = w.job("sys", JobType::System, 1);
    let web = w.job("web", JobType::Service, 1);
    let sys_ids = w.place(&sys, "n1", 0..1);
    let web_ids = w.place(&web, "n1", 0..1);
    let d = w.decide(T0);
    assert_eq!(d.transitions.keys().collect::<Vec<_>>(), [&web_ids[0]]);
    w.commit(&d, T0);
    w.stop(&web_ids[0]);
    let d = w.decide(T0);
    assert_eq!(d.transitions.keys().collect::<Vec<_>>(), [&sys_ids[0]]);
    assert!(d.complete.is_empty());

    let mut w = World::new();
    w.node(
        "n1",
        Some(DrainStrategy {
            ignore_system_jobs: true,
            ..Default::default()
        }),
    );
    let sys = w.job("sys", JobType::System, 1);
    w.place(&sys, "n1", 0..1);
    let d = w.decide(T0);
    assert!(d.transitions.is_empty());
    assert_eq!(
        d.complete,
        ["n1"],
        "system allocations stay; the drain is done"
    );
}
