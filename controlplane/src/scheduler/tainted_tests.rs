//! Lost nodes, disconnected clients, reconnects and migrations, through `schedule` and the
//! state machine (every plan is committed as the applier would).

use std::sync::Arc;
use std::time::Duration;

use super::tainted::*;
use super::*;
use crate::model::time::{format_rfc3339, parse_rfc3339};
use crate::model::*;
use crate::state::{Command, State};

const T0: i64 = 1_700_000_000_000_000_000;
const SEC: i64 = 1_000_000_000;

/// Deterministic ids and a clock the test moves.
struct Env {
    next: u64,
    now: i64,
}

impl SchedulerEnv for Env {
    fn now_unix_nanos(&mut self) -> i64 {
        self.now
    }
    fn new_id(&mut self) -> String {
        self.next += 1;
        format!("id-{:04}", self.next)
    }
}

fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        name: id.into(),
        datacenter: "dc1".into(),
        node_pool: "default".into(),
        status: NodeStatus::Ready,
        scheduling_eligibility: eligibility::ELIGIBLE.into(),
        node_resources: NodeResources {
            cpu: NodeCpuResources {
                cpu_shares: 4000,
                ..Default::default()
            },
            memory: NodeMemoryResources { memory_mb: 4096 },
            disk: crate::model::NodeDiskResources { disk_mb: 100_000 },
            ..Default::default()
        },
        drivers: [(
            "exec".to_string(),
            DriverInfo {
                detected: true,
                healthy: true,
                ..Default::default()
            },
        )]
        .into(),
        ..Default::default()
    }
}

fn job(id: &str, job_type: JobType, count: i64) -> Job {
    let mut job = Job {
        id: id.into(),
        job_type,
        datacenters: vec!["dc1".into()],
        task_groups: vec![TaskGroup {
            name: "g".into(),
            count,
            tasks: vec![Task {
                name: "t".into(),
                driver: "exec".into(),
                resources: Some(Resources {
                    cpu: 100,
                    memory_mb: 64,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    job.canonicalize();
    job
}

fn with_disconnect(mut job: Job, lost_after: Duration, reconcile: &str) -> Job {
    job.task_groups[0].disconnect = Some(DisconnectStrategy {
        lost_after: Some(lost_after),
        replace: Some(true),
        reconcile: Some(reconcile.into()),
        ..Default::default()
    });
    job
}

struct World {
    state: State,
    index: u64,
    env: Env,
}

impl World {
    fn new(nodes: &[&str]) -> World {
        let mut w = World {
            state: State::default(),
            index: 0,
            env: Env { next: 0, now: T0 },
        };
        for n in nodes {
            w.apply(Command::NodeRegister {
                node: Box::new(node(n)),
                now: T0,
            });
        }
        w
    }

    fn apply(&mut self, cmd: Command) {
        self.index += 1;
        let (resp, _) = self.state.apply(self.index, &cmd);
        assert_eq!(resp.error, None);
    }

    fn eval(&mut self, job: &Job, triggered_by: &str) -> Evaluation {
        let live = self.state.job(&job.namespace, &job.id);
        Evaluation {
            id: self.env.new_id(),
            namespace: job.namespace.clone(),
            priority: job.priority,
            eval_type: job.job_type.as_str().into(),
            triggered_by: triggered_by.into(),
            job_id: job.id.clone(),
            job_modify_index: live.map(|j| j.job_modify_index).unwrap_or(0),
            status: EvalStatus::Pending,
            ..Default::default()
        }
    }

    fn register(&mut self, job: &Job) -> Plan {
        let eval = self.eval(job, trigger::JOB_REGISTER);
        self.apply(Command::JobRegister {
            job: Box::new(job.clone()),
            eval: Some(eval.clone()),
            now: self.env.now,
            enforce_index: None,
            tracked_versions: None,
        });
        self.schedule(&eval)
    }

    /// Schedules `eval` and commits what the applier would accept of the plan.
    fn schedule(&mut self, eval: &Evaluation) -> Plan {
        let plan = schedule(&self.state, eval, &mut self.env).unwrap();
        let verdict = crate::server::planner::evaluate_plan(&self.state, &plan, self.env.now);
        assert!(verdict.fully_accepted(), "{:?}", verdict.rejected_nodes);
        self.apply(Command::PlanApply(Box::new(verdict.result)));
        plan
    }

    fn rerun(&mut self, job: &Job, triggered_by: &str) -> Plan {
        let eval = self.eval(job, triggered_by);
        self.schedule(&eval)
    }

    fn set_node(&mut self, id: &str, status: NodeStatus) {
        self.apply(Command::NodeUpdateStatus {
            node_id: id.into(),
            status,
            evals: vec![],
            now: self.env.now,
        });
    }

    fn report(&mut self, alloc_id: &str, status: ClientStatus, healthy: Option<bool>) {
        self.apply(Command::AllocClientUpdate {
            updates: vec![AllocClientUpdate {
                id: alloc_id.into(),
                client_status: status,
                deployment_status: healthy.map(|h| AllocDeploymentStatus {
                    healthy: Some(h),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            evals: vec![],
            now: self.env.now,
        });
    }

    fn allocs(&self, job: &str) -> Vec<Arc<Allocation>> {
        let mut v = self.state.allocs_by_job("default", job);
        v.sort_by_key(|a| (a.name.clone(), a.create_index));
        v
    }

    fn live(&self, job: &str) -> Vec<Arc<Allocation>> {
        self.allocs(job)
            .into_iter()
            .filter(|a| !a.is_terminal())
            .collect()
    }

    fn all_running(&mut self, job: &str) {
        for a in self.live(job) {
            if a.client_status == ClientStatus::Pending {
                self.report(&a.id, ClientStatus::Running, None);
            }
        }
    }
}

#[test]
fn an_allocation_on_a_down_node_is_lost_and_replaced_under_its_name() {
    let mut w = World::new(&["n1"]);
    let j = job("web", JobType::Service, 2);
    w.register(&j);
    w.all_running("web");
    w.apply(Command::NodeRegister {
        node: Box::new(node("n2")),
        now: T0,
    });
    w.set_node("n1", NodeStatus::Down);
    let plan = w.rerun(&j, trigger::NODE_UPDATE);
    assert_eq!(plan.placement_count(), 2);
    for a in w.allocs("web").iter().filter(|a| a.node_id == "n1") {
        assert_eq!(a.desired_status, DesiredStatus::Stop);
        assert_eq!(a.client_status, ClientStatus::Lost);
        assert_eq!(a.desired_description, DESC_LOST);
        assert!(!a.next_allocation.is_empty(), "the replacement is linked");
    }
    let live = w.live("web");
    let names: Vec<&str> = live.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["web.g[0]", "web.g[1]"]);
    for a in &live {
        assert_eq!(a.node_id, "n2");
        let previous = w.state.alloc(&a.previous_allocation).unwrap();
        assert_eq!(previous.name, a.name);
        assert_eq!(previous.next_allocation, a.id);
    }
    // A second run changes nothing.
    assert!(w.rerun(&j, trigger::NODE_UPDATE).is_no_op());
}

#[test]
fn a_node_missing_from_state_counts_as_down_and_prevent_reschedule_on_lost_is_honoured() {
    let mut w = World::new(&["n1", "n2"]);
    let mut j = job("web", JobType::Service, 1);
    j.task_groups[0].prevent_reschedule_on_lost = true;
    w.register(&j);
    let n = w.live("web")[0].node_id.clone();
    w.set_node(&n, NodeStatus::Down);
    w.rerun(&j, trigger::NODE_UPDATE);
    let kept = w.allocs("web");
    assert_eq!(kept.len(), 1, "no replacement");
    assert_eq!(
        (kept[0].client_status, kept[0].desired_status),
        (ClientStatus::Unknown, DesiredStatus::Run),
        "kept, unknown, until its node comes back"
    );

    // A node the state no longer holds (purged) is as down as one marked so.
    let mut w = World::new(&["n1", "n2"]);
    let j = job("web", JobType::Service, 1);
    w.register(&j);
    let gone = w.live("web")[0].clone();
    let mut file = w.state.to_snapshot();
    file.nodes.retain(|n| n.id != gone.node_id);
    w.state = State::from_snapshot(file).unwrap();
    w.rerun(&j, trigger::NODE_UPDATE);
    let orphan = w.state.alloc(&gone.id).unwrap();
    assert_eq!(
        (orphan.client_status, orphan.desired_description.as_str()),
        (ClientStatus::Lost, DESC_LOST)
    );
    assert_eq!(w.live("web").len(), 1, "replaced on the node that is left");
}

#[test]
fn completed_batch_allocations_on_a_down_node_stay_complete() {
    let mut w = World::new(&["n1"]);
    let j = job("b", JobType::Batch, 2);
    w.register(&j);
    let allocs = w.live("b");
    w.report(&allocs[0].id, ClientStatus::Complete, None);
    w.report(&allocs[1].id, ClientStatus::Running, None);
    w.apply(Command::NodeRegister {
        node: Box::new(node("n2")),
        now: T0,
    });
    w.set_node("n1", NodeStatus::Down);
    let plan = w.rerun(&j, trigger::NODE_UPDATE);
    assert_eq!(
        plan.placement_count(),
        1,
        "only the running one is replaced"
    );
    let done = w.state.alloc(&allocs[0].id).unwrap();
    assert_eq!(
        (done.client_status, done.desired_status),
        (ClientStatus::Complete, DesiredStatus::Run)
    );
    assert_eq!(
        w.state.alloc(&allocs[1].id).unwrap().client_status,
        ClientStatus::Lost
    );
}

#[test]
fn missed_heartbeat_status_is_disconnected_only_with_a_window() {
    let mut w = World::new(&["n1"]);
    w.register(&job("plain", JobType::Service, 1));
    assert_eq!(missed_heartbeat_status(&w.state, "n1"), NodeStatus::Down);
    let mut legacy = job("legacy", JobType::Service, 1);
    legacy.task_groups[0].max_client_disconnect = Some(Duration::from_secs(60));
    w.register(&legacy);
    assert_eq!(
        missed_heartbeat_status(&w.state, "n1"),
        NodeStatus::Disconnected
    );
    assert_eq!(missed_heartbeat_status(&w.state, "nope"), NodeStatus::Down);
}

/// A job with a 60 s window running on n1, n1 disconnected, the scheduler run for it: the
/// allocation is unknown and replaced on n2.
fn disconnected_world(reconcile: &str) -> (World, Job, String, String) {
    let mut w = World::new(&["n1"]);
    let j = with_disconnect(
        job("web", JobType::Service, 1),
        Duration::from_secs(60),
        reconcile,
    );
    w.register(&j);
    w.all_running("web");
    let original = w.live("web")[0].id.clone();
    w.apply(Command::NodeRegister {
        node: Box::new(node("n2")),
        now: T0,
    });
    w.set_node("n1", NodeStatus::Disconnected);
    w.env.now = T0 + 5 * SEC;
    let plan = w.rerun(&j, trigger::NODE_UPDATE);
    assert_eq!(
        plan.placement_count(),
        2,
        "the unknown update and a replacement"
    );
    let replacement = w
        .live("web")
        .into_iter()
        .find(|a| a.node_id == "n2")
        .unwrap()
        .id
        .clone();
    (w, j, original, replacement)
}

#[test]
fn a_disconnected_node_makes_its_allocations_unknown_replaced_and_followed_up() {
    let (w, _, original, replacement) = disconnected_world("best_score");
    let a = w.state.alloc(&original).unwrap();
    assert_eq!(
        (a.client_status, a.desired_status),
        (ClientStatus::Unknown, DesiredStatus::Run)
    );
    let last = a.alloc_states.last().unwrap();
    assert_eq!(
        (last.field.as_str(), last.value.as_str()),
        ("ClientStatus", "unknown")
    );
    assert_eq!(parse_rfc3339(&last.time), Some(T0 + 5 * SEC));
    assert!(needs_to_reconnect(&a));
    let r = w.state.alloc(&replacement).unwrap();
    assert_eq!(
        (r.name.as_str(), r.previous_allocation.as_str()),
        ("web.g[0]", original.as_str())
    );
    let follow_up: Vec<_> = w
        .state
        .evals_by_job("default", "web")
        .into_iter()
        .filter(|e| e.triggered_by == trigger::MAX_DISCONNECT_TIMEOUT)
        .collect();
    assert_eq!(follow_up.len(), 1);
    assert_eq!(follow_up[0].status, EvalStatus::Pending);
    assert_eq!(follow_up[0].wait_until, format_rfc3339(T0 + 65 * SEC));
}

#[test]
fn a_plan_marks_unknown_only_while_the_node_is_disconnected() {
    let (mut w, j, original, _) = disconnected_world("best_score");
    // Nothing more happens while it waits, and no second follow-up is asked for.
    w.env.now = T0 + 30 * SEC;
    let plan = w.rerun(&j, trigger::NODE_UPDATE);
    assert!(plan.is_no_op() && plan.created_evals.is_empty(), "{plan:?}");
    assert_eq!(
        w.state.alloc(&original).unwrap().client_status,
        ClientStatus::Unknown
    );
}

#[test]
fn past_its_window_an_unknown_allocation_is_lost() {
    let (mut w, j, original, replacement) = disconnected_world("best_score");
    w.env.now = T0 + 65 * SEC;
    let plan = w.rerun(&j, trigger::MAX_DISCONNECT_TIMEOUT);
    assert_eq!(plan.placement_count(), 0, "its replacement already runs");
    let a = w.state.alloc(&original).unwrap();
    assert_eq!(
        (
            a.client_status,
            a.desired_status,
            a.desired_description.as_str()
        ),
        (ClientStatus::Lost, DesiredStatus::Stop, DESC_LOST)
    );
    assert!(!w.state.alloc(&replacement).unwrap().is_terminal());
}

#[test]
fn a_group_without_a_window_loses_allocations_on_a_disconnected_node_at_once() {
    let mut w = World::new(&["n1", "n2"]);
    let j = job("web", JobType::Service, 1);
    w.register(&j);
    w.all_running("web");
    let n = w.live("web")[0].node_id.clone();
    w.set_node(&n, NodeStatus::Disconnected);
    let plan = w.rerun(&j, trigger::NODE_UPDATE);
    assert_eq!(plan.placement_count(), 1);
    assert_eq!(w.allocs("web")[0].client_status, ClientStatus::Lost);
}

#[test]
fn replace_false_keeps_the_unknown_allocation_counted_and_places_nothing() {
    let mut w = World::new(&["n1", "n2"]);
    let mut j = with_disconnect(
        job("web", JobType::Service, 1),
        Duration::from_secs(60),
        "best_score",
    );
    j.task_groups[0].disconnect.as_mut().unwrap().replace = Some(false);
    w.register(&j);
    w.all_running("web");
    let n = w.live("web")[0].node_id.clone();
    w.set_node(&n, NodeStatus::Disconnected);
    let plan = w.rerun(&j, trigger::NODE_UPDATE);
    assert_eq!(plan.placement_count(), 1, "only the unknown update");
    assert_eq!(w.live("web").len(), 1);
    assert_eq!(w.live("web")[0].client_status, ClientStatus::Unknown);
}

/// n1 comes back and its client reports the original running again.
fn reconnect(w: &mut World, original: &str, at: i64) {
    w.env.now = at;
    w.set_node("n1", NodeStatus::Ready);
    w.report(original, ClientStatus::Running, None);
}

#[test]
fn on_reconnect_keep_original_stops_the_replacement() {
    let (mut w, j, original, replacement) = disconnected_world("keep_original");
    w.report(&replacement, ClientStatus::Running, None);
    reconnect(&mut w, &original, T0 + 20 * SEC);
    w.rerun(&j, trigger::RECONNECT);
    let r = w.state.alloc(&replacement).unwrap();
    assert_eq!(
        (r.desired_status, r.desired_description.as_str()),
        (DesiredStatus::Stop, DESC_RECONNECTED)
    );
    let o = w.state.alloc(&original).unwrap();
    assert_eq!(
        (o.desired_status, o.client_status),
        (DesiredStatus::Run, ClientStatus::Running)
    );
    assert!(!needs_to_reconnect(&o), "acknowledged");
    assert_eq!(w.live("web").len(), 1);
    assert!(w.rerun(&j, trigger::RECONNECT).is_no_op());
}

#[test]
fn on_reconnect_keep_replacement_stops_the_original() {
    let (mut w, j, original, replacement) = disconnected_world("keep_replacement");
    reconnect(&mut w, &original, T0 + 20 * SEC);
    w.rerun(&j, trigger::RECONNECT);
    assert_eq!(
        w.state.alloc(&original).unwrap().desired_status,
        DesiredStatus::Stop
    );
    let live = w.live("web");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, replacement);
}

#[test]
fn on_reconnect_best_score_keeps_a_running_original_over_a_pending_replacement() {
    let (mut w, j, original, replacement) = disconnected_world("best_score");
    reconnect(&mut w, &original, T0 + 20 * SEC);
    w.rerun(&j, trigger::RECONNECT);
    let live = w.live("web");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, original, "the replacement never ran");
    assert!(w.state.alloc(&replacement).unwrap().is_terminal());
}

#[test]
fn on_reconnect_longest_running_keeps_the_earlier_start() {
    let (mut w, j, original, replacement) = disconnected_world("longest_running");
    let started = |at: i64| {
        BTreeMap::from([(
            "t".to_string(),
            TaskState {
                state: TaskLifecycleState::Running,
                started_at: Some(format_rfc3339(at)),
                ..Default::default()
            },
        )])
    };
    w.apply(Command::AllocClientUpdate {
        updates: vec![AllocClientUpdate {
            id: replacement.clone(),
            client_status: ClientStatus::Running,
            task_states: started(T0 + 6 * SEC),
            ..Default::default()
        }],
        evals: vec![],
        now: T0 + 6 * SEC,
    });
    w.env.now = T0 + 20 * SEC;
    w.set_node("n1", NodeStatus::Ready);
    w.apply(Command::AllocClientUpdate {
        updates: vec![AllocClientUpdate {
            id: original.clone(),
            client_status: ClientStatus::Running,
            task_states: started(T0),
            ..Default::default()
        }],
        evals: vec![],
        now: T0 + 20 * SEC,
    });
    w.rerun(&j, trigger::RECONNECT);
    let live = w.live("web");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, original);
}

#[test]
fn a_reconnect_after_the_window_leaves_the_original_lost() {
    let (mut w, j, original, replacement) = disconnected_world("keep_original");
    reconnect(&mut w, &original, T0 + 90 * SEC);
    w.rerun(&j, trigger::RECONNECT);
    let o = w.state.alloc(&original).unwrap();
    assert_eq!(
        (o.desired_status, o.desired_description.as_str()),
        (DesiredStatus::Stop, DESC_LOST)
    );
    let live = w.live("web");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, replacement);
}

fn drain(w: &mut World, node_id: &str, strategy: DrainStrategy) {
    w.apply(Command::NodeUpdateDrain {
        node_id: node_id.into(),
        drain_strategy: Some(strategy),
        mark_eligible: false,
        meta: Default::default(),
        evals: vec![],
        now: w.env.now,
    });
}

fn mark_migrate(w: &mut World, ids: &[&str]) {
    w.apply(Command::AllocUpdateDesiredTransition {
        transitions: ids
            .iter()
            .map(|id| {
                (
                    id.to_string(),
                    DesiredTransition {
                        migrate: Some(true),
                        ..Default::default()
                    },
                )
            })
            .collect(),
        evals: vec![],
        now: w.env.now,
    });
}

#[test]
fn a_migrating_allocation_keeps_running_until_its_replacement_is_healthy() {
    let mut w = World::new(&["n1"]);
    let j = job("web", JobType::Service, 2);
    w.register(&j);
    w.all_running("web");
    w.apply(Command::NodeRegister {
        node: Box::new(node("n2")),
        now: T0,
    });
    drain(&mut w, "n1", DrainStrategy::default());
    let first = w.live("web")[0].id.clone();
    mark_migrate(&mut w, &[&first]);

    let plan = w.rerun(&j, trigger::NODE_DRAIN);
    assert_eq!(plan.placement_count(), 1, "a replacement, nothing stopped");
    assert!(plan.node_update.values().all(Vec::is_empty), "{plan:?}");
    let replacement = w
        .live("web")
        .into_iter()
        .find(|a| a.previous_allocation == first)
        .unwrap();
    assert_eq!(
        (replacement.node_id.as_str(), replacement.name.as_str()),
        ("n2", "web.g[0]")
    );
    assert_eq!(w.live("web").len(), 3, "the original is not surplus");

    // Running is not enough; nor is a second run.
    w.report(&replacement.id, ClientStatus::Running, None);
    assert!(w.rerun(&j, trigger::NODE_DRAIN).is_no_op());
    w.report(&replacement.id, ClientStatus::Running, Some(false));
    assert!(w.rerun(&j, trigger::NODE_DRAIN).is_no_op());

    w.report(&replacement.id, ClientStatus::Running, Some(true));
    w.rerun(&j, trigger::NODE_DRAIN);
    let o = w.state.alloc(&first).unwrap();
    assert_eq!(
        (o.desired_status, o.desired_description.as_str()),
        (DesiredStatus::Stop, DESC_MIGRATING)
    );
    assert_eq!(w.live("web").len(), 2);
}

#[test]
fn at_the_drain_deadline_a_migrating_allocation_is_stopped_without_waiting() {
    let mut w = World::new(&["n1"]);
    let j = job("web", JobType::Service, 1);
    w.register(&j);
    w.all_running("web");
    w.apply(Command::NodeRegister {
        node: Box::new(node("n2")),
        now: T0,
    });
    drain(
        &mut w,
        "n1",
        DrainStrategy {
            deadline: -1,
            ..Default::default()
        },
    );
    let first = w.live("web")[0].id.clone();
    mark_migrate(&mut w, &[&first]);
    let plan = w.rerun(&j, trigger::NODE_DRAIN);
    assert_eq!(plan.placement_count(), 1);
    assert_eq!(
        w.state.alloc(&first).unwrap().desired_description,
        DESC_MIGRATING
    );
    assert_eq!(w.live("web").len(), 1);
}

#[test]
fn the_reconnect_picker_prefers_a_newer_job_version() {
    let group = TaskGroup::default();
    let old_job = Arc::new(Job {
        job_modify_index: 5,
        ..Default::default()
    });
    let new_job = Arc::new(Job {
        job_modify_index: 9,
        ..Default::default()
    });
    let original = Allocation {
        job: Some(old_job),
        client_status: ClientStatus::Running,
        ..Default::default()
    };
    let replacement = Allocation {
        job: Some(new_job),
        ..Default::default()
    };
    assert!(!keep_original(
        ReconcileStrategy::KeepOriginal,
        &group,
        &original,
        &replacement
    ));
}
