//! `cargo xtask chaos client [--cycles N] [--seed S]`: the long version of the client state
//! test's kill -9 loop, on a real node daemon.
//!
//! A persistent `noded agent -dev` (the harness's [`DevAgent`]: its own network namespace,
//! data dir and cgroup parent) runs three long-lived `exec` tasks and one that exits every
//! second and is restarted by its restart policy 200 ms later (the jobs of
//! [`noded_tests::client_checks`]). Then `N` cycles of: kill -9 of `noded agent`, restart on
//! the same data dir. A seeded generator picks each kill's moment: one cycle in three waits
//! until the restarting task has exited and not yet been started again (a kill in the middle
//! of a restart), the others kill after a random 0–1.2 s.
//!
//! At the end, once the agent has settled, it counts what the issue names:
//! - orphaned: processes of this run's tasks (`NOMAD_ALLOC_ID` in their environment) outside
//!   the cgroup of a live task;
//! - duplicated: second copies of a task in its cgroup;
//! - leaked cgroups: task cgroups under the agent's parent that belong to no live task;
//! - leaked mounts: mounts under the data dir that were not there before the kills;
//! - leaked netns: entries in `/run/netns` named after one of this run's allocations (Nomad's
//!   naming; noded makes no network namespaces for tasks yet, so this must stay 0);
//! - tasks running, and restarts: the long-lived tasks on their first pid with 0 restarts,
//!   the flapping one restarted by its policy, its count going on across the kills.
//!
//! Prints `RESULT chaos-client …`; exits non-zero when any orphan, duplicate or leak is
//! found, or a long-lived task was restarted or changed pid.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use noded_tests::client_checks::{
    event_pids, restarts, run_job, running, shells, task_cgroup_names, FLAPPY, STEADY,
};
use noded_tests::{allocs_of, AgentOptions, DevAgent};

use crate::raft_cluster::Rng;

/// How long the flapping task may take to exit when a kill is to land mid-restart.
const RESTART_WAIT: Duration = Duration::from_secs(3);
/// How often the task's cgroup is polled for that.
const RESTART_POLL: Duration = Duration::from_millis(5);
/// The longest random delay before a kill (about one cycle of the flapping task).
const MAX_DELAY_MS: u64 = 1200;

#[derive(Debug, Clone)]
struct Options {
    cycles: usize,
    seed: u64,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let usage = "usage: cargo xtask chaos client [--cycles N] [--seed S]";
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let mut options = Options { cycles: 100, seed };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let text = it
            .next()
            .with_context(|| format!("{flag} needs a value; {usage}"))?;
        let number = text
            .parse::<u64>()
            .with_context(|| format!("{flag} {text:?}: expected a number; {usage}"))?;
        match flag.as_str() {
            "--cycles" => {
                options.cycles = usize::try_from(number)?;
                if !(1..=100_000).contains(&options.cycles) {
                    bail!("--cycles must be 1 to 100000 (default 100)");
                }
            }
            "--seed" => options.seed = number,
            other => bail!("unknown option {other:?}; {usage}"),
        }
    }
    Ok(options)
}

/// What the end state holds.
#[derive(Debug, Default)]
struct Counts {
    orphaned: usize,
    duplicated: usize,
    leaked_cgroups: usize,
    leaked_mounts: usize,
    leaked_netns: usize,
    tasks_running: usize,
    steady_restarts: u64,
    steady_pid_changes: usize,
    flappy_restarts: u64,
    supervisor_changes: usize,
    details: Vec<String>,
}

impl Counts {
    fn failed(&self) -> bool {
        self.orphaned > 0
            || self.duplicated > 0
            || self.leaked_cgroups > 0
            || self.leaked_mounts > 0
            || self.leaked_netns > 0
            || self.steady_restarts > 0
            || self.steady_pid_changes > 0
            || self.supervisor_changes > 0
            || self.tasks_running < 4
    }
}

/// `args` starts with `client`.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let options = parse(args.get(1..).unwrap_or_default())?;
    if !nix::unistd::geteuid().is_root() {
        bail!("chaos client needs root (cgroups, mounts, namespaces): run it as root");
    }
    let binaries = crate::release::release_binaries(cfg!(debug_assertions))?;
    if cfg!(debug_assertions) {
        return crate::release::reexec_release(&binaries, "chaos", args);
    }
    eprintln!(
        "==> chaos client: {} kill -9 cycles, seed {} (rerun with --seed {} for the same kills); noded {}",
        options.cycles,
        options.seed,
        options.seed,
        binaries.noded.display()
    );
    let began = Instant::now();
    let mut agent = DevAgent::start(AgentOptions {
        persistent: true,
        ..Default::default()
    });
    run_job(&agent, "steady", STEADY);
    run_job(&agent, "flappy", FLAPPY);
    let steady = agent.wait_for(
        "3 running steady allocations",
        Duration::from_secs(60),
        |a| {
            let r = running(a, "steady");
            (r.len() == 3 && r.values().all(|x| event_pids(x, "t").len() == 1)).then_some(r)
        },
    );
    let pids: BTreeMap<String, i32> = steady
        .iter()
        .filter_map(|(id, a)| Some((id.clone(), *event_pids(a, "t").iter().next()?)))
        .collect();
    let flappy_id = agent.wait_for(
        "a running flappy allocation",
        Duration::from_secs(60),
        |a| running(a, "flappy").into_keys().next(),
    );
    let flappy_task = format!("{flappy_id}.f");
    agent.wait_for("flappy restarting", Duration::from_secs(30), |a| {
        (restarts(a, &flappy_id, "f") >= 1).then_some(())
    });
    let flappy_before = restarts(&agent, &flappy_id, "f");
    let mounts_before: BTreeSet<String> = agent.mounts().into_iter().collect();
    let supervisor = agent.supervisor_pid;
    eprintln!(
        "==> steady tasks on pids {:?}, flappy {flappy_id} restarted {flappy_before} times; supervisor {supervisor:?}",
        pids.values().collect::<Vec<_>>()
    );

    let mut rng = Rng::new(options.seed);
    let mut mid_restart = 0usize;
    let mut supervisor_changes = 0usize;
    for cycle in 0..options.cycles {
        if rng.below(3) == 0 {
            // Kill while the flapping task is down, between its exit and its restart.
            let deadline = Instant::now() + RESTART_WAIT;
            while Instant::now() < deadline {
                if shells(&agent, &flappy_task).is_empty() {
                    mid_restart += 1;
                    break;
                }
                std::thread::sleep(RESTART_POLL);
            }
        } else {
            std::thread::sleep(Duration::from_millis(rng.below(MAX_DELAY_MS + 1)));
        }
        agent.kill9();
        agent.launch();
        if agent.supervisor_pid != supervisor {
            supervisor_changes += 1;
            eprintln!(
                "cycle {cycle}: the supervisor changed: {supervisor:?} → {:?}",
                agent.supervisor_pid
            );
        }
        if (cycle + 1) % 10 == 0 || cycle + 1 == options.cycles {
            eprintln!(
                "    {}/{} kills ({mid_restart} mid-restart), {:.0} s",
                cycle + 1,
                options.cycles,
                began.elapsed().as_secs_f64()
            );
        }
    }

    // Settle: the long-lived tasks reattached, the flapping one restarting on.
    agent.wait_for(
        "the steady tasks reattached after the last restart",
        Duration::from_secs(60),
        |a| {
            let r = running(a, "steady");
            (r.len() == 3 && r.values().all(|x| !event_pids(x, "t").is_empty())).then_some(())
        },
    );
    // Not a panic when it does not: a task the kills stopped is a finding to count.
    // Restarts counted after the last kill, so that a task the kills stopped shows.
    let flappy_after_kills = restarts(&agent, &flappy_id, "f");
    let deadline = Instant::now() + Duration::from_secs(30);
    let flappy_restarting = loop {
        if restarts(&agent, &flappy_id, "f") > flappy_after_kills + 1 {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut counts = count(&agent, &pids, &flappy_id, &mounts_before)?;
    if !flappy_restarting || counts.tasks_running < 4 {
        let a = noded_tests::alloc(&agent, &flappy_id);
        counts.details.push(format!(
            "the flapping task stopped restarting after the kills: the servers hold its allocation as {} (desired {}), restarts {}",
            a["ClientStatus"], a["DesiredStatus"], a["TaskStates"]["f"]["Restarts"]
        ));
    }
    counts.supervisor_changes = supervisor_changes;
    counts.flappy_restarts = restarts(&agent, &flappy_id, "f");

    println!();
    println!(
        "{} kill -9 cycles ({mid_restart} in the middle of a task restart) in {:.0} s, seed {}",
        options.cycles,
        began.elapsed().as_secs_f64(),
        options.seed
    );
    for (what, n) in [
        ("orphaned task processes", counts.orphaned),
        ("duplicated task processes", counts.duplicated),
        ("leaked task cgroups", counts.leaked_cgroups),
        ("leaked mounts", counts.leaked_mounts),
        ("leaked netns (/run/netns)", counts.leaked_netns),
        ("tasks running (of 4)", counts.tasks_running),
        ("long-lived tasks: pid changes", counts.steady_pid_changes),
        ("supervisor replaced", counts.supervisor_changes),
    ] {
        println!("  {what:<32} {n}");
    }
    println!(
        "  {:<32} {} (0 wanted: never restarted)",
        "long-lived tasks: restarts", counts.steady_restarts
    );
    println!(
        "  {:<32} {} (from {flappy_before} before the kills; restart policy: attempts 10000, delay 200ms)",
        "flapping task: restarts", counts.flappy_restarts
    );
    for d in &counts.details {
        println!("  ! {d}");
    }
    println!(
        "RESULT chaos-client cycles={} mid_restart_kills={mid_restart} orphaned={} duplicated={} \
         leaked_cgroups={} leaked_mounts={} leaked_netns={} tasks_running={} steady_restarts={} \
         steady_pid_changes={} flappy_restarts={} flappy_restarts_during={} seed={}",
        options.cycles,
        counts.orphaned,
        counts.duplicated,
        counts.leaked_cgroups,
        counts.leaked_mounts,
        counts.leaked_netns,
        counts.tasks_running,
        counts.steady_restarts,
        counts.steady_pid_changes,
        counts.flappy_restarts,
        counts.flappy_restarts.saturating_sub(flappy_before),
        options.seed
    );
    if counts.failed() {
        bail!(
            "the node daemon left something behind or lost a task after {} kill -9s (seed {}): see the counts above",
            options.cycles,
            options.seed
        );
    }
    Ok(())
}

/// The value of `NOMAD_ALLOC_ID` in a process's environment.
fn alloc_id_of(pid: i32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ
        .split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"NOMAD_ALLOC_ID="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

fn count(
    agent: &DevAgent,
    pids: &BTreeMap<String, i32>,
    flappy_id: &str,
    mounts_before: &BTreeSet<String>,
) -> anyhow::Result<Counts> {
    let mut c = Counts::default();
    let live: BTreeSet<String> = pids
        .keys()
        .map(|id| format!("{id}.t"))
        .chain([format!("{flappy_id}.f")])
        .collect();
    let every_alloc: BTreeSet<String> = ["steady", "flappy"]
        .iter()
        .flat_map(|job| allocs_of(agent, job))
        .filter_map(|a| a["ID"].as_str().map(str::to_string))
        .collect();

    // Long-lived tasks: same pid, no restart, one copy.
    let steady = running(agent, "steady");
    for (id, pid) in pids {
        let Some(a) = steady.get(id) else {
            c.steady_pid_changes += 1;
            c.details
                .push(format!("steady allocation {id} is no longer running"));
            continue;
        };
        let seen = event_pids(a, "t");
        if seen != BTreeSet::from([*pid]) {
            c.steady_pid_changes += 1;
            c.details
                .push(format!("{id}.t: pids {seen:?}, started on {pid}"));
        }
        c.steady_restarts += a["TaskStates"]["t"]["Restarts"].as_u64().unwrap_or(0);
        let copies = shells(agent, &format!("{id}.t"));
        if copies.len() == 1 {
            c.tasks_running += 1;
        }
        if copies.len() > 1 {
            c.duplicated += copies.len() - 1;
            c.details
                .push(format!("{id}.t: {} copies {copies:?}", copies.len()));
        }
    }
    // The flapping task: at most one copy at any time (sampled over a second), and running.
    let flappy_task = format!("{flappy_id}.f");
    let mut seen_running = false;
    let mut most = 0;
    for _ in 0..20 {
        let n = shells(agent, &flappy_task).len();
        seen_running |= n >= 1;
        most = most.max(n);
        std::thread::sleep(Duration::from_millis(50));
    }
    if seen_running {
        c.tasks_running += 1;
    }
    if most > 1 {
        c.duplicated += most - 1;
        c.details
            .push(format!("{flappy_task}: {most} copies at once"));
    }

    // Task cgroups of no live task.
    let leaked: Vec<String> = task_cgroup_names(agent)
        .into_iter()
        .filter(|n| !live.contains(n))
        .collect();
    c.leaked_cgroups = leaked.len();
    if !leaked.is_empty() {
        c.details.push(format!("leaked cgroups: {leaked:?}"));
    }

    // Processes of this run's tasks outside a live task's cgroup (each process's own
    // /proc/PID/cgroup, so that a task's child started during the scan is judged rightly).
    let live_paths: Vec<String> = live
        .iter()
        .map(|t| format!("/{}/{t}", agent.cgroup_parent))
        .collect();
    for pid in all_pids() {
        let Some(alloc) = alloc_id_of(pid) else {
            continue;
        };
        if !every_alloc.contains(&alloc) {
            continue;
        }
        // A process that exited meanwhile has no cgroup file: not an orphan.
        let Ok(cgroups) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            continue;
        };
        let in_live = cgroups
            .lines()
            .any(|l| live_paths.iter().any(|p| l.ends_with(p.as_str())));
        if !in_live {
            {
                c.orphaned += 1;
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                c.details.push(format!(
                    "orphan pid {pid} of allocation {alloc}: {}",
                    String::from_utf8_lossy(&cmd).replace('\0', " ")
                ));
            }
        }
    }

    // Mounts that appeared during the kills.
    let after: BTreeSet<String> = agent.mounts().into_iter().collect();
    let new: Vec<&String> = after.difference(mounts_before).collect();
    c.leaked_mounts = new.len();
    if !new.is_empty() {
        c.details.push(format!("new mounts: {new:?}"));
    }

    // Network namespaces named after this run's allocations.
    let netns: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| every_alloc.iter().any(|id| n.contains(id.as_str())))
        .collect();
    c.leaked_netns = netns.len();
    if !netns.is_empty() {
        c.details.push(format!("network namespaces: {netns:?}"));
    }
    Ok(c)
}
