//! The service catalog endpoints over HTTP, against a leader on the in-process log, with
//! registrations written through `Command::ServiceRegistrationUpsert` (as a client does).

use super::*;

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

/// Only `default` exists until namespaces come: the catalog's namespace handling is
/// tested through it, `*`, and the 404 for any other.
fn namespaced_job(id: &str, namespace: &str) -> serde_json::Value {
    let mut body = job_body(id);
    body["Job"]["Namespace"] = namespace.into();
    body
}

/// Registers `job` in `namespace` and waits for its two allocations to be placed.
async fn placed(app: &Router, job: &str, namespace: &str) -> Vec<Allocation> {
    let (status, _, body) =
        call(app, "PUT", "/v1/jobs", Some(namespaced_job(job, namespace))).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    for _ in 0..200 {
        let uri = format!("/v1/job/{job}/allocations?namespace={namespace}");
        let (_, _, body) = call(app, "GET", &uri, None).await;
        let stubs = json(&body);
        if stubs.as_array().map(Vec::len) == Some(2) {
            let ids: Vec<String> = stubs
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["ID"].as_str().unwrap().to_string())
                .collect();
            let (_, _, first) = call(app, "GET", &format!("/v1/allocation/{}", ids[0]), None).await;
            let (_, _, second) =
                call(app, "GET", &format!("/v1/allocation/{}", ids[1]), None).await;
            return vec![
                serde_json::from_slice(&first).unwrap(),
                serde_json::from_slice(&second).unwrap(),
            ];
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {job} was never placed");
}

fn registration(
    alloc: &Allocation,
    service: &str,
    port: u16,
    tags: &[&str],
    status: HealthStatus,
) -> ServiceRegistration {
    ServiceRegistration {
        id: ServiceRegistration::make_id(&alloc.id, "t", service, "http"),
        service_name: service.into(),
        namespace: alloc.namespace.clone(),
        node_id: alloc.node_id.clone(),
        datacenter: "dc1".into(),
        job_id: alloc.job_id.clone(),
        alloc_id: alloc.id.clone(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        address: "10.0.0.1".into(),
        port,
        status,
        ..Default::default()
    }
}

/// The ids of a list of registrations, in order.
fn ids(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|r| r["ID"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_catalog_is_listed_read_chosen_filtered_and_deleted_over_http() {
    let (app, server) = app();
    node(&server).await;
    let web = placed(&app, "web", "default").await;
    let api = placed(&app, "api", "default").await;

    // Nothing registered yet: empty lists, not errors.
    let (status, headers, body) = call(&app, "GET", "/v1/services", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body), serde_json::json!([]));
    assert!(headers.contains_key("x-nomad-index"));
    let (status, _, body) = call(&app, "GET", "/v1/service/web", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body), serde_json::json!([]));

    let index = server
        .upsert_services(vec![
            registration(&web[0], "web", 8080, &["v1", "blue"], HealthStatus::Passing),
            registration(&web[1], "web", 8081, &["v2"], HealthStatus::Critical),
            registration(&api[0], "api", 9090, &[], HealthStatus::Warning),
            registration(&api[1], "web", 9091, &["prod"], HealthStatus::Passing),
        ])
        .await
        .unwrap();
    assert!(index > 0);

    // /v1/services: the request's namespace, or every one with `*`; services in order of
    // name, each with the union of its instances' tags.
    let (_, headers, body) = call(&app, "GET", "/v1/services", None).await;
    let listed = json(&body);
    assert_eq!(
        listed,
        serde_json::json!([{"Namespace": "default", "Services": [
            {"ServiceName": "api", "Tags": []},
            {"ServiceName": "web", "Tags": ["blue", "prod", "v1", "v2"]}]}])
    );
    let listed_at: u64 = headers["x-nomad-index"].to_str().unwrap().parse().unwrap();
    assert_eq!(listed_at, index);
    let (_, _, body) = call(&app, "GET", "/v1/services?namespace=*", None).await;
    assert_eq!(json(&body), listed);
    let (_, _, body) = call(&app, "GET", "/v1/services?prefix=a", None).await;
    assert_eq!(json(&body)[0]["Services"].as_array().unwrap().len(), 1);
    // A filter selects instances before they are grouped.
    let uri = "/v1/services?namespace=*&filter=Tags%20contains%20%22v2%22";
    let (_, _, body) = call(&app, "GET", uri, None).await;
    assert_eq!(
        json(&body),
        serde_json::json!([{"Namespace": "default", "Services": [
            {"ServiceName": "web", "Tags": ["v2"]}]}])
    );

    // /v1/service/:name: every instance, with its health.
    let (status, _, body) = call(&app, "GET", "/v1/service/web", None).await;
    assert_eq!(status, StatusCode::OK);
    let instances = json(&body);
    assert_eq!(instances.as_array().unwrap().len(), 3, "{instances}");
    let mut ports: Vec<u64> = instances
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Port"].as_u64().unwrap())
        .collect();
    ports.sort();
    assert_eq!(ports, [8080, 8081, 9091]);
    for r in instances.as_array().unwrap() {
        assert_eq!(r["Namespace"], "default");
        assert!(r["Status"] == "passing" || r["Status"] == "critical", "{r}");
    }
    let (_, _, body) = call(&app, "GET", "/v1/service/web?namespace=*", None).await;
    assert_eq!(json(&body).as_array().unwrap().len(), 3);
    let (_, _, body) = call(&app, "GET", "/v1/service/api", None).await;
    assert_eq!(json(&body)[0]["Status"], "warning");

    // The health filter: passing only, or one status.
    for uri in [
        "/v1/service/web?passing",
        "/v1/service/web?passing=true",
        "/v1/service/web?status=passing",
    ] {
        let (status, _, body) = call(&app, "GET", uri, None).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        let list = json(&body);
        let mut ports: Vec<u64> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Port"].as_u64().unwrap())
            .collect();
        ports.sort();
        assert_eq!(ports, [8080, 9091], "{uri}: {list}");
    }
    let (_, _, body) = call(&app, "GET", "/v1/service/web?status=critical", None).await;
    assert_eq!(json(&body)[0]["Port"], 8081);
    let (_, _, body) = call(&app, "GET", "/v1/service/web?passing=false", None).await;
    assert_eq!(json(&body).as_array().unwrap().len(), 3);
    let (_, _, body) = call(&app, "GET", "/v1/service/api?passing", None).await;
    assert_eq!(json(&body), serde_json::json!([]));
    let (_, _, body) = call(&app, "GET", "/v1/service/api?status=warning", None).await;
    assert_eq!(json(&body).as_array().unwrap().len(), 1);
    let (_, _, body) = call(
        &app,
        "GET",
        "/v1/service/web?filter=Status%20%3D%3D%20%22critical%22",
        None,
    )
    .await;
    assert_eq!(json(&body)[0]["Port"], 8081);

    // ?choose: Nomad's rendezvous hashing, the same answer for the same key.
    let (status, _, body) = call(&app, "GET", "/v1/service/web?choose=1|abc", None).await;
    assert_eq!(status, StatusCode::OK);
    let chosen = ids(&json(&body));
    assert_eq!(chosen.len(), 1);
    let stored: Vec<Arc<ServiceRegistration>> = server
        .state()
        .service_registrations_by_name("default", "web");
    let want = Choose::parse("1|abc").unwrap().apply(stored);
    assert_eq!(chosen, vec![want[0].id.clone()]);
    let (_, _, again) = call(&app, "GET", "/v1/service/web?choose=1|abc", None).await;
    assert_eq!(ids(&json(&again)), chosen);
    let (_, _, body) = call(&app, "GET", "/v1/service/web?choose=5|abc", None).await;
    assert_eq!(ids(&json(&body)).len(), 3);

    // Paging, with Nomad's namespace.id tokens.
    let (_, headers, body) = call(&app, "GET", "/v1/service/web?per_page=1", None).await;
    let first = ids(&json(&body));
    assert_eq!(first.len(), 1);
    let token = headers["x-nomad-nexttoken"].to_str().unwrap().to_string();
    assert!(token.starts_with("default."), "{token}");
    let uri = format!("/v1/service/web?per_page=1&next_token={token}");
    let (_, headers, body) = call(&app, "GET", &uri, None).await;
    let second = ids(&json(&body));
    assert_eq!(second.len(), 1);
    assert_ne!(first, second);
    assert!(
        headers.contains_key("x-nomad-nexttoken"),
        "a third page follows"
    );

    // By allocation and by job.
    let uri = format!("/v1/allocation/{}/services", web[0].id);
    let (status, _, body) = call(&app, "GET", &uri, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)[0]["Port"], 8080);
    let (_, _, body) = call(&app, "GET", "/v1/job/web/services", None).await;
    assert_eq!(ids(&json(&body)).len(), 2);
    let (_, _, body) = call(&app, "GET", "/v1/job/api/services", None).await;
    assert_eq!(ids(&json(&body)).len(), 2);

    // Delete one instance: it must be named under its service and namespace.
    let victim = ServiceRegistration::make_id(&web[1].id, "t", "web", "http");
    let uri = format!("/v1/service/api/{victim}");
    let (status, _, body) = call(&app, "DELETE", &uri, None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let uri = format!("/v1/service/web/{victim}?namespace=prod");
    let (status, text) = call_text(&app, "DELETE", &uri, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(text.contains("namespace \"prod\" not found"), "{text}");
    let uri = format!("/v1/service/web/{victim}");
    let (status, headers, body) = call(&app, "DELETE", &uri, None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let deleted_at: u64 = headers["x-nomad-index"].to_str().unwrap().parse().unwrap();
    assert!(deleted_at > index);
    assert!(server.state().service_registration(&victim).is_none());
    let (_, _, body) = call(&app, "GET", "/v1/service/web?status=critical", None).await;
    assert_eq!(json(&body), serde_json::json!([]));
    let (status, _, _) = call(&app, "DELETE", &uri, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleting twice");
    server.shutdown().await;
}

#[tokio::test]
async fn catalog_mistakes_are_400_or_404_in_nomads_words() {
    let (app, server) = app();
    for (uri, want, needle) in [
        (
            "/v1/service/web?choose=x",
            StatusCode::BAD_REQUEST,
            "Parameter for choose must be in form '<number>|<key>'",
        ),
        (
            "/v1/service/web?choose=2|",
            StatusCode::BAD_REQUEST,
            "<number>|<key>",
        ),
        (
            "/v1/service/web?choose=99999999|k",
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            "/v1/service/web?status=sick",
            StatusCode::BAD_REQUEST,
            "passing, warning or critical",
        ),
        (
            "/v1/service/web?passing=true&status=critical",
            StatusCode::BAD_REQUEST,
            "contradict",
        ),
        (
            "/v1/service/web?passing=maybe",
            StatusCode::BAD_REQUEST,
            "true or false",
        ),
        (
            "/v1/allocation/00000000-0000-0000-0000-000000000000/services",
            StatusCode::NOT_FOUND,
            "not found",
        ),
        (
            "/v1/job/nope/services",
            StatusCode::NOT_FOUND,
            "job \"nope\" not found",
        ),
        (
            "/v1/services?namespace=prod",
            StatusCode::NOT_FOUND,
            "namespace \"prod\" not found",
        ),
        (
            "/v1/service/web?namespace=prod",
            StatusCode::NOT_FOUND,
            "namespace \"prod\" not found",
        ),
        (
            "/v1/job/web/services?namespace=prod",
            StatusCode::NOT_FOUND,
            "namespace \"prod\" not found",
        ),
        (
            "/v1/services?filter=Tags%20%3D%3D",
            StatusCode::BAD_REQUEST,
            "filter",
        ),
    ] {
        let (status, text) = call_text(&app, "GET", uri, "").await;
        assert_eq!(status, want, "{uri}: {text}");
        assert!(text.contains(needle), "{uri}: {text}");
    }
    let long = "a".repeat(MAX_SERVICE_NAME_LEN + 1);
    let (status, text) = call_text(&app, "GET", &format!("/v1/service/{long}"), "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("at most"), "{text}");
    let (status, text) = call_text(&app, "DELETE", "/v1/service/web/nope", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(text.contains("not found"), "{text}");
    // Reads only; a write method on a read route is a 405 naming what is allowed.
    let (status, text) = call_text(&app, "PUT", "/v1/services", "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_blocking_catalog_query_wakes_on_a_registration() {
    let (app, server) = app();
    node(&server).await;
    let web = placed(&app, "web", "default").await;
    let (_, headers, _) = call(&app, "GET", "/v1/service/web", None).await;
    let index: u64 = headers["x-nomad-index"].to_str().unwrap().parse().unwrap();

    let waiting = {
        let app = app.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let uri = format!("/v1/service/web?index={index}&wait=30s");
            let (status, headers, body) = call(&app, "GET", &uri, None).await;
            (status, headers, body, started.elapsed())
        })
    };
    let list_waiting = {
        let app = app.clone();
        tokio::spawn(async move {
            let uri = format!("/v1/services?index={index}&wait=30s");
            call(&app, "GET", &uri, None).await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the query did not block");
    let written = server
        .upsert_services(vec![registration(
            &web[0],
            "web",
            8080,
            &[],
            HealthStatus::Passing,
        )])
        .await
        .unwrap();
    let (status, headers, body, took) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(took < Duration::from_secs(10), "woke after {took:?}");
    assert_eq!(json(&body)[0]["Port"], 8080);
    let woke_at: u64 = headers["x-nomad-index"].to_str().unwrap().parse().unwrap();
    assert_eq!(woke_at, written);
    let (_, _, body) = list_waiting.await.unwrap();
    assert_eq!(json(&body)[0]["Services"][0]["ServiceName"], "web");

    // A health change wakes it too.
    let waiting = {
        let app = app.clone();
        tokio::spawn(async move {
            let uri = format!("/v1/service/web?index={written}&wait=30s&passing");
            call(&app, "GET", &uri, None).await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    server
        .upsert_services(vec![registration(
            &web[0],
            "web",
            8080,
            &[],
            HealthStatus::Critical,
        )])
        .await
        .unwrap();
    let (_, _, body) = waiting.await.unwrap();
    assert_eq!(json(&body), serde_json::json!([]));
    server.shutdown().await;
}

#[tokio::test]
async fn a_consul_service_is_accepted_with_one_warning_at_submit() {
    let (app, server) = app();
    let mut body = job_body("shop");
    body["Job"]["TaskGroups"][0]["Networks"] =
        serde_json::json!([{"DynamicPorts": [{"Label": "http"}]}]);
    body["Job"]["TaskGroups"][0]["Services"] = serde_json::json!([
        {"Name": "web", "PortLabel": "http"},
        {"Name": "admin", "PortLabel": "http", "Provider": "consul"},
        {"Name": "native", "PortLabel": "http", "Provider": "nomad"},
    ]);
    let (status, _, reply) = call(&app, "PUT", "/v1/jobs", Some(body.clone())).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply)
    );
    let warnings = json(&reply)["Warnings"].as_str().unwrap().to_string();
    let consul: Vec<&str> = warnings
        .lines()
        .filter(|l| l.contains("provider = \"consul\""))
        .collect();
    assert_eq!(consul.len(), 1, "{warnings}");
    assert!(consul[0].contains("\"web\", \"admin\""), "{warnings}");
    assert!(!consul[0].contains("\"native\""), "{warnings}");
    // An http check without a path is refused, naming the field.
    body["Job"]["TaskGroups"][0]["Services"][0]["Checks"] = serde_json::json!([{"Type": "http", "Interval": 10_000_000_000u64, "Timeout": 2_000_000_000u64}]);
    let (status, text) = call_text(
        &app,
        "PUT",
        "/v1/jobs",
        &serde_json::to_string(&body).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("check[0].path"), "{text}");
    server.shutdown().await;
}
