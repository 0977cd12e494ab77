//! `cargo xtask bench start`: `/bin/true` through noded's real start path, crun and runc in
//! the same run, back to back and sporadic.
//!
//! - Validation first (not timed): each of noded, crun and runc must print a marker from
//!   inside its sandbox and report `/bin/false` as exit code 1, so a failing peer is never
//!   measured; every timed run must exit 0.
//! - Back to back: blocks of [`BLOCK`] runs per tool, rotating noded → floor → crun → runc,
//!   so drift of the machine's load hits all of them alike.
//! - The floor (module `floor`) is the same task's kernel steps alone, in this process:
//!   what is left of noded's time once its supervisor, logs and directories are taken away.
//! - Sporadic: every run (of every tool, and of the attach probe) follows `--gap-ms` of
//!   idle; tools rotate run by run.
//!
//! - `--netns`: every allocation of every tool gets a network namespace of its own: noded
//!   makes it in its start path as the client's network hook does for `mode = "none"`
//!   (`netns::namespace::create` + `lo` up, the task joins it; deleted after the task, before
//!   "cleaned up"), the floor makes the same calls, crun and runc get `{"type": "network"}`.
//!   Not in it: the client's state record of the namespace and its `/etc/hosts` and
//!   `resolv.conf` (bridge mode's veth, address and port mappings are `bench net`'s).
//!
//! Goals (issue 3): noded's full run p50 ≤ 0.25× crun's p50 and noded's p99 ≤ 0.5× crun's
//! p50, in both modes. They are reported as met or missed with the figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use controlplane::model::Job;

use super::floor::Floor;
use super::noded_path::{job, Finished, NodedPath, Phases};
use super::oci::{Bundles, OciRuntime};
use super::probe::{AttachProbe, JoinFile};
use super::stats::{num, ratio, Samples};
use super::workdir::{remove_cgroups_named, BenchDir};
use super::Binaries;

/// Consecutive runs of one tool in the back-to-back phase.
const BLOCK: usize = 10;
/// Untimed runs of each tool before measuring.
const WARMUP: usize = 5;
/// Goal: noded's full-run p50 against crun's p50.
const GOAL_FULL: f64 = 0.25;
/// Goal: noded's full-run p99 against crun's p50.
const GOAL_P99: f64 = 0.5;

#[derive(Debug, Clone)]
pub struct StartOptions {
    pub runs: usize,
    pub gap_ms: u64,
    /// Only noded and the floor, no peers, no goal verdict: for profiling noded's own path.
    /// Back to back, or sporadic when `--gap-ms` is given.
    pub noded_only: bool,
    /// Whether `--gap-ms` was given.
    pub gap_given: bool,
    /// `--netns`: each allocation (noded, floor) and container (crun, runc) in a network
    /// namespace of its own.
    pub netns: bool,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            runs: 100,
            gap_ms: 300,
            noded_only: false,
            gap_given: false,
            netns: false,
        }
    }
}

/// Everything measured in one mode.
#[derive(Debug, Default)]
struct Mode {
    exec: Samples,
    full: Samples,
    phases: [Samples; 9],
    floor_exec: Samples,
    floor_full: Samples,
    /// `Hello` round trips to the supervisor, one after each floor run.
    round_trip: Samples,
    crun: Samples,
    runc: Samples,
}

impl Mode {
    fn record_floor(&mut self, noded: &NodedPath, floor: &mut Floor) -> anyhow::Result<()> {
        let (exec, full) = floor.run()?;
        self.floor_exec.push(exec);
        self.floor_full.push(full);
        self.round_trip.push(noded.round_trip()?);
        Ok(())
    }

    fn record(&mut self, f: &Finished) {
        self.exec.push(f.exec);
        self.full.push(f.full);
        for (series, value) in self.phases.iter_mut().zip(f.phases.values()) {
            series.push(value);
        }
    }

    fn ratio_vs_crun(&self) -> f64 {
        ratio(self.full.p50(), self.crun.p50())
    }

    fn p99_ratio_vs_crun(&self) -> f64 {
        ratio(self.full.p99(), self.crun.p50())
    }

    fn ratio_vs_runc(&self) -> f64 {
        ratio(self.full.p50(), self.runc.p50())
    }

    fn print_floor(&self) {
        println!("  floor  cgroup → exec'd        {}", self.floor_exec);
        println!("  floor  cgroup → removed       {}", self.floor_full);
        println!(
            "    (the kernel steps alone, in-process: noded − floor = {:.3} ms at p50)",
            self.full.p50() - self.floor_full.p50()
        );
        println!("  noded  supervisor round trip  {}", self.round_trip);
    }

    fn print(&self, title: &str) {
        println!("{title}");
        println!("  noded  received → exec'd      {}", self.exec);
        println!("  noded  received → cleaned up  {}", self.full);
        for (name, series) in Phases::NAMES.iter().zip(&self.phases) {
            println!("    {name:<26} {series}");
        }
        self.print_floor();
        println!("  crun   run (create…delete)    {}", self.crun);
        println!("  runc   run (create…delete)    {}", self.runc);
        println!(
            "  ratios (p50 / p50): noded/crun {:.3}, noded/runc {:.3}; noded p99 / crun p50 {:.3}; floor/crun {:.3}",
            self.ratio_vs_crun(),
            self.ratio_vs_runc(),
            self.p99_ratio_vs_crun(),
            ratio(self.floor_full.p50(), self.crun.p50())
        );
    }
}

/// Removes cgroups named after this run (left by a runtime that failed half way).
struct CgroupSweep(String);

impl Drop for CgroupSweep {
    fn drop(&mut self) {
        remove_cgroups_named(&self.0);
    }
}

pub fn run(options: &StartOptions, binaries: &Binaries) -> anyhow::Result<()> {
    let runs = options.runs;
    let gap = Duration::from_millis(options.gap_ms);
    let load_start = load_average();
    // Declared first, dropped last: the directory outlives everything mounted beneath it.
    let dir = BenchDir::create("start")?;
    let prefix = dir.prefix().to_string();
    let _sweep = CgroupSweep(prefix.clone());

    let mut noded = NodedPath::start(&binaries.noded, &dir.subdir("noded")?, &prefix)?;
    let truth = job("bench-true", "/bin/true", &[])?;
    let mut floor = Floor::new(&noded, &truth, dir.subdir("floor")?, &prefix)?;
    if options.netns {
        noded = noded.with_netns(&format!("{prefix}-n"));
        floor = floor.with_netns(&format!("{prefix}-f"));
    }
    if options.noded_only {
        let gap = options.gap_given.then_some(gap);
        return run_noded_only(&noded, &mut floor, &truth, runs, gap, options.netns);
    }
    let bundles = Bundles::create(&dir.subdir("oci")?, options.netns)?;
    let mut crun = OciRuntime::spawn(
        &binaries.xtask,
        "crun",
        &dir.path().join("oci/crun-state"),
        true,
        &prefix,
    )?;
    let mut runc = OciRuntime::spawn(
        &binaries.xtask,
        "runc",
        &dir.path().join("oci/runc-state"),
        false,
        &prefix,
    )?;
    let probe = AttachProbe::create(&format!("{prefix}-probe"))?;

    eprintln!("==> validating noded, crun and runc (marker output, exit codes)");
    noded.validate()?;
    floor.validate()?;
    crun.validate(&bundles)?;
    runc.validate(&bundles)?;
    for _ in 0..WARMUP {
        noded.run(&truth)?;
        floor.run()?;
        crun.run_true(&bundles)?;
        runc.run_true(&bundles)?;
    }

    eprintln!("==> back to back: {runs} runs each, in blocks of {BLOCK}");
    let mut b2b = Mode::default();
    let mut done = 0;
    while done < runs {
        let n = BLOCK.min(runs - done);
        for _ in 0..n {
            b2b.record(&noded.run(&truth)?);
        }
        for _ in 0..n {
            b2b.record_floor(&noded, &mut floor)?;
        }
        for _ in 0..n {
            b2b.crun.push(crun.run_true(&bundles)?);
        }
        for _ in 0..n {
            b2b.runc.push(runc.run_true(&bundles)?);
        }
        done += n;
    }

    let slots = runs * if probe.is_some() { 6 } else { 4 };
    eprintln!(
        "==> sporadic: {runs} runs each, {} ms apart (about {:.0} s)",
        options.gap_ms,
        (slots as f64) * gap.as_secs_f64()
    );
    let mut sporadic = Mode::default();
    let mut attach_procs = Samples::default();
    let mut attach_tasks = Samples::default();
    let phase = Instant::now();
    for i in 0..runs {
        std::thread::sleep(gap);
        sporadic.record(&noded.run(&truth)?);
        std::thread::sleep(gap);
        sporadic.record_floor(&noded, &mut floor)?;
        std::thread::sleep(gap);
        sporadic.crun.push(crun.run_true(&bundles)?);
        std::thread::sleep(gap);
        sporadic.runc.push(runc.run_true(&bundles)?);
        if let Some(probe) = &probe {
            std::thread::sleep(gap);
            attach_procs.push(probe.measure(JoinFile::Procs)?);
            std::thread::sleep(gap);
            attach_tasks.push(probe.measure(JoinFile::Tasks)?);
        }
        if (i + 1) % 20 == 0 {
            eprintln!(
                "    {}/{runs} ({:.0} s)",
                i + 1,
                phase.elapsed().as_secs_f64()
            );
        }
    }

    println!();
    println!(
        "start bench: /bin/true, {runs} runs per tool and mode, sporadic gap {} ms{}",
        options.gap_ms,
        if options.netns {
            ", each with a network namespace of its own (--netns)"
        } else {
            ""
        }
    );
    let load_end = load_average();
    println!("(noded: release build, real supervisor over its socket; times in ms)");
    println!(
        "(1-minute load average {load_start:.2} at the start, {load_end:.2} at the end, on {} cpus: absolute times move with it, compare the ratios)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    b2b.print("back to back");
    sporadic.print(&format!("sporadic ({} ms apart)", options.gap_ms));
    if probe.is_some() {
        println!("v1 cgroup attach of a fresh process into memory+cpu+pids (sporadic)");
        println!("  via cgroup.procs (global rwsem)  {attach_procs}");
        println!("  via tasks (noded's join)         {attach_tasks}");
        if attach_procs.p50() < 1.0 {
            println!("  (no grace-period wait via cgroup.procs on this kernel right now: `favordynmods` was enabled since boot, or other cgroup writers kept the rwsem switched)");
        }
    } else {
        println!("v1 cgroup attach probe: skipped (pure cgroup v2 host: tasks are cloned into their cgroup)");
    }
    if options.netns {
        println!("network namespace: every run made one (noded, floor: netns::namespace::create + lo up, joined by the task, deleted before \"cleaned up\"; crun, runc: {{\"type\": \"network\"}})");
    } else {
        println!("network namespace: none (the host's network); run with --netns for the same runs each with a namespace of its own");
    }

    let full_ok = [b2b.ratio_vs_crun(), sporadic.ratio_vs_crun()]
        .iter()
        .all(|r| *r <= GOAL_FULL);
    let p99_ok = [b2b.p99_ratio_vs_crun(), sporadic.p99_ratio_vs_crun()]
        .iter()
        .all(|r| *r <= GOAL_P99);
    let verdict = |ok: bool| if ok { "met" } else { "missed" };
    println!(
        "goal: full run ≤ {GOAL_FULL}× crun (p50): {} (back to back {:.3}, sporadic {:.3})",
        verdict(full_ok),
        b2b.ratio_vs_crun(),
        sporadic.ratio_vs_crun()
    );
    println!(
        "goal: p99 ≤ {GOAL_P99}× crun (p50): {} (back to back {:.3}, sporadic {:.3})",
        verdict(p99_ok),
        b2b.p99_ratio_vs_crun(),
        sporadic.p99_ratio_vs_crun()
    );

    let mut result = vec![
        format!("runs={runs}"),
        format!("gap_ms={}", options.gap_ms),
        format!("exec_p50_ms={}", num(b2b.exec.p50())),
        format!("exec_p99_ms={}", num(b2b.exec.p99())),
        format!("p50_ms={}", num(b2b.full.p50())),
        format!("p90_ms={}", num(b2b.full.p90())),
        format!("p99_ms={}", num(b2b.full.p99())),
        format!("crun_p50_ms={}", num(b2b.crun.p50())),
        format!("crun_p99_ms={}", num(b2b.crun.p99())),
        format!("runc_p50_ms={}", num(b2b.runc.p50())),
        format!("ratio_vs_crun={}", num(b2b.ratio_vs_crun())),
        format!("p99_ratio_vs_crun={}", num(b2b.p99_ratio_vs_crun())),
        format!("ratio_vs_runc={}", num(b2b.ratio_vs_runc())),
        format!("floor_p50_ms={}", num(b2b.floor_full.p50())),
        format!(
            "floor_ratio_vs_crun={}",
            num(ratio(b2b.floor_full.p50(), b2b.crun.p50()))
        ),
        format!("round_trip_p50_ms={}", num(b2b.round_trip.p50())),
        format!("sporadic_exec_p50_ms={}", num(sporadic.exec.p50())),
        format!("sporadic_exec_p99_ms={}", num(sporadic.exec.p99())),
        format!("sporadic_p50_ms={}", num(sporadic.full.p50())),
        format!("sporadic_p90_ms={}", num(sporadic.full.p90())),
        format!("sporadic_p99_ms={}", num(sporadic.full.p99())),
        format!("sporadic_crun_p50_ms={}", num(sporadic.crun.p50())),
        format!("sporadic_runc_p50_ms={}", num(sporadic.runc.p50())),
        format!("sporadic_ratio_vs_crun={}", num(sporadic.ratio_vs_crun())),
        format!("sporadic_floor_p50_ms={}", num(sporadic.floor_full.p50())),
        format!(
            "sporadic_floor_ratio_vs_crun={}",
            num(ratio(sporadic.floor_full.p50(), sporadic.crun.p50()))
        ),
        format!(
            "sporadic_p99_ratio_vs_crun={}",
            num(sporadic.p99_ratio_vs_crun())
        ),
    ];
    if probe.is_some() {
        result.extend([
            format!("attach_procs_p50_ms={}", num(attach_procs.p50())),
            format!("attach_procs_p90_ms={}", num(attach_procs.p90())),
            format!("attach_tasks_p50_ms={}", num(attach_tasks.p50())),
            format!("attach_tasks_p90_ms={}", num(attach_tasks.p90())),
        ]);
    }
    result.extend([
        format!("load_start={load_start:.2}"),
        format!("load_end={load_end:.2}"),
        format!("netns={}", if options.netns { "own" } else { "host" }),
        format!("goal_full={}", verdict(full_ok)),
        format!("goal_p99={}", verdict(p99_ok)),
    ]);
    println!("RESULT start {}", result.join(" "));
    Ok(())
}

/// `--noded-only`: noded's path and the floor, with noded's phases; no peers, no verdict.
/// Back to back in blocks, or with `gap` of idle before every run (alternating).
fn run_noded_only(
    noded: &NodedPath,
    floor: &mut Floor,
    truth: &Arc<Job>,
    runs: usize,
    gap: Option<Duration>,
    netns: bool,
) -> anyhow::Result<()> {
    eprintln!("==> validating noded (marker output, exit codes)");
    noded.validate()?;
    floor.validate()?;
    for _ in 0..WARMUP {
        noded.run(truth)?;
        floor.run()?;
    }
    let mut b2b = Mode::default();
    match gap {
        Some(gap) => {
            eprintln!(
                "==> sporadic: {runs} noded and floor runs, {} ms apart (peers skipped)",
                gap.as_millis()
            );
            for _ in 0..runs {
                std::thread::sleep(gap);
                b2b.record(&noded.run(truth)?);
                std::thread::sleep(gap);
                b2b.record_floor(noded, floor)?;
            }
        }
        None => {
            eprintln!("==> back to back: {runs} noded and floor runs (peers skipped)");
            let mut done = 0;
            while done < runs {
                let n = BLOCK.min(runs - done);
                for _ in 0..n {
                    b2b.record(&noded.run(truth)?);
                }
                for _ in 0..n {
                    b2b.record_floor(noded, floor)?;
                }
                done += n;
            }
        }
    }
    println!();
    let how = match gap {
        Some(gap) => format!("{} ms apart", gap.as_millis()),
        None => "back to back".to_string(),
    };
    println!("start bench, noded only: /bin/true, {runs} runs {how} (times in ms)");
    println!("  noded  received → exec'd      {}", b2b.exec);
    println!("  noded  received → cleaned up  {}", b2b.full);
    for (name, series) in Phases::NAMES.iter().zip(&b2b.phases) {
        println!("    {name:<26} {series}");
    }
    b2b.print_floor();
    println!(
        "RESULT start runs={runs} exec_p50_ms={} p50_ms={} p99_ms={} floor_p50_ms={} round_trip_p50_ms={} netns={} peers=skipped goal_full=not_measured goal_p99=not_measured",
        num(b2b.exec.p50()),
        num(b2b.full.p50()),
        num(b2b.full.p99()),
        num(b2b.floor_full.p50()),
        num(b2b.round_trip.p50()),
        if netns { "own" } else { "host" }
    );
    Ok(())
}

/// The 1-minute load average (NaN when unreadable).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}
