//! `noded eval status`.

use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use controlplane::model::{AllocListStub, Evaluation, JobType};

use super::super::format::{ago, kv, table, timestamp};
use super::super::global::ApiCommand;
use super::super::http::{urlencode, ApiClient};
use super::super::output::OutputArgs;
use super::super::placement_failure::{failed_group_header, format_alloc_metrics};
use super::super::resolve::resolve;
use super::super::Exit;
use super::{failure_status, limit};

#[derive(Debug, Args)]
pub struct EvalStatusCmd {
    /// Show full ids and exact times.
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    out: OutputArgs,
    /// Follow the evaluation and its allocations as `job run` does.
    #[arg(long)]
    monitor: bool,
    /// The evaluation (id or unique prefix).
    eval_id: String,
}

/// The evaluation with its `RelatedEvals`.
#[derive(serde::Deserialize, serde::Serialize)]
struct WithRelated {
    #[serde(flatten)]
    eval: Evaluation,
    #[serde(rename = "RelatedEvals", default)]
    related: Option<Vec<serde_json::Value>>,
}

impl ApiCommand for EvalStatusCmd {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let found: Evaluation = resolve(api, &self.eval_id).await?;
        if self.monitor {
            let job_type = match found.eval_type.as_str() {
                "batch" => JobType::Batch,
                "system" => JobType::System,
                "sysbatch" => JobType::Sysbatch,
                _ => JobType::Service,
            };
            return super::super::job::monitor::monitor(
                api,
                &found.id,
                job_type,
                Duration::from_secs(600),
            )
            .await;
        }
        let full: WithRelated = api
            .get_now(
                &format!("/v1/evaluation/{}", urlencode(&found.id)),
                &[("related", "true".to_string())],
            )
            .await
            .map_err(|e| anyhow!("Error querying evaluation: {e}"))?;
        if self.out.json {
            return self.out.print(&full, |_| String::new());
        }
        let allocs: Vec<AllocListStub> = api
            .get_now(
                &format!("/v1/evaluation/{}/allocations", urlencode(&found.id)),
                &[],
            )
            .await
            .map_err(|e| anyhow!("Error querying related allocations: {e}"))?;
        print!(
            "{}",
            render(
                &full.eval,
                full.related.as_deref().unwrap_or(&[]),
                &allocs,
                self.verbose
            )
        );
        Ok(Exit::Ok)
    }
}

fn render(
    eval: &Evaluation,
    related: &[serde_json::Value],
    allocs: &[AllocListStub],
    verbose: bool,
) -> String {
    let (failures, failed) = failure_status(eval);
    let when = |t: i64| if verbose { timestamp(t) } else { ago(t) };
    let description = if eval.status_description.is_empty() {
        eval.status.as_str().to_string()
    } else {
        eval.status_description.clone()
    };
    let mut pairs: Vec<(&str, String)> = vec![
        ("ID", limit(&eval.id, verbose)),
        ("Create Time", when(eval.create_time)),
        ("Modify Time", when(eval.modify_time)),
        ("Status", eval.status.as_str().to_string()),
        ("Status Description", description),
        ("Type", eval.eval_type.clone()),
        ("TriggeredBy", eval.triggered_by.clone()),
        ("Job ID", eval.job_id.clone()),
        ("Namespace", eval.namespace.clone()),
    ];
    if eval.triggered_by == "node-update" && !eval.node_id.is_empty() {
        pairs.push(("Node ID", eval.node_id.clone()));
    }
    pairs.push(("Priority", eval.priority.to_string()));
    pairs.push(("Placement Failures", failures));
    if !eval.wait_until.is_empty() {
        pairs.push(("Wait Until", eval.wait_until.clone()));
    }
    pairs.push(("Previous Eval", limit(&eval.previous_eval, verbose)));
    pairs.push(("Next Eval", limit(&eval.next_eval, verbose)));
    pairs.push(("Blocked Eval", limit(&eval.blocked_eval, verbose)));
    let mut out = kv(&pairs);
    if !related.is_empty() {
        out.push_str("\nRelated Evaluations\n");
        let mut rows = vec![[
            "ID",
            "Priority",
            "Triggered By",
            "Node ID",
            "Status",
            "Description",
        ]
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()];
        for r in related {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
            rows.push(vec![
                limit(&s("ID"), verbose),
                r["Priority"].as_i64().unwrap_or(0).to_string(),
                s("TriggeredBy"),
                limit(&s("NodeID"), verbose),
                s("Status"),
                s("StatusDescription"),
            ]);
        }
        out.push_str(&table(&rows));
    }
    if !allocs.is_empty() {
        out.push_str("\nPlaced Allocations\n");
        let mut rows = vec![[
            "ID",
            "Node ID",
            "Task Group",
            "Desired",
            "Status",
            "Created",
        ]
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()];
        for a in allocs {
            rows.push(vec![
                limit(&a.id, verbose),
                limit(&a.node_id, verbose),
                a.task_group.clone(),
                a.desired_status.as_str().to_string(),
                a.client_status.as_str().to_string(),
                when(a.create_time),
            ]);
        }
        out.push_str(&table(&rows));
    }
    if failed {
        out.push_str("\nFailed Placements\n");
        for (group, metric) in &eval.failed_tg_allocs {
            out.push_str(&failed_group_header(group, metric));
            out.push('\n');
            out.push_str(&format_alloc_metrics(metric, "  "));
        }
        if !eval.blocked_eval.is_empty() {
            out.push_str(&format!(
                "\nEvaluation {:?} waiting for additional capacity to place remainder\n",
                limit(&eval.blocked_eval, verbose)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use controlplane::model::{AllocMetric, EvalStatus};

    #[test]
    fn a_failed_evaluation_explains_its_placements() {
        let eval = Evaluation {
            id: "0123456789abcdef".into(),
            job_id: "web".into(),
            namespace: "default".into(),
            status: EvalStatus::Complete,
            eval_type: "service".into(),
            triggered_by: "job-register".into(),
            priority: 50,
            blocked_eval: "fedcba9876543210".into(),
            failed_tg_allocs: [(
                "web".to_string(),
                AllocMetric {
                    nodes_evaluated: 3,
                    nodes_exhausted: 3,
                    dimension_exhausted: [("memory".to_string(), 3)].into(),
                    coalesced_failures: 1,
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        };
        let out = render(&eval, &[], &[], false);
        assert!(out.contains("Placement Failures = true"), "{out}");
        assert!(out.contains("Blocked Eval       = fedcba98"), "{out}");
        assert!(
            out.contains(
                "\nFailed Placements\nTask Group \"web\" (failed to place 2 allocations):\n  * Resources exhausted on 3 nodes\n  * Dimension \"memory\" exhausted on 3 nodes\n"
            ),
            "{out}"
        );
        assert!(out.ends_with(
            "\nEvaluation \"fedcba98\" waiting for additional capacity to place remainder\n"
        ));
    }
}
