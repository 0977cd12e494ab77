//! How a jobspec file is named on the command line and read: HCL (with `-var`, `-var-file`
//! and `NOMAD_VAR_*`) or API JSON, checked locally before anything is sent.

use std::path::PathBuf;

use anyhow::{anyhow, bail};
use clap::Args;
use controlplane::jobspec::{self, ParseOptions};
use controlplane::model::Job;

#[derive(Debug, Clone, Args)]
pub struct SpecArgs {
    /// Read the file as API JSON ({"Job": {...}}).
    #[arg(long)]
    pub json: bool,
    /// Set an HCL variable: -var name=value.
    #[arg(long = "var")]
    pub vars: Vec<String>,
    /// Read HCL variables from a file.
    #[arg(long = "var-file")]
    pub var_files: Vec<PathBuf>,
    /// The jobspec (`-` for standard input).
    pub file: PathBuf,
}

impl SpecArgs {
    /// Parses and validates the jobspec locally; prints warnings to stderr.
    pub fn load_job(&self) -> anyhow::Result<Job> {
        let opts = self.parse_options()?;
        let parsed = if self.file.as_os_str() == "-" {
            // The jobspec on stdin, read no further than the size limit.
            let mut opts = opts.clone();
            opts.filename = "<stdin>".to_string();
            jobspec::read_limited(std::io::stdin().lock(), &opts.limits).and_then(|text| {
                if self.json || text.trim_start().starts_with('{') {
                    jobspec::parse_api_json(&text, &opts)
                } else {
                    jobspec::parse_hcl(&text, &opts)
                }
            })
        } else if self.json {
            let text = std::fs::read_to_string(&self.file)
                .map_err(|e| anyhow!("reading {}: {e}", self.file.display()))?;
            jobspec::parse_api_json(&text, &opts)
        } else {
            jobspec::parse_file(&self.file, &opts)
        };
        let shown = self.file.display();
        let parsed = parsed
            .and_then(|p| p.validated(&opts.limits))
            .map_err(|errors| anyhow!("{shown} is not a valid job:\n{errors}"))?;
        let config_errors = controlplane::drivers::check_job(&parsed.job);
        if !config_errors.is_empty() {
            bail!("{shown} is not a valid job:\n{}", config_errors.join("\n"));
        }
        for w in &parsed.warnings {
            eprintln!("Warning: {w}");
        }
        Ok(parsed.job)
    }

    fn parse_options(&self) -> anyhow::Result<ParseOptions> {
        let mut opts = ParseOptions::for_file(self.file.display().to_string());
        for v in &self.vars {
            let (k, val) = v
                .split_once('=')
                .ok_or_else(|| anyhow!("-var {v:?} must have the form name=value"))?;
            opts.vars.push((k.to_string(), val.to_string()));
        }
        opts.var_files = self.var_files.clone();
        opts.env_vars = std::env::vars()
            .filter(|(k, _)| k.starts_with("NOMAD_VAR_"))
            .collect();
        opts.allow_fs_functions = true;
        Ok(opts)
    }
}
