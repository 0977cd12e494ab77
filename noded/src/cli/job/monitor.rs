//! Following a submission: the evaluation, then its allocations, until they run (service) or
//! finish (batch), with a live status line at a terminal. Shared by `job run` and `job stop`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use controlplane::model::{
    AllocListStub, ClientStatus, DesiredStatus, EvalStatus, Evaluation, JobType,
};

use super::super::format::{short, timestamp};
use super::super::http::{urlencode, ApiClient};
use super::super::placement_failure::{failed_group_header, format_alloc_metrics};
use super::super::Exit;

/// Exit code when the job was accepted but could not be (fully) placed or its allocations
/// failed, as Nomad's `job run` uses 2.
pub const EXIT_PLACEMENT: i32 = 2;

/// How often the allocation watch refreshes (a blocking query's wait).
const ALLOC_POLL: Duration = Duration::from_millis(500);
/// A blocking query's wait on the evaluation.
const EVAL_POLL: Duration = Duration::from_secs(5);

pub(super) fn line(msg: &str) {
    println!(
        "    {}: {msg}",
        timestamp(controlplane::model::now_unix_nanos())
    );
}

pub(crate) fn header(msg: &str) {
    println!(
        "==> {}: {msg}",
        timestamp(controlplane::model::now_unix_nanos())
    );
}

/// Follows an evaluation, then its allocations, until they run (service) or finish (batch).
pub async fn monitor(
    api: &ApiClient,
    eval_id: &str,
    job_type: JobType,
    timeout: Duration,
) -> anyhow::Result<Exit> {
    let deadline = Instant::now() + timeout;
    header(&format!("Monitoring evaluation \"{}\"", short(eval_id)));
    let eval = follow_eval(api, eval_id, deadline, timeout, false).await?;
    let allocs: Vec<AllocListStub> = api
        .get_now(&format!("/v1/evaluation/{eval_id}/allocations"), &[])
        .await
        .map_err(|e| anyhow!("Error reading allocations: {e}"))?;
    for a in &allocs {
        line(&format!(
            "Allocation \"{}\" created: node \"{}\", group \"{}\"",
            short(&a.id),
            short(&a.node_id),
            a.task_group
        ));
    }
    if eval.status == EvalStatus::Failed {
        eprintln!(
            "Evaluation \"{}\" failed: {}",
            short(eval_id),
            eval.status_description
        );
        return Ok(Exit::Code(EXIT_PLACEMENT));
    }
    let exit = report_placement_failures(&eval);
    if exit == Exit::Ok {
        header(&format!(
            "Evaluation \"{}\" finished with status \"{}\"",
            short(eval_id),
            eval.status.as_str()
        ));
    }
    // An evaluation that placed or updated nothing moved no deployment (Nomad's monitor
    // follows the deployment its allocations name): a placement failure ends here, exit 2.
    let moved_deployment = if allocs.is_empty() {
        None
    } else {
        deployment_of(api, &eval).await?
    };
    if let Some(d) = moved_deployment {
        // A rolling update or canaries: its deployment says when it is done (or failed),
        // which the allocations alone cannot.
        header(&format!("Monitoring deployment \"{}\"", short(&d.id)));
        let left = deadline.saturating_duration_since(Instant::now());
        let outcome =
            super::super::deployment::monitor::monitor_deployment(api, &d.id, false, left).await?;
        return Ok(if outcome == Exit::Ok { exit } else { outcome });
    }
    if allocs.is_empty() {
        return Ok(exit);
    }
    let ids: Vec<String> = allocs.iter().map(|a| a.id.clone()).collect();
    let outcome = watch_allocs(api, &eval.job_id, &ids, job_type, deadline).await?;
    Ok(if outcome == Exit::Ok { exit } else { outcome })
}

/// The deployment the evaluation's plan created or moved on (Nomad's monitor follows the
/// evaluation's `DeploymentID`; here: the job's newest deployment, written after the
/// evaluation was).
async fn deployment_of(
    api: &ApiClient,
    eval: &Evaluation,
) -> anyhow::Result<Option<controlplane::model::Deployment>> {
    if eval.job_id.is_empty() {
        return Ok(None);
    }
    let latest: Option<controlplane::model::Deployment> = match api
        .get_now(
            &format!("/v1/job/{}/deployment", urlencode(&eval.job_id)),
            &[],
        )
        .await
    {
        Ok(latest) => latest,
        // An agent without deployments: follow the allocations.
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(anyhow!("Error reading the job's deployment: {e}")),
    };
    Ok(latest.filter(|d| d.modify_index >= eval.create_index && eval.create_index > 0))
}

/// Blocks on the evaluation until it is terminal (or blocked), printing its status changes.
pub(crate) async fn follow_eval(
    api: &ApiClient,
    eval_id: &str,
    deadline: Instant,
    timeout: Duration,
    quiet: bool,
) -> anyhow::Result<Evaluation> {
    let mut index = 0;
    let mut last_status = None;
    loop {
        let got = api
            .get::<Evaluation>(&format!("/v1/evaluation/{eval_id}"), &[], index, EVAL_POLL)
            .await
            .map_err(|e| anyhow!("Error reading evaluation: {e}"))?;
        index = got.index;
        let eval = got.value;
        match last_status {
            None if !quiet => line(&format!("Evaluation triggered by job \"{}\"", eval.job_id)),
            Some(prev) if prev != eval.status && !quiet => line(&format!(
                "Evaluation status changed: \"{}\" -> \"{}\"",
                EvalStatus::as_str(prev),
                eval.status.as_str()
            )),
            _ => {}
        }
        last_status = Some(eval.status);
        if eval.status.is_terminal() || eval.status == EvalStatus::Blocked {
            return Ok(eval);
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {} waiting for evaluation {} (still {})",
                controlplane::model::duration::format_go(timeout),
                short(eval_id),
                eval.status.as_str()
            );
        }
    }
}

/// Prints why groups could not be placed, as Nomad's monitor does (one block per group, the
/// reasons of `placement_failure::format_alloc_metrics`, and the blocked evaluation that waits for the
/// remainder); `EXIT_PLACEMENT` if any.
fn report_placement_failures(eval: &Evaluation) -> Exit {
    if eval.failed_tg_allocs.is_empty() {
        return Exit::Ok;
    }
    header(&format!(
        "Evaluation \"{}\" finished with status \"{}\" but failed to place all allocations:",
        short(&eval.id),
        eval.status.as_str()
    ));
    for (group, metric) in &eval.failed_tg_allocs {
        line(&failed_group_header(group, metric));
        for reason in format_alloc_metrics(metric, "  ").lines() {
            println!("    {reason}");
        }
    }
    if !eval.blocked_eval.is_empty() {
        line(&format!(
            "Evaluation \"{}\" waiting for additional capacity to place remainder",
            short(&eval.blocked_eval)
        ));
    }
    Exit::Code(EXIT_PLACEMENT)
}

/// Watches the evaluation's allocations until they run (service) or finish (batch), one of
/// them fails, or the deadline passes.
async fn watch_allocs(
    api: &ApiClient,
    job_id: &str,
    ids: &[String],
    job_type: JobType,
    deadline: Instant,
) -> anyhow::Result<Exit> {
    let tty = std::io::stdout().is_terminal();
    let spinner = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let mut index = 0;
    let mut tick = 0usize;
    let mut last_line = String::new();
    loop {
        let got = api
            .get::<Vec<AllocListStub>>(
                &format!("/v1/job/{}/allocations", urlencode(job_id)),
                &[],
                index,
                ALLOC_POLL,
            )
            .await
            .map_err(|e| anyhow!("Error reading allocations: {e}"))?;
        index = got.index;
        let mine: Vec<&AllocListStub> = got.value.iter().filter(|a| ids.contains(&a.id)).collect();
        let tally = Tally::of(&mine);
        let status = tally.line();
        if tty {
            tick += 1;
            print!("\r\x1b[2K{} {status}", spinner[tick % spinner.len()]);
            let _ = std::io::stdout().flush();
        } else if status != last_line {
            line(&status);
        }
        last_line = status;
        if tally.finished(job_type) {
            if tty {
                println!();
            }
            if tally.failed > 0 {
                for a in mine
                    .iter()
                    .filter(|a| a.client_status == ClientStatus::Failed)
                {
                    eprintln!(
                        "Allocation \"{}\" failed: {}",
                        short(&a.id),
                        failure_reason(a)
                    );
                }
                eprintln!("See `noded alloc status <id>` for the task events.");
                return Ok(Exit::Code(EXIT_PLACEMENT));
            }
            match job_type {
                JobType::Batch | JobType::Sysbatch => {
                    header(&format!("All {} allocation(s) completed", tally.total))
                }
                _ => header(&format!("All {} allocation(s) running", tally.total)),
            }
            return Ok(Exit::Ok);
        }
        if Instant::now() > deadline {
            if tty {
                println!();
            }
            eprintln!("Timed out waiting for the allocations ({last_line}); the job keeps running, check `noded job status {job_id}`");
            return Ok(Exit::Code(EXIT_PLACEMENT));
        }
    }
}

/// How the watched allocations stand.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    total: usize,
    running: usize,
    pending: usize,
    complete: usize,
    /// Failed or lost.
    failed: usize,
    /// No longer desired to run (stopped by a newer version or the user).
    stopped: usize,
}

impl Tally {
    fn of(allocs: &[&AllocListStub]) -> Tally {
        let mut t = Tally {
            total: allocs.len(),
            ..Tally::default()
        };
        for a in allocs {
            match a.client_status {
                ClientStatus::Running => t.running += 1,
                ClientStatus::Complete => t.complete += 1,
                ClientStatus::Failed | ClientStatus::Lost => t.failed += 1,
                _ => t.pending += 1,
            }
            if a.desired_status != DesiredStatus::Run {
                t.stopped += 1;
            }
        }
        t
    }

    fn line(&self) -> String {
        format!(
            "Allocations: {} running, {} pending, {} complete, {} failed (of {})",
            self.running, self.pending, self.complete, self.failed, self.total
        )
    }

    /// Whether watching is over: one failed, all stopped, or all running (a service) or
    /// ended (a batch job).
    fn finished(&self, job_type: JobType) -> bool {
        let done = match job_type {
            JobType::Batch | JobType::Sysbatch => self.pending + self.running == 0,
            _ => self.pending == 0,
        };
        self.failed > 0 || done || self.stopped == self.total
    }
}

fn failure_reason(a: &AllocListStub) -> String {
    for (task, state) in a.task_states.iter().flatten() {
        if state.failed {
            let last = state
                .events
                .iter()
                .rev()
                .find(|e| !e.display_message.is_empty());
            return format!(
                "task \"{task}\": {}",
                last.map(|e| format!("{}: {}", e.event_type, e.display_message))
                    .unwrap_or_else(|| "failed".into())
            );
        }
    }
    a.client_description.clone()
}
