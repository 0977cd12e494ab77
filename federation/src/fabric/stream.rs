//! Frames over one QUIC bidirectional stream: the request/response exchange and the
//! long-lived [`FramedStream`].

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use quinn::{ReadExactError, RecvStream, SendStream};

use super::error::CallError;
use crate::frame::{decode_header, encode_header, FrameHeader, FrameKind, HEADER_LEN};
use crate::remote::{ErrorCode, RemoteError};

/// Writes one frame. A body over `max` is refused before a byte is written.
pub(crate) async fn write_frame(
    send: &mut SendStream,
    kind: FrameKind,
    code: u16,
    body: &[u8],
    max: usize,
    addr: SocketAddr,
) -> Result<(), CallError> {
    let header =
        FrameHeader::new(kind, code, body.len(), max).map_err(|e| CallError::frame(addr, e))?;
    send.write_all(&encode_header(&header))
        .await
        .map_err(|e| CallError::lost(addr, e))?;
    send.write_all(body)
        .await
        .map_err(|e| CallError::lost(addr, e))
}

/// Reads one frame: `None` when the peer finished the stream at a frame boundary. The
/// header is checked against `max` before the body is allocated.
pub(crate) async fn read_frame(
    recv: &mut RecvStream,
    max: usize,
    addr: SocketAddr,
) -> Result<Option<(FrameHeader, Bytes)>, CallError> {
    let mut head = [0u8; HEADER_LEN];
    match recv.read_exact(&mut head).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(ReadExactError::FinishedEarly(n)) => {
            return Err(CallError::Protocol(format!(
                "{addr} ended the stream inside a frame header ({n} of {HEADER_LEN} bytes)"
            )))
        }
        Err(ReadExactError::ReadError(e)) => return Err(CallError::lost(addr, e)),
    }
    let header = decode_header(&head, max).map_err(|e| CallError::frame(addr, e))?;
    let len = header.len as usize;
    let mut body = BytesMut::zeroed(len);
    match recv.read_exact(&mut body).await {
        Ok(()) => Ok(Some((header, body.freeze()))),
        Err(ReadExactError::FinishedEarly(n)) => Err(CallError::Protocol(format!(
            "{addr} ended the stream inside a frame body ({n} of {len} bytes)"
        ))),
        Err(ReadExactError::ReadError(e)) => Err(CallError::lost(addr, e)),
    }
}

/// Turns an error frame into the caller's error.
pub(crate) fn remote_error(header: &FrameHeader, body: &[u8]) -> CallError {
    CallError::Remote(RemoteError::new(
        ErrorCode::from_wire(header.code),
        String::from_utf8_lossy(body).into_owned(),
    ))
}

/// A long-lived bidirectional stream of messages (log streaming, heartbeats): each
/// [`FramedStream::send`] arrives as one [`FramedStream::recv`] on the other side, in order.
#[derive(Debug)]
pub struct FramedStream {
    send: SendStream,
    recv: RecvStream,
    peer: SocketAddr,
    max_message_bytes: usize,
}

impl FramedStream {
    pub(crate) fn new(
        send: SendStream,
        recv: RecvStream,
        peer: SocketAddr,
        max_message_bytes: usize,
    ) -> FramedStream {
        FramedStream {
            send,
            recv,
            peer,
            max_message_bytes,
        }
    }

    /// The address of the other end.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Sends one message; over `max_message_bytes` it is refused with `TooLarge`.
    pub async fn send(&mut self, body: Bytes) -> Result<(), CallError> {
        write_frame(
            &mut self.send,
            FrameKind::Data,
            0,
            &body,
            self.max_message_bytes,
            self.peer,
        )
        .await
    }

    /// The next message, or `None` once the other side has finished sending. An error frame
    /// from the other side (a refusal of the stream) is `CallError::Remote`.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, CallError> {
        let Some((header, body)) =
            read_frame(&mut self.recv, self.max_message_bytes, self.peer).await?
        else {
            return Ok(None);
        };
        match header.kind {
            FrameKind::Data => Ok(Some(body)),
            FrameKind::Error => Err(remote_error(&header, &body)),
            other => Err(CallError::Protocol(format!(
                "{} sent a {other:?} frame on an open stream",
                self.peer
            ))),
        }
    }

    /// Ends this side's sending; the other side's `recv` then returns `None`.
    pub fn finish(&mut self) -> Result<(), CallError> {
        self.send
            .finish()
            .map_err(|e| CallError::lost(self.peer, e))
    }

    /// Ends the stream with an error the other side's `recv` returns (e.g. a refusal).
    pub async fn send_error(mut self, error: RemoteError) {
        let sent = write_frame(
            &mut self.send,
            FrameKind::Error,
            error.code.to_wire(),
            error.message.as_bytes(),
            self.max_message_bytes,
            self.peer,
        )
        .await;
        if let Err(e) = sent.and_then(|()| self.finish()) {
            tracing::debug!(peer = %self.peer, error = %e, "could not deliver a stream error");
        }
    }
}
