//! `noded agent -dev` end to end, as a user runs it: a real agent process in its own network
//! namespace, jobs submitted through the CLI, isolation checked from INSIDE the task by the
//! `noded-verify` binary, logs read through the HTTP API, and nothing left behind after stop.

// Test helpers fail the test loudly; that is their job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use noded_tests::*;
use serde_json::Value;

#[test]
fn a_task_is_isolated_as_seen_from_inside_and_its_logs_come_through_the_api() {
    if !require_root("dev agent end-to-end: cgroups, namespaces, mounts") {
        return;
    }
    let (agent, verify) = agent_with_verifier();
    let job = write_job(
        &agent,
        "report",
        r#"
job "report" {
  type = "batch"
  group "g" {
    task "verify" {
      driver = "exec"
      config {
        command = "/verify/noded-verify"
        args    = ["report"]
      }
      env {
        GREETING = "hi ${NOMAD_TASK_NAME}"
      }
      resources {
        cpu    = 200
        memory = 96
      }
      restart {
        attempts = 0
        mode     = "fail"
      }
    }
  }
}
"#,
    );
    let out = agent.cli(&["job", "run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "job run failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent.log_text()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("completed"), "{stdout}");

    let a = first_alloc_with_status(&agent, "report", &["complete"]);
    let id = a["ID"].as_str().unwrap().to_string();
    let report_text = logs(&agent, &id, "verify", "stdout");
    let report: Value = serde_json::from_str(report_text.trim())
        .unwrap_or_else(|e| panic!("verifier output is not JSON ({e}): {report_text}"));

    // Its own pid namespace: the task is pid 2 under the small init (pid 1), and no host
    // process is visible.
    assert_eq!(report["pid"], 2, "{report}");
    let visible = report["visible_pids"].as_u64().unwrap_or(u64::MAX);
    assert!(visible < 5, "the task sees {visible} processes: {report}");
    // Unprivileged, no capabilities, no_new_privs.
    assert_eq!(report["uid"], 65534, "runs as nobody: {report}");
    assert_eq!(report["no_new_privs"], "1", "{report}");
    assert_eq!(report["cap_eff"], "0000000000000000", "{report}");
    assert_eq!(
        report["seccomp"], "2",
        "a seccomp filter is installed: {report}"
    );
    // A read-only root.
    assert_eq!(report["root_writable"], false, "{report}");
    assert_eq!(report["usr_writable"], false, "{report}");
    // Its cgroup memory limit, as the kernel shows it to the task.
    assert_eq!(
        report["memory_limit"],
        (96u64 * 1024 * 1024).to_string(),
        "{report}"
    );
    // /proc/1 is the small init, not the task: the task's /proc is its own namespace's.
    assert_eq!(report["proc1_is_self"], false, "{report}");
    assert!(
        report["visible_pids"].as_u64().is_some_and(|n| n >= 2),
        "{report}"
    );
    // The environment: only the job's and NOMAD_* — nothing of the agent's.
    let env = report["env"].as_object().unwrap();
    assert_eq!(env["GREETING"], "hi verify");
    assert_eq!(env["NOMAD_ALLOC_ID"], id.as_str());
    assert_eq!(env["NOMAD_TASK_NAME"], "verify");
    assert_eq!(env["NOMAD_MEMORY_LIMIT"], "96");
    assert_eq!(env["NOMAD_ALLOC_DIR"], "/alloc");
    assert!(
        !env.contains_key("NODED_TEST_AGENT_SECRET"),
        "agent environment leaked: {env:?}"
    );
    assert!(
        !env.contains_key("RUST_LOG"),
        "agent environment leaked: {env:?}"
    );
    for key in env.keys() {
        assert!(
            key.starts_with("NOMAD_") || key == "GREETING",
            "unexpected variable {key}"
        );
    }

    // Task events, as alloc status shows them.
    let status = agent.cli(&["alloc", "status", &id[..8]]);
    let status_text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    for wanted in ["Received", "Started", "Terminated", "Exit Code: 0"] {
        assert!(
            status_text.contains(wanted),
            "alloc status lacks {wanted:?}:\n{status_text}"
        );
    }
    let _ = std::fs::remove_dir_all(verify);
}

#[test]
fn stopping_a_job_leaves_no_process_cgroup_or_mount() {
    if !require_root("dev agent end-to-end: stop and cleanup") {
        return;
    }
    let (mut agent, verify) = agent_with_verifier();
    let job = write_job(
        &agent,
        "sleeper",
        r#"
job "sleeper" {
  group "g" {
    count = 2
    task "sleep" {
      driver = "exec"
      config {
        command = "/verify/noded-verify"
        args    = ["sleep", "600"]
      }
      kill_timeout = "2s"
      kill_signal  = "SIGTERM"
      resources {
        memory = 32
      }
    }
  }
}
"#,
    );
    let out = agent.cli(&["job", "run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent.log_text()
    );
    let allocs = allocs_of(&agent, "sleeper");
    assert_eq!(allocs.len(), 2);
    assert!(allocs.iter().all(|a| a["ClientStatus"] == "running"));
    // While running: task cgroups exist and each task's secrets tmpfs is mounted.
    assert!(!agent.cgroup_dirs().is_empty());
    assert_eq!(
        agent.mounts().len(),
        2,
        "one secrets tmpfs per task: {:?}",
        agent.mounts()
    );
    let pids: Vec<i32> = allocs
        .iter()
        .map(|a| {
            let id = a["ID"].as_str().unwrap();
            let e = events(&alloc(&agent, id), "sleep");
            let started = e
                .iter()
                .find(|(t, _)| t == "Started")
                .expect("Started event")
                .1
                .clone();
            started
                .rsplit("pid ")
                .next()
                .unwrap()
                .trim_end_matches(')')
                .parse()
                .unwrap()
        })
        .collect();
    for pid in &pids {
        assert!(PathBuf::from(format!("/proc/{pid}")).exists());
    }

    let out = agent.cli(&["job", "stop", "sleeper"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for a in allocs_of(&agent, "sleeper") {
        assert_eq!(a["DesiredStatus"], "stop");
        assert_eq!(a["ClientStatus"], "complete", "{a}");
        let e = events(&alloc(&agent, a["ID"].as_str().unwrap()), "sleep");
        assert!(
            e.iter()
                .any(|(t, m)| t == "Killing" && m.contains("SIGTERM")),
            "{e:?}"
        );
        assert!(e.iter().any(|(t, _)| t == "Killed"), "{e:?}");
    }
    // The process tree is gone, the task cgroups are removed, the mounts are unmounted.
    for pid in &pids {
        assert!(
            !PathBuf::from(format!("/proc/{pid}")).exists(),
            "task pid {pid} still exists"
        );
    }
    // (Spare cgroups, `.spare-*`, made ahead for the next start, are no task's.)
    agent.wait_for("task cgroups removed", Duration::from_secs(10), |a| {
        a.cgroup_dirs()
            .iter()
            .all(|d| {
                std::fs::read_dir(d)
                    .map(|r| {
                        r.flatten().all(|e| {
                            !e.path().is_dir()
                                || e.file_name().to_string_lossy().starts_with(".spare-")
                        })
                    })
                    .unwrap_or(true)
            })
            .then_some(())
    });
    assert!(agent.mounts().is_empty(), "{:?}", agent.mounts());
    // And once the agent stops, not even the cgroup parent remains.
    agent.stop();
    assert!(agent.cgroup_dirs().is_empty(), "{:?}", agent.cgroup_dirs());
    let _ = std::fs::remove_dir_all(verify);
}

#[test]
fn a_task_over_its_memory_limit_is_oom_killed_and_the_event_says_so() {
    if !require_root("dev agent end-to-end: OOM kill") {
        return;
    }
    let (agent, verify) = agent_with_verifier();
    let job = write_job(
        &agent,
        "hog",
        r#"
job "hog" {
  type = "batch"
  group "g" {
    task "hog" {
      driver = "exec"
      config {
        command = "/verify/noded-verify"
        args    = ["hog", "256"]
      }
      resources {
        memory = 32
      }
      restart {
        attempts = 0
        mode     = "fail"
      }
    }
  }
}
"#,
    );
    let out = agent.cli(&["job", "run", job.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a failed allocation exits 2: {} {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let a = first_alloc_with_status(&agent, "hog", &["failed"]);
    let e = events(&alloc(&agent, a["ID"].as_str().unwrap()), "hog");
    assert!(e.iter().any(|(t, _)| t == "OOM Killed"), "{e:?}");
    assert!(
        e.iter()
            .any(|(t, m)| t == "Terminated" && m.contains("Signal: 9")),
        "{e:?}"
    );
    assert!(e.iter().any(|(t, _)| t == "Not Restarting"), "{e:?}");
    let _ = std::fs::remove_dir_all(verify);
}

#[test]
fn a_command_missing_from_the_task_root_fails_the_task_with_its_path() {
    if !require_root("dev agent end-to-end: missing command") {
        return;
    }
    let agent = DevAgent::start(AgentOptions::default());
    let job = write_job(
        &agent,
        "missing",
        r#"
job "missing" {
  type = "batch"
  group "g" {
    task "t" {
      driver = "exec"
      config {
        command = "/opt/nowhere/not-a-program"
      }
      restart {
        attempts = 0
        mode     = "fail"
      }
    }
  }
}
"#,
    );
    let out = agent.cli(&["job", "run", job.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let a = first_alloc_with_status(&agent, "missing", &["failed"]);
    let e = events(&alloc(&agent, a["ID"].as_str().unwrap()), "t");
    assert!(
        e.iter()
            .any(|(t, m)| t == "Driver Failure" && m.contains("/opt/nowhere/not-a-program")),
        "{e:?}"
    );
}

#[test]
fn bad_input_is_refused_with_a_clear_error_and_nothing_is_written() {
    if !require_root("dev agent end-to-end: bad input") {
        return;
    }
    let agent = DevAgent::start(AgentOptions::default());
    let cases = [
        ("syntax", "job \"x\" {\n  group \"g\" {\n    count = \n  }\n}\n", ":3:"),
        ("unknown-field", "job \"x\" {\n  grop \"g\" {}\n}\n", "grop"),
        ("no-command", "job \"x\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"exec\"\n      config {\n        args = [\"a\"]\n      }\n    }\n  }\n}\n", "command"),
        ("negative-count", "job \"x\" {\n  group \"g\" {\n    count = -1\n    task \"t\" {\n      driver = \"exec\"\n      config { command = \"/bin/true\" }\n    }\n  }\n}\n", "count"),
    ];
    for (name, text, expect) in cases {
        let path = write_job(&agent, name, text);
        let out = agent.cli(&["job", "run", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains(expect),
            "{name}: error should mention {expect:?}: {err}"
        );
        assert!(
            err.contains(&path.file_name().unwrap().to_string_lossy().to_string()),
            "{name}: error should name the file: {err}"
        );
    }
    // A driver no node has: accepted, as Nomad does, with a warning naming the drivers that
    // do exist; the evaluation waits blocked and `job run` says the placement failed.
    let path = write_job(
        &agent,
        "docker",
        "job \"d\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"docker\"\n      config { image = \"redis\" }\n    }\n  }\n}\n",
    );
    let out = agent.cli(&["job", "run", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("\"docker\"") && err.contains("exec"), "{err}");
    let jobs = agent.get("/v1/jobs").unwrap().json();
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs}");
}

#[test]
fn the_http_api_answers_in_nomads_shapes() {
    if !require_root("dev agent end-to-end: HTTP API") {
        return;
    }
    let agent = DevAgent::start(AgentOptions::default());
    let leader = agent.get("/v1/status/leader").unwrap();
    assert_eq!(leader.status, 200);
    assert!(leader.json().as_str().unwrap().contains(':'));
    // Its log goes to a file here (journald under systemd): plain text, no colour codes,
    // from the agent and from the supervisor that shares its stderr.
    let log = agent.log_text();
    assert!(log.contains("HTTP API listening"), "{log}");
    assert!(log.contains("task supervisor ready"), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in the log:\n{log}");
    let nodes = agent.get("/v1/nodes").unwrap();
    assert!(nodes.header("X-Nomad-Index").is_some());
    let nodes = nodes.json();
    assert_eq!(nodes.as_array().unwrap().len(), 1);
    assert_eq!(nodes[0]["Status"], "ready");
    assert_eq!(nodes[0]["Drivers"]["exec"]["Healthy"], true);
    let node_id = nodes[0]["ID"].as_str().unwrap();
    let node = agent.get(&format!("/v1/node/{node_id}")).unwrap().json();
    assert!(
        node["Attributes"]["cpu.numcores"]
            .as_str()
            .unwrap()
            .parse::<u32>()
            .unwrap()
            >= 1
    );
    assert!(node["Attributes"]["kernel.name"] == "linux");
    assert_eq!(agent.get("/v1/job/nope").unwrap().status, 404);
    assert_eq!(agent.get("/v1/allocation/nope").unwrap().status, 404);
    assert_eq!(agent.get("/v1/jobs?index=abc").unwrap().status, 400);
    let bad = agent
        .request("PUT", "/v1/jobs", Some(b"{not json".to_vec()))
        .unwrap();
    assert_eq!(bad.status, 400, "{}", bad.text());

    // Register through the API and wait with a blocking query.
    let job = serde_json::json!({"Job": {
        "ID": "api", "Type": "batch",
        "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": [{"Name": "t", "Driver": "raw_exec",
            "Config": {"command": "/bin/true"}}]}]
    }});
    let r = agent
        .request("PUT", "/v1/jobs", Some(serde_json::to_vec(&job).unwrap()))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let reg = r.json();
    let eval_id = reg["EvalID"].as_str().unwrap();
    let index: u64 = r.header("X-Nomad-Index").unwrap().parse().unwrap();
    let start = std::time::Instant::now();
    let blocked = agent
        .get(&format!("/v1/job/api/allocations?index={index}&wait=10s"))
        .unwrap();
    assert_eq!(blocked.status, 200);
    assert!(
        start.elapsed() < Duration::from_secs(9),
        "the blocking query should wake on the placement"
    );
    assert!(
        blocked
            .header("X-Nomad-Index")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > index
    );
    let eval = agent
        .get(&format!("/v1/evaluation/{eval_id}"))
        .unwrap()
        .json();
    assert_eq!(eval["JobID"], "api");
    let health = agent.get("/v1/agent/health").unwrap().json();
    assert_eq!(health["server"]["ok"], true);
    assert_eq!(health["client"]["ok"], true);
}

#[test]
fn a_dispatched_job_reads_its_payload_and_meta_and_shows_them_in_its_logs() {
    if !require_root("dev agent end-to-end: dispatch") {
        return;
    }
    let agent = DevAgent::start(AgentOptions::default());
    let job = write_job(
        &agent,
        "echo",
        r#"
job "echo" {
  type = "batch"
  parameterized {
    payload       = "required"
    meta_required = ["who"]
  }
  group "g" {
    task "t" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "cat /local/in/payload.txt; echo \" for $NOMAD_META_who\""]
      }
      dispatch_payload {
        file = "in/payload.txt"
      }
      restart {
        attempts = 0
        mode     = "fail"
      }
    }
  }
}
"#,
    );
    let out = agent.cli(&["job", "run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "job run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Job registration successful"));
    // A dispatch without its required meta is refused, naming the key.
    let payload = write_job(&agent, "payload", "hello from the payload");
    let refused = agent.cli(&["job", "dispatch", "echo", payload.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("required meta keys: [who]"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let out = agent.cli(&[
        "job",
        "dispatch",
        "-meta",
        "who=noded",
        "echo",
        payload.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dispatch failed: {}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent.log_text()
    );
    let child = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Dispatched Job ID = "))
        .unwrap_or_else(|| panic!("no dispatched job id in {stdout}"))
        .trim()
        .to_string();
    assert!(child.starts_with("echo/dispatch-"), "{child}");
    let a = first_alloc_with_status(&agent, &child.replace('/', "%2F"), &["complete"]);
    let id = a["ID"].as_str().unwrap().to_string();
    let logs = agent.cli(&["alloc", "logs", &id, "t"]);
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(
        text.contains("hello from the payload for noded"),
        "alloc logs: {text}\n{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    // The parent is running (waiting for dispatches) and lists its child.
    let status = agent.cli(&["job", "status", "echo"]);
    let status_text = String::from_utf8_lossy(&status.stdout);
    assert!(status_text.contains("Dispatched Jobs"), "{status_text}");
    assert!(status_text.contains(&child), "{status_text}");
}
