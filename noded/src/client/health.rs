//! Allocation health, as a drain waits for it: the client judges a replacement healthy once
//! every main task has been running for the group's `migrate.min_healthy_time` (default 10 s),
//! and unhealthy if a task fails, or health is not reached, before `healthy_deadline` (5 m).
//! This is Nomad's `health_check = "task_states"`. `"checks"` (Nomad's default, which also
//! waits for service checks to pass) is judged the same way until noded runs service checks.
//!
//! Pure: time comes in as Unix nanoseconds, so every rule is tested without a clock.

use std::collections::BTreeMap;
use std::time::Duration;

use controlplane::model::time::parse_rfc3339;
use controlplane::model::{TaskGroup, TaskLifecycleState, TaskState};

const DEFAULT_MIN_HEALTHY: Duration = Duration::from_secs(10);
const DEFAULT_HEALTHY_DEADLINE: Duration = Duration::from_secs(300);

/// Follows one allocation's tasks until its health is decided, once.
#[derive(Debug, Clone)]
pub struct HealthWatch {
    /// The tasks that must be running: not prestart/poststart/poststop hooks, except
    /// sidecars, which run alongside the main tasks.
    main_tasks: Vec<String>,
    min_healthy_ns: i64,
    /// When the verdict is "unhealthy" if it is not "healthy" yet (Unix nanoseconds).
    deadline: i64,
    decided: Option<bool>,
}

impl HealthWatch {
    /// Starts watching at `now` (the allocation runner's start).
    pub fn new(group: &TaskGroup, now: i64) -> HealthWatch {
        let migrate = group.migrate.clone().unwrap_or_default();
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let main_tasks = group
            .tasks
            .iter()
            .filter(|t| t.lifecycle.as_ref().is_none_or(|l| l.sidecar))
            .map(|t| t.name.clone())
            .collect();
        HealthWatch {
            main_tasks,
            min_healthy_ns: nanos(migrate.min_healthy_time.unwrap_or(DEFAULT_MIN_HEALTHY)),
            deadline: now.saturating_add(nanos(
                migrate.healthy_deadline.unwrap_or(DEFAULT_HEALTHY_DEADLINE),
            )),
            decided: None,
        }
    }

    /// The verdict, once there is one.
    pub fn decided(&self) -> Option<bool> {
        self.decided
    }

    /// Looks at the tasks' states at `now`; returns the verdict when it is reached (once).
    pub fn observe(&mut self, states: &BTreeMap<String, TaskState>, now: i64) -> Option<bool> {
        if self.decided.is_some() {
            return None;
        }
        let failed = self
            .main_tasks
            .iter()
            .any(|t| states.get(t).is_some_and(|s| s.failed));
        let verdict = if failed {
            Some(false)
        } else if self.healthy_since(states).is_some_and(|since| {
            now.saturating_sub(since) >= self.min_healthy_ns && since <= self.deadline
        }) {
            Some(true)
        } else if now >= self.deadline {
            Some(false)
        } else {
            None
        };
        self.decided = verdict;
        verdict
    }

    /// When to look again without a task changing: when the running tasks will have run
    /// long enough, or at the deadline.
    pub fn next_check(&self, states: &BTreeMap<String, TaskState>) -> Option<i64> {
        if self.decided.is_some() {
            return None;
        }
        let healthy_at = self
            .healthy_since(states)
            .map(|since| since.saturating_add(self.min_healthy_ns));
        Some(healthy_at.map_or(self.deadline, |h| h.min(self.deadline)))
    }

    /// Since when every main task has been running (the latest start), if they all are.
    fn healthy_since(&self, states: &BTreeMap<String, TaskState>) -> Option<i64> {
        let mut latest = None;
        for task in &self.main_tasks {
            let state = states.get(task)?;
            if state.state != TaskLifecycleState::Running {
                return None;
            }
            let started = state.started_at.as_deref().and_then(parse_rfc3339)?;
            latest = Some(latest.map_or(started, |l: i64| l.max(started)));
        }
        latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use controlplane::model::time::format_rfc3339;
    use controlplane::model::{MigrateStrategy, Task, TaskLifecycle};

    const T0: i64 = 1_700_000_000_000_000_000;
    const SEC: i64 = 1_000_000_000;

    fn group() -> TaskGroup {
        TaskGroup {
            tasks: vec![
                Task {
                    name: "main".into(),
                    ..Default::default()
                },
                Task {
                    name: "init".into(),
                    lifecycle: Some(TaskLifecycle {
                        hook: "prestart".into(),
                        sidecar: false,
                    }),
                    ..Default::default()
                },
            ],
            migrate: Some(MigrateStrategy {
                min_healthy_time: Some(Duration::from_secs(10)),
                healthy_deadline: Some(Duration::from_secs(60)),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn running(since: i64) -> TaskState {
        TaskState {
            state: TaskLifecycleState::Running,
            started_at: Some(format_rfc3339(since)),
            ..Default::default()
        }
    }

    #[test]
    fn healthy_once_main_tasks_ran_for_min_healthy_time() {
        let mut h = HealthWatch::new(&group(), T0);
        let mut states = BTreeMap::new();
        assert_eq!(h.observe(&states, T0), None);
        assert_eq!(
            h.next_check(&states),
            Some(T0 + 60 * SEC),
            "only the deadline"
        );
        states.insert("main".to_string(), running(T0 + 2 * SEC));
        // The finished prestart task does not count.
        states.insert(
            "init".to_string(),
            TaskState {
                state: TaskLifecycleState::Dead,
                ..Default::default()
            },
        );
        assert_eq!(h.observe(&states, T0 + 11 * SEC), None);
        assert_eq!(h.next_check(&states), Some(T0 + 12 * SEC));
        assert_eq!(h.observe(&states, T0 + 12 * SEC), Some(true));
        assert_eq!(h.observe(&states, T0 + 13 * SEC), None, "decided once");
        assert_eq!(h.decided(), Some(true));
    }

    #[test]
    fn a_failed_task_or_the_deadline_is_unhealthy() {
        let mut h = HealthWatch::new(&group(), T0);
        let failed = BTreeMap::from([(
            "main".to_string(),
            TaskState {
                state: TaskLifecycleState::Dead,
                failed: true,
                ..Default::default()
            },
        )]);
        assert_eq!(h.observe(&failed, T0 + SEC), Some(false));

        let mut h = HealthWatch::new(&group(), T0);
        let late = BTreeMap::from([("main".to_string(), running(T0 + 55 * SEC))]);
        assert_eq!(h.observe(&late, T0 + 59 * SEC), None);
        assert_eq!(h.observe(&late, T0 + 60 * SEC), Some(false));
    }

    #[test]
    fn the_defaults_are_ten_seconds_and_five_minutes() {
        let mut g = group();
        g.migrate = None;
        let mut h = HealthWatch::new(&g, T0);
        let states = BTreeMap::from([("main".to_string(), running(T0))]);
        assert_eq!(h.next_check(&states), Some(T0 + 10 * SEC));
        assert_eq!(h.observe(&BTreeMap::new(), T0 + 300 * SEC), Some(false));
    }
}
