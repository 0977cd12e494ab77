//! `noded eval list|status|delete`, and how placement failures are explained wherever an
//! evaluation is shown (Nomad's `formatAllocMetrics`, used by `eval status`, `job status` and
//! the monitor of `job run`/`job eval`).

mod delete;
mod list;
mod status;

use clap::Subcommand;
use controlplane::model::{EvalStatus, Evaluation};

use super::format::{short, table};
use super::global::Api;
use super::Exit;

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// List evaluations.
    List(Api<list::EvalList>),
    /// Show one evaluation, with why its placements failed.
    Status(Api<status::EvalStatusCmd>),
    /// Delete evaluations (the eval broker must be paused).
    Delete(Api<delete::EvalDelete>),
}

impl EvalCommand {
    pub async fn run(self) -> anyhow::Result<Exit> {
        match self {
            EvalCommand::List(c) => c.run().await,
            EvalCommand::Status(c) => c.run().await,
            EvalCommand::Delete(c) => c.run().await,
        }
    }
}

/// An id as the listings show it: whole with `-verbose`, else the first 8 characters.
pub(crate) fn limit(id: &str, verbose: bool) -> String {
    if verbose {
        id.to_string()
    } else {
        short(id)
    }
}

/// The "Placement Failures" cell: whether the evaluation failed to place anything (a blocked
/// one is still trying).
pub(crate) fn failure_status(eval: &Evaluation) -> (String, bool) {
    let failed = !eval.failed_tg_allocs.is_empty();
    let text = if eval.status == EvalStatus::Blocked {
        "N/A - In Progress".to_string()
    } else {
        if failed { "true" } else { "false" }.to_string()
    };
    (text, failed)
}

/// Nomad's evaluation table.
pub(crate) fn eval_table(evals: &[Evaluation], verbose: bool) -> String {
    let mut rows = vec![[
        "ID",
        "Priority",
        "Triggered By",
        "Job ID",
        "Namespace",
        "Node ID",
        "Status",
        "Placement Failures",
    ]
    .iter()
    .map(|c| c.to_string())
    .collect()];
    for e in evals {
        rows.push(vec![
            limit(&e.id, verbose),
            e.priority.to_string(),
            e.triggered_by.clone(),
            e.job_id.clone(),
            e.namespace.clone(),
            if e.node_id.is_empty() {
                String::new()
            } else {
                limit(&e.node_id, verbose)
            },
            e.status.as_str().to_string(),
            failure_status(e).0,
        ]);
    }
    table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use controlplane::model::AllocMetric;

    #[test]
    fn the_failure_cell_says_in_progress_for_a_blocked_evaluation() {
        let mut e = Evaluation::default();
        assert_eq!(failure_status(&e), ("false".to_string(), false));
        e.failed_tg_allocs
            .insert("g".into(), AllocMetric::default());
        assert_eq!(failure_status(&e), ("true".to_string(), true));
        e.status = EvalStatus::Blocked;
        assert_eq!(failure_status(&e).0, "N/A - In Progress");
    }
}
