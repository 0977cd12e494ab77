//! Port mapping through the real kernel, in network namespaces this test creates:
//!
//! ```text
//!  "ext" ns               "host" ns (the agent's)                    "alloc" ns
//!  eth0 10.77.0.2 ──veth── vext 10.77.0.1 (host_ip, tc here)
//!                          valloc 172.26.64.1 (gateway) ──veth── eth0 172.26.64.2 (servers)
//! ```
//! ip_forward=1 in the host ns only. Privileged: skips without root (fails with
//! `NODED_REQUIRE_PRIVILEGED=1`). Everything is removed by guards, also on panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ebpf::{Opened, PortMapper, PortMapperConfig};
use isolation::privileged::require_root;
use netns::portmap::{Mapping, PortMapBackend, Proto};

const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const EXT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const ALLOC_IP: Ipv4Addr = Ipv4Addr::new(172, 26, 64, 2);
const EXT_IF: &str = "vext";
const TIMEOUT: Duration = Duration::from_secs(3);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on a fresh std thread that has entered the named network namespace.
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("open netns");
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("thread in netns panicked")
    })
}

/// Three namespaces and two veth pairs; removed (with the node's BPF objects) on drop.
struct Topology {
    host: String,
    ext: String,
    alloc: String,
    pin_dir: PathBuf,
}

impl Topology {
    fn new() -> Topology {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let base = format!("ebpf-{}-{n}", std::process::id());
        let t = Topology {
            host: format!("{base}-h"),
            ext: format!("{base}-e"),
            alloc: format!("{base}-a"),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/noded-test-{}-{n}", std::process::id())),
        };
        for ns in [&t.host, &t.ext, &t.alloc] {
            run("ip", &["netns", "add", ns]);
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        let (h, e, a) = (t.host.as_str(), t.ext.as_str(), t.alloc.as_str());
        run(
            "ip",
            &[
                "-n", h, "link", "add", EXT_IF, "type", "veth", "peer", "name", "eth0", "netns", e,
            ],
        );
        run(
            "ip",
            &["-n", h, "addr", "add", "10.77.0.1/24", "dev", EXT_IF],
        );
        run("ip", &["-n", h, "link", "set", EXT_IF, "up"]);
        run(
            "ip",
            &["-n", e, "addr", "add", "10.77.0.2/24", "dev", "eth0"],
        );
        run("ip", &["-n", e, "link", "set", "eth0", "up"]);
        run(
            "ip",
            &[
                "-n", h, "link", "add", "valloc", "type", "veth", "peer", "name", "eth0", "netns",
                a,
            ],
        );
        run(
            "ip",
            &["-n", h, "addr", "add", "172.26.64.1/24", "dev", "valloc"],
        );
        run("ip", &["-n", h, "link", "set", "valloc", "up"]);
        run(
            "ip",
            &["-n", a, "addr", "add", "172.26.64.2/24", "dev", "eth0"],
        );
        run("ip", &["-n", a, "link", "set", "eth0", "up"]);
        run(
            "ip",
            &["-n", a, "route", "add", "default", "via", "172.26.64.1"],
        );
        // /proc/sys/net resolves to the opening thread's namespace.
        in_ns(h, || {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").expect("ip_forward")
        });
        t
    }

    fn config(&self) -> PortMapperConfig {
        PortMapperConfig {
            pin_dir: self.pin_dir.clone(),
            cgroup2_root: ebpf::cgroup2_root().expect("a cgroup2 mount"),
            interfaces: vec![EXT_IF.to_string()],
        }
    }

    fn open(&self) -> PortMapper {
        let cfg = self.config();
        in_ns(&self.host, || PortMapper::open(&cfg)).expect("PortMapper::open")
    }

    fn tc_filters(&self, dir: &str) -> String {
        run(
            "tc",
            &["-n", &self.host, "filter", "show", "dev", EXT_IF, dir],
        )
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let ifs = vec![EXT_IF.to_string()];
        let pin_dir = self.pin_dir.clone();
        // Best effort: the test may have removed everything already.
        let _ = thread::scope(|s| {
            s.spawn(|| {
                let file = std::fs::File::open(format!("/run/netns/{}", self.host)).ok()?;
                nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
                PortMapper::remove_all(&pin_dir, &ifs).ok()
            })
            .join()
        });
        for ns in [&self.host, &self.ext, &self.alloc] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A server in the alloc namespace that answers each TCP connection (or UDP datagram) with
/// the address it saw the client come from. Stops on drop.
struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Server {
    fn start(alloc_ns: &str, tcp_port: u16, udp_port: u16) -> Server {
        let (listener, udp) = in_ns(alloc_ns, || {
            (
                TcpListener::bind((ALLOC_IP, tcp_port)).expect("bind tcp"),
                UdpSocket::bind((ALLOC_IP, udp_port)).expect("bind udp"),
            )
        });
        let stop = Arc::new(AtomicBool::new(false));
        listener.set_nonblocking(true).expect("nonblocking");
        udp.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let s1 = stop.clone();
        let tcp_thread = thread::spawn(move || {
            while !s1.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, peer)) => {
                        let _ = conn.set_nonblocking(false);
                        let mut line = String::new();
                        let _ = BufReader::new(&conn).read_line(&mut line);
                        let _ = writeln!(conn, "{} {peer}", line.trim());
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        let s2 = stop.clone();
        let udp_thread = thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !s2.load(Ordering::SeqCst) {
                if let Ok((n, peer)) = udp.recv_from(&mut buf) {
                    let reply = format!("{} {peer}", String::from_utf8_lossy(&buf[..n]));
                    let _ = udp.send_to(reply.as_bytes(), peer);
                }
            }
        });
        Server {
            stop,
            threads: vec![tcp_thread, udp_thread],
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Connects from namespace `ns` to `to`, sends "hi", returns the server's view of the peer.
fn tcp_ask(ns: &str, to: SocketAddrV4) -> std::io::Result<SocketAddr> {
    in_ns(ns, || {
        let mut c = TcpStream::connect_timeout(&to.into(), TIMEOUT)?;
        c.set_read_timeout(Some(TIMEOUT))?;
        writeln!(c, "hi")?;
        let mut line = String::new();
        BufReader::new(&c).read_line(&mut line)?;
        let peer = line
            .trim()
            .strip_prefix("hi ")
            .ok_or_else(|| std::io::Error::other(format!("unexpected reply {line:?}")))?;
        peer.parse::<SocketAddr>().map_err(std::io::Error::other)
    })
}

/// Sends one datagram from namespace `ns` to `to` on an unconnected socket; returns the
/// server's view of the peer and the address the reply came from.
fn udp_ask(ns: &str, to: SocketAddrV4) -> std::io::Result<(SocketAddr, SocketAddr)> {
    in_ns(ns, || {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.send_to(b"hi", to)?;
        let mut buf = [0u8; 512];
        let (n, from) = s.recv_from(&mut buf)?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let peer = text
            .strip_prefix("hi ")
            .ok_or_else(|| std::io::Error::other(format!("unexpected reply {text:?}")))?;
        Ok((peer.parse().map_err(std::io::Error::other)?, from))
    })
}

fn mapping(proto: Proto, host_port: u16, alloc_port: u16) -> Mapping {
    Mapping {
        proto,
        host_ip: HOST_IP,
        host_port,
        alloc_ip: ALLOC_IP,
        alloc_port,
    }
}

fn refused(r: std::io::Result<SocketAddr>) -> bool {
    matches!(r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
}

#[test]
fn external_and_host_local_clients_reach_the_allocation_over_tcp_and_udp() {
    if !require_root("attaching BPF programs in test network namespaces") {
        return;
    }
    let topo = Topology::new();
    let t0 = Instant::now();
    let mapper = topo.open();
    eprintln!("PortMapper::open (load + pin + attach): {:?}", t0.elapsed());
    assert_eq!(mapper.opened(), Opened::Loaded);
    let _server = Server::start(&topo.alloc, 8080, 5353);
    let tcp = mapping(Proto::Tcp, 20000, 8080);
    let udp = mapping(Proto::Udp, 20001, 5353);
    let t1 = Instant::now();
    mapper.insert(&tcp).unwrap();
    eprintln!("PortMapper::insert: {:?}", t1.elapsed());
    mapper.insert(&udp).unwrap();
    mapper.insert(&udp).unwrap();
    assert_eq!(mapper.list().unwrap(), vec![tcp, udp]);

    let host = |port| SocketAddrV4::new(HOST_IP, port);
    let lo = |port| SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);

    // Another host: DNAT at tc ingress, the task sees the client's own address, and the
    // replies' source is translated back (or the client's TCP would never connect).
    let peer = tcp_ask(&topo.ext, host(20000)).unwrap();
    assert_eq!(peer.ip(), std::net::IpAddr::V4(EXT_IP));
    let (peer, from) = udp_ask(&topo.ext, host(20001)).unwrap();
    assert_eq!(peer.ip(), std::net::IpAddr::V4(EXT_IP));
    assert_eq!(from, SocketAddr::V4(host(20001)));

    // This host, through 127.0.0.1 and through host_ip: the cgroup hooks.
    tcp_ask(&topo.host, lo(20000)).unwrap();
    tcp_ask(&topo.host, host(20000)).unwrap();
    let (_, from) = udp_ask(&topo.host, lo(20001)).unwrap();
    assert_eq!(
        from,
        SocketAddr::V4(lo(20001)),
        "recvmsg4 shows the address the client sent to"
    );
    let (_, from) = udp_ask(&topo.host, host(20001)).unwrap();
    assert_eq!(from, SocketAddr::V4(host(20001)));

    // A namespace that is not the agent's is left alone by the cgroup hooks.
    assert!(refused(tcp_ask(&topo.alloc, lo(20000))));
    // An unmapped port is not rewritten: it reaches the host namespace, where nothing listens.
    assert!(refused(tcp_ask(&topo.ext, host(20002))));
    // A mapped port on another address of the host is not rewritten either.
    assert!(refused(tcp_ask(
        &topo.host,
        SocketAddrV4::new(Ipv4Addr::new(172, 26, 64, 1), 20000)
    )));

    // Remove: the mapping stops, on both paths; removing again succeeds.
    mapper.remove(&tcp).unwrap();
    mapper.remove(&tcp).unwrap();
    assert_eq!(mapper.list().unwrap(), vec![udp]);
    assert!(refused(tcp_ask(&topo.ext, host(20000))));
    assert!(refused(tcp_ask(&topo.host, lo(20000))));
    assert!(udp_ask(&topo.ext, host(20001)).is_ok());
}

fn link_ids(pin_dir: &Path) -> Vec<String> {
    ["link_connect4", "link_sendmsg4", "link_recvmsg4"]
        .iter()
        .map(|l| {
            let out = run(
                "bpftool",
                &["link", "show", "pinned", &pin_dir.join(l).to_string_lossy()],
            );
            out.split(':').next().unwrap_or_default().trim().to_string()
        })
        .collect()
}

#[test]
fn pins_survive_the_agent_and_remove_all_leaves_nothing() {
    if !require_root("attaching BPF programs in test network namespaces") {
        return;
    }
    let topo = Topology::new();
    let _server = Server::start(&topo.alloc, 8080, 5353);
    let tcp = mapping(Proto::Tcp, 20000, 8080);
    let mapper = topo.open();
    mapper.insert(&tcp).unwrap();
    // "kill -9": the agent's fds go away, the pins stay, traffic keeps flowing.
    drop(mapper);
    let host = SocketAddrV4::new(HOST_IP, 20000);
    tcp_ask(&topo.ext, host).unwrap();
    tcp_ask(&topo.host, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 20000)).unwrap();

    // A restarted agent reopens without reloading and without dropping entries.
    let t0 = Instant::now();
    let mapper = topo.open();
    eprintln!("PortMapper::open (reopen pins): {:?}", t0.elapsed());
    assert_eq!(mapper.opened(), Opened::Reopened { tc_reattached: 0 });
    assert_eq!(mapper.list().unwrap(), vec![tcp]);
    drop(mapper);

    // A filter deleted behind the agent's back is attached again from the pinned program.
    run(
        "tc",
        &["-n", &topo.host, "filter", "del", "dev", EXT_IF, "ingress"],
    );
    assert!(refused(tcp_ask(&topo.ext, host)));
    let mapper = topo.open();
    assert_eq!(mapper.opened(), Opened::Reopened { tc_reattached: 1 });
    tcp_ask(&topo.ext, host).unwrap();
    drop(mapper);

    let links = link_ids(&topo.pin_dir);
    assert!(topo.tc_filters("ingress").contains("handle 0x6e64"));
    assert!(topo.tc_filters("egress").contains("handle 0x6e64"));
    let ifs = vec![EXT_IF.to_string()];
    in_ns(&topo.host, || PortMapper::remove_all(&topo.pin_dir, &ifs)).unwrap();
    assert!(!topo.pin_dir.exists(), "pin dir left behind");
    assert_eq!(topo.tc_filters("ingress").trim(), "");
    assert_eq!(topo.tc_filters("egress").trim(), "");
    for id in links {
        let status = Command::new("bpftool")
            .args(["link", "show", "id", &id])
            .output()
            .unwrap();
        assert!(!status.status.success(), "cgroup link {id} still exists");
    }
    assert!(refused(tcp_ask(&topo.ext, host)));
    assert!(refused(tcp_ask(
        &topo.host,
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, 20000)
    )));
    // Idempotent.
    in_ns(&topo.host, || PortMapper::remove_all(&topo.pin_dir, &ifs)).unwrap();
}

/// The Internet checksum of `data` (RFC 1071), starting from the partial sum `sum`.
fn csum(data: &[u8], mut sum: u32) -> u16 {
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet + IPv4 + TCP/UDP frame with correct checksums computed from scratch (the
/// model the programs' incremental updates must agree with). `udp_csum: false` sends a UDP
/// datagram without a checksum (0). `frag` sets the more-fragments bit.
fn frame(
    proto: Proto,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    udp_csum: bool,
    frag: bool,
) -> Vec<u8> {
    let payload = b"payload of odd length";
    let l4_len = match proto {
        Proto::Tcp => 20,
        Proto::Udp => 8,
    } + payload.len();
    let mut l4 = vec![0u8; l4_len];
    l4[0..2].copy_from_slice(&src.port().to_be_bytes());
    l4[2..4].copy_from_slice(&dst.port().to_be_bytes());
    let csum_at = match proto {
        Proto::Tcp => {
            l4[4..8].copy_from_slice(&1234u32.to_be_bytes()); // seq
            l4[12] = 5 << 4; // data offset
            l4[13] = 0x18; // PSH|ACK
            l4[14..16].copy_from_slice(&512u16.to_be_bytes()); // window
            l4[20..].copy_from_slice(payload);
            16
        }
        Proto::Udp => {
            l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            l4[8..].copy_from_slice(payload);
            6
        }
    };
    if proto == Proto::Tcp || udp_csum {
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src.ip().octets());
        pseudo.extend_from_slice(&dst.ip().octets());
        pseudo.extend_from_slice(&[0, proto.ip_proto()]);
        pseudo.extend_from_slice(&(l4_len as u16).to_be_bytes());
        pseudo.extend_from_slice(&l4);
        let mut c = csum(&pseudo, 0);
        if proto == Proto::Udp && c == 0 {
            c = 0xffff;
        }
        l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    }
    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&0x4242u16.to_be_bytes());
    if frag {
        ip[6] = 0x20; // MF
    }
    ip[8] = 64;
    ip[9] = proto.ip_proto();
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let c = csum(&ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    f.extend_from_slice(&ip);
    f.extend_from_slice(&l4);
    f
}

#[test]
fn tc_programs_rewrite_addresses_ports_and_checksums_as_the_model_does() {
    if !require_root("loading BPF programs") {
        return;
    }
    let topo = Topology::new();
    let mapper = topo.open();
    let tcp = mapping(Proto::Tcp, 20000, 8080);
    let udp = mapping(Proto::Udp, 20001, 5353);
    mapper.insert(&tcp).unwrap();
    mapper.insert(&udp).unwrap();
    let ingress =
        libbpf_rs::ProgramHandle::from_pinned_path(topo.pin_dir.join("prog_tc_ingress")).unwrap();
    let egress =
        libbpf_rs::ProgramHandle::from_pinned_path(topo.pin_dir.join("prog_tc_egress")).unwrap();
    let client = SocketAddrV4::new(EXT_IP, 40000);
    let host = |p| SocketAddrV4::new(HOST_IP, p);
    let alloc = |p| SocketAddrV4::new(ALLOC_IP, p);

    // (program, proto, packet as sent, packet as the model translates it)
    let cases = [
        (
            "ingress tcp",
            &ingress,
            Proto::Tcp,
            (client, host(20000)),
            (client, alloc(8080)),
            true,
            false,
        ),
        (
            "ingress udp",
            &ingress,
            Proto::Udp,
            (client, host(20001)),
            (client, alloc(5353)),
            true,
            false,
        ),
        (
            "ingress udp without checksum",
            &ingress,
            Proto::Udp,
            (client, host(20001)),
            (client, alloc(5353)),
            false,
            false,
        ),
        (
            "egress tcp",
            &egress,
            Proto::Tcp,
            (alloc(8080), client),
            (host(20000), client),
            true,
            false,
        ),
        (
            "egress udp",
            &egress,
            Proto::Udp,
            (alloc(5353), client),
            (host(20001), client),
            true,
            false,
        ),
        (
            "unmapped port",
            &ingress,
            Proto::Tcp,
            (client, host(20002)),
            (client, host(20002)),
            true,
            false,
        ),
        (
            "mapped port, other address",
            &ingress,
            Proto::Tcp,
            (client, SocketAddrV4::new(EXT_IP, 20000)),
            (client, SocketAddrV4::new(EXT_IP, 20000)),
            true,
            false,
        ),
        (
            "protocol not mapped",
            &ingress,
            Proto::Udp,
            (client, host(20000)),
            (client, host(20000)),
            true,
            false,
        ),
        (
            "fragment",
            &ingress,
            Proto::Udp,
            (client, host(20001)),
            (client, host(20001)),
            true,
            true,
        ),
        (
            "unmapped reply",
            &egress,
            Proto::Tcp,
            (alloc(9999), client),
            (alloc(9999), client),
            true,
            false,
        ),
    ];
    for (name, prog, proto, (src, dst), (want_src, want_dst), with_csum, frag) in cases {
        let input = frame(proto, src, dst, with_csum, frag);
        let want = frame(proto, want_src, want_dst, with_csum, frag);
        let (verdict, out) = ebpf::tc_test_run(prog.as_fd(), &input).unwrap();
        assert_eq!(verdict, 0, "{name}: TC_ACT_OK");
        assert_eq!(out, want, "{name}: the packet differs from the model's");
    }
}
