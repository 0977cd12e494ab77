//! The cluster state and the deterministic function that changes it.
//!
//! [`State`] is an immutable value built from persistent (structurally shared) maps: cloning it
//! costs a few reference-count bumps, so every reader — a scheduler worker, a blocking query — gets
//! its own consistent snapshot for free, and a million allocations do not slow the next read.
//! [`State::apply`] is the Raft state machine's transition function: `(state, index, command) →
//! (state', response, effects)`, with no clock, randomness or I/O.

pub mod archive;
mod capacity;
mod command;
mod deployments;
pub mod gc;
mod node_evals;
mod nodes;
mod periodic;
mod services;
mod snapshot;
mod store;
mod versions;

use std::sync::Arc;

use imbl::{OrdMap, OrdSet};

pub use capacity::PlanRefused;
pub use command::{AllocPreemption, AllocStop, Command, CommandResponse, PlanResult};
pub use gc::GcThresholds;
pub use node_evals::should_create_node_eval;
pub use nodes::DrainUpdate;
pub use periodic::{check_scaling_bounds, IDEMPOTENCY_TOKEN_USED};
pub use snapshot::{SnapshotFile, SNAPSHOT_FORMAT_VERSION};
pub use store::{Effects, EffectsReceiver, StateStore, WaitOutcome, EFFECTS_QUEUE_DEPTH};
pub use versions::{
    check_enforce_index, check_version_tag, MAX_JOB_TRACKED_VERSIONS,
    MAX_VERSION_TAG_DESCRIPTION_CHARS, MAX_VERSION_TAG_NAME_BYTES,
};

use crate::model::{
    Allocation, ClientStatus, DesiredStatus, EvalStatus, Evaluation, Job, JobStatus, JobSummary,
    JobType, Node, NodeStatus, TaskGroupSummary,
};

/// How many versions of a job without a tag are kept for `job history` and `job revert` until
/// a server says otherwise (Nomad's `job_tracked_versions` default, 6).
pub const JOB_TRACKED_VERSIONS: u64 = 6;

/// A job's key: namespace and id.
pub type JobKey = (String, String);

/// The tables a blocking query can wait on; each has its own modify index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Jobs,
    JobVersions,
    Evals,
    Allocs,
    Nodes,
    SchedulerConfig,
    AutopilotConfig,
    NodePools,
    /// Each periodic job's last launch.
    PeriodicLaunches,
    /// Each job's scaling events.
    ScalingEvents,
    /// The native service catalog.
    Services,
    /// Deployments.
    Deployments,
}
impl Table {
    pub const ALL: [Table; 12] = [
        Table::Jobs,
        Table::JobVersions,
        Table::Evals,
        Table::Allocs,
        Table::Nodes,
        Table::SchedulerConfig,
        Table::AutopilotConfig,
        Table::NodePools,
        Table::PeriodicLaunches,
        Table::ScalingEvents,
        Table::Services,
        Table::Deployments,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Table::Jobs => "jobs",
            Table::JobVersions => "job_versions",
            Table::Evals => "evals",
            Table::Allocs => "allocs",
            Table::Nodes => "nodes",
            Table::SchedulerConfig => "scheduler_config",
            Table::AutopilotConfig => "autopilot_config",
            Table::NodePools => "node_pools",
            Table::PeriodicLaunches => "periodic_launch",
            Table::ScalingEvents => "scaling_event",
            Table::Services => "service_registrations",
            Table::Deployments => "deployment",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// What an applied command means for the rest of the server (the eval broker, blocked evals),
/// returned rather than acted on so that `apply` stays pure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApplyEffects {
    /// Evaluations that became pending: the broker must schedule them (on the leader).
    pub pending_evals: Vec<Evaluation>,
    /// Evaluations that became blocked, waiting for capacity.
    pub blocked_evals: Vec<Evaluation>,
    /// Whether capacity may have been freed or added (node registered, allocation finished):
    /// blocked evaluations should be retried.
    pub capacity_changed: bool,
    /// The computed node classes that gained capacity (a node registered, became ready or
    /// eligible; an allocation on one of its nodes stopped or finished), for the blocked
    /// evaluations tracker. Empty while `capacity_changed`: which classes is not known (a
    /// snapshot installed), so every blocked evaluation is retried.
    pub unblock_classes: std::collections::BTreeSet<String>,
    /// The scheduler configuration changed (the broker follows `PauseEvalBroker`).
    pub scheduler_config_changed: bool,
    /// Evaluations the operator deleted: the broker and the blocked tracker drop them.
    pub deleted_evals: Vec<String>,
    /// The whole state was replaced (a snapshot restored): whatever was derived from earlier
    /// effects (queued and blocked evaluations) is stale and must be rebuilt from the state.
    /// `pending_evals` and `blocked_evals` then list every such evaluation of the new state.
    pub state_replaced: bool,
}

/// The whole cluster state at one Raft index.
#[derive(Debug, Clone, Default)]
pub struct State {
    jobs: OrdMap<JobKey, Arc<Job>>,
    job_versions: OrdMap<(JobKey, u64), Arc<Job>>,
    evals: OrdMap<String, Arc<Evaluation>>,
    evals_by_job: OrdMap<JobKey, OrdSet<String>>,
    allocs: OrdMap<String, Arc<Allocation>>,
    allocs_by_job: OrdMap<JobKey, OrdSet<String>>,
    allocs_by_node: OrdMap<String, OrdSet<String>>,
    nodes: OrdMap<String, Arc<Node>>,
    /// The pools the operator made; the built-in `all` and `default` are not stored.
    node_pools: OrdMap<String, Arc<crate::model::NodePool>>,
    scheduler_config: Arc<crate::model::SchedulerConfiguration>,
    autopilot_config: Arc<crate::model::AutopilotConfiguration>,
    /// Each periodic job's last launch (first: its registration), by job.
    periodic_launches: OrdMap<JobKey, Arc<crate::model::PeriodicLaunch>>,
    /// Each job's scaling events per group, newest first.
    scaling_events: OrdMap<JobKey, Arc<crate::model::JobScalingEvents>>,
    /// Service registrations by id, and by allocation and (namespace, name).
    services: OrdMap<String, Arc<crate::model::ServiceRegistration>>,
    services_by_alloc: OrdMap<String, OrdSet<String>>,
    services_by_name: OrdMap<(String, String), OrdSet<String>>,
    /// Deployments by id, and their ids by job.
    deployments: OrdMap<String, Arc<crate::model::Deployment>>,
    deployments_by_job: OrdMap<JobKey, OrdSet<String>>,
    table_index: OrdMap<Table, u64>,
    latest_index: u64,
    /// The `job_tracked_versions` the last `JobRegister` carried (`None`: never told, 6).
    job_tracked_versions: Option<u64>,
}
fn key(namespace: &str, id: &str) -> JobKey {
    (namespace.to_string(), id.to_string())
}

impl State {
    /// The index of the last command applied.
    pub fn latest_index(&self) -> u64 {
        self.latest_index
    }

    /// The index at which `table` last changed (0 if never).
    pub fn table_index(&self, table: Table) -> u64 {
        self.table_index.get(&table).copied().unwrap_or(0)
    }

    /// The highest index of several tables: what a read spanning them reports.
    pub fn max_index(&self, tables: &[Table]) -> u64 {
        tables
            .iter()
            .map(|t| self.table_index(*t))
            .max()
            .unwrap_or(0)
    }

    // ---- reads ----

    pub fn job(&self, namespace: &str, id: &str) -> Option<Arc<Job>> {
        self.jobs.get(&key(namespace, id)).cloned()
    }

    /// Jobs, ordered by namespace then id; `namespace = None` lists every namespace.
    pub fn jobs(&self, namespace: Option<&str>) -> Vec<Arc<Job>> {
        self.jobs
            .iter()
            .filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
            .map(|(_, j)| j.clone())
            .collect()
    }

    /// Every stored version of a job, newest first.
    pub fn job_versions(&self, namespace: &str, id: &str) -> Vec<Arc<Job>> {
        let k = key(namespace, id);
        let mut out: Vec<Arc<Job>> = self
            .job_versions
            .range((k.clone(), 0)..=(k, u64::MAX))
            .map(|(_, j)| j.clone())
            .collect();
        out.reverse();
        out
    }

    pub fn eval(&self, id: &str) -> Option<Arc<Evaluation>> {
        self.evals.get(id).cloned()
    }

    pub fn evals(&self) -> Vec<Arc<Evaluation>> {
        self.evals.values().cloned().collect()
    }

    pub fn evals_by_job(&self, namespace: &str, id: &str) -> Vec<Arc<Evaluation>> {
        self.evals_by_job
            .get(&key(namespace, id))
            .map(|ids| {
                ids.iter()
                    .filter_map(|e| self.evals.get(e).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn alloc(&self, id: &str) -> Option<Arc<Allocation>> {
        self.allocs.get(id).cloned()
    }

    pub fn allocs(&self) -> Vec<Arc<Allocation>> {
        self.allocs.values().cloned().collect()
    }

    pub fn allocs_by_job(&self, namespace: &str, id: &str) -> Vec<Arc<Allocation>> {
        self.allocs_by_job
            .get(&key(namespace, id))
            .map(|ids| {
                ids.iter()
                    .filter_map(|a| self.allocs.get(a).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn allocs_by_node(&self, node_id: &str) -> Vec<Arc<Allocation>> {
        self.allocs_by_node
            .get(node_id)
            .map(|ids| {
                ids.iter()
                    .filter_map(|a| self.allocs.get(a).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The operator's scheduler configuration (Nomad's defaults until one is set).
    pub fn scheduler_config(&self) -> Arc<crate::model::SchedulerConfiguration> {
        self.scheduler_config.clone()
    }

    /// The operator's autopilot configuration (Nomad's defaults until one is set).
    pub fn autopilot_config(&self) -> Arc<crate::model::AutopilotConfiguration> {
        self.autopilot_config.clone()
    }

    pub fn node(&self, id: &str) -> Option<Arc<Node>> {
        self.nodes.get(id).cloned()
    }

    pub fn nodes(&self) -> Vec<Arc<Node>> {
        self.nodes.values().cloned().collect()
    }

    /// How many nodes the state holds (without listing them: a heartbeat asks).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Ids of every object of `table` that start with `prefix` (for the CLI's short ids).
    pub fn ids_with_prefix(&self, table: Table, prefix: &str) -> Vec<String> {
        let from = prefix.to_string();
        let take = |ids: Box<dyn Iterator<Item = &String> + '_>| -> Vec<String> {
            ids.take_while(|id| id.starts_with(prefix))
                .cloned()
                .collect()
        };
        match table {
            Table::Evals => take(Box::new(self.evals.range(from..).map(|(k, _)| k))),
            Table::Allocs => take(Box::new(self.allocs.range(from..).map(|(k, _)| k))),
            Table::Nodes => take(Box::new(self.nodes.range(from..).map(|(k, _)| k))),
            Table::Jobs | Table::JobVersions => {
                let mut ids: Vec<String> = self
                    .jobs
                    .keys()
                    .filter(|(_, id)| id.starts_with(prefix))
                    .map(|(_, id)| id.clone())
                    .collect();
                ids.dedup();
                ids
            }
            Table::NodePools => take(Box::new(self.node_pools.range(from..).map(|(k, _)| k))),
            Table::Services => take(Box::new(self.services.range(from..).map(|(k, _)| k))),
            Table::Deployments => take(Box::new(self.deployments.range(from..).map(|(k, _)| k))),
            Table::SchedulerConfig
            | Table::AutopilotConfig
            | Table::PeriodicLaunches
            | Table::ScalingEvents => Vec::new(),
        }
    }

    /// Allocation counts per task group, and queued placements from the newest evaluation.
    pub fn job_summary(&self, job: &Job) -> JobSummary {
        let mut summary = JobSummary {
            job_id: job.id.clone(),
            namespace: job.namespace.clone(),
            ..Default::default()
        };
        for group in &job.task_groups {
            summary
                .summary
                .insert(group.name.clone(), TaskGroupSummary::default());
        }
        for alloc in self.allocs_by_job(&job.namespace, &job.id) {
            let entry = summary.summary.entry(alloc.task_group.clone()).or_default();
            match alloc.client_status {
                ClientStatus::Pending => entry.starting += 1,
                ClientStatus::Running => entry.running += 1,
                ClientStatus::Complete => entry.complete += 1,
                ClientStatus::Failed => entry.failed += 1,
                ClientStatus::Lost => entry.lost += 1,
                ClientStatus::Unknown => entry.unknown += 1,
            }
        }
        // The newest evaluation a scheduler finished says what is still queued; a blocked one
        // it created (no counts of its own) must not reset that to nothing.
        let newest_eval = self
            .evals_by_job(&job.namespace, &job.id)
            .into_iter()
            .filter(|e| !e.queued_allocations.is_empty())
            .max_by_key(|e| e.create_index);
        if let Some(eval) = newest_eval {
            for (group, queued) in &eval.queued_allocations {
                summary.summary.entry(group.clone()).or_default().queued = *queued;
            }
        }
        if job.is_parent() {
            let mut children = crate::model::JobChildrenSummary::default();
            for child in self.children(&job.namespace, &job.id) {
                match child.status {
                    JobStatus::Pending => children.pending += 1,
                    JobStatus::Running => children.running += 1,
                    JobStatus::Dead => children.dead += 1,
                }
            }
            summary.children = Some(children);
        }
        summary
    }

    // ---- the transition function ----

    /// Applies one committed command at Raft log `index`. Pure: the same (state, index, command)
    /// always yields the same result.
    ///
    /// Panics if `index` is not past the last one applied: Raft hands each entry over once, in
    /// log order, so an index that does not grow is a log replayed twice or out of order, and
    /// applying it would give this server a state no other server has.
    pub fn apply(&mut self, index: u64, command: &Command) -> (CommandResponse, ApplyEffects) {
        self.assert_index_grows(index);
        let mut effects = ApplyEffects::default();
        let mut response = CommandResponse {
            index,
            ..Default::default()
        };
        let result = match command {
            Command::JobRegister {
                job,
                eval,
                now,
                enforce_index,
                tracked_versions,
            } => {
                if let Some(limit) = tracked_versions {
                    self.set_job_tracked_versions(*limit);
                }
                self.apply_job_register(
                    index,
                    job,
                    eval.as_ref(),
                    *now,
                    *enforce_index,
                    &mut effects,
                )
            }
            Command::JobDeregister {
                namespace,
                job_id,
                purge,
                eval,
                now,
            } => self.apply_job_deregister(
                index,
                namespace,
                job_id,
                *purge,
                eval.as_ref(),
                *now,
                &mut effects,
            ),
            Command::NodeRegister { node, now } => {
                self.apply_node_register(index, node, *now, &mut effects);
                Ok(0)
            }
            Command::NodeRegisterWithEvals { node, evals, now } => {
                self.apply_node_register(index, node, *now, &mut effects);
                for eval in evals {
                    self.upsert_eval(index, eval, *now, &mut effects);
                }
                Ok(0)
            }
            Command::NodeUpdateStatus {
                node_id,
                status,
                evals,
                now,
            } => self.apply_node_status(index, node_id, *status, evals, *now, &mut effects),
            Command::AllocClientUpdate {
                updates,
                evals,
                now,
            } => self.apply_alloc_client_update(index, updates, evals, *now, &mut effects),
            Command::PlanApply(result) => self.apply_plan(index, result, &mut effects),
            Command::SchedulerSetConfig { config, cas } => {
                self.apply_scheduler_config(index, config, *cas, &mut response);
                effects.scheduler_config_changed = !response.cas_mismatch;
                Ok(0)
            }
            Command::AutopilotSetConfig { config, cas } => {
                self.apply_autopilot_config(index, config, *cas, &mut response);
                Ok(0)
            }
            Command::RestoreState { snapshot } => self.apply_restore(index, snapshot, &mut effects),
            Command::EvalDelete { eval_ids, now: _ } => {
                effects.deleted_evals = self.delete_evals(index, eval_ids);
                Ok(0)
            }
            Command::EvalUpdate { evals, now } => {
                for eval in evals {
                    self.upsert_eval(index, eval, *now, &mut effects);
                }
                Ok(0)
            }
            Command::AllocUpdateDesiredTransition {
                transitions,
                evals,
                now,
            } => self.apply_desired_transition(index, transitions, evals, *now, &mut effects),
            Command::NodeDrainComplete { node_id, now } => {
                self.complete_node_drain(index, node_id, *now).map(|()| 0)
            }
            Command::NodeUpdateDrain {
                node_id,
                drain_strategy,
                mark_eligible,
                meta,
                evals,
                now,
            } => self.apply_node_drain(
                index,
                node_id,
                drain_strategy.as_ref(),
                *mark_eligible,
                meta,
                evals,
                *now,
                &mut effects,
            ),
            Command::NodeUpdateEligibility {
                node_id,
                eligibility,
                evals,
                now,
            } => {
                self.apply_node_eligibility(index, node_id, eligibility, evals, *now, &mut effects)
            }
            Command::NodeDeregister {
                node_ids,
                force,
                evals,
                now,
            } => self.apply_node_deregister(index, node_ids, *force, evals, *now, &mut effects),
            Command::NodePoolUpsert { pools } => self.apply_node_pool_upsert(index, pools),
            Command::NodePoolDelete { names } => self.apply_node_pool_delete(index, names),
            Command::GarbageCollect {
                jobs,
                eval_ids,
                alloc_ids,
                node_ids,
                deployment_ids,
            } => {
                self.apply_garbage_collect(index, jobs, eval_ids, alloc_ids, node_ids);
                self.remove_deployments(index, deployment_ids);
                Ok(0)
            }
            Command::PeriodicLaunch {
                child,
                eval,
                launch,
                now,
            } => self.apply_periodic_launch(index, child, eval, *launch, *now, &mut effects),
            Command::JobDispatch { child, eval, now } => {
                self.apply_job_dispatch(index, child, eval.as_ref(), *now, &mut effects)
            }
            Command::JobScale {
                namespace,
                job_id,
                group,
                count,
                event,
                eval,
                now,
            } => self.apply_job_scale(
                index,
                namespace,
                job_id,
                group,
                *count,
                event,
                eval.as_ref(),
                *now,
                &mut effects,
            ),
            Command::ServiceRegistrationUpsert { services } => {
                self.apply_service_upsert(index, services)
            }
            Command::DeploymentStatusUpdate {
                update,
                job,
                eval,
                now,
            } => self.apply_deployment_status_update(
                index,
                update,
                job.as_deref(),
                eval.as_ref(),
                *now,
                &mut effects,
            ),
            Command::DeploymentPromote {
                deployment_id,
                all,
                groups,
                eval,
                now,
            } => self.apply_deployment_promote(
                index,
                deployment_id,
                *all,
                groups,
                eval.as_ref(),
                *now,
                &mut effects,
            ),
            Command::DeploymentAllocHealth {
                deployment_id,
                healthy,
                unhealthy,
                update,
                job,
                eval,
                now,
            } => self.apply_deployment_alloc_health(
                index,
                deployment_id,
                healthy,
                unhealthy,
                update.as_ref(),
                job.as_deref(),
                eval.as_ref(),
                *now,
                &mut effects,
            ),
            Command::ServiceRegistrationDelete { ids, alloc_ids } => {
                self.apply_service_delete(index, ids, alloc_ids)
            }
            Command::JobStability {
                namespace,
                job_id,
                version,
                stable,
            } => self.apply_job_stability(index, namespace, job_id, *version, *stable),
            Command::JobVersionTag {
                namespace,
                job_id,
                version,
                name,
                tag,
            } => self.apply_job_version_tag(index, namespace, job_id, *version, name, tag.as_ref()),
        };
        match result {
            Ok(job_modify_index) => response.job_modify_index = job_modify_index,
            Err(e) => response.error = Some(e),
        }
        self.latest_index = index;
        (response, effects)
    }

    /// Records that a Raft entry without a command (a blank or membership entry) was applied
    /// at `index`. Panics, as [`State::apply`] does, if `index` does not grow.
    pub fn note_index(&mut self, index: u64) {
        self.assert_index_grows(index);
        self.latest_index = index;
    }

    /// The state machine's first invariant: the applied index only grows. The one exception is
    /// the very first entry, which openraft numbers 0 (the state starts at 0 too).
    fn assert_index_grows(&self, index: u64) {
        assert!(
            index > self.latest_index || (index == 0 && self.latest_index == 0),
            "raft index {index} applied after index {}: the log must be applied once, in order",
            self.latest_index
        );
    }

    /// Marks `table` changed at `index`. A table's index only grows, like the state's: blocking
    /// queries wait for it to pass the index a reader last saw, and one that went back would
    /// make them miss a change.
    fn touch(&mut self, table: Table, index: u64) {
        let previous = self.table_index(table);
        assert!(
            index >= previous,
            "table {} changed at index {index} after index {previous}",
            table.name()
        );
        self.table_index.insert(table, index);
    }

    /// Stores the autopilot configuration, unless a check-and-set index no longer matches.
    fn apply_scheduler_config(
        &mut self,
        index: u64,
        config: &crate::model::SchedulerConfiguration,
        cas: Option<u64>,
        response: &mut CommandResponse,
    ) {
        if cas.is_some_and(|expected| expected != self.scheduler_config.modify_index) {
            response.cas_mismatch = true;
            return;
        }
        let mut config = config.clone();
        config.create_index = if self.scheduler_config.create_index == 0 {
            index
        } else {
            self.scheduler_config.create_index
        };
        config.modify_index = index;
        self.scheduler_config = Arc::new(config);
        self.touch(Table::SchedulerConfig, index);
    }

    /// Removes evaluations the operator deleted; ids no longer held are skipped.
    fn delete_evals(&mut self, index: u64, eval_ids: &[String]) -> Vec<String> {
        let mut deleted = Vec::new();
        for id in eval_ids {
            let Some(eval) = self.evals.remove(id) else {
                continue;
            };
            let k = key(&eval.namespace, &eval.job_id);
            if let Some(set) = self.evals_by_job.get_mut(&k) {
                set.remove(id);
                if set.is_empty() {
                    self.evals_by_job.remove(&k);
                }
            }
            deleted.push(id.clone());
        }
        if !deleted.is_empty() {
            self.touch(Table::Evals, index);
        }
        deleted
    }

    /// Why deleting `eval` could leave the state inconsistent, or `None` when it is safe
    /// (Nomad's rule): its job is gone, stopped or dead; or none of the job's allocations from
    /// this evaluation may still run (running or unknown), and a failed one that may be
    /// rescheduled already has its replacement (the replacement carries the reschedule
    /// tracking forward).
    pub fn eval_delete_unsafe(&self, eval: &Evaluation) -> Option<String> {
        let job = self.job(&eval.namespace, &eval.job_id)?;
        if job.stop || job.status == crate::model::JobStatus::Dead {
            return None;
        }
        for alloc in self.allocs_by_job(&eval.namespace, &eval.job_id) {
            if alloc.eval_id != eval.id {
                continue;
            }
            use crate::model::ClientStatus;
            match alloc.client_status {
                ClientStatus::Running | ClientStatus::Unknown => {
                    return Some(format!(
                        "allocation {} it placed is {}",
                        alloc.id,
                        alloc.client_status.as_str()
                    ))
                }
                ClientStatus::Failed => {}
                _ => continue,
            }
            let may_reschedule = job
                .task_groups
                .iter()
                .find(|g| g.name == alloc.task_group)
                .and_then(|g| g.reschedule_policy.as_ref())
                .is_some_and(|r| r.unlimited == Some(true) || r.attempts.unwrap_or(0) > 0);
            if may_reschedule && alloc.next_allocation.is_empty() {
                return Some(format!(
                    "allocation {} it placed failed and has not been rescheduled yet",
                    alloc.id
                ));
            }
        }
        None
    }

    fn apply_autopilot_config(
        &mut self,
        index: u64,
        config: &crate::model::AutopilotConfiguration,
        cas: Option<u64>,
        response: &mut CommandResponse,
    ) {
        if let Some(expected) = cas {
            if expected != self.autopilot_config.modify_index {
                response.cas_mismatch = true;
                return;
            }
        }
        let mut config = config.clone();
        config.create_index = if self.autopilot_config.create_index == 0 {
            index
        } else {
            self.autopilot_config.create_index
        };
        config.modify_index = index;
        self.autopilot_config = Arc::new(config);
        self.touch(Table::AutopilotConfig, index);
    }

    /// Replaces the whole state by a snapshot's, at `index`. Every table is marked changed at
    /// `index`, so blocking queries wake and no table index goes back; an object whose indexes
    /// are past `index` (a snapshot of a longer-lived cluster restored onto a young one) has
    /// them lowered to `index`, since nothing in this state may claim a change it has not
    /// applied yet. Refused, with nothing changed, if the snapshot does not read back.
    fn apply_restore(
        &mut self,
        index: u64,
        snapshot: &SnapshotFile,
        effects: &mut ApplyEffects,
    ) -> Result<u64, String> {
        let mut file = snapshot.clone();
        lower_indexes(&mut file, index);
        let mut restored =
            State::from_snapshot(file).map_err(|e| format!("snapshot not restored: {e}"))?;
        // Every table changed here, whatever the snapshot says of its own tables: watchers
        // wake, and no table index goes back (the previous state's are all below `index`).
        restored.table_index = OrdMap::new();
        for table in Table::ALL {
            restored.touch(table, index);
        }
        restored.latest_index = self.latest_index;
        for eval in restored.evals.values() {
            match eval.status {
                EvalStatus::Pending => effects.pending_evals.push((**eval).clone()),
                EvalStatus::Blocked => effects.blocked_evals.push((**eval).clone()),
                _ => {}
            }
        }
        effects.capacity_changed = true;
        effects.scheduler_config_changed = true;
        effects.state_replaced = true;
        *self = restored;
        Ok(0)
    }

    fn apply_job_register(
        &mut self,
        index: u64,
        job: &Job,
        eval: Option<&Evaluation>,
        now: i64,
        enforce_index: Option<u64>,
        effects: &mut ApplyEffects,
    ) -> Result<u64, String> {
        let k = key(&job.namespace, &job.id);
        if let Some(expected) = enforce_index {
            // Here, not only at the API: two submitters that both read index N race to this
            // point, and only the first entry applied still finds N.
            let current = self.jobs.get(&k).map(|j| j.job_modify_index).unwrap_or(0);
            check_enforce_index(&job.id, expected, current)?;
        }
        let mut new = job.clone();
        new.stop = job.stop;
        // A tag names one stored version; a new version starts without one (a resubmitted
        // `job inspect` output would otherwise carry the old version's tag, twice).
        new.version_tag = None;
        match self.jobs.get(&k) {
            Some(existing) if same_spec(existing, job) => {
                // Nothing changed: keep the version; the evaluation still runs (it may heal
                // allocations that were lost), as Nomad does.
                new = (**existing).clone();
            }
            Some(existing) => {
                new.create_index = existing.create_index;
                new.version = existing.version + 1;
                new.modify_index = index;
                new.job_modify_index = index;
                new.submit_time = now;
                new.stable = false;
            }
            None => {
                new.create_index = index;
                new.version = 0;
                new.modify_index = index;
                new.job_modify_index = index;
                new.submit_time = now;
                new.stable = false;
            }
        }
        let job_modify_index = new.job_modify_index;
        let previous = self.jobs.get(&k).cloned();
        self.note_periodic_registered(index, previous.as_deref(), &new, now);
        self.store_job(index, new);
        if let Some(eval) = eval {
            let mut eval = eval.clone();
            eval.job_modify_index = job_modify_index;
            self.upsert_eval(index, &eval, now, effects);
        }
        self.refresh_job_status(index, &k);
        Ok(job_modify_index)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_job_deregister(
        &mut self,
        index: u64,
        namespace: &str,
        job_id: &str,
        purge: bool,
        eval: Option<&Evaluation>,
        now: i64,
        effects: &mut ApplyEffects,
    ) -> Result<u64, String> {
        let k = key(namespace, job_id);
        let Some(existing) = self.jobs.get(&k).cloned() else {
            return Err(format!(
                "job {job_id:?} not found in namespace {namespace:?}"
            ));
        };
        let job_modify_index;
        if purge {
            self.jobs.remove(&k);
            let versions: Vec<_> = self
                .job_versions
                .range((k.clone(), 0)..=(k.clone(), u64::MAX))
                .map(|(vk, _)| vk.clone())
                .collect();
            for vk in versions {
                self.job_versions.remove(&vk);
            }
            self.touch(Table::Jobs, index);
            self.touch(Table::JobVersions, index);
            self.forget_job_extras(index, &k);
            self.forget_job_deployments(index, namespace, job_id);
            job_modify_index = index;
        } else {
            let mut stopped = (*existing).clone();
            if !stopped.stop {
                stopped.stop = true;
                stopped.version = existing.version + 1;
                stopped.job_modify_index = index;
                stopped.submit_time = now;
                stopped.stable = false;
            }
            stopped.modify_index = index;
            job_modify_index = stopped.job_modify_index;
            self.store_job(index, stopped);
        }
        if let Some(eval) = eval {
            let mut eval = eval.clone();
            eval.job_modify_index = job_modify_index;
            self.upsert_eval(index, &eval, now, effects);
        }
        if !purge {
            self.refresh_job_status(index, &k);
        }
        Ok(job_modify_index)
    }

    fn store_job(&mut self, index: u64, job: Job) {
        let k = key(&job.namespace, &job.id);
        let version = job.version;
        let job = Arc::new(job);
        self.jobs.insert(k.clone(), job.clone());
        self.job_versions.insert((k.clone(), version), job);
        self.prune_job_versions(&k);
        self.touch(Table::Jobs, index);
        self.touch(Table::JobVersions, index);
    }

    /// Capacity changed on `node_id`: blocked evaluations that may fit its class are retried.
    pub(crate) fn capacity_on_node(&self, node_id: &str, effects: &mut ApplyEffects) {
        effects.capacity_changed = true;
        if let Some(node) = self.nodes.get(node_id) {
            effects.unblock_classes.insert(node.computed_class.clone());
        }
    }

    fn upsert_eval(&mut self, index: u64, eval: &Evaluation, now: i64, effects: &mut ApplyEffects) {
        let mut eval = eval.clone();
        match self.evals.get(&eval.id) {
            Some(existing) => {
                eval.create_index = existing.create_index;
                eval.create_time = existing.create_time;
            }
            None => {
                eval.create_index = index;
                eval.create_time = now;
            }
        }
        eval.modify_index = index;
        eval.modify_time = now;
        let k = key(&eval.namespace, &eval.job_id);
        match eval.status {
            EvalStatus::Pending => effects.pending_evals.push(eval.clone()),
            EvalStatus::Blocked => effects.blocked_evals.push(eval.clone()),
            _ => {}
        }
        self.evals_by_job
            .entry(k.clone())
            .or_default()
            .insert(eval.id.clone());
        self.evals.insert(eval.id.clone(), Arc::new(eval));
        self.touch(Table::Evals, index);
        self.refresh_job_status(index, &k);
    }

    fn apply_node_status(
        &mut self,
        index: u64,
        node_id: &str,
        status: NodeStatus,
        evals: &[Evaluation],
        now: i64,
        effects: &mut ApplyEffects,
    ) -> Result<u64, String> {
        let Some(existing) = self.nodes.get(node_id) else {
            return Err(format!("node {node_id:?} not found"));
        };
        let mut node = (**existing).clone();
        use crate::model::{node_event_message as message, node_event_subsystem as subsystem};
        let event = match (node.status, status) {
            (NodeStatus::Ready, NodeStatus::Down | NodeStatus::Disconnected) => {
                Some((subsystem::HEARTBEAT, message::HEARTBEAT_MISSED))
            }
            (NodeStatus::Down | NodeStatus::Disconnected, NodeStatus::Ready) => {
                Some((subsystem::CLUSTER, message::REREGISTERED_BY_HEARTBEAT))
            }
            _ => None,
        };
        if let Some((subsystem, message)) = event {
            let mut event = crate::model::NodeEvent::new(subsystem, message, now);
            event.create_index = index;
            crate::model::push_node_event(&mut node, event);
        }
        node.status = status;
        node.modify_index = index;
        node.status_updated_at = now / 1_000_000_000;
        self.nodes.insert(node.id.clone(), Arc::new(node));
        self.touch(Table::Nodes, index);
        if status == NodeStatus::Down {
            // A down node's instances answer nobody: out of the catalog (and DNS) now,
            // not when its allocations are replaced.
            self.remove_node_services(index, node_id);
        }
        self.capacity_on_node(node_id, effects);
        for eval in evals {
            self.upsert_eval(index, eval, now, effects);
        }
        Ok(0)
    }

    fn apply_alloc_client_update(
        &mut self,
        index: u64,
        updates: &[crate::model::AllocClientUpdate],
        evals: &[Evaluation],
        now: i64,
        effects: &mut ApplyEffects,
    ) -> Result<u64, String> {
        let mut missing = Vec::new();
        let mut illegal = Vec::new();
        for update in updates {
            let Some(existing) = self.allocs.get(&update.id).cloned() else {
                missing.push(update.id.clone());
                continue;
            };
            // What a client reports is input: a status change the table refuses (a finished
            // allocation said to run again) is left out, and the proposer told, never
            // asserted. The server filters these before proposing; one can still get here
            // when two reports about the same allocation race.
            if let Err(e) = existing
                .client_status
                .check_transition(update.client_status)
            {
                illegal.push(format!("{}: {e}", update.id));
                continue;
            }
            let mut alloc = (*existing).clone();
            let was_terminal = alloc.client_status.is_terminal();
            alloc.client_status = update.client_status;
            alloc.client_description = update.client_description.clone();
            alloc.task_states = update.task_states.clone();
            if let Some(health) = &update.deployment_status {
                // A client that says nothing of health (an older one) leaves what was known.
                let mut health = health.clone();
                health.modify_index = index;
                // Whether it is a canary is the servers' word (placed as one, cleared by
                // promotion), not the client's: a report sent before a promotion arrives
                // must neither clear nor restore it.
                health.canary = alloc.deployment_status.as_ref().is_some_and(|s| s.canary);
                alloc.deployment_status = Some(health);
            }
            if let Some(status) = &update.network_status {
                // Kept as the client sent it; a report without one (an older client, or
                // one that has not set the network up yet) leaves what was known.
                alloc.network_status = Some(status.clone());
            }
            alloc.modify_index = index;
            alloc.modify_time = now;
            self.note_alloc_in_deployment(index, Some(existing.as_ref()), &mut alloc);
            if !was_terminal && alloc.client_status.is_terminal() {
                self.capacity_on_node(&alloc.node_id, effects);
            }
            let k = key(&alloc.namespace, &alloc.job_id);
            let finished = alloc.client_status.is_terminal().then(|| alloc.id.clone());
            self.allocs.insert(alloc.id.clone(), Arc::new(alloc));
            if let Some(id) = finished {
                self.remove_alloc_services(index, &id);
            }
            self.refresh_job_status(index, &k);
        }
        self.touch(Table::Allocs, index);
        for eval in evals {
            self.upsert_eval(index, eval, now, effects);
        }
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!("unknown allocations: {}", missing.join(", ")));
        }
        if !illegal.is_empty() {
            problems.push(format!("status changes refused: {}", illegal.join("; ")));
        }
        if problems.is_empty() {
            Ok(0)
        } else {
            Err(problems.join("; "))
        }
    }

    /// Writes what the plan applier accepted of a plan. Refused whole, with nothing written, if
    /// it would overcommit a node ([`State::check_plan`]).
    fn apply_plan(
        &mut self,
        index: u64,
        result: &PlanResult,
        effects: &mut ApplyEffects,
    ) -> Result<u64, String> {
        self.check_plan(result).map_err(|e| e.to_string())?;
        let now = result.now;
        // The deployment first, so the placements below count in it; then the status changes
        // the plan asks for (a deployment of an older version cancelled), each only while that
        // deployment is still active (a plan from an older snapshot may name one that ended).
        if let Some(deployment) = &result.deployment {
            self.upsert_deployment(index, deployment, now);
        }
        for update in &result.deployment_updates {
            if self.check_deployment_update(update).is_ok() {
                self.write_deployment_status(index, update);
            }
        }
        let mut touched_jobs = Vec::new();
        for stop in &result.stops {
            touched_jobs.push(self.write_stop(index, stop, now));
        }
        for p in &result.preemptions {
            let stop = AllocStop {
                alloc_id: p.alloc_id.clone(),
                desired_status: DesiredStatus::Evict,
                desired_description: p.description(),
                client_status: None,
            };
            touched_jobs.push(self.write_stop(index, &stop, now));
            self.mark_preempted_by(&p.alloc_id, &p.preempted_by_allocation);
        }
        for alloc in &result.allocs {
            touched_jobs.push(self.write_placement(index, alloc, result.job.as_ref(), now));
        }
        if !result.stops.is_empty() || !result.allocs.is_empty() {
            self.touch(Table::Allocs, index);
        }
        let freed = result
            .stops
            .iter()
            .map(|s| &s.alloc_id)
            .chain(result.preemptions.iter().map(|p| &p.alloc_id));
        for alloc_id in freed {
            if let Some(alloc) = self.allocs.get(alloc_id) {
                let node_id = alloc.node_id.clone();
                self.capacity_on_node(&node_id, effects);
            }
        }
        for eval in &result.created_evals {
            self.upsert_eval(index, eval, now, effects);
        }
        if let Some(eval) = &result.eval {
            self.upsert_eval(index, eval, now, effects);
        }
        touched_jobs.sort();
        touched_jobs.dedup();
        for k in touched_jobs {
            self.refresh_job_status(index, &k);
        }
        self.debug_assert_plan_fits(result);
        Ok(0)
    }

    /// Marks one allocation stopped; returns its job.
    fn write_stop(&mut self, index: u64, stop: &AllocStop, now: i64) -> JobKey {
        // A stop names an allocation a scheduler read from the state, and allocations are
        // never removed from it: an unknown one is a bug in whoever built the plan.
        let Some(existing) = self.allocs.get(&stop.alloc_id) else {
            panic!(
                "a plan stops allocation {:?}, which the state does not hold",
                stop.alloc_id
            );
        };
        let mut alloc = (**existing).clone();
        alloc.desired_status = stop.desired_status;
        alloc.desired_description = stop.desired_description.clone();
        if let Some(status) = stop.client_status {
            // Only a status the table allows (a plan marks a live allocation lost; one that
            // finished meanwhile keeps what its client reported).
            if alloc.client_status.can_become(status) {
                alloc.client_status = status;
            }
        }
        alloc.modify_index = index;
        alloc.alloc_modify_index = index;
        alloc.modify_time = now;
        let k = key(&alloc.namespace, &alloc.job_id);
        let finished = alloc.client_status.is_terminal().then(|| alloc.id.clone());
        self.allocs.insert(alloc.id.clone(), Arc::new(alloc));
        if let Some(id) = finished {
            self.remove_alloc_services(index, &id);
        }
        k
    }

    /// Records which placement evicted an allocation (just written by [`State::write_stop`]).
    fn mark_preempted_by(&mut self, alloc_id: &str, by: &str) {
        if let Some(existing) = self.allocs.get(alloc_id) {
            let mut alloc = (**existing).clone();
            alloc.preempted_by_allocation = by.to_string();
            self.allocs.insert(alloc.id.clone(), Arc::new(alloc));
        }
    }

    /// Writes one new or updated allocation and indexes it; returns its job.
    /// Writes one placement or in-place update; `plan_job` is the plan's job version, which an
    /// allocation without one of its own runs (a normalized plan result).
    fn write_placement(
        &mut self,
        index: u64,
        placed: &Allocation,
        plan_job: Option<&Arc<Job>>,
        now: i64,
    ) -> JobKey {
        let mut alloc = placed.clone();
        if alloc.job.is_none() {
            alloc.job = plan_job.cloned();
        }
        match self.allocs.get(&alloc.id) {
            Some(existing) => {
                // An update in place keeps its node and job: the indexes below only ever add
                // an id, so an allocation that moved would stay listed where it was.
                assert!(
                    existing.node_id == alloc.node_id
                        && existing.namespace == alloc.namespace
                        && existing.job_id == alloc.job_id,
                    "a plan moves allocation {:?} from node {:?} job {:?} to node {:?} job {:?}",
                    alloc.id,
                    existing.node_id,
                    existing.job_id,
                    alloc.node_id,
                    alloc.job_id
                );
                alloc.create_index = existing.create_index;
                alloc.create_time = existing.create_time;
                // The client owns these; a plan never rolls them back. One exception: the
                // servers mark a live allocation `unknown` when its node is disconnected (its
                // client cannot report), and only then — a plan decided before the node came
                // back must not overwrite what the reconnected client said.
                let disconnected = self.nodes.get(&alloc.node_id).is_some_and(|n| {
                    matches!(n.status, NodeStatus::Disconnected | NodeStatus::Down)
                });
                let mark_unknown = placed.client_status == ClientStatus::Unknown
                    && disconnected
                    && !existing.client_status.is_terminal();
                if !mark_unknown {
                    alloc.client_status = existing.client_status;
                    alloc.client_description = existing.client_description.clone();
                }
                alloc.task_states = existing.task_states.clone();
                // Health belongs to the client, within one deployment; an in-place update that
                // moves the allocation into a new deployment starts with what the plan says.
                if alloc.deployment_id == existing.deployment_id {
                    alloc.deployment_status = existing.deployment_status.clone();
                }
                alloc.network_status = existing.network_status.clone();
                // The drainer owns this; a plan from an older snapshot must not undo a
                // migration it marked since.
                alloc.desired_transition = existing.desired_transition.clone();
                alloc.next_allocation = existing.next_allocation.clone();
            }
            None => {
                // A new allocation is as the scheduler makes it: wanted running, nothing
                // reported by a client yet. Anything else would skip the client's transitions.
                assert!(
                    alloc.desired_status == DesiredStatus::Run
                        && alloc.client_status == ClientStatus::Pending,
                    "a plan creates allocation {:?} as {}/{}, not run/pending",
                    alloc.id,
                    alloc.desired_status.as_str(),
                    alloc.client_status.as_str()
                );
                alloc.create_index = index;
                alloc.create_time = now;
                self.link_replacement(index, &alloc, now);
            }
        }
        alloc.modify_index = index;
        alloc.alloc_modify_index = index;
        alloc.modify_time = now;
        let old = self.allocs.get(&alloc.id).cloned();
        self.note_alloc_in_deployment(index, old.as_deref(), &mut alloc);
        let k = key(&alloc.namespace, &alloc.job_id);
        self.allocs_by_job
            .entry(k.clone())
            .or_default()
            .insert(alloc.id.clone());
        self.allocs_by_node
            .entry(alloc.node_id.clone())
            .or_default()
            .insert(alloc.id.clone());
        self.allocs.insert(alloc.id.clone(), Arc::new(alloc));
        k
    }

    /// A new allocation that replaces another: the replaced one names it as its
    /// `NextAllocation`, so the chain can be followed both ways (a reconnecting client's
    /// allocation finds its replacement).
    fn link_replacement(&mut self, index: u64, placed: &Allocation, now: i64) {
        if placed.previous_allocation.is_empty() {
            return;
        }
        if let Some(previous) = self.allocs.get(&placed.previous_allocation) {
            let mut previous = (**previous).clone();
            previous.next_allocation = placed.id.clone();
            previous.modify_index = index;
            previous.modify_time = now;
            self.allocs.insert(previous.id.clone(), Arc::new(previous));
        }
    }

    /// Recomputes a job's status from its allocations and evaluations (Nomad's rules).
    fn refresh_job_status(&mut self, index: u64, k: &JobKey) {
        let Some(job) = self.jobs.get(k).cloned() else {
            return;
        };
        let status = self.compute_job_status(&job);
        if status != job.status {
            let mut updated = (*job).clone();
            updated.status = status;
            updated.modify_index = index;
            let updated = Arc::new(updated);
            self.jobs.insert(k.clone(), updated.clone());
            self.job_versions
                .insert((k.clone(), updated.version), updated);
            self.touch(Table::Jobs, index);
        }
    }

    fn compute_job_status(&self, job: &Job) -> JobStatus {
        // A periodic or parameterized parent is never scheduled itself: it runs (launches
        // or waits for dispatches) until stopped, as in Nomad.
        if job.is_parent() {
            return if job.stop {
                JobStatus::Dead
            } else {
                JobStatus::Running
            };
        }
        if job.job_type == JobType::System {
            return if job.stop {
                JobStatus::Dead
            } else {
                JobStatus::Running
            };
        }
        let allocs = self.allocs_by_job(&job.namespace, &job.id);
        if allocs.iter().any(|a| !a.is_terminal()) {
            return JobStatus::Running;
        }
        let evals = self.evals_by_job(&job.namespace, &job.id);
        if evals.iter().any(|e| !e.status.is_terminal()) {
            return JobStatus::Pending;
        }
        if !allocs.is_empty() || !evals.is_empty() {
            return JobStatus::Dead;
        }
        JobStatus::Pending
    }

    // ---- snapshots ----

    /// The state as a snapshot file (the deliberate, versioned on-disk form).
    pub fn to_snapshot(&self) -> SnapshotFile {
        SnapshotFile {
            format_version: SNAPSHOT_FORMAT_VERSION,
            latest_index: self.latest_index,
            table_index: self
                .table_index
                .iter()
                .map(|(t, i)| (t.name().to_string(), *i))
                .collect(),
            jobs: self.jobs.values().map(|j| (**j).clone()).collect(),
            job_versions: self.job_versions.values().map(|j| (**j).clone()).collect(),
            evals: self.evals.values().map(|e| (**e).clone()).collect(),
            allocs: self.allocs.values().map(|a| (**a).clone()).collect(),
            nodes: self.nodes.values().map(|n| (**n).clone()).collect(),
            node_pools: self.node_pools.values().map(|p| (**p).clone()).collect(),
            scheduler_config: Some((*self.scheduler_config).clone()),
            autopilot_config: Some((*self.autopilot_config).clone()),
            periodic_launches: self
                .periodic_launches
                .values()
                .map(|l| (**l).clone())
                .collect(),
            scaling_events: self
                .scaling_events
                .values()
                .map(|e| (**e).clone())
                .collect(),
            service_registrations: self.services.values().map(|r| (**r).clone()).collect(),
            deployments: self.deployments.values().map(|d| (**d).clone()).collect(),
            job_tracked_versions: self.job_tracked_versions,
        }
    }

    /// Rebuilds a state (and its secondary indexes) from a snapshot file.
    pub fn from_snapshot(file: SnapshotFile) -> Result<State, String> {
        if file.format_version != SNAPSHOT_FORMAT_VERSION {
            return Err(format!(
                "snapshot format {} is not supported (this build reads format {})",
                file.format_version, SNAPSHOT_FORMAT_VERSION
            ));
        }
        let mut state = State {
            latest_index: file.latest_index,
            job_tracked_versions: file.job_tracked_versions,
            ..Default::default()
        };
        for (name, index) in file.table_index {
            let table = Table::from_name(&name)
                .ok_or_else(|| format!("snapshot names an unknown table {name:?}"))?;
            state.table_index.insert(table, index);
        }
        for job in file.job_versions {
            let k = key(&job.namespace, &job.id);
            state.job_versions.insert((k, job.version), Arc::new(job));
        }
        for job in file.jobs {
            state
                .jobs
                .insert(key(&job.namespace, &job.id), Arc::new(job));
        }
        for eval in file.evals {
            let k = key(&eval.namespace, &eval.job_id);
            state
                .evals_by_job
                .entry(k)
                .or_default()
                .insert(eval.id.clone());
            state.evals.insert(eval.id.clone(), Arc::new(eval));
        }
        for alloc in file.allocs {
            let k = key(&alloc.namespace, &alloc.job_id);
            state
                .allocs_by_job
                .entry(k)
                .or_default()
                .insert(alloc.id.clone());
            state
                .allocs_by_node
                .entry(alloc.node_id.clone())
                .or_default()
                .insert(alloc.id.clone());
            state.allocs.insert(alloc.id.clone(), Arc::new(alloc));
        }
        for node in file.nodes {
            state.nodes.insert(node.id.clone(), Arc::new(node));
        }
        for pool in file.node_pools {
            state.node_pools.insert(pool.name.clone(), Arc::new(pool));
        }
        if let Some(config) = file.scheduler_config {
            state.scheduler_config = Arc::new(config);
        }
        if let Some(config) = file.autopilot_config {
            state.autopilot_config = Arc::new(config);
        }
        for launch in file.periodic_launches {
            state
                .periodic_launches
                .insert(key(&launch.namespace, &launch.id), Arc::new(launch));
        }
        for events in file.scaling_events {
            state
                .scaling_events
                .insert(key(&events.namespace, &events.job_id), Arc::new(events));
        }
        for service in file.service_registrations {
            state.index_service(&service);
            state.services.insert(service.id.clone(), Arc::new(service));
        }
        for deployment in file.deployments {
            state.index_deployment(deployment);
        }
        state.check_indexes()?;
        Ok(state)
    }

    /// What [`State::apply`] guarantees of the indexes it writes, checked on a state read back
    /// from a snapshot (from disk, or sent by a leader): no table and no object changed after
    /// the index the state says it is at. A snapshot that breaks this is damaged or was not
    /// written by this state machine; building on it would answer blocking queries wrongly.
    fn check_indexes(&self) -> Result<(), String> {
        let latest = self.latest_index;
        let beyond = |what: String, index: u64| {
            Err(format!(
                "snapshot is at index {latest} but {what} changed at index {index}"
            ))
        };
        for (table, index) in &self.table_index {
            if *index > latest {
                return beyond(format!("table {}", table.name()), *index);
            }
        }
        for ((ns, id), job) in &self.jobs {
            if job.modify_index > latest {
                return beyond(format!("job {id:?} in namespace {ns:?}"), job.modify_index);
            }
        }
        for (id, eval) in &self.evals {
            if eval.modify_index > latest {
                return beyond(format!("evaluation {id}"), eval.modify_index);
            }
        }
        for (id, alloc) in &self.allocs {
            if alloc.modify_index > latest {
                return beyond(format!("allocation {id}"), alloc.modify_index);
            }
            if alloc.create_index > alloc.modify_index {
                return Err(format!(
                    "snapshot holds allocation {id} created at index {} after its last change at {}",
                    alloc.create_index, alloc.modify_index
                ));
            }
        }
        for (id, node) in &self.nodes {
            if node.modify_index > latest {
                return beyond(format!("node {id}"), node.modify_index);
            }
        }
        for (name, pool) in &self.node_pools {
            if pool.modify_index > latest {
                return beyond(format!("node pool {name:?}"), pool.modify_index);
            }
        }
        for (id, service) in &self.services {
            if service.modify_index > latest {
                return beyond(format!("service registration {id}"), service.modify_index);
            }
        }
        for (id, deployment) in &self.deployments {
            if deployment.modify_index > latest {
                return beyond(format!("deployment {id}"), deployment.modify_index);
            }
        }
        Ok(())
    }
}

/// Lowers every index in `file` above `max` to `max` (see [`State::apply_restore`]). An
/// object's create index stays at or below its modify index, since both are lowered alike.
fn lower_indexes(file: &mut SnapshotFile, max: u64) {
    let low = |i: &mut u64| *i = (*i).min(max);
    file.latest_index = file.latest_index.min(max);
    file.table_index.values_mut().for_each(low);
    for job in file.jobs.iter_mut().chain(file.job_versions.iter_mut()) {
        low(&mut job.create_index);
        low(&mut job.modify_index);
        low(&mut job.job_modify_index);
    }
    for eval in &mut file.evals {
        low(&mut eval.create_index);
        low(&mut eval.modify_index);
        low(&mut eval.job_modify_index);
        low(&mut eval.snapshot_index);
    }
    for alloc in &mut file.allocs {
        low(&mut alloc.create_index);
        low(&mut alloc.modify_index);
        low(&mut alloc.alloc_modify_index);
    }
    for node in &mut file.nodes {
        low(&mut node.create_index);
        low(&mut node.modify_index);
        for event in &mut node.events {
            low(&mut event.create_index);
        }
    }
    for pool in &mut file.node_pools {
        low(&mut pool.create_index);
        low(&mut pool.modify_index);
    }
    if let Some(c) = &mut file.scheduler_config {
        low(&mut c.create_index);
        low(&mut c.modify_index);
    }
    if let Some(c) = &mut file.autopilot_config {
        low(&mut c.create_index);
        low(&mut c.modify_index);
    }
    for l in &mut file.periodic_launches {
        low(&mut l.create_index);
        low(&mut l.modify_index);
    }
    for e in &mut file.scaling_events {
        low(&mut e.modify_index);
        for event in e.scaling_events.values_mut().flatten() {
            low(&mut event.create_index);
        }
    }
    for r in &mut file.service_registrations {
        low(&mut r.create_index);
        low(&mut r.modify_index);
    }
    for d in &mut file.deployments {
        low(&mut d.create_index);
        low(&mut d.modify_index);
        low(&mut d.job_modify_index);
        low(&mut d.job_spec_modify_index);
        low(&mut d.job_create_index);
    }
}

/// Whether two versions of a job describe the same thing (ignoring what the servers own: an
/// unchanged resubmission writes no version and starts no deployment).
pub fn same_spec(a: &Job, b: &Job) -> bool {
    let strip = |j: &Job| Job {
        status: JobStatus::Pending,
        status_description: String::new(),
        stable: false,
        version_tag: None,
        version: 0,
        submit_time: 0,
        create_index: 0,
        modify_index: 0,
        job_modify_index: 0,
        ..j.clone()
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod archive_tests;
#[cfg(test)]
mod nodes_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod versions_tests;
