//! Allocation health: the client judges an allocation healthy once every main task has been
//! running for `min_healthy_time` (default 10 s), and unhealthy if a task fails, or health is
//! not reached, before `healthy_deadline` (5 m).
//!
//! Which block says how: an allocation of a deployment is judged with its group's `update`
//! block (Nomad's deployment health), any other with `migrate` (what a drain waits for). The
//! `health_check` word chooses what must hold: `task_states` (the tasks alone), `checks` (also
//! every update-gating service check of the allocation passing for `min_healthy_time`;
//! Nomad's default for `update`), or `manual` (the client says nothing; the operator sets
//! health through `/v1/deployment/allocation-health`). For `migrate`, noded keeps
//! `task_states` unless `checks` is asked for explicitly.
//!
//! Pure: time comes in as Unix nanoseconds and the checks' standing as a value, so every rule
//! is tested without a clock or a registrar.

use std::collections::BTreeMap;
use std::time::Duration;

use controlplane::model::time::parse_rfc3339;
use controlplane::model::{TaskGroup, TaskLifecycleState, TaskState};

use super::services::ChecksHealth;

const DEFAULT_MIN_HEALTHY: Duration = Duration::from_secs(10);
const DEFAULT_HEALTHY_DEADLINE: Duration = Duration::from_secs(300);

/// What must hold for an allocation to be healthy (`health_check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthMode {
    TaskStates,
    /// Task states, and this many update-gating checks all passing.
    Checks {
        expected: usize,
    },
    Manual,
}

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
    mode: HealthMode,
    /// The latest standing of the allocation's checks (mode `Checks`).
    checks: ChecksHealth,
}

/// The update-gating checks the group's services declare (`on_update = "ignore"` ones only
/// tell readiness).
fn gating_checks(group: &TaskGroup) -> usize {
    group
        .services
        .iter()
        .chain(group.tasks.iter().flat_map(|t| t.services.iter()))
        .flat_map(|s| s.checks.iter())
        .filter(|c| c.on_update != "ignore")
        .count()
}

impl HealthWatch {
    /// Starts watching at `now` (the allocation runner's start); `in_deployment`: the
    /// allocation belongs to a deployment (judged with the group's `update` block when it has
    /// one).
    pub fn new(group: &TaskGroup, in_deployment: bool, now: i64) -> HealthWatch {
        let (check, min_healthy, deadline) = match group.update.as_ref().filter(|_| in_deployment) {
            Some(u) => (
                u.health_check
                    .clone()
                    .unwrap_or_else(|| "checks".to_string()),
                u.min_healthy_time,
                u.healthy_deadline,
            ),
            None => {
                let m = group.migrate.clone().unwrap_or_default();
                (
                    m.health_check.unwrap_or_else(|| "task_states".to_string()),
                    m.min_healthy_time,
                    m.healthy_deadline,
                )
            }
        };
        let mode = match check.as_str() {
            "manual" => HealthMode::Manual,
            "checks" => HealthMode::Checks {
                expected: gating_checks(group),
            },
            _ => HealthMode::TaskStates,
        };
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let main_tasks = group
            .tasks
            .iter()
            .filter(|t| t.lifecycle.as_ref().is_none_or(|l| l.sidecar))
            .map(|t| t.name.clone())
            .collect();
        HealthWatch {
            main_tasks,
            min_healthy_ns: nanos(min_healthy.unwrap_or(DEFAULT_MIN_HEALTHY)),
            deadline: now.saturating_add(nanos(deadline.unwrap_or(DEFAULT_HEALTHY_DEADLINE))),
            decided: None,
            mode,
            checks: ChecksHealth::default(),
        }
    }

    pub fn mode(&self) -> HealthMode {
        self.mode
    }

    /// The allocation's checks changed standing.
    pub fn set_checks(&mut self, checks: ChecksHealth) {
        self.checks = checks;
    }

    /// The verdict, once there is one.
    pub fn decided(&self) -> Option<bool> {
        self.decided
    }

    /// Looks at the tasks' states at `now`; returns the verdict when it is reached (once).
    pub fn observe(&mut self, states: &BTreeMap<String, TaskState>, now: i64) -> Option<bool> {
        if self.decided.is_some() || self.mode == HealthMode::Manual {
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
        if self.decided.is_some() || self.mode == HealthMode::Manual {
            return None;
        }
        let healthy_at = self
            .healthy_since(states)
            .map(|since| since.saturating_add(self.min_healthy_ns));
        Some(healthy_at.map_or(self.deadline, |h| h.min(self.deadline)))
    }

    /// Since when everything the mode asks for holds: every main task running (the latest
    /// start) and, for `checks`, every expected check passing.
    fn healthy_since(&self, states: &BTreeMap<String, TaskState>) -> Option<i64> {
        let tasks = self.tasks_running_since(states)?;
        match self.mode {
            HealthMode::Checks { expected } if expected > 0 => {
                if self.checks.checks < expected {
                    return None;
                }
                self.checks.passing_since.map(|c| c.max(tasks))
            }
            _ => Some(tasks),
        }
    }

    /// Since when every main task has been running (the latest start), if they all are.
    fn tasks_running_since(&self, states: &BTreeMap<String, TaskState>) -> Option<i64> {
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
        let mut h = HealthWatch::new(&group(), false, T0);
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
        let mut h = HealthWatch::new(&group(), false, T0);
        let failed = BTreeMap::from([(
            "main".to_string(),
            TaskState {
                state: TaskLifecycleState::Dead,
                failed: true,
                ..Default::default()
            },
        )]);
        assert_eq!(h.observe(&failed, T0 + SEC), Some(false));

        let mut h = HealthWatch::new(&group(), false, T0);
        let late = BTreeMap::from([("main".to_string(), running(T0 + 55 * SEC))]);
        assert_eq!(h.observe(&late, T0 + 59 * SEC), None);
        assert_eq!(h.observe(&late, T0 + 60 * SEC), Some(false));
    }

    #[test]
    fn the_defaults_are_ten_seconds_and_five_minutes() {
        let mut g = group();
        g.migrate = None;
        let mut h = HealthWatch::new(&g, false, T0);
        let states = BTreeMap::from([("main".to_string(), running(T0))]);
        assert_eq!(h.next_check(&states), Some(T0 + 10 * SEC));
        assert_eq!(h.observe(&BTreeMap::new(), T0 + 300 * SEC), Some(false));
    }

    fn deployed_group(health_check: &str, checks: usize) -> TaskGroup {
        let mut g = group();
        g.migrate = None;
        g.update = Some(controlplane::model::UpdateStrategy {
            health_check: Some(health_check.into()),
            min_healthy_time: Some(Duration::from_secs(5)),
            healthy_deadline: Some(Duration::from_secs(30)),
            ..Default::default()
        });
        g.services = vec![controlplane::model::Service {
            name: "web".into(),
            checks: (0..checks)
                .map(|i| controlplane::model::ServiceCheck {
                    name: format!("c{i}"),
                    ..Default::default()
                })
                .chain(std::iter::once(controlplane::model::ServiceCheck {
                    name: "ready".into(),
                    on_update: "ignore".into(),
                    ..Default::default()
                }))
                .collect(),
            ..Default::default()
        }];
        g
    }

    #[test]
    fn a_deployment_allocation_is_judged_with_the_update_block() {
        let g = deployed_group("task_states", 1);
        let mut h = HealthWatch::new(&g, true, T0);
        assert_eq!(h.mode(), HealthMode::TaskStates);
        let states = BTreeMap::from([("main".to_string(), running(T0))]);
        assert_eq!(
            h.next_check(&states),
            Some(T0 + 5 * SEC),
            "update's min_healthy_time"
        );
        assert_eq!(h.observe(&states, T0 + 5 * SEC), Some(true));
        // Outside a deployment the same group is judged with migrate (defaults here).
        let h = HealthWatch::new(&g, false, T0);
        assert_eq!(h.next_check(&states), Some(T0 + 10 * SEC));
        // The deadline is update's.
        let mut h = HealthWatch::new(&g, true, T0);
        assert_eq!(h.observe(&BTreeMap::new(), T0 + 30 * SEC), Some(false));
    }

    #[test]
    fn checks_mode_waits_for_every_gating_check_to_pass_for_min_healthy_time() {
        let g = deployed_group("checks", 2);
        let mut h = HealthWatch::new(&g, true, T0);
        assert_eq!(
            h.mode(),
            HealthMode::Checks { expected: 2 },
            "the readiness check does not gate"
        );
        let states = BTreeMap::from([("main".to_string(), running(T0))]);
        assert_eq!(
            h.observe(&states, T0 + 6 * SEC),
            None,
            "no check registered yet"
        );
        h.set_checks(ChecksHealth {
            checks: 1,
            passing_since: Some(T0 + SEC),
        });
        assert_eq!(h.observe(&states, T0 + 7 * SEC), None, "one of two checks");
        h.set_checks(ChecksHealth {
            checks: 2,
            passing_since: None,
        });
        assert_eq!(h.observe(&states, T0 + 8 * SEC), None, "a check is failing");
        h.set_checks(ChecksHealth {
            checks: 2,
            passing_since: Some(T0 + 9 * SEC),
        });
        assert_eq!(h.next_check(&states), Some(T0 + 14 * SEC));
        assert_eq!(h.observe(&states, T0 + 13 * SEC), None);
        assert_eq!(h.observe(&states, T0 + 14 * SEC), Some(true));
    }

    #[test]
    fn checks_that_never_pass_are_unhealthy_at_the_deadline() {
        let g = deployed_group("checks", 1);
        let mut h = HealthWatch::new(&g, true, T0);
        let states = BTreeMap::from([("main".to_string(), running(T0))]);
        h.set_checks(ChecksHealth {
            checks: 1,
            passing_since: None,
        });
        assert_eq!(h.observe(&states, T0 + 29 * SEC), None);
        assert_eq!(h.observe(&states, T0 + 30 * SEC), Some(false));
    }

    #[test]
    fn manual_health_is_never_reported_by_the_client() {
        let g = deployed_group("manual", 0);
        let mut h = HealthWatch::new(&g, true, T0);
        assert_eq!(h.mode(), HealthMode::Manual);
        let failed = BTreeMap::from([(
            "main".to_string(),
            TaskState {
                state: TaskLifecycleState::Dead,
                failed: true,
                ..Default::default()
            },
        )]);
        assert_eq!(h.observe(&failed, T0 + 3600 * SEC), None);
        assert_eq!(h.next_check(&failed), None);
        assert_eq!(h.decided(), None);
    }
}
