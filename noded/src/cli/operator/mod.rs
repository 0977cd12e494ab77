//! `noded operator ...`.

mod scheduler;

use clap::Subcommand;

use super::global::Api;
use super::Exit;

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// The scheduler configuration.
    #[command(subcommand)]
    Scheduler(SchedulerCommand),
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
        }
    }
}
