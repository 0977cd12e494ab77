//! Periodic launches, dispatches and scaling through a whole server (in-process log, real
//! broker, workers and plan applier).

use std::time::Duration;

use super::dispatch::DispatchRequest;
use super::scaling::{scale_status, scaling_policies, ScaleRequest};
use super::*;
use crate::model::*;

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
                cpu_shares: 4000,
                ..Default::default()
            },
            memory: NodeMemoryResources { memory_mb: 4096 },
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

fn batch_job(id: &str) -> Job {
    Job {
        id: id.into(),
        job_type: JobType::Batch,
        task_groups: vec![TaskGroup {
            name: "g".into(),
            count: 1,
            tasks: vec![Task {
                name: "t".into(),
                driver: "exec".into(),
                resources: Some(Resources {
                    cpu: 10,
                    memory_mb: 16,
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let state = server.state();
        if f(&state) {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_periodic_job_every_second_launches_children_that_are_scheduled() {
    let server = testing::start_in_process();
    server.register_node(node("n1")).await.unwrap();
    let mut job = batch_job("tick");
    job.periodic = Some(PeriodicConfig {
        specs: vec!["*/1 * * * * * *".into()],
        ..Default::default()
    });
    let response = server.register_job(job).await.unwrap();
    // The parent itself is not evaluated.
    assert_eq!(response.eval_id, "");
    let state = eventually(&server, "two children with allocations", |s| {
        s.children("default", "tick")
            .iter()
            .filter(|c| !s.allocs_by_job("default", &c.id).is_empty())
            .count()
            >= 2
    })
    .await;
    assert!(state.evals_by_job("default", "tick").is_empty());
    assert!(state.allocs_by_job("default", "tick").is_empty());
    for child in state.children("default", "tick") {
        assert!(child.id.starts_with("tick/periodic-"), "{}", child.id);
        let evals = state.evals_by_job("default", &child.id);
        assert!(evals
            .iter()
            .all(|e| e.triggered_by == trigger::PERIODIC_JOB));
    }
    let summary = state.job_summary(&state.job("default", "tick").unwrap());
    assert!(summary
        .children
        .is_some_and(|c| c.pending + c.running + c.dead >= 2));
    server.shutdown().await;
}

#[tokio::test]
async fn a_forced_launch_runs_now_and_a_parameterized_parent_cannot_be_forced() {
    let server = testing::start_in_process();
    server.register_node(node("n1")).await.unwrap();
    let mut job = batch_job("yearly");
    job.periodic = Some(PeriodicConfig {
        specs: vec!["0 0 1 1 *".into()],
        ..Default::default()
    });
    server.register_job(job).await.unwrap();
    let forced = server.force_periodic("default", "yearly").await.unwrap();
    let state = eventually(&server, "forced child placed", |s| {
        s.eval(&forced.eval_id)
            .is_some_and(|e| e.status == EvalStatus::Complete)
    })
    .await;
    let eval = state.eval(&forced.eval_id).unwrap();
    assert!(eval.job_id.starts_with("yearly/periodic-"));
    assert_eq!(state.allocs_by_job("default", &eval.job_id).len(), 1);
    let err = server.force_periodic("default", "nope").await.unwrap_err();
    assert!(matches!(err, ServerError::NotFound(_)));
    server.register_job(batch_job("plain")).await.unwrap();
    let err = server.force_periodic("default", "plain").await.unwrap_err();
    assert!(err.to_string().contains("not periodic"), "{err}");
    server.shutdown().await;
}

fn parameterized(payload: &str) -> Job {
    let mut job = batch_job("work");
    job.meta = [("team".to_string(), "core".to_string())].into();
    job.parameterized_job = Some(ParameterizedJobConfig {
        payload: payload.into(),
        meta_required: vec!["input".into()],
        meta_optional: vec!["mode".into()],
    });
    job
}

#[tokio::test]
async fn a_dispatch_registers_a_child_with_merged_meta_and_its_payload() {
    let server = testing::start_in_process();
    server.register_node(node("n1")).await.unwrap();
    let parent = server
        .register_job(parameterized("optional"))
        .await
        .unwrap();
    assert_eq!(parent.eval_id, "");
    let request = DispatchRequest {
        payload: b"hello".to_vec(),
        meta: [("input".to_string(), "a.txt".to_string())].into(),
        id_prefix_template: "nightly".into(),
        idempotency_token: "tok-1".into(),
    };
    let first = server
        .dispatch_job("default", "work", request.clone())
        .await
        .unwrap();
    assert!(
        first
            .dispatched_job_id
            .starts_with("work/dispatch-nightly-"),
        "{}",
        first.dispatched_job_id
    );
    let suffix = first.dispatched_job_id.rsplit('-').next().unwrap();
    assert_eq!(suffix.len(), 8);
    let state = eventually(&server, "dispatched child placed", |s| {
        s.eval(&first.eval_id)
            .is_some_and(|e| e.status == EvalStatus::Complete)
    })
    .await;
    let child = state.job("default", &first.dispatched_job_id).unwrap();
    assert!(child.dispatched);
    assert_eq!(child.parent_id, "work");
    assert_eq!(child.payload.as_deref(), Some("aGVsbG8="));
    assert_eq!(child.meta.get("team").map(String::as_str), Some("core"));
    assert_eq!(child.meta.get("input").map(String::as_str), Some("a.txt"));
    assert_eq!(state.allocs_by_job("default", &child.id).len(), 1);
    assert!(state.allocs_by_job("default", "work").is_empty());
    // The same token while that child lives: the same child, nothing new.
    let again = server
        .dispatch_job("default", "work", request)
        .await
        .unwrap();
    assert_eq!(again.dispatched_job_id, first.dispatched_job_id);
    assert_eq!(again.eval_id, "");
    assert_eq!(server.state().children("default", "work").len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn dispatch_refusals_name_what_is_wrong() {
    let server = testing::start_in_process();
    server
        .register_job(parameterized("forbidden"))
        .await
        .unwrap();
    let mut required = parameterized("required");
    required.id = "needs".into();
    server.register_job(required).await.unwrap();
    let meta = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let cases = [
        (
            "work",
            DispatchRequest::default(),
            "required meta keys: [input]",
        ),
        (
            "work",
            DispatchRequest {
                meta: meta(&[("input", "x"), ("colour", "red"), ("size", "2")]),
                ..Default::default()
            },
            "unpermitted metadata keys: [colour size]",
        ),
        (
            "work",
            DispatchRequest {
                meta: meta(&[("input", "x")]),
                payload: b"data".to_vec(),
                ..Default::default()
            },
            "Payload provided but forbidden",
        ),
        (
            "needs",
            DispatchRequest {
                meta: meta(&[("input", "x")]),
                ..Default::default()
            },
            "Payload is not provided but required",
        ),
        (
            "needs",
            DispatchRequest {
                meta: meta(&[("input", "x")]),
                payload: vec![b'x'; 16 * 1024 + 1],
                ..Default::default()
            },
            "Payload exceeds maximum size; 16385 > 16384",
        ),
    ];
    for (job, request, expected) in cases {
        let err = server
            .dispatch_job("default", job, request)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ServerError::BadRequest(m) if m.contains(expected)),
            "{err}"
        );
    }
    server.register_job(batch_job("plain")).await.unwrap();
    let err = server
        .dispatch_job("default", "plain", DispatchRequest::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a parameterized job"), "{err}");
    assert!(server.state().children("default", "work").is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn scaling_a_group_makes_a_version_an_event_and_an_evaluation_within_its_bounds() {
    let server = testing::start_in_process();
    server.register_node(node("n1")).await.unwrap();
    let mut job = batch_job("web");
    job.job_type = JobType::Service;
    job.task_groups[0].scaling = Some(ScalingPolicy {
        min: Some(1),
        max: Some(3),
        ..Default::default()
    });
    server.register_job(job).await.unwrap();
    let before = server.state().job("default", "web").unwrap();
    let policies = scaling_policies(&server.state());
    assert_eq!(policies.len(), 1);
    let policy_id = policies[0].id.clone();
    assert_eq!(policies[0].policy_type, "horizontal");
    assert_eq!(policies[0].target["Group"], "g");
    let scale = |count: i64| ScaleRequest {
        group: "g".into(),
        count: Some(count),
        message: format!("to {count}"),
        ..Default::default()
    };
    let response = server.scale_job("default", "web", scale(3)).await.unwrap();
    assert!(!response.eval_id.is_empty());
    let state = eventually(&server, "three allocations", |s| {
        s.allocs_by_job("default", "web")
            .iter()
            .filter(|a| !a.is_terminal())
            .count()
            == 3
    })
    .await;
    let after = state.job("default", "web").unwrap();
    assert_eq!(after.version, before.version + 1);
    assert_eq!(after.task_groups[0].count, 3);
    assert_eq!(
        state.eval(&response.eval_id).unwrap().triggered_by,
        trigger::JOB_SCALING
    );
    let status = scale_status(&state, &after);
    let group = &status.task_groups["g"];
    assert_eq!((group.desired, group.placed), (3, 3));
    assert_eq!(group.events.len(), 1);
    assert_eq!(group.events[0].previous_count, 1);
    assert_eq!(
        group.events[0].eval_id.as_deref(),
        Some(response.eval_id.as_str())
    );
    // The policy keeps its id across versions.
    assert_eq!(scaling_policies(&state)[0].id, policy_id);
    for (count, words) in [
        (4, "greater than scaling policy maximum: 4 > 3"),
        (0, "less than scaling policy minimum: 0 < 1"),
    ] {
        let err = server
            .scale_job("default", "web", scale(count))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(words), "{err}");
    }
    let err = server
        .scale_job(
            "default",
            "web",
            ScaleRequest {
                group: "nope".into(),
                count: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"nope\""), "{err}");
    // Only 20 events are kept per group, newest first.
    for n in 0..25 {
        server
            .scale_job(
                "default",
                "web",
                ScaleRequest {
                    group: "g".into(),
                    message: format!("note {n}"),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    let events = server.state().scaling_events("default", "web").unwrap();
    assert_eq!(events.scaling_events["g"].len(), 20);
    assert_eq!(events.scaling_events["g"][0].message, "note 24");
    server.shutdown().await;
}
