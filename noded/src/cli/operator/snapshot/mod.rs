//! `noded operator snapshot ...`: the operator's backup of the whole state.

mod inspect;
mod restore;
mod save;

use clap::Subcommand;

use super::super::global::Api;
use super::super::Exit;

const PATH: &str = "/v1/operator/snapshot";

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save the state to a file.
    Save(Api<save::Save>),
    /// Replace the state of every server with a saved one.
    Restore(Api<restore::Restore>),
    /// Show what a saved file holds (no agent needed).
    Inspect(inspect::Inspect),
}

impl SnapshotCommand {
    pub async fn run(self) -> anyhow::Result<Exit> {
        match self {
            SnapshotCommand::Save(c) => c.run().await,
            SnapshotCommand::Restore(c) => c.run().await,
            SnapshotCommand::Inspect(c) => c.run(),
        }
    }
}
