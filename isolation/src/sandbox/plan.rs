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
    /// Close every fd ≥ 3 except `keep` (the report pipe, close-on-exec).
    CloseFrom {
        keep: RawFd,
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
        argv: Vec<*const libc::c_char>,
        envp: Vec<*const libc::c_char>,
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
    is_dir: bool,
}

fn collect_binds(rootfs: &RootfsSpec) -> Result<Vec<PlannedBind>, SpawnError> {
    let mut binds = Vec::new();
    let all = rootfs
        .ro_binds
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("ro_binds[{i}]"), b, true))
        .chain(
            rootfs
                .rw_binds
                .iter()
                .enumerate()
                .map(|(i, b)| (format!("rw_binds[{i}]"), b, false)),
        );
    let system: BTreeSet<PathBuf> = rootfs.system_dirs.iter().cloned().collect();
    let mut seen = BTreeSet::new();
    for (field, bind, read_only) in all {
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

fn jail_ops(b: &mut Builder, spec: &SandboxSpec, rootfs: &RootfsSpec) -> Result<(), SpawnError> {
    let staging = &rootfs.staging_dir;
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
    let binds = collect_binds(rootfs)?;

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

    // Directories known to exist in the jail (created, or provided by a directory bind).
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    dirs.insert(PathBuf::from("/"));
    // (sandbox path, host path) of every directory bind, for masks.
    let mut sources: Vec<(PathBuf, PathBuf)> = Vec::new();

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

    for bind in &binds {
        let mut ancestors: Vec<&Path> = bind.sandbox.ancestors().skip(1).collect();
        ancestors.reverse();
        for ancestor in ancestors {
            if dirs.insert(ancestor.to_path_buf()) {
                b.mkdir(Step::MakeDirectory, &staged(staging, ancestor), 0o755)?;
            }
        }
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
            &staged(staging, &sandbox),
            &bind_host.join(rest),
        )?;
    }

    b.mount(
        Step::RemountRootReadOnly,
        staging.display().to_string(),
        staging,
        Mnt {
            source: None,
            fstype: None,
            flags: MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV,
            data: None,
            optional: false,
        },
    )?;

    // /proc, mounted from inside the new pid namespace.
    let proc_dir = staged(staging, Path::new("/proc"));
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
            &staged(staging, Path::new(masked)),
            *kind,
        )?;
    }
    for ro in &kernel.proc_read_only {
        let target = staged(staging, Path::new(ro));
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
        b.mount(
            Step::ReadOnlyProcPath,
            target.display().to_string(),
            &target,
            Mnt {
                source: None,
                fstype: None,
                flags: MsFlags::MS_BIND
                    | MsFlags::MS_REMOUNT
                    | MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | MsFlags::MS_NOEXEC,
                data: None,
                optional: true,
            },
        )?;
    }

    // /dev: a small tmpfs with the host's harmless device nodes bound in.
    let dev = staged(staging, Path::new("/dev"));
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
    for name in &kernel.devices {
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
    let pts = dev.join("pts");
    b.mkdir(Step::MountDevPts, &pts, 0o755)?;
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
    b.mkdir(Step::MountShm, &shm, 0o1777)?;
    let shm_data = format!("mode=1777,size={}", rootfs.shm_size_bytes.max(4096));
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
    )?;
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
    b.mount(
        Step::MountDev,
        dev.display().to_string(),
        &dev,
        Mnt {
            source: None,
            fstype: None,
            flags: MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NOEXEC,
            data: None,
            optional: false,
        },
    )?;

    // /sys, read-only, with the task's own cgroups.
    let sys = staged(staging, Path::new("/sys"));
    let kernel_fs_flags =
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    b.mount(
        Step::MountSys,
        sys.display().to_string(),
        &sys,
        Mnt {
            source: Some(b"sysfs"),
            fstype: Some("sysfs"),
            flags: kernel_fs_flags,
            data: None,
            optional: false,
        },
    )?;
    for (masked, kind) in &kernel.sys_masked {
        push_mask_kind(
            b,
            Step::MaskSysPath,
            &staged(staging, Path::new(masked)),
            *kind,
        )?;
    }
    let cgroup_root = sys.join("fs/cgroup");
    let mounts = match (&spec.cgroup, spec.namespaces.cgroup) {
        // Without a cgroup namespace a cgroup mount would show the host's whole tree.
        (Some(join), true) => join.jail_mounts().to_vec(),
        _ => Vec::new(),
    };
    if let [single] = mounts.as_slice() {
        if single.dir_name.is_empty() {
            b.mount(
                Step::MountCgroup,
                cgroup_root.display().to_string(),
                &cgroup_root,
                Mnt {
                    source: Some(b"cgroup2"),
                    fstype: Some("cgroup2"),
                    flags: kernel_fs_flags,
                    data: None,
                    optional: false,
                },
            )?;
        }
    }
    if mounts.iter().any(|m| !m.dir_name.is_empty()) {
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
        for m in &mounts {
            let dir = cgroup_root.join(&m.dir_name);
            b.mkdir(Step::MountCgroup, &dir, 0o555)?;
            let data = (!m.data.is_empty()).then_some(m.data.as_str());
            b.mount(
                Step::MountCgroup,
                format!("{} ({})", dir.display(), m.data),
                &dir,
                Mnt {
                    source: Some(m.fstype.as_bytes()),
                    fstype: Some(m.fstype),
                    flags: kernel_fs_flags,
                    data,
                    optional: false,
                },
            )?;
        }
        b.mount(
            Step::MountCgroup,
            cgroup_root.display().to_string(),
            &cgroup_root,
            Mnt {
                source: None,
                fstype: None,
                flags: MsFlags::MS_BIND
                    | MsFlags::MS_REMOUNT
                    | MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | MsFlags::MS_NOEXEC,
                data: None,
                optional: false,
            },
        )?;
    }

    // pivot_root(".", ".") stacks the old root under the new one; detaching "." removes it.
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
    if is_dir {
        b.mkdir(Step::MakeMountPoint, target, 0o755)?;
    } else {
        b.push(
            Step::MakeMountPoint,
            target.display().to_string(),
            Op::MkFile {
                path: path_cstring(field, target)?,
            },
        );
    }
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

/// Validates `spec` and prepares every step.
pub(crate) fn build(spec: &SandboxSpec) -> Result<Plan, SpawnError> {
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
    let mut argv: Vec<*const libc::c_char> = argv_strings.iter().map(|s| s.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env_strings.iter().map(|s| s.as_ptr()).collect();
    envp.push(std::ptr::null());
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
    if let Filesystem::Jail(rootfs) = &spec.filesystem {
        jail_ops(&mut b, spec, rootfs)?;
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
    b.push(Step::CloseFds, "3..", Op::CloseFrom { keep: -1 });
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
    if jail {
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

    /// Sets the fd `CloseFrom` keeps (the report pipe's write end).
    pub(crate) fn set_report_fd(&mut self, fd: RawFd) {
        for planned in &mut self.ops {
            if let Op::CloseFrom { keep } = &mut planned.op {
                *keep = fd;
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
        };
        SpawnError::Step {
            step,
            target: planned.target.clone(),
            errno,
            message,
        }
    }
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
        _ => "",
    }
}
