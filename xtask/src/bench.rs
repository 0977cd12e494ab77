//! `cargo xtask bench NAME`: benchmarks that measure noded against its peers in the same run
//! and end with one machine-readable `RESULT NAME key=value …` line.

use anyhow::bail;

pub fn run(args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        None => bail!("usage: cargo xtask bench <start|logs>"),
        Some(other) => bail!("unknown bench {other:?} (available: none yet)"),
    }
}
