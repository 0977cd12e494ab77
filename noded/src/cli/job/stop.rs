//! `noded job stop`: deregister a job, then wait until its allocations have stopped.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use clap::Args;
use controlplane::model::{AllocListStub, JobListStub};
use controlplane::server::JobDeregisterResponse;

use super::super::format::short;
use super::super::global::ApiCommand;
use super::super::http::{urlencode, ApiCallError, ApiClient};
use super::super::output::{json, OutputArgs};
use super::super::resolve::resolve;
use super::super::Exit;
use super::monitor::{follow_eval, header};

/// How long `job stop` waits for the evaluation and the allocations.
const STOP_TIMEOUT: Duration = Duration::from_secs(600);
/// A blocking query's wait on the allocations.
const ALLOC_POLL: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct JobStop {
    /// Forget the job entirely (it can no longer be inspected).
    #[arg(long)]
    purge: bool,
    /// Return after deregistering, without waiting.
    #[arg(long)]
    detach: bool,
    #[command(flatten)]
    out: OutputArgs,
    id: String,
}

impl ApiCommand for JobStop {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let job: JobListStub = resolve(api, &self.id).await?;
        let query = if self.purge {
            vec![("purge", "true".to_string())]
        } else {
            vec![]
        };
        let response: JobDeregisterResponse = api
            .delete(&format!("/v1/job/{}", urlencode(&job.id)), &query)
            .await
            .map_err(|e| anyhow!("Error deregistering job: {e}"))?;
        if self.out.json {
            println!("{}", json(&response)?);
            return Ok(Exit::Ok);
        }
        if self.detach {
            println!("Evaluation ID: {}", response.eval_id);
            return Ok(Exit::Ok);
        }
        // Follow the stop evaluation, then wait for the allocations to be stopped by their
        // client.
        let eval_id = &response.eval_id;
        header(&format!("Monitoring evaluation \"{}\"", short(eval_id)));
        let deadline = Instant::now() + STOP_TIMEOUT;
        let eval = follow_eval(api, eval_id, deadline, STOP_TIMEOUT, true).await?;
        header(&format!(
            "Evaluation \"{}\" finished with status \"{}\"",
            short(eval_id),
            eval.status.as_str()
        ));
        wait_stopped(api, &job.id, deadline).await?;
        Ok(Exit::Ok)
    }
}

/// Blocks until no allocation of the job runs any more (or the job is gone, with -purge).
async fn wait_stopped(api: &ApiClient, job_id: &str, deadline: Instant) -> anyhow::Result<()> {
    let mut index = 0;
    loop {
        let got = api
            .get::<Vec<AllocListStub>>(
                &format!("/v1/job/{}/allocations", urlencode(job_id)),
                &[],
                index,
                ALLOC_POLL,
            )
            .await;
        let allocs = match got {
            Ok(g) => {
                index = g.index;
                g.value
            }
            Err(ApiCallError::Status { .. }) => return Ok(()),
            Err(e) => bail!("Error reading allocations: {e}"),
        };
        let running = allocs
            .iter()
            .filter(|a| !a.client_status.is_terminal())
            .count();
        if running == 0 {
            header(&format!("All allocations of job \"{job_id}\" stopped"));
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {running} allocation(s) to stop");
        }
    }
}
