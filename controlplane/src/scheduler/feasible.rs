//! Feasibility: which nodes can run a task group at all, and why the others cannot. The reasons
//! are recorded in the placement metrics that `job status` and `eval status` show, in Nomad's
//! words. Constraints are in `constraint.rs`; the pipeline that applies all of it is
//! `select.rs`.

use crate::model::{AllocMetric, Job, NetworkResource, Node, TaskGroup};

/// Nomad's `FilterConstraintDrivers`.
pub const MISSING_DRIVERS: &str = "missing drivers";
/// Nomad's words for a node without the group's network mode (`NetworkChecker`).
pub const MISSING_NETWORK: &str = "missing network";
/// Nomad's `FilterConstraintHostVolumes`.
pub const MISSING_HOST_VOLUMES: &str = "missing compatible host volumes";

/// Whether `node` is in the set a job's placements start from (Nomad's
/// `readyNodesInDCsAndPool`): ready and eligible, in one of the job's datacenters and in its
/// node pool. Nodes outside it are not evaluated at all.
pub fn in_base_set(job: &Job, node: &Node) -> bool {
    node.status == crate::model::NodeStatus::Ready
        && node.is_schedulable()
        && job_selects(job, node)
}

/// Whether the job selects `node` at all: its datacenters and node pool (Nomad's
/// `readyNodesInDCsAndPool` without the readiness; `createNodeEvals` uses the same test).
pub fn job_selects(job: &Job, node: &Node) -> bool {
    job.datacenters
        .iter()
        .any(|pattern| glob_match(pattern, &node.datacenter))
        && (job.node_pool.is_empty() || job.node_pool == "all" || job.node_pool == node.node_pool)
}

/// Whether `node` has every host volume `group` asks for (`volume "x" { type = "host" }`),
/// writable where the request is.
pub fn check_host_volumes(group: &TaskGroup, node: &Node) -> Result<(), &'static str> {
    for req in group.volumes.values().filter(|v| v.volume_type == "host") {
        match node.host_volumes.get(&req.source) {
            Some(v) if !v.read_only || req.read_only => {}
            _ => return Err(MISSING_HOST_VOLUMES),
        }
    }
    Ok(())
}

/// Whether `node` offers `network`'s mode and every host network its ports name (Nomad's
/// `NetworkChecker`), or why not, in Nomad's words.
pub fn check_network(network: &NetworkResource, node: &Node) -> Result<(), String> {
    if !node.offers_network_mode(&network.mode) {
        return Err(MISSING_NETWORK.to_string());
    }
    for port in network.reserved_ports.iter().chain(&network.dynamic_ports) {
        if !port.host_network.is_empty() && node.host_network_address(&port.host_network).is_none()
        {
            return Err(format!(
                "missing host network {:?} for port {:?}",
                port.host_network, port.label
            ));
        }
    }
    Ok(())
}

/// Records a filtered node in the metrics (Nomad's `FilterNode`).
pub fn record_filtered(metric: &mut AllocMetric, node: &Node, constraint: &str) {
    metric.nodes_filtered += 1;
    if !node.node_class.is_empty() {
        *metric
            .class_filtered
            .entry(node.node_class.clone())
            .or_default() += 1;
    }
    if !constraint.is_empty() {
        *metric
            .constraint_filtered
            .entry(constraint.to_string())
            .or_default() += 1;
    }
}

/// Records a node without room in the metrics (Nomad's `ExhaustedNode`).
pub fn record_exhausted(metric: &mut AllocMetric, node: &Node, dimension: &str) {
    metric.nodes_exhausted += 1;
    if !node.node_class.is_empty() {
        *metric
            .class_exhausted
            .entry(node.node_class.clone())
            .or_default() += 1;
    }
    if !dimension.is_empty() {
        *metric
            .dimension_exhausted
            .entry(dimension.to_string())
            .or_default() += 1;
    }
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
