//! `noded alloc restart [-task T] ID [TASK]`.

use anyhow::anyhow;
use clap::Args;

use super::super::format::short;
use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::resolve::node_api;
use super::super::Exit;
use super::fetch_alloc;

#[derive(Debug, Args)]
pub struct AllocRestart {
    #[arg(long)]
    task: Option<String>,
    id: String,
    /// The task (same as -task); every running task when left out.
    task_arg: Option<String>,
}

impl ApiCommand for AllocRestart {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let alloc = fetch_alloc(api, &self.id).await?;
        let task = self.task.or(self.task_arg);
        let body =
            serde_json::json!({ "TaskName": task.as_deref().unwrap_or(""), "AllTasks": false });
        let _: serde_json::Value = node_api(api, &alloc)
            .await?
            .put(
                &format!("/v1/client/allocation/{}/restart", alloc.id),
                &body,
            )
            .await
            .map_err(|e| anyhow!("Error restarting allocation: {e}"))?;
        let what = task
            .map(|t| format!("task {t:?}"))
            .unwrap_or_else(|| "every running task".into());
        println!("Restarted {what} of allocation {}", short(&alloc.id));
        Ok(Exit::Ok)
    }
}
