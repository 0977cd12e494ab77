//! `noded node ...`.

mod status;

use clap::Subcommand;

use super::global::Api;
use super::Exit;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes, or show one.
    Status(Api<status::NodeStatus>),
}

impl NodeCommand {
    pub async fn run(self) -> anyhow::Result<Exit> {
        match self {
            NodeCommand::Status(c) => c.run().await,
        }
    }
}
