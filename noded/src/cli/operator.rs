//! `noded operator scheduler get-config|set-config`.

use anyhow::anyhow;
use controlplane::model::SchedulerConfiguration;

use super::format::{json, kv};
use super::http::ApiClient;
use super::{Exit, Output};

const PATH: &str = "/v1/operator/scheduler/configuration";

async fn current(api: &ApiClient) -> anyhow::Result<SchedulerConfiguration> {
    let body: serde_json::Value = api
        .get_now(PATH, &[])
        .await
        .map_err(|e| anyhow!("Error querying the scheduler configuration: {e}"))?;
    serde_json::from_value(body["SchedulerConfig"].clone())
        .map_err(|e| anyhow!("the agent's scheduler configuration is not readable: {e}"))
}

pub async fn get_config(api: &ApiClient, out: Output) -> anyhow::Result<Exit> {
    let config = current(api).await?;
    if out.json {
        println!("{}", json(&config)?);
        return Ok(Exit::Ok);
    }
    print!(
        "{}",
        kv(&[
            ("Scheduler Algorithm", config.scheduler_algorithm.clone()),
            (
                "Memory Oversubscription",
                config.memory_oversubscription_enabled.to_string()
            ),
            ("Modify Index", config.modify_index.to_string()),
        ])
    );
    Ok(Exit::Ok)
}

pub async fn set_config(
    api: &ApiClient,
    algorithm: Option<String>,
    memory_oversubscription: Option<bool>,
) -> anyhow::Result<Exit> {
    let mut config = current(api).await?;
    if let Some(a) = algorithm {
        config.scheduler_algorithm = a;
    }
    if let Some(m) = memory_oversubscription {
        config.memory_oversubscription_enabled = m;
    }
    let _: serde_json::Value = api
        .put(PATH, &config)
        .await
        .map_err(|e| anyhow!("Error updating the scheduler configuration: {e}"))?;
    println!("Scheduler configuration updated!");
    Ok(Exit::Ok)
}
