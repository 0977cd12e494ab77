//! Test topologies (feature `testing`): namespaces that delete themselves, veth pairs between
//! namespaces, TCP/UDP echo servers that record their peers' addresses, and clients — all
//! entered by `setns` on dedicated threads, never `ip netns exec`, never the root namespace.
//! Used by this crate's privileged tests, the ebpf crate's and the integration tests.
//! Helpers panic with a message on failure: they are for tests.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

pub use isolation::privileged::require_root;

pub use crate::namespace::loopback_up;

use crate::error::{Error, Result};
use crate::{exec, link, namespace};

/// How long a test client waits to connect, or for a reply.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `<tag>-<pid>-<n>`.
pub fn unique_name(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{tag}-{}-{n}", std::process::id())
}

/// A short name unique to this process and call, fit for an interface (≤ 15 bytes):
/// `<tag ≤ 4><pid % 10^6 in base 36><n>`.
pub fn unique_ifname(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tag: String = tag.chars().take(4).collect();
    format!("{tag}{}{n}", base36(std::process::id() % 1_000_000))
        .chars()
        .take(link::MAX_IFNAME_LEN)
        .collect()
}

fn base36(mut v: u32) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[(v % 36) as usize]);
        v /= 36;
        if v == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// A network namespace created for a test (with `lo` up) and deleted on drop, even when
/// the test panics.
#[derive(Debug)]
pub struct TestNs {
    name: String,
}

impl TestNs {
    /// Creates `ndt-<tag>-<pid>-<n>`.
    pub fn new(tag: &str) -> TestNs {
        let name = unique_name(&format!("ndt-{tag}"));
        if let Err(e) = namespace::create(&name) {
            panic!("cannot create test namespace {name}: {e}");
        }
        let ns = TestNs { name };
        if let Err(e) = loopback_up(&ns.name) {
            panic!("cannot set lo up in {}: {e}", ns.name);
        }
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        namespace::path(&self.name)
    }

    /// Runs `f` on a thread inside this namespace.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        run_in(&self.name, f)
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if let Err(e) = namespace::delete(&self.name) {
            eprintln!("cannot delete test namespace {}: {e}", self.name);
        }
    }
}

/// Runs `f` on a thread inside the namespace `ns`; panics if it cannot be entered.
pub fn run_in<R: Send>(ns: &str, f: impl FnOnce() -> R + Send) -> R {
    match namespace::run_in(ns, f) {
        Ok(r) => r,
        Err(e) => panic!("cannot run in namespace {ns}: {e}"),
    }
}

fn parse_addr(s: &str) -> (Ipv4Addr, u8) {
    let parsed = s
        .split_once('/')
        .and_then(|(a, p)| Some((a.parse().ok()?, p.parse().ok().filter(|p| *p <= 32)?)));
    match parsed {
        Some(p) => p,
        None => panic!("{s:?} is not ADDRESS/PREFIX"),
    }
}

/// A veth pair between two namespaces, both ends up with the given `address/prefix`
/// (e.g. `"10.99.0.1/24"`); returns the names of the ends in `ns_a` and `ns_b`. The pair
/// goes away with either namespace.
pub fn veth_pair_between(ns_a: &str, ns_b: &str, addr_a: &str, addr_b: &str) -> (String, String) {
    let (ip_a, prefix_a) = parse_addr(addr_a);
    let (ip_b, prefix_b) = parse_addr(addr_b);
    let name_a = unique_ifname("vta");
    let name_b = unique_ifname("vtb");
    let path_a = namespace::path(ns_a);
    let path_b = namespace::path(ns_b);
    let result = exec::on_thread("veth pair between test namespaces", Some(&path_a), || {
        let file_b =
            std::fs::File::open(&path_b).map_err(|e| Error::io("cannot open", &path_b, e))?;
        exec::block_on("veth pair", async {
            use std::os::fd::AsRawFd;
            let h = exec::connect("veth pair")?;
            let peer = LinkMessageBuilder::<LinkUnspec>::new()
                .name(name_b.clone())
                .setns_by_fd(file_b.as_raw_fd())
                .build();
            let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
                .name(name_a.clone())
                .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                .up()
                .build();
            h.link()
                .add(msg)
                .execute()
                .await
                .map_err(|e| Error::netlink("cannot create the veth pair", e))?;
            configure_end(&h, &name_a, ip_a, prefix_a).await?;
            exec::enter(&path_b)?;
            let h = exec::connect("veth pair")?;
            configure_end(&h, &name_b, ip_b, prefix_b).await
        })
    });
    if let Err(e) = result {
        panic!("cannot connect {ns_a} ({addr_a}) and {ns_b} ({addr_b}): {e}");
    }
    (name_a, name_b)
}

async fn configure_end(h: &rtnetlink::Handle, name: &str, ip: Ipv4Addr, prefix: u8) -> Result<()> {
    let l = link::by_name(h, name)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: format!("link {name}"),
            hint: "veth end missing".to_string(),
        })?;
    h.address()
        .add(l.header.index, ip.into(), prefix)
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("cannot add {ip}/{prefix} to {name}"), e))?;
    h.link()
        .set(LinkUnspec::new_with_index(l.header.index).up().build())
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("cannot set {name} up"), e))
}

/// Adds a default route via `gateway` in the namespace `ns`.
pub fn add_default_route(ns: &str, gateway: Ipv4Addr) {
    let result = exec::with_netlink(
        "add default route",
        Some(&namespace::path(ns)),
        |h| async move {
            h.route()
                .add(
                    RouteMessageBuilder::<Ipv4Addr>::new()
                        .gateway(gateway)
                        .build(),
                )
                .execute()
                .await
                .map_err(|e| Error::netlink(format!("cannot add a default route via {gateway}"), e))
        },
    );
    if let Err(e) = result {
        panic!("in {ns}: {e}");
    }
}

/// An echo server running in a namespace: answers each TCP connection (or UDP datagram)
/// with what it received, and records the peer addresses it saw. Stops on drop.
#[derive(Debug)]
pub struct EchoServer {
    pub addr: SocketAddrV4,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// The peers seen so far, in order.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const POLL: Duration = Duration::from_millis(5);

fn spawn_server(
    ns: &str,
    addr: SocketAddrV4,
    serve: impl FnOnce(
            SocketAddrV4,
            mpsc::Sender<std::io::Result<()>>,
            Arc<Mutex<Vec<SocketAddr>>>,
            Arc<AtomicBool>,
        ) + Send
        + 'static,
) -> EchoServer {
    let peers = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let path = namespace::path(ns);
    let (p, s) = (peers.clone(), stop.clone());
    let thread = std::thread::spawn(move || {
        if let Err(e) = exec::enter(&path) {
            let _ = ready_tx.send(Err(std::io::Error::other(e.to_string())));
            return;
        }
        serve(addr, ready_tx, p, s);
    });
    match ready_rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(())) => EchoServer {
            addr,
            peers,
            stop,
            thread: Some(thread),
        },
        Ok(Err(e)) => panic!("echo server on {addr} in {ns}: {e}"),
        Err(e) => panic!("echo server on {addr} in {ns} did not start: {e}"),
    }
}

/// A TCP echo server on `addr:port` in the namespace `ns`.
pub fn tcp_echo_server_in(ns: &str, addr: Ipv4Addr, port: u16) -> EchoServer {
    spawn_server(
        ns,
        SocketAddrV4::new(addr, port),
        |addr, ready, peers, stop| {
            let listener =
                match TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
            let _ = ready.send(Ok(()));
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, peer)) => {
                        if let Ok(mut p) = peers.lock() {
                            p.push(peer);
                        }
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(CLIENT_TIMEOUT));
                        let mut buf = [0u8; 512];
                        if let Ok(n) = conn.read(&mut buf) {
                            let _ = conn.write_all(&buf[..n]);
                        }
                    }
                    Err(_) => std::thread::sleep(POLL),
                }
            }
        },
    )
}

/// A UDP echo server on `addr:port` in the namespace `ns`.
pub fn udp_echo_server_in(ns: &str, addr: Ipv4Addr, port: u16) -> EchoServer {
    spawn_server(
        ns,
        SocketAddrV4::new(addr, port),
        |addr, ready, peers, stop| {
            let socket = match UdpSocket::bind(addr)
                .and_then(|s| s.set_read_timeout(Some(POLL * 4)).map(|()| s))
            {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            let _ = ready.send(Ok(()));
            let mut buf = [0u8; 512];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                    if let Ok(mut p) = peers.lock() {
                        p.push(peer);
                    }
                    let _ = socket.send_to(&buf[..n], peer);
                }
            }
        },
    )
}

fn in_ns_io<R: Send>(
    ns: &str,
    f: impl FnOnce() -> std::io::Result<R> + Send,
) -> std::io::Result<R> {
    namespace::run_in(ns, f).map_err(|e| std::io::Error::other(e.to_string()))?
}

/// Connects from the namespace `ns` to `addr:port` over TCP, sends a line and returns the
/// echoed reply.
pub fn tcp_connect_from(ns: &str, addr: Ipv4Addr, port: u16) -> std::io::Result<String> {
    in_ns_io(ns, || {
        let target = SocketAddr::from(SocketAddrV4::new(addr, port));
        let mut conn = TcpStream::connect_timeout(&target, CLIENT_TIMEOUT)?;
        conn.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        let msg = format!("hello from {ns}");
        conn.write_all(msg.as_bytes())?;
        let mut buf = [0u8; 512];
        let n = conn.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}

/// Sends a datagram from the namespace `ns` to `addr:port` and returns the echoed reply.
pub fn udp_send_from(ns: &str, addr: Ipv4Addr, port: u16) -> std::io::Result<String> {
    in_ns_io(ns, || {
        let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
        socket.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        socket.connect(SocketAddrV4::new(addr, port))?;
        let msg = format!("hello from {ns}");
        socket.send(msg.as_bytes())?;
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}
