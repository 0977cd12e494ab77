//! `noded alloc signal [-s SIGNAL] [-task T] ID [TASK]`.

use anyhow::anyhow;
use clap::Args;

use super::super::format::short;
use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::resolve::node_api;
use super::super::Exit;
use super::fetch_alloc;

#[derive(Debug, Args)]
pub struct AllocSignal {
    /// Signal name.
    #[arg(short = 's', default_value = "SIGKILL")]
    signal: String,
    #[arg(long)]
    task: Option<String>,
    id: String,
    /// The task (same as -task); every running task when left out.
    task_arg: Option<String>,
}

impl ApiCommand for AllocSignal {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let alloc = fetch_alloc(api, &self.id).await?;
        let task = self.task.or(self.task_arg).unwrap_or_default();
        let body = serde_json::json!({ "Task": task, "Signal": self.signal });
        let _: serde_json::Value = node_api(api, &alloc)
            .await?
            .put(&format!("/v1/client/allocation/{}/signal", alloc.id), &body)
            .await
            .map_err(|e| anyhow!("Error signaling allocation: {e}"))?;
        println!("Sent {} to allocation {}", self.signal, short(&alloc.id));
        Ok(Exit::Ok)
    }
}
