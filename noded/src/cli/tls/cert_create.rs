//! `noded tls cert create -server|-client|-cli`: a certificate signed by the cluster CA,
//! `<region>-<role>-noded.pem` and its key.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::Args;
use federation::pki::{self, CaPem};
use federation::Role;

use super::{refuse_existing, write_new, CERT_MODE, KEY_MODE};

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("role").required(true).multiple(false))]
pub struct CertCreate {
    /// Generate a server certificate.
    #[arg(long, group = "role")]
    pub server: bool,
    /// Generate a client certificate.
    #[arg(long, group = "role")]
    pub client: bool,
    /// Generate a certificate for the command line.
    #[arg(long, group = "role")]
    pub cli: bool,
    /// The region the certificate is for.
    #[arg(long, default_value = "global")]
    pub region: String,
    /// Number of days the certificate is valid for from now on.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// The CA certificate.
    #[arg(long, default_value = "noded-agent-ca.pem")]
    pub ca: PathBuf,
    /// The CA key.
    #[arg(long, default_value = "noded-agent-ca-key.pem")]
    pub key: PathBuf,
    /// An additional DNS name ("localhost" is always included); may be repeated.
    #[arg(long = "additional-dnsname")]
    pub additional_dnsname: Vec<String>,
    /// An additional IP address ("127.0.0.1" is always included); may be repeated.
    #[arg(long = "additional-ipaddress")]
    pub additional_ipaddress: Vec<IpAddr>,
}

impl CertCreate {
    fn role(&self) -> Role {
        match (self.server, self.client) {
            (true, _) => Role::Server,
            (_, true) => Role::Client,
            _ => Role::Cli,
        }
    }

    /// Writes the certificate and key into `dir` (the CA paths are relative to it); returns
    /// what to print.
    pub fn run_in(&self, dir: &Path) -> anyhow::Result<Vec<String>> {
        let role = self.role();
        let prefix = format!("{}-{}-noded", self.region, role.as_str());
        let cert_file = format!("{prefix}.pem");
        let key_file = format!("{prefix}-key.pem");
        refuse_existing(dir, &[("Certificate", &cert_file), ("Key", &key_file)])?;
        let ca = CaPem {
            cert_pem: read(dir, &self.ca, "CA certificate")?,
            key_pem: read(dir, &self.key, "CA key")?,
        };
        let issued = pki::issue(
            &ca,
            role,
            &self.region,
            &self.additional_dnsname,
            &self.additional_ipaddress,
            self.days,
        )?;
        let mut lines = Vec::new();
        if role == Role::Server {
            lines.push(
                "==> WARNING: a server certificate lets its holder join the servers and read \
                 all cluster state.\n    Keep it on server hosts only and guard it like the \
                 CA key."
                    .to_string(),
            );
        }
        lines.push(format!(
            "==> Using CA file {} and CA key {}",
            self.ca.display(),
            self.key.display()
        ));
        let title = match role {
            Role::Server => "Server",
            Role::Client => "Client",
            Role::Cli => "CLI",
        };
        write_new(dir, &cert_file, &issued.cert_pem, CERT_MODE)?;
        lines.push(format!("==> {title} Certificate saved to {cert_file}"));
        write_new(dir, &key_file, &issued.key_pem, KEY_MODE)?;
        lines.push(format!("==> {title} Certificate key saved to {key_file}"));
        Ok(lines)
    }
}

fn read(dir: &Path, path: &Path, what: &str) -> anyhow::Result<String> {
    let full = dir.join(path);
    std::fs::read_to_string(&full).map_err(|e| {
        anyhow!(
            "Error reading the {what} {}: {e}; create the CA with `noded tls ca create` or \
             pass -ca and -key",
            path.display()
        )
    })
}
