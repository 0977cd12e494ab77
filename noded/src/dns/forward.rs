//! Names outside the domain go to the host's resolvers (or the configured `recursors`), the
//! query relayed as it came and the reply relayed as it came back. Bounded: at most
//! [`MAX_FORWARDS_IN_FLIGHT`] at once (more get SERVFAIL at once), each upstream tried for
//! [`FORWARD_TIMEOUT`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Forwarded queries waiting for an upstream at once, over every listener.
pub const MAX_FORWARDS_IN_FLIGHT: usize = 256;
/// How long one upstream gets to answer before the next is tried.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// Upstreams tried per query (resolv.conf allows three).
pub const MAX_UPSTREAMS: usize = 3;

/// Why a forwarded query got no reply.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream resolver is configured (dns.recursors, or nameserver lines in the host's /etc/resolv.conf)")]
    NoUpstream,
    #[error("no upstream answered: {0}")]
    Failed(String),
}

#[derive(Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    inflight: Arc<Semaphore>,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration) -> Forwarder {
        let mut upstreams = upstreams;
        upstreams.truncate(MAX_UPSTREAMS);
        Forwarder {
            upstreams,
            timeout,
            inflight: Arc::new(Semaphore::new(MAX_FORWARDS_IN_FLIGHT)),
        }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// A slot for one more forwarded query, if any is free.
    pub fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.inflight.clone().try_acquire_owned().ok()
    }

    /// The upstreams' reply to `query` over UDP, the first that answers with the same id.
    pub async fn forward_udp(&self, query: &[u8]) -> Result<Vec<u8>, ForwardError> {
        if self.upstreams.is_empty() {
            return Err(ForwardError::NoUpstream);
        }
        let mut problems = Vec::new();
        for upstream in &self.upstreams {
            match tokio::time::timeout(self.timeout, udp_once(*upstream, query)).await {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(e)) => problems.push(format!("{upstream}: {e}")),
                Err(_) => problems.push(format!("{upstream}: no answer in {:?}", self.timeout)),
            }
        }
        Err(ForwardError::Failed(problems.join("; ")))
    }

    /// The same over TCP (a client that asked over TCP may want more than 512 bytes).
    pub async fn forward_tcp(&self, query: &[u8]) -> Result<Vec<u8>, ForwardError> {
        if self.upstreams.is_empty() {
            return Err(ForwardError::NoUpstream);
        }
        let mut problems = Vec::new();
        for upstream in &self.upstreams {
            match tokio::time::timeout(self.timeout, tcp_once(*upstream, query)).await {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(e)) => problems.push(format!("{upstream}: {e}")),
                Err(_) => problems.push(format!("{upstream}: no answer in {:?}", self.timeout)),
            }
        }
        Err(ForwardError::Failed(problems.join("; ")))
    }
}

/// A reply to `query`: the same id, the QR bit set.
fn is_reply_to(reply: &[u8], query: &[u8]) -> bool {
    reply.len() >= 12 && query.len() >= 2 && reply[..2] == query[..2] && reply[2] & 0x80 != 0
}

async fn udp_once(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    // A fresh socket per query: a random source port, and `connect` makes the kernel drop
    // datagrams from anyone but the upstream.
    let sock = tokio::net::UdpSocket::bind(local).await?;
    sock.connect(upstream).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await?;
        if is_reply_to(&buf[..n], query) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp_once(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let len = u16::try_from(query.len()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "query over 65535 bytes")
    })?;
    let mut stream = tokio::net::TcpStream::connect(upstream).await?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let n = usize::from(stream.read_u16().await?);
    let mut reply = vec![0u8; n];
    stream.read_exact(&mut reply).await?;
    if !is_reply_to(&reply, query) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the reply does not match the query's id",
        ));
    }
    Ok(reply)
}

/// The name servers of a resolv.conf (port 53), less `own`: the addresses noded's DNS
/// listens on, which would send a query back to itself.
pub fn upstreams_from_resolv_conf(content: &str, own: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in content.lines() {
        let mut fields = line.split_whitespace();
        if fields.next() != Some("nameserver") {
            continue;
        }
        let Some(ip) = fields.next().and_then(|f| f.parse::<IpAddr>().ok()) else {
            continue;
        };
        let addr = SocketAddr::new(ip, 53);
        let ours = own
            .iter()
            .any(|o| *o == addr || (o.port() == 53 && o.ip().is_unspecified()));
        if !ours && !out.contains(&addr) {
            out.push(addr);
        }
    }
    out.truncate(MAX_UPSTREAMS);
    out
}
