//! Reading an allocation's directory for `/v1/client/fs/*` (`ls`, `stat`, `cat`, `readat`).
//!
//! Every path is resolved beneath `<data_dir>/alloc/<alloc id>` with `openat2`
//! (`RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`): `..`, absolute symlinks and
//! relative symlinks planted by a task that point outside the allocation are refused by the
//! kernel, not by string checks; mounts (a task's `secrets` tmpfs) are not crossed. Task
//! `secrets` directories are refused by name as well, as Nomad does.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use controlplane::api::{AllocFileInfo, ClientError};
use nix::fcntl::OFlag;
use nix::sys::stat::{fstatat, SFlag};

use super::allocdir::check_component;
use isolation::path::{open_beneath, Resolve};

/// Largest read one `readat`/`cat` answers.
pub const MAX_READ: u64 = 16 * 1024 * 1024;
/// Most entries one `ls` answers.
pub const MAX_ENTRIES: usize = 10_000;

const RESOLVE: Resolve = Resolve {
    no_symlinks: false,
    no_xdev: true,
};

/// The allocation-relative path of a request (`/alloc/logs`, `web/local/x`), checked.
fn relative(path: &str) -> Result<PathBuf, ClientError> {
    let trimmed = path.trim_start_matches('/');
    let rel = if trimmed.is_empty() {
        PathBuf::from(".")
    } else {
        PathBuf::from(trimmed)
    };
    let mut depth = 0usize;
    for c in rel.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(ClientError::BadRequest(format!(
                    "path {path:?} must not contain \"..\""
                )))
            }
            Component::RootDir | Component::Prefix(_) => {}
        }
    }
    // <task>/secrets is never served (Nomad refuses it too).
    let parts: Vec<&std::ffi::OsStr> = rel.iter().filter(|p| *p != ".").collect();
    if parts.len() >= 2 && parts[0] != "alloc" && parts[1] == "secrets" {
        return Err(ClientError::BadRequest(format!(
            "path {path:?} is inside a task's secrets directory, which the fs API does not serve"
        )));
    }
    let _ = depth;
    Ok(rel)
}

fn alloc_root(allocs_root: &Path, alloc_id: &str) -> Result<PathBuf, ClientError> {
    check_component("allocation id", alloc_id)
        .map_err(|e| ClientError::BadRequest(e.to_string()))?;
    let root = allocs_root.join(alloc_id);
    if !root.is_dir() {
        return Err(ClientError::NotFound(format!(
            "allocation {alloc_id:?} has no directory on this node (not placed here, or garbage collected)"
        )));
    }
    Ok(root)
}

fn map_err(e: isolation::path::PathError) -> ClientError {
    match e.errno {
        nix::errno::Errno::ENOENT => ClientError::NotFound(e.to_string()),
        _ => ClientError::BadRequest(e.to_string()),
    }
}

fn info(name: String, st: &nix::sys::stat::FileStat) -> AllocFileInfo {
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let is_dir = kind == SFlag::S_IFDIR;
    let type_char = match kind {
        SFlag::S_IFDIR => 'd',
        SFlag::S_IFLNK => 'L',
        SFlag::S_IFIFO => 'p',
        SFlag::S_IFSOCK => 'S',
        SFlag::S_IFCHR => 'c',
        SFlag::S_IFBLK => 'D',
        _ => '-',
    };
    let perms: String = [
        0o400, 0o200, 0o100, 0o040, 0o020, 0o010, 0o004, 0o002, 0o001,
    ]
    .iter()
    .zip("rwxrwxrwx".chars())
    .map(|(bit, c)| if st.st_mode & bit != 0 { c } else { '-' })
    .collect();
    AllocFileInfo {
        name,
        is_dir,
        size: u64::try_from(st.st_size).unwrap_or(0),
        file_mode: format!("{type_char}{perms}"),
        mod_time: controlplane::model::time::format_rfc3339(
            st.st_mtime.saturating_mul(1_000_000_000) + st.st_mtime_nsec,
        ),
        content_type: if is_dir {
            String::new()
        } else {
            "application/octet-stream".to_string()
        },
    }
}

/// `stat` of one path.
pub fn stat(allocs_root: &Path, alloc_id: &str, path: &str) -> Result<AllocFileInfo, ClientError> {
    let root = alloc_root(allocs_root, alloc_id)?;
    let rel = relative(path)?;
    let fd = open_beneath(&root, &rel, OFlag::O_PATH, RESOLVE).map_err(map_err)?;
    let st = nix::sys::stat::fstat(&fd)
        .map_err(|e| ClientError::Internal(format!("stat {path:?}: {e}")))?;
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".to_string());
    Ok(info(name, &st))
}

/// `ls` of one directory.
pub fn list(
    allocs_root: &Path,
    alloc_id: &str,
    path: &str,
) -> Result<Vec<AllocFileInfo>, ClientError> {
    let root = alloc_root(allocs_root, alloc_id)?;
    let rel = relative(path)?;
    let fd = open_beneath(&root, &rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY, RESOLVE)
        .map_err(map_err)?;
    // A second handle on the same directory for fstatat while the first is being iterated.
    let stat_fd = fd
        .try_clone()
        .map_err(|e| ClientError::Internal(format!("listing {path:?}: {e}")))?;
    let mut dir = nix::dir::Dir::from_fd(fd)
        .map_err(|e| ClientError::Internal(format!("listing {path:?}: {e}")))?;
    let mut out = Vec::new();
    for entry in dir.iter() {
        let entry = entry.map_err(|e| ClientError::Internal(format!("listing {path:?}: {e}")))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "." || name == ".." {
            continue;
        }
        if out.len() >= MAX_ENTRIES {
            break;
        }
        // Never follow: a planted symlink is listed as a link, not as what it points to.
        let st = fstatat(
            &stat_fd,
            entry.file_name(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| ClientError::Internal(format!("stat {name:?}: {e}")))?;
        out.push(info(name, &st));
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// `readat`/`cat`: up to `limit` bytes from `offset` (`limit = 0`: to the end, bounded).
pub fn read(
    allocs_root: &Path,
    alloc_id: &str,
    path: &str,
    offset: u64,
    limit: u64,
) -> Result<Vec<u8>, ClientError> {
    let root = alloc_root(allocs_root, alloc_id)?;
    let rel = relative(path)?;
    let fd = open_beneath(&root, &rel, OFlag::O_RDONLY, RESOLVE).map_err(map_err)?;
    let mut file = std::fs::File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| ClientError::Internal(e.to_string()))?;
    if meta.is_dir() {
        return Err(ClientError::BadRequest(format!(
            "{path:?} is a directory; use ls"
        )));
    }
    if !meta.is_file() {
        return Err(ClientError::BadRequest(format!(
            "{path:?} is not a regular file"
        )));
    }
    let want = if limit == 0 {
        meta.len().saturating_sub(offset)
    } else {
        limit
    };
    if want > MAX_READ {
        return Err(ClientError::BadRequest(format!(
            "reading {want} bytes of {path:?} at once is more than {MAX_READ}; use offset and limit"
        )));
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| ClientError::Internal(e.to_string()))?;
    let mut buf = Vec::new();
    file.take(want)
        .read_to_end(&mut buf)
        .map_err(|e| ClientError::Internal(e.to_string()))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let allocs = tmp.path().join("alloc");
        let a = allocs.join("a1");
        std::fs::create_dir_all(a.join("alloc/logs")).unwrap();
        std::fs::create_dir_all(a.join("alloc/data")).unwrap();
        std::fs::create_dir_all(a.join("web/local")).unwrap();
        std::fs::create_dir_all(a.join("web/secrets")).unwrap();
        std::fs::write(a.join("alloc/logs/web.stdout.0"), "hello\nworld\n").unwrap();
        std::fs::write(a.join("web/secrets/token"), "s3cret").unwrap();
        std::fs::write(tmp.path().join("host-secret"), "host").unwrap();
        // Plants a task could make in /alloc/data.
        std::os::unix::fs::symlink(
            tmp.path().join("host-secret"),
            a.join("alloc/data/abs-link"),
        )
        .unwrap();
        std::os::unix::fs::symlink("../../../../host-secret", a.join("alloc/data/rel-link"))
            .unwrap();
        std::os::unix::fs::symlink("../logs/web.stdout.0", a.join("alloc/data/inside-link"))
            .unwrap();
        std::os::unix::fs::symlink("/etc", a.join("alloc/data/etc")).unwrap();
        (tmp, allocs)
    }

    #[test]
    fn reads_lists_and_stats_inside_the_allocation() {
        let (_tmp, allocs) = setup();
        assert_eq!(
            read(&allocs, "a1", "/alloc/logs/web.stdout.0", 0, 0).unwrap(),
            b"hello\nworld\n"
        );
        assert_eq!(
            read(&allocs, "a1", "alloc/logs/web.stdout.0", 6, 5).unwrap(),
            b"world"
        );
        let names: Vec<String> = list(&allocs, "a1", "/")
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, vec!["alloc", "web"]);
        let data = list(&allocs, "a1", "alloc/data").unwrap();
        let link = data.iter().find(|f| f.name == "abs-link").unwrap();
        assert!(
            link.file_mode.starts_with('L'),
            "a link is listed as a link: {link:?}"
        );
        let st = stat(&allocs, "a1", "alloc/logs/web.stdout.0").unwrap();
        assert_eq!(st.size, 12);
        assert!(!st.is_dir);
        assert!(stat(&allocs, "a1", "alloc").unwrap().is_dir);
        // A relative link that stays inside the allocation is fine.
        assert_eq!(
            read(&allocs, "a1", "alloc/data/inside-link", 0, 5).unwrap(),
            b"hello"
        );
    }

    #[test]
    fn nothing_outside_the_allocation_can_be_reached() {
        let (_tmp, allocs) = setup();
        for path in [
            "alloc/data/abs-link",
            "alloc/data/rel-link",
            "alloc/data/etc/hostname",
            "../a1/alloc",
            "alloc/../../host-secret",
        ] {
            let err = read(&allocs, "a1", path, 0, 0).unwrap_err();
            assert!(!matches!(err, ClientError::Internal(_)), "{path}: {err}");
        }
        assert!(list(&allocs, "a1", "alloc/data/etc").is_err());
        assert!(stat(&allocs, "a1", "alloc/data/rel-link/..").is_err());
        assert!(read(&allocs, "../alloc", "a1/alloc/logs/web.stdout.0", 0, 0).is_err());
    }

    #[test]
    fn task_secrets_are_not_served() {
        let (_tmp, allocs) = setup();
        let err = read(&allocs, "a1", "web/secrets/token", 0, 0).unwrap_err();
        assert!(err.to_string().contains("secrets"), "{err}");
        assert!(list(&allocs, "a1", "/web/secrets").is_err());
        assert!(matches!(
            read(&allocs, "nope", "x", 0, 0),
            Err(ClientError::NotFound(_))
        ));
        assert!(read(&allocs, "a1", "alloc/logs", 0, 0)
            .unwrap_err()
            .to_string()
            .contains("directory"));
    }
}
