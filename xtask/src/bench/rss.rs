//! `cargo xtask bench rss`: what a running task costs in memory of noded's own processes.
//!
//! Two measurements, both RSS (from `/proc/PID/status`) and PSS (from `/proc/PID/smaps_rollup`)
//! summed over every noded process, idle and then with `--tasks` `sleep 3600` tasks running.
//! Per task = (loaded − idle) / tasks. The tasks' own processes are not noded's and are
//! reported apart (they are told from noded's by `/proc/PID/exe`).
//!
//! 1. The supervisor alone: the real `noded supervisor`, the tasks started through the real
//!    start path (one allocation each, as the client would), driven directly by the bench.
//! 2. The whole product ([`super::agent`]): a real `noded agent -dev` (server, client and the
//!    supervisor it starts), one `service` job of `--tasks` allocations submitted with
//!    `noded job run`, measured over the agent process and every noded process below it.
//!
//! Goal (issue 3, item 5): ≤ 1 MiB RSS per running task, judged on the whole agent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use controlplane::model::{AllocListStub, ClientStatus, Evaluation};

use super::agent::Agent;
use super::noded_path::{job, NodedPath};
use super::stats::num;
use super::workdir::BenchDir;
use super::Binaries;

/// Goal: RSS per running task.
const GOAL_KIB: f64 = 1024.0;
/// Time for allocator and kernel accounting to settle before a supervisor measurement.
const SETTLE: Duration = Duration::from_secs(1);
/// The same for the agent, whose client and server keep working a little after a change
/// (allocation updates, evaluations, heartbeats).
const AGENT_SETTLE: Duration = Duration::from_secs(2);
/// The whole-agent job: id, and what each of its tasks asks for (small, so that 100 fit a
/// 2-core node; above controlplane's minimums of 1 MHz and 10 MB).
const AGENT_JOB: &str = "rss-sleep";
const TASK_CPU_MHZ: i64 = 20;
const TASK_MEMORY_MB: i64 = 16;
/// How long placing and starting every task, and stopping them, may take.
const START_WITHIN: Duration = Duration::from_secs(300);
const STOP_WITHIN: Duration = Duration::from_secs(120);
/// How often a long step reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct RssOptions {
    pub tasks: usize,
}

impl Default for RssOptions {
    fn default() -> Self {
        RssOptions { tasks: 100 }
    }
}

/// Memory of a set of processes, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Memory {
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub processes: usize,
}

/// `pid → ppid` of every process.
fn parents() -> HashMap<i32, i32> {
    let mut map = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return map;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // The command name in field 2 may hold spaces and parentheses: split after the last ')'.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            map.insert(pid, ppid);
        }
    }
    map
}

/// Every process in `roots` and below them, each once.
fn descendants(roots: &[i32]) -> Vec<i32> {
    let parents = parents();
    let mut out: Vec<i32> = Vec::new();
    for root in roots {
        if !out.contains(root) {
            out.push(*root);
        }
    }
    let mut i = 0;
    while let Some(&p) = out.get(i) {
        let children: Vec<i32> = parents
            .iter()
            .filter(|(pid, pp)| **pp == p && !out.contains(pid))
            .map(|(pid, _)| *pid)
            .collect();
        out.extend(children);
        i += 1;
    }
    out
}

fn exe(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The first number after `key` in a `Key:   1234 kB` file.
pub(super) fn kib(path: &Path, key: &str) -> anyhow::Result<u64> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no {key} line in {}", path.display()))
}

pub(super) fn memory_of(pids: &[i32]) -> anyhow::Result<Memory> {
    let mut m = Memory::default();
    for pid in pids {
        m.rss_kib += kib(Path::new(&format!("/proc/{pid}/status")), "VmRSS:")?;
        m.pss_kib += kib(Path::new(&format!("/proc/{pid}/smaps_rollup")), "Pss:")?;
        m.processes += 1;
    }
    Ok(m)
}

/// `roots` and the processes below them, split by executable: (noded's, the rest: the tasks).
pub(super) fn split_by_exe(roots: &[i32]) -> anyhow::Result<(Vec<i32>, Vec<i32>)> {
    let first = *roots.first().context("no process to measure")?;
    let noded_exe = exe(first).with_context(|| format!("reading /proc/{first}/exe"))?;
    Ok(descendants(roots)
        .into_iter()
        .partition(|pid| exe(*pid).as_ref() == Some(&noded_exe)))
}

/// (noded's processes, other processes below the supervisor: the tasks).
fn measure(supervisor: i32) -> anyhow::Result<(Memory, Memory)> {
    let (noded, tasks) = split_by_exe(&[supervisor])?;
    Ok((memory_of(&noded)?, memory_of(&tasks)?))
}

/// Idle and loaded memory, with `tasks` running.
#[derive(Debug, Clone, Copy)]
struct Figures {
    tasks: usize,
    idle: Memory,
    loaded: Memory,
    /// The tasks' own processes (not noded's), loaded.
    task_own: Memory,
}

impl Figures {
    fn per(&self, loaded: u64, idle: u64) -> f64 {
        (loaded as f64 - idle as f64) / self.tasks as f64
    }

    fn per_task_rss(&self) -> f64 {
        self.per(self.loaded.rss_kib, self.idle.rss_kib)
    }

    fn per_task_pss(&self) -> f64 {
        self.per(self.loaded.pss_kib, self.idle.pss_kib)
    }

    fn print(&self) {
        let plural = |n: usize| if n == 1 { "process" } else { "processes" };
        println!(
            "  noded processes idle:    {:>7} KiB RSS  {:>7} KiB PSS  ({} {})",
            self.idle.rss_kib,
            self.idle.pss_kib,
            self.idle.processes,
            plural(self.idle.processes)
        );
        println!(
            "  noded processes loaded:  {:>7} KiB RSS  {:>7} KiB PSS  ({} {})",
            self.loaded.rss_kib,
            self.loaded.pss_kib,
            self.loaded.processes,
            plural(self.loaded.processes)
        );
        println!(
            "  per task:                {:>7.1} KiB RSS  {:>7.1} KiB PSS",
            self.per_task_rss(),
            self.per_task_pss()
        );
        println!(
            "  the tasks themselves:    {:>7} KiB RSS  {:>7} KiB PSS  ({} processes; not noded's)",
            self.task_own.rss_kib, self.task_own.pss_kib, self.task_own.processes
        );
    }
}

/// One measurement of the whole agent.
#[derive(Debug, Clone, Copy, Default)]
struct AgentSample {
    /// Every noded process: the agent, its supervisor, any noded process below them.
    noded: Memory,
    /// The agent process alone (server and client).
    agent: Memory,
    /// The supervisor process alone.
    supervisor: Memory,
    /// The tasks' own processes.
    tasks: Memory,
}

fn measure_agent(agent: &Agent) -> anyhow::Result<AgentSample> {
    let supervisor = agent
        .supervisor_pid
        .context("the agent reported no supervisor pid")?;
    // The supervisor is the agent's child, but in its own session: name it as a root too.
    let (noded, tasks) = split_by_exe(&[agent.pid, supervisor])?;
    if !noded.contains(&supervisor) {
        bail!(
            "process {supervisor}, the agent's supervisor, does not run the agent's noded binary"
        );
    }
    Ok(AgentSample {
        noded: memory_of(&noded)?,
        agent: memory_of(&[agent.pid])?,
        supervisor: memory_of(&[supervisor])?,
        tasks: memory_of(&tasks)?,
    })
}

/// The task processes running below the agent's supervisor.
fn task_processes(agent: &Agent) -> anyhow::Result<usize> {
    let supervisor = agent
        .supervisor_pid
        .context("the agent reported no supervisor pid")?;
    Ok(split_by_exe(&[supervisor])?.1.len())
}

/// Part 1: the supervisor alone, driven directly.
fn supervisor_only(n: usize, binaries: &Binaries, dir: &BenchDir) -> anyhow::Result<Figures> {
    let noded = NodedPath::start(&binaries.noded, &dir.subdir("noded")?, dir.prefix())?;
    let supervisor = noded.supervisor.pid;
    noded.validate()?;

    std::thread::sleep(SETTLE);
    let (idle, _) = measure(supervisor)?;
    eprintln!(
        "==> idle supervisor: {} KiB RSS, {} KiB PSS; starting {n} sleep tasks",
        idle.rss_kib, idle.pss_kib
    );

    let sleeper = job("bench-sleep", "/bin/sleep", &["3600"])?;
    let mut running = Vec::with_capacity(n);
    for _ in 0..n {
        let alloc = noded.allocation(&sleeper);
        running.push(noded.start_task(&alloc)?);
    }
    std::thread::sleep(SETTLE);
    let (loaded, tasks) = measure(supervisor)?;
    if tasks.processes < n {
        bail!(
            "only {} of {n} sleep tasks are running under the supervisor",
            tasks.processes
        );
    }

    eprintln!("==> stopping the {n} tasks");
    for task in &running {
        noded.kill_task(task)?;
    }
    for task in running {
        let finished = noded.finish_task(task, |_| Ok(()))?;
        if finished.exit.signal != libc::SIGKILL {
            bail!(
                "a sleep task ended with {:?}, not by the SIGKILL sent",
                finished.exit
            );
        }
    }
    Ok(Figures {
        tasks: n,
        idle,
        loaded,
        task_own: tasks,
    })
}

/// Part 2: the whole agent, idle and loaded.
#[derive(Debug, Clone, Copy)]
struct AgentFigures {
    whole: Figures,
    idle: AgentSample,
    loaded: AgentSample,
}

/// The whole-agent job: `n` allocations of one `sleep 3600` exec task.
fn agent_jobspec(n: usize) -> String {
    format!(
        r#"job "{AGENT_JOB}" {{
  type = "service"

  group "g" {{
    count = {n}

    task "t" {{
      driver = "exec"

      config {{
        command = "/bin/sleep"
        args    = ["3600"]
      }}

      resources {{
        cpu    = {TASK_CPU_MHZ}
        memory = {TASK_MEMORY_MB}
      }}
    }}
  }}
}}
"#
    )
}

fn whole_agent(n: usize, binaries: &Binaries, dir: &BenchDir) -> anyhow::Result<AgentFigures> {
    eprintln!("==> starting noded agent -dev (server, client and supervisor)");
    let agent_dir = dir.subdir("agent")?;
    let mut agent = Agent::start(
        &binaries.noded,
        &agent_dir,
        &format!("{}-agent", dir.prefix()),
    )?;
    let node = agent.wait_ready_node(Duration::from_secs(60))?;
    let free = node.allocatable();
    let count = i64::try_from(n).context("--tasks is too large")?;
    if count.saturating_mul(TASK_CPU_MHZ) > free.cpu_mhz
        || count.saturating_mul(TASK_MEMORY_MB) > free.memory_mb
    {
        bail!(
            "{n} tasks of {TASK_CPU_MHZ} MHz and {TASK_MEMORY_MB} MB do not fit node {} ({} MHz, {} MB allocatable): use fewer --tasks",
            node.id,
            free.cpu_mhz,
            free.memory_mb
        );
    }
    eprintln!(
        "==> agent pid {} at {}, supervisor pid {}, node {} ready ({} MHz, {} MB allocatable)",
        agent.pid,
        agent.address,
        agent.supervisor_pid.unwrap_or_default(),
        node.id,
        free.cpu_mhz,
        free.memory_mb
    );
    std::thread::sleep(AGENT_SETTLE);
    let idle = measure_agent(&agent)?;
    eprintln!(
        "==> idle agent: {} KiB RSS, {} KiB PSS ({} noded processes); submitting one service job of {n} sleep tasks",
        idle.noded.rss_kib, idle.noded.pss_kib, idle.noded.processes
    );

    let spec = agent_dir.join(format!("{AGENT_JOB}.nomad.hcl"));
    std::fs::write(&spec, agent_jobspec(n))
        .with_context(|| format!("writing {}", spec.display()))?;
    agent.run_job(&spec)?;
    wait_running(&agent, n)?;
    std::thread::sleep(AGENT_SETTLE);
    let loaded = measure_agent(&agent)?;
    if loaded.tasks.processes < n {
        bail!(
            "only {} task processes run under the agent's supervisor, for {n} running allocations",
            loaded.tasks.processes
        );
    }

    eprintln!("==> stopping job {AGENT_JOB} (job stop, then purge)");
    agent.stop_job(AGENT_JOB, false)?;
    wait_stopped(&agent, n)?;
    agent.stop_job(AGENT_JOB, true)?;
    if agent.job_exists(AGENT_JOB)? {
        bail!("job {AGENT_JOB} is still known to the server after purge");
    }
    eprintln!("==> stopping the agent (SIGTERM to pid {})", agent.pid);
    agent.stop()?;
    Ok(AgentFigures {
        whole: Figures {
            tasks: n,
            idle: idle.noded,
            loaded: loaded.noded,
            task_own: loaded.tasks,
        },
        idle,
        loaded,
    })
}

/// Fails with what went wrong if an allocation failed or one of its tasks restarted (a
/// `sleep 3600` never should).
fn check_no_failures(allocs: &[AllocListStub]) -> anyhow::Result<()> {
    for alloc in allocs {
        for (task, state) in alloc.task_states.iter().flatten() {
            if state.failed || state.restarts > 0 {
                let event = state
                    .events
                    .iter()
                    .rev()
                    .find(|e| !e.display_message.is_empty() || !e.message.is_empty());
                bail!(
                    "allocation {} task {task} failed or restarted ({} restarts); last event: {}",
                    alloc.id,
                    state.restarts,
                    event
                        .map(|e| format!("{}: {} {}", e.event_type, e.display_message, e.message))
                        .unwrap_or_else(|| "none".into())
                );
            }
        }
        if matches!(
            alloc.client_status,
            ClientStatus::Failed | ClientStatus::Lost
        ) {
            bail!(
                "allocation {} is {}: {}",
                alloc.id,
                alloc.client_status.as_str(),
                alloc.client_description
            );
        }
    }
    Ok(())
}

/// What the job's evaluations say (for a placement that did not finish).
fn evaluations_summary(agent: &Agent) -> String {
    let evals: Vec<Evaluation> = match agent
        .get(&format!("/v1/job/{AGENT_JOB}/evaluations"))
        .and_then(|v| Ok(serde_json::from_value(v)?))
    {
        Ok(evals) => evals,
        Err(e) => return format!("(evaluations unreadable: {e:#})"),
    };
    evals
        .iter()
        .map(|e| {
            let failed: Vec<String> = e
                .failed_tg_allocs
                .iter()
                .map(|(group, m)| {
                    format!(
                        "group {group}: {} exhausted {:?}",
                        m.nodes_exhausted, m.dimension_exhausted
                    )
                })
                .collect();
            format!(
                "eval {} {:?} {} {}",
                e.id,
                e.status,
                e.status_description,
                failed.join("; ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until `n` allocations of the job run, printing progress.
fn wait_running(agent: &Agent, n: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut reported = usize::MAX;
    loop {
        let allocs = agent.allocations(AGENT_JOB)?;
        check_no_failures(&allocs)?;
        let running = allocs
            .iter()
            .filter(|a| a.client_status == ClientStatus::Running)
            .count();
        if running != reported && (last_report.elapsed() >= PROGRESS_EVERY || running >= n) {
            eprintln!(
                "    placed {}/{n}, running {running}/{n} ({:.1} s)",
                allocs.len(),
                started.elapsed().as_secs_f64()
            );
            reported = running;
            last_report = Instant::now();
        }
        if running >= n {
            return Ok(());
        }
        if started.elapsed() > START_WITHIN {
            bail!(
                "only {running} of {n} allocations of job {AGENT_JOB} run after {START_WITHIN:?} ({} placed); evaluations:\n{}\nagent log:\n{}",
                allocs.len(),
                evaluations_summary(agent),
                agent.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// After `job stop`: waits until every allocation is terminal and no task process is left.
fn wait_stopped(agent: &Agent, n: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let allocs = agent.allocations(AGENT_JOB)?;
        let stopped = allocs
            .iter()
            .filter(|a| a.client_status.is_terminal())
            .count();
        let processes = task_processes(agent)?;
        if stopped == allocs.len() && processes == 0 {
            eprintln!(
                "    {stopped}/{n} allocations stopped, no task process left ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if last_report.elapsed() >= PROGRESS_EVERY {
            eprintln!(
                "    {stopped}/{n} allocations stopped, {processes} task processes left ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        if started.elapsed() > STOP_WITHIN {
            bail!(
                "after {STOP_WITHIN:?} only {stopped} of {} allocations of job {AGENT_JOB} stopped and {processes} task processes still run; agent log:\n{}",
                allocs.len(),
                agent.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn verdict(per_task_rss: f64) -> &'static str {
    if per_task_rss <= GOAL_KIB {
        "met"
    } else {
        "missed"
    }
}

pub fn run(options: &RssOptions, binaries: &Binaries) -> anyhow::Result<()> {
    let n = options.tasks;
    let dir = BenchDir::create("rss")?;
    // One after the other: the supervisor of part 1 is gone before the agent starts.
    let supervisor = supervisor_only(n, binaries, &dir)?;
    let agent = whole_agent(n, binaries, &dir)?;
    let whole = agent.whole;

    println!();
    println!("rss bench, supervisor alone: {n} running `sleep 3600` tasks, driven directly");
    supervisor.print();
    println!();
    println!(
        "rss bench, whole agent: one service job of {n} `sleep 3600` tasks through `noded agent -dev`"
    );
    whole.print();
    let per = |loaded: u64, idle: u64| (loaded as f64 - idle as f64) / n as f64;
    for (what, idle, loaded) in [
        ("agent process", agent.idle.agent, agent.loaded.agent),
        (
            "supervisor process",
            agent.idle.supervisor,
            agent.loaded.supervisor,
        ),
    ] {
        println!(
            "    {:<22}{:>7} → {:>7} KiB RSS  ({:.1} KiB RSS, {:.1} KiB PSS per task)",
            format!("{what}:"),
            idle.rss_kib,
            loaded.rss_kib,
            per(loaded.rss_kib, idle.rss_kib),
            per(loaded.pss_kib, idle.pss_kib)
        );
    }
    let supervisor_rss = supervisor.per_task_rss();
    let whole_rss = whole.per_task_rss();
    println!(
        "goal: ≤ 1 MiB RSS per task, whole agent: {} ({whole_rss:.1} KiB; the supervisor alone: {supervisor_rss:.1} KiB)",
        verdict(whole_rss)
    );
    println!(
        "RESULT rss tasks={n} per_task_rss_kib={} per_task_pss_kib={} idle_rss_kib={} idle_pss_kib={} loaded_rss_kib={} loaded_pss_kib={} task_own_rss_kib={} supervisor_goal={} agent_idle_rss_kib={} agent_idle_pss_kib={} agent_loaded_rss_kib={} agent_loaded_pss_kib={} agent_per_task_rss_kib={} agent_per_task_pss_kib={} agent_process_per_task_rss_kib={} agent_supervisor_per_task_rss_kib={} agent_task_own_rss_kib={} goal={}",
        num(supervisor_rss),
        num(supervisor.per_task_pss()),
        supervisor.idle.rss_kib,
        supervisor.idle.pss_kib,
        supervisor.loaded.rss_kib,
        supervisor.loaded.pss_kib,
        supervisor.task_own.rss_kib,
        verdict(supervisor_rss),
        whole.idle.rss_kib,
        whole.idle.pss_kib,
        whole.loaded.rss_kib,
        whole.loaded.pss_kib,
        num(whole_rss),
        num(whole.per_task_pss()),
        num(per(agent.loaded.agent.rss_kib, agent.idle.agent.rss_kib)),
        num(per(
            agent.loaded.supervisor.rss_kib,
            agent.idle.supervisor.rss_kib
        )),
        whole.task_own.rss_kib,
        verdict(whole_rss)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_jobspec_is_a_valid_service_job_of_n_small_tasks() {
        let hcl = agent_jobspec(100);
        let opts = controlplane::jobspec::ParseOptions::for_file("rss.nomad.hcl".to_string());
        let parsed = controlplane::jobspec::check_hcl(&hcl, &opts).unwrap();
        let job = parsed.job;
        assert_eq!(job.id, AGENT_JOB);
        assert_eq!(job.job_type, controlplane::model::JobType::Service);
        let group = job.group("g").unwrap();
        assert_eq!(group.count, 100);
        let resources = group.tasks[0].resources.clone().unwrap();
        assert_eq!(resources.cpu, TASK_CPU_MHZ);
        assert_eq!(resources.memory_mb, TASK_MEMORY_MB);
    }

    #[test]
    fn per_task_is_the_growth_divided_by_the_tasks() {
        let m = |rss_kib, pss_kib| Memory {
            rss_kib,
            pss_kib,
            processes: 1,
        };
        let f = Figures {
            tasks: 100,
            idle: m(10_000, 8_000),
            loaded: m(60_000, 28_000),
            task_own: Memory::default(),
        };
        assert_eq!(f.per_task_rss(), 500.0);
        assert_eq!(f.per_task_pss(), 200.0);
        assert_eq!(verdict(f.per_task_rss()), "met");
        assert_eq!(verdict(1024.5), "missed");
        assert_eq!(verdict(1024.0), "met");
    }

    #[test]
    fn descendants_holds_each_process_once() {
        let me = i32::try_from(std::process::id()).unwrap();
        let all = descendants(&[me, me]);
        assert_eq!(all.iter().filter(|p| **p == me).count(), 1);
    }
}
