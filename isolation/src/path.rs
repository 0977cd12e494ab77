//! Host paths resolved so that `..`, absolute symlinks and magic links cannot leave a root.
//!
//! Owns `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`-based helpers the node daemon uses
//! for everything it touches on behalf of a task (alloc dirs, logs, the alloc fs API,
//! artifacts). It does not know what the directories mean.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::UnlinkatFlags;

use crate::{describe_errno, sys};

/// Deepest directory nesting [`remove_tree_beneath`] follows before giving up.
pub const MAX_REMOVE_DEPTH: usize = 128;

/// The directory a relative path is resolved beneath.
#[derive(Debug, Clone, Copy)]
pub enum Root<'a> {
    Path(&'a Path),
    Fd(BorrowedFd<'a>),
}

impl<'a> From<&'a Path> for Root<'a> {
    fn from(p: &'a Path) -> Self {
        Root::Path(p)
    }
}

impl<'a> From<&'a PathBuf> for Root<'a> {
    fn from(p: &'a PathBuf) -> Self {
        Root::Path(p.as_path())
    }
}

impl<'a> From<BorrowedFd<'a>> for Root<'a> {
    fn from(fd: BorrowedFd<'a>) -> Self {
        Root::Fd(fd)
    }
}

impl Root<'_> {
    fn describe(&self) -> String {
        match self {
            Root::Path(p) => p.display().to_string(),
            Root::Fd(fd) => std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| format!("fd {}", fd.as_raw_fd())),
        }
    }
}

/// Extra resolution restrictions on top of `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resolve {
    /// Refuse every symlink, even ones that stay beneath the root (`RESOLVE_NO_SYMLINKS`).
    pub no_symlinks: bool,
    /// Refuse to cross a mount point (`RESOLVE_NO_XDEV`).
    pub no_xdev: bool,
}

impl Resolve {
    /// No symlinks and no mount crossings: for paths a task may have planted symlinks in.
    pub const STRICT: Resolve = Resolve {
        no_symlinks: true,
        no_xdev: true,
    };

    fn bits(self) -> u64 {
        let mut bits = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
        if self.no_symlinks {
            bits |= libc::RESOLVE_NO_SYMLINKS;
        }
        if self.no_xdev {
            bits |= libc::RESOLVE_NO_XDEV;
        }
        bits
    }
}

/// A path operation that failed, with the root and the relative path it concerned.
#[derive(Debug, thiserror::Error)]
#[error("{op} {rel:?} beneath {root}: {}{}", describe_errno(*.errno), hint(*.errno))]
pub struct PathError {
    pub op: &'static str,
    pub root: String,
    pub rel: PathBuf,
    pub errno: Errno,
}

fn hint(errno: Errno) -> &'static str {
    match errno {
        Errno::EXDEV => " (the path leaves the root, crosses a mount or uses a magic link)",
        Errno::ELOOP => " (the path contains a symlink, which is refused here)",
        _ => "",
    }
}

fn error(op: &'static str, root: Root<'_>, rel: &Path, errno: Errno) -> PathError {
    PathError {
        op,
        root: root.describe(),
        rel: rel.to_path_buf(),
        errno,
    }
}

fn cstring(op: &'static str, root: Root<'_>, rel: &Path) -> Result<CString, PathError> {
    let bytes = if rel.as_os_str().is_empty() {
        b".".as_slice()
    } else {
        rel.as_os_str().as_bytes()
    };
    CString::new(bytes).map_err(|_| error(op, root, rel, Errno::EINVAL))
}

/// Runs `f` with a directory fd for `root` (opening it when given as a path).
fn with_root<T>(
    op: &'static str,
    root: Root<'_>,
    rel: &Path,
    f: impl FnOnce(BorrowedFd<'_>) -> Result<T, PathError>,
) -> Result<T, PathError> {
    match root {
        Root::Fd(fd) => f(fd),
        Root::Path(p) => {
            let dir = open_dir(p).map_err(|errno| error(op, root, rel, errno))?;
            f(dir.as_fd())
        }
    }
}

/// Opens a directory by absolute host path (`O_PATH | O_DIRECTORY`) to use as a [`Root`].
pub fn open_dir(path: &Path) -> Result<OwnedFd, Errno> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Opens `rel` beneath `root` with `flags` (`O_CLOEXEC` is always added). `..` may not climb
/// above the root, absolute symlinks and `/proc` magic links are refused.
pub fn open_beneath<'a>(
    root: impl Into<Root<'a>>,
    rel: &Path,
    flags: OFlag,
    resolve: Resolve,
) -> Result<OwnedFd, PathError> {
    let root = root.into();
    let c = cstring("open", root, rel)?;
    with_root("open", root, rel, |dir| {
        sys::openat2(dir, &c, flags.bits(), 0, resolve.bits())
            .map_err(|errno| error("open", root, rel, errno))
    })
}

/// Creates (or truncates) the regular file `rel` beneath `root` for writing, with `mode` for a
/// new file. A symlink as the last component is refused (`O_NOFOLLOW`).
pub fn create_file_beneath<'a>(
    root: impl Into<Root<'a>>,
    rel: &Path,
    mode: u32,
    resolve: Resolve,
) -> Result<File, PathError> {
    let root = root.into();
    let c = cstring("create", root, rel)?;
    let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC | libc::O_NOFOLLOW;
    with_root("create", root, rel, |dir| {
        sys::openat2(dir, &c, flags, mode, resolve.bits())
            .map(File::from)
            .map_err(|errno| error("create", root, rel, errno))
    })
}

/// Creates every missing directory of `rel` beneath `root` (`mode` for new ones), refusing
/// symlinks and mount crossings on the way, and returns an `O_PATH` fd of the last one.
pub fn create_dir_all_beneath<'a>(
    root: impl Into<Root<'a>>,
    rel: &Path,
    mode: u32,
) -> Result<OwnedFd, PathError> {
    let root = root.into();
    with_root("mkdir", root, rel, |dir| {
        let mut current: Option<OwnedFd> = None;
        for component in rel.components() {
            let name = match component {
                Component::Normal(name) => name,
                Component::CurDir => continue,
                _ => return Err(error("mkdir", root, rel, Errno::EXDEV)),
            };
            let parent = current.as_ref().map(|fd| fd.as_fd()).unwrap_or(dir);
            match nix::sys::stat::mkdirat(parent, name, Mode::from_bits_truncate(mode)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(errno) => return Err(error("mkdir", root, rel, errno)),
            }
            let c = CString::new(name.as_bytes())
                .map_err(|_| error("mkdir", root, rel, Errno::EINVAL))?;
            let next = sys::openat2(
                parent,
                &c,
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
                Resolve::STRICT.bits(),
            )
            .map_err(|errno| error("mkdir", root, rel, errno))?;
            current = Some(next);
        }
        match current {
            Some(fd) => Ok(fd),
            None => sys::openat2(
                dir,
                c".",
                libc::O_PATH | libc::O_DIRECTORY,
                0,
                Resolve::STRICT.bits(),
            )
            .map_err(|errno| error("mkdir", root, rel, errno)),
        }
    })
}

/// Removes `rel` beneath `root` and everything below it without following any symlink and
/// without crossing into another mount (a still-mounted `secrets` tmpfs or a bind mount makes
/// this fail with EXDEV instead of deleting through it). A missing `rel` is not an error.
pub fn remove_tree_beneath<'a>(root: impl Into<Root<'a>>, rel: &Path) -> Result<(), PathError> {
    let root = root.into();
    let (parent_rel, name) = match (rel.parent(), rel.file_name()) {
        (Some(parent), Some(name)) => (parent, name),
        _ => return Err(error("remove", root, rel, Errno::EINVAL)),
    };
    let parent = match open_beneath(
        root,
        parent_rel,
        OFlag::O_PATH | OFlag::O_DIRECTORY,
        Resolve::STRICT,
    ) {
        Ok(fd) => fd,
        Err(e) if e.errno == Errno::ENOENT => return Ok(()),
        Err(e) => return Err(PathError { op: "remove", ..e }),
    };
    remove_entry(parent.as_fd(), name, 0).map_err(|errno| error("remove", root, rel, errno))
}

/// Removes `name` in `dir`: a file/symlink with unlinkat, a directory after emptying it.
fn remove_entry(dir: BorrowedFd<'_>, name: &OsStr, depth: usize) -> Result<(), Errno> {
    if depth > MAX_REMOVE_DEPTH {
        return Err(Errno::ELOOP);
    }
    let stat = match nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
        return match nix::unistd::unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
            Err(Errno::ENOENT) => Ok(()),
            other => other,
        };
    }
    let c = CString::new(name.as_bytes()).map_err(|_| Errno::EINVAL)?;
    let child = sys::openat2(
        dir,
        &c,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
        Resolve::STRICT.bits(),
    )?;
    let child_for_unlink = child.try_clone().map_err(|_| Errno::EMFILE)?;
    let mut entries = nix::dir::Dir::from_fd(child)?;
    let mut names = Vec::new();
    for entry in entries.iter() {
        let entry = entry?;
        let entry_name = entry.file_name().to_bytes();
        if entry_name != b"." && entry_name != b".." {
            names.push(OsStr::from_bytes(entry_name).to_os_string());
        }
    }
    drop(entries);
    for entry_name in names {
        remove_entry(child_for_unlink.as_fd(), &entry_name, depth + 1)?;
    }
    match nix::unistd::unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
        Err(Errno::ENOENT) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("alloc/data")).unwrap();
        std::fs::write(root.join("alloc/data/file"), b"x").unwrap();
        std::fs::write(dir.path().join("outside-secret"), b"secret").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("alloc/abs-link")).unwrap();
        std::os::unix::fs::symlink("data/file", root.join("alloc/rel-link")).unwrap();
        std::os::unix::fs::symlink("../outside-secret", root.join("alloc/up-link")).unwrap();
        dir
    }

    #[test]
    fn open_stays_beneath_the_root() {
        let dir = tree();
        let alloc = dir.path().join("alloc");
        let ok = open_beneath(
            &alloc,
            Path::new("data/file"),
            OFlag::O_RDONLY,
            Resolve::default(),
        );
        assert!(ok.is_ok());
        for escape in [
            "../outside-secret",
            "data/../../outside-secret",
            "/etc/passwd",
            "abs-link",
            "up-link",
        ] {
            let err = open_beneath(
                &alloc,
                Path::new(escape),
                OFlag::O_RDONLY,
                Resolve::default(),
            )
            .unwrap_err();
            assert_eq!(err.errno, Errno::EXDEV, "{escape}: {err}");
            assert!(err.to_string().contains("leaves the root"), "{err}");
        }
        // A symlink that stays inside is fine unless symlinks are refused.
        assert!(open_beneath(
            &alloc,
            Path::new("rel-link"),
            OFlag::O_RDONLY,
            Resolve::default()
        )
        .is_ok());
        let err = open_beneath(
            &alloc,
            Path::new("rel-link"),
            OFlag::O_RDONLY,
            Resolve::STRICT,
        )
        .unwrap_err();
        assert_eq!(err.errno, Errno::ELOOP);
        // Magic links are refused.
        let proc_root = Path::new("/proc/self");
        let err = open_beneath(
            proc_root,
            Path::new("root/etc/passwd"),
            OFlag::O_RDONLY,
            Resolve::default(),
        )
        .unwrap_err();
        assert!(matches!(err.errno, Errno::ELOOP | Errno::EXDEV), "{err}");
    }

    #[test]
    fn open_by_fd_root() {
        let dir = tree();
        let fd = open_dir(&dir.path().join("alloc")).unwrap();
        let file = open_beneath(
            fd.as_fd(),
            Path::new("data/file"),
            OFlag::O_RDONLY,
            Resolve::STRICT,
        );
        assert!(file.is_ok());
        let err = open_beneath(
            fd.as_fd(),
            Path::new("nope"),
            OFlag::O_RDONLY,
            Resolve::STRICT,
        )
        .unwrap_err();
        assert!(err.to_string().contains("alloc"), "{err}");
        assert!(
            err.to_string().contains("no such file or directory"),
            "{err}"
        );
    }

    #[test]
    fn create_refuses_symlinks_and_escapes() {
        let dir = tree();
        let alloc = dir.path().join("alloc");
        let mut f =
            create_file_beneath(&alloc, Path::new("data/new"), 0o640, Resolve::STRICT).unwrap();
        f.write_all(b"hello").unwrap();
        assert_eq!(std::fs::read(alloc.join("data/new")).unwrap(), b"hello");
        assert!(
            create_file_beneath(&alloc, Path::new("abs-link"), 0o640, Resolve::default()).is_err()
        );
        assert!(
            create_file_beneath(&alloc, Path::new("rel-link"), 0o640, Resolve::default()).is_err()
        );
        assert!(create_file_beneath(&alloc, Path::new("../x"), 0o640, Resolve::default()).is_err());
        assert_eq!(
            std::fs::read(dir.path().join("outside-secret")).unwrap(),
            b"secret"
        );
    }

    #[test]
    fn create_dir_all_refuses_symlinked_components() {
        let dir = tree();
        let alloc = dir.path().join("alloc");
        create_dir_all_beneath(&alloc, Path::new("a/b/c"), 0o755).unwrap();
        assert!(alloc.join("a/b/c").is_dir());
        std::os::unix::fs::symlink(dir.path(), alloc.join("evil")).unwrap();
        let err = create_dir_all_beneath(&alloc, Path::new("evil/x"), 0o755).unwrap_err();
        // O_PATH|O_NOFOLLOW opens the link itself, which then is not a directory.
        assert!(matches!(err.errno, Errno::ELOOP | Errno::ENOTDIR), "{err}");
        assert!(!dir.path().join("x").exists());
        assert!(create_dir_all_beneath(&alloc, Path::new("../up"), 0o755).is_err());
    }

    #[test]
    fn remove_tree_never_follows_symlinks() {
        let dir = tree();
        let victim = tempfile::tempdir().unwrap();
        std::fs::write(victim.path().join("keep"), b"keep").unwrap();
        std::os::unix::fs::symlink(victim.path(), dir.path().join("alloc/data/to-victim")).unwrap();
        remove_tree_beneath(dir.path(), Path::new("alloc")).unwrap();
        assert!(!dir.path().join("alloc").exists());
        assert!(victim.path().join("keep").exists());
        assert!(dir.path().join("outside-secret").exists());
        // Idempotent.
        remove_tree_beneath(dir.path(), Path::new("alloc")).unwrap();
        // Escapes are refused.
        let err = remove_tree_beneath(dir.path(), Path::new("../x")).unwrap_err();
        assert_eq!(err.errno, Errno::EXDEV, "{err}");
        assert!(remove_tree_beneath(dir.path(), Path::new("")).is_err());
    }

    #[test]
    fn remove_tree_through_a_symlinked_parent_is_refused() {
        let dir = tree();
        let victim = tempfile::tempdir().unwrap();
        std::fs::create_dir(victim.path().join("sub")).unwrap();
        std::os::unix::fs::symlink(victim.path(), dir.path().join("link")).unwrap();
        let err = remove_tree_beneath(dir.path(), Path::new("link/sub")).unwrap_err();
        assert_eq!(err.errno, Errno::ELOOP, "{err}");
        assert!(victim.path().join("sub").exists());
    }
}
