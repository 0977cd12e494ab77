//! A small world for scheduler scenario tests: a state built through `State::apply`, a clock
//! the test moves, deterministic ids, and plans committed the way the applier commits them
//! (checked by `planner::evaluate_plan` first).

use std::sync::Arc;

use super::{schedule, Plan, SchedulerEnv};
use crate::model::*;
use crate::state::{Command, State};

pub const T0: i64 = 1_700_000_000_000_000_000;
pub const SEC: i64 = 1_000_000_000;

/// Deterministic ids and a clock the test moves.
#[derive(Debug, Clone)]
pub struct Env {
    pub next: u64,
    pub now: i64,
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

pub fn node(id: &str, cpu: i64, mem: i64) -> Node {
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
            // Room for any number of the default 300 MB ephemeral disks.
            disk: crate::model::NodeDiskResources {
                disk_mb: 10_000_000,
            },
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

pub fn job(id: &str, job_type: JobType, count: i64, cpu: i64, mem: i64) -> Job {
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
                config: [("command".to_string(), serde_json::json!("/bin/true"))]
                    .into_iter()
                    .collect(),
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

pub struct World {
    pub state: State,
    pub index: u64,
    pub env: Env,
}

impl World {
    pub fn new(nodes: Vec<Node>) -> World {
        let mut w = World {
            state: State::default(),
            index: 0,
            env: Env { next: 0, now: T0 },
        };
        for n in nodes {
            w.add_node(n);
        }
        w
    }

    pub fn apply(&mut self, cmd: Command) {
        self.index += 1;
        let (resp, _) = self.state.apply(self.index, &cmd);
        assert_eq!(resp.error, None, "{cmd:?}");
    }

    pub fn add_node(&mut self, n: Node) {
        self.apply(Command::NodeRegister {
            node: Box::new(n),
            now: self.env.now,
        });
    }

    pub fn eval(&mut self, job_id: &str, triggered_by: &str) -> Evaluation {
        let job = self.state.job("default", job_id);
        Evaluation {
            id: self.env.new_id(),
            namespace: "default".into(),
            priority: job.as_ref().map(|j| j.priority).unwrap_or(50),
            eval_type: job
                .as_ref()
                .map(|j| j.job_type.as_str().to_string())
                .unwrap_or_default(),
            triggered_by: triggered_by.into(),
            job_id: job_id.into(),
            job_modify_index: job.map(|j| j.job_modify_index).unwrap_or(0),
            status: EvalStatus::Pending,
            ..Default::default()
        }
    }

    /// Registers `job` (a new version if it exists) and schedules its evaluation.
    pub fn register(&mut self, job: &Job) -> Plan {
        let eval = self.eval(&job.id, trigger::JOB_REGISTER);
        self.apply(Command::JobRegister {
            job: Box::new(job.clone()),
            eval: Some(eval.clone()),
            now: self.env.now,
            enforce_index: None,
            tracked_versions: None,
        });
        self.schedule(&eval)
    }

    /// Schedules `eval` and commits what the applier accepts of the plan (all of it, or the
    /// test fails: these scenarios never race).
    pub fn schedule(&mut self, eval: &Evaluation) -> Plan {
        let plan = match schedule(&self.state, eval, &mut self.env) {
            Ok(plan) => plan,
            Err(e) => match e {},
        };
        let verdict = crate::server::planner::evaluate_plan(&self.state, &plan, self.env.now);
        assert!(verdict.fully_accepted(), "{:?}", verdict.rejected_nodes);
        self.apply(Command::PlanApply(Box::new(verdict.result)));
        plan
    }

    pub fn rerun(&mut self, job_id: &str, triggered_by: &str) -> Plan {
        let eval = self.eval(job_id, triggered_by);
        self.schedule(&eval)
    }

    pub fn report(&mut self, alloc_id: &str, status: ClientStatus) {
        self.apply(Command::AllocClientUpdate {
            updates: vec![AllocClientUpdate {
                id: alloc_id.into(),
                client_status: status,
                ..Default::default()
            }],
            evals: vec![],
            now: self.env.now,
        });
    }

    pub fn allocs(&self, job: &str) -> Vec<Arc<Allocation>> {
        let mut v = self.state.allocs_by_job("default", job);
        v.sort_by_key(|a| (a.name.clone(), a.create_index));
        v
    }

    pub fn live(&self, job: &str) -> Vec<Arc<Allocation>> {
        self.allocs(job)
            .into_iter()
            .filter(|a| !a.is_terminal())
            .collect()
    }

    /// Live allocations' node ids, sorted.
    pub fn live_nodes(&self, job: &str) -> Vec<String> {
        let mut v: Vec<String> = self.live(job).iter().map(|a| a.node_id.clone()).collect();
        v.sort();
        v
    }
}
