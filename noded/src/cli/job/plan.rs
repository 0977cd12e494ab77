//! `noded job plan`: what submitting a jobspec would do, from a dry run of the scheduler on
//! the servers. Exit codes as Nomad's: 0 when no allocation would be created or destroyed, 1
//! when some would, 255 on error.

use clap::{ArgAction, Args};
use controlplane::model::{Job, JobType};
use controlplane::server::plan::ZERO_TIME;
use controlplane::server::JobPlanResponse;

use super::super::global::ApiCommand;
use super::super::http::{urlencode, ApiClient};
use super::super::output::json;
use super::super::placement_failure::{failed_group_header, format_alloc_metrics};
use super::super::Exit;
use super::diff::{format_job_diff, go_quote, Style};
use super::spec::SpecArgs;

/// Nomad's exit code for an error of `job plan`.
const EXIT_ERROR: i32 = 255;

#[derive(Debug, Args)]
pub struct JobPlan {
    #[command(flatten)]
    spec: SpecArgs,
    /// Show the difference from the current version (-diff=false to leave it out).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    diff: bool,
    /// Expand added and deleted groups and tasks in the difference.
    #[arg(long)]
    verbose: bool,
    /// Print the servers' answer (Nomad's JobPlanResponse) as JSON.
    #[arg(long = "json-output")]
    json_output: bool,
    /// Accepted for Nomad compatibility; noded has no Sentinel policies.
    #[arg(long = "policy-override")]
    policy_override: bool,
    /// No colours, even at a terminal.
    #[arg(long = "no-color")]
    no_color: bool,
}

impl ApiCommand for JobPlan {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let job = match self.spec.load_job() {
            Ok(job) => job,
            Err(e) => {
                eprintln!("Error getting job struct: {e:#}");
                return Ok(Exit::Code(EXIT_ERROR));
            }
        };
        // The diff is always asked for: it decides the exit code even when not shown.
        let body = serde_json::json!({
            "Job": job,
            "Diff": true,
            "PolicyOverride": self.policy_override,
        });
        let path = format!("/v1/job/{}/plan", urlencode(&job.id));
        let response: JobPlanResponse = match api.put(&path, &body).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("Error during plan: {e}");
                return Ok(Exit::Code(EXIT_ERROR));
            }
        };
        let code = response.exit_code();
        if self.json_output {
            println!("{}", json(&response)?);
        } else {
            let out = PlanOutput {
                diff: self.diff,
                verbose: self.verbose,
                style: Style::for_stdout(self.no_color),
                run_args: self.run_args(api.namespace()),
                path: self.spec.file.display().to_string(),
                now_unix_nanos: controlplane::model::now_unix_nanos(),
            };
            print!("{}", format_plan(&job, &response, &out));
        }
        Ok(if code == 0 {
            Exit::Ok
        } else {
            Exit::Code(code)
        })
    }
}

impl JobPlan {
    /// The flags `job run -check-index` needs to read the same jobspec the same way.
    fn run_args(&self, namespace: &str) -> String {
        let mut out = String::new();
        for v in &self.spec.vars {
            out.push_str(&format!("-var={} ", go_quote(v)));
        }
        for f in &self.spec.var_files {
            out.push_str(&format!(
                "-var-file={} ",
                go_quote(&f.display().to_string())
            ));
        }
        if self.spec.json {
            out.push_str("-json ");
        }
        if namespace != controlplane::model::DEFAULT_NAMESPACE {
            out.push_str(&format!("-namespace={} ", go_quote(namespace)));
        }
        out
    }
}

/// How to print a plan: everything `format_plan` needs beyond the job and the answer.
#[derive(Debug, Clone)]
pub struct PlanOutput {
    pub diff: bool,
    pub verbose: bool,
    pub style: Style,
    /// Flags repeated in the suggested `job run -check-index` command, each followed by a
    /// space.
    pub run_args: String,
    /// The jobspec as named on the command line.
    pub path: String,
    pub now_unix_nanos: i64,
}

/// The whole human output of `job plan`.
pub fn format_plan(job: &Job, response: &JobPlanResponse, out: &PlanOutput) -> String {
    let style = out.style;
    let mut text = String::new();
    if out.diff {
        if let Some(diff) = &response.diff {
            text.push_str(format_job_diff(diff, out.verbose, style).trim());
            text.push_str("\n\n");
        }
    }
    text.push_str(&style.bold("Scheduler dry-run:"));
    text.push('\n');
    text.push_str(&format_dry_run(job, response, out));
    text.push_str("\n\n");
    if !response.warnings.is_empty() {
        text.push_str(&style.yellow(&format!("Job Warnings:\n{}", response.warnings)));
        text.push_str("\n\n");
    }
    if let Some(preempted) = response
        .annotations
        .as_ref()
        .map(|a| &a.preempted_allocs)
        .filter(|p| !p.is_empty())
    {
        text.push_str(&style.yellow("Preemptions:"));
        text.push_str("\n\n");
        let mut rows = vec![vec![
            "Alloc ID".to_string(),
            "Job ID".to_string(),
            "Task Group".to_string(),
        ]];
        rows.extend(
            preempted
                .iter()
                .map(|a| vec![a.id.clone(), a.job_id.clone(), a.task_group.clone()]),
        );
        text.push_str(&super::super::format::table(&rows));
        text.push('\n');
    }
    let index = response.job_modify_index;
    text.push_str(&style.bold(&format!("Job Modify Index: {index}")));
    text.push_str(&format!(
        "\nTo submit the job with version verification run:\n\n\
         noded job run -check-index {index} {}{}\n\n\
         With -check-index the job is registered only while its modify index on the servers\n\
         is still {index}: if someone changed the job since this plan, the run is refused and\n\
         nothing changes, so what this plan showed is what happens.\n",
        out.run_args, out.path
    ));
    text
}

/// `- All tasks successfully allocated.`, or the groups that would not be placed and why,
/// then a periodic job's next launch.
fn format_dry_run(job: &Job, response: &JobPlanResponse, out: &PlanOutput) -> String {
    let style = out.style;
    let mut lines = String::new();
    if response.failed_tg_allocs.is_empty() {
        lines.push_str(&style.green("- All tasks successfully allocated."));
        lines.push('\n');
    } else {
        let warning = if job.job_type == JobType::System {
            "- WARNING: Failed to place allocations on all nodes."
        } else {
            "- WARNING: Failed to place all allocations."
        };
        lines.push_str(&style.yellow(warning));
        lines.push('\n');
        for (group, metric) in &response.failed_tg_allocs {
            lines.push_str(&style.yellow(&format!("  {}", failed_group_header(group, metric))));
            lines.push('\n');
            lines.push_str(&style.yellow(format_alloc_metrics(metric, "    ").trim_end()));
            lines.push_str("\n\n");
        }
    }
    if let Some(wait) = response
        .created_evals
        .iter()
        .rev()
        .find(|e| e.triggered_by == "rolling-update")
        .map(|e| e.wait_until.clone())
    {
        lines.push_str(&style.green(&format!(
            "- Rolling update, next evaluation will be at {wait}."
        )));
        lines.push('\n');
    }
    if response.next_periodic_launch != ZERO_TIME && !job.is_parameterized() {
        if let Some(next) = controlplane::model::time::parse_rfc3339(&response.next_periodic_launch)
        {
            let from_now = std::time::Duration::from_secs(
                u64::try_from((next - out.now_unix_nanos) / 1_000_000_000).unwrap_or(0),
            );
            lines.push_str(&style.green(&format!(
                "- If submitted now, next periodic launch would be at {} ({} from now).",
                super::super::format::timestamp(next),
                controlplane::model::duration::format_go(from_now)
            )));
            lines.push('\n');
        }
    }
    lines.trim_end().to_string()
}
