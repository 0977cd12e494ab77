//! Preemption: which lower-priority allocations on a node to evict so that a higher-priority
//! group fits (Nomad's `Preemptor.PreemptForTaskGroup`). Only allocations of jobs at least
//! [`PRIORITY_GAP`] below the placing job's priority are candidates; the lowest priorities go
//! first, within one priority the allocation closest in size to what is still missing (with a
//! penalty for evicting more of a group than its `migrate.max_parallel`), and the chosen set
//! is then trimmed to the fewest, largest first, that free enough.

use std::sync::Arc;

use crate::model::{Allocation, ComparableResources};

/// How far below the placing job's priority a job must be for its allocations to be
/// preempted (Nomad's rule).
pub const PRIORITY_GAP: i32 = 10;

/// Nomad's `maxParallelPenalty`.
const MAX_PARALLEL_PENALTY: f64 = 50.0;

/// An allocation that could be evicted.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub alloc: Arc<Allocation>,
    pub priority: i32,
    pub resources: ComparableResources,
    /// Its group's `migrate { max_parallel }` (0: none).
    pub max_parallel: u32,
    /// How many of its group this plan already preempts.
    pub preempted_so_far: u32,
}

/// Chooses what to evict so that `ask` fits in `remaining` (what the node has left, every
/// allocation counted); `None` if evicting every candidate would not be enough.
pub fn preempt_for_group(
    priority: i32,
    ask: ComparableResources,
    remaining: ComparableResources,
    candidates: Vec<Candidate>,
) -> Option<Vec<Arc<Allocation>>> {
    let mut groups: Vec<(i32, Vec<Candidate>)> = Vec::new();
    for c in candidates {
        if priority - c.priority < PRIORITY_GAP {
            continue;
        }
        match groups.iter_mut().find(|(p, _)| *p == c.priority) {
            Some((_, v)) => v.push(c),
            None => groups.push((c.priority, vec![c])),
        }
    }
    groups.sort_by_key(|(p, _)| *p);
    let mut available = remaining;
    let mut needed = ask;
    let mut best: Vec<Candidate> = Vec::new();
    let mut met = false;
    'groups: for (_, mut group) in groups {
        while !group.is_empty() {
            let mut closest = 0;
            let mut best_distance = f64::MAX;
            for (i, c) in group.iter().enumerate() {
                let d = score_for_group(needed, c.resources, c.max_parallel, c.preempted_so_far);
                if d < best_distance {
                    best_distance = d;
                    closest = i;
                }
            }
            let c = group.swap_remove(closest);
            available.add(c.resources);
            needed.subtract(c.resources);
            best.push(c);
            if superset(available, ask) {
                met = true;
                break 'groups;
            }
        }
    }
    if !met {
        return None;
    }
    // Largest first, as few as free enough (Nomad's `filterSuperset`).
    best.sort_by(|a, b| {
        distance(ask, b.resources)
            .partial_cmp(&distance(ask, a.resources))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut available = remaining;
    let mut chosen = Vec::new();
    for c in best {
        available.add(c.resources);
        chosen.push(c.alloc);
        if superset(available, ask) {
            break;
        }
    }
    Some(chosen)
}

fn superset(have: ComparableResources, want: ComparableResources) -> bool {
    have.cpu_mhz >= want.cpu_mhz && have.memory_mb >= want.memory_mb && have.disk_mb >= want.disk_mb
}

/// Nomad's `basicResourceDistance`: how far `used` is from `ask`, per dimension relative to
/// the ask.
fn distance(ask: ComparableResources, used: ComparableResources) -> f64 {
    let coord = |a: i64, u: i64| {
        if a > 0 {
            (a as f64 - u as f64) / a as f64
        } else {
            0.0
        }
    };
    let (m, c, d) = (
        coord(ask.memory_mb, used.memory_mb),
        coord(ask.cpu_mhz, used.cpu_mhz),
        coord(ask.disk_mb, used.disk_mb),
    );
    (m * m + c * c + d * d).sqrt()
}

fn score_for_group(
    ask: ComparableResources,
    used: ComparableResources,
    max_parallel: u32,
    preempted: u32,
) -> f64 {
    let penalty = if max_parallel > 0 && preempted >= max_parallel {
        f64::from(preempted + 1 - max_parallel) * MAX_PARALLEL_PENALTY
    } else {
        0.0
    };
    distance(ask, used) + penalty
}

/// Nomad's preemption score in (0, 1): lower for evicting higher and more priorities.
pub fn score(preempted: &[Arc<Allocation>]) -> f64 {
    let priorities: Vec<f64> = preempted
        .iter()
        .map(|a| a.job.as_ref().map_or(0.0, |j| f64::from(j.priority)))
        .collect();
    let max = priorities.iter().copied().fold(0.0, f64::max);
    let net = if max > 0.0 {
        max + priorities.iter().sum::<f64>() / max
    } else {
        0.0
    };
    1.0 / (1.0 + (0.0048 * (net - 2048.0)).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: &str, priority: i32, cpu: i64, mem: i64) -> Candidate {
        Candidate {
            alloc: Arc::new(Allocation {
                id: id.into(),
                ..Default::default()
            }),
            priority,
            resources: ComparableResources {
                cpu_mhz: cpu,
                memory_mb: mem,
                disk_mb: 0,
            },
            max_parallel: 0,
            preempted_so_far: 0,
        }
    }

    fn res(cpu: i64, mem: i64) -> ComparableResources {
        ComparableResources {
            cpu_mhz: cpu,
            memory_mb: mem,
            disk_mb: 0,
        }
    }

    fn ids(v: Option<Vec<Arc<Allocation>>>) -> Option<Vec<String>> {
        v.map(|v| v.iter().map(|a| a.id.clone()).collect())
    }

    #[test]
    fn lowest_priority_first_and_only_below_the_gap() {
        let got = preempt_for_group(
            70,
            res(1000, 100),
            res(0, 1000),
            vec![
                cand("p50", 50, 1000, 100),
                cand("p20", 20, 1000, 100),
                cand("p65", 65, 4000, 100),
            ],
        );
        assert_eq!(ids(got), Some(vec!["p20".to_string()]));
        // Only a job within the gap could free enough: nothing.
        let got = preempt_for_group(
            70,
            res(3000, 100),
            res(0, 1000),
            vec![cand("p65", 65, 4000, 100)],
        );
        assert_eq!(ids(got), None);
    }

    #[test]
    fn fewest_allocations_that_free_enough() {
        let got = preempt_for_group(
            100,
            res(2000, 100),
            res(0, 1000),
            vec![
                cand("small1", 10, 500, 10),
                cand("small2", 10, 500, 10),
                cand("big", 10, 2000, 10),
            ],
        );
        assert_eq!(ids(got), Some(vec!["big".to_string()]));
    }

    #[test]
    fn preemption_score_falls_with_priority() {
        let a = |p: i32| {
            Arc::new(Allocation {
                job: Some(Arc::new(crate::model::Job {
                    priority: p,
                    ..Default::default()
                })),
                ..Default::default()
            })
        };
        assert!(score(&[a(10)]) > score(&[a(90)]));
        assert!(score(&[a(50)]) > score(&[a(50), a(50)]));
    }
}
