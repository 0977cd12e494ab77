//! Compiles `src/bpf/portmap.bpf.c` (CO-RE, against the committed `vmlinux.h`) with clang and
//! generates its libbpf-rs skeleton into `OUT_DIR/portmap.skel.rs`.
//!
//! The BPF toolchain is a system dependency: without clang (or without libelf's headers, which
//! libbpf-sys needs) the build stops here with the package to install, not with a compiler's
//! error from deep inside a dependency.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "src/bpf/portmap.bpf.c";
const HINT: &str = "install it with `cargo xtask deps` or `apt-get install clang libelf-dev`";

fn main() {
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-changed=src/bpf/vmlinux.h");
    println!("cargo:rerun-if-env-changed=CLANG");

    let clang = env::var_os("CLANG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("clang"));
    check_clang(&clang);
    check_libelf();

    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_else(|| {
        fail("OUT_DIR is not set: build.rs must run under cargo");
    }));
    let skel = out.join("portmap.skel.rs");
    if let Err(e) = SkeletonBuilder::new()
        .source(SRC)
        .clang(&clang)
        // -Wall: a warning in BPF C is usually a verifier rejection waiting to happen.
        .clang_args(["-Wall", "-Wno-unused-function", "-Isrc/bpf"])
        .build_and_generate(&skel)
    {
        fail(&format!("compiling {SRC} with {}: {e:#}", clang.display()));
    }
}

/// The package is named because "No such file or directory (os error 2)" from inside
/// libbpf-cargo says nothing about what to install.
fn check_clang(clang: &Path) {
    match Command::new(clang).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => fail(&format!(
            "`{} --version` failed ({}): the BPF programs need clang (package `clang`, version 11 or newer); {HINT}",
            clang.display(),
            out.status
        )),
        Err(e) => fail(&format!(
            "cannot run `{}` ({e}): the BPF programs need clang (package `clang`); {HINT}",
            clang.display()
        )),
    }
}

/// libbpf-sys compiles against `gelf.h` from libelf-dev. When it is missing libbpf-sys's own
/// build script usually fails first (it is built before this script runs); this check covers
/// the rest (a cached libbpf-sys, a header removed since).
fn check_libelf() {
    let found = ["/usr/include/gelf.h", "/usr/local/include/gelf.h"]
        .iter()
        .any(|p| Path::new(p).exists())
        || Command::new("pkg-config")
            .args(["--exists", "libelf"])
            .status()
            .is_ok_and(|s| s.success());
    if !found {
        fail(&format!(
            "libelf's headers (gelf.h) are missing: libbpf needs package `libelf-dev`; {HINT}"
        ));
    }
}

fn fail(msg: &str) -> ! {
    // `cargo:warning` shows even when the script's own output is hidden; the panic stops the
    // build with the same text.
    println!("cargo:warning=ebpf: {msg}");
    panic!("ebpf: {msg}");
}
