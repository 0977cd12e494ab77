//! What a node daemon's tasks look like from the host, for the crash-safe client state checks
//! (the `client_state` end-to-end test and `cargo xtask chaos client`): the allocations the
//! agent reports, the processes in each task cgroup, the task cgroups under the agent's
//! parent, and two jobs: three long-lived tasks and one that exits and restarts every second.
//!
//! Like the rest of the harness, these fail loudly (panic) on anything unexpected.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::{alloc, allocs_of, events, logs, write_job, DevAgent};

pub const STEADY: &str = r#"
job "steady" {
  group "g" {
    count = 3
    task "t" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"]
      }
      resources {
        memory = 32
      }
    }
  }
}
"#;

/// A task that exits every ~second and is restarted 200 ms later, for ever.
pub const FLAPPY: &str = r#"
job "flappy" {
  group "g" {
    restart {
      attempts = 10000
      interval = "24h"
      delay    = "200ms"
      mode     = "fail"
    }
    task "f" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "echo run; sleep 1; exit 3"]
      }
      resources {
        memory = 32
      }
    }
  }
}
"#;

pub fn run_job(agent: &DevAgent, name: &str, text: &str) {
    let job = write_job(agent, name, text);
    let out = agent.cli(&["job", "run", "-detach", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent.log_text()
    );
}

/// The pids a task's Started and Reattached events name.
pub fn event_pids(alloc: &Value, task: &str) -> BTreeSet<i32> {
    events(alloc, task)
        .iter()
        .filter(|(t, _)| t == "Started" || t == "Reattached")
        .filter_map(|(_, m)| m.rsplit("pid ").next()?.trim_end_matches(')').parse().ok())
        .collect()
}

/// Running allocations of `job`, by id.
pub fn running(agent: &DevAgent, job: &str) -> BTreeMap<String, Value> {
    allocs_of(agent, job)
        .into_iter()
        .filter(|a| a["ClientStatus"] == "running" && a["DesiredStatus"] == "run")
        .map(|a| (a["ID"].as_str().unwrap().to_string(), a))
        .collect()
}

/// The processes in a task cgroup (every hierarchy lists the same ones).
pub fn cgroup_procs(agent: &DevAgent, task_id: &str) -> BTreeSet<i32> {
    agent
        .cgroup_dirs()
        .iter()
        .flat_map(|d| {
            std::fs::read_to_string(d.join(task_id).join("cgroup.procs"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// The main shell processes of a task (a copy of the task would add a second one), each
/// named by the pid the supervisor tracks and the task's events name: the small init that
/// runs it (its parent, in the same cgroup) or, without an init, the shell itself.
pub fn shells(agent: &DevAgent, task_id: &str) -> Vec<i32> {
    let procs = cgroup_procs(agent, task_id);
    procs
        .iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.starts_with(b"/bin/sh"))
                .unwrap_or(false)
        })
        .map(|pid| match parent_pid(*pid) {
            Some(parent) if procs.contains(&parent) => parent,
            _ => *pid,
        })
        .collect()
}

/// A process's parent, from `/proc/<pid>/status`.
fn parent_pid(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))?
        .trim()
        .parse()
        .ok()
}

/// The task cgroups under the agent's cgroup parent, on every hierarchy.
pub fn task_cgroup_names(agent: &DevAgent) -> BTreeSet<String> {
    agent
        .cgroup_dirs()
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        // The supervisor's spare cgroups, made ahead of the tasks that take them.
        .filter(|n| !n.starts_with(".spare-"))
        .collect()
}

pub fn restarts(agent: &DevAgent, alloc_id: &str, task: &str) -> u64 {
    alloc(agent, alloc_id)["TaskStates"][task]["Restarts"]
        .as_u64()
        .unwrap_or(0)
}

pub fn last_tick(agent: &DevAgent, alloc_id: &str) -> u64 {
    logs(agent, alloc_id, "t", "stdout")
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.parse().ok())
        .max()
        .unwrap_or(0)
}
