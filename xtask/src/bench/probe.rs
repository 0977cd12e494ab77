//! A probe of the kernel's v1 cgroup attach cost, the way a freshly cloned task joins: one
//! single-threaded process writes `0` into the memory, cpu and pids cgroups of a task cgroup,
//! either through `cgroup.procs` or through `tasks`. noded joins through `tasks`
//! (`isolation::cgroup::V1_JOIN_FILE`).
//!
//! Why the two differ (kernel/cgroup/cgroup.c, `cgroup_procs_write_start`):
//! - A `cgroup.procs` write (or any write naming a pid) takes `cgroup_threadgroup_rwsem` for
//!   writing. It is a percpu rwsem: readers (every fork, exit, exec) stay on a per-cpu fast
//!   path until a writer arrives, and the writer switches them over through `rcu_sync`, which
//!   waits a full RCU grace period (`synchronize_rcu`) when the rwsem had gone back to the
//!   fast path — about one grace period after the previous writer. Back to back the next
//!   writer finds it still switched and waits nothing; after ~300 ms of idle it waits the
//!   whole grace period: measured 15.5 ms p50 / 21.7 ms p90 for the three writes here
//!   (0.02 ms back to back; the platform notes: 4–23 ms, median 8.5 ms per write).
//! - Writing `0` to `tasks` moves only the calling thread, and the kernel skips the global
//!   lock for that case ("if the thread is `current`, it won't exit(2) under our hands or
//!   change PID through exec(2) … we can skip the global lock"): measured 0.06 ms p50 after
//!   the same idle gaps. A freshly cloned child is single-threaded, so moving its thread moves
//!   the process; no host setting changes.
//! - The alternative, the `favordynmods` cgroup mount option, keeps the rwsem on its slow
//!   path for good (readers pay a little on every fork and exit, writers never wait): 0.05 ms
//!   p50 too, but it is a system-wide switch, and on Linux 6.18 enabling it once (on any
//!   hierarchy, even a private named one) also turns on the per-threadgroup rwsem for
//!   `cgroup.procs` writes until the next reboot ("cgroup favordynmods: per threadgroup rwsem
//!   mechanism can't be disabled"). So it is left to operators; after it has been enabled
//!   both columns of this probe read alike.
//!
//! The writer is `bash`, timing its own three builtin `echo 0 >` writes with
//! `$EPOCHREALTIME`, so the figure holds only the writes (no fork or exec).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use isolation::cgroup::{CgroupLayout, CgroupLimits, CgroupManager, TaskCgroup};

/// Which file the probe writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinFile {
    Procs,
    Tasks,
}

impl JoinFile {
    fn name(self) -> &'static str {
        match self {
            JoinFile::Procs => "cgroup.procs",
            JoinFile::Tasks => "tasks",
        }
    }
}

/// The probe's own task cgroup (v1 part only), removed on drop.
#[derive(Debug)]
pub struct AttachProbe {
    manager: CgroupManager,
    cgroup: TaskCgroup,
    v1_dirs: Vec<PathBuf>,
}

impl AttachProbe {
    /// `None` on hosts without v1 hierarchies (pure v2 has no attach write at all: the child
    /// is cloned straight into its cgroup).
    pub fn create(parent: &str) -> anyhow::Result<Option<AttachProbe>> {
        let layout = CgroupLayout::detect()?;
        if layout.is_v2() {
            return Ok(None);
        }
        let manager = CgroupManager::new(layout.clone(), parent)?;
        let limits = CgroupLimits {
            memory_limit_bytes: 300 << 20,
            memory_reservation_bytes: None,
            cpu_shares_mhz: 100,
            cpu_hard_limit: None,
            cpuset_cpus: None,
            pids_max: Some(4096),
        };
        let cgroup = manager.create("probe", &limits)?;
        let unified = match &layout {
            CgroupLayout::V1 {
                unified: Some(u), ..
            } => Some(u.clone()),
            _ => None,
        };
        let v1_dirs: Vec<PathBuf> = cgroup
            .paths()
            .into_iter()
            .filter(|p| unified.as_ref().is_none_or(|u| !p.starts_with(u)))
            .collect();
        Ok(Some(AttachProbe {
            manager,
            cgroup,
            v1_dirs,
        }))
    }

    /// One attach of a fresh single-threaded process into every v1 directory.
    pub fn measure(&self, file: JoinFile) -> anyhow::Result<Duration> {
        let mut script = String::from("t0=$EPOCHREALTIME");
        for i in 1..=self.v1_dirs.len() {
            script.push_str(&format!("; echo 0 > \"${i}\""));
        }
        script.push_str("; t1=$EPOCHREALTIME; echo \"$t0 $t1\"");
        let output = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .arg("attach-probe")
            .args(self.v1_dirs.iter().map(|d| d.join(file.name())))
            .env_clear()
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .context("running the attach probe (bash)")?;
        if !output.status.success() {
            bail!(
                "attach probe through {} failed ({}): {}",
                file.name(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let times: Vec<f64> = text
            .split_whitespace()
            .filter_map(|t| t.parse::<f64>().ok())
            .collect();
        match times.as_slice() {
            [t0, t1] if t1 >= t0 => Ok(Duration::from_secs_f64(t1 - t0)),
            _ => bail!(
                "attach probe printed {text:?}; expected two $EPOCHREALTIME values (bash ≥ 5)"
            ),
        }
    }
}

impl Drop for AttachProbe {
    fn drop(&mut self) {
        if let Err(e) = self.cgroup.destroy() {
            eprintln!("warning: removing the probe cgroup: {e}");
        }
        if let Err(e) = self.manager.remove_parent() {
            eprintln!("warning: removing the probe cgroup parent: {e}");
        }
    }
}
