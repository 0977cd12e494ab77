//! The deployment watcher's decisions, on states built through the state machine.

use std::sync::Arc;
use std::time::Duration;

use super::watcher::{decide, Action, Proposal, WatcherMemory};
use crate::model::time::format_rfc3339;
use crate::model::*;
use crate::state::{Command, PlanResult, State};

const T0: i64 = 1_700_000_000_000_000_000;
const SEC: i64 = 1_000_000_000;

struct World {
    state: State,
    index: u64,
    memory: WatcherMemory,
}

struct Spec {
    count: i64,
    canaries: i64,
    auto_revert: bool,
    auto_promote: bool,
    /// Changes the spec from one version to the next.
    image: &'static str,
    /// The group's reschedule policy allows replacing a failed allocation (unlimited);
    /// without it an unhealthy allocation fails the deployment at once.
    reschedulable: bool,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            count: 2,
            canaries: 0,
            auto_revert: false,
            auto_promote: false,
            image: "v1",
            reschedulable: false,
        }
    }
}

impl World {
    fn new() -> World {
        let mut w = World {
            state: State::default(),
            index: 0,
            memory: WatcherMemory::default(),
        };
        let node = Node {
            id: "n1".into(),
            status: NodeStatus::Ready,
            scheduling_eligibility: eligibility::ELIGIBLE.into(),
            node_resources: NodeResources {
                cpu: NodeCpuResources {
                    cpu_shares: 100_000,
                    ..Default::default()
                },
                memory: NodeMemoryResources { memory_mb: 100_000 },
                disk: NodeDiskResources { disk_mb: 100_000 },
                ..Default::default()
            },
            ..Default::default()
        };
        w.ok(Command::NodeRegister {
            node: Box::new(node),
            now: T0,
        });
        w
    }

    fn apply(&mut self, cmd: Command) -> crate::state::CommandResponse {
        self.index += 1;
        let (resp, _) = self.state.apply(self.index, &cmd);
        resp
    }

    fn ok(&mut self, cmd: Command) {
        let resp = self.apply(cmd);
        assert_eq!(resp.error, None);
    }

    fn register(&mut self, spec: &Spec) -> Arc<Job> {
        let mut job = Job {
            id: "web".into(),
            task_groups: vec![TaskGroup {
                name: "web".into(),
                count: spec.count,
                tasks: vec![Task {
                    name: "t".into(),
                    driver: "exec".into(),
                    config: [("command".to_string(), serde_json::json!(spec.image))]
                        .into_iter()
                        .collect(),
                    ..Default::default()
                }],
                reschedule_policy: Some(ReschedulePolicy {
                    attempts: Some(0),
                    unlimited: Some(spec.reschedulable),
                    ..Default::default()
                }),
                update: Some(UpdateStrategy {
                    canary: Some(spec.canaries),
                    auto_revert: Some(spec.auto_revert),
                    auto_promote: Some(spec.auto_promote),
                    progress_deadline: Some(Duration::from_secs(600)),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        job.canonicalize();
        self.ok(Command::JobRegister {
            job: Box::new(job),
            eval: None,
            now: T0,
            enforce_index: None,
            tracked_versions: None,
        });
        self.state.job("default", "web").unwrap()
    }

    /// A deployment of the current version with `placed` allocations (the first `canaries`
    /// of them canaries), as the scheduler's plan writes it.
    fn deploy(&mut self, spec: &Spec, id: &str, placed: u64) -> Vec<String> {
        let job = self.state.job("default", "web").unwrap();
        let mut d = Deployment::new_for(&job, id.into(), 50, T0);
        d.task_groups.insert(
            "web".into(),
            DeploymentState {
                auto_revert: spec.auto_revert,
                auto_promote: spec.auto_promote,
                progress_deadline: Duration::from_secs(600),
                desired_canaries: spec.canaries as u64,
                desired_total: spec.count as u64,
                ..Default::default()
            },
        );
        let allocs: Vec<Allocation> = (0..placed)
            .map(|i| Allocation {
                id: format!("{id}-a{i}"),
                namespace: "default".into(),
                name: format!("web.web[{i}]"),
                node_id: "n1".into(),
                job_id: "web".into(),
                job: Some(job.clone()),
                task_group: "web".into(),
                deployment_id: id.into(),
                deployment_status: ((i as i64) < spec.canaries).then(|| AllocDeploymentStatus {
                    canary: true,
                    ..Default::default()
                }),
                modify_time: T0,
                ..Default::default()
            })
            .collect();
        let ids = allocs.iter().map(|a| a.id.clone()).collect();
        self.ok(Command::PlanApply(Box::new(PlanResult {
            allocs,
            deployment: Some(d),
            now: T0,
            ..Default::default()
        })));
        ids
    }

    fn health(&mut self, alloc_id: &str, healthy: bool) {
        // As a client reports it: the verdict and its time, nothing of canaries.
        let status = AllocDeploymentStatus {
            healthy: Some(healthy),
            timestamp: format_rfc3339(T0 + SEC),
            ..Default::default()
        };
        self.ok(Command::AllocClientUpdate {
            updates: vec![AllocClientUpdate {
                id: alloc_id.into(),
                client_status: ClientStatus::Running,
                deployment_status: Some(status),
                ..Default::default()
            }],
            evals: vec![],
            now: T0 + SEC,
        });
    }

    /// Commits what was decided, as the leader loop does; returns the state's answers.
    fn commit(&mut self, proposals: &[Proposal], now: i64) -> Vec<Option<String>> {
        proposals
            .iter()
            .map(|p| {
                self.memory.remember(p);
                self.apply(p.command(now)).error
            })
            .collect()
    }

    fn deployment(&self, id: &str) -> Arc<Deployment> {
        self.state.deployment(id).unwrap()
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
        self.ok(Command::EvalUpdate { evals, now: T0 });
    }
}

fn decide_with(w: &World, now: i64) -> Vec<Proposal> {
    let mut n = 0;
    decide(&w.state, now, &w.memory, &mut || {
        n += 1;
        format!("eval-{n}")
    })
}

fn only(proposals: &[Proposal]) -> &Action {
    assert_eq!(proposals.len(), 1, "{proposals:#?}");
    &proposals[0].action
}

fn failed_with(action: &Action) -> (&str, Option<u64>) {
    match action {
        Action::Fail { update, job, eval } => {
            assert_eq!(update.status, deployment_status::FAILED);
            assert_eq!(eval.triggered_by, trigger::DEPLOYMENT_WATCHER);
            (
                update.status_description.as_str(),
                job.as_ref().map(|j| j.version),
            )
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn nothing_happens_while_allocations_have_no_verdict() {
    let mut w = World::new();
    let spec = Spec::default();
    w.register(&spec);
    w.deploy(&spec, "d1", 2);
    assert!(decide_with(&w, T0 + SEC).is_empty());
}

#[test]
fn an_unhealthy_allocation_fails_the_deployment() {
    let mut w = World::new();
    let spec = Spec::default();
    w.register(&spec);
    let ids = w.deploy(&spec, "d1", 2);
    w.health(&ids[0], true);
    w.health(&ids[1], false);
    let proposals = decide_with(&w, T0 + 2 * SEC);
    let (words, job) = failed_with(only(&proposals));
    assert_eq!(words, deployment_description::FAILED_ALLOCATIONS);
    assert_eq!(job, None, "no auto_revert, nothing registered");
    assert_eq!(w.commit(&proposals, T0 + 2 * SEC), vec![None]);
    assert_eq!(w.deployment("d1").status, deployment_status::FAILED);
    assert!(
        decide_with(&w, T0 + 3 * SEC).is_empty(),
        "a failed one is left alone"
    );
}

#[test]
fn the_progress_deadline_fails_a_group_that_is_not_done() {
    let mut w = World::new();
    let spec = Spec::default();
    w.register(&spec);
    let ids = w.deploy(&spec, "d1", 2);
    w.health(&ids[0], true);
    w.finish_evals();
    let by = crate::model::time::parse_rfc3339(
        &w.deployment("d1").task_groups["web"].require_progress_by,
    )
    .unwrap();
    // Before the deadline: only the evaluation owed for the healthy allocation, if any.
    assert!(decide_with(&w, by - SEC)
        .iter()
        .all(|p| matches!(p.action, Action::Evaluate { .. })));
    let proposals = decide_with(&w, by);
    let (words, _) = failed_with(only(&proposals));
    assert_eq!(words, deployment_description::PROGRESS_DEADLINE);
}

#[test]
fn a_paused_deployment_does_not_miss_its_deadline() {
    let mut w = World::new();
    let spec = Spec::default();
    w.register(&spec);
    w.deploy(&spec, "d1", 2);
    w.ok(Command::DeploymentStatusUpdate {
        update: DeploymentStatusUpdate {
            deployment_id: "d1".into(),
            status: deployment_status::PAUSED.into(),
            status_description: deployment_description::PAUSED.into(),
            updated_at: T0,
        },
        job: None,
        eval: None,
        now: T0,
    });
    assert!(decide_with(&w, T0 + 3600 * SEC).is_empty());
}

#[test]
fn auto_revert_registers_the_latest_stable_version_again() {
    let mut w = World::new();
    let v1 = Spec {
        auto_revert: true,
        ..Default::default()
    };
    w.register(&v1);
    // Versions 0 and 1 stable; the newest stable one is picked.
    w.ok(Command::JobStability {
        namespace: "default".into(),
        job_id: "web".into(),
        version: 0,
        stable: true,
    });
    w.register(&Spec { image: "v2", ..v1 });
    w.ok(Command::JobStability {
        namespace: "default".into(),
        job_id: "web".into(),
        version: 1,
        stable: true,
    });
    let v3 = Spec {
        image: "v3",
        auto_revert: true,
        ..Default::default()
    };
    assert_eq!(w.register(&v3).version, 2);
    let ids = w.deploy(&v3, "d3", 2);
    w.health(&ids[0], false);
    let proposals = decide_with(&w, T0 + 2 * SEC);
    let (words, job) = failed_with(only(&proposals));
    assert_eq!(
        words,
        "Failed due to unhealthy allocations - rolling back to job version 1"
    );
    assert_eq!(job, Some(1));
    if let Action::Fail { job: Some(job), .. } = &proposals[0].action {
        assert!(!job.stable && job.version_tag.is_none());
    }
    assert_eq!(w.commit(&proposals, T0 + 2 * SEC), vec![None]);
    let current = w.state.job("default", "web").unwrap();
    assert_eq!(current.version, 3, "registered again as a new version");
    assert_eq!(current.task_groups[0].tasks[0].config["command"], "v2");
}

#[test]
fn no_stable_version_means_no_rollback_target() {
    let mut w = World::new();
    let spec = Spec {
        auto_revert: true,
        ..Default::default()
    };
    w.register(&spec);
    let ids = w.deploy(&spec, "d1", 1);
    w.health(&ids[0], false);
    let proposals = decide_with(&w, T0 + 2 * SEC);
    let (words, job) = failed_with(only(&proposals));
    assert_eq!(
        words,
        "Failed due to unhealthy allocations - no stable job version to auto revert to"
    );
    assert_eq!(job, None);
}

#[test]
fn a_stable_version_with_the_same_spec_is_not_registered_again() {
    let mut w = World::new();
    let spec = Spec {
        auto_revert: true,
        ..Default::default()
    };
    w.register(&spec);
    w.ok(Command::JobStability {
        namespace: "default".into(),
        job_id: "web".into(),
        version: 0,
        stable: true,
    });
    let ids = w.deploy(&spec, "d1", 1);
    w.health(&ids[0], false);
    let proposals = decide_with(&w, T0 + 2 * SEC);
    let (words, job) = failed_with(only(&proposals));
    assert_eq!(
        words,
        "Failed due to unhealthy allocations - not rolling back to stable job version 0 as current job has same specification"
    );
    assert_eq!(job, None);
}

#[test]
fn healthy_canaries_of_auto_promote_groups_are_promoted() {
    let mut w = World::new();
    let spec = Spec {
        canaries: 1,
        auto_promote: true,
        ..Default::default()
    };
    w.register(&spec);
    let ids = w.deploy(&spec, "d1", 1);
    assert!(w.deployment("d1").requires_promotion());
    assert!(
        decide_with(&w, T0 + SEC).is_empty(),
        "canary not healthy yet"
    );
    w.health(&ids[0], true);
    let canary = w.state.alloc(&ids[0]).unwrap();
    assert!(
        canary.deployment_status.as_ref().unwrap().canary,
        "the client's report keeps the servers' canary flag"
    );
    let proposals = decide_with(&w, T0 + 2 * SEC);
    assert!(matches!(only(&proposals), Action::Promote { .. }));
    assert_eq!(w.commit(&proposals, T0 + 2 * SEC), vec![None]);
    let d = w.deployment("d1");
    assert!(d.task_groups["web"].promoted);
    let canary = w.state.alloc(&ids[0]).unwrap();
    assert!(!canary.deployment_status.as_ref().unwrap().canary);
    assert_eq!(w.state.evals_by_job("default", "web").len(), 1);
}

#[test]
fn canaries_without_auto_promote_wait_for_the_operator() {
    let mut w = World::new();
    let spec = Spec {
        canaries: 1,
        ..Default::default()
    };
    w.register(&spec);
    let ids = w.deploy(&spec, "d1", 1);
    w.health(&ids[0], true);
    w.finish_evals();
    let proposals = decide_with(&w, T0 + 2 * SEC);
    assert!(
        proposals
            .iter()
            .all(|p| !matches!(p.action, Action::Promote { .. } | Action::Succeed { .. })),
        "{proposals:#?}"
    );
}

#[test]
fn every_group_healthy_is_success_and_marks_the_version_stable() {
    let mut w = World::new();
    let spec = Spec::default();
    w.register(&spec);
    let ids = w.deploy(&spec, "d1", 2);
    w.health(&ids[0], true);
    // One of two healthy: not done, an evaluation for the next step.
    let proposals = decide_with(&w, T0 + 2 * SEC);
    assert!(matches!(only(&proposals), Action::Evaluate { .. }));
    w.commit(&proposals, T0 + 2 * SEC);
    w.health(&ids[1], true);
    let proposals = decide_with(&w, T0 + 3 * SEC);
    match only(&proposals) {
        Action::Succeed { update } => {
            assert_eq!(update.status, deployment_status::SUCCESSFUL);
            assert_eq!(
                update.status_description,
                deployment_description::SUCCESSFUL
            );
        }
        other => panic!("expected success, got {other:?}"),
    }
    assert_eq!(w.commit(&proposals, T0 + 3 * SEC), vec![None]);
    assert_eq!(w.deployment("d1").status, deployment_status::SUCCESSFUL);
    assert!(w.state.job_version("default", "web", 0).unwrap().stable);
}

#[test]
fn one_evaluation_per_health_change_and_none_while_one_is_pending() {
    let mut w = World::new();
    let spec = Spec {
        count: 3,
        ..Default::default()
    };
    w.register(&spec);
    let ids = w.deploy(&spec, "d1", 3);
    w.health(&ids[0], true);
    let proposals = decide_with(&w, T0 + 2 * SEC);
    match only(&proposals) {
        Action::Evaluate { eval } => {
            assert_eq!(eval.triggered_by, trigger::DEPLOYMENT_WATCHER);
            assert_eq!(eval.job_id, "web");
        }
        other => panic!("expected an evaluation, got {other:?}"),
    }
    w.commit(&proposals, T0 + 2 * SEC);
    // The evaluation is pending: another health change waits for it.
    w.health(&ids[1], true);
    assert!(decide_with(&w, T0 + 3 * SEC).is_empty());
    // Once the scheduler ran it, the change it did not see asks for one more.
    w.finish_evals();
    // The completed evaluation was created before ids[1] turned healthy.
    let proposals = decide_with(&w, T0 + 3 * SEC);
    assert!(matches!(only(&proposals), Action::Evaluate { .. }));
    w.commit(&proposals, T0 + 3 * SEC);
    w.finish_evals();
    assert!(
        decide_with(&w, T0 + 4 * SEC).is_empty(),
        "nothing new since"
    );
}

#[test]
fn nothing_is_proposed_twice_in_a_row() {
    let mut w = World::new();
    let spec = Spec::default();
    w.register(&spec);
    let ids = w.deploy(&spec, "d1", 2);
    w.health(&ids[0], false);
    let proposals = decide_with(&w, T0 + 2 * SEC);
    assert_eq!(proposals.len(), 1);
    // Remembered but not applied (lost, or refused): not proposed again unchanged.
    w.memory.remember(&proposals[0]);
    assert!(decide_with(&w, T0 + 3 * SEC).is_empty());
    // A new leader (empty memory) reads the state again and proposes it.
    w.memory = WatcherMemory::default();
    assert_eq!(decide_with(&w, T0 + 3 * SEC).len(), 1);
}

#[test]
fn the_decisions_are_commands_the_state_accepts() {
    // A status update for a deployment that ended meanwhile is refused with nothing written.
    let mut w = World::new();
    let spec = Spec::default();
    w.register(&spec);
    let ids = w.deploy(&spec, "d1", 2);
    w.health(&ids[0], false);
    let proposals = decide_with(&w, T0 + 2 * SEC);
    assert_eq!(w.commit(&proposals, T0 + 2 * SEC), vec![None]);
    let again = w.commit(&proposals, T0 + 2 * SEC);
    assert!(again[0]
        .as_deref()
        .is_some_and(|e| e.contains("terminal status")));
}

#[test]
fn an_unhealthy_allocation_that_can_be_rescheduled_is_replaced_not_failed() {
    // Nomad's "allow replacements": with a progress deadline and reschedule attempts left, an
    // unhealthy allocation may be replaced; the deadline decides the deployment.
    let mut w = World::new();
    let spec = Spec {
        reschedulable: true,
        ..Spec::default()
    };
    w.register(&spec);
    let ids = w.deploy(&spec, "d1", 2);
    w.health(&ids[1], false);
    let proposals = decide_with(&w, T0 + 2 * SEC);
    match only(&proposals) {
        Action::AllowReplacements { alloc_ids, eval } => {
            assert_eq!(alloc_ids, &vec![ids[1].clone()]);
            assert_eq!(eval.triggered_by, trigger::DEPLOYMENT_WATCHER);
        }
        other => panic!("expected replacements allowed, got {other:?}"),
    }
    assert_eq!(w.commit(&proposals, T0 + 2 * SEC), vec![None]);
    let alloc = w.state.alloc(&ids[1]).unwrap();
    assert!(alloc.desired_transition.should_reschedule());
    assert_eq!(w.deployment("d1").status, deployment_status::RUNNING);
    // Allowed once: the next look proposes nothing more for it (its evaluation is pending).
    let again = decide_with(&w, T0 + 3 * SEC);
    assert!(
        !again
            .iter()
            .any(|p| matches!(p.action, Action::AllowReplacements { .. })),
        "{again:#?}"
    );
    // Past the progress deadline, the deployment fails.
    let late = decide_with(&w, T0 + 601 * SEC);
    let (words, _) = failed_with(only(&late));
    assert_eq!(words, deployment_description::PROGRESS_DEADLINE);
}
