//! `noded config ...`: the agent's configuration, checked without an agent.

mod validate;

use clap::Subcommand;

use super::Exit;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check agent config files or directories without starting an agent.
    Validate(validate::ConfigValidate),
}

impl ConfigCommand {
    pub fn run(self) -> anyhow::Result<Exit> {
        match self {
            ConfigCommand::Validate(c) => c.run(),
        }
    }
}
