//! (b) Traffic from the ext namespace to a task-like TCP server in an allocation, through
//! `host_ip:host_port`: first through the eBPF mapping (tc on the host's ext interface), then,
//! the eBPF objects removed, through a plain nftables `dnat` rule in the same host namespace.
//!
//! - Connection rate: `threads` clients, each in a loop for `seconds`: connect, send one
//!   byte, read the echoed byte, close with an RST (SO_LINGER 0: no TIME_WAIT, so the run is
//!   not limited by ephemeral ports; conntrack drops the flow in 10 s rather than 120 s).
//! - Throughput: one stream for `seconds`, 64 KiB writes; the server counts what it read
//!   and answers the count, which must equal what was sent.
//!
//! Each path is validated first: before its mapping exists a connection must fail, after it
//! must echo.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netns::nft::Endpoint;
use netns::{Ipam, Mapping, PortMapBackend, Proto};

use crate::stats::ratio;
use crate::topo::{enter, in_ns, run, Topology, EXT_IP, HOST_IP};
use crate::{Context, Options, Result};

const SERVER_PORT: u16 = 8080;
const HOST_PORT: u16 = 28080;
const SERVER_THREADS: usize = 4;
const TIMEOUT: Duration = Duration::from_secs(2);
const CHUNK: usize = 64 << 10;
/// Connection failures tolerated in a rate run before it is declared broken.
const MAX_FAILURES: u64 = 100;

/// One path's figures.
#[derive(Debug, Default, Clone, Copy)]
pub struct PathFigures {
    pub conn_per_s: f64,
    pub failures: u64,
    pub mbps: f64,
}

#[derive(Debug, Default)]
pub struct TrafficFigures {
    pub ebpf: PathFigures,
    pub nft: PathFigures,
    threads: usize,
    seconds: u64,
}

impl TrafficFigures {
    pub fn conn_ratio(&self) -> f64 {
        ratio(self.ebpf.conn_per_s, self.nft.conn_per_s)
    }

    pub fn print(&self) {
        println!(
            "(b) ext namespace → {HOST_IP}:{HOST_PORT} → allocation server :{SERVER_PORT} ({} client threads, {} s per run)",
            self.threads, self.seconds
        );
        println!("                         eBPF (tc)    nftables (dnat)   eBPF/nft");
        println!(
            "  connections/s          {:>10.0}   {:>12.0}       {:.3}",
            self.ebpf.conn_per_s,
            self.nft.conn_per_s,
            self.conn_ratio()
        );
        println!(
            "  one stream, MB/s       {:>10.0}   {:>12.0}       {:.3}",
            self.ebpf.mbps,
            self.nft.mbps,
            ratio(self.ebpf.mbps, self.nft.mbps)
        );
        println!(
            "  (failed connections: eBPF {}, nftables {}; each connection: connect, 1 byte each way, RST close)",
            self.ebpf.failures, self.nft.failures
        );
    }
}

/// The task-like server: `SERVER_THREADS` threads accepting on one listener bound inside the
/// allocation's namespace. First byte `e`: echo it and close; `p`: answer the client's
/// address as the server sees it (4 bytes); `s`: read to EOF and answer the byte count (8
/// bytes, big endian). Stops on drop.
struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    fn start(ns: &str, addr: Ipv4Addr) -> Result<Server> {
        // A socket belongs to the namespace it was made in; the threads may live anywhere.
        let listener = in_ns(ns, || {
            TcpListener::bind((addr, SERVER_PORT)).ctx(|| format!("binding {addr}:{SERVER_PORT}"))
        })?;
        listener
            .set_nonblocking(true)
            .ctx(|| "listener nonblocking".into())?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for _ in 0..SERVER_THREADS {
            let l = listener.try_clone().ctx(|| "cloning the listener".into())?;
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || serve(&l, &stop)));
        }
        Ok(Server { stop, threads })
    }
}

fn serve(listener: &TcpListener, stop: &AtomicBool) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((conn, peer)) => handle(conn, peer),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::from(50u16));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

fn handle(mut conn: TcpStream, peer: SocketAddr) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(TIMEOUT));
    let _ = conn.set_nodelay(true);
    let mut first = [0u8; 1];
    if conn.read_exact(&mut first).is_err() {
        return;
    }
    match first[0] {
        b'e' => {
            let _ = conn.write_all(&first);
        }
        b'p' => {
            let ip = match peer {
                SocketAddr::V4(a) => *a.ip(),
                SocketAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
            };
            let _ = conn.write_all(&ip.octets());
        }
        b's' => {
            let mut total: u64 = 0;
            let mut buf = vec![0u8; CHUNK];
            loop {
                match conn.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => total += n as u64,
                    Err(_) => return,
                }
            }
            let _ = conn.write_all(&total.to_be_bytes());
        }
        _ => {}
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn target() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(HOST_IP, HOST_PORT))
}

/// One connection: connect, one byte each way, RST close.
fn echo_once() -> std::io::Result<()> {
    let mut conn = TcpStream::connect_timeout(&target(), TIMEOUT)?;
    conn.set_read_timeout(Some(TIMEOUT))?;
    conn.set_nodelay(true)?;
    conn.write_all(b"e")?;
    let mut b = [0u8; 1];
    conn.read_exact(&mut b)?;
    if b != *b"e" {
        return Err(std::io::Error::other(format!("echoed {b:?}")));
    }
    nix::sys::socket::setsockopt(
        &conn,
        nix::sys::socket::sockopt::Linger,
        &libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )
    .map_err(std::io::Error::from)?;
    Ok(())
}

/// A connection must (or must not) get through right now.
fn check(topo: &Topology, expect: bool, path: &str) -> Result<()> {
    let got = in_ns(&topo.ext_ns, || Ok(echo_once()))?;
    match (got, expect) {
        (Ok(()), true) | (Err(_), false) => Ok(()),
        (Ok(()), false) => Err(format!(
            "{path}: {HOST_IP}:{HOST_PORT} answered before the mapping existed; the measurement would not be of the mapping"
        )),
        (Err(e), true) => Err(format!("{path}: a connection to {HOST_IP}:{HOST_PORT} failed: {e}")),
    }?;
    if !expect {
        return Ok(());
    }
    // Both paths must deliver the client's own address to the task (no masquerade inbound).
    let seen = in_ns(&topo.ext_ns, || {
        let mut conn = TcpStream::connect_timeout(&target(), TIMEOUT).ctx(|| "connect".into())?;
        conn.set_read_timeout(Some(TIMEOUT))
            .ctx(|| "timeout".into())?;
        conn.write_all(b"p").ctx(|| "write".into())?;
        let mut ip = [0u8; 4];
        conn.read_exact(&mut ip)
            .ctx(|| "read the peer address".into())?;
        Ok(Ipv4Addr::from(ip))
    })?;
    if seen != EXT_IP {
        return Err(format!(
            "{path}: the server saw the client as {seen}, not {EXT_IP}"
        ));
    }
    Ok(())
}

fn conn_rate(topo: &Topology, o: &Options) -> Result<(f64, u64)> {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(o.seconds);
    let mut threads = Vec::new();
    for _ in 0..o.threads {
        let (done, failed, stop, ns) = (
            done.clone(),
            failed.clone(),
            stop.clone(),
            topo.ext_ns.clone(),
        );
        threads.push(std::thread::spawn(move || -> Result<()> {
            enter(&ns)?;
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                match echo_once() {
                    Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => {
                        if failed.fetch_add(1, Ordering::Relaxed) >= MAX_FAILURES {
                            stop.store(true, Ordering::Relaxed);
                        }
                        0
                    }
                };
            }
            Ok(())
        }));
    }
    for t in threads {
        t.join()
            .map_err(|_| "a client thread panicked".to_string())??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    if failed > MAX_FAILURES {
        return Err(format!(
            "more than {MAX_FAILURES} connections failed: the path is broken, not slow"
        ));
    }
    Ok((done.load(Ordering::Relaxed) as f64 / elapsed, failed))
}

fn throughput(topo: &Topology, o: &Options) -> Result<f64> {
    let seconds = o.seconds;
    in_ns(&topo.ext_ns, || {
        let mut conn =
            TcpStream::connect_timeout(&target(), TIMEOUT).ctx(|| "stream connect".into())?;
        conn.set_read_timeout(Some(Duration::from_secs(seconds + 10)))
            .ctx(|| "stream timeout".into())?;
        let buf = vec![0x5a_u8; CHUNK];
        let started = Instant::now();
        let until = started + Duration::from_secs(seconds);
        conn.write_all(b"s").ctx(|| "stream write".into())?;
        let mut sent: u64 = 0;
        while Instant::now() < until {
            conn.write_all(&buf).ctx(|| "stream write".into())?;
            sent += CHUNK as u64;
        }
        conn.shutdown(std::net::Shutdown::Write)
            .ctx(|| "stream shutdown".into())?;
        let mut count = [0u8; 8];
        conn.read_exact(&mut count).ctx(|| "stream count".into())?;
        let elapsed = started.elapsed().as_secs_f64();
        let received = u64::from_be_bytes(count);
        if received != sent {
            return Err(format!("the server read {received} bytes of {sent} sent"));
        }
        Ok(sent as f64 / 1e6 / elapsed)
    })
}

fn measure_path(topo: &Topology, o: &Options, name: &str) -> Result<PathFigures> {
    eprintln!(
        "==> (b) {name}: connection rate {} s, then one stream {} s",
        o.seconds, o.seconds
    );
    let (conn_per_s, failures) = conn_rate(topo, o)?;
    let mbps = throughput(topo, o)?;
    Ok(PathFigures {
        conn_per_s,
        failures,
        mbps,
    })
}

/// Guards the service allocation (namespace and veth) made for (b).
struct ServiceAlloc {
    ns: String,
    veth: String,
    host_ns: String,
}

impl Drop for ServiceAlloc {
    fn drop(&mut self) {
        let veth = self.veth.clone();
        let _ = in_ns(&self.host_ns, || {
            netns::veth::detach(&veth).map_err(|e| e.to_string())
        });
        let _ = netns::namespace::delete(&self.ns);
    }
}

/// The nftables peer: one prerouting `dnat` rule in its own table.
fn nft_dnat(topo: &Topology, alloc_ip: Ipv4Addr) -> Result<()> {
    let table = topo.run_id.replace('-', "_");
    let script = format!(
        "table ip {table} {{\n  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    ip daddr {HOST_IP} tcp dport {HOST_PORT} dnat to {alloc_ip}:{SERVER_PORT}\n  }}\n}}\n"
    );
    let path = std::env::temp_dir().join(format!("{}-dnat.nft", topo.run_id));
    std::fs::write(&path, script).ctx(|| format!("writing {}", path.display()))?;
    let path_text = path.to_string_lossy().into_owned();
    // nft runs in the namespace of the thread that spawns it.
    let applied = in_ns(&topo.host_ns, || {
        run("nft", &["-f", &path_text]).map(|_| ())
    });
    let _ = std::fs::remove_file(&path);
    applied
}

pub fn measure(topo: &Topology, o: &Options) -> Result<TrafficFigures> {
    let ipam = Ipam::new(topo.bridge.subnet, topo.bridge.gateway);
    let addr = ipam
        .lease(&Default::default())
        .ok_or_else(|| "no address for the service allocation".to_string())?;
    let guard = ServiceAlloc {
        ns: topo.alloc_ns("svc"),
        veth: topo.veth("s"),
        host_ns: topo.host_ns.clone(),
    };
    let mapping = Mapping {
        proto: Proto::Tcp,
        host_ip: HOST_IP,
        host_port: HOST_PORT,
        alloc_ip: addr,
        alloc_port: SERVER_PORT,
    };
    netns::namespace::create(&guard.ns).ctx(|| format!("namespace {}", guard.ns))?;
    in_ns(&topo.host_ns, || {
        netns::veth::attach(&topo.bridge, &guard.ns, &guard.veth, addr)
            .ctx(|| format!("veth {}", guard.veth))?;
        topo.firewall
            .allow_endpoints(&[Endpoint::of(&mapping)])
            .ctx(|| "isolation set".into())
    })?;
    let _server = Server::start(&guard.ns, addr)?;

    check(topo, false, "eBPF")?;
    topo.mapper
        .insert(&mapping)
        .ctx(|| format!("mapping {mapping}"))?;
    check(topo, true, "eBPF")?;
    let ebpf = measure_path(topo, o, "eBPF")?;

    topo.mapper
        .remove(&mapping)
        .ctx(|| format!("removing {mapping}"))?;
    topo.remove_ebpf()?;
    check(topo, false, "nftables")?;
    nft_dnat(topo, addr)?;
    check(topo, true, "nftables")?;
    let nft = measure_path(topo, o, "nftables")?;
    Ok(TrafficFigures {
        ebpf,
        nft,
        threads: o.threads,
        seconds: o.seconds,
    })
}
