//! Entering a running sandbox: start ONE more process inside the namespaces, cgroup, root,
//! identity, capabilities and seccomp policy of a task that is already running (what
//! `noded alloc exec` needs).
//!
//! Owns the sequence between `clone3` and `execve` for such a process, and the pty it may get.
//! Must not: change anything about the running task, leave a process behind when it fails, or
//! give the new process anything the task itself does not have (no host fd, no host
//! environment, no capability outside the allow-list).
//!
//! # How an entry works
//! 1. In the caller, [`enter`] opens the task through its pid: a pidfd (`pidfd_open`), the
//!    task's root as an `O_PATH` fd (`/proc/<pid>/root`), and checks that the task shares the
//!    caller's user namespace (sandboxes never create one) and is still alive. With
//!    [`EnterIo::Pty`], the pty is allocated here, inside the task's own devpts instance (see
//!    below). Then the plan is prepared exactly as for [`super::spawn`].
//! 2. On a short-lived thread of its own, the caller joins the task's *pid* namespace for its
//!    future children only (`setns(pidfd, CLONE_NEWPID)` changes `pid_ns_for_children` of that
//!    thread, nothing else) and calls `clone3`, with `CLONE_INTO_CGROUP` where a cgroup2 tree
//!    exists. The new process is therefore born inside the task's pid namespace and is still
//!    a direct child of the caller: the caller gets its pidfd from `clone3`, reaps it with
//!    [`SandboxChild::wait`] and sees its real exit status, with no relay process and no
//!    double fork. The thread ends right after, so the caller's threads never stay switched.
//! 3. The child runs the plan with raw syscalls only, failing steps reported by name as in
//!    `spawn`:
//!    make itself non-dumpable → join the task cgroup (v1: write `0` into each pre-opened
//!    `cgroup.procs`) → `setns(pidfd, mnt|ipc|uts|net|cgroup|pid)`, atomically, *after* the
//!    cgroup join (joining the cgroup namespace first would hide the task cgroup from the
//!    writer, and its root would be wrong) → `fchdir(task root fd)` + `chroot(".")` →
//!    rlimits → stdio → close every other fd → reset signals → `setsid` (+ `TIOCSCTTY` with
//!    a pty) → bounding set → groups, gid, uid → capabilities → `no_new_privs` → seccomp →
//!    `chdir(work_dir)` → `execve`.
//!
//! # Why `fchdir` + `chroot` of `/proc/<pid>/root`
//! `setns` into a mount namespace sets the caller's root to the topmost mount on the
//! namespace's root, which after the task's `pivot_root` happens to be the jail (checked on
//! this kernel with `nsenter -m`). The task's own root is what counts, though (a task could
//! have `chroot`ed further, and a raw_exec task has no jail): the fd of `/proc/<pid>/root`,
//! opened before the clone, names exactly the task's root mount and directory, and
//! `fchdir`+`chroot(".")` after joining its mount namespace makes it ours.
//!
//! # Why the child is made non-dumpable first
//! Unlike a fresh sandbox, a running task has processes that can look at the new one through
//! its `/proc` while it still holds full capabilities and the host binary (`/proc/<pid>/exe`,
//! the route of CVE-2019-5736). A non-dumpable process's `/proc` links and memory are closed
//! to anyone without `CAP_SYS_PTRACE`, which no task has; before the `prctl` the child holds
//! capabilities the task lacks, which already fails the kernel's ptrace access check.
//! `execve` makes the final program dumpable again (as the task's own programs are).
//!
//! # The pty
//! With [`EnterIo::Pty`] the master is opened as `dev/pts/ptmx` beneath the task's root fd
//! with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`, and
//! checked to be the `ptmx` node (5:2) of a devpts filesystem: the pty belongs to the task's
//! own devpts instance, so the new process sees its terminal as `/dev/pts/N` of the task. The
//! slave is obtained from the master with `TIOCGPTPEER` (no path lookup the task could
//! race), given to the user, and becomes stdin/stdout/stderr and the controlling terminal. The
//! caller gets the master; [`set_pty_size`] resizes it.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;

use super::ops::{Op, PlannedOp};
use super::plan;
use super::{
    above_stdio, dup_above_stdio, read_report, reap, Filesystem, NamespaceSpec, Rlimit,
    SandboxChild, SandboxSpec, SeccompPolicy, SpawnError, Stdio, Step,
};
use crate::caps::CapabilitySet;
use crate::cgroup::CgroupJoin;
use crate::describe_errno;
use crate::sys;
use crate::user::ResolvedUser;

/// Namespaces an entered process joins: all the task has, except the user namespace (a
/// sandbox never creates one; [`enter`] refuses a task in another) and the time namespace
/// (never created either).
const JOINED_NAMESPACES: libc::c_int = libc::CLONE_NEWNS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWPID;

/// `DEVPTS_SUPER_MAGIC` from `<linux/magic.h>`.
const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;

/// Device number of a devpts instance's `ptmx` node.
const PTMX_MAJOR: u64 = 5;
const PTMX_MINOR: u64 = 2;

/// Size of a terminal, in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtySpec {
    pub rows: u16,
    pub cols: u16,
}

impl Default for PtySpec {
    fn default() -> PtySpec {
        PtySpec { rows: 24, cols: 80 }
    }
}

/// Where the entered process's standard streams go.
#[derive(Debug)]
pub enum EnterIo {
    /// Separate streams, as for [`super::spawn`].
    Streams {
        stdin: Stdio,
        stdout: Stdio,
        stderr: Stdio,
    },
    /// A new pty of the task's devpts as stdin, stdout, stderr and controlling terminal; the
    /// master is returned in [`Entered::pty_master`].
    Pty(PtySpec),
}

impl Default for EnterIo {
    fn default() -> EnterIo {
        EnterIo::Streams {
            stdin: Stdio::Null,
            stdout: Stdio::Null,
            stderr: Stdio::Null,
        }
    }
}

/// Everything about the process to start inside a running sandbox. To be as confined as the
/// task, pass the task's own user, cgroup, capabilities, rlimits and seccomp policy
/// ([`EnterSpec::matching`] copies them from the task's [`SandboxSpec`]).
#[derive(Debug)]
pub struct EnterSpec {
    /// The task's process (its PID 1 when it has a pid namespace), as a pid of the caller's
    /// pid namespace, e.g. [`SandboxChild::pid`].
    pub target_pid: i32,
    /// An absolute path inside the task's root, a path relative to `work_dir`, or a bare name
    /// searched in the `PATH` of `env` inside the task's root. Also `argv[0]`.
    pub program: String,
    pub args: Vec<String>,
    /// The complete environment: nothing else is passed (not even the task's).
    pub env: Vec<(String, String)>,
    /// Working directory inside the task's root (absolute).
    pub work_dir: PathBuf,
    pub user: ResolvedUser,
    /// The task's cgroup ([`crate::cgroup::TaskCgroup::join_handle`]); `None` stays in the
    /// caller's cgroup (and then sees the caller's cgroup through the task's cgroup
    /// namespace: pass the task's cgroup whenever it has one).
    pub cgroup: Option<CgroupJoin>,
    /// The capability allow-list, as for [`SandboxSpec::capabilities`].
    pub capabilities: CapabilitySet,
    /// As for [`SandboxSpec::ambient_capabilities`].
    pub ambient_capabilities: CapabilitySet,
    pub rlimits: Vec<Rlimit>,
    pub seccomp: SeccompPolicy,
    pub io: EnterIo,
}

impl EnterSpec {
    /// An entry with the task's identity, environment, working directory, capabilities,
    /// rlimits and seccomp policy, in `cgroup`, with null streams. `cgroup` is the task's
    /// cgroup (a join handle of its own: a spec's handle is spent by its spawn); `None` only
    /// for a task that has none, since the entered process would otherwise escape the task's
    /// limits and outlive its cgroup.
    pub fn matching(
        task: &SandboxSpec,
        cgroup: Option<CgroupJoin>,
        target_pid: i32,
        program: impl Into<String>,
        args: Vec<String>,
    ) -> EnterSpec {
        EnterSpec {
            target_pid,
            program: program.into(),
            args,
            env: task.env.clone(),
            work_dir: task.work_dir.clone(),
            user: task.user.clone(),
            cgroup,
            capabilities: task.capabilities,
            ambient_capabilities: task.ambient_capabilities,
            rlimits: task.rlimits.clone(),
            seccomp: task.seccomp.clone(),
            io: EnterIo::default(),
        }
    }
}

/// A process started inside a running sandbox. The caller reaps it
/// ([`SandboxChild::wait`]); it is killed by the kernel when the task's PID 1 exits.
///
/// Reap it independently of the task: a PID 1 that exits waits in the kernel until every
/// other process of its pid namespace has been reaped, and the caller is the parent of this
/// one. A caller that waits for the task first, and only then for the entered processes,
/// waits forever.
#[derive(Debug)]
pub struct Entered {
    pub child: SandboxChild,
    /// The pty master with [`EnterIo::Pty`] (close-on-exec). Reads fail with `EIO` once
    /// every process holding the slave has exited.
    pub pty_master: Option<OwnedFd>,
}

/// Resizing a pty failed.
#[derive(Debug, thiserror::Error)]
#[error("set the size of pty fd {fd} to {rows}x{cols}: {}", describe_errno(*.errno))]
pub struct PtyError {
    pub fd: i32,
    pub rows: u16,
    pub cols: u16,
    pub errno: Errno,
}

/// Sets the window size of a pty (the process on the slave gets `SIGWINCH`).
pub fn set_pty_size(master: BorrowedFd<'_>, size: PtySpec) -> Result<(), PtyError> {
    sys::pty_set_size(master, size.rows, size.cols).map_err(|errno| PtyError {
        fd: master.as_raw_fd(),
        rows: size.rows,
        cols: size.cols,
        errno,
    })
}

/// The window size of a pty (either end).
pub fn pty_size(fd: BorrowedFd<'_>) -> Result<PtySpec, PtyError> {
    sys::pty_size(fd)
        .map(|(rows, cols)| PtySpec { rows, cols })
        .map_err(|errno| PtyError {
            fd: fd.as_raw_fd(),
            rows: 0,
            cols: 0,
            errno,
        })
}

/// The running task, opened by pid.
#[derive(Debug)]
struct Target {
    pid: i32,
    pidfd: OwnedFd,
    /// `O_PATH` fd of the task's root directory.
    root: OwnedFd,
    root_path: String,
}

fn prepare(what: String, errno: Errno) -> SpawnError {
    SpawnError::Prepare {
        what,
        source: errno.into(),
    }
}

/// Whether the process behind `pidfd` has exited (its pidfd is readable from then on).
fn exited(pidfd: BorrowedFd<'_>) -> bool {
    let mut fds = [nix::poll::PollFd::new(pidfd, nix::poll::PollFlags::POLLIN)];
    match nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO) {
        Ok(n) => n > 0,
        Err(_) => false,
    }
}

impl Target {
    fn open(pid: i32) -> Result<Target, SpawnError> {
        if pid <= 0 {
            return Err(SpawnError::invalid(
                "target_pid",
                format!("{pid} is not a process id (expected the task's pid, e.g. 1234)"),
            ));
        }
        let gone = SpawnError::TargetGone { pid };
        let pidfd = match sys::pidfd_open(pid) {
            Ok(fd) => above_stdio(fd, "move the task's pidfd above fd 2")?,
            Err(Errno::ESRCH) => return Err(gone),
            Err(errno) => return Err(prepare(format!("open a pidfd for pid {pid}"), errno)),
        };
        let root_path = format!("/proc/{pid}/root");
        let root = match nix::fcntl::open(
            root_path.as_str(),
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(fd) => above_stdio(fd, "move the task's root fd above fd 2")?,
            Err(Errno::ENOENT | Errno::ESRCH) => return Err(gone),
            Err(errno) => return Err(prepare(format!("open {root_path}"), errno)),
        };
        let user_ns = |path: &str| {
            nix::sys::stat::stat(path)
                .map(|s| (s.st_dev, s.st_ino))
                .map_err(|errno| (path.to_string(), errno))
        };
        let task_ns = format!("/proc/{pid}/ns/user");
        match (user_ns(&task_ns), user_ns("/proc/self/ns/user")) {
            (Ok(task), Ok(own)) if task != own => {
                return Err(SpawnError::invalid(
                    "target_pid",
                    format!("process {pid} runs in another user namespace than the caller; entering user namespaces is not supported"),
                ))
            }
            (Ok(_), Ok(_)) => {}
            (Err((_, Errno::ENOENT | Errno::ESRCH)), _) => return Err(gone),
            (Err((path, errno)), _) | (_, Err((path, errno))) => {
                return Err(prepare(format!("stat {path}"), errno))
            }
        }
        // The pidfd was opened first: if the process still runs now, the pid named it all
        // along and the /proc files above are its own, not a recycled pid's.
        if exited(pidfd.as_fd()) {
            return Err(gone);
        }
        Ok(Target {
            pid,
            pidfd,
            root,
            root_path,
        })
    }
}

/// Opens a new pty in the devpts of the task's root: (master, slave), the slave owned by
/// `uid`.
fn open_pty(target: &Target, size: PtySpec, uid: u32) -> Result<(OwnedFd, OwnedFd), SpawnError> {
    let rel: &CStr = c"dev/pts/ptmx";
    let what = format!("{}/dev/pts/ptmx", target.root_path);
    let master = sys::openat2(
        target.root.as_fd(),
        rel,
        libc::O_RDWR | libc::O_NOCTTY,
        0,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|errno| {
        prepare(
            format!("open the task's pty multiplexer {what} (does the task have /dev/pts?)"),
            errno,
        )
    })?;
    let master = above_stdio(master, "move the pty master above fd 2")?;
    let magic = sys::filesystem_magic(master.as_fd())
        .map_err(|errno| prepare(format!("fstatfs {what}"), errno))?;
    let stat = nix::sys::stat::fstat(master.as_fd())
        .map_err(|errno| prepare(format!("fstat {what}"), errno))?;
    let rdev = stat.st_rdev;
    if magic != DEVPTS_SUPER_MAGIC
        || nix::sys::stat::major(rdev) != PTMX_MAJOR
        || nix::sys::stat::minor(rdev) != PTMX_MINOR
    {
        return Err(SpawnError::Prepare {
            what: format!("open the task's pty multiplexer {what}"),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "not the ptmx node of a devpts filesystem (filesystem magic {magic:#x}, device {}:{})",
                    nix::sys::stat::major(rdev),
                    nix::sys::stat::minor(rdev)
                ),
            ),
        });
    }
    sys::pty_unlock(master.as_fd())
        .map_err(|errno| prepare(format!("unlock the pty of {what}"), errno))?;
    sys::pty_set_size(master.as_fd(), size.rows, size.cols).map_err(|errno| {
        prepare(
            format!("set the pty size to {}x{}", size.rows, size.cols),
            errno,
        )
    })?;
    let slave = sys::pty_open_peer(master.as_fd())
        .map_err(|errno| prepare(format!("open the slave of {what} (TIOCGPTPEER)"), errno))?;
    let slave = above_stdio(slave, "move the pty slave above fd 2")?;
    nix::unistd::fchown(slave.as_fd(), Some(nix::unistd::Uid::from_raw(uid)), None)
        .map_err(|errno| prepare(format!("give the pty slave to uid {uid}"), errno))?;
    Ok((master, slave))
}

fn copy_stdio(stdio: &Stdio, name: &str) -> Result<Stdio, SpawnError> {
    Ok(match stdio {
        Stdio::Inherit => Stdio::Inherit,
        Stdio::Null => Stdio::Null,
        Stdio::Fd(fd) => Stdio::Fd(dup_above_stdio(
            fd.as_fd(),
            &format!("duplicate the {name} fd"),
        )?),
    })
}

/// The entry's stdin, stdout and stderr: copies of the caller's streams, or three copies of
/// the pty slave.
fn entry_stdio(
    spec: &EnterSpec,
    pty_slave: Option<&OwnedFd>,
) -> Result<(Stdio, Stdio, Stdio), SpawnError> {
    match (&spec.io, pty_slave) {
        (
            EnterIo::Streams {
                stdin,
                stdout,
                stderr,
            },
            _,
        ) => Ok((
            copy_stdio(stdin, "stdin")?,
            copy_stdio(stdout, "stdout")?,
            copy_stdio(stderr, "stderr")?,
        )),
        (EnterIo::Pty(_), Some(slave)) => {
            let copy = || -> Result<Stdio, SpawnError> {
                Ok(Stdio::Fd(dup_above_stdio(
                    slave.as_fd(),
                    "duplicate the pty slave",
                )?))
            };
            Ok((copy()?, copy()?, copy()?))
        }
        (EnterIo::Pty(_), None) => Err(SpawnError::invalid(
            "io",
            "a pty was asked for but none was opened",
        )),
    }
}

fn planned(step: Step, target: String, op: Op) -> PlannedOp {
    PlannedOp { step, target, op }
}

/// The steps that put the new process into the task, before everything else: non-dumpable,
/// the task cgroup, the task's namespaces (one `setns` on its pidfd), its root.
fn entry_ops(spec: &EnterSpec, target: &Target) -> Vec<PlannedOp> {
    let mut entry = vec![planned(
        Step::MakeNonDumpable,
        String::new(),
        Op::NotDumpable,
    )];
    if let Some(join) = &spec.cgroup {
        for (fd, path) in join.procs_fds() {
            entry.push(planned(
                Step::JoinCgroup,
                path.display().to_string(),
                Op::WriteFd { fd, data: b"0" },
            ));
        }
    }
    entry.push(planned(
        Step::JoinTaskNamespaces,
        format!("pid {} (mnt, ipc, uts, net, cgroup, pid)", target.pid),
        Op::SetNs {
            fd: target.pidfd.as_raw_fd(),
            nstype: JOINED_NAMESPACES,
        },
    ));
    entry.push(planned(
        Step::EnterTaskRoot,
        target.root_path.clone(),
        Op::Fchdir {
            fd: target.root.as_raw_fd(),
        },
    ));
    entry.push(planned(
        Step::EnterTaskRoot,
        target.root_path.clone(),
        Op::Chroot {
            path: c".".to_owned(),
        },
    ));
    entry
}

/// The plan of an entry: `spawn`'s plan for a host-filesystem process without namespaces
/// (identity, privileges, stdio, exec), with the entry steps spliced in first and a new
/// session (with the pty as controlling terminal) right after the signal reset.
fn build_plan(
    spec: &EnterSpec,
    target: &Target,
    pty_slave: Option<&OwnedFd>,
) -> Result<plan::Plan, SpawnError> {
    let (stdin, stdout, stderr) = entry_stdio(spec, pty_slave)?;
    let base = SandboxSpec {
        program: spec.program.clone(),
        args: spec.args.clone(),
        env: spec.env.clone(),
        work_dir: spec.work_dir.clone(),
        user: spec.user.clone(),
        filesystem: Filesystem::Host,
        namespaces: NamespaceSpec::default(),
        hostname: None,
        cgroup: None,
        capabilities: spec.capabilities,
        ambient_capabilities: spec.ambient_capabilities,
        rlimits: spec.rlimits.clone(),
        seccomp: spec.seccomp.clone(),
        stdin,
        stdout,
        stderr,
        go_ahead: None,
        init: false,
    };
    let mut plan = plan::build(&base)?;
    plan.ops.splice(0..0, entry_ops(spec, target));

    let after_signals = plan
        .ops
        .iter()
        .position(|p| p.step == Step::ResetSignals)
        .map(|i| i + 1)
        .ok_or_else(|| SpawnError::invalid("plan", "has no signal reset step (internal error)"))?;
    let mut session = vec![planned(Step::NewSession, String::new(), Op::NewSession)];
    if pty_slave.is_some() {
        session.push(planned(
            Step::SetControllingTerminal,
            "stdin".to_string(),
            Op::ControllingTty { fd: 0 },
        ));
    }
    plan.ops.splice(after_signals..after_signals, session);
    plan.set_exec_inside_task_root();
    Ok(plan)
}

/// Starts the process described by `spec` inside the running sandbox of `spec.target_pid`
/// (see the module docs). Blocks until the new process has executed the program or failed
/// (~1 ms); async callers should call it on a blocking thread. After an error nothing is left
/// running and the task is untouched.
pub fn enter(spec: &EnterSpec) -> Result<Entered, SpawnError> {
    if spec.program.is_empty() {
        return Err(SpawnError::invalid("program", "is empty"));
    }
    if let EnterIo::Streams {
        stdin,
        stdout,
        stderr,
    } = &spec.io
    {
        for (name, stdio) in [("stdin", stdin), ("stdout", stdout), ("stderr", stderr)] {
            if matches!(stdio, Stdio::Inherit) {
                return Err(SpawnError::invalid(
                    format!("io.{name}"),
                    "Stdio::Inherit would hand the caller's own stream (perhaps a host terminal) into the task; pass a pipe (Stdio::Fd), Stdio::Null or a pty",
                ));
            }
        }
    }
    let target = Target::open(spec.target_pid)?;
    let pty = match &spec.io {
        EnterIo::Pty(size) => Some(open_pty(&target, *size, spec.user.uid)?),
        EnterIo::Streams { .. } => None,
    };
    let slave = pty.as_ref().map(|(_, slave)| slave);

    // The plan holds raw pointers (argv/envp), so it is built on the thread that clones.
    let outcome = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("isolation-enter".to_string())
            .spawn_scoped(scope, || launch(spec, &target, slave))
            .map(|handle| handle.join())
    });
    let result = match outcome {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(source) => Err(SpawnError::Prepare {
            what: "start the thread that enters the task's pid namespace".to_string(),
            source,
        }),
    };
    match result {
        Ok(child) => Ok(Entered {
            child,
            pty_master: pty.map(|(master, _)| master),
        }),
        Err(e @ (SpawnError::Invalid { .. } | SpawnError::Seccomp(_))) => Err(e),
        Err(_) if exited(target.pidfd.as_fd()) => Err(SpawnError::TargetGone { pid: target.pid }),
        Err(e) => Err(e),
    }
}

/// Runs on a thread of its own: joins the task's pid namespace for children, clones, and
/// waits for the child's report. The thread ends afterwards, taking the switched
/// `pid_ns_for_children` and its blocked signal mask with it.
fn launch(
    spec: &EnterSpec,
    target: &Target,
    pty_slave: Option<&OwnedFd>,
) -> Result<SandboxChild, SpawnError> {
    let mut plan = build_plan(spec, target, pty_slave)?;
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|errno| prepare("create the report pipe".to_string(), errno))?;
    let read_end = above_stdio(read_end, "move the report pipe above fd 2")?;
    let write_end = above_stdio(write_end, "move the report pipe above fd 2")?;
    let report_fd = write_end.as_raw_fd();
    plan.set_report_fd(report_fd);

    // No handler of the caller may run in the child; this thread's mask dies with it.
    nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::all()),
        None,
    )
    .map_err(|errno| prepare("block signals".to_string(), errno))?;
    match sys::setns(target.pidfd.as_raw_fd(), libc::CLONE_NEWPID) {
        Ok(()) => {}
        Err(Errno::ESRCH) => return Err(SpawnError::TargetGone { pid: target.pid }),
        Err(errno) => {
            return Err(prepare(
                format!(
                    "join the pid namespace of pid {} for the new process (it must be the caller's or one below it)",
                    target.pid
                ),
                errno,
            ))
        }
    }
    let clone_into = spec.cgroup.as_ref().and_then(CgroupJoin::clone_into_fd);
    let request = sys::CloneRequest {
        namespace_flags: 0,
        cgroup_dir: clone_into,
    };
    let cloned = sys::clone3_spawn(request, &|| super::child::run(&plan.ops, report_fd));
    drop(write_end);
    let (pid, pidfd) = cloned.map_err(|errno| SpawnError::Clone {
        flags: describe_clone(spec, target.pid),
        errno,
    })?;
    let child = SandboxChild {
        pid,
        pidfd,
        init_status: None,
    };
    match read_report(&read_end) {
        Ok(None) => Ok(child),
        Ok(Some(record)) => {
            reap(&child);
            Err(match plan.error_for(&record) {
                SpawnError::Step {
                    step: Step::JoinTaskNamespaces,
                    errno: Errno::ESRCH,
                    ..
                } => SpawnError::TargetGone { pid: target.pid },
                other => other,
            })
        }
        Err(bytes) => {
            reap(&child);
            Err(SpawnError::Report { pid, bytes })
        }
    }
}

fn describe_clone(spec: &EnterSpec, target_pid: i32) -> String {
    let mut text = format!("CLONE_PIDFD into the pid namespace of pid {target_pid}");
    if let Some(path) = spec.cgroup.as_ref().and_then(CgroupJoin::clone_into_path) {
        text.push_str(&format!("|CLONE_INTO_CGROUP {}", path.display()));
    }
    text
}

#[cfg(test)]
mod tests;
