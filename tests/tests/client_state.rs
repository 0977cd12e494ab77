//! Crash-safe client state end to end: a node daemon killed with SIGKILL again and again (some
//! of the kills while a task is restarting) comes back each time to the same tasks — same pids,
//! restart counts going on, no second copy of any task, no task cgroup or mount left behind —
//! and a `client.db` full of garbage is moved aside without touching a healthy task.

// Test helpers fail the test loudly; that is their job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use noded_tests::client_checks::*;
use noded_tests::*;

#[test]
fn twenty_kill9s_keep_every_task_on_its_pid_with_no_duplicates_orphans_or_leaked_mounts() {
    if !require_root("client state across repeated node daemon kill -9") {
        return;
    }
    let began = Instant::now();
    let mut agent = DevAgent::start(AgentOptions {
        persistent: true,
        ..Default::default()
    });
    run_job(&agent, "steady", STEADY);
    run_job(&agent, "flappy", FLAPPY);
    let steady = agent.wait_for(
        "3 running steady allocations",
        Duration::from_secs(30),
        |a| {
            let r = running(a, "steady");
            (r.len() == 3).then_some(r)
        },
    );
    let pids: BTreeMap<String, i32> = steady
        .iter()
        .map(|(id, a)| {
            let p = event_pids(a, "t");
            assert_eq!(p.len(), 1, "{p:?}");
            (id.clone(), *p.iter().next().unwrap())
        })
        .collect();
    let flappy_id = first_alloc_with_status(&agent, "flappy", &["running"])["ID"]
        .as_str()
        .unwrap()
        .to_string();
    agent.wait_for("flappy restarting", Duration::from_secs(15), |a| {
        (restarts(a, &flappy_id, "f") >= 1).then_some(())
    });
    let flappy_restarts_before = restarts(&agent, &flappy_id, "f");
    let mounts_before: BTreeSet<String> = agent.mounts().into_iter().collect();
    let supervisor = agent.supervisor_pid;

    for round in 0..20u64 {
        // Kills land at different points of flappy's cycle (running, exiting, waiting 200 ms
        // to restart, starting).
        std::thread::sleep(Duration::from_millis(round * 37 % 400));
        agent.kill9();
        agent.launch();
        assert_eq!(
            agent.supervisor_pid, supervisor,
            "round {round}: same supervisor"
        );
    }

    // Every steady task: on its first pid, never restarted, exactly one copy.
    agent.wait_for(
        "the steady tasks reattached after the last restart",
        Duration::from_secs(20),
        |a| {
            let r = running(a, "steady");
            (r.len() == 3 && r.values().all(|x| event_pids(x, "t").len() == 1)).then_some(())
        },
    );
    for (id, pid) in &pids {
        let a = alloc(&agent, id);
        assert_eq!(
            event_pids(&a, "t"),
            BTreeSet::from([*pid]),
            "allocation {id}: {:?}",
            events(&a, "t")
        );
        assert_eq!(a["TaskStates"]["t"]["Restarts"], 0, "allocation {id}");
        assert!(PathBuf::from(format!("/proc/{pid}")).exists());
        assert_eq!(
            shells(&agent, &format!("{id}.t")),
            vec![*pid],
            "one copy of {id}.t"
        );
    }
    assert_eq!(running(&agent, "steady").len(), 3, "no fourth allocation");

    // Flappy: restarts counted on from where they were, one copy at most at any time.
    agent.wait_for("flappy restarting on", Duration::from_secs(20), |a| {
        (restarts(a, &flappy_id, "f") > flappy_restarts_before + 1).then_some(())
    });
    for _ in 0..10 {
        assert!(shells(&agent, &format!("{flappy_id}.f")).len() <= 1);
        std::thread::sleep(Duration::from_millis(100));
    }

    // No orphaned task cgroup: each belongs to a task of a live allocation.
    let expected: BTreeSet<String> = pids
        .keys()
        .map(|id| format!("{id}.t"))
        .chain([format!("{flappy_id}.f")])
        .collect();
    let names = task_cgroup_names(&agent);
    assert!(names.is_subset(&expected), "{names:?} vs {expected:?}");

    // No leaked mounts: the same mounts under the data dir as before the kills.
    let mounts_after: BTreeSet<String> = agent.mounts().into_iter().collect();
    assert_eq!(mounts_before, mounts_after);

    // Logs continued: every steady task is still writing, through the API.
    for id in pids.keys() {
        let at = last_tick(&agent, id);
        agent.wait_for("new output", Duration::from_secs(10), |a| {
            (last_tick(a, id) >= at + 2).then_some(())
        });
    }
    let db = agent.data_dir.join("client").join("client.db");
    assert!(db.is_file(), "{}", db.display());
    eprintln!("wall time: {:?}", began.elapsed());
}

#[test]
fn a_garbage_client_db_is_moved_aside_and_the_running_task_is_kept() {
    if !require_root("client state moved aside") {
        return;
    }
    let mut agent = DevAgent::start(AgentOptions {
        persistent: true,
        ..Default::default()
    });
    run_job(&agent, "steady", &STEADY.replace("count = 3", "count = 1"));
    let a = first_alloc_with_status(&agent, "steady", &["running"]);
    let id = a["ID"].as_str().unwrap().to_string();
    let pid = agent.wait_for("the Started event", Duration::from_secs(10), |a| {
        event_pids(&alloc(a, &id), "t").into_iter().next()
    });

    agent.kill9();
    let state_dir = agent.data_dir.join("client");
    let garbage: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(state_dir.join("client.db"), &garbage).unwrap();
    agent.launch();

    let reattached = agent.wait_for("the Reattached event", Duration::from_secs(20), |a| {
        let e = events(&alloc(a, &id), "t");
        e.iter().any(|(t, _)| t == "Reattached").then_some(e)
    });
    assert!(
        reattached
            .iter()
            .any(|(t, m)| t == "Reattached" && m.contains(&format!("pid {pid}"))),
        "{reattached:?}"
    );
    assert!(PathBuf::from(format!("/proc/{pid}")).exists());
    assert_eq!(restarts(&agent, &id, "t"), 0);
    assert_eq!(shells(&agent, &format!("{id}.t")), vec![pid]);
    let aside: Vec<PathBuf> = std::fs::read_dir(&state_dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("client.db.corrupt-"))
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), garbage);
    assert!(agent.log_text().contains("moved aside"));

    // The fresh state file records the reattached task: the next kill -9 finds it there.
    agent.kill9();
    agent.launch();
    agent.wait_for("reattached again", Duration::from_secs(20), |a| {
        let e = events(&alloc(a, &id), "t");
        (e.iter().filter(|(t, _)| t == "Reattached").count() >= 2).then_some(())
    });
    assert_eq!(event_pids(&alloc(&agent, &id), "t"), BTreeSet::from([pid]));
}

#[test]
fn client_gc_collects_a_stopped_allocation_and_refuses_a_running_one() {
    if !require_root("client garbage collection") {
        return;
    }
    let agent = DevAgent::start(AgentOptions {
        persistent: true,
        ..Default::default()
    });
    run_job(&agent, "steady", &STEADY.replace("count = 3", "count = 1"));
    let a = first_alloc_with_status(&agent, "steady", &["running"]);
    let id = a["ID"].as_str().unwrap().to_string();
    let dir = agent.data_dir.join("alloc").join(&id);
    assert!(dir.is_dir());

    let r = agent
        .request("PUT", &format!("/v1/client/allocation/{id}/gc"), None)
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("not terminal"), "{}", r.text());
    assert!(dir.is_dir(), "a live allocation is never collected");

    let out = agent.cli(&["job", "stop", "steady"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    first_alloc_with_status(&agent, "steady", &["complete"]);
    agent.wait_for("the task cgroup removed", Duration::from_secs(10), |a| {
        task_cgroup_names(a).is_empty().then_some(())
    });
    // Nomad's API client sends it as a GET. (On a disk above gc_disk_usage_threshold the
    // periodic collector may have taken it already, as Nomad's would.)
    let r = agent.get("/v1/client/gc").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!dir.exists(), "the stopped allocation's directory is gone");
    assert!(!agent.log_text().contains("not collected"));
    assert!(agent.mounts().iter().all(|m| !m.contains(&id)));
    let r = agent
        .get(&format!("/v1/client/allocation/{id}/gc"))
        .unwrap();
    assert_eq!(r.status, 404, "collected already: {}", r.text());
}
