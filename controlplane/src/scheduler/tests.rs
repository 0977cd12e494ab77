use std::collections::BTreeMap;

use super::*;
use crate::model::*;
use crate::state::{Command, PlanResult, State};

/// Deterministic ids and a fixed clock.
struct TestEnv(u64);

impl SchedulerEnv for TestEnv {
    fn now_unix_nanos(&mut self) -> i64 {
        1_000
    }
    fn new_id(&mut self) -> String {
        self.0 += 1;
        format!("id-{:04}", self.0)
    }
}

fn node(id: &str, cpu: i64, mem: i64, drivers: &[&str]) -> Node {
    Node {
        id: id.into(),
        name: format!("name-{id}"),
        datacenter: "dc1".into(),
        node_pool: "default".into(),
        status: NodeStatus::Ready,
        scheduling_eligibility: eligibility::ELIGIBLE.into(),
        node_resources: NodeResources {
            cpu: NodeCpuResources {
                cpu_shares: cpu,
                ..Default::default()
            },
            memory: NodeMemoryResources { memory_mb: mem },
            disk: crate::model::NodeDiskResources { disk_mb: 100_000 },
            ..Default::default()
        },
        drivers: drivers
            .iter()
            .map(|d| {
                (
                    d.to_string(),
                    DriverInfo {
                        detected: true,
                        healthy: true,
                        ..Default::default()
                    },
                )
            })
            .collect(),
        ..Default::default()
    }
}

fn job(id: &str, job_type: JobType, count: i64, cpu: i64, mem: i64) -> Job {
    let mut job = Job {
        id: id.into(),
        job_type,
        datacenters: vec!["dc*".into()],
        task_groups: vec![TaskGroup {
            name: "g".into(),
            count,
            tasks: vec![Task {
                name: "t".into(),
                driver: "exec".into(),
                resources: Some(Resources {
                    cpu,
                    memory_mb: mem,
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

struct World {
    state: State,
    index: u64,
    env: TestEnv,
}

impl World {
    fn new(nodes: Vec<Node>) -> World {
        let mut w = World {
            state: State::default(),
            index: 0,
            env: TestEnv(0),
        };
        for n in nodes {
            w.apply(Command::NodeRegister {
                node: Box::new(n),
                now: 0,
            });
        }
        w
    }

    fn apply(&mut self, cmd: Command) {
        self.index += 1;
        let (resp, _) = self.state.apply(self.index, &cmd);
        assert_eq!(resp.error, None);
    }

    fn register(&mut self, job: &Job) -> Evaluation {
        let eval = Evaluation {
            id: self.env.new_id(),
            namespace: job.namespace.clone(),
            priority: job.priority,
            eval_type: job.job_type.as_str().into(),
            triggered_by: trigger::JOB_REGISTER.into(),
            job_id: job.id.clone(),
            status: EvalStatus::Pending,
            ..Default::default()
        };
        self.apply(Command::JobRegister {
            job: Box::new(job.clone()),
            eval: Some(eval.clone()),
            now: 0,
            enforce_index: None,
            tracked_versions: None,
        });
        self.state.eval(&eval.id).map(|e| (*e).clone()).unwrap()
    }

    /// Schedules and commits the whole plan, as an applier would when everything fits.
    fn schedule(&mut self, eval: &Evaluation) -> Plan {
        let plan = schedule(&self.state, eval, &mut self.env).unwrap();
        self.apply(Command::PlanApply(Box::new(PlanResult {
            eval: Some(plan.eval.clone()),
            allocs: plan.node_allocation.values().flatten().cloned().collect(),
            stops: plan.node_update.values().flatten().cloned().collect(),
            created_evals: plan.created_evals.clone(),
            now: 0,
            preemptions: plan.node_preemptions.values().flatten().cloned().collect(),
            job: plan.job.clone(),
            deployment: plan.deployment.clone(),
            deployment_updates: plan.deployment_updates.clone(),
        })));
        plan
    }

    fn live(&self, job: &str) -> Vec<std::sync::Arc<Allocation>> {
        let mut v: Vec<_> = self
            .state
            .allocs_by_job("default", job)
            .into_iter()
            .filter(|a| a.desired_status == DesiredStatus::Run && !a.client_status.is_terminal())
            .collect();
        v.sort_by_key(|a| a.name.clone());
        v
    }

    fn set_client_status(&mut self, alloc_id: &str, status: ClientStatus) {
        self.apply(Command::AllocClientUpdate {
            updates: vec![AllocClientUpdate {
                id: alloc_id.into(),
                client_status: status,
                ..Default::default()
            }],
            evals: vec![],
            now: 0,
        });
    }
}

#[test]
fn places_count_allocations_with_names_and_resources() {
    let mut w = World::new(vec![node("n1", 4000, 8192, &["exec"])]);
    let j = job("web", JobType::Service, 3, 500, 256);
    let eval = w.register(&j);
    let plan = w.schedule(&eval);
    assert_eq!(plan.placement_count(), 3);
    assert_eq!(plan.eval.status, EvalStatus::Complete);
    let names: Vec<String> = w.live("web").iter().map(|a| a.name.clone()).collect();
    assert_eq!(names, vec!["web.g[0]", "web.g[1]", "web.g[2]"]);
    let a = &w.live("web")[0];
    assert_eq!(a.node_id, "n1");
    assert_eq!(a.allocated_resources.tasks["t"].memory.memory_mb, 256);
    assert_eq!(a.allocated_resources.tasks["t"].cpu.cpu_shares, 500);
}

#[test]
fn the_same_inputs_give_the_same_plan() {
    let build = || {
        let mut w = World::new(vec![
            node("n1", 4000, 8192, &["exec"]),
            node("n2", 4000, 8192, &["exec"]),
        ]);
        let eval = w.register(&job("web", JobType::Service, 4, 500, 256));
        schedule(&w.state, &eval, &mut w.env).unwrap()
    };
    assert_eq!(build(), build());
}

#[test]
fn nodes_without_the_driver_are_filtered_and_reported() {
    let mut w = World::new(vec![node("n1", 4000, 8192, &["raw_exec"])]);
    let eval = w.register(&job("web", JobType::Service, 1, 100, 100));
    let plan = w.schedule(&eval);
    assert_eq!(plan.placement_count(), 0);
    let failed = &plan.eval.failed_tg_allocs["g"];
    assert_eq!(failed.nodes_filtered, 1);
    assert_eq!(
        failed.constraint_filtered["missing drivers"], 1,
        "Nomad's words"
    );
    assert_eq!(plan.eval.queued_allocations["g"], 1);
    // The unplaced work waits in a blocked evaluation.
    assert_eq!(plan.created_evals.len(), 1);
    assert_eq!(plan.created_evals[0].status, EvalStatus::Blocked);
    assert_eq!(plan.eval.blocked_eval, plan.created_evals[0].id);
}

#[test]
fn a_bridge_group_goes_only_to_nodes_that_offer_bridge_networking() {
    let mut bridged = node("n2", 4000, 8192, &["exec"]);
    bridged.node_resources.node_networks = vec![crate::model::NodeNetworkResource {
        mode: "bridge".into(),
        device: "noded0".into(),
        ..Default::default()
    }];
    bridged.computed_class = bridged.compute_class();
    let mut w = World::new(vec![node("n1", 4000, 8192, &["exec"]), bridged]);
    let mut web = job("web", JobType::Service, 2, 100, 100);
    web.task_groups[0].networks = vec![crate::model::NetworkResource {
        mode: "bridge".into(),
        ..Default::default()
    }];
    let eval = w.register(&web);
    let plan = w.schedule(&eval);
    assert!(
        plan.node_allocation.keys().all(|n| n == "n2"),
        "{:?}",
        plan.node_allocation.keys()
    );
    assert_eq!(plan.placement_count(), 2);
    // A host-mode group still goes anywhere.
    let eval = w.register(&job("plain", JobType::Service, 1, 100, 100));
    assert_eq!(w.schedule(&eval).placement_count(), 1);
    // With no bridge node left the reason is Nomad's.
    let mut w = World::new(vec![node("n1", 4000, 8192, &["exec"])]);
    let eval = w.register(&web);
    let plan = w.schedule(&eval);
    assert_eq!(
        plan.eval.failed_tg_allocs["g"].constraint_filtered["missing network"],
        1
    );
}

#[test]
fn a_port_on_a_host_network_binds_its_address_and_needs_a_node_that_has_it() {
    use crate::model::{NetworkResource, NodeNetworkAddress, NodeNetworkResource, Port};
    let mut public = node("n2", 4000, 8192, &["exec"]);
    public.node_resources.node_networks = vec![NodeNetworkResource {
        mode: "host".into(),
        device: "eth1".into(),
        addresses: vec![NodeNetworkAddress {
            family: "ipv4".into(),
            alias: "public".into(),
            address: "203.0.113.5".into(),
            reserved_ports: "25000-32000".into(),
            ..Default::default()
        }],
        ..Default::default()
    }];
    public.computed_class = public.compute_class();
    let mut w = World::new(vec![node("n1", 4000, 8192, &["exec"]), public]);
    let mut web = job("web", JobType::Service, 1, 100, 100);
    web.task_groups[0].networks = vec![NetworkResource {
        dynamic_ports: vec![Port {
            label: "http".into(),
            host_network: "public".into(),
            ..Default::default()
        }],
        ..Default::default()
    }];
    let eval = w.register(&web);
    let plan = w.schedule(&eval);
    let placed: Vec<&crate::model::Allocation> = plan.node_allocation.values().flatten().collect();
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0].node_id, "n2");
    let port = &placed[0].allocated_resources.shared.ports[0];
    assert_eq!(
        port.host_ip, "203.0.113.5",
        "bound on the host network's address"
    );
    assert!(
        port.value < 25000,
        "the host network's reserved ports are kept: {}",
        port.value
    );
    let failed = &plan.eval.failed_tg_allocs;
    assert!(failed.is_empty(), "{failed:?}");
    let mut w = World::new(vec![node("n1", 4000, 8192, &["exec"])]);
    let eval = w.register(&web);
    let plan = w.schedule(&eval);
    assert_eq!(
        plan.eval.failed_tg_allocs["g"].constraint_filtered
            ["missing host network \"public\" for port \"http\""],
        1,
        "Nomad's words"
    );
}

#[test]
fn resources_are_respected_and_exhaustion_is_reported() {
    let mut w = World::new(vec![node("n1", 1000, 1024, &["exec"])]);
    let eval = w.register(&job("web", JobType::Service, 3, 400, 256));
    let plan = w.schedule(&eval);
    assert_eq!(
        plan.placement_count(),
        2,
        "only two 400 MHz tasks fit in 1000 MHz"
    );
    let failed = &plan.eval.failed_tg_allocs["g"];
    assert_eq!(failed.nodes_exhausted, 1);
    assert_eq!(failed.dimension_exhausted["cpu"], 1);
}

#[test]
fn binpacking_prefers_the_fuller_node() {
    let mut w = World::new(vec![
        node("big", 8000, 16384, &["exec"]),
        node("small", 1000, 1024, &["exec"]),
    ]);
    let eval = w.register(&job("web", JobType::Service, 1, 500, 512));
    w.schedule(&eval);
    assert_eq!(w.live("web")[0].node_id, "small");
}

#[test]
fn datacenter_globs_filter_nodes() {
    let mut w = World::new(vec![node("n1", 4000, 8192, &["exec"])]);
    let mut j = job("web", JobType::Service, 1, 100, 100);
    j.datacenters = vec!["eu-*".into()];
    let eval = w.register(&j);
    let plan = w.schedule(&eval);
    assert_eq!(plan.placement_count(), 0);
    // As in Nomad, nodes outside the job's datacenters are not evaluated at all.
    let failed = &plan.eval.failed_tg_allocs["g"];
    assert_eq!(failed.nodes_evaluated, 0);
    assert_eq!(failed.nodes_in_pool, 0);
}

#[test]
fn scaling_down_stops_the_highest_indexes_and_up_fills_gaps() {
    let mut w = World::new(vec![node("n1", 8000, 8192, &["exec"])]);
    let eval = w.register(&job("web", JobType::Service, 3, 100, 100));
    w.schedule(&eval);
    let eval = w.register(&job("web", JobType::Service, 1, 100, 100));
    let plan = w.schedule(&eval);
    assert_eq!(plan.node_update["n1"].len(), 2);
    assert_eq!(
        plan.placement_count(),
        1,
        "the kept allocation is updated in place"
    );
    let names: Vec<String> = w.live("web").iter().map(|a| a.name.clone()).collect();
    assert_eq!(names, vec!["web.g[0]"]);
    let eval = w.register(&job("web", JobType::Service, 2, 100, 100));
    w.schedule(&eval);
    let names: Vec<String> = w.live("web").iter().map(|a| a.name.clone()).collect();
    assert_eq!(names, vec!["web.g[0]", "web.g[1]"]);
}

#[test]
fn a_changed_task_replaces_allocations_under_the_same_name() {
    let mut w = World::new(vec![node("n1", 8000, 8192, &["exec"])]);
    let eval = w.register(&job("web", JobType::Service, 1, 100, 100));
    w.schedule(&eval);
    let old = w.live("web")[0].id.clone();
    let eval = w.register(&job("web", JobType::Service, 1, 200, 100));
    let plan = w.schedule(&eval);
    assert_eq!(plan.node_update["n1"][0].alloc_id, old);
    assert_eq!(
        plan.node_update["n1"][0].desired_description,
        DESC_JOB_UPDATED
    );
    let new = &w.live("web")[0];
    assert_eq!(new.name, "web.g[0]");
    assert_eq!(new.previous_allocation, old);
    assert_eq!(new.job_version(), 1);
}

#[test]
fn an_unchanged_job_is_a_no_op() {
    let mut w = World::new(vec![node("n1", 8000, 8192, &["exec"])]);
    let j = job("web", JobType::Service, 2, 100, 100);
    let eval = w.register(&j);
    w.schedule(&eval);
    let eval = w.register(&j);
    let plan = w.schedule(&eval);
    assert!(plan.is_no_op(), "{plan:?}");
}

#[test]
fn stopping_a_job_stops_its_allocations() {
    let mut w = World::new(vec![node("n1", 8000, 8192, &["exec"])]);
    let eval = w.register(&job("web", JobType::Service, 2, 100, 100));
    w.schedule(&eval);
    w.apply(Command::JobDeregister {
        namespace: "default".into(),
        job_id: "web".into(),
        purge: false,
        eval: None,
        now: 0,
    });
    let eval = Evaluation {
        id: "stop-eval".into(),
        namespace: "default".into(),
        job_id: "web".into(),
        status: EvalStatus::Pending,
        ..Default::default()
    };
    let plan = w.schedule(&eval);
    assert_eq!(plan.node_update["n1"].len(), 2);
    assert!(plan.node_update["n1"]
        .iter()
        .all(|s| s.desired_description == DESC_JOB_STOPPED));
    assert!(w.live("web").is_empty());
}

#[test]
fn completed_batch_work_is_not_run_again_but_failed_work_is_replaced() {
    use super::testkit::{self, SEC};
    let mut w = testkit::World::new(vec![testkit::node("n1", 8000, 8192)]);
    let j = testkit::job("b", JobType::Batch, 2, 100, 100);
    w.register(&j);
    let live = w.live("b");
    w.report(&live[0].id, ClientStatus::Complete);
    w.report(&live[1].id, ClientStatus::Failed);
    // Batch's default policy: one attempt, 5 s after the failure, by a delayed evaluation.
    let plan = w.rerun("b", trigger::ALLOC_FAILURE);
    assert_eq!(
        plan.placement_count(),
        1,
        "only the in-place note of the follow-up"
    );
    assert_eq!(plan.created_evals.len(), 1);
    let follow_up = plan.created_evals[0].clone();
    w.env.now += 5 * SEC;
    let plan = w.schedule(&follow_up);
    let placed: Vec<_> = plan
        .node_allocation
        .values()
        .flatten()
        .filter(|a| {
            w.state
                .alloc(&a.id)
                .is_some_and(|s| s.create_index == w.index)
        })
        .cloned()
        .collect();
    assert_eq!(placed.len(), 1, "{plan:?}");
    assert_eq!(
        placed[0].name, live[1].name,
        "the failed one's name is reused"
    );
    assert_eq!(placed[0].previous_allocation, live[1].id);
}

#[test]
fn terminal_allocations_free_their_resources() {
    let mut w = World::new(vec![node("n1", 1000, 1024, &["exec"])]);
    let eval = w.register(&job("a", JobType::Batch, 1, 900, 100));
    w.schedule(&eval);
    let eval = w.register(&job("b", JobType::Batch, 1, 900, 100));
    assert_eq!(w.schedule(&eval).placement_count(), 0);
    let a = w.live("a")[0].id.clone();
    w.set_client_status(&a, ClientStatus::Complete);
    let plan = schedule(&w.state, &eval, &mut w.env).unwrap();
    assert_eq!(plan.placement_count(), 1);
}

#[test]
fn metrics_count_every_node_considered() {
    let mut w = World::new(vec![
        node("n1", 4000, 8192, &["exec"]),
        node("n2", 4000, 8192, &["raw_exec"]),
        node("n3", 100, 100, &["exec"]),
    ]);
    let eval = w.register(&job("web", JobType::Service, 1, 500, 500));
    w.schedule(&eval);
    let metric = &w.live("web")[0].metrics;
    assert_eq!(metric.nodes_evaluated, 3);
    assert_eq!(metric.nodes_filtered, 1);
    assert_eq!(metric.nodes_exhausted, 1);
    // Nomad's NodesAvailable: the ready nodes of each datacenter, before filtering.
    let expected: BTreeMap<String, u64> = [("dc1".to_string(), 3)].into();
    assert_eq!(metric.nodes_available, expected);
}

fn cores_job(id: &str, count: i64, cores: i64) -> Job {
    let mut j = job(id, JobType::Service, count, 0, 64);
    let r = j.task_groups[0].tasks[0].resources.as_mut().unwrap();
    r.cpu = 0;
    r.cores = cores;
    j
}

fn cores_node(id: &str, cores: u32) -> Node {
    let mut n = node(id, 2000 * i64::from(cores), 8192, &["exec"]);
    n.node_resources.cpu.total_cpu_cores = cores;
    n.node_resources.cpu.reservable_cpu_cores = (0..cores).collect();
    n
}

#[test]
fn cores_are_reserved_exclusively_and_run_out() {
    let mut w = World::new(vec![cores_node("n1", 4)]);
    let eval = w.register(&cores_job("c", 3, 2));
    let plan = w.schedule(&eval);
    assert_eq!(plan.placement_count(), 2, "4 cores fit two tasks of 2");
    assert_eq!(
        plan.eval.failed_tg_allocs["g"].dimension_exhausted["cores"],
        1
    );
    let mut seen = std::collections::BTreeSet::new();
    for a in w.live("c") {
        let t = &a.allocated_resources.tasks["t"];
        assert_eq!(t.cpu.reserved_cores.len(), 2);
        assert_eq!(t.cpu.cpu_shares, 4000, "two cores of 2000 MHz");
        for c in &t.cpu.reserved_cores {
            assert!(seen.insert(*c), "core {c} given twice");
        }
    }
    // Another job cannot have them either, until the first stops.
    let eval = w.register(&cores_job("d", 1, 1));
    assert_eq!(w.schedule(&eval).placement_count(), 0);
    let first = w.live("c")[0].id.clone();
    w.set_client_status(&first, ClientStatus::Complete);
    let plan = schedule(&w.state, &eval, &mut w.env).unwrap();
    assert_eq!(plan.placement_count(), 1);
}

#[test]
fn memory_max_is_granted_only_when_oversubscription_is_enabled() {
    let mut w = World::new(vec![node("n1", 4000, 8192, &["exec"])]);
    let mut j = job("m", JobType::Service, 1, 100, 128);
    j.task_groups[0].tasks[0]
        .resources
        .as_mut()
        .unwrap()
        .memory_max_mb = 512;
    let eval = w.register(&j);
    w.schedule(&eval);
    assert_eq!(
        w.live("m")[0].allocated_resources.tasks["t"]
            .memory
            .memory_max_mb,
        0
    );
    w.apply(Command::SchedulerSetConfig {
        config: SchedulerConfiguration {
            memory_oversubscription_enabled: true,
            ..Default::default()
        },
        cas: None,
    });
    let mut j2 = j.clone();
    j2.id = "m2".into();
    let eval = w.register(&j2);
    w.schedule(&eval);
    let granted = &w.live("m2")[0].allocated_resources.tasks["t"].memory;
    assert_eq!((granted.memory_mb, granted.memory_max_mb), (128, 512));
}
