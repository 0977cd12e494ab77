//! The start bench's floor: the kernel steps of one task start alone, in this process, with
//! nothing of noded around them.
//!
//! Per run: the task cgroup (from a spare, as the supervisor makes them) → the same
//! `SandboxSpec` the supervisor builds for the same launch (`noded::supervisor::sandbox_spec`:
//! namespaces, the `pivot_root` jail, `/proc` with its masks, `/dev`, rlimits, capabilities,
//! `no_new_privs`, the default seccomp filter, `nobody`) → `isolation::sandbox::spawn` →
//! exec'd → wait on the pidfd → cgroup removed. The task's mount namespace is held past the
//! exit and let go after the clock, as the supervisor does.
//!
//! Left out, because they are noded's and not the kernel's: the supervisor's socket and its
//! two round trips, the log pipes and files, the allocation and task dirs (one set, made
//! once, serves every run) and the `secrets` tmpfs. Spare cgroups are refilled after the
//! clock; the supervisor refills them while the task runs. So the floor is what any
//! orchestrator doing the steps with this crate pays at least, and
//! `noded − floor` is what noded's own process boundary, logs and directories cost.
//!
//! With `--netns` each run also makes a network namespace (`netns::namespace::create`, `lo`
//! up) before the cgroup, the task joins it, and it is deleted after the cgroup: the same
//! calls noded's path makes, so the floor keeps meaning "the same steps, nothing of noded".

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use controlplane::model::Job;
use isolation::cgroup::{CgroupLayout, CgroupLimits, CgroupManager};
use isolation::sandbox::{self, ExitStatus, Stdio};
use noded::supervisor::protocol::TaskLaunch;

use super::noded_path::{task_network, AllocGuard, NetnsGuard, NodedPath};

/// The floor's launch, cgroup parent and staging dir; the cgroups are removed on drop.
pub struct Floor {
    manager: CgroupManager,
    staging_dir: PathBuf,
    launch: TaskLaunch,
    limits: CgroupLimits,
    next: u64,
    /// `--netns`: the prefix of the per-run namespaces.
    netns_prefix: Option<String>,
    // Dropped after the runs: the dirs every run binds.
    _dir: AllocGuard,
}

impl Floor {
    /// Prepares `job`'s first task as noded's client would (dirs, environment, driver), once;
    /// its cgroups go under `<prefix>-floor`, its jail root is staged in `staging_dir`.
    pub fn new(
        noded: &NodedPath,
        job: &Arc<Job>,
        staging_dir: PathBuf,
        prefix: &str,
    ) -> anyhow::Result<Floor> {
        let alloc = noded.allocation(job);
        let (dir, launch, _) = noded.prepare_task(&alloc, Instant::now(), task_network(None))?;
        let manager = CgroupManager::new(CgroupLayout::detect()?, &format!("{prefix}-floor"))
            .context("making the floor's cgroup parent")?;
        manager.fill_spares()?;
        let limits = noded::supervisor::cgroup_limits(&launch);
        Ok(Floor {
            manager,
            staging_dir,
            launch,
            limits,
            next: 0,
            netns_prefix: None,
            _dir: dir,
        })
    }

    /// Every run from now on makes, joins and deletes a network namespace `<prefix>-<n>`.
    pub fn with_netns(mut self, prefix: &str) -> Floor {
        self.netns_prefix = Some(prefix.to_string());
        self
    }

    /// One run of `command` (the launch's own when `None`): from "cgroup asked for" to
    /// "exec'd", and to "exited and cgroup removed"; with the exit status.
    fn run_command(
        &mut self,
        command: Option<&str>,
    ) -> anyhow::Result<(Duration, Duration, ExitStatus)> {
        self.next += 1;
        let name = format!("floor-{}", self.next);
        let mut launch_copy;
        let mut launch = match command {
            None => &self.launch,
            Some(c) => {
                launch_copy = self.launch.clone();
                launch_copy.command = c.to_string();
                &launch_copy
            }
        };
        let started = Instant::now();
        let netns = match &self.netns_prefix {
            Some(prefix) => Some(NetnsGuard::create(&format!("{prefix}-{}", self.next))?),
            None => None,
        };
        let mut netns_launch;
        if let Some(ns) = &netns {
            netns_launch = launch.clone();
            netns_launch.network = Some(noded::supervisor::protocol::LaunchNetwork {
                namespace: Some(ns.path()),
                ..Default::default()
            });
            launch = &netns_launch;
        }
        let cgroup = self.manager.create(&name, &self.limits)?;
        let outcome = (|| {
            let join = cgroup.join_handle()?;
            let spec = noded::supervisor::sandbox_spec(
                launch,
                &self.staging_dir,
                join,
                Stdio::Null,
                Stdio::Null,
            )
            .map_err(|(step, message)| anyhow::anyhow!("floor: {step}: {message}"))?;
            let child = sandbox::spawn(&spec).context("floor: spawning the task")?;
            let exec = started.elapsed();
            // As the supervisor does: the mount namespace's teardown happens when this goes,
            // after the clock, not in the task's exit.
            let mount_ns = File::open(format!("/proc/{}/ns/mnt", child.pid)).ok();
            let status = child.wait().context("floor: waiting for the task")?;
            Ok::<_, anyhow::Error>((exec, status, mount_ns))
        })();
        let destroyed = cgroup.destroy();
        let deleted = netns.map_or(Ok(()), NetnsGuard::delete);
        let full = started.elapsed();
        let (exec, status, mount_ns) = outcome?;
        destroyed.context("floor: removing the task cgroup")?;
        deleted.context("floor: deleting the network namespace")?;
        drop(mount_ns);
        self.manager.fill_spares()?;
        Ok((exec, full, status))
    }

    /// A timed run of the launch's command, which must exit 0.
    pub fn run(&mut self) -> anyhow::Result<(Duration, Duration)> {
        let (exec, full, status) = self.run_command(None)?;
        if status != ExitStatus::Exited(0) {
            bail!("floor: {} ended with {status:?}", self.launch.command);
        }
        Ok((exec, full))
    }

    /// Proves the floor runs the program: `/bin/false` must report exit code 1.
    pub fn validate(&mut self) -> anyhow::Result<()> {
        let (_, _, status) = self.run_command(Some("/bin/false"))?;
        if status != ExitStatus::Exited(1) {
            bail!("floor validation: /bin/false should exit 1, got {status:?}");
        }
        Ok(())
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let cleanup = || -> anyhow::Result<()> {
            for name in self.manager.list()? {
                if let Some(cgroup) = self.manager.open(&name)? {
                    cgroup.destroy()?;
                }
            }
            self.manager.remove_parent()?;
            Ok(())
        };
        if let Err(e) = cleanup() {
            eprintln!(
                "warning: cleaning up the floor's cgroup parent {}: {e:#}",
                self.manager.parent_name()
            );
        }
    }
}
