//! `noded tls ca create`: a new cluster CA, `<domain>-agent-ca.pem` and its key.

use std::path::Path;

use clap::Args;

use super::{refuse_existing, write_new, CERT_MODE, KEY_MODE};

#[derive(Debug, Args)]
pub struct CaCreate {
    /// Number of days the CA is valid for from now on.
    #[arg(long, default_value_t = 1825)]
    pub days: u32,
    /// Common name of the CA.
    #[arg(long = "common-name", default_value = "noded Agent CA")]
    pub common_name: String,
    /// Domain of the cluster: the prefix of the file names.
    #[arg(long, default_value = "noded")]
    pub domain: String,
}

impl CaCreate {
    /// Writes the CA into `dir`; returns what to print.
    pub fn run_in(&self, dir: &Path) -> anyhow::Result<Vec<String>> {
        let cert_file = format!("{}-agent-ca.pem", self.domain);
        let key_file = format!("{}-agent-ca-key.pem", self.domain);
        refuse_existing(
            dir,
            &[("CA certificate", &cert_file), ("CA key", &key_file)],
        )?;
        let ca = federation::pki::create_ca(&self.common_name, self.days)?;
        write_new(dir, &cert_file, &ca.cert_pem, CERT_MODE)?;
        write_new(dir, &key_file, &ca.key_pem, KEY_MODE)?;
        Ok(vec![
            format!("==> CA certificate saved to: {cert_file}"),
            format!("==> CA certificate key saved to: {key_file}"),
        ])
    }
}
