//! `job plan`: what registering a job would do, computed on a private copy of the state and
//! never proposed. The copy gets the job's registration applied exactly as Raft would apply
//! it, then the real scheduler runs on its evaluation; what the plan would change is counted
//! per group (`scheduler::annotate`) and the job's difference from the current version
//! (`jobdiff`) is annotated with it (Nomad's `Job.Plan` endpoint).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Server, ServerError};
use crate::jobdiff::{self, JobDiff};
use crate::model::time::format_rfc3339;
use crate::model::{
    trigger, AllocListStub, AllocMetric, DesiredUpdates, EvalStatus, Evaluation, Job,
};
use crate::scheduler::{self, SchedulerEnv};
use crate::state::{Command, State};

/// Nomad's `PlanAnnotations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct PlanAnnotations {
    #[serde(rename = "DesiredTGUpdates")]
    pub desired_tg_updates: BTreeMap<String, DesiredUpdates>,
    pub preempted_allocs: Vec<AllocListStub>,
}

/// Nomad's `JobPlanResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobPlanResponse {
    pub annotations: Option<PlanAnnotations>,
    #[serde(rename = "FailedTGAllocs")]
    pub failed_tg_allocs: BTreeMap<String, AllocMetric>,
    /// The current job's modify index (0 for a new job): what `job run -check-index` sends.
    pub job_modify_index: u64,
    pub created_evals: Vec<Evaluation>,
    pub diff: Option<JobDiff>,
    /// RFC 3339; Go's zero time when the job is not periodic, as Nomad encodes it.
    pub next_periodic_launch: String,
    pub warnings: String,
    pub index: u64,
}

/// Go's zero `time.Time`, as Nomad's JSON carries "no next launch".
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

impl JobPlanResponse {
    /// Nomad's `job plan` exit code: 0 when no allocation would be created or destroyed,
    /// 1 when some would.
    pub fn exit_code(&self) -> i32 {
        if self
            .diff
            .as_ref()
            .is_some_and(|d| d.diff_type == jobdiff::DiffType::None)
        {
            return 0;
        }
        let changes = self
            .annotations
            .iter()
            .flat_map(|a| a.desired_tg_updates.values());
        let changed = changes
            .map(|d| d.stop + d.place + d.migrate + d.destructive_update + d.canary)
            .any(|n| n > 0);
        i32::from(changed)
    }
}

/// A dry run's clock and ids: one reading of the clock, and ids counted from a fixed prefix,
/// so the same state and job give the same plan.
#[derive(Debug, Clone)]
pub struct DryRunEnv {
    now: i64,
    next: u64,
}

impl DryRunEnv {
    pub fn new(now_unix_nanos: i64) -> DryRunEnv {
        DryRunEnv {
            now: now_unix_nanos,
            next: 0,
        }
    }
}

impl SchedulerEnv for DryRunEnv {
    fn now_unix_nanos(&mut self) -> i64 {
        self.now
    }
    fn new_id(&mut self) -> String {
        self.next += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.next)
    }
}

/// The plan of registering `job` (canonical) on `state`, which is not changed. `diff` asks
/// for the job's difference from its current version; `local_zone` is where a periodic job
/// with `time_zone = "Local"` runs.
pub fn dry_run(
    state: &State,
    job: &Job,
    diff: bool,
    env: &mut DryRunEnv,
    local_zone: &str,
) -> Result<JobPlanResponse, ServerError> {
    let existing = state.job(&job.namespace, &job.id);
    let now = env.now_unix_nanos();
    let eval = Evaluation {
        id: env.new_id(),
        namespace: job.namespace.clone(),
        priority: job.priority,
        eval_type: job.job_type.as_str().to_string(),
        triggered_by: trigger::JOB_REGISTER.to_string(),
        job_id: job.id.clone(),
        status: EvalStatus::Pending,
        create_time: now,
        modify_time: now,
        ..Default::default()
    };
    let mut private = state.clone();
    let index = private.latest_index() + 1;
    let command = Command::JobRegister {
        job: Box::new(job.clone()),
        eval: Some(eval.clone()),
        now,
        enforce_index: None,
        // The dry run prunes nothing that matters to it: the state's own limit stands.
        tracked_versions: None,
    };
    let (response, _) = private.apply(index, &command);
    if let Some(error) = response.error {
        return Err(ServerError::BadRequest(format!(
            "planning job {:?}: {error}",
            job.id
        )));
    }
    let mut out = JobPlanResponse {
        job_modify_index: existing.as_ref().map_or(0, |j| j.job_modify_index),
        next_periodic_launch: ZERO_TIME.to_string(),
        index: state.latest_index(),
        ..Default::default()
    };
    // A periodic or parameterized parent is never scheduled itself: its children are.
    let desired = if job.is_parent() {
        BTreeMap::new()
    } else {
        let eval = private.eval(&eval.id).map(|e| (*e).clone()).unwrap_or(eval);
        let plan = scheduler::schedule(&private, &eval, env)
            .map_err(|e| ServerError::Internal(format!("planning job {:?}: {e:?}", job.id)))?;
        let desired = scheduler::annotate(&private, &plan);
        let preempted = plan
            .node_preemptions
            .values()
            .flatten()
            .filter_map(|p| private.alloc(&p.alloc_id))
            .map(|a| a.stub())
            .collect();
        out.failed_tg_allocs = plan.eval.failed_tg_allocs.clone();
        out.created_evals = plan.created_evals.clone();
        out.annotations = Some(PlanAnnotations {
            desired_tg_updates: desired.clone(),
            preempted_allocs: preempted,
        });
        desired
    };
    if job.is_periodic_active() {
        if let Ok(Some(next)) = super::periodic::next_launch(job, now, local_zone) {
            out.next_periodic_launch = format_rfc3339(next);
        }
    }
    if diff {
        let mut d = jobdiff::job_diff(existing.as_deref(), Some(job), true)
            .map_err(|e| ServerError::BadRequest(e.to_string()))?;
        jobdiff::annotate(&mut d, &desired);
        out.diff = Some(d);
    }
    Ok(out)
}

impl Server {
    /// `POST /v1/job/:id/plan`: the dry run of registering `job` against the newest state.
    /// Nothing is proposed to Raft.
    pub fn plan_job(&self, mut job: Job, diff: bool) -> Result<JobPlanResponse, ServerError> {
        job.canonicalize();
        let state = self.store.snapshot();
        if let Some(existing) = state.job(&job.namespace, &job.id) {
            if existing.job_type != job.job_type {
                return Err(ServerError::BadRequest(format!(
                    "cannot update job from type {:?} to {:?}",
                    existing.job_type.as_str(),
                    job.job_type.as_str()
                )));
            }
        }
        let mut env = DryRunEnv::new(crate::model::now_unix_nanos());
        let mut out = dry_run(
            &state,
            &job,
            diff,
            &mut env,
            &super::periodic::local_zone_name(),
        )?;
        out.warnings = self.driver_warnings(&job).join("\n");
        Ok(out)
    }
}
