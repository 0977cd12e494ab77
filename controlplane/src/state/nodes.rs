//! What the operator does to nodes and node pools: drains, eligibility, purges, pools, and an
//! allocation's desired transition. Part of [`State::apply`]: pure, "now" comes in the command.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::{
    drain_status, eligibility, is_built_in_pool, node_event_message as message,
    node_event_subsystem as subsystem, push_node_event, time::format_rfc3339, ClientStatus,
    DesiredStatus, DesiredTransition, DrainMetadata, DrainStrategy, Evaluation, Job, JobStatus,
    Node, NodeEvent, NodePool, NODE_POOL_ALL,
};

use super::{key, ApplyEffects, State, Table};

/// A drain change as [`State::write_node_drain`] applies it (Nomad's `updateNodeDrainImpl`).
#[derive(Debug, Clone, Default)]
pub struct DrainUpdate {
    /// `Some` starts or updates a drain; `None` ends it.
    pub drain_strategy: Option<DrainStrategy>,
    /// With `drain_strategy: None`: make the node eligible again.
    pub mark_eligible: bool,
    /// Kept in `last_drain.meta` (only when non-empty: an update without meta keeps the old).
    pub meta: BTreeMap<String, String>,
    /// With `drain_strategy: None`: the drain finished (the drainer), rather than canceled.
    pub completed: bool,
    /// The node event to record.
    pub event: Option<NodeEvent>,
}

/// Error text for an unknown node, the same everywhere ("node \"abc\" not found").
pub(crate) fn node_not_found(node_id: &str) -> String {
    format!("node {node_id:?} not found")
}

impl State {
    // ---- reads ----

    /// Every node pool: the built-in `all` and `default`, then those the operator made, by
    /// name.
    pub fn node_pools(&self) -> Vec<NodePool> {
        let mut pools: Vec<NodePool> = NodePool::built_ins().into();
        pools.extend(self.node_pools.values().map(|p| (**p).clone()));
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        pools
    }

    pub fn node_pool(&self, name: &str) -> Option<NodePool> {
        if is_built_in_pool(name) {
            return NodePool::built_ins().into_iter().find(|p| p.name == name);
        }
        self.node_pools.get(name).map(|p| (**p).clone())
    }

    /// The nodes of a pool (`all`: every node).
    pub fn nodes_in_pool(&self, pool: &str) -> Vec<Arc<Node>> {
        self.nodes
            .values()
            .filter(|n| pool == NODE_POOL_ALL || n.node_pool == pool)
            .cloned()
            .collect()
    }

    /// The jobs that ask for a pool, in every namespace.
    pub fn jobs_in_pool(&self, pool: &str) -> Vec<Arc<Job>> {
        self.jobs
            .values()
            .filter(|j| j.node_pool == pool)
            .cloned()
            .collect()
    }

    // ---- writes ----

    /// Changes a node's drain, its eligibility and `last_drain` as Nomad's state store does.
    /// The drainer completes a drain through this too ([`State::complete_node_drain`]).
    pub(crate) fn write_node_drain(
        &mut self,
        index: u64,
        node_id: &str,
        update: DrainUpdate,
        now: i64,
    ) -> Result<(), String> {
        let Some(existing) = self.nodes.get(node_id) else {
            return Err(node_not_found(node_id));
        };
        let mut node = (**existing).clone();
        let was_draining = node.drain_strategy.is_some();
        node.status_updated_at = now / 1_000_000_000;
        if let Some(mut event) = update.event {
            event.create_index = index;
            push_node_event(&mut node, event);
        }
        node.drain_strategy = update.drain_strategy;
        node.drain = node.drain_strategy.is_some();
        if node.drain {
            node.scheduling_eligibility = eligibility::INELIGIBLE.to_string();
        } else if update.mark_eligible {
            node.scheduling_eligibility = eligibility::ELIGIBLE.to_string();
        }
        // Seconds, as Nomad keeps them.
        let at = format_rfc3339(now - now.rem_euclid(1_000_000_000));
        if was_draining || node.drain {
            let mut last = match (&node.last_drain, was_draining) {
                (Some(last), true) => last.clone(),
                _ => DrainMetadata {
                    started_at: at.clone(),
                    ..Default::default()
                },
            };
            last.updated_at = at;
            if !update.meta.is_empty() {
                last.meta = update.meta;
            }
            last.status = if node.drain {
                drain_status::DRAINING
            } else if update.completed {
                drain_status::COMPLETE
            } else {
                drain_status::CANCELED
            }
            .to_string();
            node.last_drain = Some(last);
        }
        node.modify_index = index;
        self.nodes.insert(node.id.clone(), Arc::new(node));
        self.touch(Table::Nodes, index);
        Ok(())
    }

    /// Marks a node's drain complete: the drain strategy is cleared, the node stays
    /// ineligible, `last_drain` says complete and the event "Node drain complete" is kept.
    /// For the drainer's command; refused for a node that is not draining.
    pub fn complete_node_drain(
        &mut self,
        index: u64,
        node_id: &str,
        now: i64,
    ) -> Result<(), String> {
        let node = self
            .nodes
            .get(node_id)
            .ok_or_else(|| node_not_found(node_id))?;
        if node.drain_strategy.is_none() {
            return Err(format!("node {node_id:?} is not draining"));
        }
        let update = DrainUpdate {
            completed: true,
            event: Some(NodeEvent::new(
                subsystem::DRAIN,
                message::DRAIN_COMPLETE,
                now,
            )),
            ..Default::default()
        };
        self.write_node_drain(index, node_id, update, now)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_node_drain(
        &mut self,
        index: u64,
        node_id: &str,
        drain: Option<&DrainStrategy>,
        mark_eligible: bool,
        meta: &BTreeMap<String, String>,
        evals: &[Evaluation],
        now: i64,
        effects: &mut ApplyEffects,
    ) -> Result<u64, String> {
        let Some(existing) = self.nodes.get(node_id).cloned() else {
            return Err(node_not_found(node_id));
        };
        let drain = drain.map(|d| {
            let mut d = d.clone();
            // A drain that is updated keeps when it started; its deadline counts from now.
            d.started_at = match &existing.drain_strategy {
                Some(old) => old.started_at.clone(),
                None => format_rfc3339(now),
            };
            d.force_deadline = if d.deadline > 0 {
                format_rfc3339(now.saturating_add(d.deadline))
            } else {
                String::new()
            };
            d
        });
        let event_message = match (&existing.drain_strategy, &drain) {
            (None, Some(_)) => Some(message::DRAIN_SET),
            (Some(_), Some(_)) => Some(message::DRAIN_UPDATED),
            (Some(_), None) => Some(message::DRAIN_DISABLED),
            (None, None) => None,
        };
        let became_eligible = drain.is_none()
            && mark_eligible
            && existing.scheduling_eligibility != eligibility::ELIGIBLE;
        let update = DrainUpdate {
            drain_strategy: drain,
            mark_eligible,
            meta: meta.clone(),
            completed: false,
            event: event_message.map(|m| NodeEvent::new(subsystem::DRAIN, m, now)),
        };
        self.write_node_drain(index, node_id, update, now)?;
        if became_eligible {
            self.capacity_on_node(node_id, effects);
        }
        for eval in evals {
            self.upsert_eval(index, eval, now, effects);
        }
        Ok(0)
    }

    pub(super) fn apply_node_eligibility(
        &mut self,
        index: u64,
        node_id: &str,
        wanted: &str,
        evals: &[Evaluation],
        now: i64,
        effects: &mut ApplyEffects,
    ) -> Result<u64, String> {
        if wanted != eligibility::ELIGIBLE && wanted != eligibility::INELIGIBLE {
            return Err(format!(
                "invalid scheduling eligibility {wanted:?}: use \"eligible\" or \"ineligible\""
            ));
        }
        let Some(existing) = self.nodes.get(node_id) else {
            return Err(node_not_found(node_id));
        };
        if existing.drain_strategy.is_some() && wanted == eligibility::ELIGIBLE {
            return Err(format!(
                "can not set node {node_id:?}'s scheduling eligibility to eligible while it is draining; disable the drain with -mark-eligible instead"
            ));
        }
        if existing.scheduling_eligibility == wanted {
            return Ok(0);
        }
        let mut node = (**existing).clone();
        node.scheduling_eligibility = wanted.to_string();
        node.status_updated_at = now / 1_000_000_000;
        let text = if wanted == eligibility::ELIGIBLE {
            effects.capacity_changed = true;
            effects
                .unblock_classes
                .insert(existing.computed_class.clone());
            message::ELIGIBLE
        } else {
            message::INELIGIBLE
        };
        let mut event = NodeEvent::new(subsystem::CLUSTER, text, now);
        event.create_index = index;
        push_node_event(&mut node, event);
        node.modify_index = index;
        self.nodes.insert(node.id.clone(), Arc::new(node));
        self.touch(Table::Nodes, index);
        for eval in evals {
            self.upsert_eval(index, eval, now, effects);
        }
        Ok(0)
    }

    /// The allocations on a node that have not finished.
    fn live_allocs_on(&self, node_id: &str) -> Vec<String> {
        self.allocs_by_node(node_id)
            .into_iter()
            .filter(|a| !a.is_terminal())
            .map(|a| a.id.clone())
            .collect()
    }

    pub(super) fn apply_node_deregister(
        &mut self,
        index: u64,
        node_ids: &[String],
        force: bool,
        evals: &[Evaluation],
        now: i64,
        effects: &mut ApplyEffects,
    ) -> Result<u64, String> {
        // Everything is checked before anything is written: a refused purge changes nothing.
        for node_id in node_ids {
            if !self.nodes.contains_key(node_id) {
                return Err(node_not_found(node_id));
            }
            let live = self.live_allocs_on(node_id);
            if !live.is_empty() && !force {
                return Err(format!(
                    "node {node_id:?} has {} allocation(s) that have not finished ({}); drain the node first, or purge with force to mark them lost",
                    live.len(),
                    live.iter().map(|a| crate::model::short_id(a)).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        let mut touched_jobs = Vec::new();
        for node_id in node_ids {
            for alloc_id in self.live_allocs_on(node_id) {
                let Some(existing) = self.allocs.get(&alloc_id) else {
                    continue;
                };
                let mut alloc = (**existing).clone();
                alloc.desired_status = DesiredStatus::Stop;
                alloc.desired_description = "alloc is lost since its node was purged".into();
                if alloc.client_status.can_become(ClientStatus::Lost) {
                    alloc.client_status = ClientStatus::Lost;
                    alloc.client_description = "alloc is lost since its node was purged".into();
                }
                alloc.modify_index = index;
                alloc.alloc_modify_index = index;
                alloc.modify_time = now;
                touched_jobs.push(key(&alloc.namespace, &alloc.job_id));
                self.allocs.insert(alloc.id.clone(), Arc::new(alloc));
                self.touch(Table::Allocs, index);
            }
            self.remove_node_services(index, node_id);
            self.nodes.remove(node_id);
        }
        self.touch(Table::Nodes, index);
        effects.capacity_changed = true;
        for eval in evals {
            self.upsert_eval(index, eval, now, effects);
        }
        touched_jobs.sort();
        touched_jobs.dedup();
        for k in touched_jobs {
            self.refresh_job_status(index, &k);
        }
        Ok(0)
    }

    pub(super) fn apply_node_pool_upsert(
        &mut self,
        index: u64,
        pools: &[NodePool],
    ) -> Result<u64, String> {
        for pool in pools {
            if pool.is_built_in() {
                return Err(format!(
                    "modifying node pool {:?} is not allowed",
                    pool.name
                ));
            }
            pool.validate()?;
        }
        for pool in pools {
            let mut pool = pool.clone();
            pool.create_index = self
                .node_pools
                .get(&pool.name)
                .map(|p| p.create_index)
                .unwrap_or(index);
            pool.modify_index = index;
            self.node_pools.insert(pool.name.clone(), Arc::new(pool));
        }
        if !pools.is_empty() {
            self.touch(Table::NodePools, index);
        }
        Ok(0)
    }

    pub(super) fn apply_node_pool_delete(
        &mut self,
        index: u64,
        names: &[String],
    ) -> Result<u64, String> {
        for name in names {
            if is_built_in_pool(name) {
                return Err(format!("deleting node pool {name:?} is not allowed"));
            }
            if !self.node_pools.contains_key(name) {
                return Err(format!("node pool {name:?} not found"));
            }
            let nodes = self.nodes_in_pool(name).len();
            if nodes > 0 {
                return Err(format!(
                    "node pool {name:?} has {nodes} node(s); move them to another pool (client node_pool) or purge them first"
                ));
            }
            let jobs: Vec<String> = self
                .jobs_in_pool(name)
                .iter()
                .filter(|j| j.status != JobStatus::Dead)
                .map(|j| j.id.clone())
                .collect();
            if !jobs.is_empty() {
                return Err(format!(
                    "node pool {name:?} has non-terminal jobs ({}); stop them first",
                    jobs.join(", ")
                ));
            }
        }
        for name in names {
            self.node_pools.remove(name);
        }
        if !names.is_empty() {
            self.touch(Table::NodePools, index);
        }
        Ok(0)
    }

    pub(super) fn apply_desired_transition(
        &mut self,
        index: u64,
        transitions: &BTreeMap<String, DesiredTransition>,
        evals: &[Evaluation],
        now: i64,
        effects: &mut ApplyEffects,
    ) -> Result<u64, String> {
        let missing: Vec<&str> = transitions
            .keys()
            .filter(|id| !self.allocs.contains_key(*id))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(format!("allocation(s) not found: {}", missing.join(", ")));
        }
        for (id, wanted) in transitions {
            let Some(existing) = self.allocs.get(id) else {
                continue;
            };
            let mut alloc = (**existing).clone();
            merge_transition(&mut alloc.desired_transition, wanted);
            alloc.modify_index = index;
            alloc.modify_time = now;
            self.allocs.insert(id.clone(), Arc::new(alloc));
        }
        if !transitions.is_empty() {
            self.touch(Table::Allocs, index);
        }
        for eval in evals {
            self.upsert_eval(index, eval, now, effects);
        }
        Ok(0)
    }

    /// A node registers or re-registers. As Nomad: a re-registration keeps what the servers
    /// own (eligibility, drain, last drain, events); the first registration records
    /// "Node registered", and coming back from down "Node re-registered".
    pub(super) fn apply_node_register(
        &mut self,
        index: u64,
        node: &Node,
        now: i64,
        effects: &mut ApplyEffects,
    ) {
        let mut node = node.clone();
        node.modify_index = index;
        node.computed_class = node.compute_class();
        node.status_updated_at = now / 1_000_000_000;
        if node.status == crate::model::NodeStatus::Initializing {
            node.status = crate::model::NodeStatus::Ready;
        }
        match self.nodes.get(&node.id) {
            Some(existing) => {
                node.create_index = existing.create_index;
                node.events = existing.events.clone();
                node.scheduling_eligibility = existing.scheduling_eligibility.clone();
                node.drain_strategy = existing.drain_strategy.clone();
                node.drain = existing.drain;
                node.last_drain = existing.last_drain.clone();
                if existing.status == crate::model::NodeStatus::Down
                    && node.status != crate::model::NodeStatus::Down
                {
                    let mut event = NodeEvent::new(subsystem::CLUSTER, message::REREGISTERED, now);
                    event.create_index = index;
                    push_node_event(&mut node, event);
                }
            }
            None => {
                node.create_index = index;
                if node.scheduling_eligibility.is_empty() {
                    node.scheduling_eligibility = eligibility::ELIGIBLE.to_string();
                }
                let mut event = NodeEvent::new(subsystem::CLUSTER, message::REGISTERED, now);
                event.create_index = index;
                node.events = vec![event];
            }
        }
        effects.capacity_changed = true;
        effects.unblock_classes.insert(node.computed_class.clone());
        self.nodes.insert(node.id.clone(), Arc::new(node));
        self.touch(Table::Nodes, index);
    }
}

/// Sets the parts of `into` that `wanted` sets (Nomad's `DesiredTransition.Merge`).
fn merge_transition(into: &mut DesiredTransition, wanted: &DesiredTransition) {
    if wanted.migrate.is_some() {
        into.migrate = wanted.migrate;
    }
    if wanted.reschedule.is_some() {
        into.reschedule = wanted.reschedule;
    }
    if wanted.force_reschedule.is_some() {
        into.force_reschedule = wanted.force_reschedule;
    }
    if wanted.no_shutdown_delay.is_some() {
        into.no_shutdown_delay = wanted.no_shutdown_delay;
    }
}
