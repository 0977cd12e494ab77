//! The scheduler: `(state snapshot, evaluation) → plan`, a pure function.
//!
//! One run reconciles what a job wants with what exists (which allocations to keep, update in
//! place, replace, stop or add), then places new allocations: filter the nodes that can run the
//! group at all (feasibility), keep those it fits on, and rank them (bin-packing). Clock and id
//! generation come in through [`SchedulerEnv`], so a run is reproducible in tests and simulation.
//!
//! Owns placement decisions only. It must not commit anything: the plan applier re-checks every
//! plan against the newest state and commits what still fits.

mod annotate;
mod constraint;
mod deployment;
mod feasible;
mod placement;
mod plan;
mod ports;
mod preempt;
mod rank;
pub mod reschedule;
mod rng;
mod select;
mod system;
pub mod tainted;
mod triage;
mod update;
mod version;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub use annotate::annotate;
pub use constraint::unsatisfiable as unsatisfiable_constraints;
pub use feasible::glob_match;
pub use feasible::job_selects as system_selects;
pub use plan::Plan;
pub use tainted::missed_heartbeat_status;
pub use update::tasks_updated;

use crate::model::time::format_rfc3339;
use crate::model::{
    trigger, AllocMetric, Allocation, ClientStatus, ComparableResources, DesiredStatus, EvalStatus,
    Evaluation, Job, JobType, NodeStatus, RescheduleTracker, TaskGroup,
};
use crate::state::{AllocStop, State};

/// What a scheduler run may ask of the world: the time and fresh ids.
pub trait SchedulerEnv {
    fn now_unix_nanos(&mut self) -> i64;
    fn new_id(&mut self) -> String;
}

/// The real environment: the system clock and random UUIDs.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemEnv;

impl SchedulerEnv for SystemEnv {
    fn now_unix_nanos(&mut self) -> i64 {
        crate::model::now_unix_nanos()
    }
    fn new_id(&mut self) -> String {
        crate::model::new_id()
    }
}

/// Why a scheduler run could not produce a plan. Every job type is scheduled now, so no run
/// fails today; the type stays so callers (the worker) keep handling failure.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchedulerError {}

pub const DESC_JOB_STOPPED: &str = "alloc not needed since job was stopped";
pub const DESC_JOB_UPDATED: &str = "alloc is being updated due to job update";
pub const DESC_NOT_NEEDED: &str = "alloc not needed due to job update";
pub const DESC_GROUP_REMOVED: &str = "alloc not needed since its task group was removed";

/// Runs the scheduler for one evaluation against one consistent state.
pub fn schedule(
    state: &State,
    eval: &Evaluation,
    env: &mut dyn SchedulerEnv,
) -> Result<Plan, SchedulerError> {
    let mut run = Run::new(state, eval, env.now_unix_nanos());
    let job = state.job(&eval.namespace, &eval.job_id);
    let latest = state.latest_deployment(&eval.namespace, &eval.job_id);
    let (rollout, ended) = deployment::Rollout::sort_out(job.as_deref(), latest, run.now);
    run.rollout = rollout;
    run.plan.deployment_updates = ended;
    match &job {
        Some(job) if !job.stop => {
            run.plan.priority = job.priority;
            run.plan.all_at_once = job.all_at_once;
            run.plan.job = Some(job.clone());
            match job.job_type {
                JobType::System | JobType::Sysbatch => run.reconcile_system(job.clone(), env),
                JobType::Service | JobType::Batch => run.reconcile(job.clone(), env),
            }
        }
        _ => run.stop_everything(),
    }
    Ok(run.finish(env))
}

/// One scheduler run's working state.
struct Run<'a> {
    state: &'a State,
    plan: Plan,
    allocs: Vec<Arc<Allocation>>,
    /// Resources in use per node, counting this plan's own placements and stops.
    usage: BTreeMap<String, ComparableResources>,
    /// Cores reserved exclusively per node (`resources { cores }`), likewise.
    reserved_cores: BTreeMap<String, BTreeSet<u32>>,
    failed: BTreeMap<String, AllocMetric>,
    queued: BTreeMap<String, u64>,
    /// The run's one reading of the clock: disconnect windows and drain deadlines are judged
    /// against it.
    now: i64,
    /// In-place updates of existing allocations, by id (a newer job version, `unknown` on a
    /// disconnect, a reconnect acknowledged), flushed into the plan at the end; a stop drops
    /// the allocation's update.
    updates: BTreeMap<String, Allocation>,
    /// When `unknown` allocations of this job pass their disconnect window: a delayed
    /// evaluation must run by then to mark them lost.
    disconnect_expiries: BTreeSet<i64>,
    /// Placement's per-run caches (`select.rs`).
    select: select::RunCache,
    /// Failed allocations to reschedule later, with when: delayed evaluations follow.
    reschedule_later: Vec<(Arc<Allocation>, i64)>,
    /// The reschedule trackers replacements placed in this run carry, by the failed
    /// allocation they replace.
    trackers: BTreeMap<String, RescheduleTracker>,
    /// A system job found a feasible node without room: only that creates a blocked
    /// evaluation (a node its constraints filter out is not a failure to retry).
    system_exhausted: bool,
    /// This run schedules a system or sysbatch job.
    system: bool,
    /// The job's deployments as this run sees and changes them.
    rollout: deployment::Rollout,
    /// How many more allocations of the system group being reconciled this run may replace
    /// (`None`: no limit).
    system_replace_budget: Option<usize>,
}

impl<'a> Run<'a> {
    fn new(state: &'a State, eval: &Evaluation, now: i64) -> Run<'a> {
        let mut plan = Plan {
            eval: eval.clone(),
            snapshot_index: state.latest_index(),
            ..Default::default()
        };
        plan.eval.snapshot_index = state.latest_index();
        Run {
            state,
            plan,
            allocs: state.allocs_by_job(&eval.namespace, &eval.job_id),
            usage: BTreeMap::new(),
            reserved_cores: BTreeMap::new(),
            failed: BTreeMap::new(),
            queued: BTreeMap::new(),
            now,
            updates: BTreeMap::new(),
            disconnect_expiries: BTreeSet::new(),
            select: select::RunCache::default(),
            reschedule_later: Vec::new(),
            trackers: BTreeMap::new(),
            system_exhausted: false,
            system: false,
            rollout: deployment::Rollout::default(),
            system_replace_budget: None,
        }
    }

    fn stop(&mut self, alloc: &Allocation, description: &str) {
        self.stop_as(alloc, description, None);
    }

    /// Stops `alloc`; `client_status` is what the servers decide its client status is (`lost`
    /// for one whose node is gone), `None` to leave its client's.
    fn stop_as(
        &mut self,
        alloc: &Allocation,
        description: &str,
        client_status: Option<ClientStatus>,
    ) {
        self.updates.remove(&alloc.id);
        self.release(alloc);
        self.plan
            .node_update
            .entry(alloc.node_id.clone())
            .or_default()
            .push(AllocStop {
                alloc_id: alloc.id.clone(),
                desired_status: DesiredStatus::Stop,
                desired_description: description.to_string(),
                client_status,
            });
    }

    /// Queues an in-place update of an existing allocation (replacing an earlier one of this
    /// run).
    fn update_alloc(&mut self, alloc: Allocation) {
        self.updates.insert(alloc.id.clone(), alloc);
    }

    fn stop_everything(&mut self) {
        let allocs = self.allocs.clone();
        for alloc in allocs
            .iter()
            .filter(|a| a.desired_status == DesiredStatus::Run)
        {
            if !alloc.client_status.is_terminal() {
                // Nothing will ever report on an allocation whose node is gone: it is lost.
                let lost = self
                    .state
                    .node(&alloc.node_id)
                    .is_none_or(|n| n.status == NodeStatus::Down);
                self.stop_as(alloc, DESC_JOB_STOPPED, lost.then_some(ClientStatus::Lost));
            }
        }
    }

    fn reconcile(&mut self, job: Arc<Job>, env: &mut dyn SchedulerEnv) {
        let groups: BTreeSet<&str> = job.task_groups.iter().map(|g| g.name.as_str()).collect();
        let allocs = self.allocs.clone();
        for alloc in allocs.iter() {
            let live =
                alloc.desired_status == DesiredStatus::Run && !alloc.client_status.is_terminal();
            if live && !groups.contains(alloc.task_group.as_str()) {
                self.stop(alloc, DESC_GROUP_REMOVED);
            }
        }
        for group in &job.task_groups {
            self.reconcile_group(&job, group, &allocs, env);
        }
    }

    /// Reconciles one group: keeps `count` of its allocations (stopping the rest), updates the
    /// kept ones to the job's version (in place, or stopped and replaced: under a deployment
    /// at most as many at a time as its rules allow, canaries first), and places what is
    /// missing under the lowest free names.
    fn reconcile_group(
        &mut self,
        job: &Arc<Job>,
        group: &TaskGroup,
        allocs: &[Arc<Allocation>],
        env: &mut dyn SchedulerEnv,
    ) {
        // The jobspec refuses a negative count and one above its `max_count`, so this always
        // converts; were it not to (a negative count), nothing is placed, never "as many as
        // fit in a usize".
        let want = usize::try_from(group.count).unwrap_or(0);
        let group_allocs: Vec<Arc<Allocation>> = allocs
            .iter()
            .filter(|a| a.task_group == group.name && a.desired_status == DesiredStatus::Run)
            .cloned()
            .collect();
        let (mine, canaries) = self.set_canaries_apart(group, &group_allocs);
        let triage = self.triage(group, allocs, &mine);
        let mut replacements = triage.replacements;
        let (rescheduled, held) = self.reschedule_failed(job, &mine);
        replacements.extend(rescheduled);
        // More to replace than the group now wants (it was scaled down meanwhile): the lowest
        // names are replaced.
        replacements.sort();
        for (_, dropped) in replacements.split_off(want.min(replacements.len())) {
            // A failed allocation due for rescheduling that the group no longer needs: stopped,
            // or the next run would find it due again and trade it for a kept one.
            if self.trackers.remove(&dropped).is_some() {
                if let Some(failed) = mine.iter().find(|a| a.id == dropped).cloned() {
                    self.stop(&failed, DESC_NOT_NEEDED);
                }
            }
        }
        let reserved: BTreeSet<u64> = replacements.iter().filter_map(|(i, _)| *i).collect();
        let counted: Vec<Arc<Allocation>> = mine
            .into_iter()
            .filter(|a| !triage.excluded.contains(&a.id))
            .collect();
        let Kept {
            live,
            done,
            mut used_names,
        } = self.keep_wanted(job, &counted, &held, want - replacements.len(), reserved);
        let existing = live.len() + done + replacements.len();
        let (in_place, destructive) = self.classify_kept(job, group, &live);
        let updating = !in_place.is_empty() || !destructive.is_empty();
        if self.rollout.group_state(&group.name).is_none()
            && deployment::starts_deployment(job, group, &group_allocs, updating)
        {
            let (priority, now) = (self.plan.priority, self.now);
            self.rollout
                .start_group(job, group, priority, now, || env.new_id());
        }
        self.update_in_place(job, &in_place);
        self.place_canaries(job, group, &canaries, &destructive, &used_names, env);
        let canarying = self
            .rollout
            .group_state(&group.name)
            .is_some_and(|s| s.desired_canaries != 0 && !s.promoted);
        // Replacements of lost, migrating and failed allocations are placed whatever the
        // deployment's state; new ones and destructive updates only while it may progress.
        let mut to_place = replacements;
        if !self.rollout.paused() && !self.rollout.failed() && !canarying {
            let limit = deployment::replace_limit(
                group,
                destructive.len(),
                &self.rollout,
                canarying,
                &live,
            );
            to_place.extend((existing..want).map(|_| (None, String::new())));
            // What this run places counts against the deployment's parallelism first; the
            // destructive updates beyond the rest wait (ignored) for the watcher's next
            // evaluation.
            let limit = limit.saturating_sub(to_place.len());
            for alloc in destructive.iter().take(limit) {
                // Stopped first so that its node's room counts for its replacement.
                self.stop(alloc, DESC_JOB_UPDATED);
                to_place.push((alloc.name_index(), alloc.id.clone()));
            }
        }
        for (index, previous) in assign_names(to_place, &mut used_names) {
            let replaced = destructive.iter().find(|a| a.id == previous).copied();
            if !self.place(job, group, index, previous, env) {
                if let Some(old) = replaced {
                    // No room for the new version: the old one keeps serving.
                    self.unstop(old);
                }
            }
        }
    }

    /// Sets the group's canaries apart from its other allocations (`group_allocs`, wanted
    /// running): canaries of an older deployment, or of a failed one, that were never
    /// promoted are stopped; while the current deployment's canaries wait for promotion,
    /// they are neither counted against `count`, updated nor rescheduled (one whose node is
    /// gone is stopped as lost, and placed again as a canary). Returns (the others, the
    /// waiting canaries).
    fn set_canaries_apart(
        &mut self,
        group: &TaskGroup,
        group_allocs: &[Arc<Allocation>],
    ) -> (Vec<Arc<Allocation>>, Vec<Arc<Allocation>>) {
        let unneeded = self.rollout.unneeded_canaries();
        let canarying = self
            .rollout
            .group_state(&group.name)
            .is_some_and(|s| s.desired_canaries != 0 && !s.promoted);
        let current = if canarying {
            self.rollout.canary_ids()
        } else {
            BTreeSet::new()
        };
        let mut mine = Vec::new();
        let mut canaries = Vec::new();
        for alloc in group_allocs {
            if unneeded.contains(&alloc.id) {
                if !alloc.client_status.is_terminal() {
                    self.stop(alloc, DESC_NOT_NEEDED);
                }
            } else if current.contains(&alloc.id) {
                let gone = self
                    .state
                    .node(&alloc.node_id)
                    .is_none_or(|n| n.status == NodeStatus::Down);
                if gone && !alloc.client_status.is_terminal() {
                    self.stop_as(alloc, tainted::DESC_LOST, Some(ClientStatus::Lost));
                } else {
                    canaries.push(alloc.clone());
                }
            } else {
                mine.push(alloc.clone());
            }
        }
        (mine, canaries)
    }

    /// Places the canaries the group's deployment still wants (Nomad's `computeCanaries`):
    /// with an `update { canary = N }` and a destructive change, N canaries of the new
    /// version (fewer those placed already), under the names of the allocations they will
    /// replace, while every old allocation keeps running. Not for a promoted group, nor while
    /// the deployment is paused or failed.
    fn place_canaries(
        &mut self,
        job: &Arc<Job>,
        group: &TaskGroup,
        canaries: &[Arc<Allocation>],
        destructive: &[&Arc<Allocation>],
        used_names: &BTreeSet<u64>,
        env: &mut dyn SchedulerEnv,
    ) {
        let wanted = deployment::canary(group);
        let Some(state) = self.rollout.group_state(&group.name) else {
            return;
        };
        if wanted == 0 || destructive.is_empty() || canaries.len() >= wanted || state.promoted {
            return;
        }
        self.rollout.want_canaries(&group.name, wanted as u64);
        if self.rollout.paused() || self.rollout.failed() {
            return;
        }
        let existing: BTreeSet<u64> = canaries.iter().filter_map(|a| a.name_index()).collect();
        let replaced: BTreeSet<u64> = destructive.iter().filter_map(|a| a.name_index()).collect();
        let count = u64::try_from(group.count).unwrap_or(0);
        let names = deployment::canary_names(
            wanted - canaries.len(),
            count,
            &existing,
            &replaced,
            used_names,
        );
        self.rollout.placing_canaries = true;
        for index in names {
            // One that finds no room is recorded as a failed placement (a blocked evaluation
            // retries it); the old allocations keep running meanwhile.
            self.place(job, group, index, String::new(), env);
        }
        self.rollout.placing_canaries = false;
    }

    /// Which of the group's allocations (`mine`: wanted running, and not set aside by the
    /// triage) stay: finished batch ones (their work is done) and, up to `want` with them,
    /// live ones and `held` failed ones (waiting to be rescheduled, or out of attempts) with
    /// distinct names not `reserved` for replacements, lowest names first. The others are
    /// stopped.
    fn keep_wanted<'j>(
        &mut self,
        job: &Job,
        mine: &'j [Arc<Allocation>],
        held: &BTreeSet<String>,
        want: usize,
        reserved: BTreeSet<u64>,
    ) -> Kept<'j> {
        let mut live: Vec<&Arc<Allocation>> = mine
            .iter()
            .filter(|a| !a.client_status.is_terminal() || held.contains(&a.id))
            .collect();
        // A batch allocation that finished successfully has done its work: it counts.
        let done: Vec<&Arc<Allocation>> = if job.job_type == JobType::Batch {
            mine.iter()
                .filter(|a| a.client_status == ClientStatus::Complete)
                .collect()
        } else {
            Vec::new()
        };
        // A name without an index (none this scheduler writes) sorts last: stopped first. Of
        // two under one name, the one running the job's version stays (a promoted canary
        // over the allocation it replaces).
        let outdated = |a: &Allocation| {
            a.job
                .as_ref()
                .is_none_or(|j| j.job_modify_index != job.job_modify_index)
        };
        live.sort_by_key(|a| {
            (
                a.name_index().unwrap_or(u64::MAX),
                outdated(a),
                a.create_index,
            )
        });
        let mut used_names: BTreeSet<u64> = done.iter().filter_map(|a| a.name_index()).collect();
        // Names that replacements of lost or migrating allocations take.
        used_names.extend(reserved);
        let mut keep = Vec::new();
        for alloc in live {
            let index = alloc.name_index();
            let duplicate = index.is_some_and(|i| used_names.contains(&i));
            if keep.len() + done.len() >= want || duplicate {
                self.stop(alloc, DESC_NOT_NEEDED);
                continue;
            }
            if let Some(i) = index {
                used_names.insert(i);
            }
            keep.push(alloc);
        }
        Kept {
            live: keep,
            done: done.len(),
            used_names,
        }
    }

    /// Sorts the kept allocations not on the job's version yet: those the new version can
    /// update in place (the group did not change in a way that needs new allocations, and
    /// their node still fits) and those it must replace (destructive), in name order.
    #[allow(clippy::type_complexity)]
    fn classify_kept<'k>(
        &mut self,
        job: &Arc<Job>,
        group: &TaskGroup,
        keep: &[&'k Arc<Allocation>],
    ) -> (Vec<&'k Arc<Allocation>>, Vec<&'k Arc<Allocation>>) {
        let mut in_place = Vec::new();
        let mut destructive = Vec::new();
        for alloc in keep {
            let current = alloc
                .job
                .as_ref()
                .is_some_and(|j| j.job_modify_index == job.job_modify_index);
            if current {
                continue;
            }
            let unchanged = alloc
                .job
                .as_ref()
                .is_some_and(|old| tasks_updated(old, job, &group.name).is_none())
                && self.still_feasible(job, group, &alloc.node_id);
            if unchanged {
                in_place.push(*alloc);
            } else {
                destructive.push(*alloc);
            }
        }
        (in_place, destructive)
    }

    /// Updates allocations in place: each keeps running under the new job version (with
    /// whatever else this run already changed of it) and joins the current deployment (its
    /// health in another one no longer counts, as Nomad's scheduler does).
    fn update_in_place(&mut self, job: &Arc<Job>, allocs: &[&Arc<Allocation>]) {
        let deployment_id = self.rollout.placement_id();
        for alloc in allocs {
            let mut updated = self
                .updates
                .get(&alloc.id)
                .cloned()
                .unwrap_or_else(|| Allocation::clone(alloc));
            updated.job = Some(job.clone());
            updated.eval_id = self.plan.eval.id.clone();
            if updated.deployment_id != deployment_id {
                updated.deployment_id = deployment_id.clone();
                updated.deployment_status = None;
            }
            self.update_alloc(updated);
        }
    }

    fn finish(mut self, env: &mut dyn SchedulerEnv) -> Plan {
        let now = env.now_unix_nanos();
        self.reschedule_follow_ups(env);
        self.attach_trackers();
        for (_, updated) in std::mem::take(&mut self.updates) {
            self.plan
                .node_allocation
                .entry(updated.node_id.clone())
                .or_default()
                .push(updated);
        }
        self.disconnect_follow_up(env);
        self.plan.deployment = self.rollout.for_plan();
        let wants_blocked = if self.is_system() {
            self.system_exhausted
        } else {
            !self.failed.is_empty()
        };
        let eval = &mut self.plan.eval;
        eval.status = EvalStatus::Complete;
        eval.status_description.clear();
        eval.failed_tg_allocs = self.failed.clone();
        eval.queued_allocations = self.queued.clone();
        eval.modify_time = now;
        if wants_blocked {
            let has_blocked = self
                .state
                .evals_by_job(&eval.namespace, &eval.job_id)
                .iter()
                .any(|e| e.status == EvalStatus::Blocked && e.id != eval.id);
            if !has_blocked {
                let blocked = Evaluation {
                    id: env.new_id(),
                    namespace: eval.namespace.clone(),
                    priority: eval.priority,
                    eval_type: eval.eval_type.clone(),
                    triggered_by: trigger::QUEUED_ALLOCS.to_string(),
                    job_id: eval.job_id.clone(),
                    job_modify_index: eval.job_modify_index,
                    status: EvalStatus::Blocked,
                    status_description: "created to place remaining allocations".to_string(),
                    previous_eval: eval.id.clone(),
                    class_eligibility: self.select.class_eligibility(),
                    escaped_computed_class: self.select.escaped(),
                    // Capacity that appeared after this index was not seen by this run: the
                    // blocked-eval tracker unblocks at once for it.
                    snapshot_index: self.plan.snapshot_index,
                    ..Default::default()
                };
                eval.blocked_eval = blocked.id.clone();
                self.plan.created_evals.push(blocked);
            }
        }
        self.plan
    }
}

impl Run<'_> {
    fn is_system(&self) -> bool {
        self.system
    }

    /// The group's failed allocations (of `mine`) under the reschedule rules: those due now
    /// are returned as replacements to place (name index, failed id), with the tracker their
    /// replacement carries; those due later or never are returned as `held`: they stay
    /// counted, failed, and a delayed evaluation is queued for the former.
    fn reschedule_failed(
        &mut self,
        job: &Job,
        mine: &[Arc<Allocation>],
    ) -> (Vec<(Option<u64>, String)>, BTreeSet<String>) {
        let mut now = Vec::new();
        let mut held = BTreeSet::new();
        for alloc in mine {
            if !reschedule::is_candidate(alloc, job.job_type) {
                continue;
            }
            if self.rollout.holds_reschedule(alloc) {
                // The deployment watcher judges it (and fails or reverts the deployment).
                held.insert(alloc.id.clone());
                continue;
            }
            match reschedule::decide(alloc, &self.plan.eval.id, self.now) {
                reschedule::Decision::Now => {
                    let tracker = reschedule::tracker_for_replacement(alloc, self.now);
                    self.trackers.insert(alloc.id.clone(), tracker);
                    now.push((alloc.name_index(), alloc.id.clone()));
                }
                reschedule::Decision::Later(at) => {
                    held.insert(alloc.id.clone());
                    self.reschedule_later.push((alloc.clone(), at));
                }
                reschedule::Decision::Stay => {
                    held.insert(alloc.id.clone());
                }
            }
        }
        (now, held)
    }

    /// Replacements placed for failed allocations carry their tracker, and the failed
    /// allocation is stopped (Nomad stops it only once its replacement is placed: one that
    /// found no room stays failed, and its next evaluation tries again with its history).
    fn attach_trackers(&mut self) {
        if self.trackers.is_empty() {
            return;
        }
        let mut replaced = Vec::new();
        for placed in self.plan.node_allocation.values_mut().flatten() {
            if let Some(tracker) = self.trackers.get(&placed.previous_allocation) {
                if self.state.alloc(&placed.id).is_none() {
                    placed.reschedule_tracker = Some(tracker.clone());
                    replaced.push(placed.previous_allocation.clone());
                }
            }
        }
        for id in replaced {
            if let Some(failed) = self.state.alloc(&id) {
                self.stop(&failed, reschedule::DESC_RESCHEDULED);
            }
        }
    }

    /// One delayed evaluation per batch of failed allocations due close together, and each
    /// allocation updated in place to name it (`FollowupEvalID`), so the next run neither
    /// creates another nor reschedules it before its time.
    fn reschedule_follow_ups(&mut self, env: &mut dyn SchedulerEnv) {
        let later = std::mem::take(&mut self.reschedule_later);
        if later.is_empty() {
            return;
        }
        let times: Vec<i64> = later.iter().map(|(_, at)| *at).collect();
        let (batch_of, starts) = reschedule::batch_times(&times);
        let eval = &self.plan.eval;
        let evals: Vec<Evaluation> = starts
            .iter()
            .map(|at| Evaluation {
                id: env.new_id(),
                namespace: eval.namespace.clone(),
                priority: eval.priority,
                eval_type: eval.eval_type.clone(),
                triggered_by: trigger::RETRY_FAILED_ALLOC.to_string(),
                job_id: eval.job_id.clone(),
                job_modify_index: eval.job_modify_index,
                status: EvalStatus::Pending,
                status_description: reschedule::DESC_RESCHEDULE_FOLLOWUP_EVAL.to_string(),
                previous_eval: eval.id.clone(),
                wait_until: format_rfc3339(*at),
                ..Default::default()
            })
            .collect();
        for ((alloc, _), batch) in later.iter().zip(batch_of) {
            let mut updated = self
                .updates
                .get(&alloc.id)
                .cloned()
                .unwrap_or_else(|| Allocation::clone(alloc));
            updated.followup_eval_id = evals[batch].id.clone();
            self.update_alloc(updated);
        }
        self.plan.created_evals.extend(evals);
    }
}

/// The allocations of a group that stay, as [`Run::keep_wanted`] decides.
struct Kept<'j> {
    live: Vec<&'j Arc<Allocation>>,
    /// Finished batch allocations, which count towards the group's count.
    done: usize,
    /// Name indexes taken by what stays.
    used_names: BTreeSet<u64>,
}

/// Names for what is to be placed, in order: a replacement keeps the name it replaces, the
/// others take the lowest indexes nothing else uses.
fn assign_names(
    to_place: Vec<(Option<u64>, String)>,
    used_names: &mut BTreeSet<u64>,
) -> Vec<(u64, String)> {
    let mut next_free = 0u64;
    let mut named: Vec<(u64, String)> = Vec::with_capacity(to_place.len());
    for (index, previous) in to_place {
        let index = match index {
            Some(i) => i,
            None => {
                while used_names.contains(&next_free) {
                    next_free += 1;
                }
                used_names.insert(next_free);
                next_free
            }
        };
        named.push((index, previous));
    }
    named.sort();
    named
}

#[cfg(test)]
mod deployment_tests;
#[cfg(test)]
mod placement_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod reschedule_tests;
#[cfg(test)]
mod system_tests;
#[cfg(test)]
mod tainted_tests;
#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;
