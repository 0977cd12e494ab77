//! `noded operator snapshot restore FILE`: checked here first, and again by the agent.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args;
use controlplane::state::archive::read_archive;

use super::super::super::global::ApiCommand;
use super::super::super::http::ApiClient;
use super::super::super::Exit;
use super::PATH;

#[derive(Debug, Args)]
pub struct Restore {
    /// The snapshot to restore.
    file: PathBuf,
}

impl ApiCommand for Restore {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let bytes = std::fs::read(&self.file)
            .with_context(|| format!("Error opening snapshot file {}", self.file.display()))?;
        read_archive(&bytes).map_err(|e| {
            anyhow!(
                "Error restoring snapshot {}: {e}; nothing was changed",
                self.file.display()
            )
        })?;
        let _: serde_json::Value = api
            .put_bytes(PATH, bytes)
            .await
            .map_err(|e| anyhow!("Failed to restore snapshot: {e}"))?;
        println!("Snapshot Restored");
        Ok(Exit::Ok)
    }
}
