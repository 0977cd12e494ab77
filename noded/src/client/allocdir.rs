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
//!
//! # Spare directories
//! Building the layout is ~10 `mkdir`s on the data dir's filesystem: 0.2–0.4 ms on ext4 here,
//! and over 1 ms when the filesystem is busy, on every allocation's start path.
//! [`SpareAllocDirs`] keeps [`SPARE_ALLOC_DIRS`] layouts ready, made on a thread of their own
//! at low priority, each with the shared dirs and one task dir (no `secrets` mount: that is
//! mounted at start, for the task's user). A start renames one into place (one `rename`), and
//! its first task renames the spare task dir to its own name. Spares are named `.spare-…`;
//! allocation ids never start with `.` ([`AllocDir::new`] refuses them), so no request can
//! name one. A client starting up removes the spares an earlier process left.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, Weak};

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
        if alloc_id.starts_with('.') {
            return Err(AllocDirError::InvalidName {
                what: "allocation id",
                name: alloc_id.to_string(),
                why: "it starts with '.' (those names are the client's spare directories)",
            });
        }
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

    /// The allocation's rendered `hosts` and `resolv.conf` (bound read-only into its tasks
    /// at `/etc/hosts` and `/etc/resolv.conf`). Outside the task-visible dirs, so no task can
    /// rewrite what its siblings resolve with.
    pub fn etc_dir(&self) -> PathBuf {
        self.root().join(".etc")
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

    /// Creates a task's dirs, owned by the task's user, and mounts its `secrets` tmpfs. The
    /// task dir of the spare this allocation dir was made from, if any is left, becomes the
    /// task's (renamed, its owner corrected).
    pub fn build_task(&self, task: &str, owner: DirOwner) -> Result<PathBuf, AllocDirError> {
        check_component("task name", task)?;
        let dir = self.task_dir(task);
        if task == SPARE_TASK || !self.adopt_spare_task(&dir, owner)? {
            self.make_task_dirs(&dir, owner)?;
        }
        let secrets = dir.join("secrets");
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

    fn make_task_dirs(&self, dir: &Path, owner: DirOwner) -> Result<(), AllocDirError> {
        Self::mkdir(dir, 0o755)?;
        for sub in ["local", "tmp"] {
            let p = dir.join(sub);
            Self::mkdir(&p, 0o755)?;
            Self::chown(&p, owner)?;
        }
        Self::mkdir(&dir.join("secrets"), 0o700)
    }

    /// Renames the spare task dir to `dir`; `false` when there is none (or `dir` exists).
    fn adopt_spare_task(&self, dir: &Path, owner: DirOwner) -> Result<bool, AllocDirError> {
        let spare = self.task_dir(SPARE_TASK);
        match rename_noreplace(&spare, dir) {
            Ok(()) => {}
            // EINVAL: a filesystem without RENAME_NOREPLACE (no spare was used there).
            Err(
                nix::errno::Errno::ENOENT | nix::errno::Errno::EEXIST | nix::errno::Errno::EINVAL,
            ) => return Ok(false),
            Err(errno) => {
                return Err(AllocDirError::Io {
                    op: "rename the spare task dir to",
                    path: dir.to_path_buf(),
                    source: errno.into(),
                })
            }
        }
        for sub in ["local", "tmp"] {
            let p = dir.join(sub);
            let meta = std::fs::symlink_metadata(&p).map_err(|source| AllocDirError::Io {
                op: "inspect",
                path: p.clone(),
                source,
            })?;
            if (meta.uid(), meta.gid()) != (owner.uid, owner.gid) {
                Self::chown(&p, owner)?;
            }
        }
        Ok(true)
    }

    /// Removes the spare task dir if no task took it (the layout then has only its tasks).
    pub fn discard_spare_task(&self, tasks: &[&str]) -> Result<(), AllocDirError> {
        if tasks.contains(&SPARE_TASK) {
            return Ok(());
        }
        let rel = Path::new(&self.alloc_id).join(SPARE_TASK);
        match std::fs::symlink_metadata(self.allocs_root.join(&rel)) {
            Ok(_) => Ok(isolation::path::remove_tree_beneath(
                &self.allocs_root,
                &rel,
            )?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(AllocDirError::Io {
                op: "inspect",
                path: self.allocs_root.join(rel),
                source,
            }),
        }
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

/// How many spare allocation directories [`SpareAllocDirs`] keeps ready. Back-to-back
/// starts take one each while the refill runs; a burst beyond this builds its directories
/// with `mkdir`, which is correct, only slower.
pub const SPARE_ALLOC_DIRS: usize = 2;

/// Prefix of spare directory names (allocation ids cannot start with `.`).
const SPARE_PREFIX: &str = ".spare-";

/// The task dir inside a spare, renamed to the name of the first task built in it.
const SPARE_TASK: &str = ".spare-task";

/// Nice value of the thread that makes spares: it yields to the start path it serves.
const SPARE_MAKER_NICE: i32 = 10;

fn rename_noreplace(from: &Path, to: &Path) -> Result<(), nix::errno::Errno> {
    nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        from,
        nix::fcntl::AT_FDCWD,
        to,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    )
}

/// Allocation directory layouts made ahead of the allocations that take them (see the module
/// doc). Shared by the client's allocation runners.
#[derive(Debug)]
pub struct SpareAllocDirs {
    allocs_root: PathBuf,
    state: Mutex<SpareState>,
    /// Wakes the thread that makes spares; it ends when this is dropped.
    maker: Mutex<Option<mpsc::SyncSender<()>>>,
}

#[derive(Debug, Default)]
struct SpareState {
    ready: Vec<String>,
    /// The owner of the latest task dir built: new spares' task dirs are made for it, so the
    /// next task of the same user changes no owner.
    owner: Option<DirOwner>,
    next: u64,
    /// Set by `remove_all`: no spare is made or handed out any more.
    closed: bool,
}

impl SpareAllocDirs {
    /// A pool on `allocs_root` (created if missing). Removes the spares an earlier process
    /// left there, then starts the thread that makes new ones.
    pub fn start(allocs_root: &Path) -> Result<Arc<SpareAllocDirs>, AllocDirError> {
        std::fs::create_dir_all(allocs_root).map_err(|source| AllocDirError::Io {
            op: "create directory",
            path: allocs_root.to_path_buf(),
            source,
        })?;
        let pool = Arc::new(SpareAllocDirs {
            allocs_root: allocs_root.to_path_buf(),
            state: Mutex::new(SpareState::default()),
            maker: Mutex::new(None),
        });
        pool.remove_leftovers()?;
        let (tx, rx) = mpsc::sync_channel::<()>(1);
        let weak: Weak<SpareAllocDirs> = Arc::downgrade(&pool);
        std::thread::Builder::new()
            .name("alloc-dir-spares".to_string())
            .spawn(move || {
                if let Err(e) = crate::sys::set_thread_nice(SPARE_MAKER_NICE) {
                    tracing::debug!("lowering the priority of the spare maker: {e}");
                }
                while rx.recv().is_ok() {
                    let Some(pool) = weak.upgrade() else { break };
                    pool.fill();
                }
            })
            .map_err(|source| AllocDirError::Io {
                op: "start the spare maker for",
                path: allocs_root.to_path_buf(),
                source,
            })?;
        if let Ok(mut maker) = pool.maker.lock() {
            *maker = Some(tx);
        }
        pool.refill();
        Ok(pool)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SpareState> {
        // The state stays consistent under a panicking holder (plain pushes and pops).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many spares are ready now.
    pub fn ready(&self) -> usize {
        self.state().ready.len()
    }

    /// Asks the maker thread for spares up to [`SPARE_ALLOC_DIRS`] (never waits).
    pub fn refill(&self) {
        if let Ok(maker) = self.maker.lock() {
            if let Some(tx) = maker.as_ref() {
                // Full: a fill is already due.
                let _ = tx.try_send(());
            }
        }
    }

    /// Makes spares until [`SPARE_ALLOC_DIRS`] are ready (on the calling thread).
    pub fn fill(&self) {
        loop {
            let (name, owner) = {
                let mut state = self.state();
                if state.closed || state.ready.len() >= SPARE_ALLOC_DIRS {
                    return;
                }
                state.next += 1;
                (
                    format!("{SPARE_PREFIX}{}-{}", std::process::id(), state.next),
                    state.owner.unwrap_or(DirOwner { uid: 0, gid: 0 }),
                )
            };
            let spare = self.spare(&name);
            let made = spare
                .build_shared()
                .and_then(|()| spare.make_task_dirs(&spare.task_dir(SPARE_TASK), owner));
            if let Err(e) = made {
                tracing::warn!("making a spare allocation directory: {e} (allocations build theirs on the start path, more slowly)");
                if let Err(e) = spare.destroy() {
                    tracing::warn!("removing a half-made spare allocation directory: {e}");
                }
                return;
            }
            let mut state = self.state();
            if state.closed {
                drop(state);
                if let Err(e) = spare.destroy() {
                    tracing::warn!("removing a spare allocation directory: {e}");
                }
                return;
            }
            state.ready.push(name);
        }
    }

    fn spare(&self, name: &str) -> AllocDir {
        AllocDir {
            allocs_root: self.allocs_root.clone(),
            alloc_id: name.to_string(),
        }
    }

    /// Builds `dir`'s shared dirs: a spare renamed into place when one is ready, else
    /// [`AllocDir::build_shared`]. A directory that exists already (a restarted client) is
    /// kept as it is.
    pub fn build_shared(&self, dir: &AllocDir) -> Result<(), AllocDirError> {
        let taken = self.state().ready.pop();
        let Some(name) = taken else {
            self.refill();
            return dir.build_shared();
        };
        match rename_noreplace(&self.allocs_root.join(&name), &dir.root()) {
            Ok(()) => {
                self.refill();
                Ok(())
            }
            Err(nix::errno::Errno::EEXIST | nix::errno::Errno::ENOTEMPTY) => {
                self.state().ready.push(name);
                dir.build_shared()
            }
            Err(nix::errno::Errno::EINVAL) => {
                // The filesystem cannot rename without replacing (NFS, for one): spares
                // cannot be taken safely there.
                tracing::info!(root = %self.allocs_root.display(), "this filesystem has no RENAME_NOREPLACE; allocation dirs are built at start");
                if let Err(e) = self.remove_all() {
                    tracing::warn!("removing spare allocation directories: {e}");
                }
                dir.build_shared()
            }
            Err(errno) => {
                tracing::warn!(spare = %name, %errno, "renaming a spare allocation directory; building one");
                if let Err(e) = self.spare(&name).destroy() {
                    tracing::warn!(spare = %name, "removing an unusable spare: {e}");
                }
                self.refill();
                dir.build_shared()
            }
        }
    }

    /// [`AllocDir::build_task`], remembering `owner` for the spares made next.
    pub fn build_task(
        &self,
        dir: &AllocDir,
        task: &str,
        owner: DirOwner,
    ) -> Result<PathBuf, AllocDirError> {
        self.state().owner = Some(owner);
        dir.build_task(task, owner)
    }

    /// Removes every spare (those of this process and of earlier ones) and makes no more.
    pub fn remove_all(&self) -> Result<(), AllocDirError> {
        if let Ok(mut maker) = self.maker.lock() {
            maker.take();
        }
        {
            let mut state = self.state();
            state.closed = true;
            state.ready.clear();
        }
        self.remove_leftovers()
    }

    fn remove_leftovers(&self) -> Result<(), AllocDirError> {
        let entries = std::fs::read_dir(&self.allocs_root).map_err(|source| AllocDirError::Io {
            op: "list",
            path: self.allocs_root.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(SPARE_PREFIX) {
                // One that cannot go (or that the maker removes at the same time) must not
                // stop the others from going.
                if let Err(e) = self.spare(&name).destroy() {
                    tracing::warn!(spare = %name, "removing a spare allocation directory: {e}");
                }
            }
        }
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
    fn ids_that_would_name_a_spare_are_refused() {
        let err = AllocDir::new(Path::new("/tmp"), ".spare-1-1").unwrap_err();
        assert!(err.to_string().contains("starts with '.'"), "{err}");
    }

    fn wait_for_spares(pool: &SpareAllocDirs, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while pool.ready() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} spares after 20 s",
                pool.ready()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn spare_names(root: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(SPARE_PREFIX))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_spare_becomes_the_allocation_dir_and_its_task_dir_the_first_tasks() {
        if !isolation::privileged::require_root("mounting a task's secrets tmpfs") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let allocs = tmp.path().join("alloc");
        // A spare an earlier process left (half made) goes at start.
        std::fs::create_dir_all(allocs.join(".spare-1-9/alloc")).unwrap();
        let pool = SpareAllocDirs::start(&allocs).unwrap();
        wait_for_spares(&pool, SPARE_ALLOC_DIRS);
        let spares = spare_names(&allocs);
        assert_eq!(spares.len(), SPARE_ALLOC_DIRS, "{spares:?}");
        assert!(!spares.contains(&".spare-1-9".to_string()), "{spares:?}");

        let owner = DirOwner {
            uid: 65534,
            gid: 65534,
        };
        let dir = AllocDir::new(&allocs, "a1").unwrap();
        pool.build_shared(&dir).unwrap();
        let task = pool.build_task(&dir, "web", owner).unwrap();
        let task2 = pool.build_task(&dir, "sidecar", owner).unwrap();
        dir.discard_spare_task(&["web", "sidecar"]).unwrap();

        // The layout is what `build_shared` + `build_task` make, spare or not.
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(dir.shared_dir().join("data")), 0o1777);
        assert_eq!(mode(dir.shared_dir().join("tmp")), 0o1777);
        assert_eq!(mode(dir.logs_dir()), 0o755);
        for t in [&task, &task2] {
            for sub in ["local", "tmp"] {
                let meta = std::fs::metadata(t.join(sub)).unwrap();
                assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "{sub}");
            }
            assert!(isolation::mount::is_mount_point(&t.join("secrets")).unwrap());
        }
        let mut entries: Vec<String> = std::fs::read_dir(dir.root())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        entries.sort();
        assert_eq!(entries, ["alloc", "sidecar", "web"]);
        // One of the spares was taken (the refill makes another, under a new name).
        let now = spare_names(&allocs);
        assert!(
            spares.iter().any(|s| !now.contains(s)),
            "{spares:?} {now:?}"
        );

        // The next spare is made for the latest owner, and a task of another user gets its
        // own owner.
        wait_for_spares(&pool, SPARE_ALLOC_DIRS);
        let dir2 = AllocDir::new(&allocs, "a2").unwrap();
        pool.build_shared(&dir2).unwrap();
        let root_owned = pool
            .build_task(&dir2, "web", DirOwner { uid: 0, gid: 0 })
            .unwrap();
        let meta = std::fs::metadata(root_owned.join("local")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (0, 0));

        // A restarted client rebuilding an existing dir keeps it (no spare replaces it).
        std::fs::write(task.join("local").join("state"), "kept").unwrap();
        pool.build_shared(&dir).unwrap();
        pool.build_task(&dir, "web", owner).unwrap();
        assert_eq!(
            std::fs::read_to_string(task.join("local").join("state")).unwrap(),
            "kept"
        );

        dir.destroy().unwrap();
        dir2.destroy().unwrap();
        pool.remove_all().unwrap();
        assert!(spare_names(&allocs).is_empty());
        assert_eq!(std::fs::read_dir(&allocs).unwrap().count(), 0);
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
