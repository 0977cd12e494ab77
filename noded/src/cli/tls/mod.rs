//! `noded tls ca create` and `noded tls cert create`: the cluster CA and agent certificates
//! for the server fabric, as Nomad's `nomad tls`. Files are written in the current directory
//! and never overwritten.

mod ca_create;
mod cert_create;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{anyhow, bail};
use clap::Subcommand;

use super::Exit;

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// The cluster's certificate authority.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Agent and CLI certificates signed by the CA.
    #[command(subcommand)]
    Cert(CertCommand),
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a new certificate authority.
    Create(ca_create::CaCreate),
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Create a certificate for a server, a client or the CLI.
    Create(cert_create::CertCreate),
}

impl TlsCommand {
    pub fn run(self) -> anyhow::Result<Exit> {
        let here = Path::new(".");
        let lines = match self {
            TlsCommand::Ca(CaCommand::Create(c)) => c.run_in(here)?,
            TlsCommand::Cert(CertCommand::Create(c)) => c.run_in(here)?,
        };
        for line in lines {
            println!("{line}");
        }
        Ok(Exit::Ok)
    }
}

/// Refuses to go on if any of `names` exists in `dir`, naming it (Nomad's wording).
fn refuse_existing(dir: &Path, names: &[(&str, &str)]) -> anyhow::Result<()> {
    for (what, name) in names {
        if dir.join(name).exists() {
            bail!("{what} file '{name}' already exists; move it away or run this in another directory");
        }
    }
    Ok(())
}

/// Writes a new file with `mode`; never replaces one (another run may have raced us).
fn write_new(dir: &Path, name: &str, contents: &str, mode: u32) -> anyhow::Result<()> {
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&path)
        .map_err(|e| anyhow!("creating {}: {e}", path.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))
}

/// Private keys: the owner alone may read them.
const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;

#[cfg(test)]
mod tests;
