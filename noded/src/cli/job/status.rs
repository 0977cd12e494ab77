//! `noded job status [ID]` (and `noded status`): every job, or one job with its summary and
//! allocations.

use anyhow::anyhow;
use clap::Args;
use controlplane::model::{AllocListStub, EvalStatus, Evaluation, Job, JobListStub, JobSummary};

use super::super::format::{ago, kv, short, table, timestamp};
use super::super::global::ApiCommand;
use super::super::http::{urlencode, ApiClient};
use super::super::output::OutputArgs;
use super::super::placement_failure::format_alloc_metrics;
use super::super::Exit;
use super::fetch_job;

#[derive(Debug, Args)]
pub struct JobStatus {
    #[command(flatten)]
    out: OutputArgs,
    /// A job's ID or a unique prefix of it; all jobs when left out.
    id: Option<String>,
}

impl ApiCommand for JobStatus {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let Some(id) = &self.id else {
            let jobs: Vec<JobListStub> = api
                .get_now("/v1/jobs", &[])
                .await
                .map_err(|e| anyhow!("Error querying jobs: {e}"))?;
            return self.out.print(&jobs, |jobs| render_list(jobs));
        };
        let job = fetch_job(api, id).await?;
        let path = format!("/v1/job/{}", urlencode(&job.id));
        let summary: JobSummary = api
            .get_now(&format!("{path}/summary"), &[])
            .await
            .map_err(|e| anyhow!("Error querying job summary: {e}"))?;
        let allocs: Vec<AllocListStub> = api
            .get_now(&format!("{path}/allocations"), &[])
            .await
            .map_err(|e| anyhow!("Error querying allocations: {e}"))?;
        let evals: Vec<Evaluation> = api
            .get_now(&format!("{path}/evaluations"), &[])
            .await
            .map_err(|e| anyhow!("Error querying job evaluations: {e}"))?;
        if self.out.json {
            let all = serde_json::json!({"Job": job, "Summary": summary, "Allocations": allocs});
            return self.out.print(&all, |_| String::new());
        }
        if job.is_parent() {
            let children = super::children::fetch_children(api, &job).await?;
            print!("{}", render_header(&job));
            let now = controlplane::model::now_unix_nanos();
            print!(
                "{}",
                super::children::render_parent(&job, &summary, &children, now)
            );
            return Ok(Exit::Ok);
        }
        let mut out = render_job(&job, &summary, &allocs);
        // Nomad's order: the placement failures come after the summary.
        if let Some(at) = out.find("\nAllocations\n") {
            out.insert_str(at, &render_placement_failure(&evals));
        }
        print!("{out}");
        Ok(Exit::Ok)
    }
}

/// How many groups the "Placement Failure" section lists before pointing at `eval status`.
const MAX_FAILED_GROUPS: usize = 3;

/// Nomad's "Placement Failure" section: while the job has a blocked evaluation, why the newest
/// evaluation with failures could not place each group (at most [`MAX_FAILED_GROUPS`]).
fn render_placement_failure(evals: &[Evaluation]) -> String {
    if !evals.iter().any(|e| e.status == EvalStatus::Blocked) {
        return String::new();
    }
    let Some(failed) = evals
        .iter()
        .filter(|e| !e.failed_tg_allocs.is_empty())
        .max_by_key(|e| e.create_index)
    else {
        return String::new();
    };
    let mut out = String::from("\nPlacement Failure\n");
    let groups: Vec<_> = failed.failed_tg_allocs.iter().collect();
    for (i, (group, metric)) in groups.iter().take(MAX_FAILED_GROUPS).enumerate() {
        out.push_str(&format!("Task Group {group:?}:\n"));
        out.push_str(&format_alloc_metrics(metric, "  "));
        if i + 1 != groups.len().min(MAX_FAILED_GROUPS) {
            out.push('\n');
        }
    }
    if groups.len() > MAX_FAILED_GROUPS {
        out.push_str(&format!(
            "\nPlacement failures truncated. To see remainder run:\nnoded eval status {}\n",
            failed.id
        ));
    }
    out
}

fn render_list(jobs: &[JobListStub]) -> String {
    if jobs.is_empty() {
        return "No running jobs\n".to_string();
    }
    let mut rows = vec![["ID", "Type", "Priority", "Status", "Submit Date"]
        .map(String::from)
        .to_vec()];
    rows.extend(jobs.iter().map(|j| {
        vec![
            j.id.clone(),
            j.job_type.as_str().into(),
            j.priority.to_string(),
            j.status.as_str().into(),
            timestamp(j.submit_time),
        ]
    }));
    table(&rows)
}

fn render_job(job: &Job, summary: &JobSummary, allocs: &[AllocListStub]) -> String {
    let mut out = render_header(job);
    out.push_str("\nSummary\n");
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
    rows.extend(summary.summary.iter().map(|(group, s)| {
        vec![
            group.clone(),
            s.queued.to_string(),
            s.starting.to_string(),
            s.running.to_string(),
            s.failed.to_string(),
            s.complete.to_string(),
            s.lost.to_string(),
            s.unknown.to_string(),
        ]
    }));
    out.push_str(&table(&rows));
    out.push_str("\nAllocations\n");
    out.push_str(&render_allocs(allocs, false));
    out
}

/// The job's key facts, as the first block of `job status`.
fn render_header(job: &Job) -> String {
    let status = if job.stop {
        format!("{} (stopped)", job.status.as_str())
    } else {
        job.status.as_str().into()
    };
    kv(&[
        ("ID", job.id.clone()),
        ("Name", job.name.clone()),
        ("Submit Date", timestamp(job.submit_time)),
        ("Type", job.job_type.as_str().into()),
        ("Priority", job.priority.to_string()),
        ("Datacenters", job.datacenters.join(",")),
        ("Namespace", job.namespace.clone()),
        ("Node Pool", job.node_pool.clone()),
        ("Status", status),
        ("Version", job.version.to_string()),
        ("Periodic", job.is_periodic().to_string()),
        ("Parameterized", job.is_parameterized().to_string()),
    ])
}

/// A job's allocations as `job status` and `job allocs` list them; `verbose`: full ids.
pub(super) fn render_allocs(allocs: &[AllocListStub], verbose: bool) -> String {
    if allocs.is_empty() {
        return "No allocations placed\n".to_string();
    }
    let id = |s: &str| {
        if verbose {
            s.to_string()
        } else {
            short(s).to_string()
        }
    };
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
    rows.extend(allocs.iter().map(|a| {
        vec![
            id(&a.id),
            id(&a.node_id),
            a.task_group.clone(),
            a.job_version.to_string(),
            a.desired_status.as_str().into(),
            a.client_status.as_str().into(),
            ago(a.create_time),
            ago(a.modify_time),
        ]
    }));
    table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use controlplane::model::AllocMetric;

    fn eval(id: &str, index: u64, status: EvalStatus, groups: &[&str]) -> Evaluation {
        Evaluation {
            id: id.into(),
            create_index: index,
            status,
            failed_tg_allocs: groups
                .iter()
                .map(|g| {
                    (
                        g.to_string(),
                        AllocMetric {
                            nodes_evaluated: 2,
                            constraint_filtered: [("${attr.kernel.name} = windows".into(), 2)]
                                .into(),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn placement_failures_show_while_an_evaluation_is_blocked() {
        let evals = vec![
            eval("old", 1, EvalStatus::Complete, &["a"]),
            eval("new", 5, EvalStatus::Complete, &["web"]),
            eval("blk", 6, EvalStatus::Blocked, &[]),
        ];
        assert_eq!(
            render_placement_failure(&evals),
            "\nPlacement Failure\nTask Group \"web\":\n  * Constraint \"${attr.kernel.name} = windows\": 2 nodes excluded by filter\n"
        );
        assert_eq!(render_placement_failure(&evals[..2]), "", "nothing blocked");
        let many = vec![
            eval("e", 1, EvalStatus::Complete, &["a", "b", "c", "d"]),
            eval("blk", 2, EvalStatus::Blocked, &[]),
        ];
        let out = render_placement_failure(&many);
        assert!(
            out.contains("Task Group \"c\":") && !out.contains("\"d\""),
            "{out}"
        );
        assert!(out.ends_with("noded eval status e\n"), "{out}");
    }
}
