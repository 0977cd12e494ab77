//! The error a handler answers with; it travels back to the caller in an error frame.

use std::fmt;

/// Why a remote call failed, as the peer's handler said. On the wire: the frame's `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The caller may not do this (wrong role or region).
    Refused,
    /// The request was malformed or named an unknown method.
    BadRequest,
    /// The handler failed (or panicked).
    Internal,
    /// Not now: the peer is shutting down, not the leader, overloaded; try again or elsewhere.
    Unavailable,
    /// What the request names does not exist (an unknown node, say).
    NotFound,
    /// A code this build does not know (sent by a newer peer).
    Other(u16),
}

impl ErrorCode {
    pub fn to_wire(self) -> u16 {
        match self {
            ErrorCode::Refused => 1,
            ErrorCode::BadRequest => 2,
            ErrorCode::Internal => 3,
            ErrorCode::Unavailable => 4,
            ErrorCode::NotFound => 5,
            ErrorCode::Other(n) => n,
        }
    }

    pub fn from_wire(n: u16) -> ErrorCode {
        match n {
            1 => ErrorCode::Refused,
            2 => ErrorCode::BadRequest,
            3 => ErrorCode::Internal,
            4 => ErrorCode::Unavailable,
            5 => ErrorCode::NotFound,
            n => ErrorCode::Other(n),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Refused => f.write_str("refused"),
            ErrorCode::BadRequest => f.write_str("bad request"),
            ErrorCode::Internal => f.write_str("internal error"),
            ErrorCode::Unavailable => f.write_str("unavailable"),
            ErrorCode::NotFound => f.write_str("not found"),
            ErrorCode::Other(n) => write!(f, "error {n}"),
        }
    }
}

/// A handler's refusal or failure, shown to the caller as `<code>: <message>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RemoteError {
    pub code: ErrorCode,
    pub message: String,
}

impl RemoteError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> RemoteError {
        RemoteError {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_ones_survive() {
        for code in [
            ErrorCode::Refused,
            ErrorCode::BadRequest,
            ErrorCode::Internal,
            ErrorCode::Unavailable,
            ErrorCode::NotFound,
            ErrorCode::Other(77),
        ] {
            assert_eq!(ErrorCode::from_wire(code.to_wire()), code);
        }
    }
}
