//! Ranking: among feasible nodes, prefer the one the allocation packs best onto (Nomad's
//! default bin-packing), so that whole nodes stay free for large work.

use crate::model::ComparableResources;

/// Nomad's bin-pack score in [0, 18]: higher means the node would be fuller after placement.
/// Based on the free fraction of CPU and memory left: `20 - (10^freeCpu + 10^freeMem)`.
pub fn binpack_score(capacity: ComparableResources, used_after: ComparableResources) -> f64 {
    let free = |used: i64, cap: i64| -> f64 {
        if cap <= 0 {
            return 0.0;
        }
        (1.0 - used as f64 / cap as f64).clamp(0.0, 1.0)
    };
    let free_cpu = free(used_after.cpu_mhz, capacity.cpu_mhz);
    let free_mem = free(used_after.memory_mb, capacity.memory_mb);
    let total = 10f64.powf(free_cpu) + 10f64.powf(free_mem);
    (20.0 - total).clamp(0.0, 18.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuller_nodes_score_higher() {
        let cap = ComparableResources {
            cpu_mhz: 4000,
            memory_mb: 8192,
        };
        let empty = binpack_score(
            cap,
            ComparableResources {
                cpu_mhz: 100,
                memory_mb: 256,
            },
        );
        let half = binpack_score(
            cap,
            ComparableResources {
                cpu_mhz: 2000,
                memory_mb: 4096,
            },
        );
        let full = binpack_score(cap, cap);
        assert!(empty < half && half < full, "{empty} {half} {full}");
        assert_eq!(full, 18.0);
    }
}
