//! Deployments in one scheduler run (Nomad's reconciler rules for them): which deployment is
//! the job version's, which older ones end, when a run starts one, how many destructive
//! updates a group may make now (`max_parallel` minus what the deployment placed that is not
//! healthy yet), and when canaries are placed and under which names.
//!
//! The rules are pure functions over the job, its groups, the deployment and allocations; the
//! run ([`super::Run`]) applies them. What happens between runs (health, promotion, failure,
//! auto-revert, success) is the leader's deployment watcher's: it creates the evaluation
//! that lets the next run take the next step.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::model::{
    deployment_description, deployment_status, Allocation, Deployment, DeploymentState,
    DeploymentStatusUpdate, Job, TaskGroup,
};

/// What a run knows and decides about deployments.
#[derive(Debug, Default)]
pub(super) struct Rollout {
    /// The deployment of the job's current version: the one found (running, paused or
    /// failed) or the one this run creates.
    pub current: Option<Deployment>,
    /// `current` is created by this run: the plan writes it.
    pub created: bool,
    /// `current` existed and this run changed it (a group's wanted canaries).
    pub changed: bool,
    /// A deployment that is no longer the current one (an older version's, or this one's
    /// that finished): its canaries that were never promoted are stopped.
    pub old: Option<Arc<Deployment>>,
    /// The placements being made are canaries.
    pub placing_canaries: bool,
}

impl Rollout {
    /// Sorts out the job's newest deployment for a run (Nomad's
    /// `cancelUnneededServiceDeployments`): a stopped or deleted job's active deployment is
    /// cancelled (`STOPPED_JOB`), an active one of another version of the job too
    /// (`NEWER_JOB`); a successful one is finished with. Returns the rollout and the status
    /// updates for the plan.
    pub fn sort_out(
        job: Option<&Job>,
        latest: Option<Arc<Deployment>>,
        now: i64,
    ) -> (Rollout, Vec<DeploymentStatusUpdate>) {
        let mut rollout = Rollout::default();
        let Some(d) = latest else {
            return (rollout, Vec::new());
        };
        let cancel = |why: &str| DeploymentStatusUpdate {
            deployment_id: d.id.clone(),
            status: deployment_status::CANCELLED.to_string(),
            status_description: why.to_string(),
            updated_at: now,
        };
        let mut updates = Vec::new();
        match job {
            Some(job) if !job.stop => {
                let other_version =
                    d.job_create_index != job.create_index || d.job_version != job.version;
                if other_version {
                    if d.active() {
                        updates.push(cancel(deployment_description::NEWER_JOB));
                    }
                    rollout.old = Some(d);
                } else if d.status == deployment_status::SUCCESSFUL {
                    rollout.old = Some(d);
                } else {
                    rollout.current = Some((*d).clone());
                }
            }
            _ => {
                if d.active() {
                    updates.push(cancel(deployment_description::STOPPED_JOB));
                }
                rollout.old = Some(d);
            }
        }
        (rollout, updates)
    }

    pub fn paused(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|d| d.status == deployment_status::PAUSED)
    }

    pub fn failed(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|d| d.status == deployment_status::FAILED)
    }

    /// The group's state in the current deployment, if it has one.
    pub fn group_state(&self, group: &str) -> Option<&DeploymentState> {
        self.current.as_ref()?.task_groups.get(group)
    }

    /// Every canary the current deployment placed (any group).
    pub fn canary_ids(&self) -> BTreeSet<String> {
        self.current
            .iter()
            .flat_map(|d| d.task_groups.values())
            .flat_map(|g| g.placed_canaries.iter().cloned())
            .collect()
    }

    /// Canaries that go (Nomad's `cancelUnneededCanaries`): the unpromoted ones of the old
    /// deployment and of a failed current one.
    pub fn unneeded_canaries(&self) -> BTreeSet<String> {
        let unpromoted = |d: &Deployment| -> Vec<String> {
            d.task_groups
                .values()
                .filter(|g| !g.promoted)
                .flat_map(|g| g.placed_canaries.iter().cloned())
                .collect()
        };
        let mut out: BTreeSet<String> = self.old.iter().flat_map(|d| unpromoted(d)).collect();
        if let Some(d) = self.current.as_ref().filter(|_| self.failed()) {
            out.extend(unpromoted(d));
        }
        out
    }

    /// The deployment id placements and in-place updates of `group` carry: the current
    /// deployment's while it is active.
    pub fn placement_id(&self) -> String {
        self.current
            .as_ref()
            .filter(|d| d.active())
            .map(|d| d.id.clone())
            .unwrap_or_default()
    }

    /// Whether an allocation's failure waits for the deployment instead of the reschedule
    /// policy (Nomad's `updateByReschedulable`): it belongs to the active current
    /// deployment and the watcher did not allow its replacement. Once the deployment ended
    /// (failed included), the reschedule policy applies again, as in Nomad.
    pub fn holds_reschedule(&self, alloc: &Allocation) -> bool {
        let in_active = self
            .current
            .as_ref()
            .is_some_and(|d| d.active() && alloc.deployment_id == d.id);
        in_active && !alloc.desired_transition.should_reschedule()
    }

    /// Attaches a group's new state to the current deployment, creating the deployment
    /// (`new_id()` names it) when no earlier group did.
    pub fn start_group(
        &mut self,
        job: &Job,
        group: &TaskGroup,
        eval_priority: i32,
        now: i64,
        new_id: impl FnOnce() -> String,
    ) {
        if self.current.is_none() {
            self.current = Some(Deployment::new_for(job, new_id(), eval_priority, now));
            self.created = true;
        }
        if let Some(d) = self.current.as_mut() {
            d.task_groups
                .insert(group.name.clone(), new_group_state(group));
        }
    }

    /// The group wants `n` canaries in the current deployment.
    pub fn want_canaries(&mut self, group: &str, n: u64) {
        let created = self.created;
        if let Some(state) = self
            .current
            .as_mut()
            .and_then(|d| d.task_groups.get_mut(group))
        {
            if state.desired_canaries != n {
                state.desired_canaries = n;
                self.changed |= !created;
            }
        }
    }

    /// A system group's wanted total: the nodes it runs on (Nomad counts the feasible ones).
    pub fn set_desired_total(&mut self, group: &str, total: u64) {
        let created = self.created;
        if let Some(state) = self
            .current
            .as_mut()
            .filter(|d| d.active())
            .and_then(|d| d.task_groups.get_mut(group))
        {
            if state.desired_total != total {
                state.desired_total = total;
                self.changed |= !created;
            }
        }
    }

    /// The deployment the plan writes (created or changed by this run), with the description
    /// a created one starts with (Nomad's `setDeploymentStatusAndUpdates`).
    pub fn for_plan(&self) -> Option<Deployment> {
        if !self.created && !self.changed {
            return None;
        }
        let mut d = self.current.clone()?;
        if self.created && d.requires_promotion() {
            d.status_description = if d.has_auto_promote() {
                deployment_description::RUNNING_AUTO_PROMOTION
            } else {
                deployment_description::RUNNING_NEEDS_PROMOTION
            }
            .to_string();
        }
        Some(d)
    }
}

/// The group rolls out under a deployment: its `update` block has `max_parallel > 0`
/// (Nomad's `!UpdateStrategy.IsEmpty()`).
pub fn has_strategy(group: &TaskGroup) -> bool {
    max_parallel(group) > 0
}

pub fn max_parallel(group: &TaskGroup) -> usize {
    group
        .update
        .as_ref()
        .and_then(|u| u.max_parallel)
        .map_or(0, |n| usize::try_from(n).unwrap_or(0))
}

pub fn canary(group: &TaskGroup) -> usize {
    group
        .update
        .as_ref()
        .and_then(|u| u.canary)
        .map_or(0, |n| usize::try_from(n).unwrap_or(0))
}

/// A group's state in a new deployment: what its `update` block says and `count` wanted.
pub fn new_group_state(group: &TaskGroup) -> DeploymentState {
    let u = group.update.clone().unwrap_or_default();
    DeploymentState {
        auto_revert: u.auto_revert.unwrap_or(false),
        auto_promote: u.auto_promote.unwrap_or(false),
        progress_deadline: u.progress_deadline.unwrap_or_default(),
        desired_total: u64::try_from(group.count).unwrap_or(0),
        ..Default::default()
    }
}

/// Whether a run starts a deployment for a group without one (Nomad's `createDeployment`):
/// the group has a strategy and a count, and either none of its allocations runs this job
/// version yet (a new job, or a version nothing was placed for) or this run updates some.
pub fn starts_deployment(
    job: &Job,
    group: &TaskGroup,
    allocs: &[Arc<Allocation>],
    updating: bool,
) -> bool {
    if !has_strategy(group) || group.count <= 0 {
        return false;
    }
    let had_running = allocs.iter().any(|a| {
        a.job
            .as_ref()
            .is_some_and(|j| j.version == job.version && j.create_index == job.create_index)
    });
    !had_running || updating
}

/// How many more of the group's allocations may be replaced now (Nomad's
/// `computeUnderProvisionedBy`): without a strategy or anything to replace, no limit; a paused or failed deployment, or unpromoted canaries, none; otherwise
/// `max_parallel` less the deployment's allocations (of `kept`) not yet healthy, and none
/// while one of them is unhealthy.
pub fn replace_limit(
    group: &TaskGroup,
    destructive: usize,
    rollout: &Rollout,
    canarying: bool,
    kept: &[&Arc<Allocation>],
) -> usize {
    if !has_strategy(group) || destructive == 0 {
        return usize::MAX;
    }
    let Some(d) = rollout.current.as_ref() else {
        return max_parallel(group);
    };
    if rollout.paused() || rollout.failed() || canarying {
        return 0;
    }
    let mut limit = max_parallel(group);
    for alloc in kept.iter().filter(|a| a.deployment_id == d.id) {
        let healthy = alloc.deployment_status.as_ref().and_then(|s| s.healthy);
        match healthy {
            Some(false) => return 0,
            Some(true) => {}
            None => limit = limit.saturating_sub(1),
        }
    }
    limit
}

/// Names (indexes) for `n` new canaries (Nomad's `NextCanaries`): first those of the
/// allocations they will replace (`destructive`, lowest first), then free indexes below
/// `count`, then indexes from `count` up; never one an existing canary has.
pub fn canary_names(
    n: usize,
    count: u64,
    existing: &BTreeSet<u64>,
    destructive: &BTreeSet<u64>,
    used: &BTreeSet<u64>,
) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::with_capacity(n);
    let mut taken = existing.clone();
    let preferred = destructive.iter().copied().filter(|i| *i < count);
    let free = (0..count).filter(|i| !used.contains(i) && !destructive.contains(i));
    for i in preferred.chain(free) {
        if out.len() == n {
            return out;
        }
        if taken.insert(i) {
            out.push(i);
        }
    }
    let mut i = count;
    while out.len() < n {
        if taken.insert(i) {
            out.push(i);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UpdateStrategy;

    fn group(count: i64, max_parallel: i64, canary: i64) -> TaskGroup {
        TaskGroup {
            name: "web".into(),
            count,
            update: Some(UpdateStrategy {
                max_parallel: Some(max_parallel),
                canary: Some(canary),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn set(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    #[test]
    fn canaries_take_the_names_they_replace_then_free_ones_then_beyond_count() {
        assert_eq!(
            canary_names(2, 3, &set(&[]), &set(&[1, 2]), &set(&[0, 1, 2])),
            vec![1, 2]
        );
        // One canary exists under name 1: the next takes 2.
        assert_eq!(
            canary_names(1, 3, &set(&[1]), &set(&[1, 2]), &set(&[0, 1, 2])),
            vec![2]
        );
        // More canaries than count: names past the count.
        assert_eq!(
            canary_names(5, 3, &set(&[]), &set(&[0, 1, 2]), &set(&[0, 1, 2])),
            vec![0, 1, 2, 3, 4]
        );
        // A free name below count before going past it.
        assert_eq!(
            canary_names(2, 3, &set(&[]), &set(&[0]), &set(&[0, 1])),
            vec![0, 2]
        );
    }

    #[test]
    fn the_limit_is_max_parallel_less_the_unhealthy_placements() {
        let g = group(5, 2, 0);
        let d = Deployment {
            id: "d1".into(),
            status: deployment_status::RUNNING.into(),
            ..Default::default()
        };
        let rollout = Rollout {
            current: Some(d),
            ..Default::default()
        };
        let placed = |healthy: Option<bool>| {
            Arc::new(Allocation {
                deployment_id: "d1".into(),
                deployment_status: healthy.map(|h| crate::model::AllocDeploymentStatus {
                    healthy: Some(h),
                    ..Default::default()
                }),
                ..Default::default()
            })
        };
        let (pending, healthy, unhealthy) = (placed(None), placed(Some(true)), placed(Some(false)));
        assert_eq!(replace_limit(&g, 3, &rollout, false, &[]), 2);
        assert_eq!(replace_limit(&g, 3, &rollout, false, &[&pending]), 1);
        assert_eq!(
            replace_limit(&g, 3, &rollout, false, &[&healthy, &healthy]),
            2
        );
        assert_eq!(
            replace_limit(&g, 3, &rollout, false, &[&healthy, &unhealthy]),
            0
        );
        assert_eq!(replace_limit(&g, 3, &rollout, true, &[]), 0);
        // Nothing destructive, or no strategy: no limit.
        assert_eq!(
            replace_limit(&g, 0, &rollout, false, &[&pending]),
            usize::MAX
        );
        assert_eq!(
            replace_limit(&group(5, 0, 0), 3, &rollout, false, &[&pending]),
            usize::MAX
        );
    }

    #[test]
    fn a_new_version_cancels_the_old_deployment_and_a_stop_cancels_the_current() {
        let job = Job {
            id: "j".into(),
            version: 2,
            create_index: 10,
            ..Default::default()
        };
        let d = Arc::new(Deployment {
            id: "d1".into(),
            job_version: 1,
            job_create_index: 10,
            status: deployment_status::RUNNING.into(),
            ..Default::default()
        });
        let (r, updates) = Rollout::sort_out(Some(&job), Some(d.clone()), 7);
        assert!(r.current.is_none());
        assert_eq!(updates[0].status, deployment_status::CANCELLED);
        assert_eq!(
            updates[0].status_description,
            deployment_description::NEWER_JOB
        );
        let same = Job {
            version: 1,
            ..job.clone()
        };
        let (r, updates) = Rollout::sort_out(Some(&same), Some(d.clone()), 7);
        assert_eq!(r.current.map(|d| d.id), Some("d1".into()));
        assert!(updates.is_empty());
        let stopped = Job { stop: true, ..same };
        let (_, updates) = Rollout::sort_out(Some(&stopped), Some(d.clone()), 7);
        assert_eq!(
            updates[0].status_description,
            deployment_description::STOPPED_JOB
        );
        let (_, updates) = Rollout::sort_out(None, Some(d), 7);
        assert_eq!(
            updates[0].status_description,
            deployment_description::STOPPED_JOB
        );
    }
}
