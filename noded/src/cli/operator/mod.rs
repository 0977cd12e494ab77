//! `noded operator ...`.

mod autopilot;
mod raft;
mod scheduler;
mod snapshot;

use clap::Subcommand;

use super::global::Api;
use super::Exit;

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// The scheduler configuration.
    #[command(subcommand)]
    Scheduler(SchedulerCommand),
    /// The Raft peers of the region.
    #[command(subcommand)]
    Raft(raft::RaftCommand),
    /// Autopilot: server health and its configuration.
    #[command(subcommand)]
    Autopilot(autopilot::AutopilotCommand),
    /// Save, restore and inspect snapshots of the state.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
}

#[derive(Debug, Subcommand)]
pub enum SchedulerCommand {
    /// Show it.
    GetConfig(Api<scheduler::GetConfig>),
    /// Change it.
    SetConfig(Api<scheduler::SetConfig>),
}

impl OperatorCommand {
    pub async fn run(self) -> anyhow::Result<Exit> {
        match self {
            OperatorCommand::Scheduler(SchedulerCommand::GetConfig(c)) => c.run().await,
            OperatorCommand::Scheduler(SchedulerCommand::SetConfig(c)) => c.run().await,
            OperatorCommand::Raft(c) => c.run().await,
            OperatorCommand::Autopilot(c) => c.run().await,
            OperatorCommand::Snapshot(c) => c.run().await,
        }
    }
}
