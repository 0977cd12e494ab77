//! What a check's results make of its status, and when a check restarts its task: pure
//! values the check loop feeds, tested without a clock or a network.
//!
//! The status follows Consul's rules, which Nomad's docs defer to for `initial_status`,
//! `success_before_passing`, `failures_before_warning` and `failures_before_critical`:
//! a check starts at `initial_status` (critical when left out: "Omitting this field … will
//! result in the Consul default behavior, which is critical"); a passing (or warning) result
//! counts as a success and takes effect once `success_before_passing` of them came in a
//! row; a critical result counts as a failure, and the status turns warning after
//! `failures_before_warning`, critical after `failures_before_critical` failures in a row.
//! A threshold of 0 or 1 means "at once".

use controlplane::model::{CheckRestart, HealthStatus, MAX_CHECK_OUTPUT};

/// One probe's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: HealthStatus,
    /// What the probe said (a body, a script's output, an error), cut to
    /// [`MAX_CHECK_OUTPUT`].
    pub output: String,
    /// The HTTP status of an http check (0 for other kinds).
    pub status_code: u16,
}

impl Outcome {
    pub fn new(status: HealthStatus, output: impl Into<String>) -> Outcome {
        Outcome {
            status,
            output: cut_output(output.into()),
            status_code: 0,
        }
    }
}

/// `s` cut to at most [`MAX_CHECK_OUTPUT`] bytes, on a character boundary.
pub fn cut_output(mut s: String) -> String {
    if s.len() > MAX_CHECK_OUTPUT {
        let mut end = MAX_CHECK_OUTPUT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// A check's thresholds, from its `check` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub initial: HealthStatus,
    pub success_before_passing: u32,
    pub failures_before_warning: u32,
    pub failures_before_critical: u32,
}

impl Thresholds {
    /// From a check's fields; a negative count reads as 0 (the jobspec refuses them), and an
    /// `initial_status` that is empty or not a status word as critical.
    pub fn of(check: &controlplane::model::ServiceCheck) -> Thresholds {
        let count = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
        Thresholds {
            initial: HealthStatus::parse(&check.initial_status).unwrap_or(HealthStatus::Critical),
            success_before_passing: count(check.success_before_passing),
            failures_before_warning: count(check.failures_before_warning),
            failures_before_critical: count(check.failures_before_critical),
        }
    }
}

/// A check's status as its results come in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckStatus {
    thresholds: Thresholds,
    status: HealthStatus,
    successes: u32,
    failures: u32,
    /// The last result's output and HTTP status (empty before the first).
    pub output: String,
    pub status_code: u16,
    /// Whether any result came in yet.
    pub ran: bool,
}

impl CheckStatus {
    pub fn new(thresholds: Thresholds) -> CheckStatus {
        CheckStatus {
            thresholds,
            status: thresholds.initial,
            successes: 0,
            failures: 0,
            output: String::new(),
            status_code: 0,
            ran: false,
        }
    }

    pub fn status(&self) -> HealthStatus {
        self.status
    }

    /// Takes one result; returns whether the status changed.
    pub fn observe(&mut self, outcome: &Outcome) -> bool {
        let before = self.status;
        self.ran = true;
        self.output = outcome.output.clone();
        self.status_code = outcome.status_code;
        let t = &self.thresholds;
        match outcome.status {
            HealthStatus::Passing | HealthStatus::Warning => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                if self.successes >= t.success_before_passing {
                    self.status = outcome.status;
                }
            }
            HealthStatus::Critical => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                if self.failures >= t.failures_before_critical {
                    self.status = HealthStatus::Critical;
                } else if self.failures >= t.failures_before_warning
                    && t.failures_before_warning > 0
                {
                    self.status = HealthStatus::Warning;
                }
            }
        }
        self.status != before
    }
}

/// What `check_restart` decides after a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    Wait,
    Restart,
}

/// Nomad's check watcher for one check: after `grace` from the task's start, `limit`
/// unhealthy results in a row restart the task (warning counts unless `ignore_warnings`).
/// Times are nanoseconds on any clock the caller keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartWatch {
    limit: u32,
    grace_ns: i64,
    ignore_warnings: bool,
    started_ns: i64,
    unhealthy: u32,
}

impl RestartWatch {
    /// `None` when the block asks for nothing (`limit = 0`, Nomad's "disabled").
    pub fn new(config: &CheckRestart, task_started_ns: i64) -> Option<RestartWatch> {
        let limit = u32::try_from(config.limit).ok().filter(|l| *l > 0)?;
        let grace_ns = config
            .grace
            .map_or(0, |g| i64::try_from(g.as_nanos()).unwrap_or(i64::MAX));
        Some(RestartWatch {
            limit,
            grace_ns,
            ignore_warnings: config.ignore_warnings,
            started_ns: task_started_ns,
            unhealthy: 0,
        })
    }

    /// Takes the check's status after a result at `now_ns`.
    pub fn observe(&mut self, status: HealthStatus, now_ns: i64) -> RestartDecision {
        let unhealthy = match status {
            HealthStatus::Passing => false,
            HealthStatus::Warning => !self.ignore_warnings,
            HealthStatus::Critical => true,
        };
        if !unhealthy {
            self.unhealthy = 0;
            return RestartDecision::Wait;
        }
        if now_ns < self.started_ns.saturating_add(self.grace_ns) {
            // Within the grace period results do not count, as in Nomad's watcher.
            return RestartDecision::Wait;
        }
        self.unhealthy += 1;
        if self.unhealthy >= self.limit {
            self.unhealthy = 0;
            RestartDecision::Restart
        } else {
            RestartDecision::Wait
        }
    }

    /// The task was restarted (by this watch or otherwise): grace starts again.
    pub fn restarted(&mut self, now_ns: i64) {
        self.started_ns = now_ns;
        self.unhealthy = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use HealthStatus::*;

    fn t(initial: HealthStatus, pass: u32, warn: u32, crit: u32) -> Thresholds {
        Thresholds {
            initial,
            success_before_passing: pass,
            failures_before_warning: warn,
            failures_before_critical: crit,
        }
    }

    fn run(th: Thresholds, results: &[HealthStatus]) -> Vec<HealthStatus> {
        let mut s = CheckStatus::new(th);
        results
            .iter()
            .map(|r| {
                s.observe(&Outcome::new(*r, "out"));
                s.status()
            })
            .collect()
    }

    #[test]
    fn the_initial_status_is_critical_unless_the_check_says_otherwise() {
        let mut check = controlplane::model::ServiceCheck::default();
        assert_eq!(Thresholds::of(&check).initial, Critical);
        check.initial_status = "passing".into();
        assert_eq!(Thresholds::of(&check).initial, Passing);
        check.initial_status = "warning".into();
        assert_eq!(CheckStatus::new(Thresholds::of(&check)).status(), Warning);
        check.success_before_passing = -3;
        assert_eq!(Thresholds::of(&check).success_before_passing, 0);
    }

    #[test]
    fn without_thresholds_every_result_takes_effect_at_once() {
        assert_eq!(
            run(t(Critical, 0, 0, 0), &[Passing, Critical, Warning, Passing]),
            vec![Passing, Critical, Warning, Passing]
        );
    }

    #[test]
    fn success_before_passing_needs_that_many_in_a_row() {
        assert_eq!(
            run(
                t(Critical, 3, 0, 0),
                &[Passing, Passing, Critical, Passing, Passing, Passing]
            ),
            vec![Critical, Critical, Critical, Critical, Critical, Passing]
        );
    }

    #[test]
    fn failures_go_through_warning_to_critical() {
        assert_eq!(
            run(
                t(Passing, 0, 1, 3),
                &[Critical, Critical, Critical, Passing, Critical]
            ),
            vec![Warning, Warning, Critical, Passing, Warning]
        );
        // Only critical after the count; no warning step when failures_before_warning is 0.
        assert_eq!(
            run(t(Passing, 0, 0, 2), &[Critical, Critical]),
            vec![Passing, Critical]
        );
    }

    #[test]
    fn output_is_the_last_results_and_is_cut() {
        let mut s = CheckStatus::new(t(Critical, 0, 0, 0));
        assert!(!s.ran);
        assert!(s.observe(&Outcome::new(Passing, "x".repeat(MAX_CHECK_OUTPUT + 10))));
        assert_eq!(s.output.len(), MAX_CHECK_OUTPUT);
        assert!(!s.observe(&Outcome::new(Passing, "é".repeat(MAX_CHECK_OUTPUT))));
        assert!(s.output.len() <= MAX_CHECK_OUTPUT && s.output.starts_with('é'));
        assert!(s.ran);
    }

    fn restart(limit: i64, grace_s: u64, ignore_warnings: bool) -> CheckRestart {
        CheckRestart {
            limit,
            grace: Some(Duration::from_secs(grace_s)),
            ignore_warnings,
        }
    }

    const S: i64 = 1_000_000_000;

    #[test]
    fn check_restart_counts_unhealthy_results_after_grace() {
        assert!(RestartWatch::new(&restart(0, 1, false), 0).is_none());
        let mut w = RestartWatch::new(&restart(2, 10, false), 0).unwrap();
        // In grace: nothing counts.
        assert_eq!(w.observe(Critical, 5 * S), RestartDecision::Wait);
        assert_eq!(w.observe(Critical, 9 * S), RestartDecision::Wait);
        assert_eq!(w.observe(Critical, 10 * S), RestartDecision::Wait);
        // A passing result resets the count.
        assert_eq!(w.observe(Passing, 11 * S), RestartDecision::Wait);
        assert_eq!(w.observe(Warning, 12 * S), RestartDecision::Wait);
        assert_eq!(w.observe(Critical, 13 * S), RestartDecision::Restart);
        // Counting starts over after a restart, and so does grace.
        w.restarted(14 * S);
        assert_eq!(w.observe(Critical, 15 * S), RestartDecision::Wait);
        assert_eq!(w.observe(Critical, 24 * S), RestartDecision::Wait);
        assert_eq!(w.observe(Critical, 25 * S), RestartDecision::Restart);
    }

    #[test]
    fn ignore_warnings_leaves_warning_healthy() {
        let mut w = RestartWatch::new(&restart(1, 0, true), 0).unwrap();
        assert_eq!(w.observe(Warning, S), RestartDecision::Wait);
        assert_eq!(w.observe(Warning, 2 * S), RestartDecision::Wait);
        assert_eq!(w.observe(Critical, 3 * S), RestartDecision::Restart);
    }
}
