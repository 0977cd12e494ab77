//! Deployments: how a new version of a service or system job rolls out (Nomad's
//! `structs.Deployment`), and what a plan would change per group (`DesiredUpdates`, the
//! annotations `job plan` prints).
//!
//! A deployment is created by the scheduler when a job version with an `update` block changes
//! allocations, advanced by the leader's deployment watcher from the allocations' health, and
//! ends `successful`, `failed` or `cancelled`. The statuses and descriptions are Nomad's words:
//! operators and tools match on them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;
use crate::job::Job;

pub mod deployment_status {
    pub const RUNNING: &str = "running";
    pub const PAUSED: &str = "paused";
    pub const FAILED: &str = "failed";
    pub const SUCCESSFUL: &str = "successful";
    pub const CANCELLED: &str = "cancelled";
    pub const INITIALIZING: &str = "initializing";
    pub const PENDING: &str = "pending";
    pub const BLOCKED: &str = "blocked";
    pub const UNBLOCKING: &str = "unblocking";
}

pub mod deployment_description {
    pub const RUNNING: &str = "Deployment is running";
    pub const RUNNING_NEEDS_PROMOTION: &str = "Deployment is running but requires manual promotion";
    pub const RUNNING_AUTO_PROMOTION: &str = "Deployment is running pending automatic promotion";
    pub const PAUSED: &str = "Deployment is paused";
    pub const SUCCESSFUL: &str = "Deployment completed successfully";
    pub const STOPPED_JOB: &str = "Cancelled because job is stopped";
    pub const NEWER_JOB: &str = "Cancelled due to newer version of job";
    pub const FAILED_ALLOCATIONS: &str = "Failed due to unhealthy allocations";
    pub const PROGRESS_DEADLINE: &str = "Failed due to progress deadline";
    pub const FAILED_BY_USER: &str = "Deployment marked as failed";

    /// A failed deployment that reverts the job: "<why> - rolling back to job version N".
    pub fn rollback(base: &str, version: u64) -> String {
        format!("{base} - rolling back to job version {version}")
    }

    /// A failed deployment whose stable version has the same spec as the current one.
    pub fn rollback_noop(base: &str, version: u64) -> String {
        format!(
            "{base} - not rolling back to stable job version {version} as current job has same specification"
        )
    }

    /// A failed deployment with no stable version to go back to.
    pub fn no_rollback_target(base: &str) -> String {
        format!("{base} - no stable job version to auto revert to")
    }
}

/// One rollout of one job version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Deployment {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub job_version: u64,
    pub job_modify_index: u64,
    pub job_spec_modify_index: u64,
    pub job_create_index: u64,
    pub is_multiregion: bool,
    /// Per task group with an `update` block.
    pub task_groups: BTreeMap<String, DeploymentState>,
    pub status: String,
    pub status_description: String,
    pub eval_priority: i32,
    pub create_index: u64,
    pub modify_index: u64,
    /// Unix nanoseconds.
    pub create_time: i64,
    pub modify_time: i64,
}

/// How one group of a deployment is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentState {
    pub auto_revert: bool,
    pub auto_promote: bool,
    #[serde(with = "duration::nanos")]
    pub progress_deadline: Duration,
    /// RFC 3339; empty until the first allocation is placed (Go's zero time is
    /// `0001-01-01T00:00:00Z`, which readers treat the same as empty).
    pub require_progress_by: String,
    pub promoted: bool,
    /// Allocation ids of the canaries placed.
    pub placed_canaries: Vec<String>,
    pub desired_canaries: u64,
    pub desired_total: u64,
    pub placed_allocs: u64,
    pub healthy_allocs: u64,
    pub unhealthy_allocs: u64,
}

/// A status change of one deployment, as the watcher or the scheduler proposes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentStatusUpdate {
    #[serde(rename = "DeploymentID")]
    pub deployment_id: String,
    pub status: String,
    pub status_description: String,
    /// Unix nanoseconds.
    pub updated_at: i64,
}

impl Deployment {
    /// A new, running deployment of `job`'s current version (its groups are added by the
    /// scheduler that creates it).
    pub fn new_for(job: &Job, id: String, eval_priority: i32, now: i64) -> Deployment {
        Deployment {
            id,
            namespace: job.namespace.clone(),
            job_id: job.id.clone(),
            job_version: job.version,
            job_modify_index: job.modify_index,
            job_spec_modify_index: job.job_modify_index,
            job_create_index: job.create_index,
            is_multiregion: false,
            task_groups: BTreeMap::new(),
            status: deployment_status::RUNNING.to_string(),
            status_description: deployment_description::RUNNING.to_string(),
            eval_priority,
            create_index: 0,
            modify_index: 0,
            create_time: now,
            modify_time: now,
        }
    }

    /// Still rolling out (Nomad's `Active`): not successful, failed or cancelled.
    pub fn active(&self) -> bool {
        use deployment_status::*;
        matches!(
            self.status.as_str(),
            RUNNING | PAUSED | BLOCKED | UNBLOCKING | INITIALIZING | PENDING
        )
    }

    pub fn is_terminal(&self) -> bool {
        use deployment_status::*;
        matches!(self.status.as_str(), CANCELLED | FAILED | SUCCESSFUL)
    }

    pub fn has_placed_canaries(&self) -> bool {
        self.task_groups
            .values()
            .any(|g| !g.placed_canaries.is_empty())
    }

    /// Running, with a group whose canaries are not promoted yet.
    pub fn requires_promotion(&self) -> bool {
        self.status == deployment_status::RUNNING
            && self
                .task_groups
                .values()
                .any(|g| g.desired_canaries > 0 && !g.promoted)
    }

    /// Running, and every group with canaries promotes itself.
    pub fn has_auto_promote(&self) -> bool {
        self.status == deployment_status::RUNNING
            && !self.task_groups.is_empty()
            && self
                .task_groups
                .values()
                .all(|g| g.desired_canaries == 0 || g.auto_promote)
    }
}

/// What a plan does to one task group's allocations (Nomad's `DesiredUpdates`): the counts
/// `job plan` prints ("1 create, 2 in-place update, 3 ignore").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct DesiredUpdates {
    pub ignore: u64,
    pub place: u64,
    pub migrate: u64,
    pub stop: u64,
    pub in_place_update: u64,
    pub destructive_update: u64,
    pub canary: u64,
    pub preemptions: u64,
    pub disconnect: u64,
    pub reconnect: u64,
    pub reschedule_now: u64,
    pub reschedule_later: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_and_active_partition_the_statuses() {
        use deployment_status::*;
        for status in [
            RUNNING,
            PAUSED,
            FAILED,
            SUCCESSFUL,
            CANCELLED,
            INITIALIZING,
            PENDING,
            BLOCKED,
            UNBLOCKING,
        ] {
            let d = Deployment {
                status: status.to_string(),
                ..Default::default()
            };
            assert_ne!(d.active(), d.is_terminal(), "{status}");
        }
    }

    #[test]
    fn promotion_is_needed_until_every_canary_group_is_promoted() {
        let mut d = Deployment {
            status: deployment_status::RUNNING.to_string(),
            ..Default::default()
        };
        d.task_groups.insert(
            "web".into(),
            DeploymentState {
                desired_canaries: 1,
                ..Default::default()
            },
        );
        d.task_groups
            .insert("db".into(), DeploymentState::default());
        assert!(d.requires_promotion());
        assert!(!d.has_auto_promote());
        d.task_groups.get_mut("web").unwrap().auto_promote = true;
        assert!(d.has_auto_promote());
        d.task_groups.get_mut("web").unwrap().promoted = true;
        assert!(!d.requires_promotion());
    }

    #[test]
    fn rollback_descriptions_are_nomads() {
        assert_eq!(
            deployment_description::rollback(deployment_description::FAILED_ALLOCATIONS, 3),
            "Failed due to unhealthy allocations - rolling back to job version 3"
        );
    }
}
