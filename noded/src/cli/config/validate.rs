//! `noded config validate PATH...` (Nomad's `nomad config validate`): reads the files and
//! directories as `noded agent -config` would, merged in order, and runs every check the
//! agent runs (addresses, bootstrap, TLS files) without starting anything.

use std::path::PathBuf;

use clap::Args;

use super::super::Exit;
use crate::agent::config::{self, AgentConfig, ConfigErrors, Overrides};

#[derive(Debug, Args)]
pub struct ConfigValidate {
    /// Config files or directories (their *.hcl and *.json files); later ones override
    /// earlier ones.
    #[arg(required = true, value_name = "CONFIG_PATH")]
    paths: Vec<PathBuf>,
}

impl ConfigValidate {
    pub fn run(self) -> anyhow::Result<Exit> {
        let files = match config::load_paths(&self.paths) {
            Ok(files) => files,
            Err(errors) => return Ok(invalid(&errors)),
        };
        for path in &self.paths {
            if config::expand(path).is_ok_and(|list| list.is_empty()) {
                eprintln!("No configuration loaded from {}", path.display());
            }
        }
        let built = AgentConfig::build(&files, &Overrides::default(), || {
            anyhow::bail!("a temporary data dir is only made for -dev")
        });
        match built {
            Ok(agent) => {
                for warning in &agent.warnings {
                    eprintln!("Warning: {warning}");
                }
                println!("Configuration is valid!");
                Ok(Exit::Ok)
            }
            Err(errors) => Ok(invalid(&errors)),
        }
    }
}

/// Every problem, one per line, then Nomad's verdict.
fn invalid(errors: &ConfigErrors) -> Exit {
    for e in &errors.0 {
        eprintln!("{e}");
    }
    eprintln!("Configuration is invalid");
    Exit::Code(1)
}
