//! Cluster-wide operator settings (Nomad's `/v1/operator/scheduler/configuration` and
//! `/v1/operator/autopilot/configuration`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;

/// How the scheduler behaves, cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SchedulerConfiguration {
    /// `binpack` (fill nodes up, the default) or `spread` (spread allocations over nodes).
    pub scheduler_algorithm: String,
    /// Which schedulers may preempt lower-priority allocations to place higher ones.
    pub preemption_config: PreemptionConfig,
    /// Whether tasks may use `memory_max` above their `memory` reservation. Off by default, as
    /// in Nomad: then `memory` is the hard limit and `memory_max` is ignored.
    pub memory_oversubscription_enabled: bool,
    /// Refuse job registrations (not from management tokens), e.g. during an incident.
    pub reject_job_registration: bool,
    /// Stop handing evaluations to workers (they stay queued); needed to delete evaluations.
    pub pause_eval_broker: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Preemption per scheduler type, Nomad's defaults: system and sysbatch jobs may preempt,
/// batch and service jobs may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PreemptionConfig {
    pub system_scheduler_enabled: bool,
    #[serde(rename = "SysBatchSchedulerEnabled")]
    pub sysbatch_scheduler_enabled: bool,
    pub batch_scheduler_enabled: bool,
    pub service_scheduler_enabled: bool,
}

impl Default for PreemptionConfig {
    fn default() -> Self {
        PreemptionConfig {
            system_scheduler_enabled: true,
            sysbatch_scheduler_enabled: true,
            batch_scheduler_enabled: false,
            service_scheduler_enabled: false,
        }
    }
}

impl PreemptionConfig {
    /// Whether the scheduler for `job_type` (`service`, `batch`, `system`, `sysbatch`) may
    /// preempt.
    pub fn enabled_for(&self, job_type: &str) -> bool {
        match job_type {
            "system" => self.system_scheduler_enabled,
            "sysbatch" => self.sysbatch_scheduler_enabled,
            "batch" => self.batch_scheduler_enabled,
            "service" => self.service_scheduler_enabled,
            _ => false,
        }
    }
}

impl Default for SchedulerConfiguration {
    fn default() -> Self {
        SchedulerConfiguration {
            scheduler_algorithm: "binpack".to_string(),
            preemption_config: PreemptionConfig::default(),
            memory_oversubscription_enabled: false,
            reject_job_registration: false,
            pause_eval_broker: false,
            create_index: 0,
            modify_index: 0,
        }
    }
}

impl SchedulerConfiguration {
    /// Checks an operator's update.
    pub fn validate(&self) -> Result<(), String> {
        match self.scheduler_algorithm.as_str() {
            "binpack" | "spread" => Ok(()),
            other => Err(format!(
                "SchedulerAlgorithm {other:?} is unknown; use \"binpack\" or \"spread\""
            )),
        }
    }
}

/// How the servers of a region look after each other (Nomad's autopilot configuration), kept
/// in the replicated state so every server reads the same. A Raft payload and snapshot
/// content: fields are only ever added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AutopilotConfiguration {
    /// Remove dead servers from the Raft configuration when a new server joins.
    pub cleanup_dead_servers: bool,
    /// A server that has not heard from the leader for longer is unhealthy.
    #[serde(with = "duration::go_string")]
    pub last_contact_threshold: Duration,
    /// A server more log entries than this behind the leader is unhealthy.
    pub max_trailing_logs: u64,
    /// Dead servers are not cleaned up below this many voters (0: no floor).
    pub min_quorum: u64,
    /// How long a new server must be healthy before it is promoted to voter.
    #[serde(with = "duration::go_string")]
    pub server_stabilization_time: Duration,
    /// Enterprise in Nomad; stored and reported, not acted on by noded.
    pub enable_redundancy_zones: bool,
    /// Enterprise in Nomad; stored and reported, not acted on by noded.
    pub disable_upgrade_migration: bool,
    /// Enterprise in Nomad; stored and reported, not acted on by noded.
    pub enable_custom_upgrades: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Nomad's autopilot defaults (its server `autopilot` block).
pub const AUTOPILOT_LAST_CONTACT_THRESHOLD: Duration = Duration::from_millis(200);
pub const AUTOPILOT_MAX_TRAILING_LOGS: u64 = 250;
pub const AUTOPILOT_SERVER_STABILIZATION_TIME: Duration = Duration::from_secs(10);

impl Default for AutopilotConfiguration {
    fn default() -> Self {
        AutopilotConfiguration {
            cleanup_dead_servers: true,
            last_contact_threshold: AUTOPILOT_LAST_CONTACT_THRESHOLD,
            max_trailing_logs: AUTOPILOT_MAX_TRAILING_LOGS,
            min_quorum: 0,
            server_stabilization_time: AUTOPILOT_SERVER_STABILIZATION_TIME,
            enable_redundancy_zones: false,
            disable_upgrade_migration: false,
            enable_custom_upgrades: false,
            create_index: 0,
            modify_index: 0,
        }
    }
}

impl AutopilotConfiguration {
    /// Checks an operator's update: a zero threshold would call every follower unhealthy.
    pub fn validate(&self) -> Result<(), String> {
        if self.last_contact_threshold.is_zero() {
            return Err(
                "LastContactThreshold must be more than 0 (Nomad's default is \"200ms\")"
                    .to_string(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autopilot_configuration_speaks_nomads_json() {
        let c = AutopilotConfiguration::default();
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["CleanupDeadServers"], true);
        assert_eq!(v["LastContactThreshold"], "200ms");
        assert_eq!(v["MaxTrailingLogs"], 250);
        assert_eq!(v["ServerStabilizationTime"], "10s");
        assert_eq!(v["MinQuorum"], 0);
        let back: AutopilotConfiguration = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);
        let partial: AutopilotConfiguration =
            serde_json::from_str(r#"{"LastContactThreshold": "1s", "MaxTrailingLogs": 10}"#)
                .unwrap();
        assert_eq!(partial.last_contact_threshold, Duration::from_secs(1));
        assert_eq!(partial.max_trailing_logs, 10);
        assert!(serde_json::from_str::<AutopilotConfiguration>(
            r#"{"LastContactThreshold": "soon"}"#
        )
        .is_err());
    }
}
