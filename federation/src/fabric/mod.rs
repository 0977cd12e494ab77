//! The endpoint: one UDP socket per agent that serves a [`Handler`] and dials peers, every
//! connection mutually authenticated against the cluster CA.
//!
//! A call is one bidirectional QUIC stream on a pooled connection: the caller writes one
//! `Request` frame (the method in the header) and finishes; the server writes one
//! `Response` or `Error` frame and finishes. A long-lived stream starts with an `Open` frame
//! and carries `Data` frames both ways.

mod error;
mod pool;
mod serve;
mod stream;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, IdleTimeout, TransportConfig, VarInt};
use tokio::task::JoinHandle;

pub use self::error::{CallError, FabricError};
use self::pool::Pool;
pub use self::pool::MAX_POOLED_PEERS;
pub use self::stream::FramedStream;
use self::stream::{read_frame, remote_error, write_frame};
use crate::frame::{FrameHeader, FrameKind};
use crate::identity::{IdentityError, PeerIdentity, Role};
pub use crate::remote::{ErrorCode, RemoteError};
use crate::tls::TlsMaterial;

/// How long [`Fabric::close`] waits for peers to acknowledge the close.
pub const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// The fabric's bounds.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Incoming connections served at once; more are refused.
    pub max_connections: usize,
    /// Concurrent streams (calls in flight) a peer may open on one connection.
    pub max_streams_per_connection: u32,
    /// The largest message (request, response or stream message) either way.
    pub max_message_bytes: usize,
    /// A TLS handshake not done within this is abandoned, on both sides.
    pub handshake_timeout: Duration,
    /// QUIC keep-alive pings on an idle connection.
    pub keep_alive: Duration,
    /// A connection that hears nothing for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 256,
            max_streams_per_connection: 128,
            max_message_bytes: 64 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// What an endpoint is.
#[derive(Debug, Clone)]
pub struct FabricConfig {
    /// The UDP address to bind (port 0 for any).
    pub bind: SocketAddr,
    /// This agent's region; calls expect servers of it unless told otherwise.
    pub region: String,
    /// This agent's role; its certificate must say the same.
    pub role: Role,
    pub tls: TlsMaterial,
    pub limits: Limits,
}

/// What a server does with requests. `method` is a caller-defined number (e.g. 1 = raft).
/// The fabric has verified `peer` from its certificate; deciding who may call what is the
/// handler's ([`PeerIdentity::require`]).
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        peer: PeerIdentity,
        method: u16,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, RemoteError>>;

    /// A long-lived bidirectional stream; by default refused.
    fn stream(
        &self,
        peer: PeerIdentity,
        method: u16,
        stream: FramedStream,
    ) -> BoxFuture<'static, ()> {
        let _ = peer;
        Box::pin(stream.send_error(RemoteError::new(
            ErrorCode::BadRequest,
            format!("method {method} does not open streams"),
        )))
    }
}

/// An endpoint. Cheap to clone: clones share the socket, the connections and the pool.
#[derive(Clone)]
pub struct Fabric {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    pool: Pool,
    local_addr: SocketAddr,
    region: String,
    role: Role,
    limits: Limits,
    /// Whether the endpoint accepts connections (it was bound with a handler).
    serving: bool,
    transport: Arc<quinn::TransportConfig>,
    closed: AtomicBool,
    accept_task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Fabric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fabric")
            .field("local_addr", &self.inner.local_addr)
            .field("region", &self.inner.region)
            .finish_non_exhaustive()
    }
}

impl Fabric {
    /// Binds UDP `config.bind` and serves `handler` (None for a dial-only endpoint, e.g. a
    /// CLI). Refuses a certificate that does not name `config.role` in `config.region`.
    pub async fn bind(
        config: FabricConfig,
        handler: Option<Arc<dyn Handler>>,
    ) -> Result<Fabric, FabricError> {
        let FabricConfig {
            bind,
            region,
            role,
            tls,
            limits,
        } = config;
        check_identity(&tls, role, &region)?;
        check_limits(&limits)?;
        let transport = Arc::new(transport_config(&limits)?);
        let bind_err = |e: std::io::Error| FabricError::Bind {
            addr: bind,
            reason: e.to_string(),
        };
        let endpoint = match handler {
            Some(_) => {
                let crypto = QuicServerConfig::try_from(tls.server_config()?)
                    .map_err(|e| FabricError::Limits(e.to_string()))?;
                let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
                server.transport_config(transport.clone());
                server.max_incoming(limits.max_connections.max(1));
                Endpoint::server(server, bind).map_err(bind_err)?
            }
            None => Endpoint::client(bind).map_err(bind_err)?,
        };
        let crypto = QuicClientConfig::try_from(tls.client_config()?)
            .map_err(|e| FabricError::Limits(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        client.transport_config(transport.clone());
        let serving = handler.is_some();
        let local_addr = endpoint.local_addr().map_err(bind_err)?;
        let accept_task = handler.map(|handler| {
            tokio::spawn(serve::accept_loop(
                endpoint.clone(),
                handler,
                limits.clone(),
            ))
        });
        Ok(Fabric {
            inner: Arc::new(Inner {
                pool: Pool::new(endpoint.clone(), client, limits.handshake_timeout),
                endpoint,
                local_addr,
                region,
                role,
                limits,
                serving,
                transport,
                closed: AtomicBool::new(false),
                accept_task: Mutex::new(accept_task),
            }),
        })
    }

    /// Takes a new certificate (an agent's SIGHUP after the files were renewed): connections
    /// made from now on, both ways, use it; open ones keep the one they were made with. The
    /// new certificate must name the same role and region, or nothing changes.
    pub fn reload_tls(&self, tls: &TlsMaterial) -> Result<(), FabricError> {
        let inner = &self.inner;
        check_identity(tls, inner.role, &inner.region)?;
        let client_crypto = QuicClientConfig::try_from(tls.client_config()?)
            .map_err(|e| FabricError::Limits(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
        client.transport_config(inner.transport.clone());
        if inner.serving {
            let crypto = QuicServerConfig::try_from(tls.server_config()?)
                .map_err(|e| FabricError::Limits(e.to_string()))?;
            let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
            server.transport_config(inner.transport.clone());
            server.max_incoming(inner.limits.max_connections.max(1));
            inner.endpoint.set_server_config(Some(server));
        }
        inner.pool.set_client_config(client);
        Ok(())
    }

    /// The bound UDP address (with the port chosen for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Connections open on this endpoint, both directions (for metrics and tests).
    pub fn open_connections(&self) -> usize {
        self.inner.endpoint.open_connections()
    }

    /// One request/response with the server at `addr`, which must present a
    /// `server.<region>.noded` certificate of this fabric's region.
    pub async fn call(
        &self,
        addr: SocketAddr,
        method: u16,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        let region = self.inner.region.clone();
        self.call_region(addr, &region, method, body, timeout).await
    }

    /// As [`Fabric::call`], to a server of `region`.
    pub async fn call_region(
        &self,
        addr: SocketAddr,
        region: &str,
        method: u16,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        self.check_open()?;
        // Refused here, before a connection is even dialled.
        let max = self.inner.limits.max_message_bytes;
        FrameHeader::new(FrameKind::Request, method, body.len(), max)
            .map_err(|e| CallError::frame(addr, e))?;
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || CallError::Timeout {
            addr,
            after: timeout,
        };
        let conn = tokio::time::timeout_at(deadline, self.inner.pool.get(addr, region))
            .await
            .map_err(|_| timed_out())??;
        let heard_before = conn.stats().udp_rx.datagrams;
        match tokio::time::timeout_at(deadline, exchange(&conn, addr, method, &body, max)).await {
            Ok(result) => {
                if matches!(result, Err(CallError::Connect(_))) {
                    self.inner.pool.forget(addr, region, &conn);
                }
                result
            }
            Err(_) => {
                // A peer that died without closing (kill -9, a cut link) leaves a connection
                // that looks open until its idle timeout; its restarted successor cannot
                // reset it. The next call dials afresh instead of waiting on it. A peer
                // that sent anything during the call is alive and only slow: dropping its
                // connection would make every later call pay a handshake, which on a
                // loaded host outlasts short deadlines and never lets a call through.
                if conn.stats().udp_rx.datagrams == heard_before {
                    self.inner.pool.forget(addr, region, &conn);
                }
                Err(timed_out())
            }
        }
    }

    /// A long-lived framed stream to the server at `addr` of this fabric's region; the
    /// server's handler gets it through [`Handler::stream`]. A refusal arrives as the
    /// first `recv`'s `CallError::Remote`.
    pub async fn open_stream(
        &self,
        addr: SocketAddr,
        method: u16,
    ) -> Result<FramedStream, CallError> {
        let region = self.inner.region.clone();
        self.open_stream_region(addr, &region, method).await
    }

    /// As [`Fabric::open_stream`], to a server of `region`.
    pub async fn open_stream_region(
        &self,
        addr: SocketAddr,
        region: &str,
        method: u16,
    ) -> Result<FramedStream, CallError> {
        self.check_open()?;
        let max = self.inner.limits.max_message_bytes;
        let conn = self.inner.pool.get(addr, region).await?;
        let opened = async {
            let (mut send, recv) = conn.open_bi().await.map_err(|e| CallError::lost(addr, e))?;
            write_frame(&mut send, FrameKind::Open, method, &[], max, addr).await?;
            Ok(FramedStream::new(send, recv, addr, max))
        };
        let result = opened.await;
        if matches!(result, Err(CallError::Connect(_))) {
            self.inner.pool.forget(addr, region, &conn);
        }
        result
    }

    /// Stops accepting, closes every connection and waits (at most [`CLOSE_WAIT`]) for
    /// peers to hear of it. Calls after this fail with `CallError::Closed`.
    pub async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.inner.pool.close_all();
        self.inner
            .endpoint
            .close(VarInt::from_u32(0), b"shutting down");
        let task = self
            .inner
            .accept_task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            // The accept loop ends once the endpoint is closed; abort covers a stuck one.
            task.abort();
        }
        if tokio::time::timeout(CLOSE_WAIT, self.inner.endpoint.wait_idle())
            .await
            .is_err()
        {
            tracing::debug!(addr = %self.inner.local_addr, "fabric peers did not acknowledge the close in time");
        }
    }

    fn check_open(&self) -> Result<(), CallError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            Err(CallError::Closed)
        } else {
            Ok(())
        }
    }
}

/// One request/response on a fresh stream of `conn`.
async fn exchange(
    conn: &Connection,
    addr: SocketAddr,
    method: u16,
    body: &[u8],
    max: usize,
) -> Result<Bytes, CallError> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| CallError::lost(addr, e))?;
    write_frame(&mut send, FrameKind::Request, method, body, max, addr).await?;
    send.finish().map_err(|e| CallError::lost(addr, e))?;
    let Some((header, body)) = read_frame(&mut recv, max, addr).await? else {
        return Err(CallError::Protocol(format!(
            "{addr} ended the stream without answering method {method}"
        )));
    };
    match header.kind {
        FrameKind::Response => Ok(body),
        FrameKind::Error => Err(remote_error(&header, &body)),
        other => Err(CallError::Protocol(format!(
            "{addr} answered method {method} with a {other:?} frame"
        ))),
    }
}

/// The identity in the certificate the peer presented in the (finished) handshake.
pub(crate) fn peer_identity(conn: &Connection) -> Result<PeerIdentity, IdentityError> {
    let chain = conn
        .peer_identity()
        .and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .ok_or(IdentityError::NoRole)?;
    let leaf = chain.first().ok_or(IdentityError::NoRole)?;
    PeerIdentity::from_certificate(leaf)
}

fn check_identity(tls: &TlsMaterial, role: Role, region: &str) -> Result<(), FabricError> {
    let own = tls.identity()?;
    let configured = PeerIdentity::new(role, region);
    if own != configured {
        return Err(FabricError::IdentityMismatch {
            configured: configured.dns_name(),
            certificate: own.dns_name(),
            role: role.as_str(),
            region: region.to_string(),
        });
    }
    Ok(())
}

fn check_limits(limits: &Limits) -> Result<(), FabricError> {
    let bad = |what: &str| Err(FabricError::Limits(what.to_string()));
    if limits.max_connections == 0 {
        return bad("max_connections must be at least 1");
    }
    if limits.max_streams_per_connection == 0 {
        return bad("max_streams_per_connection must be at least 1");
    }
    if limits.max_message_bytes == 0 || limits.max_message_bytes > u32::MAX as usize {
        return bad("max_message_bytes must be between 1 and 4294967295");
    }
    if limits.handshake_timeout.is_zero() || limits.keep_alive >= limits.idle_timeout {
        return bad("handshake_timeout must be positive and keep_alive shorter than idle_timeout");
    }
    Ok(())
}

fn transport_config(limits: &Limits) -> Result<TransportConfig, FabricError> {
    let mut transport = TransportConfig::default();
    transport.max_concurrent_bidi_streams(VarInt::from_u32(limits.max_streams_per_connection));
    transport.max_concurrent_uni_streams(VarInt::from_u32(0));
    transport.keep_alive_interval(Some(limits.keep_alive));
    let idle = IdleTimeout::try_from(limits.idle_timeout)
        .map_err(|e| FabricError::Limits(format!("idle_timeout: {e}")))?;
    transport.max_idle_timeout(Some(idle));
    Ok(transport)
}
