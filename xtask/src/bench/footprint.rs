//! `cargo xtask bench footprint [--tasks N]`: the memory a fleet pays per node and per task.
//!
//! A real region of one server and one client-only agent, each a `noded agent` in a network
//! namespace of its own (the harness's [`Lan`] and [`ClusterAgent`]), the client talking to
//! the server over the QUIC fabric with its `client.<region>` certificate, both at the default
//! log level (`info`). Measured from `/proc/PID/status` (RSS) and `/proc/PID/smaps_rollup`
//! (PSS):
//!
//! 1. idle, once the node is `ready` and [`IDLE`] has passed: the client agent, its task
//!    supervisor, and the server;
//! 2. with `--tasks` (100) running tasks: one `service` job of that many allocations of an
//!    `exec` task `sleep 3600` (the production driver, as `bench rss`), placed on the client.
//!    Per task = growth of (client agent + supervisor) / tasks; the tasks' own processes are
//!    reported apart (their PSS: shared pages of `sleep` are split between them).
//!
//! Peer: containerd's idle RSS, measured in the same run when a `containerd` binary is on
//! PATH (its own root, state and sockets in a temporary directory); otherwise "not installed"
//! and the figure measured by hand on this kind of machine (36 MiB).
//!
//! When the idle client misses its goal, a breakdown of its mappings (binary, heap, other
//! anonymous memory, stacks, libraries) and its thread count is printed: where to cut next.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use noded_tests::{ClusterAgent, Lan, TempDir};

use super::rss::{kib, memory_of, split_by_exe, Memory};
use super::Binaries;

const REGION: &str = "global";
/// How long the agents sit idle before the idle figure (timers, first GC pass, allocator).
const IDLE: Duration = Duration::from_secs(10);
/// Settling time after the last task started.
const LOADED_SETTLE: Duration = Duration::from_secs(10);
const JOB: &str = "footprint-sleep";
/// Per task: small, so that 100 fit a 2-core node (above the minimums of 1 MHz and 10 MB).
const TASK_CPU_MHZ: u64 = 10;
const TASK_MEMORY_MB: u64 = 10;
const START_WITHIN: Duration = Duration::from_secs(300);
const STOP_WITHIN: Duration = Duration::from_secs(120);
/// Goals: idle client agent + supervisor, and per task.
const GOAL_CLIENT_KIB: u64 = 10 * 1024;
const GOAL_PER_TASK_KIB: f64 = 150.0;
/// containerd's idle RSS measured by hand on this kind of machine (platform facts).
const CONTAINERD_FACT_MIB: u64 = 36;

#[derive(Debug, Clone)]
pub struct FootprintOptions {
    pub tasks: usize,
}

impl Default for FootprintOptions {
    fn default() -> Self {
        FootprintOptions { tasks: 100 }
    }
}

/// The memory of the client's two processes and the server's one.
#[derive(Debug, Clone, Copy)]
struct Sample {
    agent: Memory,
    supervisor: Memory,
    server: Memory,
}

impl Sample {
    fn client_rss(&self) -> u64 {
        self.agent.rss_kib + self.supervisor.rss_kib
    }

    fn client_pss(&self) -> u64 {
        self.agent.pss_kib + self.supervisor.pss_kib
    }
}

fn pid_of(agent: &ClusterAgent) -> anyhow::Result<i32> {
    let pid = agent
        .pid()
        .with_context(|| format!("agent {} is not running", agent.name))?;
    i32::try_from(pid).context("a pid that does not fit an i32")
}

/// The client agent's task supervisor: the noded process it started (its child, in a
/// session of its own). A client-only agent answers `/v1/agent/self` from no server, so the
/// process tree is asked rather than the API.
fn supervisor_pid(client: &ClusterAgent) -> anyhow::Result<i32> {
    let agent = pid_of(client)?;
    wait(
        "the client agent's supervisor process",
        Duration::from_secs(30),
        || {
            let (noded, _) = split_by_exe(&[agent])?;
            Ok(noded.into_iter().find(|pid| *pid != agent))
        },
    )
    .with_context(|| format!("client log:\n{}", client.log_text()))
}

fn sample(client: &ClusterAgent, supervisor: i32, server: &ClusterAgent) -> anyhow::Result<Sample> {
    Ok(Sample {
        agent: memory_of(&[pid_of(client)?])?,
        supervisor: memory_of(&[supervisor])?,
        server: memory_of(&[pid_of(server)?])?,
    })
}

/// Polls `f` every 200 ms until it gives `Some`, or fails after `within` naming `what`.
fn wait<T>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn job_body(tasks: usize) -> String {
    serde_json::json!({
        "Job": {
            "ID": JOB,
            "Type": "service",
            "TaskGroups": [{
                "Name": "g",
                "Count": tasks,
                "Tasks": [{
                    "Name": "t",
                    "Driver": "exec",
                    "Config": {"command": "/bin/sleep", "args": ["3600"]},
                    "Resources": {"CPU": TASK_CPU_MHZ, "MemoryMB": TASK_MEMORY_MB}
                }]
            }]
        }
    })
    .to_string()
}

/// (running, failed or lost) allocations of the bench job, from the server.
fn job_allocs(server: &ClusterAgent) -> anyhow::Result<(usize, usize)> {
    let r = server
        .get(&format!("/v1/job/{JOB}/allocations"))
        .context("GET the job's allocations")?;
    if r.status != 200 {
        bail!("GET /v1/job/{JOB}/allocations: {} {}", r.status, r.text());
    }
    let list = r.json();
    let list = list.as_array().cloned().unwrap_or_default();
    let status = |a: &serde_json::Value, s: &str| a["ClientStatus"].as_str() == Some(s);
    Ok((
        list.iter().filter(|a| status(a, "running")).count(),
        list.iter()
            .filter(|a| status(a, "failed") || status(a, "lost"))
            .count(),
    ))
}

pub fn run(options: &FootprintOptions, binaries: &Binaries) -> anyhow::Result<()> {
    eprintln!("==> noded: {}", binaries.noded.display());
    let lan = Lan::create("bench-fp");
    let server_host = lan.host("srv");
    let client_host = lan.host("cli");
    let pki = TempDir::create("pki");
    let server_tls = noded_tests::server_certificates(&pki, REGION);
    let client_tls = noded_tests::client_certificate(&pki, REGION);
    // Measured as shipped: the default log level, not the harness's debug.
    let shipped =
        |config: String| config.replace("log_level  = \"debug\"", "log_level  = \"info\"");
    let server = ClusterAgent::start(
        &server_host,
        "s0",
        &shipped(noded_tests::server_config(
            server_host.ip(),
            "s0",
            REGION,
            1,
            &[],
            Some(&server_tls),
        )),
    );
    wait("the server elects itself", Duration::from_secs(60), || {
        Ok(server
            .get("/v1/status/leader")
            .ok()
            .filter(|r| r.status == 200 && r.json().as_str().is_some_and(|s| !s.is_empty()))
            .map(|_| ()))
    })?;
    let client = ClusterAgent::start(
        &client_host,
        "c0",
        &shipped(noded_tests::client_config(
            client_host.ip(),
            "c0",
            REGION,
            &[format!("{}:4647", server_host.ip())],
            &client_tls,
        )),
    );
    wait(
        "the client's node is ready",
        Duration::from_secs(60),
        || {
            let r = server.get("/v1/nodes").context("GET /v1/nodes")?;
            let nodes = r.json();
            Ok(nodes
                .as_array()
                .is_some_and(|l| l.len() == 1 && l[0]["Status"] == "ready")
                .then_some(()))
        },
    )
    .with_context(|| format!("client log:\n{}", client.log_text()))?;
    let supervisor = supervisor_pid(&client)?;
    eprintln!(
        "==> server pid {}, client agent pid {}, supervisor pid {supervisor}; idle for {IDLE:?}",
        pid_of(&server)?,
        pid_of(&client)?
    );
    std::thread::sleep(IDLE);
    let idle = sample(&client, supervisor, &server)?;
    eprintln!(
        "==> idle: client agent {} KiB, supervisor {} KiB, server {} KiB RSS; {} exec tasks",
        idle.agent.rss_kib, idle.supervisor.rss_kib, idle.server.rss_kib, options.tasks
    );

    let r = server
        .http("PUT", "/v1/jobs", Some(job_body(options.tasks).as_bytes()))
        .context("PUT /v1/jobs")?;
    if r.status != 200 {
        bail!("registering job {JOB}: {} {}", r.status, r.text());
    }
    let started = Instant::now();
    wait("every task running", START_WITHIN, || {
        let (running, failed) = job_allocs(&server)?;
        if failed > 0 {
            bail!(
                "{failed} allocations of {JOB} failed; client log:\n{}",
                client.log_text()
            );
        }
        Ok((running >= options.tasks).then_some(()))
    })?;
    eprintln!(
        "==> {} tasks running after {:.1} s; settling {LOADED_SETTLE:?}",
        options.tasks,
        started.elapsed().as_secs_f64()
    );
    std::thread::sleep(LOADED_SETTLE);
    let loaded = sample(&client, supervisor, &server)?;
    let (noded_below, tasks_below) = split_by_exe(&[supervisor])?;
    let task_own = memory_of(&tasks_below)?;
    if task_own.processes < options.tasks {
        bail!(
            "only {} task processes under the supervisor for {} running allocations",
            task_own.processes,
            options.tasks
        );
    }
    let extra_noded = noded_below.len().saturating_sub(1);
    let n = options.tasks as f64;
    let per_task_rss = (loaded.client_rss() as f64 - idle.client_rss() as f64) / n;
    let per_task_pss = (loaded.client_pss() as f64 - idle.client_pss() as f64) / n;

    let breakdown = (idle.client_rss() > GOAL_CLIENT_KIB)
        .then(|| -> anyhow::Result<String> {
            Ok(format!(
                "{}\n{}",
                mappings(pid_of(&client)?, "client agent")?,
                mappings(supervisor, "supervisor")?
            ))
        })
        .transpose()?;

    eprintln!("==> stopping job {JOB} (purge)");
    let r = server
        .http("DELETE", &format!("/v1/job/{JOB}?purge=true"), None)
        .context("DELETE the job")?;
    if r.status != 200 {
        eprintln!(
            "warning: stopping job {JOB}: {} {} (the agents' guards stop the tasks)",
            r.status,
            r.text()
        );
    } else {
        wait("every task stopped", STOP_WITHIN, || {
            Ok(split_by_exe(&[supervisor])?.1.is_empty().then_some(()))
        })?;
    }
    drop(client);
    drop(server);
    drop(lan);

    let containerd = containerd_idle_rss()?;

    println!();
    println!("{:<36} {:>10} {:>10}", "idle", "RSS KiB", "PSS KiB");
    for (what, m) in [
        ("client agent (client-only)", idle.agent),
        ("its task supervisor", idle.supervisor),
    ] {
        println!("{what:<36} {:>10} {:>10}", m.rss_kib, m.pss_kib);
    }
    println!(
        "{:<36} {:>10} {:>10}   (goal ≤ {GOAL_CLIENT_KIB} RSS)",
        "client total",
        idle.client_rss(),
        idle.client_pss()
    );
    println!(
        "{:<36} {:>10} {:>10}",
        "server (one-server region)", idle.server.rss_kib, idle.server.pss_kib
    );
    println!();
    println!("with {} running exec tasks (sleep 3600)", options.tasks);
    println!(
        "{:<36} {:>10} {:>10}",
        "client agent", loaded.agent.rss_kib, loaded.agent.pss_kib
    );
    println!(
        "{:<36} {:>10} {:>10}",
        "supervisor", loaded.supervisor.rss_kib, loaded.supervisor.pss_kib
    );
    println!(
        "{:<36} {:>10.1} {:>10.1}   (goal ≤ {GOAL_PER_TASK_KIB} RSS)",
        "per task (agent + supervisor)", per_task_rss, per_task_pss
    );
    println!(
        "{:<36} {:>10} {:>10}   ({} processes; {:.1} KiB PSS each)",
        "the tasks' own processes",
        task_own.rss_kib,
        task_own.pss_kib,
        task_own.processes,
        task_own.pss_kib as f64 / task_own.processes.max(1) as f64
    );
    if extra_noded > 0 {
        println!("note: {extra_noded} further noded processes below the supervisor (not counted)");
    }
    let containerd_field = match containerd {
        Some(kib) => {
            println!("peer: containerd idle {kib} KiB RSS (measured in this run)");
            kib.to_string()
        }
        None => {
            println!(
                "peer: containerd not installed; on this kind of machine its idle RSS is \
                 {CONTAINERD_FACT_MIB} MiB (platform facts)"
            );
            "not_installed".to_string()
        }
    };
    if let Some(b) = breakdown {
        println!();
        println!("the idle client misses its goal; where its memory is:");
        println!("{b}");
    }
    println!(
        "RESULT footprint client_agent_rss_kib={} client_supervisor_rss_kib={} \
         client_total_rss_kib={} client_total_pss_kib={} server_rss_kib={} per_task_kib={:.1} \
         per_task_pss_kib={:.1} task_own_pss_kib={:.1} tasks={} driver=exec containerd_rss_kib={containerd_field}",
        idle.agent.rss_kib,
        idle.supervisor.rss_kib,
        idle.client_rss(),
        idle.client_pss(),
        idle.server.rss_kib,
        per_task_rss,
        per_task_pss,
        task_own.pss_kib as f64 / task_own.processes.max(1) as f64,
        options.tasks,
    );
    Ok(())
}

/// Where a process's resident memory is, by kind of mapping, from `/proc/PID/smaps`, and its
/// thread count.
fn mappings(pid: i32, what: &str) -> anyhow::Result<String> {
    let path = format!("/proc/{pid}/smaps");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    let mut kinds: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let mut current = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            // A mapping header: address perms offset dev inode [path].
            let name: Vec<&str> = words.skip(4).collect();
            let name = name.join(" ");
            current = if name.is_empty() {
                "anonymous (heap arenas, thread stacks)".into()
            } else if Path::new(&name) == exe {
                "noded binary (text, data)".into()
            } else if name.starts_with('[') {
                name
            } else {
                format!("file {name}")
            };
        } else if let Some(rest) = line.strip_prefix("Rss:") {
            let n: u64 = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            kinds.entry(current.clone()).or_default().0 += n;
        } else if let Some(rest) = line.strip_prefix("Pss:") {
            let n: u64 = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            kinds.entry(current.clone()).or_default().1 += n;
        }
    }
    let threads = kib(Path::new(&format!("/proc/{pid}/status")), "Threads:")?;
    let mut rows: Vec<(String, (u64, u64))> = kinds.into_iter().collect();
    rows.sort_by_key(|(_, (rss, _))| std::cmp::Reverse(*rss));
    let mut out = format!("  {what} (pid {pid}, {threads} threads):\n");
    for (kind, (rss, pss)) in rows.into_iter().filter(|(_, (rss, _))| *rss > 0).take(8) {
        out.push_str(&format!("    {rss:>7} KiB RSS {pss:>7} KiB PSS  {kind}\n"));
    }
    Ok(out)
}

/// containerd's RSS after [`IDLE`] with its own root, state and sockets, when installed.
fn containerd_idle_rss() -> anyhow::Result<Option<u64>> {
    if !crate::have("containerd") {
        return Ok(None);
    }
    let dir = TempDir::create("containerd");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{root}/root\"\nstate = \"{root}/state\"\n[grpc]\n  address = \"{root}/containerd.sock\"\n[ttrpc]\n  address = \"{root}/containerd-ttrpc.sock\"\n",
            root = dir.display()
        ),
    )
    .with_context(|| format!("writing {}", config.display()))?;
    let log = std::fs::File::create(dir.join("containerd.log")).context("containerd log")?;
    let child = Command::new("containerd")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting containerd")?;
    let mut guard = ChildGuard(child);
    let pid = guard.0.id();
    std::thread::sleep(IDLE);
    if let Ok(Some(status)) = guard.0.try_wait() {
        bail!(
            "containerd exited at start ({status}); log: {}",
            std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
        );
    }
    let rss = kib(&PathBuf::from(format!("/proc/{pid}/status")), "VmRSS:")?;
    drop(guard);
    Ok(Some(rss))
}

/// A child killed (SIGKILL) and reaped on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
