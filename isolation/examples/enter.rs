//! Manual tool: time `isolation::sandbox::enter` (what `noded alloc exec` costs).
//!
//! ```text
//! cargo run --release -p isolation --example enter -- [N]    # root
//! ```
//!
//! Starts one task (`/bin/sleep 600` as nobody, in a jail, a cgroup and pid/mnt/ipc/uts/cgroup
//! namespaces), then measures N (default 200) entries of `/bin/true` into it, each entered,
//! run to its end and reaped, and prints the median and 90th percentile; for comparison the
//! same number of fresh sandboxes of `/bin/true` with `spawn`. A quick manual figure, not an
//! assertion.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use isolation::caps::{CapabilitySet, DEFAULT_ALLOW};
use isolation::cgroup::{CgroupLayout, CgroupLimits, CgroupManager, TaskCgroup};
use isolation::sandbox::{
    enter, spawn, EnterSpec, Filesystem, NamespaceSpec, RootfsSpec, SandboxSpec, SeccompPolicy,
    Stdio,
};
use isolation::user::lookup;

fn main() {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    if let Err(e) = run(n) {
        eprintln!("enter: {e}");
        std::process::exit(1);
    }
}

fn task_spec(
    program: &str,
    args: &[&str],
    staging: &Path,
    cg: &TaskCgroup,
) -> Result<SandboxSpec, String> {
    Ok(SandboxSpec {
        program: program.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: vec![("PATH".to_string(), "/usr/bin:/bin".to_string())],
        work_dir: PathBuf::from("/"),
        user: lookup("nobody", Path::new("/etc")).map_err(|e| e.to_string())?,
        filesystem: Filesystem::Jail(RootfsSpec::new(staging)),
        namespaces: NamespaceSpec::isolated(),
        hostname: Some("enter-bench".to_string()),
        cgroup: Some(cg.join_handle().map_err(|e| e.to_string())?),
        capabilities: DEFAULT_ALLOW,
        ambient_capabilities: CapabilitySet::EMPTY,
        rlimits: Vec::new(),
        seccomp: SeccompPolicy::Default,
        stdin: Stdio::Null,
        stdout: Stdio::Null,
        stderr: Stdio::Null,
        go_ahead: None,
        init: false,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "{} {what}: median {:.3} ms, p90 {:.3} ms, min {:.3} ms",
        times.len(),
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.9).as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
    );
}

fn run(n: usize) -> Result<(), String> {
    let staging = tempfile::tempdir().map_err(|e| e.to_string())?;
    let layout = CgroupLayout::detect().map_err(|e| e.to_string())?;
    let manager = CgroupManager::new(layout, &format!("noded-enter-bench-{}", std::process::id()))
        .map_err(|e| e.to_string())?;
    let limits = CgroupLimits {
        memory_limit_bytes: 64 << 20,
        memory_reservation_bytes: None,
        cpu_shares_mhz: 100,
        cpu_hard_limit: None,
        cpuset_cpus: None,
        pids_max: Some(16),
    };
    let result = (|| {
        let cg = manager.create("task", &limits).map_err(|e| e.to_string())?;
        let sleeper = task_spec("/bin/sleep", &["600"], staging.path(), &cg)?;
        let task = spawn(&sleeper).map_err(|e| e.to_string())?;
        let entered = (|| {
            for join in [true, false] {
                let mut times = Vec::with_capacity(n);
                for i in 0..n + 5 {
                    let cgroup = if join {
                        Some(cg.join_handle().map_err(|e| e.to_string())?)
                    } else {
                        None
                    };
                    let spec =
                        EnterSpec::matching(&sleeper, cgroup, task.pid, "/bin/true", Vec::new());
                    let start = Instant::now();
                    let child = enter(&spec).map_err(|e| e.to_string())?.child;
                    let status = child.wait().map_err(|e| e.to_string())?;
                    if !status.success() {
                        return Err(format!("/bin/true: {status}"));
                    }
                    if i >= 5 {
                        times.push(start.elapsed());
                    }
                }
                report(
                    if join {
                        "entries of /bin/true into a running task (joining its cgroup)"
                    } else {
                        "entries of /bin/true into a running task (cgroup not joined)"
                    },
                    times,
                );
            }
            Ok(())
        })();
        let _ = task.signal(libc::SIGKILL);
        let _ = task.wait();
        cg.destroy().map_err(|e| e.to_string())?;
        entered?;

        let mut times = Vec::with_capacity(n);
        for i in 0..n + 5 {
            let cg = manager
                .create(&format!("s{i}"), &limits)
                .map_err(|e| e.to_string())?;
            let spec = task_spec("/bin/true", &[], staging.path(), &cg)?;
            let start = Instant::now();
            let child = spawn(&spec).map_err(|e| e.to_string())?;
            let status = child.wait().map_err(|e| e.to_string())?;
            if i >= 5 {
                times.push(start.elapsed());
            }
            cg.destroy().map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("/bin/true: {status}"));
            }
        }
        report(
            "spawns of /bin/true in a fresh jail (cgroup made beforehand)",
            times,
        );
        Ok(())
    })();
    manager.remove_parent().map_err(|e| e.to_string())?;
    result
}
