//! Raw system calls: the only module of this crate with `unsafe`.
//!
//! Owns the thin wrappers around syscalls that `nix`/`libc` do not wrap safely (clone3,
//! pivot_root, capset, seccomp, openat2, waitid on a pidfd, ...). It holds no policy: callers
//! decide what to call and in which order.
//!
//! Two kinds of functions live here:
//! - **child-safe** functions (marked so in their docs) are called in the child between `clone3`
//!   and `execve`. They are async-signal-safe: they issue raw syscalls through `libc::syscall`
//!   (never glibc wrappers that take locks or broadcast to threads, such as `setresuid`), never
//!   allocate, never panic, and report failure as an [`Errno`] read from the thread's errno.
//! - parent-side helpers, which may allocate.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

use nix::errno::Errno;

/// Turns a raw syscall result (`-1` + errno on failure) into a `Result`.
fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret == -1 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// Pointer to a C string, or NULL.
fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    match s {
        Some(s) => s.as_ptr(),
        None => ptr::null(),
    }
}

// ---------------------------------------------------------------------------------------------
// clone3
// ---------------------------------------------------------------------------------------------

/// `CLONE_INTO_CGROUP` (libc's constant is deprecated for overflowing a c_int).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// What `clone3` needs from the caller. The child's stack is a copy of the parent's (no
/// `CLONE_VM`), so this behaves like `fork`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CloneRequest {
    /// `CLONE_NEW*` flags; `CLONE_PIDFD` and `CLONE_INTO_CGROUP` are added here.
    pub namespace_flags: u64,
    /// A cgroup2 directory fd to start the child in (`CLONE_INTO_CGROUP`).
    pub cgroup_dir: Option<RawFd>,
}

/// Clones the calling thread into a new process that runs `child_main`, which should exec or
/// `_exit` (if it returns, the child exits with 127). Returns the child's pid and a pidfd in the parent.
///
/// Contract for `child_main` (not expressible in types): it runs in a copy of a possibly
/// multi-threaded process in which only this thread exists, so it may only call the child-safe
/// functions of this module and plain, non-panicking, non-allocating Rust. The caller should
/// block all signals around this call so that no inherited signal handler runs in the child.
pub(crate) fn clone3_spawn(
    request: CloneRequest,
    child_main: &dyn Fn(),
) -> Result<(libc::pid_t, OwnedFd), Errno> {
    let mut pidfd: libc::c_int = -1;
    let mut flags = request.namespace_flags | libc::CLONE_PIDFD as u64;
    let mut cgroup: u64 = 0;
    if let Some(fd) = request.cgroup_dir {
        flags |= CLONE_INTO_CGROUP;
        cgroup = fd as u64;
    }
    // SAFETY: an all-zero `clone_args` is a valid value (plain integers).
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = flags;
    args.pidfd = &mut pidfd as *mut libc::c_int as u64;
    args.exit_signal = libc::SIGCHLD as u64;
    args.cgroup = cgroup;
    // SAFETY: `args` is a valid, properly sized clone_args; `pidfd` outlives the call. Without
    // CLONE_VM and with stack = 0 the child continues on a private copy of this stack, exactly
    // like fork(); the child branch never returns from this function (child_main diverges).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    let pid = check(ret)?;
    if pid == 0 {
        child_main();
        // child_main is supposed to exec or _exit; never return into the parent's code.
        exit_now(127);
    }
    // SAFETY: with CLONE_PIDFD the kernel stored a fresh fd we now own exclusively.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok((pid as libc::pid_t, pidfd))
}

// ---------------------------------------------------------------------------------------------
// child-safe wrappers
// ---------------------------------------------------------------------------------------------

/// Child-safe. Ends the process immediately, without running atexit handlers or flushing.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// Child-safe. Writes the whole buffer (retrying on EINTR and short writes).
pub(crate) fn write_all(fd: RawFd, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        // SAFETY: buf points to buf.len() readable bytes.
        let ret = unsafe { libc::syscall(libc::SYS_write, fd, buf.as_ptr(), buf.len()) };
        match check(ret) {
            Ok(n) => {
                let n = n as usize;
                if n == 0 || n > buf.len() {
                    return Err(Errno::EIO);
                }
                buf = buf.get(n..).unwrap_or(&[]);
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Child-safe. `setns(fd, nstype)`.
pub(crate) fn setns(fd: RawFd, nstype: libc::c_int) -> Result<(), Errno> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_setns, fd, nstype) }).map(drop)
}

/// Child-safe. `unshare(flags)`.
pub(crate) fn unshare(flags: libc::c_int) -> Result<(), Errno> {
    // SAFETY: plain integer argument.
    check(unsafe { libc::syscall(libc::SYS_unshare, flags) }).map(drop)
}

/// Child-safe. `mount(2)`.
pub(crate) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Result<(), Errno> {
    // SAFETY: every pointer is NULL or a NUL-terminated string that outlives the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount,
            opt_ptr(source),
            target.as_ptr(),
            opt_ptr(fstype),
            flags,
            opt_ptr(data).cast::<libc::c_void>(),
        )
    })
    .map(drop)
}

/// Child-safe. `umount2(2)`.
pub(crate) fn umount2(target: &CStr, flags: libc::c_int) -> Result<(), Errno> {
    // SAFETY: target is a NUL-terminated string that outlives the call.
    check(unsafe { libc::syscall(libc::SYS_umount2, target.as_ptr(), flags) }).map(drop)
}

/// Child-safe. `mkdirat(AT_FDCWD, path, mode)`.
pub(crate) fn mkdir(path: &CStr, mode: libc::mode_t) -> Result<(), Errno> {
    // SAFETY: path is a NUL-terminated string that outlives the call.
    check(unsafe { libc::syscall(libc::SYS_mkdirat, libc::AT_FDCWD, path.as_ptr(), mode) })
        .map(drop)
}

/// Child-safe. Creates an empty regular file (a mount point for a file bind) with one
/// `mknodat`; an existing file is fine.
pub(crate) fn create_file(path: &CStr, mode: libc::mode_t) -> Result<(), Errno> {
    // SAFETY: path is a NUL-terminated string that outlives the call.
    match check(unsafe {
        libc::syscall(
            libc::SYS_mknodat,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::S_IFREG | mode,
            0,
        )
    }) {
        Ok(_) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Child-safe. `symlinkat(target, AT_FDCWD, link)`.
pub(crate) fn symlink(target: &CStr, link: &CStr) -> Result<(), Errno> {
    // SAFETY: both are NUL-terminated strings that outlive the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_symlinkat,
            target.as_ptr(),
            libc::AT_FDCWD,
            link.as_ptr(),
        )
    })
    .map(drop)
}

/// Child-safe. `chdir(path)`.
pub(crate) fn chdir(path: &CStr) -> Result<(), Errno> {
    // SAFETY: path is a NUL-terminated string that outlives the call.
    check(unsafe { libc::syscall(libc::SYS_chdir, path.as_ptr()) }).map(drop)
}

/// Child-safe. `pivot_root(new_root, put_old)`.
pub(crate) fn pivot_root(new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
    // SAFETY: both are NUL-terminated strings that outlive the call.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
        .map(drop)
}

/// Child-safe. `sethostname(name)`.
pub(crate) fn sethostname(name: &[u8]) -> Result<(), Errno> {
    // SAFETY: name points to name.len() readable bytes.
    check(unsafe { libc::syscall(libc::SYS_sethostname, name.as_ptr(), name.len()) }).map(drop)
}

/// Child-safe. `prlimit64(0, resource, {soft, hard}, NULL)`.
pub(crate) fn set_rlimit(resource: u32, soft: u64, hard: u64) -> Result<(), Errno> {
    let limit = libc::rlimit64 {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `limit` is a valid rlimit64 that outlives the call; old-limit pointer is NULL.
    check(unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0,
            resource,
            &limit as *const libc::rlimit64,
            ptr::null_mut::<libc::rlimit64>(),
        )
    })
    .map(drop)
}

/// Child-safe. `dup3(from, to, 0)`: the copy at `to` is not close-on-exec.
pub(crate) fn dup_onto(from: RawFd, to: RawFd) -> Result<(), Errno> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_dup3, from, to, 0) }).map(drop)
}

/// Child-safe. `close_range(first, last, 0)`.
pub(crate) fn close_range(first: u32, last: u32) -> Result<(), Errno> {
    if first > last {
        return Ok(());
    }
    // SAFETY: plain integer arguments; closes fds of this process only.
    check(unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) }).map(drop)
}

/// Child-safe. `prctl(option, arg2, arg3, arg4, arg5)` with integer arguments.
pub(crate) fn prctl(
    option: libc::c_int,
    arg2: libc::c_ulong,
    arg3: libc::c_ulong,
) -> Result<libc::c_long, Errno> {
    // SAFETY: every prctl option used by this crate takes integer arguments only.
    check(unsafe { libc::syscall(libc::SYS_prctl, option, arg2, arg3, 0 as libc::c_ulong, 0) })
}

/// `_LINUX_CAPABILITY_VERSION_3` (64-bit capability sets in two 32-bit words).
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Child-safe. Sets the effective, permitted and inheritable sets of the calling thread.
pub(crate) fn capset(effective: u64, permitted: u64, inheritable: u64) -> Result<(), Errno> {
    let header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: inheritable as u32,
        },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    // SAFETY: header and data match the kernel's v3 layout (one header, two data words) and
    // outlive the call.
    check(unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) })
        .map(drop)
}

/// Child-safe. `setgroups(gids)` as a raw syscall: glibc's wrapper would try to broadcast the
/// change to threads that do not exist in the child.
pub(crate) fn setgroups(gids: &[libc::gid_t]) -> Result<(), Errno> {
    // SAFETY: gids points to gids.len() readable gid_t values.
    check(unsafe { libc::syscall(libc::SYS_setgroups, gids.len(), gids.as_ptr()) }).map(drop)
}

/// Child-safe. `setresgid(gid, gid, gid)` as a raw syscall (see [`setgroups`]).
pub(crate) fn setresgid(gid: libc::gid_t) -> Result<(), Errno> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) }).map(drop)
}

/// Child-safe. `setresuid(uid, uid, uid)` as a raw syscall (see [`setgroups`]).
pub(crate) fn setresuid(uid: libc::uid_t) -> Result<(), Errno> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) }).map(drop)
}

/// Child-safe. Installs a seccomp BPF filter (`SECCOMP_SET_MODE_FILTER`). Requires
/// `no_new_privs` or `CAP_SYS_ADMIN`.
pub(crate) fn seccomp_set_filter(program: &[libc::sock_filter]) -> Result<(), Errno> {
    let Ok(len) = u16::try_from(program.len()) else {
        return Err(Errno::E2BIG);
    };
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: prog describes `len` valid instructions that outlive the call; the kernel copies
    // the program and never writes through the pointer.
    check(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    })
    .map(drop)
}

/// Child-safe. Resets every signal disposition to `SIG_DFL`. Run before unblocking signals so
/// that no handler inherited from the parent ever runs in the child.
pub(crate) fn reset_signal_dispositions() {
    // The kernel's struct sigaction: handler, flags, restorer, mask on x86_64 and aarch64. An
    // all-zero value is SIG_DFL with no flags and an empty mask.
    let action = [0u64; 4];
    for signal in 1..=64 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: action is a zeroed kernel sigaction that outlives the call; old action NULL;
        // sigsetsize is 8 as the kernel requires.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                action.as_ptr(),
                ptr::null_mut::<u64>(),
                8usize,
            )
        };
    }
}

/// Child-safe. Sets the signal mask to `mask` (a kernel sigset: bit n-1 = signal n).
pub(crate) fn set_signal_mask(mask: u64) -> Result<(), Errno> {
    // SAFETY: mask is a valid 8-byte kernel sigset that outlives the call; old set NULL.
    check(unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &mask as *const u64,
            ptr::null_mut::<u64>(),
            8usize,
        )
    })
    .map(drop)
}

/// Child-safe. `execve(path, argv, envp)`; only returns on failure.
///
/// `argv` and `envp` must be NULL-terminated arrays of pointers to NUL-terminated strings (the
/// caller's prepared tables guarantee it).
pub(crate) fn execve(
    path: &CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> Errno {
    if argv.last().is_some_and(|p| !p.is_null()) || envp.last().is_some_and(|p| !p.is_null()) {
        return Errno::EINVAL;
    }
    if argv.is_empty() || envp.is_empty() {
        return Errno::EINVAL;
    }
    // SAFETY: path is NUL-terminated; argv/envp are NULL-terminated pointer arrays (checked
    // above) whose strings are owned by the caller's plan and outlive the call.
    unsafe {
        libc::syscall(
            libc::SYS_execve,
            path.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
        )
    };
    Errno::last()
}

// ---------------------------------------------------------------------------------------------
// parent-side wrappers
// ---------------------------------------------------------------------------------------------

/// `openat2(dirfd, path, {flags, mode, resolve})`; the result is close-on-exec.
pub(crate) fn openat2(
    dirfd: BorrowedFd<'_>,
    path: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
    resolve: u64,
) -> Result<OwnedFd, Errno> {
    // SAFETY: an all-zero open_how is valid (plain integers).
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
        u64::from(mode)
    } else {
        0
    };
    how.resolve = resolve;
    loop {
        // SAFETY: path is NUL-terminated and `how` is a valid open_how; both outlive the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd.as_raw_fd(),
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        match check(ret) {
            // SAFETY: the kernel returned a fresh fd that we now own exclusively.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
            // RESOLVE_* lookups may fail spuriously with EAGAIN under concurrent renames.
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `pidfd_send_signal(pidfd, signal, NULL, 0)`.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: libc::c_int) -> Result<(), Errno> {
    // SAFETY: integer arguments; the siginfo pointer is NULL as documented.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            ptr::null_mut::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

/// How a reaped child ended, as `waitid` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WaitOutcome {
    /// `CLD_EXITED`, `CLD_KILLED` or `CLD_DUMPED`.
    pub code: libc::c_int,
    /// The exit code or the signal number.
    pub status: libc::c_int,
}

/// `waitid(P_PIDFD, pidfd, WEXITED [| WNOHANG])`. `Ok(None)` with `nohang` when the process has
/// not exited yet. Retries on EINTR.
pub(crate) fn waitid_pidfd(
    pidfd: BorrowedFd<'_>,
    nohang: bool,
) -> Result<Option<WaitOutcome>, Errno> {
    let mut options = libc::WEXITED;
    if nohang {
        options |= libc::WNOHANG;
    }
    loop {
        // SAFETY: an all-zero siginfo_t is valid (plain integers and unions of them).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: info is a valid, writable siginfo_t that outlives the call.
        let ret = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                options,
            )
        };
        if ret == -1 {
            match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(e),
            }
        }
        // SAFETY: waitid filled the SIGCHLD fields of the union (or left it zeroed with
        // WNOHANG, which si_pid() == 0 tells apart).
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        return Ok(Some(WaitOutcome {
            code: info.si_code,
            status,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_data_layout_matches_the_kernel() {
        assert_eq!(std::mem::size_of::<CapHeader>(), 8);
        assert_eq!(std::mem::size_of::<CapData>(), 12);
    }
}
