//! The blocks of a job beyond the core (`Job`, `TaskGroup`, `Task` and restart, which live in
//! `job.rs`; resources and networks in `resources.rs`; placement rules in `placement.rs`):
//! update/migrate/reschedule strategies, logs, services, templates, artifacts, volumes,
//! identities and the rest of Nomad's `api.Job` tree, with Nomad's API field names (PascalCase
//! JSON, durations in nanoseconds).
//!
//! `Option` marks a field whose Nomad default is not the zero value, so "unset" can be told
//! from "set to zero" until [`super::Job::canonicalize`] fills it in. After canonicalization
//! every such field is `Some`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;
use crate::resources::Resources;

/// Free-form data (driver config, scaling policy, secret config): kept as JSON, checked by
/// whoever consumes it.
pub type FreeForm = serde_json::Map<String, serde_json::Value>;

/// How a new version of a group rolls out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateStrategy {
    #[serde(with = "duration::opt_nanos")]
    pub stagger: Option<Duration>,
    pub max_parallel: Option<i64>,
    pub health_check: Option<String>,
    #[serde(with = "duration::opt_nanos")]
    pub min_healthy_time: Option<Duration>,
    #[serde(with = "duration::opt_nanos")]
    pub healthy_deadline: Option<Duration>,
    #[serde(with = "duration::opt_nanos")]
    pub progress_deadline: Option<Duration>,
    pub canary: Option<i64>,
    pub auto_revert: Option<bool>,
    pub auto_promote: Option<bool>,
}

/// How allocations move off a draining node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct MigrateStrategy {
    pub max_parallel: Option<i64>,
    pub health_check: Option<String>,
    #[serde(with = "duration::opt_nanos")]
    pub min_healthy_time: Option<Duration>,
    #[serde(with = "duration::opt_nanos")]
    pub healthy_deadline: Option<Duration>,
}

/// When a failed allocation is replaced on another node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReschedulePolicy {
    pub attempts: Option<i64>,
    #[serde(with = "duration::opt_nanos")]
    pub interval: Option<Duration>,
    #[serde(with = "duration::opt_nanos")]
    pub delay: Option<Duration>,
    pub delay_function: Option<String>,
    #[serde(with = "duration::opt_nanos")]
    pub max_delay: Option<Duration>,
    pub unlimited: Option<bool>,
}

/// What happens to allocations on a node that stops heartbeating.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct DisconnectStrategy {
    #[serde(with = "duration::opt_nanos")]
    pub lost_after: Option<Duration>,
    #[serde(with = "duration::opt_nanos")]
    pub stop_on_client_after: Option<Duration>,
    pub replace: Option<bool>,
    pub reconcile: Option<String>,
}

/// The allocation's scratch disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct EphemeralDisk {
    pub sticky: Option<bool>,
    pub migrate: Option<bool>,
    #[serde(rename = "SizeMB")]
    pub size_mb: Option<i64>,
}

/// Run the job on a cron schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct PeriodicConfig {
    pub enabled: Option<bool>,
    pub spec: String,
    pub specs: Vec<String>,
    pub spec_type: String,
    pub prohibit_overlap: bool,
    pub time_zone: String,
}

/// A job that runs only when dispatched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ParameterizedJobConfig {
    pub payload: String,
    pub meta_required: Vec<String>,
    pub meta_optional: Vec<String>,
}

/// A job deployed to several regions in turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Multiregion {
    pub strategy: Option<MultiregionStrategy>,
    pub regions: Vec<MultiregionRegion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct MultiregionStrategy {
    pub max_parallel: i64,
    pub on_failure: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct MultiregionRegion {
    pub name: String,
    pub count: Option<i64>,
    pub datacenters: Vec<String>,
    pub node_pool: String,
    pub meta: BTreeMap<String, String>,
}

/// What the web UI shows for a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobUiConfig {
    pub description: String,
    pub links: Vec<JobUiLink>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobUiLink {
    pub label: String,
    #[serde(rename = "URL")]
    pub url: String,
}

/// A service registration (Nomad or Consul).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Service {
    pub name: String,
    pub tags: Vec<String>,
    pub canary_tags: Vec<String>,
    pub enable_tag_override: bool,
    pub port_label: String,
    pub address_mode: String,
    pub address: String,
    pub checks: Vec<ServiceCheck>,
    pub check_restart: Option<CheckRestart>,
    pub connect: Option<ConsulConnect>,
    pub meta: BTreeMap<String, String>,
    pub canary_meta: BTreeMap<String, String>,
    pub tagged_addresses: BTreeMap<String, String>,
    pub task_name: String,
    pub on_update: String,
    pub identity: Option<WorkloadIdentity>,
    pub weights: Option<ServiceWeights>,
    pub provider: String,
    pub cluster: String,
    pub kind: String,
}

/// A health check of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceCheck {
    pub name: String,
    #[serde(rename = "Type")]
    pub check_type: String,
    pub command: String,
    pub args: Vec<String>,
    pub path: String,
    pub protocol: String,
    pub port_label: String,
    pub expose: bool,
    pub address_mode: String,
    pub advertise: String,
    #[serde(with = "duration::nanos")]
    pub interval: Duration,
    #[serde(with = "duration::nanos")]
    pub timeout: Duration,
    pub initial_status: String,
    pub notes: String,
    #[serde(rename = "TLSServerName")]
    pub tls_server_name: String,
    #[serde(rename = "TLSSkipVerify")]
    pub tls_skip_verify: bool,
    pub header: BTreeMap<String, Vec<String>>,
    pub method: String,
    pub check_restart: Option<CheckRestart>,
    #[serde(rename = "GRPCService")]
    pub grpc_service: String,
    #[serde(rename = "GRPCUseTLS")]
    pub grpc_use_tls: bool,
    pub task_name: String,
    pub success_before_passing: i64,
    pub failures_before_critical: i64,
    pub failures_before_warning: i64,
    pub body: String,
    pub on_update: String,
}

/// Restart the task when its check stays unhealthy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CheckRestart {
    pub limit: i64,
    #[serde(with = "duration::opt_nanos")]
    pub grace: Option<Duration>,
    pub ignore_warnings: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceWeights {
    pub passing: i64,
    pub warning: i64,
}

/// Consul Connect (service mesh) settings of a service. The gateway tree is kept as data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConsulConnect {
    pub native: bool,
    pub gateway: Option<serde_json::Value>,
    pub sidecar_service: Option<ConsulSidecarService>,
    pub sidecar_task: Option<SidecarTask>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConsulSidecarService {
    pub tags: Vec<String>,
    pub port: String,
    pub proxy: Option<ConsulProxy>,
    #[serde(rename = "DisableDefaultTCPCheck")]
    pub disable_default_tcp_check: bool,
    pub meta: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConsulProxy {
    pub local_service_address: String,
    pub local_service_port: i64,
    pub expose: Option<ConsulExposeConfig>,
    pub upstreams: Vec<ConsulUpstream>,
    pub transparent_proxy: Option<ConsulTransparentProxy>,
    pub config: FreeForm,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConsulExposeConfig {
    pub paths: Vec<ConsulExposePath>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConsulExposePath {
    pub path: String,
    pub protocol: String,
    pub local_path_port: i64,
    pub listener_port: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConsulUpstream {
    pub destination_name: String,
    pub destination_namespace: String,
    pub destination_peer: String,
    pub destination_partition: String,
    pub destination_type: String,
    pub local_bind_port: i64,
    pub datacenter: String,
    pub local_bind_address: String,
    pub local_bind_socket_path: String,
    pub local_bind_socket_mode: String,
    pub mesh_gateway: Option<ConsulMeshGateway>,
    pub config: FreeForm,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConsulMeshGateway {
    pub mode: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConsulTransparentProxy {
    #[serde(rename = "UID")]
    pub uid: String,
    pub outbound_port: i64,
    pub exclude_inbound_ports: Vec<String>,
    pub exclude_outbound_ports: Vec<i64>,
    #[serde(rename = "ExcludeOutboundCIDRs")]
    pub exclude_outbound_cidrs: Vec<String>,
    #[serde(rename = "ExcludeUIDs")]
    pub exclude_uids: Vec<String>,
    #[serde(rename = "NoDNS")]
    pub no_dns: bool,
}

/// Log rotation for a task's stdout and stderr.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    pub max_files: i64,
    #[serde(rename = "MaxFileSizeMB")]
    pub max_file_size_mb: i64,
    pub disabled: bool,
    /// The older spelling of `!disabled`; folded into `disabled` by canonicalization.
    pub enabled: Option<bool>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_files: 10,
            max_file_size_mb: 10,
            disabled: false,
            enabled: None,
        }
    }
}

/// The Envoy proxy task Nomad injects for a Connect sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct SidecarTask {
    pub name: String,
    pub driver: String,
    pub user: String,
    pub config: FreeForm,
    pub env: BTreeMap<String, String>,
    pub resources: Option<Resources>,
    pub meta: BTreeMap<String, String>,
    #[serde(with = "duration::opt_nanos")]
    pub kill_timeout: Option<Duration>,
    pub log_config: Option<LogConfig>,
    #[serde(with = "duration::opt_nanos")]
    pub shutdown_delay: Option<Duration>,
    pub kill_signal: String,
    pub volume_mounts: Vec<VolumeMount>,
}

/// Consul settings of a group or task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Consul {
    pub namespace: String,
    pub cluster: String,
    pub partition: String,
}

/// A volume a group asks for (host or CSI).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeRequest {
    pub name: String,
    #[serde(rename = "Type")]
    pub volume_type: String,
    pub source: String,
    pub read_only: bool,
    pub sticky: bool,
    pub access_mode: String,
    pub attachment_mode: String,
    pub mount_options: Option<CsiMountOptions>,
    pub per_alloc: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CsiMountOptions {
    #[serde(rename = "FSType")]
    pub fs_type: String,
    pub mount_flags: Vec<String>,
}

/// Where a task sees a group volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeMount {
    pub volume: String,
    pub destination: String,
    pub read_only: bool,
    pub propagation_mode: String,
    #[serde(rename = "SELinuxLabel")]
    pub selinux_label: String,
}

/// When a task runs relative to the group's main tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskLifecycle {
    pub hook: String,
    pub sidecar: bool,
}

/// A file fetched into the task directory before the task starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskArtifact {
    pub getter_source: String,
    pub getter_options: BTreeMap<String, String>,
    pub getter_headers: BTreeMap<String, String>,
    pub getter_mode: String,
    pub getter_insecure: bool,
    pub relative_dest: Option<String>,
    pub chown: bool,
}

/// A file rendered from a template into the task directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Template {
    pub source_path: String,
    pub dest_path: String,
    pub embedded_tmpl: String,
    pub change_mode: String,
    pub change_script: Option<ChangeScript>,
    pub change_signal: String,
    pub once: bool,
    #[serde(with = "duration::opt_nanos")]
    pub splay: Option<Duration>,
    pub perms: String,
    pub uid: Option<i64>,
    pub gid: Option<i64>,
    pub left_delim: String,
    pub right_delim: String,
    pub envvars: bool,
    #[serde(with = "duration::nanos")]
    pub vault_grace: Duration,
    pub wait: Option<WaitConfig>,
    pub err_missing_key: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ChangeScript {
    pub command: String,
    pub args: Vec<String>,
    #[serde(with = "duration::opt_nanos")]
    pub timeout: Option<Duration>,
    pub fail_on_error: bool,
    pub run_on_first_render: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct WaitConfig {
    #[serde(with = "duration::opt_nanos")]
    pub min: Option<Duration>,
    #[serde(with = "duration::opt_nanos")]
    pub max: Option<Duration>,
}

/// Vault access of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Vault {
    pub policies: Vec<String>,
    pub role: String,
    pub namespace: String,
    pub cluster: String,
    pub env: Option<bool>,
    pub disable_file: Option<bool>,
    pub change_mode: String,
    pub change_signal: String,
    pub allow_token_expiration: bool,
}

/// A secret fetched for a task from a secrets provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Secret {
    pub name: String,
    pub provider: String,
    pub path: String,
    pub config: FreeForm,
    pub env: BTreeMap<String, String>,
}

/// The task is a CSI plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskCsiPluginConfig {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Type")]
    pub plugin_type: String,
    pub mount_dir: String,
    pub stage_publish_base_dir: String,
    #[serde(with = "duration::nanos")]
    pub health_timeout: Duration,
}

/// A workload identity token given to a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct WorkloadIdentity {
    pub name: String,
    pub audience: Vec<String>,
    pub change_mode: String,
    pub change_signal: String,
    pub env: bool,
    pub file: bool,
    pub filepath: String,
    pub service_name: String,
    #[serde(rename = "TTL", with = "duration::nanos")]
    pub ttl: Duration,
    pub extra_claims: Vec<String>,
}

/// A named command an operator may run in a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Action {
    pub name: String,
    pub command: String,
    pub args: Vec<String>,
}

/// When a task may run (Nomad Enterprise's time-based task execution).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskSchedule {
    pub cron: Option<TaskScheduleCron>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskScheduleCron {
    pub start: String,
    pub end: String,
    pub timezone: String,
}

/// Where a dispatched job's payload is written in the task directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct DispatchPayloadConfig {
    pub file: String,
}

/// Autoscaling bounds of a group (horizontal) or a task (vertical cpu/mem).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ScalingPolicy {
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub policy: FreeForm,
    pub enabled: Option<bool>,
    #[serde(rename = "Type")]
    pub policy_type: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
    pub target: BTreeMap<String, String>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// A name an operator gave one version of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobVersionTag {
    pub name: String,
    pub description: String,
    pub tagged_time: i64,
}
