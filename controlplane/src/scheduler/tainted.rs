//! Allocations whose node is gone, down, disconnected or draining, and allocations coming back
//! from a disconnect: the rules the reconciler (and the drainer, and the heartbeat timer) read,
//! after Nomad's `filterByTainted`/`classifyAllocs`, `DisconnectStrategy` and the reconnecting
//! picker. Pure functions of the allocation, its group and the time.

use std::sync::Arc;
use std::time::Duration;

use crate::model::time::{format_rfc3339, parse_rfc3339};
use crate::model::{Allocation, ClientStatus, DesiredStatus, Node, NodeStatus, TaskGroup};
use crate::state::State;

/// The stop description of an allocation whose node is down, gone, or was disconnected for
/// longer than its group allows (Nomad's wording).
pub const DESC_LOST: &str = "alloc is lost since its node is down";
/// The stop description of a drained allocation once its replacement is healthy.
pub const DESC_MIGRATING: &str = "alloc is being migrated";
/// The stop description of whichever copy loses when a disconnected client reconnects.
pub const DESC_RECONNECTED: &str = "alloc not needed due to disconnected client reconnect";
/// The client description the servers write when they mark an allocation `unknown`.
pub const DESC_UNKNOWN: &str = "alloc is unknown since its node is disconnected";
/// The status description of the delayed evaluation that marks disconnected allocations lost.
pub const DESC_DISCONNECT_TIMEOUT_EVAL: &str = "created for delayed disconnect timeout";

/// `AllocState.field` of a client status change.
pub const ALLOC_STATE_CLIENT_STATUS: &str = "ClientStatus";

/// Which copy stays when a disconnected client comes back with an allocation that was replaced
/// meanwhile (`disconnect { reconcile = … }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileStrategy {
    /// The one placed on the better-scoring node (Nomad's default).
    BestScore,
    KeepOriginal,
    KeepReplacement,
    /// The one whose tasks started first.
    LongestRunning,
}

impl ReconcileStrategy {
    /// The group's strategy; an unknown word (the jobspec refuses those) is the default.
    pub fn of(group: &TaskGroup) -> ReconcileStrategy {
        match group
            .disconnect
            .as_ref()
            .and_then(|d| d.reconcile.as_deref())
        {
            Some("keep_original") => ReconcileStrategy::KeepOriginal,
            Some("keep_replacement") => ReconcileStrategy::KeepReplacement,
            Some("longest_running") => ReconcileStrategy::LongestRunning,
            _ => ReconcileStrategy::BestScore,
        }
    }
}

/// How long an allocation of `group` may stay `unknown` on a disconnected node before it is
/// lost: `disconnect.lost_after`, or the legacy `max_client_disconnect`. `None` (or zero) is
/// "no window": a missed heartbeat makes the node down and its allocations lost at once.
pub fn lost_after(group: &TaskGroup) -> Option<Duration> {
    group
        .disconnect
        .as_ref()
        .and_then(|d| d.lost_after)
        .or(group.max_client_disconnect)
        .filter(|d| !d.is_zero())
}

/// Whether an allocation of `group` is replaced while its node is disconnected
/// (`disconnect.replace`, default true; the legacy `prevent_reschedule_on_lost` says no).
pub fn replace_while_disconnected(group: &TaskGroup) -> bool {
    group
        .disconnect
        .as_ref()
        .and_then(|d| d.replace)
        .unwrap_or(!group.prevent_reschedule_on_lost)
}

/// Whether a lost allocation of `group` gets a replacement (`prevent_reschedule_on_lost` says
/// no).
pub fn replace_when_lost(group: &TaskGroup) -> bool {
    !group.prevent_reschedule_on_lost
}

/// What a node that missed its heartbeat becomes: `disconnected` if some live allocation on it
/// belongs to a group with a disconnect window (its allocations then wait, `unknown`, for the
/// node to come back), `down` otherwise. The heartbeat timer proposes the result.
pub fn missed_heartbeat_status(state: &State, node_id: &str) -> NodeStatus {
    let windowed = state.allocs_by_node(node_id).iter().any(|alloc| {
        !alloc.is_terminal()
            && alloc
                .job
                .as_ref()
                .and_then(|j| j.group(&alloc.task_group))
                .is_some_and(|g| lost_after(g).is_some())
    });
    if windowed {
        NodeStatus::Disconnected
    } else {
        NodeStatus::Down
    }
}

/// When the allocation last became `unknown` (Unix nanoseconds), from its status history.
pub fn last_unknown(alloc: &Allocation) -> Option<i64> {
    let mut found = None;
    for state in alloc.alloc_states.iter().rev() {
        if state.field != ALLOC_STATE_CLIENT_STATUS {
            continue;
        }
        if state.value == ClientStatus::Unknown.as_str() {
            found = parse_rfc3339(&state.time).or(found);
        } else if found.is_some() {
            break;
        }
    }
    found
}

/// Whether the allocation was marked `unknown` and has not been reconciled since (its last
/// client-status change in the history is `unknown`): its client is, or was, disconnected.
pub fn needs_to_reconnect(alloc: &Allocation) -> bool {
    alloc
        .alloc_states
        .iter()
        .rev()
        .find(|s| s.field == ALLOC_STATE_CLIENT_STATUS && !s.value.is_empty())
        .is_some_and(|s| s.value == ClientStatus::Unknown.as_str())
}

/// Whether an `unknown` allocation's disconnect window has passed at `now` (a group without a
/// window is past it at once).
pub fn disconnect_expired(alloc: &Allocation, group: &TaskGroup, now: i64) -> bool {
    let Some(since) = last_unknown(alloc) else {
        return false;
    };
    match lost_after(group) {
        None => true,
        Some(window) => since.saturating_add(duration_nanos(window)) <= now,
    }
}

/// The history entry for a client status the servers decide (unknown on disconnect, running
/// again once a reconnect is reconciled).
pub fn client_status_state(status: ClientStatus, now: i64) -> crate::model::AllocState {
    crate::model::AllocState {
        field: ALLOC_STATE_CLIENT_STATUS.to_string(),
        value: status.as_str().to_string(),
        time: format_rfc3339(now),
    }
}

/// The live allocation that replaces `original`, following the chain of replacements (a
/// replacement that was itself replaced): the first one wanted running and not finished.
/// `allocs` are the job's allocations.
pub fn live_replacement<'a>(
    allocs: &'a [Arc<Allocation>],
    original: &Allocation,
) -> Option<&'a Arc<Allocation>> {
    let mut current = original.id.as_str();
    // Each step moves to a different allocation; the chain cannot be longer than the job's
    // allocations, which bounds a (corrupt) cycle.
    for _ in 0..allocs.len() {
        let next = allocs.iter().find(|a| a.previous_allocation == current)?;
        if next.desired_status == DesiredStatus::Run && !next.client_status.is_terminal() {
            return Some(next);
        }
        current = next.id.as_str();
    }
    None
}

/// Whether `node`'s drain has reached its force deadline at `now` (`deadline < 0` is "force
/// now"; no deadline never passes). A node that is not draining has none.
pub fn drain_deadline_passed(node: &Node, now: i64) -> bool {
    let Some(strategy) = &node.drain_strategy else {
        return false;
    };
    if strategy.deadline < 0 {
        return true;
    }
    parse_rfc3339(&strategy.force_deadline).is_some_and(|t| t <= now)
}

/// Which copy stays after a reconnect: `true` for the original.
pub fn keep_original(
    strategy: ReconcileStrategy,
    group: &TaskGroup,
    original: &Allocation,
    replacement: &Allocation,
) -> bool {
    let version = |a: &Allocation| a.job.as_ref().map(|j| j.job_modify_index).unwrap_or(0);
    if version(replacement) > version(original) {
        // The replacement runs a newer version of the job: keeping the original would only
        // replace it again.
        return false;
    }
    match strategy {
        ReconcileStrategy::KeepOriginal => true,
        ReconcileStrategy::KeepReplacement => false,
        ReconcileStrategy::BestScore => best_score_keeps_original(original, replacement),
        ReconcileStrategy::LongestRunning => {
            match (started(group, original), started(group, replacement)) {
                (Some(o), Some(r)) => o <= r,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => best_score_keeps_original(original, replacement),
            }
        }
    }
}

/// The replacement wins on score only if it scored better and is running (or the original is
/// not): a better node is not worth stopping a running allocation for one that is not.
fn best_score_keeps_original(original: &Allocation, replacement: &Allocation) -> bool {
    let score = |a: &Allocation| {
        a.metrics
            .scores
            .values()
            .copied()
            .fold(None, |best: Option<f64>, s| {
                Some(best.map_or(s, |b| b.max(s)))
            })
    };
    let better = match (score(original), score(replacement)) {
        (None, Some(_)) => true,
        (Some(o), Some(r)) => r > o,
        _ => false,
    };
    let replacement_running = replacement.client_status == ClientStatus::Running;
    let original_running = original.client_status == ClientStatus::Running;
    !(better && (replacement_running || !original_running))
}

/// When the allocation's leader task started, or else its oldest-started task.
fn started(group: &TaskGroup, alloc: &Allocation) -> Option<i64> {
    let start = |name: &str| {
        alloc
            .task_states
            .get(name)
            .and_then(|s| s.started_at.as_deref())
            .and_then(parse_rfc3339)
    };
    if let Some(leader) = group.tasks.iter().find(|t| t.leader) {
        return start(&leader.name);
    }
    group.tasks.iter().filter_map(|t| start(&t.name)).min()
}

/// A duration as nanoseconds, saturating (a window of centuries is "forever").
pub fn duration_nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}
