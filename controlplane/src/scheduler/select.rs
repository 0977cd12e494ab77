//! Selecting a node for one allocation, as Nomad's generic stack does: the job's ready nodes
//! in its datacenters and pool, shuffled once per run (seeded from the evaluation), visited
//! round-robin across placements; each is filtered (constraints and drivers decided once per
//! computed class, host volumes, distinct hosts and properties), fitted (ports, cores, cpu,
//! memory, disk, and preemption when allowed) and scored (bin-pack or spread, job
//! anti-affinity, reschedule penalty, affinities, spreads, preemption), the scores averaged.
//! Only the first few nodes that fit are compared (Nomad's limit iterator): log2 of the node
//! count for services, two for batch, all with affinities or spreads.
//!
//! The per-run state ([`RunCache`]) is what keeps a thousand placements of one group cheap:
//! the shuffled node list, class feasibility, compiled regexps, ports and this job's
//! allocations per node are built once and updated as the plan grows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::constraint::{self, ConstraintCache, DISTINCT_PROPERTY};
use super::ports::{self, PortOffer};
use super::preempt::{self, Candidate};
use super::rng::SplitMix64;
use super::{feasible, rank, Run};
use crate::model::{
    AllocMetric, Allocation, ComparableResources, Constraint, Job, JobType, Node, NodeScoreMeta,
    Spread, TaskGroup, MAX_RETAINED_NODE_SCORES,
};

/// Nodes the limit iterator may set aside for scoring at or below zero (Nomad's `maxSkip`).
const MAX_SKIP: usize = 3;
/// Nomad's `skipScoreThreshold`.
const SKIP_SCORE_THRESHOLD: f64 = 0.0;
/// Nodes compared when affinities or spreads apply (Nomad's default
/// `node_limit_for_feasibility_checks`). Nomad compares max(count, 100): every placement of a
/// 1,000-allocation group then scores 1,000 nodes, a million node visits per group, which is
/// what makes its spread scheduling quadratic. noded keeps 100: spread and affinity scores
/// depend only on a node's attributes, so a hundred shuffled candidates already hold every
/// value a spread targets many times over (the spread tests check the resulting ratios).
const AFFINITY_NODE_LIMIT: usize = 100;
/// Nomad's default spread and affinity weight, for a job whose weights were never filled in.
const DEFAULT_WEIGHT: i64 = 50;

/// One run's placement caches.
#[derive(Debug, Default)]
pub(super) struct RunCache {
    base: Option<BaseNodes>,
    eligibility: Eligibility,
    pub(super) constraints: ConstraintCache,
    rng: Option<SplitMix64>,
    /// Host ports per node: reserved by the node, and held by its allocations (this plan's
    /// placements and stops counted).
    ports: HashMap<String, NodePorts>,
    /// This job's live allocations per node and group, this plan counted; built on first use.
    pub(super) job_counts: Option<HashMap<String, BTreeMap<String, u32>>>,
    /// Nomad's `lowestSpreadBoost`, per group: the score a spread target already full gets.
    lowest_spread_boost: HashMap<String, f64>,
    /// Nodes looked at by every selection of the run: what the limit iterator bounds.
    pub(super) node_visits: u64,
}

#[derive(Debug)]
struct BaseNodes {
    nodes: Vec<Arc<Node>>,
    /// Where the next selection starts: Nomad's static iterator keeps its offset across
    /// selections, so successive placements look at different nodes.
    offset: usize,
    available_by_dc: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct NodePorts {
    reserved: BTreeSet<i64>,
    held: BTreeSet<i64>,
}

/// Which computed classes passed the job's and each group's class-wide checks (Nomad's
/// `EvalEligibility`).
#[derive(Debug, Default)]
struct Eligibility {
    job: HashMap<String, bool>,
    groups: HashMap<String, HashMap<String, bool>>,
    job_escaped: bool,
    group_escaped: HashMap<String, bool>,
}

impl RunCache {
    fn rng(&mut self, eval_id: &str, index: u64) -> &mut SplitMix64 {
        self.rng
            .get_or_insert_with(|| SplitMix64::for_eval(eval_id, index))
    }

    /// Classes found eligible (`true`) or not for the job, groups first (Nomad's
    /// `GetClasses`), for the blocked evaluation.
    pub(super) fn class_eligibility(&self) -> BTreeMap<String, bool> {
        let mut out = BTreeMap::new();
        for classes in self.eligibility.groups.values() {
            for (class, ok) in classes {
                if *ok {
                    out.insert(class.clone(), true);
                } else {
                    out.entry(class.clone()).or_insert(false);
                }
            }
        }
        for (class, ok) in &self.eligibility.job {
            if *ok {
                out.entry(class.clone()).or_insert(true);
            } else {
                out.insert(class.clone(), false);
            }
        }
        out
    }

    /// Whether a rule looked at values unique to a node.
    pub(super) fn escaped(&self) -> bool {
        self.eligibility.job_escaped || self.eligibility.group_escaped.values().any(|e| *e)
    }
}

/// What one allocation of a group asks, and the rules it is placed by: built once per
/// selection.
pub(super) struct GroupCtx<'j> {
    job: &'j Job,
    group: &'j TaskGroup,
    pub(super) resources: ComparableResources,
    pub(super) cores: usize,
    job_constraints: Vec<&'j Constraint>,
    group_constraints: Vec<&'j Constraint>,
    /// The operator's `scheduler_algorithm` is `spread` (read once per selection).
    spread_algorithm: bool,
    drivers: BTreeSet<&'j str>,
    job_distinct_hosts: bool,
    group_distinct_hosts: bool,
    distinct_properties: Vec<PropertyLimit>,
    /// Affinities as constraints (the same operators) with their weights.
    affinities_owned: Vec<(Constraint, i64)>,
    affinity_weight_sum: f64,
    spreads: Vec<SpreadCtx>,
    spread_weight_sum: f64,
    penalty_node: Option<String>,
    preempt: bool,
}

/// A `distinct_property` constraint with what its values are used by now.
struct PropertyLimit {
    attribute: String,
    allowed: u64,
    used: HashMap<String, u64>,
    /// Set when the constraint's count does not parse: every node fails with it.
    error: Option<String>,
}

/// A spread with its desired counts and the current use of each value.
struct SpreadCtx {
    attribute: String,
    weight: f64,
    targets: BTreeSet<String>,
    /// Desired allocations per (targeted) value; `*` for the values not named.
    desired: HashMap<String, f64>,
    used: HashMap<String, u64>,
}

/// A node that fits, with its score and what it would get.
pub(super) struct Ranked {
    pub(super) node: Arc<Node>,
    pub(super) final_score: f64,
    scores: Scores,
    pub(super) offer: Option<PortOffer>,
    pub(super) preempted: Vec<Arc<Allocation>>,
}

impl<'a> Run<'a> {
    /// Builds what a selection for `group` needs; `previous` is the allocation replaced.
    pub(super) fn group_ctx<'j>(
        &mut self,
        job: &'j Job,
        group: &'j TaskGroup,
        previous: Option<&Allocation>,
        preempt: bool,
    ) -> GroupCtx<'j> {
        let ask = group.total_resources();
        let group_constraints: Vec<&Constraint> = group
            .constraints
            .iter()
            .chain(group.tasks.iter().flat_map(|t| t.constraints.iter()))
            .collect();
        self.note_escapes(job, group);
        let mut distinct_properties = Vec::new();
        for (c, scope) in job.constraints.iter().map(|c| (c, None)).chain(
            group
                .constraints
                .iter()
                .map(|c| (c, Some(group.name.as_str()))),
        ) {
            if c.operand != DISTINCT_PROPERTY {
                continue;
            }
            let (allowed, error) = if c.r_target.is_empty() {
                (1, None)
            } else {
                match c.r_target.parse::<u64>() {
                    Ok(n) => (n, None),
                    Err(e) => (
                        0,
                        Some(format!(
                            "failed to convert RTarget {:?} to uint64: {e}",
                            c.r_target
                        )),
                    ),
                }
            };
            distinct_properties.push(PropertyLimit {
                attribute: c.l_target.clone(),
                allowed,
                used: self.property_use(&c.l_target, scope, &BTreeSet::new()),
                error,
            });
        }
        let mut ctx = GroupCtx {
            job,
            group,
            resources: ask,
            cores: group
                .tasks
                .iter()
                .filter_map(|t| t.resources.as_ref())
                .map(|r| usize::try_from(r.cores).unwrap_or(0))
                .sum(),
            job_constraints: job.constraints.iter().collect(),
            group_constraints,
            spread_algorithm: self.state.scheduler_config().scheduler_algorithm == "spread",
            drivers: group.tasks.iter().map(|t| t.driver.as_str()).collect(),
            job_distinct_hosts: constraint::distinct_hosts_enabled(&job.constraints),
            group_distinct_hosts: constraint::distinct_hosts_enabled(&group.constraints),
            distinct_properties,
            affinities_owned: Vec::new(),
            affinity_weight_sum: 0.0,
            spreads: Vec::new(),
            spread_weight_sum: 0.0,
            penalty_node: previous
                .filter(|p| p.client_status == crate::model::ClientStatus::Failed)
                .map(|p| p.node_id.clone()),
            preempt,
        };
        self.affinities_and_spreads(&mut ctx);
        ctx
    }

    fn affinities_and_spreads(&mut self, ctx: &mut GroupCtx<'_>) {
        let (job, group) = (ctx.job, ctx.group);
        let all = job
            .affinities
            .iter()
            .chain(group.affinities.iter())
            .chain(group.tasks.iter().flat_map(|t| t.affinities.iter()));
        let mut affinity_constraints = Vec::new();
        for a in all {
            let w = a.weight.unwrap_or(DEFAULT_WEIGHT);
            ctx.affinity_weight_sum += (w as f64).abs();
            affinity_constraints.push((
                Constraint {
                    l_target: a.l_target.clone(),
                    r_target: a.r_target.clone(),
                    operand: a.operand.clone(),
                },
                w,
            ));
        }
        ctx.affinities_owned = affinity_constraints;
        // Desired counts from the group's spreads then the job's (Nomad's `computeSpreadInfo`),
        // property sets over the job's then the group's, both counting this group only.
        let mut infos: HashMap<String, (f64, HashMap<String, f64>)> = HashMap::new();
        let count = group.count.max(0) as f64;
        for s in group.spreads.iter().chain(job.spreads.iter()) {
            let weight = s.weight.unwrap_or(DEFAULT_WEIGHT) as f64;
            let mut desired = HashMap::new();
            let mut sum = 0.0;
            for t in &s.spread_target {
                let d = t.percent as f64 / 100.0 * count;
                desired.insert(t.value.clone(), d);
                sum += d;
            }
            if sum > 0.0 && sum < count {
                desired.insert("*".to_string(), count - sum);
            }
            ctx.spread_weight_sum += weight;
            infos.insert(s.attribute.clone(), (weight, desired));
        }
        let spreads: Vec<&Spread> = job.spreads.iter().chain(group.spreads.iter()).collect();
        for s in spreads {
            let targets: BTreeSet<String> =
                s.spread_target.iter().map(|t| t.value.clone()).collect();
            let (weight, desired) = infos.get(&s.attribute).cloned().unwrap_or_default();
            ctx.spreads.push(SpreadCtx {
                attribute: s.attribute.clone(),
                weight,
                used: self.property_use(&s.attribute, Some(&group.name), &targets),
                targets,
                desired,
            });
        }
    }

    /// Records whether the job's and the group's constraints look at unique values.
    fn note_escapes(&mut self, job: &Job, group: &TaskGroup) {
        let e = &mut self.select.eligibility;
        e.job_escaped = job.constraints.iter().any(constraint::escapes);
        let group_escaped = group
            .constraints
            .iter()
            .chain(group.tasks.iter().flat_map(|t| t.constraints.iter()))
            .any(constraint::escapes);
        e.group_escaped.insert(group.name.clone(), group_escaped);
    }

    /// This job's live allocations per node and group, this plan counted.
    pub(super) fn job_counts(&mut self) -> &mut HashMap<String, BTreeMap<String, u32>> {
        if self.select.job_counts.is_none() {
            let stopped: BTreeSet<&str> = self
                .plan
                .node_update
                .values()
                .flatten()
                .map(|s| s.alloc_id.as_str())
                .collect();
            let mut counts: HashMap<String, BTreeMap<String, u32>> = HashMap::new();
            for a in &self.allocs {
                if !a.is_terminal() && !stopped.contains(a.id.as_str()) {
                    *counts
                        .entry(a.node_id.clone())
                        .or_default()
                        .entry(a.task_group.clone())
                        .or_default() += 1;
                }
            }
            for a in self.plan.node_allocation.values().flatten() {
                if a.job_id == self.plan.eval.job_id && a.namespace == self.plan.eval.namespace {
                    *counts
                        .entry(a.node_id.clone())
                        .or_default()
                        .entry(a.task_group.clone())
                        .or_default() += 1;
                }
            }
            self.select.job_counts = Some(counts);
        }
        self.select.job_counts.get_or_insert_with(HashMap::new)
    }

    /// How many of this job's live allocations (of `group`, or of every group) sit on nodes
    /// with each value of `attribute`; values not in `targets` (when there are any) count as
    /// `*` (Nomad's property sets).
    fn property_use(
        &mut self,
        attribute: &str,
        group: Option<&str>,
        targets: &BTreeSet<String>,
    ) -> HashMap<String, u64> {
        let state = self.state;
        let mut used = HashMap::new();
        for (node_id, groups) in self.job_counts().iter() {
            let n: u32 = match group {
                Some(g) => groups.get(g).copied().unwrap_or(0),
                None => groups.values().sum(),
            };
            if n == 0 {
                continue;
            }
            let Some(node) = state.node(node_id) else {
                continue;
            };
            let Some(value) = constraint::resolve_target(attribute, &node) else {
                continue;
            };
            *used
                .entry(targeted(targets, value).to_string())
                .or_insert(0) += u64::from(n);
        }
        used
    }

    /// The job's ready nodes in its datacenters and pool, shuffled: built once per run.
    fn base_nodes(&mut self, job: &Job) -> &mut BaseNodes {
        if self.select.base.is_none() {
            let mut nodes: Vec<Arc<Node>> = self
                .state
                .nodes()
                .into_iter()
                .filter(|n| feasible::in_base_set(job, n))
                .collect();
            let mut available_by_dc = BTreeMap::new();
            for n in &nodes {
                *available_by_dc.entry(n.datacenter.clone()).or_insert(0) += 1;
            }
            let (eval_id, index) = (self.plan.eval.id.clone(), self.plan.snapshot_index);
            self.select.rng(&eval_id, index).shuffle(&mut nodes);
            self.select.base = Some(BaseNodes {
                nodes,
                offset: 0,
                available_by_dc,
            });
        }
        self.select.base.get_or_insert_with(|| BaseNodes {
            nodes: Vec::new(),
            offset: 0,
            available_by_dc: BTreeMap::new(),
        })
    }

    /// Selects the node for one allocation: the best of the first few that fit.
    pub(super) fn select(&mut self, ctx: &GroupCtx<'_>) -> (Option<Ranked>, AllocMetric) {
        let mut metric = AllocMetric::default();
        let (n, available) = {
            let base = self.base_nodes(ctx.job);
            (base.nodes.len(), base.available_by_dc.clone())
        };
        metric.nodes_in_pool = n as u64;
        metric.nodes_available = available;
        let mut limit = if ctx.job.job_type == JobType::Batch || n == 0 {
            2
        } else {
            2usize.max((n as f64).log2().ceil() as usize)
        };
        if ctx.affinity_weight_sum > 0.0 || !ctx.spreads.is_empty() {
            limit = AFFINITY_NODE_LIMIT;
        }
        let mut top: Vec<NodeScoreMeta> = Vec::new();
        let mut best: Option<Ranked> = None;
        let mut skipped: Vec<Ranked> = Vec::new();
        let mut seen = 0usize;
        let mut consider = |r: Ranked, top: &mut Vec<NodeScoreMeta>| {
            retain_top(top, &r);
            if best.as_ref().is_none_or(|b| r.final_score > b.final_score) {
                best = Some(r);
            }
        };
        for _ in 0..n {
            if seen == limit {
                break;
            }
            let node = {
                let base = self.base_nodes(ctx.job);
                let node = base.nodes[base.offset % n].clone();
                base.offset = (base.offset + 1) % n;
                node
            };
            self.select.node_visits += 1;
            metric.nodes_evaluated += 1;
            if !self.feasible(ctx, &node, &mut metric) {
                continue;
            }
            let Some(ranked) = self.rank(ctx, &node, &mut metric) else {
                continue;
            };
            if ranked.final_score <= SKIP_SCORE_THRESHOLD && skipped.len() < MAX_SKIP {
                skipped.push(ranked);
                continue;
            }
            seen += 1;
            consider(ranked, &mut top);
        }
        for r in skipped {
            if seen == limit {
                break;
            }
            seen += 1;
            consider(r, &mut top);
        }
        for m in &top {
            for (scorer, s) in &m.scores {
                metric.scores.insert(format!("{}.{scorer}", m.node_id), *s);
            }
            metric
                .scores
                .insert(format!("{}.normalized-score", m.node_id), m.norm_score);
        }
        metric.score_meta_data = top;
        (best, metric)
    }

    /// The filters: class-wide ones (cached per computed class), then per-node ones.
    pub(super) fn feasible(
        &mut self,
        ctx: &GroupCtx<'_>,
        node: &Node,
        m: &mut AllocMetric,
    ) -> bool {
        let class = node.computed_class.clone();
        let cacheable = !class.is_empty();
        let job_escaped = self.select.eligibility.job_escaped || !cacheable;
        let job_status = (!job_escaped)
            .then(|| self.select.eligibility.job.get(&class).copied())
            .flatten();
        match job_status {
            Some(false) => {
                feasible::record_filtered(m, node, "computed class ineligible");
                return false;
            }
            Some(true) => {}
            None => {
                let cache = &mut self.select.constraints;
                let failed = ctx
                    .job_constraints
                    .iter()
                    .find(|c| !constraint::meets(cache, c, node));
                if let Some(c) = failed {
                    feasible::record_filtered(m, node, &constraint::constraint_string(c));
                    if !job_escaped {
                        self.select.eligibility.job.insert(class, false);
                    }
                    return false;
                }
                if !job_escaped {
                    self.select.eligibility.job.insert(class.clone(), true);
                }
            }
        }
        let group = ctx.group.name.as_str();
        let group_escaped = !cacheable
            || self
                .select
                .eligibility
                .group_escaped
                .get(group)
                .copied()
                .unwrap_or(false);
        let group_status = (!group_escaped)
            .then(|| {
                self.select
                    .eligibility
                    .groups
                    .get(group)
                    .and_then(|c| c.get(&node.computed_class).copied())
            })
            .flatten();
        match group_status {
            Some(false) => {
                feasible::record_filtered(m, node, "computed class ineligible");
                return false;
            }
            Some(true) => {}
            None => {
                let ok = self.group_checks(ctx, node, m);
                if !group_escaped {
                    self.select
                        .eligibility
                        .groups
                        .entry(group.to_string())
                        .or_default()
                        .insert(node.computed_class.clone(), ok);
                }
                if !ok {
                    return false;
                }
            }
        }
        if let Err(why) = feasible::check_host_volumes(ctx.group, node) {
            feasible::record_filtered(m, node, why);
            return false;
        }
        self.distinct_checks(ctx, node, m)
    }

    /// Drivers, then the group's and its tasks' constraints.
    fn group_checks(&mut self, ctx: &GroupCtx<'_>, node: &Node, m: &mut AllocMetric) -> bool {
        if !ctx.drivers.iter().all(|d| node.has_driver(d)) {
            feasible::record_filtered(m, node, feasible::MISSING_DRIVERS);
            return false;
        }
        if let Some(network) = ctx.group.networks.first() {
            if let Err(why) = feasible::check_network(network, node) {
                feasible::record_filtered(m, node, &why);
                return false;
            }
        }
        let cache = &mut self.select.constraints;
        if let Some(c) = ctx
            .group_constraints
            .iter()
            .find(|c| !constraint::meets(cache, c, node))
        {
            feasible::record_filtered(m, node, &constraint::constraint_string(c));
            return false;
        }
        true
    }

    /// `distinct_hosts` and `distinct_property`, which look at this job's other allocations.
    fn distinct_checks(&mut self, ctx: &GroupCtx<'_>, node: &Node, m: &mut AllocMetric) -> bool {
        if ctx.job_distinct_hosts || ctx.group_distinct_hosts {
            let here = self.job_counts().get(&node.id);
            let job_here = here.is_some_and(|g| g.values().any(|n| *n > 0));
            let group_here = here.is_some_and(|g| g.get(&ctx.group.name).is_some_and(|n| *n > 0));
            if (ctx.job_distinct_hosts && job_here) || group_here {
                feasible::record_filtered(m, node, constraint::DISTINCT_HOSTS);
                return false;
            }
        }
        for p in &ctx.distinct_properties {
            if let Some(e) = &p.error {
                feasible::record_filtered(m, node, e);
                return false;
            }
            let Some(value) = constraint::resolve_target(&p.attribute, node) else {
                feasible::record_filtered(m, node, &format!("missing property {:?}", p.attribute));
                return false;
            };
            let used = p.used.get(value).copied().unwrap_or(0);
            if used >= p.allowed {
                feasible::record_filtered(
                    m,
                    node,
                    &format!(
                        "distinct_property: {}={value} used by {used} allocs",
                        p.attribute
                    ),
                );
                return false;
            }
        }
        true
    }

    /// Fits the allocation on `node` (ports, cores, cpu, memory, disk; preempting when the
    /// selection allows it) and scores it; `None` (recorded as exhausted) if it does not fit.
    pub(super) fn rank(
        &mut self,
        ctx: &GroupCtx<'_>,
        node: &Arc<Node>,
        m: &mut AllocMetric,
    ) -> Option<Ranked> {
        let mut parts = Scores::default();
        let mut scores: Vec<f64> = Vec::with_capacity(6);
        let mut preempted: Vec<Arc<Allocation>> = Vec::new();
        let fit = self.fit(ctx, node, &[]);
        let (offer, used_after) = match fit {
            Ok(ok) => ok,
            Err(dimension) => {
                let freed = if ctx.preempt {
                    self.find_preemptions(ctx, node)
                } else {
                    None
                };
                match freed.map(|p| (self.fit(ctx, node, &p), p)) {
                    Some((Ok(ok), p)) => {
                        preempted = p;
                        ok
                    }
                    _ => {
                        feasible::record_exhausted(m, node, &dimension);
                        return None;
                    }
                }
            }
        };
        let fitness = if ctx.spread_algorithm {
            rank::spread_fit_score(node.allocatable(), used_after)
        } else {
            rank::binpack_score(node.allocatable(), used_after)
        } / rank::MAX_FIT_SCORE;
        scores.push(fitness);
        parts.binpack = fitness;

        let collisions = self
            .job_counts()
            .get(&node.id)
            .and_then(|g| g.get(&ctx.group.name))
            .copied()
            .unwrap_or(0);
        let anti = rank::job_anti_affinity(collisions, ctx.group.count);
        if let Some(penalty) = anti {
            scores.push(penalty);
        }
        parts.job_anti_affinity = anti.unwrap_or(0.0);

        let penalized = ctx.penalty_node.as_deref() == Some(node.id.as_str());
        if penalized {
            scores.push(-1.0);
        }
        parts.node_reschedule_penalty = if penalized { -1.0 } else { 0.0 };

        let affinity = if ctx.affinity_weight_sum > 0.0 {
            let cache = &mut self.select.constraints;
            let matched: f64 = ctx
                .affinities_owned
                .iter()
                .filter(|(c, _)| constraint::meets(cache, c, node))
                .map(|(_, w)| *w as f64)
                .sum();
            let s = matched / ctx.affinity_weight_sum;
            scores.push(s);
            s
        } else {
            0.0
        };
        parts.node_affinity = affinity;

        if !ctx.spreads.is_empty() {
            let lowest = self
                .select
                .lowest_spread_boost
                .entry(ctx.group.name.clone())
                .or_insert(-1.0);
            let total = spread_score(ctx, node, lowest);
            if total != 0.0 {
                scores.push(total);
                parts.allocation_spread = Some(total);
            }
        }

        if !preempted.is_empty() {
            let s = preempt::score(&preempted);
            scores.push(s);
            parts.preemption = Some(s);
        }

        let final_score = scores.iter().sum::<f64>() / scores.len() as f64;
        Some(Ranked {
            node: node.clone(),
            final_score,
            scores: parts,
            offer,
            preempted,
        })
    }

    /// Whether the group fits on `node` with `freed` evicted: the port offer and the usage
    /// after placing, or the exhausted dimension in Nomad's words.
    fn fit(
        &mut self,
        ctx: &GroupCtx<'_>,
        node: &Node,
        freed: &[Arc<Allocation>],
    ) -> Result<(Option<PortOffer>, ComparableResources), String> {
        let offer = match ctx.group.networks.first() {
            Some(ask) if !ask.reserved_ports.is_empty() || !ask.dynamic_ports.is_empty() => {
                let freed_ports: BTreeSet<i64> = freed
                    .iter()
                    .flat_map(|a| a.allocated_resources.host_ports())
                    .collect();
                let (eval_id, index) = (self.plan.eval.id.clone(), self.plan.snapshot_index);
                self.load_node_ports(&node.id, node);
                let cache = &mut self.select;
                let ports = cache.ports.get(&node.id);
                let used = |p: i64| {
                    ports.is_some_and(|np| {
                        np.reserved.contains(&p)
                            || (np.held.contains(&p) && !freed_ports.contains(&p))
                    })
                };
                let rng = cache
                    .rng
                    .get_or_insert_with(|| SplitMix64::for_eval(&eval_id, index));
                Some(ports::assign(ask, node, &used, rng).map_err(|e| format!("network: {e}"))?)
            }
            Some(ask) => Some(PortOffer {
                network: ask.clone(),
                ports: Vec::new(),
            }),
            None => None,
        };
        let mut total = ctx.resources;
        if ctx.cores > 0 {
            let freed_cores: BTreeSet<u32> = freed
                .iter()
                .flat_map(|a| a.allocated_resources.tasks.values())
                .flat_map(|t| t.cpu.reserved_cores.iter().copied())
                .collect();
            let reserved = self.node_cores(&node.id);
            let free = node
                .node_resources
                .cpu
                .reservable_cpu_cores
                .iter()
                .filter(|c| !reserved.contains(c) || freed_cores.contains(c))
                .count();
            if free < ctx.cores {
                return Err("cores".into());
            }
            total.cpu_mhz += rank::mhz_per_core(node) * ctx.cores as i64;
        }
        let mut used = self.node_usage_now(&node.id);
        for a in freed {
            used.subtract(a.allocated_resources.comparable());
        }
        let mut after = used;
        after.add(total);
        after.fits_in(&node.allocatable()).map_err(str::to_string)?;
        Ok((offer, after))
    }

    /// Loads a node's host ports into the cache: its reserved ones and those its allocations
    /// hold.
    pub(super) fn load_node_ports(&mut self, node_id: &str, node: &Node) {
        if !self.select.ports.contains_key(node_id) {
            let mut np = NodePorts {
                reserved: node
                    .reserved_host_ports()
                    .into_iter()
                    .map(i64::from)
                    .collect(),
                held: BTreeSet::new(),
            };
            for a in self.state.allocs_by_node(node_id) {
                if a.holds_resources() {
                    np.held.extend(a.allocated_resources.host_ports());
                }
            }
            self.select.ports.insert(node_id.to_string(), np);
        }
    }

    /// The host ports this run takes (`place`) or gives back (`release`) on a node.
    pub(super) fn held_ports(&mut self, node: &Node) -> &mut BTreeSet<i64> {
        self.load_node_ports(&node.id, node);
        &mut self.select.ports.entry(node.id.clone()).or_default().held
    }

    /// Lower-priority allocations on `node` whose eviction would make room (Nomad's
    /// `PreemptForTaskGroup`).
    fn find_preemptions(
        &mut self,
        ctx: &GroupCtx<'_>,
        node: &Node,
    ) -> Option<Vec<Arc<Allocation>>> {
        let stopping: BTreeSet<&str> = self
            .plan
            .node_update
            .get(&node.id)
            .into_iter()
            .flatten()
            .map(|s| s.alloc_id.as_str())
            .chain(
                self.plan
                    .node_preemptions
                    .get(&node.id)
                    .into_iter()
                    .flatten()
                    .map(|p| p.alloc_id.as_str()),
            )
            .collect();
        let mut already: HashMap<(String, String, String), u32> = HashMap::new();
        for p in self.plan.node_preemptions.values().flatten() {
            if let Some(a) = self.state.alloc(&p.alloc_id) {
                *already
                    .entry((a.namespace.clone(), a.job_id.clone(), a.task_group.clone()))
                    .or_default() += 1;
            }
        }
        let candidates: Vec<Candidate> = self
            .state
            .allocs_by_node(&node.id)
            .into_iter()
            .filter(|a| a.holds_resources() && !stopping.contains(a.id.as_str()))
            .filter(|a| !(a.job_id == ctx.job.id && a.namespace == ctx.job.namespace))
            .filter_map(|a| {
                let job = a.job.clone()?;
                let max_parallel = job
                    .group(&a.task_group)
                    .and_then(|g| g.migrate.as_ref())
                    .and_then(|m| m.max_parallel)
                    .unwrap_or(0);
                let preempted_so_far = already
                    .get(&(a.namespace.clone(), a.job_id.clone(), a.task_group.clone()))
                    .copied()
                    .unwrap_or(0);
                Some(Candidate {
                    priority: job.priority,
                    resources: a.allocated_resources.comparable(),
                    max_parallel: max_parallel.max(0) as u32,
                    preempted_so_far,
                    alloc: a,
                })
            })
            .collect();
        let mut ask = ctx.resources;
        ask.cpu_mhz += rank::mhz_per_core(node) * ctx.cores as i64;
        let mut remaining = node.allocatable();
        remaining.subtract(*self.node_usage(&node.id));
        let chosen = preempt::preempt_for_group(ctx.job.priority, ask, remaining, candidates)?;
        Some(chosen)
    }
}

/// The value a node counts under in a property set with `targets`.
fn targeted<'v>(targets: &BTreeSet<String>, value: &'v str) -> &'v str {
    if targets.is_empty() || targets.contains(value) {
        value
    } else {
        "*"
    }
}

/// Nomad's spread score of one node over every spread of the group.
fn spread_score(ctx: &GroupCtx<'_>, node: &Node, lowest: &mut f64) -> f64 {
    let mut total = 0.0;
    for s in &ctx.spreads {
        let Some(raw) = constraint::resolve_target(&s.attribute, node) else {
            total -= 1.0;
            continue;
        };
        let value = targeted(&s.targets, raw);
        let used = s.used.get(value).copied().unwrap_or(0) + 1;
        if s.desired.is_empty() {
            total += rank::even_spread_boost(&s.used, raw);
            continue;
        }
        let Some(desired) = s.desired.get(value).or_else(|| s.desired.get("*")).copied() else {
            total -= 1.0;
            continue;
        };
        if desired == 0.0 {
            total += *lowest;
            continue;
        }
        let weight = if ctx.spread_weight_sum > 0.0 {
            s.weight / ctx.spread_weight_sum
        } else {
            0.0
        };
        let boost = (desired - used as f64) / desired * weight;
        total += boost;
        if boost < *lowest {
            *lowest = boost;
        }
    }
    total
}

/// Keeps the best [`MAX_RETAINED_NODE_SCORES`] nodes, best first (ties: first seen first).
/// Nomad's score metadata is built only for a node that makes it in: most nodes a selection
/// visits do not, and building it (strings and a map) for each was most of a visit's cost.
fn retain_top(top: &mut Vec<NodeScoreMeta>, r: &Ranked) {
    let at = top
        .iter()
        .position(|t| r.final_score > t.norm_score)
        .unwrap_or(top.len());
    if at < MAX_RETAINED_NODE_SCORES {
        top.insert(at, r.scores.meta(&r.node.id, r.final_score));
        top.truncate(MAX_RETAINED_NODE_SCORES);
    }
}

/// One node's part of each scorer, as [`Run::rank`] computed them.
#[derive(Debug, Clone, Copy, Default)]
struct Scores {
    binpack: f64,
    job_anti_affinity: f64,
    node_reschedule_penalty: f64,
    node_affinity: f64,
    /// Only when the group spreads and the boost is not zero (Nomad leaves it out then).
    allocation_spread: Option<f64>,
    /// Only when the node's placement preempts.
    preemption: Option<f64>,
}

impl Scores {
    /// Nomad's `NodeScoreMeta` for these scores.
    fn meta(&self, node_id: &str, norm_score: f64) -> NodeScoreMeta {
        let mut scores = BTreeMap::from([
            ("binpack".to_string(), self.binpack),
            ("job-anti-affinity".to_string(), self.job_anti_affinity),
            (
                "node-reschedule-penalty".to_string(),
                self.node_reschedule_penalty,
            ),
            ("node-affinity".to_string(), self.node_affinity),
        ]);
        if let Some(s) = self.allocation_spread {
            scores.insert("allocation-spread".to_string(), s);
        }
        if let Some(s) = self.preemption {
            scores.insert("preemption".to_string(), s);
        }
        NodeScoreMeta {
            node_id: node_id.to_string(),
            scores,
            norm_score,
        }
    }
}
