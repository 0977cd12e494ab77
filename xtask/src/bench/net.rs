//! `cargo xtask bench net`: allocation network setup/teardown against a C floor, and
//! connection rate and throughput through the eBPF port mapping against an nftables DNAT.
//!
//! The measuring code is the `noded-netbench` binary of the `noded-tests` crate (feature
//! `netbench`; see its module doc): it links the `ebpf` crate, whose build needs clang, and
//! xtask must not gain a dependency on it (xtask builds before `cargo xtask deps` installs
//! clang; today it still reaches `ebpf` through `noded`, which is for `noded` to fix, not for
//! a bench to make worse). This builds it
//! (release) in xtask's own target dir and runs it; it prints its figures and the
//! `RESULT net …` line itself.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

/// The options `noded-netbench` takes, each with a number.
const FLAGS: [&str; 3] = ["--allocs", "--seconds", "--threads"];

/// Checks the options' shape before the build (the binary checks their ranges).
pub fn check_options(args: &[String]) -> anyhow::Result<()> {
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if !FLAGS.contains(&flag.as_str()) {
            bail!("unknown option {flag:?} for bench net (--allocs N, --seconds S, --threads T)");
        }
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a number"))?;
        value
            .parse::<u64>()
            .with_context(|| format!("{flag} {value:?}: expected a number"))?;
    }
    Ok(())
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    check_options(args)?;
    let exe = std::env::current_exe().context("locating the running xtask binary")?;
    // <target>/<profile>/xtask → <target>
    let target = exe
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("{} is not inside a cargo target dir", exe.display()))?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| Path::new("."));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!(
        "==> building release noded-netbench (target dir {})",
        target.display()
    );
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "noded-tests",
            "--features",
            "netbench",
            "--bin",
            "noded-netbench",
        ])
        .env("CARGO_TARGET_DIR", target)
        .status()
        .context("starting cargo build --release")?;
    if !status.success() {
        bail!("cargo build --release -p noded-tests --features netbench --bin noded-netbench failed ({status}); it needs clang and libelf-dev (cargo xtask deps)");
    }
    let bench = target.join("release/noded-netbench");
    let status = Command::new(&bench)
        .args(args)
        .status()
        .with_context(|| format!("running {}", bench.display()))?;
    if !status.success() {
        bail!("{} failed ({status}); its error is above", bench.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_before_the_build() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_options(&args(&["--allocs", "100", "--seconds", "5"])).is_ok());
        assert!(check_options(&args(&["--allocs"])).is_err());
        assert!(check_options(&args(&["--allocs", "many"])).is_err());
        assert!(check_options(&args(&["--runs", "3"])).is_err());
    }
}
