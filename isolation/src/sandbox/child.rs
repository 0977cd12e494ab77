//! The code that runs in the child between `clone3` and `execve`.
//!
//! Async-signal-safe only: it walks the prepared plan and calls the child-safe functions of
//! `sys`. No allocation, no locks, no formatting, no indexing that could panic, and no writes
//! outside its own stack: [`super::spawn`] runs it in the parent's memory
//! (`sys::clone3_spawn_shared`). On the first failing step it writes a [`Report`] to the
//! report pipe and `_exit`s with 127.

use std::os::fd::RawFd;

use nix::errno::Errno;

pub(super) mod init;

use super::ops::{Op, PlannedOp};
use super::Report;
use crate::sys;

/// Runs the plan's steps; never returns (exec or `_exit`).
pub(super) fn run(ops: &[PlannedOp], report_fd: RawFd) {
    let mut index: u32 = 0;
    for (at, planned) in ops.iter().enumerate() {
        let result = match &planned.op {
            // The task goes on with the rest of the plan; the init never comes back.
            Op::StartInit { status_fd } => {
                init::start(*status_fd, ops.get(at + 1..).unwrap_or(&[]))
            }
            op => execute(op),
        };
        if let Err((errno, detail)) = result {
            let report = Report {
                step: planned.step as u32,
                index,
                errno: errno as i32,
                detail,
            };
            // Nothing else can be done if the parent is gone.
            let _ = sys::write_all(report_fd, &report.encode());
            sys::exit_now(127);
        }
        index = index.wrapping_add(1);
    }
    // The last step is exec: getting here means it was missing from the plan.
    let report = Report {
        step: super::Step::Exec as u32,
        index: u32::MAX,
        errno: Errno::ENOEXEC as i32,
        detail: 0,
    };
    let _ = sys::write_all(report_fd, &report.encode());
    sys::exit_now(127);
}

pub(super) fn execute(op: &Op) -> Result<(), (Errno, u32)> {
    let plain = |r: Result<(), Errno>| r.map_err(|e| (e, 0));
    match op {
        Op::WriteFd { fd, data } => plain(sys::write_all(*fd, data)),
        Op::SetNs { fd, nstype } => plain(sys::setns(*fd, *nstype)),
        Op::EnterTemplate { fd } => plain(sys::setns(*fd, libc::CLONE_NEWNS)),
        Op::MoveMount { fd, target, .. } => plain(sys::move_mount(*fd, target)),
        Op::Unshare { flags } => plain(sys::unshare(*flags)),
        Op::Mount {
            source,
            target,
            fstype,
            flags,
            data,
            optional,
        } => match sys::mount(
            source.as_deref(),
            target,
            fstype.as_deref(),
            *flags,
            data.as_deref(),
        ) {
            Err(Errno::ENOENT) if *optional => Ok(()),
            other => plain(other),
        },
        Op::Mkdir { path, mode } => match sys::mkdir(path, *mode) {
            Err(Errno::EEXIST) => Ok(()),
            other => plain(other),
        },
        Op::MkFile { path } => plain(sys::create_file(path, 0o644)),
        Op::Symlink { target, link } => plain(sys::symlink(target, link)),
        Op::Chdir { path } => plain(sys::chdir(path)),
        Op::Fchdir { fd } => plain(sys::fchdir(*fd)),
        Op::Chroot { path } => plain(sys::chroot(path)),
        Op::NotDumpable => plain(sys::prctl(libc::PR_SET_DUMPABLE, 0, 0).map(drop)),
        Op::NewSession => plain(sys::setsid()),
        Op::ControllingTty { fd } => plain(sys::set_controlling_tty(*fd)),
        Op::PivotRoot => plain(sys::pivot_root(c".", c".")),
        Op::UmountDetach { path } => plain(sys::umount2(path, libc::MNT_DETACH)),
        Op::SetHostname { name } => plain(sys::sethostname(name)),
        Op::SetRlimit {
            resource,
            soft,
            hard,
        } => plain(sys::set_rlimit(*resource, *soft, *hard)),
        Op::Dup { from, to } => plain(sys::dup_onto(*from, *to)),
        Op::CloseFrom { keep } => close_from(*keep),
        // Handled by `run`, which knows the rest of the plan; never planned twice.
        Op::StartInit { .. } => Err((Errno::EINVAL, 0)),
        Op::AwaitByte { fd, timeout_ms } => plain(sys::await_byte(*fd, *timeout_ms)),
        Op::ResetSignals => {
            sys::reset_signal_dispositions();
            plain(sys::set_signal_mask(0))
        }
        Op::DropBounding { keep, last_cap } => drop_bounding(*keep, *last_cap),
        Op::SetGroups { gids } => plain(sys::setgroups(gids)),
        Op::SetGid { gid } => plain(sys::setresgid(*gid)),
        Op::KeepCaps { on } => {
            plain(sys::prctl(libc::PR_SET_KEEPCAPS, libc::c_ulong::from(*on), 0).map(drop))
        }
        Op::SetUid { uid } => plain(sys::setresuid(*uid)),
        Op::Capset {
            effective,
            permitted,
            inheritable,
        } => plain(sys::capset(*effective, *permitted, *inheritable)),
        Op::Ambient { raise, last_cap } => set_ambient(*raise, *last_cap),
        Op::NoNewPrivs => plain(sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).map(drop)),
        Op::Seccomp { program } => plain(sys::seccomp_set_filter(program)),
        Op::Exec {
            candidates,
            argv,
            envp,
        } => exec_first(candidates, argv, envp),
    }
}

/// Closes every fd ≥ 3 except the (at most three) in `keep`.
fn close_from(keep: [RawFd; 3]) -> Result<(), (Errno, u32)> {
    let mut sorted = keep;
    sorted.sort_unstable();
    let mut next: u32 = 3;
    for kept in sorted {
        let Ok(kept) = u32::try_from(kept) else {
            continue;
        };
        if kept < next {
            continue;
        }
        if let Err(e) = sys::close_range(next, kept - 1) {
            return Err((e, 0));
        }
        next = kept.saturating_add(1);
    }
    sys::close_range(next, u32::MAX).map_err(|e| (e, 0))
}

/// Drops from the bounding set every capability up to `last_cap` not in `keep`; a failure
/// names the capability.
fn drop_bounding(keep: u64, last_cap: u8) -> Result<(), (Errno, u32)> {
    let mut cap: u8 = 0;
    while cap <= last_cap && cap < 64 {
        if keep & (1u64 << cap) == 0 {
            sys::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0)
                .map_err(|e| (e, u32::from(cap)))?;
        }
        cap += 1;
    }
    Ok(())
}

/// Clears the ambient set, then raises the capabilities in `raise` (up to `last_cap`); a
/// failure names the capability.
fn set_ambient(raise: u64, last_cap: u8) -> Result<(), (Errno, u32)> {
    sys::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
    )
    .map_err(|e| (e, 0))?;
    let mut cap: u8 = 0;
    while cap <= last_cap && cap < 64 {
        if raise & (1u64 << cap) != 0 {
            sys::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                libc::c_ulong::from(cap),
            )
            .map_err(|e| (e, u32::from(cap)))?;
        }
        cap += 1;
    }
    Ok(())
}

/// Like execvp: ENOENT/ENOTDIR move on to the next candidate, EACCES is remembered (reported
/// if nothing else is found), anything else stops the search. Returns only on failure, with
/// the index of the candidate the error is about.
fn exec_first(
    candidates: &[std::ffi::CString],
    argv: &sys::CStrArray,
    envp: &sys::CStrArray,
) -> Result<(), (Errno, u32)> {
    let mut first_missing: Option<(Errno, u32)> = None;
    let mut denied: Option<(Errno, u32)> = None;
    let mut i: u32 = 0;
    for candidate in candidates {
        let errno = sys::execve(candidate, argv.as_slice(), envp.as_slice());
        match errno {
            Errno::ENOENT | Errno::ENOTDIR => {
                if first_missing.is_none() {
                    first_missing = Some((errno, i));
                }
            }
            Errno::EACCES => {
                if denied.is_none() {
                    denied = Some((errno, i));
                }
            }
            other => return Err((other, i)),
        }
        i = i.wrapping_add(1);
    }
    Err(denied.or(first_missing).unwrap_or((Errno::ENOENT, 0)))
}
