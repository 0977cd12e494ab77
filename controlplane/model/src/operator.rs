//! Cluster-wide operator settings (Nomad's `/v1/operator/scheduler/configuration`).

use serde::{Deserialize, Serialize};

/// How the scheduler behaves, cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SchedulerConfiguration {
    /// `binpack` (the only one noded implements) or `spread`.
    pub scheduler_algorithm: String,
    /// Whether tasks may use `memory_max` above their `memory` reservation. Off by default, as
    /// in Nomad: then `memory` is the hard limit and `memory_max` is ignored.
    pub memory_oversubscription_enabled: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Default for SchedulerConfiguration {
    fn default() -> Self {
        SchedulerConfiguration {
            scheduler_algorithm: "binpack".to_string(),
            memory_oversubscription_enabled: false,
            create_index: 0,
            modify_index: 0,
        }
    }
}

impl SchedulerConfiguration {
    /// Checks an operator's update.
    pub fn validate(&self) -> Result<(), String> {
        match self.scheduler_algorithm.as_str() {
            "binpack" => Ok(()),
            "spread" => Err(
                "SchedulerAlgorithm \"spread\" is not implemented by noded yet; use \"binpack\""
                    .to_string(),
            ),
            other => Err(format!(
                "SchedulerAlgorithm {other:?} is unknown; use \"binpack\""
            )),
        }
    }
}
