//! Periodic launches, dispatched children and scaling: what the servers record about a job's
//! children and its group counts, in Nomad's shapes (`PeriodicLaunch`, `ScalingEvent`,
//! `JobScaleStatus`, `ScalingPolicy`).
//!
//! Raft payloads and snapshot contents: fields are only ever added.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::job::{Job, JobType};

/// Appended to a periodic job's id to name a child: `<parent>/periodic-<unix seconds>`.
pub const PERIODIC_LAUNCH_SUFFIX: &str = "/periodic-";
/// Appended to a parameterized job's id to name a dispatched child.
pub const DISPATCH_LAUNCH_SUFFIX: &str = "/dispatch-";
/// The largest dispatch payload, in bytes (Nomad's `DispatchPayloadSizeLimit`, 16 KiB).
pub const DISPATCH_PAYLOAD_SIZE_LIMIT: usize = 16 * 1024;
/// Scaling events kept per task group, newest first (Nomad's `JobTrackedScalingEvents`).
pub const JOB_TRACKED_SCALING_EVENTS: usize = 20;

/// `parameterized { payload = … }`: what a dispatch must bring.
pub mod dispatch_payload {
    pub const FORBIDDEN: &str = "forbidden";
    pub const OPTIONAL: &str = "optional";
    pub const REQUIRED: &str = "required";
}

/// The last launch of a periodic job (first: when it was registered), so that a new leader
/// knows what was launched and what was missed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct PeriodicLaunch {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
    /// Unix nanoseconds.
    pub launch: i64,
    pub create_index: u64,
    pub modify_index: u64,
}

/// One change (or attempted change) of a group's count, as `job scale` or an autoscaler
/// reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ScalingEvent {
    /// Unix nanoseconds.
    pub time: i64,
    pub count: Option<i64>,
    pub previous_count: i64,
    pub message: String,
    pub error: bool,
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(rename = "EvalID")]
    pub eval_id: Option<String>,
    pub create_index: u64,
}

/// A job's scaling events per task group, newest first, at most
/// [`JOB_TRACKED_SCALING_EVENTS`] each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobScalingEvents {
    pub namespace: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub scaling_events: BTreeMap<String, Vec<ScalingEvent>>,
    pub modify_index: u64,
}

impl JobScalingEvents {
    /// Records `event` for `group`, dropping the oldest beyond the bound.
    pub fn push(&mut self, group: &str, event: ScalingEvent) {
        let events = self.scaling_events.entry(group.to_string()).or_default();
        events.insert(0, event);
        events.truncate(JOB_TRACKED_SCALING_EVENTS);
    }
}

/// `GET /v1/job/:id/scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobScaleStatus {
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub namespace: String,
    pub job_create_index: u64,
    pub job_modify_index: u64,
    pub job_stopped: bool,
    pub task_groups: BTreeMap<String, TaskGroupScaleStatus>,
}

/// One group's part of [`JobScaleStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskGroupScaleStatus {
    pub desired: i64,
    pub placed: i64,
    pub running: i64,
    pub healthy: i64,
    pub unhealthy: i64,
    pub events: Vec<ScalingEvent>,
}

impl Job {
    /// A parameterized job that waits to be dispatched (not one of its dispatched children).
    pub fn is_parameterized(&self) -> bool {
        self.parameterized_job.is_some() && !self.dispatched
    }

    /// A job the periodic dispatcher launches children of: a `periodic` block and not a
    /// parameterized template (Nomad's `IsPeriodic` for the dispatcher's purposes).
    pub fn is_periodic(&self) -> bool {
        self.periodic.is_some() && !self.is_parameterized()
    }

    /// A periodic job whose launches are on: enabled and not stopped.
    pub fn is_periodic_active(&self) -> bool {
        self.is_periodic()
            && !self.stop
            && self
                .periodic
                .as_ref()
                .is_some_and(|p| p.enabled.unwrap_or(true))
    }

    /// A parent: periodic or parameterized. It is never scheduled itself; its children are.
    pub fn is_parent(&self) -> bool {
        self.is_periodic() || self.is_parameterized()
    }

    /// Every cron expression of a periodic job (`crons` and the older `cron`).
    pub fn periodic_specs(&self) -> Vec<&str> {
        let Some(p) = &self.periodic else {
            return Vec::new();
        };
        let mut specs: Vec<&str> = p.specs.iter().map(String::as_str).collect();
        if !p.spec.is_empty() && !specs.contains(&p.spec.as_str()) {
            specs.push(&p.spec);
        }
        specs
    }

    /// A periodic child's id for a launch at `launch_unix_nanos`.
    pub fn periodic_child_id(&self, launch_unix_nanos: i64) -> String {
        format!(
            "{}{PERIODIC_LAUNCH_SUFFIX}{}",
            self.id,
            launch_unix_nanos.div_euclid(1_000_000_000)
        )
    }

    /// A child of this parent, as Nomad derives it: a copy with its own id and name, the
    /// parent named, no periodic block, and nothing the servers own.
    pub fn derive_child(&self, child_id: String) -> Job {
        Job {
            name: child_id.clone(),
            id: child_id,
            parent_id: self.id.clone(),
            periodic: None,
            status: Default::default(),
            status_description: String::new(),
            version: 0,
            stable: false,
            submit_time: 0,
            create_index: 0,
            modify_index: 0,
            job_modify_index: 0,
            version_tag: None,
            ..self.clone()
        }
    }

    /// Whether a job of this type can be scaled to `count` at all (Nomad: a system job only
    /// between 0 and 1).
    pub fn scale_count_allowed(&self, count: i64) -> Result<(), String> {
        if self.job_type == JobType::System && count > 1 {
            return Err("jobs of type \"system\" can only be scaled between 0 and 1".into());
        }
        if count < 0 {
            return Err(format!("count {count} is negative; scale to 0 or more"));
        }
        Ok(())
    }
}
