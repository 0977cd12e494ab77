//! The on-disk form of a state snapshot: a deliberate, versioned wire type, separate from the
//! in-memory indexes (which are rebuilt on load).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Allocation, Evaluation, Job, Node, NodePool};

/// Bumped whenever the meaning of a field changes; readers refuse formats they do not know.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotFile {
    pub format_version: u32,
    pub latest_index: u64,
    pub table_index: BTreeMap<String, u64>,
    pub jobs: Vec<Job>,
    pub job_versions: Vec<Job>,
    pub evals: Vec<Evaluation>,
    pub allocs: Vec<Allocation>,
    pub nodes: Vec<Node>,
    /// The operator's node pools (not the built-in ones). Absent in snapshots written before
    /// pools existed: none then. Not written when empty, so a state without pools is stored
    /// byte for byte as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_pools: Vec<NodePool>,
    /// Absent in snapshots written before it existed: Nomad's defaults then.
    #[serde(default)]
    pub scheduler_config: Option<crate::model::SchedulerConfiguration>,
    /// Absent in snapshots written before it existed: Nomad's defaults then.
    #[serde(default)]
    pub autopilot_config: Option<crate::model::AutopilotConfiguration>,
    /// Each periodic job's last launch. Absent in snapshots written before periodic jobs
    /// launched: none then. Not written when empty (older snapshots stay byte for byte).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub periodic_launches: Vec<crate::model::PeriodicLaunch>,
    /// Each job's scaling events. As `periodic_launches`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scaling_events: Vec<crate::model::JobScalingEvents>,
    /// The native service catalog. As `periodic_launches`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_registrations: Vec<crate::model::ServiceRegistration>,
    /// Deployments. As `periodic_launches`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<crate::model::Deployment>,
    /// The `job_tracked_versions` the servers last agreed on (`None`: never set, 6). Not
    /// written when unset (older snapshots stay byte for byte).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_tracked_versions: Option<u64>,
}
