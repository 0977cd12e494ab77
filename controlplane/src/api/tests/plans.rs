//! `POST /v1/job/:id/plan` and `GET /v1/job/:id/versions?diffs=true` over HTTP.

use super::*;

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

fn with_args(id: &str, args: &[&str]) -> serde_json::Value {
    let mut body = job_body(id);
    body["Job"]["TaskGroups"][0]["Tasks"][0]["Config"]["args"] = serde_json::json!(args);
    body
}

#[tokio::test]
async fn a_plan_answers_what_would_change_and_writes_nothing() {
    let (app, server) = app();
    node(&server).await;
    let before = server.state().latest_index();
    let mut request = job_body("web");
    request["Diff"] = true.into();
    let (status, _, body) = call(&app, "POST", "/v1/job/web/plan", Some(request)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let plan = json(&body);
    assert_eq!(plan["Annotations"]["DesiredTGUpdates"]["g"]["Place"], 2);
    assert_eq!(plan["Diff"]["Type"], "Added");
    assert_eq!(plan["Diff"]["TaskGroups"][0]["Updates"]["create"], 2);
    assert_eq!(plan["JobModifyIndex"], 0);
    assert_eq!(plan["FailedTGAllocs"], serde_json::json!({}));
    assert_eq!(
        server.state().latest_index(),
        before,
        "a plan is never proposed"
    );
    assert!(server.state().job("default", "web").is_none());

    let (status, _, body) = call(&app, "PUT", "/v1/jobs", Some(job_body("web"))).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let index = server
        .state()
        .job("default", "web")
        .unwrap()
        .job_modify_index;
    let mut request = with_args("web", &["61"]);
    request["Diff"] = true.into();
    let (_, _, body) = call(&app, "PUT", "/v1/job/web/plan", Some(request)).await;
    let plan = json(&body);
    assert_eq!(plan["JobModifyIndex"], index);
    assert_eq!(plan["Diff"]["Type"], "Edited");
    let task = &plan["Diff"]["TaskGroups"][0]["Tasks"][0];
    assert_eq!(task["Annotations"][0], "forces create/destroy update");

    // Without Diff, no diff; a job whose ID is not the URL's is refused.
    let (_, _, body) = call(&app, "POST", "/v1/job/web/plan", Some(job_body("web"))).await;
    assert!(json(&body)["Diff"].is_null());
    let (status, _, body) = call(&app, "POST", "/v1/job/other/plan", Some(job_body("web"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("does not match"));
}

#[tokio::test]
async fn versions_with_diffs_compare_each_version_with_the_one_before() {
    let (app, server) = app();
    node(&server).await;
    for args in [["1"], ["2"]] {
        let (status, _, body) = call(&app, "PUT", "/v1/jobs", Some(with_args("web", &args))).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    }
    let (_, _, body) = call(&app, "GET", "/v1/job/web/versions", None).await;
    assert!(json(&body)["Diffs"].is_null());
    let (status, _, body) = call(&app, "GET", "/v1/job/web/versions?diffs=true", None).await;
    assert_eq!(status, StatusCode::OK);
    let answer = json(&body);
    assert_eq!(answer["Versions"].as_array().unwrap().len(), 2);
    let diffs = answer["Diffs"].as_array().unwrap();
    assert_eq!(diffs.len(), 1, "the oldest version has nothing before it");
    let config = &diffs[0]["TaskGroups"][0]["Tasks"][0]["Objects"][0];
    assert_eq!(config["Name"], "Config");
    let field = config["Fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["Name"] == "args[0]")
        .unwrap();
    assert_eq!((&field["Old"], &field["New"]), (&"1".into(), &"2".into()));

    let (status, _, body) = call(
        &app,
        "GET",
        "/v1/job/web/versions?diffs=true&diff_version=9",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("version 9 not found"));
    let (_, _, body) = call(
        &app,
        "GET",
        "/v1/job/web/versions?diffs=true&diff_version=0",
        None,
    )
    .await;
    let diffs = json(&body)["Diffs"].as_array().unwrap().clone();
    assert_eq!(diffs.len(), 2, "every version compared with version 0");
    assert_eq!(diffs[1]["Type"], "None");
}
