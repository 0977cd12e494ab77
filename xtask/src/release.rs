//! The release build the benches and chaos runs use: the debug xtask (`cargo xtask …`, built
//! before `cargo xtask deps` can install clang) builds release `noded` and an xtask with the
//! `benches` feature (which links `noded`, and through it the ebpf crate) and hands over to it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// Where the release build puts the binaries the benches use.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `<target>/release/noded`: the supervisor the bench starts.
    pub noded: PathBuf,
    /// `<target>/release/xtask`: this bench, optimised; also the OCI helper.
    pub xtask: PathBuf,
}

/// With `build`, builds `noded` and `xtask` (with its `benches`) with `--release` (one cargo
/// invocation, so features unify and the shared crates compile once); returns their paths.
pub(crate) fn release_binaries(build: bool) -> anyhow::Result<Binaries> {
    let exe = std::env::current_exe().context("locating the running xtask binary")?;
    // <target>/<profile>/xtask → <target>
    let target = exe
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("{} is not inside a cargo target dir", exe.display()))?;
    if build {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap_or_else(|| Path::new("."));
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace)
            .args([
                "build",
                "--release",
                "--quiet",
                "-p",
                "noded",
                "-p",
                "xtask",
                "--features",
                "xtask/benches",
            ])
            .env("CARGO_TARGET_DIR", target);
        eprintln!(
            "==> building release noded and xtask (target dir {})",
            target.display()
        );
        let status = cmd.status().context("starting cargo build --release")?;
        if !status.success() {
            bail!("cargo build --release -p noded -p xtask failed ({status}); fix the build and run the bench again");
        }
    }
    let binaries = Binaries {
        noded: target.join("release/noded"),
        xtask: target.join("release/xtask"),
    };
    for path in [&binaries.noded, &binaries.xtask] {
        if !path.is_file() {
            bail!(
                "{} is missing: run the bench through `cargo xtask bench …`, which builds it",
                path.display()
            );
        }
    }
    Ok(binaries)
}

/// Replaces this (debug) process with the release xtask running the same `task` (`bench`,
/// `chaos`) with the same arguments.
pub(crate) fn reexec_release(
    binaries: &Binaries,
    task: &str,
    args: &[String],
) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    eprintln!("==> running the {task} from {}", binaries.xtask.display());
    let err = Command::new(&binaries.xtask).arg(task).args(args).exec();
    bail!("running {}: {err}", binaries.xtask.display())
}
