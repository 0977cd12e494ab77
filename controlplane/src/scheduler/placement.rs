//! Placement: one allocation of a group onto the best node that can run it and has room
//! (feasibility, fit, ranking), and the bookkeeping of what this run's placements and stops
//! use on each node. The reconciler (`mod.rs`) decides *what* to place; this decides *where*.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::select::Ranked;
use super::system::NodePlacement;
use super::{feasible, Run, SchedulerEnv};
use crate::model::{
    trigger, AllocDeploymentStatus, AllocMetric, AllocatedCpuResources, AllocatedMemoryResources,
    AllocatedResources, AllocatedTaskResources, Allocation, ClientStatus, ComparableResources,
    DesiredStatus, EvalStatus, Evaluation, Job, Node, TaskGroup,
};
use crate::state::AllocPreemption;

impl Run<'_> {
    pub(super) fn node_usage(&mut self, node_id: &str) -> &mut ComparableResources {
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

    /// What is in use on a node now (this run counted), without the key allocation a
    /// mutable entry costs: read on every node a selection visits.
    pub(super) fn node_usage_now(&mut self, node_id: &str) -> ComparableResources {
        match self.usage.get(node_id) {
            Some(used) => *used,
            None => *self.node_usage(node_id),
        }
    }

    /// Cores reserved on a node by running allocations and this plan.
    pub(super) fn node_cores(&mut self, node_id: &str) -> &mut BTreeSet<u32> {
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
    /// for a new one): on the best-ranked node that can run it and has room (preempting
    /// lower-priority work when the operator allows it for the job's type), or recorded as a
    /// failed placement with the metrics of the search. Returns whether it was placed.
    pub(super) fn place(
        &mut self,
        job: &Arc<Job>,
        group: &TaskGroup,
        index: u64,
        previous: String,
        env: &mut dyn SchedulerEnv,
    ) -> bool {
        // Once a group failed to place, its later placements fail the same way: they are
        // counted, not searched again (Nomad coalesces them).
        if let Some(failed) = self.failed.get_mut(&group.name) {
            failed.coalesced_failures += 1;
            *self.queued.entry(group.name.clone()).or_default() += 1;
            return false;
        }
        let prev = self.previous_alloc(&previous);
        let ctx = self.group_ctx(job, group, prev.as_deref(), false);
        let (mut best, mut metric) = self.select(&ctx);
        if best.is_none() && self.preemption_enabled(job) {
            let ctx = self.group_ctx(job, group, prev.as_deref(), true);
            (best, metric) = self.select(&ctx);
        }
        match best {
            Some(ranked) => {
                self.commit(job, group, index, previous, ranked, metric, env);
                true
            }
            None => {
                self.record_failure(group, metric);
                false
            }
        }
    }

    /// Places one allocation of `group` on `node` (the system scheduler's one per node):
    /// every feasibility check, the fit and, when enabled for the job's type, preemption,
    /// for that node alone. A node the group's rules filter out is not a failure (its metrics
    /// come back for the group's report); a feasible node without room is recorded as a
    /// failed placement that a blocked evaluation retries.
    pub(super) fn place_on_node(
        &mut self,
        job: &Arc<Job>,
        group: &TaskGroup,
        index: u64,
        previous: String,
        node: &Arc<Node>,
        env: &mut dyn SchedulerEnv,
    ) -> NodePlacement {
        let prev = self.previous_alloc(&previous);
        let mut metric = AllocMetric {
            nodes_in_pool: 1,
            nodes_evaluated: 1,
            ..Default::default()
        };
        metric.nodes_available.insert(node.datacenter.clone(), 1);
        let ctx = self.group_ctx(job, group, prev.as_deref(), self.preemption_enabled(job));
        if !feasible::in_base_set(job, node) || !self.feasible(&ctx, node, &mut metric) {
            if metric.nodes_filtered == 0 {
                feasible::record_filtered(
                    &mut metric,
                    node,
                    "node not ready or not in the job's datacenters and pool",
                );
            }
            return NodePlacement::Filtered(Box::new(metric));
        }
        match self.rank(&ctx, node, &mut metric) {
            Some(ranked) => {
                self.commit(job, group, index, previous, ranked, metric, env);
                NodePlacement::Placed
            }
            None => {
                self.record_failure(group, metric);
                self.system_exhausted = true;
                NodePlacement::Exhausted
            }
        }
    }

    /// Whether an allocation on `node_id` can take the new version of `group` where it is
    /// (an in-place update): the node still exists and passes the group's feasibility
    /// checks and is still in the job's datacenters and pool. Readiness and eligibility do
    /// not count (Nomad's in-place update): an ineligible node keeps what it runs.
    pub(super) fn still_feasible(
        &mut self,
        job: &Arc<Job>,
        group: &TaskGroup,
        node_id: &str,
    ) -> bool {
        let Some(node) = self.state.node(node_id) else {
            return false;
        };
        if !feasible::job_selects(job, &node) {
            return false;
        }
        let ctx = self.group_ctx(job, group, None, false);
        let mut metric = AllocMetric::default();
        self.feasible(&ctx, &node, &mut metric)
    }

    fn previous_alloc(&self, id: &str) -> Option<Arc<Allocation>> {
        (!id.is_empty()).then(|| self.state.alloc(id)).flatten()
    }

    fn preemption_enabled(&self, job: &Job) -> bool {
        self.state
            .scheduler_config()
            .preemption_config
            .enabled_for(job.job_type.as_str())
    }

    /// Writes a chosen placement into the plan: evicts what it preempts, reserves its
    /// resources and ports, and counts it.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        job: &Arc<Job>,
        group: &TaskGroup,
        index: u64,
        previous: String,
        ranked: Ranked,
        metric: AllocMetric,
        env: &mut dyn SchedulerEnv,
    ) {
        let node = ranked.node.clone();
        let id = env.new_id();
        let mut preempted_ids = Vec::new();
        for victim in &ranked.preempted {
            self.release(victim);
            preempted_ids.push(victim.id.clone());
            self.plan
                .node_preemptions
                .entry(node.id.clone())
                .or_default()
                .push(AllocPreemption {
                    alloc_id: victim.id.clone(),
                    preempted_by_allocation: id.clone(),
                });
            self.preemption_eval(victim, env);
        }
        let mut resources = self.reserve(&node, group);
        if let Some(offer) = ranked.offer {
            self.held_ports(&node).extend(
                offer
                    .ports
                    .iter()
                    .filter(|p| !p.ignore_collision)
                    .map(|p| p.value),
            );
            resources.shared.networks = vec![offer.network];
            resources.shared.ports = offer.ports;
        }
        resources.shared.disk_mb = group.total_resources().disk_mb;
        self.node_usage(&node.id).disk_mb += resources.shared.disk_mb;
        *self
            .job_counts()
            .entry(node.id.clone())
            .or_default()
            .entry(group.name.clone())
            .or_default() += 1;
        let alloc = Allocation {
            id,
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
            preempted_allocations: preempted_ids,
            create_time: env.now_unix_nanos(),
            deployment_id: self.rollout.placement_id(),
            // A canary is marked so: the deployment counts it, `job plan` shows it and the
            // client registers its services with the canary tags.
            deployment_status: self
                .rollout
                .placing_canaries
                .then(|| AllocDeploymentStatus {
                    canary: true,
                    ..Default::default()
                }),
            ..Default::default()
        };
        self.queued.entry(group.name.clone()).or_default();
        self.plan
            .node_allocation
            .entry(node.id.clone())
            .or_default()
            .push(alloc);
    }

    /// One evaluation per job that loses an allocation to preemption, so that it is placed
    /// again (Nomad's plan applier creates these; here the plan carries them and the applier
    /// keeps those whose preemptions it accepted).
    fn preemption_eval(&mut self, victim: &Allocation, env: &mut dyn SchedulerEnv) {
        let exists = self
            .plan
            .preemption_evals
            .iter()
            .any(|e| e.job_id == victim.job_id && e.namespace == victim.namespace);
        if exists {
            return;
        }
        let job = victim.job.as_deref();
        self.plan.preemption_evals.push(Evaluation {
            id: env.new_id(),
            namespace: victim.namespace.clone(),
            priority: job.map_or(0, |j| j.priority),
            eval_type: job.map_or_else(String::new, |j| j.job_type.as_str().to_string()),
            triggered_by: trigger::PREEMPTION.to_string(),
            job_id: victim.job_id.clone(),
            job_modify_index: job.map_or(0, |j| j.job_modify_index),
            status: EvalStatus::Pending,
            create_time: env.now_unix_nanos(),
            ..Default::default()
        });
    }

    /// Gives back what an allocation this plan stops or evicts held on its node: resources,
    /// cores, ports, and its place among this job's allocations there.
    pub(super) fn release(&mut self, alloc: &Allocation) {
        if alloc.holds_resources() {
            let freed = alloc.allocated_resources.comparable();
            self.node_usage(&alloc.node_id).subtract(freed);
            let cores = self.node_cores(&alloc.node_id);
            for t in alloc.allocated_resources.tasks.values() {
                for c in &t.cpu.reserved_cores {
                    cores.remove(c);
                }
            }
            if alloc.allocated_resources.host_ports().next().is_some() {
                if let Some(node) = self.state.node(&alloc.node_id) {
                    let held = self.held_ports(&node);
                    for p in alloc.allocated_resources.host_ports() {
                        held.remove(&p);
                    }
                }
            }
        }
        let mine =
            alloc.job_id == self.plan.eval.job_id && alloc.namespace == self.plan.eval.namespace;
        if mine && !alloc.is_terminal() && self.select.job_counts.is_some() {
            if let Some(n) = self
                .job_counts()
                .get_mut(&alloc.node_id)
                .and_then(|g| g.get_mut(&alloc.task_group))
            {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// Takes back this run's stop of `alloc` (Nomad's `PopUpdate`): the replacement of a
    /// destructive update found no node, so the old version keeps running, holding what it
    /// held, until a later evaluation finds room.
    pub(super) fn unstop(&mut self, alloc: &Allocation) {
        let Some(stops) = self.plan.node_update.get_mut(&alloc.node_id) else {
            return;
        };
        let before = stops.len();
        stops.retain(|s| s.alloc_id != alloc.id);
        if stops.len() == before {
            return;
        }
        if stops.is_empty() {
            self.plan.node_update.remove(&alloc.node_id);
        }
        if alloc.holds_resources() {
            self.node_usage(&alloc.node_id)
                .add(alloc.allocated_resources.comparable());
            let cores: Vec<u32> = alloc
                .allocated_resources
                .tasks
                .values()
                .flat_map(|t| t.cpu.reserved_cores.iter().copied())
                .collect();
            self.node_cores(&alloc.node_id).extend(cores);
            if alloc.allocated_resources.host_ports().next().is_some() {
                if let Some(node) = self.state.node(&alloc.node_id) {
                    let ports: Vec<i64> = alloc.allocated_resources.host_ports().collect();
                    self.held_ports(&node).extend(ports);
                }
            }
        }
        let mine =
            alloc.job_id == self.plan.eval.job_id && alloc.namespace == self.plan.eval.namespace;
        if mine && !alloc.is_terminal() && self.select.job_counts.is_some() {
            *self
                .job_counts()
                .entry(alloc.node_id.clone())
                .or_default()
                .entry(alloc.task_group.clone())
                .or_default() += 1;
        }
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
        let per_core = super::rank::mhz_per_core(node);
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
            // `select` found enough free cores on this node for the whole group.
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
}

/// The exclusive cores a task asks for (`resources { cores }`); a negative count, which the
/// jobspec refuses, asks for none.
fn cores_asked(resources: &crate::model::Resources) -> usize {
    usize::try_from(resources.cores).unwrap_or(0)
}
