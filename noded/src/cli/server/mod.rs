//! `noded server ...`: the servers of this region (gossip membership).

mod force_leave;
mod join;
mod members;

use clap::Subcommand;

use super::global::Api;
use super::Exit;

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// List the servers of the region and their status.
    Members(Api<members::Members>),
    /// Join this server to others.
    Join(Api<join::Join>),
    /// Force a failed server into the "left" state.
    ForceLeave(Api<force_leave::ForceLeave>),
}

impl ServerCommand {
    pub async fn run(self) -> anyhow::Result<Exit> {
        match self {
            ServerCommand::Members(c) => c.run().await,
            ServerCommand::Join(c) => c.run().await,
            ServerCommand::ForceLeave(c) => c.run().await,
        }
    }
}
