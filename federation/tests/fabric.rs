//! Two (or more) real fabric endpoints on loopback, certificates from a real CA.

#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use federation::pki::{self, CaPem};
use federation::{
    CallError, ErrorCode, Fabric, FabricConfig, FabricError, FramedStream, Handler, Limits,
    PeerIdentity, RemoteError, Role, TlsMaterial,
};
use futures::future::BoxFuture;

const ECHO: u16 = 1;
const RAFT: u16 = 2;
const STREAM_ECHO: u16 = 9;
const NO_STREAM: u16 = 10;
const T: Duration = Duration::from_secs(10);

/// Everything logged by any test here, so a test can check what the server said.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged(needle: &str) -> bool {
    String::from_utf8_lossy(&logs().lock().unwrap()).contains(needle)
}

struct TestHandler;

impl Handler for TestHandler {
    fn handle(
        &self,
        peer: PeerIdentity,
        method: u16,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, RemoteError>> {
        Box::pin(async move {
            match method {
                ECHO => Ok(body),
                RAFT => {
                    peer.require_for(Role::Server, "global", "take part in raft")?;
                    Ok(Bytes::from_static(b"voted"))
                }
                other => Err(RemoteError::new(
                    ErrorCode::BadRequest,
                    format!("unknown method {other}"),
                )),
            }
        })
    }

    fn stream(
        &self,
        peer: PeerIdentity,
        method: u16,
        mut stream: FramedStream,
    ) -> BoxFuture<'static, ()> {
        if method != STREAM_ECHO {
            return Box::pin(stream.send_error(RemoteError::new(
                ErrorCode::BadRequest,
                format!("method {method} does not open streams"),
            )));
        }
        Box::pin(async move {
            while let Ok(Some(msg)) = stream.recv().await {
                let reply = format!("{peer} said {}", String::from_utf8_lossy(&msg));
                if stream.send(Bytes::from(reply)).await.is_err() {
                    return;
                }
            }
            let _ = stream.finish();
        })
    }
}

fn material(ca: &CaPem, role: Role, region: &str) -> TlsMaterial {
    let cert = pki::issue(ca, role, region, &[], &[], 1).unwrap();
    TlsMaterial {
        ca_pem: ca.cert_pem.clone(),
        cert_pem: cert.cert_pem,
        key_pem: cert.key_pem,
    }
}

async fn endpoint(
    ca: &CaPem,
    role: Role,
    region: &str,
    limits: Limits,
    serve: bool,
    bind: SocketAddr,
) -> Fabric {
    let _ = logs();
    let handler: Option<Arc<dyn Handler>> = if serve {
        Some(Arc::new(TestHandler))
    } else {
        None
    };
    Fabric::bind(
        FabricConfig {
            bind,
            region: region.into(),
            role,
            tls: material(ca, role, region),
            limits,
        },
        handler,
    )
    .await
    .unwrap()
}

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn server(ca: &CaPem, region: &str) -> Fabric {
    endpoint(ca, Role::Server, region, Limits::default(), true, any()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_round_trips_and_100_concurrent_calls_share_one_connection() {
    let ca = pki::create_ca("test CA", 1).unwrap();
    let a = server(&ca, "global").await;
    let b = server(&ca, "global").await;
    let reply = a
        .call(b.local_addr(), ECHO, Bytes::from_static(b"hello"), T)
        .await
        .unwrap();
    assert_eq!(&reply[..], b"hello");

    let calls = (0..100).map(|i| {
        let a = a.clone();
        let addr = b.local_addr();
        async move {
            a.call(addr, ECHO, Bytes::from(format!("call {i}")), T)
                .await
        }
    });
    let replies = futures::future::join_all(calls).await;
    for (i, reply) in replies.into_iter().enumerate() {
        assert_eq!(reply.unwrap(), Bytes::from(format!("call {i}")));
    }
    assert_eq!(
        a.open_connections(),
        1,
        "the calls shared one pooled connection"
    );
    let err = a
        .call(b.local_addr(), 77, Bytes::new(), T)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::Remote(e) if e.code == ErrorCode::BadRequest && e.message == "unknown method 77"),
        "{err}"
    );
    a.close().await;
    b.close().await;
    assert!(matches!(
        a.call(b.local_addr(), ECHO, Bytes::new(), T).await,
        Err(CallError::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_max_message_bytes_are_refused_on_both_sides() {
    let ca = pki::create_ca("test CA", 1).unwrap();
    let small = Limits {
        max_message_bytes: 1024,
        ..Limits::default()
    };
    let strict = endpoint(&ca, Role::Server, "global", small.clone(), true, any()).await;
    let lax = server(&ca, "global").await;

    // The sender refuses before dialling.
    let err = strict
        .call(lax.local_addr(), ECHO, Bytes::from(vec![0u8; 2000]), T)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CallError::TooLarge {
                len: 2000,
                max: 1024,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(strict.open_connections(), 0);

    // The receiver refuses the header of a frame it will not take, and says why.
    let err = lax
        .call(strict.local_addr(), ECHO, Bytes::from(vec![0u8; 2000]), T)
        .await
        .unwrap_err();
    match &err {
        CallError::Remote(e) => {
            assert_eq!(e.code, ErrorCode::BadRequest);
            assert!(
                e.message.contains("2000 bytes") && e.message.contains("1024"),
                "{e}"
            );
        }
        other => panic!("{other}"),
    }
    // Exactly at the limit passes.
    let ok = lax
        .call(strict.local_addr(), ECHO, Bytes::from(vec![7u8; 1024]), T)
        .await
        .unwrap();
    assert_eq!(ok.len(), 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_refuses_clients_and_other_regions_naming_both_sides() {
    let ca = pki::create_ca("test CA", 1).unwrap();
    let global = server(&ca, "global").await;
    let client = endpoint(&ca, Role::Client, "global", Limits::default(), false, any()).await;
    let eu = server(&ca, "eu").await;

    let err = client
        .call(global.local_addr(), RAFT, Bytes::new(), T)
        .await
        .unwrap_err();
    // A client fabric dials servers of its own region: the handshake is fine, the handler
    // refuses.
    let CallError::Remote(e) = &err else {
        panic!("{err}")
    };
    assert_eq!(e.code, ErrorCode::Refused);
    assert_eq!(
        err.to_string(),
        "refused: a client.global.noded certificate may not take part in raft; only server.global.noded"
    );
    assert!(logged(
        "a client.global.noded certificate may not take part in raft"
    ));

    let err = eu
        .call_region(global.local_addr(), "global", RAFT, Bytes::new(), T)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "refused: a server.eu.noded certificate may not take part in raft; only server.global.noded"
    );
    // The same server answers a server of its region.
    let peer = server(&ca, "global").await;
    let ok = peer
        .call(global.local_addr(), RAFT, Bytes::new(), T)
        .await
        .unwrap();
    assert_eq!(&ok[..], b"voted");
    // Dialling an eu server while expecting a global one fails in the handshake.
    let err = global
        .call(eu.local_addr(), ECHO, Bytes::new(), T)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::Connect(m) if m.contains("server.global.noded")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_another_ca_fails_the_handshake() {
    let ca = pki::create_ca("test CA", 1).unwrap();
    let other = pki::create_ca("someone else's CA", 1).unwrap();
    let ours = server(&ca, "global").await;
    let theirs = server(&other, "global").await;
    for (from, to) in [(&theirs, &ours), (&ours, &theirs)] {
        let err = from
            .call(to.local_addr(), ECHO, Bytes::new(), T)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, CallError::Connect(m) if m.contains(&to.local_addr().to_string())),
            "{err}"
        );
    }
    // Its own certificate is signed by another CA, so its key is not the one the CA's
    // certificate trusts: our server refuses it in the handshake and says so.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !logged("fabric TLS handshake failed") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(logged("fabric TLS handshake failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_fails_within_the_handshake_timeout() {
    let ca = pki::create_ca("test CA", 1).unwrap();
    let limits = Limits {
        handshake_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let caller = endpoint(&ca, Role::Server, "global", limits, false, any()).await;
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    let err = caller
        .call(silent.local_addr().unwrap(), ECHO, Bytes::new(), T)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, CallError::Connect(m) if m.contains("handshake_timeout")),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // The caller's own timeout, when shorter, is a Timeout naming the address.
    let err = caller
        .call(
            silent.local_addr().unwrap(),
            ECHO,
            Bytes::new(),
            Duration::from_millis(50),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Timeout { .. }), "{err}");
    assert!(err
        .to_string()
        .contains(&silent.local_addr().unwrap().to_string()));
}

/// A server on `addr` again, once the old endpoint's driver has let go of the socket.
async fn rebind(ca: &CaPem, addr: SocketAddr) -> Fabric {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let config = FabricConfig {
            bind: addr,
            region: "global".into(),
            role: Role::Server,
            tls: material(ca, Role::Server, "global"),
            limits: Limits::default(),
        };
        match Fabric::bind(config, Some(Arc::new(TestHandler))).await {
            Ok(fabric) => return fabric,
            Err(e) if Instant::now() > deadline => panic!("{e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_dialled_again() {
    let ca = pki::create_ca("test CA", 1).unwrap();
    let caller = server(&ca, "global").await;
    let first = server(&ca, "global").await;
    let addr = first.local_addr();
    caller
        .call(addr, ECHO, Bytes::from_static(b"1"), T)
        .await
        .unwrap();
    first.close().await;
    // The UDP socket is released with the last handle, as when a process exits.
    drop(first);
    let second = rebind(&ca, addr).await;
    let reply = caller
        .call(addr, ECHO, Bytes::from_static(b"2"), T)
        .await
        .unwrap();
    assert_eq!(&reply[..], b"2");
    // The dead connection drains (a few round trips) and is gone; the new one stays.
    let deadline = Instant::now() + Duration::from_secs(5);
    while caller.open_connections() != 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        caller.open_connections(),
        1,
        "the dead connection was dropped"
    );
    let reply = caller
        .call(addr, ECHO, Bytes::from_static(b"3"), T)
        .await
        .unwrap();
    assert_eq!(&reply[..], b"3");
    second.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_connections_beyond_max_connections_are_refused() {
    let ca = pki::create_ca("test CA", 1).unwrap();
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let busy = endpoint(&ca, Role::Server, "global", limits, true, any()).await;
    let one = server(&ca, "global").await;
    let two = server(&ca, "global").await;
    one.call(busy.local_addr(), ECHO, Bytes::new(), T)
        .await
        .unwrap();
    let err = two
        .call(busy.local_addr(), ECHO, Bytes::new(), T)
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Connect(_)), "{err}");
    assert!(logged("at max_connections"));
    // Once the first caller leaves, the slot is free again.
    one.close().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match two.call(busy.local_addr(), ECHO, Bytes::new(), T).await {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => panic!("{e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framed_streams_carry_messages_both_ways() {
    let ca = pki::create_ca("test CA", 1).unwrap();
    let srv = server(&ca, "global").await;
    let client = endpoint(&ca, Role::Client, "global", Limits::default(), false, any()).await;
    let mut stream = client
        .open_stream(srv.local_addr(), STREAM_ECHO)
        .await
        .unwrap();
    for msg in ["one", "two", "three"] {
        stream.send(Bytes::from(msg)).await.unwrap();
        let reply = stream.recv().await.unwrap().unwrap();
        assert_eq!(
            reply,
            Bytes::from(format!("client.global.noded said {msg}"))
        );
    }
    stream.finish().unwrap();
    assert_eq!(stream.recv().await.unwrap(), None);

    let mut refused = client
        .open_stream(srv.local_addr(), NO_STREAM)
        .await
        .unwrap();
    let err = refused.recv().await.unwrap_err();
    assert!(
        matches!(&err, CallError::Remote(e) if e.code == ErrorCode::BadRequest && e.message.contains("does not open streams")),
        "{err}"
    );
}

#[tokio::test]
async fn a_certificate_for_another_role_or_region_is_refused_at_bind() {
    let ca = pki::create_ca("test CA", 1).unwrap();
    let err = Fabric::bind(
        FabricConfig {
            bind: any(),
            region: "global".into(),
            role: Role::Server,
            tls: material(&ca, Role::Client, "global"),
            limits: Limits::default(),
        },
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FabricError::IdentityMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("server.global.noded") && msg.contains("client.global.noded"),
        "{msg}"
    );
    assert!(
        msg.contains("noded tls cert create -server -region global"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_certificate_is_presented_to_new_connections_and_a_wrong_one_is_refused() {
    let old_ca = pki::create_ca("old CA", 1).unwrap();
    let new_ca = pki::create_ca("new CA", 1).unwrap();
    let s = server(&old_ca, "global").await;
    let before = server(&old_ca, "global").await;
    before
        .call(s.local_addr(), ECHO, Bytes::from_static(b"x"), T)
        .await
        .unwrap();

    // The cluster moves to a new CA: the server takes its new certificate without a restart.
    s.reload_tls(&material(&new_ca, Role::Server, "global"))
        .unwrap();
    let old_peer = server(&old_ca, "global").await;
    let refused = old_peer
        .call(s.local_addr(), ECHO, Bytes::from_static(b"x"), T)
        .await;
    assert!(
        refused.is_err(),
        "a peer of the old CA dialled in: {refused:?}"
    );
    let new_peer = server(&new_ca, "global").await;
    new_peer
        .call(s.local_addr(), ECHO, Bytes::from_static(b"x"), T)
        .await
        .unwrap();

    // A certificate of another role or region changes nothing.
    let err = s
        .reload_tls(&material(&new_ca, Role::Client, "global"))
        .unwrap_err();
    assert!(err.to_string().contains("client.global.noded"), "{err}");
    assert!(s
        .reload_tls(&material(&new_ca, Role::Server, "eu"))
        .is_err());
    let another = server(&new_ca, "global").await;
    another
        .call(s.local_addr(), ECHO, Bytes::from_static(b"x"), T)
        .await
        .unwrap();
}
