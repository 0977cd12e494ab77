//! The commands the servers agree on through Raft: every change to cluster state is one of these.
//!
//! This is a wire type (it is written to the Raft log and replicated), so variants and fields are
//! only ever added. Everything the state machine needs — including "now" — travels inside the
//! command, so that applying the same log gives the same state on every server.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{
    AllocClientUpdate, Allocation, ClientStatus, DesiredStatus, DesiredTransition, DrainStrategy,
    Evaluation, Job, Node, NodePool, NodeStatus,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Register a new job or a new version of one, and the evaluation that schedules it.
    JobRegister {
        job: Box<Job>,
        eval: Option<Evaluation>,
        now: i64,
        /// Nomad's `EnforceIndex`: register only if the job's `JobModifyIndex` is still this
        /// (0: only if the job does not exist). Checked when the entry is applied, so of two
        /// submitters racing with the same index only the first one writes. Left out of the
        /// entry when absent (such an entry is byte for byte what older servers write).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        enforce_index: Option<u64>,
        /// The proposing server's `job_tracked_versions`: how many versions of a job without a
        /// tag are kept. The state remembers the last one given (versions written by other
        /// commands are pruned with it), so every server prunes alike whatever its own
        /// configuration says. Absent: the state keeps what it has (6 until told).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tracked_versions: Option<u64>,
    },
    /// Stop a job (or purge it), and the evaluation that stops its allocations.
    JobDeregister {
        namespace: String,
        job_id: String,
        purge: bool,
        eval: Option<Evaluation>,
        now: i64,
    },
    /// A node registers or re-registers with its fingerprint.
    NodeRegister { node: Box<Node>, now: i64 },
    /// A node's status changes (ready, down…), with the evaluations that follow from it.
    NodeUpdateStatus {
        node_id: String,
        status: NodeStatus,
        evals: Vec<Evaluation>,
        now: i64,
    },
    /// A client reports the state of its allocations; evaluations it triggers ride along.
    AllocClientUpdate {
        updates: Vec<AllocClientUpdate>,
        evals: Vec<Evaluation>,
        now: i64,
    },
    /// The plan applier commits (the part that fits of) a scheduler's plan.
    PlanApply(Box<PlanResult>),
    /// Evaluations created or updated outside a plan (e.g. a worker giving up on one).
    EvalUpdate { evals: Vec<Evaluation>, now: i64 },
    /// The operator changes the scheduler configuration.
    SchedulerSetConfig {
        config: crate::model::SchedulerConfiguration,
        /// With a value, only if the stored configuration's modify index is still that
        /// (Nomad's `?cas=`); otherwise nothing changes ([`CommandResponse::cas_mismatch`]).
        /// Left out of the entry when absent, so that such an entry is byte for byte what a
        /// server from before `cas` writes and reads.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cas: Option<u64>,
    },
    /// The operator changes the autopilot configuration. With `cas`, only if the stored
    /// configuration's modify index is still that (check-and-set, Nomad's `?cas=`); otherwise
    /// nothing changes and the response says so ([`CommandResponse::cas_mismatch`]).
    AutopilotSetConfig {
        config: crate::model::AutopilotConfiguration,
        cas: Option<u64>,
    },
    /// The operator restores a snapshot (`PUT /v1/operator/snapshot`): the whole state is
    /// replaced by the snapshot's tables, applied at this entry's index (nothing goes back:
    /// every table's index becomes this one, and an object's indexes above it are lowered
    /// to it). Checked (magic, version, length, checksum) before it is proposed.
    RestoreState { snapshot: Box<super::SnapshotFile> },
    /// The drainer marks allocations to move (`desired_transition.migrate`), with the
    /// evaluations that place their replacements (Nomad's `AllocUpdateDesiredTransition`).
    /// A transition's set fields overwrite the allocation's; unset ones stay.
    AllocUpdateDesiredTransition {
        transitions: BTreeMap<String, DesiredTransition>,
        evals: Vec<Evaluation>,
        now: i64,
    },
    /// A draining node has nothing left to move: its drain strategy is cleared, it stays
    /// ineligible, and its last drain is recorded complete.
    NodeDrainComplete { node_id: String, now: i64 },
    /// The operator starts (`drain_strategy: Some`), updates or cancels (`None`) a node's
    /// drain (`PUT /v1/node/:id/drain`). Starting one makes the node ineligible and records
    /// `last_drain` as draining; cancelling records it canceled and, with `mark_eligible`,
    /// makes the node eligible again. `evals`: the node-update evaluations that follow (jobs
    /// with allocations on the node). Completing a drain is the drainer's own command.
    NodeUpdateDrain {
        node_id: String,
        drain_strategy: Option<DrainStrategy>,
        mark_eligible: bool,
        /// The operator's `-meta`, kept in `last_drain`.
        meta: BTreeMap<String, String>,
        evals: Vec<Evaluation>,
        now: i64,
    },
    /// The operator marks a node (in)eligible for new placements. Refused while the node
    /// drains, as Nomad refuses it. `evals` follow a node made eligible again.
    NodeUpdateEligibility {
        node_id: String,
        /// `eligible` or `ineligible` ([`crate::model::eligibility`]).
        eligibility: String,
        evals: Vec<Evaluation>,
        now: i64,
    },
    /// The operator purges nodes from the state (`PUT /v1/node/:id/purge`). Refused for a node
    /// with allocations that have not finished, unless `force`: those are then marked lost,
    /// and `evals` replace them.
    NodeDeregister {
        node_ids: Vec<String>,
        force: bool,
        evals: Vec<Evaluation>,
        now: i64,
    },
    /// The operator creates or updates node pools. The built-in `default` and `all` cannot be
    /// changed.
    NodePoolUpsert { pools: Vec<NodePool> },
    /// The operator deletes node pools: not built-in ones, nor one that has nodes or jobs
    /// that have not finished.
    NodePoolDelete { names: Vec<String> },
    /// Garbage collection: removes what [`crate::state::gc::collect`] chose. Each object is
    /// checked again when applied (still finished, job still dead), so a collection computed
    /// on an older state never removes anything that came back to life meanwhile.
    GarbageCollect {
        /// (namespace, job id) of jobs to purge with their versions.
        jobs: Vec<(String, String)>,
        eval_ids: Vec<String>,
        alloc_ids: Vec<String>,
        node_ids: Vec<String>,
        /// Deployments that ended (kept only while active otherwise).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        deployment_ids: Vec<String>,
    },
    /// A node registers (as [`Command::NodeRegister`]) together with the evaluations its
    /// registration calls for (Nomad's `createNodeEvals`: the system jobs that should run on
    /// it, the jobs with allocations on it), in one entry so neither happens without the other.
    NodeRegisterWithEvals {
        node: Box<Node>,
        evals: Vec<Evaluation>,
        now: i64,
    },
    /// The operator deletes evaluations (`DELETE /v1/evaluations`, only while the eval broker
    /// is paused). Ids the state no longer holds are skipped; which ones are safe to delete
    /// was checked by the proposer ([`crate::state::State::eval_delete_unsafe`]).
    EvalDelete { eval_ids: Vec<String>, now: i64 },
    /// The periodic dispatcher launches a periodic job: the child job
    /// (`<parent>/periodic-<unix seconds>`), its evaluation and the launch time (Unix
    /// nanoseconds), recorded as the parent's last launch. Refused unless the launch is after
    /// the recorded one and the child is new, so a launch is never run twice.
    PeriodicLaunch {
        child: Box<Job>,
        eval: Evaluation,
        launch: i64,
        now: i64,
    },
    /// A parameterized job is dispatched: the child job and, unless the child is periodic,
    /// its evaluation. Refused while a live child holds the same idempotency token.
    JobDispatch {
        child: Box<Job>,
        eval: Option<Evaluation>,
        now: i64,
    },
    /// A group is scaled (`POST /v1/job/:id/scale`): with a count, a new job version with it
    /// and the evaluation that places it; always, the scaling event (the newest
    /// `JOB_TRACKED_SCALING_EVENTS` per group are kept). `event.eval_id` names `eval`.
    JobScale {
        namespace: String,
        job_id: String,
        group: String,
        count: Option<i64>,
        event: crate::model::ScalingEvent,
        eval: Option<Evaluation>,
        now: i64,
    },
    /// A client registers its allocations' service instances, or re-registers them with new
    /// health or addresses. Only registrations of live allocations on the node they name are
    /// stored; the rest are reported in the response's error.
    ServiceRegistrationUpsert {
        services: Vec<crate::model::ServiceRegistration>,
    },
    /// Service instances leave the catalog: these ids (`DELETE /v1/service/:name/:id`) and
    /// every instance of these allocations (a client stopping them).
    ServiceRegistrationDelete {
        ids: Vec<String>,
        alloc_ids: Vec<String>,
    },
    /// A deployment's status changes (the watcher: successful, failed; the operator: pause,
    /// resume, fail). An auto-revert carries the job version to register again (`job`, the
    /// stable version's spec), and the evaluation that follows. Refused for a deployment
    /// that is unknown or terminal.
    DeploymentStatusUpdate {
        update: crate::model::DeploymentStatusUpdate,
        job: Option<Box<Job>>,
        eval: Option<Evaluation>,
        now: i64,
    },
    /// Canaries are promoted (`all`, or the named `groups`): refused unless each group has as
    /// many healthy canaries as it wants; the evaluation places the rest.
    DeploymentPromote {
        deployment_id: String,
        all: bool,
        groups: Vec<String>,
        eval: Option<Evaluation>,
        now: i64,
    },
    /// Allocations of a deployment are marked healthy or unhealthy (the operator, for
    /// `health_check = "manual"`; the watcher), with a status change, a job to revert to and
    /// an evaluation that may follow.
    DeploymentAllocHealth {
        deployment_id: String,
        healthy: Vec<String>,
        unhealthy: Vec<String>,
        update: Option<crate::model::DeploymentStatusUpdate>,
        job: Option<Box<Job>>,
        eval: Option<Evaluation>,
        now: i64,
    },
    /// A job version is marked stable or not (`PUT /v1/job/:id/stable`, or the deployment
    /// watcher when a deployment succeeds): the stored version, and the current job when it
    /// is that version. No new version is written. Refused when the version is not kept.
    JobStability {
        namespace: String,
        job_id: String,
        version: u64,
        stable: bool,
    },
    /// A version of a job is tagged (`tag: Some`, `PUT /v1/job/:id/versions/:name/tag`) or
    /// its tag `name` is removed (`tag: None`, `DELETE` of the same path). A tag name is
    /// unique among a job's versions; a tagged version is never pruned. Refused, with nothing
    /// changed, when the version is not kept, the name is on another version, or (removing)
    /// `version` does not carry the tag `name`.
    JobVersionTag {
        namespace: String,
        job_id: String,
        version: u64,
        /// The tag's name: the one set, or the one removed.
        name: String,
        tag: Option<crate::model::JobVersionTag>,
    },
}

/// Stopping an allocation, as a plan asks for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocStop {
    pub alloc_id: String,
    pub desired_status: DesiredStatus,
    pub desired_description: String,
    /// A client status the plan sets with the stop: `lost` for an allocation on a node that
    /// went down (its client cannot report anything), `None` to leave the client's.
    #[serde(default)]
    pub client_status: Option<ClientStatus>,
}

/// Evicting a lower-priority allocation to make room for a placement (Nomad's preemption):
/// it is stopped with desired status `evict`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocPreemption {
    pub alloc_id: String,
    /// The placement it makes room for (written as its `PreemptedByAllocation`).
    pub preempted_by_allocation: String,
}

impl AllocPreemption {
    /// Nomad's description of a preempted allocation.
    pub fn description(&self) -> String {
        format!("Preempted by alloc ID {}", self.preempted_by_allocation)
    }
}

/// What the plan applier commits: the accepted part of a plan, and the evaluation's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PlanResult {
    /// The evaluation the plan came from, with its final status.
    pub eval: Option<Evaluation>,
    /// New or updated allocations.
    pub allocs: Vec<Allocation>,
    /// Allocations to stop or evict.
    pub stops: Vec<AllocStop>,
    /// Evaluations the scheduler created (blocked evaluations, follow-ups).
    pub created_evals: Vec<Evaluation>,
    pub now: i64,
    /// Allocations evicted for placements on the nodes accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preemptions: Vec<AllocPreemption>,
    /// The job version the plan placed, once: an allocation in `allocs` without a job runs
    /// this one (Nomad's normalized plan results). Without it a plan of a thousand placements
    /// would carry a thousand copies of the job through the log, and the state would hold a
    /// thousand decoded copies where one shared one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<std::sync::Arc<Job>>,
    /// The deployment the plan creates or updates (its groups' desired counts, canaries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<crate::model::Deployment>,
    /// Status changes of deployments the plan ends (an older version's, cancelled).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployment_updates: Vec<crate::model::DeploymentStatusUpdate>,
}

/// What applying a command answers to whoever proposed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CommandResponse {
    /// The Raft log index the command was applied at.
    pub index: u64,
    /// A rejection the state machine found (e.g. a job that does not exist). Deterministic: every
    /// server rejects the same command the same way, so state stays identical.
    pub error: Option<String>,
    /// For job (de)registration: the job's modify index.
    pub job_modify_index: u64,
    /// For a check-and-set write: the stored value's modify index was not the one given, so
    /// nothing was written.
    #[serde(default)]
    pub cas_mismatch: bool,
}
