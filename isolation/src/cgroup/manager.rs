//! The [`CgroupManager`]: one parent cgroup per node daemon, and the task cgroups under it:
//! created (from a spare where there is one, module `spare`), reopened after a restart,
//! listed, and the parent claimed and removed.

mod spare;

pub use spare::SPARE_CGROUPS;

use std::collections::BTreeSet;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::dir::{CgroupDir, DirKind};
use super::layout::{ALWAYS_V1_CONTROLLERS, V1_ONLY_CONTROLLERS};
use super::{
    v1, v2, CgroupError, CgroupFs, CgroupLayout, CgroupLimits, RealCgroupFs, TaskCgroup,
    V1Hierarchy,
};

/// Creates, finds and lists task cgroups under one parent cgroup (e.g. `noded`).
#[derive(Debug, Clone)]
pub struct CgroupManager {
    layout: CgroupLayout,
    parent: String,
    fs: Arc<dyn CgroupFs>,
    /// Task cgroups made ahead of need (see `spare`).
    spares: spare::SharedPool,
}

fn validate_name(name: &str) -> Result<(), CgroupError> {
    let invalid = |reason| {
        Err(CgroupError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 200 {
        return invalid("must be 1 to 200 characters long");
    }
    if name.starts_with('.') {
        return invalid("must not start with '.'");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' || c == '@')
    {
        return invalid("may only contain letters, digits, '-', '_', '.' and '@'");
    }
    Ok(())
}

impl CgroupManager {
    /// A manager for `<hierarchy>/<parent_name>` on the real cgroup filesystems. Creates the
    /// parent cgroups if needed, copies v1 cpusets into them and enables the v2 controllers.
    pub fn new(layout: CgroupLayout, parent_name: &str) -> Result<CgroupManager, CgroupError> {
        CgroupManager::with_fs(layout, parent_name, Arc::new(RealCgroupFs))
    }

    /// Like [`CgroupManager::new`] over any [`CgroupFs`] (a fake tree in tests).
    pub fn with_fs(
        layout: CgroupLayout,
        parent_name: &str,
        fs: Arc<dyn CgroupFs>,
    ) -> Result<CgroupManager, CgroupError> {
        validate_name(parent_name)?;
        let manager = CgroupManager {
            layout,
            parent: parent_name.to_string(),
            fs,
            spares: spare::SharedPool::default(),
        };
        manager.prepare_parent()?;
        // Spares a previous process left under this parent (one process owns a parent).
        manager.remove_all_spares();
        Ok(manager)
    }

    pub fn layout(&self) -> &CgroupLayout {
        &self.layout
    }

    pub fn parent_name(&self) -> &str {
        &self.parent
    }

    /// `(hierarchy root, kind)` of every hierarchy a task cgroup may span (for parents,
    /// reattaching and listing).
    fn hierarchies(&self) -> Vec<(PathBuf, DirKind)> {
        self.hierarchies_where(|_| true)
    }

    /// The hierarchies a task with `limits` is created in (module docs).
    fn hierarchies_for(&self, limits: &CgroupLimits) -> Vec<(PathBuf, DirKind)> {
        let has_v2_tree = matches!(
            &self.layout,
            CgroupLayout::V1 {
                unified: Some(_),
                ..
            }
        );
        self.hierarchies_where(|h| {
            ALWAYS_V1_CONTROLLERS.iter().any(|c| h.has(c))
                || (limits.cpuset_cpus.is_some() && h.has("cpuset"))
                || (!has_v2_tree && V1_ONLY_CONTROLLERS.iter().any(|c| h.has(c)))
        })
    }

    fn hierarchies_where(&self, wanted: impl Fn(&V1Hierarchy) -> bool) -> Vec<(PathBuf, DirKind)> {
        match &self.layout {
            CgroupLayout::V2 { root } => vec![(root.clone(), DirKind::V2)],
            CgroupLayout::V1 { unified, .. } => {
                let mut out: Vec<(PathBuf, DirKind)> = self
                    .layout
                    .managed_v1()
                    .into_iter()
                    .filter(|h| wanted(h))
                    .map(|h| {
                        let mount_name = h
                            .mount_point
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_else(|| h.controllers.join(","));
                        (
                            h.mount_point.clone(),
                            DirKind::V1 {
                                controllers: h.controllers.clone(),
                                mount_options: h.mount_options.clone(),
                                mount_name,
                            },
                        )
                    })
                    .collect();
                if let Some(unified) = unified {
                    out.push((unified.clone(), DirKind::Unified));
                }
                out
            }
        }
    }

    fn prepare_parent(&self) -> Result<(), CgroupError> {
        let fs = self.fs.as_ref();
        for (root, kind) in self.hierarchies() {
            let parent = root.join(&self.parent);
            match fs.create_dir(&parent) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(CgroupError::CreateDir {
                        path: parent,
                        source,
                    })
                }
            }
            match kind {
                DirKind::V1 { controllers, .. } if controllers.iter().any(|c| c == "cpuset") => {
                    v1::inherit_cpuset(fs, &root, &parent)?;
                }
                DirKind::V2 => v2::enable_controllers(fs, &root, &parent)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Creates the task cgroup `name` with `limits` on every hierarchy. On failure nothing is
    /// left behind (directories created so far are removed).
    ///
    /// On v1 the directories come from a spare when one is ready (see `spare`): renamed to
    /// `name`, then the limits written as for a new one.
    pub fn create(&self, name: &str, limits: &CgroupLimits) -> Result<TaskCgroup, CgroupError> {
        validate_name(name)?;
        limits.validate()?;
        let fs = self.fs.as_ref();
        let mut created: Vec<CgroupDir> = Vec::new();
        // The v1 directories of a spare made with these limits need no writes.
        let mut written = 0;
        if let Some(spare) = self.take_spare(limits) {
            match self.rename_spare(&spare.name, name) {
                Ok(dirs) => {
                    if spare.limits_written {
                        written = dirs.len();
                    }
                    created = dirs;
                }
                Err(e @ CgroupError::AlreadyExists { .. }) => return Err(e),
                Err(e) => {
                    tracing::debug!(spare = %spare.name, error = %e, "spare cgroup unusable; creating one");
                }
            }
        }
        let result = (|| {
            for (root, kind) in self.hierarchies_for(limits) {
                if created
                    .iter()
                    .any(|d| d.path.starts_with(&root) && d.kind == kind)
                {
                    continue;
                }
                let path = root.join(&self.parent).join(name);
                match fs.create_dir(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        return Err(CgroupError::AlreadyExists { path });
                    }
                    Err(source) => return Err(CgroupError::CreateDir { path, source }),
                }
                created.push(CgroupDir { path, kind });
            }
            for dir in created.iter().skip(written) {
                match &dir.kind {
                    DirKind::V1 { .. } => v1::apply_limits(fs, dir, limits)?,
                    DirKind::V2 => v2::apply_limits(fs, dir, limits)?,
                    DirKind::Unified => {}
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            for dir in created.iter().rev() {
                if let Err(cleanup) = fs.remove_dir(&dir.path) {
                    tracing::warn!(path = %dir.path.display(), error = %cleanup, "cannot remove a half-created cgroup");
                }
            }
            return Err(e);
        }
        Ok(TaskCgroup {
            name: name.to_string(),
            dirs: created,
            fs: self.fs.clone(),
        })
    }

    /// Reattaches to an existing task cgroup (after a restart). `None` when no directory of it
    /// exists on any hierarchy; directories missing on some hierarchies are skipped.
    pub fn open(&self, name: &str) -> Result<Option<TaskCgroup>, CgroupError> {
        validate_name(name)?;
        let dirs: Vec<CgroupDir> = self
            .hierarchies()
            .into_iter()
            .map(|(root, kind)| CgroupDir {
                path: root.join(&self.parent).join(name),
                kind,
            })
            .filter(|d| self.fs.exists(&d.path))
            .collect();
        if dirs.is_empty() {
            return Ok(None);
        }
        Ok(Some(TaskCgroup {
            name: name.to_string(),
            dirs,
            fs: self.fs.clone(),
        }))
    }

    /// Names of every task cgroup under the parent, on any hierarchy (for garbage collection).
    /// Spares (see `spare`) are not task cgroups and are left out.
    pub fn list(&self) -> Result<Vec<String>, CgroupError> {
        let mut names = BTreeSet::new();
        for (root, _) in self.hierarchies() {
            let parent = root.join(&self.parent);
            match self.fs.child_dirs(&parent) {
                Ok(children) => names.extend(
                    children
                        .into_iter()
                        .filter(|n| !n.starts_with(spare::SPARE_PREFIX)),
                ),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(CgroupError::Read {
                        path: parent,
                        source,
                    })
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Claims the parent for this process: an exclusive `flock` on its directory in the first
    /// managed hierarchy, held until the returned claim is dropped or the process ends (a crash
    /// included). One process owns a parent (its spares and its task cgroups); a second
    /// claim fails with [`CgroupError::ParentClaimed`] while the first holder lives. (The lock
    /// is not a cgroup file operation, so it does not go through [`CgroupFs`].)
    pub fn claim_parent(&self) -> Result<ParentClaim, CgroupError> {
        let Some((root, _)) = self.hierarchies().into_iter().next() else {
            return Err(CgroupError::NoCgroupMounts);
        };
        let path = root.join(&self.parent);
        let dir = std::fs::File::open(&path).map_err(|source| CgroupError::Open {
            path: path.clone(),
            source,
        })?;
        match nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(ParentClaim { _lock: lock }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(CgroupError::ParentClaimed { path }),
            Err((_, errno)) => Err(CgroupError::Open {
                path,
                source: errno.into(),
            }),
        }
    }

    /// Removes the parent cgroups themselves (they must hold no task cgroup any more), and
    /// the spares first; no spare is made afterwards.
    pub fn remove_parent(&self) -> Result<(), CgroupError> {
        self.close_spares();
        for (root, _) in self.hierarchies() {
            let parent = root.join(&self.parent);
            match self.fs.remove_dir(&parent) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(CgroupError::RemoveDir {
                        path: parent,
                        source,
                    })
                }
            }
        }
        Ok(())
    }
}

/// A process's exclusive claim on a cgroup parent ([`CgroupManager::claim_parent`]).
#[derive(Debug)]
pub struct ParentClaim {
    _lock: nix::fcntl::Flock<std::fs::File>,
}
