//! The multi-host harness itself: hosts on a test-owned LAN reach each other, partitions cut
//! established UDP and TCP flows at once and in both directions, agents survive kill -9 and
//! come back on their data dir, a paused agent answers nothing until resumed, and nothing of
//! a test is left once its guards drop.

// Test helpers fail the test loudly; that is their job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use noded_tests::*;

const ECHO_PORT: u16 = 7000;
/// How long a probe waits before a peer counts as unreachable.
const GONE: Duration = Duration::from_secs(1);
/// How long a probe may wait for a healed flow: TCP retransmits with backoff (0.2 s, 0.4 s,
/// 0.8 s…), so an established connection may take a few seconds to catch up.
const BACK: Duration = Duration::from_secs(10);

fn agent_on(host: &Host, tls: &TlsPaths) -> ClusterAgent {
    ClusterAgent::start(
        host,
        &host.name,
        &server_and_client_config(host.ip(), &host.name, tls),
    )
}

fn http_addr(host: &Host) -> String {
    format!("{}:4646", host.ip())
}

/// The name the agent at `to` reports, asked from `from`.
fn node_name_seen_from(from: &Host, to: &Host) -> Option<String> {
    let r = from
        .http(&http_addr(to), "GET", "/v1/agent/self", None)
        .ok()?;
    (r.status == 200).then(|| r.json()["config"]["NodeName"].as_str().map(str::to_string))?
}

/// Whether `pid` is a live process (a zombie waiting for its reaper is not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

fn echo_addr(host: &Host) -> SocketAddr {
    SocketAddr::from((host.ip(), ECHO_PORT))
}

#[test]
fn cut_and_split_stop_tcp_and_udp_at_once_both_ways_and_heal_restores_them() {
    if !require_root("multi-host harness: namespaces and bridges") {
        return;
    }
    let lan = Lan::create("part");
    let (a, b, c) = (lan.host("a"), lan.host("b"), lan.host("c"));
    let pki = TempDir::create("pki");
    let tls = server_certificates(&pki, "global");
    let _agents: Vec<ClusterAgent> = [&a, &b, &c]
        .into_iter()
        .map(|h| agent_on(h, &tls))
        .collect();
    let (_echo_a, _echo_b) = (a.echo(ECHO_PORT), b.echo(ECHO_PORT));

    // Everyone reaches everyone over the bridge: A sees B's own agent, not its own.
    assert_eq!(node_name_seen_from(&a, &b).as_deref(), Some("b"));
    assert_eq!(node_name_seen_from(&c, &a).as_deref(), Some("a"));
    let mut ab_udp = a.udp_flow(echo_addr(&b));
    let mut ab_tcp = a.tcp_flow(echo_addr(&b));
    let mut ca_udp = c.udp_flow(echo_addr(&a));
    let mut ca_tcp = c.tcp_flow(echo_addr(&a));
    let mut cb_udp = c.udp_flow(echo_addr(&b));
    for (what, ok) in [
        ("a→b udp", ab_udp.ping(BACK)),
        ("a→b tcp", ab_tcp.ping(BACK)),
        ("c→a udp", ca_udp.ping(BACK)),
        ("c→a tcp", ca_tcp.ping(BACK)),
        ("c→b udp", cb_udp.ping(BACK)),
    ] {
        assert!(ok, "{what} before any partition");
    }

    // Cut B: the established flows stop at once, in both directions; A and C are unaffected.
    lan.cut(&b);
    let cut_at = Instant::now();
    assert!(
        !ab_udp.ping(GONE),
        "a→b udp through a cut ({})",
        lan.describe()
    );
    assert!(
        !ab_tcp.ping(GONE),
        "a→b tcp through a cut ({})",
        lan.describe()
    );
    assert!(!a.can_connect(echo_addr(&b), GONE), "a connects to cut b");
    assert!(!b.can_connect(echo_addr(&a), GONE), "cut b connects to a");
    assert!(node_name_seen_from(&a, &b).is_none(), "a reads cut b's API");
    assert!(
        ca_udp.ping(GONE) && ca_tcp.ping(GONE),
        "c→a must survive b's cut"
    );
    assert_eq!(node_name_seen_from(&c, &a).as_deref(), Some("a"));
    assert!(
        cut_at.elapsed() < Duration::from_secs(15),
        "probes took {:?}",
        cut_at.elapsed()
    );

    // Heal B: the same sockets work again (TCP retransmits what the cut swallowed).
    lan.heal(&b);
    assert!(ab_udp.ping(BACK), "a→b udp after heal ({})", lan.describe());
    assert!(ab_tcp.ping(BACK), "a→b tcp after heal ({})", lan.describe());
    assert_eq!(node_name_seen_from(&a, &b).as_deref(), Some("b"));

    // Split {A} | {B, C}: nothing crosses the split, either way; each side stays whole.
    lan.split(&[&[&a], &[&b, &c]]);
    assert_eq!(lan.describe(), "br1: [a]; br2: [b, c]");
    assert!(!ab_udp.ping(GONE), "a→b udp across the split");
    assert!(!ca_udp.ping(GONE), "c→a udp across the split");
    assert!(!ca_tcp.ping(GONE), "c→a tcp across the split");
    assert!(
        !b.can_connect(echo_addr(&a), GONE),
        "b connects to a across the split"
    );
    assert!(cb_udp.ping(GONE), "c→b udp within a side");
    assert_eq!(node_name_seen_from(&c, &b).as_deref(), Some("b"));
    assert_eq!(node_name_seen_from(&b, &c).as_deref(), Some("c"));

    lan.heal_all();
    assert_eq!(lan.describe(), "common: [a, b, c]");
    assert!(ab_udp.ping(BACK) && ca_udp.ping(BACK) && ca_tcp.ping(BACK) && ab_tcp.ping(BACK));
    assert_eq!(node_name_seen_from(&a, &b).as_deref(), Some("b"));
    assert_eq!(node_name_seen_from(&b, &a).as_deref(), Some("a"));
}

#[test]
fn an_agent_killed_with_sigkill_restarts_on_its_data_dir_with_its_jobs() {
    if !require_root("multi-host harness: agent restart") {
        return;
    }
    let lan = Lan::create("restart");
    let host = lan.host("a");
    let pki = TempDir::create("pki");
    let mut agent = agent_on(&host, &server_certificates(&pki, "global"));
    let job = serde_json::json!({"Job": {
        "ID": "survivor", "Type": "batch",
        "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": [{"Name": "t", "Driver": "raw_exec",
            "Config": {"command": "/bin/true"}}]}]
    }});
    let body = serde_json::to_vec(&job).unwrap();
    // The client registers its node just after the API opens: until then no node has
    // raw_exec and the server refuses the job.
    agent.wait_for("the job registered", Duration::from_secs(20), |a| {
        let r = a.http("PUT", "/v1/jobs", Some(&body)).ok()?;
        (r.status == 200).then_some(())
    });
    let before = agent.data_dir().to_path_buf();

    agent.kill9();
    assert!(!agent.is_running());
    assert!(
        agent.get("/v1/agent/self").is_err(),
        "a killed agent answered"
    );
    agent.restart();
    assert!(agent.is_running());
    assert_eq!(agent.data_dir(), before);
    let r = agent.get("/v1/job/survivor").unwrap();
    assert_eq!(r.status, 200, "the job is gone after restart: {}", r.text());
    assert_eq!(r.json()["ID"], "survivor");
    let out = agent.cli(&["job", "status", "survivor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("survivor"),
        "job status after restart: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_paused_agent_answers_nothing_until_resumed_and_nothing_is_left_after_drop() {
    if !require_root("multi-host harness: pause and cleanup") {
        return;
    }
    let lan = Lan::create("pause");
    let host = lan.host("a");
    let pki = TempDir::create("pki");
    let agent = agent_on(&host, &server_certificates(&pki, "global"));
    assert_eq!(agent.get("/v1/agent/self").unwrap().status, 200);

    agent.pause();
    let r = agent.http_with_timeout("GET", "/v1/agent/self", None, GONE);
    assert!(r.is_err(), "a paused agent answered: {r:?}");
    agent.resume();
    let back = agent.wait_for("an answer after resume", Duration::from_secs(10), |a| {
        a.get("/v1/agent/self").ok().filter(|r| r.status == 200)
    });
    assert_eq!(back.json()["config"]["NodeName"], "a");

    // Everything this test made, by name; then drop the guards and look again.
    let namespaces = [lan.switch_name().to_string(), host.netns.name.clone()];
    let dir = agent.dir().to_path_buf();
    let cgroup_parent = agent.cgroup_parent().to_string();
    let mut pids: Vec<i32> = agent.supervisor_pids();
    pids.extend(agent.pid().map(|p| p as i32));
    assert!(pids.len() >= 2, "an agent and its supervisor: {pids:?}");
    assert!(dir.join("data").is_dir(), "the agent's data dir");
    drop(agent);
    drop(host);
    drop(lan);

    let listed = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    for ns in &namespaces {
        assert!(
            !listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ns)),
            "namespace {ns} left behind:\n{listed}"
        );
        assert!(!std::path::Path::new("/run/netns").join(ns).exists());
    }
    assert!(!dir.exists(), "agent dir {} left behind", dir.display());
    assert!(
        cgroup_dirs(&cgroup_parent).is_empty(),
        "cgroups left behind: {:?}",
        cgroup_dirs(&cgroup_parent)
    );
    for pid in pids {
        assert!(!alive(pid), "process {pid} left behind");
    }
}
