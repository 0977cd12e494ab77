//! The TLS side of the fabric: the cluster CA, this agent's certificate and key, and the
//! rustls configurations built from them.
//!
//! Both directions are verified against the cluster CA only (never the system roots): a
//! server requires a client certificate, a client checks that the server's certificate names
//! `server.<region>.noded`. TLS 1.3 only (QUIC has nothing else), ring as the provider.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::identity::{IdentityError, PeerIdentity};

/// The ALPN protocol every fabric connection speaks; a peer offering another is refused in
/// the handshake.
pub const ALPN: &[u8] = b"noded/1";

/// The most a PEM file of ours may hold: certificates and keys are a few KiB.
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The CA, this agent's certificate chain and its private key, PEM-encoded.
#[derive(Clone)]
pub struct TlsMaterial {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

// The private key never reaches a log through Debug.
impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial").finish_non_exhaustive()
    }
}

/// Which of the three files a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemKind {
    Ca,
    Cert,
    Key,
}

impl PemKind {
    fn what(self) -> &'static str {
        match self {
            PemKind::Ca => "CA certificate",
            PemKind::Cert => "certificate",
            PemKind::Key => "private key",
        }
    }

    fn remedy(self) -> &'static str {
        match self {
            PemKind::Ca => "create the cluster CA with `noded tls ca create`",
            PemKind::Cert | PemKind::Key => {
                "issue this agent's certificate and key with `noded tls cert create -server` \
                 (or -client, -cli)"
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the {} {path}: {reason}; {}", .kind.what(), .kind.remedy())]
    Read {
        kind: PemKind,
        path: String,
        reason: String,
    },
    #[error("the {} {origin} is not usable PEM: {reason}; {}", .kind.what(), .kind.remedy())]
    Pem {
        kind: PemKind,
        origin: String,
        reason: String,
    },
    #[error("this agent's certificate: {0}")]
    Identity(#[from] IdentityError),
    #[error("the TLS configuration was refused: {0}")]
    Config(String),
}

fn config_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
}

impl TlsMaterial {
    /// Reads the three PEM files and checks that each holds what it should, so a wrong file
    /// is named here rather than discovered in a handshake.
    pub fn load(
        ca_file: impl AsRef<Path>,
        cert_file: impl AsRef<Path>,
        key_file: impl AsRef<Path>,
    ) -> Result<TlsMaterial, TlsError> {
        let material = TlsMaterial {
            ca_pem: read_pem(ca_file.as_ref(), PemKind::Ca)?,
            cert_pem: read_pem(cert_file.as_ref(), PemKind::Cert)?,
            key_pem: read_pem(key_file.as_ref(), PemKind::Key)?,
        };
        let origin = |p: &Path| p.display().to_string();
        material.roots(&origin(ca_file.as_ref()))?;
        material.chain(&origin(cert_file.as_ref()))?;
        material.key(&origin(key_file.as_ref()))?;
        Ok(material)
    }

    /// What this agent's own certificate says it is.
    pub fn identity(&self) -> Result<PeerIdentity, TlsError> {
        let chain = self.chain("(in memory)")?;
        let leaf = chain.first().ok_or_else(|| TlsError::Pem {
            kind: PemKind::Cert,
            origin: "(in memory)".into(),
            reason: "no certificate".into(),
        })?;
        Ok(PeerIdentity::from_certificate(leaf)?)
    }

    /// The server side: a client certificate signed by the CA is required.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let provider = provider();
        let verifier = WebPkiClientVerifier::builder_with_provider(
            self.roots("(CA)")?.into(),
            provider.clone(),
        )
        .build()
        .map_err(config_err)?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain("(certificate)")?, self.key("(key)")?)
            .map_err(config_err)?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// The client side: the server must present a certificate signed by the CA for the name
    /// given at connect time (`server.<region>.noded`); ours is presented in return.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_err)?
            .with_root_certificates(self.roots("(CA)")?)
            .with_client_auth_cert(self.chain("(certificate)")?, self.key("(key)")?)
            .map_err(config_err)?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    fn roots(&self, origin: &str) -> Result<RootCertStore, TlsError> {
        let bad = |reason: String| TlsError::Pem {
            kind: PemKind::Ca,
            origin: origin.to_string(),
            reason,
        };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| bad(e.to_string()))?;
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(bad("it holds no certificate".into()));
        }
        Ok(roots)
    }

    fn chain(&self, origin: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let bad = |reason: String| TlsError::Pem {
            kind: PemKind::Cert,
            origin: origin.to_string(),
            reason,
        };
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if chain.is_empty() {
            return Err(bad("it holds no certificate".into()));
        }
        Ok(chain)
    }

    fn key(&self, origin: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| TlsError::Pem {
            kind: PemKind::Key,
            origin: origin.to_string(),
            reason: e.to_string(),
        })
    }
}

/// ring, the provider quinn and rcgen use here too. rustls 0.23.48 deprecates it for lacking
/// post-quantum key exchange; aws-lc-rs has that but needs cmake and a C toolchain step this
/// workspace does not carry. Revisit when the fabric crosses untrusted networks for long-lived
/// secrets.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem(path: &Path, kind: PemKind) -> Result<String, TlsError> {
    let read = |reason: String| TlsError::Read {
        kind,
        path: path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| read(e.to_string()))?;
    if meta.len() > MAX_PEM_BYTES {
        return Err(read(format!(
            "it is {} bytes, more than the {MAX_PEM_BYTES} a PEM file may hold",
            meta.len()
        )));
    }
    std::fs::read_to_string(path).map_err(|e| read(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Role;
    use crate::pki;

    #[test]
    fn load_names_the_missing_file_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let ca = pki::create_ca("ca", 1).unwrap();
        let cert = pki::issue(&ca, Role::Server, "global", &[], &[], 1).unwrap();
        let ca_file = dir.path().join("ca.pem");
        let cert_file = dir.path().join("cert.pem");
        let key_file = dir.path().join("key.pem");
        std::fs::write(&ca_file, &ca.cert_pem).unwrap();
        std::fs::write(&cert_file, &cert.cert_pem).unwrap();
        std::fs::write(&key_file, &cert.key_pem).unwrap();

        let material = TlsMaterial::load(&ca_file, &cert_file, &key_file).unwrap();
        assert_eq!(
            material.identity().unwrap(),
            PeerIdentity::new(Role::Server, "global")
        );
        material.server_config().unwrap();
        material.client_config().unwrap();

        let missing = dir.path().join("nope.pem");
        let err = TlsMaterial::load(&missing, &cert_file, &key_file)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.pem"), "{err}");
        assert!(err.contains("noded tls ca create"), "{err}");

        // A key where the certificate should be.
        let err = TlsMaterial::load(&ca_file, &key_file, &key_file)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("certificate") && err.contains("key.pem"),
            "{err}"
        );
        assert!(err.contains("noded tls cert create"), "{err}");
        let err = TlsMaterial::load(&ca_file, &cert_file, &cert_file)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("private key") && err.contains("cert.pem"),
            "{err}"
        );
    }
}
