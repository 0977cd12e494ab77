//! Evaluations: the unit of scheduling work. A change (job registered, stopped, node changed…)
//! creates an evaluation; a scheduler worker turns it into a plan.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::placement::AllocMetric;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EvalStatus {
    #[default]
    Pending,
    Blocked,
    Complete,
    Failed,
    Canceled,
}

impl EvalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EvalStatus::Pending => "pending",
            EvalStatus::Blocked => "blocked",
            EvalStatus::Complete => "complete",
            EvalStatus::Failed => "failed",
            EvalStatus::Canceled => "canceled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            EvalStatus::Complete | EvalStatus::Failed | EvalStatus::Canceled
        )
    }
}

/// Why an evaluation was created (Nomad's `TriggeredBy` strings).
pub mod trigger {
    pub const JOB_REGISTER: &str = "job-register";
    pub const JOB_DEREGISTER: &str = "job-deregister";
    pub const NODE_UPDATE: &str = "node-update";
    pub const ALLOC_FAILURE: &str = "alloc-failure";
    pub const QUEUED_ALLOCS: &str = "queued-allocs";
    pub const NODE_DRAIN: &str = "node-drain";
    pub const ALLOC_STOP: &str = "alloc-stop";
    pub const RECONNECT: &str = "reconnect";
    pub const MAX_DISCONNECT_TIMEOUT: &str = "max-disconnect-timeout";
    pub const RETRY_FAILED_ALLOC: &str = "alloc-failure";
    pub const FAILED_FOLLOW_UP: &str = "failed-eval-follow-up";
    pub const PERIODIC_JOB: &str = "periodic-job";
    pub const JOB_SCALING: &str = "job-scaling";
    pub const PREEMPTION: &str = "preemption";
    pub const NODE_REGISTER: &str = "node-register";
    pub const SCHEDULED: &str = "scheduled";
    pub const DEPLOYMENT_WATCHER: &str = "deployment-watcher";
    pub const ROLLING_UPDATE: &str = "rolling-update";
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Evaluation {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
    pub priority: i32,
    /// The scheduler to run: the job's type.
    #[serde(rename = "Type")]
    pub eval_type: String,
    pub triggered_by: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub job_modify_index: u64,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub status: EvalStatus,
    pub status_description: String,
    #[serde(rename = "PreviousEval")]
    pub previous_eval: String,
    #[serde(rename = "NextEval")]
    pub next_eval: String,
    #[serde(rename = "BlockedEval")]
    pub blocked_eval: String,
    #[serde(rename = "FailedTGAllocs")]
    pub failed_tg_allocs: BTreeMap<String, AllocMetric>,
    pub queued_allocations: BTreeMap<String, u64>,
    pub snapshot_index: u64,
    /// RFC 3339: a delayed evaluation is not scheduled before this (disconnect timeouts,
    /// reschedule delays); empty for "now".
    pub wait_until: String,
    /// For a blocked evaluation: which computed node classes the scheduler found eligible
    /// (`true`) or not (`false`) for the job; capacity appearing on an ineligible class does
    /// not unblock it.
    pub class_eligibility: BTreeMap<String, bool>,
    /// A placement rule looked at something unique to a node (`unique.*`, a node id), so
    /// classes say nothing: any capacity change unblocks the evaluation.
    pub escaped_computed_class: bool,
    pub create_index: u64,
    pub modify_index: u64,
    pub create_time: i64,
    pub modify_time: i64,
}
