//! Task drivers. A driver checks a task's `config` and turns the task into a [`TaskLaunch`] for
//! the supervisor, which runs every task (so tasks survive node daemon restarts). `exec` runs in
//! a jail; `raw_exec` runs on the host's filesystem, still inside a cgroup, and only when the
//! agent enables it.
//!
//! Owns the translation from job language to launch description; must not spawn anything itself.

mod exec;

use std::collections::BTreeMap;
use std::path::PathBuf;

use controlplane::model::{DriverInfo, Task};

pub use exec::{ExecDriver, ExecSettings, IdRanges};

use crate::client::network::task::TaskNetwork;
use crate::supervisor::protocol::TaskLaunch;

/// A task's config did not make sense to its driver.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("task {task:?}: {field}: {message}")]
pub struct DriverError {
    pub task: String,
    /// Where in the task: `config.cap_add`, `config.rlimits.nofile`, `user`, or `config`
    /// for several options at once (then the message names each).
    pub field: String,
    pub message: String,
}

/// Where a task runs on this node, and what it is given.
#[derive(Debug, Clone)]
pub struct TaskContext {
    pub task_id: String,
    /// What the scheduler reserved for this task on this node.
    pub allocated: controlplane::model::AllocatedTaskResources,
    /// The task's environment: `env` of the job plus `NOMAD_*` (interpolated).
    pub env: BTreeMap<String, String>,
    pub alloc_dir: PathBuf,
    pub task_dir: PathBuf,
    pub logs_dir: PathBuf,
    /// The allocation's network: always set, mode `Host` for a group without a network
    /// block.
    pub network: TaskNetwork,
}

/// What every driver does.
pub trait Driver: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &'static str;
    /// Whether the driver can run tasks here, for the node's fingerprint.
    fn fingerprint(&self) -> DriverInfo;
    /// Checks `task.config` and builds the launch description.
    fn prepare(&self, task: &Task, ctx: &TaskContext) -> Result<TaskLaunch, DriverError>;
    /// The user a task runs as when it names none.
    fn default_user(&self) -> &str;
    /// Whether the task sees the host's paths (so `NOMAD_*_DIR` are host paths).
    fn sees_host_paths(&self) -> bool;
}

/// The drivers this node offers, by name.
#[derive(Debug, Default)]
pub struct DriverRegistry {
    drivers: BTreeMap<&'static str, std::sync::Arc<dyn Driver>>,
}

impl DriverRegistry {
    pub fn register(&mut self, driver: std::sync::Arc<dyn Driver>) {
        self.drivers.insert(driver.name(), driver);
    }

    pub fn get(&self, name: &str) -> Option<std::sync::Arc<dyn Driver>> {
        self.drivers.get(name).cloned()
    }

    pub fn fingerprints(&self) -> BTreeMap<String, DriverInfo> {
        self.drivers
            .iter()
            .map(|(name, d)| (name.to_string(), d.fingerprint()))
            .collect()
    }
}
