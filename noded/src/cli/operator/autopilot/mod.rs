//! `noded operator autopilot ...`: how the servers look after each other.

mod get_config;
mod health;
mod set_config;

use clap::Subcommand;

use super::super::global::Api;
use super::super::Exit;

const CONFIG_PATH: &str = "/v1/operator/autopilot/configuration";

#[derive(Debug, Subcommand)]
pub enum AutopilotCommand {
    /// Show the autopilot configuration.
    GetConfig(Api<get_config::GetConfig>),
    /// Change the autopilot configuration.
    SetConfig(Api<set_config::SetConfig>),
    /// Show the health of the region's servers.
    Health(Api<health::Health>),
}

impl AutopilotCommand {
    pub async fn run(self) -> anyhow::Result<Exit> {
        match self {
            AutopilotCommand::GetConfig(c) => c.run().await,
            AutopilotCommand::SetConfig(c) => c.run().await,
            AutopilotCommand::Health(c) => c.run().await,
        }
    }
}
