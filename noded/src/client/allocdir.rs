//! An allocation's directory on the host, Nomad's layout:
//!
//! ```text
//! <data_dir>/alloc/<alloc id>/
//!   alloc/{data,logs,tmp}          shared by the group's tasks (/alloc inside a task)
//!   <task>/{local,secrets,tmp}     one per task (/local, /secrets, /tmp inside)
//! ```
//!
//! `secrets` is a small tmpfs (noexec) mounted on the host, so secrets never touch the disk; it
//! is unmounted before the directory is removed. Removal never follows a symlink a task planted
//! and never crosses into a mount (see `isolation::path`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use isolation::mount::TmpfsOptions;

/// Why an allocation directory could not be built or removed.
#[derive(Debug, thiserror::Error)]
pub enum AllocDirError {
    #[error("invalid {what} {name:?} for a directory name: {why}")]
    InvalidName {
        what: &'static str,
        name: String,
        why: &'static str,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Mount(#[from] isolation::mount::MountError),
    #[error(transparent)]
    Path(#[from] isolation::path::PathError),
}

/// Checks that `name` is usable as one path component.
pub fn check_component(what: &'static str, name: &str) -> Result<(), AllocDirError> {
    let bad = |why| {
        Err(AllocDirError::InvalidName {
            what,
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name == "." || name == ".." {
        return bad("it is a relative path component");
    }
    if name.contains('/') || name.contains('\0') {
        return bad("it contains '/' or a NUL byte");
    }
    if name.len() > 200 {
        return bad("it is longer than 200 bytes");
    }
    Ok(())
}

/// Who a task runs as, for the ownership of its directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirOwner {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone)]
pub struct AllocDir {
    /// `<data_dir>/alloc`: everything this type creates or removes is beneath it.
    allocs_root: PathBuf,
    alloc_id: String,
}

impl AllocDir {
    pub fn new(allocs_root: &Path, alloc_id: &str) -> Result<AllocDir, AllocDirError> {
        check_component("allocation id", alloc_id)?;
        Ok(AllocDir {
            allocs_root: allocs_root.to_path_buf(),
            alloc_id: alloc_id.to_string(),
        })
    }

    pub fn root(&self) -> PathBuf {
        self.allocs_root.join(&self.alloc_id)
    }

    /// The shared `alloc/` dir.
    pub fn shared_dir(&self) -> PathBuf {
        self.root().join("alloc")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.shared_dir().join("logs")
    }

    pub fn task_dir(&self, task: &str) -> PathBuf {
        self.root().join(task)
    }

    fn mkdir(path: &Path, mode: u32) -> Result<(), AllocDirError> {
        let io = |op, source| AllocDirError::Io {
            op,
            path: path.to_path_buf(),
            source,
        };
        match std::fs::create_dir(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Something was there already (a restarted client rebuilding): it must be a
                // directory, not a link to elsewhere.
                let meta = std::fs::symlink_metadata(path).map_err(|e| io("inspect", e))?;
                if !meta.is_dir() {
                    return Err(io(
                        "create directory",
                        std::io::Error::other(
                            "a non-directory is in the way (refusing to follow it)",
                        ),
                    ));
                }
            }
            Err(e) => return Err(io("create directory", e)),
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io("set permissions of", e))
    }

    fn chown(path: &Path, owner: DirOwner) -> Result<(), AllocDirError> {
        std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid)).map_err(|source| {
            AllocDirError::Io {
                op: "change the owner of",
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// Creates the shared dirs. Idempotent (a restarted client rebuilds what is missing).
    pub fn build_shared(&self) -> Result<(), AllocDirError> {
        std::fs::create_dir_all(&self.allocs_root).map_err(|source| AllocDirError::Io {
            op: "create directory",
            path: self.allocs_root.clone(),
            source,
        })?;
        Self::mkdir(&self.root(), 0o755)?;
        Self::mkdir(&self.shared_dir(), 0o755)?;
        // Tasks of one group may run as different users: world-writable with the sticky bit.
        Self::mkdir(&self.shared_dir().join("data"), 0o1777)?;
        Self::mkdir(&self.shared_dir().join("tmp"), 0o1777)?;
        // Written by the supervisor (root) only.
        Self::mkdir(&self.logs_dir(), 0o755)?;
        Ok(())
    }

    /// Creates a task's dirs, owned by the task's user, and mounts its `secrets` tmpfs.
    pub fn build_task(&self, task: &str, owner: DirOwner) -> Result<PathBuf, AllocDirError> {
        check_component("task name", task)?;
        let dir = self.task_dir(task);
        Self::mkdir(&dir, 0o755)?;
        for sub in ["local", "tmp"] {
            let p = dir.join(sub);
            Self::mkdir(&p, 0o755)?;
            Self::chown(&p, owner)?;
        }
        let secrets = dir.join("secrets");
        Self::mkdir(&secrets, 0o700)?;
        if !isolation::mount::is_mount_point(&secrets).map_err(|source| AllocDirError::Io {
            op: "inspect",
            path: secrets.clone(),
            source,
        })? {
            let options = TmpfsOptions {
                uid: owner.uid,
                gid: owner.gid,
                ..TmpfsOptions::secrets()
            };
            isolation::mount::mount_tmpfs(&secrets, &options)?;
        }
        Ok(dir)
    }

    /// Unmounts every task's `secrets` tmpfs (the task dirs stay, for logs and inspection).
    pub fn unmount_all(&self) -> Result<(), AllocDirError> {
        let root = self.root();
        let entries = match std::fs::read_dir(&root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(AllocDirError::Io {
                    op: "list",
                    path: root,
                    source,
                })
            }
        };
        for entry in entries.flatten() {
            if entry.file_name() == "alloc" {
                continue;
            }
            let secrets = entry.path().join("secrets");
            // symlink_metadata: a task cannot make us unmount something elsewhere via a link
            // (and `unmount` does not follow one in the last component). A `secrets` that is
            // not a mount point is left alone by the kernel (EINVAL, not an error): no need to
            // read the whole mount table first.
            let is_dir = std::fs::symlink_metadata(entry.path())
                .map(|m| m.is_dir())
                .unwrap_or(false);
            if is_dir {
                isolation::mount::unmount(&secrets)?;
            }
        }
        Ok(())
    }

    /// Removes the whole allocation directory (after unmounting).
    pub fn destroy(&self) -> Result<(), AllocDirError> {
        self.unmount_all()?;
        isolation::path::remove_tree_beneath(&self.allocs_root, Path::new(&self.alloc_id))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_escape_are_refused() {
        for bad in ["", ".", "..", "a/b", "x\0y"] {
            assert!(check_component("task name", bad).is_err(), "{bad:?}");
        }
        check_component("task name", "web-1.api_v2").unwrap();
        let err = AllocDir::new(Path::new("/tmp"), "../etc").unwrap_err();
        assert!(err.to_string().contains("\"../etc\""), "{err}");
    }

    #[test]
    fn the_shared_layout_is_built_with_nomad_permissions() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = AllocDir::new(tmp.path(), "a1").unwrap();
        dir.build_shared().unwrap();
        dir.build_shared().unwrap();
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(dir.shared_dir().join("data")), 0o1777);
        assert_eq!(mode(dir.logs_dir()), 0o755);
        dir.destroy().unwrap();
        assert!(!dir.root().exists());
    }

    #[test]
    fn a_task_dir_with_a_planted_symlink_is_removed_without_following_it() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("precious"), "x").unwrap();
        let allocs = tmp.path().join("alloc");
        let dir = AllocDir::new(&allocs, "a1").unwrap();
        dir.build_shared().unwrap();
        std::os::unix::fs::symlink(&outside, dir.shared_dir().join("data").join("link")).unwrap();
        std::os::unix::fs::symlink("../../../outside", dir.shared_dir().join("tmp").join("rel"))
            .unwrap();
        dir.destroy().unwrap();
        assert!(!dir.root().exists());
        assert!(outside.join("precious").exists());
    }
}
