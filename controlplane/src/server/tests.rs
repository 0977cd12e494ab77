//! Pipeline tests against an in-process log that applies each command at the next index. The
//! real Raft node is exercised by the raft tests and the end-to-end tests.

use std::time::Duration;

use super::*;
use crate::model::*;

fn start() -> Arc<Server> {
    super::testing::start_in_process()
}

fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        name: id.into(),
        datacenter: "dc1".into(),
        node_pool: "default".into(),
        status: NodeStatus::Ready,
        scheduling_eligibility: eligibility::ELIGIBLE.into(),
        node_resources: NodeResources {
            cpu: NodeCpuResources {
                cpu_shares: 2000,
                ..Default::default()
            },
            memory: NodeMemoryResources { memory_mb: 2048 },
            disk: crate::model::NodeDiskResources { disk_mb: 100_000 },
            ..Default::default()
        },
        drivers: [(
            "exec".to_string(),
            DriverInfo {
                detected: true,
                healthy: true,
                ..Default::default()
            },
        )]
        .into(),
        ..Default::default()
    }
}

fn job(id: &str, count: i64, cpu: i64, driver: &str) -> Job {
    Job {
        id: id.into(),
        task_groups: vec![TaskGroup {
            name: "g".into(),
            count,
            tasks: vec![Task {
                name: "t".into(),
                driver: driver.into(),
                resources: Some(Resources {
                    cpu,
                    memory_mb: 64,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn eventually<F: Fn(&State) -> bool>(server: &Server, what: &str, f: F) -> State {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state = server.state();
        if f(&state) {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_registered_job_is_evaluated_planned_and_committed() {
    let server = start();
    server.register_node(node("n1")).await.unwrap();
    let resp = server
        .register_job(job("web", 2, 100, "exec"))
        .await
        .unwrap();
    let state = eventually(&server, "eval complete", |s| {
        s.eval(&resp.eval_id)
            .is_some_and(|e| e.status == EvalStatus::Complete)
    })
    .await;
    let allocs = state.allocs_by_job("default", "web");
    assert_eq!(allocs.len(), 2);
    assert!(allocs
        .iter()
        .all(|a| a.node_id == "n1" && a.eval_id == resp.eval_id));
    assert_eq!(
        state.job("default", "web").unwrap().status,
        JobStatus::Running
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_job_with_a_constraint_no_node_meets_is_accepted_with_a_warning_and_waits_blocked() {
    let server = start();
    server.register_node(node("n1")).await.unwrap();
    let mut j = job("web", 2, 100, "exec");
    j.task_groups[0].constraints.push(crate::model::Constraint {
        l_target: "${attr.kernel.name}".into(),
        r_target: "windows".into(),
        operand: "=".into(),
    });
    let resp = server.register_job(j).await.unwrap();
    assert!(
        resp.warnings
            .contains("constraint \"${attr.kernel.name} = windows\": no ready node satisfies it"),
        "{}",
        resp.warnings
    );
    let state = eventually(&server, "blocked eval", |s| {
        s.eval(&resp.eval_id)
            .is_some_and(|e| e.status == EvalStatus::Complete && !e.blocked_eval.is_empty())
    })
    .await;
    let failed = &state.eval(&resp.eval_id).unwrap().failed_tg_allocs["g"];
    assert_eq!(
        failed.constraint_filtered["${attr.kernel.name} = windows"], 1,
        "{failed:?}"
    );
    // The summary counts the unplaced work as queued (the blocked evaluation does not
    // reset it).
    let job = state.job("default", "web").unwrap();
    assert_eq!(state.job_summary(&job).summary["g"].queued, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn a_job_for_a_driver_no_node_has_is_accepted_with_a_warning_and_waits_blocked() {
    let server = start();
    server.register_node(node("n1")).await.unwrap();
    let resp = server
        .register_job(job("web", 1, 100, "docker"))
        .await
        .unwrap();
    assert!(
        resp.warnings.contains("\"docker\"") && resp.warnings.contains("exec"),
        "{}",
        resp.warnings
    );
    assert!(server.state().job("default", "web").is_some());
    eventually(&server, "blocked eval", |s| {
        s.eval(&resp.eval_id)
            .is_some_and(|e| e.status == EvalStatus::Complete && !e.blocked_eval.is_empty())
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn unplaceable_work_waits_blocked_and_is_placed_when_capacity_arrives() {
    let server = start();
    server.register_node(node("n1")).await.unwrap();
    // 3 × 1000 MHz on a 2000 MHz node: one cannot be placed.
    let resp = server
        .register_job(job("big", 3, 1000, "exec"))
        .await
        .unwrap();
    let state = eventually(&server, "blocked eval", |s| {
        s.eval(&resp.eval_id)
            .is_some_and(|e| e.status == EvalStatus::Complete && !e.blocked_eval.is_empty())
    })
    .await;
    assert_eq!(state.allocs_by_job("default", "big").len(), 2);
    let blocked = state.eval(&resp.eval_id).unwrap().blocked_eval.clone();
    assert_eq!(state.eval(&blocked).unwrap().status, EvalStatus::Blocked);

    server.register_node(node("n2")).await.unwrap();
    let state = eventually(&server, "third placement", |s| {
        s.allocs_by_job("default", "big").len() == 3
    })
    .await;
    assert!(state
        .allocs_by_job("default", "big")
        .iter()
        .any(|a| a.node_id == "n2"));
    eventually(&server, "blocked eval completes", |s| {
        s.eval(&blocked)
            .is_some_and(|e| e.status == EvalStatus::Complete)
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn stopping_a_job_stops_its_allocations_and_unknown_jobs_are_not_found() {
    let server = start();
    server.register_node(node("n1")).await.unwrap();
    server
        .register_job(job("web", 1, 100, "exec"))
        .await
        .unwrap();
    eventually(&server, "placed", |s| {
        s.allocs_by_job("default", "web").len() == 1
    })
    .await;
    let resp = server
        .deregister_job("default", "web", false)
        .await
        .unwrap();
    let state = eventually(&server, "stop eval complete", |s| {
        s.eval(&resp.eval_id)
            .is_some_and(|e| e.status == EvalStatus::Complete)
    })
    .await;
    assert!(state
        .allocs_by_job("default", "web")
        .iter()
        .all(|a| a.desired_status == DesiredStatus::Stop));
    let err = server
        .deregister_job("default", "nope", false)
        .await
        .unwrap_err();
    assert!(matches!(err, ServerError::NotFound(_)));
    server.shutdown().await;
}

#[tokio::test]
async fn a_system_job_runs_on_every_node_and_follows_a_node_that_joins() {
    let server = start();
    server.register_node(node("n1")).await.unwrap();
    let mut j = job("sys", 1, 100, "exec");
    j.job_type = JobType::System;
    server.register_job(j).await.unwrap();
    eventually(&server, "placed on n1", |s| {
        s.allocs_by_job("default", "sys").len() == 1
    })
    .await;
    // The registration of a new node carries the system job's evaluation.
    server.register_node(node("n2")).await.unwrap();
    let state = eventually(&server, "placed on n2 too", |s| {
        s.allocs_by_job("default", "sys").len() == 2
    })
    .await;
    let mut nodes: Vec<String> = state
        .allocs_by_job("default", "sys")
        .iter()
        .map(|a| a.node_id.clone())
        .collect();
    nodes.sort();
    assert_eq!(nodes, vec!["n1", "n2"]);
    assert!(
        state
            .allocs_by_job("default", "sys")
            .iter()
            .all(|a| a.name.ends_with("[0]")),
        "system allocations are all index 0"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_stale_report_about_a_finished_allocation_is_ignored_not_refused() {
    let server = start();
    server.register_node(node("n1")).await.unwrap();
    server
        .register_job(job("web", 1, 100, "exec"))
        .await
        .unwrap();
    let state = eventually(&server, "placed", |s| {
        s.allocs_by_job("default", "web").len() == 1
    })
    .await;
    let id = state.allocs_by_job("default", "web")[0].id.clone();
    let report = |status| AllocClientUpdate {
        id: id.clone(),
        client_status: status,
        ..Default::default()
    };
    server
        .update_allocs(vec![report(ClientStatus::Complete)])
        .await
        .unwrap();
    let before = server.state().latest_index();
    // The client would retry a refused batch forever; the server drops the stale entry.
    let index = server
        .update_allocs(vec![report(ClientStatus::Running)])
        .await
        .unwrap();
    assert_eq!(index, before, "nothing was proposed");
    // Nor is a report about an allocation the servers do not have (purged with its job).
    let unknown = AllocClientUpdate {
        id: "00000000-0000-0000-0000-000000000000".into(),
        client_status: ClientStatus::Complete,
        ..Default::default()
    };
    let index = server.update_allocs(vec![unknown]).await.unwrap();
    assert_eq!(index, before, "nothing was proposed");
    let state = server.state();
    assert_eq!(
        state.alloc(&id).unwrap().client_status,
        ClientStatus::Complete
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_node_that_stops_heartbeating_goes_down_with_evaluations_and_comes_back_with_one() {
    let server = super::testing::start_in_process_with(ServerConfig {
        num_schedulers: 1,
        heartbeat: heartbeat::HeartbeatConfig {
            min_ttl: Duration::from_millis(200),
            max_per_second: 50,
            grace: Duration::from_millis(100),
            failover_ttl: Duration::from_millis(300),
        },
        ..Default::default()
    });
    server.register_node(node("n1")).await.unwrap();
    server
        .register_job(job("web", 2, 100, "exec"))
        .await
        .unwrap();
    eventually(&server, "two allocations", |s| {
        s.allocs_by_node("n1").len() == 2
    })
    .await;

    // Heartbeats within the TTL keep it ready.
    for _ in 0..6 {
        match server.node_heartbeat("n1").await.unwrap() {
            HeartbeatOutcome::Ttl(ttl) => {
                assert!(ttl >= Duration::from_millis(200) && ttl <= Duration::from_millis(400))
            }
            other => panic!("the leader answered {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.state().node("n1").unwrap().status, NodeStatus::Ready);
    assert_eq!(server.heartbeat_timers(), 1);

    // Silence: down after TTL + grace, with an evaluation for the job that ran there.
    eventually(&server, "the node down", |s| {
        s.node("n1").unwrap().status == NodeStatus::Down
    })
    .await;
    let node_evals = |s: &State, trigger: &str| {
        s.evals()
            .iter()
            .filter(|e| e.node_id == "n1" && e.triggered_by == trigger && e.job_id == "web")
            .count()
    };
    assert_eq!(node_evals(&server.state(), trigger::NODE_UPDATE), 1);
    assert_eq!(server.heartbeat_timers(), 0, "a down node has no timer");
    let events = |s: &State| -> Vec<String> {
        s.node("n1")
            .unwrap()
            .events
            .iter()
            .map(|e| e.message.clone())
            .collect()
    };
    assert_eq!(
        events(&server.state()).last().unwrap(),
        node_event_message::HEARTBEAT_MISSED
    );

    // Its next heartbeat brings it back.
    server.node_heartbeat("n1").await.unwrap();
    assert_eq!(server.state().node("n1").unwrap().status, NodeStatus::Ready);
    assert_eq!(server.heartbeat_timers(), 1);
    assert_eq!(
        events(&server.state()).last().unwrap(),
        node_event_message::REREGISTERED_BY_HEARTBEAT
    );

    // An unknown node is told to register.
    let err = server.node_heartbeat("nope").await.unwrap_err();
    assert!(matches!(err, ServerError::NotFound(m) if m.contains("register")));
    server.shutdown().await;
}

/// The drain of a node with 4 allocations of a group with `migrate { max_parallel = 2 }`: the
/// test plays the clients (replacements start, then report healthy a little later) and checks,
/// at every state it sees, that no original was stopped before its replacement was healthy
/// and that at most 2 originals were migrating at once; then that the drain completes.
#[tokio::test]
async fn a_drain_moves_allocations_two_at_a_time_and_stops_none_before_its_replacement_is_healthy()
{
    let server = start();
    server.register_node(node("n1")).await.unwrap();
    let mut j = job("web", 4, 100, "exec");
    j.task_groups[0].migrate = Some(MigrateStrategy {
        max_parallel: Some(2),
        ..Default::default()
    });
    server.register_job(j.clone()).await.unwrap();
    let state = eventually(&server, "4 placed on n1", |s| {
        s.allocs_by_job("default", "web").len() == 4
    })
    .await;
    let originals: Vec<String> = state
        .allocs_by_job("default", "web")
        .iter()
        .map(|a| a.id.clone())
        .collect();
    let running = |id: &str, healthy: Option<bool>| AllocClientUpdate {
        id: id.into(),
        client_status: ClientStatus::Running,
        deployment_status: healthy.map(|h| AllocDeploymentStatus {
            healthy: Some(h),
            ..Default::default()
        }),
        ..Default::default()
    };
    server
        .update_allocs(originals.iter().map(|id| running(id, None)).collect())
        .await
        .unwrap();
    server.register_node(node("n2")).await.unwrap();
    server
        .update_drain(
            "n1",
            Some(DrainStrategy {
                started_at: crate::model::time::format_rfc3339(now_unix_nanos()),
                ..Default::default()
            }),
            false,
            Default::default(),
        )
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut started_at: std::collections::BTreeMap<String, tokio::time::Instant> =
        Default::default();
    let mut most_migrating = 0;
    loop {
        let state = server.state();
        let allocs = state.allocs_by_job("default", "web");
        let migrating = allocs
            .iter()
            .filter(|a| originals.contains(&a.id))
            .filter(|a| a.desired_transition.should_migrate() && !a.is_terminal())
            .count();
        most_migrating = most_migrating.max(migrating);
        assert!(migrating <= 2, "{migrating} originals migrating at once");
        for original in allocs.iter().filter(|a| originals.contains(&a.id)) {
            if original.desired_status == DesiredStatus::Run {
                continue;
            }
            assert_eq!(original.desired_description, "alloc is being migrated");
            let replacement = allocs
                .iter()
                .find(|r| r.previous_allocation == original.id)
                .expect("a stopped original has a replacement");
            assert!(
                replacement
                    .deployment_status
                    .as_ref()
                    .is_some_and(|d| d.is_healthy()),
                "original {} stopped before its replacement {} was healthy",
                original.id,
                replacement.id
            );
        }
        let n1 = state.node("n1").unwrap();
        if n1.drain_strategy.is_none() {
            assert_eq!(n1.last_drain.as_ref().unwrap().status, "complete");
            assert_eq!(n1.scheduling_eligibility, eligibility::INELIGIBLE);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the drain did not complete: {allocs:#?}"
        );
        // The clients: a replacement starts, and is healthy 150 ms after it started.
        let mut reports = Vec::new();
        for a in allocs
            .iter()
            .filter(|a| a.node_id == "n2" && !a.is_terminal())
        {
            match started_at.get(&a.id) {
                None => {
                    started_at.insert(a.id.clone(), tokio::time::Instant::now());
                    reports.push(running(&a.id, None));
                }
                Some(t)
                    if t.elapsed() > Duration::from_millis(150)
                        && a.deployment_status.is_none() =>
                {
                    reports.push(running(&a.id, Some(true)));
                }
                Some(_) => {}
            }
        }
        if !reports.is_empty() {
            server.update_allocs(reports).await.unwrap();
            // Other evaluations of the job come and go meanwhile (here: the same job
            // submitted again); none may stop an original early.
            server.register_job(j.clone()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(most_migrating, 2, "two at a time, not one");
    let state = server.state();
    let live: Vec<_> = state
        .allocs_by_job("default", "web")
        .into_iter()
        .filter(|a| !a.is_terminal())
        .collect();
    assert_eq!(live.len(), 4);
    assert!(live.iter().all(|a| a.node_id == "n2"));
    server.shutdown().await;
}
