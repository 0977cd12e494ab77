//! `noded system gc` and `noded system reconcile summaries`.

use anyhow::anyhow;
use clap::{Args, Subcommand};

use super::global::{Api, ApiCommand};
use super::http::ApiClient;
use super::Exit;

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Collect finished jobs, evaluations, allocations and down nodes now, whatever their age.
    Gc(Api<SystemGc>),
    /// Reconcile the servers' records.
    #[command(subcommand)]
    Reconcile(ReconcileCommand),
}

#[derive(Debug, Subcommand)]
pub enum ReconcileCommand {
    /// Recompute job summaries from the allocations.
    Summaries(Api<ReconcileSummaries>),
}

impl SystemCommand {
    pub async fn run(self) -> anyhow::Result<Exit> {
        match self {
            SystemCommand::Gc(c) => c.run().await,
            SystemCommand::Reconcile(ReconcileCommand::Summaries(c)) => c.run().await,
        }
    }
}

#[derive(Debug, Args)]
pub struct SystemGc {}

impl ApiCommand for SystemGc {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let _: serde_json::Value = api
            .put_query::<(), _>("/v1/system/gc", &[], None)
            .await
            .map_err(|e| anyhow!("Error running system garbage-collection: {e}"))?;
        Ok(Exit::Ok)
    }
}

#[derive(Debug, Args)]
pub struct ReconcileSummaries {}

impl ApiCommand for ReconcileSummaries {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let _: serde_json::Value = api
            .put_query::<(), _>("/v1/system/reconcile/summaries", &[], None)
            .await
            .map_err(|e| anyhow!("Error running system summary reconciliation: {e}"))?;
        Ok(Exit::Ok)
    }
}
