//! The order of an allocation's tasks (Nomad's task lifecycle coordinator), as pure decisions
//! on task states: which tasks may start now, when the group must be stopped and why, and in
//! which waves a stop kills the tasks. The allocation runner feeds it every state change and
//! acts on its answers; nothing here touches a process.
//!
//! Stages: prestart tasks (ephemeral ones must finish successfully, sidecars must be running)
//! → main tasks → poststart tasks once every main task has started → poststop tasks once every
//! other task is dead (whether it completed, failed or was stopped).

use std::collections::BTreeMap;

use controlplane::model::{Task, TaskLifecycleState, TaskState};

/// Nomad's hook names.
pub const HOOK_PRESTART: &str = "prestart";
pub const HOOK_POSTSTART: &str = "poststart";
pub const HOOK_POSTSTOP: &str = "poststop";

/// When a task runs relative to the group's main tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    PrestartEphemeral,
    PrestartSidecar,
    Main,
    PoststartEphemeral,
    PoststartSidecar,
    Poststop,
}

impl Stage {
    /// The stage of `task` (no `lifecycle` block, or an unknown hook: a main task; the
    /// jobspec refuses unknown hooks).
    pub fn of(task: &Task) -> Stage {
        match task.lifecycle.as_ref() {
            Some(l) if l.hook == HOOK_PRESTART && l.sidecar => Stage::PrestartSidecar,
            Some(l) if l.hook == HOOK_PRESTART => Stage::PrestartEphemeral,
            Some(l) if l.hook == HOOK_POSTSTART && l.sidecar => Stage::PoststartSidecar,
            Some(l) if l.hook == HOOK_POSTSTART => Stage::PoststartEphemeral,
            Some(l) if l.hook == HOOK_POSTSTOP => Stage::Poststop,
            _ => Stage::Main,
        }
    }

    pub fn is_sidecar(self) -> bool {
        matches!(self, Stage::PrestartSidecar | Stage::PoststartSidecar)
    }
}

/// Where the allocation is in its life (Nomad's coordinator states, without its "init",
/// which only waits for task runners to exist: ours exist before the first decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Prestart,
    Main,
    Poststart,
    WaitAlloc,
    Poststop,
}

/// Which stages may start in `phase` (Nomad's gates).
fn allowed(phase: Phase, stage: Stage) -> bool {
    use Stage::*;
    match phase {
        Phase::Prestart => matches!(stage, PrestartEphemeral | PrestartSidecar),
        Phase::Main => matches!(stage, PrestartSidecar | Main),
        Phase::Poststart => matches!(
            stage,
            PrestartSidecar | Main | PoststartEphemeral | PoststartSidecar
        ),
        Phase::WaitAlloc => matches!(stage, PrestartSidecar | Main | PoststartSidecar),
        Phase::Poststop => stage == Poststop,
    }
}

/// The coordinator: the tasks' stages and the current phase.
#[derive(Debug, Clone)]
pub struct Coordinator {
    stages: BTreeMap<String, Stage>,
    phase: Phase,
}

fn state_of<'a>(states: &'a BTreeMap<String, TaskState>, task: &str) -> Option<&'a TaskState> {
    states.get(task)
}

fn is_dead(states: &BTreeMap<String, TaskState>, task: &str) -> bool {
    state_of(states, task).is_some_and(|s| s.state == TaskLifecycleState::Dead)
}

fn is_running(states: &BTreeMap<String, TaskState>, task: &str) -> bool {
    state_of(states, task).is_some_and(|s| s.state == TaskLifecycleState::Running)
}

/// Not started yet: unknown, or pending (a task waiting to restart is pending too).
fn is_pending(states: &BTreeMap<String, TaskState>, task: &str) -> bool {
    state_of(states, task).is_none_or(|s| s.state == TaskLifecycleState::Pending)
}

fn is_successful(states: &BTreeMap<String, TaskState>, task: &str) -> bool {
    state_of(states, task).is_some_and(|s| s.state == TaskLifecycleState::Dead && !s.failed)
}

impl Coordinator {
    pub fn new(tasks: &[Task]) -> Coordinator {
        Coordinator {
            stages: tasks
                .iter()
                .map(|t| (t.name.clone(), Stage::of(t)))
                .collect(),
            phase: Phase::Prestart,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn stage(&self, task: &str) -> Option<Stage> {
        self.stages.get(task).copied()
    }

    fn tasks_in(&self, stage: Stage) -> impl Iterator<Item = &str> {
        self.stages
            .iter()
            .filter(move |(_, s)| **s == stage)
            .map(|(n, _)| n.as_str())
    }

    /// Every task but the poststop ones is dead.
    fn alloc_done(&self, states: &BTreeMap<String, TaskState>) -> bool {
        self.stages
            .iter()
            .filter(|(_, s)| **s != Stage::Poststop)
            .all(|(n, _)| is_dead(states, n))
    }

    fn next(&self, states: &BTreeMap<String, TaskState>) -> Phase {
        if self.alloc_done(states) {
            return Phase::Poststop;
        }
        match self.phase {
            Phase::Prestart => {
                let ephemeral_done = self
                    .tasks_in(Stage::PrestartEphemeral)
                    .all(|t| is_successful(states, t));
                let sidecars_up = self
                    .tasks_in(Stage::PrestartSidecar)
                    .all(|t| is_running(states, t));
                if ephemeral_done && sidecars_up {
                    Phase::Main
                } else {
                    Phase::Prestart
                }
            }
            Phase::Main => {
                if self.tasks_in(Stage::Main).any(|t| is_pending(states, t)) {
                    Phase::Main
                } else {
                    Phase::Poststart
                }
            }
            Phase::Poststart => {
                if self
                    .tasks_in(Stage::PoststartEphemeral)
                    .all(|t| is_dead(states, t))
                {
                    Phase::WaitAlloc
                } else {
                    Phase::Poststart
                }
            }
            Phase::WaitAlloc => Phase::WaitAlloc,
            Phase::Poststop => Phase::Poststop,
        }
    }

    /// Moves through every phase the states allow; returns whether the phase changed.
    pub fn update(&mut self, states: &BTreeMap<String, TaskState>) -> bool {
        let before = self.phase;
        loop {
            let next = self.next(states);
            if next == self.phase {
                return self.phase != before;
            }
            self.phase = next;
        }
    }

    /// Whether `task` may start now (its gate is open).
    pub fn may_start(&self, task: &str) -> bool {
        self.stage(task).is_some_and(|s| allowed(self.phase, s))
    }

    /// Whether the group must be stopped now, and why (Nomad's alloc runner, on each task
    /// state change): a task failed (sibling failed), the leader is dead, or only sidecars
    /// are left. Poststop tasks count for none of these. `None` when nothing is to be done.
    pub fn kill_reason(
        &self,
        states: &BTreeMap<String, TaskState>,
        leader: Option<&str>,
    ) -> Option<KillReason> {
        let mut reason = None;
        let mut live = Vec::new();
        for (name, stage) in &self.stages {
            if *stage == Stage::Poststop {
                continue;
            }
            if !is_dead(states, name) {
                live.push(*stage);
                continue;
            }
            let failed = state_of(states, name).is_some_and(|s| s.failed);
            if failed {
                // A dead leader's reason, once seen, wins over a sibling's failure.
                if reason.is_none() {
                    reason = Some(KillReason::SiblingFailed(name.clone()));
                }
            } else if leader == Some(name.as_str()) {
                reason = Some(KillReason::LeaderDead);
            }
        }
        if live.is_empty() {
            return None;
        }
        if reason.is_none() && live.iter().all(|s| s.is_sidecar()) {
            reason = Some(KillReason::MainDead);
        }
        reason
    }

    /// The order in which a stop kills the tasks (Nomad's `killTasks`): the leader first,
    /// then every other task that is neither a sidecar nor poststop, then the sidecars. With
    /// `including_poststop` (max_run_duration exceeded, or the client shutting down) the
    /// poststop tasks are killed in the first wave; otherwise they are left to run once the
    /// others are dead. Empty waves are left out.
    pub fn kill_waves(&self, leader: Option<&str>, including_poststop: bool) -> Vec<Vec<String>> {
        let mut first = Vec::new();
        let mut leaders = Vec::new();
        let mut others = Vec::new();
        let mut sidecars = Vec::new();
        for (name, stage) in &self.stages {
            if *stage == Stage::Poststop {
                if including_poststop {
                    first.push(name.clone());
                }
            } else if leader == Some(name.as_str()) {
                leaders.push(name.clone());
            } else if stage.is_sidecar() {
                sidecars.push(name.clone());
            } else {
                others.push(name.clone());
            }
        }
        [first, leaders, others, sidecars]
            .into_iter()
            .filter(|w| !w.is_empty())
            .collect()
    }
}

/// Why the allocation runner stops the group on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillReason {
    /// A task failed for good (Nomad's "Sibling Task Failed").
    SiblingFailed(String),
    /// The leader task is dead (Nomad's "Leader Task Dead").
    LeaderDead,
    /// Only sidecars are left running (Nomad's "Main Tasks Dead").
    MainDead,
}

impl KillReason {
    /// The kill reason the task events carry, in Nomad's words.
    pub fn describe(&self) -> String {
        match self {
            KillReason::SiblingFailed(name) => format!("Task's sibling {name:?} failed"),
            KillReason::LeaderDead => "Leader Task in Group dead".to_string(),
            KillReason::MainDead => "Main tasks in the group died".to_string(),
        }
    }
}

/// Whether a task of `stage` restarts after a successful exit (Nomad's restart tracker):
/// never in batch jobs; prestart and poststart tasks only when they are sidecars; poststop
/// tasks never.
pub fn restarts_on_success(batch: bool, stage: Stage) -> bool {
    match stage {
        Stage::PrestartSidecar | Stage::PoststartSidecar => true,
        Stage::PrestartEphemeral | Stage::PoststartEphemeral | Stage::Poststop => false,
        Stage::Main => !batch,
    }
}

#[cfg(test)]
mod tests {
    use controlplane::model::TaskLifecycle;

    use super::*;
    use TaskLifecycleState::{Dead, Pending, Running};

    fn task(name: &str, hook: Option<(&str, bool)>) -> Task {
        Task {
            name: name.to_string(),
            lifecycle: hook.map(|(h, sidecar)| TaskLifecycle {
                hook: h.to_string(),
                sidecar,
            }),
            ..Default::default()
        }
    }

    fn group() -> Vec<Task> {
        vec![
            task("init", Some(("prestart", false))),
            task("proxy", Some(("prestart", true))),
            task("web", None),
            task("warm", Some(("poststart", false))),
            task("log", Some(("poststart", true))),
            task("cleanup", Some(("poststop", false))),
        ]
    }

    fn st(state: TaskLifecycleState, failed: bool) -> TaskState {
        TaskState {
            state,
            failed,
            ..Default::default()
        }
    }

    fn states(v: &[(&str, TaskLifecycleState, bool)]) -> BTreeMap<String, TaskState> {
        v.iter()
            .map(|(n, s, f)| (n.to_string(), st(*s, *f)))
            .collect()
    }

    fn startable(c: &Coordinator) -> Vec<&str> {
        c.stages
            .keys()
            .map(String::as_str)
            .filter(|t| c.may_start(t))
            .collect()
    }

    #[test]
    fn stages_follow_the_lifecycle_block() {
        let stages: Vec<Stage> = group().iter().map(Stage::of).collect();
        assert_eq!(
            stages,
            vec![
                Stage::PrestartEphemeral,
                Stage::PrestartSidecar,
                Stage::Main,
                Stage::PoststartEphemeral,
                Stage::PoststartSidecar,
                Stage::Poststop
            ]
        );
    }

    #[test]
    fn tasks_start_in_nomads_order() {
        let mut c = Coordinator::new(&group());
        c.update(&BTreeMap::new());
        assert_eq!(startable(&c), vec!["init", "proxy"]);

        // The prestart task ran to success, the sidecar is not up yet: main waits.
        c.update(&states(&[("init", Dead, false), ("proxy", Pending, false)]));
        assert_eq!(c.phase(), Phase::Prestart);
        assert!(!c.may_start("web"));

        c.update(&states(&[("init", Dead, false), ("proxy", Running, false)]));
        assert_eq!(c.phase(), Phase::Main);
        assert_eq!(startable(&c), vec!["proxy", "web"]);
        assert!(
            !c.may_start("init"),
            "a completed prestart task is not run again"
        );

        // Main is running: poststart tasks may start.
        let running = [
            ("init", Dead, false),
            ("proxy", Running, false),
            ("web", Running, false),
        ];
        c.update(&states(&running));
        assert_eq!(c.phase(), Phase::Poststart);
        assert_eq!(startable(&c), vec!["log", "proxy", "warm", "web"]);

        let mut after = running.to_vec();
        after.push(("warm", Dead, false));
        after.push(("log", Running, false));
        c.update(&states(&after));
        assert_eq!(c.phase(), Phase::WaitAlloc);
        assert_eq!(startable(&c), vec!["log", "proxy", "web"]);
        assert!(!c.may_start("cleanup"));

        // Everything but poststop is dead: poststop runs, nothing else may.
        let dead: Vec<_> = ["init", "proxy", "web", "warm", "log"]
            .iter()
            .map(|n| (*n, Dead, false))
            .collect();
        c.update(&states(&dead));
        assert_eq!(c.phase(), Phase::Poststop);
        assert_eq!(startable(&c), vec!["cleanup"]);
    }

    #[test]
    fn a_failing_prestart_keeps_main_from_starting_and_stops_the_group() {
        let mut c = Coordinator::new(&group());
        // Failing but still within its restart policy (pending again): main waits.
        let s = states(&[("init", Pending, false), ("proxy", Running, false)]);
        c.update(&s);
        assert!(!c.may_start("web"));
        assert_eq!(c.kill_reason(&s, None), None);

        // Failed for good: the group is stopped, main never started.
        let s = states(&[("init", Dead, true), ("proxy", Running, false)]);
        c.update(&s);
        assert_eq!(c.phase(), Phase::Prestart);
        assert!(!c.may_start("web"));
        assert_eq!(
            c.kill_reason(&s, None),
            Some(KillReason::SiblingFailed("init".into()))
        );

        // Once the others are dead (web killed before it started), poststop runs.
        let s = states(&[
            ("init", Dead, true),
            ("proxy", Dead, false),
            ("web", Dead, false),
            ("warm", Dead, false),
            ("log", Dead, false),
        ]);
        c.update(&s);
        assert_eq!(startable(&c), vec!["cleanup"]);
        assert_eq!(c.kill_reason(&s, None), None, "nothing left to kill");
    }

    #[test]
    fn poststop_runs_after_a_failed_main_task() {
        let tasks = vec![
            task("web", None),
            task("cleanup", Some(("poststop", false))),
        ];
        let mut c = Coordinator::new(&tasks);
        c.update(&states(&[("web", Running, false)]));
        assert!(!c.may_start("cleanup"));
        c.update(&states(&[("web", Dead, true)]));
        assert_eq!(startable(&c), vec!["cleanup"]);
        // A failing poststop task stops nothing.
        let s = states(&[("web", Dead, false), ("cleanup", Dead, true)]);
        assert_eq!(c.kill_reason(&s, None), None);
    }

    #[test]
    fn sidecars_are_stopped_once_the_main_tasks_are_dead() {
        let tasks = vec![
            task("proxy", Some(("prestart", true))),
            task("web", None),
            task("cleanup", Some(("poststop", false))),
        ];
        let c = Coordinator::new(&tasks);
        let s = states(&[("proxy", Running, false), ("web", Running, false)]);
        assert_eq!(c.kill_reason(&s, None), None);
        let s = states(&[("proxy", Running, false), ("web", Dead, false)]);
        assert_eq!(c.kill_reason(&s, None), Some(KillReason::MainDead));
    }

    #[test]
    fn a_dead_leader_stops_the_group_and_is_killed_first() {
        let tasks = vec![
            task("proxy", Some(("prestart", true))),
            task("a", None),
            task("boss", None),
            task("z", None),
            task("cleanup", Some(("poststop", false))),
        ];
        let c = Coordinator::new(&tasks);
        let s = states(&[
            ("proxy", Running, false),
            ("a", Running, false),
            ("boss", Dead, false),
            ("z", Running, false),
        ]);
        assert_eq!(
            c.kill_reason(&s, Some("boss")),
            Some(KillReason::LeaderDead)
        );
        // A failed sibling seen before the leader loses to it; after, it does not matter
        // which: the group stops either way.
        let s = states(&[
            ("a", Dead, true),
            ("boss", Dead, false),
            ("proxy", Running, false),
            ("z", Running, false),
        ]);
        assert_eq!(
            c.kill_reason(&s, Some("boss")),
            Some(KillReason::LeaderDead)
        );
        assert_eq!(
            c.kill_waves(Some("boss"), false),
            vec![
                vec!["boss".to_string()],
                vec!["a".to_string(), "z".to_string()],
                vec!["proxy".to_string()]
            ]
        );
        assert_eq!(
            c.kill_waves(None, true),
            vec![
                vec!["cleanup".to_string()],
                vec!["a".to_string(), "boss".to_string(), "z".to_string()],
                vec!["proxy".to_string()]
            ]
        );
    }

    #[test]
    fn a_group_without_hooks_starts_everything_at_once() {
        let c = {
            let mut c = Coordinator::new(&[task("a", None), task("b", None)]);
            c.update(&BTreeMap::new());
            c
        };
        assert_eq!(c.phase(), Phase::Main);
        assert_eq!(startable(&c), vec!["a", "b"]);
    }

    #[test]
    fn only_lifecycle_sidecars_restart_after_success() {
        assert!(restarts_on_success(false, Stage::Main));
        assert!(!restarts_on_success(true, Stage::Main));
        assert!(!restarts_on_success(false, Stage::PrestartEphemeral));
        assert!(restarts_on_success(true, Stage::PrestartSidecar));
        assert!(!restarts_on_success(false, Stage::PoststartEphemeral));
        assert!(restarts_on_success(false, Stage::PoststartSidecar));
        assert!(!restarts_on_success(false, Stage::Poststop));
    }
}
