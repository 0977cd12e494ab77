//! `noded agent`: run a server, a client, or both (`-dev`).

use std::path::PathBuf;

use clap::Args;

use super::Exit;
use crate::agent;

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Development mode: server and client in one process, state in a temporary dir.
    #[arg(long)]
    pub dev: bool,
    /// Agent config file or directory (its *.hcl and *.json files, in lexical order); may be
    /// repeated, later files override earlier ones.
    #[arg(long)]
    pub config: Vec<PathBuf>,
    #[arg(long = "data-dir")]
    pub data_dir: Option<PathBuf>,
    /// Address to bind (default 127.0.0.1 with -dev, 0.0.0.0 otherwise).
    #[arg(long)]
    pub bind: Option<String>,
    #[arg(long = "http-port")]
    pub http_port: Option<u16>,
    #[arg(long)]
    pub region: Option<String>,
    #[arg(long = "dc")]
    pub datacenter: Option<String>,
    #[arg(long = "node")]
    pub node_name: Option<String>,
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
    /// Log as JSON lines (as `log_json = true`).
    #[arg(long = "log-json")]
    pub log_json: bool,
}

impl AgentArgs {
    pub fn run(self) -> anyhow::Result<Exit> {
        let files = agent::config::load_paths(&self.config)?;
        let overrides = agent::Overrides {
            dev: self.dev,
            data_dir: self.data_dir,
            bind: self.bind,
            http_port: self.http_port,
            region: self.region,
            datacenter: self.datacenter,
            node_name: self.node_name,
            log_level: self.log_level,
            log_json: self.log_json,
        };
        let config = agent::AgentConfig::build(&files, &overrides, agent::temp_data_dir)?;
        let filter = |level: &str| {
            std::env::var("RUST_LOG")
                .unwrap_or_else(|_| format!("{level},h2=warn,hyper=warn,openraft=warn"))
        };
        let logs = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter(
                &config.log_level,
            )))
            .with_writer(std::io::stderr);
        // The filter is reloadable so that SIGHUP can change the log level. Already set (a
        // test harness) is fine: its subscriber keeps the logs, and a reload says so.
        let set_log_level: agent::SetLogLevel = if config.log_json {
            let logs = logs.json().with_filter_reloading();
            let handle = logs.reload_handle();
            let _ = logs.try_init();
            Box::new(move |level: &str| {
                handle
                    .reload(tracing_subscriber::EnvFilter::new(filter(level)))
                    .map_err(|e| e.to_string())
            })
        } else {
            let logs = logs
                .with_ansi(crate::terminal::stderr_is_terminal())
                .with_filter_reloading();
            let handle = logs.reload_handle();
            let _ = logs.try_init();
            Box::new(move |level: &str| {
                handle
                    .reload(tracing_subscriber::EnvFilter::new(filter(level)))
                    .map_err(|e| e.to_string())
            })
        };
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let mut reload_overrides = overrides;
        // A reload reads the same files into the same data dir (a dev agent's temporary one
        // is not made again).
        reload_overrides.data_dir = Some(config.data_dir.clone());
        let reload = agent::Reload {
            paths: self.config.clone(),
            overrides: reload_overrides,
            set_log_level,
        };
        rt.block_on(agent::run(config, reload))?;
        Ok(Exit::Ok)
    }
}
