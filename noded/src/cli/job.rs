//! `noded job ...`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use controlplane::jobspec::{self, ParseOptions};
use controlplane::model::{
    AllocListStub, ClientStatus, DesiredStatus, EvalStatus, Evaluation, Job, JobListStub,
    JobSummary, JobType,
};
use controlplane::server::{JobDeregisterResponse, JobRegisterResponse};

use super::format::{ago, json, kv, short, table, timestamp};
use super::http::{ApiCallError, ApiClient};
use super::{Exit, Output};

/// Exit code when the job was accepted but could not be (fully) placed or its allocations
/// failed, as Nomad's `job run` uses 2.
pub const EXIT_PLACEMENT: i32 = 2;

/// How a jobspec file is read.
#[derive(Debug, Clone, Default)]
pub struct SpecInput {
    pub file: PathBuf,
    pub json: bool,
    pub vars: Vec<String>,
    pub var_files: Vec<PathBuf>,
}

/// Parses and validates a jobspec locally; prints warnings to stderr.
pub fn load_job(input: &SpecInput) -> anyhow::Result<Job> {
    let mut opts = ParseOptions::for_file(input.file.display().to_string());
    for v in &input.vars {
        let (k, val) = v
            .split_once('=')
            .ok_or_else(|| anyhow!("-var {v:?} must have the form name=value"))?;
        opts.vars.push((k.to_string(), val.to_string()));
    }
    opts.var_files = input.var_files.clone();
    opts.env_vars = std::env::vars()
        .filter(|(k, _)| k.starts_with("NOMAD_VAR_"))
        .collect();
    opts.allow_fs_functions = true;
    let parsed = if input.file.as_os_str() == "-" {
        // The jobspec on stdin, read no further than the size limit.
        opts.filename = "<stdin>".to_string();
        jobspec::read_limited(std::io::stdin().lock(), &opts.limits).and_then(|text| {
            if input.json || text.trim_start().starts_with('{') {
                jobspec::parse_api_json(&text, &opts)
            } else {
                jobspec::parse_hcl(&text, &opts)
            }
        })
    } else if input.json {
        let text = std::fs::read_to_string(&input.file)
            .map_err(|e| anyhow!("reading {}: {e}", input.file.display()))?;
        jobspec::parse_api_json(&text, &opts)
    } else {
        jobspec::parse_file(&input.file, &opts)
    };
    let parsed = parsed
        .and_then(|p| p.validated(&opts.limits))
        .map_err(|errors| anyhow!("{} is not a valid job:\n{errors}", input.file.display()))?;
    let config_errors = controlplane::drivers::check_job(&parsed.job);
    if !config_errors.is_empty() {
        bail!(
            "{} is not a valid job:\n{}",
            input.file.display(),
            config_errors.join("\n")
        );
    }
    for w in &parsed.warnings {
        eprintln!("Warning: {w}");
    }
    Ok(parsed.job)
}

pub async fn validate(input: &SpecInput, out: Output) -> anyhow::Result<Exit> {
    let job = load_job(input)?;
    if out.json {
        println!(
            "{}",
            json(&serde_json::json!({"Error": null, "Warnings": [], "ValidationErrors": []}))?
        );
    } else {
        println!(
            "Job validation successful ({:?}, {} group(s))",
            job.id,
            job.task_groups.len()
        );
    }
    Ok(Exit::Ok)
}

#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub detach: bool,
    pub output: bool,
    pub monitor_timeout: Duration,
}

pub async fn run(
    api: &ApiClient,
    input: &SpecInput,
    opts: RunOptions,
    out: Output,
) -> anyhow::Result<Exit> {
    let job = load_job(input)?;
    if opts.output {
        println!("{}", json(&jobspec::to_api_json(&job))?);
        return Ok(Exit::Ok);
    }
    let body = serde_json::json!({ "Job": job });
    let response: JobRegisterResponse = api
        .put("/v1/jobs", &body)
        .await
        .map_err(|e| anyhow!("Error submitting job: {e}"))?;
    if !response.warnings.is_empty() {
        eprintln!("Job Warnings:\n{}", response.warnings);
    }
    if out.json {
        println!("{}", json(&response)?);
        if opts.detach {
            return Ok(Exit::Ok);
        }
    }
    if opts.detach {
        println!("Job registration successful");
        println!("Evaluation ID: {}", response.eval_id);
        return Ok(Exit::Ok);
    }
    monitor(
        api,
        &response.eval_id,
        job.job_type,
        opts.monitor_timeout,
        out,
    )
    .await
}

fn line(msg: &str) {
    println!(
        "    {}: {msg}",
        timestamp(controlplane::model::now_unix_nanos())
    );
}

fn header(msg: &str) {
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
    out: Output,
) -> anyhow::Result<Exit> {
    let deadline = Instant::now() + timeout;
    let quiet = out.json;
    if !quiet {
        header(&format!("Monitoring evaluation \"{}\"", short(eval_id)));
    }
    let mut index = 0;
    let mut last_status = None;
    let eval: Evaluation = loop {
        let r = api
            .get::<Evaluation>(
                &format!("/v1/evaluation/{eval_id}"),
                &[],
                index,
                Duration::from_secs(5),
            )
            .await;
        let got = match r {
            Ok(g) => g,
            Err(e) => bail!("Error reading evaluation: {e}"),
        };
        index = got.index;
        let eval = got.value;
        if last_status.is_none() && !quiet {
            line(&format!("Evaluation triggered by job \"{}\"", eval.job_id));
        }
        if last_status != Some(eval.status) {
            if let Some(prev) = last_status {
                if !quiet {
                    line(&format!(
                        "Evaluation status changed: \"{}\" -> \"{}\"",
                        EvalStatus::as_str(prev),
                        eval.status.as_str()
                    ));
                }
            }
            last_status = Some(eval.status);
        }
        if eval.status.is_terminal() || eval.status == EvalStatus::Blocked {
            break eval;
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {} waiting for evaluation {} (still {})",
                controlplane::model::duration::format_go(timeout),
                short(eval_id),
                eval.status.as_str()
            );
        }
    };
    let allocs: Vec<AllocListStub> = api
        .get_now(&format!("/v1/evaluation/{eval_id}/allocations"), &[])
        .await
        .map_err(|e| anyhow!("Error reading allocations: {e}"))?;
    if !quiet {
        for a in &allocs {
            line(&format!(
                "Allocation \"{}\" created: node \"{}\", group \"{}\"",
                short(&a.id),
                short(&a.node_id),
                a.task_group
            ));
        }
    }
    let mut exit = Exit::Ok;
    if eval.status == EvalStatus::Failed {
        eprintln!(
            "Evaluation \"{}\" failed: {}",
            short(eval_id),
            eval.status_description
        );
        return Ok(Exit::Code(EXIT_PLACEMENT));
    }
    if !eval.failed_tg_allocs.is_empty() {
        exit = Exit::Code(EXIT_PLACEMENT);
        if !quiet {
            header("Evaluation had placement failures");
        }
        for (group, metric) in &eval.failed_tg_allocs {
            let queued = eval.queued_allocations.get(group).copied().unwrap_or(0);
            eprintln!(
                "    Task Group \"{group}\" (failed to place {queued} allocation{}):",
                if queued == 1 { "" } else { "s" }
            );
            for (reason, n) in &metric.constraint_filtered {
                eprintln!("      * Constraint \"{reason}\": {n} nodes excluded by filter");
            }
            for (dim, n) in &metric.dimension_exhausted {
                eprintln!("      * Resources exhausted on {n} nodes\n      * Dimension \"{dim}\" exhausted on {n} nodes");
            }
            if metric.nodes_evaluated == 0 {
                eprintln!("      * No nodes were eligible for evaluation");
            }
        }
        if !eval.blocked_eval.is_empty() && !quiet {
            line(&format!(
                "Evaluation \"{}\" waiting for additional capacity to place remainder",
                short(&eval.blocked_eval)
            ));
        }
    }
    if !quiet {
        header(&format!(
            "Evaluation \"{}\" finished with status \"{}\"",
            short(eval_id),
            eval.status.as_str()
        ));
    }
    if allocs.is_empty() {
        return Ok(exit);
    }
    let ids: Vec<String> = allocs.iter().map(|a| a.id.clone()).collect();
    let outcome = watch_allocs(
        api,
        &eval.namespace,
        &eval.job_id,
        &ids,
        job_type,
        deadline,
        quiet,
    )
    .await?;
    Ok(if outcome == Exit::Ok { exit } else { outcome })
}

async fn watch_allocs(
    api: &ApiClient,
    _namespace: &str,
    job_id: &str,
    ids: &[String],
    job_type: JobType,
    deadline: Instant,
    quiet: bool,
) -> anyhow::Result<Exit> {
    let tty = std::io::stdout().is_terminal() && !quiet;
    let spinner = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let mut index = 0;
    let mut tick = 0usize;
    let mut last_line = String::new();
    loop {
        let got = api
            .get::<Vec<AllocListStub>>(
                &format!("/v1/job/{job_id}/allocations"),
                &[],
                index,
                Duration::from_millis(500),
            )
            .await
            .map_err(|e| anyhow!("Error reading allocations: {e}"))?;
        index = got.index;
        let mine: Vec<&AllocListStub> = got.value.iter().filter(|a| ids.contains(&a.id)).collect();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for a in &mine {
            *counts.entry(a.client_status.as_str()).or_default() += 1;
        }
        let running = counts.get("running").copied().unwrap_or(0);
        let complete = counts.get("complete").copied().unwrap_or(0);
        let failed =
            counts.get("failed").copied().unwrap_or(0) + counts.get("lost").copied().unwrap_or(0);
        let pending = mine.len() - running - complete - failed;
        let status = format!(
            "Allocations: {running} running, {pending} pending, {complete} complete, {failed} failed (of {})",
            mine.len()
        );
        if tty {
            tick += 1;
            print!("\r\x1b[2K{} {status}", spinner[tick % spinner.len()]);
            let _ = std::io::stdout().flush();
        } else if status != last_line && !quiet {
            line(&status);
        }
        last_line = status;
        let stopped = mine
            .iter()
            .filter(|a| a.desired_status != DesiredStatus::Run)
            .count();
        let done = match job_type {
            JobType::Batch | JobType::Sysbatch => pending + running == 0,
            _ => pending == 0,
        };
        if failed > 0 || done || stopped == mine.len() {
            if tty {
                println!();
            }
            if failed > 0 {
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
            if !quiet {
                match job_type {
                    JobType::Batch | JobType::Sysbatch => {
                        header(&format!("All {} allocation(s) completed", mine.len()))
                    }
                    _ => header(&format!("All {} allocation(s) running", mine.len())),
                }
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

fn failure_reason(a: &AllocListStub) -> String {
    for (task, state) in &a.task_states {
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

/// Finds a job by exact id, or by a unique prefix.
pub async fn resolve_job(api: &ApiClient, id: &str) -> anyhow::Result<Job> {
    match api
        .get_now::<Job>(&format!("/v1/job/{}", urlencode(id)), &[])
        .await
    {
        Ok(job) => return Ok(job),
        Err(e) if e.is_not_found() => {}
        Err(e) => bail!("Error querying job: {e}"),
    }
    let matches: Vec<JobListStub> = api
        .get_now("/v1/jobs", &[("prefix", id.to_string())])
        .await
        .map_err(|e| anyhow!("Error querying jobs: {e}"))?;
    match matches.len() {
        0 => bail!("No job(s) with prefix or id {id:?} found"),
        1 => api
            .get_now::<Job>(&format!("/v1/job/{}", urlencode(&matches[0].id)), &[])
            .await
            .map_err(|e| anyhow!("Error querying job: {e}")),
        _ => {
            let mut rows = vec![vec![
                "ID".to_string(),
                "Type".into(),
                "Priority".into(),
                "Status".into(),
            ]];
            for j in &matches {
                rows.push(vec![
                    j.id.clone(),
                    j.job_type.as_str().into(),
                    j.priority.to_string(),
                    j.status.as_str().into(),
                ]);
            }
            bail!("Prefix matched multiple jobs\n\n{}", table(&rows))
        }
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn status(api: &ApiClient, id: Option<&str>, out: Output) -> anyhow::Result<Exit> {
    let Some(id) = id else {
        let jobs: Vec<JobListStub> = api
            .get_now("/v1/jobs", &[])
            .await
            .map_err(|e| anyhow!("Error querying jobs: {e}"))?;
        if out.json {
            println!("{}", json(&jobs)?);
            return Ok(Exit::Ok);
        }
        if jobs.is_empty() {
            println!("No running jobs");
            return Ok(Exit::Ok);
        }
        let mut rows = vec![vec![
            "ID".to_string(),
            "Type".into(),
            "Priority".into(),
            "Status".into(),
            "Submit Date".into(),
        ]];
        for j in &jobs {
            rows.push(vec![
                j.id.clone(),
                j.job_type.as_str().into(),
                j.priority.to_string(),
                j.status.as_str().into(),
                timestamp(j.submit_time),
            ]);
        }
        print!("{}", table(&rows));
        return Ok(Exit::Ok);
    };
    let job = resolve_job(api, id).await?;
    let path = format!("/v1/job/{}", urlencode(&job.id));
    let summary: JobSummary = api
        .get_now(&format!("{path}/summary"), &[])
        .await
        .map_err(|e| anyhow!("Error querying job summary: {e}"))?;
    let allocs: Vec<AllocListStub> = api
        .get_now(&format!("{path}/allocations"), &[])
        .await
        .map_err(|e| anyhow!("Error querying allocations: {e}"))?;
    if out.json {
        println!(
            "{}",
            json(&serde_json::json!({"Job": job, "Summary": summary, "Allocations": allocs}))?
        );
        return Ok(Exit::Ok);
    }
    print!(
        "{}",
        kv(&[
            ("ID", job.id.clone()),
            ("Name", job.name.clone()),
            ("Submit Date", timestamp(job.submit_time)),
            ("Type", job.job_type.as_str().into()),
            ("Priority", job.priority.to_string()),
            ("Datacenters", job.datacenters.join(",")),
            ("Namespace", job.namespace.clone()),
            ("Node Pool", job.node_pool.clone()),
            (
                "Status",
                if job.stop {
                    format!("{} (stopped)", job.status.as_str())
                } else {
                    job.status.as_str().into()
                }
            ),
            ("Version", job.version.to_string()),
        ])
    );
    println!("\nSummary");
    let mut rows = vec![[
        "Task Group",
        "Queued",
        "Starting",
        "Running",
        "Failed",
        "Complete",
        "Lost",
        "Unknown",
    ]
    .map(String::from)
    .to_vec()];
    for (group, s) in &summary.summary {
        rows.push(vec![
            group.clone(),
            s.queued.to_string(),
            s.starting.to_string(),
            s.running.to_string(),
            s.failed.to_string(),
            s.complete.to_string(),
            s.lost.to_string(),
            s.unknown.to_string(),
        ]);
    }
    print!("{}", table(&rows));
    println!("\nAllocations");
    if allocs.is_empty() {
        println!("No allocations placed");
    } else {
        let mut rows = vec![[
            "ID",
            "Node ID",
            "Task Group",
            "Version",
            "Desired",
            "Status",
            "Created",
            "Modified",
        ]
        .map(String::from)
        .to_vec()];
        for a in &allocs {
            rows.push(vec![
                short(&a.id),
                short(&a.node_id),
                a.task_group.clone(),
                a.job_version.to_string(),
                a.desired_status.as_str().into(),
                a.client_status.as_str().into(),
                ago(a.create_time),
                ago(a.modify_time),
            ]);
        }
        print!("{}", table(&rows));
    }
    Ok(Exit::Ok)
}

pub async fn stop(
    api: &ApiClient,
    id: &str,
    purge: bool,
    detach: bool,
    out: Output,
) -> anyhow::Result<Exit> {
    let job = resolve_job(api, id).await?;
    let query = if purge {
        vec![("purge", "true".to_string())]
    } else {
        vec![]
    };
    let response: JobDeregisterResponse = api
        .delete(&format!("/v1/job/{}", urlencode(&job.id)), &query)
        .await
        .map_err(|e| anyhow!("Error deregistering job: {e}"))?;
    if out.json {
        println!("{}", json(&response)?);
    }
    if detach {
        if !out.json {
            println!("Evaluation ID: {}", response.eval_id);
        }
        return Ok(Exit::Ok);
    }
    if out.json {
        return Ok(Exit::Ok);
    }
    // Follow the stop evaluation, then wait for the allocations to be stopped by their client.
    header(&format!(
        "Monitoring evaluation \"{}\"",
        short(&response.eval_id)
    ));
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut index = 0;
    loop {
        let got = api
            .get::<Evaluation>(
                &format!("/v1/evaluation/{}", response.eval_id),
                &[],
                index,
                Duration::from_secs(5),
            )
            .await
            .map_err(|e| anyhow!("Error reading evaluation: {e}"))?;
        index = got.index;
        if got.value.status.is_terminal() {
            header(&format!(
                "Evaluation \"{}\" finished with status \"{}\"",
                short(&response.eval_id),
                got.value.status.as_str()
            ));
            break;
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for the stop evaluation");
        }
    }
    let mut index = 0;
    loop {
        let got = api
            .get::<Vec<AllocListStub>>(
                &format!("/v1/job/{}/allocations", urlencode(&job.id)),
                &[],
                index,
                Duration::from_secs(5),
            )
            .await;
        let allocs = match got {
            Ok(g) => {
                index = g.index;
                g.value
            }
            Err(ApiCallError::Status { .. }) => break,
            Err(e) => bail!("Error reading allocations: {e}"),
        };
        let running = allocs
            .iter()
            .filter(|a| !a.client_status.is_terminal())
            .count();
        if running == 0 {
            header(&format!("All allocations of job \"{}\" stopped", job.id));
            break;
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {running} allocation(s) to stop");
        }
    }
    Ok(Exit::Ok)
}

pub async fn inspect(
    api: &ApiClient,
    id: &str,
    version: Option<u64>,
    out: Output,
) -> anyhow::Result<Exit> {
    let job = resolve_job(api, id).await?;
    let job = match version {
        None => job,
        Some(v) => {
            let versions: serde_json::Value = api
                .get_now(&format!("/v1/job/{}/versions", urlencode(&job.id)), &[])
                .await
                .map_err(|e| anyhow!("Error querying job versions: {e}"))?;
            let list: Vec<Job> =
                serde_json::from_value(versions["Versions"].clone()).unwrap_or_default();
            let available: Vec<String> = list.iter().map(|j| j.version.to_string()).collect();
            list.into_iter().find(|j| j.version == v).ok_or_else(|| {
                anyhow!(
                    "job {:?} has no version {v} (kept versions: {})",
                    job.id,
                    available.join(", ")
                )
            })?
        }
    };
    let _ = out;
    println!("{}", json(&jobspec::to_api_json(&job))?);
    Ok(Exit::Ok)
}

pub fn init(path: &Path, force: bool) -> anyhow::Result<Exit> {
    if path.exists() && !force {
        bail!(
            "{} already exists; pass -force to overwrite it",
            path.display()
        );
    }
    std::fs::write(path, jobspec::example_job())
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    println!("Example job file written to {}", path.display());
    Ok(Exit::Ok)
}
