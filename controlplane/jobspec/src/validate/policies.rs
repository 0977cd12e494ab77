//! The policy blocks groups and tasks share: restart, reschedule, update (also at job
//! level) and migrate.

use std::time::Duration;

use model::duration::format_go;
use model::{RestartPolicy, TaskGroup, UpdateStrategy};

use super::Validator;
use crate::error::FieldPath;

/// Shortest restart interval Nomad accepts.
const RESTART_MIN_INTERVAL: Duration = Duration::from_secs(5);
/// Shortest reschedule delay Nomad accepts.
const RESCHEDULE_MIN_DELAY: Duration = Duration::from_secs(5);

impl Validator<'_> {
    pub(super) fn restart(&mut self, r: &RestartPolicy, rp: &FieldPath) {
        match r.mode.as_str() {
            "fail" | "delay" => {}
            other => {
                self.err(
                    &rp.field("mode").key("Mode"),
                    format!("mode must be \"fail\" or \"delay\" (got {other:?})"),
                );
                return;
            }
        }
        if r.attempts < 0 {
            self.err(
                &rp.field("attempts").key("Attempts"),
                format!("attempts must not be negative (got {})", r.attempts),
            );
            return;
        }
        if r.attempts == 0 && r.mode != "fail" {
            self.err(&rp.field("attempts").key("Attempts"), "attempts = 0 with mode \"delay\" would never restart; use mode = \"fail\" or attempts > 0");
        }
        if r.attempts > 0 && r.interval < RESTART_MIN_INTERVAL {
            self.err(
                &rp.field("interval").key("Interval"),
                format!(
                    "interval must be at least {} (got {})",
                    format_go(RESTART_MIN_INTERVAL),
                    format_go(r.interval)
                ),
            );
        }
        let needed = r
            .delay
            .saturating_mul(u32::try_from(r.attempts).unwrap_or(u32::MAX));
        if r.attempts > 0 && needed > r.interval {
            self.err(rp, format!("{} restarts {} apart do not fit in an interval of {}; lengthen interval or lower attempts or delay", r.attempts, format_go(r.delay), format_go(r.interval)));
        }
    }

    pub(super) fn reschedule(&mut self, r: &model::ReschedulePolicy, rp: &FieldPath) {
        let attempts = r.attempts.unwrap_or(0);
        let unlimited = r.unlimited.unwrap_or(false);
        if attempts < 0 {
            self.err(
                &rp.field("attempts").key("Attempts"),
                "attempts must not be negative",
            );
        }
        if attempts == 0 && !unlimited {
            return; // rescheduling disabled
        }
        let delay = r.delay.unwrap_or_default();
        let func = r.delay_function.as_deref().unwrap_or("");
        if !["constant", "exponential", "fibonacci"].contains(&func) {
            self.err(
                &rp.field("delay_function").key("DelayFunction"),
                format!("delay_function must be constant, exponential or fibonacci (got {func:?})"),
            );
        }
        if delay < RESCHEDULE_MIN_DELAY {
            self.err(
                &rp.field("delay").key("Delay"),
                format!(
                    "delay must be at least {} (got {})",
                    format_go(RESCHEDULE_MIN_DELAY),
                    format_go(delay)
                ),
            );
        }
        if func != "constant" {
            if let Some(max) = r.max_delay {
                if max < delay {
                    self.err(
                        &rp.field("max_delay").key("MaxDelay"),
                        format!(
                            "max_delay ({}) must be at least delay ({})",
                            format_go(max),
                            format_go(delay)
                        ),
                    );
                }
            }
        }
        if !unlimited {
            let interval = r.interval.unwrap_or_default();
            if interval.is_zero() {
                self.err(
                    &rp.field("interval").key("Interval"),
                    "a limited reschedule policy needs an interval (or set unlimited = true)",
                );
            }
        }
    }

    pub(super) fn update(&mut self, u: &UpdateStrategy, up: &FieldPath) {
        if let Some(hc) = &u.health_check {
            if !["checks", "task_states", "manual"].contains(&hc.as_str()) {
                self.err(&up.field("health_check").key("HealthCheck"), format!("health_check must be \"checks\", \"task_states\" or \"manual\" (got {hc:?})"));
            }
        }
        if u.max_parallel.unwrap_or(1) < 0 {
            self.err(
                &up.field("max_parallel").key("MaxParallel"),
                "max_parallel must not be negative",
            );
        }
        if u.canary.unwrap_or(0) < 0 {
            self.err(
                &up.field("canary").key("Canary"),
                "canary must not be negative",
            );
        }
        if u.canary.unwrap_or(0) > 0 && u.max_parallel == Some(0) {
            self.err(
                &up.field("canary").key("Canary"),
                "canaries need max_parallel > 0 to roll out",
            );
        }
        if let (Some(min), Some(dl)) = (u.min_healthy_time, u.healthy_deadline) {
            if min >= dl {
                self.err(
                    &up.field("min_healthy_time").key("MinHealthyTime"),
                    format!(
                        "min_healthy_time ({}) must be less than healthy_deadline ({})",
                        format_go(min),
                        format_go(dl)
                    ),
                );
            }
        }
        if let (Some(dl), Some(pd)) = (u.healthy_deadline, u.progress_deadline) {
            // Nomad refuses a healthy deadline equal to the progress deadline too: the
            // deployment would fail at the very moment an allocation may still turn healthy.
            if !pd.is_zero() && dl >= pd {
                self.err(&up.field("progress_deadline").key("ProgressDeadline"), format!("progress_deadline ({}) must be more than healthy_deadline ({}), or 0 to disable", format_go(pd), format_go(dl)));
            }
        }
        if u.stagger.is_some_and(|s| s.is_zero()) {
            self.err(
                &up.field("stagger").key("Stagger"),
                "stagger must be more than 0",
            );
        }
    }

    pub(super) fn migrate(&mut self, g: &TaskGroup, gp: &FieldPath) {
        let Some(m) = &g.migrate else {
            return;
        };
        let mp = gp.field("migrate").key("Migrate");
        if let Some(hc) = &m.health_check {
            if !["checks", "task_states"].contains(&hc.as_str()) {
                self.err(
                    &mp.field("health_check").key("HealthCheck"),
                    format!("health_check must be \"checks\" or \"task_states\" (got {hc:?})"),
                );
            }
        }
        if m.max_parallel.unwrap_or(1) < 0 {
            self.err(
                &mp.field("max_parallel").key("MaxParallel"),
                "max_parallel must not be negative",
            );
        }
        if let (Some(min), Some(dl)) = (m.min_healthy_time, m.healthy_deadline) {
            if min >= dl && !dl.is_zero() {
                self.err(
                    &mp.field("min_healthy_time").key("MinHealthyTime"),
                    format!(
                        "min_healthy_time ({}) must be less than healthy_deadline ({})",
                        format_go(min),
                        format_go(dl)
                    ),
                );
            }
        }
    }
}
