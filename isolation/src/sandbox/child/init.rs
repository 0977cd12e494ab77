//! The small init: with [`SandboxSpec::init`](super::super::SandboxSpec::init) the sandbox child,
//! PID 1 of the task's new pid namespace, forks the program and stays behind as its parent,
//! the way tini or Nomad's executor do. PID 1 gets only the signals it has a handler for, so
//! a program without a SIGTERM handler (`sleep`) would ignore its `kill_signal` and every
//! stop would wait the whole kill timeout; the init instead takes every signal and forwards
//! it to the program, reaps the orphans reparented to it, and exits when the program does,
//! with the program's exit code (128 + signal for a signal death). The exact wait status goes
//! to the caller on a pipe first (a pid namespace's init cannot die of most signals itself),
//! so the caller reports the program's end exactly as without the init.
//!
//! Child-safe code only, like `child`: raw syscalls on prepared data, no allocation. It runs
//! in a child with memory of its own (`spawn` uses the copying clone when a plan has an init:
//! a child sharing the caller's memory would hold the caller until it execs, and the init
//! never does). It needs no file in the jail.

use std::os::fd::RawFd;

use nix::errno::Errno;

use super::super::ops::{Op, PlannedOp};
use crate::sys;

/// Every signal (a kernel sigset: bit n-1 = signal n).
const ALL_SIGNALS: u64 = !0;

/// Size of the status record: the program's raw wait status, native-endian `i32`.
pub(crate) const STATUS_SIZE: usize = 4;

/// At [`Step::StartInit`](super::super::Step::StartInit): forks the program. Returns in the new
/// process, which goes on with the plan (`no_new_privs`, seccomp, chdir, exec); the init
/// never returns. `rest` is the plan after this step: the init takes its `no_new_privs` and
/// seccomp too, so it is no less confined than the program.
pub(super) fn start(status_fd: RawFd, rest: &[PlannedOp]) -> Result<(), (Errno, u32)> {
    // Blocked before the fork: a signal sent to the init meanwhile is queued, not dropped
    // (the kernel drops unhandled signals to a namespace's init unless they are blocked),
    // and the SIGCHLD of a program that dies at once waits for the loop.
    sys::set_signal_mask(ALL_SIGNALS).map_err(|e| (e, 0))?;
    let program = sys::fork_raw().map_err(|e| (e, 0))?;
    if program == 0 {
        // The program: signals as the plan's reset left them.
        sys::set_signal_mask(0).map_err(|e| (e, 0))?;
        return Ok(());
    }
    // The init keeps only its status pipe. The program holds its own copies of the others:
    // the caller's report pipe reaches end of file once the program has exec'd, and the
    // program's output pipes once it (not the init) is gone.
    close_all_but(status_fd);
    for planned in rest {
        if matches!(planned.op, Op::NoNewPrivs | Op::Seccomp { .. }) {
            // A failure here is the program's to report (it runs the same step); the init
            // runs nothing but this loop.
            let _ = super::execute(&planned.op);
        }
    }
    supervise(program, status_fd)
}

/// Closes every descriptor but `keep`.
fn close_all_but(keep: RawFd) {
    match u32::try_from(keep) {
        Ok(keep) => {
            if keep > 0 {
                let _ = sys::close_range(0, keep - 1);
            }
            let _ = sys::close_range(keep.saturating_add(1), u32::MAX);
        }
        Err(_) => {
            let _ = sys::close_range(0, u32::MAX);
        }
    }
}

/// Forwards signals to `program` and reaps children until `program` has exited, then
/// reports its status and exits with its code.
fn supervise(program: libc::pid_t, status_fd: RawFd) -> ! {
    loop {
        let signal = match sys::wait_signal(ALL_SIGNALS) {
            Ok(signal) => signal,
            Err(_) => {
                // Cannot wait for signals (a seccomp profile that forbids it): the program
                // cannot be supervised; end it rather than leave it without a parent that
                // reaps.
                let _ = sys::kill(program, libc::SIGKILL);
                sys::exit_now(127)
            }
        };
        if signal != libc::SIGCHLD {
            // Gone already: its SIGCHLD is queued and ends the loop next.
            let _ = sys::kill(program, signal);
            continue;
        }
        loop {
            match sys::reap_any() {
                Ok(Some((pid, status))) if pid == program => finish(status, status_fd),
                // An orphan of the program, reparented to us.
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// Writes the program's wait status for the caller and exits with the code a shell would
/// show for it. The rest of the pid namespace is killed by the kernel as the init exits.
fn finish(status: libc::c_int, status_fd: RawFd) -> ! {
    let _ = sys::write_all(status_fd, &status.to_ne_bytes());
    sys::exit_now(exit_code(status))
}

/// The init's own exit code for the program's wait status.
pub(crate) fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        127
    }
}

/// The program's end from its raw wait status, as [`super::super::wait_pidfd`] reports a process's.
pub(crate) fn decode(status: libc::c_int) -> Option<super::super::ExitStatus> {
    if libc::WIFEXITED(status) {
        Some(super::super::ExitStatus::Exited(libc::WEXITSTATUS(status)))
    } else if libc::WIFSIGNALED(status) {
        Some(super::super::ExitStatus::Signaled {
            signal: libc::WTERMSIG(status),
            core_dumped: libc::WCOREDUMP(status),
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_decode_as_the_kernel_encodes_them() {
        // exit(3): code in bits 8..16; SIGTERM: signal in the low 7 bits; 0x80 = core dumped.
        assert_eq!(
            decode(3 << 8),
            Some(super::super::super::ExitStatus::Exited(3))
        );
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(
            decode(libc::SIGTERM),
            Some(super::super::super::ExitStatus::Signaled {
                signal: libc::SIGTERM,
                core_dumped: false
            })
        );
        assert_eq!(exit_code(libc::SIGTERM), 128 + libc::SIGTERM);
        assert_eq!(
            decode(libc::SIGSEGV | 0x80),
            Some(super::super::super::ExitStatus::Signaled {
                signal: libc::SIGSEGV,
                core_dumped: true
            })
        );
        // Stopped (0x7f in the low byte) is not an end.
        assert_eq!(decode(0x137f), None);
    }
}
