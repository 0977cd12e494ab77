//! `noded job init`: write the commented example jobspec.

use std::path::PathBuf;

use anyhow::{anyhow, bail};
use clap::Args;
use controlplane::jobspec;

use super::super::Exit;

#[derive(Debug, Args)]
pub struct JobInit {
    /// Overwrite the file if it exists.
    #[arg(long)]
    force: bool,
    #[arg(default_value = "example.nomad.hcl")]
    file: PathBuf,
}

impl JobInit {
    pub fn run(self) -> anyhow::Result<Exit> {
        let path = &self.file;
        if path.exists() && !self.force {
            bail!(
                "{} already exists; pass -force to overwrite it",
                path.display()
            );
        }
        std::fs::write(path, jobspec::example_job())
            .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
        println!("Example job file written to {}", path.display());
        Ok(Exit::Ok)
    }
}
