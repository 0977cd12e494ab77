//! The restart policy as a pure state machine: given how a task ended and when, decide whether
//! to run it again and after what delay (Nomad's `restart` block semantics).

use std::time::Duration;

use controlplane::model::{JobType, RestartPolicy};

use super::lifecycle::{restarts_on_success, Stage};

/// How a task run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Exited with status 0.
    Success,
    /// Exited non-zero, was killed by a signal, or was OOM-killed.
    Failure,
    /// Could not be started at all (driver or setup error).
    StartFailure,
    /// Could not be started, and starting again cannot help: the task's config is refused
    /// by this node, its program is not there. Never restarted (as Nomad does with a driver
    /// error it marks unrecoverable).
    UnrecoverableStartFailure,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartDecision {
    /// The task is done and succeeded: it stays dead, not failed.
    Complete,
    /// Run again after `delay`.
    Restart { delay: Duration, reason: String },
    /// Give up: the task is dead and failed.
    Fail { reason: String },
}

fn is_batch(job_type: JobType) -> bool {
    matches!(job_type, JobType::Batch | JobType::Sysbatch)
}

/// Tracks restarts within the policy's interval.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    policy: RestartPolicy,
    /// Whether a successful exit is restarted (service main tasks and lifecycle sidecars;
    /// see [`super::lifecycle::restarts_on_success`]).
    restart_on_success: bool,
    /// Start of the current interval (monotonic time, as a duration since an arbitrary origin).
    interval_start: Option<Duration>,
    count_in_interval: i64,
}

impl RestartTracker {
    pub fn new(policy: RestartPolicy, job_type: JobType) -> RestartTracker {
        RestartTracker::for_stage(policy, job_type, Stage::Main)
    }

    /// The tracker of a task of lifecycle `stage`.
    pub fn for_stage(policy: RestartPolicy, job_type: JobType, stage: Stage) -> RestartTracker {
        RestartTracker {
            policy,
            restart_on_success: restarts_on_success(is_batch(job_type), stage),
            interval_start: None,
            count_in_interval: 0,
        }
    }

    /// A tracker that goes on from a recorded state (a node daemon that restarted). Times are
    /// durations since the unix epoch.
    pub fn resume(
        policy: RestartPolicy,
        job_type: JobType,
        stage: Stage,
        state: super::state::RestartState,
    ) -> RestartTracker {
        RestartTracker {
            policy,
            restart_on_success: restarts_on_success(is_batch(job_type), stage),
            interval_start: state
                .interval_start_unix_nanos
                .and_then(|n| u64::try_from(n).ok())
                .map(Duration::from_nanos),
            count_in_interval: state.count_in_interval,
        }
    }

    /// The state to record (times as durations since the unix epoch).
    pub fn state(&self) -> super::state::RestartState {
        super::state::RestartState {
            interval_start_unix_nanos: self
                .interval_start
                .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
            count_in_interval: self.count_in_interval,
        }
    }

    /// Decides after a run ended at time `now`.
    pub fn next(&mut self, outcome: RunOutcome, now: Duration) -> RestartDecision {
        if outcome == RunOutcome::Success && !self.restart_on_success {
            return RestartDecision::Complete;
        }

        let start = *self.interval_start.get_or_insert(now);
        if now.saturating_sub(start) >= self.policy.interval {
            self.interval_start = Some(now);
            self.count_in_interval = 0;
        }
        let why = match outcome {
            RunOutcome::Success => {
                "Restart within policy (the task exited, and service tasks are kept running)"
            }
            RunOutcome::Failure => "Restart within policy",
            RunOutcome::StartFailure => "Restart within policy (the task failed to start)",
            RunOutcome::UnrecoverableStartFailure => {
                return RestartDecision::Fail {
                    reason: "Error was unrecoverable".to_string(),
                }
            }
        };
        if self.count_in_interval < self.policy.attempts {
            self.count_in_interval += 1;
            return RestartDecision::Restart {
                delay: self.policy.delay,
                reason: why.to_string(),
            };
        }
        if self.policy.mode == "delay" {
            // Wait out the rest of the interval, then begin a fresh one.
            let interval_start = self.interval_start.unwrap_or(now);
            let remaining = (interval_start + self.policy.interval).saturating_sub(now);
            self.interval_start = Some(now + remaining);
            self.count_in_interval = 0;
            return RestartDecision::Restart {
                delay: remaining.max(self.policy.delay),
                reason: "Exceeded allowed attempts, applying a delay (restart mode \"delay\")"
                    .to_string(),
            };
        }
        RestartDecision::Fail {
            reason: format!(
                "Exceeded allowed attempts {} in interval {} and mode is \"fail\"",
                self.policy.attempts,
                controlplane::model::duration::format_go(self.policy.interval)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(attempts: i64, mode: &str) -> RestartPolicy {
        RestartPolicy {
            attempts,
            interval: Duration::from_secs(60),
            delay: Duration::from_secs(5),
            mode: mode.into(),
            render_templates: false,
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn batch_success_completes_and_service_success_restarts() {
        let mut batch = RestartTracker::new(policy(2, "fail"), JobType::Batch);
        assert_eq!(
            batch.next(RunOutcome::Success, S(0)),
            RestartDecision::Complete
        );
        let mut service = RestartTracker::new(policy(2, "fail"), JobType::Service);
        assert!(matches!(
            service.next(RunOutcome::Success, S(0)),
            RestartDecision::Restart { .. }
        ));
    }

    #[test]
    fn attempts_are_counted_per_interval_then_fail() {
        let mut t = RestartTracker::new(policy(2, "fail"), JobType::Service);
        assert!(
            matches!(t.next(RunOutcome::Failure, S(0)), RestartDecision::Restart { delay, .. } if delay == S(5))
        );
        assert!(matches!(
            t.next(RunOutcome::Failure, S(10)),
            RestartDecision::Restart { .. }
        ));
        match t.next(RunOutcome::Failure, S(20)) {
            RestartDecision::Fail { reason } => {
                assert!(reason.contains("Exceeded allowed attempts 2 in interval 1m0s"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_new_interval_resets_the_count() {
        let mut t = RestartTracker::new(policy(1, "fail"), JobType::Service);
        assert!(matches!(
            t.next(RunOutcome::Failure, S(0)),
            RestartDecision::Restart { .. }
        ));
        assert!(matches!(
            t.next(RunOutcome::Failure, S(61)),
            RestartDecision::Restart { .. }
        ));
        assert!(matches!(
            t.next(RunOutcome::Failure, S(62)),
            RestartDecision::Fail { .. }
        ));
    }

    #[test]
    fn delay_mode_waits_out_the_interval() {
        let mut t = RestartTracker::new(policy(1, "delay"), JobType::Service);
        t.next(RunOutcome::Failure, S(0));
        match t.next(RunOutcome::Failure, S(10)) {
            RestartDecision::Restart { delay, reason } => {
                assert_eq!(delay, S(50));
                assert!(reason.contains("delay"));
            }
            other => panic!("{other:?}"),
        }
        // After the wait, a fresh interval allows attempts again.
        assert!(
            matches!(t.next(RunOutcome::Failure, S(61)), RestartDecision::Restart { delay, .. } if delay == S(5))
        );
    }

    #[test]
    fn a_resumed_tracker_goes_on_counting_where_the_recorded_one_stopped() {
        let mut t = RestartTracker::new(policy(2, "fail"), JobType::Service);
        t.next(RunOutcome::Failure, S(100));
        t.next(RunOutcome::Failure, S(110));
        let recorded = t.state();
        assert_eq!(recorded.count_in_interval, 2);
        let mut resumed =
            RestartTracker::resume(policy(2, "fail"), JobType::Service, Stage::Main, recorded);
        assert!(matches!(
            resumed.next(RunOutcome::Failure, S(120)),
            RestartDecision::Fail { .. }
        ));
    }

    #[test]
    fn zero_attempts_fail_at_once() {
        let mut t = RestartTracker::new(policy(0, "fail"), JobType::Batch);
        assert!(matches!(
            t.next(RunOutcome::Failure, S(0)),
            RestartDecision::Fail { .. }
        ));
    }

    #[test]
    fn an_unrecoverable_start_failure_is_never_restarted() {
        for mode in ["fail", "delay"] {
            for job_type in [JobType::Service, JobType::Batch] {
                let mut t = RestartTracker::new(policy(5, mode), job_type);
                assert_eq!(
                    t.next(RunOutcome::UnrecoverableStartFailure, S(0)),
                    RestartDecision::Fail {
                        reason: "Error was unrecoverable".to_string()
                    }
                );
            }
        }
        // A recoverable one is, within the policy.
        let mut t = RestartTracker::new(policy(5, "fail"), JobType::Service);
        assert!(matches!(
            t.next(RunOutcome::StartFailure, S(0)),
            RestartDecision::Restart { .. }
        ));
    }
}
