//! The periodic dispatcher: on the leader, launches a child of every active periodic job at
//! each of its cron instants (after Nomad's `nomad/periodic.go`).
//!
//! [`decide`] is the policy, a pure function of (state, what this leader skipped, now): which
//! jobs are due and at what launch time, which are skipped because `prohibit_overlap` finds a
//! previous child still at work, and when to look again. Its memory is the replicated
//! `periodic_launch` table (each job's last launch; first, its registration), so a new leader
//! computes every job's next launch from what was really launched. A launch missed while
//! there was no leader is launched once, at the time it is noticed (several missed collapse
//! into one, as in Nomad), and the state machine refuses a launch that is not after the
//! recorded one, so two leaders racing never launch the same instant twice.
//!
//! [`run`] is the leader loop: it sleeps until the next launch (or a change of jobs or
//! launches) and proposes each launch as one `Command::PeriodicLaunch` — the child job
//! `<parent>/periodic-<unix seconds>`, its `periodic-job` evaluation and the launch time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Server, ServerError};
use crate::model::{new_id, now_unix_nanos, trigger, EvalStatus, Evaluation, Job};
use crate::state::{Command, JobKey, State, Table};

/// The longest the loop sleeps without looking again: the wall clock may have been set, or
/// the server's own zone changed, meanwhile.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// The least time between two looks: jobs change all the time on a busy cluster (every
/// status change), and one look walks every job. Launches are at most this late.
const MIN_RECHECK: Duration = Duration::from_millis(50);
/// How long the loop waits after a launch could not be proposed.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

/// A job due for a launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub namespace: String,
    pub job_id: String,
    /// The launch time, Unix nanoseconds: the cron instant, or `now` when more than one
    /// instant was missed (they are launched once).
    pub launch: i64,
    /// `prohibit_overlap` and a previous child still has live evaluations or allocations:
    /// this instant is skipped.
    pub overlap: bool,
}

/// What the dispatcher should do now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeriodicDecision {
    pub due: Vec<Due>,
    /// The earliest future launch of any job (Unix nanoseconds), `None` if none.
    pub wake_at: Option<i64>,
    /// Jobs whose next launch cannot be computed (a bad zone), with why.
    pub errors: Vec<String>,
}

/// Decides, for every active periodic job of `state` at `now`, whether a launch is due.
/// `skipped`: launch times this leader skipped for overlap (in memory: a new leader checks
/// the overlap again). `local_zone`: the IANA name the job zone "Local" stands for.
pub fn decide(
    state: &State,
    skipped: &BTreeMap<JobKey, i64>,
    now: i64,
    local_zone: &str,
) -> PeriodicDecision {
    let mut decision = PeriodicDecision::default();
    let wake = |t: i64, d: &mut PeriodicDecision| {
        d.wake_at = Some(d.wake_at.map_or(t, |w| w.min(t)));
    };
    for job in state.jobs(None) {
        if !job.is_periodic_active() {
            continue;
        }
        let k = (job.namespace.clone(), job.id.clone());
        let recorded = state
            .periodic_launch(&job.namespace, &job.id)
            .map_or(job.submit_time, |l| l.launch);
        let last = skipped.get(&k).map_or(recorded, |s| recorded.max(*s));
        let next = match next_launch(&job, last, local_zone) {
            Ok(Some(next)) => next,
            Ok(None) => continue,
            Err(e) => {
                decision
                    .errors
                    .push(format!("periodic job {:?}: {e}", job.id));
                continue;
            }
        };
        if next > now {
            wake(next, &mut decision);
            continue;
        }
        // Several instants missed (no leader for a while): one launch, now.
        let launch = match next_launch(&job, next, local_zone) {
            Ok(Some(after)) if after <= now => now,
            _ => next,
        };
        if let Ok(Some(after)) = next_launch(&job, launch, local_zone) {
            wake(after, &mut decision);
        }
        decision.due.push(Due {
            namespace: job.namespace.clone(),
            job_id: job.id.clone(),
            launch,
            overlap: job.periodic.as_ref().is_some_and(|p| p.prohibit_overlap)
                && running_children(state, &job),
        });
    }
    decision
}

/// The first launch of `job` strictly after `after` over all its cron expressions, in its
/// zone.
pub fn next_launch(job: &Job, after: i64, local_zone: &str) -> Result<Option<i64>, String> {
    let zone = match job.periodic.as_ref().map(|p| p.time_zone.as_str()) {
        Some("Local") => local_zone,
        Some("") | None => crate::model::defaults::PERIODIC_TIME_ZONE,
        Some(zone) => zone,
    };
    let mut best: Option<i64> = None;
    for spec in job.periodic_specs() {
        if let Some(t) = jobspec::cron::next_after(spec, zone, after)? {
            best = Some(best.map_or(t, |b| b.min(t)));
        }
    }
    Ok(best)
}

/// Whether a child of `parent` is still at work: an evaluation not finished or an allocation
/// not terminal (Nomad's `RunningChildren`, which `prohibit_overlap` consults).
pub fn running_children(state: &State, parent: &Job) -> bool {
    state
        .children(&parent.namespace, &parent.id)
        .iter()
        .any(|child| {
            state
                .evals_by_job(&child.namespace, &child.id)
                .iter()
                .any(|e| !e.status.is_terminal())
                || state
                    .allocs_by_job(&child.namespace, &child.id)
                    .iter()
                    .any(|a| !a.is_terminal())
        })
}

/// The command that launches `parent` at `launch`: its child and the child's evaluation.
pub fn launch_command(parent: &Job, launch: i64, eval_id: String, now: i64) -> Command {
    let child = parent.derive_child(parent.periodic_child_id(launch));
    let eval = Evaluation {
        id: eval_id,
        namespace: child.namespace.clone(),
        priority: child.priority,
        eval_type: child.job_type.as_str().to_string(),
        triggered_by: trigger::PERIODIC_JOB.to_string(),
        job_id: child.id.clone(),
        status: EvalStatus::Pending,
        ..Default::default()
    };
    Command::PeriodicLaunch {
        child: Box::new(child),
        eval,
        launch,
        now,
    }
}

/// `POST /v1/job/:id/periodic/force` answer, in Nomad's shape.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct PeriodicForceResponse {
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub eval_create_index: u64,
    pub index: u64,
}

impl Server {
    /// Launches a periodic job now, whatever its schedule (`job periodic force`).
    pub async fn force_periodic(
        &self,
        namespace: &str,
        job_id: &str,
    ) -> Result<PeriodicForceResponse, ServerError> {
        let state = self.state();
        let Some(job) = state.job(namespace, job_id) else {
            return Err(ServerError::NotFound(format!(
                "job {job_id:?} not found in namespace {namespace:?}"
            )));
        };
        if !job.is_periodic() {
            return Err(ServerError::BadRequest(format!(
                "job {job_id:?} is not periodic: only a job with a periodic block can be forced"
            )));
        }
        if !job.is_periodic_active() {
            return Err(ServerError::BadRequest(format!(
                "job {job_id:?} is {}: can't force run a periodic job that is not launching",
                if job.stop {
                    "stopped"
                } else {
                    "disabled (periodic.enabled = false)"
                }
            )));
        }
        let now = now_unix_nanos();
        let recorded = state
            .periodic_launch(namespace, job_id)
            .map_or(i64::MIN, |l| l.launch);
        // The state refuses a launch not after the recorded one: a clock that went back
        // still launches.
        let launch = now.max(recorded.saturating_add(1));
        let eval_id = new_id();
        let response = self
            .propose(launch_command(&job, launch, eval_id.clone(), now))
            .await
            .map_err(|e| match e {
                ServerError::BadRequest(m) if m.contains("already exists") => {
                    ServerError::BadRequest(format!(
                        "{m}: job {job_id:?} was already launched this second; force it again in a second"
                    ))
                }
                other => other,
            })?;
        Ok(PeriodicForceResponse {
            eval_id,
            eval_create_index: response.index,
            index: response.index,
        })
    }
}

/// The zone "Local" stands for: the server's own (`TZ`, else `/etc/localtime`'s target),
/// UTC when neither names one.
pub fn local_zone_name() -> String {
    if let Ok(tz) = std::env::var("TZ") {
        let tz = tz.trim_start_matches(':');
        if !tz.is_empty() && !tz.starts_with('/') {
            return tz.to_string();
        }
    }
    std::fs::read_link("/etc/localtime")
        .ok()
        .and_then(|target| {
            let target = target.to_string_lossy().into_owned();
            target
                .split_once("zoneinfo/")
                .map(|(_, zone)| zone.to_string())
        })
        .unwrap_or_else(|| "UTC".to_string())
}

/// The leader's dispatcher loop. Runs until the future is dropped (leadership lost,
/// shutdown); what it skipped for overlap is forgotten then, and checked again by the next
/// leader.
pub(super) async fn run(server: Arc<Server>) {
    let tables = [Table::Jobs, Table::PeriodicLaunches];
    let local_zone = local_zone_name();
    let mut skipped: BTreeMap<JobKey, i64> = BTreeMap::new();
    let mut reported: std::collections::BTreeSet<String> = Default::default();
    loop {
        let state = server.state();
        let seen = state.max_index(&tables).max(1);
        let now = now_unix_nanos();
        let decision = decide(&state, &skipped, now, &local_zone);
        for e in decision.errors {
            // Once per problem, not once per look.
            if reported.insert(e.clone()) {
                tracing::warn!("periodic dispatcher: {e}");
            }
        }
        let mut proposed = false;
        for due in decision.due {
            let k = (due.namespace.clone(), due.job_id.clone());
            if due.overlap {
                tracing::info!(job = %due.job_id, "periodic dispatcher: skipping a launch, the job prohibits overlap and a previous child is still running");
                skipped.insert(k, due.launch);
                continue;
            }
            let Some(job) = state.job(&due.namespace, &due.job_id) else {
                continue;
            };
            let command = launch_command(&job, due.launch, new_id(), now_unix_nanos());
            match server.propose(command).await {
                Ok(_) => {
                    tracing::info!(job = %due.job_id, launch = due.launch, "periodic dispatcher: launched");
                    proposed = true;
                }
                Err(ServerError::BadRequest(e)) => {
                    // Refused by the state machine (launched meanwhile, child exists): the
                    // same proposal would be refused again, so this instant is passed over.
                    tracing::warn!(job = %due.job_id, "periodic dispatcher: launch refused: {e}");
                    skipped.insert(k, due.launch);
                }
                Err(e) => {
                    tracing::warn!(job = %due.job_id, "periodic dispatcher: {e}; trying again in {RETRY_AFTER_ERROR:?}");
                    tokio::time::sleep(RETRY_AFTER_ERROR).await;
                    proposed = true;
                }
            }
        }
        // Skipped instants of jobs that launched since are superseded by the record.
        skipped.retain(|(ns, id), t| state.periodic_launch(ns, id).is_none_or(|l| l.launch < *t));
        tokio::time::sleep(MIN_RECHECK).await;
        if proposed {
            continue;
        }
        let wait = decision.wake_at.map_or(MAX_SLEEP, |at| {
            let nanos = at.saturating_sub(now_unix_nanos()).max(0);
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(0)).min(MAX_SLEEP)
        });
        if !wait.is_zero() {
            server.store.wait_for(&tables, seen, wait).await;
        }
    }
}

#[cfg(test)]
mod tests;
