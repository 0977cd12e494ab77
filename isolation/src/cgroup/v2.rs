//! cgroup v2 control files: enabling controllers, limits written at creation, statistics.

use std::path::Path;

use super::{
    keyed, read, read_u64, write, CgroupDir, CgroupError, CgroupFs, CgroupLimits, CgroupStats,
    MANAGED_V2_CONTROLLERS,
};

const NS_PER_US: u64 = 1_000;

fn controllers(fs: &dyn CgroupFs, dir: &Path) -> Result<Vec<String>, CgroupError> {
    Ok(read(fs, &dir.join("cgroup.controllers"))?
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

/// Enables the managed controllers the host offers for the children of `root` and `parent`
/// (`cgroup.subtree_control`), so that task cgroups under `parent` get their control files.
pub(super) fn enable_controllers(
    fs: &dyn CgroupFs,
    root: &Path,
    parent: &Path,
) -> Result<(), CgroupError> {
    let available = controllers(fs, root)?;
    let wanted: Vec<&str> = MANAGED_V2_CONTROLLERS
        .iter()
        .copied()
        .filter(|c| available.iter().any(|a| a == c))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    for dir in [root, parent] {
        let path = dir.join("cgroup.subtree_control");
        let enabled = read(fs, &path)?;
        let missing: Vec<String> = wanted
            .iter()
            .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
            .map(|c| format!("+{c}"))
            .collect();
        if !missing.is_empty() {
            write(fs, &path, &missing.join(" "))?;
        }
    }
    Ok(())
}

fn require(
    available: &[String],
    controller: &'static str,
    dir: &CgroupDir,
) -> Result<(), CgroupError> {
    if available.iter().any(|a| a == controller) {
        Ok(())
    } else {
        Err(CgroupError::MissingController {
            controller,
            path: dir.path.clone(),
        })
    }
}

/// Writes `limits` into a v2 task directory.
pub(super) fn apply_limits(
    fs: &dyn CgroupFs,
    dir: &CgroupDir,
    limits: &CgroupLimits,
) -> Result<(), CgroupError> {
    let available = controllers(fs, &dir.path)?;
    require(&available, "memory", dir)?;
    write(
        fs,
        &dir.file("memory.max"),
        &limits.memory_limit_bytes.to_string(),
    )?;
    if let Some(soft) = limits.memory_reservation_bytes {
        write(fs, &dir.file("memory.low"), &soft.to_string())?;
    }
    // Swap off. The file is missing when the kernel has no swap accounting.
    let swap = dir.file("memory.swap.max");
    if fs.exists(&swap) {
        write(fs, &swap, "0")?;
    }
    require(&available, "cpu", dir)?;
    write(
        fs,
        &dir.file("cpu.weight"),
        &limits.v2_cpu_weight().to_string(),
    )?;
    if let Some(q) = limits.cpu_hard_limit {
        write(
            fs,
            &dir.file("cpu.max"),
            &format!("{} {}", q.quota_us, q.period_us),
        )?;
    }
    if let Some(cpus) = &limits.cpuset_cpus {
        require(&available, "cpuset", dir)?;
        write(fs, &dir.file("cpuset.cpus"), cpus.trim())?;
    }
    if available.iter().any(|a| a == "pids") {
        let value = match limits.pids_max {
            Some(n) => n.to_string(),
            None => "max".to_string(),
        };
        write(fs, &dir.file("pids.max"), &value)?;
    } else if limits.pids_max.is_some() {
        require(&available, "pids", dir)?;
    }
    Ok(())
}

/// Changes the cpus of a running v2 task cgroup (`cpuset.cpus`; the kernel intersects it with
/// the parent's for `cpuset.cpus.effective`).
pub(super) fn set_cpuset(
    fs: &dyn CgroupFs,
    dir: &CgroupDir,
    cpus: &str,
) -> Result<(), CgroupError> {
    let available = controllers(fs, &dir.path)?;
    require(&available, "cpuset", dir)?;
    write(fs, &dir.file("cpuset.cpus"), cpus)
}

/// CPU time from `cpu.stat`, which every cgroup2 directory has (also the controller-less tree
/// of a hybrid host).
pub(super) fn cpu_usage(
    fs: &dyn CgroupFs,
    dir: &CgroupDir,
    stats: &mut CgroupStats,
) -> Result<(), CgroupError> {
    let path = dir.file("cpu.stat");
    let text = read(fs, &path)?;
    let us = |key| -> Result<u64, CgroupError> {
        Ok(keyed(&path, &text, key)?
            .unwrap_or(0)
            .saturating_mul(NS_PER_US))
    };
    stats.cpu_usage_ns = us("usage_usec")?;
    stats.cpu_user_ns = us("user_usec")?;
    stats.cpu_system_ns = us("system_usec")?;
    Ok(())
}

/// Statistics of a v2 task directory.
pub(super) fn stats(fs: &dyn CgroupFs, dir: &CgroupDir) -> Result<CgroupStats, CgroupError> {
    let mut stats = CgroupStats::default();
    cpu_usage(fs, dir, &mut stats)?;
    let path = dir.file("cpu.stat");
    let text = read(fs, &path)?;
    stats.cpu_throttled_time_ns = keyed(&path, &text, "throttled_usec")?
        .unwrap_or(0)
        .saturating_mul(NS_PER_US);
    stats.cpu_periods = keyed(&path, &text, "nr_periods")?.unwrap_or(0);
    stats.cpu_throttled_periods = keyed(&path, &text, "nr_throttled")?.unwrap_or(0);

    stats.memory_usage_bytes = read_u64(fs, &dir.file("memory.current"))?;
    let peak = dir.file("memory.peak");
    if fs.exists(&peak) {
        stats.memory_max_usage_bytes = Some(read_u64(fs, &peak)?);
    }
    let path = dir.file("memory.stat");
    let text = read(fs, &path)?;
    stats.memory_rss_bytes = keyed(&path, &text, "anon")?.unwrap_or(0);
    stats.memory_cache_bytes = keyed(&path, &text, "file")?.unwrap_or(0);

    let pids = dir.file("pids.current");
    if fs.exists(&pids) {
        stats.pids_current = read_u64(fs, &pids)?;
    }
    Ok(stats)
}
