//! A job as the servers store it: the canonical form (defaults applied) of what a jobspec says,
//! plus the bookkeeping the servers add (status, version, indexes).
//!
//! Field names follow Nomad's `api.Job`; the jobspec decoder (`crate::jobspec`) fills these from
//! HCL or JSON and `Job::canonicalize` applies defaults in one place.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;
use crate::job_parts::*;
use crate::placement::{Affinity, Constraint, Spread};
use crate::resources::{ComparableResources, NetworkResource, Resources};

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
    pub constraints: Vec<Constraint>,
    pub affinities: Vec<Affinity>,
    pub spreads: Vec<Spread>,
    pub update: Option<UpdateStrategy>,
    pub multiregion: Option<Multiregion>,
    pub periodic: Option<PeriodicConfig>,
    pub parameterized_job: Option<ParameterizedJobConfig>,
    pub reschedule: Option<ReschedulePolicy>,
    pub migrate: Option<MigrateStrategy>,
    #[serde(rename = "UI")]
    pub ui: Option<JobUiConfig>,
    pub consul_namespace: String,
    pub vault_namespace: String,

    // Bookkeeping the servers own; a submitted job's values here are ignored.
    #[serde(rename = "ParentID")]
    pub parent_id: String,
    pub dispatched: bool,
    pub dispatch_idempotency_token: String,
    /// A dispatched job's payload, base64 as Nomad's API carries it.
    pub payload: Option<String>,
    #[serde(rename = "NomadTokenID")]
    pub nomad_token_id: String,
    pub version_tag: Option<JobVersionTag>,
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
    pub constraints: Vec<Constraint>,
    pub affinities: Vec<Affinity>,
    pub spreads: Vec<Spread>,
    /// Volumes by name (the block label), as Nomad's API keys them.
    pub volumes: BTreeMap<String, VolumeRequest>,
    pub disconnect: Option<DisconnectStrategy>,
    pub reschedule_policy: Option<ReschedulePolicy>,
    pub ephemeral_disk: Option<EphemeralDisk>,
    pub update: Option<UpdateStrategy>,
    pub migrate: Option<MigrateStrategy>,
    pub networks: Vec<NetworkResource>,
    pub services: Vec<Service>,
    #[serde(with = "duration::opt_nanos")]
    pub shutdown_delay: Option<Duration>,
    #[serde(with = "duration::opt_nanos")]
    pub max_run_duration: Option<Duration>,
    #[serde(with = "duration::opt_nanos")]
    pub stop_after_client_disconnect: Option<Duration>,
    #[serde(with = "duration::opt_nanos")]
    pub max_client_disconnect: Option<Duration>,
    pub scaling: Option<ScalingPolicy>,
    pub consul: Option<Consul>,
    pub prevent_reschedule_on_lost: bool,
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
    pub lifecycle: Option<TaskLifecycle>,
    pub constraints: Vec<Constraint>,
    pub affinities: Vec<Affinity>,
    pub services: Vec<Service>,
    pub artifacts: Vec<TaskArtifact>,
    pub vault: Option<Vault>,
    pub consul: Option<Consul>,
    pub templates: Vec<Template>,
    pub dispatch_payload: Option<DispatchPayloadConfig>,
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(rename = "CSIPluginConfig")]
    pub csi_plugin_config: Option<TaskCsiPluginConfig>,
    #[serde(with = "duration::nanos")]
    pub shutdown_delay: Duration,
    pub kind: String,
    pub scaling_policies: Vec<ScalingPolicy>,
    pub secrets: Vec<Secret>,
    /// The default workload identity (Nomad keeps it apart from the named ones).
    pub identity: Option<WorkloadIdentity>,
    pub identities: Vec<WorkloadIdentity>,
    pub actions: Vec<Action>,
    pub schedule: Option<TaskSchedule>,
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

/// Nomad's defaults, in one place. The jobspec decoder and the API both canonicalize through
/// [`Job::canonicalize`], so a job looks the same however it arrived. Values follow Nomad's
/// `api` package (`Canonicalize` methods); where noded differs it says so.
pub mod defaults {
    use std::time::Duration;

    use crate::job_parts::{MigrateStrategy, ReschedulePolicy, UpdateStrategy};

    pub const PRIORITY: i32 = 50;
    pub const MIN_PRIORITY: i32 = 1;
    pub const MAX_PRIORITY: i32 = 100;
    pub const GROUP_COUNT: i64 = 1;
    pub const CPU_MHZ: i64 = 100;
    pub const MEMORY_MB: i64 = 300;
    pub const KILL_TIMEOUT: Duration = Duration::from_secs(5);
    pub const KILL_SIGNAL: &str = "SIGINT";
    /// Nomad's API leaves this empty and the server fills in "default"; noded fills it here.
    pub const NODE_POOL: &str = "default";
    pub const EPHEMERAL_DISK_MB: i64 = 300;
    pub const AFFINITY_WEIGHT: i64 = 50;
    pub const SPREAD_WEIGHT: i64 = 50;
    pub const CHECK_RESTART_GRACE: Duration = Duration::from_secs(1);
    pub const TEMPLATE_SPLAY: Duration = Duration::from_secs(5);
    pub const TEMPLATE_PERMS: &str = "0644";
    pub const CHANGE_SCRIPT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const CSI_MOUNT_DIR: &str = "/csi";
    pub const CSI_STAGE_PUBLISH_BASE_DIR: &str = "/local/csi";
    pub const CSI_HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
    pub const PERIODIC_TIME_ZONE: &str = "UTC";

    /// A group's count when the jobspec gives none: the scaling minimum if there is one.
    pub fn group_count(scaling_min: Option<i64>) -> i64 {
        scaling_min.unwrap_or(GROUP_COUNT)
    }

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

    /// The restart policy a job type starts from.
    pub fn restart_for(job_type: super::JobType) -> super::RestartPolicy {
        match job_type {
            super::JobType::Service | super::JobType::System => service_restart(),
            super::JobType::Batch | super::JobType::Sysbatch => batch_restart(),
        }
    }

    /// Service: unlimited, exponential from 30s up to 1h. Batch: once in 24h after 5s.
    /// System and sysbatch jobs are not rescheduled.
    pub fn reschedule_for(job_type: super::JobType) -> ReschedulePolicy {
        let (attempts, interval, delay, function, max_delay, unlimited) = match job_type {
            super::JobType::Service => (0, 0, 30, "exponential", 3600, true),
            super::JobType::Batch => (1, 24 * 3600, 5, "constant", 0, false),
            super::JobType::System | super::JobType::Sysbatch => (0, 0, 0, "", 0, false),
        };
        ReschedulePolicy {
            attempts: Some(attempts),
            interval: Some(Duration::from_secs(interval)),
            delay: Some(Duration::from_secs(delay)),
            delay_function: Some(function.to_string()),
            max_delay: Some(Duration::from_secs(max_delay)),
            unlimited: Some(unlimited),
        }
    }

    pub fn update() -> UpdateStrategy {
        UpdateStrategy {
            stagger: Some(Duration::from_secs(30)),
            max_parallel: Some(1),
            health_check: Some("checks".to_string()),
            min_healthy_time: Some(Duration::from_secs(10)),
            healthy_deadline: Some(Duration::from_secs(5 * 60)),
            progress_deadline: Some(Duration::from_secs(10 * 60)),
            canary: Some(0),
            auto_revert: Some(false),
            auto_promote: Some(false),
        }
    }

    pub fn migrate() -> MigrateStrategy {
        MigrateStrategy {
            max_parallel: Some(1),
            health_check: Some("checks".to_string()),
            min_healthy_time: Some(Duration::from_secs(10)),
            healthy_deadline: Some(Duration::from_secs(5 * 60)),
        }
    }
}

/// `field = field.or(fallback)` for every listed field: how Nomad merges a job-level strategy
/// into a group's (set fields win) and fills defaults.
macro_rules! fill {
    ($target:expr, $from:expr, [$($f:ident),*]) => {{
        let from = $from;
        $( if $target.$f.is_none() { $target.$f = from.$f.clone(); } )*
    }};
}

// Each strategy's fields, listed once: what a group inherits from its job and what defaults
// fill in are the same fields.

impl UpdateStrategy {
    fn fill_from(&mut self, from: &UpdateStrategy) {
        fill!(
            self,
            from,
            [
                stagger,
                max_parallel,
                health_check,
                min_healthy_time,
                healthy_deadline,
                progress_deadline,
                canary,
                auto_revert,
                auto_promote
            ]
        );
    }
}

impl ReschedulePolicy {
    fn fill_from(&mut self, from: &ReschedulePolicy) {
        fill!(
            self,
            from,
            [
                attempts,
                interval,
                delay,
                delay_function,
                max_delay,
                unlimited
            ]
        );
    }
}

impl MigrateStrategy {
    fn fill_from(&mut self, from: &MigrateStrategy) {
        fill!(
            self,
            from,
            [
                max_parallel,
                health_check,
                min_healthy_time,
                healthy_deadline
            ]
        );
    }
}

/// A group's strategy after inheriting the job's: the group's set fields win, the job's fill
/// the rest; a group without one takes the job's whole.
fn inherit<T: Clone>(group: &mut Option<T>, job: &Option<T>, fill_from: fn(&mut T, &T)) {
    match (job, group.as_mut()) {
        (Some(from), Some(target)) => fill_from(target, from),
        (Some(from), None) => *group = Some(from.clone()),
        (None, _) => {}
    }
}

impl Job {
    /// Fills unset fields with Nomad's defaults and merges job-level strategies into groups,
    /// as Nomad's API does before registering. Idempotent.
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
        if let Some(p) = &mut self.periodic {
            p.enabled.get_or_insert(true);
            if p.spec_type.is_empty() {
                p.spec_type = "cron".to_string();
            }
            if p.time_zone.is_empty() {
                p.time_zone = defaults::PERIODIC_TIME_ZONE.to_string();
            }
        }
        match &mut self.update {
            Some(u) => u.fill_from(&defaults::update()),
            None if matches!(self.job_type, JobType::Service | JobType::System) => {
                self.update = Some(defaults::update());
            }
            None => {}
        }
        if let Some(m) = &mut self.multiregion {
            m.strategy.get_or_insert_with(MultiregionStrategy::default);
            for r in &mut m.regions {
                r.count.get_or_insert(1);
            }
        }
        for a in &mut self.affinities {
            a.weight.get_or_insert(defaults::AFFINITY_WEIGHT);
        }
        for s in &mut self.spreads {
            s.weight.get_or_insert(defaults::SPREAD_WEIGHT);
        }
        let job = JobContext {
            job_type: self.job_type,
            name: self.name.clone(),
            update: self.update.clone(),
            reschedule: self.reschedule.clone(),
            migrate: self.migrate.clone(),
            consul_namespace: self.consul_namespace.clone(),
        };
        for group in &mut self.task_groups {
            group.canonicalize(&job);
        }
    }
}

/// What a group's canonicalization needs from its job.
struct JobContext {
    job_type: JobType,
    name: String,
    update: Option<UpdateStrategy>,
    reschedule: Option<ReschedulePolicy>,
    migrate: Option<MigrateStrategy>,
    consul_namespace: String,
}

impl TaskGroup {
    /// Update, reschedule and migrate: inherited from the job, then Nomad's defaults for
    /// what is still unset (reschedule and migrate only for the job types that use them).
    fn canonicalize_strategies(&mut self, job: &JobContext) {
        inherit(&mut self.update, &job.update, UpdateStrategy::fill_from);
        if let Some(u) = &mut self.update {
            u.fill_from(&defaults::update());
        }
        inherit(
            &mut self.reschedule_policy,
            &job.reschedule,
            ReschedulePolicy::fill_from,
        );
        if self.reschedule_policy.is_none()
            && matches!(job.job_type, JobType::Service | JobType::Batch)
        {
            self.reschedule_policy = Some(defaults::reschedule_for(job.job_type));
        }
        if let Some(r) = &mut self.reschedule_policy {
            r.fill_from(&defaults::reschedule_for(job.job_type));
        }
        inherit(&mut self.migrate, &job.migrate, MigrateStrategy::fill_from);
        if self.migrate.is_none() && job.job_type == JobType::Service {
            self.migrate = Some(MigrateStrategy::default());
        }
        if let Some(m) = &mut self.migrate {
            m.fill_from(&defaults::migrate());
        }
    }

    fn canonicalize(&mut self, job: &JobContext) {
        if let Some(s) = &mut self.scaling {
            s.enabled.get_or_insert(true);
            s.min.get_or_insert(self.count);
            if s.policy_type.is_empty() {
                s.policy_type = "horizontal".to_string();
            }
        }
        let disk = self
            .ephemeral_disk
            .get_or_insert_with(EphemeralDisk::default);
        disk.sticky.get_or_insert(false);
        disk.migrate.get_or_insert(false);
        disk.size_mb.get_or_insert(defaults::EPHEMERAL_DISK_MB);
        if let Some(c) = &mut self.consul {
            if c.namespace.is_empty() {
                c.namespace = job.consul_namespace.clone();
            }
            if c.cluster.is_empty() {
                c.cluster = "default".to_string();
            }
        }
        self.canonicalize_strategies(job);
        let group_restart = self
            .restart_policy
            .get_or_insert_with(|| defaults::restart_for(job.job_type))
            .clone();
        if let Some(d) = &mut self.disconnect {
            d.replace.get_or_insert(true);
            d.reconcile.get_or_insert_with(|| "best_score".to_string());
        }
        for a in &mut self.affinities {
            a.weight.get_or_insert(defaults::AFFINITY_WEIGHT);
        }
        for s in &mut self.spreads {
            s.weight.get_or_insert(defaults::SPREAD_WEIGHT);
        }
        let group_service_prefix = format!("{}-{}", job.name, self.name);
        for s in &mut self.services {
            s.canonicalize(&group_service_prefix);
        }
        for task in &mut self.tasks {
            task.restart_policy
                .get_or_insert_with(|| group_restart.clone());
            let prefix = format!("{group_service_prefix}-{}", task.name);
            task.canonicalize(&prefix);
        }
    }
}

impl Task {
    fn canonicalize(&mut self, service_prefix: &str) {
        self.resources
            .get_or_insert_with(Resources::default)
            .canonicalize();
        self.kill_timeout.get_or_insert(defaults::KILL_TIMEOUT);
        if self.kill_signal.is_empty() {
            self.kill_signal = defaults::KILL_SIGNAL.to_string();
        }
        self.log_config
            .get_or_insert_with(LogConfig::default)
            .canonicalize();
        for a in &mut self.artifacts {
            if a.getter_mode.is_empty() {
                a.getter_mode = "any".to_string();
            }
            if a.relative_dest.is_none() {
                a.relative_dest = Some(if a.getter_mode == "file" {
                    let base = a
                        .getter_source
                        .rsplit('/')
                        .find(|s| !s.is_empty())
                        .unwrap_or(".");
                    format!("local/{base}")
                } else {
                    "local/".to_string()
                });
            }
        }
        if let Some(v) = &mut self.vault {
            v.env.get_or_insert(true);
            v.disable_file.get_or_insert(false);
            if v.cluster.is_empty() {
                v.cluster = "default".to_string();
            }
            if v.change_mode.is_empty() {
                v.change_mode = "restart".to_string();
            }
            if v.change_signal.is_empty() {
                v.change_signal = "SIGHUP".to_string();
            }
        }
        if let Some(c) = &mut self.consul {
            if c.cluster.is_empty() {
                c.cluster = "default".to_string();
            }
        }
        for t in &mut self.templates {
            if t.change_mode.is_empty() {
                t.change_mode = "restart".to_string();
            }
            if t.change_signal.is_empty() && t.change_mode == "signal" {
                t.change_signal = "SIGHUP".to_string();
            }
            t.change_signal = t.change_signal.to_uppercase();
            if let Some(cs) = &mut t.change_script {
                cs.timeout.get_or_insert(defaults::CHANGE_SCRIPT_TIMEOUT);
            }
            t.splay.get_or_insert(defaults::TEMPLATE_SPLAY);
            if t.perms.is_empty() {
                t.perms = defaults::TEMPLATE_PERMS.to_string();
            }
            if t.left_delim.is_empty() {
                t.left_delim = "{{".to_string();
            }
            if t.right_delim.is_empty() {
                t.right_delim = "}}".to_string();
            }
        }
        for s in &mut self.services {
            s.canonicalize(service_prefix);
        }
        for a in &mut self.affinities {
            a.weight.get_or_insert(defaults::AFFINITY_WEIGHT);
        }
        for vm in &mut self.volume_mounts {
            if vm.propagation_mode.is_empty() {
                vm.propagation_mode = "private".to_string();
            }
        }
        if self
            .lifecycle
            .as_ref()
            .is_some_and(|l| l.hook.is_empty() && !l.sidecar)
        {
            self.lifecycle = None;
        }
        if let Some(c) = &mut self.csi_plugin_config {
            if c.mount_dir.is_empty() {
                c.mount_dir = defaults::CSI_MOUNT_DIR.to_string();
            }
            if c.stage_publish_base_dir.is_empty() {
                c.stage_publish_base_dir = defaults::CSI_STAGE_PUBLISH_BASE_DIR.to_string();
            }
            if c.health_timeout.is_zero() {
                c.health_timeout = defaults::CSI_HEALTH_TIMEOUT;
            }
        }
    }
}

impl Resources {
    fn canonicalize(&mut self) {
        if self.cpu == 0 && self.cores == 0 {
            self.cpu = defaults::CPU_MHZ;
        }
        if self.memory_mb == 0 {
            self.memory_mb = defaults::MEMORY_MB;
        }
        for d in &mut self.devices {
            d.count.get_or_insert(1);
            for a in &mut d.affinities {
                a.weight.get_or_insert(defaults::AFFINITY_WEIGHT);
            }
        }
        if let Some(n) = &mut self.numa {
            if n.affinity.is_empty() {
                n.affinity = "none".to_string();
            }
        }
    }
}

impl LogConfig {
    fn canonicalize(&mut self) {
        if self.enabled == Some(false) {
            self.disabled = true;
        }
        self.enabled = None;
    }
}

impl Service {
    fn canonicalize(&mut self, default_name: &str) {
        if self.name.is_empty() {
            self.name = default_name.to_string();
        }
        if self.address_mode.is_empty() {
            self.address_mode = "auto".to_string();
        }
        if self.on_update.is_empty() {
            self.on_update = "require_healthy".to_string();
        }
        if self.provider.is_empty() {
            self.provider = "consul".to_string();
        }
        if self.cluster.is_empty() {
            self.cluster = "default".to_string();
        }
        if let Some(w) = &mut self.weights {
            if w.passing <= 0 {
                w.passing = 1;
            }
            if w.warning <= 0 {
                w.warning = 1;
            }
        }
        for check in &mut self.checks {
            let merged = match (&self.check_restart, &check.check_restart) {
                (Some(s), Some(c)) => Some(CheckRestart {
                    limit: if c.limit != 0 { c.limit } else { s.limit },
                    grace: c.grace.or(s.grace),
                    ignore_warnings: c.ignore_warnings || s.ignore_warnings,
                }),
                (Some(s), None) => Some(s.clone()),
                (None, c) => c.clone(),
            };
            check.check_restart = merged.map(|mut c| {
                c.grace.get_or_insert(defaults::CHECK_RESTART_GRACE);
                c
            });
            check.success_before_passing = check.success_before_passing.max(0);
            check.failures_before_critical = check.failures_before_critical.max(0);
            check.failures_before_warning = check.failures_before_warning.max(0);
            if check.on_update.is_empty() {
                check.on_update = self.on_update.clone();
            }
        }
        if let Some(c) = &mut self.check_restart {
            c.grace.get_or_insert(defaults::CHECK_RESTART_GRACE);
        }
        if let Some(st) = self.connect.as_mut().and_then(|c| c.sidecar_task.as_mut()) {
            if let Some(r) = &mut st.resources {
                r.canonicalize();
            }
            st.log_config
                .get_or_insert_with(LogConfig::default)
                .canonicalize();
            st.kill_timeout.get_or_insert(defaults::KILL_TIMEOUT);
            st.shutdown_delay.get_or_insert(Duration::ZERO);
        }
    }
}

impl Job {
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
            parent_id: self.parent_id.clone(),
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
        total.disk_mb = self
            .ephemeral_disk
            .as_ref()
            .and_then(|d| d.size_mb)
            .unwrap_or(0)
            .max(0);
        total
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
    /// For a periodic or parameterized parent: its children by status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub children: Option<JobChildrenSummary>,
}

/// How many children of a periodic or parameterized job are pending, running or dead.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobChildrenSummary {
    pub pending: u64,
    pub running: u64,
    pub dead: u64,
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
