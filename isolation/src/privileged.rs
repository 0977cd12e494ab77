//! Gating for tests that need root (namespaces, mounts, cgroups).
//!
//! Owns the project-wide rule: without root a privileged test prints a loud
//! `SKIPPED: <what> needs root` and returns; with `NODED_REQUIRE_PRIVILEGED=1` a skip is a
//! failure. Used by the tests of every crate; production code must not call it.

use std::io::Write;

/// Environment variable that turns a privileged-test skip into a failure (CI on real hosts).
pub const REQUIRE_PRIVILEGED_ENV: &str = "NODED_REQUIRE_PRIVILEGED";

/// Returns `true` when the calling test may run privileged code. Otherwise prints
/// `SKIPPED: <what> needs root` to stderr and returns `false` — or panics when
/// `NODED_REQUIRE_PRIVILEGED=1`, so that a CI run on a privileged host cannot pass by skipping.
pub fn require_root(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let required = std::env::var(REQUIRE_PRIVILEGED_ENV).is_ok_and(|v| v.trim() == "1");
    if required {
        panic!("{what} needs root, and {REQUIRE_PRIVILEGED_ENV}=1 forbids skipping it: run the tests as root");
    }
    // Straight to the stderr handle: libtest captures `eprintln!` of passing tests, and a
    // skip must stay visible.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {what} needs root");
    false
}
