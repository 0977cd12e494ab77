//! Raw system calls for entering a running sandbox ([`crate::sandbox::enter`]): pidfds,
//! `chroot`/`fchdir`, sessions and controlling terminals, and the pty ioctls.
//!
//! Same rules as the parent module: child-safe functions (marked) are raw syscalls that never
//! allocate or panic; the others run in the parent and may allocate. No policy lives here.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use super::check;

/// `pidfd_open(pid, 0)`: a close-on-exec pidfd for a process the caller need not be the
/// parent of.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> Result<OwnedFd, Errno> {
    // SAFETY: plain integer arguments; the kernel returns a new fd or -1.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: pidfd_open returned a fresh fd that we now own exclusively (pidfds are always
    // close-on-exec).
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Child-safe. `fchdir(fd)` (an `O_PATH` directory fd is accepted).
pub(crate) fn fchdir(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: plain integer argument.
    check(unsafe { libc::syscall(libc::SYS_fchdir, fd) }).map(drop)
}

/// Child-safe. `chroot(path)`.
pub(crate) fn chroot(path: &CStr) -> Result<(), Errno> {
    // SAFETY: path is a NUL-terminated string that outlives the call.
    check(unsafe { libc::syscall(libc::SYS_chroot, path.as_ptr()) }).map(drop)
}

/// Child-safe. `setsid()`: a new session and process group led by the caller.
pub(crate) fn setsid() -> Result<(), Errno> {
    // SAFETY: no arguments.
    check(unsafe { libc::syscall(libc::SYS_setsid) }).map(drop)
}

/// Child-safe. `ioctl(fd, TIOCSCTTY, 0)`: makes the terminal on `fd` the controlling terminal
/// of the calling session leader (never stealing one that belongs to another session).
pub(crate) fn set_controlling_tty(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an integer argument.
    check(unsafe { libc::syscall(libc::SYS_ioctl, fd, libc::TIOCSCTTY, 0) }).map(drop)
}

/// `fstatfs(fd).f_type`: which filesystem an open file lives on.
pub(crate) fn filesystem_magic(fd: BorrowedFd<'_>) -> Result<i64, Errno> {
    // SAFETY: an all-zero statfs is a valid value (plain integers).
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: buf is a valid, writable statfs that outlives the call.
    let ret = unsafe { libc::fstatfs(fd.as_raw_fd(), &mut buf) };
    if ret == -1 {
        return Err(Errno::last());
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between architectures.
    Ok(buf.f_type as i64)
}

/// `ioctl(master, TIOCSPTLCK, &0)`: unlocks the slave of a pty master.
pub(crate) fn pty_unlock(master: BorrowedFd<'_>) -> Result<(), Errno> {
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int through the pointer, which outlives the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_ioctl,
            master.as_raw_fd(),
            libc::TIOCSPTLCK,
            &unlock as *const libc::c_int,
        )
    })
    .map(drop)
}

/// `ioctl(fd, TIOCSWINSZ, {rows, cols})` on a pty master or slave.
pub(crate) fn pty_set_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<(), Errno> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize through the pointer, which outlives the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_ioctl,
            fd.as_raw_fd(),
            libc::TIOCSWINSZ,
            &size as *const libc::winsize,
        )
    })
    .map(drop)
}

/// `ioctl(fd, TIOCGWINSZ)`: the window size of a terminal as (rows, cols).
pub(crate) fn pty_size(fd: BorrowedFd<'_>) -> Result<(u16, u16), Errno> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize through the pointer, which outlives the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_ioctl,
            fd.as_raw_fd(),
            libc::TIOCGWINSZ,
            &mut size as *mut libc::winsize,
        )
    })?;
    Ok((size.ws_row, size.ws_col))
}

/// `ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)`: opens the slave of a pty
/// master without a path lookup (so nobody can substitute another file for `/dev/pts/N`).
pub(crate) fn pty_open_peer(master: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes integer open flags and returns a new fd.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_ioctl,
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            flags,
        )
    })?;
    // SAFETY: the kernel returned a fresh fd that we now own exclusively.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}
