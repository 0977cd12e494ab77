//! Following a deployment until it ends (`deployment status -monitor`, `job run`): the
//! block refreshed in place at a terminal, line by line otherwise. A module of its own so that
//! the job monitor can use it without a cycle through the deployment commands.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use controlplane::model::{deployment_status, Deployment};

use super::super::format::short;
use super::super::http::{urlencode, ApiClient};
use super::super::Exit;
use super::{limit, render};

/// Exit code when a followed deployment fails or is cancelled (Nomad's monitor answers 1).
pub const EXIT_DEPLOYMENT_FAILED: i32 = 1;

/// A blocking query's wait on the deployment.
const DEPLOYMENT_POLL: Duration = Duration::from_secs(2);

/// What a followed deployment ended as.
pub(super) fn outcome(d: &Deployment) -> Option<Exit> {
    match d.status.as_str() {
        deployment_status::SUCCESSFUL => Some(Exit::Ok),
        deployment_status::FAILED | deployment_status::CANCELLED | deployment_status::BLOCKED => {
            Some(Exit::Code(EXIT_DEPLOYMENT_FAILED))
        }
        _ => None,
    }
}

/// Follows a deployment until it ends or `timeout` passes: the block refreshed in place at a
/// terminal, each change on its own lines otherwise. A failed deployment that auto-reverts is
/// followed by the rollback's deployment, as Nomad's monitor does. Exits 0 when it succeeds,
/// [`EXIT_DEPLOYMENT_FAILED`] otherwise.
pub async fn monitor_deployment(
    api: &ApiClient,
    id: &str,
    verbose: bool,
    timeout: Duration,
) -> anyhow::Result<Exit> {
    let deadline = Instant::now() + timeout;
    let tty = std::io::stdout().is_terminal();
    let mut id = id.to_string();
    // A rollback can fail too; bounded so two stable-less versions cannot loop forever.
    for _ in 0..4 {
        let d = follow(api, &id, verbose, tty, deadline, timeout).await?;
        let Some(exit) = outcome(&d) else {
            continue;
        };
        let mark = if exit == Exit::Ok { "✓" } else { "!" };
        println!(
            "  {mark} Deployment {:?} {}",
            limit(&d.id, verbose),
            d.status
        );
        let reverting =
            d.status == deployment_status::FAILED && d.task_groups.values().any(|g| g.auto_revert);
        if !reverting {
            return Ok(exit);
        }
        // The rollback's deployment appears once the scheduler ran its evaluation.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let latest: Option<Deployment> = api
            .get_now(&format!("/v1/job/{}/deployment", urlencode(&d.job_id)), &[])
            .await
            .map_err(|e| anyhow!("Error fetching rollback deployment: {e}"))?;
        match latest {
            Some(r) if r.id != d.id => {
                println!(
                    "  Monitoring rollback deployment {:?}",
                    limit(&r.id, verbose)
                );
                id = r.id;
            }
            _ => return Ok(exit),
        }
    }
    Ok(Exit::Code(EXIT_DEPLOYMENT_FAILED))
}

/// Blocks on one deployment until it is terminal, printing it as it changes.
async fn follow(
    api: &ApiClient,
    id: &str,
    verbose: bool,
    tty: bool,
    deadline: Instant,
    timeout: Duration,
) -> anyhow::Result<Deployment> {
    let mut index = 0;
    let mut shown = String::new();
    let mut lines_shown = 0usize;
    loop {
        let got = api
            .get::<Deployment>(
                &format!("/v1/deployment/{}", urlencode(id)),
                &[],
                index,
                DEPLOYMENT_POLL,
            )
            .await
            .map_err(|e| anyhow!("Error fetching deployment: {e}"))?;
        index = got.index;
        let d = got.value;
        let text = render(&d, verbose);
        if text != shown {
            if tty {
                // Back over the previous block and draw the new one in its place.
                if lines_shown > 0 {
                    print!("\x1b[{lines_shown}A\x1b[J");
                }
                print!("{text}");
                let _ = std::io::stdout().flush();
                lines_shown = text.lines().count();
            } else {
                if !shown.is_empty() {
                    println!();
                }
                print!("{text}");
            }
            shown = text;
        }
        if outcome(&d).is_some() {
            return Ok(d);
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "timed out after {} following deployment {} (still {}); it goes on: `noded deployment status {}`",
                controlplane::model::duration::format_go(timeout),
                short(id),
                d.status,
                d.id
            );
        }
    }
}
