//! The sockets: per listening address, a TCP listener (bound first and without
//! SO_REUSEPORT, so that a second agent on the same address fails instead of silently
//! sharing the queries) and several UDP sockets sharing the port with SO_REUSEPORT, each
//! served by its own thread in a plain blocking loop (receive, answer from the view, send:
//! no allocation, no task wake-up). Forwarded queries go to the tokio runtime.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};

use super::answer::{answer, refused, servfail, Transport, Verdict};
use super::forward::Forwarder;
use super::view::{ViewCell, ViewReader};

/// UDP sockets (and threads) per listening address, at most.
pub const MAX_UDP_THREADS: usize = 4;
/// Open TCP connections per listening address; more are closed at once.
pub const MAX_TCP_CONNECTIONS: usize = 128;
/// A TCP connection with no query for this long is closed (RFC 7766 suggests seconds).
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a UDP thread looks at its stop flag while no query comes.
const UDP_POLL: Duration = Duration::from_millis(200);
/// The largest query read over UDP; longer datagrams are cut and answered FORMERR.
const MAX_QUERY: usize = 4096;

/// What every listener shares.
#[derive(Debug)]
pub struct Shared {
    pub cell: Arc<ViewCell>,
    pub forwarder: Option<Arc<Forwarder>>,
    pub runtime: tokio::runtime::Handle,
    /// Names outside the domain are answered REFUSED, not forwarded: set for a listener
    /// bound outside loopback and the bridge, which answers the catalog to other machines
    /// and must never be an open resolver.
    pub refuse_forwarding: bool,
}

/// The sockets of one address; stopped (and the port released) by [`Listener::stop`] or
/// on drop.
#[derive(Debug)]
pub struct Listener {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    tcp_stop: watch::Sender<bool>,
}

impl Listener {
    /// Binds `addr` (port 0: an ephemeral port, the same for UDP and TCP) and serves it.
    pub fn bind(
        addr: SocketAddr,
        shared: &Arc<Shared>,
        udp_threads: usize,
    ) -> std::io::Result<Listener> {
        let tcp = bind_tcp(addr)?;
        let addr = tcp.local_addr()?;
        let tcp = {
            let _guard = shared.runtime.enter();
            tokio::net::TcpListener::from_std(tcp)?
        };
        let mut sockets = Vec::new();
        for _ in 0..udp_threads.clamp(1, MAX_UDP_THREADS) {
            sockets.push(Arc::new(bind_udp(addr)?));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (i, sock) in sockets.into_iter().enumerate() {
            let (stop, shared) = (stop.clone(), shared.clone());
            let thread = std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || serve_udp(sock, shared, stop))?;
            threads.push(thread);
        }
        let (tcp_stop, stopped) = watch::channel(false);
        shared
            .runtime
            .spawn(serve_tcp(tcp, shared.clone(), stopped));
        Ok(Listener {
            addr,
            stop,
            threads,
            tcp_stop,
        })
    }

    /// Stops serving and waits for the UDP threads (at most [`UDP_POLL`]), so that the port
    /// is free when this returns. Open TCP connections finish their current query.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.tcp_stop.send(true);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // SO_REUSEADDR only (TIME_WAIT after a restart); no SO_REUSEPORT: the TCP port is what
    // keeps two agents from sharing one address.
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    Ok(sock.into())
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_port(true)?;
    sock.bind(&addr.into())?;
    let sock: UdpSocket = sock.into();
    sock.set_read_timeout(Some(UDP_POLL))?;
    Ok(sock)
}

fn serve_udp(sock: Arc<UdpSocket>, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    let mut reader = ViewReader::new(shared.cell.clone());
    let mut buf = vec![0u8; MAX_QUERY];
    let mut out = Vec::with_capacity(MAX_QUERY);
    while !stop.load(Ordering::Acquire) {
        let (n, peer) = match sock.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                tracing::warn!("dns: receiving on {:?}: {e}", sock.local_addr());
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let query = &buf[..n];
        match answer(reader.get(), query, Transport::Udp, &mut out) {
            Verdict::Reply => {
                let _ = sock.send_to(&out, peer);
            }
            Verdict::Drop => {}
            Verdict::Forward if shared.refuse_forwarding => {
                refused(query, &mut out);
                let _ = sock.send_to(&out, peer);
            }
            Verdict::Forward => forward_udp(&sock, &shared, query, peer, &mut out),
        }
    }
}

fn forward_udp(
    sock: &Arc<UdpSocket>,
    shared: &Arc<Shared>,
    query: &[u8],
    peer: SocketAddr,
    out: &mut Vec<u8>,
) {
    let slot = shared
        .forwarder
        .as_ref()
        .and_then(|f| Some((f.clone(), f.try_slot()?)));
    let Some((forwarder, slot)) = slot else {
        servfail(query, out);
        let _ = sock.send_to(out, peer);
        return;
    };
    let (sock, query) = (sock.clone(), query.to_vec());
    shared.runtime.spawn(async move {
        let _slot = slot;
        let reply = match forwarder.forward_udp(&query).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::debug!("dns: forwarding: {e}");
                let mut out = Vec::new();
                servfail(&query, &mut out);
                out
            }
        };
        // A UDP send does not block: the socket is shared with its thread.
        let _ = sock.send_to(&reply, peer);
    });
}

async fn serve_tcp(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.changed() => return,
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("dns: accepting on {:?}: {e}", listener.local_addr());
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(slot) = connections.clone().try_acquire_owned() else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = serve_tcp_connection(stream, &shared).await {
                tracing::debug!("dns: tcp connection: {e}");
            }
        });
    }
}

async fn serve_tcp_connection(
    mut stream: tokio::net::TcpStream,
    shared: &Shared,
) -> std::io::Result<()> {
    let mut reader = ViewReader::new(shared.cell.clone());
    let mut query = Vec::new();
    let mut out = Vec::new();
    loop {
        let len = match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            // Idle, or the client closed: either way the connection is done.
            Ok(Err(_)) | Err(_) => return Ok(()),
        };
        query.resize(len, 0);
        tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut query))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "query not sent in time")
            })??;
        let verdict = answer(reader.get(), &query, Transport::Tcp, &mut out);
        let reply: &[u8] = match verdict {
            Verdict::Reply => &out,
            Verdict::Drop => continue,
            Verdict::Forward if shared.refuse_forwarding => {
                refused(&query, &mut out);
                &out
            }
            Verdict::Forward => {
                match &shared.forwarder {
                    Some(f) => match f.forward_tcp(&query).await {
                        Ok(r) => out = r,
                        Err(e) => {
                            tracing::debug!("dns: forwarding: {e}");
                            servfail(&query, &mut out);
                        }
                    },
                    None => servfail(&query, &mut out),
                }
                &out
            }
        };
        let Ok(n) = u16::try_from(reply.len()) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(reply);
        stream.write_all(&framed).await?;
    }
}
