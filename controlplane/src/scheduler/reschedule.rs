//! Rescheduling failed allocations (Nomad's `ReschedulePolicy`, `RescheduleTracker`,
//! `NextRescheduleTime`, `NextDelay`): pure functions of an allocation, its group's policy and
//! the time. The reconciler asks [`decide`] for each failed allocation of a service or batch
//! job whether a replacement is placed now, by a delayed evaluation later, or never.

use crate::model::time::parse_rfc3339;
use crate::model::{
    Allocation, ClientStatus, DesiredStatus, JobType, RescheduleEvent, ReschedulePolicy,
    RescheduleTracker,
};

use super::tainted::duration_nanos;

/// The stop description of a failed allocation once its replacement is placed (Nomad's).
pub const DESC_RESCHEDULED: &str = "alloc was rescheduled because it failed";
/// The status description of the delayed evaluation that reschedules failed allocations.
pub const DESC_RESCHEDULE_FOLLOWUP_EVAL: &str = "created for delayed rescheduling";

/// An allocation whose reschedule time is this close is rescheduled now rather than by a
/// delayed evaluation (Nomad's `rescheduleWindowSize`).
pub const RESCHEDULE_WINDOW_NANOS: i64 = 1_000_000_000;
/// Failed allocations due within this window of the earliest share one delayed evaluation
/// (Nomad's `batchedFailedAllocWindowSize`).
pub const BATCH_WINDOW_NANOS: i64 = 5_000_000_000;
/// How many past events a replacement keeps when the policy is unlimited (then only the last
/// delay matters): the tracker stays bounded however often an allocation fails.
pub const MAX_PAST_EVENTS: usize = 5;

/// What becomes of one failed allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Place its replacement in this run.
    Now,
    /// Its replacement is due at this time (Unix nanoseconds): a delayed evaluation must run
    /// then. It stays, failed and counted, until then.
    Later(i64),
    /// It stays failed and counted: no attempts left, no policy, or a delayed evaluation is
    /// already on its way for it.
    Stay,
}

/// The policy numbers, defaults applied (a canonicalized job has every field set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub attempts: i64,
    pub interval_nanos: i64,
    pub delay_nanos: i64,
    pub function: DelayFunction,
    pub max_delay_nanos: i64,
    pub unlimited: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayFunction {
    Constant,
    Exponential,
    Fibonacci,
}

impl Policy {
    pub fn of(policy: &ReschedulePolicy) -> Policy {
        let nanos = |d: Option<std::time::Duration>| d.map(duration_nanos).unwrap_or(0);
        Policy {
            attempts: policy.attempts.unwrap_or(0),
            interval_nanos: nanos(policy.interval),
            delay_nanos: nanos(policy.delay),
            function: match policy.delay_function.as_deref() {
                Some("exponential") => DelayFunction::Exponential,
                Some("fibonacci") => DelayFunction::Fibonacci,
                _ => DelayFunction::Constant,
            },
            max_delay_nanos: nanos(policy.max_delay),
            unlimited: policy.unlimited.unwrap_or(false),
        }
    }

    fn enabled(&self) -> bool {
        self.attempts > 0 || self.unlimited
    }
}

/// The reschedule policy the allocation's own job version gives its group (Nomad reads the
/// allocation's job: a policy changed since applies to allocations of the new version).
pub fn policy_of(alloc: &Allocation) -> Option<Policy> {
    alloc
        .job
        .as_ref()?
        .group(&alloc.task_group)?
        .reschedule_policy
        .as_ref()
        .map(Policy::of)
}

/// When the allocation failed: the last of its tasks' `finished_at`, or else its last
/// modification. Zero when neither is known.
pub fn fail_time(alloc: &Allocation) -> i64 {
    alloc
        .task_states
        .values()
        .filter_map(|s| s.finished_at.as_deref().and_then(parse_rfc3339))
        .max()
        .unwrap_or(alloc.modify_time)
}

fn events(alloc: &Allocation) -> &[RescheduleEvent] {
    alloc
        .reschedule_tracker
        .as_ref()
        .map(|t| t.events.as_slice())
        .unwrap_or(&[])
}

/// Attempts made within the policy's interval before `fail_time`.
pub fn attempts_in_interval(alloc: &Allocation, policy: &Policy, fail_time: i64) -> i64 {
    if policy.attempts <= 0 {
        return 0;
    }
    events(alloc)
        .iter()
        .filter(|e| fail_time.saturating_sub(e.reschedule_time) < policy.interval_nanos)
        .count() as i64
}

/// The delay before the next attempt: `delay` for the first, then per the delay function
/// from the previous attempts' delays, capped at `max_delay`; once capped, a failure that
/// came long enough after the last attempt starts the series again.
pub fn next_delay(alloc: &Allocation, policy: &Policy) -> i64 {
    let events = events(alloc);
    let Some(last) = events.last() else {
        return policy.delay_nanos;
    };
    let mut delay = match policy.function {
        DelayFunction::Constant => return policy.delay_nanos,
        DelayFunction::Exponential => last.delay.saturating_mul(2),
        DelayFunction::Fibonacci => match events.len() {
            1 => policy.delay_nanos,
            n => {
                let before = events[n - 2].delay;
                // A series that hit the cap and was reset starts again from `delay`.
                if before == policy.max_delay_nanos && last.delay == policy.delay_nanos {
                    last.delay
                } else {
                    last.delay.saturating_add(before)
                }
            }
        },
    };
    if policy.max_delay_nanos > 0 && delay > policy.max_delay_nanos {
        delay = policy.max_delay_nanos;
        let since_last = fail_time(alloc).saturating_sub(last.reschedule_time);
        if since_last > delay {
            delay = policy.delay_nanos;
        }
    }
    delay
}

/// When the allocation may be rescheduled, and whether its policy allows it at all (attempts
/// left in the interval, or unlimited). `None` when it is not a candidate: no policy, not
/// failed, no known failure time.
pub fn next_reschedule_time(alloc: &Allocation, policy: &Policy) -> Option<(i64, bool)> {
    let failed_at = fail_time(alloc);
    if !policy.enabled()
        || alloc.desired_status == DesiredStatus::Stop
        || !matches!(
            alloc.client_status,
            ClientStatus::Failed | ClientStatus::Lost
        )
        || failed_at == 0
    {
        return None;
    }
    let delay = next_delay(alloc, policy);
    let at = failed_at.saturating_add(delay);
    let eligible = if policy.unlimited {
        true
    } else if events(alloc).is_empty() {
        policy.attempts > 0
    } else {
        attempts_in_interval(alloc, policy, failed_at) < policy.attempts
            && delay < policy.interval_nanos
    };
    Some((at, eligible))
}

/// Whether this allocation of a job of `job_type` is one the reschedule rules look at: failed
/// (or, for batch, marked to reschedule), still wanted running, and not already replaced.
pub fn is_candidate(alloc: &Allocation, job_type: JobType) -> bool {
    if !alloc.next_allocation.is_empty() || alloc.desired_status != DesiredStatus::Run {
        return false;
    }
    match job_type {
        JobType::Service | JobType::Batch => alloc.client_status == ClientStatus::Failed,
        JobType::System | JobType::Sysbatch => false,
    }
}

/// What becomes of a failed allocation (one [`is_candidate`] accepts) in evaluation
/// `eval_id` at `now` (Nomad's `updateByReschedulable`). A forced reschedule
/// (`desired_transition.force_reschedule`, or `reschedule`) happens now whatever the policy.
pub fn decide(alloc: &Allocation, eval_id: &str, now: i64) -> Decision {
    let t = &alloc.desired_transition;
    if t.should_force_reschedule() || t.should_reschedule() {
        return Decision::Now;
    }
    let Some(policy) = policy_of(alloc) else {
        return Decision::Stay;
    };
    match next_reschedule_time(alloc, &policy) {
        Some((at, true))
            if alloc.followup_eval_id == eval_id
                || at.saturating_sub(now) <= RESCHEDULE_WINDOW_NANOS =>
        {
            Decision::Now
        }
        Some((at, true)) if alloc.followup_eval_id.is_empty() => Decision::Later(at),
        _ => Decision::Stay,
    }
}

/// The tracker a replacement of `prev` carries: the earlier attempts still relevant (within
/// the interval, or the last few when unlimited) and this one, at `now` with the delay it
/// waited.
pub fn tracker_for_replacement(prev: &Allocation, now: i64) -> RescheduleTracker {
    let policy = policy_of(prev);
    let past = events(prev);
    let mut kept: Vec<RescheduleEvent> = match policy {
        Some(p) if p.attempts > 0 => past
            .iter()
            .filter(|e| p.interval_nanos > 0 && now - e.reschedule_time <= p.interval_nanos)
            .cloned()
            .collect(),
        _ => past[past.len().saturating_sub(MAX_PAST_EVENTS)..].to_vec(),
    };
    kept.push(RescheduleEvent {
        reschedule_time: now,
        prev_alloc_id: prev.id.clone(),
        prev_node_id: prev.node_id.clone(),
        delay: policy.map(|p| next_delay(prev, &p)).unwrap_or(0),
    });
    RescheduleTracker { events: kept }
}

/// Groups reschedule times into delayed evaluations: each batch starts at its earliest time
/// and takes every later one within [`BATCH_WINDOW_NANOS`] of it. Returns, per input (same
/// order), the index of its batch, and each batch's time.
pub fn batch_times(times: &[i64]) -> (Vec<usize>, Vec<i64>) {
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by_key(|&i| times[i]);
    let mut batch_of = vec![0; times.len()];
    let mut starts: Vec<i64> = Vec::new();
    for i in order {
        match starts.last() {
            Some(&start) if times[i] - start < BATCH_WINDOW_NANOS => {}
            _ => starts.push(times[i]),
        }
        batch_of[i] = starts.len() - 1;
    }
    (batch_of, starts)
}
