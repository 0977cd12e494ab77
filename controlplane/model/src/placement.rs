//! Where allocations may go and how the scheduler decided: the placement rules a job states
//! (constraints, affinities, spreads) and the metrics a placement (or a failed one) records.
//!
//! Its own module because both sides of a placement use it: the job that asks (`job`,
//! `resources` for device constraints) and the allocation and evaluation that answer
//! (`alloc`, `eval`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A placement rule a node must satisfy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Constraint {
    pub l_target: String,
    pub r_target: String,
    pub operand: String,
}

/// A placement preference, weighted -100..=100.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Affinity {
    pub l_target: String,
    pub r_target: String,
    pub operand: String,
    pub weight: Option<i64>,
}

/// Spread allocations over the values of a node attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Spread {
    pub attribute: String,
    pub weight: Option<i64>,
    pub spread_target: Vec<SpreadTarget>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct SpreadTarget {
    pub value: String,
    pub percent: i64,
}

/// How the scheduler arrived at (or failed) a placement: shown by `alloc status -verbose` and in
/// an evaluation's `FailedTGAllocs`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocMetric {
    pub nodes_evaluated: u64,
    pub nodes_filtered: u64,
    pub nodes_in_pool: u64,
    pub nodes_available: BTreeMap<String, u64>,
    pub class_filtered: BTreeMap<String, u64>,
    pub constraint_filtered: BTreeMap<String, u64>,
    pub nodes_exhausted: u64,
    pub dimension_exhausted: BTreeMap<String, u64>,
    pub scores: BTreeMap<String, f64>,
    pub coalesced_failures: u64,
    /// Exhausted nodes by node class (nodes without a class are not counted here).
    #[serde(default)]
    pub class_exhausted: BTreeMap<String, u64>,
    /// The best-scoring nodes, best first, at most [`MAX_RETAINED_NODE_SCORES`], with each
    /// scorer's part.
    #[serde(default)]
    pub score_meta_data: Vec<NodeScoreMeta>,
}

/// How many of the best nodes a placement's metrics keep the scores of (Nomad keeps 5).
pub const MAX_RETAINED_NODE_SCORES: usize = 5;

/// One node's scores in a placement (Nomad's `NodeScoreMeta`): each scorer's (`binpack`,
/// `job-anti-affinity`, `node-affinity`, `allocation-spread`, `node-reschedule-penalty`,
/// `preemption`) and the normalized mean.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeScoreMeta {
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub scores: BTreeMap<String, f64>,
    pub norm_score: f64,
}
