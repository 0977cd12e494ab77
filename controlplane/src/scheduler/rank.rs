//! Ranking: the scores a feasible node gets, as Nomad computes them. Bin-packing (the
//! default) prefers the node the allocation packs best onto, so that whole nodes stay free for
//! large work; the `spread` algorithm prefers the emptiest. Job anti-affinity, affinities and
//! spreads add their own scores; `select.rs` averages them.

use std::collections::HashMap;

use crate::model::ComparableResources;

/// The highest fit score (Nomad's `binPackingMaxFitScore`): fit scores are divided by it.
pub const MAX_FIT_SCORE: f64 = 18.0;

/// Free fractions of cpu and memory after placement.
fn free_fractions(capacity: ComparableResources, used_after: ComparableResources) -> (f64, f64) {
    let free = |used: i64, cap: i64| -> f64 {
        if cap <= 0 {
            return 0.0;
        }
        1.0 - used as f64 / cap as f64
    };
    (
        free(used_after.cpu_mhz, capacity.cpu_mhz),
        free(used_after.memory_mb, capacity.memory_mb),
    )
}

/// Nomad's `ScoreFitSpread` in [0, 18]: higher means the node stays emptier.
pub fn spread_fit_score(capacity: ComparableResources, used_after: ComparableResources) -> f64 {
    let (cpu, mem) = free_fractions(capacity, used_after);
    (10f64.powf(cpu) + 10f64.powf(mem) - 2.0).clamp(0.0, 18.0)
}

/// Nomad's job anti-affinity: `-(collisions + 1) / count` when the node already runs
/// `collisions` allocations of the group, none otherwise.
pub fn job_anti_affinity(collisions: u32, count: i64) -> Option<f64> {
    (collisions > 0 && count > 0).then(|| -f64::from(collisions + 1) / count as f64)
}

/// Nomad's `evenSpreadScoreBoost`: without targets, favour the values used least.
pub fn even_spread_boost(used: &HashMap<String, u64>, value: &str) -> f64 {
    if used.is_empty() {
        return 0.0;
    }
    let current = used.get(value).copied().unwrap_or(0) as i64;
    let min = used.values().copied().min().unwrap_or(0) as i64;
    let max = used.values().copied().max().unwrap_or(0) as i64;
    let delta_boost = if min == 0 {
        -1.0
    } else {
        (min - current) as f64 / min as f64
    };
    if current != min {
        delta_boost
    } else if min == max {
        -1.0
    } else if min == 0 {
        1.0
    } else {
        (max - min) as f64 / min as f64
    }
}

/// Nomad's bin-pack score in [0, 18]: higher means the node would be fuller after placement.
/// Based on the free fraction of CPU and memory left: `20 - (10^freeCpu + 10^freeMem)`.
pub fn binpack_score(capacity: ComparableResources, used_after: ComparableResources) -> f64 {
    let (free_cpu, free_mem) = free_fractions(capacity, used_after);
    let total = 10f64.powf(free_cpu) + 10f64.powf(free_mem);
    (20.0 - total).clamp(0.0, 18.0)
}

/// MHz of one core of `node` (its total compute over its cores).
pub(super) fn mhz_per_core(node: &crate::model::Node) -> i64 {
    let cores = i64::from(node.node_resources.cpu.total_cpu_cores.max(1));
    node.node_resources.cpu.cpu_shares / cores
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuller_nodes_score_higher() {
        let cap = ComparableResources {
            disk_mb: 0,
            cpu_mhz: 4000,
            memory_mb: 8192,
        };
        let empty = binpack_score(
            cap,
            ComparableResources {
                disk_mb: 0,
                cpu_mhz: 100,
                memory_mb: 256,
            },
        );
        let half = binpack_score(
            cap,
            ComparableResources {
                disk_mb: 0,
                cpu_mhz: 2000,
                memory_mb: 4096,
            },
        );
        let full = binpack_score(cap, cap);
        assert!(empty < half && half < full, "{empty} {half} {full}");
        assert_eq!(full, 18.0);
        assert!(spread_fit_score(cap, cap) < spread_fit_score(cap, ComparableResources::default()));
    }

    #[test]
    fn anti_affinity_and_even_spread_follow_nomad() {
        assert_eq!(job_anti_affinity(0, 4), None);
        assert_eq!(job_anti_affinity(1, 4), Some(-0.5));
        let used: HashMap<String, u64> = [("a".to_string(), 2), ("b".to_string(), 1)].into();
        assert_eq!(
            even_spread_boost(&used, "b"),
            1.0,
            "the least used value gains"
        );
        assert_eq!(even_spread_boost(&used, "a"), -1.0);
        assert_eq!(
            even_spread_boost(&used, "c"),
            1.0,
            "an unused value gains too"
        );
        assert_eq!(even_spread_boost(&HashMap::new(), "a"), 0.0);
    }
}
