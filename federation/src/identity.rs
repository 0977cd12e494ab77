//! Who a peer is: the role and region its certificate names.
//!
//! A certificate says what its holder is by one DNS subject alternative name
//! `<role>.<region>.noded` (as Nomad's `server.<region>.nomad`). The fabric reads it from the
//! certificate the TLS handshake has already verified against the cluster CA, so the
//! identity is as trustworthy as the CA's key.

use std::fmt;

use x509_parser::extensions::GeneralName;

use crate::remote::{ErrorCode, RemoteError};

/// The DNS domain every role name lives under.
pub const DOMAIN: &str = "noded";

/// The longest region name: one DNS label.
pub const MAX_REGION_LEN: usize = 63;

/// What a certificate allows its holder to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A server agent: Raft member, scheduler, API.
    Server,
    /// A client agent (node daemon).
    Client,
    /// An operator's command line.
    Cli,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Server, Role::Client, Role::Cli];

    /// The word used in names and messages: `server`, `client`, `cli`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
            Role::Cli => "cli",
        }
    }

    /// The DNS name a certificate of this role and region carries: `server.global.noded`.
    pub fn dns_name(self, region: &str) -> String {
        format!("{}.{region}.{DOMAIN}", self.as_str())
    }

    fn from_label(label: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == label)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verified peer: what its certificate says it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    pub role: Role,
    pub region: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("the certificate is not readable X.509: {0}")]
    Unreadable(String),
    #[error(
        "the certificate names no role: it needs one DNS name server.<region>.{DOMAIN}, \
         client.<region>.{DOMAIN} or cli.<region>.{DOMAIN}; issue one with `noded tls cert create`"
    )]
    NoRole,
    #[error(
        "the certificate names several roles ({}); a certificate must name exactly one",
        .0.join(", ")
    )]
    SeveralRoles(Vec<String>),
    #[error(
        "region {0:?} is not valid: use 1 to {MAX_REGION_LEN} lower-case letters, digits and \
         '-', not starting or ending with '-'"
    )]
    BadRegion(String),
}

/// Checks that `region` can be one DNS label of a role name.
pub fn validate_region(region: &str) -> Result<(), IdentityError> {
    let ok = !region.is_empty()
        && region.len() <= MAX_REGION_LEN
        && !region.starts_with('-')
        && !region.ends_with('-')
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(IdentityError::BadRegion(region.to_string()))
    }
}

impl PeerIdentity {
    pub fn new(role: Role, region: impl Into<String>) -> PeerIdentity {
        PeerIdentity {
            role,
            region: region.into(),
        }
    }

    /// Reads the role from a DER certificate's DNS names. Exactly one name of the form
    /// `<role>.<region>.noded` must be present; others (`localhost`, host names) are ignored.
    /// This does not verify the certificate: call it on one the TLS handshake accepted.
    pub fn from_certificate(der: &[u8]) -> Result<PeerIdentity, IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| IdentityError::Unreadable(e.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::Unreadable(e.to_string()))?;
        let mut found: Vec<PeerIdentity> = Vec::new();
        for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
            if let GeneralName::DNSName(dns) = name {
                if let Some(identity) = PeerIdentity::from_dns_name(dns) {
                    if !found.contains(&identity) {
                        found.push(identity);
                    }
                }
            }
        }
        match found.len() {
            0 => Err(IdentityError::NoRole),
            1 => Ok(found.remove(0)),
            _ => Err(IdentityError::SeveralRoles(
                found.iter().map(PeerIdentity::dns_name).collect(),
            )),
        }
    }

    /// `server.global.noded` → (Server, global); anything else → None.
    pub fn from_dns_name(name: &str) -> Option<PeerIdentity> {
        let lower = name.to_ascii_lowercase();
        let rest = lower.strip_suffix(DOMAIN)?.strip_suffix('.')?;
        let (label, region) = rest.split_once('.')?;
        let role = Role::from_label(label)?;
        validate_region(region).ok()?;
        Some(PeerIdentity::new(role, region))
    }

    /// The DNS name this identity is spelled as: `client.global.noded`.
    pub fn dns_name(&self) -> String {
        self.role.dns_name(&self.region)
    }

    /// Refuses anyone but a `role` of `region`, with a message naming both sides.
    pub fn require(&self, role: Role, region: &str) -> Result<(), RemoteError> {
        self.require_for(role, region, "make this call")
    }

    /// As [`PeerIdentity::require`], saying what the peer may not do:
    /// `a client.global.noded certificate may not take part in raft; only server.global.noded`.
    pub fn require_for(&self, role: Role, region: &str, action: &str) -> Result<(), RemoteError> {
        if self.role == role && self.region == region {
            return Ok(());
        }
        Err(RemoteError::new(
            ErrorCode::Refused,
            format!(
                "a {} certificate may not {action}; only {}",
                self.dns_name(),
                role.dns_name(region)
            ),
        ))
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dns_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_read_and_everything_else_ignored() {
        assert_eq!(
            PeerIdentity::from_dns_name("server.global.noded"),
            Some(PeerIdentity::new(Role::Server, "global"))
        );
        assert_eq!(
            PeerIdentity::from_dns_name("CLI.eu-west-1.noded"),
            Some(PeerIdentity::new(Role::Cli, "eu-west-1"))
        );
        for other in [
            "localhost",
            "server.global.nomad",
            "server.noded",
            "server..noded",
            "agent.global.noded",
            "server.a.b.noded",
            "server.-x.noded",
            "xserver.global.noded",
        ] {
            assert_eq!(PeerIdentity::from_dns_name(other), None, "{other}");
        }
    }

    #[test]
    fn require_names_both_sides() {
        let peer = PeerIdentity::new(Role::Client, "global");
        let err = peer
            .require_for(Role::Server, "global", "take part in raft")
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Refused);
        assert_eq!(
            err.to_string(),
            "refused: a client.global.noded certificate may not take part in raft; \
             only server.global.noded"
        );
        assert!(PeerIdentity::new(Role::Server, "global")
            .require(Role::Server, "global")
            .is_ok());
        assert!(PeerIdentity::new(Role::Server, "eu")
            .require(Role::Server, "global")
            .is_err());
    }

    #[test]
    fn regions_are_dns_labels() {
        for ok in ["global", "eu-west-1", "a", &"x".repeat(63)] {
            assert!(validate_region(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "Global", "a.b", "a_b", &"x".repeat(64)] {
            assert!(validate_region(bad).is_err(), "{bad}");
        }
    }
}
