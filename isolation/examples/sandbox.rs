//! Manual tool: run a program in a sandbox, or time full runs of `/bin/true`.
//!
//! ```text
//! cargo run --release -p isolation --example sandbox -- bench [N] [--no-cgroupns]  # root
//! cargo run --release -p isolation --example sandbox -- run PROGRAM [ARGS...]
//! ```
//!
//! `bench` measures N (default 100) full runs: create cgroup → spawn `/bin/true` as nobody in
//! a jail with pid/mnt/ipc/uts/cgroup namespaces → wait → destroy cgroup, and prints the
//! median and 90th percentile, with and without the cgroup. It is a quick manual figure, not
//! an assertion (the project's benches live in `cargo xtask bench`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use isolation::caps::{CapabilitySet, DEFAULT_ALLOW};
use isolation::cgroup::{CgroupLayout, CgroupLimits, CgroupManager};
use isolation::sandbox::{
    spawn, Bind, Filesystem, NamespaceSpec, RootfsSpec, SandboxSpec, SeccompPolicy, Stdio,
};
use isolation::user::lookup;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bench") => bench(
            args.get(1).and_then(|n| n.parse().ok()).unwrap_or(100),
            args.iter().any(|a| a == "--no-cgroupns"),
        ),
        Some("run") if args.len() > 1 => run(&args[1], &args[2..]),
        _ => Err(
            "usage: sandbox bench [N] [--no-cgroupns] | sandbox run PROGRAM [ARGS...]".to_string(),
        ),
    };
    if let Err(e) = result {
        eprintln!("sandbox: {e}");
        std::process::exit(1);
    }
}

fn spec(
    program: &str,
    args: &[String],
    staging: &Path,
    extra: &[Bind],
) -> Result<SandboxSpec, String> {
    let mut rootfs = RootfsSpec::new(staging);
    rootfs.ro_binds.extend(extra.iter().cloned());
    Ok(SandboxSpec {
        program: program.to_string(),
        args: args.to_vec(),
        env: vec![("PATH".to_string(), "/usr/bin:/bin".to_string())],
        work_dir: PathBuf::from("/"),
        user: lookup("nobody", Path::new("/etc")).map_err(|e| e.to_string())?,
        filesystem: Filesystem::Jail(rootfs),
        namespaces: NamespaceSpec::isolated(),
        hostname: Some("sandbox".to_string()),
        cgroup: None,
        capabilities: DEFAULT_ALLOW,
        ambient_capabilities: CapabilitySet::EMPTY,
        rlimits: Vec::new(),
        seccomp: SeccompPolicy::Default,
        stdin: Stdio::Null,
        stdout: Stdio::Inherit,
        stderr: Stdio::Inherit,
        go_ahead: None,
        init: false,
    })
}

fn run(program: &str, args: &[String]) -> Result<(), String> {
    let staging = tempfile::tempdir().map_err(|e| e.to_string())?;
    // Bind the program itself in when it is a host path outside the system dirs.
    let mut extra = Vec::new();
    if Path::new(program).is_absolute()
        && !program.starts_with("/usr")
        && !program.starts_with("/bin")
    {
        extra.push(Bind::new(program, "/opt/program"));
    }
    let in_jail = if extra.is_empty() {
        program.to_string()
    } else {
        "/opt/program".to_string()
    };
    let s = spec(&in_jail, args, staging.path(), &extra)?;
    let child = spawn(&s).map_err(|e| e.to_string())?;
    let status = child.wait().map_err(|e| e.to_string())?;
    eprintln!("sandbox: {status}");
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn bench(n: usize, no_cgroupns: bool) -> Result<(), String> {
    let staging = tempfile::tempdir().map_err(|e| e.to_string())?;
    let layout = CgroupLayout::detect().map_err(|e| e.to_string())?;
    let manager = CgroupManager::new(layout, &format!("noded-bench-{}", std::process::id()))
        .map_err(|e| e.to_string())?;
    let limits = CgroupLimits {
        memory_limit_bytes: 64 << 20,
        memory_reservation_bytes: None,
        cpu_shares_mhz: 100,
        cpu_hard_limit: None,
        cpuset_cpus: None,
        pids_max: Some(16),
    };
    for with_cgroup in [false, true] {
        let mut times = Vec::with_capacity(n);
        let mut phases = [Duration::ZERO; 4];
        for i in 0..n + 5 {
            let start = Instant::now();
            let mut mark = start;
            let mut lap = |k: usize| {
                let now = Instant::now();
                if i >= 5 {
                    phases[k] += now - mark;
                }
                mark = now;
            };
            let cg = if with_cgroup {
                Some(
                    manager
                        .create(&format!("b{i}"), &limits)
                        .map_err(|e| e.to_string())?,
                )
            } else {
                None
            };
            let mut s = spec("/bin/true", &[], staging.path(), &[])?;
            s.stdout = Stdio::Null;
            s.stderr = Stdio::Null;
            s.namespaces.cgroup = !no_cgroupns;
            if let Some(cg) = &cg {
                s.cgroup = Some(cg.join_handle().map_err(|e| e.to_string())?);
            }
            lap(0);
            let child = spawn(&s).map_err(|e| e.to_string())?;
            lap(1);
            let status = child.wait().map_err(|e| e.to_string())?;
            lap(2);
            if !status.success() {
                return Err(format!("/bin/true: {status}"));
            }
            if let Some(cg) = cg {
                cg.destroy().map_err(|e| e.to_string())?;
            }
            lap(3);
            // The first runs warm caches up.
            if i >= 5 {
                times.push(start.elapsed());
            }
        }
        times.sort();
        println!(
            "{} runs of /bin/true {}: median {:.3} ms, p90 {:.3} ms, min {:.3} ms",
            n,
            if with_cgroup {
                "with cgroup create+destroy"
            } else {
                "without cgroup"
            },
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.9).as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
        );
        let avg = |d: Duration| d.as_secs_f64() * 1e3 / n as f64;
        println!(
            "  mean phases: cgroup create + join {:.3} ms, spawn until exec {:.3} ms, run + exit + reap {:.3} ms, cgroup destroy {:.3} ms",
            avg(phases[0]),
            avg(phases[1]),
            avg(phases[2]),
            avg(phases[3]),
        );
    }
    manager.remove_parent().map_err(|e| e.to_string())?;
    Ok(())
}
