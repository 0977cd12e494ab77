//! The HTTP layer against a real server pipeline on an in-process log.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use super::*;
use crate::model::*;

struct NoAgent;

impl AgentInfo for NoAgent {
    fn self_info(&self) -> serde_json::Value {
        serde_json::json!({"config": {}})
    }
}

fn app() -> (Router, Arc<Server>) {
    app_with(None)
}

fn app_with(cluster: Option<Arc<dyn ClusterEndpoints>>) -> (Router, Arc<Server>) {
    let server = crate::server::testing::start_in_process();
    let ctx = ApiContext {
        region: server.config().region.clone(),
        server: Some(server.clone()),
        forwarder: None,
        client: None,
        agent: Arc::new(NoAgent),
        cluster,
    };
    (router(ctx), server)
}

/// Forwards to a server's router in-process, as the fabric does between agents.
struct ToRouter(Router);

impl super::ServerForwarder for ToRouter {
    fn forward(
        &self,
        request: super::ForwardedRequest,
    ) -> futures::future::BoxFuture<'_, Result<super::ForwardedResponse, String>> {
        Box::pin(async move { Ok(super::serve_forwarded(self.0.clone(), request).await) })
    }
}

#[tokio::test]
async fn a_client_only_agent_forwards_what_it_does_not_answer_and_answers_its_own() {
    let (server_app, _server) = app();
    let client_only = router(ApiContext {
        region: "global".into(),
        server: None,
        forwarder: Some(Arc::new(ToRouter(server_app.clone()))),
        client: None,
        agent: Arc::new(NoAgent),
        cluster: None,
    });
    // A write and a read, through the client agent, land on the server.
    let job = serde_json::json!({"Job": {"ID": "fwd", "Name": "fwd", "Type": "batch", "Datacenters": ["*"],
        "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": [{"Name": "t", "Driver": "raw_exec",
        "Config": {"command": "/bin/true"}}]}]}});
    let (status, _, body) = call(&client_only, "PUT", "/v1/jobs", Some(job)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let (status, headers, body) = call(&client_only, "GET", "/v1/job/fwd", None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(
        headers.contains_key("x-nomad-index"),
        "the server's headers come back"
    );
    let (status, _, _) = call(&server_app, "GET", "/v1/job/fwd", None).await;
    assert_eq!(status, StatusCode::OK);
    // The server's errors come back as they are.
    let (status, _, body) = call(&client_only, "GET", "/v1/job/nope", None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "{}",
        String::from_utf8_lossy(&body)
    );
    // The node's own endpoints are answered here: this agent runs no client.
    let (status, _, body) = call(&client_only, "GET", "/v1/client/fs/ls/abc", None).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(String::from_utf8_lossy(&body).contains("runs no client"));
}

#[tokio::test]
async fn a_client_only_agent_describes_itself_without_server_figures() {
    let client_only = router(ApiContext {
        region: "global".into(),
        server: None,
        forwarder: None,
        client: None,
        agent: Arc::new(NoAgent),
        cluster: None,
    });
    let (status, _, body) = call(&client_only, "GET", "/v1/agent/self", None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = call(&client_only, "GET", "/v1/agent/health", None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(health.get("server").is_none(), "{health}");
}

#[tokio::test]
async fn a_client_only_agent_without_servers_says_so() {
    let client_only = router(ApiContext {
        region: "global".into(),
        server: None,
        forwarder: None,
        client: None,
        agent: Arc::new(NoAgent),
        cluster: None,
    });
    let (status, _, body) = call(&client_only, "GET", "/v1/jobs", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(String::from_utf8_lossy(&body).contains("server_join"));
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let body = body
        .map(|b| Body::from(serde_json::to_vec(&b).unwrap()))
        .unwrap_or_else(Body::empty);
    send(app, method, uri, body).await
}

/// A request with a body given as text (not JSON, empty, or laid out by hand): the status
/// and the answer's text.
async fn call_text(app: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, String) {
    let (status, _, bytes) = send(app, method, uri, Body::from(body.to_string())).await;
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    body: Body,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let response = app
        .clone()
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(body)
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, bytes.to_vec())
}

async fn node(server: &Server) {
    let node = Node {
        id: "11111111-2222-3333-4444-555555555555".into(),
        name: "n1".into(),
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
    };
    server.register_node(node).await.unwrap();
}

fn job_body(id: &str) -> serde_json::Value {
    serde_json::json!({"Job": {
        "ID": id, "Type": "service", "Datacenters": ["dc1"],
        "TaskGroups": [{"Name": "g", "Count": 2, "Tasks": [{
            "Name": "t", "Driver": "exec", "Config": {"command": "/bin/sleep", "args": ["60"]},
            "Resources": {"CPU": 100, "MemoryMB": 64}
        }]}]
    }})
}

#[tokio::test]
async fn register_list_read_and_stop_a_job() {
    let (app, server) = app();
    node(&server).await;
    let (status, headers, body) = call(&app, "PUT", "/v1/jobs", Some(job_body("web"))).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(headers.contains_key("X-Nomad-Index"));
    let reg: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(reg["EvalID"].as_str().unwrap().len() == 36);
    assert_eq!(reg["Warnings"], "", "a plain job draws no warning");
    assert!(reg["JobModifyIndex"].as_u64().unwrap() > 0);

    let (status, headers, body) = call(&app, "GET", "/v1/jobs", None).await;
    assert_eq!(status, StatusCode::OK);
    let index: u64 = headers["X-Nomad-Index"].to_str().unwrap().parse().unwrap();
    assert!(index >= 1);
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(list[0]["ID"], "web");
    assert_eq!(list[0]["Type"], "service");
    assert!(list[0]["JobSummary"]["Summary"]["g"].is_object());

    let (status, _, body) = call(&app, "GET", "/v1/job/web", None).await;
    assert_eq!(status, StatusCode::OK);
    let job: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        job["TaskGroups"][0]["Tasks"][0]["Config"]["command"],
        "/bin/sleep"
    );
    assert_eq!(
        job["TaskGroups"][0]["Tasks"][0]["KillTimeout"],
        5_000_000_000u64
    );

    // The allocations appear once the pipeline has run: a blocking query waits for them.
    let mut allocs = serde_json::Value::Null;
    for _ in 0..50 {
        let (_, _, body) = call(&app, "GET", "/v1/job/web/allocations?index=1&wait=2s", None).await;
        allocs = serde_json::from_slice(&body).unwrap();
        if allocs.as_array().map(Vec::len) == Some(2) {
            break;
        }
    }
    assert_eq!(allocs.as_array().unwrap().len(), 2, "{allocs}");
    let alloc_id = allocs[0]["ID"].as_str().unwrap().to_string();
    let (status, _, _) = call(&app, "GET", &format!("/v1/allocation/{alloc_id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, body) = call(
        &app,
        "GET",
        &format!("/v1/allocations?prefix={}", &alloc_id[..8]),
        None,
    )
    .await;
    let found: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(found
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["ID"] == alloc_id.as_str()));

    let (status, _, body) = call(&app, "DELETE", "/v1/job/web", None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let (_, _, body) = call(&app, "GET", "/v1/job/web", None).await;
    let job: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(job["Stop"], true);
    let (status, _, _) = call(&app, "DELETE", "/v1/job/web?purge=true", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = call(&app, "GET", "/v1/job/web", None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "{}",
        String::from_utf8_lossy(&body)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn user_mistakes_are_400_or_404_never_500_and_change_nothing() {
    let (app, server) = app();
    node(&server).await;
    let before = server.state().latest_index();
    let cases: Vec<(&str, &str, Option<serde_json::Value>, StatusCode, &str)> = vec![
        (
            "PUT",
            "/v1/jobs",
            Some(serde_json::json!({"NotAJob": 1})),
            StatusCode::BAD_REQUEST,
            "Job",
        ),
        (
            "PUT",
            "/v1/jobs",
            Some(
                serde_json::json!({"Job": {"ID": "x", "TaskGroups": [{"Name": "g", "Count": -1}]}}),
            ),
            StatusCode::BAD_REQUEST,
            "ount",
        ),
        (
            "PUT",
            "/v1/jobs",
            Some(
                serde_json::json!({"Job": {"ID": "x", "TaskGroups": [{"Name": "g", "Tasks": [{"Name": "t", "Driver": "exec", "Config": {"command": "/bin/true", "cap_add": ["superpowers"]}}]}]}}),
            ),
            StatusCode::BAD_REQUEST,
            "superpowers",
        ),
        (
            "PUT",
            "/v1/job/other",
            Some(job_body("web")),
            StatusCode::BAD_REQUEST,
            "does not match",
        ),
        (
            "GET",
            "/v1/job/nope",
            None,
            StatusCode::NOT_FOUND,
            "not found",
        ),
        (
            "GET",
            "/v1/evaluation/nope",
            None,
            StatusCode::NOT_FOUND,
            "not found",
        ),
        (
            "GET",
            "/v1/node/nope",
            None,
            StatusCode::NOT_FOUND,
            "not found",
        ),
        (
            "DELETE",
            "/v1/job/nope",
            None,
            StatusCode::NOT_FOUND,
            "not found",
        ),
        (
            "GET",
            "/v1/jobs?index=x",
            None,
            StatusCode::BAD_REQUEST,
            "index",
        ),
        (
            "GET",
            "/v1/jobs?wait=forever",
            None,
            StatusCode::BAD_REQUEST,
            "wait",
        ),
        (
            "GET",
            "/v1/nowhere",
            None,
            StatusCode::NOT_FOUND,
            "no such endpoint",
        ),
        (
            "GET",
            "/v1/client/fs/logs/x?task=t&type=stdout",
            None,
            StatusCode::BAD_REQUEST,
            "no client",
        ),
        (
            "GET",
            "/v1/client/fs/stream/x?path=alloc/logs/t.stdout.0",
            None,
            StatusCode::BAD_REQUEST,
            "no client",
        ),
        (
            "GET",
            "/v1/client/fs/stream/x",
            None,
            StatusCode::BAD_REQUEST,
            "file name",
        ),
    ];
    for (method, uri, body, want, needle) in cases {
        let (status, _, text) = call(&app, method, uri, body).await;
        let text = String::from_utf8_lossy(&text);
        assert_eq!(status, want, "{method} {uri}: {text}");
        assert!(
            text.contains(needle),
            "{method} {uri}: {text:?} should mention {needle:?}"
        );
    }
    // A body that is not JSON at all.
    let (status, _) = call_text(&app, "PUT", "/v1/jobs", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(server.state().latest_index(), before, "nothing was written");
    server.shutdown().await;
}

#[tokio::test]
async fn a_blocking_query_returns_at_the_wait_when_nothing_changes() {
    let (app, server) = app();
    node(&server).await;
    let (_, headers, _) = call(&app, "GET", "/v1/nodes", None).await;
    let index: u64 = headers["X-Nomad-Index"].to_str().unwrap().parse().unwrap();
    let started = std::time::Instant::now();
    let (status, headers, _) = call(
        &app,
        "GET",
        &format!("/v1/nodes?index={index}&wait=300ms"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        headers["X-Nomad-Index"].to_str().unwrap(),
        index.to_string()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_panicking_handler_is_answered_500() {
    async fn boom() -> &'static str {
        panic!("deliberate")
    }
    let app = Router::new()
        .route("/boom", axum::routing::get(boom))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_to_500,
        ));
    let response = app
        .oneshot(Request::builder().uri("/boom").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&body).contains("deliberate"));
}

#[tokio::test]
async fn parse_and_validate_endpoints_speak_nomads_shapes() {
    let (app, server) = app();
    let hcl = "variable \"n\" {\n  type = number\n}\njob \"p\" {\n  group \"g\" {\n    count = var.n\n    task \"t\" {\n      driver = \"exec\"\n      config {\n        command = \"/bin/true\"\n      }\n    }\n  }\n}\n";
    let (status, _, body) = call(
        &app,
        "POST",
        "/v1/jobs/parse",
        Some(serde_json::json!({"JobHCL": hcl, "Variables": "n = 3\n", "Canonicalize": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let job: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(job["ID"], "p");
    assert_eq!(job["TaskGroups"][0]["Count"], 3);
    // file() is refused on the server.
    let (status, _, body) = call(&app, "POST", "/v1/jobs/parse", Some(serde_json::json!({"JobHCL": "job \"f\" {\n  meta {\n    k = file(\"/etc/hostname\")\n  }\n}\n"}))).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, _, body) = call(
        &app,
        "POST",
        "/v1/jobs/parse",
        Some(serde_json::json!({"JobHCL": "job {"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        String::from_utf8_lossy(&body).contains("JobHCL:1:"),
        "{}",
        String::from_utf8_lossy(&body)
    );

    let (status, _, body) = call(&app, "POST", "/v1/validate/job", Some(job_body("ok"))).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["ValidationErrors"], serde_json::json!([]));
    assert_eq!(v["DriverConfigValidated"], true);
    let bad = serde_json::json!({"Job": {"ID": "bad id", "TaskGroups": [{"Name": "g", "Count": -2, "Tasks": [{"Name": "t", "Driver": "exec", "Config": {"args": []}}]}]}});
    let (status, _, body) = call(&app, "POST", "/v1/validate/job", Some(bad)).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let errors = v["ValidationErrors"].as_array().unwrap();
    assert!(errors.len() >= 2, "{v}");
    assert!(!v["Error"].as_str().unwrap().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn every_route_declares_what_it_requires() {
    let (app, server) = app();
    let routes = declared_routes();
    assert!(routes.len() >= 35, "{} routes", routes.len());
    for route in &routes {
        let uri = route
            .path
            .replace("{id}", "x")
            .replace("{alloc}", "x")
            .replace("{name}", "x");
        let response = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(route.method.clone())
                    .uri(&uri)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            response.extensions().get::<Requires>(),
            Some(&route.requires),
            "{} {} ({}) did not pass through its declaration",
            route.method,
            route.path,
            response.status()
        );
        assert_ne!(
            response.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{} {}",
            route.method,
            route.path
        );
    }
    // Nothing undeclared is served: an unknown path and an undeclared method get no
    // declaration, and never reach a handler.
    for (method, uri, want) in [
        ("GET", "/v1/nowhere", StatusCode::NOT_FOUND),
        ("PATCH", "/v1/jobs", StatusCode::METHOD_NOT_ALLOWED),
        ("DELETE", "/v1/nodes", StatusCode::METHOD_NOT_ALLOWED),
    ] {
        let response = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), want, "{method} {uri}");
        assert!(response.extensions().get::<Requires>().is_none());
    }
    // A route added to the router some other way than the table is refused before its
    // handler runs.
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handler = |ran: Arc<std::sync::atomic::AtomicBool>| {
        move || {
            ran.store(true, std::sync::atomic::Ordering::SeqCst);
            async { "served" }
        }
    };
    let sneaky = axum::Router::new()
        .route("/v1/sneaky", axum::routing::get(handler(ran.clone())))
        .route("/v1/jobs", axum::routing::delete(handler(ran.clone())))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(routes::Declared::new(&routes)),
            routes::only_declared,
        ));
    for (method, uri, want) in [
        ("GET", "/v1/sneaky", StatusCode::INTERNAL_SERVER_ERROR),
        ("DELETE", "/v1/jobs", StatusCode::METHOD_NOT_ALLOWED),
    ] {
        let response = sneaky
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), want, "{method} {uri}");
    }
    assert!(
        !ran.load(std::sync::atomic::Ordering::SeqCst),
        "a handler ran"
    );
    // The table speaks Nomad's words.
    let find = |method: &str, path: &str| {
        routes
            .iter()
            .find(|r| r.method.as_str() == method && r.path == path)
            .map(|r| r.requires.to_string())
    };
    assert_eq!(
        find("GET", "/v1/jobs").as_deref(),
        Some("namespace:list-jobs")
    );
    assert_eq!(
        find("POST", "/v1/jobs").as_deref(),
        Some("namespace:submit-job")
    );
    assert_eq!(find("GET", "/v1/nodes").as_deref(), Some("node:read"));
    assert_eq!(
        find("PUT", "/v1/node/{id}/drain").as_deref(),
        Some("node:write")
    );
    assert_eq!(
        find("DELETE", "/v1/node/pool/{name}").as_deref(),
        Some("node_pool:delete")
    );
    assert_eq!(find("PUT", "/v1/system/gc").as_deref(), Some("management"));
    assert_eq!(
        find("POST", "/v1/allocation/{id}/stop").as_deref(),
        Some("namespace:alloc-lifecycle")
    );
    assert_eq!(
        find("GET", "/v1/agent/health").as_deref(),
        Some("anonymous")
    );
    assert_eq!(
        find("GET", "/v1/client/allocation/{alloc}/exec").as_deref(),
        Some("namespace:alloc-exec")
    );
    assert_eq!(find("GET", "/v1/client/gc").as_deref(), Some("node:write"));
    assert_eq!(
        find("GET", "/v1/service/{name}").as_deref(),
        Some("namespace:read-job")
    );
    assert_eq!(
        find("DELETE", "/v1/service/{name}/{id}").as_deref(),
        Some("namespace:submit-job")
    );
    assert_eq!(
        find("PUT", "/v1/client/allocation/{alloc}/gc").as_deref(),
        Some("namespace:submit-job")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bodies_are_decoded_as_nomads_go_decoder_does() {
    let (app, server) = app();
    node(&server).await;
    // Unknown fields (a newer Nomad's) are accepted and named in Warnings; null is unset.
    let mut body = job_body("newer");
    body["FutureOption"] = serde_json::json!({"X": 1});
    body["EnforceIndex"] = serde_json::Value::Null;
    body["Job"]["TaskGroups"][0]["Tasks"][0]["FutureTaskField"] = serde_json::json!(true);
    body["Job"]["TaskGroups"][0]["Tasks"][0]["Meta"] = serde_json::Value::Null;
    let (status, _, text) = call(&app, "PUT", "/v1/jobs", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&text));
    let reply: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let warnings = reply["Warnings"].as_str().unwrap();
    assert!(warnings.contains("\"FutureOption\""), "{warnings}");
    assert!(warnings.contains("FutureTaskField"), "{warnings}");
    // The operator endpoint takes a partial body with nulls too.
    let (status, _, text) = call(
        &app,
        "PUT",
        "/v1/operator/scheduler/configuration",
        Some(serde_json::json!({"SchedulerAlgorithm": null, "MemoryOversubscriptionEnabled": true, "PreemptionConfig": {"SystemSchedulerEnabled": true}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&text));
    let config = server.state().scheduler_config();
    assert!(config.memory_oversubscription_enabled);
    assert_eq!(config.scheduler_algorithm, "binpack");
    server.shutdown().await;
}

#[tokio::test]
async fn bad_options_and_bodies_name_what_is_wrong_and_change_nothing() {
    let (app, server) = app();
    node(&server).await;
    let before = server.state().latest_index();
    for (method, uri, body, needle) in [
        ("GET", "/v1/allocations?index=abc", "", "index=\"abc\""),
        (
            "GET",
            "/v1/evaluations?wait=forever",
            "",
            "wait=\"forever\"",
        ),
        ("GET", "/v1/nodes?reverse=maybe", "", "reverse=\"maybe\""),
        ("GET", "/v1/jobs?per_page=x", "", "per_page"),
        (
            "GET",
            "/v1/jobs?region=mars",
            "",
            "no path to region \"mars\"",
        ),
        ("PUT", "/v1/jobs", "{\n  \"Job\": {,", "line 2, column"),
        ("PUT", "/v1/jobs", "", "body is empty"),
        (
            "PUT",
            "/v1/operator/scheduler/configuration",
            "",
            "body is empty",
        ),
        (
            "PUT",
            "/v1/operator/scheduler/configuration",
            "{\"MemoryOversubscriptionEnabled\": \"yes\"}",
            "field MemoryOversubscriptionEnabled",
        ),
    ] {
        let (status, text) = call_text(&app, method, uri, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri}: {text}");
        assert!(
            text.contains(needle),
            "{method} {uri}: {text:?} should say {needle:?}"
        );
    }
    assert_eq!(server.state().latest_index(), before, "nothing was written");
    server.shutdown().await;
}

#[tokio::test]
async fn job_errors_point_into_the_body_as_sent() {
    let (app, server) = app();
    node(&server).await;
    let body = "{\n  \"EnforceIndex\": false,\n  \"Job\": {\n    \"ID\": \"p\",\n    \"TaskGroups\": [{\"Name\": \"g\", \"Count\": \"two\"}]\n  }\n}\n";
    let (status, text) = call_text(&app, "PUT", "/v1/jobs", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.contains("request body:5:43: TaskGroups[0].Count"),
        "{text}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn lists_page_with_nomads_tokens() {
    let (app, server) = app();
    node(&server).await;
    for id in ["a", "b", "c"] {
        let (status, _, text) = call(&app, "PUT", "/v1/jobs", Some(job_body(id))).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&text));
    }
    let (_, headers, body) = call(&app, "GET", "/v1/jobs?per_page=2", None).await;
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page.as_array().unwrap().len(), 2);
    assert_eq!(page[0]["ID"], "a");
    assert_eq!(headers["X-Nomad-NextToken"], "c");
    let (_, headers, body) = call(&app, "GET", "/v1/jobs?per_page=2&next_token=c", None).await;
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["ID"], "c");
    assert!(!headers.contains_key("X-Nomad-NextToken"));
    let (_, _, body) = call(&app, "GET", "/v1/jobs?reverse=True", None).await;
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page[0]["ID"], "c");
    server.shutdown().await;
}

#[tokio::test]
async fn list_endpoints_honour_nomads_stub_options() {
    let (app, server) = app();
    node(&server).await;
    let (_, _, body) = call(&app, "GET", "/v1/nodes", None).await;
    let plain: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(plain[0].get("NodeResources").is_none(), "{plain}");
    assert!(plain[0].get("Attributes").is_none(), "{plain}");
    let (status, _, body) = call(&app, "GET", "/v1/nodes?resources=true&os=1", None).await;
    assert_eq!(status, StatusCode::OK);
    let rich: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        rich[0]["NodeResources"]["Memory"]["MemoryMB"], 4096,
        "{rich}"
    );
    assert!(rich[0]["ReservedResources"].is_object(), "{rich}");
    assert!(rich[0]["Attributes"].get("os.name").is_some(), "{rich}");

    let (status, _, text) = call(&app, "PUT", "/v1/jobs", Some(job_body("web"))).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&text));
    let mut allocs = serde_json::Value::Null;
    for _ in 0..50 {
        let (_, _, body) = call(&app, "GET", "/v1/allocations?index=1&wait=2s", None).await;
        allocs = serde_json::from_slice(&body).unwrap();
        if allocs.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
    }
    assert!(allocs[0]["TaskStates"].is_object(), "{allocs}");
    assert!(allocs[0].get("AllocatedResources").is_none(), "{allocs}");
    let (_, _, body) = call(
        &app,
        "GET",
        "/v1/allocations?resources=true&task_states=false",
        None,
    )
    .await;
    let rich: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(rich[0]["TaskStates"].is_null(), "{rich}");
    assert!(
        rich[0]["AllocatedResources"]["Tasks"]["t"].is_object(),
        "{rich}"
    );
    let (status, _, text) = call(&app, "GET", "/v1/allocations?task_states=nope", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&text).contains("task_states"));
    server.shutdown().await;
}

mod cluster;
mod deployments;
mod evals;
mod periodic;
mod plans;
mod services;
mod versions;

const NODE: &str = "11111111-2222-3333-4444-555555555555";

#[tokio::test]
async fn an_operator_drains_marks_and_purges_a_node_over_http() {
    let (app, server) = app();
    node(&server).await;
    let read = |body: Vec<u8>| -> serde_json::Value { serde_json::from_slice(&body).unwrap() };

    let uri = format!("/v1/node/{NODE}/drain");
    let body = serde_json::json!({"DrainSpec": {"Deadline": 3_600_000_000_000i64, "IgnoreSystemJobs": true}, "Meta": {"message": "kernel"}});
    let (status, headers, text) = call(&app, "PUT", &uri, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&text));
    assert!(headers.contains_key("X-Nomad-Index"));
    assert!(read(text)["NodeModifyIndex"].as_u64().unwrap() > 0);
    let (_, _, text) = call(&app, "GET", &format!("/v1/node/{NODE}"), None).await;
    let n = read(text);
    assert_eq!(n["Drain"], true);
    assert_eq!(n["SchedulingEligibility"], "ineligible");
    assert_eq!(n["DrainStrategy"]["Deadline"], 3_600_000_000_000i64);
    assert_eq!(n["DrainStrategy"]["IgnoreSystemJobs"], true);
    assert_eq!(n["LastDrain"]["Status"], "draining");
    assert_eq!(n["LastDrain"]["Meta"]["message"], "kernel");
    assert_eq!(n["Events"][1]["Message"], "Node drain strategy set");

    // Eligible while draining: 400 with Nomad's words.
    let uri_e = format!("/v1/node/{NODE}/eligibility");
    let (status, _, text) = call(
        &app,
        "PUT",
        &uri_e,
        Some(serde_json::json!({"Eligibility": "eligible"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&text).contains("while it is draining"));

    // Disable (DrainSpec null) and mark eligible.
    let (status, _, _) = call(
        &app,
        "POST",
        &uri,
        Some(serde_json::json!({"DrainSpec": null, "MarkEligible": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, text) = call(&app, "GET", &format!("/v1/node/{NODE}"), None).await;
    let n = read(text);
    assert_eq!(n["Drain"], false);
    assert_eq!(n["SchedulingEligibility"], "eligible");
    assert_eq!(n["LastDrain"]["Status"], "canceled");

    let (status, _, _) = call(
        &app,
        "PUT",
        &uri_e,
        Some(serde_json::json!({"Eligibility": "ineligible"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, text) = call(&app, "PUT", &format!("/v1/node/{NODE}/evaluate"), None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&text));

    // Mistakes: unknown node, wrong body, wrong value.
    for (method, uri, body, want, needle) in [
        (
            "PUT",
            "/v1/node/abc/drain".to_string(),
            Some(serde_json::json!({"DrainSpec": null})),
            StatusCode::NOT_FOUND,
            "node \"abc\" not found",
        ),
        (
            "PUT",
            "/v1/node/abc/eligibility".to_string(),
            Some(serde_json::json!({"Eligibility": "eligible"})),
            StatusCode::NOT_FOUND,
            "node \"abc\" not found",
        ),
        (
            "PUT",
            "/v1/node/abc/purge".to_string(),
            None,
            StatusCode::NOT_FOUND,
            "node \"abc\" not found",
        ),
        (
            "PUT",
            "/v1/node/abc/evaluate".to_string(),
            None,
            StatusCode::NOT_FOUND,
            "node \"abc\" not found",
        ),
        (
            "PUT",
            uri.clone(),
            Some(serde_json::json!({"DrainSpec": {"Deadline": "soon"}})),
            StatusCode::BAD_REQUEST,
            "DrainSpec.Deadline",
        ),
        (
            "PUT",
            uri_e.clone(),
            Some(serde_json::json!({"Eligibility": "maybe"})),
            StatusCode::BAD_REQUEST,
            "invalid scheduling eligibility",
        ),
        (
            "PUT",
            uri_e.clone(),
            Some(serde_json::json!({})),
            StatusCode::BAD_REQUEST,
            "Eligibility",
        ),
        (
            "POST",
            "/v1/allocation/nope/stop".to_string(),
            None,
            StatusCode::NOT_FOUND,
            "allocation \"nope\" not found",
        ),
    ] {
        let (status, _, text) = call(&app, method, &uri, body).await;
        let text = String::from_utf8_lossy(&text);
        assert_eq!(status, want, "{method} {uri}: {text}");
        assert!(
            text.contains(needle),
            "{method} {uri}: {text:?} should mention {needle:?}"
        );
    }

    // Purge: the node is gone.
    let (status, _, text) = call(&app, "PUT", &format!("/v1/node/{NODE}/purge"), None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&text));
    let (status, _, _) = call(&app, "GET", &format!("/v1/node/{NODE}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(&app, "PUT", "/v1/system/gc", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(&app, "PUT", "/v1/system/reconcile/summaries", None).await;
    assert_eq!(status, StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test]
async fn node_pools_are_created_listed_and_deleted_over_http() {
    let (app, server) = app();
    node(&server).await;
    let read = |body: Vec<u8>| -> serde_json::Value { serde_json::from_slice(&body).unwrap() };
    let (_, _, text) = call(&app, "GET", "/v1/node/pools", None).await;
    let names: Vec<String> = read(text)
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["all", "default"]);
    let pool = serde_json::json!({"Name": "gpu", "Description": "GPUs", "Meta": {"team": "ml"},
        "SchedulerConfiguration": {"SchedulerAlgorithm": "spread"}});
    let (status, headers, text) = call(&app, "PUT", "/v1/node/pools", Some(pool)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&text));
    assert!(headers.contains_key("X-Nomad-Index"));
    let (status, _, text) = call(&app, "GET", "/v1/node/pool/gpu", None).await;
    assert_eq!(status, StatusCode::OK);
    let p = read(text);
    assert_eq!(p["Meta"]["team"], "ml");
    assert_eq!(p["SchedulerConfiguration"]["SchedulerAlgorithm"], "spread");
    let (_, _, text) = call(&app, "GET", "/v1/node/pool/default/nodes", None).await;
    assert_eq!(read(text)[0]["ID"], NODE);
    let (_, _, text) = call(&app, "GET", "/v1/node/pool/gpu/nodes", None).await;
    assert_eq!(read(text), serde_json::json!([]));
    let (status, _, text) = call(&app, "PUT", "/v1/jobs", Some(job_body("web"))).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&text));
    let (_, _, text) = call(&app, "GET", "/v1/node/pool/default/jobs", None).await;
    assert_eq!(read(text)[0]["ID"], "web");
    for (method, uri, body, want, needle) in [
        (
            "PUT",
            "/v1/node/pools",
            Some(serde_json::json!({"Name": "default"})),
            StatusCode::BAD_REQUEST,
            "modifying node pool \"default\" is not allowed",
        ),
        (
            "PUT",
            "/v1/node/pools",
            Some(serde_json::json!({"Name": "no spaces"})),
            StatusCode::BAD_REQUEST,
            "must match regex",
        ),
        (
            "PUT",
            "/v1/node/pools",
            Some(serde_json::json!({"Name": 7})),
            StatusCode::BAD_REQUEST,
            "Name",
        ),
        (
            "DELETE",
            "/v1/node/pool/all",
            None,
            StatusCode::BAD_REQUEST,
            "deleting node pool \"all\" is not allowed",
        ),
        (
            "DELETE",
            "/v1/node/pool/nope",
            None,
            StatusCode::NOT_FOUND,
            "node pool \"nope\" not found",
        ),
        (
            "GET",
            "/v1/node/pool/nope",
            None,
            StatusCode::NOT_FOUND,
            "node pool \"nope\" not found",
        ),
        (
            "GET",
            "/v1/node/pool/nope/nodes",
            None,
            StatusCode::NOT_FOUND,
            "not found",
        ),
    ] {
        let (status, _, text) = call(&app, method, uri, body).await;
        let text = String::from_utf8_lossy(&text);
        assert_eq!(status, want, "{method} {uri}: {text}");
        assert!(
            text.contains(needle),
            "{method} {uri}: {text:?} should mention {needle:?}"
        );
    }
    let (status, _, text) = call(&app, "DELETE", "/v1/node/pool/gpu", None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&text));
    let (status, _, _) = call(&app, "GET", "/v1/node/pool/gpu", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.shutdown().await;
}

#[tokio::test]
async fn stopping_an_allocation_migrates_it_with_an_evaluation() {
    let (app, server) = app();
    node(&server).await;
    let (status, _, _) = call(&app, "PUT", "/v1/jobs", Some(job_body("web"))).await;
    assert_eq!(status, StatusCode::OK);
    let mut allocs = serde_json::Value::Null;
    for _ in 0..50 {
        let (_, _, body) = call(&app, "GET", "/v1/job/web/allocations?index=1&wait=2s", None).await;
        allocs = serde_json::from_slice(&body).unwrap();
        if allocs.as_array().map(Vec::len) == Some(2) {
            break;
        }
    }
    let id = allocs[0]["ID"].as_str().unwrap().to_string();
    let (status, _, text) = call(
        &app,
        "POST",
        &format!("/v1/allocation/{id}/stop?no_shutdown_delay=true"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&text));
    let reply: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let eval_id = reply["EvalID"].as_str().unwrap();
    assert!(reply["Index"].as_u64().unwrap() > 0);
    let (_, _, text) = call(&app, "GET", &format!("/v1/allocation/{id}"), None).await;
    let alloc: serde_json::Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(alloc["DesiredTransition"]["Migrate"], true);
    assert_eq!(alloc["DesiredTransition"]["NoShutdownDelay"], true);
    let (status, _, text) = call(&app, "GET", &format!("/v1/evaluation/{eval_id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let eval: serde_json::Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(eval["TriggeredBy"], "alloc-stop");
    server.shutdown().await;
}
