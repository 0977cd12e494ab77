//! The cluster endpoints against a fake cluster layer that records what it was asked, and
//! the snapshot and autopilot endpoints against the real state.

use std::sync::Mutex;

use futures::future::BoxFuture;

use super::*;
use crate::server::ServerError;

/// Three servers; `b` is the leader. Removing refuses unknown peers and the last voter, as
/// the real layer must.
#[derive(Default)]
struct FakeCluster {
    asked: Mutex<Vec<String>>,
    voters: Mutex<Vec<(String, String)>>,
    lagging: bool,
}

impl FakeCluster {
    fn three() -> FakeCluster {
        FakeCluster {
            voters: Mutex::new(vec![
                ("id-a".into(), "10.0.0.1:4647".into()),
                ("id-b".into(), "10.0.0.2:4647".into()),
                ("id-c".into(), "10.0.0.3:4647".into()),
            ]),
            ..Default::default()
        }
    }
    fn note(&self, what: String) {
        self.asked.lock().unwrap().push(what);
    }
}

impl ClusterEndpoints for FakeCluster {
    fn local_member(&self) -> (String, String, String) {
        ("a".into(), "global".into(), "dc1".into())
    }
    fn members(&self) -> Vec<Member> {
        vec![Member {
            name: "a.global".into(),
            addr: "10.0.0.1".into(),
            port: 4648,
            tags: [
                ("role".to_string(), "nomad".to_string()),
                ("port".to_string(), "4647".to_string()),
            ]
            .into(),
            status: SerfStatus::Alive,
            protocol_min: 1,
            protocol_max: 5,
            protocol_cur: 2,
            delegate_min: 2,
            delegate_max: 5,
            delegate_cur: 4,
        }]
    }
    fn servers(&self) -> Vec<String> {
        vec!["10.0.0.2:4647".into()]
    }
    fn set_servers(&self, addresses: Vec<String>) -> BoxFuture<'_, Result<(), ServerError>> {
        self.note(format!("set_servers {}", addresses.join(",")));
        Box::pin(async { Ok(()) })
    }
    fn join(&self, addresses: Vec<String>) -> BoxFuture<'_, Result<usize, ServerError>> {
        self.note(format!("join {}", addresses.join(",")));
        Box::pin(async move {
            if addresses.iter().any(|a| a.starts_with("bad")) {
                return Err(ServerError::BadRequest(
                    "bad:1 refused the connection".into(),
                ));
            }
            Ok(addresses.len())
        })
    }
    fn force_leave(&self, node: String, prune: bool) -> BoxFuture<'_, Result<(), ServerError>> {
        self.note(format!("force_leave {node} {prune}"));
        Box::pin(async move {
            if node == "nobody" {
                return Err(ServerError::NotFound("no member named \"nobody\"".into()));
            }
            Ok(())
        })
    }
    fn raft_configuration(
        &self,
        stale: bool,
    ) -> BoxFuture<'_, Result<RaftConfiguration, ServerError>> {
        self.note(format!("raft_configuration {stale}"));
        let servers = self
            .voters
            .lock()
            .unwrap()
            .iter()
            .map(|(id, address)| RaftServer {
                id: id.clone(),
                node: format!("{}.global", &id[3..]),
                address: address.clone(),
                leader: id == "id-b",
                voter: true,
                raft_protocol: "3".into(),
            })
            .collect();
        Box::pin(async move { Ok(RaftConfiguration { index: 7, servers }) })
    }
    fn remove_peer(&self, peer: PeerRef) -> BoxFuture<'_, Result<(), ServerError>> {
        self.note(format!("remove_peer {peer}"));
        Box::pin(async move {
            let mut voters = self.voters.lock().unwrap();
            let pos = voters.iter().position(|(id, a)| match &peer {
                PeerRef::Id(i) => i == id,
                PeerRef::Address(x) => x == a,
            });
            let Some(pos) = pos else {
                return Err(ServerError::BadRequest(format!(
                    "{peer} was not found in the Raft configuration"
                )));
            };
            if voters.len() == 1 {
                return Err(ServerError::BadRequest(format!(
                    "{peer} is the last voter; removing it would leave the region without servers"
                )));
            }
            voters.remove(pos);
            Ok(())
        })
    }
    fn transfer_leadership(
        &self,
        peer: Option<PeerRef>,
    ) -> BoxFuture<'_, Result<String, ServerError>> {
        self.note(format!(
            "transfer_leadership {}",
            peer.map(|p| p.to_string()).unwrap_or_default()
        ));
        Box::pin(async { Ok("10.0.0.3:4647".to_string()) })
    }
    fn server_health(&self) -> BoxFuture<'_, Result<Vec<ServerHealthFacts>, ServerError>> {
        let lagging = self.lagging;
        Box::pin(async move {
            Ok(["a", "b", "c"]
                .iter()
                .map(|n| ServerHealthFacts {
                    id: format!("id-{n}"),
                    name: format!("{n}.global"),
                    address: format!("10.0.0.{}:4647", n.len()),
                    version: "0.1.0".into(),
                    serf_status: SerfStatus::Alive,
                    voter: true,
                    leader: *n == "b",
                    last_contact: Some(Duration::from_millis(if lagging && *n == "c" {
                        900
                    } else {
                        5
                    })),
                    last_term: 3,
                    last_index: 100,
                })
                .collect())
        })
    }
    fn current_term(&self) -> u64 {
        3
    }
}

fn fake() -> (Router, Arc<Server>, Arc<FakeCluster>) {
    let cluster = Arc::new(FakeCluster::three());
    let (app, server) = app_with(Some(cluster.clone()));
    (app, server, cluster)
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

#[tokio::test]
async fn members_servers_join_and_force_leave_speak_nomads_shapes() {
    let (app, _, cluster) = fake();
    let (status, _, body) = call(&app, "GET", "/v1/agent/members", None).await;
    assert_eq!(status, StatusCode::OK);
    let members = json(&body);
    assert_eq!(members["ServerName"], "a");
    assert_eq!(members["ServerRegion"], "global");
    assert_eq!(members["Members"][0]["Name"], "a.global");
    assert_eq!(members["Members"][0]["Port"], 4648);
    assert_eq!(members["Members"][0]["Status"], "alive");
    assert_eq!(members["Members"][0]["Tags"]["role"], "nomad");

    let (_, _, body) = call(&app, "GET", "/v1/agent/servers", None).await;
    assert_eq!(json(&body), serde_json::json!(["10.0.0.2:4647"]));
    let (status, _) = call_text(
        &app,
        "PUT",
        "/v1/agent/servers?address=1.2.3.4%3A4647&address=5.6.7.8:4647",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, text) = call_text(&app, "POST", "/v1/agent/servers", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("missing server address"), "{text}");

    let (status, _, body) = call(
        &app,
        "PUT",
        "/v1/agent/join?address=10.0.0.9:4648&address=10.0.0.8:4648",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json(&body),
        serde_json::json!({"num_joined": 2, "error": ""})
    );
    let (_, _, body) = call(&app, "PUT", "/v1/agent/join?address=bad:1", None).await;
    assert_eq!(json(&body)["num_joined"], 0);
    assert!(json(&body)["error"].as_str().unwrap().contains("refused"));
    let (status, _) = call_text(&app, "PUT", "/v1/agent/join", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, _) = call_text(
        &app,
        "PUT",
        "/v1/agent/force-leave?node=c.global&prune=true",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, text) = call_text(&app, "PUT", "/v1/agent/force-leave", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("missing node to force leave"));
    let (status, _) = call_text(&app, "PUT", "/v1/agent/force-leave?node=nobody", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        *cluster.asked.lock().unwrap(),
        [
            "set_servers 1.2.3.4:4647,5.6.7.8:4647",
            "join 10.0.0.9:4648,10.0.0.8:4648",
            "join bad:1",
            "force_leave c.global true",
            "force_leave nobody false",
        ]
    );
}

#[tokio::test]
async fn raft_peers_are_listed_removed_and_handed_leadership() {
    let (app, _, cluster) = fake();
    let (_, _, body) = call(&app, "GET", "/v1/operator/raft/configuration?stale", None).await;
    let config = json(&body);
    assert_eq!(config["Index"], 7);
    assert_eq!(config["Servers"][1]["ID"], "id-b");
    assert_eq!(config["Servers"][1]["Leader"], true);
    assert_eq!(config["Servers"][1]["RaftProtocol"], "3");
    let (_, _, body) = call(&app, "GET", "/v1/status/peers", None).await;
    assert_eq!(
        json(&body),
        serde_json::json!(["10.0.0.1:4647", "10.0.0.2:4647", "10.0.0.3:4647"])
    );
    let (_, _, body) = call(&app, "GET", "/v1/status/leader", None).await;
    assert_eq!(
        json(&body),
        "127.0.0.1:4647",
        "the leader comes from consensus"
    );

    for (uri, want) in [
        ("/v1/operator/raft/peer", "Must specify"),
        (
            "/v1/operator/raft/peer?id=x&address=y",
            "either id or address",
        ),
        ("/v1/operator/raft/peer?id=", "id must be non-empty"),
        (
            "/v1/operator/raft/peer?id=id-zz",
            "was not found in the Raft configuration",
        ),
    ] {
        let (status, text) = call_text(&app, "DELETE", uri, "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(text.contains(want), "{uri}: {text}");
    }
    let (status, _) = call_text(&app, "DELETE", "/v1/operator/raft/peer?id=id-a", "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call_text(
        &app,
        "DELETE",
        "/v1/operator/raft/peer?address=10.0.0.3:4647",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, text) = call_text(&app, "DELETE", "/v1/operator/raft/peer?id=id-b", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("last voter"), "{text}");

    let (status, text) = call_text(
        &app,
        "PUT",
        "/v1/operator/raft/transfer-leadership?id=a&id=b",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("only one id"));
    let (status, _, body) = call(
        &app,
        "POST",
        "/v1/operator/raft/transfer-leadership?id=id-c",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["To"]["Address"], "10.0.0.3:4647");
    assert!(cluster
        .asked
        .lock()
        .unwrap()
        .contains(&"transfer_leadership id \"id-c\"".to_string()));
}

#[tokio::test]
async fn without_a_cluster_layer_the_cluster_endpoints_answer_501() {
    let (app, _) = app();
    for (method, uri) in [
        ("GET", "/v1/agent/members"),
        ("GET", "/v1/operator/raft/configuration"),
        ("GET", "/v1/operator/autopilot/health"),
        ("PUT", "/v1/agent/join?address=x:1"),
    ] {
        let (status, text) = call_text(&app, method, uri, "").await;
        assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{uri}");
        assert!(text.contains("ask a server agent"), "{text}");
    }
    // Single-server facts still answer where they suffice.
    let (_, _, body) = call(&app, "GET", "/v1/status/peers", None).await;
    assert_eq!(json(&body), serde_json::json!(["127.0.0.1:4647"]));
    let (_, _, body) = call(&app, "GET", "/v1/regions", None).await;
    assert_eq!(json(&body), serde_json::json!(["global"]));
}

#[tokio::test]
async fn autopilot_configuration_with_cas_and_health() {
    let (app, _, _) = fake();
    let (_, headers, body) = call(&app, "GET", "/v1/operator/autopilot/configuration", None).await;
    let config = json(&body);
    assert_eq!(config["CleanupDeadServers"], true);
    assert_eq!(config["LastContactThreshold"], "200ms");
    assert_eq!(config["ServerStabilizationTime"], "10s");
    assert!(headers.contains_key("X-Nomad-Index"));

    let mut update = config.clone();
    update["MaxTrailingLogs"] = 500.into();
    update["LastContactThreshold"] = "1s".into();
    let (status, _, body) = call(
        &app,
        "PUT",
        "/v1/operator/autopilot/configuration",
        Some(update.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body), true);
    let (_, _, body) = call(&app, "GET", "/v1/operator/autopilot/configuration", None).await;
    let now = json(&body);
    assert_eq!(now["MaxTrailingLogs"], 500);
    assert_eq!(now["LastContactThreshold"], "1s");
    let index = now["ModifyIndex"].as_u64().unwrap();
    let (_, _, body) = call(
        &app,
        "PUT",
        &format!("/v1/operator/autopilot/configuration?cas={}", index - 1),
        Some(update.clone()),
    )
    .await;
    assert_eq!(json(&body), false, "a stale cas is refused");
    let (_, _, body) = call(
        &app,
        "PUT",
        &format!("/v1/operator/autopilot/configuration?cas={index}"),
        Some(update.clone()),
    )
    .await;
    assert_eq!(json(&body), true);
    let (status, text) = call_text(
        &app,
        "PUT",
        "/v1/operator/autopilot/configuration?cas=x",
        "{}",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("cas"), "{text}");
    update["LastContactThreshold"] = "0s".into();
    let (status, _, _) = call(
        &app,
        "PUT",
        "/v1/operator/autopilot/configuration",
        Some(update),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, _, body) = call(&app, "GET", "/v1/operator/autopilot/health", None).await;
    assert_eq!(status, StatusCode::OK);
    let health = json(&body);
    assert_eq!(health["Healthy"], true);
    assert_eq!(health["FailureTolerance"], 1);
    assert_eq!(health["Leader"], "id-b");
    assert_eq!(health["Servers"][0]["SerfStatus"], "alive");
    assert_eq!(health["Servers"][0]["LastContact"], "5ms");

    let lagging = Arc::new(FakeCluster {
        lagging: true,
        ..FakeCluster::three()
    });
    let (app, _) = app_with(Some(lagging));
    let (status, _, body) = call(&app, "GET", "/v1/operator/autopilot/health", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(json(&body)["Servers"][2]["Healthy"], false);
    assert_eq!(json(&body)["FailureTolerance"], 0);
}

#[tokio::test]
async fn a_snapshot_saved_restores_onto_a_fresh_cluster_and_damage_changes_nothing() {
    let (app, server, _) = fake();
    node(&server).await;
    let (status, _, body) = call(&app, "PUT", "/v1/jobs", Some(job_body("web"))).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    // Let the scheduler place the allocations.
    for _ in 0..100 {
        if server.state().allocs().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, headers, archive) = call(&app, "GET", "/v1/operator/snapshot", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/octet-stream");
    let saved = crate::state::archive::read_archive(&archive).unwrap();
    assert_eq!(saved.meta.term, 3);

    let (fresh_app, fresh, _) = fake();
    let before = fresh.state().to_snapshot();
    let mut corrupt = archive.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0xff;
    for (what, bytes, want) in [
        ("corrupt", corrupt, "checksum mismatch"),
        (
            "truncated",
            archive[..archive.len() - 10].to_vec(),
            "truncated",
        ),
        (
            "foreign",
            b"PK\x03\x04 not a snapshot at all, just some bytes".to_vec(),
            "not a noded snapshot",
        ),
    ] {
        let (status, _, body) = send(
            &fresh_app,
            "PUT",
            "/v1/operator/snapshot",
            axum::body::Body::from(bytes),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains(want), "{what}: {text}");
        assert_eq!(
            fresh.state().to_snapshot(),
            before,
            "{what}: the state is unchanged"
        );
    }

    let (status, _, body) = send(
        &fresh_app,
        "PUT",
        "/v1/operator/snapshot",
        axum::body::Body::from(archive),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let source = server.state();
    let restored = fresh.state();
    let ids = |s: &crate::state::State| {
        (
            s.jobs(None)
                .iter()
                .map(|j| j.id.clone())
                .collect::<Vec<_>>(),
            s.allocs().iter().map(|a| a.id.clone()).collect::<Vec<_>>(),
            s.nodes().iter().map(|n| n.id.clone()).collect::<Vec<_>>(),
            s.evals().iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(ids(&restored), ids(&source));
    assert_eq!(restored.allocs().len(), 2);
    let (_, _, body) = call(&fresh_app, "GET", "/v1/job/web/allocations", None).await;
    assert_eq!(json(&body).as_array().unwrap().len(), 2);
}
