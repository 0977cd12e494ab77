//! `/v1/job/:id/revert`, `/stable`, `/versions/:name/tag` and `EnforceIndex` over HTTP.

use super::*;

/// `job_body(id)` with the group's count set: each count is another version.
fn counted(count: i64) -> serde_json::Value {
    let mut body = job_body("web");
    body["Job"]["TaskGroups"][0]["Count"] = count.into();
    body
}

async fn json(app: &Router, method: &str, uri: &str, body: serde_json::Value) -> serde_json::Value {
    let (status, _, bytes) = call(app, method, uri, Some(body)).await;
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(status, StatusCode::OK, "{method} {uri}: {text}");
    serde_json::from_slice(&bytes).unwrap()
}

/// A request that must be refused with `want` and words naming the mistake, writing nothing.
async fn refused(
    app: &Router,
    server: &Server,
    method: &str,
    uri: &str,
    body: Option<serde_json::Value>,
    want: StatusCode,
    words: &str,
) {
    let before = server.state().latest_index();
    let (status, _, bytes) = call(app, method, uri, body).await;
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

async fn versions(app: &Router) -> Vec<serde_json::Value> {
    let (status, _, bytes) = call(app, "GET", "/v1/job/web/versions", None).await;
    assert_eq!(status, StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    answer["Versions"].as_array().unwrap().clone()
}

#[tokio::test]
async fn stable_and_tags_show_in_the_versions_and_a_tag_name_is_unique() {
    let (app, server) = app();
    json(&app, "PUT", "/v1/jobs", counted(1)).await;
    json(&app, "PUT", "/v1/jobs", counted(2)).await;

    let answer = json(
        &app,
        "PUT",
        "/v1/job/web/stable",
        serde_json::json!({"JobID": "web", "JobVersion": 0, "Stable": true}),
    )
    .await;
    assert!(answer["Index"].as_u64().is_some_and(|i| i > 0), "{answer}");
    for (body, words) in [
        (
            serde_json::json!({"JobVersion": 0, "Stable": true}),
            "JobID must be specified",
        ),
        (
            serde_json::json!({"JobID": "api", "JobVersion": 0, "Stable": true}),
            "Job ID does not match",
        ),
    ] {
        refused(
            &app,
            &server,
            "PUT",
            "/v1/job/web/stable",
            Some(body),
            StatusCode::BAD_REQUEST,
            words,
        )
        .await;
    }
    refused(
        &app,
        &server,
        "PUT",
        "/v1/job/web/stable",
        Some(serde_json::json!({"JobID": "web", "JobVersion": 7, "Stable": true})),
        StatusCode::NOT_FOUND,
        "job \"web\" at version 7 not found",
    )
    .await;

    let tag = json(
        &app,
        "PUT",
        "/v1/job/web/versions/golden/tag",
        serde_json::json!({"Version": 0, "Description": "known good"}),
    )
    .await;
    assert_eq!(tag["Name"], "golden");
    assert_eq!(tag["Description"], "known good");
    assert!(tag["TaggedTime"].as_i64().is_some_and(|t| t > 0), "{tag}");
    let listed = versions(&app).await;
    assert_eq!(listed[0]["Version"], 1);
    assert_eq!(listed[0]["Stable"], false);
    assert_eq!(listed[0]["VersionTag"], serde_json::Value::Null);
    assert_eq!(listed[1]["Version"], 0);
    assert_eq!(listed[1]["Stable"], true);
    assert_eq!(listed[1]["VersionTag"]["Name"], "golden");
    assert_eq!(listed[1]["VersionTag"]["Description"], "known good");

    refused(
        &app,
        &server,
        "PUT",
        "/v1/job/web/versions/golden/tag",
        Some(serde_json::json!({"Version": 1})),
        StatusCode::BAD_REQUEST,
        "tag \"golden\" already exists on a different version of the job",
    )
    .await;
    refused(
        &app,
        &server,
        "PUT",
        "/v1/job/web/versions/now/tag",
        Some(serde_json::json!({"Version": 1, "Latest": true})),
        StatusCode::BAD_REQUEST,
        "version must be zero when tagging latest, got: 1",
    )
    .await;
    refused(
        &app,
        &server,
        "PUT",
        "/v1/job/nope/versions/now/tag",
        Some(serde_json::json!({"Latest": true})),
        StatusCode::NOT_FOUND,
        "job \"nope\" not found",
    )
    .await;
    // Latest: the current version.
    let tag = json(
        &app,
        "PUT",
        "/v1/job/web/versions/now/tag",
        serde_json::json!({"Latest": true}),
    )
    .await;
    assert_eq!(tag["Name"], "now");
    let (_, _, bytes) = call(&app, "GET", "/v1/job/web", None).await;
    let current: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(current["VersionTag"]["Name"], "now");

    let (status, _, bytes) = call(&app, "DELETE", "/v1/job/web/versions/golden/tag", None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(
        versions(&app).await[1]["VersionTag"],
        serde_json::Value::Null
    );
    refused(
        &app,
        &server,
        "DELETE",
        "/v1/job/web/versions/golden/tag",
        None,
        StatusCode::NOT_FOUND,
        "tag \"golden\" not found on job \"web\"",
    )
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn revert_registers_a_kept_version_again_and_refuses_what_nomad_refuses() {
    let (app, server) = app();
    node(&server).await;
    for count in 1..=8 {
        json(&app, "PUT", "/v1/jobs", counted(count)).await;
    }
    // Versions 0..=7; the newest 6 (2..=7) are kept.
    let revert = |version: u64, extra: serde_json::Value| {
        let mut body = serde_json::json!({"JobID": "web", "JobVersion": version});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        body
    };
    for (body, want, words) in [
        (
            revert(7, serde_json::json!({})),
            StatusCode::BAD_REQUEST,
            "can't revert to current version",
        ),
        (
            revert(0, serde_json::json!({})),
            StatusCode::NOT_FOUND,
            "job \"web\" at version 0 not found",
        ),
        (
            revert(0, serde_json::json!({})),
            StatusCode::NOT_FOUND,
            "kept versions: 2, 3, 4, 5, 6, 7",
        ),
        (
            revert(3, serde_json::json!({"EnforcePriorVersion": 6})),
            StatusCode::BAD_REQUEST,
            "Current job has version 7; enforcing version 6",
        ),
        (
            revert(
                3,
                serde_json::json!({"EnforceIndex": true, "JobModifyIndex": 1}),
            ),
            StatusCode::BAD_REQUEST,
            "enforcing job modify index 1: job \"web\" exists with a conflicting job modify index",
        ),
        (
            serde_json::json!({"JobVersion": 3}),
            StatusCode::BAD_REQUEST,
            "JobID must be specified",
        ),
    ] {
        refused(
            &app,
            &server,
            "POST",
            "/v1/job/web/revert",
            Some(body),
            want,
            words,
        )
        .await;
    }
    refused(
        &app,
        &server,
        "POST",
        "/v1/job/nope/revert",
        Some(serde_json::json!({"JobID": "nope", "JobVersion": 1})),
        StatusCode::NOT_FOUND,
        "job \"nope\" not found",
    )
    .await;

    // Tag version 3 and mark it stable: the reverted copy carries neither.
    json(
        &app,
        "PUT",
        "/v1/job/web/versions/good/tag",
        serde_json::json!({"Version": 3}),
    )
    .await;
    json(
        &app,
        "PUT",
        "/v1/job/web/stable",
        serde_json::json!({"JobID": "web", "JobVersion": 3, "Stable": true}),
    )
    .await;
    let before = server.state().job("default", "web").unwrap();
    let answer = json(
        &app,
        "POST",
        "/v1/job/web/revert",
        revert(
            3,
            serde_json::json!({"EnforcePriorVersion": 7, "EnforceIndex": true,
                "JobModifyIndex": before.job_modify_index}),
        ),
    )
    .await;
    assert_eq!(
        answer["EvalID"].as_str().map(str::len),
        Some(36),
        "{answer}"
    );
    assert!(answer["JobModifyIndex"].as_u64() > Some(before.job_modify_index));
    let current = server.state().job("default", "web").unwrap();
    assert_eq!(current.version, 8);
    assert_eq!(current.task_groups[0].count, 4, "version 3's count");
    assert!(!current.stable);
    assert!(current.version_tag.is_none());
    let tagged = server
        .state()
        .job_version_by_tag("default", "web", "good")
        .unwrap();
    assert_eq!(tagged.version, 3, "the tag stays on version 3");
    server.shutdown().await;
}

#[tokio::test]
async fn a_registration_enforcing_a_stale_index_is_refused_with_both_indexes() {
    let (app, server) = app();
    let first = json(&app, "PUT", "/v1/jobs", counted(1)).await;
    let seen = first["JobModifyIndex"].as_u64().unwrap();
    let mut body = counted(2);
    body["EnforceIndex"] = true.into();
    body["JobModifyIndex"] = seen.into();
    let second = json(&app, "PUT", "/v1/jobs", body.clone()).await;
    let now = second["JobModifyIndex"].as_u64().unwrap();
    body["Job"]["TaskGroups"][0]["Count"] = 3.into();
    refused(
        &app,
        &server,
        "PUT",
        "/v1/jobs",
        Some(body),
        StatusCode::BAD_REQUEST,
        &format!(
            "enforcing job modify index {seen}: job \"web\" exists with a conflicting job modify index: {now}"
        ),
    )
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn racing_registrations_with_one_index_commit_only_one_version() {
    // Both pass the API's early check (the same state); the state machine lets one through.
    let (_app, server) = app();
    let job = |count: i64| {
        jobspec::check_api_request(
            &counted(count).to_string(),
            &jobspec::ParseOptions::for_file("test"),
        )
        .unwrap()
        .job
    };
    let seen = server.register_job(job(1)).await.unwrap().job_modify_index;
    let (a, b) = tokio::join!(
        server.register_job_enforced(job(2), Some(seen)),
        server.register_job_enforced(job(3), Some(seen)),
    );
    let (ok, err) = match (a, b) {
        (Ok(ok), Err(err)) | (Err(err), Ok(ok)) => (ok, err),
        other => panic!("exactly one must commit: {other:?}"),
    };
    assert!(ok.job_modify_index > seen);
    assert!(
        err.to_string()
            .contains(&format!("enforcing job modify index {seen}")),
        "{err}"
    );
    assert_eq!(server.state().job("default", "web").unwrap().version, 1);
    assert_eq!(server.state().job_versions("default", "web").len(), 2);
    server.shutdown().await;
}
