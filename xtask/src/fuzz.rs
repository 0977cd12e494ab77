//! `cargo xtask fuzz jobspec [--runs N] [--seconds S] [--seed X]`: fuzzes the jobspec parser
//! and the API JSON decoder on stable Rust. Builds and runs controlplane's `jobspec_fuzz`
//! example in release mode: a structured generator plus a mutation loop over the corpus, each
//! input checked for panics, for properties (API JSON round trip, fmt idempotent and
//! meaning-preserving) and for taking more than a second. Defaults to 1,000,000 inputs;
//! `--ci` is the bounded run CI uses (`--runs 20000`, a few seconds).

use std::process::Command;

use anyhow::{bail, Context, Result};

/// Inputs in the bounded CI run.
const CI_RUNS: u64 = 20_000;

/// Entry point from xtask's command line; `args` are the words after `fuzz`.
pub fn run(args: &[String]) -> Result<()> {
    let Some((target, rest)) = args.split_first() else {
        bail!("usage: cargo xtask fuzz jobspec [--ci] [--runs N] [--seconds S] [--seed X]");
    };
    let mut forwarded: Vec<String> = Vec::new();
    for a in rest {
        if a == "--ci" {
            forwarded.extend(["--runs".to_string(), CI_RUNS.to_string()]);
        } else {
            forwarded.push(a.clone());
        }
    }
    let rest = forwarded.as_slice();
    if target != "jobspec" {
        bail!("unknown fuzz target {target:?}; the only target is \"jobspec\"");
    }
    for pair in rest.chunks(2) {
        match pair {
            [flag, value] if ["--runs", "--seconds", "--seed"].contains(&flag.as_str()) => {
                value
                    .parse::<u64>()
                    .with_context(|| format!("{flag} needs a whole number, got {value:?}"))?;
            }
            _ => bail!("unexpected arguments {pair:?}; use --runs N, --seconds S, --seed X"),
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(cargo)
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "jobspec",
            "--example",
            "jobspec_fuzz",
            "--",
        ])
        .args(rest)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("the jobspec fuzzer found a problem (see above; the input is saved under target/fuzz-jobspec/)");
    }
    Ok(())
}
