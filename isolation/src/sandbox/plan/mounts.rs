//! The mount steps of a jail: the root tmpfs and its binds, masks, `/proc`, `/dev`, `/sys`,
//! the task's cgroups and `pivot_root`, each as a function appending prepared [`Op`]s to a
//! [`Builder`]. Which of them run, and where (in a template or in the task's child), is
//! `jail`'s business.
//!
//! Everything here runs in the parent: it validates sandbox paths, looks at the host (the
//! kinds of masked paths, the flags of bind sources) and turns paths into C strings.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use nix::mount::MsFlags;
use nix::sys::statvfs::FsFlags;

use super::Builder;
use crate::cgroup::JailCgroupMount;
use crate::sandbox::ops::Op;
use crate::sandbox::{cstring, path_cstring, RootfsSpec, SpawnError, Step};

/// Checks and normalises a path inside the sandbox: absolute, no `.`/`..`, not `/`, not in
/// the kernel filesystems the jail builds itself.
pub(super) fn sandbox_path(field: &str, path: &Path) -> Result<PathBuf, SpawnError> {
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
pub(super) fn staged(staging: &Path, sandbox: &Path) -> PathBuf {
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

impl Builder {
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
            flags: flags(m.flags),
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

/// Private propagation, the root tmpfs, the system dirs and the `/proc`, `/dev`, `/sys`
/// mount points. Fills `dirs` (directories of the jail) and `sources` ((sandbox, host) of
/// directory binds, for masks).
pub(super) fn root_ops(
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
pub(super) fn ancestor_ops(
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
pub(super) fn mount_point_op(
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
pub(super) fn mask_ops(
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

pub(super) fn remount_root_read_only(b: &mut Builder, staging: &Path) -> Result<(), SpawnError> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    remount_read_only(b, Step::RemountRootReadOnly, staging, flags, false)
}

/// `/proc`, mounted from inside the new pid namespace, with its masked and read-only paths.
pub(super) fn proc_ops(b: &mut Builder, root: &Path) -> Result<(), SpawnError> {
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
pub(super) fn dev_ops(b: &mut Builder, root: &Path) -> Result<(), SpawnError> {
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
pub(super) fn dev_instance_ops(
    b: &mut Builder,
    root: &Path,
    shm_size_bytes: u64,
) -> Result<(), SpawnError> {
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
pub(super) fn sys_ops(
    b: &mut Builder,
    root: &Path,
    mounts: &[JailCgroupMount],
) -> Result<(), SpawnError> {
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
pub(super) fn cgroup_instance_ops(
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
pub(super) fn pivot_ops(b: &mut Builder, staging: &Path) -> Result<(), SpawnError> {
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
pub(super) fn push_bind(
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
