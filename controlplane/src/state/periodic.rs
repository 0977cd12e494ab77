//! The state's part of periodic and parameterized jobs and of scaling: the `periodic_launch`
//! table (each periodic job's last launch, first its registration), the `scaling_event` table
//! (a job's scaling events per group), and the three commands that write them — a periodic
//! launch, a dispatch, a scaling — each one Raft entry with its child job or new version and
//! its evaluation.
//!
//! The checks the proposer made are made again here, against the state the entry is applied
//! to, so that two proposals racing (a leader change relaunching, two dispatches with the same
//! idempotency token) cannot both write.

use std::sync::Arc;

use super::{key, ApplyEffects, JobKey, State, Table};
use crate::model::{
    Evaluation, Job, JobScalingEvents, JobStatus, PeriodicLaunch, ScalingEvent,
    DISPATCH_LAUNCH_SUFFIX,
};

/// The start of the error the state machine answers when a dispatch's idempotency token is
/// already used by a live child: the proposer then answers with that child.
pub const IDEMPOTENCY_TOKEN_USED: &str = "idempotency token already used by dispatched job";

impl State {
    /// A periodic job's last recorded launch (its registration time if never launched).
    pub fn periodic_launch(&self, namespace: &str, id: &str) -> Option<Arc<PeriodicLaunch>> {
        self.periodic_launches.get(&key(namespace, id)).cloned()
    }

    /// Every recorded periodic launch.
    pub fn periodic_launches(&self) -> Vec<Arc<PeriodicLaunch>> {
        self.periodic_launches.values().cloned().collect()
    }

    /// A job's scaling events, per group, newest first.
    pub fn scaling_events(&self, namespace: &str, id: &str) -> Option<Arc<JobScalingEvents>> {
        self.scaling_events.get(&key(namespace, id)).cloned()
    }

    /// The children of `parent_id` (periodic launches and dispatches): jobs whose `ParentID`
    /// names it. Their ids start with `<parent>/`, so only that range is read.
    pub fn children(&self, namespace: &str, parent_id: &str) -> Vec<Arc<Job>> {
        let prefix = format!("{parent_id}/");
        self.jobs
            .range(key(namespace, &prefix)..)
            .take_while(|((ns, id), _)| ns == namespace && id.starts_with(&prefix))
            .filter(|(_, j)| j.parent_id == parent_id)
            .map(|(_, j)| j.clone())
            .collect()
    }

    /// The live child of a parameterized job dispatched with `token`, if any (Nomad's
    /// `CheckIdempotencyToken`: a dead child no longer holds its token).
    pub fn dispatched_with_token(
        &self,
        namespace: &str,
        parent_id: &str,
        token: &str,
    ) -> Option<Arc<Job>> {
        if token.is_empty() {
            return None;
        }
        self.children(namespace, parent_id).into_iter().find(|c| {
            c.dispatched && c.dispatch_idempotency_token == token && c.status != JobStatus::Dead
        })
    }

    /// Records a periodic job's registration as its first launch (Nomad overloads the launch
    /// table so): a leader elected before the first launch then knows whether it was missed.
    /// A job whose launches are turned on again, or whose schedule changed, starts counting
    /// from now too (as Nomad's dispatcher computes the next launch from the registration),
    /// so that an old record does not make the new schedule look overdue.
    pub(super) fn note_periodic_registered(
        &mut self,
        index: u64,
        previous: Option<&Job>,
        job: &Job,
        now: i64,
    ) {
        let k = key(&job.namespace, &job.id);
        if !job.is_periodic_active() {
            return;
        }
        let recorded = self.periodic_launches.get(&k).map(|l| l.launch);
        let restarted =
            previous.is_none_or(|p| !p.is_periodic_active() || p.periodic != job.periodic);
        match recorded {
            None => self.write_launch(index, &k, now),
            // Never back: the record only grows, whatever the proposer's clock says.
            Some(last) if restarted && now > last => self.write_launch(index, &k, now),
            Some(_) => {}
        }
    }

    fn write_launch(&mut self, index: u64, k: &JobKey, launch: i64) {
        let create_index = self
            .periodic_launches
            .get(k)
            .map_or(index, |l| l.create_index);
        self.periodic_launches.insert(
            k.clone(),
            Arc::new(PeriodicLaunch {
                id: k.1.clone(),
                namespace: k.0.clone(),
                launch,
                create_index,
                modify_index: index,
            }),
        );
        self.touch(Table::PeriodicLaunches, index);
    }

    /// Forgets what the state keeps beside a job (its launches, its scaling events) when the
    /// job itself is removed.
    pub(super) fn forget_job_extras(&mut self, index: u64, k: &JobKey) {
        if self.periodic_launches.remove(k).is_some() {
            self.touch(Table::PeriodicLaunches, index);
        }
        if self.scaling_events.remove(k).is_some() {
            self.touch(Table::ScalingEvents, index);
        }
    }

    /// A periodic launch: the child job, its evaluation and the launch time, together. Refused
    /// unless the parent is an active periodic job, the launch is after the recorded one (a
    /// new leader relaunching what the old one launched is refused, never run twice) and the
    /// child does not exist yet.
    pub(super) fn apply_periodic_launch(
        &mut self,
        index: u64,
        child: &Job,
        eval: &Evaluation,
        launch: i64,
        now: i64,
        effects: &mut ApplyEffects,
    ) -> Result<u64, String> {
        let namespace = &child.namespace;
        let Some(parent) = self.job(namespace, &child.parent_id) else {
            return Err(format!(
                "periodic launch of {:?}: parent job {:?} not found in namespace {namespace:?}",
                child.id, child.parent_id
            ));
        };
        if !parent.is_periodic_active() {
            return Err(format!(
                "periodic launch of {:?}: job {:?} is not an active periodic job (stopped, disabled or not periodic)",
                child.id, parent.id
            ));
        }
        let k = key(namespace, &parent.id);
        if let Some(last) = self.periodic_launches.get(&k) {
            if launch <= last.launch {
                return Err(format!(
                    "periodic launch of {:?} at {launch} is not after job {:?}'s last recorded launch at {}",
                    child.id, parent.id, last.launch
                ));
            }
        }
        if self.jobs.contains_key(&key(namespace, &child.id)) {
            return Err(format!(
                "periodic launch: job {:?} already exists in namespace {namespace:?}",
                child.id
            ));
        }
        let job_modify_index =
            self.apply_job_register(index, child, Some(eval), now, None, effects)?;
        self.write_launch(index, &k, launch);
        Ok(job_modify_index)
    }

    /// A dispatch of a parameterized job: the child job and (unless the child is itself
    /// periodic) its evaluation. Refused if the parent is gone, stopped or not parameterized,
    /// or if a live child already holds the idempotency token.
    pub(super) fn apply_job_dispatch(
        &mut self,
        index: u64,
        child: &Job,
        eval: Option<&Evaluation>,
        now: i64,
        effects: &mut ApplyEffects,
    ) -> Result<u64, String> {
        let namespace = &child.namespace;
        let parent = match self.job(namespace, &child.parent_id) {
            Some(p) if p.is_parameterized() && !p.stop => p,
            Some(p) => {
                return Err(format!(
                    "dispatch of {:?}: job {:?} is {}",
                    child.id,
                    p.id,
                    if p.stop {
                        "stopped"
                    } else {
                        "not a parameterized job"
                    }
                ))
            }
            None => {
                return Err(format!(
                    "dispatch of {:?}: parameterized job {:?} not found in namespace {namespace:?}",
                    child.id, child.parent_id
                ))
            }
        };
        if !child.dispatched
            || !child
                .id
                .starts_with(&format!("{}{DISPATCH_LAUNCH_SUFFIX}", parent.id))
        {
            return Err(format!(
                "dispatch of {:?}: not a dispatched child of {:?}",
                child.id, parent.id
            ));
        }
        if let Some(existing) =
            self.dispatched_with_token(namespace, &parent.id, &child.dispatch_idempotency_token)
        {
            return Err(format!("{IDEMPOTENCY_TOKEN_USED} {:?}", existing.id));
        }
        if self.jobs.contains_key(&key(namespace, &child.id)) {
            return Err(format!(
                "dispatch: job {:?} already exists in namespace {namespace:?}",
                child.id
            ));
        }
        self.apply_job_register(index, child, eval, now, None, effects)
    }

    /// A scaling: with a count, a new version of the job with that group's count and its
    /// evaluation; always, the event in the job's scaling history.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_job_scale(
        &mut self,
        index: u64,
        namespace: &str,
        job_id: &str,
        group: &str,
        count: Option<i64>,
        event: &ScalingEvent,
        eval: Option<&Evaluation>,
        now: i64,
        effects: &mut ApplyEffects,
    ) -> Result<u64, String> {
        let k = key(namespace, job_id);
        let Some(existing) = self.jobs.get(&k).cloned() else {
            return Err(format!(
                "job {job_id:?} not found in namespace {namespace:?}"
            ));
        };
        let Some(tg) = existing.task_groups.iter().find(|g| g.name == group) else {
            return Err(format!(
                "task group {group:?} specified for scaling does not exist in job {job_id:?}"
            ));
        };
        let mut job_modify_index = existing.job_modify_index;
        if let Some(count) = count {
            check_scaling_bounds(tg, count)?;
            existing.scale_count_allowed(count)?;
            let mut scaled = (*existing).clone();
            if let Some(g) = scaled.task_groups.iter_mut().find(|g| g.name == group) {
                g.count = count;
            }
            scaled.version = existing.version + 1;
            scaled.modify_index = index;
            scaled.job_modify_index = index;
            scaled.submit_time = now;
            scaled.stable = false;
            job_modify_index = index;
            self.store_job(index, scaled);
            if let Some(eval) = eval {
                let mut eval = eval.clone();
                eval.job_modify_index = job_modify_index;
                self.upsert_eval(index, &eval, now, effects);
            }
            self.refresh_job_status(index, &k);
        }
        let mut event = event.clone();
        event.create_index = index;
        let mut events = self
            .scaling_events
            .get(&k)
            .map(|e| (**e).clone())
            .unwrap_or_else(|| JobScalingEvents {
                namespace: namespace.to_string(),
                job_id: job_id.to_string(),
                ..Default::default()
            });
        events.push(group, event);
        events.modify_index = index;
        self.scaling_events.insert(k, Arc::new(events));
        self.touch(Table::ScalingEvents, index);
        Ok(job_modify_index)
    }
}

/// A count must be within the group's `scaling { min, max }`, in Nomad's words.
pub fn check_scaling_bounds(group: &crate::model::TaskGroup, count: i64) -> Result<(), String> {
    let Some(scaling) = &group.scaling else {
        return Ok(());
    };
    if let Some(min) = scaling.min {
        if count < min {
            return Err(format!(
                "group count was less than scaling policy minimum: {count} < {min}"
            ));
        }
    }
    if let Some(max) = scaling.max {
        if max < count {
            return Err(format!(
                "group count was greater than scaling policy maximum: {count} > {max}"
            ));
        }
    }
    Ok(())
}
