//! `noded operator scheduler get-config|set-config`.

use anyhow::{anyhow, bail};
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
        .map_err(|e| anyhow!("Error querying scheduler configuration: {e}"))?;
    serde_json::from_value(body["SchedulerConfig"].clone())
        .map_err(|e| anyhow!("the agent's scheduler configuration is not readable: {e}"))
}

#[derive(Debug, Args)]
pub struct GetConfig {
    #[command(flatten)]
    out: OutputArgs,
}

/// Nomad's `operator scheduler get-config` layout.
fn render(c: &SchedulerConfiguration) -> String {
    let p = &c.preemption_config;
    kv(&[
        ("Scheduler Algorithm", c.scheduler_algorithm.clone()),
        (
            "Memory Oversubscription",
            c.memory_oversubscription_enabled.to_string(),
        ),
        (
            "Reject Job Registration",
            c.reject_job_registration.to_string(),
        ),
        ("Pause Eval Broker", c.pause_eval_broker.to_string()),
        (
            "Preemption System Scheduler",
            p.system_scheduler_enabled.to_string(),
        ),
        (
            "Preemption Service Scheduler",
            p.service_scheduler_enabled.to_string(),
        ),
        (
            "Preemption Batch Scheduler",
            p.batch_scheduler_enabled.to_string(),
        ),
        (
            "Preemption SysBatch Scheduler",
            p.sysbatch_scheduler_enabled.to_string(),
        ),
        ("Modify Index", c.modify_index.to_string()),
    ])
}

impl ApiCommand for GetConfig {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let config = current(api).await?;
        self.out.print(&config, render)
    }
}

#[derive(Debug, Args)]
pub struct SetConfig {
    /// Only update if the configuration's modify index is still this (check-and-set).
    #[arg(long = "check-index")]
    check_index: Option<u64>,
    /// binpack (fill nodes up) or spread (spread allocations over nodes).
    #[arg(long = "scheduler-algorithm")]
    algorithm: Option<String>,
    /// Let tasks use memory_max above their memory reservation.
    #[arg(long = "memory-oversubscription")]
    memory_oversubscription: Option<bool>,
    /// Refuse job registration, dispatch and scale (load shedding).
    #[arg(long = "reject-job-registration")]
    reject_job_registration: Option<bool>,
    /// Stop handing evaluations to the scheduler workers.
    #[arg(long = "pause-eval-broker")]
    pause_eval_broker: Option<bool>,
    /// Let batch jobs preempt lower-priority allocations.
    #[arg(long = "preempt-batch-scheduler")]
    preempt_batch: Option<bool>,
    /// Let service jobs preempt lower-priority allocations.
    #[arg(long = "preempt-service-scheduler")]
    preempt_service: Option<bool>,
    /// Let system jobs preempt lower-priority allocations.
    #[arg(long = "preempt-system-scheduler")]
    preempt_system: Option<bool>,
    /// Let sysbatch jobs preempt lower-priority allocations.
    #[arg(long = "preempt-sysbatch-scheduler")]
    preempt_sysbatch: Option<bool>,
}

impl SetConfig {
    /// Applies the flags given to `config`; whether any was given.
    fn apply(&self, config: &mut SchedulerConfiguration) -> anyhow::Result<bool> {
        let mut changed = false;
        if let Some(a) = &self.algorithm {
            if a != "binpack" && a != "spread" {
                bail!("Invalid scheduler algorithm {a:?}: must be binpack or spread");
            }
            config.scheduler_algorithm = a.clone();
            changed = true;
        }
        let p = &mut config.preemption_config;
        for (flag, slot) in [
            (
                self.memory_oversubscription,
                &mut config.memory_oversubscription_enabled,
            ),
            (
                self.reject_job_registration,
                &mut config.reject_job_registration,
            ),
            (self.pause_eval_broker, &mut config.pause_eval_broker),
            (self.preempt_batch, &mut p.batch_scheduler_enabled),
            (self.preempt_service, &mut p.service_scheduler_enabled),
            (self.preempt_system, &mut p.system_scheduler_enabled),
            (self.preempt_sysbatch, &mut p.sysbatch_scheduler_enabled),
        ] {
            if let Some(value) = flag {
                *slot = value;
                changed = true;
            }
        }
        Ok(changed)
    }
}

impl ApiCommand for SetConfig {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let mut config = current(api).await?;
        if !self.apply(&mut config)? {
            println!("No scheduler configuration flags given; nothing changed");
            return Ok(Exit::Ok);
        }
        let query: Vec<(&str, String)> = self
            .check_index
            .map(|i| vec![("cas", i.to_string())])
            .unwrap_or_default();
        let answer: serde_json::Value = api
            .put_query(PATH, &query, Some(&config))
            .await
            .map_err(|e| anyhow!("Error setting scheduler configuration: {e}"))?;
        if answer["Updated"].as_bool() == Some(false) {
            eprintln!("Scheduler configuration could not be atomically updated, please try again");
            return Ok(Exit::Code(1));
        }
        println!("Scheduler configuration updated!");
        Ok(Exit::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        set: SetConfig,
    }

    #[test]
    fn flags_change_only_what_they_name() {
        let cli = Cli::parse_from([
            "x",
            "--pause-eval-broker=true",
            "--preempt-service-scheduler=true",
            "--scheduler-algorithm=spread",
            "--check-index=7",
        ]);
        let mut config = SchedulerConfiguration::default();
        assert!(cli.set.apply(&mut config).unwrap());
        assert!(config.pause_eval_broker);
        assert!(config.preemption_config.service_scheduler_enabled);
        assert!(
            config.preemption_config.system_scheduler_enabled,
            "left alone"
        );
        assert!(!config.reject_job_registration);
        assert_eq!(config.scheduler_algorithm, "spread");
        assert_eq!(cli.set.check_index, Some(7));
        let bad = Cli::parse_from(["x", "--scheduler-algorithm=random"]);
        assert!(bad.set.apply(&mut config).is_err());
        let none = Cli::parse_from(["x"]);
        assert!(!none.set.apply(&mut config).unwrap());
        let text = render(&config);
        assert!(
            text.contains("Pause Eval Broker             = true"),
            "{text}"
        );
    }
}
