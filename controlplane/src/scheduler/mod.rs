//! The scheduler: `(state snapshot, evaluation) → plan`, a pure function.
//!
//! One run reconciles what a job wants with what exists (which allocations to keep, update in
//! place, replace, stop or add), then places new allocations: filter the nodes that can run the
//! group at all (feasibility), keep those it fits on, and rank them (bin-packing). Clock and id
//! generation come in through [`SchedulerEnv`], so a run is reproducible in tests and simulation.
//!
//! Owns placement decisions only. It must not commit anything: the plan applier re-checks every
//! plan against the newest state and commits what still fits.

mod feasible;
mod plan;
mod rank;
pub mod tainted;
mod triage;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub use feasible::glob_match;
pub use plan::Plan;
pub use tainted::missed_heartbeat_status;

use crate::model::{
    trigger, AllocMetric, AllocatedCpuResources, AllocatedMemoryResources, AllocatedResources,
    AllocatedTaskResources, Allocation, ClientStatus, ComparableResources, DesiredStatus,
    EvalStatus, Evaluation, Job, JobType, Node, NodeStatus, TaskGroup,
};
use crate::state::{AllocStop, State};

/// What a scheduler run may ask of the world: the time and fresh ids.
pub trait SchedulerEnv {
    fn now_unix_nanos(&mut self) -> i64;
    fn new_id(&mut self) -> String;
}

/// The real environment: the system clock and random UUIDs.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemEnv;

impl SchedulerEnv for SystemEnv {
    fn now_unix_nanos(&mut self) -> i64 {
        crate::model::now_unix_nanos()
    }
    fn new_id(&mut self) -> String {
        crate::model::new_id()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchedulerError {
    #[error("job {job:?} is of type {job_type:?}, which this scheduler cannot place yet (service and batch are supported)")]
    UnsupportedJobType { job: String, job_type: String },
}

pub const DESC_JOB_STOPPED: &str = "alloc not needed since job was stopped";
pub const DESC_JOB_UPDATED: &str = "alloc is being updated due to job update";
pub const DESC_NOT_NEEDED: &str = "alloc not needed due to job update";
pub const DESC_GROUP_REMOVED: &str = "alloc not needed since its task group was removed";

/// Runs the scheduler for one evaluation against one consistent state.
pub fn schedule(
    state: &State,
    eval: &Evaluation,
    env: &mut dyn SchedulerEnv,
) -> Result<Plan, SchedulerError> {
    let mut run = Run::new(state, eval, env.now_unix_nanos());
    let job = state.job(&eval.namespace, &eval.job_id);
    match &job {
        Some(job) if !job.stop => {
            if matches!(job.job_type, JobType::System | JobType::Sysbatch) {
                return Err(SchedulerError::UnsupportedJobType {
                    job: job.id.clone(),
                    job_type: job.job_type.as_str().to_string(),
                });
            }
            run.plan.priority = job.priority;
            run.plan.all_at_once = job.all_at_once;
            run.reconcile(job.clone(), env);
        }
        _ => run.stop_everything(),
    }
    Ok(run.finish(env))
}

/// One scheduler run's working state.
struct Run<'a> {
    state: &'a State,
    plan: Plan,
    allocs: Vec<Arc<Allocation>>,
    /// Resources in use per node, counting this plan's own placements and stops.
    usage: BTreeMap<String, ComparableResources>,
    /// Cores reserved exclusively per node (`resources { cores }`), likewise.
    reserved_cores: BTreeMap<String, BTreeSet<u32>>,
    failed: BTreeMap<String, AllocMetric>,
    queued: BTreeMap<String, u64>,
    /// The run's one reading of the clock: disconnect windows and drain deadlines are judged
    /// against it.
    now: i64,
    /// In-place updates of existing allocations, by id (a newer job version, `unknown` on a
    /// disconnect, a reconnect acknowledged), flushed into the plan at the end; a stop drops
    /// the allocation's update.
    updates: BTreeMap<String, Allocation>,
    /// When `unknown` allocations of this job pass their disconnect window: a delayed
    /// evaluation must run by then to mark them lost.
    disconnect_expiries: BTreeSet<i64>,
}

impl<'a> Run<'a> {
    fn new(state: &'a State, eval: &Evaluation, now: i64) -> Run<'a> {
        let mut plan = Plan {
            eval: eval.clone(),
            snapshot_index: state.latest_index(),
            ..Default::default()
        };
        plan.eval.snapshot_index = state.latest_index();
        Run {
            state,
            plan,
            allocs: state.allocs_by_job(&eval.namespace, &eval.job_id),
            usage: BTreeMap::new(),
            reserved_cores: BTreeMap::new(),
            failed: BTreeMap::new(),
            queued: BTreeMap::new(),
            now,
            updates: BTreeMap::new(),
            disconnect_expiries: BTreeSet::new(),
        }
    }

    fn stop(&mut self, alloc: &Allocation, description: &str) {
        self.stop_as(alloc, description, None);
    }

    /// Stops `alloc`; `client_status` is what the servers decide its client status is (`lost`
    /// for one whose node is gone), `None` to leave its client's.
    fn stop_as(
        &mut self,
        alloc: &Allocation,
        description: &str,
        client_status: Option<ClientStatus>,
    ) {
        self.updates.remove(&alloc.id);
        if alloc.holds_resources() {
            let freed = alloc.allocated_resources.comparable();
            let used = self.node_usage(&alloc.node_id);
            used.cpu_mhz -= freed.cpu_mhz;
            used.memory_mb -= freed.memory_mb;
            let cores = self.node_cores(&alloc.node_id);
            for t in alloc.allocated_resources.tasks.values() {
                for c in &t.cpu.reserved_cores {
                    cores.remove(c);
                }
            }
        }
        self.plan
            .node_update
            .entry(alloc.node_id.clone())
            .or_default()
            .push(AllocStop {
                alloc_id: alloc.id.clone(),
                desired_status: DesiredStatus::Stop,
                desired_description: description.to_string(),
                client_status,
            });
    }

    /// Queues an in-place update of an existing allocation (replacing an earlier one of this
    /// run).
    fn update_alloc(&mut self, alloc: Allocation) {
        self.updates.insert(alloc.id.clone(), alloc);
    }

    fn stop_everything(&mut self) {
        let allocs = self.allocs.clone();
        for alloc in allocs
            .iter()
            .filter(|a| a.desired_status == DesiredStatus::Run)
        {
            if !alloc.client_status.is_terminal() {
                // Nothing will ever report on an allocation whose node is gone: it is lost.
                let lost = self
                    .state
                    .node(&alloc.node_id)
                    .is_none_or(|n| n.status == NodeStatus::Down);
                self.stop_as(alloc, DESC_JOB_STOPPED, lost.then_some(ClientStatus::Lost));
            }
        }
    }

    fn reconcile(&mut self, job: Arc<Job>, env: &mut dyn SchedulerEnv) {
        let groups: BTreeSet<&str> = job.task_groups.iter().map(|g| g.name.as_str()).collect();
        let allocs = self.allocs.clone();
        for alloc in allocs.iter() {
            let live =
                alloc.desired_status == DesiredStatus::Run && !alloc.client_status.is_terminal();
            if live && !groups.contains(alloc.task_group.as_str()) {
                self.stop(alloc, DESC_GROUP_REMOVED);
            }
        }
        for group in &job.task_groups {
            self.reconcile_group(&job, group, &allocs, env);
        }
    }

    /// Reconciles one group: keeps `count` of its allocations (stopping the rest), updates the
    /// kept ones to the job's version (in place, or stopped and replaced), and places what is
    /// missing under the lowest free names.
    fn reconcile_group(
        &mut self,
        job: &Arc<Job>,
        group: &TaskGroup,
        allocs: &[Arc<Allocation>],
        env: &mut dyn SchedulerEnv,
    ) {
        // The jobspec refuses a negative count and one above its `max_count`, so this always
        // converts; were it not to (a negative count), nothing is placed, never "as many as
        // fit in a usize".
        let want = usize::try_from(group.count).unwrap_or(0);
        let mine: Vec<Arc<Allocation>> = allocs
            .iter()
            .filter(|a| a.task_group == group.name && a.desired_status == DesiredStatus::Run)
            .cloned()
            .collect();
        let triage = self.triage(group, allocs, &mine);
        let mut replacements = triage.replacements;
        // More to replace than the group now wants (it was scaled down meanwhile): the lowest
        // names are replaced.
        replacements.sort();
        replacements.truncate(want);
        let reserved: BTreeSet<u64> = replacements.iter().filter_map(|(i, _)| *i).collect();
        let counted: Vec<Arc<Allocation>> = mine
            .into_iter()
            .filter(|a| !triage.excluded.contains(&a.id))
            .collect();
        let Kept {
            live,
            done,
            mut used_names,
        } = self.keep_wanted(job, &counted, want - replacements.len(), reserved);
        let existing = live.len() + done + replacements.len();
        let mut to_place = replacements;
        to_place.extend(self.update_kept(job, group, &live));
        to_place.extend((existing..want).map(|_| (None, String::new())));
        for (index, previous) in assign_names(to_place, &mut used_names) {
            self.place(job, group, index, previous, env);
        }
    }

    /// Which of the group's allocations (`mine`: wanted running, and not set aside by the
    /// triage) stay: finished batch ones (their work is done) and, up to `want` with them,
    /// live ones with distinct names not `reserved` for replacements, lowest names first. The
    /// other live ones are stopped.
    fn keep_wanted<'j>(
        &mut self,
        job: &Job,
        mine: &'j [Arc<Allocation>],
        want: usize,
        reserved: BTreeSet<u64>,
    ) -> Kept<'j> {
        let mut live: Vec<&Arc<Allocation>> = mine
            .iter()
            .filter(|a| !a.client_status.is_terminal())
            .collect();
        // A batch allocation that finished successfully has done its work: it counts.
        let done: Vec<&Arc<Allocation>> = if job.job_type == JobType::Batch {
            mine.iter()
                .filter(|a| a.client_status == ClientStatus::Complete)
                .collect()
        } else {
            Vec::new()
        };
        // A name without an index (none this scheduler writes) sorts last: stopped first.
        live.sort_by_key(|a| (a.name_index().unwrap_or(u64::MAX), a.create_index));
        let mut used_names: BTreeSet<u64> = done.iter().filter_map(|a| a.name_index()).collect();
        // Names that replacements of lost or migrating allocations take.
        used_names.extend(reserved);
        let mut keep = Vec::new();
        for alloc in live {
            let index = alloc.name_index();
            let duplicate = index.is_some_and(|i| used_names.contains(&i));
            if keep.len() + done.len() >= want || duplicate {
                self.stop(alloc, DESC_NOT_NEEDED);
                continue;
            }
            if let Some(i) = index {
                used_names.insert(i);
            }
            keep.push(alloc);
        }
        Kept {
            live: keep,
            done: done.len(),
            used_names,
        }
    }

    /// Brings kept allocations to the job's version: in place when the group did not change
    /// in a way that needs new allocations, otherwise stopped. Returns the replacements to
    /// place: (the stopped one's name index, its id).
    fn update_kept(
        &mut self,
        job: &Arc<Job>,
        group: &TaskGroup,
        keep: &[&Arc<Allocation>],
    ) -> Vec<(Option<u64>, String)> {
        let mut replacements = Vec::new();
        for alloc in keep {
            let current = alloc
                .job
                .as_ref()
                .is_some_and(|j| j.job_modify_index == job.job_modify_index);
            if current {
                continue;
            }
            let unchanged = alloc
                .job
                .as_ref()
                .and_then(|old| old.group(&group.name))
                .is_some_and(|old| !group_changed(old, group));
            if unchanged {
                // In place: the allocation keeps running under the new job version (with
                // whatever else this run already changed of it).
                let mut updated = self
                    .updates
                    .get(&alloc.id)
                    .cloned()
                    .unwrap_or_else(|| Allocation::clone(alloc));
                updated.job = Some(job.clone());
                updated.eval_id = self.plan.eval.id.clone();
                self.update_alloc(updated);
            } else {
                // Destructive: stop it and place a replacement under the same name.
                self.stop(alloc, DESC_JOB_UPDATED);
                replacements.push((alloc.name_index(), alloc.id.clone()));
            }
        }
        replacements
    }

    fn node_usage(&mut self, node_id: &str) -> &mut ComparableResources {
        if !self.usage.contains_key(node_id) {
            let mut used = ComparableResources::default();
            for alloc in self.state.allocs_by_node(node_id) {
                if alloc.holds_resources() {
                    used.add(alloc.allocated_resources.comparable());
                }
            }
            self.usage.insert(node_id.to_string(), used);
        }
        self.usage.entry(node_id.to_string()).or_default()
    }

    /// Cores reserved on a node by running allocations and this plan.
    fn node_cores(&mut self, node_id: &str) -> &mut BTreeSet<u32> {
        if !self.reserved_cores.contains_key(node_id) {
            let mut reserved = BTreeSet::new();
            for alloc in self.state.allocs_by_node(node_id) {
                if alloc.holds_resources() {
                    for t in alloc.allocated_resources.tasks.values() {
                        reserved.extend(t.cpu.reserved_cores.iter().copied());
                    }
                }
            }
            self.reserved_cores.insert(node_id.to_string(), reserved);
        }
        self.reserved_cores.entry(node_id.to_string()).or_default()
    }

    /// Places one allocation of `group`, named with `index` and replacing `previous` (empty
    /// for a new one): on the best-ranked node that can run it and has room, or recorded as
    /// a failed placement with the metrics of the search.
    fn place(
        &mut self,
        job: &Arc<Job>,
        group: &TaskGroup,
        index: u64,
        previous: String,
        env: &mut dyn SchedulerEnv,
    ) {
        let (best, metric) = self.rank_nodes(job, group);
        let Some(node) = best else {
            self.record_failure(group, metric);
            return;
        };
        let resources = self.reserve(&node, group);
        let alloc = Allocation {
            id: env.new_id(),
            namespace: job.namespace.clone(),
            eval_id: self.plan.eval.id.clone(),
            name: format!("{}.{}[{}]", job.id, group.name, index),
            node_id: node.id.clone(),
            node_name: node.name.clone(),
            job_id: job.id.clone(),
            job: Some(job.clone()),
            task_group: group.name.clone(),
            allocated_resources: resources,
            metrics: metric,
            desired_status: DesiredStatus::Run,
            client_status: ClientStatus::Pending,
            previous_allocation: previous,
            create_time: env.now_unix_nanos(),
            ..Default::default()
        };
        self.queued.entry(group.name.clone()).or_default();
        self.plan
            .node_allocation
            .entry(node.id.clone())
            .or_default()
            .push(alloc);
    }

    /// Every node, filtered (can it run the group at all?), checked for room and scored: the
    /// best one, if any has room, and the metrics of the search.
    fn rank_nodes(&mut self, job: &Job, group: &TaskGroup) -> (Option<Arc<Node>>, AllocMetric) {
        let ask = GroupAsk::of(group);
        let mut metric = AllocMetric::default();
        let nodes = self.state.nodes();
        metric.nodes_in_pool = nodes.len() as u64;
        let mut best: Option<(f64, Arc<Node>)> = None;
        for node in nodes {
            metric.nodes_evaluated += 1;
            if let Err(why) = feasible::check_node(job, group, &node) {
                feasible::record_filtered(&mut metric, &node, &why);
                continue;
            }
            *metric
                .nodes_available
                .entry(node.datacenter.clone())
                .or_default() += 1;
            match self.fit_score(&node, &ask) {
                Ok(score) => {
                    metric.scores.insert(format!("{}.binpack", node.id), score);
                    if best.as_ref().is_none_or(|(s, _)| score > *s) {
                        best = Some((score, node));
                    }
                }
                Err(dimension) => {
                    metric.nodes_exhausted += 1;
                    *metric
                        .dimension_exhausted
                        .entry(dimension.to_string())
                        .or_default() += 1;
                }
            }
        }
        (best.map(|(_, node)| node), metric)
    }

    /// Whether `ask` fits in what is left on `node` (this run's placements and stops
    /// counted): its bin-pack score if so, the exhausted dimension if not. A core asked for
    /// costs the node's MHz per core.
    fn fit_score(&mut self, node: &Node, ask: &GroupAsk) -> Result<f64, &'static str> {
        let used = *self.node_usage(&node.id);
        let mut total = ask.resources;
        if ask.cores > 0 {
            let reserved = self.node_cores(&node.id).clone();
            let free = node
                .node_resources
                .cpu
                .reservable_cpu_cores
                .iter()
                .filter(|c| !reserved.contains(c))
                .count();
            if free < ask.cores {
                return Err("cores");
            }
            total.cpu_mhz += mhz_per_core(node) * ask.cores as i64;
        }
        feasible::check_fit(node, used, total)?;
        let mut after = used;
        after.add(total);
        Ok(rank::binpack_score(node.allocatable(), after))
    }

    /// A group no node had room for: its metrics (the first failure's, later identical ones
    /// coalesced) and one more queued placement.
    fn record_failure(&mut self, group: &TaskGroup, metric: AllocMetric) {
        let entry = self
            .failed
            .entry(group.name.clone())
            .or_insert_with(|| metric.clone());
        if entry != &metric {
            entry.coalesced_failures += 1;
        }
        *self.queued.entry(group.name.clone()).or_default() += 1;
    }

    /// What each task of `group` gets on `node` (cpu, memory, and the lowest free cores for a
    /// task that asks for cores), counted in this run's usage of the node.
    fn reserve(&mut self, node: &Node, group: &TaskGroup) -> AllocatedResources {
        let oversubscription = self
            .state
            .scheduler_config()
            .memory_oversubscription_enabled;
        let per_core = mhz_per_core(node);
        let mut free_cores: Vec<u32> = {
            let reserved = self.node_cores(&node.id);
            node.node_resources
                .cpu
                .reservable_cpu_cores
                .iter()
                .copied()
                .filter(|c| !reserved.contains(c))
                .collect()
        };
        free_cores.sort_unstable();
        let mut free_cores = free_cores.into_iter();
        let mut resources = AllocatedResources::default();
        for task in &group.tasks {
            let r = task.resources.clone().unwrap_or_default();
            let wanted = cores_asked(&r);
            let cores: Vec<u32> = free_cores.by_ref().take(wanted).collect();
            // `fit_score` found enough free cores on this node for the whole group.
            assert_eq!(
                cores.len(),
                wanted,
                "node {} ran out of the cores it was ranked with",
                node.id
            );
            let cpu_shares = if cores.is_empty() {
                r.cpu
            } else {
                per_core * cores.len() as i64
            };
            for core in &cores {
                // A core goes to one task of one allocation; handing it out twice would be
                // caught by the plan applier, but it is this run's bookkeeping that broke.
                assert!(
                    self.node_cores(&node.id).insert(*core),
                    "core {core} of node {} handed out twice",
                    node.id
                );
            }
            resources.tasks.insert(
                task.name.clone(),
                AllocatedTaskResources {
                    cpu: AllocatedCpuResources {
                        cpu_shares,
                        reserved_cores: cores,
                    },
                    memory: AllocatedMemoryResources {
                        memory_mb: r.memory_mb,
                        // Granted only when the operator enabled oversubscription (Nomad's
                        // rule); otherwise `memory` is the hard limit.
                        memory_max_mb: if oversubscription { r.memory_max_mb } else { 0 },
                    },
                },
            );
        }
        self.node_usage(&node.id).add(resources.comparable());
        resources
    }

    fn finish(mut self, env: &mut dyn SchedulerEnv) -> Plan {
        let now = env.now_unix_nanos();
        for (_, updated) in std::mem::take(&mut self.updates) {
            self.plan
                .node_allocation
                .entry(updated.node_id.clone())
                .or_default()
                .push(updated);
        }
        self.disconnect_follow_up(env);
        let eval = &mut self.plan.eval;
        eval.status = EvalStatus::Complete;
        eval.status_description.clear();
        eval.failed_tg_allocs = self.failed.clone();
        eval.queued_allocations = self.queued.clone();
        eval.modify_time = now;
        if !self.failed.is_empty() {
            let has_blocked = self
                .state
                .evals_by_job(&eval.namespace, &eval.job_id)
                .iter()
                .any(|e| e.status == EvalStatus::Blocked && e.id != eval.id);
            if !has_blocked {
                let blocked = Evaluation {
                    id: env.new_id(),
                    namespace: eval.namespace.clone(),
                    priority: eval.priority,
                    eval_type: eval.eval_type.clone(),
                    triggered_by: trigger::QUEUED_ALLOCS.to_string(),
                    job_id: eval.job_id.clone(),
                    job_modify_index: eval.job_modify_index,
                    status: EvalStatus::Blocked,
                    status_description: "created to place remaining allocations".to_string(),
                    previous_eval: eval.id.clone(),
                    ..Default::default()
                };
                eval.blocked_eval = blocked.id.clone();
                self.plan.created_evals.push(blocked);
            }
        }
        self.plan
    }
}

/// The allocations of a group that stay, as [`Run::keep_wanted`] decides.
struct Kept<'j> {
    live: Vec<&'j Arc<Allocation>>,
    /// Finished batch allocations, which count towards the group's count.
    done: usize,
    /// Name indexes taken by what stays.
    used_names: BTreeSet<u64>,
}

/// Names for what is to be placed, in order: a replacement keeps the name it replaces, the
/// others take the lowest indexes nothing else uses.
fn assign_names(
    to_place: Vec<(Option<u64>, String)>,
    used_names: &mut BTreeSet<u64>,
) -> Vec<(u64, String)> {
    let mut next_free = 0u64;
    let mut named: Vec<(u64, String)> = Vec::with_capacity(to_place.len());
    for (index, previous) in to_place {
        let index = match index {
            Some(i) => i,
            None => {
                while used_names.contains(&next_free) {
                    next_free += 1;
                }
                used_names.insert(next_free);
                next_free
            }
        };
        named.push((index, previous));
    }
    named.sort();
    named
}

/// What one allocation of a group asks of a node, before any node is chosen.
#[derive(Debug, Clone, Copy)]
struct GroupAsk {
    /// cpu (of the tasks that ask in MHz) and memory, summed over the tasks.
    resources: ComparableResources,
    /// Exclusive cores, summed over the tasks; their MHz depend on the node.
    cores: usize,
}

impl GroupAsk {
    fn of(group: &TaskGroup) -> GroupAsk {
        GroupAsk {
            resources: group.total_resources(),
            cores: group
                .tasks
                .iter()
                .filter_map(|t| t.resources.as_ref())
                .map(cores_asked)
                .sum(),
        }
    }
}

/// The exclusive cores a task asks for (`resources { cores }`); a negative count, which the
/// jobspec refuses, asks for none.
fn cores_asked(resources: &crate::model::Resources) -> usize {
    usize::try_from(resources.cores).unwrap_or(0)
}

/// MHz of one core of `node` (its total compute over its cores).
fn mhz_per_core(node: &Node) -> i64 {
    let cores = i64::from(node.node_resources.cpu.total_cpu_cores.max(1));
    node.node_resources.cpu.cpu_shares / cores
}

/// Whether a task group changed in a way that needs its allocations replaced.The count is not
/// part of it: scaling keeps the allocations that stay.
fn group_changed(old: &TaskGroup, new: &TaskGroup) -> bool {
    let without_count = |g: &TaskGroup| TaskGroup {
        count: 0,
        ..g.clone()
    };
    without_count(old) != without_count(new)
}

#[cfg(test)]
mod tainted_tests;
#[cfg(test)]
mod tests;
