//! Developer tasks for noded: `cargo xtask <task>`.
//!
//! - `deps`  — install the system packages the build, the tests and the benches need (apt).
//! - `dev`   — build noded, put it on PATH (/usr/local/bin/noded) and run `noded agent -dev`.
//! - `test`  — what CI runs: fmt check, no import cycles between files, no unused
//!   dependency, clippy (deny warnings), every test including the privileged ones (a skip is
//!   a failure), and a bounded jobspec fuzz run.
//! - `bench NAME` — benchmarks (`start`, `rss`, `logs`, `raft`, `heartbeats`, `footprint`,
//!   `scheduler`, `net`, `dns`), each ending in one `RESULT` line.
//! - `chaos raft` — kills, pauses and partitions of a three-server region under writes; prints
//!   `acknowledged= found= lost=` and fails on any lost write.
//! - `chaos client` — kill -9 cycles of a node daemon with running and restarting tasks; prints
//!   orphaned, duplicated and leaked counts and fails on any.
//! - `fuzz jobspec` — the jobspec fuzzer.
//! - `cycles`, `unused-deps` — the two shape checks of `test`, on their own.
//!
//! Owns developer workflow only; nothing here ships in the binary.

#[cfg(feature = "benches")]
mod bench;
#[cfg(feature = "benches")]
mod bench_logs;
mod chaos;
mod chaos_client;
mod cycles;
mod fuzz;
mod raft_cluster;
mod release;
mod unused_deps;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// Debian/Ubuntu packages the project needs, with the command that proves each is there.
const PACKAGES: &[(&str, &str)] = &[
    ("pkg-config", "pkg-config"),
    ("iproute2", "ip"),
    ("util-linux", "nsenter"),
    ("procps", "ps"),
    // The eBPF programs are compiled by clang at build time (libbpf-cargo) and libbpf-sys
    // links libelf and zlib.
    ("clang", "clang"),
    ("libelf-dev", "/usr/include/gelf.h"),
    ("zlib1g-dev", "/usr/include/zlib.h"),
    // Masquerade, isolation between allocations, and the port-mapping fallback.
    ("nftables", "nft"),
];

/// The features that build the benches, for the checks of `cargo xtask test`.
const BENCH_FEATURES: &str = "xtask/benches,noded-tests/netbench";

/// Packages only the benches need (the peers noded is measured against).
const BENCH_PACKAGES: &[(&str, &str)] = &[("crun", "crun"), ("runc", "runc")];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `cargo metadata` of the workspace, as JSON (the lock file is not changed).
fn metadata() -> anyhow::Result<serde_json::Value> {
    let output = cargo()
        .args(["metadata", "--format-version", "1", "--locked"])
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("reading cargo metadata")
}

/// Whether `command` is on the PATH; an absolute path (a header a package ships) must exist.
fn have(command: &str) -> bool {
    if command.starts_with('/') {
        return Path::new(command).exists();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(command).is_file()))
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("==> {shown}");
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

/// Installs whichever of `packages` is missing, with apt-get.
fn install(packages: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, cmd)| !have(cmd))
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !have("apt-get") {
        bail!("missing system packages {missing:?} and no apt-get to install them; install them by hand");
    }
    if !nix_is_root() {
        bail!("missing system packages {missing:?}: run as root (or install them with sudo apt-get install)");
    }
    eprintln!("==> installing {}", missing.join(" "));
    run(Command::new("apt-get")
        .args(["update", "-qq"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn dev(args: &[String]) -> anyhow::Result<()> {
    install(PACKAGES)?;
    run(cargo().args(["build", "--bin", "noded"]))?;
    let binary = root().join("target/debug/noded");
    let link = Path::new("/usr/local/bin/noded");
    if nix_is_root() {
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(&binary, link)
            .with_context(|| format!("linking {} to {}", link.display(), binary.display()))?;
        eprintln!("==> {} -> {}", link.display(), binary.display());
    } else {
        eprintln!("==> not root: call the CLI as {}", binary.display());
    }
    let err = std::os::unix::process::CommandExt::exec(
        Command::new(&binary).args(["agent", "-dev"]).args(args),
    );
    bail!("running {}: {err}", binary.display())
}

fn test(args: &[String]) -> anyhow::Result<()> {
    install(PACKAGES)?;
    let started = std::time::Instant::now();
    run(cargo().args(["fmt", "--all", "--check"]))?;
    // Shape checks that cost a second: no import cycles between files, no unused dependency.
    cycles::run(&[])?;
    unused_deps::run(&[])?;
    // The benches (xtask's `benches`, the tests crate's `netbench`) are linted too.
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--features",
        BENCH_FEATURES,
        "--",
        "-D",
        "warnings",
    ]))?;
    // End-to-end tests start the real binaries: build them first, with the features the
    // tests are built with, so that the test build reuses every crate instead of compiling
    // the ones a feature reaches a second time.
    run(cargo().args([
        "build",
        "--workspace",
        "--bins",
        "--features",
        BENCH_FEATURES,
    ]))?;
    let mut t = cargo();
    t.args(["test", "--workspace", "--features", BENCH_FEATURES])
        .env("NODED_REQUIRE_PRIVILEGED", "1");
    if !args.is_empty() {
        t.arg("--").args(args);
    }
    run(&mut t)?;
    fuzz::run(&["jobspec".to_string(), "--ci".to_string()])?;
    eprintln!("==> all checks passed in {:.0?}", started.elapsed());
    Ok(())
}

/// The benches link `noded` (and so the ebpf crate, whose build needs clang): they live in
/// the xtask built with the `benches` feature, which this one builds and hands over to once
/// the packages are installed.
#[cfg(feature = "benches")]
fn bench(rest: &[String]) -> anyhow::Result<()> {
    if rest.first().map(String::as_str) == Some("logs") {
        return bench_logs::run(&rest[1..]);
    }
    bench::run(rest)
}

#[cfg(not(feature = "benches"))]
fn bench(rest: &[String]) -> anyhow::Result<()> {
    let binaries = release::release_binaries(true)?;
    release::reexec_release(&binaries, "bench", rest)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        bail!("usage: cargo xtask <deps|dev|test|bench NAME|chaos raft|chaos client|fuzz jobspec|cycles|unused-deps>\n  bench: start, rss, logs, raft, heartbeats [--nodes N --servers 1|3 --duration D], footprint [--tasks N], dns [--seconds S --rounds R --peers-only]\n  chaos: raft [--kills N --seed S --writers W], client [--cycles N --seed S]");
    };
    match task.as_str() {
        "deps" => {
            install(PACKAGES)?;
            install(BENCH_PACKAGES)
        }
        "dev" => dev(rest),
        "test" => test(rest),
        "bench" => {
            install(PACKAGES)?;
            install(BENCH_PACKAGES)?;
            bench(rest)
        }
        "chaos" => {
            install(PACKAGES)?;
            chaos::run(rest)
        }
        "fuzz" => fuzz::run(rest),
        "cycles" => cycles::run(rest),
        "unused-deps" => unused_deps::run(rest),
        other => bail!(
            "unknown task {other:?}; tasks: deps, dev, test, bench, chaos, fuzz, cycles, unused-deps"
        ),
    }
}
