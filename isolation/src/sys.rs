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

mod entry;
pub(crate) use entry::*;

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

/// What `clone3` needs from the caller, for [`clone3_spawn`] (the child gets a copy of the
/// caller's memory, like `fork`) and [`clone3_spawn_shared`] (it borrows it, like `vfork`).
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

/// Usable stack of a child started by [`clone3_spawn_shared`] (only touched pages become
/// resident; the sandbox child needs a few KiB, debug builds more).
const SHARED_CHILD_STACK_BYTES: usize = 256 * 1024;

/// The inaccessible page below that stack: an overflow faults instead of writing into
/// whatever the parent has mapped there.
const SHARED_CHILD_GUARD_BYTES: usize = 4096;

/// Like [`clone3_spawn`], but the child borrows the parent's memory instead of copying it:
/// `CLONE_VM | CLONE_VFORK` on a stack of its own, the way `posix_spawn` starts a program.
/// The calling thread is suspended until the child has called `execve` successfully or
/// exited; the other threads of the caller keep running.
///
/// Why: `clone3` without `CLONE_VM` copies the caller's page tables and write-protects every
/// private page, and afterwards each page the caller writes faults once more. For a
/// supervisor of 8–16 MB RSS that cost 0.4–0.8 ms until the child's exec plus ~2 ms of
/// faults spread over the caller's next steps (measured on a 2-vCPU host, against 0.1 ms
/// for the shared form) — more the more tasks it runs.
///
/// Contract for `child_main`, stricter than [`clone3_spawn`]'s: besides being child-safe, it
/// runs *in the caller's memory*, so it must not write to anything but its own stack (no
/// allocation, no statics, no `RefCell`s, no locks); errno writes land in the suspended
/// thread's errno, which is harmless. It must not enter a user namespace (the kernel refuses
/// `setns` into one for a process sharing its memory). All signals must be blocked around the
/// call, as for [`clone3_spawn`].
///
/// Only on x86_64, the architecture this crate's tests run on; elsewhere this is
/// [`clone3_spawn`].
#[cfg(target_arch = "x86_64")]
pub(crate) fn clone3_spawn_shared(
    request: CloneRequest,
    child_main: &dyn Fn(),
) -> Result<(libc::pid_t, OwnedFd), Errno> {
    let stack = ChildStack::map()?;
    let mut pidfd: libc::c_int = -1;
    let mut flags = request.namespace_flags
        | libc::CLONE_PIDFD as u64
        | libc::CLONE_VM as u64
        | libc::CLONE_VFORK as u64;
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
    args.stack = stack.low as u64;
    args.stack_size = SHARED_CHILD_STACK_BYTES as u64;
    let entry_data: *const &dyn Fn() = &child_main;
    // SAFETY: `args` is a valid clone_args describing a writable, unused stack that stays
    // mapped until `stack` drops, i.e. after the child stopped using it (CLONE_VFORK resumes
    // us only once the child has exec'd or exited). `entry_data` points into this frame,
    // which lives as long as the child runs for the same reason. The child branch only runs
    // `shared_child_entry`, which never returns.
    let ret = unsafe {
        raw_clone3_on_new_stack(
            &mut args,
            std::mem::size_of::<libc::clone_args>(),
            shared_child_entry,
            entry_data.cast(),
        )
    };
    drop(stack);
    if ret < 0 {
        return Err(Errno::from_raw(i32::try_from(-ret).unwrap_or(libc::EINVAL)));
    }
    // SAFETY: with CLONE_PIDFD the kernel stored a fresh fd we now own exclusively.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok((ret as libc::pid_t, pidfd))
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn clone3_spawn_shared(
    request: CloneRequest,
    child_main: &dyn Fn(),
) -> Result<(libc::pid_t, OwnedFd), Errno> {
    clone3_spawn(request, child_main)
}

/// First Rust code of a [`clone3_spawn_shared`] child, on its own stack.
#[cfg(target_arch = "x86_64")]
extern "C" fn shared_child_entry(data: *const libc::c_void) -> ! {
    // SAFETY: `data` is the `*const &dyn Fn()` built by clone3_spawn_shared, whose frame stays
    // alive (the parent thread is suspended) until this process execs or exits.
    let child_main: &dyn Fn() = unsafe { *data.cast::<&dyn Fn()>() };
    child_main();
    exit_now(127)
}

/// `clone3(args, size)`; in the child (on the new stack given in `args`) calls
/// `entry(data)`, which must not return. Returns the raw result in the parent: the child's
/// pid, or `-errno`.
///
/// # Safety
/// `args` must be a valid clone_args with a 16-byte aligned, writable stack that is not used
/// by anything else while the child runs; `entry` must never return.
#[cfg(target_arch = "x86_64")]
unsafe fn raw_clone3_on_new_stack(
    args: *mut libc::clone_args,
    size: usize,
    entry: extern "C" fn(*const libc::c_void) -> !,
    data: *const libc::c_void,
) -> i64 {
    let ret: i64;
    // SAFETY: the caller guarantees the clone_args and the stack. In the parent only rax (the
    // result), rcx and r11 (clobbered by `syscall`) change. In the child the kernel has set
    // rsp to the top of the new stack (16-byte aligned, so the `call` leaves it as the ABI
    // wants at function entry); r12/r13 still hold entry and data; `entry` never returns,
    // `ud2` only documents that.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args,
            in("rsi") size,
            in("r12") entry,
            in("r13") data,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

/// An anonymous stack with a guard page below it, unmapped on drop.
#[cfg(target_arch = "x86_64")]
struct ChildStack {
    /// Lowest usable address (just above the guard page).
    low: *mut libc::c_void,
    mapping: *mut libc::c_void,
    len: usize,
}

#[cfg(target_arch = "x86_64")]
impl ChildStack {
    fn map() -> Result<ChildStack, Errno> {
        let len = SHARED_CHILD_STACK_BYTES + SHARED_CHILD_GUARD_BYTES;
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let mapping = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if mapping == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let stack = ChildStack {
            low: mapping.wrapping_byte_add(SHARED_CHILD_GUARD_BYTES),
            mapping,
            len,
        };
        // SAFETY: the first page of the mapping we own; page-aligned because mmap returns
        // page-aligned addresses and the guard is one 4 KiB page.
        if unsafe { libc::mprotect(mapping, SHARED_CHILD_GUARD_BYTES, libc::PROT_NONE) } != 0 {
            return Err(Errno::last());
        }
        Ok(stack)
    }
}

#[cfg(target_arch = "x86_64")]
impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the whole mapping made in `map`, no longer used by anyone.
        unsafe { libc::munmap(self.mapping, self.len) };
    }
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

/// A NULL-terminated array of pointers to C strings (an `argv` or `envp`) whose strings its
/// owner keeps alive, unmoved and unchanged for as long as the array lives.
#[derive(Debug)]
pub(crate) struct CStrArray(Vec<*const libc::c_char>);

// SAFETY: the pointers are only ever read (by `execve`), and the strings they point to are
// owned by the same plan, which never mutates or frees them while the array exists.
unsafe impl Send for CStrArray {}
// SAFETY: as above: shared access only reads.
unsafe impl Sync for CStrArray {}

impl CStrArray {
    /// The array of `strings`' pointers plus the terminating NULL.
    pub(crate) fn new<'a>(strings: impl IntoIterator<Item = &'a CStr>) -> CStrArray {
        let mut v: Vec<*const libc::c_char> = strings.into_iter().map(CStr::as_ptr).collect();
        v.push(ptr::null());
        CStrArray(v)
    }

    pub(crate) fn as_slice(&self) -> &[*const libc::c_char] {
        &self.0
    }
}

/// Child-safe. `move_mount(from_fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)`: attaches
/// the detached mount tree `from_fd` (from [`open_tree_clone`]) at `target`.
pub(crate) fn move_mount(from_fd: RawFd, target: &CStr) -> Result<(), Errno> {
    // SAFETY: the empty path and target are NUL-terminated strings that outlive the call.
    check(unsafe {
        libc::syscall(
            SYS_MOVE_MOUNT,
            from_fd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
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
/// `statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, mask)`.
fn statx_nofollow(path: &CStr, mask: libc::c_uint) -> Result<libc::statx, Errno> {
    // SAFETY: all-zero bytes are a valid `statx` (plain integers).
    let mut buf: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `buf` a live, writable `statx` that
    // outlives the call.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            mask,
            &mut buf,
        )
    };
    if rc != 0 {
        return Err(Errno::last());
    }
    Ok(buf)
}

/// Whether `path` (a final symlink not followed) is the root of a mount, by `statx`'s
/// `STATX_ATTR_MOUNT_ROOT`; `None` when the kernel does not report that attribute (< 5.8).
pub(crate) fn is_mount_root(path: &CStr) -> Result<Option<bool>, Errno> {
    let buf = statx_nofollow(path, 0)?;
    let attr = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if buf.stx_attributes_mask & attr == 0 {
        return Ok(None);
    }
    Ok(Some(buf.stx_attributes & attr != 0))
}

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

/// Child-safe. Waits up to `timeout_ms` for `fd` to be readable and reads one byte: `Ok` for a
/// byte, `ECANCELED` at end of file, `ETIMEDOUT` when nothing came.
pub(crate) fn await_byte(fd: RawFd, timeout_ms: libc::c_int) -> Result<(), Errno> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `pfd` is a valid pollfd on our stack, count 1.
        match check(unsafe {
            libc::syscall(libc::SYS_poll, &mut pfd as *mut libc::pollfd, 1, timeout_ms)
        }) {
            Ok(0) => return Err(Errno::ETIMEDOUT),
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    let mut byte = 0u8;
    loop {
        // SAFETY: reads at most one byte into a byte on our stack.
        match check(unsafe { libc::syscall(libc::SYS_read, fd, &mut byte as *mut u8, 1usize) }) {
            Ok(0) => return Err(Errno::ECANCELED),
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
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

/// Child-safe, for a child with memory of its own (not a [`clone3_spawn_shared`] one): a
/// plain `fork` as the raw `clone(SIGCHLD)` syscall, without libc's fork handlers (which
/// take locks another thread of the parent may have held at the clone). Returns 0 in the new
/// process and its pid in the caller.
pub(crate) fn fork_raw() -> Result<libc::pid_t, Errno> {
    // SAFETY: clone without CLONE_VM and with a NULL stack continues the child on a private
    // copy of this stack, exactly like fork(); no pointers are passed (parent/child tid and
    // tls are unused without their flags).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    check(ret).map(|pid| pid as libc::pid_t)
}

/// Child-safe. Waits for any signal of `mask` (which should be blocked) and returns its
/// number; retries on EINTR.
pub(crate) fn wait_signal(mask: u64) -> Result<libc::c_int, Errno> {
    loop {
        // SAFETY: mask is a valid 8-byte kernel sigset; info and timeout are NULL (no info
        // wanted, wait forever), sigsetsize is 8 as the kernel requires.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_rt_sigtimedwait,
                &mask as *const u64,
                ptr::null_mut::<libc::siginfo_t>(),
                ptr::null::<libc::timespec>(),
                8usize,
            )
        };
        match check(ret) {
            Ok(signal) => return Ok(signal as libc::c_int),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Child-safe. Reaps one exited child of any kind without blocking: `Ok(Some((pid, raw
/// wait status)))`, `Ok(None)` when none has exited, `Err(ECHILD)` when there are none.
pub(crate) fn reap_any() -> Result<Option<(libc::pid_t, libc::c_int)>, Errno> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: status is a writable int that outlives the call; rusage is NULL.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_wait4,
                -1 as libc::pid_t,
                &mut status as *mut libc::c_int,
                libc::WNOHANG | libc::__WALL,
                ptr::null_mut::<libc::rusage>(),
            )
        };
        match check(ret) {
            Ok(0) => return Ok(None),
            Ok(pid) => return Ok(Some((pid as libc::pid_t, status))),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Child-safe. `kill(pid, signal)`.
pub(crate) fn kill(pid: libc::pid_t, signal: libc::c_int) -> Result<(), Errno> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_kill, pid, signal) }).map(drop)
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

// The new mount API's numbers are the same on every architecture (the unified table).
const SYS_OPEN_TREE: libc::c_long = 428;
const SYS_MOVE_MOUNT: libc::c_long = 429;
const SYS_MOUNT_SETATTR: libc::c_long = 442;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// `struct mount_attr` (`MOUNT_ATTR_SIZE_VER0`).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached copy of the mount at `path` (not its submounts), close-on-exec, made private
/// (no propagation to or from the host) and `nosuid,nodev`, plus read-only when asked; the
/// source's own `ro`/`noexec` are kept. Attach it with [`move_mount`].
pub(crate) fn open_tree_clone(path: &CStr, read_only: bool) -> Result<OwnedFd, Errno> {
    // SAFETY: path is NUL-terminated and outlives the call; the flags are plain integers.
    let fd = check(unsafe {
        libc::syscall(
            SYS_OPEN_TREE,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    })?;
    // SAFETY: the kernel returned a fresh fd that we now own exclusively.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let mut set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if read_only {
        set |= MOUNT_ATTR_RDONLY;
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    // SAFETY: `attr` is a valid mount_attr of the size passed; the empty path is NUL-terminated.
    check(unsafe {
        libc::syscall(
            SYS_MOUNT_SETATTR,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok(fd)
}

/// Whether this kernel has `open_tree`, `move_mount` and `mount_setattr` (5.12 and later).
pub(crate) fn has_new_mount_api() -> bool {
    // Invalid arguments on purpose: an old kernel answers ENOSYS before looking at them.
    // SAFETY: a NULL path with a bad fd is rejected by the kernel without being read.
    let setattr = unsafe {
        libc::syscall(
            SYS_MOUNT_SETATTR,
            -1,
            ptr::null::<libc::c_char>(),
            0,
            ptr::null::<MountAttr>(),
            0,
        )
    };
    setattr == -1 && Errno::last() != Errno::ENOSYS
}

/// (device, inode, mount id) of `path`, a final symlink not followed: what a bind of it
/// would show. `Ok(None)` if it does not exist.
pub(crate) fn path_identity(path: &CStr) -> Result<Option<(u64, u64, u64)>, Errno> {
    let buf = match statx_nofollow(path, libc::STATX_INO | libc::STATX_MNT_ID) {
        Ok(buf) => buf,
        Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(None),
        Err(e) => return Err(e),
    };
    let dev = (u64::from(buf.stx_dev_major) << 32) | u64::from(buf.stx_dev_minor);
    Ok(Some((dev, buf.stx_ino, buf.stx_mnt_id)))
}

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

    /// A child sharing our memory reads what the parent prepared, runs on its own stack, and
    /// leaves the parent's memory as it was (no namespaces: no root needed).
    #[test]
    fn a_shared_memory_child_reads_the_parent_and_leaves_it_intact() {
        let heap = vec![0x5au8; 1 << 20];
        let code = i32::from(heap[12_345]) & 0x3f;
        let request = CloneRequest {
            namespace_flags: 0,
            cgroup_dir: None,
        };
        for _ in 0..20 {
            // A deep-ish frame on the child's stack, then an exit code computed from our data.
            let (pid, pidfd) = clone3_spawn_shared(request, &|| {
                let scratch = [heap[7]; 4096];
                exit_now((i32::from(scratch[4095]) & 0x3f) ^ code ^ 1)
            })
            .unwrap();
            assert!(pid > 0);
            let outcome = waitid_pidfd(std::os::fd::AsFd::as_fd(&pidfd), false)
                .unwrap()
                .unwrap();
            assert_eq!(outcome.code, libc::CLD_EXITED);
            assert_eq!(outcome.status, 1);
        }
        assert!(heap.iter().all(|b| *b == 0x5a));
    }

    #[test]
    fn shared_clone_errors_come_back_as_errno() {
        // CLONE_THREAD without CLONE_SIGHAND is refused before any child exists.
        let request = CloneRequest {
            namespace_flags: libc::CLONE_THREAD as u64,
            cgroup_dir: None,
        };
        let err = clone3_spawn_shared(request, &|| exit_now(0)).unwrap_err();
        assert_eq!(err, Errno::EINVAL);
    }
}
