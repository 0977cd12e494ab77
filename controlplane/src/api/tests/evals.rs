//! The evaluation endpoints, filters on lists, and the scheduler configuration's
//! check-and-set, over HTTP against a leader on the in-process log.

use super::*;

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

#[tokio::test]
async fn evaluations_are_listed_filtered_counted_related_and_deleted() {
    let (app, server) = app();
    // No node: each job's evaluation completes with a blocked follow-up.
    for id in ["web", "api"] {
        let (status, _, body) = call(&app, "PUT", "/v1/jobs", Some(job_body(id))).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    }
    let blocked = |s: &crate::state::State| {
        s.evals()
            .iter()
            .filter(|e| e.status == crate::model::EvalStatus::Blocked)
            .count()
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while blocked(&server.state()) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "evaluations never blocked"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    let (status, _, body) = call(&app, "GET", "/v1/evaluations", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body).as_array().unwrap().len(), 4);
    let uri = "/v1/evaluations?filter=Status%20%3D%3D%20%22blocked%22%20and%20JobID%20matches%20%22%5Ew%22";
    let (_, _, body) = call(&app, "GET", uri, None).await;
    let list = json(&body);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["JobID"], "web");
    let (_, _, body) = call(&app, "GET", "/v1/evaluations?job=api&status=complete", None).await;
    assert_eq!(json(&body).as_array().unwrap().len(), 1);
    let (_, _, body) = call(&app, "GET", "/v1/evaluations/count?status=blocked", None).await;
    assert_eq!(json(&body)["Count"], 2);
    // Every list takes a filter; a bad one is a 400 naming the position.
    let (_, _, body) = call(&app, "GET", "/v1/jobs?filter=ID%20%3D%3D%20%22api%22", None).await;
    assert_eq!(json(&body).as_array().unwrap().len(), 1);
    let (status, text) = call_text(&app, "GET", "/v1/nodes?filter=Status%20%3D", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("position 7"), "{text}");

    let state = server.state();
    let web_blocked = state
        .evals()
        .iter()
        .find(|e| e.job_id == "web" && e.status == crate::model::EvalStatus::Blocked)
        .map(|e| (**e).clone())
        .unwrap();
    let uri = format!("/v1/evaluation/{}?related=true", web_blocked.previous_eval);
    let (_, _, body) = call(&app, "GET", &uri, None).await;
    let eval = json(&body);
    assert_eq!(eval["BlockedEval"], web_blocked.id.as_str());
    assert_eq!(eval["RelatedEvals"][0]["ID"], web_blocked.id.as_str());
    assert_eq!(eval["RelatedEvals"].as_array().unwrap().len(), 1);

    // Deleting: refused while the broker runs, then by filter once it is paused.
    let body = serde_json::json!({"Filter": "JobID == \"web\""});
    let (status, text) = call_text(&app, "DELETE", "/v1/evaluations", &body.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("eval broker must be paused"), "{text}");
    let both = serde_json::json!({"Filter": "x == y", "EvalIDs": ["a"]});
    let (status, text) = call_text(&app, "DELETE", "/v1/evaluations", &both.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("both ID and filter"), "{text}");
    let (status, _, body) = call(
        &app,
        "PUT",
        "/v1/operator/scheduler/configuration",
        Some(serde_json::json!({"PauseEvalBroker": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = call(&app, "DELETE", "/v1/evaluations", Some(body_of(&body))).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, _, out) = call(
        &app,
        "DELETE",
        "/v1/evaluations",
        Some(serde_json::json!({"Filter": "JobID == \"web\""})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&out));
    assert_eq!(json(&out)["Count"], 2);
    assert!(server.state().evals().iter().all(|e| e.job_id != "web"));
    server.shutdown().await;
}

/// A body that asks for nothing to be deleted (neither ids nor filter).
fn body_of(_: &[u8]) -> serde_json::Value {
    serde_json::json!({})
}

#[tokio::test]
async fn job_evaluate_and_scheduler_configuration_check_and_set() {
    let (app, server) = app();
    node(&server).await;
    let (status, _, body) = call(&app, "PUT", "/v1/jobs", Some(job_body("web"))).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = call(
        &app,
        "POST",
        "/v1/job/web/evaluate",
        Some(serde_json::json!({"JobID": "web", "EvalOptions": {"ForceReschedule": true}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let eval_id = json(&body)["EvalID"].as_str().unwrap().to_string();
    assert!(server.state().eval(&eval_id).is_some());
    let (status, _) = call_text(&app, "POST", "/v1/job/nope/evaluate", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, _, body) = call(&app, "GET", "/v1/operator/scheduler/configuration", None).await;
    let current = json(&body);
    let index = current["SchedulerConfig"]["ModifyIndex"].as_u64().unwrap();
    let stale = format!("/v1/operator/scheduler/configuration?cas={}", index + 100);
    let (status, _, body) = call(
        &app,
        "PUT",
        &stale,
        Some(serde_json::json!({"SchedulerAlgorithm": "spread"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["Updated"], false);
    let fresh = format!("/v1/operator/scheduler/configuration?cas={index}");
    let (_, _, body) = call(
        &app,
        "PUT",
        &fresh,
        Some(serde_json::json!({"SchedulerAlgorithm": "spread", "RejectJobRegistration": true})),
    )
    .await;
    assert_eq!(json(&body)["Updated"], true);
    assert_eq!(
        server.state().scheduler_config().scheduler_algorithm,
        "spread"
    );
    let (status, text) = call_text(&app, "PUT", "/v1/jobs", &job_body("other").to_string()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        text.contains("Job registration, dispatch, and scale are disabled"),
        "{text}"
    );
    let (_, _, body) = call(&app, "GET", "/v1/agent/self", None).await;
    let stats = &json(&body)["stats"]["nomad"];
    assert!(stats["broker"]["total_ready"].is_u64(), "{stats}");
    assert!(stats["blocked_evals"]["total_blocked"].is_u64(), "{stats}");
    server.shutdown().await;
}
