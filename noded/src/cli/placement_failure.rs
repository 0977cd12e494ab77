//! Why allocations could not be placed, as `eval status`, `job status` and the monitor of
//! `job run` print it (Nomad's `formatAllocMetrics`). Its own module because all three use it.

use controlplane::model::AllocMetric;

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
}
