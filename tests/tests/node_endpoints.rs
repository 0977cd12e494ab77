//! A node's own endpoints (logs, fs) reached from another host: the CLI, given a server-only
//! agent, finds the allocation's node and asks its agent directly (`HTTPAddr`); when that node
//! cannot be reached it asks the agent it was given, whose answer says to ask the node.

// Test helpers fail the test loudly; that is their job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::Duration;

use noded_tests::*;

/// Runs the CLI inside `host` against `agent` (`ip:port`) for at most `seconds`, then
/// interrupts it (for `-f`, which never ends by itself).
fn cli_for(host: &Host, agent: &str, seconds: u32, args: &[&str]) -> Output {
    let (agent, args) = (
        agent.to_string(),
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    );
    // The child inherits the network namespace of the thread that forks it.
    host.run(move || {
        Command::new("timeout")
            .args(["-s", "INT", &seconds.to_string()])
            .arg(binary("noded"))
            .args(&args)
            .env("NODED_ADDR", format!("http://{agent}"))
            .output()
            .expect("run noded CLI")
    })
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_given_a_server_reads_and_follows_a_tasks_output_on_the_node_that_runs_it() {
    if !require_root("multi-host: a server host and a client host") {
        return;
    }
    let lan = Lan::create("nodeapi");
    let (server_host, client_host) = (lan.host("s"), lan.host("c"));
    let pki = TempDir::create("pki");
    let server_tls = server_certificates(&pki, "global");
    let client_tls = client_certificate(&pki, "global");
    let server = ClusterAgent::start(
        &server_host,
        "s0",
        &server_config(server_host.ip(), "s0", "global", 1, &[], Some(&server_tls)),
    );
    let client = ClusterAgent::start(
        &client_host,
        "c1",
        &client_config(
            client_host.ip(),
            "c1",
            "global",
            &[format!("{}:4647", server_host.ip())],
            &client_tls,
        ),
    );
    server.wait_for("the client's node ready", Duration::from_secs(30), |s| {
        let nodes = s.get("/v1/nodes").ok()?.json();
        let ready = nodes.as_array()?.iter().any(|n| n["Status"] == "ready");
        ready.then_some(())
    });

    let job = serde_json::json!({"Job": {
        "ID": "talker", "Type": "service",
        "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": [{"Name": "t", "Driver": "raw_exec",
            "Config": {"command": "/bin/sh", "args": ["-c",
                "i=0; while true; do echo \"line $i\"; i=$((i+1)); sleep 0.2; done"]}}]}]
    }});
    let r = server
        .http("PUT", "/v1/jobs", Some(&serde_json::to_vec(&job).unwrap()))
        .unwrap();
    assert_eq!(r.status, 200, "job register: {}", r.text());
    let alloc_id = server.wait_for("the allocation running", Duration::from_secs(30), |s| {
        let allocs = s.get("/v1/job/talker/allocations").ok()?.json();
        allocs
            .as_array()?
            .iter()
            .find(|a| a["ClientStatus"] == "running")
            .and_then(|a| a["ID"].as_str().map(str::to_string))
    });
    // The node advertises the client host's address, which the CLI dials.
    let node_id = server
        .get(&format!("/v1/allocation/{alloc_id}"))
        .unwrap()
        .json()["NodeID"]
        .as_str()
        .unwrap()
        .to_string();
    let node = server.get(&format!("/v1/node/{node_id}")).unwrap().json();
    assert_eq!(node["HTTPAddr"], client.http_addr(), "{node}");
    // Let a few lines be written.
    std::thread::sleep(Duration::from_secs(1));

    // The server itself has no client: asked directly, it says so.
    let r = server
        .get(&format!(
            "/v1/client/fs/stream/{alloc_id}?path=alloc/logs/t.stdout.0&follow=false"
        ))
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("ask the agent on the node"),
        "{}",
        r.text()
    );

    // The stream endpoint on the node, not followed and plain: the file from its start.
    let r = client
        .get(&format!(
            "/v1/client/fs/stream/{alloc_id}?path=alloc/logs/t.stdout.0&follow=false&plain=true"
        ))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().starts_with("line 0\nline 1\n"), "{:?}", r.text());
    // Framed: Nomad's StreamFrame objects.
    let r = client
        .get(&format!(
            "/v1/client/fs/stream/{alloc_id}?path=alloc/logs/t.stdout.0&follow=false&origin=end&offset=7"
        ))
        .unwrap();
    let frames: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&r.body)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!frames.is_empty(), "{}", r.text());
    assert_eq!(frames[0]["File"], "alloc/logs/t.stdout.0", "{}", r.text());
    assert!(frames[0]["Data"].is_string() && frames[0]["Offset"].as_u64().unwrap() > 0);

    let addr = server.http_addr();
    // alloc logs, from the server host, against the server.
    let out = cli_for(&server_host, &addr, 20, &["alloc", "logs", &alloc_id]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "alloc logs: {stderr}");
    assert!(stdout.starts_with("line 0\n"), "alloc logs: {stdout:?}");

    // alloc fs: a listing, a tail, then a followed file that keeps growing.
    let out = cli_for(
        &server_host,
        &addr,
        20,
        &["alloc", "fs", &alloc_id, "alloc/logs"],
    );
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success() && stdout.contains("t.stdout.0"),
        "alloc fs ls: {stdout}{stderr}"
    );
    let out = cli_for(
        &server_host,
        &addr,
        20,
        &[
            "alloc",
            "fs",
            "-tail",
            "-n",
            "2",
            &alloc_id,
            "alloc/logs/t.stdout.0",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "alloc fs -tail: {stderr}");
    assert_eq!(stdout.lines().count(), 2, "alloc fs -tail -n 2: {stdout:?}");
    let before = cli_for(
        &server_host,
        &addr,
        20,
        &["alloc", "fs", &alloc_id, "alloc/logs/t.stdout.0"],
    );
    let lines_before = text(&before).0.lines().count();
    let out = cli_for(
        &server_host,
        &addr,
        4,
        &["alloc", "fs", "-f", &alloc_id, "alloc/logs/t.stdout.0"],
    );
    let (stdout, stderr) = text(&out);
    // 124: interrupted by `timeout`, as a user's ^C would.
    assert_eq!(out.status.code(), Some(124), "alloc fs -f: {stderr}");
    assert!(stdout.starts_with("line 0\n"), "alloc fs -f: {stdout:?}");
    let lines = stdout.lines().count();
    assert!(
        lines >= lines_before + 5,
        "alloc fs -f followed the file: {lines} lines, {lines_before} before it started"
    );
    for (i, line) in stdout.lines().enumerate() {
        assert_eq!(
            line,
            format!("line {i}"),
            "a line lost or repeated: {stdout:?}"
        );
    }

    // Given the node's own agent, the CLI asks it (no second hop) and the rest goes through
    // it to the servers.
    let out = cli_for(
        &client_host,
        &client.http_addr(),
        20,
        &[
            "alloc",
            "fs",
            "-tail",
            "-c",
            "7",
            &alloc_id,
            "alloc/logs/t.stdout.0",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "alloc fs on the node: {stderr}");
    assert!(
        stdout.len() == 7 && stdout.ends_with('\n'),
        "-c 7: {stdout:?}"
    );

    // The node unreachable (its port cut): the CLI gives up on it after a second and asks
    // the server, whose answer says where to go and why the node was not asked.
    lan.cut(&client_host);
    let out = cli_for(&server_host, &addr, 20, &["alloc", "logs", &alloc_id]);
    lan.heal(&client_host);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("ask the agent on the node") && stderr.contains("could not be reached"),
        "alloc logs with the node cut off: {stderr}"
    );
    assert!(stderr.contains(&client.http_addr()), "{stderr}");
}
