//! Spawning ONE process inside namespaces, a `pivot_root` jail, a cgroup, with reduced
//! capabilities, `no_new_privs`, seccomp, rlimits and a uid/gid.
//!
//! Owns the sequence of steps between `clone3` and `execve`. Must not: reap or supervise the
//! process (the caller owns the returned pidfd), or change anything outside the child's own
//! namespaces (a failed spawn leaves no process and no host mount behind).
//!
//! # How a spawn works
//! 1. In the parent, [`spawn`] validates the [`SandboxSpec`] and turns it into a *plan*: every
//!    path, string, fd, uid/gid, capability mask and the seccomp BPF program prepared up front,
//!    as a list of steps. The read-only part of the jail comes from a *template* mount
//!    namespace (module `template`), found in a per-process cache or built once on a thread
//!    of its own; the task's own dirs are opened as detached, private, `nosuid,nodev` mount
//!    trees (`open_tree` + `mount_setattr`).
//! 2. `clone3` with `CLONE_PIDFD`, the requested `CLONE_NEW*` flags and, where a cgroup2 tree
//!    exists, `CLONE_INTO_CGROUP`; on x86_64 also `CLONE_VM | CLONE_VFORK` on a stack of its
//!    own, as `posix_spawn` does: the child borrows the parent's memory until it execs, so no
//!    page tables are copied (0.4–0.8 ms saved per spawn for an 8–16 MB supervisor, and no
//!    copy-on-write faults in the parent afterwards). All signals are blocked around the clone
//!    so no handler of the (multi-threaded) parent ever runs in the child.
//! 3. The child executes the plan with raw syscalls only — no allocation, no locks, no panics,
//!    and no writes outside its own stack (it shares the parent's memory).
//!    A failing step writes a fixed 16-byte record (step, index into the plan, errno, detail)
//!    to a close-on-exec pipe and `_exit`s; the parent turns it into a [`SpawnError`] naming
//!    the step and path. EOF on the pipe means `execve` succeeded.
//!
//! # Order of steps (modelled on Firecracker's jailer)
//! join cgroup (v1: write `0` to each pre-opened `tasks` file, which moves the single-threaded
//! child without the kernel's global threadgroup lock, see [`crate::cgroup::V1_JOIN_FILE`];
//! v2: already done by `CLONE_INTO_CGROUP`) → join the network namespace → new cgroup namespace (after joining,
//! so its root is the task's cgroup) → the jail → hostname → rlimits → stdio onto 0/1/2 → close every other fd → reset
//! signal dispositions and mask → capability bounding set → groups, gid, uid → capabilities
//! (root: effective = permitted = inheritable = allow-list; others: none, or the requested
//! ambient set) → `no_new_privs` → seccomp → `chdir(work_dir)` → `execve` with exactly the
//! caller's environment.
//!
//! The jail, with a template (kernels with the new mount API, 5.12+): `setns` into the
//! template, whose root becomes the child's root → `unshare(CLONE_NEWNS)`, a private copy of
//! it → the task's dirs attached with `move_mount` → masks over secrets such as
//! `/etc/shadow` → a fresh `/proc` with masked and read-only paths → the task's devpts and
//! `/dev/shm` → its cgroups under `/sys/fs/cgroup`. The template holds, built in this order
//! on the staging dir and then made the root by `pivot_root` and detach of the old root: `/`
//! made recursively private, a tmpfs, read-only binds of the host's system dirs (`/bin /etc
//! /lib /lib32 /lib64 /sbin /usr` where they exist, symlinks mirrored) and of the caller's
//! other ro binds (all `nosuid,nodev`), mount points for the task's dirs, the root remounted
//! read-only, a minimal read-only `/dev` on tmpfs, and read-only `/sys` with the mount points
//! of the task's cgroups (when the task stays in the caller's network namespace; otherwise
//! the task mounts its own `/sys`). Each use checks the identity (device, inode, mount id) of
//! every host source; a changed one gets a new template.
//!
//! Without a template (older kernels) the child builds all of it itself in a `CLONE_NEWNS`
//! copy of the host's mount table, in the same order, and ends with `pivot_root`.
//!
//! With [`Filesystem::Host`] (raw_exec) the mount steps are skipped; everything else is the
//! same.
//!
//! The task process is PID 1 of its pid namespace (as with Nomad's exec driver and runc
//! without `--init`): the kernel delivers a signal other than SIGKILL/SIGSTOP to it only if it
//! installed a handler, and orphans in the task are reparented to it.
//!
//! [`enter`] starts one more process inside an already running sandbox (`alloc exec`): the
//! same plan and child code, plus joining the task's namespaces and root (module `enter`).

mod child;
mod enter;
mod ops;
mod plan;
mod template;

#[cfg(test)]
mod tests;

use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::caps::CapabilitySet;
use crate::cgroup::CgroupJoin;
use crate::describe_errno;
use crate::seccomp::SeccompError;
pub use crate::seccomp::SeccompPolicy;
use crate::sys;
use crate::user::ResolvedUser;
pub use enter::{enter, pty_size, set_pty_size, EnterIo, EnterSpec, Entered, PtyError, PtySpec};

/// Host directories bound read-only into a jail by default (missing ones are skipped,
/// symlinks such as `/bin -> usr/bin` are recreated as symlinks).
pub const DEFAULT_SYSTEM_DIRS: [&str; 7] =
    ["/bin", "/etc", "/lib", "/lib32", "/lib64", "/sbin", "/usr"];

/// Sandbox paths hidden by default (a `/dev/null` bind over files, an empty read-only tmpfs
/// over directories) when they exist in the jail: secrets of the host's `/etc`.
pub const DEFAULT_MASKED_PATHS: [&str; 4] = [
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
];

/// `PATH` used to find a bare command name when the environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Default size of the jail's `/dev/shm`.
pub const DEFAULT_SHM_SIZE_BYTES: u64 = 64 << 20;

/// Most bind mounts a jail may have (each costs two mount syscalls).
pub const MAX_BINDS: usize = 256;

/// A host path shown at a path inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub host: PathBuf,
    pub sandbox: PathBuf,
}

impl Bind {
    pub fn new(host: impl Into<PathBuf>, sandbox: impl Into<PathBuf>) -> Bind {
        Bind {
            host: host.into(),
            sandbox: sandbox.into(),
        }
    }
}

/// The jail's root filesystem, assembled from bind mounts on a tmpfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsSpec {
    /// An existing host directory used as the mount point of the jail's root tmpfs. The
    /// mount exists only in the child's mount namespace; the host never sees it.
    pub staging_dir: PathBuf,
    /// Host directories bound read-only at the same path ([`DEFAULT_SYSTEM_DIRS`]); missing
    /// ones are skipped, symlinks recreated.
    pub system_dirs: Vec<PathBuf>,
    /// Read-only binds (the source must exist).
    pub ro_binds: Vec<Bind>,
    /// Read-write binds, e.g. the task's `/alloc`, `/local`, `/secrets`, `/tmp` (the source
    /// must exist; its `noexec`/`ro` flags are kept).
    pub rw_binds: Vec<Bind>,
    /// Read-only binds of the task's own directories, e.g. its `/local` when the task asks
    /// for a read-only root (`readonly_rootfs`). Bound per task like `rw_binds` (never part
    /// of a template shared by other tasks), but read-only.
    pub task_ro_binds: Vec<Bind>,
    /// Sandbox paths hidden from the task ([`DEFAULT_MASKED_PATHS`]).
    pub masked_paths: Vec<PathBuf>,
    /// Size of `/dev/shm`.
    pub shm_size_bytes: u64,
}

impl RootfsSpec {
    /// The default jail on `staging_dir`: system dirs read-only, default masks, no binds.
    pub fn new(staging_dir: impl Into<PathBuf>) -> RootfsSpec {
        RootfsSpec {
            staging_dir: staging_dir.into(),
            system_dirs: DEFAULT_SYSTEM_DIRS.iter().map(PathBuf::from).collect(),
            ro_binds: Vec::new(),
            rw_binds: Vec::new(),
            task_ro_binds: Vec::new(),
            masked_paths: DEFAULT_MASKED_PATHS.iter().map(PathBuf::from).collect(),
            shm_size_bytes: DEFAULT_SHM_SIZE_BYTES,
        }
    }
}

/// Filesystem isolation of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filesystem {
    /// A new mount namespace with a `pivot_root` jail.
    Jail(RootfsSpec),
    /// The host's filesystem as it is (raw_exec): no mount namespace, no pivot.
    Host,
}

/// Namespaces to create (`true`) or join (`net`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceSpec {
    pub pid: bool,
    pub ipc: bool,
    pub uts: bool,
    pub cgroup: bool,
    /// A network namespace to join, e.g. `/run/netns/NAME` or `/proc/PID/ns/net`; `None`
    /// keeps the caller's.
    pub net: Option<PathBuf>,
}

impl NamespaceSpec {
    /// New pid, ipc, uts and cgroup namespaces; the caller's network.
    pub fn isolated() -> NamespaceSpec {
        NamespaceSpec {
            pid: true,
            ipc: true,
            uts: true,
            cgroup: true,
            net: None,
        }
    }
}

/// Where a standard stream of the child comes from.
#[derive(Debug, Default)]
pub enum Stdio {
    /// The caller's own fd 0/1/2.
    Inherit,
    /// `/dev/null`.
    #[default]
    Null,
    /// This descriptor (duplicated for the child; the caller keeps its copy).
    Fd(OwnedFd),
}

/// Resources of `setrlimit(2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RlimitResource {
    As,
    Core,
    Cpu,
    Data,
    Fsize,
    Locks,
    Memlock,
    Msgqueue,
    Nice,
    Nofile,
    Nproc,
    Rss,
    Rtprio,
    Rttime,
    Sigpending,
    Stack,
}

impl RlimitResource {
    fn raw(self) -> u32 {
        match self {
            RlimitResource::As => libc::RLIMIT_AS,
            RlimitResource::Core => libc::RLIMIT_CORE,
            RlimitResource::Cpu => libc::RLIMIT_CPU,
            RlimitResource::Data => libc::RLIMIT_DATA,
            RlimitResource::Fsize => libc::RLIMIT_FSIZE,
            RlimitResource::Locks => libc::RLIMIT_LOCKS,
            RlimitResource::Memlock => libc::RLIMIT_MEMLOCK,
            RlimitResource::Msgqueue => libc::RLIMIT_MSGQUEUE,
            RlimitResource::Nice => libc::RLIMIT_NICE,
            RlimitResource::Nofile => libc::RLIMIT_NOFILE,
            RlimitResource::Nproc => libc::RLIMIT_NPROC,
            RlimitResource::Rss => libc::RLIMIT_RSS,
            RlimitResource::Rtprio => libc::RLIMIT_RTPRIO,
            RlimitResource::Rttime => libc::RLIMIT_RTTIME,
            RlimitResource::Sigpending => libc::RLIMIT_SIGPENDING,
            RlimitResource::Stack => libc::RLIMIT_STACK,
        }
    }
}

/// "No limit" for [`Rlimit`].
pub const RLIM_INFINITY: u64 = u64::MAX;

/// One resource limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: RlimitResource,
    pub soft: u64,
    pub hard: u64,
}

/// Everything about the process to start.
#[derive(Debug)]
pub struct SandboxSpec {
    /// An absolute path inside the sandbox, a path relative to `work_dir`, or a bare name
    /// searched in the `PATH` of `env` ([`DEFAULT_PATH`] if unset). Also `argv[0]`.
    pub program: String,
    pub args: Vec<String>,
    /// The complete environment: nothing else is passed.
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox (absolute).
    pub work_dir: PathBuf,
    pub user: ResolvedUser,
    pub filesystem: Filesystem,
    pub namespaces: NamespaceSpec,
    /// Requires `namespaces.uts`.
    pub hostname: Option<String>,
    /// The task cgroup to start in ([`crate::cgroup::TaskCgroup::join_handle`]).
    pub cgroup: Option<CgroupJoin>,
    /// The capability allow-list: the bounding set, and for uid 0 the effective, permitted
    /// and inheritable sets.
    pub capabilities: CapabilitySet,
    /// For a non-root user: capabilities raised in the ambient (and permitted/inheritable)
    /// sets so they survive `execve`; must be a subset of `capabilities`. Empty by default:
    /// a non-root task has no capabilities. (Nomad ≥ 1.5.3 gives a non-root exec task its
    /// whole computed capability set this way; pass that set here for exact compatibility.)
    pub ambient_capabilities: CapabilitySet,
    pub rlimits: Vec<Rlimit>,
    pub seccomp: SeccompPolicy,
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
    /// The read end of a pipe the child waits on after its last capability step, before
    /// `no_new_privs`, seccomp and exec ([`Step::AwaitGoAhead`]): one byte lets it go on;
    /// end of file (the writer closed without writing) stops the start there, before the
    /// program ran. It lets the caller finish work the program needs only once it runs
    /// (opening its log files) while the child builds the sandbox. The child waits at most
    /// [`GO_AHEAD_TIMEOUT_MS`]. `None`: no waiting.
    pub go_ahead: Option<OwnedFd>,
    /// Run a small init as PID 1 of the new pid namespace (requires `namespaces.pid`): the
    /// sandbox child forks the program and stays, forwarding every signal it gets to the
    /// program, reaping orphans, and exiting when the program does (see module `init`).
    /// Without it the program is PID 1, and the kernel drops every signal it has no handler
    /// for (a `sleep` ignores SIGTERM). The program's own wait status comes back through
    /// [`SandboxChild::init_status`].
    pub init: bool,
}

/// Longest wait for [`SandboxSpec::go_ahead`]: a caller that never answers fails the start
/// (`ETIMEDOUT`) instead of holding the spawning thread, which is suspended until the child
/// execs.
pub const GO_AHEAD_TIMEOUT_MS: i32 = 10_000;

/// The steps of a spawn, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Step {
    MakeNonDumpable = 1,
    JoinCgroup,
    JoinTaskNamespaces,
    JoinNetNamespace,
    UnshareCgroupNamespace,
    EnterJailTemplate,
    NewMountNamespace,
    MakeMountsPrivate,
    MountRootTmpfs,
    MakeDirectory,
    MakeMountPoint,
    MakeSymlink,
    BindMount,
    RemountBind,
    MaskPath,
    RemountRootReadOnly,
    MountProc,
    MaskProcPath,
    ReadOnlyProcPath,
    MountDev,
    BindDevice,
    MountDevPts,
    MountShm,
    MountSys,
    MaskSysPath,
    MountCgroup,
    PivotRoot,
    DetachOldRoot,
    EnterTaskRoot,
    SetHostname,
    SetRlimit,
    SetupStdio,
    CloseFds,
    ResetSignals,
    NewSession,
    SetControllingTerminal,
    DropBoundingSet,
    SetGroups,
    SetGid,
    KeepCapabilities,
    SetUid,
    SetCapabilities,
    SetAmbientCapabilities,
    AwaitGoAhead,
    StartInit,
    NoNewPrivs,
    InstallSeccomp,
    ChangeDirectory,
    Exec,
}

impl Step {
    /// Every step in execution order.
    pub const ALL: [Step; 49] = [
        Step::MakeNonDumpable,
        Step::JoinCgroup,
        Step::JoinTaskNamespaces,
        Step::JoinNetNamespace,
        Step::UnshareCgroupNamespace,
        Step::EnterJailTemplate,
        Step::NewMountNamespace,
        Step::MakeMountsPrivate,
        Step::MountRootTmpfs,
        Step::MakeDirectory,
        Step::MakeMountPoint,
        Step::MakeSymlink,
        Step::BindMount,
        Step::RemountBind,
        Step::MaskPath,
        Step::RemountRootReadOnly,
        Step::MountProc,
        Step::MaskProcPath,
        Step::ReadOnlyProcPath,
        Step::MountDev,
        Step::BindDevice,
        Step::MountDevPts,
        Step::MountShm,
        Step::MountSys,
        Step::MaskSysPath,
        Step::MountCgroup,
        Step::PivotRoot,
        Step::DetachOldRoot,
        Step::EnterTaskRoot,
        Step::SetHostname,
        Step::SetRlimit,
        Step::SetupStdio,
        Step::CloseFds,
        Step::ResetSignals,
        Step::NewSession,
        Step::SetControllingTerminal,
        Step::DropBoundingSet,
        Step::SetGroups,
        Step::SetGid,
        Step::KeepCapabilities,
        Step::SetUid,
        Step::SetCapabilities,
        Step::SetAmbientCapabilities,
        Step::AwaitGoAhead,
        Step::StartInit,
        Step::NoNewPrivs,
        Step::InstallSeccomp,
        Step::ChangeDirectory,
        Step::Exec,
    ];

    fn from_raw(raw: u32) -> Option<Step> {
        Step::ALL.iter().copied().find(|s| *s as u32 == raw)
    }

    /// A short lower-case phrase naming the step.
    pub fn phrase(self) -> &'static str {
        match self {
            Step::MakeNonDumpable => "make the process non-dumpable",
            Step::JoinCgroup => "join cgroup",
            Step::JoinTaskNamespaces => "join the namespaces of",
            Step::JoinNetNamespace => "join network namespace",
            Step::UnshareCgroupNamespace => "create cgroup namespace",
            Step::EnterJailTemplate => "enter the jail template built on",
            Step::NewMountNamespace => "create the task's mount namespace",
            Step::MakeMountsPrivate => "make mounts private",
            Step::MountRootTmpfs => "mount root tmpfs at",
            Step::MakeDirectory => "mkdir",
            Step::MakeMountPoint => "create mount point",
            Step::MakeSymlink => "symlink",
            Step::BindMount => "bind mount",
            Step::RemountBind => "remount bind",
            Step::MaskPath => "mask",
            Step::RemountRootReadOnly => "remount root read-only",
            Step::MountProc => "mount proc at",
            Step::MaskProcPath => "mask",
            Step::ReadOnlyProcPath => "make read-only",
            Step::MountDev => "mount /dev tmpfs at",
            Step::BindDevice => "bind device",
            Step::MountDevPts => "mount devpts at",
            Step::MountShm => "mount shm at",
            Step::MountSys => "mount sysfs at",
            Step::MaskSysPath => "mask",
            Step::MountCgroup => "mount cgroup at",
            Step::PivotRoot => "pivot_root",
            Step::DetachOldRoot => "detach old root",
            Step::EnterTaskRoot => "enter the task root",
            Step::SetHostname => "sethostname",
            Step::SetRlimit => "setrlimit",
            Step::SetupStdio => "set up stdio",
            Step::CloseFds => "close inherited fds",
            Step::ResetSignals => "reset signals",
            Step::NewSession => "setsid",
            Step::SetControllingTerminal => "set controlling terminal",
            Step::DropBoundingSet => "drop capability bounding set",
            Step::SetGroups => "setgroups",
            Step::SetGid => "setgid",
            Step::KeepCapabilities => "keep capabilities",
            Step::SetUid => "setuid",
            Step::SetCapabilities => "set capabilities",
            Step::SetAmbientCapabilities => "raise ambient capabilities",
            Step::AwaitGoAhead => "wait for the go-ahead to exec",
            Step::StartInit => "fork the task from its init",
            Step::NoNewPrivs => "set no_new_privs",
            Step::InstallSeccomp => "install seccomp filter",
            Step::ChangeDirectory => "chdir",
            Step::Exec => "exec",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.phrase())
    }
}

/// Why a spawn failed. Every variant names what failed and where; after any of them no
/// process and no mount is left behind.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The spec is invalid; nothing was started.
    #[error("invalid sandbox spec: {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// Preparing in the parent failed; nothing was started.
    #[error("prepare sandbox: {what}: {source}")]
    Prepare {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// `clone3` itself failed.
    #[error("clone3 with {flags}: {}{}", describe_errno(*.errno), clone_hint(*.errno))]
    Clone { flags: String, errno: Errno },
    /// A step in the child failed; `message` reads e.g. `bind mount /usr at
    /// /srv/staging/usr: no such file or directory (ENOENT)`.
    #[error("{message}")]
    Step {
        step: Step,
        target: String,
        errno: Errno,
        message: String,
    },
    /// The process to enter ([`enter`]) is not running (it exited, or the pid was never a
    /// process); nothing was started.
    #[error("task process {pid} is not running (it exited or never existed): there is nothing to enter; start the task first")]
    TargetGone { pid: i32 },
    /// The child died without a complete report.
    #[error("sandbox child {pid} exited before exec without a complete failure report ({bytes} of 16 bytes)")]
    Report { pid: i32, bytes: usize },
}

fn clone_hint(errno: Errno) -> &'static str {
    match errno {
        Errno::EBADF => " (CLONE_INTO_CGROUP needs a cgroup2 directory)",
        Errno::EPERM => " (namespaces need root)",
        Errno::ENOSPC | Errno::EAGAIN => " (the pids limit of the cgroup or the system is reached)",
        _ => "",
    }
}

impl SpawnError {
    /// Whether starting the same spec again must fail the same way: the spec is invalid, its
    /// seccomp profile is, or the program or working directory is missing or not usable.
    /// Resource shortages, races and kernel errors are not permanent.
    pub fn is_permanent(&self) -> bool {
        match self {
            SpawnError::Invalid { .. } | SpawnError::Seccomp(_) => true,
            SpawnError::Step { step, errno, .. } => match step {
                Step::Exec | Step::ChangeDirectory => matches!(
                    errno,
                    Errno::ENOENT
                        | Errno::ENOTDIR
                        | Errno::EACCES
                        | Errno::ENOEXEC
                        | Errno::ELOOP
                        | Errno::ENAMETOOLONG
                ),
                // Above the hard limit the supervisor may set.
                Step::SetRlimit => *errno == Errno::EPERM,
                _ => false,
            },
            SpawnError::Prepare { .. }
            | SpawnError::Clone { .. }
            | SpawnError::TargetGone { .. }
            | SpawnError::Report { .. } => false,
        }
    }

    /// The failed step, for errors raised in the child.
    pub fn step(&self) -> Option<Step> {
        match self {
            SpawnError::Step { step, .. } => Some(*step),
            _ => None,
        }
    }

    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> SpawnError {
        SpawnError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExitStatus {
    Exited(i32),
    Signaled { signal: i32, core_dumped: bool },
}

impl ExitStatus {
    pub fn code(self) -> Option<i32> {
        match self {
            ExitStatus::Exited(c) => Some(c),
            ExitStatus::Signaled { .. } => None,
        }
    }

    pub fn signal(self) -> Option<i32> {
        match self {
            ExitStatus::Signaled { signal, .. } => Some(signal),
            ExitStatus::Exited(_) => None,
        }
    }

    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exit code {c}"),
            ExitStatus::Signaled {
                signal,
                core_dumped,
            } => {
                let name = nix::sys::signal::Signal::try_from(*signal)
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| format!("signal {signal}"));
                write!(
                    f,
                    "killed by {name}{}",
                    if *core_dumped { " (core dumped)" } else { "" }
                )
            }
        }
    }
}

/// Waiting for or signalling a child failed.
#[derive(Debug, thiserror::Error)]
#[error("{what} pid {pid}: {}", describe_errno(*.errno))]
pub struct ProcessError {
    pub what: &'static str,
    pub pid: i32,
    pub errno: Errno,
}

/// Waits for the process behind `pidfd` (which must be a child of the caller) to exit and
/// reaps it. With `nohang`, returns `Ok(None)` while it still runs. The pidfd becomes
/// readable when the process exits, so async callers can wait for readiness first.
pub fn wait_pidfd(pidfd: BorrowedFd<'_>, nohang: bool) -> Result<Option<ExitStatus>, Errno> {
    Ok(sys::waitid_pidfd(pidfd, nohang)?.map(|o| match o.code {
        libc::CLD_EXITED => ExitStatus::Exited(o.status),
        libc::CLD_DUMPED => ExitStatus::Signaled {
            signal: o.status,
            core_dumped: true,
        },
        _ => ExitStatus::Signaled {
            signal: o.status,
            core_dumped: false,
        },
    }))
}

/// A started sandboxed process. The caller reaps it ([`SandboxChild::wait`] or
/// [`wait_pidfd`]); dropping this does not kill it (and closes the pidfd).
#[derive(Debug)]
pub struct SandboxChild {
    /// Pid in the caller's pid namespace (the init's, with [`SandboxSpec::init`]).
    pub pid: i32,
    pub pidfd: OwnedFd,
    /// With [`SandboxSpec::init`]: the read end (non-blocking) on which the init writes the
    /// program's wait status before it exits; read it with [`init_exit_status`] once the
    /// init has been reaped.
    pub init_status: Option<OwnedFd>,
}

impl SandboxChild {
    /// Blocks until the process exits, then reaps it.
    pub fn wait(&self) -> Result<ExitStatus, ProcessError> {
        loop {
            match wait_pidfd(self.pidfd.as_fd(), false) {
                Ok(Some(status)) => return Ok(status),
                Ok(None) => continue,
                Err(errno) => {
                    return Err(ProcessError {
                        what: "wait for",
                        pid: self.pid,
                        errno,
                    })
                }
            }
        }
    }

    /// Reaps the process if it has exited.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>, ProcessError> {
        wait_pidfd(self.pidfd.as_fd(), true).map_err(|errno| ProcessError {
            what: "wait for",
            pid: self.pid,
            errno,
        })
    }

    /// Sends `signal` through the pidfd (never hits a recycled pid).
    pub fn signal(&self, signal: i32) -> Result<(), ProcessError> {
        sys::pidfd_send_signal(self.pidfd.as_fd(), signal).map_err(|errno| ProcessError {
            what: "signal",
            pid: self.pid,
            errno,
        })
    }
}

/// A descriptor at 3 or above (so that setting up 0/1/2 in the child never clobbers it).
/// std's `try_clone_to_owned` duplicates with `F_DUPFD_CLOEXEC` starting at 3.
fn above_stdio(fd: OwnedFd, what: &str) -> Result<OwnedFd, SpawnError> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    fd.try_clone().map_err(|source| SpawnError::Prepare {
        what: what.to_string(),
        source,
    })
}

/// Duplicates `fd` (close-on-exec, ≥ 3) so that the child has its own copy to dup from.
fn dup_above_stdio(fd: BorrowedFd<'_>, what: &str) -> Result<OwnedFd, SpawnError> {
    fd.try_clone_to_owned()
        .map_err(|source| SpawnError::Prepare {
            what: what.to_string(),
            source,
        })
}

/// Starts the process described by `spec` (see the module docs). Blocks until the child has
/// executed the program or failed (~1 ms); async callers should call it on a blocking thread.
pub fn spawn(spec: &SandboxSpec) -> Result<SandboxChild, SpawnError> {
    spawn_plan(plan::build(spec)?)
}

/// [`spawn`] with the whole jail built in the child and entered by `pivot_root`, as on
/// kernels without the new mount API: for tests that compare both ways.
#[doc(hidden)]
pub fn spawn_with_legacy_jail(spec: &SandboxSpec) -> Result<SandboxChild, SpawnError> {
    spawn_plan(plan::build_with(spec, plan::JailMode::Legacy)?)
}

fn spawn_plan(mut plan: plan::Plan) -> Result<SandboxChild, SpawnError> {
    plan.prepare_jail()?;
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|errno| SpawnError::Prepare {
            what: "create the report pipe".to_string(),
            source: errno.into(),
        })?;
    let read_end = above_stdio(read_end, "move the report pipe above fd 2")?;
    let write_end = above_stdio(write_end, "move the report pipe above fd 2")?;
    let report_fd = write_end.as_raw_fd();
    plan.set_report_fd(report_fd);
    // The init's status pipe: non-blocking, so that reading it after the init was reaped
    // never waits (nothing there: the init itself was killed).
    let init_status = if plan.has_init() {
        let (read_end, write_end) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .map_err(|errno| SpawnError::Prepare {
                    what: "create the init's status pipe".to_string(),
                    source: errno.into(),
                })?;
        let read_end = above_stdio(read_end, "move the init's status pipe above fd 2")?;
        let write_end = above_stdio(write_end, "move the init's status pipe above fd 2")?;
        plan.set_status_fd(write_end.as_raw_fd());
        Some((read_end, write_end))
    } else {
        None
    };

    let request = sys::CloneRequest {
        namespace_flags: plan.namespace_flags,
        cgroup_dir: plan.clone_into,
    };
    // Block every signal around the clone: the child resets dispositions before unblocking.
    let all = nix::sys::signal::SigSet::all();
    let mut old = nix::sys::signal::SigSet::empty();
    nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&all),
        Some(&mut old),
    )
    .map_err(|errno| SpawnError::Prepare {
        what: "block signals".to_string(),
        source: errno.into(),
    })?;
    // The child runs in our memory until it execs (no page-table copy: see
    // `sys::clone3_spawn_shared`); `child::run` only reads the plan and writes its stack.
    // An init never execs: it gets memory of its own (a copy, as fork gives).
    let child_main = || child::run(&plan.ops, report_fd);
    let cloned = if init_status.is_some() {
        sys::clone3_spawn(request, &child_main)
    } else {
        sys::clone3_spawn_shared(request, &child_main)
    };
    let restored = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&old),
        None,
    );
    drop(write_end);
    let init_status = init_status.map(|(read_end, _write_end)| read_end);
    let (pid, pidfd) = cloned.map_err(|errno| SpawnError::Clone {
        flags: plan.describe_clone_flags(),
        errno,
    })?;
    if let Err(errno) = restored {
        tracing::warn!(%errno, "cannot restore the signal mask after clone3");
    }
    let child = SandboxChild {
        pid,
        pidfd,
        init_status,
    };

    match read_report(&read_end) {
        Ok(None) => Ok(child),
        Ok(Some(record)) => {
            reap(&child);
            Err(plan.error_for(&record))
        }
        Err(bytes) => {
            reap(&child);
            Err(SpawnError::Report { pid, bytes })
        }
    }
}

/// The program's end as its init reported it (see [`SandboxSpec::init`]), read from
/// [`SandboxChild::init_status`] after the init was reaped. `None` when the init wrote
/// nothing: it was killed itself (SIGKILL from outside, which takes the whole pid namespace
/// with it), so its own status is the program's.
pub fn init_exit_status(status_fd: BorrowedFd<'_>) -> Option<ExitStatus> {
    let mut buf = [0u8; child::init::STATUS_SIZE];
    match nix::unistd::read(status_fd, &mut buf) {
        Ok(n) if n == buf.len() => child::init::decode(libc::c_int::from_ne_bytes(buf)),
        _ => None,
    }
}

fn reap(child: &SandboxChild) {
    if let Err(e) = child.wait() {
        tracing::warn!(error = %e, "cannot reap a failed sandbox child");
    }
}

/// The failure record a child writes before `_exit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Report {
    pub step: u32,
    pub index: u32,
    pub errno: i32,
    pub detail: u32,
}

impl Report {
    pub const SIZE: usize = 16;

    pub fn encode(&self) -> [u8; Report::SIZE] {
        let s = self.step.to_ne_bytes();
        let i = self.index.to_ne_bytes();
        let e = self.errno.to_ne_bytes();
        let d = self.detail.to_ne_bytes();
        [
            s[0], s[1], s[2], s[3], i[0], i[1], i[2], i[3], e[0], e[1], e[2], e[3], d[0], d[1],
            d[2], d[3],
        ]
    }

    pub fn decode(b: &[u8; Report::SIZE]) -> Report {
        let word = |o: usize| [b[o], b[o + 1], b[o + 2], b[o + 3]];
        Report {
            step: u32::from_ne_bytes(word(0)),
            index: u32::from_ne_bytes(word(4)),
            errno: i32::from_ne_bytes(word(8)),
            detail: u32::from_ne_bytes(word(12)),
        }
    }
}

/// `Ok(None)` on EOF (exec succeeded), `Ok(Some)` for a full record, `Err(bytes)` for a
/// truncated one.
fn read_report(fd: &OwnedFd) -> Result<Option<Report>, usize> {
    let mut buf = [0u8; Report::SIZE];
    let mut got = 0;
    while got < Report::SIZE {
        match nix::unistd::read(fd.as_fd(), &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    match got {
        0 => Ok(None),
        Report::SIZE => Ok(Some(Report::decode(&buf))),
        n => Err(n),
    }
}

/// C string of a path or text, or an `Invalid` error naming `field`.
fn cstring(field: &str, bytes: impl Into<Vec<u8>>) -> Result<CString, SpawnError> {
    CString::new(bytes).map_err(|_| SpawnError::invalid(field, "contains a NUL byte"))
}

fn path_cstring(field: &str, path: &Path) -> Result<CString, SpawnError> {
    use std::os::unix::ffi::OsStrExt;
    cstring(field, path.as_os_str().as_bytes())
}
