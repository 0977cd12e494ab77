//! The reconciler's first step for one group: allocations that cannot simply be counted —
//! their node is down, gone or disconnected, their client just reconnected, or a drain wants
//! them moved — are stopped, marked `unknown`, or set aside while a replacement is placed.
//! What is left is counted against the group's `count` as usual.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::tainted::{
    client_status_state, disconnect_expired, drain_deadline_passed, duration_nanos, keep_original,
    last_unknown, live_replacement, lost_after, needs_to_reconnect, replace_when_lost,
    replace_while_disconnected, ReconcileStrategy, DESC_DISCONNECT_TIMEOUT_EVAL, DESC_LOST,
    DESC_MIGRATING, DESC_RECONNECTED, DESC_UNKNOWN,
};
use super::{Run, SchedulerEnv};
use crate::model::time::{format_rfc3339, parse_rfc3339};
use crate::model::{
    trigger, Allocation, ClientStatus, EvalStatus, Evaluation, Node, NodeStatus, TaskGroup,
};

/// What the triage decided for one group.
#[derive(Debug, Default)]
pub(super) struct Triage {
    /// Allocations not to count: stopped here, or set aside while a replacement runs.
    pub excluded: BTreeSet<String>,
    /// Replacements to place: (the name index, the allocation replaced).
    pub replacements: Vec<(Option<u64>, String)>,
}

impl Run<'_> {
    /// Sorts out the group's allocations (`mine`, wanted running) whose node or client makes
    /// them special; `job_allocs` are all of the job's allocations (replacement chains cross
    /// groups' bookkeeping only by id).
    pub(super) fn triage(
        &mut self,
        group: &TaskGroup,
        job_allocs: &[Arc<Allocation>],
        mine: &[Arc<Allocation>],
    ) -> Triage {
        let mut t = Triage::default();
        for alloc in mine {
            // Finished allocations are counted (batch) or ignored as before; one a reconnect
            // below already stopped is done with.
            if alloc.client_status.is_terminal() || t.excluded.contains(&alloc.id) {
                continue;
            }
            let node = self.state.node(&alloc.node_id);
            match node.as_ref().map(|n| n.status) {
                None | Some(NodeStatus::Down) => self.lose(group, job_allocs, alloc, &mut t),
                Some(NodeStatus::Disconnected) => {
                    self.disconnected(group, job_allocs, alloc, &mut t)
                }
                _ if needs_to_reconnect(alloc) => {
                    self.reconnecting(group, job_allocs, alloc, &mut t)
                }
                _ if alloc.desired_transition.should_migrate() => {
                    self.migrating(node.as_deref(), job_allocs, alloc, &mut t)
                }
                _ => {}
            }
        }
        t
    }

    /// The allocation's node is down or gone: stopped as lost, and replaced under its name
    /// (unless a replacement already runs, placed while its node was disconnected). A group
    /// with `prevent_reschedule_on_lost` keeps it instead, `unknown` and counted, until its
    /// node comes back (Nomad's rule).
    fn lose(
        &mut self,
        group: &TaskGroup,
        job_allocs: &[Arc<Allocation>],
        alloc: &Allocation,
        t: &mut Triage,
    ) {
        if !replace_when_lost(group) {
            if alloc.client_status != ClientStatus::Unknown {
                self.mark_unknown(alloc);
            }
            return;
        }
        self.stop_as(alloc, DESC_LOST, Some(ClientStatus::Lost));
        t.excluded.insert(alloc.id.clone());
        if live_replacement(job_allocs, alloc).is_none() {
            t.replacements.push((alloc.name_index(), alloc.id.clone()));
        }
    }

    /// Queues the update that makes a live allocation `unknown` (its client cannot report),
    /// with the history entry its disconnect window counts from; returns the updated copy.
    pub(super) fn mark_unknown(&mut self, alloc: &Allocation) -> Allocation {
        let mut updated = self
            .updates
            .get(&alloc.id)
            .cloned()
            .unwrap_or_else(|| alloc.clone());
        updated.client_status = ClientStatus::Unknown;
        updated.client_description = DESC_UNKNOWN.to_string();
        updated
            .alloc_states
            .push(client_status_state(ClientStatus::Unknown, self.now));
        updated.eval_id = self.plan.eval.id.clone();
        self.update_alloc(updated.clone());
        updated
    }

    /// The allocation's node is disconnected: a pending one, or one of a group without a
    /// disconnect window, is lost; a running one becomes `unknown` and waits for its window
    /// (replaced meanwhile if the group says so); an `unknown` one whose window passed is lost.
    fn disconnected(
        &mut self,
        group: &TaskGroup,
        job_allocs: &[Arc<Allocation>],
        alloc: &Allocation,
        t: &mut Triage,
    ) {
        let window = lost_after(group);
        match (alloc.client_status, window) {
            (ClientStatus::Unknown, _) if disconnect_expired(alloc, group, self.now) => {
                self.lose(group, job_allocs, alloc, t)
            }
            (ClientStatus::Unknown, _) => self.hold(group, job_allocs, alloc, t),
            (ClientStatus::Pending, _) | (_, None) => self.lose(group, job_allocs, alloc, t),
            (_, Some(_)) => {
                let updated = self.mark_unknown(alloc);
                self.hold(group, job_allocs, &updated, t);
            }
        }
    }

    /// An `unknown` allocation inside its window: set aside while a replacement runs (placed
    /// now if there is none yet) when the group replaces disconnected allocations, counted
    /// otherwise. Either way a delayed evaluation must look again when the window ends.
    fn hold(
        &mut self,
        group: &TaskGroup,
        job_allocs: &[Arc<Allocation>],
        alloc: &Allocation,
        t: &mut Triage,
    ) {
        if let (Some(since), Some(window)) = (last_unknown(alloc), lost_after(group)) {
            self.disconnect_expiries
                .insert(since.saturating_add(duration_nanos(window)));
        }
        if replace_while_disconnected(group) {
            t.excluded.insert(alloc.id.clone());
            if live_replacement(job_allocs, alloc).is_none() {
                t.replacements.push((alloc.name_index(), alloc.id.clone()));
            }
        }
    }

    /// The allocation was `unknown` and its node is back. Past its window it stays lost; if
    /// its client has not reported yet it waits; otherwise exactly one of it and its
    /// replacement keeps running, as the group's `reconcile` strategy picks.
    fn reconnecting(
        &mut self,
        group: &TaskGroup,
        job_allocs: &[Arc<Allocation>],
        alloc: &Allocation,
        t: &mut Triage,
    ) {
        // (A group that never replaces lost allocations takes its allocation back, however
        // late.)
        if disconnect_expired(alloc, group, self.now) && replace_when_lost(group) {
            self.lose(group, job_allocs, alloc, t);
            return;
        }
        if alloc.client_status == ClientStatus::Unknown {
            self.hold(group, job_allocs, alloc, t);
            return;
        }
        let replacement = live_replacement(job_allocs, alloc)
            .filter(|r| !t.excluded.contains(&r.id))
            .cloned();
        let strategy = ReconcileStrategy::of(group);
        match replacement {
            Some(r) if !keep_original(strategy, group, alloc, &r) => {
                self.stop(alloc, DESC_RECONNECTED);
                t.excluded.insert(alloc.id.clone());
            }
            other => {
                if let Some(r) = other {
                    self.stop(&r, DESC_RECONNECTED);
                    t.excluded.insert(r.id.clone());
                }
                // Acknowledged: its history now says the client status it reported, so the
                // next run counts it as any other.
                let mut updated = alloc.clone();
                updated
                    .alloc_states
                    .push(client_status_state(alloc.client_status, self.now));
                updated.eval_id = self.plan.eval.id.clone();
                self.update_alloc(updated);
            }
        }
    }

    /// A drain wants the allocation moved. It keeps running, uncounted, while a replacement is
    /// placed elsewhere, and is stopped once that replacement is healthy — or at once when
    /// the node's drain deadline has passed.
    fn migrating(
        &mut self,
        node: Option<&Node>,
        job_allocs: &[Arc<Allocation>],
        alloc: &Allocation,
        t: &mut Triage,
    ) {
        t.excluded.insert(alloc.id.clone());
        let forced = node.is_some_and(|n| drain_deadline_passed(n, self.now));
        match live_replacement(job_allocs, alloc) {
            None => {
                if forced {
                    self.stop(alloc, DESC_MIGRATING);
                }
                t.replacements.push((alloc.name_index(), alloc.id.clone()));
            }
            Some(r) => {
                let healthy = r.deployment_status.as_ref().is_some_and(|d| d.is_healthy());
                if healthy || forced {
                    self.stop(alloc, DESC_MIGRATING);
                }
            }
        }
    }

    /// The delayed evaluation that marks `unknown` allocations lost when their window ends:
    /// one, at the earliest end no pending evaluation of the job already covers. (When it
    /// runs, a later end it does not reach gets its own.)
    pub(super) fn disconnect_follow_up(&mut self, env: &mut dyn SchedulerEnv) {
        let eval = &self.plan.eval;
        let covered: Vec<i64> = self
            .state
            .evals_by_job(&eval.namespace, &eval.job_id)
            .iter()
            .filter(|e| {
                e.id != eval.id
                    && e.status == EvalStatus::Pending
                    && e.triggered_by == trigger::MAX_DISCONNECT_TIMEOUT
            })
            .filter_map(|e| parse_rfc3339(&e.wait_until))
            .collect();
        let uncovered = self
            .disconnect_expiries
            .iter()
            .copied()
            .find(|end| !covered.iter().any(|c| c >= end));
        let Some(at) = uncovered else {
            return;
        };
        let follow_up = Evaluation {
            id: env.new_id(),
            namespace: eval.namespace.clone(),
            priority: eval.priority,
            eval_type: eval.eval_type.clone(),
            triggered_by: trigger::MAX_DISCONNECT_TIMEOUT.to_string(),
            job_id: eval.job_id.clone(),
            job_modify_index: eval.job_modify_index,
            status: EvalStatus::Pending,
            status_description: DESC_DISCONNECT_TIMEOUT_EVAL.to_string(),
            previous_eval: eval.id.clone(),
            wait_until: format_rfc3339(at),
            ..Default::default()
        };
        self.plan.created_evals.push(follow_up);
    }
}
