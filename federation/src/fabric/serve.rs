//! The accepting side: incoming connections (bounded), the peer's identity from its verified
//! certificate, and one task per stream handing requests to the [`Handler`].

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use quinn::{Connection, Endpoint, Incoming, RecvStream, SendStream};
use tokio::sync::Semaphore;

use super::error::CallError;
use super::stream::{read_frame, write_frame, FramedStream};
use super::{peer_identity, Handler, Limits};
use crate::frame::FrameKind;
use crate::identity::PeerIdentity;
use crate::remote::{ErrorCode, RemoteError};

/// An error message longer than this is cut: it is for a log line, not a payload.
const MAX_ERROR_MESSAGE_BYTES: usize = 4096;

/// Accepts until the endpoint closes.
pub(crate) async fn accept_loop(endpoint: Endpoint, handler: Arc<dyn Handler>, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    while let Some(incoming) = endpoint.accept().await {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                peer = %incoming.remote_address(),
                max_connections = limits.max_connections,
                "refusing a fabric connection: at max_connections"
            );
            incoming.refuse();
            continue;
        };
        let handler = handler.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            serve_connection(incoming, handler, limits).await;
            drop(permit);
        });
    }
}

async fn serve_connection(incoming: Incoming, handler: Arc<dyn Handler>, limits: Limits) {
    let addr = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(peer = %addr, error = %e, "fabric connection refused before the handshake");
            return;
        }
    };
    let conn = match tokio::time::timeout(limits.handshake_timeout, connecting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::warn!(peer = %addr, error = %e, "fabric TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::warn!(peer = %addr, timeout = ?limits.handshake_timeout, "fabric handshake timed out");
            return;
        }
    };
    // With TLS 1.3 the handshake is only done here, on the server side: authorise now.
    let peer = match peer_identity(&conn) {
        Ok(peer) => peer,
        Err(e) => {
            tracing::warn!(peer = %addr, reason = %e, "closing fabric connection: the certificate says no role");
            conn.close(1u32.into(), b"certificate names no role");
            return;
        }
    };
    tracing::debug!(peer = %addr, identity = %peer, "fabric connection");
    serve_streams(conn, peer, handler, limits).await;
}

async fn serve_streams(
    conn: Connection,
    peer: PeerIdentity,
    handler: Arc<dyn Handler>,
    limits: Limits,
) {
    let addr = conn.remote_address();
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(peer = %addr, reason = %e, "fabric connection ended");
                return;
            }
        };
        let handler = handler.clone();
        let peer = peer.clone();
        let max = limits.max_message_bytes;
        tokio::spawn(async move {
            if let Err(e) = serve_stream(send, recv, addr, peer, handler, max).await {
                tracing::debug!(peer = %addr, error = %e, "fabric stream failed");
            }
        });
    }
}

async fn serve_stream(
    mut send: SendStream,
    mut recv: RecvStream,
    addr: SocketAddr,
    peer: PeerIdentity,
    handler: Arc<dyn Handler>,
    max: usize,
) -> Result<(), CallError> {
    let (header, body) = match read_frame(&mut recv, max, addr).await {
        Ok(Some(frame)) => frame,
        Ok(None) => return Ok(()),
        Err(e) => {
            let refusal = RemoteError::new(ErrorCode::BadRequest, e.to_string());
            return answer(&mut send, Err(refusal), addr, &peer, 0, max).await;
        }
    };
    match header.kind {
        FrameKind::Request => {
            let call = AssertUnwindSafe(handler.handle(peer.clone(), header.code, body));
            let result = match call.catch_unwind().await {
                Ok(result) => result,
                Err(_) => {
                    tracing::error!(peer = %addr, method = header.code, "fabric handler panicked");
                    Err(RemoteError::new(
                        ErrorCode::Internal,
                        "the handler panicked",
                    ))
                }
            };
            answer(&mut send, result, addr, &peer, header.code, max).await
        }
        FrameKind::Open => {
            let stream = FramedStream::new(send, recv, addr, max);
            handler.stream(peer, header.code, stream).await;
            Ok(())
        }
        other => {
            let refusal = RemoteError::new(
                ErrorCode::BadRequest,
                format!("a stream must start with a Request or Open frame, not {other:?}"),
            );
            answer(&mut send, Err(refusal), addr, &peer, header.code, max).await
        }
    }
}

/// Writes the one answer frame and finishes. Refusals are logged here so the server's log
/// says what the caller was told.
async fn answer(
    send: &mut SendStream,
    result: Result<bytes::Bytes, RemoteError>,
    addr: SocketAddr,
    peer: &PeerIdentity,
    method: u16,
    max: usize,
) -> Result<(), CallError> {
    match result {
        Ok(body) => match write_frame(send, FrameKind::Response, 0, &body, max, addr).await {
            Err(CallError::TooLarge { len, max, .. }) => {
                let message = format!(
                    "the answer to method {method} is {len} bytes, over the limit of {max} \
                     (max_message_bytes)"
                );
                tracing::warn!(peer = %addr, identity = %peer, method, "{message}");
                let error = RemoteError::new(ErrorCode::Internal, message);
                write_error(send, &error, max, addr).await?;
            }
            other => other?,
        },
        Err(error) => {
            if error.code == ErrorCode::Refused {
                tracing::warn!(peer = %addr, identity = %peer, method, "{error}");
            } else {
                tracing::debug!(peer = %addr, identity = %peer, method, "{error}");
            }
            write_error(send, &error, max, addr).await?;
        }
    }
    send.finish().map_err(|e| CallError::lost(addr, e))
}

async fn write_error(
    send: &mut SendStream,
    error: &RemoteError,
    max: usize,
    addr: SocketAddr,
) -> Result<(), CallError> {
    let mut cut = error.message.len().min(MAX_ERROR_MESSAGE_BYTES).min(max);
    while !error.message.is_char_boundary(cut) {
        cut -= 1;
    }
    let message = &error.message.as_bytes()[..cut];
    write_frame(
        send,
        FrameKind::Error,
        error.code.to_wire(),
        message,
        max,
        addr,
    )
    .await
}
