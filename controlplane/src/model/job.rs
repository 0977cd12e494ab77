//! A job as the servers store it: the canonical form (defaults applied) of what a jobspec says,
//! plus the bookkeeping the servers add (status, version, indexes).
//!
//! Field names follow Nomad's `api.Job`; the jobspec decoder (`crate::jobspec`) fills these from
//! HCL or JSON and `Job::canonicalize` applies defaults in one place.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;

/// The scheduler a job uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum JobType {
    /// Long-lived tasks, kept running and restarted.
    #[default]
    Service,
    /// Tasks that run to completion.
    Batch,
    /// One allocation on every eligible node.
    System,
    /// Batch work on every eligible node.
    Sysbatch,
}

impl JobType {
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::Service => "service",
            JobType::Batch => "batch",
            JobType::System => "system",
            JobType::Sysbatch => "sysbatch",
        }
    }
}

/// Where a job is in its life, as servers compute it from its allocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Registered, nothing placed yet.
    #[default]
    Pending,
    /// At least one allocation is not terminal.
    Running,
    /// Stopped, or every allocation is terminal.
    Dead,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Dead => "dead",
        }
    }
}

/// A job, in Nomad's API shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Job {
    pub region: String,
    pub namespace: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    #[serde(rename = "Type")]
    pub job_type: JobType,
    pub priority: i32,
    pub all_at_once: bool,
    pub datacenters: Vec<String>,
    pub node_pool: String,
    pub task_groups: Vec<TaskGroup>,
    pub meta: BTreeMap<String, String>,

    // Bookkeeping the servers own; a submitted job's values here are ignored.
    pub stop: bool,
    pub status: JobStatus,
    pub status_description: String,
    pub stable: bool,
    pub version: u64,
    pub submit_time: i64,
    pub create_index: u64,
    pub modify_index: u64,
    pub job_modify_index: u64,
}

/// A group of tasks placed together on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskGroup {
    pub name: String,
    pub count: i64,
    pub tasks: Vec<Task>,
    pub restart_policy: Option<RestartPolicy>,
    pub meta: BTreeMap<String, String>,
}

/// One process to run, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Task {
    pub name: String,
    pub driver: String,
    pub user: String,
    /// Driver configuration: free-form, checked by the driver (for `exec`: `command`, `args`…).
    pub config: serde_json::Map<String, serde_json::Value>,
    pub env: BTreeMap<String, String>,
    pub resources: Option<Resources>,
    pub restart_policy: Option<RestartPolicy>,
    pub meta: BTreeMap<String, String>,
    #[serde(with = "duration::opt_nanos")]
    pub kill_timeout: Option<Duration>,
    pub kill_signal: String,
    pub log_config: Option<LogConfig>,
    pub leader: bool,
}

/// What a task asks of its node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Resources {
    /// CPU in MHz.
    #[serde(rename = "CPU")]
    pub cpu: i64,
    /// Exclusive cores (instead of `CPU`).
    pub cores: i64,
    #[serde(rename = "MemoryMB")]
    pub memory_mb: i64,
    #[serde(rename = "MemoryMaxMB")]
    pub memory_max_mb: i64,
    #[serde(rename = "DiskMB")]
    pub disk_mb: Option<i64>,
}

/// What the client does when a task exits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    pub attempts: i64,
    #[serde(with = "duration::nanos")]
    pub interval: Duration,
    #[serde(with = "duration::nanos")]
    pub delay: Duration,
    /// `"fail"` or `"delay"`.
    pub mode: String,
    pub render_templates: bool,
}

/// Log rotation for a task's stdout and stderr.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    pub max_files: i64,
    #[serde(rename = "MaxFileSizeMB")]
    pub max_file_size_mb: i64,
    pub disabled: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_files: 10,
            max_file_size_mb: 10,
            disabled: false,
        }
    }
}

/// Nomad's defaults, in one place. The jobspec decoder and the API both canonicalize through
/// [`Job::canonicalize`], so a job looks the same however it arrived.
pub mod defaults {
    use std::time::Duration;

    pub const PRIORITY: i32 = 50;
    pub const GROUP_COUNT: i64 = 1;
    pub const CPU_MHZ: i64 = 100;
    pub const MEMORY_MB: i64 = 300;
    pub const KILL_TIMEOUT: Duration = Duration::from_secs(5);
    pub const KILL_SIGNAL: &str = "SIGINT";
    pub const NODE_POOL: &str = "default";

    /// Service jobs: 2 restarts in 30m, 15s apart, then the allocation fails.
    pub fn service_restart() -> super::RestartPolicy {
        super::RestartPolicy {
            attempts: 2,
            interval: Duration::from_secs(30 * 60),
            delay: Duration::from_secs(15),
            mode: "fail".to_string(),
            render_templates: false,
        }
    }

    /// Batch jobs: 3 restarts in 24h, 15s apart, then the allocation fails.
    pub fn batch_restart() -> super::RestartPolicy {
        super::RestartPolicy {
            attempts: 3,
            interval: Duration::from_secs(24 * 3600),
            delay: Duration::from_secs(15),
            mode: "fail".to_string(),
            render_templates: false,
        }
    }
}

impl Job {
    /// Fills unset fields with Nomad's defaults. Idempotent.
    pub fn canonicalize(&mut self) {
        if self.region.is_empty() {
            self.region = super::DEFAULT_REGION.to_string();
        }
        if self.namespace.is_empty() {
            self.namespace = super::DEFAULT_NAMESPACE.to_string();
        }
        if self.name.is_empty() {
            self.name = self.id.clone();
        }
        if self.priority == 0 {
            self.priority = defaults::PRIORITY;
        }
        if self.node_pool.is_empty() {
            self.node_pool = defaults::NODE_POOL.to_string();
        }
        if self.datacenters.is_empty() {
            self.datacenters = vec!["*".to_string()];
        }
        let job_restart = match self.job_type {
            JobType::Batch | JobType::Sysbatch => defaults::batch_restart(),
            JobType::Service | JobType::System => defaults::service_restart(),
        };
        for group in &mut self.task_groups {
            let group_restart = group
                .restart_policy
                .get_or_insert_with(|| job_restart.clone());
            let group_restart = group_restart.clone();
            for task in &mut group.tasks {
                task.restart_policy
                    .get_or_insert_with(|| group_restart.clone());
                let res = task.resources.get_or_insert_with(Resources::default);
                if res.cpu == 0 && res.cores == 0 {
                    res.cpu = defaults::CPU_MHZ;
                }
                if res.memory_mb == 0 {
                    res.memory_mb = defaults::MEMORY_MB;
                }
                task.kill_timeout.get_or_insert(defaults::KILL_TIMEOUT);
                if task.kill_signal.is_empty() {
                    task.kill_signal = defaults::KILL_SIGNAL.to_string();
                }
                task.log_config.get_or_insert_with(LogConfig::default);
            }
        }
    }

    /// The task group with this name.
    pub fn group(&self, name: &str) -> Option<&TaskGroup> {
        self.task_groups.iter().find(|g| g.name == name)
    }

    /// Every driver any task of this job uses, each once.
    pub fn drivers(&self) -> Vec<&str> {
        let mut drivers: Vec<&str> = self
            .task_groups
            .iter()
            .flat_map(|g| g.tasks.iter().map(|t| t.driver.as_str()))
            .collect();
        drivers.sort_unstable();
        drivers.dedup();
        drivers
    }

    /// The short form `GET /v1/jobs` lists.
    pub fn stub(&self, summary: JobSummary) -> JobListStub {
        JobListStub {
            id: self.id.clone(),
            parent_id: String::new(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            datacenters: self.datacenters.clone(),
            node_pool: self.node_pool.clone(),
            job_type: self.job_type,
            priority: self.priority,
            stop: self.stop,
            status: self.status,
            status_description: self.status_description.clone(),
            job_summary: summary,
            create_index: self.create_index,
            modify_index: self.modify_index,
            job_modify_index: self.job_modify_index,
            submit_time: self.submit_time,
        }
    }
}

impl TaskGroup {
    /// The task with this name.
    pub fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.name == name)
    }

    /// The sum of what the group's tasks ask for.
    pub fn total_resources(&self) -> ComparableResources {
        let mut total = ComparableResources::default();
        for task in &self.tasks {
            if let Some(r) = &task.resources {
                total.cpu_mhz += r.cpu.max(0);
                total.memory_mb += r.memory_mb.max(0);
            }
        }
        total
    }
}

/// Resources reduced to what placement compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ComparableResources {
    #[serde(rename = "CPU")]
    pub cpu_mhz: i64,
    #[serde(rename = "MemoryMB")]
    pub memory_mb: i64,
}

impl ComparableResources {
    pub fn add(&mut self, other: ComparableResources) {
        self.cpu_mhz += other.cpu_mhz;
        self.memory_mb += other.memory_mb;
    }

    /// Whether `self` fits into `capacity`; on failure, the dimension that did not fit.
    pub fn fits_in(&self, capacity: &ComparableResources) -> Result<(), &'static str> {
        if self.cpu_mhz > capacity.cpu_mhz {
            return Err("cpu");
        }
        if self.memory_mb > capacity.memory_mb {
            return Err("memory");
        }
        Ok(())
    }
}

/// Counts of a job's allocations by status, per task group.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobSummary {
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub namespace: String,
    pub summary: BTreeMap<String, TaskGroupSummary>,
}

/// Allocation counts of one task group.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskGroupSummary {
    pub queued: u64,
    pub complete: u64,
    pub failed: u64,
    pub running: u64,
    pub starting: u64,
    pub lost: u64,
    pub unknown: u64,
}

/// The short form of a job in listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JobListStub {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "ParentID")]
    pub parent_id: String,
    pub name: String,
    pub namespace: String,
    pub datacenters: Vec<String>,
    pub node_pool: String,
    #[serde(rename = "Type")]
    pub job_type: JobType,
    pub priority: i32,
    pub stop: bool,
    pub status: JobStatus,
    pub status_description: String,
    pub job_summary: JobSummary,
    pub create_index: u64,
    pub modify_index: u64,
    pub job_modify_index: u64,
    pub submit_time: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalize_applies_nomad_defaults_once() {
        let mut job = Job {
            id: "web".into(),
            job_type: JobType::Batch,
            task_groups: vec![TaskGroup {
                name: "g".into(),
                count: 1,
                tasks: vec![Task {
                    name: "t".into(),
                    driver: "exec".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        job.canonicalize();
        let once = job.clone();
        job.canonicalize();
        assert_eq!(job, once);
        assert_eq!(job.name, "web");
        assert_eq!(job.namespace, "default");
        assert_eq!(job.priority, 50);
        let task = &job.task_groups[0].tasks[0];
        assert_eq!(task.restart_policy.as_ref().unwrap().attempts, 3);
        assert_eq!(task.resources.as_ref().unwrap().memory_mb, 300);
        assert_eq!(task.kill_timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn api_json_uses_nomad_field_names_and_nanoseconds() {
        let mut job = Job {
            id: "x".into(),
            ..Default::default()
        };
        job.task_groups.push(TaskGroup {
            name: "g".into(),
            tasks: vec![Task {
                name: "t".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        job.canonicalize();
        let v = serde_json::to_value(&job).unwrap();
        assert_eq!(v["ID"], "x");
        assert_eq!(v["Type"], "service");
        assert_eq!(
            v["TaskGroups"][0]["Tasks"][0]["KillTimeout"],
            5_000_000_000u64
        );
        assert_eq!(v["TaskGroups"][0]["Tasks"][0]["Resources"]["MemoryMB"], 300);
        let back: Job = serde_json::from_value(v).unwrap();
        assert_eq!(back, job);
    }
}
