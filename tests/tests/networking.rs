//! Bridge networking end to end, with no CNI and no Docker: a dev-style agent (server and
//! client) runs in a test "host" namespace on a test LAN; another host on the LAN plays a
//! client on another machine and the outside world. Allocations in bridge mode get their own
//! namespace on noded's bridge and their ports mapped from the host — through eBPF, and through
//! the nftables fallback forced by `client.port_mapping`.
//!
//! Checked: an external client reaches a task through a static and a dynamic port (TCP and
//! UDP) and the task sees the client's own address; a host-local client reaches it through
//! `127.0.0.1:port` and the host's address; two allocations reach each other's mapped ports
//! only; an allocation reaches the outside through masquerade; a port collision is refused at
//! scheduling; traffic keeps flowing while the agent is killed (`kill -9`) and after it
//! restarts; after the allocations stop nothing of them is left (namespaces, links, addresses,
//! port mappings, nftables elements, pins).

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use noded_tests::{
    binary, require_root, server_and_client_config, server_certificates, ClusterAgent, Host, Lan,
    TempDir,
};

/// The static port of the web job, and the ports its task listens on in its namespace.
const STATIC_PORT: u16 = 18080;
const WEB_PORTS: [u16; 2] = [8080, 9090];
/// The other job: one mapped port, one that is not.
const OTHER_MAPPED: u16 = 7070;
const OTHER_UNMAPPED: u16 = 7071;
/// Where the outside host listens for an allocation's egress.
const OUTSIDE_PORT: u16 = 9500;

/// Removes, also when the test fails, what a killed or failed agent could leave outside the
/// test's namespaces: its allocations' named namespaces and its eBPF pins (and so the cgroup
/// programs they hold). Declared before the agent, so that it runs after the agent stopped.
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
        let _ = ebpf::PortMapper::remove_all(std::path::Path::new(&pins), &[]);
    }
}

fn job(id: &str, ports: serde_json::Value, serve: &[u16]) -> Vec<u8> {
    let args: Vec<String> = std::iter::once("serve".to_string())
        .chain(serve.iter().map(u16::to_string))
        .collect();
    serde_json::to_vec(&serde_json::json!({"Job": {
        "ID": id, "Name": id, "Type": "service", "Datacenters": ["dc1"],
        "TaskGroups": [{
            "Name": "g", "Count": 1,
            "RestartPolicy": {"Attempts": 0, "Mode": "fail"},
            "Networks": [ports],
            "Tasks": [{
                "Name": "t", "Driver": "raw_exec",
                "Config": {
                    "command": binary("noded-verify").display().to_string(),
                    "args": args
                },
                "Resources": {"CPU": 100, "MemoryMB": 64}
            }]
        }]
    }}))
    .unwrap()
}

/// One running allocation of `job`: (id, its address in the bridge, its ports as placed).
fn running_alloc(agent: &ClusterAgent, job: &str) -> (String, Ipv4Addr, serde_json::Value) {
    agent.wait_for(&format!("{job} running"), Duration::from_secs(60), |a| {
        let allocs = a.get(&format!("/v1/job/{job}/allocations")).ok()?.json();
        let id = allocs
            .as_array()?
            .iter()
            .find(|x| x["ClientStatus"] == "running")?["ID"]
            .as_str()?
            .to_string();
        let alloc = a.get(&format!("/v1/allocation/{id}")).ok()?.json();
        let address = alloc["NetworkStatus"]["Address"].as_str()?.parse().ok()?;
        let ports = alloc["AllocatedResources"]["Shared"]["Ports"].clone();
        Some((id, address, ports))
    })
}

fn host_port(ports: &serde_json::Value, label: &str) -> u16 {
    let port = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["Label"] == label)
        .unwrap_or_else(|| panic!("no port {label} in {ports}"));
    u16::try_from(port["Value"].as_i64().unwrap()).unwrap()
}

/// What a `noded-verify serve` task answers a TCP client from `from`: `peer=<address>`, or
/// the error.
fn tcp_ask(from: &Host, to: SocketAddr) -> Result<String, String> {
    from.run(move || {
        let mut conn =
            TcpStream::connect_timeout(&to, Duration::from_secs(3)).map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        conn.read_to_string(&mut answer)
            .map_err(|e| e.to_string())?;
        Ok(answer.trim().to_string())
    })
}

fn udp_ask(from: &Host, to: SocketAddr) -> Result<String, String> {
    from.run(move || {
        let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 256];
        // UDP: a few tries, the first datagram may race the mapping's neighbour lookups.
        for _ in 0..6 {
            socket.send_to(b"hi", to).map_err(|e| e.to_string())?;
            if let Ok((n, _)) = socket.recv_from(&mut buf) {
                return Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string());
            }
        }
        Err(format!("no UDP answer from {to}"))
    })
}

/// Runs `noded-verify connect ADDR` inside allocation `alloc` (through `alloc exec`, which
/// joins the allocation's namespaces): whether it connected, and what it printed.
fn connect_from_alloc(agent: &ClusterAgent, alloc: &str, to: SocketAddr) -> (bool, String) {
    let verify = binary("noded-verify").display().to_string();
    let to = to.to_string();
    let out = agent.cli(&[
        "alloc", "exec", "-task", "t", alloc, &verify, "connect", &to,
    ]);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// What is left of this node's allocations' networks: namespaces, veths, addresses in the
/// host namespace's nftables, port mappings — empty when nothing is.
fn leftovers(host: &Host, tag: &str, addresses: &[Ipv4Addr]) -> Vec<String> {
    let mut left: Vec<String> = netns::namespace::list(&format!("noded-{tag}-"))
        .unwrap()
        .into_iter()
        .map(|n| format!("namespace {n}"))
        .collect();
    let veth_prefix = format!("nd{}", &tag[..4]);
    let addresses = addresses.to_vec();
    let tag = tag.to_string();
    left.extend(host.run(move || {
        let mut left = Vec::new();
        for link in netns::veth::list(&veth_prefix).unwrap() {
            left.push(format!("link {}", link.name));
        }
        let ruleset = std::process::Command::new("nft")
            .args(["list", "ruleset"])
            .output()
            .unwrap();
        let ruleset = String::from_utf8_lossy(&ruleset.stdout).to_string();
        for a in &addresses {
            if ruleset.contains(&a.to_string()) {
                left.push(format!("nftables element with {a}"));
            }
        }
        if ruleset.contains("table ip noded") || ruleset.contains("table bridge noded") {
            left.push("nftables tables noded".into());
        }
        if netns::bridge::get("noded0").unwrap().is_some() {
            left.push("bridge noded0".into());
        }
        if std::path::Path::new(&format!("/sys/fs/bpf/noded/{tag}")).exists() {
            left.push(format!("pins /sys/fs/bpf/noded/{tag}"));
        }
        left
    }));
    left
}

/// Asks with `f` until it answers (the first answers may race the mapping being made), for
/// 20 s at most.
fn wait_answer(agent: &ClusterAgent, what: &str, f: &dyn Fn() -> Result<String, String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match f() {
            Ok(answer) => return answer,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}\n{}", agent.log_text()),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The agent's node once ready, and its tag (the first 8 hex digits of its ID, in every name
/// its network objects carry), handed to `leftovers` for the cleanup.
fn ready_node(agent: &ClusterAgent, leftovers: &Leftovers) -> (serde_json::Value, String) {
    let node = agent.wait_for("a ready node", Duration::from_secs(30), |a| {
        let nodes = a.get("/v1/nodes").ok()?.json();
        let id = nodes.as_array()?.first()?["ID"].as_str()?.to_string();
        let node = a.get(&format!("/v1/node/{id}")).ok()?.json();
        (node["Status"] == "ready").then_some(node)
    });
    let tag: String = node["ID"]
        .as_str()
        .unwrap()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect();
    *leftovers.tag.borrow_mut() = Some(tag.clone());
    (node, tag)
}

/// A listener on the outside host that records the source address of what connects.
fn outside_listener(outside: &Host) -> mpsc::Receiver<SocketAddr> {
    let addr = SocketAddr::from((outside.ip(), OUTSIDE_PORT));
    let listener = outside.run(move || TcpListener::bind(addr).unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            if let Ok(peer) = conn.peer_addr() {
                let _ = tx.send(peer);
                let _ = writeln!(conn, "hello");
            }
        }
    });
    rx
}

fn bridge_networking_end_to_end(port_mapping: &str) {
    let lan = Lan::create("net");
    let host = lan.host("h");
    let outside = lan.host("x");
    let pki = TempDir::create("pki");
    let tls = server_certificates(&pki, "global");
    let config = server_and_client_config(host.ip(), "h", &tls).replace(
        "client {\n  enabled = true\n",
        &format!("client {{\n  enabled = true\n  port_mapping = \"{port_mapping}\"\n"),
    );
    let leftovers_guard = Leftovers {
        tag: RefCell::new(None),
    };
    let mut agent = ClusterAgent::start(&host, "h", &config);
    let (node, tag) = ready_node(&agent, &leftovers_guard);
    assert_eq!(
        node["Attributes"]["noded.port_mapping"], port_mapping,
        "the fingerprint says which port mapping is active"
    );
    assert!(
        node["NodeResources"]["NodeNetworks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["Mode"] == "bridge"),
        "{}",
        node["NodeResources"]
    );
    // Nothing is made before the first bridge allocation.
    assert_eq!(
        leftovers(&host, &tag, &[]),
        Vec::<String>::new(),
        "bridge networking set up before any allocation asked for it"
    );

    let web = job(
        "web",
        serde_json::json!({
            "Mode": "bridge",
            "ReservedPorts": [{"Label": "http", "Value": STATIC_PORT, "To": WEB_PORTS[0]}],
            "DynamicPorts": [{"Label": "dyn", "To": WEB_PORTS[1]}]
        }),
        &WEB_PORTS,
    );
    let r = agent.http("PUT", "/v1/jobs", Some(&web)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let other = job(
        "other",
        serde_json::json!({
            "Mode": "bridge",
            "DynamicPorts": [{"Label": "p", "To": OTHER_MAPPED}]
        }),
        &[OTHER_MAPPED, OTHER_UNMAPPED],
    );
    let r = agent.http("PUT", "/v1/jobs", Some(&other)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let (web_alloc, web_ip, web_ports) = running_alloc(&agent, "web");
    let (other_alloc, other_ip, _) = running_alloc(&agent, "other");
    let dynamic = host_port(&web_ports, "dyn");
    assert!((20000..=32000).contains(&dynamic), "{web_ports}");
    assert_ne!(web_ip, other_ip);

    // Another machine reaches the task through the static and the dynamic port, TCP and UDP,
    // and the task sees that machine's own address.
    let seen_as = format!("peer={}:", outside.ip());
    for port in [STATIC_PORT, dynamic] {
        let to = SocketAddr::from((host.ip(), port));
        let answer = wait_answer(&agent, &format!("tcp from outside to {to}"), &|| {
            tcp_ask(&outside, to)
        });
        assert!(answer.starts_with(&seen_as), "{to}: {answer}");
        let answer = wait_answer(&agent, &format!("udp from outside to {to}"), &|| {
            udp_ask(&outside, to)
        });
        assert!(answer.starts_with(&seen_as), "udp {to}: {answer}");
    }
    // A client on the host itself: through loopback and through the host's address.
    for ip in [Ipv4Addr::LOCALHOST, host.ip()] {
        let to = SocketAddr::from((ip, STATIC_PORT));
        let answer = wait_answer(&agent, &format!("tcp on the host to {to}"), &|| {
            tcp_ask(&host, to)
        });
        assert!(answer.starts_with("peer="), "{to}: {answer}");
        let answer = wait_answer(&agent, &format!("udp on the host to {to}"), &|| {
            udp_ask(&host, to)
        });
        assert!(answer.starts_with("peer="), "udp {to}: {answer}");
    }
    // An unmapped host port answers nothing.
    assert!(tcp_ask(&outside, SocketAddr::from((host.ip(), 18081))).is_err());

    // Allocations reach each other's mapped ports only.
    let (ok, out) = connect_from_alloc(
        &agent,
        &web_alloc,
        SocketAddr::from((other_ip, OTHER_MAPPED)),
    );
    assert!(ok, "web → other's mapped port: {out}");
    let (ok, out) = connect_from_alloc(
        &agent,
        &web_alloc,
        SocketAddr::from((other_ip, OTHER_UNMAPPED)),
    );
    assert!(!ok, "web reached other's unmapped port: {out}");
    let (ok, out) = connect_from_alloc(
        &agent,
        &other_alloc,
        SocketAddr::from((web_ip, WEB_PORTS[0])),
    );
    assert!(ok, "other → web's mapped port: {out}");

    // The outside sees an allocation's egress as coming from the host (masquerade).
    let seen = outside_listener(&outside);
    let (ok, out) = connect_from_alloc(
        &agent,
        &web_alloc,
        SocketAddr::from((outside.ip(), OUTSIDE_PORT)),
    );
    assert!(ok, "web → outside: {out}");
    let source = seen.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(source.ip(), std::net::IpAddr::V4(host.ip()), "masqueraded");

    // A static port already held is refused at scheduling, with Nomad's words.
    let clash = job(
        "clash",
        serde_json::json!({
            "Mode": "bridge",
            "ReservedPorts": [{"Label": "http", "Value": STATIC_PORT}]
        }),
        &[STATIC_PORT],
    );
    let r = agent.http("PUT", "/v1/jobs", Some(&clash)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    agent.wait_for("the collision reported", Duration::from_secs(30), |a| {
        let evals = a.get("/v1/job/clash/evaluations").ok()?.text();
        evals.contains("reserved port collision").then_some(())
    });

    // kill -9: the tasks and their traffic do not notice; a restarted agent reattaches.
    agent.kill9();
    let to = SocketAddr::from((host.ip(), STATIC_PORT));
    let answer = tcp_ask(&outside, to).expect("traffic while the agent is dead");
    assert!(answer.starts_with(&seen_as), "{answer}");
    agent.restart();
    running_alloc(&agent, "web");
    let answer = wait_answer(&agent, "tcp after the restart", &|| tcp_ask(&outside, to));
    assert!(answer.starts_with(&seen_as), "{answer}");

    // Stopped: nothing of either allocation is left, nor the node-wide objects they needed.
    for id in ["web", "other", "clash"] {
        let r = agent
            .http("DELETE", &format!("/v1/job/{id}"), None)
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    agent.wait_for("nothing left", Duration::from_secs(60), |_| {
        leftovers(&host, &tag, &[web_ip, other_ip])
            .is_empty()
            .then_some(())
    });
    assert!(
        tcp_ask(&outside, to).is_err(),
        "the mapping outlived the job"
    );
}

#[test]
fn bridge_networking_maps_ports_in_ebpf_isolates_allocations_and_leaves_nothing() {
    if !require_root("bridge networking in test namespaces") {
        return;
    }
    bridge_networking_end_to_end("ebpf");
}

#[test]
fn the_nftables_fallback_passes_the_same_checks() {
    if !require_root("bridge networking in test namespaces") {
        return;
    }
    bridge_networking_end_to_end("nftables");
}

/// Host mode binds the host port the scheduler chose on the port's host network (the task
/// learns it from `${NOMAD_PORT_x}` in its args), `none` gives loopback only, and bridge settings that
/// cannot work on this host (a subnet the host uses) mean the node offers no bridge — a bridge
/// job is refused at scheduling with Nomad's words, and nothing is created.
#[test]
fn host_and_none_modes_and_a_node_whose_bridge_settings_cannot_work() {
    if !require_root("networking in test namespaces") {
        return;
    }
    let lan = Lan::create("netmodes");
    let host = lan.host("h");
    let outside = lan.host("x");
    let pki = TempDir::create("pki");
    let tls = server_certificates(&pki, "global");
    let config = server_and_client_config(host.ip(), "h", &tls).replace(
        "client {\n  enabled = true\n",
        &format!(
            "client {{\n  enabled = true\n  bridge_network_subnet = \"{subnet}\"\n  host_network \"lan\" {{\n    cidr = \"{subnet}\"\n  }}\n",
            subnet = lan.subnet()
        ),
    );
    let leftovers_guard = Leftovers {
        tag: RefCell::new(None),
    };
    let agent = ClusterAgent::start(&host, "h", &config);
    let (node, tag) = ready_node(&agent, &leftovers_guard);
    assert!(
        node["Attributes"]["noded.port_mapping"].is_null(),
        "{}",
        node["Attributes"]
    );
    assert!(
        !node["NodeResources"]["NodeNetworks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["Mode"] == "bridge"),
        "a node whose subnet overlaps its own address offers bridge: {}",
        node["NodeResources"]
    );
    assert!(
        agent.log_text().contains("client.bridge_network_subnet"),
        "the log names the setting"
    );

    // Host mode: the task binds the dynamic port it was given, read from its args.
    let web = serde_json::to_vec(&serde_json::json!({"Job": {
        "ID": "hostweb", "Name": "hostweb", "Type": "service", "Datacenters": ["dc1"],
        "TaskGroups": [{
            "Name": "g", "Count": 1,
            "RestartPolicy": {"Attempts": 0, "Mode": "fail"},
            "Networks": [{"DynamicPorts": [{"Label": "http", "HostNetwork": "lan"}]}],
            "Tasks": [{
                "Name": "t", "Driver": "raw_exec",
                "Config": {
                    "command": binary("noded-verify").display().to_string(),
                    "args": ["serve", "${NOMAD_PORT_http}"]
                },
                "Resources": {"CPU": 100, "MemoryMB": 64}
            }]
        }]
    }}))
    .unwrap();
    let r = agent.http("PUT", "/v1/jobs", Some(&web)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, ports) = agent.wait_for("hostweb running", Duration::from_secs(60), |a| {
        let allocs = a.get("/v1/job/hostweb/allocations").ok()?.json();
        let id = allocs
            .as_array()?
            .iter()
            .find(|x| x["ClientStatus"] == "running")?["ID"]
            .as_str()?
            .to_string();
        let alloc = a.get(&format!("/v1/allocation/{id}")).ok()?.json();
        Some((id, alloc["AllocatedResources"]["Shared"]["Ports"].clone()))
    });
    let port = host_port(&ports, "http");
    assert_eq!(
        ports[0]["HostIP"],
        host.ip().to_string(),
        "the host network's address"
    );
    let to = SocketAddr::from((host.ip(), port));
    let answer = wait_answer(&agent, "host mode from outside", &|| tcp_ask(&outside, to));
    assert!(
        answer.starts_with(&format!("peer={}:", outside.ip())),
        "{answer}"
    );

    // None: loopback only — nothing outside is reachable from the allocation.
    let none = job(
        "alone",
        serde_json::json!({"Mode": "none"}),
        &[OTHER_UNMAPPED],
    );
    let r = agent.http("PUT", "/v1/jobs", Some(&none)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let alone = agent.wait_for("alone running", Duration::from_secs(60), |a| {
        let allocs = a.get("/v1/job/alone/allocations").ok()?.json();
        allocs
            .as_array()?
            .iter()
            .find(|x| x["ClientStatus"] == "running")?["ID"]
            .as_str()
            .map(str::to_string)
    });
    let _listener = outside_listener(&outside);
    let (ok, out) = connect_from_alloc(
        &agent,
        &alone,
        SocketAddr::from((outside.ip(), OUTSIDE_PORT)),
    );
    assert!(!ok, "a none-mode allocation reached the outside: {out}");
    let (ok, out) = connect_from_alloc(
        &agent,
        &alone,
        SocketAddr::from((Ipv4Addr::LOCALHOST, OTHER_UNMAPPED)),
    );
    assert!(ok, "its own loopback: {out}");

    // Bridge: no node offers it here.
    let bridged = job(
        "bridged",
        serde_json::json!({"Mode": "bridge", "DynamicPorts": [{"Label": "p", "To": 80}]}),
        &[80],
    );
    let r = agent.http("PUT", "/v1/jobs", Some(&bridged)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    agent.wait_for("missing network reported", Duration::from_secs(30), |a| {
        let evals = a.get("/v1/job/bridged/evaluations").ok()?.text();
        evals.contains("missing network").then_some(())
    });
    for id in ["hostweb", "alone", "bridged"] {
        let r = agent
            .http("DELETE", &format!("/v1/job/{id}"), None)
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    agent.wait_for("nothing left", Duration::from_secs(60), |_| {
        leftovers(&host, &tag, &[]).is_empty().then_some(())
    });
}
