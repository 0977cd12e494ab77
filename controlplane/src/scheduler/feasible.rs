//! Feasibility: which nodes can run a task group at all, and why the others cannot. The reasons
//! are recorded in the placement metrics that `job status` and `eval status` show.

use crate::model::{AllocMetric, ComparableResources, Job, Node, TaskGroup};

/// Why a node was filtered out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    NotReady,
    Ineligible,
    Datacenter,
    NodePool,
    MissingDriver(String),
}

impl Filtered {
    /// The key Nomad's metrics use for this reason.
    pub fn metric_key(&self) -> String {
        match self {
            Filtered::NotReady => "node not ready".into(),
            Filtered::Ineligible => "node ineligible".into(),
            Filtered::Datacenter => "datacenter".into(),
            Filtered::NodePool => "node pool".into(),
            Filtered::MissingDriver(d) => format!("missing drivers: {d}"),
        }
    }
}

/// Whether `node` can run `group` of `job`, ignoring resources.
pub fn check_node(job: &Job, group: &TaskGroup, node: &Node) -> Result<(), Filtered> {
    if node.status != crate::model::NodeStatus::Ready {
        return Err(Filtered::NotReady);
    }
    if !node.is_schedulable() {
        return Err(Filtered::Ineligible);
    }
    if !job
        .datacenters
        .iter()
        .any(|pattern| glob_match(pattern, &node.datacenter))
    {
        return Err(Filtered::Datacenter);
    }
    if !job.node_pool.is_empty() && job.node_pool != "all" && job.node_pool != node.node_pool {
        return Err(Filtered::NodePool);
    }
    for task in &group.tasks {
        if !node.has_driver(&task.driver) {
            return Err(Filtered::MissingDriver(task.driver.clone()));
        }
    }
    Ok(())
}

/// Records a filtered node in the metrics.
pub fn record_filtered(metric: &mut AllocMetric, node: &Node, why: &Filtered) {
    metric.nodes_filtered += 1;
    *metric
        .class_filtered
        .entry(if node.node_class.is_empty() {
            "<none>".to_string()
        } else {
            node.node_class.clone()
        })
        .or_default() += 1;
    *metric
        .constraint_filtered
        .entry(why.metric_key())
        .or_default() += 1;
}

/// Whether `ask` fits in what `node` has left after `used`; on failure, the exhausted dimension.
pub fn check_fit(
    node: &Node,
    used: ComparableResources,
    ask: ComparableResources,
) -> Result<(), &'static str> {
    let mut total = used;
    total.add(ask);
    total.fits_in(&node.allocatable())
}

/// Shell-style glob with `*` (any run) and `?` (one character), as Nomad matches datacenters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_match_like_nomad_datacenters() {
        assert!(glob_match("*", "dc1"));
        assert!(glob_match("dc*", "dc1"));
        assert!(glob_match("dc?", "dc1"));
        assert!(glob_match("dc1", "dc1"));
        assert!(!glob_match("dc2", "dc1"));
        assert!(!glob_match("dc?", "dc10"));
        assert!(glob_match("*-east-*", "us-east-1"));
        assert!(!glob_match("", "dc1"));
    }
}
