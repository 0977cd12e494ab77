//! `noded eval list|status|delete`, and how placement failures are explained wherever an
//! evaluation is shown (Nomad's `formatAllocMetrics`, used by `eval status`, `job status` and
//! the monitor of `job run`/`job eval`).

mod delete;
mod list;
mod status;

use clap::Subcommand;
use controlplane::model::{AllocMetric, EvalStatus, Evaluation};

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

/// Why a group could not be placed, one `* …` line per reason, each starting with `prefix`
/// (Nomad's `formatAllocMetrics`, in its order): nothing eligible, empty datacenters, classes
/// and constraints that filtered nodes out, exhausted nodes and dimensions.
pub fn format_alloc_metrics(metric: &AllocMetric, prefix: &str) -> String {
    let mut out = String::new();
    if metric.nodes_evaluated == 0 {
        out.push_str(&format!(
            "{prefix}* No nodes were eligible for evaluation\n"
        ));
    }
    for (dc, available) in &metric.nodes_available {
        if *available == 0 {
            out.push_str(&format!(
                "{prefix}* No nodes are available in datacenter {dc:?}\n"
            ));
        }
    }
    for (class, n) in &metric.class_filtered {
        out.push_str(&format!(
            "{prefix}* Class {class:?}: {n} nodes excluded by filter\n"
        ));
    }
    for (constraint, n) in &metric.constraint_filtered {
        out.push_str(&format!(
            "{prefix}* Constraint {constraint:?}: {n} nodes excluded by filter\n"
        ));
    }
    if metric.nodes_exhausted > 0 {
        out.push_str(&format!(
            "{prefix}* Resources exhausted on {} nodes\n",
            metric.nodes_exhausted
        ));
    }
    for (dim, n) in &metric.dimension_exhausted {
        out.push_str(&format!(
            "{prefix}* Dimension {dim:?} exhausted on {n} nodes\n"
        ));
    }
    out
}

/// `Task Group "web" (failed to place 3 allocations):` — the count is the failure itself
/// plus those coalesced into it.
pub fn failed_group_header(group: &str, metric: &AllocMetric) -> String {
    let n = metric.coalesced_failures + 1;
    let noun = if metric.coalesced_failures > 0 {
        "allocations"
    } else {
        "allocation"
    };
    format!("Task Group {group:?} (failed to place {n} {noun}):")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_failures_read_as_nomad_prints_them() {
        let metric = AllocMetric {
            nodes_evaluated: 5,
            nodes_available: [("dc1".to_string(), 5), ("dc2".to_string(), 0)].into(),
            class_filtered: [("gpu".to_string(), 2)].into(),
            constraint_filtered: [("${attr.kernel.name} = windows".to_string(), 5)].into(),
            nodes_exhausted: 1,
            dimension_exhausted: [("memory".to_string(), 1)].into(),
            coalesced_failures: 2,
            ..Default::default()
        };
        assert_eq!(
            failed_group_header("web", &metric),
            "Task Group \"web\" (failed to place 3 allocations):"
        );
        assert_eq!(
            format_alloc_metrics(&metric, "  "),
            "  * No nodes are available in datacenter \"dc2\"\n\
             \x20 * Class \"gpu\": 2 nodes excluded by filter\n\
             \x20 * Constraint \"${attr.kernel.name} = windows\": 5 nodes excluded by filter\n\
             \x20 * Resources exhausted on 1 nodes\n\
             \x20 * Dimension \"memory\" exhausted on 1 nodes\n"
        );
        let none = AllocMetric::default();
        assert_eq!(
            format_alloc_metrics(&none, ""),
            "* No nodes were eligible for evaluation\n"
        );
        assert_eq!(
            failed_group_header("db", &none),
            "Task Group \"db\" (failed to place 1 allocation):"
        );
    }

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
