//! Lifecycle hooks and stops end to end on a dev agent: a failing prestart task keeps the main
//! task from ever starting; a poststop task runs after a main task failed; `job stop` of a
//! plain `sleep` (no SIGTERM handler) ends within a second thanks to the small init, and takes
//! the kill timeout with `init = false`.

// Test helpers fail the test loudly; that is their job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use noded_tests::*;
use serde_json::Value;

fn run(agent: &DevAgent, name: &str, text: &str) {
    let job = write_job(agent, name, text);
    let out = agent.cli(&["job", "run", "-detach", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent.log_text()
    );
}

fn terminal_alloc(agent: &DevAgent, job: &str) -> Value {
    first_alloc_with_status(agent, job, &["complete", "failed"])
}

fn started(alloc: &Value, task: &str) -> bool {
    events(alloc, task).iter().any(|(t, _)| t == "Started")
}

#[test]
fn a_failing_prestart_task_keeps_the_main_task_from_ever_starting() {
    if !require_root("dev agent end-to-end: lifecycle hooks") {
        return;
    }
    let agent = DevAgent::start(AgentOptions::default());
    run(
        &agent,
        "prefail",
        r#"
job "prefail" {
  type = "batch"
  group "g" {
    restart {
      attempts = 0
      mode     = "fail"
    }
    reschedule {
      attempts  = 0
      unlimited = false
    }
    task "setup" {
      driver = "exec"
      lifecycle {
        hook = "prestart"
      }
      config {
        command = "/bin/sh"
        args    = ["-c", "exit 3"]
      }
    }
    task "main" {
      driver = "exec"
      config {
        command = "/bin/sleep"
        args    = ["3600"]
      }
    }
  }
}
"#,
    );
    let a = terminal_alloc(&agent, "prefail");
    let id = a["ID"].as_str().unwrap();
    let a = agent.wait_for("both tasks dead", Duration::from_secs(30), |ag| {
        let a = alloc(ag, id);
        let dead = |t: &str| a["TaskStates"][t]["State"] == "dead";
        (dead("setup") && dead("main")).then_some(a)
    });
    assert_eq!(a["ClientStatus"], "failed", "{a}");
    assert_eq!(a["TaskStates"]["setup"]["Failed"], true);
    assert!(started(&a, "setup"));
    assert!(
        !started(&a, "main"),
        "the main task started after its prestart task failed: {:?}",
        events(&a, "main")
    );
    assert!(
        events(&a, "main")
            .iter()
            .any(|(t, m)| t == "Killed" && m.contains("before it started")),
        "{:?}",
        events(&a, "main")
    );
}

#[test]
fn a_poststop_task_runs_after_the_main_task_failed() {
    if !require_root("dev agent end-to-end: lifecycle hooks") {
        return;
    }
    let agent = DevAgent::start(AgentOptions::default());
    run(
        &agent,
        "cleanup",
        r#"
job "cleanup" {
  type = "batch"
  group "g" {
    restart {
      attempts = 0
      mode     = "fail"
    }
    reschedule {
      attempts  = 0
      unlimited = false
    }
    task "main" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "echo main > /alloc/data/order; exit 2"]
      }
    }
    task "after" {
      driver = "exec"
      lifecycle {
        hook = "poststop"
      }
      config {
        command = "/bin/sh"
        args    = ["-c", "echo poststop >> /alloc/data/order"]
      }
    }
  }
}
"#,
    );
    let a = first_alloc_with_status(&agent, "cleanup", &["failed"]);
    let id = a["ID"].as_str().unwrap().to_string();
    let a = agent.wait_for("the poststop task done", Duration::from_secs(30), |ag| {
        let a = alloc(ag, &id);
        (a["TaskStates"]["after"]["State"] == "dead").then_some(a)
    });
    assert_eq!(a["TaskStates"]["main"]["Failed"], true);
    assert_eq!(a["TaskStates"]["after"]["Failed"], false, "{a}");
    assert!(started(&a, "after"));
    let order = std::fs::read_to_string(
        agent
            .data_dir
            .join("alloc")
            .join(&id)
            .join("alloc/data/order"),
    )
    .unwrap();
    assert_eq!(order, "main\npoststop\n");
}

/// Runs `count` allocations of `sleep 3600` (`init` as given), stops the job, and returns
/// how long until every allocation is complete.
fn stop_time(agent: &DevAgent, name: &str, count: usize, init: bool) -> Duration {
    run(
        agent,
        name,
        &format!(
            r#"
job "{name}" {{
  group "g" {{
    count = {count}
    task "t" {{
      driver       = "exec"
      kill_timeout = "4s"
      config {{
        command = "/bin/sleep"
        args    = ["3600"]
        init    = {init}
      }}
      resources {{
        cpu    = 10
        memory = 16
      }}
    }}
  }}
}}
"#
        ),
    );
    agent.wait_for(
        &format!("{count} running allocations of {name}"),
        Duration::from_secs(60 + count as u64),
        |a| {
            let allocs = allocs_of(a, name);
            (allocs.len() == count && allocs.iter().all(|x| x["ClientStatus"] == "running"))
                .then_some(())
        },
    );
    let began = Instant::now();
    let out = agent.cli(&["job", "stop", "-detach", name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    agent.wait_for(
        &format!("every allocation of {name} complete"),
        Duration::from_secs(60 + count as u64),
        |a| {
            allocs_of(a, name)
                .iter()
                .all(|x| x["ClientStatus"] == "complete")
                .then_some(())
        },
    );
    began.elapsed()
}

#[test]
fn job_stop_of_a_sleep_task_returns_within_a_second_and_init_false_waits_the_kill_timeout() {
    if !require_root("dev agent end-to-end: stopping tasks") {
        return;
    }
    let agent = DevAgent::start(AgentOptions::default());
    let with_init = stop_time(&agent, "sleepy", 1, true);
    assert!(
        with_init < Duration::from_secs(1),
        "stopping a sleep took {with_init:?}"
    );
    let without = stop_time(&agent, "sleepy-pid1", 1, false);
    assert!(
        without >= Duration::from_millis(3500) && without < Duration::from_secs(8),
        "a sleep that is PID 1 ignores SIGTERM and waits out kill_timeout = 4s: {without:?}"
    );
    // The figures of many tasks at once: NODED_STOP_BENCH_COUNT=100.
    if let Some(count) = std::env::var("NODED_STOP_BENCH_COUNT")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
    {
        let with_init = stop_time(&agent, "bench-init", count, true);
        let without = stop_time(&agent, "bench-pid1", count, false);
        eprintln!("job stop of {count} sleep tasks: {with_init:?} with the init, {without:?} without (kill_timeout 4s)");
        assert!(with_init < without);
    }
}
