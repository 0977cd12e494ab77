//! Placement scenarios: constraints, distinct hosts and properties, ports, host volumes, disk,
//! spreads, affinities, the spread algorithm, the reschedule penalty, the limit iterator,
//! preemption and determinism. Plans are committed through the real plan applier
//! (`evaluate_plan`) and state machine.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::system::NodePlacement;
use super::*;
use crate::model::*;
use crate::server::planner::evaluate_plan;
use crate::state::{Command, State};

struct TestEnv(u64);

impl SchedulerEnv for TestEnv {
    fn now_unix_nanos(&mut self) -> i64 {
        1_000
    }
    fn new_id(&mut self) -> String {
        self.0 += 1;
        format!("id-{:06}", self.0)
    }
}

fn node(id: &str, dc: &str) -> Node {
    Node {
        id: id.into(),
        name: format!("name-{id}"),
        datacenter: dc.into(),
        node_pool: "default".into(),
        status: NodeStatus::Ready,
        scheduling_eligibility: eligibility::ELIGIBLE.into(),
        node_resources: NodeResources {
            cpu: NodeCpuResources {
                cpu_shares: 4000,
                ..Default::default()
            },
            memory: NodeMemoryResources { memory_mb: 4096 },
            disk: NodeDiskResources { disk_mb: 10_000 },
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

fn job(id: &str, count: i64) -> Job {
    let mut job = Job {
        id: id.into(),
        job_type: JobType::Service,
        priority: 50,
        datacenters: vec!["*".into()],
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

fn constrained(id: &str, count: i64, l: &str, op: &str, r: &str) -> Job {
    let mut j = job(id, count);
    j.constraints.push(Constraint {
        l_target: l.into(),
        operand: op.into(),
        r_target: r.into(),
    });
    j
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

    fn config(&mut self, f: impl FnOnce(&mut SchedulerConfiguration)) {
        let mut config = (*self.state.scheduler_config()).clone();
        f(&mut config);
        self.apply(Command::SchedulerSetConfig { config, cas: None });
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

    /// Schedules and commits what the plan applier accepts.
    fn schedule(&mut self, eval: &Evaluation) -> Plan {
        let plan = schedule(&self.state, eval, &mut self.env).unwrap();
        let verdict = evaluate_plan(&self.state, &plan, 0);
        assert!(verdict.fully_accepted(), "{:?}", verdict.rejected_nodes);
        self.apply(Command::PlanApply(Box::new(verdict.result)));
        plan
    }

    fn run(&mut self, job: &Job) -> Plan {
        let eval = self.register(job);
        self.schedule(&eval)
    }

    fn live(&self, job: &str) -> Vec<Arc<Allocation>> {
        self.state
            .allocs_by_job("default", job)
            .into_iter()
            .filter(|a| !a.is_terminal())
            .collect()
    }

    fn nodes_of(&self, job: &str) -> Vec<String> {
        let mut v: Vec<String> = self.live(job).iter().map(|a| a.node_id.clone()).collect();
        v.sort();
        v
    }
}

fn with_attr(id: &str, key: &str, value: &str) -> Node {
    let mut n = node(id, "dc1");
    n.attributes.insert(key.into(), value.into());
    n
}

#[test]
fn every_constraint_operator_keeps_the_failing_node_out() {
    // (attribute value that passes, that fails, operator, right-hand side)
    let cases: &[(&str, &str, &str, &str)] = &[
        ("linux", "windows", "=", "linux"),
        ("linux", "windows", "==", "linux"),
        ("linux", "windows", "is", "linux"),
        ("linux", "windows", "!=", "windows"),
        ("linux", "windows", "not", "windows"),
        ("8", "12", "<", "10"),
        ("10", "12", "<=", "10"),
        ("12", "8", ">", "10"),
        ("10", "8", ">=", "10"),
        ("1.7.3", "1.5.0", "version", ">= 1.6, < 2.0"),
        ("1.7.3", "1.5.0", "semver", ">= 1.6.0"),
        ("linux-amd64", "windows", "regexp", "^linux-"),
        ("a,b,c", "a,c", "set_contains", "a, b"),
        ("a,b,c", "a,c", "set_contains_all", "b,c"),
        ("a,b", "c,d", "set_contains_any", "b,x"),
    ];
    for (pass, fail, op, r) in cases {
        let mut w = World::new(vec![
            with_attr("good", "k", pass),
            with_attr("bad", "k", fail),
        ]);
        let j = constrained("web", 2, "${attr.k}", op, r);
        let plan = w.run(&j);
        assert_eq!(w.nodes_of("web"), vec!["good", "good"], "{op} {r}");
        let key = format!("${{attr.k}} {op} {r}");
        let metric = &w.live("web")[0].metrics;
        let filtered = metric.constraint_filtered.get(&key).copied().unwrap_or(0)
            + metric
                .constraint_filtered
                .get("computed class ineligible")
                .copied()
                .unwrap_or(0);
        assert!(filtered <= 1, "{op}: {:?}", metric.constraint_filtered);
        assert!(plan.eval.failed_tg_allocs.is_empty(), "{op}");
    }
    // is_set / is_not_set look at presence.
    let mut w = World::new(vec![with_attr("good", "k", "x"), node("bad", "dc1")]);
    w.run(&constrained("a", 1, "${attr.k}", "is_set", ""));
    assert_eq!(w.nodes_of("a"), vec!["good"]);
    w.run(&constrained("b", 1, "${attr.k}", "is_not_set", ""));
    assert_eq!(w.nodes_of("b"), vec!["bad"]);
}

#[test]
fn a_constraint_no_node_meets_is_reported_as_nomad_prints_it() {
    let mut w = World::new(vec![with_attr("n1", "kernel.name", "linux")]);
    let plan = w.run(&constrained(
        "web",
        1,
        "${attr.kernel.name}",
        "=",
        "windows",
    ));
    let failed = &plan.eval.failed_tg_allocs["g"];
    assert_eq!(
        failed.constraint_filtered["${attr.kernel.name} = windows"],
        1
    );
    assert_eq!(failed.nodes_filtered, 1);
    let blocked = &plan.created_evals[0];
    let class = w.state.node("n1").unwrap().computed_class.clone();
    assert_eq!(blocked.class_eligibility, BTreeMap::from([(class, false)]));
    assert!(!blocked.escaped_computed_class);
}

#[test]
fn unique_targets_escape_the_computed_class() {
    let mut w = World::new(vec![node("n1", "dc1")]);
    let plan = w.run(&constrained(
        "web",
        1,
        "${node.unique.name}",
        "=",
        "elsewhere",
    ));
    assert!(plan.created_evals[0].escaped_computed_class);
}

#[test]
fn distinct_hosts_puts_one_allocation_per_node() {
    let mut w = World::new(vec![node("n1", "dc1"), node("n2", "dc1")]);
    let plan = w.run(&constrained("web", 3, "", "distinct_hosts", "true"));
    assert_eq!(w.nodes_of("web"), vec!["n1", "n2"]);
    let failed = &plan.eval.failed_tg_allocs["g"];
    assert_eq!(failed.constraint_filtered["distinct_hosts"], 2);
}

#[test]
fn distinct_property_limits_allocations_per_value() {
    let mut w = World::new(vec![
        node("a1", "dc1"),
        node("a2", "dc1"),
        node("b1", "dc2"),
        node("b2", "dc2"),
    ]);
    let plan = w.run(&constrained(
        "web",
        5,
        "${node.datacenter}",
        "distinct_property",
        "2",
    ));
    assert_eq!(w.live("web").len(), 4, "two per datacenter");
    let failed = &plan.eval.failed_tg_allocs["g"];
    assert!(failed
        .constraint_filtered
        .keys()
        .any(|k| k.starts_with("distinct_property: ${node.datacenter}=dc")));
}

fn port_job(id: &str, count: i64, static_port: Option<i64>, dynamic: usize) -> Job {
    let mut j = job(id, count);
    j.task_groups[0].networks = vec![NetworkResource {
        reserved_ports: static_port
            .map(|p| Port {
                label: "http".into(),
                value: p,
                ..Default::default()
            })
            .into_iter()
            .collect(),
        dynamic_ports: (0..dynamic)
            .map(|i| Port {
                label: format!("dyn{i}"),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }];
    j
}

#[test]
fn a_static_port_is_held_once_per_node() {
    let mut w = World::new(vec![node("n1", "dc1")]);
    let plan = w.run(&port_job("web", 2, Some(8080), 0));
    assert_eq!(w.live("web").len(), 1);
    let a = &w.live("web")[0];
    assert_eq!(a.allocated_resources.shared.ports[0].value, 8080);
    assert_eq!(a.allocated_resources.shared.ports[0].label, "http");
    assert_eq!(
        plan.eval.failed_tg_allocs["g"].dimension_exhausted
            ["network: reserved port collision http=8080"],
        1
    );
}

#[test]
fn a_node_reserved_port_is_never_given_out() {
    let mut n = node("n1", "dc1");
    n.reserved_resources.networks = Some(NodeReservedNetworkResources {
        reserved_host_ports: "22,8000-8100".into(),
    });
    let mut w = World::new(vec![n]);
    let plan = w.run(&port_job("web", 1, Some(8080), 0));
    assert!(w.live("web").is_empty());
    assert!(plan.eval.failed_tg_allocs["g"]
        .dimension_exhausted
        .contains_key("network: reserved port collision http=8080"));
}

#[test]
fn dynamic_ports_are_distinct_and_run_out() {
    let mut n = node("n1", "dc1");
    n.node_resources.min_dynamic_port = 30000;
    n.node_resources.max_dynamic_port = 30003;
    let mut w = World::new(vec![n]);
    let plan = w.run(&port_job("web", 3, None, 2));
    let mut ports: Vec<i64> = w
        .live("web")
        .iter()
        .flat_map(|a| a.allocated_resources.shared.ports.iter().map(|p| p.value))
        .collect();
    ports.sort();
    assert_eq!(ports, vec![30000, 30001, 30002, 30003]);
    assert_eq!(
        plan.eval.failed_tg_allocs["g"].dimension_exhausted
            ["network: dynamic port selection failed"],
        1
    );
    let a = &w.live("web")[0];
    let net = &a.allocated_resources.shared.networks[0];
    assert!(net
        .dynamic_ports
        .iter()
        .all(|p| (30000..=30003).contains(&p.value)));
}

#[test]
fn two_racing_plans_cannot_both_commit_one_port() {
    let mut w = World::new(vec![node("n1", "dc1")]);
    let a = w.register(&port_job("a", 1, Some(8080), 0));
    let b = w.register(&port_job("b", 1, Some(8080), 0));
    // Both planned against the same snapshot: each sees the port free.
    let plan_a = schedule(&w.state, &a, &mut w.env).unwrap();
    let plan_b = schedule(&w.state, &b, &mut w.env).unwrap();
    assert_eq!(plan_a.placement_count(), 1);
    assert_eq!(plan_b.placement_count(), 1);
    let verdict = evaluate_plan(&w.state, &plan_a, 0);
    assert!(verdict.fully_accepted());
    w.apply(Command::PlanApply(Box::new(verdict.result)));
    let verdict = evaluate_plan(&w.state, &plan_b, 0);
    assert!(
        verdict.rejected_nodes["n1"].contains("port 8080"),
        "{:?}",
        verdict.rejected_nodes
    );
    // And the state machine refuses it on its own, should an applier let it through.
    let mut forced = verdict.result.clone();
    forced.allocs = plan_b.node_allocation["n1"].clone();
    w.index += 1;
    let (resp, _) = w
        .state
        .apply(w.index, &Command::PlanApply(Box::new(forced)));
    assert!(resp.error.unwrap().contains("port 8080"));
}

#[test]
fn host_volumes_must_exist_and_be_writable_when_asked() {
    let mut rw = node("rw", "dc1");
    rw.host_volumes.insert(
        "data".into(),
        ClientHostVolumeConfig {
            name: "data".into(),
            path: "/srv/data".into(),
            read_only: false,
        },
    );
    let mut ro = node("ro", "dc1");
    ro.host_volumes.insert(
        "data".into(),
        ClientHostVolumeConfig {
            name: "data".into(),
            path: "/srv/data".into(),
            read_only: true,
        },
    );
    let mut w = World::new(vec![rw, ro, node("none", "dc1")]);
    let mut j = job("web", 3);
    j.task_groups[0].volumes.insert(
        "data".into(),
        VolumeRequest {
            name: "data".into(),
            volume_type: "host".into(),
            source: "data".into(),
            ..Default::default()
        },
    );
    let plan = w.run(&j);
    assert_eq!(w.nodes_of("web"), vec!["rw", "rw", "rw"]);
    assert!(plan.eval.failed_tg_allocs.is_empty());
    j.id = "reader".into();
    j.task_groups[0].volumes.get_mut("data").unwrap().read_only = true;
    j.task_groups[0].count = 1;
    j.constraints.push(Constraint {
        l_target: "${node.unique.id}".into(),
        operand: "!=".into(),
        r_target: "rw".into(),
    });
    w.run(&j);
    assert_eq!(w.nodes_of("reader"), vec!["ro"]);
}

#[test]
fn ephemeral_disk_is_counted() {
    let mut w = World::new(vec![node("n1", "dc1")]);
    let mut j = job("web", 3);
    j.task_groups[0].ephemeral_disk = Some(EphemeralDisk {
        size_mb: Some(4000),
        ..Default::default()
    });
    let plan = w.run(&j);
    assert_eq!(w.live("web").len(), 2, "10 GB holds two 4 GB disks");
    assert_eq!(w.live("web")[0].allocated_resources.shared.disk_mb, 4000);
    assert_eq!(
        plan.eval.failed_tg_allocs["g"].dimension_exhausted["disk"],
        1
    );
}

#[test]
fn spread_targets_split_seventy_thirty() {
    let mut nodes = Vec::new();
    for i in 0..5 {
        nodes.push(node(&format!("a{i}"), "dc1"));
        nodes.push(node(&format!("b{i}"), "dc2"));
    }
    let mut w = World::new(nodes);
    let mut j = job("web", 10);
    j.spreads.push(Spread {
        attribute: "${node.datacenter}".into(),
        weight: Some(100),
        spread_target: vec![
            SpreadTarget {
                value: "dc1".into(),
                percent: 70,
            },
            SpreadTarget {
                value: "dc2".into(),
                percent: 30,
            },
        ],
    });
    w.run(&j);
    let in_dc1 = w
        .nodes_of("web")
        .iter()
        .filter(|n| n.starts_with('a'))
        .count();
    assert_eq!((in_dc1, 10 - in_dc1), (7, 3));
}

#[test]
fn an_even_spread_without_targets_balances() {
    let nodes = (0..4)
        .map(|i| node(&format!("n{i}"), if i % 2 == 0 { "dc1" } else { "dc2" }))
        .collect();
    let mut w = World::new(nodes);
    let mut j = job("web", 6);
    j.spreads.push(Spread {
        attribute: "${node.datacenter}".into(),
        weight: Some(50),
        spread_target: vec![],
    });
    w.run(&j);
    let dc = |n: &str| w.state.node(n).unwrap().datacenter.clone();
    let in_dc1 = w.nodes_of("web").iter().filter(|n| dc(n) == "dc1").count();
    assert_eq!(in_dc1, 3);
}

#[test]
fn an_affinity_prefers_its_class() {
    let mut nodes = Vec::new();
    for i in 0..6 {
        let mut n = node(&format!("n{i}"), "dc1");
        n.node_class = if i == 4 { "fast".into() } else { "slow".into() };
        nodes.push(n);
    }
    let mut w = World::new(nodes);
    let mut j = job("web", 1);
    j.affinities.push(Affinity {
        l_target: "${node.class}".into(),
        operand: "=".into(),
        r_target: "fast".into(),
        weight: Some(100),
    });
    w.run(&j);
    assert_eq!(w.nodes_of("web"), vec!["n4"]);
    let meta = &w.live("web")[0].metrics.score_meta_data;
    assert_eq!(meta[0].node_id, "n4");
    assert_eq!(meta[0].scores["node-affinity"], 1.0);
    assert!(meta.len() <= MAX_RETAINED_NODE_SCORES);
}

#[test]
fn binpack_packs_and_spread_spreads() {
    for (algorithm, same_node) in [("binpack", true), ("spread", false)] {
        let mut w = World::new(vec![node("n1", "dc1"), node("n2", "dc1")]);
        w.config(|c| c.scheduler_algorithm = algorithm.into());
        w.run(&job("a", 1));
        w.run(&job("b", 1));
        assert_eq!(w.nodes_of("a") == w.nodes_of("b"), same_node, "{algorithm}");
    }
}

#[test]
fn a_failed_allocations_node_is_penalized_for_its_replacement() {
    let mut w = World::new(vec![node("n1", "dc1"), node("n2", "dc1")]);
    w.run(&job("web", 1));
    let first = w.live("web")[0].clone();
    w.apply(Command::AllocClientUpdate {
        updates: vec![AllocClientUpdate {
            id: first.id.clone(),
            client_status: ClientStatus::Failed,
            ..Default::default()
        }],
        evals: vec![],
        now: 0,
    });
    let eval = w.state.evals_by_job("default", "web")[0].clone();
    let job = w.state.job("default", "web").unwrap();
    let mut run = Run::new(&w.state, &eval, 0);
    run.place(&job, &job.task_groups[0], 0, first.id.clone(), &mut w.env);
    let placed = run.plan.node_allocation.values().flatten().next().unwrap();
    assert_ne!(
        placed.node_id, first.node_id,
        "the node it failed on scores -1"
    );
    let meta = &placed.metrics.score_meta_data;
    let penalized = meta.iter().find(|m| m.node_id == first.node_id).unwrap();
    assert_eq!(penalized.scores["node-reschedule-penalty"], -1.0);
}

#[test]
fn the_limit_iterator_bounds_work_on_five_thousand_nodes() {
    let nodes: Vec<Node> = (0..5000)
        .map(|i| node(&format!("n{i:04}"), "dc1"))
        .collect();
    let mut w = World::new(nodes);
    let j = job("web", 200);
    let eval = w.register(&j);
    let job = w.state.job("default", "web").unwrap();
    let mut run = Run::new(&w.state, &eval, 0);
    for i in 0..200 {
        run.place(&job, &job.task_groups[0], i, String::new(), &mut w.env);
    }
    assert_eq!(run.plan.placement_count(), 200);
    // log2(5000) rounds up to 13 nodes per placement.
    assert_eq!(run.select.node_visits, 200 * 13);
    let metric = &run
        .plan
        .node_allocation
        .values()
        .flatten()
        .next()
        .unwrap()
        .metrics;
    assert_eq!(metric.nodes_evaluated, 13);
    assert_eq!(metric.nodes_in_pool, 5000);
    // Batch jobs compare two.
    let mut b = job_of_type("batch", JobType::Batch, 10);
    b.canonicalize();
    let eval = w.register(&b);
    let batch = w.state.job("default", "batch").unwrap();
    let mut run = Run::new(&w.state, &eval, 0);
    for i in 0..10 {
        run.place(&batch, &batch.task_groups[0], i, String::new(), &mut w.env);
    }
    assert_eq!(run.select.node_visits, 20);
}

fn job_of_type(id: &str, t: JobType, count: i64) -> Job {
    let mut j = job(id, count);
    j.job_type = t;
    j
}

fn filler(id: &str, priority: i32) -> Job {
    let mut j = job_of_type(id, JobType::Batch, 1);
    j.priority = priority;
    let r = j.task_groups[0].tasks[0].resources.as_mut().unwrap();
    r.cpu = 3500;
    j
}

fn big(id: &str, priority: i32) -> Job {
    let mut j = job(id, 1);
    j.priority = priority;
    j.task_groups[0].tasks[0].resources.as_mut().unwrap().cpu = 2000;
    j
}

#[test]
fn a_higher_priority_job_preempts_low_priority_batch_work() {
    let mut w = World::new(vec![node("n1", "dc1")]);
    w.config(|c| c.preemption_config.service_scheduler_enabled = true);
    w.run(&filler("low", 20));
    let victim = w.live("low")[0].clone();
    let plan = w.run(&big("high", 70));
    let placed = &plan.node_allocation["n1"][0];
    assert_eq!(placed.preempted_allocations, vec![victim.id.clone()]);
    assert_eq!(plan.node_preemptions["n1"][0].alloc_id, victim.id);
    let evicted = w.state.alloc(&victim.id).unwrap();
    assert_eq!(evicted.desired_status, DesiredStatus::Evict);
    assert_eq!(
        evicted.desired_description,
        format!("Preempted by alloc ID {}", placed.id)
    );
    assert_eq!(evicted.preempted_by_allocation, placed.id);
    let evals = w.state.evals_by_job("default", "low");
    assert!(
        evals.iter().any(|e| e.triggered_by == trigger::PREEMPTION),
        "the preempted job is evaluated again"
    );
    assert!(placed.metrics.score_meta_data[0]
        .scores
        .contains_key("preemption"));
}

#[test]
fn no_preemption_when_disabled_or_within_ten_priorities() {
    let mut w = World::new(vec![node("n1", "dc1")]);
    w.run(&filler("low", 20));
    let plan = w.run(&big("high", 70));
    assert_eq!(
        plan.placement_count(),
        0,
        "service preemption is off by default"
    );

    let mut w = World::new(vec![node("n1", "dc1")]);
    w.config(|c| c.preemption_config.service_scheduler_enabled = true);
    w.run(&filler("low", 61));
    let plan = w.run(&big("high", 70));
    assert_eq!(plan.placement_count(), 0, "a gap of 9 is not enough");
    assert!(plan.node_preemptions.is_empty());
    assert_eq!(w.live("low").len(), 1);
}

#[test]
fn the_same_snapshot_and_evaluation_give_the_same_plan() {
    let build = || {
        let nodes: Vec<Node> = (0..50).map(|i| node(&format!("n{i}"), "dc1")).collect();
        let mut w = World::new(nodes);
        let eval = w.register(&port_job("web", 20, None, 2));
        schedule(&w.state, &eval, &mut w.env).unwrap()
    };
    let (a, b) = (build(), build());
    assert_eq!(a, b);
    assert_eq!(a.placement_count(), 20);
}

#[test]
fn place_on_node_runs_every_check_for_one_node() {
    let mut w = World::new(vec![with_attr("n1", "k", "v"), with_attr("n2", "k", "w")]);
    let j = constrained("sys", 1, "${attr.k}", "=", "v");
    let eval = w.register(&j);
    let job = w.state.job("default", "sys").unwrap();
    let (n1, n2) = (w.state.node("n1").unwrap(), w.state.node("n2").unwrap());
    let mut run = Run::new(&w.state, &eval, 0);
    assert!(matches!(
        run.place_on_node(&job, &job.task_groups[0], 0, String::new(), &n1, &mut w.env),
        NodePlacement::Placed
    ));
    match run.place_on_node(&job, &job.task_groups[0], 0, String::new(), &n2, &mut w.env) {
        // A node the group's rules filter out is not a failed placement: the system
        // scheduler reports it only if the group runs nowhere.
        NodePlacement::Filtered(metric) => {
            assert_eq!(metric.constraint_filtered["${attr.k} = v"], 1)
        }
        _ => panic!("n2 fails the constraint"),
    }
    assert!(run.failed.is_empty());
    assert_eq!(run.plan.placement_count(), 1);
}
