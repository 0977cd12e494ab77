//! The binary's only `unsafe`: small process-level calls std does not wrap.

use std::os::unix::process::CommandExt;

/// Makes the spawned child lead a new session: no controlling terminal, its own process group,
/// so a Ctrl-C or a closed terminal aimed at the agent does not reach it.
pub fn detach_into_own_session(cmd: &mut std::process::Command) {
    // SAFETY: the closure runs in the forked child before exec and calls only setsid(2), which
    // is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Marks this process a child subreaper: orphaned descendants are reparented to it rather than
/// to PID 1 (which, on some hosts, is a custom init that does not reap).
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes plain integers and changes only a flag of
    // the calling process.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the process runs as root (the exec driver needs it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use tokio::io::unix::AsyncFd;

/// Types whose `as_raw_fd` is one fd they keep open, unchanged, for as long as they live —
/// what tokio's `AsyncFd::register` requires.
pub trait OwnsFd: AsRawFd {}

impl OwnsFd for OwnedFd {}

/// An fd shared between the supervisor's task table and a watcher.
#[derive(Debug, Clone)]
pub struct SharedFd(pub Rc<OwnedFd>);

impl AsRawFd for SharedFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl OwnsFd for SharedFd {}

/// Registers `inner` with the tokio reactor.
pub fn async_fd<T: OwnsFd>(inner: T) -> std::io::Result<AsyncFd<T>> {
    // SAFETY: `OwnsFd` types own their descriptor (an `OwnedFd`, or an `Rc<OwnedFd>` clone
    // kept inside the `AsyncFd`), so it stays open and refers to the same file description
    // for the `AsyncFd`'s whole life, and `as_raw_fd` always returns that same fd.
    unsafe { AsyncFd::register(inner) }.map_err(|e| e.into_parts().1)
}

/// `pidfd_open(2)`: a descriptor that becomes readable when process `pid` exits.
pub fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd)
        .map_err(|_| std::io::Error::other("pidfd_open returned an fd out of range"))?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(2)`: signals exactly the process `pidfd` refers to (no pid reuse race).
pub fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> std::io::Result<()> {
    // SAFETY: takes a pidfd borrowed for the call, a signal number, a null siginfo and flags 0;
    // no memory is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `data` on a unix socket with `fds` attached (SCM_RIGHTS). Returns the bytes sent.
pub fn send_with_fds(socket: RawFd, data: &[u8], fds: &[RawFd]) -> std::io::Result<usize> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [std::io::IoSlice::new(data)];
    let cmsgs: Vec<ControlMessage> = if fds.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(fds)]
    };
    sendmsg::<()>(socket, &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None).map_err(std::io::Error::from)
}

/// Most descriptors one message may carry.
pub const MAX_PASSED_FDS: usize = 4;

/// Receives bytes from a unix socket and any descriptors attached (SCM_RIGHTS), close-on-exec.
/// `Ok((0, _))` is end of stream.
pub fn recv_with_fds(socket: RawFd, buf: &mut [u8]) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_PASSED_FDS]);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        socket,
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for fd in raw {
                // SAFETY: the kernel installed these descriptors in our table for this message;
                // nothing else refers to them, so each gets exactly one owner here.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok((msg.bytes, fds))
}

/// The size of the terminal on `fd` (rows, cols), if it is one.
pub fn terminal_size(fd: RawFd) -> Option<(u16, u16)> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the pointer we pass, which points to a
    // live, properly aligned local of that type.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size as *mut libc::winsize) };
    (rc == 0 && size.ws_row > 0).then_some((size.ws_row, size.ws_col))
}

/// Sets the calling thread's nice value (Linux: per thread).
pub fn set_thread_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: plain integer arguments; `who` 0 is the calling thread.
    let ret = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Pins the calling thread to `cpu` if its affinity allows that CPU; returns the affinity to
/// restore afterwards (`None`: left as it was).
pub fn pin_to_cpu(cpu: usize) -> Option<nix::sched::CpuSet> {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let previous = sched_getaffinity(Pid::from_raw(0)).ok()?;
    if !previous.is_set(cpu).unwrap_or(false) {
        return None;
    }
    let mut only = CpuSet::new();
    only.set(cpu).ok()?;
    sched_setaffinity(Pid::from_raw(0), &only).ok()?;
    Some(previous)
}

/// Gives the calling thread back the affinity [`pin_to_cpu`] returned.
pub fn restore_affinity(previous: &nix::sched::CpuSet) {
    if let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), previous) {
        tracing::warn!("restoring the background thread's CPU affinity: {e}");
    }
}

/// Whether this kernel has the `bpf(2)` system call and lets this process call it: the call
/// is made with a command number no kernel defines, which a kernel with BPF rejects with
/// `EINVAL` after its permission checks. `Ok(())` means available; otherwise the error says
/// why not (`ENOSYS`: built without BPF; `EPERM`: not permitted).
pub fn probe_bpf_syscall() -> std::io::Result<()> {
    // SAFETY: bpf(2) with a null attribute pointer and size 0 reads and writes no memory of
    // ours; an unknown command changes nothing in the kernel.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            libc::c_int::MAX,
            std::ptr::null::<libc::c_void>(),
            0u32,
        )
    };
    let err = std::io::Error::last_os_error();
    match (rc, err.raw_os_error()) {
        // No kernel defines the command, but be honest if one ever does.
        (r, _) if r >= 0 => Ok(()),
        (_, Some(libc::EINVAL)) => Ok(()),
        _ => Err(err),
    }
}
