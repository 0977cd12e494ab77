//! The QUIC fabric: how noded agents talk to each other.
//!
//! Servers of a region (and later the regions of a federation) exchange requests and
//! long-lived streams over QUIC with mutual TLS. Every peer holds a certificate of the
//! cluster CA that names its role and region (`server.global.noded`, see [`identity`]); the
//! fabric verifies it and hands the handler the verified [`PeerIdentity`], and the handler
//! decides what that peer may do. The crate moves bytes: it knows nothing of Raft, jobs or
//! the state it carries.
//!
//! - [`identity`]: roles, regions and reading them from a certificate.
//! - [`pki`]: issuing the CA and agent certificates (`noded tls`, `-dev`).
//! - [`tls`]: the PEM material and the rustls configurations.
//! - [`frame`]: the versioned wire format of every message.
//! - [`fabric`]: the endpoint: [`Fabric::bind`], [`Fabric::call`], [`Fabric::open_stream`].

#![forbid(unsafe_code)]

pub mod fabric;
pub mod frame;
pub mod identity;
pub mod pki;
pub mod remote;
pub mod tls;

pub use fabric::{CallError, Fabric, FabricConfig, FabricError, FramedStream, Handler, Limits};
pub use identity::{PeerIdentity, Role};
pub use pki::{CaPem, CertPem};
pub use remote::{ErrorCode, RemoteError};
pub use tls::TlsMaterial;
