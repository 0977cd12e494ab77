//! Jail templates: one mount namespace per jail layout, built once and copied by each task
//! of that layout ([`JailMode::Template`](super::plan::JailMode::Template)).
//!
//! A template's root is the jail's read-only tree: the root tmpfs, the system dirs and other
//! read-only binds, the mount points of the task's own dirs, `/dev`, and `/sys` when tasks
//! share its network namespace. A task's child enters it with `setns`, which makes the
//! template's root its root, then copies it with `unshare(CLONE_NEWNS)` before adding its own
//! mounts. So no task ever changes a template, and no task sees the host's mount table.
//!
//! Owns the cache of this process's templates and the thread that builds one. Must not: keep
//! a template whose host sources changed (each use compares their identity), or let a task
//! reach a template's namespace other than through its own copy.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use super::ops::{step_message, PlannedOp};
use super::{SpawnError, Step};
use crate::describe_errno;
use crate::sys;

/// Most templates kept; the oldest goes first. A node uses one per chroot_env (and network
/// mode), so this is only reached by tests and unusual configurations.
const MAX_TEMPLATES: usize = 8;

/// (device, inode, mount id) of a host path, `None` if missing.
pub(crate) type Identity = Option<(u64, u64, u64)>;

/// What identifies a jail template: every input of its ops. Two tasks with equal keys share
/// one template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateKey {
    pub(super) staging_dir: PathBuf,
    pub(super) system_dirs: Vec<PathBuf>,
    /// (host, sandbox, is a directory) of the read-only binds made in the template.
    pub(super) binds: Vec<(PathBuf, PathBuf, bool)>,
    /// (sandbox, is a directory) of the mount points of per-task binds.
    pub(super) mount_points: Vec<(PathBuf, bool)>,
    /// `/sys` (and the cgroup mount points under it) are in the template: the task stays in
    /// the network namespace the template was built in (sysfs shows its mounter's).
    pub(super) sysfs: Option<Vec<String>>,
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
    pub identities: Vec<Identity>,
    /// What the task's own steps need to know of the template: its directories (sandbox
    /// paths) and its directory binds (sandbox path, host path).
    pub facts: TemplateFacts,
    /// The cached template, current when the plan was made.
    pub ready: Option<Arc<Template>>,
}

/// See [`TemplateLayout::facts`].
pub(crate) type TemplateFacts = (BTreeSet<PathBuf>, Vec<(PathBuf, PathBuf)>);

/// A built template: its mount namespace, held open by fd.
#[derive(Debug)]
pub(crate) struct Template {
    key: TemplateKey,
    identities: Vec<Identity>,
    facts: TemplateFacts,
    ns: OwnedFd,
}

impl Template {
    /// The template's mount-namespace fd, for `setns`.
    pub(crate) fn ns_fd(&self) -> RawFd {
        self.ns.as_raw_fd()
    }

    /// What a task's own steps need to know of this template (see `TemplateLayout`).
    pub(crate) fn layout_facts(&self) -> TemplateFacts {
        self.facts.clone()
    }
}

static TEMPLATES: Mutex<Vec<Arc<Template>>> = Mutex::new(Vec::new());

/// What the cache holds for a key.
pub(crate) enum Lookup {
    /// A template whose host sources are unchanged.
    Current(Arc<Template>),
    /// None, or a stale one (dropped from the cache): build one; these are the sources'
    /// identities now.
    Missing(Vec<Identity>),
}

/// The cached template of `key` if the host paths `sources` are what they were when it was
/// built. A stale one leaves the cache: tasks running from it keep their own copies.
pub(crate) fn lookup(key: &TemplateKey, sources: &[CString]) -> Result<Lookup, SpawnError> {
    // Read before any build, so that a change during the build shows next time.
    let identities = identities(sources)?;
    let mut cache = TEMPLATES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(i) = cache.iter().position(|t| &t.key == key) {
        if let Some(t) = cache.get(i).filter(|t| t.identities == identities) {
            return Ok(Lookup::Current(t.clone()));
        }
        cache.remove(i);
    }
    Ok(Lookup::Missing(identities))
}

/// The template of `layout`: the one found when the plan was made, else a new build of its
/// steps, which then goes into the cache.
pub(crate) fn obtain(layout: &TemplateLayout) -> Result<Arc<Template>, SpawnError> {
    if let Some(ready) = &layout.ready {
        return Ok(ready.clone());
    }
    let ns = build(&layout.ops)?;
    let template = Arc::new(Template {
        key: layout.key.clone(),
        identities: layout.identities.clone(),
        facts: layout.facts.clone(),
        ns,
    });
    let mut cache = TEMPLATES.lock().unwrap_or_else(PoisonError::into_inner);
    // Another start may have built one meanwhile: the newer replaces it.
    cache.retain(|t| t.key != layout.key);
    cache.insert(0, template.clone());
    cache.truncate(MAX_TEMPLATES);
    Ok(template)
}

fn identities(sources: &[CString]) -> Result<Vec<Identity>, SpawnError> {
    sources
        .iter()
        .map(|path| {
            sys::path_identity(path).map_err(|errno| SpawnError::Prepare {
                what: format!("statx {}", path.to_string_lossy()),
                source: errno.into(),
            })
        })
        .collect()
}

/// Runs the template's steps on a thread of its own that moves into a new mount namespace;
/// the returned fd keeps the namespace once the thread has ended.
fn build(ops: &[PlannedOp]) -> Result<OwnedFd, SpawnError> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("jail-template".to_string())
            .spawn_scoped(scope, || build_here(ops))
            .map_err(|source| SpawnError::Prepare {
                what: "start the jail template's builder thread".to_string(),
                source,
            })?
            .join()
            .unwrap_or_else(|_| {
                Err(SpawnError::Prepare {
                    what: "build the jail template".to_string(),
                    source: std::io::Error::other("the builder thread panicked"),
                })
            })
    })
}

fn build_here(ops: &[PlannedOp]) -> Result<OwnedFd, SpawnError> {
    // Only this thread moves: unshare(CLONE_NEWNS) also gives it its own root and cwd.
    sys::unshare(libc::CLONE_NEWNS).map_err(|errno| SpawnError::Step {
        step: Step::MakeMountsPrivate,
        target: String::new(),
        errno,
        message: format!(
            "jail template: create a mount namespace: {}",
            describe_errno(errno)
        ),
    })?;
    let ns =
        std::fs::File::open("/proc/thread-self/ns/mnt").map_err(|source| SpawnError::Prepare {
            what: "open /proc/thread-self/ns/mnt for the jail template".to_string(),
            source,
        })?;
    for planned in ops {
        if let Err((errno, _)) = super::child::execute(&planned.op) {
            return Err(SpawnError::Step {
                step: planned.step,
                target: planned.target.clone(),
                errno,
                message: format!("jail template: {}", step_message(planned, errno)),
            });
        }
    }
    Ok(OwnedFd::from(ns))
}
