//! `cargo xtask bench logs`: the supervisor's log write path on both backends — plain tokio
//! (`write(2)` on the runtime thread) and tokio-uring — in one run, ending in
//! `RESULT logs uring_mb_s=… tokio_mb_s=… uring_cpu_s=… tokio_cpu_s=… ratio=… chosen=…`.
//!
//! What runs is the supervisor's own code: a child process (this executable again, told so by
//! an environment variable) builds `SupervisorRuntime` for one backend and runs
//! `logsink::pump` for every task, from a pipe (a FIFO) into a rotating `LogWriter` set, exactly
//! as `noded supervisor` does. The tasks are threads of this process, one per pipe, writing
//! whole lines with one `write(2)` each, like a line-buffered program. A separate process
//! makes the writer's CPU time (`getrusage`, all its threads, io_uring's kernel workers
//! included) its own, not the producers'.
//!
//! - Throughput: for 1, 16 and 100 tasks and 100 B and 4 KiB lines, a fixed total volume is
//!   pumped as fast as the producers can write; MB/s and lines/s from the writer's start to
//!   its last byte, and the writer's CPU seconds. Rounds alternate which backend goes first.
//! - Latency: the same shapes at a fixed, modest rate; each line carries the time it was
//!   written into the pipe, and a reader thread (inotify on the log directory) notes when it
//!   is in the file. The figure includes the reader's own wake-up, the same for both.
//!
//! Files are 1 024 000 bytes (a multiple of both line sizes, so lines never straddle two
//! files), 3 kept per stream. After every run each stream is checked: every byte arrived.
//!
//! Owns this measurement only; changes nothing outside its temporary directory.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use noded::supervisor::logsink::{self, LogBackend, LogSink, SupervisorRuntime};
use noded::supervisor::logwriter::LogWriter;
use serde_json::json;

/// Set (to the child's JSON configuration) in the writer child's environment.
const CHILD_ENV: &str = "NODED_BENCH_LOGS_CHILD";
/// Rotation size: 102 400 × 10, a multiple of 100 and of 4096.
const MAX_FILE_SIZE: u64 = 1_024_000;
/// Files kept per stream.
const MAX_FILES: u32 = 3;
const TASK_COUNTS: [usize; 3] = [1, 16, 100];
const LINE_SIZES: [usize; 2] = [100, 4096];
const BACKENDS: [LogBackend; 2] = [LogBackend::Uring, LogBackend::Tokio];
/// Paced lines per second (all tasks together) for the latency runs, by line size: 2 MB/s of
/// short lines, 10 MB/s of long ones — busy logging, well below what either backend sustains.
const LATENCY_RATE: [(usize, u64); 2] = [(100, 20_000), (4096, 2_500)];
const LATENCY_RUN: Duration = Duration::from_millis(1500);

const USAGE: &str =
    "usage: cargo xtask bench logs [--mib N] [--rounds N] [--dir PATH] [--no-latency]
  --mib N       volume per throughput run in MiB (default 128)
  --rounds N    throughput rounds per shape and backend, medians reported (default 5)
  --dir PATH    where the temporary log directories go (default: the temp dir; use the
                filesystem of the agent's data_dir to measure that one)
  --no-latency  skip the paced latency runs";

#[derive(Debug)]
struct Options {
    volume: u64,
    rounds: usize,
    dir: PathBuf,
    latency: bool,
}

fn parse_options(args: &[String]) -> anyhow::Result<Options> {
    let mut opts = Options {
        volume: 128 << 20,
        rounds: 5,
        dir: std::env::temp_dir(),
        latency: true,
    };
    let mut args = args.iter().map(String::as_str).peekable();
    if args.peek() == Some(&"logs") {
        args.next();
    }
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg {
            "--mib" => {
                let v = value("--mib")?;
                let mib: u64 = v
                    .parse()
                    .ok()
                    .filter(|m| (1..=65_536).contains(m))
                    .with_context(|| {
                        format!("--mib {v:?}: give a whole number of MiB, 1 to 65536")
                    })?;
                opts.volume = mib << 20;
            }
            "--rounds" => {
                let v = value("--rounds")?;
                opts.rounds = v
                    .parse()
                    .ok()
                    .filter(|r| (1..=100).contains(r))
                    .with_context(|| format!("--rounds {v:?}: give a number from 1 to 100"))?;
            }
            "--dir" => opts.dir = PathBuf::from(value("--dir")?),
            "--no-latency" => opts.latency = false,
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if !opts.dir.is_dir() {
        bail!("--dir {}: not a directory", opts.dir.display());
    }
    Ok(opts)
}

/// Runs the bench (or, in the writer child, the writer).
pub fn run(args: &[String]) -> anyhow::Result<()> {
    if let Ok(config) = std::env::var(CHILD_ENV) {
        return writer_child(&config);
    }
    let opts = parse_options(args)?;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "logs bench: kernel {}, {} cpus, logs under {}, {} MiB per run, {} rounds, \
         files of {MAX_FILE_SIZE} B × {MAX_FILES}",
        kernel.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        opts.dir.display(),
        opts.volume >> 20,
        opts.rounds
    );

    let mut throughput: HashMap<(usize, usize, LogBackend), Vec<Run>> = HashMap::new();
    let mut uring_missing = false;
    for round in 0..opts.rounds {
        for &tasks in &TASK_COUNTS {
            for &line in &LINE_SIZES {
                let mut order = BACKENDS;
                if round % 2 == 1 {
                    order.reverse();
                }
                for backend in order {
                    let shape = Shape {
                        backend,
                        tasks,
                        line,
                        lines_per_task: (opts.volume / (tasks as u64 * line as u64)).max(1),
                        pace: None,
                    };
                    let run = measure(&opts.dir, &shape)?;
                    uring_missing |= run.backend != backend;
                    throughput
                        .entry((tasks, line, backend))
                        .or_default()
                        .push(run);
                }
            }
        }
    }
    if uring_missing {
        println!(
            "io_uring is unavailable here: the uring runs fell back to plain tokio \
             (the supervisor logs why at start)"
        );
    }

    println!();
    println!(
        "throughput (medians of {} rounds; CPU = the writer process's user+system time)",
        opts.rounds
    );
    println!(
        "{:>5} {:>6} {:>6} {:>9} {:>11} {:>8} {:>11}",
        "tasks", "line", "writer", "MB/s", "lines/s", "cpu s", "cpu µs/MB"
    );
    for &tasks in &TASK_COUNTS {
        for &line in &LINE_SIZES {
            let mut mb_s = [0.0; 2];
            for (i, backend) in BACKENDS.iter().enumerate() {
                let runs = throughput
                    .get(&(tasks, line, *backend))
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                let mbs = median(runs.iter().map(Run::mb_s));
                let cpu = median(runs.iter().map(|r| r.cpu_s));
                let bytes_mb = runs.first().map_or(f64::NAN, |r| r.bytes as f64 / 1e6);
                mb_s[i] = mbs;
                println!(
                    "{tasks:>5} {:>6} {:>6} {mbs:>9.1} {:>11.0} {cpu:>8.3} {:>11.1}",
                    size_name(line),
                    backend.as_str(),
                    median(runs.iter().map(Run::lines_s)),
                    cpu / bytes_mb * 1e6,
                );
            }
            println!("{:>20} uring/tokio = {:.3}", "", mb_s[0] / mb_s[1]);
        }
    }

    if opts.latency {
        println!();
        println!(
            "latency, pipe write → bytes in the file (paced: {} lines/s of 100 B, {} of 4 KiB, {:?} each)",
            LATENCY_RATE[0].1, LATENCY_RATE[1].1, LATENCY_RUN
        );
        println!(
            "{:>5} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9}",
            "tasks", "line", "writer", "p50 ms", "p99 ms", "max ms", "seen"
        );
        for &tasks in &TASK_COUNTS {
            for &(line, rate) in &LATENCY_RATE {
                for backend in BACKENDS {
                    let lines_per_task =
                        ((rate as f64 * LATENCY_RUN.as_secs_f64()) / tasks as f64).ceil() as u64;
                    let shape = Shape {
                        backend,
                        tasks,
                        line,
                        lines_per_task,
                        pace: Some(Duration::from_secs_f64(tasks as f64 / rate as f64)),
                    };
                    let run = measure(&opts.dir, &shape)?;
                    let mut lat = run.latencies;
                    lat.sort_unstable();
                    println!(
                        "{tasks:>5} {:>6} {:>6} {:>9.3} {:>9.3} {:>9.3} {:>5}/{}",
                        size_name(line),
                        backend.as_str(),
                        percentile_ms(&lat, 50.0),
                        percentile_ms(&lat, 99.0),
                        percentile_ms(&lat, 100.0),
                        lat.len(),
                        lines_per_task * tasks as u64,
                    );
                }
            }
        }
    }

    // Each shape counts the same: the geometric mean of the shapes' medians (so the ratio is
    // the geometric mean of the per-shape ratios), and CPU summed over one pass of all shapes
    // (the same volume for both). The volume-weighted figure is printed too; it is dominated
    // by the slowest shapes (short lines), which is why it does not decide.
    let summary = |backend: LogBackend| {
        let (mut log_sum, mut cpu, mut bytes, mut secs) = (0.0, 0.0, 0.0, 0.0);
        for &tasks in &TASK_COUNTS {
            for &line in &LINE_SIZES {
                let runs = throughput
                    .get(&(tasks, line, backend))
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                log_sum += median(runs.iter().map(Run::mb_s)).ln();
                cpu += median(runs.iter().map(|r| r.cpu_s));
                for r in runs {
                    bytes += r.bytes as f64;
                    secs += r.elapsed.as_secs_f64();
                }
            }
        }
        let shapes = (TASK_COUNTS.len() * LINE_SIZES.len()) as f64;
        ((log_sum / shapes).exp(), cpu, bytes / 1e6 / secs)
    };
    let (uring_mb_s, uring_cpu, uring_by_volume) = summary(LogBackend::Uring);
    let (tokio_mb_s, tokio_cpu, tokio_by_volume) = summary(LogBackend::Tokio);
    let ratio = uring_mb_s / tokio_mb_s;
    println!();
    println!(
        "all shapes (geometric mean of medians): uring {uring_mb_s:.1} MB/s, tokio \
         {tokio_mb_s:.1} MB/s, uring/tokio {ratio:.3}; writer CPU for one pass: uring \
         {uring_cpu:.3} s, tokio {tokio_cpu:.3} s; by volume: uring {uring_by_volume:.1} MB/s, \
         tokio {tokio_by_volume:.1} MB/s ({:.3})",
        uring_by_volume / tokio_by_volume
    );
    // io_uring is kept only where it is at least as fast.
    let chosen = if !uring_missing && ratio >= 1.0 {
        "uring"
    } else {
        "tokio"
    };
    println!(
        "RESULT logs uring_mb_s={uring_mb_s:.1} tokio_mb_s={tokio_mb_s:.1} uring_cpu_s={uring_cpu:.3} \
         tokio_cpu_s={tokio_cpu:.3} ratio={ratio:.3} chosen={chosen}"
    );
    Ok(())
}

fn size_name(line: usize) -> String {
    if line.is_multiple_of(1024) {
        format!("{}KiB", line / 1024)
    } else {
        format!("{line}B")
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Nearest-rank percentile of sorted samples, in milliseconds.
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
}

/// One run's shape.
#[derive(Debug, Clone)]
struct Shape {
    backend: LogBackend,
    tasks: usize,
    line: usize,
    lines_per_task: u64,
    /// Time between two lines of one task; `None` = as fast as possible.
    pace: Option<Duration>,
}

/// What one run measured.
#[derive(Debug)]
struct Run {
    /// The backend the writer really ran (differs when io_uring fell back).
    backend: LogBackend,
    bytes: u64,
    lines: u64,
    elapsed: Duration,
    cpu_s: f64,
    latencies: Vec<Duration>,
}

impl Run {
    fn mb_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }

    fn lines_s(&self) -> f64 {
        self.lines as f64 / self.elapsed.as_secs_f64()
    }
}

/// The clock lines are stamped with (producers and the latency reader share this process).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn measure(base: &Path, shape: &Shape) -> anyhow::Result<Run> {
    let tmp = tempfile::Builder::new()
        .prefix("noded-bench-logs.")
        .tempdir_in(base)
        .with_context(|| format!("creating a temporary dir in {}", base.display()))?;
    let logs = tmp.path().join("logs");
    std::fs::create_dir(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let fifos: Vec<PathBuf> = (0..shape.tasks)
        .map(|i| tmp.path().join(format!("t{i}.pipe")))
        .collect();
    for f in &fifos {
        nix::unistd::mkfifo(f.as_path(), nix::sys::stat::Mode::from_bits_truncate(0o600))
            .with_context(|| format!("mkfifo {}", f.display()))?;
    }
    let config = json!({
        "backend": shape.backend.as_str(),
        "fifos": fifos,
        "logs": logs,
    });
    let exe = std::env::current_exe().context("finding this executable")?;
    let mut child = Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .env(CHILD_ENV, config.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting the writer {}", exe.display()))?;
    let result = drive(&mut child, shape, &fifos, &logs);
    if result.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().context("waiting for the writer")?;
    let run = result?;
    if !status.success() {
        bail!("the writer exited with {status}");
    }
    verify(&logs, shape)?;
    Ok(run)
}

/// Feeds the child, collects its figures (and the latency samples).
fn drive(
    child: &mut std::process::Child,
    shape: &Shape,
    fifos: &[PathBuf],
    logs: &Path,
) -> anyhow::Result<Run> {
    let mut out = BufReader::new(child.stdout.take().context("the writer's stdout")?);
    let mut stdin = child.stdin.take().context("the writer's stdin")?;
    let mut line = String::new();
    out.read_line(&mut line)
        .context("reading the writer's ready line")?;
    let backend: LogBackend = match line.trim().strip_prefix("ready ") {
        Some(b) => b.parse().map_err(|e: String| anyhow::anyhow!(e))?,
        None => bail!("the writer said {line:?}, not ready"),
    };
    // The writer holds the read ends open (non-blocking), so these opens do not wait.
    let pipes = fifos
        .iter()
        .map(|f| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(f)
                .with_context(|| format!("opening {}", f.display()))
        })
        .collect::<anyhow::Result<Vec<File>>>()?;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = match shape.pace {
        Some(_) => {
            let inotify = nix::sys::inotify::Inotify::init(
                nix::sys::inotify::InitFlags::IN_CLOEXEC
                    | nix::sys::inotify::InitFlags::IN_NONBLOCK,
            )
            .context("inotify_init")?;
            inotify
                .add_watch(
                    logs,
                    nix::sys::inotify::AddWatchFlags::IN_MODIFY
                        | nix::sys::inotify::AddWatchFlags::IN_CREATE,
                )
                .with_context(|| format!("watching {}", logs.display()))?;
            let (stop, logs) = (stop.clone(), logs.to_path_buf());
            Some(std::thread::spawn(move || {
                read_latencies(inotify, &logs, &stop)
            }))
        }
        None => None,
    };
    writeln!(stdin, "go").context("starting the writer")?;
    drop(stdin);
    let producers: Vec<_> = pipes
        .into_iter()
        .map(|pipe| {
            let shape = shape.clone();
            std::thread::spawn(move || produce(pipe, &shape))
        })
        .collect();
    let mut produced = Ok(());
    for p in producers {
        match p.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => produced = Err(e),
            Err(_) => produced = Err(anyhow::anyhow!("a producer thread panicked")),
        }
    }
    line.clear();
    out.read_line(&mut line)
        .context("reading the writer's figures")?;
    stop.store(true, Ordering::Relaxed);
    let latencies = match reader {
        Some(r) => r
            .join()
            .map_err(|_| anyhow::anyhow!("the latency reader panicked"))??,
        None => Vec::new(),
    };
    produced?;
    let figures: serde_json::Value = serde_json::from_str(line.trim())
        .with_context(|| format!("the writer's figures {line:?}"))?;
    let number = |key: &str| {
        figures[key]
            .as_f64()
            .with_context(|| format!("the writer's figures {line:?} lack {key}"))
    };
    let lines = shape.lines_per_task * shape.tasks as u64;
    Ok(Run {
        backend,
        bytes: lines * shape.line as u64,
        lines,
        elapsed: Duration::from_secs_f64(number("elapsed_s")?),
        cpu_s: number("cpu_s")?,
        latencies,
    })
}

/// One task: `lines_per_task` lines of `line` bytes, one `write(2)` each.
fn produce(mut pipe: File, shape: &Shape) -> anyhow::Result<()> {
    let mut buf = vec![b'x'; shape.line];
    if let Some(last) = buf.last_mut() {
        *last = b'\n';
    }
    let start = Instant::now();
    for i in 0..shape.lines_per_task {
        if let Some(pace) = shape.pace {
            let due = start + pace.mul_f64(i as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            // The moment it enters the pipe, as 16 hex digits of nanoseconds since `epoch`.
            let stamp = format!("{:016x} ", epoch().elapsed().as_nanos() as u64);
            buf[..stamp.len()].copy_from_slice(stamp.as_bytes());
        }
        pipe.write_all(&buf)
            .context("writing into the task's pipe")?;
    }
    Ok(())
}

/// Follows the log directory and, for every stamped line that appears, how long it took.
fn read_latencies(
    inotify: nix::sys::inotify::Inotify,
    logs: &Path,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<Duration>> {
    struct Followed {
        file: File,
        pending: Vec<u8>,
    }
    let mut files: HashMap<std::ffi::OsString, Followed> = HashMap::new();
    let mut samples = Vec::new();
    let mut chunk = Vec::new();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let mut fds = [nix::poll::PollFd::new(
            inotify.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, 20u16) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => bail!("poll on inotify: {e}"),
        }
        let events = match inotify.read_events() {
            Ok(ev) => ev,
            Err(nix::errno::Errno::EAGAIN) => Vec::new(),
            Err(e) => bail!("reading inotify events: {e}"),
        };
        if events.is_empty() && stopping {
            return Ok(samples);
        }
        for name in events.into_iter().filter_map(|e| e.name) {
            if !files.contains_key(&name) {
                // Gone already (rotated away): its lines are not counted.
                let Ok(file) = File::open(logs.join(&name)) else {
                    continue;
                };
                files.insert(
                    name.clone(),
                    Followed {
                        file,
                        pending: Vec::new(),
                    },
                );
            }
            let Some(f) = files.get_mut(&name) else {
                continue;
            };
            chunk.clear();
            f.file
                .read_to_end(&mut chunk)
                .with_context(|| format!("reading {}", logs.join(&name).display()))?;
            let seen = epoch().elapsed();
            f.pending.extend_from_slice(&chunk);
            let mut start = 0;
            while let Some(end) = f.pending[start..].iter().position(|b| *b == b'\n') {
                let line = &f.pending[start..start + end];
                if let Some(sent) = line
                    .get(..16)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                {
                    samples.push(seen.saturating_sub(Duration::from_nanos(sent)));
                }
                start += end + 1;
            }
            f.pending.drain(..start);
        }
    }
}

/// Every byte arrived: per stream, full files up to the newest, no more than the kept count.
fn verify(logs: &Path, shape: &Shape) -> anyhow::Result<()> {
    let expected = shape.lines_per_task * shape.line as u64;
    let mut sizes: HashMap<usize, Vec<(u64, u64)>> = HashMap::new();
    for entry in std::fs::read_dir(logs).with_context(|| format!("listing {}", logs.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let parsed = name
            .strip_prefix('t')
            .and_then(|n| n.split_once(".stdout."))
            .and_then(|(t, i)| Some((t.parse::<usize>().ok()?, i.parse::<u64>().ok()?)));
        let Some((task, index)) = parsed else {
            bail!("unexpected file {name} in {}", logs.display())
        };
        sizes
            .entry(task)
            .or_default()
            .push((index, entry.metadata()?.len()));
    }
    for task in 0..shape.tasks {
        let mut set = sizes.remove(&task).unwrap_or_default();
        set.sort_unstable();
        let Some(&(newest, newest_len)) = set.last() else {
            bail!("task {task} wrote no log file in {}", logs.display())
        };
        let total = newest * MAX_FILE_SIZE + newest_len;
        let full = set[..set.len() - 1]
            .iter()
            .all(|(_, len)| *len == MAX_FILE_SIZE);
        if total != expected || !full || set.len() > MAX_FILES as usize {
            bail!(
                "task {task}: {} backend lost or kept the wrong bytes: files {set:?}, \
                 {total} bytes written of {expected}",
                shape.backend
            );
        }
    }
    Ok(())
}

/// The writer child: the supervisor's runtime and pumps for one backend, nothing else.
fn writer_child(config: &str) -> anyhow::Result<()> {
    let config: serde_json::Value =
        serde_json::from_str(config).with_context(|| format!("{CHILD_ENV}={config:?}"))?;
    let backend: LogBackend = config["backend"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|e: String| anyhow::anyhow!("{CHILD_ENV}: {e}"))?;
    let logs = PathBuf::from(config["logs"].as_str().unwrap_or_default());
    let fifos: Vec<PathBuf> = config["fifos"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    // As the supervisor: pipes read non-blocking, the log dir held by an fd (no symlinks).
    let mut streams = Vec::new();
    for (i, fifo) in fifos.iter().enumerate() {
        let pipe = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(fifo)
            .with_context(|| format!("opening {}", fifo.display()))?;
        let dir = nix::fcntl::open(
            &logs,
            nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC
                | nix::fcntl::OFlag::O_RDONLY,
            nix::sys::stat::Mode::empty(),
        )
        .with_context(|| format!("opening {}", logs.display()))?;
        let log = LogWriter::open(dir, &format!("t{i}.stdout"), MAX_FILES, MAX_FILE_SIZE)
            .with_context(|| format!("opening the log set t{i}.stdout in {}", logs.display()))?;
        streams.push((OwnedFd::from(pipe), log));
    }
    let runtime = SupervisorRuntime::start(backend).context("starting the writer's runtime")?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready {}", runtime.backend())?;
    stdout.flush()?;
    let mut go = String::new();
    std::io::stdin().read_line(&mut go)?;
    if go.trim() != "go" {
        bail!("expected go, got {go:?}");
    }
    let before = cpu_seconds()?;
    let start = Instant::now();
    runtime.block_on(async move {
        let pumps: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(i, (pipe, log))| {
                tokio::task::spawn_local(async move {
                    logsink::pump(pipe, LogSink::for_this_runtime(log), &format!("t{i}")).await
                })
            })
            .collect();
        for p in pumps {
            p.await.context("a pump panicked")?;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    let elapsed = start.elapsed();
    let cpu = cpu_seconds()? - before;
    writeln!(
        stdout,
        "{}",
        json!({ "elapsed_s": elapsed.as_secs_f64(), "cpu_s": cpu })
    )?;
    Ok(())
}

/// User + system CPU time of this whole process (every thread, io_uring workers included).
fn cpu_seconds() -> anyhow::Result<f64> {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .context("getrusage")?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(secs(usage.user_time()) + secs(usage.system_time()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_have_defaults_and_bad_values_are_refused() {
        let o = parse_options(&["logs".to_string()]).unwrap();
        assert_eq!((o.volume, o.rounds, o.latency), (128 << 20, 5, true));
        let args: Vec<String> = ["--mib", "8", "--rounds", "1", "--no-latency"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = parse_options(&args).unwrap();
        assert_eq!((o.volume, o.rounds, o.latency), (8 << 20, 1, false));
        let e = parse_options(&["--mib".to_string(), "lots".to_string()]).unwrap_err();
        assert!(e.to_string().contains("--mib \"lots\""), "{e}");
        assert!(parse_options(&["--fast".to_string()]).is_err());
    }

    #[test]
    fn lines_never_straddle_two_files() {
        for line in LINE_SIZES {
            assert_eq!(MAX_FILE_SIZE % line as u64, 0, "{line}");
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&v, 99.0), 99.0);
        assert_eq!(percentile_ms(&v, 100.0), 100.0);
        assert!(percentile_ms(&[], 50.0).is_nan());
    }
}
