//! `noded operator autopilot set-config [-cleanup-dead-servers=true|false] ...`: changes only
//! what is given, with check-and-set against the configuration read.

use anyhow::anyhow;
use clap::Args;
use controlplane::model::duration::parse_go;
use controlplane::model::AutopilotConfiguration;

use super::super::super::global::ApiCommand;
use super::super::super::http::ApiClient;
use super::super::super::Exit;
use super::CONFIG_PATH;

#[derive(Debug, Args)]
pub struct SetConfig {
    /// Remove dead servers when a new one joins: true or false.
    #[arg(long = "cleanup-dead-servers")]
    cleanup_dead_servers: Option<bool>,
    /// Longest a server may go without contact from the leader and stay healthy ("200ms").
    #[arg(long = "last-contact-threshold", value_parser = parse_go)]
    last_contact_threshold: Option<std::time::Duration>,
    /// Most log entries a server may trail the leader by and stay healthy.
    #[arg(long = "max-trailing-logs")]
    max_trailing_logs: Option<u64>,
    /// Fewest voters dead-server cleanup leaves.
    #[arg(long = "min-quorum")]
    min_quorum: Option<u64>,
    /// How long a new server must be healthy before it votes ("10s").
    #[arg(long = "server-stabilization-time", value_parser = parse_go)]
    server_stabilization_time: Option<std::time::Duration>,
}

impl SetConfig {
    fn apply(&self, config: &mut AutopilotConfiguration) {
        if let Some(v) = self.cleanup_dead_servers {
            config.cleanup_dead_servers = v;
        }
        if let Some(v) = self.last_contact_threshold {
            config.last_contact_threshold = v;
        }
        if let Some(v) = self.max_trailing_logs {
            config.max_trailing_logs = v;
        }
        if let Some(v) = self.min_quorum {
            config.min_quorum = v;
        }
        if let Some(v) = self.server_stabilization_time {
            config.server_stabilization_time = v;
        }
    }
}

impl ApiCommand for SetConfig {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let mut config: AutopilotConfiguration = api
            .get_now(CONFIG_PATH, &[])
            .await
            .map_err(|e| anyhow!("Error querying Autopilot configuration: {e}"))?;
        self.apply(&mut config);
        let cas = config.modify_index.to_string();
        let written: bool = api
            .put_query(CONFIG_PATH, &[("cas", cas)], Some(&config))
            .await
            .map_err(|e| anyhow!("Error setting Autopilot configuration: {e}"))?;
        if !written {
            return Err(anyhow!(
                "Configuration could not be atomically updated: it changed while this command ran; run it again"
            ));
        }
        println!("Configuration updated!");
        Ok(Exit::Ok)
    }
}
