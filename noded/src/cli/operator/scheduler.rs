//! `noded operator scheduler get-config|set-config`.

use anyhow::anyhow;
use clap::Args;
use controlplane::model::SchedulerConfiguration;

use super::super::format::kv;
use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::output::OutputArgs;
use super::super::Exit;

const PATH: &str = "/v1/operator/scheduler/configuration";

async fn current(api: &ApiClient) -> anyhow::Result<SchedulerConfiguration> {
    let body: serde_json::Value = api
        .get_now(PATH, &[])
        .await
        .map_err(|e| anyhow!("Error querying the scheduler configuration: {e}"))?;
    serde_json::from_value(body["SchedulerConfig"].clone())
        .map_err(|e| anyhow!("the agent's scheduler configuration is not readable: {e}"))
}

#[derive(Debug, Args)]
pub struct GetConfig {
    #[command(flatten)]
    out: OutputArgs,
}

impl ApiCommand for GetConfig {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let config = current(api).await?;
        self.out.print(&config, |c| {
            kv(&[
                ("Scheduler Algorithm", c.scheduler_algorithm.clone()),
                (
                    "Memory Oversubscription",
                    c.memory_oversubscription_enabled.to_string(),
                ),
                ("Modify Index", c.modify_index.to_string()),
            ])
        })
    }
}

#[derive(Debug, Args)]
pub struct SetConfig {
    /// binpack (fill nodes up) or spread (spread allocations over nodes).
    #[arg(long = "scheduler-algorithm")]
    algorithm: Option<String>,
    /// Let tasks use memory_max above their memory reservation.
    #[arg(long = "memory-oversubscription")]
    memory_oversubscription: Option<bool>,
}

impl ApiCommand for SetConfig {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let mut config = current(api).await?;
        if let Some(a) = self.algorithm {
            config.scheduler_algorithm = a;
        }
        if let Some(m) = self.memory_oversubscription {
            config.memory_oversubscription_enabled = m;
        }
        let _: serde_json::Value = api
            .put(PATH, &config)
            .await
            .map_err(|e| anyhow!("Error updating the scheduler configuration: {e}"))?;
        println!("Scheduler configuration updated!");
        Ok(Exit::Ok)
    }
}
