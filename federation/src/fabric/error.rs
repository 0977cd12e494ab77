//! What can go wrong on the fabric, from the caller's side and when binding.

use std::net::SocketAddr;
use std::time::Duration;

use crate::frame::FrameError;
use crate::remote::RemoteError;
use crate::tls::TlsError;

/// Why a call or stream failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The peer could not be reached, the handshake failed or timed out, or the connection
    /// was lost. The message names the address.
    #[error("{0}")]
    Connect(String),
    /// No answer within the caller's timeout.
    #[error("no answer from {addr} within {after:?}")]
    Timeout { addr: SocketAddr, after: Duration },
    /// The peer's handler refused or failed.
    #[error("{0}")]
    Remote(RemoteError),
    /// The peer broke the wire format. The message names the address.
    #[error("{0}")]
    Protocol(String),
    /// A message over `max_message_bytes`, refused before it was sent (or as it arrived).
    #[error("message of {len} bytes to or from {addr} is larger than the limit of {max} bytes (max_message_bytes)")]
    TooLarge {
        addr: SocketAddr,
        len: u64,
        max: usize,
    },
    /// This fabric was closed.
    #[error("the fabric endpoint is closed")]
    Closed,
}

impl CallError {
    pub(crate) fn lost(addr: SocketAddr, e: impl std::fmt::Display) -> CallError {
        CallError::Connect(format!("connection to {addr} lost: {e}"))
    }

    pub(crate) fn frame(addr: SocketAddr, e: FrameError) -> CallError {
        match e {
            FrameError::TooLarge { len, max } => CallError::TooLarge { addr, len, max },
            other => CallError::Protocol(format!("from {addr}: {other}")),
        }
    }
}

/// Why a fabric endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum FabricError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(
        "this agent is configured as {configured} but its certificate names {certificate}; \
         issue a matching one with `noded tls cert create -{role} -region {region}`"
    )]
    IdentityMismatch {
        configured: String,
        certificate: String,
        role: &'static str,
        region: String,
    },
    #[error("binding the fabric to udp {addr}: {reason}; is another agent using the port?")]
    Bind { addr: SocketAddr, reason: String },
    #[error("the fabric limits are not usable: {0}")]
    Limits(String),
}
