//! Native service discovery end to end, with no Consul: an agent (server and client) runs in a
//! test "host" namespace; jobs in bridge mode register services with checks; the catalog API
//! and the agent's DNS server answer with healthy instances only.
//!
//! Checked: two instances behind one service are listed with both addresses and ports and
//! answered in DNS (A and SRV, on 127.0.0.1:8600); an SRV query from inside another allocation
//! (to the bridge address, which its resolv.conf names) returns the mapped ports; a failing
//! http check turns its instance critical and drops it from DNS and from `?passing`, and it
//! comes back when the check passes; `check_restart` restarts a task after `limit` failures; a
//! script check runs inside the task's sandbox (it sees the task's filesystem, not the host's);
//! `noded service list|info` and `noded alloc checks` show it; stopping a job removes every
//! registration. (A lost node's registrations disappearing is checked by `fleet.rs`.)

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use noded_tests::{
    binary, require_root, server_and_client_config, server_certificates, ClusterAgent, Host, Lan,
    TempDir,
};

/// The port the web tasks serve health on, inside their namespaces.
const WEB_PORT: u16 = 8080;
/// The DNS server's loopback listener, and the domain it answers for.
const DNS_LOOPBACK: &str = "127.0.0.1:8600";
/// The bridge's gateway with the default subnet: where allocations' DNS queries go.
const BRIDGE_DNS: &str = "172.26.64.1:53";

/// Removes, also when the test fails, what a failed agent could leave outside the test's
/// namespaces (its allocations' named namespaces, its eBPF pins).
struct Leftovers {
    tag: RefCell<Option<String>>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let Some(tag) = self.tag.borrow().clone() else {
            return;
        };
        for name in netns::namespace::list(&format!("noded-{tag}-")).unwrap_or_default() {
            let _ = netns::namespace::delete(&name);
        }
        let pins = format!("/sys/fs/bpf/noded/{tag}");
        let _ = ebpf::PortMapper::remove_all(Path::new(&pins), &[]);
    }
}

fn verify() -> String {
    binary("noded-verify").display().to_string()
}

/// A bridge-mode service job of `count` instances serving `/health` on [`WEB_PORT`], with
/// `check` as its service's check and `extra` merged into the service.
fn web_job(id: &str, count: u32, check: serde_json::Value, extra: serde_json::Value) -> Vec<u8> {
    let mut service = serde_json::json!({
        "Name": id, "PortLabel": "http", "Provider": "nomad", "Tags": ["v1", "blue"],
        "Checks": [check]
    });
    for (k, v) in extra.as_object().unwrap() {
        service[k] = v.clone();
    }
    serde_json::to_vec(&serde_json::json!({"Job": {
        "ID": id, "Name": id, "Type": "service", "Datacenters": ["dc1"],
        "TaskGroups": [{
            "Name": "g", "Count": count,
            "RestartPolicy": {"Attempts": 5, "Interval": 600_000_000_000u64, "Delay": 1_000_000_000u64, "Mode": "fail"},
            "Networks": [{"Mode": "bridge", "DynamicPorts": [{"Label": "http", "To": WEB_PORT}]}],
            "Services": [service],
            "Tasks": [{
                "Name": "t", "Driver": "raw_exec",
                "Config": {
                    "command": verify(),
                    "args": ["health", WEB_PORT.to_string(), "${NOMAD_TASK_DIR}/up"]
                },
                "Resources": {"CPU": 100, "MemoryMB": 64}
            }]
        }]
    }}))
    .unwrap()
}

fn http_check(interval_ms: u64) -> serde_json::Value {
    serde_json::json!({
        "Name": "alive", "Type": "http", "Path": "/health",
        "Interval": interval_ms * 1_000_000, "Timeout": 1_000_000_000u64
    })
}

/// The job's running allocations: (id, host port of `http`).
fn running(agent: &ClusterAgent, job: &str, count: usize) -> Vec<(String, u16)> {
    agent.wait_for(
        &format!("{count} {job} running"),
        Duration::from_secs(60),
        |a| {
            let allocs = a.get(&format!("/v1/job/{job}/allocations")).ok()?.json();
            let mut out = Vec::new();
            for stub in allocs.as_array()? {
                if stub["ClientStatus"] != "running" || stub["DesiredStatus"] != "run" {
                    continue;
                }
                let id = stub["ID"].as_str()?.to_string();
                let alloc = a.get(&format!("/v1/allocation/{id}")).ok()?.json();
                let port = alloc["AllocatedResources"]["Shared"]["Ports"]
                    .as_array()?
                    .iter()
                    .find(|p| p["Label"] == "http")?["Value"]
                    .as_u64()?;
                out.push((id, u16::try_from(port).ok()?));
            }
            (out.len() == count).then_some(out)
        },
    )
}

/// The service's instances as the catalog lists them: (alloc id, address, port, status).
fn instances(agent: &ClusterAgent, query: &str) -> Vec<(String, String, u16, String)> {
    let r = agent.get(&format!("/v1/service/{query}")).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let mut out: Vec<_> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["AllocID"].as_str().unwrap().to_string(),
                s["Address"].as_str().unwrap().to_string(),
                u16::try_from(s["Port"].as_u64().unwrap()).unwrap(),
                s["Status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// One DNS query with `noded-verify dns`, run on `host` (or inside an allocation with
/// `alloc exec`): the answer lines (`A ip`, `SRV port target`) and the rcode.
fn dig(host: &Host, server: &str, name: &str, qtype: &str) -> (BTreeSet<String>, String) {
    let (server, name, qtype) = (server.to_string(), name.to_string(), qtype.to_string());
    let out = host.run(move || {
        std::process::Command::new(verify())
            .args(["dns", &server, &name, &qtype])
            .output()
            .unwrap()
    });
    parse_dig(&String::from_utf8_lossy(&out.stdout))
}

fn parse_dig(out: &str) -> (BTreeSet<String>, String) {
    let mut answers = BTreeSet::new();
    let mut rcode = "none".to_string();
    for line in out.lines() {
        if let Some(code) = line.strip_prefix("rcode=") {
            rcode = code.to_string();
        } else if line.starts_with("A ") || line.starts_with("SRV ") {
            answers.insert(line.to_string());
        }
    }
    (answers, rcode)
}

/// The ports an SRV answer carries.
fn srv_ports(answers: &BTreeSet<String>) -> BTreeSet<u16> {
    answers
        .iter()
        .filter_map(|a| a.strip_prefix("SRV "))
        .filter_map(|a| a.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The host path of a file in a task's `local` directory.
fn task_local_file(agent: &ClusterAgent, alloc: &str, task: &str, name: &str) -> PathBuf {
    fn find(dir: &Path, alloc: &str, task: &str, name: &str, depth: u32) -> Option<PathBuf> {
        let candidate = dir.join(alloc).join(task).join("local").join(name);
        if candidate.exists() {
            return Some(candidate);
        }
        if depth == 0 {
            return None;
        }
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            if entry.path().is_dir() {
                if let Some(found) = find(&entry.path(), alloc, task, name, depth - 1) {
                    return Some(found);
                }
            }
        }
        None
    }
    find(agent.data_dir(), alloc, task, name, 3).unwrap_or_else(|| {
        panic!("no {task}/local/{name} of allocation {alloc} under the agent's data dir")
    })
}

fn ready_tag(agent: &ClusterAgent, leftovers: &Leftovers) {
    let node = agent.wait_for("a ready node", Duration::from_secs(30), |a| {
        let nodes = a.get("/v1/nodes").ok()?.json();
        let node = nodes.as_array()?.first()?.clone();
        (node["Status"] == "ready").then_some(node)
    });
    let tag: String = node["ID"]
        .as_str()
        .unwrap()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect();
    *leftovers.tag.borrow_mut() = Some(tag);
}

fn submit(agent: &ClusterAgent, job: &[u8]) {
    let r = agent.http("PUT", "/v1/jobs", Some(job)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn services_are_registered_checked_and_answered_in_dns_and_leave_with_their_job() {
    if !require_root("services in test namespaces") {
        return;
    }
    let lan = Lan::create("svc");
    let host = lan.host("h");
    let pki = TempDir::create("pki");
    let tls = server_certificates(&pki, "global");
    let config = format!(
        "{}\ndns {{\n  enabled = true\n}}\n",
        server_and_client_config(host.ip(), "h", &tls)
    );
    let leftovers = Leftovers {
        tag: RefCell::new(None),
    };
    let agent = ClusterAgent::start(&host, "h", &config);
    ready_tag(&agent, &leftovers);

    // Two instances behind one service: listed with both addresses and ports, passing.
    submit(
        &agent,
        &web_job("web", 2, http_check(500), serde_json::json!({})),
    );
    let allocs = running(&agent, "web", 2);
    let want: Vec<(String, String, u16, String)> = {
        let mut w: Vec<_> = allocs
            .iter()
            .map(|(id, port)| (id.clone(), host.ip().to_string(), *port, "passing".into()))
            .collect();
        w.sort();
        w
    };
    agent.wait_for("both instances passing", Duration::from_secs(30), |a| {
        (instances(a, "web") == want).then_some(())
    });
    let list = agent.get("/v1/services").unwrap().json();
    assert_eq!(list[0]["Namespace"], "default", "{list}");
    assert!(list[0]["Services"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["ServiceName"] == "web"));
    let by_alloc = agent
        .get(&format!("/v1/allocation/{}/services", allocs[0].0))
        .unwrap()
        .json();
    assert_eq!(by_alloc.as_array().unwrap().len(), 1, "{by_alloc}");

    // DNS on the loopback listener: A and SRV (plain, tagged, namespaced), NXDOMAIN else.
    let ports: BTreeSet<u16> = allocs.iter().map(|a| a.1).collect();
    for name in [
        "web.service.noded",
        "blue.web.service.noded",
        "web.service.default.noded",
    ] {
        let (answers, rcode) = dig(&host, DNS_LOOPBACK, name, "SRV");
        assert_eq!(rcode, "0", "{name}: {answers:?}");
        assert_eq!(srv_ports(&answers), ports, "{name}: {answers:?}");
    }
    let (answers, _) = dig(&host, DNS_LOOPBACK, "web.service.noded", "A");
    assert_eq!(
        answers,
        BTreeSet::from([format!("A {}", host.ip())]),
        "both instances are on this host's address"
    );
    let (_, rcode) = dig(&host, DNS_LOOPBACK, "nothing.service.noded", "A");
    assert_eq!(rcode, "3", "NXDOMAIN for an unknown service");
    let (_, rcode) = dig(&host, DNS_LOOPBACK, "green.web.service.noded", "SRV");
    assert_eq!(rcode, "3", "NXDOMAIN for a tag no instance has");

    // From inside another allocation: its resolver is the bridge address, which answers.
    let client_job = serde_json::to_vec(&serde_json::json!({"Job": {
        "ID": "asker", "Name": "asker", "Type": "service", "Datacenters": ["dc1"],
        "TaskGroups": [{
            "Name": "g", "Count": 1,
            "Networks": [{"Mode": "bridge"}],
            "Tasks": [{
                "Name": "t", "Driver": "raw_exec",
                "Config": {"command": verify(), "args": ["sleep", "3600"]},
                "Resources": {"CPU": 100, "MemoryMB": 32}
            }]
        }]
    }}))
    .unwrap();
    submit(&agent, &client_job);
    let asker = agent.wait_for("the asker running", Duration::from_secs(60), |a| {
        let allocs = a.get("/v1/job/asker/allocations").ok()?.json();
        allocs
            .as_array()?
            .iter()
            .find(|x| x["ClientStatus"] == "running")
            .and_then(|x| x["ID"].as_str().map(str::to_string))
    });
    let inside = agent.cli(&[
        "alloc",
        "exec",
        "-task",
        "t",
        &asker,
        &verify(),
        "dns",
        BRIDGE_DNS,
        "web.service.noded",
        "SRV",
    ]);
    let (answers, rcode) = parse_dig(&String::from_utf8_lossy(&inside.stdout));
    assert_eq!(
        (srv_ports(&answers), rcode.as_str()),
        (ports.clone(), "0"),
        "SRV from inside an allocation: {}{}",
        String::from_utf8_lossy(&inside.stdout),
        String::from_utf8_lossy(&inside.stderr)
    );

    // A failing check: critical, out of `?passing` and of DNS; back when it passes again.
    let (sick, sick_port) = allocs[0].clone();
    let up = task_local_file(&agent, &sick, "t", "up");
    std::fs::remove_file(&up).unwrap();
    agent.wait_for("the instance critical", Duration::from_secs(15), |a| {
        instances(a, "web")
            .iter()
            .any(|i| i.0 == sick && i.3 == "critical")
            .then_some(())
    });
    let passing = instances(&agent, "web?passing=true");
    assert_eq!(passing.len(), 1, "{passing:?}");
    assert_ne!(passing[0].0, sick);
    let (answers, _) = dig(&host, DNS_LOOPBACK, "web.service.noded", "SRV");
    assert!(
        !srv_ports(&answers).contains(&sick_port) && srv_ports(&answers).len() == 1,
        "the critical instance is still in DNS: {answers:?}"
    );
    let checks = agent.cli(&["alloc", "checks", &sick]);
    let text = String::from_utf8_lossy(&checks.stdout);
    assert!(
        checks.status.success() && text.contains("alive") && text.contains("critical"),
        "alloc checks: {text}{}",
        String::from_utf8_lossy(&checks.stderr)
    );
    std::fs::write(&up, "up").unwrap();
    agent.wait_for("the instance passing again", Duration::from_secs(15), |a| {
        (instances(a, "web?passing=true").len() == 2).then_some(())
    });

    // The CLI lists the service and its instances with their health.
    let out = agent.cli(&["service", "list"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("web"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = agent.cli(&["service", "info", "web"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&sick_port.to_string()) && text.contains("passing"),
        "{text}"
    );

    // check_restart: `limit` failures in a row restart the task, which is healthy again.
    let restart_job = web_job(
        "flaky",
        1,
        http_check(300),
        serde_json::json!({"CheckRestart": {"Limit": 2, "Grace": 1_000_000_000u64}}),
    );
    submit(&agent, &restart_job);
    let flaky = running(&agent, "flaky", 1)[0].0.clone();
    agent.wait_for("flaky passing", Duration::from_secs(30), |a| {
        (instances(a, "flaky?passing=true").len() == 1).then_some(())
    });
    std::fs::remove_file(task_local_file(&agent, &flaky, "t", "up")).unwrap();
    agent.wait_for(
        "flaky restarted by its check",
        Duration::from_secs(30),
        |a| {
            let alloc = a.get(&format!("/v1/allocation/{flaky}")).ok()?.json();
            let restarts = alloc["TaskStates"]["t"]["Restarts"].as_u64()?;
            (restarts >= 1).then_some(())
        },
    );
    agent.wait_for(
        "flaky passing after its restart",
        Duration::from_secs(30),
        |a| (instances(a, "flaky?passing=true").len() == 1).then_some(()),
    );

    // A script check runs inside the task's sandbox: it sees the task's /local, and not a
    // file that exists only on the host.
    let marker = TempDir::create("host-only");
    let host_only = marker.join("marker");
    std::fs::write(&host_only, "host").unwrap();
    let script_job = serde_json::to_vec(&serde_json::json!({"Job": {
        "ID": "boxed", "Name": "boxed", "Type": "service", "Datacenters": ["dc1"],
        "TaskGroups": [{
            "Name": "g", "Count": 1,
            "Services": [{
                "Name": "boxed", "Provider": "nomad",
                "Checks": [{
                    "Name": "inside", "Type": "script", "TaskName": "t",
                    "Command": "/bin/sh",
                    "Args": ["-c", format!("test -f /local/inside && test ! -e {}", host_only.display())],
                    "Interval": 500_000_000u64, "Timeout": 2_000_000_000u64
                }]
            }],
            "Tasks": [{
                "Name": "t", "Driver": "exec",
                "Config": {"command": "/bin/sh", "args": ["-c", "touch /local/inside && exec sleep 3600"]},
                "Resources": {"CPU": 100, "MemoryMB": 32}
            }]
        }]
    }}))
    .unwrap();
    submit(&agent, &script_job);
    agent.wait_for("the script check passing", Duration::from_secs(60), |a| {
        let got = instances(a, "boxed");
        (got.len() == 1 && got[0].3 == "passing").then_some(())
    });

    // Stopping the jobs removes every registration.
    for job in ["web", "flaky", "boxed", "asker"] {
        let r = agent
            .http("DELETE", &format!("/v1/job/{job}"), None)
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    agent.wait_for("no registration left", Duration::from_secs(60), |a| {
        let list = a.get("/v1/services").ok()?.json();
        let empty = list
            .as_array()?
            .iter()
            .all(|ns| ns["Services"].as_array().is_none_or(|s| s.is_empty()));
        empty.then_some(())
    });
    let (_, rcode) = dig(&host, DNS_LOOPBACK, "web.service.noded", "SRV");
    assert_eq!(rcode, "3", "a stopped service is not in DNS");
}
