//! The cluster's certificate authority and the certificates it issues (`noded tls`, `-dev`).
//!
//! Keys are ECDSA P-256. A CA certificate may sign certificates and nothing else; an agent
//! certificate names its role in a DNS name (`server.<region>.noded`, see
//! [`crate::identity`]) and carries the extended key usages its role needs: servers and
//! clients both accept and make connections, the CLI only makes them.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};

use crate::identity::{validate_region, IdentityError, Role};

/// The longest validity the tools issue: 100 years. Past it `days` is a typo.
pub const MAX_DAYS: u32 = 36_500;

/// A certificate issued before the clock of a peer that runs a little behind is still valid
/// there.
const BACKDATE: Duration = Duration::from_secs(60);

/// A CA certificate and its private key, PEM-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct CaPem {
    pub cert_pem: String,
    pub key_pem: String,
}

/// An agent certificate and its private key, PEM-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct CertPem {
    pub cert_pem: String,
    pub key_pem: String,
}

// Private keys never reach a log through Debug.
impl std::fmt::Debug for CaPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaPem").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for CertPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertPem").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("days must be between 1 and {MAX_DAYS}, not {0}")]
    BadDays(u32),
    #[error("the common name must not be empty")]
    EmptyCommonName,
    #[error(transparent)]
    Region(#[from] IdentityError),
    #[error("additional DNS name {name:?} is not valid: {reason}")]
    BadDnsName { name: String, reason: String },
    #[error("the CA key is not a readable PEM private key: {0}")]
    CaKey(String),
    #[error("the CA certificate is not a readable PEM certificate: {0}")]
    CaCert(String),
    #[error(
        "the CA key does not belong to the CA certificate; pass the key file created with it \
         by `noded tls ca create`"
    )]
    KeyMismatch,
    #[error("the CA certificate is not a CA (no CA basic constraint); pass the cluster CA")]
    NotACa,
    #[error("generating the certificate failed: {0}")]
    Generate(String),
}

fn generate(e: rcgen::Error) -> PkiError {
    PkiError::Generate(e.to_string())
}

fn validity(params: &mut CertificateParams, days: u32) -> Result<(), PkiError> {
    if days == 0 || days > MAX_DAYS {
        return Err(PkiError::BadDays(days));
    }
    let now = SystemTime::now();
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + Duration::from_secs(u64::from(days) * 86_400)).into();
    Ok(())
}

/// A new self-signed CA: ECDSA P-256, may sign certificates (and CRLs), valid `days`.
pub fn create_ca(common_name: &str, days: u32) -> Result<CaPem, PkiError> {
    if common_name.trim().is_empty() {
        return Err(PkiError::EmptyCommonName);
    }
    let mut params = CertificateParams::default();
    validity(&mut params, days)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate)?;
    let cert = params.self_signed(&key).map_err(generate)?;
    Ok(CaPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A certificate for `role` in `region`, signed by `ca`. Its DNS names are
/// `<role>.<region>.noded`, `localhost` and `extra_dns`; its addresses `127.0.0.1` and
/// `extra_ips`.
pub fn issue(
    ca: &CaPem,
    role: Role,
    region: &str,
    extra_dns: &[String],
    extra_ips: &[IpAddr],
    days: u32,
) -> Result<CertPem, PkiError> {
    validate_region(region)?;
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(|e| PkiError::CaKey(e.to_string()))?;
    check_ca(&ca.cert_pem, &ca_key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, &ca_key)
        .map_err(|e| PkiError::CaCert(e.to_string()))?;

    let mut params = CertificateParams::default();
    validity(&mut params, days)?;
    let role_name = role.dns_name(region);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, role_name.as_str());
    params.distinguished_name = dn;
    params.subject_alt_names = subject_alt_names(&role_name, extra_dns, extra_ips)?;
    // ECDSA keys sign (the TLS 1.3 handshake); they never encipher.
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match role {
        Role::Server | Role::Client => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Role::Cli => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate)?;
    let cert = params.signed_by(&key, &issuer).map_err(generate)?;
    Ok(CertPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Refuses a "CA" that is not one, or a key that is not the CA's: either would issue
/// certificates no peer accepts, and the operator would find out only at the handshake.
fn check_ca(cert_pem: &str, key: &KeyPair) -> Result<(), PkiError> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| PkiError::CaCert(e.to_string()))?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::CaCert(e.to_string()))?;
    if !cert.is_ca() {
        return Err(PkiError::NotACa);
    }
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(PkiError::KeyMismatch);
    }
    Ok(())
}

fn subject_alt_names(
    role_name: &str,
    extra_dns: &[String],
    extra_ips: &[IpAddr],
) -> Result<Vec<SanType>, PkiError> {
    let mut sans = Vec::new();
    let mut push = |san: SanType| {
        if !sans.contains(&san) {
            sans.push(san);
        }
    };
    for name in [role_name, "localhost"]
        .into_iter()
        .chain(extra_dns.iter().map(|s| s.trim()))
    {
        let ia5 = name
            .try_into()
            .map_err(|e: rcgen::Error| PkiError::BadDnsName {
                name: name.to_string(),
                reason: e.to_string(),
            })?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(PkiError::BadDnsName {
                name: name.to_string(),
                reason: "a DNS name has no spaces and is not empty".into(),
            });
        }
        push(SanType::DnsName(ia5));
    }
    for ip in std::iter::once(IpAddr::V4(Ipv4Addr::LOCALHOST)).chain(extra_ips.iter().copied()) {
        push(SanType::IpAddress(ip));
    }
    Ok(sans)
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    use x509_parser::extensions::GeneralName;

    use super::*;
    use crate::identity::PeerIdentity;

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn issued_certificates_name_their_role_and_usages() {
        let ca = create_ca("noded Agent CA", 30).unwrap();
        let ca_der = der(&ca.cert_pem);
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        assert!(ca_cert.is_ca());

        let extra = ["node1.example.com".to_string()];
        let ips = ["10.0.0.5".parse().unwrap()];
        for role in Role::ALL {
            let issued = issue(&ca, role, "eu", &extra, &ips, 10).unwrap();
            let d = der(&issued.cert_pem);
            assert_eq!(
                PeerIdentity::from_certificate(&d).unwrap(),
                PeerIdentity::new(role, "eu")
            );
            let (_, cert) = x509_parser::parse_x509_certificate(&d).unwrap();
            let names: Vec<String> = cert
                .subject_alternative_name()
                .unwrap()
                .unwrap()
                .value
                .general_names
                .iter()
                .map(|n| match n {
                    GeneralName::DNSName(s) => s.to_string(),
                    GeneralName::IPAddress(b) => format!("ip:{b:?}"),
                    other => format!("{other:?}"),
                })
                .collect();
            assert!(names.contains(&role.dns_name("eu")), "{names:?}");
            assert!(names.contains(&"localhost".to_string()), "{names:?}");
            assert!(
                names.contains(&"node1.example.com".to_string()),
                "{names:?}"
            );
            assert!(
                names.contains(&"ip:[127, 0, 0, 1]".to_string()),
                "{names:?}"
            );
            assert!(names.contains(&"ip:[10, 0, 0, 5]".to_string()), "{names:?}");
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.client_auth);
            assert_eq!(eku.server_auth, role != Role::Cli, "{role}");
            assert!(!cert.is_ca());
            assert_eq!(cert.issuer(), ca_cert.subject());
        }
    }

    #[test]
    fn a_certificate_with_several_or_no_roles_is_refused() {
        let ca = create_ca("ca", 1).unwrap();
        let both = issue(
            &ca,
            Role::Client,
            "global",
            &["server.global.noded".into()],
            &[],
            1,
        )
        .unwrap();
        assert!(matches!(
            PeerIdentity::from_certificate(&der(&both.cert_pem)),
            Err(IdentityError::SeveralRoles(_))
        ));
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let plain = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(
            PeerIdentity::from_certificate(plain.der()),
            Err(IdentityError::NoRole)
        );
        assert!(matches!(
            PeerIdentity::from_certificate(b"garbage"),
            Err(IdentityError::Unreadable(_))
        ));
    }

    #[test]
    fn bad_inputs_are_refused_with_what_to_do() {
        let ca = create_ca("ca", 1).unwrap();
        let other = create_ca("other", 1).unwrap();
        assert!(matches!(create_ca(" ", 1), Err(PkiError::EmptyCommonName)));
        assert!(matches!(create_ca("x", 0), Err(PkiError::BadDays(0))));
        assert!(matches!(
            issue(&ca, Role::Server, "Bad_Region", &[], &[], 1),
            Err(PkiError::Region(_))
        ));
        assert!(matches!(
            issue(&ca, Role::Server, "global", &["a b".into()], &[], 1),
            Err(PkiError::BadDnsName { .. })
        ));
        let mixed = CaPem {
            cert_pem: ca.cert_pem.clone(),
            key_pem: other.key_pem.clone(),
        };
        assert!(matches!(
            issue(&mixed, Role::Server, "global", &[], &[], 1),
            Err(PkiError::KeyMismatch)
        ));
        let leaf = issue(&ca, Role::Server, "global", &[], &[], 1).unwrap();
        let not_ca = CaPem {
            cert_pem: leaf.cert_pem,
            key_pem: leaf.key_pem,
        };
        assert!(matches!(
            issue(&not_ca, Role::Server, "global", &[], &[], 1),
            Err(PkiError::NotACa)
        ));
    }
}
