//! Kernel isolation for one process: namespaces, a `pivot_root` jail built from bind mounts,
//! cgroups v1 (hybrid) and v2 behind one interface, capabilities, `no_new_privs`, seccomp,
//! rlimits and uid/gid.
//!
//! # What this crate owns
//! - [`sandbox::spawn`]: start ONE process inside namespaces and a jail, from a multi-threaded
//!   caller, with every failure naming the step and the path; [`sandbox::enter`]: start one
//!   more process inside a running sandbox (`alloc exec`), as confined as the task.
//! - [`cgroup`]: create, limit, join, signal, measure and destroy a task's cgroup on v1, hybrid
//!   and pure v2 hosts.
//! - [`caps`], [`user`], [`seccomp`]: the inputs of a sandbox (capability sets, resolved users,
//!   syscall filters), parsed and validated before anything runs.
//! - [`path`] and [`mount`]: host-side helpers the node daemon uses to prepare directories
//!   (paths resolved beneath a root, the secrets tmpfs).
//!
//! # What it must not touch
//! It knows nothing about jobs, allocations, Nomad or the network layout: its inputs are plain
//! paths, names and numbers. It never reaps processes behind its caller's back and never
//! changes the host's mount table except through the explicit [`mount`] helpers.
//!
//! # Unsafe code
//! Only the private `sys` module contains `unsafe` (enforced: the crate denies `unsafe_code`
//! everywhere else); each block carries a `SAFETY:` comment.
//!
//! # Kernel requirements
//! Linux ≥ 5.9 (`clone3` with `CLONE_PIDFD` and `CLONE_INTO_CGROUP`, `openat2`,
//! `close_range`), x86_64 or aarch64.

#![deny(unsafe_code)]

pub mod caps;
pub mod cgroup;
pub mod mount;
pub mod path;
pub mod privileged;
pub mod sandbox;
pub mod seccomp;
pub mod user;

#[allow(unsafe_code)]
mod sys;

use nix::errno::Errno;

/// An errno as a lower-case sentence plus its symbolic name, e.g.
/// `no such file or directory (ENOENT)`.
pub(crate) fn describe_errno(errno: Errno) -> String {
    format!("{} ({errno:?})", errno_sentence(errno))
}

/// An errno as a lower-case sentence, e.g. `no such file or directory`.
pub(crate) fn errno_sentence(errno: Errno) -> String {
    let desc = errno.desc();
    let mut text = String::with_capacity(desc.len());
    let mut chars = desc.chars();
    if let Some(first) = chars.next() {
        text.extend(first.to_lowercase());
        text.push_str(chars.as_str());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_text_is_lower_case_with_the_symbol() {
        assert_eq!(
            describe_errno(Errno::ENOENT),
            "no such file or directory (ENOENT)"
        );
        assert_eq!(
            describe_errno(Errno::EPERM),
            "operation not permitted (EPERM)"
        );
    }
}
