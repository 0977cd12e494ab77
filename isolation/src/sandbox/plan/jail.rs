//! Which mount steps a jail gets, and where they run: all in the task's child
//! ([`JailMode::Legacy`]), or split between a shared template and the task's own copy of it
//! ([`JailMode::Template`]). The steps themselves are in `mounts`.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::mounts::{
    ancestor_ops, cgroup_instance_ops, dev_instance_ops, dev_ops, mask_ops, mount_point_op,
    pivot_ops, proc_ops, push_bind, remount_root_read_only, root_ops, sandbox_path, staged,
    sys_ops,
};
use super::Builder;
use crate::cgroup::JailCgroupMount;
use crate::sandbox::ops::{Op, PlannedOp};
use crate::sandbox::template::{self, Lookup, TemplateFacts, TemplateKey, TemplateLayout};
use crate::sandbox::{
    path_cstring, Filesystem, RootfsSpec, SandboxSpec, SpawnError, Step, MAX_BINDS,
};

/// How a jail's filesystem is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JailMode {
    /// Everything common to every task of a layout (root tmpfs, read-only binds, `/dev`,
    /// `/sys`) lives in a template mount namespace built once ([`template`]); each task
    /// enters it, copies it with `unshare(CLONE_NEWNS)` and adds only its own mounts: its
    /// dirs as detached trees (`open_tree` + `move_mount`), masks, `/proc`, devpts,
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

/// A per-task bind attached from a detached copy of the host path.
#[derive(Debug)]
pub(crate) struct DetachedBind {
    pub host: CString,
    pub read_only: bool,
    /// "host at sandbox", for errors.
    pub text: String,
}

/// The staging dir: absolute and an existing directory.
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

/// The jail's steps as `mode` says, for a spec with [`Filesystem::Jail`] (none otherwise):
/// the template to start from, if any, and the per-task binds to open as detached trees.
pub(super) fn jail_ops(
    b: &mut Builder,
    spec: &SandboxSpec,
    mode: JailMode,
) -> Result<(Option<TemplateLayout>, Vec<DetachedBind>), SpawnError> {
    let mut detached = Vec::new();
    let Filesystem::Jail(rootfs) = &spec.filesystem else {
        return Ok((None, detached));
    };
    match mode {
        JailMode::Template => {
            let layout = template_jail_ops(b, spec, rootfs, &mut detached)?;
            Ok((Some(layout), detached))
        }
        JailMode::Legacy => {
            legacy_jail_ops(b, spec, rootfs)?;
            Ok((None, detached))
        }
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

/// The binds of a template jail, sorted into the template's and the task's own.
struct TemplateSplit<'a> {
    key: TemplateKey,
    /// Host paths the template depends on (system dirs, sources of its binds).
    identity_paths: Vec<CString>,
    /// Binds made in the template, and mount points of per-task binds.
    in_template: Vec<&'a PlannedBind>,
    /// The task's own binds, each with whether it is nested in another per-task bind (then
    /// the task makes its mount point too).
    per_task: Vec<(&'a PlannedBind, bool)>,
}

/// Works out the template's key and sorts the binds. A bind inside one of the task's own
/// binds lands in the task's own directory: per task, like the task's binds themselves.
/// Everything else is the template's.
fn split_binds<'a>(
    rootfs: &RootfsSpec,
    staging: &Path,
    binds: &'a [PlannedBind],
    sysfs: Option<&[JailCgroupMount]>,
) -> Result<TemplateSplit<'a>, SpawnError> {
    let mut identity_paths = Vec::new();
    for (i, dir) in rootfs.system_dirs.iter().enumerate() {
        identity_paths.push(path_cstring(&format!("system_dirs[{i}]"), dir)?);
    }
    let mut split = TemplateSplit {
        key: TemplateKey {
            staging_dir: staging.to_path_buf(),
            system_dirs: rootfs.system_dirs.clone(),
            binds: Vec::new(),
            mount_points: Vec::new(),
            sysfs: sysfs.map(|mounts| mounts.iter().map(|m| m.dir_name.clone()).collect()),
        },
        identity_paths,
        in_template: Vec::new(),
        per_task: Vec::new(),
    };
    let own: Vec<&Path> = binds
        .iter()
        .filter(|b| b.per_task)
        .map(|b| b.sandbox.as_path())
        .collect();
    for bind in binds {
        let nested = own
            .iter()
            .any(|w| *w != bind.sandbox && bind.sandbox.starts_with(w));
        if nested {
            split.per_task.push((bind, true));
            continue;
        }
        split.in_template.push(bind);
        if !bind.per_task {
            split
                .key
                .binds
                .push((bind.host.clone(), bind.sandbox.clone(), bind.is_dir));
            let host = path_cstring(&format!("{}.host", bind.field), &bind.host)?;
            split.identity_paths.push(host);
        } else {
            split
                .key
                .mount_points
                .push((bind.sandbox.clone(), bind.is_dir));
            split.per_task.push((bind, false));
        }
    }
    Ok(split)
}

/// The template's own steps, ending in `pivot_root`: the root tmpfs with the system dirs,
/// the read-only binds and the mount points of the task's dirs, the root read-only, `/dev`,
/// and `/sys` when `sysfs` holds the task's cgroup mounts. Also returns what the task's own
/// steps need to know of it (see [`TemplateLayout::facts`]).
fn template_ops(
    rootfs: &RootfsSpec,
    staging: &Path,
    in_template: &[&PlannedBind],
    sysfs: Option<&[JailCgroupMount]>,
) -> Result<(Vec<PlannedOp>, TemplateFacts), SpawnError> {
    let mut t = Builder::new();
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
            // A per-task bind's host path is the task's own: added with the task's steps.
            if !bind.per_task {
                sources.push((bind.sandbox.clone(), bind.host.clone()));
            }
        }
    }
    remount_root_read_only(&mut t, staging)?;
    dev_ops(&mut t, staging)?;
    if let Some(mounts) = sysfs {
        sys_ops(&mut t, staging, mounts)?;
    }
    pivot_ops(&mut t, staging)?;
    Ok((t.ops, (dirs, sources)))
}

/// The task's entry into its template: `setns` into it (its root becomes the child's), a
/// private copy by `unshare(CLONE_NEWNS)`, then the task's own dirs attached from detached
/// trees (`detached` gets one per bind). `dirs` and `sources` (the template's facts) grow by
/// the task's directory binds.
fn enter_template_ops(
    b: &mut Builder,
    staging: &Path,
    per_task: &[(&PlannedBind, bool)],
    detached: &mut Vec<DetachedBind>,
    (dirs, sources): &mut TemplateFacts,
) -> Result<(), SpawnError> {
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
        if *nested {
            ancestor_ops(b, root, &bind.sandbox, dirs)?;
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
    Ok(())
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
    let mounts = jail_cgroup_mounts(spec);
    // `/sys` shows the network namespace of its mounter: in the template only when the task
    // stays in the one the template is built in.
    let sysfs_in_template = spec.namespaces.net.is_none();
    let sysfs = sysfs_in_template.then_some(mounts.as_slice());
    let split = split_binds(rootfs, staging, &binds, sysfs)?;

    let (ops, identities, ready, facts) = match template::lookup(&split.key, &split.identity_paths)?
    {
        Lookup::Current(template) => {
            let facts = template.layout_facts();
            (Vec::new(), Vec::new(), Some(template), facts)
        }
        Lookup::Missing(identities) => {
            let (ops, facts) = template_ops(rootfs, staging, &split.in_template, sysfs)?;
            (ops, identities, None, facts)
        }
    };

    let mut own = facts.clone();
    enter_template_ops(b, staging, &split.per_task, detached, &mut own)?;
    let root = Path::new("/");
    mask_ops(b, root, rootfs, &own.1)?;
    proc_ops(b, root)?;
    dev_instance_ops(b, root, rootfs.shm_size_bytes)?;
    if !sysfs_in_template {
        sys_ops(b, root, &mounts)?;
    }
    cgroup_instance_ops(b, root, &mounts)?;
    Ok(TemplateLayout {
        key: split.key,
        ops,
        identities,
        facts,
        ready,
    })
}
