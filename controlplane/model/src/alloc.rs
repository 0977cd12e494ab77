//! Allocations: one task group of one job placed on one node, and the client-reported state of
//! its tasks.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::job::{Job, JobType};
use crate::placement::AllocMetric;
use crate::resources::{AllocatedResources, DnsConfig};

/// What the servers want of an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DesiredStatus {
    #[default]
    Run,
    Stop,
    Evict,
}

impl DesiredStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredStatus::Run => "run",
            DesiredStatus::Stop => "stop",
            DesiredStatus::Evict => "evict",
        }
    }
}

/// What the client reports of an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientStatus {
    #[default]
    Pending,
    Running,
    Complete,
    Failed,
    Lost,
    Unknown,
}

impl ClientStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientStatus::Pending => "pending",
            ClientStatus::Running => "running",
            ClientStatus::Complete => "complete",
            ClientStatus::Failed => "failed",
            ClientStatus::Lost => "lost",
            ClientStatus::Unknown => "unknown",
        }
    }

    /// Whether the allocation will never run again on its node.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ClientStatus::Complete | ClientStatus::Failed | ClientStatus::Lost
        )
    }

    /// Every status, for tables and tests.
    pub const ALL: [ClientStatus; 6] = [
        ClientStatus::Pending,
        ClientStatus::Running,
        ClientStatus::Complete,
        ClientStatus::Failed,
        ClientStatus::Lost,
        ClientStatus::Unknown,
    ];

    /// Whether an allocation's client status may move from `self` to `next`: the one table of
    /// legal transitions, which the state machine enforces on every client update.
    ///
    /// | from \ to           | pending | running | complete | failed | lost | unknown |
    /// |---------------------|---------|---------|----------|--------|------|---------|
    /// | pending             | yes     | yes     | yes      | yes    | yes  | yes     |
    /// | running             | yes     | yes     | yes      | yes    | yes  | yes     |
    /// | unknown             | yes     | yes     | yes      | yes    | yes  | yes     |
    /// | complete/failed/lost| only to itself                                         |
    ///
    /// Why each row, after Nomad (`structs.Allocation`, whose terminal client statuses are
    /// complete, failed and lost):
    /// - running → pending is a restart: every task waiting to start again reads as pending,
    ///   as Nomad's client computes it (and noded's `alloc_runner::client_status`).
    /// - pending/running → unknown is a client that stopped heartbeating while its
    ///   allocations may still run (Nomad's `max_client_disconnect`); unknown → anything is
    ///   that client reconnecting and reporting what it finds.
    /// - a terminal status stays: an allocation runner that finished never starts again, so
    ///   a later report of another status is stale or wrong. Reporting the same terminal
    ///   status again is legal, since it carries the final task states and events. (Nomad's
    ///   state store copies whatever a client sends; noded refuses instead, so that a stale
    ///   report can never bring back an allocation whose resources were given away.)
    pub fn can_become(self, next: ClientStatus) -> bool {
        self == next || !self.is_terminal()
    }

    /// [`ClientStatus::can_become`], with an error that says why not.
    pub fn check_transition(self, next: ClientStatus) -> Result<(), IllegalTransition> {
        if self.can_become(next) {
            Ok(())
        } else {
            Err(IllegalTransition {
                from: self,
                to: next,
            })
        }
    }
}

/// A client status change [`ClientStatus::can_become`] refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IllegalTransition {
    pub from: ClientStatus,
    pub to: ClientStatus,
}

impl std::fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "client status cannot go from {} to {}: {} is terminal",
            self.from.as_str(),
            self.to.as_str(),
            self.from.as_str()
        )
    }
}

impl std::error::Error for IllegalTransition {}

/// Lifecycle of one task on the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TaskLifecycleState {
    #[default]
    Pending,
    Running,
    Dead,
}

impl TaskLifecycleState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskLifecycleState::Pending => "pending",
            TaskLifecycleState::Running => "running",
            TaskLifecycleState::Dead => "dead",
        }
    }
}

/// The state of one task, as its client reports it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskState {
    pub state: TaskLifecycleState,
    pub failed: bool,
    pub restarts: u64,
    /// RFC 3339 time strings, as Nomad's API gives them; empty when unset.
    pub last_restart: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub events: Vec<TaskEvent>,
}

/// Event types Nomad clients emit and tools match on.
pub mod event_type {
    pub const RECEIVED: &str = "Received";
    pub const TASK_SETUP: &str = "Task Setup";
    pub const STARTED: &str = "Started";
    pub const TERMINATED: &str = "Terminated";
    pub const OOM_KILLED: &str = "OOM Killed";
    pub const RESTARTING: &str = "Restarting";
    pub const NOT_RESTARTING: &str = "Not Restarting";
    pub const KILLING: &str = "Killing";
    pub const KILLED: &str = "Killed";
    pub const DRIVER_FAILURE: &str = "Driver Failure";
    pub const SETUP_FAILURE: &str = "Setup Failure";
    pub const SIGNALING: &str = "Signaling";
    pub const RESTART_SIGNAL: &str = "Restart Signaled";
    pub const REATTACHED: &str = "Reattached";
}

/// One thing that happened to a task.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskEvent {
    #[serde(rename = "Type")]
    pub event_type: String,
    /// Unix nanoseconds.
    pub time: i64,
    pub display_message: String,
    pub details: BTreeMap<String, String>,
    pub message: String,
    pub exit_code: i64,
    pub signal: i64,
    pub kill_reason: String,
    pub driver_error: String,
    pub setup_error: String,
    pub restart_reason: String,
    /// Nanoseconds until the restart.
    pub start_delay: i64,
    pub fails_task: bool,
}

impl TaskEvent {
    /// An event of `event_type` happening now, with a message a person can read.
    pub fn new(event_type: &str, display_message: impl Into<String>) -> TaskEvent {
        TaskEvent {
            event_type: event_type.to_string(),
            time: super::now_unix_nanos(),
            display_message: display_message.into(),
            ..Default::default()
        }
    }
}

/// A placement of one task group on one node.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Allocation {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    /// `<job>.<group>[<index>]`.
    pub name: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_name: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub job: Option<Arc<Job>>,
    pub task_group: String,
    pub allocated_resources: AllocatedResources,
    pub metrics: AllocMetric,
    pub desired_status: DesiredStatus,
    pub desired_description: String,
    pub client_status: ClientStatus,
    pub client_description: String,
    pub task_states: BTreeMap<String, TaskState>,
    #[serde(rename = "PreviousAllocation")]
    pub previous_allocation: String,
    #[serde(rename = "NextAllocation")]
    pub next_allocation: String,
    /// The reschedule attempts that led to this allocation (the failed predecessors'), oldest
    /// first: what its group's `reschedule` policy counts against.
    pub reschedule_tracker: Option<RescheduleTracker>,
    /// The delayed evaluation that will reschedule this (failed) allocation, once created.
    #[serde(rename = "FollowupEvalID")]
    pub followup_eval_id: String,
    /// What the servers want to happen to it next (migrate off a draining node, reschedule).
    pub desired_transition: DesiredTransition,
    /// Whether the client found it healthy (a migration or deployment waits for that).
    pub deployment_status: Option<AllocDeploymentStatus>,
    /// Client status changes kept for disconnect handling (`unknown` since when), oldest
    /// first.
    pub alloc_states: Vec<AllocState>,
    /// Allocations evicted to make room for this one (Nomad's `PreemptedAllocations`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preempted_allocations: Vec<String>,
    /// The allocation this one was evicted for (Nomad's `PreemptedByAllocation`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub preempted_by_allocation: String,
    /// The allocation's own network as its client set it up (Nomad's `NetworkStatus`): set
    /// for `bridge` (and `none`) networks, absent in host mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_status: Option<AllocNetworkStatus>,
    /// The deployment that placed it (Nomad's `DeploymentID`); empty outside a rollout.
    #[serde(rename = "DeploymentID")]
    pub deployment_id: String,
    pub create_index: u64,
    pub modify_index: u64,
    pub alloc_modify_index: u64,
    pub create_time: i64,
    pub modify_time: i64,
}

/// Nomad's `AllocNetworkStatus`: the allocation's network as its client made it, known only
/// at runtime (the address a bridge network leased), for service addresses and the task
/// environment's `NOMAD_ALLOC_*`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocNetworkStatus {
    /// The allocation's interface inside its network namespace (`eth0`).
    pub interface_name: String,
    /// Its IPv4 address (no prefix length).
    pub address: String,
    #[serde(rename = "AddressIPv6")]
    pub address_ipv6: String,
    /// The resolver configuration its tasks see, when the job's `dns` block set one.
    #[serde(rename = "DNS")]
    pub dns: Option<DnsConfig>,
}

/// Nomad's `RescheduleTracker`: the reschedule attempts behind an allocation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RescheduleTracker {
    pub events: Vec<RescheduleEvent>,
}

/// One reschedule attempt: when, what it replaced, and the delay it waited.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RescheduleEvent {
    /// Unix nanoseconds.
    pub reschedule_time: i64,
    #[serde(rename = "PrevAllocID")]
    pub prev_alloc_id: String,
    #[serde(rename = "PrevNodeID")]
    pub prev_node_id: String,
    /// Nanoseconds, as Nomad's `time.Duration`.
    pub delay: i64,
}

/// Nomad's `DesiredTransition`: a change the servers want the scheduler to make.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DesiredTransition {
    /// Move it off its node (the node drains).
    pub migrate: Option<bool>,
    /// Place a replacement for it (it failed).
    pub reschedule: Option<bool>,
    /// Reschedule it even if its policy would not (`job eval -force-reschedule`).
    pub force_reschedule: Option<bool>,
    pub no_shutdown_delay: Option<bool>,
}

impl DesiredTransition {
    pub fn should_migrate(&self) -> bool {
        self.migrate == Some(true)
    }

    pub fn should_reschedule(&self) -> bool {
        self.reschedule == Some(true)
    }

    pub fn should_force_reschedule(&self) -> bool {
        self.force_reschedule == Some(true)
    }
}

/// Nomad's `AllocDeploymentStatus`: whether the client judged the allocation healthy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocDeploymentStatus {
    pub healthy: Option<bool>,
    /// RFC 3339: when health was decided.
    pub timestamp: String,
    pub canary: bool,
    pub modify_index: u64,
}

impl AllocDeploymentStatus {
    pub fn is_healthy(&self) -> bool {
        self.healthy == Some(true)
    }
}

/// Nomad's `AllocState`: one change of one field of an allocation, with its time.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocState {
    /// `ClientStatus`.
    pub field: String,
    pub value: String,
    /// RFC 3339.
    pub time: String,
}

impl Allocation {
    /// The index in `<job>.<group>[<index>]`, if the name has that form.
    pub fn name_index(&self) -> Option<u64> {
        let open = self.name.rfind('[')?;
        let close = self.name.rfind(']')?;
        self.name.get(open + 1..close)?.parse().ok()
    }

    /// Whether the servers no longer want this allocation to run, or it has stopped by itself.
    pub fn is_terminal(&self) -> bool {
        self.desired_status != DesiredStatus::Run || self.client_status.is_terminal()
    }

    /// Whether the allocation still holds resources on its node: placement must count it.
    pub fn holds_resources(&self) -> bool {
        !self.client_status.is_terminal()
    }

    /// The version of the job it runs.
    pub fn job_version(&self) -> u64 {
        self.job.as_ref().map(|j| j.version).unwrap_or(0)
    }

    pub fn job_type(&self) -> JobType {
        self.job.as_ref().map(|j| j.job_type).unwrap_or_default()
    }

    /// The short form listings use, with Nomad's default fields.
    pub fn stub(&self) -> AllocListStub {
        self.stub_with(AllocStubFields::default())
    }

    /// The short form with the optional fields `fields` asks for (`?resources=`,
    /// `?task_states=`).
    pub fn stub_with(&self, fields: AllocStubFields) -> AllocListStub {
        AllocListStub {
            id: self.id.clone(),
            eval_id: self.eval_id.clone(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            node_id: self.node_id.clone(),
            node_name: self.node_name.clone(),
            job_id: self.job_id.clone(),
            job_type: self.job_type(),
            job_version: self.job_version(),
            task_group: self.task_group.clone(),
            desired_status: self.desired_status,
            desired_description: self.desired_description.clone(),
            client_status: self.client_status,
            client_description: self.client_description.clone(),
            task_states: fields.task_states.then(|| self.task_states.clone()),
            allocated_resources: fields.resources.then(|| self.allocated_resources.clone()),
            create_index: self.create_index,
            modify_index: self.modify_index,
            create_time: self.create_time,
            modify_time: self.modify_time,
        }
    }
}

/// Which optional fields an allocation listing carries (Nomad's `AllocStubFields`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocStubFields {
    /// `AllocatedResources` (off by default).
    pub resources: bool,
    /// `TaskStates` (on by default; `null` when off, as Nomad answers).
    pub task_states: bool,
}

impl Default for AllocStubFields {
    fn default() -> Self {
        AllocStubFields {
            resources: false,
            task_states: true,
        }
    }
}

/// The short form of an allocation in listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AllocListStub {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub name: String,
    pub namespace: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_name: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub job_type: JobType,
    pub job_version: u64,
    pub task_group: String,
    pub desired_status: DesiredStatus,
    pub desired_description: String,
    pub client_status: ClientStatus,
    pub client_description: String,
    /// `None` when the listing asked `?task_states=false`.
    #[serde(default)]
    pub task_states: Option<BTreeMap<String, TaskState>>,
    /// Only when the listing asked `?resources=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated_resources: Option<AllocatedResources>,
    pub create_index: u64,
    pub modify_index: u64,
    pub create_time: i64,
    pub modify_time: i64,
}

/// What a client sends the servers about one of its allocations.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocClientUpdate {
    #[serde(rename = "ID")]
    pub id: String,
    pub client_status: ClientStatus,
    pub client_description: String,
    pub task_states: BTreeMap<String, TaskState>,
    /// Whether the client judged the allocation healthy (a drain waits for that before it
    /// stops the allocation a replacement is for); `None` until it decided.
    #[serde(default)]
    pub deployment_status: Option<AllocDeploymentStatus>,
    /// The allocation's network as set up on the client (`None`: unchanged, as an older
    /// client that never sends it, or an allocation without its own network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_status: Option<AllocNetworkStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;

    use ClientStatus::*;

    #[test]
    fn the_transition_table_row_by_row() {
        // (from, the statuses it may become), every other target refused.
        let table = [
            (Pending, &ClientStatus::ALL[..]),
            (Running, &ClientStatus::ALL[..]),
            (Unknown, &ClientStatus::ALL[..]),
            (Complete, &[Complete][..]),
            (Failed, &[Failed][..]),
            (Lost, &[Lost][..]),
        ];
        assert_eq!(table.len(), ClientStatus::ALL.len(), "a row per status");
        for (from, legal) in table {
            for to in ClientStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    legal.contains(&to),
                    "{} → {}",
                    from.as_str(),
                    to.as_str()
                );
                assert_eq!(from.check_transition(to).is_ok(), legal.contains(&to));
            }
        }
    }

    #[test]
    fn the_lifecycles_a_client_reports_are_legal() {
        let paths: [&[ClientStatus]; 5] = [
            &[Pending, Running, Complete, Complete],
            &[Pending, Running, Pending, Running, Failed],
            &[Pending, Failed],
            &[Pending, Running, Unknown, Running, Complete],
            &[Running, Unknown, Lost],
        ];
        for path in paths {
            for step in path.windows(2) {
                assert!(step[0].can_become(step[1]), "{path:?}");
            }
        }
    }

    #[test]
    fn a_terminal_status_never_comes_back_and_the_error_says_so() {
        let e = Complete.check_transition(Running).unwrap_err();
        assert_eq!(
            e,
            IllegalTransition {
                from: Complete,
                to: Running
            }
        );
        assert_eq!(
            e.to_string(),
            "client status cannot go from complete to running: complete is terminal"
        );
        assert!(!Lost.can_become(Pending));
        assert!(!Failed.can_become(Complete));
    }
}
