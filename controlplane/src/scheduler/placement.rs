//! Placement: one allocation of a group onto the best node that can run it and has room
//! (feasibility, fit, ranking), and the bookkeeping of what this run's placements and stops
//! use on each node. The reconciler (`mod.rs`) decides *what* to place; this decides *where*.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{feasible, rank, Run, SchedulerEnv};
use crate::model::{
    AllocMetric, AllocatedCpuResources, AllocatedMemoryResources, AllocatedResources,
    AllocatedTaskResources, Allocation, ClientStatus, ComparableResources, DesiredStatus, Job,
    Node, TaskGroup,
};

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
    /// for a new one): on the best-ranked node that can run it and has room, or recorded as
    /// a failed placement with the metrics of the search.
    pub(super) fn place(
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
    pub(super) fn fit_score(&mut self, node: &Node, ask: &GroupAsk) -> Result<f64, &'static str> {
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
    pub(super) fn record_failure(&mut self, group: &TaskGroup, metric: AllocMetric) {
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
    pub(super) fn reserve(&mut self, node: &Node, group: &TaskGroup) -> AllocatedResources {
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
}

/// What one allocation of a group asks of a node, before any node is chosen.
#[derive(Debug, Clone, Copy)]
pub(super) struct GroupAsk {
    /// cpu (of the tasks that ask in MHz) and memory, summed over the tasks.
    resources: ComparableResources,
    /// Exclusive cores, summed over the tasks; their MHz depend on the node.
    cores: usize,
}

impl GroupAsk {
    pub(super) fn of(group: &TaskGroup) -> GroupAsk {
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
