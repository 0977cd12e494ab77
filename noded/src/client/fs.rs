//! Reading an allocation's directory for `/v1/client/fs/*` (`ls`, `stat`, `cat`, `readat`,
//! `stream`).
//!
//! Every path is resolved beneath `<data_dir>/alloc/<alloc id>` with `openat2`
//! (`RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`): `..`, absolute symlinks and
//! relative symlinks planted by a task that point outside the allocation are refused by the
//! kernel, not by string checks; mounts (a task's `secrets` tmpfs) are not crossed. Task
//! `secrets` directories are refused by name as well, as Nomad does.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use controlplane::api::{AllocFileInfo, ClientError, FsStreamRequest, LogFrame, LogOrigin};
use futures::stream::{BoxStream, StreamExt};
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

/// Bytes per frame of a stream (Nomad's `streamFrameSize`).
const STREAM_CHUNK: usize = 64 * 1024;
/// How often a followed file is checked for new bytes, truncation or deletion.
const STREAM_POLL: Duration = Duration::from_millis(150);

/// An open file being streamed: the descriptor is kept, so what is read is the file that was
/// resolved beneath the allocation when the stream began, whatever is renamed over the path
/// later.
struct FileCursor {
    file: std::fs::File,
    /// The path as the request named it, reported in every frame.
    path: String,
    offset: u64,
}

impl FileCursor {
    /// The next frame, or `None` at the end of the file for now.
    fn next_frame(&mut self) -> Result<Option<LogFrame>, ClientError> {
        let meta = self
            .file
            .metadata()
            .map_err(|e| ClientError::Internal(format!("stat {:?}: {e}", self.path)))?;
        if meta.len() < self.offset {
            self.offset = 0;
            return Ok(Some(self.event("file truncated")));
        }
        if meta.len() > self.offset {
            let want = usize::try_from(meta.len() - self.offset)
                .unwrap_or(STREAM_CHUNK)
                .min(STREAM_CHUNK);
            let mut buf = vec![0u8; want];
            let n = std::os::unix::fs::FileExt::read_at(&self.file, &mut buf, self.offset)
                .map_err(|e| ClientError::Internal(format!("reading {:?}: {e}", self.path)))?;
            buf.truncate(n);
            let frame = LogFrame {
                file: self.path.clone(),
                offset: self.offset,
                data: Bytes::from(buf),
                file_event: String::new(),
            };
            self.offset += n as u64;
            return Ok(Some(frame));
        }
        // At the end: a file no name points to any more will not grow.
        if std::os::unix::fs::MetadataExt::nlink(&meta) == 0 {
            return Ok(Some(self.event("file deleted")));
        }
        Ok(None)
    }

    fn event(&self, what: &str) -> LogFrame {
        LogFrame {
            file: self.path.clone(),
            offset: self.offset,
            data: Bytes::new(),
            file_event: what.to_string(),
        }
    }
}

/// Opens `request.path` beneath the allocation as [`read`] does (same checks, same errors)
/// and places the cursor: `offset` bytes after the start, or before the end (clamped to the
/// file).
fn open_stream(allocs_root: &Path, request: &FsStreamRequest) -> Result<FileCursor, ClientError> {
    let path = request.path.as_str();
    let root = alloc_root(allocs_root, &request.alloc_id)?;
    let rel = relative(path)?;
    let fd = open_beneath(&root, &rel, OFlag::O_RDONLY, RESOLVE).map_err(map_err)?;
    let file = std::fs::File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| ClientError::Internal(format!("stat {path:?}: {e}")))?;
    if meta.is_dir() {
        return Err(ClientError::BadRequest(format!(
            "file {path:?} is a directory; use ls"
        )));
    }
    if !meta.is_file() {
        return Err(ClientError::BadRequest(format!(
            "{path:?} is not a regular file"
        )));
    }
    let offset = match request.origin {
        LogOrigin::Start => request.offset.min(meta.len()),
        LogOrigin::End => meta.len().saturating_sub(request.offset),
    };
    Ok(FileCursor {
        file,
        path: path.to_string(),
        offset,
    })
}

/// `/v1/client/fs/stream`: the file as frames from the requested place; while following,
/// new bytes as they are written, "file truncated" (and the bytes again from 0) when it
/// shrinks, "file deleted" (and the end) when its last name goes.
pub async fn stream(
    allocs_root: PathBuf,
    request: FsStreamRequest,
) -> Result<BoxStream<'static, Result<LogFrame, ClientError>>, ClientError> {
    let follow = request.follow;
    let cursor = tokio::task::spawn_blocking(move || open_stream(&allocs_root, &request))
        .await
        .map_err(|e| ClientError::Internal(format!("opening the file to stream: {e}")))??;
    // `None` once the stream has ended (an error or a deletion was sent).
    let s = futures::stream::unfold(Some(cursor), move |state| async move {
        let mut cursor = state?;
        loop {
            let (result, back) = match tokio::task::spawn_blocking(move || {
                let r = cursor.next_frame();
                (r, cursor)
            })
            .await
            {
                Ok(v) => v,
                Err(e) => {
                    let e = ClientError::Internal(format!("file reader failed: {e}"));
                    return Some((Err(e), None));
                }
            };
            cursor = back;
            match result {
                Ok(Some(frame)) if frame.file_event == "file deleted" => {
                    return Some((Ok(frame), None))
                }
                Ok(Some(frame)) => return Some((Ok(frame), Some(cursor))),
                Ok(None) if follow => tokio::time::sleep(STREAM_POLL).await,
                Ok(None) => return None,
                Err(e) => return Some((Err(e), None)),
            }
        }
    });
    Ok(s.boxed())
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

    fn stream_req(path: &str, origin: LogOrigin, offset: u64, follow: bool) -> FsStreamRequest {
        FsStreamRequest {
            alloc_id: "a1".into(),
            path: path.into(),
            origin,
            offset,
            follow,
        }
    }

    async fn stream_text(allocs: &Path, r: FsStreamRequest) -> String {
        let frames: Vec<_> = stream(allocs.to_path_buf(), r)
            .await
            .unwrap()
            .collect()
            .await;
        frames
            .into_iter()
            .map(|f| String::from_utf8(f.unwrap().data.to_vec()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_stream_starts_where_asked_and_ends_at_eof_without_follow() {
        let (_tmp, allocs) = setup();
        let path = "/alloc/logs/web.stdout.0";
        let at = |o, n| stream_text(&allocs, stream_req(path, o, n, false));
        assert_eq!(at(LogOrigin::Start, 0).await, "hello\nworld\n");
        assert_eq!(at(LogOrigin::Start, 6).await, "world\n");
        assert_eq!(at(LogOrigin::End, 6).await, "world\n");
        assert_eq!(at(LogOrigin::End, 100).await, "hello\nworld\n");
        assert_eq!(at(LogOrigin::Start, 100).await, "");
        let frames: Vec<_> = stream(allocs.clone(), stream_req(path, LogOrigin::Start, 6, false))
            .await
            .unwrap()
            .collect()
            .await;
        let first = frames[0].as_ref().unwrap();
        assert_eq!((first.file.as_str(), first.offset), (path, 6));
    }

    #[tokio::test]
    async fn a_followed_stream_sees_appends_truncation_and_deletion() {
        use std::io::Write;
        let (_tmp, allocs) = setup();
        let file = allocs.join("a1/alloc/data/out.txt");
        std::fs::write(&file, "one\n").unwrap();
        let mut s = stream(
            allocs.clone(),
            stream_req("alloc/data/out.txt", LogOrigin::Start, 0, true),
        )
        .await
        .unwrap();
        async fn next_of(
            s: &mut BoxStream<'static, Result<LogFrame, ClientError>>,
        ) -> Option<Result<LogFrame, ClientError>> {
            tokio::time::timeout(Duration::from_secs(5), s.next())
                .await
                .expect("a frame within 5 s")
        }
        assert_eq!(&next_of(&mut s).await.unwrap().unwrap().data[..], b"one\n");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap();
        f.write_all(b"two\n").unwrap();
        let frame = next_of(&mut s).await.unwrap().unwrap();
        assert_eq!((&frame.data[..], frame.offset), (&b"two\n"[..], 4));
        std::fs::write(&file, "x").unwrap();
        let event = next_of(&mut s).await.unwrap().unwrap();
        assert_eq!(event.file_event, "file truncated");
        assert_eq!(&next_of(&mut s).await.unwrap().unwrap().data[..], b"x");
        std::fs::remove_file(&file).unwrap();
        assert_eq!(
            next_of(&mut s).await.unwrap().unwrap().file_event,
            "file deleted"
        );
        assert!(
            next_of(&mut s).await.is_none(),
            "a deleted file ends the stream"
        );
    }

    #[tokio::test]
    async fn a_stream_resolves_its_path_as_the_other_fs_endpoints_do() {
        let (_tmp, allocs) = setup();
        for path in [
            "alloc/data/abs-link",
            "alloc/data/rel-link",
            "alloc/data/etc/hostname",
            "alloc/../../host-secret",
            "web/secrets/token",
            "alloc/logs",
        ] {
            let r = stream(allocs.clone(), stream_req(path, LogOrigin::Start, 0, false)).await;
            match r {
                Err(ClientError::BadRequest(_) | ClientError::NotFound(_)) => {}
                Err(e) => panic!("{path}: {e}"),
                Ok(_) => panic!("{path}: streamed"),
            }
        }
        let r = stream(
            allocs.clone(),
            stream_req("alloc/logs", LogOrigin::Start, 0, false),
        )
        .await;
        assert!(matches!(r, Err(ClientError::BadRequest(m)) if m.contains("directory")));
        let mut missing = stream_req("nope", LogOrigin::Start, 0, false);
        assert!(matches!(
            stream(allocs.clone(), missing.clone()).await,
            Err(ClientError::NotFound(_))
        ));
        missing.alloc_id = "other".into();
        assert!(matches!(
            stream(allocs, missing).await,
            Err(ClientError::NotFound(_))
        ));
    }
}
