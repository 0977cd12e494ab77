//! A fleet of node daemons, end to end: one server and three client-only agents, each in its
//! own network namespace (a simulated host), the clients registering and heartbeating over
//! the QUIC fabric with `client.<region>` certificates made by `noded tls`.
//!
//! - the clients register, heartbeat and run work; a client agent's HTTP API answers what it
//!   does not know itself by forwarding to a server;
//! - a client's host is cut off: the server marks it down after its TTL and grace, its
//!   allocations lost, and places them on the other clients; when the host comes back, the
//!   node is ready again and its old copies are stopped: exactly one copy of each runs;
//! - certificates that are not a client's of this region are refused.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use noded_tests::{
    client_certificate, client_config, require_root, server_certificates, server_config,
    ClusterAgent, Host, Lan, TempDir,
};

/// Short heartbeats for tests (the defaults are 10 s TTL and 10 s grace).
const HEARTBEAT_HCL: &str = "  min_heartbeat_ttl = \"2s\"\n  heartbeat_grace = \"2s\"\n";

struct Fleet {
    // Dropped first: agents, then the hosts, then the switch.
    server: ClusterAgent,
    clients: Vec<ClusterAgent>,
    client_hosts: Vec<Host>,
    _server_host: Host,
    lan: Lan,
    _pki: TempDir,
}

impl Fleet {
    fn start(clients: usize) -> Fleet {
        Fleet::start_with(clients, "")
    }

    /// `client_hcl`: more keys for every client's `client` block.
    fn start_with(clients: usize, client_hcl: &str) -> Fleet {
        let lan = Lan::create("fleet");
        let server_host = lan.host("s0");
        let client_hosts: Vec<Host> = (0..clients).map(|i| lan.host(&format!("c{i}"))).collect();
        let pki = TempDir::create("pki");
        let server_tls = server_certificates(&pki, "global");
        let client_tls = client_certificate(&pki, "global");
        let config = server_config(server_host.ip(), "s0", "global", 1, &[], Some(&server_tls))
            .replace(
                "  bootstrap_expect = 1\n",
                &format!("  bootstrap_expect = 1\n{HEARTBEAT_HCL}"),
            );
        let server = ClusterAgent::start(&server_host, "s0", &config);
        let servers = vec![format!("{}:4647", server_host.ip())];
        let clients = client_hosts
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let name = format!("c{i}");
                let config = client_config(host.ip(), &name, "global", &servers, &client_tls)
                    .replace("  servers = [", &format!("{client_hcl}  servers = ["));
                ClusterAgent::start(host, &name, &config)
            })
            .collect();
        Fleet {
            server,
            clients,
            client_hosts,
            _server_host: server_host,
            lan,
            _pki: pki,
        }
    }

    /// Node name → status, as the server has them.
    fn nodes(&self) -> BTreeMap<String, String> {
        let r = self.server.get("/v1/nodes").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["Name"].as_str().unwrap().to_string(),
                    n["Status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn node_id(&self, name: &str) -> String {
        let r = self.server.get("/v1/nodes").unwrap();
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["Name"] == name)
            .map(|n| n["ID"].as_str().unwrap().to_string())
            .unwrap()
    }

    /// The node ids of a service's registered instances, as the server lists them.
    fn service_nodes(&self, service: &str) -> Vec<String> {
        let r = self.server.get(&format!("/v1/service/{service}")).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["NodeID"].as_str().unwrap().to_string())
            .collect()
    }

    /// The job's allocations: (id, node name, desired status, client status).
    fn allocs(&self, job: &str) -> Vec<(String, String, String, String)> {
        let r = self
            .server
            .get(&format!("/v1/job/{job}/allocations"))
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["ID"].as_str().unwrap().to_string(),
                    a["NodeName"].as_str().unwrap().to_string(),
                    a["DesiredStatus"].as_str().unwrap().to_string(),
                    a["ClientStatus"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// Processes in the task cgroups of an agent (every controller that has them: on a hybrid
/// host the v1 `pids` or `memory` hierarchy, on a pure v2 host the unified tree).
fn task_processes(agent: &ClusterAgent) -> usize {
    let mut best = 0;
    for root in [
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup",
    ] {
        let parent = Path::new(root).join(agent.cgroup_parent());
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        let mut count = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(".spare") || !entry.path().is_dir() {
                continue;
            }
            if let Ok(procs) = std::fs::read_to_string(entry.path().join("cgroup.procs")) {
                count += procs.lines().filter(|l| !l.trim().is_empty()).count();
            }
        }
        best = best.max(count);
    }
    best
}

/// A service job of `count` sleeping raw_exec tasks, with `extra` merged into its group.
fn job_with(id: &str, count: u32, extra: serde_json::Value) -> Vec<u8> {
    let mut group = serde_json::json!({
        "Name": "web", "Count": count,
        "RestartPolicy": {"Attempts": 0, "Mode": "fail"},
        "Tasks": [{
            "Name": "sleep", "Driver": "raw_exec",
            "Config": {"command": "/bin/sleep", "args": ["3600"]},
            "Resources": {"CPU": 100, "MemoryMB": 32}
        }]
    });
    for (k, v) in extra.as_object().unwrap() {
        group[k] = v.clone();
    }
    serde_json::to_vec(&serde_json::json!({"Job": {
        "ID": id, "Name": id, "Type": "service", "Datacenters": ["dc1"],
        "TaskGroups": [group]
    }}))
    .unwrap()
}

const SECOND_NS: u64 = 1_000_000_000;

fn wait<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn clients_register_run_work_and_a_lost_host_is_replaced_then_reconciled() {
    if !require_root("fleet of client-only agents") {
        return;
    }
    let fleet = Fleet::start(3);
    wait("three ready nodes", Duration::from_secs(30), || {
        let nodes = fleet.nodes();
        (nodes.len() == 3 && nodes.values().all(|s| s == "ready")).then_some(())
    });

    // A client agent's API forwards what only servers know: the node list, a job.
    let c0 = &fleet.clients[0];
    let r = c0.get("/v1/nodes").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().as_array().unwrap().len(), 3);
    // With a service: every instance is in the catalog, and a lost node's leave it.
    let with_service = job_with(
        "web",
        3,
        serde_json::json!({
            "Networks": [{"DynamicPorts": [{"Label": "http"}]}],
            "Services": [{"Name": "web", "PortLabel": "http", "Provider": "nomad"}]
        }),
    );
    let r = c0.http("PUT", "/v1/jobs", Some(&with_service)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let running = wait("three running allocations", Duration::from_secs(30), || {
        let allocs = fleet.allocs("web");
        let running: Vec<_> = allocs
            .into_iter()
            .filter(|a| a.2 == "run" && a.3 == "running")
            .collect();
        (running.len() == 3).then_some(running)
    });
    wait(
        "three registered instances",
        Duration::from_secs(30),
        || (fleet.service_nodes("web").len() == 3).then_some(()),
    );

    // Cut off the host that runs the most of them.
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for a in &running {
        *per_node.entry(a.1.clone()).or_default() += 1;
    }
    let (victim, on_victim) = per_node.iter().max_by_key(|(_, n)| **n).unwrap();
    let victim_index: usize = victim.trim_start_matches('c').parse().unwrap();
    let victim_id = fleet.node_id(victim);
    let before = task_processes(&fleet.clients[victim_index]);
    assert_eq!(
        before, *on_victim,
        "one task process per allocation on {victim}"
    );
    let cut_at = Instant::now();
    fleet.lan.cut(&fleet.client_hosts[victim_index]);

    // Down within TTL (2–4 s) + grace (2 s), replaced on the others within 10 s more.
    wait("the cut node down", Duration::from_secs(12), || {
        (fleet.nodes()[victim.as_str()] == "down").then_some(())
    });
    let down_after = cut_at.elapsed();
    let victim_instances = fleet
        .service_nodes("web")
        .iter()
        .filter(|n| **n == victim_id)
        .count();
    assert_eq!(
        victim_instances, 0,
        "a down node's instances left the catalog"
    );
    wait(
        "replacements running elsewhere",
        Duration::from_secs(30),
        || {
            let allocs = fleet.allocs("web");
            let elsewhere = allocs
                .iter()
                .filter(|a| a.1 != *victim && a.2 == "run" && a.3 == "running")
                .count();
            let lost = allocs
                .iter()
                .filter(|a| a.1 == *victim && a.3 == "lost")
                .count();
            (elsewhere == 3 && lost == *on_victim).then_some(())
        },
    );
    let replaced_after = cut_at.elapsed();
    wait(
        "the replacements registered",
        Duration::from_secs(30),
        || {
            let nodes = fleet.service_nodes("web");
            (nodes.len() == 3 && !nodes.contains(&victim_id)).then_some(())
        },
    );
    eprintln!(
        "host cut: node down after {down_after:?}, replacements running after {replaced_after:?}"
    );
    assert!(replaced_after < Duration::from_secs(4 + 2 + 10));
    // Cut off, the client keeps its tasks running (it cannot know it was replaced).
    assert_eq!(task_processes(&fleet.clients[victim_index]), before);

    // Heal: the node is ready again and stops its old copies; one copy of each runs.
    fleet.lan.heal(&fleet.client_hosts[victim_index]);
    wait("the node ready again", Duration::from_secs(30), || {
        (fleet.nodes()[victim.as_str()] == "ready").then_some(())
    });
    wait("the old copies stopped", Duration::from_secs(30), || {
        (task_processes(&fleet.clients[victim_index]) == 0).then_some(())
    });
    let allocs = fleet.allocs("web");
    let live: Vec<_> = allocs
        .iter()
        .filter(|a| a.2 == "run" && a.3 == "running")
        .collect();
    assert_eq!(live.len(), 3, "{allocs:?}");
    assert!(live.iter().all(|a| a.1 != *victim));
    let others: usize = (0..3)
        .filter(|i| *i != victim_index)
        .map(|i| task_processes(&fleet.clients[i]))
        .sum();
    assert_eq!(
        others, 3,
        "exactly one process per allocation across the fleet"
    );
    let node = fleet
        .server
        .get(&format!("/v1/node/{victim_id}"))
        .unwrap()
        .json();
    assert_eq!(node["Status"], "ready");
}

#[test]
fn a_certificate_that_is_not_a_client_of_the_region_is_refused() {
    if !require_root("client certificate checks") {
        return;
    }
    let lan = Lan::create("fleetcert");
    let server_host = lan.host("s0");
    let client_host = lan.host("c0");
    let pki = TempDir::create("pki");
    let server_tls = server_certificates(&pki, "global");
    let server = ClusterAgent::start(
        &server_host,
        "s0",
        &server_config(server_host.ip(), "s0", "global", 1, &[], Some(&server_tls)),
    );
    let servers = vec![format!("{}:4647", server_host.ip())];
    // A server's certificate presented as a client's: the agent refuses to start with it.
    let config = client_config(client_host.ip(), "c0", "global", &servers, &server_tls);
    let dir = TempDir::create("badclient");
    let file = dir.join("agent.hcl");
    std::fs::write(
        &file,
        format!("{config}\ndata_dir = \"{}\"\n", dir.join("data").display()),
    )
    .unwrap();
    let out = client_host.run(move || {
        std::process::Command::new(noded_tests::binary("noded"))
            .args(["agent", "-config"])
            .arg(&file)
            .output()
            .unwrap()
    });
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a client of region"), "{stderr}");
    drop(server);
}

#[test]
fn a_partitioned_client_with_a_disconnect_window_keeps_its_copy_and_the_replacement_goes() {
    if !require_root("disconnected client") {
        return;
    }
    let fleet = Fleet::start(3);
    wait("three ready nodes", Duration::from_secs(30), || {
        let nodes = fleet.nodes();
        (nodes.len() == 3 && nodes.values().all(|s| s == "ready")).then_some(())
    });
    let disconnect = serde_json::json!({"Disconnect": {
        "LostAfter": 120 * SECOND_NS, "Replace": true, "Reconcile": "keep_original"
    }});
    let r = fleet
        .server
        .http("PUT", "/v1/jobs", Some(&job_with("api", 1, disconnect)))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let original = wait("the allocation running", Duration::from_secs(30), || {
        fleet
            .allocs("api")
            .into_iter()
            .find(|a| a.2 == "run" && a.3 == "running")
    });
    let host: usize = original.1.trim_start_matches('c').parse().unwrap();
    fleet.lan.cut(&fleet.client_hosts[host]);

    // Disconnected, not down: the original is unknown, a replacement runs elsewhere.
    wait("the node disconnected", Duration::from_secs(15), || {
        (fleet.nodes()[original.1.as_str()] == "disconnected").then_some(())
    });
    wait(
        "unknown original and a running replacement",
        Duration::from_secs(30),
        || {
            let allocs = fleet.allocs("api");
            let unknown = allocs.iter().any(|a| a.0 == original.0 && a.3 == "unknown");
            let replacement = allocs
                .iter()
                .any(|a| a.1 != original.1 && a.2 == "run" && a.3 == "running");
            (unknown && replacement).then_some(())
        },
    );
    // The cut-off client cannot know: its copy keeps running.
    assert_eq!(task_processes(&fleet.clients[host]), 1);

    // Heal within the window: keep_original keeps the original and stops the replacement.
    fleet.lan.heal(&fleet.client_hosts[host]);
    wait("one copy: the original", Duration::from_secs(40), || {
        let allocs = fleet.allocs("api");
        let live: Vec<_> = allocs
            .iter()
            .filter(|a| a.2 == "run" && a.3 == "running")
            .collect();
        let total: usize = fleet.clients.iter().map(task_processes).sum();
        (live.len() == 1 && live[0].0 == original.0 && total == 1).then_some(())
    });
    assert_eq!(fleet.nodes()[original.1.as_str()], "ready");
}

#[test]
fn a_drain_moves_allocations_two_at_a_time_replacements_healthy_first_and_ends_ineligible() {
    if !require_root("node drain") {
        return;
    }
    let fleet = Fleet::start(3);
    wait("three ready nodes", Duration::from_secs(30), || {
        let nodes = fleet.nodes();
        (nodes.len() == 3 && nodes.values().all(|s| s == "ready")).then_some(())
    });
    let migrate = serde_json::json!({"Migrate": {
        "MaxParallel": 2, "HealthCheck": "task_states",
        "MinHealthyTime": 2 * SECOND_NS, "HealthyDeadline": 60 * SECOND_NS
    }});
    let r = fleet
        .server
        .http("PUT", "/v1/jobs", Some(&job_with("batchy", 4, migrate)))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let running = wait("four running", Duration::from_secs(30), || {
        let running: Vec<_> = fleet
            .allocs("batchy")
            .into_iter()
            .filter(|a| a.2 == "run" && a.3 == "running")
            .collect();
        (running.len() == 4).then_some(running)
    });
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for a in &running {
        *per_node.entry(a.1.clone()).or_default() += 1;
    }
    let (drained, on_drained) = per_node.iter().max_by_key(|(_, n)| **n).unwrap();
    let drained_id = fleet.node_id(drained);
    let originals: Vec<String> = running
        .iter()
        .filter(|a| a.1 == *drained)
        .map(|a| a.0.clone())
        .collect();
    let drain = serde_json::json!({"DrainSpec": {"Deadline": 120 * SECOND_NS, "IgnoreSystemJobs": false}, "MarkEligible": false});
    let r = fleet
        .server
        .http(
            "PUT",
            &format!("/v1/node/{drained_id}/drain"),
            Some(&serde_json::to_vec(&drain).unwrap()),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // Until the drain completes: at most 2 originals migrating at once, and an original is
    // stopped only once its replacement reported healthy.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut most_migrating = 0;
    loop {
        let allocs = fleet
            .server
            .get("/v1/allocations")
            .unwrap()
            .json()
            .as_array()
            .unwrap()
            .clone();
        let by_id: BTreeMap<String, serde_json::Value> = allocs
            .iter()
            .map(|a| (a["ID"].as_str().unwrap().to_string(), a.clone()))
            .collect();
        let mut migrating = 0;
        for id in &originals {
            let full = fleet
                .server
                .get(&format!("/v1/allocation/{id}"))
                .unwrap()
                .json();
            let marked = full["DesiredTransition"]["Migrate"] == true;
            let stopped = full["DesiredStatus"] == "stop";
            if marked && !stopped {
                migrating += 1;
            }
            if stopped {
                let next = full["NextAllocation"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let replacement = fleet.server.get(&format!("/v1/allocation/{next}")).unwrap();
                assert_eq!(
                    replacement.status, 200,
                    "original {id} stopped without a replacement"
                );
                let healthy = replacement.json()["DeploymentStatus"]["Healthy"] == true;
                assert!(
                    healthy,
                    "original {id} stopped before its replacement {next} was healthy"
                );
                assert!(by_id.contains_key(&next));
            }
        }
        most_migrating = most_migrating.max(migrating);
        assert!(migrating <= 2, "{migrating} migrating at once");
        let node = fleet
            .server
            .get(&format!("/v1/node/{drained_id}"))
            .unwrap()
            .json();
        if node["LastDrain"]["Status"] == "complete" {
            assert_eq!(node["SchedulingEligibility"], "ineligible");
            assert_eq!(node["Drain"], false);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the drain did not complete: {node}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(most_migrating >= 1);
    let live: Vec<_> = fleet
        .allocs("batchy")
        .into_iter()
        .filter(|a| a.2 == "run" && a.3 == "running")
        .collect();
    assert_eq!(live.len(), 4);
    assert!(live.iter().all(|a| a.1 != *drained), "{live:?}");
    let drained_index: usize = drained.trim_start_matches('c').parse().unwrap();
    wait(
        "the drained node's tasks stopped",
        Duration::from_secs(20),
        || (task_processes(&fleet.clients[drained_index]) == 0).then_some(()),
    );
    eprintln!("drained {on_drained} allocations off {drained}, at most {most_migrating} at once");
}

#[test]
fn a_client_with_drain_on_shutdown_moves_its_work_off_before_it_stops() {
    if !require_root("drain on shutdown") {
        return;
    }
    let mut fleet = Fleet::start_with(2, "  drain_on_shutdown {\n    deadline = \"30s\"\n  }\n");
    wait("two ready nodes", Duration::from_secs(30), || {
        let nodes = fleet.nodes();
        (nodes.len() == 2 && nodes.values().all(|s| s == "ready")).then_some(())
    });
    let migrate = serde_json::json!({"Migrate": {"MaxParallel": 2, "MinHealthyTime": SECOND_NS}});
    let r = fleet
        .server
        .http("PUT", "/v1/jobs", Some(&job_with("moving", 2, migrate)))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let running = wait("two running", Duration::from_secs(30), || {
        let running: Vec<_> = fleet
            .allocs("moving")
            .into_iter()
            .filter(|a| a.2 == "run" && a.3 == "running")
            .collect();
        (running.len() == 2).then_some(running)
    });
    let stopping = running[0].1.clone();
    let index: usize = stopping.trim_start_matches('c').parse().unwrap();
    let node_id = fleet.node_id(&stopping);
    // SIGTERM: the agent drains its node, then exits.
    let started = Instant::now();
    fleet.clients[index].stop();
    let took = started.elapsed();
    let node = fleet
        .server
        .get(&format!("/v1/node/{node_id}"))
        .unwrap()
        .json();
    assert_eq!(node["LastDrain"]["Status"], "complete", "{node}");
    let live: Vec<_> = fleet
        .allocs("moving")
        .into_iter()
        .filter(|a| a.2 == "run" && a.3 == "running")
        .collect();
    assert_eq!(live.len(), 2);
    assert!(live.iter().all(|a| a.1 != stopping), "{live:?}");
    eprintln!("drain on shutdown of {stopping} took {took:?}");
}

#[test]
fn a_client_that_finds_no_server_gives_up_after_retry_max_and_exits_non_zero() {
    if !require_root("client join retries") {
        return;
    }
    let lan = Lan::create("fleetjoin");
    let nobody = lan.host("s0");
    let client_host = lan.host("c0");
    let pki = TempDir::create("pki");
    server_certificates(&pki, "global");
    let client_tls = client_certificate(&pki, "global");
    // s0 exists on the network but runs no server.
    let servers = vec![format!("{}:4647", nobody.ip())];
    let config = client_config(client_host.ip(), "c0", "global", &servers, &client_tls).replace(
        "  servers = [",
        "  server_join {\n    retry_max      = 1\n    retry_interval = \"1s\"\n  }\n  servers = [",
    );
    let dir = TempDir::create("joinless");
    let file = dir.join("agent.hcl");
    let harness = dir.join("harness.hcl");
    std::fs::write(&file, config).unwrap();
    std::fs::write(
        &harness,
        format!(
            "data_dir = \"{}\"\nclient {{\n  cgroup_parent = \"{}\"\n}}\n",
            dir.join("data").display(),
            noded_tests::unique_name("cg-join")
        ),
    )
    .unwrap();
    let started = Instant::now();
    // The agent's stderr goes to a file: the task supervisor it starts inherits it and
    // outlives the agent (by design), so a pipe would never close.
    let log = dir.join("agent.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let status = client_host.run(move || {
        std::process::Command::new(noded_tests::binary("noded"))
            .args(["agent", "-config"])
            .arg(&file)
            .arg("-config")
            .arg(&harness)
            .stdout(std::process::Stdio::null())
            .stderr(log_file)
            .status()
            .unwrap()
    });
    // The supervisor it left (its command line names this test's data dir).
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("supervisor") && cmdline.contains(&dir.display().to_string()) {
            noded_tests::stop_supervisor(pid);
        }
    }
    assert!(!status.success(), "the agent kept running without servers");
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains("retry_max = 1"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(90));
}
