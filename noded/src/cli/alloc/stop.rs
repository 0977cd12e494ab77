//! `noded alloc stop [-detach] [-no-shutdown-delay] ALLOC`: stop an allocation and let the
//! scheduler replace it.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::Args;
use controlplane::server::AllocStopResponse;

use super::super::format::short;
use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::job::monitor::{follow_eval, header};
use super::super::output::{json, OutputArgs};
use super::super::Exit;
use super::fetch_alloc;

/// How long the evaluation is followed.
const STOP_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Args)]
pub struct AllocStop {
    /// Return after stopping, without following the evaluation.
    #[arg(long)]
    detach: bool,
    /// Skip the group's shutdown_delay.
    #[arg(long = "no-shutdown-delay")]
    no_shutdown_delay: bool,
    #[command(flatten)]
    out: OutputArgs,
    /// An allocation's ID or a unique prefix of it.
    id: String,
}

impl ApiCommand for AllocStop {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let alloc = fetch_alloc(api, &self.id).await?;
        let query = if self.no_shutdown_delay {
            vec![("no_shutdown_delay", "true".to_string())]
        } else {
            Vec::new()
        };
        let response: AllocStopResponse = api
            .put_query::<(), _>(&format!("/v1/allocation/{}/stop", alloc.id), &query, None)
            .await
            .map_err(|e| anyhow!("Error stopping allocation: {e}"))?;
        if self.out.json {
            println!("{}", json(&response)?);
            return Ok(Exit::Ok);
        }
        if self.detach {
            println!("{}", response.eval_id);
            return Ok(Exit::Ok);
        }
        header(&format!(
            "Monitoring evaluation \"{}\"",
            short(&response.eval_id)
        ));
        let eval = follow_eval(
            api,
            &response.eval_id,
            Instant::now() + STOP_TIMEOUT,
            STOP_TIMEOUT,
            true,
        )
        .await?;
        header(&format!(
            "Evaluation \"{}\" finished with status \"{}\"",
            short(&response.eval_id),
            eval.status.as_str()
        ));
        Ok(Exit::Ok)
    }
}
