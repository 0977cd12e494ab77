//! What a node daemon does with its recorded state when it starts, before any server answers:
//! a pure function from (the records in `client.db`, the supervisor's task list, the allocation
//! directories on disk) to a [`RecoveryPlan`]. The client carries the plan out.
//!
//! Rules: a task recorded and still known to the supervisor is reattached (same pid; an exit
//! while the daemon was away goes through the restart policy); a task recorded as running and
//! gone is handled by its restart policy, as a task that exited; a supervisor task with no
//! record is kept and matched when the servers send its allocation (never killed blindly); an
//! allocation directory with neither a record nor a task is a garbage-collection candidate.

use std::collections::{BTreeMap, BTreeSet};

use super::state::{AllocRecord, ClientState, TaskHandle, TaskIntent, TaskRecord};
use crate::supervisor::protocol::TaskStatus;

/// How one task of a resumed allocation comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskRecovery {
    /// The supervisor has it, running or exited: reattach (an exit is handled by the restart
    /// policy, as any exit).
    Reattach(TaskStatus),
    /// Recorded as running, and the supervisor no longer has it (it died with its supervisor):
    /// handled by the restart policy as a task that failed.
    Lost(TaskHandle),
    /// Never started, or its start never reached the supervisor, or it was waiting to restart:
    /// start it.
    Start,
    /// Finished for good before: nothing to do.
    Done,
}

/// An allocation to run again from its record, before the servers are asked.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumeAlloc {
    pub record: AllocRecord,
    /// By task name: how it comes back, and its record.
    pub tasks: BTreeMap<String, (TaskRecovery, Option<TaskRecord>)>,
}

/// What to do at start.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecoveryPlan {
    /// Allocations this node was running: run again from their records.
    pub resume: BTreeMap<String, ResumeAlloc>,
    /// Supervisor tasks no record claims, by allocation then task name: kept until the servers
    /// say whether their allocation still runs here.
    pub unclaimed: BTreeMap<String, BTreeMap<String, TaskStatus>>,
    /// Exited supervisor tasks of allocations finished here: their cgroups are removed now.
    pub remove: Vec<String>,
    /// Allocations that are garbage-collection candidates, with when they ended (unix
    /// nanoseconds; for a directory with no record, its modification time).
    pub gc_candidates: Vec<(String, i64)>,
}

/// What is there, besides the records.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The supervisor's tasks, by allocation id then task name.
    pub supervisor: BTreeMap<String, BTreeMap<String, TaskStatus>>,
    /// Allocation directories under the allocations root, with their modification time (unix
    /// nanoseconds).
    pub alloc_dirs: BTreeMap<String, i64>,
}

/// The task names of a recorded allocation: its group's, else whatever was recorded.
fn task_names(
    record: &AllocRecord,
    recorded: Option<&BTreeMap<String, TaskRecord>>,
) -> Vec<String> {
    let from_job = record
        .alloc
        .job
        .as_ref()
        .and_then(|j| j.group(&record.alloc.task_group))
        .map(|g| g.tasks.iter().map(|t| t.name.clone()).collect::<Vec<_>>());
    match from_job {
        Some(names) => names,
        None => recorded
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default(),
    }
}

fn task_recovery(record: Option<&TaskRecord>, live: Option<&TaskStatus>) -> TaskRecovery {
    if let Some(status) = live {
        return TaskRecovery::Reattach(status.clone());
    }
    match record {
        None => TaskRecovery::Start,
        Some(r) if r.intent == TaskIntent::Done => TaskRecovery::Done,
        Some(r) => match (&r.intent, &r.handle) {
            (TaskIntent::Run, Some(handle)) => TaskRecovery::Lost(handle.clone()),
            // `Start` recorded and the supervisor does not have it: the start never happened.
            _ => TaskRecovery::Start,
        },
    }
}

/// The plan for a starting node daemon.
pub fn plan(state: &ClientState, observed: &Observed) -> RecoveryPlan {
    let mut out = RecoveryPlan::default();
    let mut supervisor = observed.supervisor.clone();
    for (id, record) in &state.allocs {
        let recorded_tasks = state.tasks.get(id);
        let mut live = supervisor.remove(id).unwrap_or_default();
        if record.is_finished() {
            for (name, status) in live {
                if status.exit.is_some() {
                    out.remove.push(status.task_id.clone());
                } else {
                    // Running although this node finished it: the servers decide.
                    out.unclaimed
                        .entry(id.clone())
                        .or_default()
                        .insert(name, status);
                }
            }
            let ended = record.terminal_at_unix_nanos.unwrap_or(0);
            out.gc_candidates.push((id.clone(), ended));
            continue;
        }
        let mut tasks = BTreeMap::new();
        for name in task_names(record, recorded_tasks) {
            let task_record = recorded_tasks.and_then(|t| t.get(&name)).cloned();
            let status = live.remove(&name);
            tasks.insert(
                name,
                (
                    task_recovery(task_record.as_ref(), status.as_ref()),
                    task_record,
                ),
            );
        }
        // Tasks of this allocation its job does not name: kept, as any unclaimed task.
        if !live.is_empty() {
            out.unclaimed.entry(id.clone()).or_default().extend(live);
        }
        out.resume.insert(
            id.clone(),
            ResumeAlloc {
                record: record.clone(),
                tasks,
            },
        );
    }
    let claimed: BTreeSet<&String> = state.allocs.keys().collect();
    for (id, tasks) in supervisor {
        out.unclaimed.entry(id).or_default().extend(tasks);
    }
    for (id, mtime) in &observed.alloc_dirs {
        if !claimed.contains(id) && !out.unclaimed.contains_key(id) {
            out.gc_candidates.push((id.clone(), *mtime));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::protocol::ExitInfo;
    use controlplane::model::{Allocation, ClientStatus, Job, Task, TaskGroup, TaskState};
    use std::sync::Arc;

    fn job(tasks: &[&str]) -> Arc<Job> {
        Arc::new(Job {
            id: "j".into(),
            task_groups: vec![TaskGroup {
                name: "g".into(),
                tasks: tasks
                    .iter()
                    .map(|t| Task {
                        name: t.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    fn record(id: &str, tasks: &[&str]) -> AllocRecord {
        AllocRecord::new(Allocation {
            id: id.into(),
            task_group: "g".into(),
            job: Some(job(tasks)),
            ..Default::default()
        })
    }

    fn status(alloc: &str, task: &str, pid: i32, exited: bool) -> TaskStatus {
        TaskStatus {
            task_id: format!("{alloc}.{task}"),
            pid,
            started_at: 1,
            exit: exited.then(ExitInfo::default),
        }
    }

    fn task_record(intent: TaskIntent, pid: Option<i32>) -> TaskRecord {
        TaskRecord {
            intent,
            handle: pid.map(|pid| TaskHandle {
                task_id: "x".into(),
                pid,
                started_at: 1,
            }),
            state: TaskState::default(),
            restart: Default::default(),
        }
    }

    struct Case {
        name: &'static str,
        record: Option<TaskRecord>,
        live: Option<TaskStatus>,
        want: TaskRecovery,
    }

    #[test]
    fn each_task_comes_back_by_its_record_and_the_supervisors_list() {
        let running = status("a", "t", 10, false);
        let exited = status("a", "t", 10, true);
        let cases = [
            Case {
                name: "recorded and running: reattach, same pid",
                record: Some(task_record(TaskIntent::Run, Some(10))),
                live: Some(running.clone()),
                want: TaskRecovery::Reattach(running.clone()),
            },
            Case {
                name: "recorded and exited while away: reattach to the exit (restart policy)",
                record: Some(task_record(TaskIntent::Run, Some(10))),
                live: Some(exited.clone()),
                want: TaskRecovery::Reattach(exited.clone()),
            },
            Case {
                name: "recorded as running and gone: lost (restart policy)",
                record: Some(task_record(TaskIntent::Run, Some(10))),
                live: None,
                want: TaskRecovery::Lost(TaskHandle {
                    task_id: "x".into(),
                    pid: 10,
                    started_at: 1,
                }),
            },
            Case {
                name: "start recorded, never reached the supervisor: start",
                record: Some(task_record(TaskIntent::Start, None)),
                live: None,
                want: TaskRecovery::Start,
            },
            Case {
                name: "start recorded and the supervisor started it: reattach",
                record: Some(task_record(TaskIntent::Start, None)),
                live: Some(running.clone()),
                want: TaskRecovery::Reattach(running.clone()),
            },
            Case {
                name: "waiting to restart: start",
                record: Some(task_record(TaskIntent::Wait, None)),
                live: None,
                want: TaskRecovery::Start,
            },
            Case {
                name: "finished for good: done",
                record: Some(task_record(TaskIntent::Done, None)),
                live: None,
                want: TaskRecovery::Done,
            },
            Case {
                name: "no record (the allocation arrived, the task did not start yet): start",
                record: None,
                live: None,
                want: TaskRecovery::Start,
            },
        ];
        for case in cases {
            let mut state = ClientState::default();
            state.allocs.insert("a".into(), record("a", &["t"]));
            if let Some(r) = &case.record {
                state
                    .tasks
                    .entry("a".into())
                    .or_default()
                    .insert("t".into(), r.clone());
            }
            let mut observed = Observed::default();
            observed.alloc_dirs.insert("a".into(), 5);
            if let Some(l) = &case.live {
                observed
                    .supervisor
                    .entry("a".into())
                    .or_default()
                    .insert("t".into(), l.clone());
            }
            let plan = plan(&state, &observed);
            assert_eq!(plan.resume["a"].tasks["t"].0, case.want, "{}", case.name);
            assert!(plan.unclaimed.is_empty(), "{}", case.name);
            assert!(
                plan.gc_candidates.is_empty(),
                "{}: a live allocation is never collected",
                case.name
            );
        }
    }

    #[test]
    fn unrecorded_tasks_are_kept_and_unrecorded_idle_dirs_are_gc_candidates() {
        let mut state = ClientState::default();
        let mut finished = record("done", &["t"]);
        finished.terminal_at_unix_nanos = Some(77);
        state.allocs.insert("done".into(), finished);
        let mut reported_failed = record("failed", &["t"]);
        reported_failed.reported = Some(super::super::state::Reported {
            client_status: ClientStatus::Failed,
            ..Default::default()
        });
        state.allocs.insert("failed".into(), reported_failed);
        state.allocs.insert("live".into(), record("live", &["t"]));

        let mut observed = Observed::default();
        for (id, mtime) in [
            ("done", 1),
            ("failed", 2),
            ("live", 3),
            ("stray", 4),
            ("orphan", 5),
        ] {
            observed.alloc_dirs.insert(id.into(), mtime);
        }
        let sup = &mut observed.supervisor;
        // A task no record claims (a database moved aside, or an older daemon): kept.
        sup.entry("orphan".into())
            .or_default()
            .insert("t".into(), status("orphan", "t", 1, false));
        // An exited task of a finished allocation: its cgroup is removed.
        sup.entry("done".into())
            .or_default()
            .insert("t".into(), status("done", "t", 2, true));
        // A running task of a finished allocation: kept for the servers to decide.
        sup.entry("failed".into())
            .or_default()
            .insert("t".into(), status("failed", "t", 3, false));
        // A task of a live allocation its job does not name: kept.
        sup.entry("live".into())
            .or_default()
            .insert("extra".into(), status("live", "extra", 4, false));

        let plan = plan(&state, &observed);
        assert_eq!(plan.resume.keys().collect::<Vec<_>>(), ["live"]);
        assert_eq!(plan.resume["live"].tasks["t"].0, TaskRecovery::Start);
        assert_eq!(
            plan.unclaimed
                .iter()
                .flat_map(|(a, t)| t.keys().map(move |n| format!("{a}.{n}")))
                .collect::<Vec<_>>(),
            ["failed.t", "live.extra", "orphan.t"]
        );
        assert_eq!(plan.remove, ["done.t"]);
        let mut gc = plan.gc_candidates.clone();
        gc.sort();
        assert_eq!(
            gc,
            [
                ("done".to_string(), 77),
                ("failed".to_string(), 0),
                ("stray".to_string(), 4)
            ]
        );
    }

    #[test]
    fn without_records_recovery_is_a_scan_that_keeps_every_task() {
        // A client.db moved aside: every supervisor task is kept, nothing is started, and only
        // directories without a task are candidates.
        let mut observed = Observed::default();
        observed.alloc_dirs.insert("a".into(), 1);
        observed.alloc_dirs.insert("b".into(), 2);
        observed
            .supervisor
            .entry("a".into())
            .or_default()
            .insert("t".into(), status("a", "t", 9, false));
        let plan = plan(&ClientState::default(), &observed);
        assert!(plan.resume.is_empty());
        assert_eq!(plan.unclaimed["a"]["t"].pid, 9);
        assert_eq!(plan.gc_candidates, [("b".to_string(), 2)]);
        assert!(plan.remove.is_empty());
    }
}
