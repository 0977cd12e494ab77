//! A highly available region, end to end: three `noded agent` server processes, each in its
//! own network namespace (a simulated host) on a test-owned bridge, talking Raft over the QUIC
//! fabric with certificates made by `noded tls`. They form a region through `retry_join`; the
//! leader is killed (-9) and replaced; the killed server comes back and catches up; a leader
//! cut off in a minority acknowledges nothing while the majority goes on; a history of
//! concurrent job registrations across leader kills loses no acknowledged write.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use noded_tests::{
    require_root, server_certificates, server_config, start_servers, ClusterAgent, Host, Lan,
    TempDir,
};

struct Region {
    // Dropped last: agents first, then the hosts, then the switch.
    agents: Vec<ClusterAgent>,
    hosts: Vec<Host>,
    lan: Lan,
    _pki: TempDir,
}

impl Region {
    fn start(n: usize) -> Region {
        let lan = Lan::create("raft");
        let hosts: Vec<Host> = (0..n).map(|i| lan.host(&format!("s{i}"))).collect();
        let pki = TempDir::create("pki");
        let tls = server_certificates(&pki, "global");
        let agents = start_servers(&hosts, "global", &tls);
        Region {
            agents,
            hosts,
            lan,
            _pki: pki,
        }
    }

    /// The position of the agent that every running agent names as leader, once they agree.
    fn leader(&self, timeout: Duration, except: &BTreeSet<usize>) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let mut named = BTreeSet::new();
            let mut all_answered = true;
            for (i, agent) in self.agents.iter().enumerate() {
                if except.contains(&i) {
                    continue;
                }
                match agent.http("GET", "/v1/status/leader?stale", None) {
                    Ok(r) if r.status == 200 => {
                        named.insert(r.json().as_str().unwrap_or_default().to_string());
                    }
                    _ => all_answered = false,
                }
            }
            if all_answered && named.len() == 1 {
                let leader = named.into_iter().next().unwrap_or_default();
                if let Some(i) = self
                    .agents
                    .iter()
                    .position(|a| leader == format!("{}:4647", a.address()))
                {
                    if !except.contains(&i) {
                        return i;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {timeout:?}; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs(&self) -> String {
        self.agents
            .iter()
            .map(|a| {
                let log = a.log_text();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {}\n{}", a.address(), tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn job_body(id: &str) -> String {
    serde_json::json!({
        "Job": {
            "ID": id,
            "Type": "batch",
            "TaskGroups": [{"Name": "g", "Tasks": [{
                "Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/true"}
            }]}]
        }
    })
    .to_string()
}

fn register(agent: &ClusterAgent, id: &str) -> Result<(), String> {
    let body = job_body(id);
    match agent.http_with_timeout(
        "PUT",
        "/v1/jobs",
        Some(body.as_bytes()),
        Duration::from_secs(15),
    ) {
        Ok(r) if r.status == 200 => Ok(()),
        Ok(r) => Err(format!("{} {}", r.status, r.text())),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether `agent`'s region has job `id`: a 200 says yes, a 404 says no. Anything else (the
/// region still settling after the last kill: no leader yet, a timed-out read barrier) says
/// nothing, and is asked again for up to 60 s — counting it as "no" would report a write as
/// lost when only the read failed.
fn has_job(agent: &ClusterAgent, id: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match agent.http("GET", &format!("/v1/job/{id}"), None) {
            Ok(r) if r.status == 200 => return true,
            Ok(r) if r.status == 404 => return false,
            other => {
                if std::time::Instant::now() > deadline {
                    let log = agent.log_text();
                    let tail: Vec<&str> = log.lines().rev().take(60).collect();
                    panic!(
                        "GET /v1/job/{id} kept failing for 60 s; last answer: {other:?}; the \
                         agent's log ends:\n{}",
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

#[test]
fn three_servers_form_a_region_survive_leader_kills_and_partitions_and_lose_no_write() {
    if !require_root("three servers in network namespaces") {
        return;
    }
    let mut region = Region::start(3);
    let none = BTreeSet::new();
    let leader = region.leader(Duration::from_secs(60), &none);

    // Every server sees the same three voters.
    for agent in &region.agents {
        let peers = agent.get("/v1/status/peers").unwrap().json();
        assert_eq!(peers.as_array().map(Vec::len), Some(3), "{peers}");
    }
    // A write through a follower is forwarded to the leader; a linearizable read on the
    // other follower sees it at once.
    let (f1, f2) = ((leader + 1) % 3, (leader + 2) % 3);
    register(&region.agents[f1], "via-follower").unwrap();
    assert!(has_job(&region.agents[f2], "via-follower"));

    // kill -9 of the leader: a new leader commits, within the failover goal.
    let killed_at = Instant::now();
    region.agents[leader].kill9();
    let dead = BTreeSet::from([leader]);
    let new = region.leader(Duration::from_secs(20), &dead);
    let survivor = &region.agents[new];
    let deadline = Instant::now() + Duration::from_secs(20);
    while register(survivor, "after-kill").is_err() {
        assert!(
            Instant::now() < deadline,
            "no write after the leader's death"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let failover = killed_at.elapsed();
    eprintln!("failover (kill -9 → first write on the new leader): {failover:?}");

    // The killed server comes back on its data dir and catches up.
    region.agents[leader].restart();
    region.agents[leader].wait_for("catch-up", Duration::from_secs(30), |a| {
        a.http("GET", "/v1/job/after-kill?stale", None)
            .is_ok_and(|r| r.status == 200)
            .then_some(())
    });

    // The leader cut off in a minority acknowledges nothing; the majority elects and serves.
    let leader = region.leader(Duration::from_secs(30), &none);
    region.lan.cut(&region.hosts[leader]);
    let isolated = register(&region.agents[leader], "in-minority");
    assert!(isolated.is_err(), "an isolated leader acknowledged a write");
    let cut = BTreeSet::from([leader]);
    let majority = region.leader(Duration::from_secs(30), &cut);
    register(&region.agents[majority], "in-majority").unwrap();
    region.lan.heal(&region.hosts[leader]);
    region.agents[leader].wait_for("convergence", Duration::from_secs(30), |a| {
        a.http("GET", "/v1/job/in-majority", None)
            .is_ok_and(|r| r.status == 200)
            .then_some(())
    });

    // A history of concurrent registrations across leader kills: every acknowledged write
    // is there afterwards.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let kills = 20;
    std::thread::scope(|scope| {
        for writer in 0..2 {
            let acknowledged = acknowledged.clone();
            let stop = stop.clone();
            let hosts = &region.hosts;
            scope.spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let id = format!("history-{writer}-{n}");
                    // Each write goes to another server, from that server's host.
                    let host = &hosts[n % hosts.len()];
                    let to = format!("{}:4646", host.ip());
                    let body = job_body(&id);
                    let answer = host.http(&to, "PUT", "/v1/jobs", Some(body.as_bytes()));
                    if answer.is_ok_and(|r| r.status == 200) {
                        acknowledged.lock().unwrap().push(id);
                    } else {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            });
        }
        for _ in 0..kills {
            let leader = region.leader(Duration::from_secs(30), &BTreeSet::new());
            std::thread::sleep(Duration::from_millis(500));
            region.agents[leader].kill9();
            let _ = region.leader(Duration::from_secs(30), &BTreeSet::from([leader]));
            region.agents[leader].restart();
        }
        stop.store(true, Ordering::SeqCst);
    });
    let leader = region.leader(Duration::from_secs(30), &BTreeSet::new());
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(!acknowledged.is_empty(), "no write was acknowledged at all");
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !has_job(&region.agents[leader], id))
        .collect();
    eprintln!(
        "history: {} acknowledged, {} found, {} lost across {kills} leader kills",
        acknowledged.len(),
        acknowledged.len() - lost.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}

#[test]
fn a_server_that_cannot_find_its_region_gives_up_after_retry_max_with_the_reason() {
    if !require_root("a server in a network namespace") {
        return;
    }
    let lan = Lan::create("giveup");
    let host = lan.host("lonely");
    let pki = TempDir::create("pki");
    let tls = server_certificates(&pki, "global");
    // Nobody answers at .250: three attempts a second apart, then the agent exits.
    let nobody = Ipv4Addr::from(u32::from(host.ip()) & 0xffff_ff00 | 250);
    let config = server_config(
        host.ip(),
        "lonely",
        "global",
        3,
        &[format!("{nobody}:4647")],
        Some(&tls),
    )
    .replace(
        "retry_interval = \"1s\"",
        "retry_interval = \"1s\"\n    retry_max      = 3",
    );
    let mut agent = ClusterAgent::start(&host, "lonely", &config);
    let deadline = Instant::now() + Duration::from_secs(60);
    while agent.is_running() {
        assert!(
            Instant::now() < deadline,
            "the agent kept running past retry_max; log:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = agent.log_text();
    assert!(
        log.contains("gave up forming the region after 3 attempts"),
        "{log}"
    );
    assert!(log.contains(&nobody.to_string()), "{log}");
}
