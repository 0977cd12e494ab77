//! cgroup v1 control files: limits written at creation, statistics read back.
//!
//! Only files of the kernel's cgroup-v1 documentation; `memory.kmem.*` is never written (it is
//! deprecated and fails or misbehaves on recent kernels).

use std::path::Path;

use super::{
    keyed, read, read_u64, write, CgroupDir, CgroupError, CgroupFs, CgroupLimits, CgroupStats,
};

/// USER_HZ: the unit of `cpuacct.stat` (fixed at 100 in the kernel ABI).
const NS_PER_USER_HZ_TICK: u64 = 10_000_000;

/// Gives `parent` the cpus and mems of `root` when it has none yet: a v1 cpuset cgroup with an
/// empty `cpuset.cpus`/`cpuset.mems` refuses tasks (ENOSPC).
pub(super) fn inherit_cpuset(
    fs: &dyn CgroupFs,
    root: &Path,
    parent: &Path,
) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = parent.join(file);
        if read(fs, &own)?.trim().is_empty() {
            let value = read(fs, &root.join(file))?;
            write(fs, &own, value.trim())?;
        }
    }
    Ok(())
}

/// Writes `limits` into one v1 task directory, according to its controllers. Every value it
/// manages is written, "unlimited" included: the directory may be a spare made with another
/// task's limits, not a new one.
pub(super) fn apply_limits(
    fs: &dyn CgroupFs,
    dir: &CgroupDir,
    limits: &CgroupLimits,
) -> Result<(), CgroupError> {
    if dir.has("memory") {
        // Swap off: memory+swap = memory. The memsw file exists only with swap accounting
        // enabled, and the kernel refuses (EINVAL) any write that would leave it below the
        // memory limit: lowering writes limit_in_bytes first (a new directory is unlimited),
        // raising above a spare's memsw writes memsw first.
        let bytes = limits.memory_limit_bytes.to_string();
        let limit = dir.file("memory.limit_in_bytes");
        let memsw = dir.file("memory.memsw.limit_in_bytes");
        let has_memsw = fs.exists(&memsw);
        match write(fs, &limit, &bytes) {
            Err(CgroupError::Write { source, .. })
                if has_memsw && source.raw_os_error() == Some(libc::EINVAL) =>
            {
                write(fs, &memsw, &bytes)?;
                write(fs, &limit, &bytes)?;
            }
            written => {
                written?;
                if has_memsw {
                    write(fs, &memsw, &bytes)?;
                }
            }
        }
        let soft = match limits.memory_reservation_bytes {
            Some(soft) => soft.to_string(),
            None => "-1".to_string(),
        };
        write(fs, &dir.file("memory.soft_limit_in_bytes"), &soft)?;
        let swappiness = dir.file("memory.swappiness");
        if fs.exists(&swappiness) {
            write(fs, &swappiness, "0")?;
        }
    }
    if dir.has("cpu") {
        write(
            fs,
            &dir.file("cpu.shares"),
            &limits.v1_cpu_shares().to_string(),
        )?;
        match limits.cpu_hard_limit {
            Some(q) => {
                write(fs, &dir.file("cpu.cfs_period_us"), &q.period_us.to_string())?;
                write(fs, &dir.file("cpu.cfs_quota_us"), &q.quota_us.to_string())?;
            }
            None => write(fs, &dir.file("cpu.cfs_quota_us"), "-1")?,
        }
    }
    if dir.has("cpuset") {
        let parent = dir.path.parent().unwrap_or(&dir.path);
        let mems = read(fs, &parent.join("cpuset.mems"))?;
        write(fs, &dir.file("cpuset.mems"), mems.trim())?;
        let cpus = match &limits.cpuset_cpus {
            Some(cpus) => cpus.trim().to_string(),
            None => read(fs, &parent.join("cpuset.cpus"))?.trim().to_string(),
        };
        write(fs, &dir.file("cpuset.cpus"), &cpus)?;
    }
    if dir.has("pids") {
        let value = match limits.pids_max {
            Some(n) => n.to_string(),
            None => "max".to_string(),
        };
        write(fs, &dir.file("pids.max"), &value)?;
    }
    Ok(())
}

/// Changes the cpus of a running task's v1 cpuset directory. `cpuset.mems` is filled from the
/// parent first should it be empty: the kernel refuses cpus for a cpuset without mems.
pub(super) fn set_cpuset(
    fs: &dyn CgroupFs,
    dir: &CgroupDir,
    cpus: &str,
) -> Result<(), CgroupError> {
    let mems = dir.file("cpuset.mems");
    if read(fs, &mems)?.trim().is_empty() {
        let parent = dir.path.parent().unwrap_or(&dir.path);
        let inherited = read(fs, &parent.join("cpuset.mems"))?;
        write(fs, &mems, inherited.trim())?;
    }
    write(fs, &dir.file("cpuset.cpus"), cpus)
}

/// Statistics gathered from the v1 directories of one task.
pub(super) fn stats(fs: &dyn CgroupFs, dirs: &[CgroupDir]) -> Result<CgroupStats, CgroupError> {
    let mut stats = CgroupStats::default();
    if let Some(dir) = dirs.iter().find(|d| d.has("cpuacct")) {
        stats.cpu_usage_ns = read_u64(fs, &dir.file("cpuacct.usage"))?;
        let user = dir.file("cpuacct.usage_user");
        let sys = dir.file("cpuacct.usage_sys");
        if fs.exists(&user) && fs.exists(&sys) {
            stats.cpu_user_ns = read_u64(fs, &user)?;
            stats.cpu_system_ns = read_u64(fs, &sys)?;
        } else {
            let path = dir.file("cpuacct.stat");
            let text = read(fs, &path)?;
            stats.cpu_user_ns = keyed(&path, &text, "user")?
                .unwrap_or(0)
                .saturating_mul(NS_PER_USER_HZ_TICK);
            stats.cpu_system_ns = keyed(&path, &text, "system")?
                .unwrap_or(0)
                .saturating_mul(NS_PER_USER_HZ_TICK);
        }
    }
    if let Some(dir) = dirs.iter().find(|d| d.has("cpu")) {
        let path = dir.file("cpu.stat");
        let text = read(fs, &path)?;
        stats.cpu_periods = keyed(&path, &text, "nr_periods")?.unwrap_or(0);
        stats.cpu_throttled_periods = keyed(&path, &text, "nr_throttled")?.unwrap_or(0);
        stats.cpu_throttled_time_ns = keyed(&path, &text, "throttled_time")?.unwrap_or(0);
    }
    if let Some(dir) = dirs.iter().find(|d| d.has("memory")) {
        stats.memory_usage_bytes = read_u64(fs, &dir.file("memory.usage_in_bytes"))?;
        stats.memory_max_usage_bytes = Some(read_u64(fs, &dir.file("memory.max_usage_in_bytes"))?);
        stats.memory_failcnt = Some(read_u64(fs, &dir.file("memory.failcnt"))?);
        let path = dir.file("memory.stat");
        let text = read(fs, &path)?;
        // total_* include descendants; a task cgroup has none, but prefer them when present.
        stats.memory_rss_bytes = match keyed(&path, &text, "total_rss")? {
            Some(v) => v,
            None => keyed(&path, &text, "rss")?.unwrap_or(0),
        };
        stats.memory_cache_bytes = match keyed(&path, &text, "total_cache")? {
            Some(v) => v,
            None => keyed(&path, &text, "cache")?.unwrap_or(0),
        };
    }
    if let Some(dir) = dirs.iter().find(|d| d.has("pids")) {
        stats.pids_current = read_u64(fs, &dir.file("pids.current"))?;
    }
    Ok(stats)
}
