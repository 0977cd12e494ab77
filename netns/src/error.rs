//! The crate's error: every variant names the object it concerns (namespace, link, address,
//! table) and, where a user can act, the setting or command to fix it.

use std::path::PathBuf;

/// Result of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting of the client's configuration cannot be used (a bridge name taken by a link
    /// that is not noded's, a subnet that overlaps an address of the host).
    #[error("{setting}: {reason}")]
    Config {
        setting: &'static str,
        reason: String,
    },
    /// An argument this crate refuses (a namespace or interface name, an address).
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },
    /// A file-system or system-call operation failed.
    #[error("{what} {path}: {source}", path = path.display())]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A netlink request failed.
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    /// An object this call needs does not exist.
    #[error("{what} not found: {hint}")]
    NotFound { what: String, hint: String },
    /// An object this call would create exists already.
    #[error("{what} exists already: {hint}")]
    Exists { what: String, hint: String },
    /// `nft` refused a batch or could not run; `stderr` is nft's own message.
    #[error("nft {what}: {stderr}")]
    Nft { what: String, stderr: String },
    /// A helper thread panicked or could not start.
    #[error("{what}: {reason}")]
    Thread { what: String, reason: String },
}

impl Error {
    pub(crate) fn io(
        what: impl Into<String>,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            what: what.into(),
            path: path.into(),
            source,
        }
    }

    pub(crate) fn nix(
        what: impl Into<String>,
        path: impl Into<PathBuf>,
        errno: nix::Error,
    ) -> Self {
        Error::io(what, path, std::io::Error::from(errno))
    }

    pub(crate) fn netlink(what: impl Into<String>, source: rtnetlink::Error) -> Self {
        Error::Netlink {
            what: what.into(),
            source,
        }
    }

    /// The errno of a netlink or I/O error, if it carries one (positive, as in `libc`).
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Netlink { source, .. } => netlink_errno(source),
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// The (positive) errno of a netlink error reply.
pub(crate) fn netlink_errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| c.get().abs()),
        _ => None,
    }
}
