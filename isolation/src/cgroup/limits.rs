//! What a task cgroup's limits are, and their checks before anything is written. The files
//! they go into are the backends' (`v1::apply_limits`, `v2::apply_limits`).
//!
//! # CPU mapping
//! `cpu_shares_mhz` is used as the v1 `cpu.shares` value directly (MHz as shares, minimum 2,
//! maximum 262144), as Nomad does. On v2 the same number is mapped onto `cpu.weight`
//! (1..=10000) with the formula runc and crun use:
//! `weight = 1 + (shares - 2) * 9999 / 262142`, so relative weights between tasks are kept.

use super::CgroupError;

/// Largest v1 `cpu.shares` value the kernel accepts.
pub const MAX_CPU_SHARES: u64 = 262_144;

/// CFS bandwidth limit: at most `quota_us` of CPU time per `period_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CpuQuota {
    pub quota_us: u64,
    pub period_us: u64,
}

/// Resource limits of a task cgroup. Swap is always off.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CgroupLimits {
    /// Hard memory limit (v1 `memory.limit_in_bytes`, v2 `memory.max`); > 0.
    pub memory_limit_bytes: u64,
    /// Soft limit / reservation when the hard limit is oversubscribed (`memory_max`): v1
    /// `memory.soft_limit_in_bytes`, v2 `memory.low`. Must not exceed the hard limit.
    pub memory_reservation_bytes: Option<u64>,
    /// CPU share in MHz: v1 `cpu.shares` (min 2), v2 `cpu.weight` (see the module docs).
    pub cpu_shares_mhz: u64,
    /// Optional hard CPU cap (v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`, v2 `cpu.max`).
    pub cpu_hard_limit: Option<CpuQuota>,
    /// CPUs the task may run on (`cpuset.cpus` syntax, e.g. `"0-1,3"`); default: the parent's.
    pub cpuset_cpus: Option<String>,
    /// Maximum number of processes and threads (`pids.max`); default: unlimited.
    pub pids_max: Option<u64>,
}

impl CgroupLimits {
    /// Checks the values before anything is written.
    pub fn validate(&self) -> Result<(), CgroupError> {
        let invalid = |field, reason: String| Err(CgroupError::InvalidLimits { field, reason });
        if self.memory_limit_bytes == 0 {
            return invalid("memory_limit_bytes", "must be greater than 0".to_string());
        }
        if self.memory_limit_bytes > i64::MAX as u64 {
            return invalid(
                "memory_limit_bytes",
                format!("{} is too large", self.memory_limit_bytes),
            );
        }
        if let Some(soft) = self.memory_reservation_bytes {
            if soft > self.memory_limit_bytes {
                return invalid(
                    "memory_reservation_bytes",
                    format!("{soft} exceeds the hard limit {}", self.memory_limit_bytes),
                );
            }
        }
        if self.cpu_shares_mhz > MAX_CPU_SHARES {
            return invalid(
                "cpu_shares_mhz",
                format!(
                    "{} exceeds the kernel maximum {MAX_CPU_SHARES}",
                    self.cpu_shares_mhz
                ),
            );
        }
        if let Some(q) = self.cpu_hard_limit {
            if !(1_000..=1_000_000).contains(&q.period_us) {
                return invalid(
                    "cpu_hard_limit.period_us",
                    format!("{} is outside 1000..=1000000", q.period_us),
                );
            }
            if q.quota_us < 1_000 {
                return invalid(
                    "cpu_hard_limit.quota_us",
                    format!("{} is below the kernel minimum 1000", q.quota_us),
                );
            }
        }
        if let Some(cpus) = &self.cpuset_cpus {
            validate_cpu_list(cpus)?;
        }
        if self.pids_max == Some(0) {
            return invalid("pids_max", "must be at least 1".to_string());
        }
        Ok(())
    }

    /// `cpu.shares` for v1: the MHz value clamped to 2..=262144.
    pub fn v1_cpu_shares(&self) -> u64 {
        self.cpu_shares_mhz.clamp(2, MAX_CPU_SHARES)
    }

    /// `cpu.weight` for v2 (1..=10000), mapped from [`Self::v1_cpu_shares`].
    pub fn v2_cpu_weight(&self) -> u64 {
        1 + (self.v1_cpu_shares() - 2) * 9_999 / (MAX_CPU_SHARES - 2)
    }
}

/// Checks a `cpuset.cpus` value (`"0-3,5"`) before it is written: digits, commas and dashes
/// only, and not empty (an empty v1 cpuset refuses tasks; an empty v2 one means "the
/// parent's", which would silently undo a confinement).
pub fn validate_cpu_list(cpus: &str) -> Result<(), CgroupError> {
    let trimmed = cpus.trim();
    let ok = !trimmed.is_empty()
        && trimmed
            .chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(CgroupError::InvalidLimits {
            field: "cpuset_cpus",
            reason: format!("{cpus:?} is not a cpu list such as \"0-3,5\""),
        })
    }
}
