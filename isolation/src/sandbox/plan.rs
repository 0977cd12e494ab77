//! Turning a [`SandboxSpec`] into a plan: the validated, fully prepared list of steps the
//! child executes. Everything that allocates, parses or looks at the host filesystem happens
//! here, in the parent.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::statvfs::FsFlags;

use super::{
    cstring, dup_above_stdio, path_cstring, Filesystem, Report, RootfsSpec, SandboxSpec,
    SpawnError, Stdio, Step, DEFAULT_PATH, MAX_BINDS,
};
use crate::caps::CapabilitySet;
use crate::cgroup::JailCgroupMount;
use crate::{describe_errno, errno_sentence};

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
    /// [`Plan::prepare_jail`]): root and working directory become the template's root.
    EnterTemplate {
        fd: RawFd,
    },
    /// Attach the detached tree `fd` (of `Plan::detached[bind]`, opened by
    /// [`Plan::prepare_jail`]) at `target`.
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
    /// Close every fd ≥ 3 except those in `keep` (the report pipe and the go-ahead pipe,
    /// both close-on-exec; -1 for none).
    CloseFrom {
        keep: [RawFd; 2],
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

/// The prepared spawn.
#[derive(Debug)]
pub(crate) struct Plan {
    pub ops: Vec<PlannedOp>,
    pub namespace_flags: u64,
    pub clone_into: Option<RawFd>,
    clone_into_path: Option<PathBuf>,
    program: String,
    /// The PATH searched when the program is a bare name.
    search_path: Option<String>,
    exec_candidates: Vec<String>,
    jail: bool,
    /// The template this plan's jail starts from ([`JailMode::Template`]).
    pub template: Option<TemplateLayout>,
    /// Per-task binds attached from detached trees.
    pub detached: Vec<DetachedBind>,
    /// The template entered, kept alive until the child has exec'd.
    held_template: Option<std::sync::Arc<super::template::Template>>,
    /// Strings `argv`/`envp` point into.
    _strings: Vec<CString>,
    /// Descriptors the child dups from or joins; closed when the plan is dropped.
    _fds: Vec<OwnedFd>,
}

/// The running kernel's highest capability number (`/proc/sys/kernel/cap_last_cap`).
fn cap_last_cap() -> Result<u8, SpawnError> {
    static LAST: OnceLock<u8> = OnceLock::new();
    if let Some(v) = LAST.get() {
        return Ok(*v);
    }
    let path = "/proc/sys/kernel/cap_last_cap";
    let text = std::fs::read_to_string(path).map_err(|source| SpawnError::Prepare {
        what: format!("read {path}"),
        source,
    })?;
    let value = text
        .trim()
        .parse::<u8>()
        .ok()
        .filter(|v| *v < 64)
        .ok_or_else(|| SpawnError::Prepare {
            what: format!("parse {path}"),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{:?} is not a capability number", text.trim()),
            ),
        })?;
    Ok(*LAST.get_or_init(|| value))
}

/// Checks and normalises a path inside the sandbox: absolute, no `.`/`..`, not `/`, not in
/// the kernel filesystems the jail builds itself.
pub(crate) fn sandbox_path(field: &str, path: &Path) -> Result<PathBuf, SpawnError> {
    if !path.is_absolute() {
        return Err(SpawnError::invalid(
            field,
            format!("{} is not an absolute path", path.display()),
        ));
    }
    let mut normal = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir => {}
            Component::Normal(c) => normal.push(c),
            _ => {
                return Err(SpawnError::invalid(
                    field,
                    format!("{} may not contain '.' or '..'", path.display()),
                ))
            }
        }
    }
    if normal == Path::new("/") {
        return Err(SpawnError::invalid(
            field,
            "the sandbox root itself cannot be a bind target",
        ));
    }
    for reserved in ["/proc", "/dev", "/sys"] {
        if normal.starts_with(reserved) {
            return Err(SpawnError::invalid(
                field,
                format!(
                    "{} is inside {reserved}, which the sandbox builds itself",
                    normal.display()
                ),
            ));
        }
    }
    Ok(normal)
}

/// `staging` + sandbox path (which is absolute).
fn staged(staging: &Path, sandbox: &Path) -> PathBuf {
    staging.join(sandbox.strip_prefix("/").unwrap_or(sandbox))
}

fn flags(f: MsFlags) -> libc::c_ulong {
    f.bits() as libc::c_ulong
}

/// The flags a bind mount of `host` gets on remount: always nosuid/nodev, plus read-only when
/// asked, and the source's own `ro`/`noexec` kept.
fn bind_remount_flags(field: &str, host: &Path, read_only: bool) -> Result<MsFlags, SpawnError> {
    let stat = nix::sys::statvfs::statvfs(host).map_err(|errno| SpawnError::Prepare {
        what: format!("statvfs {} ({field})", host.display()),
        source: errno.into(),
    })?;
    let mut f = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if read_only || stat.flags().contains(FsFlags::ST_RDONLY) {
        f |= MsFlags::MS_RDONLY;
    }
    if stat.flags().contains(FsFlags::ST_NOEXEC) {
        f |= MsFlags::MS_NOEXEC;
    }
    Ok(f)
}

/// The arguments of one `mount(2)` besides the target.
struct Mnt<'a> {
    source: Option<&'a [u8]>,
    fstype: Option<&'a str>,
    flags: MsFlags,
    data: Option<&'a str>,
    /// ENOENT is not an error.
    optional: bool,
}

struct Builder {
    ops: Vec<PlannedOp>,
    strings: Vec<CString>,
    fds: Vec<OwnedFd>,
}

impl Builder {
    fn push(&mut self, step: Step, target: impl Into<String>, op: Op) {
        self.ops.push(PlannedOp {
            step,
            target: target.into(),
            op,
        });
    }

    fn mount(
        &mut self,
        step: Step,
        target_text: String,
        target: &Path,
        m: Mnt<'_>,
    ) -> Result<(), SpawnError> {
        let op = Op::Mount {
            source: m.source.map(|s| cstring("mount source", s)).transpose()?,
            target: path_cstring("mount target", target)?,
            fstype: m.fstype.map(|s| cstring("mount type", s)).transpose()?,
            flags: self::flags(m.flags),
            data: m.data.map(|s| cstring("mount data", s)).transpose()?,
            optional: m.optional,
        };
        self.push(step, target_text, op);
        Ok(())
    }

    fn mkdir(&mut self, step: Step, path: &Path, mode: libc::mode_t) -> Result<(), SpawnError> {
        let op = Op::Mkdir {
            path: path_cstring("directory", path)?,
            mode,
        };
        self.push(step, path.display().to_string(), op);
        Ok(())
    }
}

/// A bind with its validated sandbox path.
struct PlannedBind {
    field: String,
    host: PathBuf,
    sandbox: PathBuf,
    read_only: bool,
    /// The task's own (a read-write bind, or a read-only bind of a task directory): bound
    /// per task, never in a template.
    per_task: bool,
    is_dir: bool,
}

fn collect_binds(rootfs: &RootfsSpec) -> Result<Vec<PlannedBind>, SpawnError> {
    let mut binds = Vec::new();
    let all = rootfs
        .ro_binds
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("ro_binds[{i}]"), b, true, false))
        .chain(
            rootfs
                .rw_binds
                .iter()
                .enumerate()
                .map(|(i, b)| (format!("rw_binds[{i}]"), b, false, true)),
        )
        .chain(
            rootfs
                .task_ro_binds
                .iter()
                .enumerate()
                .map(|(i, b)| (format!("task_ro_binds[{i}]"), b, true, true)),
        );
    let system: BTreeSet<PathBuf> = rootfs.system_dirs.iter().cloned().collect();
    let mut seen = BTreeSet::new();
    for (field, bind, read_only, per_task) in all {
        let sandbox = sandbox_path(&format!("{field}.sandbox"), &bind.sandbox)?;
        if !bind.host.is_absolute() {
            return Err(SpawnError::invalid(
                format!("{field}.host"),
                format!("{} is not an absolute path", bind.host.display()),
            ));
        }
        if system.contains(&sandbox) {
            return Err(SpawnError::invalid(
                format!("{field}.sandbox"),
                format!("{} is already a system dir; remove it from system_dirs to bind something else there", sandbox.display()),
            ));
        }
        if !seen.insert(sandbox.clone()) {
            return Err(SpawnError::invalid(
                format!("{field}.sandbox"),
                format!("{} is the target of another bind", sandbox.display()),
            ));
        }
        let meta = std::fs::metadata(&bind.host).map_err(|e| {
            SpawnError::invalid(
                format!("{field}.host"),
                format!("{}: {e}", bind.host.display()),
            )
        })?;
        binds.push(PlannedBind {
            field,
            host: bind.host.clone(),
            sandbox,
            read_only,
            per_task,
            is_dir: meta.is_dir(),
        });
    }
    if binds.len() > MAX_BINDS {
        return Err(SpawnError::invalid(
            "binds",
            format!(
                "{} bind mounts exceed the limit of {MAX_BINDS}",
                binds.len()
            ),
        ));
    }
    // Parents before children, so nested binds land on top of their parent bind.
    binds.sort_by_key(|b| b.sandbox.components().count());
    Ok(binds)
}

/// Paths of `/proc` hidden from the task (files get `/dev/null`, dirs an empty tmpfs).
const PROC_MASKED: [&str; 10] = [
    "/proc/kcore",
    "/proc/keys",
    "/proc/key-users",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/latency_stats",
    "/proc/timer_stats",
    "/proc/acpi",
    "/proc/scsi",
    "/proc/asound",
];

/// Paths of `/proc` made read-only.
const PROC_READ_ONLY: [&str; 5] = [
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/proc/irq",
    "/proc/bus",
    "/proc/fs",
];

/// Paths of `/sys` hidden from the task.
const SYS_MASKED: [&str; 2] = ["/sys/firmware", "/sys/devices/virtual/powercap"];

/// Device nodes bound from the host's `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// What kind of entry a host path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Missing,
    File,
    Dir,
}

fn kind_of(path: &Path) -> Kind {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Kind::Dir,
        Ok(_) => Kind::File,
        Err(_) => Kind::Missing,
    }
}

/// Facts about the kernel's `/proc`, `/sys` and the host's `/dev` that every jail needs.
/// They do not change while the machine runs, so they are probed once per process.
struct KernelPaths {
    proc_masked: Vec<(&'static str, Kind)>,
    proc_read_only: Vec<&'static str>,
    sys_masked: Vec<(&'static str, Kind)>,
    devices: Vec<&'static str>,
}

fn kernel_paths() -> &'static KernelPaths {
    static PATHS: OnceLock<KernelPaths> = OnceLock::new();
    PATHS.get_or_init(|| KernelPaths {
        proc_masked: PROC_MASKED
            .iter()
            .map(|p| (*p, kind_of(Path::new(p))))
            .collect(),
        proc_read_only: PROC_READ_ONLY
            .iter()
            .copied()
            .filter(|p| Path::new(p).exists())
            .collect(),
        sys_masked: SYS_MASKED
            .iter()
            .map(|p| (*p, kind_of(Path::new(p))))
            .collect(),
        devices: DEVICES
            .iter()
            .copied()
            .filter(|d| Path::new("/dev").join(d).exists())
            .collect(),
    })
}

/// `mask`: a `/dev/null` bind over a file, an empty read-only tmpfs over a directory.
fn push_mask(
    b: &mut Builder,
    step: Step,
    target: &Path,
    host_probe: &Path,
) -> Result<(), SpawnError> {
    push_mask_kind(b, step, target, kind_of(host_probe))
}

fn push_mask_kind(
    b: &mut Builder,
    step: Step,
    target: &Path,
    kind: Kind,
) -> Result<(), SpawnError> {
    let text = target.display().to_string();
    if kind == Kind::Missing {
        return Ok(());
    }
    if kind == Kind::Dir {
        b.mount(
            step,
            text,
            target,
            Mnt {
                source: Some(b"tmpfs"),
                fstype: Some("tmpfs"),
                flags: MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | MsFlags::MS_NOEXEC,
                data: Some("size=0,mode=0555"),
                optional: true,
            },
        )
    } else {
        b.mount(
            step,
            text,
            target,
            Mnt {
                source: Some(b"/dev/null"),
                fstype: None,
                flags: MsFlags::MS_BIND,
                data: None,
                optional: true,
            },
        )
    }
}

/// How a jail's filesystem is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JailMode {
    /// Everything common to every task of a layout (root tmpfs, read-only binds, `/dev`,
    /// `/sys`) lives in a template mount namespace built once ([`super::template`]); each
    /// task enters it, copies it with `unshare(CLONE_NEWNS)` and adds only its own mounts:
    /// its dirs as detached trees (`open_tree` + `move_mount`), masks, `/proc`, devpts,
    /// `/dev/shm` and its cgroups. Needs the new mount API (5.12+).
    Template,
    /// The whole jail built in each task's child, then `pivot_root` (older kernels).
    Legacy,
}

impl JailMode {
    /// The mode this kernel supports (probed once).
    pub(crate) fn for_this_kernel() -> JailMode {
        static MODE: OnceLock<JailMode> = OnceLock::new();
        *MODE.get_or_init(|| {
            if crate::sys::has_new_mount_api() {
                JailMode::Template
            } else {
                JailMode::Legacy
            }
        })
    }
}

/// What identifies a jail template: every input of its ops. Two tasks with equal keys share
/// one template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateKey {
    staging_dir: PathBuf,
    system_dirs: Vec<PathBuf>,
    /// (host, sandbox, is a directory) of the read-only binds made in the template.
    pub(super) binds: Vec<(PathBuf, PathBuf, bool)>,
    /// (sandbox, is a directory) of the mount points of per-task binds.
    pub(super) mount_points: Vec<(PathBuf, bool)>,
    /// `/sys` (and the cgroup mount points under it) are in the template: the task stays in
    /// the network namespace the template was built in (sysfs shows its mounter's).
    sysfs: Option<Vec<String>>,
}

/// Everything needed to find, or else build, the template of a plan.
#[derive(Debug)]
pub(crate) struct TemplateLayout {
    pub key: TemplateKey,
    /// The steps, run by a thread in a fresh mount namespace; they end in `pivot_root`.
    /// Empty when `ready` holds the template.
    pub ops: Vec<PlannedOp>,
    /// Identity of the host paths the template depends on (system dirs, bind sources), read
    /// before its steps were prepared: a change to any of them (replaced, remounted,
    /// removed, appeared) makes it stale.
    pub identities: Vec<super::template::Identity>,
    /// What the task's own steps need to know of the template: its directories (sandbox
    /// paths) and its directory binds (sandbox path, host path).
    pub facts: TemplateFacts,
    /// The cached template, current when the plan was made.
    pub ready: Option<std::sync::Arc<super::template::Template>>,
}

/// See [`TemplateLayout::facts`].
pub(crate) type TemplateFacts = (BTreeSet<PathBuf>, Vec<(PathBuf, PathBuf)>);

/// A per-task bind attached from a detached copy of the host path.
#[derive(Debug)]
pub(crate) struct DetachedBind {
    pub host: CString,
    pub read_only: bool,
    /// "host at sandbox", for errors.
    pub text: String,
}

fn checked_staging(rootfs: &RootfsSpec) -> Result<&Path, SpawnError> {
    let staging = rootfs.staging_dir.as_path();
    if !staging.is_absolute() {
        return Err(SpawnError::invalid(
            "filesystem.staging_dir",
            format!("{} is not an absolute path", staging.display()),
        ));
    }
    if !staging.is_dir() {
        return Err(SpawnError::invalid(
            "filesystem.staging_dir",
            format!("{} is not an existing directory", staging.display()),
        ));
    }
    Ok(staging)
}

/// Private propagation, the root tmpfs, the system dirs and the `/proc`, `/dev`, `/sys`
/// mount points. Fills `dirs` (directories of the jail) and `sources` ((sandbox, host) of
/// directory binds, for masks).
fn root_ops(
    b: &mut Builder,
    rootfs: &RootfsSpec,
    dirs: &mut BTreeSet<PathBuf>,
    sources: &mut Vec<(PathBuf, PathBuf)>,
) -> Result<(), SpawnError> {
    let staging = rootfs.staging_dir.as_path();
    b.mount(
        Step::MakeMountsPrivate,
        "/".to_string(),
        Path::new("/"),
        Mnt {
            source: None,
            fstype: None,
            flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            data: None,
            optional: false,
        },
    )?;
    b.mount(
        Step::MountRootTmpfs,
        staging.display().to_string(),
        staging,
        Mnt {
            source: Some(b"tmpfs"),
            fstype: Some("tmpfs"),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            data: Some("mode=0755,size=1m"),
            optional: false,
        },
    )?;
    dirs.insert(PathBuf::from("/"));
    for (i, dir) in rootfs.system_dirs.iter().enumerate() {
        let field = format!("system_dirs[{i}]");
        let sandbox = sandbox_path(&field, dir)?;
        let target = staged(staging, &sandbox);
        let Ok(meta) = std::fs::symlink_metadata(dir) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let link_target = std::fs::read_link(dir).map_err(|source| SpawnError::Prepare {
                what: format!("readlink {}", dir.display()),
                source,
            })?;
            let op = Op::Symlink {
                target: path_cstring(&field, &link_target)?,
                link: path_cstring(&field, &target)?,
            };
            b.push(
                Step::MakeSymlink,
                format!("{} -> {}", sandbox.display(), link_target.display()),
                op,
            );
        } else if meta.is_dir() {
            push_bind(b, &field, dir, &sandbox, &target, true, true)?;
            dirs.insert(sandbox.clone());
            sources.push((sandbox, dir.clone()));
        }
    }
    for special in ["/proc", "/dev", "/sys"] {
        b.mkdir(
            Step::MakeDirectory,
            &staged(staging, Path::new(special)),
            0o555,
        )?;
    }
    Ok(())
}

/// `mkdir` of the ancestors of `sandbox` not yet in `dirs`, under `root`.
fn ancestor_ops(
    b: &mut Builder,
    root: &Path,
    sandbox: &Path,
    dirs: &mut BTreeSet<PathBuf>,
) -> Result<(), SpawnError> {
    let mut ancestors: Vec<&Path> = sandbox.ancestors().skip(1).collect();
    ancestors.reverse();
    for ancestor in ancestors {
        if dirs.insert(ancestor.to_path_buf()) {
            b.mkdir(Step::MakeDirectory, &staged(root, ancestor), 0o755)?;
        }
    }
    Ok(())
}

/// An empty file or directory to mount on.
fn mount_point_op(
    b: &mut Builder,
    field: &str,
    target: &Path,
    is_dir: bool,
) -> Result<(), SpawnError> {
    if is_dir {
        b.mkdir(Step::MakeMountPoint, target, 0o755)
    } else {
        b.push(
            Step::MakeMountPoint,
            target.display().to_string(),
            Op::MkFile {
                path: path_cstring(field, target)?,
            },
        );
        Ok(())
    }
}

/// Masks of `rootfs.masked_paths` under `root`, each by the kind of the host path behind it.
fn mask_ops(
    b: &mut Builder,
    root: &Path,
    rootfs: &RootfsSpec,
    sources: &[(PathBuf, PathBuf)],
) -> Result<(), SpawnError> {
    for (i, masked) in rootfs.masked_paths.iter().enumerate() {
        let sandbox = sandbox_path(&format!("masked_paths[{i}]"), masked)?;
        // The host path behind it: the deepest directory bind containing it.
        let Some((bind_sandbox, bind_host)) = sources
            .iter()
            .filter(|(s, _)| sandbox.starts_with(s))
            .max_by_key(|(s, _)| s.components().count())
        else {
            continue;
        };
        let rest = sandbox.strip_prefix(bind_sandbox).unwrap_or(Path::new(""));
        push_mask(
            b,
            Step::MaskPath,
            &staged(root, &sandbox),
            &bind_host.join(rest),
        )?;
    }
    Ok(())
}

/// Remounts the mount at `target` read-only, with `flags` besides.
fn remount_read_only(
    b: &mut Builder,
    step: Step,
    target: &Path,
    flags: MsFlags,
    optional: bool,
) -> Result<(), SpawnError> {
    b.mount(
        step,
        target.display().to_string(),
        target,
        Mnt {
            source: None,
            fstype: None,
            flags: MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags,
            data: None,
            optional,
        },
    )
}

fn remount_root_read_only(b: &mut Builder, staging: &Path) -> Result<(), SpawnError> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    remount_read_only(b, Step::RemountRootReadOnly, staging, flags, false)
}

/// `/proc`, mounted from inside the new pid namespace, with its masked and read-only paths.
fn proc_ops(b: &mut Builder, root: &Path) -> Result<(), SpawnError> {
    let proc_dir = staged(root, Path::new("/proc"));
    b.mount(
        Step::MountProc,
        proc_dir.display().to_string(),
        &proc_dir,
        Mnt {
            source: Some(b"proc"),
            fstype: Some("proc"),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            data: None,
            optional: false,
        },
    )?;
    let kernel = kernel_paths();
    for (masked, kind) in &kernel.proc_masked {
        push_mask_kind(
            b,
            Step::MaskProcPath,
            &staged(root, Path::new(masked)),
            *kind,
        )?;
    }
    for ro in &kernel.proc_read_only {
        let target = staged(root, Path::new(ro));
        let target_bytes = target.as_os_str().as_bytes().to_vec();
        b.mount(
            Step::ReadOnlyProcPath,
            target.display().to_string(),
            &target,
            Mnt {
                source: Some(&target_bytes),
                fstype: None,
                flags: MsFlags::MS_BIND | MsFlags::MS_REC,
                data: None,
                optional: true,
            },
        )?;
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        remount_read_only(b, Step::ReadOnlyProcPath, &target, flags, true)?;
    }
    Ok(())
}

/// `/dev`: a small read-only tmpfs with the host's harmless device nodes bound in, the
/// `pts` and `shm` mount points and the usual symlinks.
fn dev_ops(b: &mut Builder, root: &Path) -> Result<(), SpawnError> {
    let dev = staged(root, Path::new("/dev"));
    b.mount(
        Step::MountDev,
        dev.display().to_string(),
        &dev,
        Mnt {
            source: Some(b"tmpfs"),
            fstype: Some("tmpfs"),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            data: Some("mode=0755,size=64k"),
            optional: false,
        },
    )?;
    for name in &kernel_paths().devices {
        let host = Path::new("/dev").join(name);
        let target = dev.join(name);
        let text = format!("{} at {}", host.display(), target.display());
        b.push(
            Step::BindDevice,
            text.clone(),
            Op::MkFile {
                path: path_cstring("device", &target)?,
            },
        );
        // The bind keeps devtmpfs' flags: nosuid/noexec mean nothing for a device node.
        b.mount(
            Step::BindDevice,
            text,
            &target,
            Mnt {
                source: Some(host.as_os_str().as_bytes()),
                fstype: None,
                flags: MsFlags::MS_BIND,
                data: None,
                optional: false,
            },
        )?;
    }
    b.mkdir(Step::MountDevPts, &dev.join("pts"), 0o755)?;
    b.mkdir(Step::MountShm, &dev.join("shm"), 0o1777)?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let link_path = dev.join(link);
        let op = Op::Symlink {
            target: cstring("symlink", target)?,
            link: path_cstring("symlink", &link_path)?,
        };
        b.push(
            Step::MountDev,
            format!("{} -> {target}", link_path.display()),
            op,
        );
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    remount_read_only(b, Step::MountDev, &dev, flags, false)
}

/// The task's own devpts instance and `/dev/shm`.
fn dev_instance_ops(b: &mut Builder, root: &Path, shm_size_bytes: u64) -> Result<(), SpawnError> {
    let dev = staged(root, Path::new("/dev"));
    let pts = dev.join("pts");
    b.mount(
        Step::MountDevPts,
        pts.display().to_string(),
        &pts,
        Mnt {
            source: Some(b"devpts"),
            fstype: Some("devpts"),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            data: Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
            optional: false,
        },
    )?;
    let shm = dev.join("shm");
    let shm_data = format!("mode=1777,size={}", shm_size_bytes.max(4096));
    b.mount(
        Step::MountShm,
        shm.display().to_string(),
        &shm,
        Mnt {
            source: Some(b"shm"),
            fstype: Some("tmpfs"),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            data: Some(&shm_data),
            optional: false,
        },
    )
}

const KERNEL_FS_FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// Read-only `/sys` with its masks and, when the task's cgroups are mounted in
/// subdirectories, a read-only tmpfs at `/sys/fs/cgroup` holding their mount points.
fn sys_ops(b: &mut Builder, root: &Path, mounts: &[JailCgroupMount]) -> Result<(), SpawnError> {
    let sys = staged(root, Path::new("/sys"));
    b.mount(
        Step::MountSys,
        sys.display().to_string(),
        &sys,
        Mnt {
            source: Some(b"sysfs"),
            fstype: Some("sysfs"),
            flags: KERNEL_FS_FLAGS,
            data: None,
            optional: false,
        },
    )?;
    for (masked, kind) in &kernel_paths().sys_masked {
        push_mask_kind(
            b,
            Step::MaskSysPath,
            &staged(root, Path::new(masked)),
            *kind,
        )?;
    }
    if !mounts.iter().any(|m| !m.dir_name.is_empty()) {
        return Ok(());
    }
    let cgroup_root = sys.join("fs/cgroup");
    b.mount(
        Step::MountCgroup,
        cgroup_root.display().to_string(),
        &cgroup_root,
        Mnt {
            source: Some(b"tmpfs"),
            fstype: Some("tmpfs"),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            data: Some("mode=0755,size=64k"),
            optional: false,
        },
    )?;
    for m in mounts {
        b.mkdir(Step::MountCgroup, &cgroup_root.join(&m.dir_name), 0o555)?;
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    remount_read_only(b, Step::MountCgroup, &cgroup_root, flags, false)
}

/// The task's own cgroup hierarchies (seen through its cgroup namespace) at
/// `/sys/fs/cgroup` or in the subdirectories [`sys_ops`] made.
fn cgroup_instance_ops(
    b: &mut Builder,
    root: &Path,
    mounts: &[JailCgroupMount],
) -> Result<(), SpawnError> {
    let cgroup_root = staged(root, Path::new("/sys/fs/cgroup"));
    for m in mounts {
        let dir = if m.dir_name.is_empty() {
            // A single cgroup2 tree straight at /sys/fs/cgroup; nothing else can go there.
            if mounts.len() != 1 {
                continue;
            }
            cgroup_root.clone()
        } else {
            cgroup_root.join(&m.dir_name)
        };
        let data = (!m.data.is_empty()).then_some(m.data.as_str());
        let text = if m.data.is_empty() {
            dir.display().to_string()
        } else {
            format!("{} ({})", dir.display(), m.data)
        };
        b.mount(
            Step::MountCgroup,
            text,
            &dir,
            Mnt {
                source: Some(m.fstype.as_bytes()),
                fstype: Some(m.fstype),
                flags: KERNEL_FS_FLAGS,
                data,
                optional: false,
            },
        )?;
    }
    Ok(())
}

/// `pivot_root(".", ".")` stacks the old root under the new one; detaching "." removes it.
fn pivot_ops(b: &mut Builder, staging: &Path) -> Result<(), SpawnError> {
    b.push(
        Step::PivotRoot,
        staging.display().to_string(),
        Op::Chdir {
            path: path_cstring("staging_dir", staging)?,
        },
    );
    b.push(
        Step::PivotRoot,
        staging.display().to_string(),
        Op::PivotRoot,
    );
    b.push(
        Step::DetachOldRoot,
        "/".to_string(),
        Op::UmountDetach {
            path: cstring("old root", ".")?,
        },
    );
    b.push(
        Step::DetachOldRoot,
        "/".to_string(),
        Op::Chdir {
            path: cstring("new root", "/")?,
        },
    );
    Ok(())
}

/// The cgroups mounted in the jail: only with a cgroup namespace, since without one a cgroup
/// mount would show the host's whole tree.
fn jail_cgroup_mounts(spec: &SandboxSpec) -> Vec<JailCgroupMount> {
    match (&spec.cgroup, spec.namespaces.cgroup) {
        (Some(join), true) => join.jail_mounts().to_vec(),
        _ => Vec::new(),
    }
}

/// The whole jail, built in the child and entered with `pivot_root` ([`JailMode::Legacy`]).
fn legacy_jail_ops(
    b: &mut Builder,
    spec: &SandboxSpec,
    rootfs: &RootfsSpec,
) -> Result<(), SpawnError> {
    let staging = checked_staging(rootfs)?;
    let binds = collect_binds(rootfs)?;
    let mut dirs = BTreeSet::new();
    let mut sources = Vec::new();
    root_ops(b, rootfs, &mut dirs, &mut sources)?;
    for bind in &binds {
        ancestor_ops(b, staging, &bind.sandbox, &mut dirs)?;
        let target = staged(staging, &bind.sandbox);
        push_bind(
            b,
            &bind.field,
            &bind.host,
            &bind.sandbox,
            &target,
            bind.is_dir,
            bind.read_only,
        )?;
        if bind.is_dir {
            dirs.insert(bind.sandbox.clone());
            sources.push((bind.sandbox.clone(), bind.host.clone()));
        }
    }
    mask_ops(b, staging, rootfs, &sources)?;
    remount_root_read_only(b, staging)?;
    proc_ops(b, staging)?;
    dev_ops(b, staging)?;
    dev_instance_ops(b, staging, rootfs.shm_size_bytes)?;
    let mounts = jail_cgroup_mounts(spec);
    sys_ops(b, staging, &mounts)?;
    cgroup_instance_ops(b, staging, &mounts)?;
    pivot_ops(b, staging)
}

/// The jail from a template ([`JailMode::Template`]): the template's steps go into the
/// returned layout, the task's own into `b`. The template's key and the identity of its
/// host sources are worked out first; when the cache holds a current template for them, its
/// steps are not prepared again (they are only needed to build one).
fn template_jail_ops(
    b: &mut Builder,
    spec: &SandboxSpec,
    rootfs: &RootfsSpec,
    detached: &mut Vec<DetachedBind>,
) -> Result<TemplateLayout, SpawnError> {
    let staging = checked_staging(rootfs)?;
    let binds = collect_binds(rootfs)?;
    let mut identity_paths = Vec::new();
    for (i, dir) in rootfs.system_dirs.iter().enumerate() {
        identity_paths.push(path_cstring(&format!("system_dirs[{i}]"), dir)?);
    }
    let mounts = jail_cgroup_mounts(spec);
    let sysfs_in_template = spec.namespaces.net.is_none();
    let mut key = TemplateKey {
        staging_dir: staging.to_path_buf(),
        system_dirs: rootfs.system_dirs.clone(),
        binds: Vec::new(),
        mount_points: Vec::new(),
        sysfs: sysfs_in_template.then(|| mounts.iter().map(|m| m.dir_name.clone()).collect()),
    };
    // A bind inside one of the task's own binds lands in the task's own directory: per
    // task, like the task's binds themselves. Everything else is the template's.
    let own: Vec<&Path> = binds
        .iter()
        .filter(|b| b.per_task)
        .map(|b| b.sandbox.as_path())
        .collect();
    let mut in_template = Vec::new();
    let mut per_task = Vec::new();
    for bind in &binds {
        let nested = own
            .iter()
            .any(|w| *w != bind.sandbox && bind.sandbox.starts_with(w));
        if nested {
            per_task.push((bind, true));
            continue;
        }
        in_template.push(bind);
        if !bind.per_task {
            key.binds
                .push((bind.host.clone(), bind.sandbox.clone(), bind.is_dir));
            identity_paths.push(path_cstring(&format!("{}.host", bind.field), &bind.host)?);
        } else {
            key.mount_points.push((bind.sandbox.clone(), bind.is_dir));
            per_task.push((bind, false));
        }
    }

    let cached = super::template::lookup(&key, &identity_paths)?;
    let (ops, mut dirs, mut sources, identities, ready) = match cached {
        super::template::Lookup::Current(template) => {
            let (dirs, sources) = template.layout_facts();
            (Vec::new(), dirs, sources, Vec::new(), Some(template))
        }
        super::template::Lookup::Missing(identities) => {
            let mut t = Builder {
                ops: Vec::new(),
                strings: Vec::new(),
                fds: Vec::new(),
            };
            let mut dirs = BTreeSet::new();
            let mut sources = Vec::new();
            root_ops(&mut t, rootfs, &mut dirs, &mut sources)?;
            for bind in in_template {
                ancestor_ops(&mut t, staging, &bind.sandbox, &mut dirs)?;
                let target = staged(staging, &bind.sandbox);
                if !bind.per_task {
                    push_bind(
                        &mut t,
                        &bind.field,
                        &bind.host,
                        &bind.sandbox,
                        &target,
                        bind.is_dir,
                        true,
                    )?;
                } else {
                    mount_point_op(&mut t, &bind.field, &target, bind.is_dir)?;
                }
                if bind.is_dir {
                    dirs.insert(bind.sandbox.clone());
                    // A per-task bind's host path is the task's own: added below.
                    if !bind.per_task {
                        sources.push((bind.sandbox.clone(), bind.host.clone()));
                    }
                }
            }
            remount_root_read_only(&mut t, staging)?;
            dev_ops(&mut t, staging)?;
            if sysfs_in_template {
                sys_ops(&mut t, staging, &mounts)?;
            }
            pivot_ops(&mut t, staging)?;
            (t.ops, dirs, sources, identities, None)
        }
    };
    let facts = (dirs.clone(), sources.clone());

    // The task: enter a copy of the template, then add what is its own.
    let root = Path::new("/");
    b.push(
        Step::EnterJailTemplate,
        staging.display().to_string(),
        Op::EnterTemplate { fd: -1 },
    );
    b.push(
        Step::NewMountNamespace,
        String::new(),
        Op::Unshare {
            flags: libc::CLONE_NEWNS,
        },
    );
    for (bind, nested) in per_task {
        let target = staged(root, &bind.sandbox);
        if nested {
            ancestor_ops(b, root, &bind.sandbox, &mut dirs)?;
            mount_point_op(b, &bind.field, &target, bind.is_dir)?;
        }
        let text = format!("{} at {}", bind.host.display(), bind.sandbox.display());
        b.push(
            Step::BindMount,
            text.clone(),
            Op::MoveMount {
                fd: -1,
                bind: detached.len(),
                target: path_cstring(&bind.field, &target)?,
            },
        );
        detached.push(DetachedBind {
            host: path_cstring(&format!("{}.host", bind.field), &bind.host)?,
            read_only: bind.read_only,
            text,
        });
        if bind.is_dir {
            dirs.insert(bind.sandbox.clone());
            sources.push((bind.sandbox.clone(), bind.host.clone()));
        }
    }
    mask_ops(b, root, rootfs, &sources)?;
    proc_ops(b, root)?;
    dev_instance_ops(b, root, rootfs.shm_size_bytes)?;
    if !sysfs_in_template {
        sys_ops(b, root, &mounts)?;
    }
    cgroup_instance_ops(b, root, &mounts)?;
    Ok(TemplateLayout {
        key,
        ops,
        identities,
        facts,
        ready,
    })
}

/// Mount point, bind, then remount with the final flags.
fn push_bind(
    b: &mut Builder,
    field: &str,
    host: &Path,
    sandbox: &Path,
    target: &Path,
    is_dir: bool,
    read_only: bool,
) -> Result<(), SpawnError> {
    mount_point_op(b, field, target, is_dir)?;
    let text = format!("{} at {}", host.display(), sandbox.display());
    b.mount(
        Step::BindMount,
        text.clone(),
        target,
        Mnt {
            source: Some(host.as_os_str().as_bytes()),
            fstype: None,
            flags: MsFlags::MS_BIND,
            data: None,
            optional: false,
        },
    )?;
    let remount = bind_remount_flags(field, host, read_only)?;
    b.mount(
        Step::RemountBind,
        text,
        target,
        Mnt {
            source: None,
            fstype: None,
            flags: remount,
            data: None,
            optional: false,
        },
    )
}

fn stdio_ops(b: &mut Builder, spec: &SandboxSpec) -> Result<(), SpawnError> {
    for (to, stdio, name) in [
        (0, &spec.stdin, "stdin"),
        (1, &spec.stdout, "stdout"),
        (2, &spec.stderr, "stderr"),
    ] {
        let fd = match stdio {
            Stdio::Inherit => continue,
            Stdio::Null => {
                let null = nix::fcntl::open(
                    "/dev/null",
                    nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(|errno| SpawnError::Prepare {
                    what: format!("open /dev/null for {name}"),
                    source: errno.into(),
                })?;
                super::above_stdio(null, "move /dev/null above fd 2")?
            }
            Stdio::Fd(fd) => dup_above_stdio(
                std::os::fd::AsFd::as_fd(fd),
                &format!("duplicate the {name} fd"),
            )?,
        };
        b.push(
            Step::SetupStdio,
            name,
            Op::Dup {
                from: fd.as_raw_fd(),
                to,
            },
        );
        b.fds.push(fd);
    }
    Ok(())
}

fn rlimit_name(resource: u32) -> String {
    let names = [
        (libc::RLIMIT_AS, "RLIMIT_AS"),
        (libc::RLIMIT_CORE, "RLIMIT_CORE"),
        (libc::RLIMIT_CPU, "RLIMIT_CPU"),
        (libc::RLIMIT_DATA, "RLIMIT_DATA"),
        (libc::RLIMIT_FSIZE, "RLIMIT_FSIZE"),
        (libc::RLIMIT_LOCKS, "RLIMIT_LOCKS"),
        (libc::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"),
        (libc::RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE"),
        (libc::RLIMIT_NICE, "RLIMIT_NICE"),
        (libc::RLIMIT_NOFILE, "RLIMIT_NOFILE"),
        (libc::RLIMIT_NPROC, "RLIMIT_NPROC"),
        (libc::RLIMIT_RSS, "RLIMIT_RSS"),
        (libc::RLIMIT_RTPRIO, "RLIMIT_RTPRIO"),
        (libc::RLIMIT_RTTIME, "RLIMIT_RTTIME"),
        (libc::RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING"),
        (libc::RLIMIT_STACK, "RLIMIT_STACK"),
    ];
    names
        .iter()
        .find(|(r, _)| *r == resource)
        .map(|(_, n)| (*n).to_string())
        .unwrap_or_else(|| format!("resource {resource}"))
}

/// Validates `spec` and prepares every step, the jail as this kernel supports it.
pub(crate) fn build(spec: &SandboxSpec) -> Result<Plan, SpawnError> {
    build_with(spec, JailMode::for_this_kernel())
}

/// [`build`] with the jail built as `mode` says.
pub(crate) fn build_with(spec: &SandboxSpec, mode: JailMode) -> Result<Plan, SpawnError> {
    if spec.program.is_empty() {
        return Err(SpawnError::invalid("program", "is empty"));
    }
    if !spec.work_dir.is_absolute() {
        return Err(SpawnError::invalid(
            "work_dir",
            format!("{} is not an absolute path", spec.work_dir.display()),
        ));
    }
    if spec.hostname.is_some() && !spec.namespaces.uts {
        return Err(SpawnError::invalid(
            "hostname",
            "needs a new UTS namespace (namespaces.uts); it would rename the host",
        ));
    }
    if let Some(h) = &spec.hostname {
        if h.is_empty() || h.len() > 64 {
            return Err(SpawnError::invalid(
                "hostname",
                format!("{h:?} must be 1 to 64 bytes long"),
            ));
        }
    }
    let jail = matches!(spec.filesystem, Filesystem::Jail(_));
    if !jail && (spec.namespaces.pid || spec.namespaces.cgroup) {
        return Err(SpawnError::invalid(
            "namespaces",
            "pid and cgroup namespaces need Filesystem::Jail (a fresh /proc and /sys/fs/cgroup)",
        ));
    }
    if !spec.ambient_capabilities.is_subset(spec.capabilities) {
        return Err(SpawnError::invalid(
            "ambient_capabilities",
            format!(
                "{} are not in the allowed capabilities",
                spec.ambient_capabilities.difference(spec.capabilities)
            ),
        ));
    }
    if spec.user.groups.len() > 65_536 {
        return Err(SpawnError::invalid(
            "user.groups",
            "more than 65536 supplementary groups",
        ));
    }
    for (i, r) in spec.rlimits.iter().enumerate() {
        if r.soft > r.hard {
            return Err(SpawnError::invalid(
                format!("rlimits[{i}]"),
                format!("soft limit {} exceeds hard limit {}", r.soft, r.hard),
            ));
        }
    }
    let last_cap = cap_last_cap()?;
    let seccomp = spec.seccomp.compile()?;

    let mut b = Builder {
        ops: Vec::new(),
        strings: Vec::new(),
        fds: Vec::new(),
    };
    // Held by the plan (above stdio, so the stdio dups cannot close it) until the child execs.
    let go_ahead_fd = match &spec.go_ahead {
        Some(fd) => {
            let fd = dup_above_stdio(std::os::fd::AsFd::as_fd(fd), "duplicate the go-ahead fd")?;
            let raw = fd.as_raw_fd();
            b.fds.push(fd);
            raw
        }
        None => -1,
    };

    // argv/envp first: they only borrow from `b.strings`, which the plan keeps.
    let program = cstring("program", spec.program.as_bytes())?;
    let mut argv_strings = vec![program];
    for (i, a) in spec.args.iter().enumerate() {
        argv_strings.push(cstring(&format!("args[{i}]"), a.as_bytes())?);
    }
    let mut env_strings = Vec::new();
    let mut env_path = None;
    for (i, (k, v)) in spec.env.iter().enumerate() {
        if k.is_empty() || k.contains('=') {
            return Err(SpawnError::invalid(
                format!("env[{i}]"),
                format!("{k:?} is not a valid variable name"),
            ));
        }
        if k == "PATH" {
            env_path = Some(v.clone());
        }
        env_strings.push(cstring(&format!("env[{i}] ({k})"), format!("{k}={v}"))?);
    }
    // The pointers stay valid when the strings move into `b.strings`: a CString's bytes live
    // on the heap.
    let argv = crate::sys::CStrArray::new(argv_strings.iter().map(CString::as_c_str));
    let envp = crate::sys::CStrArray::new(env_strings.iter().map(CString::as_c_str));
    b.strings.extend(argv_strings);
    b.strings.extend(env_strings);

    let (candidates, search_path) = if spec.program.contains('/') {
        (vec![spec.program.clone()], None)
    } else {
        let path = env_path.unwrap_or_else(|| DEFAULT_PATH.to_string());
        let list: Vec<String> = path
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{}/{}", d.trim_end_matches('/'), spec.program))
            .collect();
        if list.is_empty() {
            return Err(SpawnError::invalid(
                "env PATH",
                format!("{path:?} lists no directory to find {:?} in", spec.program),
            ));
        }
        (list, Some(path))
    };
    let candidate_cstrings = candidates
        .iter()
        .map(|c| cstring("program", c.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;

    // 1. cgroup
    let mut clone_into = None;
    let mut clone_into_path = None;
    if let Some(join) = &spec.cgroup {
        for (fd, path) in join.procs_fds() {
            b.push(
                Step::JoinCgroup,
                path.display().to_string(),
                Op::WriteFd { fd, data: b"0" },
            );
        }
        clone_into = join.clone_into_fd();
        clone_into_path = join.clone_into_path().map(Path::to_path_buf);
    }
    // 2. network namespace
    if let Some(net) = &spec.namespaces.net {
        let fd = nix::fcntl::open(
            net,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|errno| {
            SpawnError::invalid(
                "namespaces.net",
                format!("{}: {}", net.display(), describe_errno(errno)),
            )
        })?;
        b.push(
            Step::JoinNetNamespace,
            net.display().to_string(),
            Op::SetNs {
                fd: fd.as_raw_fd(),
                nstype: libc::CLONE_NEWNET,
            },
        );
        b.fds.push(fd);
    }
    // 3. cgroup namespace, rooted at the task cgroup joined above
    if spec.namespaces.cgroup {
        b.push(
            Step::UnshareCgroupNamespace,
            "",
            Op::Unshare {
                flags: libc::CLONE_NEWCGROUP,
            },
        );
    }
    // 4. the jail
    let mut template = None;
    let mut detached = Vec::new();
    if let Filesystem::Jail(rootfs) = &spec.filesystem {
        match mode {
            JailMode::Template => {
                template = Some(template_jail_ops(&mut b, spec, rootfs, &mut detached)?);
            }
            JailMode::Legacy => legacy_jail_ops(&mut b, spec, rootfs)?,
        }
    }
    // 5. hostname, rlimits, stdio, fds, signals
    if let Some(h) = &spec.hostname {
        b.push(
            Step::SetHostname,
            h.clone(),
            Op::SetHostname {
                name: h.as_bytes().to_vec(),
            },
        );
    }
    for r in &spec.rlimits {
        let resource = r.resource.raw();
        b.push(
            Step::SetRlimit,
            format!("{} {}/{}", rlimit_name(resource), r.soft, r.hard),
            Op::SetRlimit {
                resource,
                soft: r.soft,
                hard: r.hard,
            },
        );
    }
    stdio_ops(&mut b, spec)?;
    // The report fd is filled in by `spawn` (it is created after the plan); see Plan::set_report_fd.
    b.push(
        Step::CloseFds,
        "3..",
        Op::CloseFrom {
            keep: [-1, go_ahead_fd],
        },
    );
    b.push(Step::ResetSignals, "", Op::ResetSignals);
    // 6. identity and privileges
    let allowed = spec.capabilities.clip_to(last_cap);
    let ambient = spec.ambient_capabilities.clip_to(last_cap);
    let uid = spec.user.uid;
    b.push(
        Step::DropBoundingSet,
        allowed.to_string(),
        Op::DropBounding {
            keep: allowed.mask(),
            last_cap,
        },
    );
    let gids: Vec<libc::gid_t> = spec.user.groups.clone();
    b.push(Step::SetGroups, format!("{gids:?}"), Op::SetGroups { gids });
    b.push(
        Step::SetGid,
        spec.user.gid.to_string(),
        Op::SetGid { gid: spec.user.gid },
    );
    let keep_ambient = uid != 0 && !ambient.is_empty();
    if keep_ambient {
        b.push(Step::KeepCapabilities, "on", Op::KeepCaps { on: true });
    }
    b.push(Step::SetUid, uid.to_string(), Op::SetUid { uid });
    let granted = if uid == 0 { allowed } else { ambient };
    b.push(
        Step::SetCapabilities,
        granted.to_string(),
        Op::Capset {
            effective: granted.mask(),
            permitted: granted.mask(),
            inheritable: granted.mask(),
        },
    );
    let raise = if uid == 0 {
        CapabilitySet::EMPTY
    } else {
        ambient
    };
    b.push(
        Step::SetAmbientCapabilities,
        raise.to_string(),
        Op::Ambient {
            raise: raise.mask(),
            last_cap,
        },
    );
    if keep_ambient {
        b.push(Step::KeepCapabilities, "off", Op::KeepCaps { on: false });
    }
    if go_ahead_fd >= 0 {
        b.push(
            Step::AwaitGoAhead,
            "",
            Op::AwaitByte {
                fd: go_ahead_fd,
                timeout_ms: super::GO_AHEAD_TIMEOUT_MS,
            },
        );
    }
    b.push(Step::NoNewPrivs, "", Op::NoNewPrivs);
    if let Some(program) = seccomp {
        b.push(
            Step::InstallSeccomp,
            format!("({} instructions)", program.len()),
            Op::Seccomp { program },
        );
    }
    // 7. working directory and exec
    b.push(
        Step::ChangeDirectory,
        spec.work_dir.display().to_string(),
        Op::Chdir {
            path: path_cstring("work_dir", &spec.work_dir)?,
        },
    );
    b.push(
        Step::Exec,
        spec.program.clone(),
        Op::Exec {
            candidates: candidate_cstrings,
            argv,
            envp,
        },
    );

    let mut namespace_flags = 0u64;
    // A template's copy comes from `unshare` in the child, after entering the template.
    if jail && template.is_none() {
        namespace_flags |= libc::CLONE_NEWNS as u64;
    }
    if spec.namespaces.pid {
        namespace_flags |= libc::CLONE_NEWPID as u64;
    }
    if spec.namespaces.ipc {
        namespace_flags |= libc::CLONE_NEWIPC as u64;
    }
    if spec.namespaces.uts {
        namespace_flags |= libc::CLONE_NEWUTS as u64;
    }

    Ok(Plan {
        ops: b.ops,
        namespace_flags,
        clone_into,
        clone_into_path,
        program: spec.program.clone(),
        search_path,
        exec_candidates: candidates,
        jail,
        template,
        detached,
        held_template: None,
        _strings: b.strings,
        _fds: b.fds,
    })
}

impl Plan {
    /// Marks the program as found inside a task root although the plan builds no jail (it
    /// enters an existing one), so exec errors say where the lookup happened.
    pub(crate) fn set_exec_inside_task_root(&mut self) {
        self.jail = true;
    }

    /// Finds or builds the jail template and opens the per-task binds' detached trees,
    /// filling their fds into the steps that use them. Needs root; a no-op without a
    /// template.
    pub(crate) fn prepare_jail(&mut self) -> Result<(), SpawnError> {
        let Some(layout) = &self.template else {
            return Ok(());
        };
        let template = super::template::obtain(layout)?;
        let mut trees = Vec::with_capacity(self.detached.len());
        for bind in &self.detached {
            let fd = crate::sys::open_tree_clone(&bind.host, bind.read_only).map_err(|errno| {
                SpawnError::Step {
                    step: Step::BindMount,
                    target: bind.text.clone(),
                    errno,
                    message: format!(
                        "bind mount {}: copy the host mount: {}",
                        bind.text,
                        describe_errno(errno)
                    ),
                }
            })?;
            trees.push(fd);
        }
        for planned in &mut self.ops {
            match &mut planned.op {
                Op::EnterTemplate { fd } => *fd = template.ns_fd(),
                Op::MoveMount { fd, bind, .. } => {
                    if let Some(tree) = trees.get(*bind) {
                        *fd = tree.as_raw_fd();
                    }
                }
                _ => {}
            }
        }
        self._fds.extend(trees);
        self.held_template = Some(template);
        Ok(())
    }

    /// Sets the fd `CloseFrom` keeps (the report pipe's write end).
    pub(crate) fn set_report_fd(&mut self, fd: RawFd) {
        for planned in &mut self.ops {
            if let Op::CloseFrom { keep } = &mut planned.op {
                keep[0] = fd;
            }
        }
    }

    /// The C strings `argv`/`envp` point into.
    #[cfg(test)]
    pub(crate) fn strings(&self) -> &[CString] {
        &self._strings
    }

    /// The steps in execution order.
    #[cfg(test)]
    pub(crate) fn steps(&self) -> Vec<Step> {
        self.ops.iter().map(|p| p.step).collect()
    }

    pub(crate) fn describe_clone_flags(&self) -> String {
        let mut names = vec!["CLONE_PIDFD"];
        for (flag, name) in [
            (libc::CLONE_NEWNS, "CLONE_NEWNS"),
            (libc::CLONE_NEWPID, "CLONE_NEWPID"),
            (libc::CLONE_NEWIPC, "CLONE_NEWIPC"),
            (libc::CLONE_NEWUTS, "CLONE_NEWUTS"),
        ] {
            if self.namespace_flags & flag as u64 != 0 {
                names.push(name);
            }
        }
        let mut text = names.join("|");
        if let Some(path) = &self.clone_into_path {
            text.push_str(&format!("|CLONE_INTO_CGROUP {}", path.display()));
        }
        text
    }

    /// The error a child's failure report stands for.
    pub(crate) fn error_for(&self, report: &Report) -> SpawnError {
        let errno = Errno::from_raw(report.errno);
        let Some(planned) = usize::try_from(report.index)
            .ok()
            .and_then(|i| self.ops.get(i))
        else {
            return SpawnError::Step {
                step: Step::from_raw(report.step).unwrap_or(Step::Exec),
                target: String::new(),
                errno,
                message: format!(
                    "sandbox child failed at unknown step {} (index {}): {}",
                    report.step,
                    report.index,
                    describe_errno(errno)
                ),
            };
        };
        let step = planned.step;
        let message = if step == Step::Exec {
            let place = if self.jail {
                "inside the task root"
            } else {
                "on the host"
            };
            let candidate = usize::try_from(report.detail)
                .ok()
                .and_then(|i| self.exec_candidates.get(i))
                .cloned()
                .unwrap_or_else(|| self.program.clone());
            match (&self.search_path, errno) {
                (Some(path), Errno::ENOENT | Errno::ENOTDIR) => {
                    format!(
                        "exec {:?}: not found in PATH {path:?} {place}",
                        self.program
                    )
                }
                _ => format!(
                    "exec {candidate:?}: {} {place} ({errno:?})",
                    errno_sentence(errno)
                ),
            }
        } else {
            step_message(planned, errno)
        };
        SpawnError::Step {
            step,
            target: planned.target.clone(),
            errno,
            message,
        }
    }
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
