//! Deployments in the state (Nomad's state store for them): the `deployments` table, what a
//! plan writes (a new or updated deployment, status changes), and the counts kept as
//! allocations are placed and their clients report health (`PlacedAllocs`, `HealthyAllocs`,
//! `UnhealthyAllocs`, `PlacedCanaries`, `RequireProgressBy`).
//!
//! The operator's and the deployment watcher's commands (status update, promotion, allocation
//! health) are refused, with nothing written, for a deployment that is unknown or already
//! terminal, in Nomad's words.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::model::time::{format_rfc3339, parse_rfc3339};
use crate::model::{
    deployment_description, deployment_status, AllocDeploymentStatus, Allocation, Deployment,
    DeploymentStatusUpdate, Evaluation, Job,
};

use super::{key, ApplyEffects, State, Table};

/// Nomad's refusal of any change to a deployment that is unknown.
fn unknown(id: &str) -> String {
    format!("Deployment ID {id:?} couldn't be updated as it does not exist")
}

/// Nomad's refusal of any change to a deployment that ended.
fn terminal(d: &Deployment) -> String {
    format!("Deployment {:?} has terminal status {:?}:", d.id, d.status)
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl State {
    pub fn deployment(&self, id: &str) -> Option<Arc<Deployment>> {
        self.deployments.get(id).cloned()
    }

    /// Every deployment, ordered by id.
    pub fn deployments(&self) -> Vec<Arc<Deployment>> {
        self.deployments.values().cloned().collect()
    }

    /// One job's deployments, newest first.
    pub fn deployments_by_job(&self, namespace: &str, job_id: &str) -> Vec<Arc<Deployment>> {
        let mut out: Vec<Arc<Deployment>> = self
            .deployments_by_job
            .get(&key(namespace, job_id))
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| self.deployments.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| b.create_index.cmp(&a.create_index).then(a.id.cmp(&b.id)));
        out
    }

    /// The job's newest deployment (Nomad's `LatestDeploymentByJobID`).
    pub fn latest_deployment(&self, namespace: &str, job_id: &str) -> Option<Arc<Deployment>> {
        self.deployments_by_job(namespace, job_id)
            .into_iter()
            .next()
    }

    /// The allocations a deployment placed or took over.
    pub fn allocs_by_deployment(&self, id: &str) -> Vec<Arc<Allocation>> {
        let Some(d) = self.deployments.get(id) else {
            return Vec::new();
        };
        self.allocs_by_job(&d.namespace, &d.job_id)
            .into_iter()
            .filter(|a| a.deployment_id == id)
            .collect()
    }

    /// Writes a deployment as a plan carries it: a new one gets its create index here.
    pub(super) fn upsert_deployment(&mut self, index: u64, deployment: &Deployment, now: i64) {
        let mut d = deployment.clone();
        assert!(
            !d.id.is_empty(),
            "a plan writes a deployment without an id for job {:?}",
            d.job_id
        );
        match self.deployments.get(&d.id) {
            Some(existing) => {
                // The job and the creation are the deployment's identity: a plan from an older
                // snapshot may update the groups, never move it to another job.
                assert!(
                    existing.namespace == d.namespace && existing.job_id == d.job_id,
                    "a plan moves deployment {:?} from job {:?} to job {:?}",
                    d.id,
                    existing.job_id,
                    d.job_id
                );
                d.create_index = existing.create_index;
                d.create_time = existing.create_time;
            }
            None => {
                d.create_index = index;
                if d.create_time == 0 {
                    d.create_time = now;
                }
            }
        }
        d.modify_index = index;
        if d.modify_time == 0 {
            d.modify_time = now;
        }
        self.store_deployment(index, d);
    }

    fn store_deployment(&mut self, index: u64, d: Deployment) {
        self.deployments_by_job
            .entry(key(&d.namespace, &d.job_id))
            .or_default()
            .insert(d.id.clone());
        self.deployments.insert(d.id.clone(), Arc::new(d));
        self.touch(Table::Deployments, index);
    }

    /// The deployment `id`, if it exists and is still active.
    fn active_deployment(&self, id: &str) -> Result<Arc<Deployment>, String> {
        let d = self.deployments.get(id).ok_or_else(|| unknown(id))?;
        if !d.active() {
            return Err(terminal(d));
        }
        Ok(d.clone())
    }

    /// Whether a status update may be applied now (the deployment exists and is active).
    pub(super) fn check_deployment_update(&self, u: &DeploymentStatusUpdate) -> Result<(), String> {
        self.active_deployment(&u.deployment_id).map(|_| ())
    }

    /// Nomad's `updateDeploymentStatusImpl`: the new status; a running or paused deployment's
    /// progress deadlines start again from the update; a successful one makes its job
    /// version stable. The caller checked [`State::check_deployment_update`].
    pub(super) fn write_deployment_status(&mut self, index: u64, u: &DeploymentStatusUpdate) {
        let Some(existing) = self.deployments.get(&u.deployment_id) else {
            return;
        };
        let mut d = (**existing).clone();
        d.status = u.status.clone();
        d.status_description = u.status_description.clone();
        d.modify_index = index;
        d.modify_time = u.updated_at;
        if d.status == deployment_status::PAUSED || d.status == deployment_status::RUNNING {
            for state in d.task_groups.values_mut() {
                if !state.progress_deadline.is_zero() {
                    state.require_progress_by =
                        format_rfc3339(u.updated_at.saturating_add(nanos(state.progress_deadline)));
                }
            }
        }
        let stable = (d.status == deployment_status::SUCCESSFUL)
            .then(|| (d.namespace.clone(), d.job_id.clone(), d.job_version));
        self.store_deployment(index, d);
        if let Some((ns, job_id, version)) = stable {
            // A version pruned meanwhile has nothing to mark: the deployment still ends.
            let _ = self.apply_job_stability(index, &ns, &job_id, version, true);
        }
    }

    /// `DeploymentStatusUpdate`: the watcher or the operator (pause, resume, fail) changes a
    /// deployment's status; an auto-revert carries the job version to go back to, and an
    /// evaluation follows.
    pub(super) fn apply_deployment_status_update(
        &mut self,
        index: u64,
        update: &DeploymentStatusUpdate,
        job: Option<&Job>,
        eval: Option<&Evaluation>,
        now: i64,
        effects: &mut ApplyEffects,
    ) -> Result<u64, String> {
        self.check_deployment_update(update)?;
        self.write_deployment_status(index, update);
        self.register_follow_up(index, job, eval, now, effects)
    }

    /// The job an update carries (an auto-revert registers the stable version again, as a new
    /// version) and the evaluation that follows.
    fn register_follow_up(
        &mut self,
        index: u64,
        job: Option<&Job>,
        eval: Option<&Evaluation>,
        now: i64,
        effects: &mut ApplyEffects,
    ) -> Result<u64, String> {
        match job {
            Some(job) => self.apply_job_register(index, job, eval, now, None, effects),
            None => {
                if let Some(eval) = eval {
                    self.upsert_eval(index, eval, now, effects);
                }
                Ok(0)
            }
        }
    }

    /// `DeploymentPromote` (Nomad's `UpdateDeploymentPromotion`): every named group (or all)
    /// must have as many healthy canaries as it wants; then the groups are promoted, their
    /// canaries stop being canaries, and the evaluation that places the rest follows.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_deployment_promote(
        &mut self,
        index: u64,
        deployment_id: &str,
        all: bool,
        groups: &[String],
        eval: Option<&Evaluation>,
        now: i64,
        effects: &mut ApplyEffects,
    ) -> Result<u64, String> {
        let d = self.active_deployment(deployment_id)?;
        let named: BTreeSet<&str> = groups.iter().map(String::as_str).collect();
        let wanted = |group: &str| all || named.contains(group);
        for group in &named {
            if !d.task_groups.contains_key(*group) {
                return Err(format!(
                    "deployment {deployment_id:?} has no task group {group:?}"
                ));
            }
        }
        let canaries: BTreeSet<&str> = d
            .task_groups
            .values()
            .flat_map(|g| g.placed_canaries.iter().map(String::as_str))
            .collect();
        let promotable: Vec<Arc<Allocation>> = self
            .allocs_by_deployment(deployment_id)
            .into_iter()
            .filter(|a| canaries.contains(a.id.as_str()) && wanted(&a.task_group))
            .filter(|a| {
                !a.is_terminal()
                    && a.deployment_status
                        .as_ref()
                        .is_some_and(AllocDeploymentStatus::is_healthy)
            })
            .collect();
        let mut short = Vec::new();
        for (group, state) in &d.task_groups {
            if !wanted(group) || state.desired_canaries == 0 {
                continue;
            }
            let have = promotable.iter().filter(|a| &a.task_group == group).count() as u64;
            if have < state.desired_canaries {
                short.push(format!(
                    "Task group {group:?} has {have}/{} healthy allocations",
                    state.desired_canaries
                ));
            }
        }
        if !short.is_empty() {
            return Err(short.join("; "));
        }
        let mut promoted = (*d).clone();
        promoted.modify_index = index;
        promoted.modify_time = now;
        for (group, state) in promoted.task_groups.iter_mut() {
            if !wanted(group) {
                continue;
            }
            if !state.progress_deadline.is_zero() && !state.require_progress_by.is_empty() {
                state.require_progress_by =
                    format_rfc3339(now.saturating_add(nanos(state.progress_deadline)));
            }
            state.promoted = true;
        }
        if !promoted.requires_promotion() && promoted.status == deployment_status::RUNNING {
            promoted.status_description = deployment_description::RUNNING.to_string();
        }
        self.store_deployment(index, promoted);
        for alloc in promotable {
            let mut a = (*alloc).clone();
            if let Some(status) = a.deployment_status.as_mut() {
                status.canary = false;
                status.modify_index = index;
            }
            a.modify_index = index;
            a.alloc_modify_index = index;
            self.allocs.insert(a.id.clone(), Arc::new(a));
        }
        self.touch(Table::Allocs, index);
        if let Some(eval) = eval {
            self.upsert_eval(index, eval, now, effects);
        }
        Ok(0)
    }

    /// `DeploymentAllocHealth` (Nomad's `UpdateDeploymentAllocHealth`): the operator (a
    /// `manual` health check) or the watcher sets allocations' health; with it may come a
    /// status change, a job to revert to and an evaluation. Every id is checked before
    /// anything is written.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_deployment_alloc_health(
        &mut self,
        index: u64,
        deployment_id: &str,
        healthy: &[String],
        unhealthy: &[String],
        update: Option<&DeploymentStatusUpdate>,
        job: Option<&Job>,
        eval: Option<&Evaluation>,
        now: i64,
        effects: &mut ApplyEffects,
    ) -> Result<u64, String> {
        self.active_deployment(deployment_id)?;
        let marks: Vec<(&String, bool)> = healthy
            .iter()
            .map(|id| (id, true))
            .chain(unhealthy.iter().map(|id| (id, false)))
            .collect();
        for (id, _) in &marks {
            let alloc = self
                .allocs
                .get(*id)
                .ok_or_else(|| format!("unknown alloc {id:?}"))?;
            if alloc.deployment_id != deployment_id {
                return Err(format!(
                    "alloc {id:?} is not part of deployment {deployment_id:?}"
                ));
            }
        }
        if let Some(u) = update {
            if u.deployment_id != deployment_id {
                return Err(format!(
                    "the status update names deployment {:?}, not {deployment_id:?}",
                    u.deployment_id
                ));
            }
        }
        for (id, is_healthy) in marks {
            let Some(existing) = self.allocs.get(id).cloned() else {
                continue;
            };
            let mut alloc = (*existing).clone();
            let status = alloc.deployment_status.get_or_insert_with(Default::default);
            status.healthy = Some(is_healthy);
            status.timestamp = format_rfc3339(now);
            status.modify_index = index;
            alloc.modify_index = index;
            alloc.modify_time = now;
            self.note_alloc_in_deployment(index, Some(&existing), &mut alloc);
            self.allocs.insert(alloc.id.clone(), Arc::new(alloc));
        }
        if !healthy.is_empty() || !unhealthy.is_empty() {
            self.touch(Table::Allocs, index);
        }
        if let Some(u) = update {
            self.write_deployment_status(index, u);
        }
        self.register_follow_up(index, job, eval, now, effects)
    }

    /// Nomad's `updateDeploymentWithAlloc`: counts a placement (an allocation new to the
    /// deployment), a first health verdict, or a healthy allocation turning unhealthy in its
    /// group's deployment state, and moves the progress deadline. Called with the allocation
    /// as it is about to be written (`new`) and as it was (`old`).
    pub(super) fn note_alloc_in_deployment(
        &mut self,
        index: u64,
        old: Option<&Allocation>,
        new: &mut Allocation,
    ) {
        if new.deployment_id.is_empty() {
            return;
        }
        let Some(existing) = self.deployments.get(&new.deployment_id) else {
            return;
        };
        if !existing.task_groups.contains_key(&new.task_group) {
            // The group has no update block: not part of the rollout.
            return;
        }
        let health = |a: &Allocation| a.deployment_status.as_ref().and_then(|s| s.healthy);
        let (mut placed, mut healthy, mut unhealthy) = (0i64, 0i64, 0i64);
        let old_health = old.and_then(health);
        let new_health = health(new);
        match old {
            Some(o) if o.deployment_id == new.deployment_id => match (old_health, new_health) {
                (None, Some(true)) => healthy += 1,
                (None, Some(false)) => unhealthy += 1,
                (Some(true), Some(false)) => {
                    healthy -= 1;
                    unhealthy += 1;
                }
                _ => {}
            },
            _ => placed += 1,
        }
        let canary = new.deployment_status.as_ref().is_some_and(|s| s.canary);
        if placed == 0 && healthy == 0 && unhealthy == 0 {
            return;
        }
        if healthy != 0 || unhealthy != 0 {
            if let Some(status) = new.deployment_status.as_mut() {
                status.modify_index = index;
            }
        }
        let mut d = (**existing).clone();
        d.modify_index = index;
        d.modify_time = new.modify_time;
        let Some(state) = d.task_groups.get_mut(&new.task_group) else {
            return;
        };
        let add = |count: &mut u64, delta: i64| {
            *count = count.saturating_add_signed(delta);
        };
        add(&mut state.placed_allocs, placed);
        add(&mut state.healthy_allocs, healthy);
        add(&mut state.unhealthy_allocs, unhealthy);
        if canary && !state.placed_canaries.contains(&new.id) {
            state.placed_canaries.push(new.id.clone());
        }
        if !state.progress_deadline.is_zero() {
            let deadline = nanos(state.progress_deadline);
            let current = parse_rfc3339(&state.require_progress_by).filter(|t| *t > 0);
            if placed != 0 && current.is_none() {
                state.require_progress_by =
                    format_rfc3339(new.modify_time.saturating_add(deadline));
            } else if healthy > 0 {
                let at = new
                    .deployment_status
                    .as_ref()
                    .and_then(|s| parse_rfc3339(&s.timestamp))
                    .unwrap_or(new.modify_time)
                    .saturating_add(deadline);
                if current.is_none_or(|c| at > c) {
                    state.require_progress_by = format_rfc3339(at);
                }
            }
        }
        self.store_deployment(index, d);
    }

    /// A purged job's deployments go with it.
    pub(super) fn forget_job_deployments(&mut self, index: u64, namespace: &str, job_id: &str) {
        let Some(ids) = self.deployments_by_job.remove(&key(namespace, job_id)) else {
            return;
        };
        for id in ids {
            self.deployments.remove(&id);
        }
        self.touch(Table::Deployments, index);
    }

    /// Garbage collection of finished deployments (chosen by `gc::collect`; checked again).
    pub(super) fn remove_deployments(&mut self, index: u64, ids: &[String]) {
        let mut removed = false;
        for id in ids {
            let Some(d) = self.deployments.get(id).cloned() else {
                continue;
            };
            if d.active() {
                continue;
            }
            self.deployments.remove(id);
            let k = key(&d.namespace, &d.job_id);
            if let Some(set) = self.deployments_by_job.get_mut(&k) {
                set.remove(id);
                if set.is_empty() {
                    self.deployments_by_job.remove(&k);
                }
            }
            removed = true;
        }
        if removed {
            self.touch(Table::Deployments, index);
        }
    }

    /// Rebuilds the by-job index of one deployment read from a snapshot.
    pub(super) fn index_deployment(&mut self, d: Deployment) {
        self.deployments_by_job
            .entry(key(&d.namespace, &d.job_id))
            .or_default()
            .insert(d.id.clone());
        self.deployments.insert(d.id.clone(), Arc::new(d));
    }
}
