//! The steps the child interprets: each an [`Op`] (plain data: C strings, numbers, raw fds
//! owned elsewhere) with the [`Step`] and target that name it in errors.
//!
//! Shared vocabulary of the modules that make steps (`plan`), run them after `clone3`
//! (`child`) and run them to build a jail template (`template`); it depends on none of them.

use std::ffi::CString;
use std::os::fd::RawFd;

use nix::errno::Errno;

use super::Step;
use crate::describe_errno;

/// One prepared action of the child. Holds only data the child reads (C strings, numbers,
/// raw fds owned elsewhere); executing it needs no allocation.
#[derive(Debug)]
pub(crate) enum Op {
    /// Write `data` to an fd opened by the parent (a v1 `tasks` file).
    WriteFd {
        fd: RawFd,
        data: &'static [u8],
    },
    SetNs {
        fd: RawFd,
        nstype: libc::c_int,
    },
    /// `setns` into the jail template's mount namespace (fd filled in by
    /// [`Plan::prepare_jail`](super::plan::Plan::prepare_jail)): root and working directory
    /// become the template's root.
    EnterTemplate {
        fd: RawFd,
    },
    /// Attach the detached tree `fd` (of `Plan::detached[bind]`, opened by
    /// [`Plan::prepare_jail`](super::plan::Plan::prepare_jail)) at `target`.
    MoveMount {
        fd: RawFd,
        bind: usize,
        target: CString,
    },
    Unshare {
        flags: libc::c_int,
    },
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
        /// ENOENT is not an error (masks of paths the kernel may not have).
        optional: bool,
    },
    /// `mkdir`; an existing directory is fine.
    Mkdir {
        path: CString,
        mode: libc::mode_t,
    },
    /// An empty file as mount point; an existing file is fine.
    MkFile {
        path: CString,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    Chdir {
        path: CString,
    },
    /// `fchdir` onto a directory fd opened by the parent (entering a running sandbox).
    Fchdir {
        fd: RawFd,
    },
    Chroot {
        path: CString,
    },
    /// `PR_SET_DUMPABLE 0`: no other process of the same uid may inspect this one through
    /// `/proc/<pid>` or ptrace before `execve` resets it.
    NotDumpable,
    /// `setsid()`.
    NewSession,
    /// `TIOCSCTTY` on `fd` (after `setsid`).
    ControllingTty {
        fd: RawFd,
    },
    /// `pivot_root(".", ".")` after `chdir(new_root)`.
    PivotRoot,
    UmountDetach {
        path: CString,
    },
    SetHostname {
        name: Vec<u8>,
    },
    SetRlimit {
        resource: u32,
        soft: u64,
        hard: u64,
    },
    /// `dup3(from, to)`.
    Dup {
        from: RawFd,
        to: RawFd,
    },
    /// Close every fd ≥ 3 except those in `keep` (the report pipe, the go-ahead pipe and
    /// the init's status pipe, all close-on-exec; -1 for none).
    CloseFrom {
        keep: [RawFd; 3],
    },
    /// Wait (at most `timeout_ms`) for one byte on `fd`; end of file is `ECANCELED`.
    AwaitByte {
        fd: RawFd,
        timeout_ms: i32,
    },
    ResetSignals,
    DropBounding {
        keep: u64,
        last_cap: u8,
    },
    SetGroups {
        gids: Vec<libc::gid_t>,
    },
    SetGid {
        gid: libc::gid_t,
    },
    KeepCaps {
        on: bool,
    },
    SetUid {
        uid: libc::uid_t,
    },
    Capset {
        effective: u64,
        permitted: u64,
        inheritable: u64,
    },
    /// Clear the ambient set, then raise these.
    Ambient {
        raise: u64,
        last_cap: u8,
    },
    /// Fork: the new process goes on with the plan and becomes the task; this one stays as
    /// the small init, PID 1 of the task's pid namespace (see `super::init`), and reports
    /// the task's wait status on `status_fd` (filled in by `Plan::set_status_fd`).
    StartInit {
        status_fd: RawFd,
    },
    NoNewPrivs,
    Seccomp {
        program: Vec<libc::sock_filter>,
    },
    /// Try each candidate path in turn.
    Exec {
        candidates: Vec<CString>,
        argv: crate::sys::CStrArray,
        envp: crate::sys::CStrArray,
    },
}

/// A step of the plan with the text that names it in errors.
#[derive(Debug)]
pub(crate) struct PlannedOp {
    pub step: Step,
    pub target: String,
    pub op: Op,
}

/// "what target: why (hint)" for a failed step other than exec.
pub(crate) fn step_message(planned: &PlannedOp, errno: Errno) -> String {
    let step = planned.step;
    let target = if planned.target.is_empty() {
        String::new()
    } else {
        format!(" {}", planned.target)
    };
    format!(
        "{}{target}: {}{}",
        step.phrase(),
        describe_errno(errno),
        step_hint(step, errno)
    )
}

fn step_hint(step: Step, errno: Errno) -> &'static str {
    match (step, errno) {
        (Step::JoinCgroup, Errno::ENOSPC) => " (the cgroup's cpuset.cpus or cpuset.mems is empty)",
        (Step::JoinCgroup, Errno::EAGAIN) => " (the cgroup's pids limit is reached)",
        (Step::PivotRoot, Errno::EINVAL) => {
            " (pivot_root needs the host root to be a real mount, not a ramdisk)"
        }
        (Step::MountCgroup, Errno::EBUSY) => {
            " (the mount options differ from the host's hierarchy)"
        }
        (Step::ChangeDirectory, Errno::ENOENT) => {
            " (the working directory must exist inside the sandbox)"
        }
        (Step::BindMount, Errno::ENOENT) => " (the host path disappeared after validation)",
        (Step::AwaitGoAhead, Errno::ECANCELED) => {
            " (the caller stopped the start before the program ran; its own error says why)"
        }
        (Step::AwaitGoAhead, Errno::ETIMEDOUT) => " (no go-ahead came in time)",
        _ => "",
    }
}
