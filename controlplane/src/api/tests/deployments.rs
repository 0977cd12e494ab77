//! `/v1/deployments`, `/v1/deployment/...`, `/v1/job/:id/deployment[s]` over HTTP: reads,
//! and each write's refusals in Nomad's words (unknown, terminal, no canaries, unhealthy
//! canaries), with nothing written.

use super::*;
use crate::state::{Command, PlanResult};

const NODE: &str = "11111111-2222-3333-4444-555555555555";

async fn json(app: &Router, method: &str, uri: &str, body: serde_json::Value) -> serde_json::Value {
    let body = (!body.is_null()).then_some(body);
    let (status, _, bytes) = call(app, method, uri, body).await;
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(status, StatusCode::OK, "{method} {uri}: {text}");
    serde_json::from_slice(&bytes).unwrap()
}

/// A request that must be refused with `want` and `words`, writing nothing.
async fn refused(
    app: &Router,
    server: &Server,
    method: &str,
    uri: &str,
    body: serde_json::Value,
    want: StatusCode,
    words: &str,
) {
    let before = server.state().latest_index();
    let (status, _, bytes) = call(app, method, uri, Some(body)).await;
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(status, want, "{method} {uri}: {text}");
    assert!(
        text.contains(words),
        "{method} {uri}: {text:?} lacks {words:?}"
    );
    assert_eq!(
        server.state().latest_index(),
        before,
        "{method} {uri} wrote"
    );
}

/// Job `id` with `canaries` in its update block, and a deployment `d` of it with one
/// allocation placed (a canary when there are canaries), written as the scheduler would.
async fn deployed(server: &Server, id: &str, d: &str, canaries: i64) -> String {
    deployed_with(server, id, d, canaries, 2).await
}

/// [`deployed`] with `total` allocations wanted.
async fn deployed_with(server: &Server, id: &str, d: &str, canaries: i64, total: u64) -> String {
    let mut job = Job {
        id: id.into(),
        datacenters: vec!["dc1".into()],
        task_groups: vec![TaskGroup {
            name: "web".into(),
            count: 2,
            tasks: vec![Task {
                name: "t".into(),
                driver: "exec".into(),
                ..Default::default()
            }],
            update: Some(UpdateStrategy {
                canary: Some(canaries),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    job.canonicalize();
    let r = server
        .consensus()
        .propose(Command::JobRegister {
            job: Box::new(job),
            eval: None,
            now: 1,
            enforce_index: None,
            tracked_versions: None,
        })
        .await
        .unwrap();
    assert_eq!(r.error, None);
    let job = server.state().job("default", id).unwrap();
    let mut deployment = Deployment::new_for(&job, d.into(), 50, 1);
    deployment.task_groups.insert(
        "web".into(),
        DeploymentState {
            progress_deadline: Duration::from_secs(600),
            desired_canaries: canaries as u64,
            desired_total: total,
            ..Default::default()
        },
    );
    let alloc_id = format!("{d}-alloc");
    let alloc = Allocation {
        id: alloc_id.clone(),
        namespace: "default".into(),
        name: format!("{id}.web[0]"),
        node_id: NODE.into(),
        job_id: id.into(),
        job: Some(job.clone()),
        task_group: "web".into(),
        deployment_id: d.into(),
        deployment_status: (canaries > 0).then(|| AllocDeploymentStatus {
            canary: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    let r = server
        .consensus()
        .propose(Command::PlanApply(Box::new(PlanResult {
            allocs: vec![alloc],
            deployment: Some(deployment),
            now: 1,
            ..Default::default()
        })))
        .await
        .unwrap();
    assert_eq!(r.error, None);
    alloc_id
}

#[tokio::test]
async fn deployments_are_read_by_id_by_job_and_listed() {
    let (app, server) = app();
    node(&server).await;
    let alloc = deployed(&server, "web", "d1", 1).await;

    let list = json(&app, "GET", "/v1/deployments", serde_json::Value::Null).await;
    assert_eq!(list[0]["ID"], "d1");
    assert_eq!(list[0]["JobID"], "web");
    assert_eq!(list[0]["TaskGroups"]["web"]["DesiredCanaries"], 1);
    assert_eq!(
        list[0]["TaskGroups"]["web"]["PlacedCanaries"][0],
        alloc.as_str()
    );
    let prefixed = json(
        &app,
        "GET",
        "/v1/deployments?prefix=zz",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(prefixed.as_array().unwrap().len(), 0);
    let one = json(&app, "GET", "/v1/deployment/d1", serde_json::Value::Null).await;
    assert_eq!(one["Status"], "running");
    let allocs = json(
        &app,
        "GET",
        "/v1/deployment/allocations/d1",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(allocs[0]["ID"], alloc.as_str());
    let by_job = json(
        &app,
        "GET",
        "/v1/job/web/deployments",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(by_job.as_array().unwrap().len(), 1);
    let latest = json(
        &app,
        "GET",
        "/v1/job/web/deployment",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(latest["ID"], "d1");
    let none = json(
        &app,
        "GET",
        "/v1/job/other/deployment",
        serde_json::Value::Null,
    )
    .await;
    assert!(none.is_null());
    let (status, _, _) = call(&app, "GET", "/v1/deployment/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Another namespace does not see it.
    let (status, _, _) = call(&app, "GET", "/v1/deployment/d1?namespace=prod", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.shutdown().await;
}

#[tokio::test]
async fn writes_are_refused_in_nomads_words_and_change_nothing() {
    let (app, server) = app();
    node(&server).await;
    let canary = deployed(&server, "web", "d1", 1).await;
    deployed(&server, "api", "d2", 0).await;
    let bad = StatusCode::BAD_REQUEST;
    let all = serde_json::json!({"All": true});

    refused(
        &app,
        &server,
        "POST",
        "/v1/deployment/promote/nope",
        all.clone(),
        StatusCode::NOT_FOUND,
        "deployment not found",
    )
    .await;
    refused(
        &app,
        &server,
        "POST",
        "/v1/deployment/promote/d1",
        all.clone(),
        bad,
        "Task group \"web\" has 0/1 healthy allocations",
    )
    .await;
    refused(
        &app,
        &server,
        "POST",
        "/v1/deployment/promote/d2",
        all.clone(),
        bad,
        "no canaries to promote",
    )
    .await;
    refused(
        &app,
        &server,
        "POST",
        "/v1/deployment/promote/d1",
        serde_json::json!({}),
        bad,
        "must promote all groups or name at least one",
    )
    .await;
    refused(
        &app,
        &server,
        "POST",
        "/v1/deployment/promote/d1",
        serde_json::json!({"DeploymentID": "d2", "All": true}),
        bad,
        "does not match",
    )
    .await;
    refused(
        &app,
        &server,
        "POST",
        "/v1/deployment/allocation-health/d1",
        serde_json::json!({}),
        bad,
        "must specify at least one healthy/unhealthy allocation ID",
    )
    .await;
    refused(
        &app,
        &server,
        "POST",
        "/v1/deployment/allocation-health/d1",
        serde_json::json!({"HealthyAllocationIDs": ["nope"]}),
        bad,
        "unknown allocation",
    )
    .await;
    refused(
        &app,
        &server,
        "POST",
        "/v1/deployment/unblock/d1",
        serde_json::json!({}),
        bad,
        "can't unblock running deployment",
    )
    .await;
    refused(
        &app,
        &server,
        "POST",
        "/v1/deployment/fail/d1?namespace=prod",
        serde_json::json!({}),
        StatusCode::NOT_FOUND,
        "pass -namespace",
    )
    .await;

    // Pause, resume (with an evaluation), fail.
    let paused = json(
        &app,
        "POST",
        "/v1/deployment/pause/d1",
        serde_json::json!({"Pause": true}),
    )
    .await;
    assert_eq!(paused["EvalID"], "");
    assert!(paused["DeploymentModifyIndex"].as_u64().unwrap() > 0);
    assert_eq!(server.state().deployment("d1").unwrap().status, "paused");
    let resumed = json(
        &app,
        "POST",
        "/v1/deployment/pause/d1",
        serde_json::json!({"Pause": false}),
    )
    .await;
    assert_ne!(resumed["EvalID"], "");
    assert_eq!(server.state().deployment("d1").unwrap().status, "running");
    let failed = json(
        &app,
        "POST",
        "/v1/deployment/fail/d1",
        serde_json::Value::Null,
    )
    .await;
    assert_ne!(failed["EvalID"], "");
    assert!(failed["RevertedJobVersion"].is_null());
    let d = server.state().deployment("d1").unwrap();
    assert_eq!(d.status, "failed");
    assert_eq!(d.status_description, "Deployment marked as failed");

    // Terminal: every write is refused.
    refused(
        &app,
        &server,
        "POST",
        "/v1/deployment/fail/d1",
        serde_json::json!({}),
        bad,
        "can't fail terminal deployment",
    )
    .await;
    refused(
        &app,
        &server,
        "POST",
        "/v1/deployment/promote/d1",
        all.clone(),
        bad,
        "can't promote terminal deployment",
    )
    .await;
    refused(
        &app,
        &server,
        "POST",
        "/v1/deployment/pause/d1",
        serde_json::json!({"Pause": true}),
        bad,
        "can't pause terminal deployment",
    )
    .await;
    refused(
        &app,
        &server,
        "POST",
        "/v1/deployment/pause/d1",
        serde_json::json!({"Pause": false}),
        bad,
        "can't resume terminal deployment",
    )
    .await;
    refused(
        &app,
        &server,
        "POST",
        "/v1/deployment/unblock/d1",
        serde_json::json!({}),
        bad,
        "can't unblock terminal deployment",
    )
    .await;
    refused(
        &app,
        &server,
        "POST",
        "/v1/deployment/allocation-health/d1",
        serde_json::json!({"HealthyAllocationIDs": [canary]}),
        bad,
        "can't set health of allocations for a terminal deployment",
    )
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn manual_health_promotes_and_an_unhealthy_allocation_fails_the_deployment() {
    let (app, server) = app();
    node(&server).await;
    let canary = deployed(&server, "web", "d1", 1).await;
    json(
        &app,
        "POST",
        "/v1/deployment/allocation-health/d1",
        serde_json::json!({"HealthyAllocationIDs": [canary]}),
    )
    .await;
    let promoted = json(
        &app,
        "POST",
        "/v1/deployment/promote/d1",
        serde_json::json!({"Groups": ["web"]}),
    )
    .await;
    assert_ne!(promoted["EvalID"], "");
    assert!(server.state().deployment("d1").unwrap().task_groups["web"].promoted);

    let other = deployed(&server, "api", "d2", 0).await;
    let answer = json(
        &app,
        "POST",
        "/v1/deployment/allocation-health/d2",
        serde_json::json!({"UnhealthyAllocationIDs": [other]}),
    )
    .await;
    assert!(answer["RevertedJobVersion"].is_null());
    let d = server.state().deployment("d2").unwrap();
    assert_eq!(d.status, "failed");
    assert_eq!(d.status_description, "Failed due to unhealthy allocations");
    server.shutdown().await;
}

#[tokio::test]
async fn the_leaders_watcher_marks_a_healthy_deployment_successful_and_its_version_stable() {
    let (app, server) = app();
    node(&server).await;
    let alloc = deployed_with(&server, "web", "d1", 0, 1).await;
    json(
        &app,
        "POST",
        "/v1/deployment/allocation-health/d1",
        serde_json::json!({"HealthyAllocationIDs": [alloc]}),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let d = server.state().deployment("d1").unwrap();
        if d.status == "successful" {
            assert_eq!(d.status_description, "Deployment completed successfully");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {:?}", d.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        server
            .state()
            .job_version("default", "web", 0)
            .unwrap()
            .stable
    );
    server.shutdown().await;
}
