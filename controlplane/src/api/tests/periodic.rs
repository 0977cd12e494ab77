//! `/v1/job/:id/dispatch`, `/periodic/force`, `/scale` and `/v1/scaling/...` over HTTP.

use super::*;

fn parameterized_body() -> serde_json::Value {
    serde_json::json!({"Job": {
        "ID": "work", "Type": "batch",
        "ParameterizedJob": {"Payload": "forbidden", "MetaRequired": ["input"], "MetaOptional": ["mode"]},
        "TaskGroups": [{"Name": "g", "Count": 1,
            "Scaling": {"Min": 0, "Max": 5},
            "Tasks": [{
            "Name": "t", "Driver": "exec", "Config": {"command": "/bin/true"},
            "Resources": {"CPU": 100, "MemoryMB": 64}
        }]}]
    }})
}

#[tokio::test]
async fn dispatch_refusals_are_400s_naming_the_keys_and_write_nothing() {
    let (app, server) = app();
    node(&server).await;
    let (status, _, body) = call(&app, "PUT", "/v1/jobs", Some(parameterized_body())).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let registered: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        registered["EvalID"], "",
        "a parameterized parent is not evaluated"
    );
    let before = server.state().latest_index();
    for (request, words) in [
        (
            serde_json::json!({}),
            "Dispatch did not provide required meta keys: [input]",
        ),
        (
            serde_json::json!({"Meta": {"input": "a", "zone": "b"}}),
            "unpermitted metadata keys: [zone]",
        ),
        (
            serde_json::json!({"Meta": {"input": "a"}, "Payload": "aGVsbG8="}),
            "Payload provided but forbidden by parameterized job",
        ),
        (
            serde_json::json!({"Meta": {"input": "a"}, "Payload": "not base64!"}),
            "Payload is not base64",
        ),
    ] {
        let (status, _, body) = call(&app, "POST", "/v1/job/work/dispatch", Some(request)).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains(words), "{text}");
    }
    let (status, _, _) = call(
        &app,
        "POST",
        "/v1/job/nothere/dispatch",
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(server.state().latest_index(), before, "nothing was written");

    // A good one: Nomad's answer shape, the child registered with an evaluation.
    let (status, _, body) = call(
        &app,
        "POST",
        "/v1/job/work/dispatch",
        Some(serde_json::json!({"Meta": {"input": "a", "mode": "fast"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let child = answer["DispatchedJobID"].as_str().unwrap();
    assert!(child.starts_with("work/dispatch-"), "{answer}");
    assert!(answer["EvalID"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(answer["JobCreateIndex"]
        .as_u64()
        .is_some_and(|i| i > before));
    let (status, _, body) = call(&app, "GET", "/v1/job/work/summary", None).await;
    assert_eq!(status, StatusCode::OK);
    let summary: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        summary["Children"]["Pending"].as_u64().unwrap_or(0)
            + summary["Children"]["Running"].as_u64().unwrap_or(0)
            + summary["Children"]["Dead"].as_u64().unwrap_or(0),
        1,
        "{summary}"
    );
    // Forcing a parameterized job is refused: it is not periodic.
    let (status, _, body) = call(&app, "POST", "/v1/job/work/periodic/force", None).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&body)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn scaling_over_http_speaks_nomads_shapes() {
    let (app, server) = app();
    node(&server).await;
    let (status, _, _) = call(&app, "PUT", "/v1/jobs", Some(parameterized_body())).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = call(
        &app,
        "POST",
        "/v1/job/work/scale",
        Some(serde_json::json!({"Count": 9, "Target": {"Group": "g"}})),
    )
    .await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("9 > 5"), "{text}");
    let (status, _, body) = call(
        &app,
        "POST",
        "/v1/job/work/scale",
        Some(serde_json::json!({"Count": 3, "Target": {"Group": "g"}, "Message": "more"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = call(&app, "GET", "/v1/job/work/scale", None).await;
    assert_eq!(status, StatusCode::OK);
    let scale: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(scale["JobID"], "work");
    assert_eq!(scale["TaskGroups"]["g"]["Desired"], 3);
    assert_eq!(scale["TaskGroups"]["g"]["Events"][0]["Message"], "more");
    assert_eq!(scale["TaskGroups"]["g"]["Events"][0]["PreviousCount"], 1);
    let (status, _, body) = call(&app, "GET", "/v1/scaling/policies?job=work", None).await;
    assert_eq!(status, StatusCode::OK);
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let id = list[0]["ID"].as_str().unwrap().to_string();
    assert_eq!(list[0]["Type"], "horizontal");
    let (status, _, body) = call(&app, "GET", &format!("/v1/scaling/policy/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let policy: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(policy["Target"]["Job"], "work");
    assert_eq!(policy["Target"]["Group"], "g");
    assert_eq!(
        (policy["Min"].as_i64(), policy["Max"].as_i64()),
        (Some(0), Some(5))
    );
    assert_eq!(policy["Enabled"], true);
    let (status, _, _) = call(&app, "GET", "/v1/scaling/policies?type=vertical", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(&app, "GET", "/v1/scaling/policy/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.shutdown().await;
}
