//! `noded operator autopilot get-config`.

use anyhow::anyhow;
use clap::Args;
use controlplane::model::duration::format_go;
use controlplane::model::AutopilotConfiguration;

use super::super::super::global::ApiCommand;
use super::super::super::http::ApiClient;
use super::super::super::output::OutputArgs;
use super::super::super::Exit;
use super::CONFIG_PATH;

#[derive(Debug, Args)]
pub struct GetConfig {
    #[command(flatten)]
    out: OutputArgs,
}

impl ApiCommand for GetConfig {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let config: AutopilotConfiguration = api
            .get_now(CONFIG_PATH, &[])
            .await
            .map_err(|e| anyhow!("Error querying Autopilot configuration: {e}"))?;
        self.out.print(&config, render)
    }
}

/// Nomad prints `Key = value`, unaligned.
fn render(c: &AutopilotConfiguration) -> String {
    format!(
        "CleanupDeadServers = {}\nLastContactThreshold = {}\nMaxTrailingLogs = {}\nMinQuorum = {}\nServerStabilizationTime = {}\nEnableRedundancyZones = {}\nDisableUpgradeMigration = {}\nEnableCustomUpgrades = {}\n",
        c.cleanup_dead_servers,
        format_go(c.last_contact_threshold),
        c.max_trailing_logs,
        c.min_quorum,
        format_go(c.server_stabilization_time),
        c.enable_redundancy_zones,
        c.disable_upgrade_migration,
        c.enable_custom_upgrades,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_print_as_nomad_prints_them() {
        let out = render(&AutopilotConfiguration::default());
        assert!(out.starts_with(
            "CleanupDeadServers = true\nLastContactThreshold = 200ms\nMaxTrailingLogs = 250\n"
        ));
        assert!(out.contains("ServerStabilizationTime = 10s\n"));
    }
}
