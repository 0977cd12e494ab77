//! Privileged tests of the netns crate: real namespaces, links, addresses, routes and
//! nftables, all inside namespaces each test creates (unique names, deleted on drop even
//! when the test fails). Skipped without root unless `NODED_REQUIRE_PRIVILEGED=1`.

#![allow(clippy::unwrap_used)] // test fixtures: a failure is the test failing

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use netns::nft::Endpoint;
use netns::testing::{
    require_root, tcp_connect_from, tcp_echo_server_in, udp_echo_server_in, udp_send_from,
    unique_ifname, unique_name, veth_pair_between, TestNs,
};
use netns::{
    bridge, namespace, veth, BridgeConfig, Error, Firewall, Mapping, NftPortMapper, PortMapBackend,
    Proto,
};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn config(name: &str, subnet: &str) -> BridgeConfig {
    BridgeConfig {
        name: name.to_string(),
        subnet: subnet.parse().unwrap(),
    }
}

/// Runs `ip` with `args` in the calling thread's namespace (a child starts in its spawning
/// thread's namespace): for fixtures the crate under test must not make itself.
fn ip_cmd(args: &[&str]) {
    let status = Command::new("ip").args(args).status().unwrap();
    assert!(status.success(), "ip {args:?} failed");
}

fn root_ip_forward() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap()
}

#[test]
fn namespace_create_list_delete_round_trip_and_a_dead_name_is_recreated() {
    if !require_root("network namespaces") {
        return;
    }
    let prefix = unique_name("ndt-rt");
    let a = format!("{prefix}-a");
    let b = format!("{prefix}-b");
    let path = namespace::create(&a).unwrap();
    assert_eq!(path, namespace::path(&a));
    assert!(namespace::exists(&a));
    // Idempotent: the same namespace, not a new one.
    let inode = |p: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).unwrap().ino()
    };
    let first = inode(&path);
    namespace::create(&a).unwrap();
    assert_eq!(inode(&path), first);
    namespace::create(&b).unwrap();
    assert_eq!(
        namespace::list(&prefix).unwrap(),
        vec![a.clone(), b.clone()]
    );
    // run_in enters it: a fresh namespace has only lo.
    let links = namespace::run_in(&a, || veth::list("").unwrap()).unwrap();
    assert_eq!(
        links.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        vec!["lo"]
    );

    namespace::delete(&a).unwrap();
    namespace::delete(&a).unwrap();
    assert!(!namespace::exists(&a));
    assert_eq!(namespace::list(&prefix).unwrap(), vec![b.clone()]);

    // A dead name: the file is there, no namespace is mounted on it (after a reboot).
    std::fs::write(namespace::path(&a), b"").unwrap();
    assert!(!namespace::exists(&a));
    assert!(namespace::run_in(&a, || ()).is_err());
    namespace::create(&a).unwrap();
    assert!(namespace::exists(&a));

    for n in [&a, &b] {
        namespace::delete(n).unwrap();
    }
    assert!(namespace::list(&prefix).unwrap().is_empty());
    assert!(matches!(
        namespace::create("../escape"),
        Err(Error::Invalid { .. })
    ));
}

#[test]
fn bridge_ensure_is_idempotent_and_refuses_foreign_links_and_overlapping_subnets() {
    if !require_root("bridge in a test namespace") {
        return;
    }
    let root_forward = root_ip_forward();
    let host = TestNs::new("br");
    host.run(|| {
        assert_eq!(netns::sysctl::read("net.ipv4.ip_forward").unwrap(), "0");
        let br = bridge::ensure(&config("ndbr0", "10.200.0.0/24")).unwrap();
        assert_eq!(br.gateway, ip("10.200.0.1"));
        let again = bridge::ensure(&config("ndbr0", "10.200.0.0/24")).unwrap();
        assert_eq!(again, br);
        assert_eq!(bridge::get("ndbr0").unwrap(), Some(br.clone()));
        assert_eq!(netns::sysctl::read("net.ipv4.ip_forward").unwrap(), "1");

        // A link of that name that is not noded's.
        ip_cmd(&["link", "add", "foreign0", "type", "bridge"]);
        let e = bridge::ensure(&config("foreign0", "10.202.0.0/24")).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Config {
                    setting: "bridge_network_name",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("foreign0"), "{e}");
        assert!(bridge::remove("foreign0").is_err());

        // A subnet that overlaps another interface's address: refused, nothing created.
        ip_cmd(&["addr", "add", "10.201.0.5/16", "dev", "foreign0"]);
        let e = bridge::ensure(&config("ndbr1", "10.201.3.0/24")).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Config {
                    setting: "bridge_network_subnet",
                    ..
                }
            ),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("10.201.0.5/16") && msg.contains("foreign0"),
            "{msg}"
        );
        assert!(veth::list("ndbr1").unwrap().is_empty());
        // The bridge's own address does not count as a clash.
        bridge::ensure(&config("ndbr0", "10.200.0.0/24")).unwrap();
        // A /31 leaves no room for allocations.
        assert!(bridge::ensure(&config("ndbr2", "10.203.0.0/31")).is_err());

        bridge::remove("ndbr0").unwrap();
        bridge::remove("ndbr0").unwrap();
        assert!(veth::list("ndbr").unwrap().is_empty());
    });
    assert_eq!(
        root_ip_forward(),
        root_forward,
        "the root namespace's ip_forward changed"
    );
}

#[test]
fn attached_namespaces_reach_each_other_over_the_bridge_and_detach_removes_the_veth() {
    if !require_root("veth pairs in test namespaces") {
        return;
    }
    let host = TestNs::new("vh");
    let a = TestNs::new("va");
    let b = TestNs::new("vb");
    let (veth_a, veth_b) = (unique_ifname("ndv"), unique_ifname("ndv"));
    let br = host.run(|| bridge::ensure(&config("ndbr0", "10.210.0.0/24")).unwrap());
    let att_a = host.run(|| veth::attach(&br, a.name(), &veth_a, ip("10.210.0.2")).unwrap());
    host.run(|| veth::attach(&br, b.name(), &veth_b, ip("10.210.0.3")).unwrap());
    assert_eq!(att_a.prefix, 24);
    assert_eq!(att_a.gateway, ip("10.210.0.1"));

    let links = host.run(|| veth::list("ndv").unwrap());
    assert_eq!(links.len(), 2);
    assert!(
        links.iter().all(|l| l.master == Some(br.index)),
        "{links:?}"
    );

    // Inside: eth0 with the address, lo, and the default route via the gateway.
    let (names, routes) = a.run(|| {
        let names: Vec<String> = veth::list("")
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        (
            names,
            std::fs::read_to_string("/proc/thread-self/net/route").unwrap(),
        )
    });
    assert_eq!(names, vec!["eth0".to_string(), "lo".to_string()]);
    // /proc/net/route: Iface Destination Gateway (hex, little-endian); 10.210.0.1 = 0100D20A.
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("eth0\t00000000\t0100D20A")),
        "no default route via 10.210.0.1:\n{routes}"
    );

    let server = tcp_echo_server_in(b.name(), ip("10.210.0.3"), 8080);
    let reply = tcp_connect_from(a.name(), ip("10.210.0.3"), 8080).unwrap();
    assert_eq!(reply, format!("hello from {}", a.name()));
    assert_eq!(server.peers()[0].ip(), IpAddr::V4(ip("10.210.0.2")));
    // And the gateway (the host) reaches an allocation.
    assert!(tcp_connect_from(host.name(), ip("10.210.0.3"), 8080).is_ok());

    // Refusals leave what exists alone.
    let e = host.run(|| veth::attach(&br, a.name(), &veth_a, ip("10.210.0.4")).unwrap_err());
    assert!(matches!(e, Error::Exists { .. }), "{e}");
    let e = host
        .run(|| veth::attach(&br, a.name(), &unique_ifname("ndx"), ip("10.211.0.4")).unwrap_err());
    assert!(matches!(e, Error::Invalid { .. }), "{e}");
    let e = host.run(|| {
        veth::attach(
            &br,
            "ndt-missing-ns",
            &unique_ifname("ndx"),
            ip("10.210.0.9"),
        )
        .unwrap_err()
    });
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    // The peer's name is taken inside the namespace: the whole pair is refused.
    let e = host
        .run(|| veth::attach(&br, b.name(), &unique_ifname("ndx"), ip("10.210.0.9")).unwrap_err());
    assert!(matches!(e, Error::Netlink { .. }), "{e}");
    assert!(host.run(|| veth::list("ndx").unwrap()).is_empty());
    assert_eq!(host.run(|| veth::list("ndv").unwrap()).len(), 2);

    host.run(|| veth::detach(&veth_a).unwrap());
    host.run(|| veth::detach(&veth_a).unwrap());
    let left = host.run(|| veth::list("ndv").unwrap());
    assert_eq!(
        left.iter().map(|l| l.name.clone()).collect::<Vec<_>>(),
        vec![veth_b.clone()]
    );
    assert_eq!(a.run(|| veth::list("eth").unwrap()), vec![]);
    assert!(tcp_connect_from(a.name(), ip("10.210.0.3"), 8080).is_err());
    host.run(|| veth::detach(&veth_b).unwrap());
    assert!(host.run(|| veth::list("ndv").unwrap()).is_empty());
}

fn mapping(
    proto: Proto,
    host_ip: &str,
    host_port: u16,
    alloc_ip: &str,
    alloc_port: u16,
) -> Mapping {
    Mapping {
        proto,
        host_ip: ip(host_ip),
        host_port,
        alloc_ip: ip(alloc_ip),
        alloc_port,
    }
}

#[test]
fn nftables_masquerade_isolation_and_port_map_fallback() {
    if !require_root("nftables in test namespaces") {
        return;
    }
    let host = TestNs::new("nh");
    let outside = TestNs::new("no");
    let a = TestNs::new("na");
    let b = TestNs::new("nb");
    veth_pair_between(host.name(), outside.name(), "10.99.0.1/24", "10.99.0.2/24");
    let br = host.run(|| bridge::ensure(&config("ndbr0", "10.220.0.0/24")).unwrap());
    host.run(|| veth::attach(&br, a.name(), &unique_ifname("ndv"), ip("10.220.0.2")).unwrap());
    host.run(|| veth::attach(&br, b.name(), &unique_ifname("ndv"), ip("10.220.0.3")).unwrap());

    let fw = host.run(|| Firewall::ensure(&br).unwrap());
    host.run(|| Firewall::ensure(&br).unwrap());
    let mut tables = host.run(|| Firewall::list_tables().unwrap());
    tables.sort();
    assert_eq!(
        tables,
        vec![
            ("bridge".to_string(), "noded".to_string()),
            ("ip".to_string(), "noded".to_string())
        ]
    );
    // Ensuring twice leaves one copy of each rule.
    let ruleset = host.run(|| {
        Command::new("nft")
            .args(["list", "ruleset"])
            .output()
            .unwrap()
    });
    let ruleset = String::from_utf8_lossy(&ruleset.stdout).into_owned();
    assert_eq!(ruleset.matches("masquerade").count(), 1, "{ruleset}");

    // Masquerade: the outside sees the host's address, not the allocation's.
    let outside_server = tcp_echo_server_in(outside.name(), ip("10.99.0.2"), 9000);
    tcp_connect_from(a.name(), ip("10.99.0.2"), 9000).unwrap();
    assert_eq!(outside_server.peers(), vec![outside_server.peers()[0]]);
    assert_eq!(outside_server.peers()[0].ip(), IpAddr::V4(ip("10.99.0.1")));

    // Isolation: B's ports are closed to A until mapped.
    let b_http = tcp_echo_server_in(b.name(), ip("10.220.0.3"), 8080);
    let b_other = tcp_echo_server_in(b.name(), ip("10.220.0.3"), 8081);
    assert!(tcp_connect_from(a.name(), ip("10.220.0.3"), 8080).is_err());
    let m = mapping(Proto::Tcp, "10.99.0.1", 20080, "10.220.0.3", 8080);
    host.run(|| fw.allow(&m).unwrap());
    host.run(|| fw.allow(&m).unwrap());
    assert_eq!(
        host.run(|| fw.list_allowed().unwrap()),
        vec![Endpoint {
            ip: ip("10.220.0.3"),
            proto: Proto::Tcp,
            port: 8080
        }]
    );
    tcp_connect_from(a.name(), ip("10.220.0.3"), 8080).unwrap();
    assert!(tcp_connect_from(a.name(), ip("10.220.0.3"), 8081).is_err());
    assert!(b_other.peers().is_empty());

    // The nftables port-map: an external client reaches B through host_ip:host_port and B
    // sees the client's own address.
    let pm = host.run(|| NftPortMapper::ensure(&br).unwrap());
    assert_eq!(pm.name(), "nftables");
    host.run(|| pm.insert(&m).unwrap());
    host.run(|| pm.insert(&m).unwrap());
    let udp = mapping(Proto::Udp, "10.99.0.1", 20053, "10.220.0.3", 5353);
    host.run(|| pm.insert(&udp).unwrap());
    let mut expected = vec![m, udp];
    expected.sort();
    assert_eq!(host.run(|| pm.list().unwrap()), expected);

    tcp_connect_from(outside.name(), ip("10.99.0.1"), 20080).unwrap();
    assert_eq!(
        b_http.peers().last().unwrap().ip(),
        IpAddr::V4(ip("10.99.0.2"))
    );
    // Host-local clients: 127.0.0.1 and the host's address.
    tcp_connect_from(host.name(), Ipv4Addr::LOCALHOST, 20080).unwrap();
    tcp_connect_from(host.name(), ip("10.99.0.1"), 20080).unwrap();
    // Another allocation through the host port (hairpin).
    tcp_connect_from(a.name(), ip("10.99.0.1"), 20080).unwrap();
    // UDP.
    let b_udp = udp_echo_server_in(b.name(), ip("10.220.0.3"), 5353);
    udp_send_from(outside.name(), ip("10.99.0.1"), 20053).unwrap();
    assert_eq!(b_udp.peers()[0].ip(), IpAddr::V4(ip("10.99.0.2")));

    // A changed target replaces the element.
    let moved = mapping(Proto::Tcp, "10.99.0.1", 20080, "10.220.0.3", 8081);
    host.run(|| pm.insert(&moved).unwrap());
    let mut expected = vec![moved, udp];
    expected.sort();
    assert_eq!(host.run(|| pm.list().unwrap()), expected);
    host.run(|| pm.insert(&m).unwrap());

    // Removed: refused again.
    host.run(|| pm.remove(&m).unwrap());
    host.run(|| pm.remove(&m).unwrap());
    assert!(tcp_connect_from(outside.name(), ip("10.99.0.1"), 20080).is_err());
    host.run(|| fw.disallow(&m).unwrap());
    host.run(|| fw.disallow(&m).unwrap());
    assert!(host.run(|| fw.list_allowed().unwrap()).is_empty());
    assert!(tcp_connect_from(a.name(), ip("10.220.0.3"), 8080).is_err());

    host.run(|| Firewall::remove_all().unwrap());
    host.run(|| Firewall::remove_all().unwrap());
    assert!(host.run(|| Firewall::list_tables().unwrap()).is_empty());
    assert!(host.run(|| pm.list().unwrap()).is_empty());
}
