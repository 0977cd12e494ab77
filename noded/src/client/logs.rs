//! Reading a task's log files for `alloc logs`: from the start or the end, following new output
//! and rotation (`<task>.stdout.0`, `.1`, … — the highest index is being written).
//!
//! Every open goes through `isolation::path::open_beneath` from the allocations root, refusing
//! symlinks: a task that replaces its log file with a link to `/etc/shadow` gets an error, not
//! the file.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use controlplane::api::{ClientError, LogFrame, LogOrigin, LogStream, LogsRequest};
use futures::stream::{self, BoxStream, StreamExt};
use nix::fcntl::OFlag;

use super::allocdir::check_component;

/// Bytes per frame.
const CHUNK: usize = 64 * 1024;
/// How often a followed log is checked for new output.
const POLL: Duration = Duration::from_millis(150);

/// The log files of one stream, by rotation index.
fn list_files(
    allocs_root: &Path,
    alloc: &str,
    task: &str,
    stream: LogStream,
) -> Vec<(u32, PathBuf)> {
    let rel_dir = Path::new(alloc).join("alloc").join("logs");
    let prefix = format!("{task}.{}.", stream.as_str());
    let Ok(entries) = std::fs::read_dir(allocs_root.join(&rel_dir)) else {
        return Vec::new();
    };
    let mut files: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let index = name.strip_prefix(&prefix)?.parse::<u32>().ok()?;
            Some((index, rel_dir.join(name)))
        })
        .collect();
    files.sort();
    files
}

fn open(allocs_root: &Path, rel: &Path) -> Result<std::fs::File, ClientError> {
    isolation::path::open_beneath(
        allocs_root,
        rel,
        OFlag::O_RDONLY,
        isolation::path::Resolve::STRICT,
    )
    .map(std::fs::File::from)
    .map_err(|e| ClientError::Internal(format!("reading log: {e}")))
}

fn size_of(allocs_root: &Path, rel: &Path) -> u64 {
    open(allocs_root, rel)
        .and_then(|f| {
            f.metadata()
                .map_err(|e| ClientError::Internal(e.to_string()))
        })
        .map(|m| m.len())
        .unwrap_or(0)
}

struct Cursor {
    allocs_root: PathBuf,
    request: LogsRequest,
    /// Rotation index and offset being read; `None` until a file exists.
    position: Option<(u32, u64)>,
    done: bool,
}

impl Cursor {
    fn start_position(&self) -> Option<(u32, u64)> {
        let r = &self.request;
        let files = list_files(&self.allocs_root, &r.alloc_id, &r.task, r.stream);
        if files.is_empty() {
            return None;
        }
        match r.origin {
            LogOrigin::Start => {
                let mut skip = r.offset;
                for (index, rel) in &files {
                    let size = size_of(&self.allocs_root, rel);
                    if skip < size {
                        return Some((*index, skip));
                    }
                    skip -= size;
                }
                files
                    .last()
                    .map(|(i, rel)| (*i, size_of(&self.allocs_root, rel)))
            }
            LogOrigin::End => {
                let mut back = r.offset;
                for (index, rel) in files.iter().rev() {
                    let size = size_of(&self.allocs_root, rel);
                    if back <= size {
                        return Some((*index, size - back));
                    }
                    back -= size;
                }
                files.first().map(|(i, _)| (*i, 0))
            }
        }
    }

    /// The next frame, or `None` when there is nothing more (and not following).
    fn next_frame(&mut self) -> Result<Option<LogFrame>, ClientError> {
        if self.position.is_none() {
            self.position = self.start_position();
        }
        let Some((index, offset)) = self.position else {
            return Ok(None);
        };
        let r = &self.request;
        let rel = Path::new(&r.alloc_id)
            .join("alloc")
            .join("logs")
            .join(format!("{}.{}.{index}", r.task, r.stream.as_str()));
        let files = list_files(&self.allocs_root, &r.alloc_id, &r.task, r.stream);
        let newer = files.iter().find(|(i, _)| *i > index).map(|(i, _)| *i);
        let mut file = match open(&self.allocs_root, &rel) {
            Ok(f) => f,
            Err(_) if newer.is_some() => {
                // Rotated away and deleted: continue with the next file.
                self.position = newer.map(|i| (i, 0));
                return Ok(Some(LogFrame {
                    file_event: "file deleted".into(),
                    ..Default::default()
                }));
            }
            Err(e) => return Err(e),
        };
        let size = file
            .metadata()
            .map_err(|e| ClientError::Internal(e.to_string()))?
            .len();
        if size < offset {
            self.position = Some((index, 0));
            return Ok(Some(LogFrame {
                file: rel_display(&rel),
                offset: 0,
                data: Bytes::new(),
                file_event: "file truncated".into(),
            }));
        }
        if size > offset {
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| ClientError::Internal(e.to_string()))?;
            let want = usize::try_from(size - offset).unwrap_or(CHUNK).min(CHUNK);
            let mut buf = vec![0u8; want];
            let n = file
                .read(&mut buf)
                .map_err(|e| ClientError::Internal(e.to_string()))?;
            buf.truncate(n);
            self.position = Some((index, offset + n as u64));
            return Ok(Some(LogFrame {
                file: rel_display(&rel),
                offset,
                data: Bytes::from(buf),
                file_event: String::new(),
            }));
        }
        // At the end of this file.
        if let Some(next) = newer {
            self.position = Some((next, 0));
            return Ok(Some(LogFrame {
                file_event: "file rotated".into(),
                ..Default::default()
            }));
        }
        Ok(None)
    }
}

fn rel_display(rel: &Path) -> String {
    // Nomad reports the path relative to the allocation dir: "alloc/logs/web.stdout.0".
    rel.iter()
        .skip(1)
        .collect::<PathBuf>()
        .display()
        .to_string()
}

/// Streams a task's log as frames.
pub fn stream(
    allocs_root: PathBuf,
    request: LogsRequest,
) -> Result<BoxStream<'static, Result<LogFrame, ClientError>>, ClientError> {
    check_component("allocation id", &request.alloc_id)
        .map_err(|e| ClientError::BadRequest(e.to_string()))?;
    check_component("task name", &request.task)
        .map_err(|e| ClientError::BadRequest(e.to_string()))?;
    let follow = request.follow;
    let cursor = Cursor {
        allocs_root,
        request,
        position: None,
        done: false,
    };
    let s = stream::unfold(cursor, move |mut cursor| async move {
        loop {
            if cursor.done {
                return None;
            }
            let (result, back) = match tokio::task::spawn_blocking(move || {
                let r = cursor.next_frame();
                (r, cursor)
            })
            .await
            {
                Ok(v) => v,
                Err(e) => {
                    return Some((
                        Err(ClientError::Internal(format!("log reader failed: {e}"))),
                        Cursor::dead(),
                    ))
                }
            };
            cursor = back;
            match result {
                Ok(Some(frame)) if frame.data.is_empty() && frame.file_event.is_empty() => continue,
                Ok(Some(frame))
                    if !frame.file_event.is_empty()
                        && frame.data.is_empty()
                        && frame.file.is_empty() =>
                {
                    continue
                }
                Ok(Some(frame)) => return Some((Ok(frame), cursor)),
                Ok(None) if follow => tokio::time::sleep(POLL).await,
                Ok(None) => return None,
                Err(e) => {
                    cursor.done = true;
                    return Some((Err(e), cursor));
                }
            }
        }
    });
    Ok(s.boxed())
}

impl Cursor {
    fn dead() -> Cursor {
        Cursor {
            allocs_root: PathBuf::new(),
            request: LogsRequest {
                alloc_id: String::new(),
                task: String::new(),
                stream: LogStream::Stdout,
                follow: false,
                origin: LogOrigin::Start,
                offset: 0,
            },
            position: None,
            done: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(files: &[(&str, &str)]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a1/alloc/logs");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, content) in files {
            std::fs::write(dir.join(name), content).unwrap();
        }
        tmp
    }

    fn req(origin: LogOrigin, offset: u64, follow: bool) -> LogsRequest {
        LogsRequest {
            alloc_id: "a1".into(),
            task: "web".into(),
            stream: LogStream::Stdout,
            follow,
            origin,
            offset,
        }
    }

    async fn collect(root: &Path, r: LogsRequest) -> String {
        let frames: Vec<_> = stream(root.to_path_buf(), r).unwrap().collect().await;
        frames
            .into_iter()
            .map(|f| String::from_utf8(f.unwrap().data.to_vec()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn reads_across_rotated_files_from_start_and_end() {
        let tmp = setup(&[
            ("web.stdout.0", "one\n"),
            ("web.stdout.1", "two\n"),
            ("web.stderr.0", "err\n"),
        ]);
        assert_eq!(
            collect(tmp.path(), req(LogOrigin::Start, 0, false)).await,
            "one\ntwo\n"
        );
        assert_eq!(
            collect(tmp.path(), req(LogOrigin::Start, 2, false)).await,
            "e\ntwo\n"
        );
        assert_eq!(
            collect(tmp.path(), req(LogOrigin::End, 6, false)).await,
            "e\ntwo\n"
        );
        assert_eq!(
            collect(tmp.path(), req(LogOrigin::End, 100, false)).await,
            "one\ntwo\n"
        );
    }

    #[tokio::test]
    async fn follow_picks_up_new_output_and_rotation() {
        let tmp = setup(&[("web.stdout.0", "a")]);
        let mut s = stream(tmp.path().to_path_buf(), req(LogOrigin::Start, 0, true)).unwrap();
        assert_eq!(&s.next().await.unwrap().unwrap().data[..], b"a");
        let dir = tmp.path().join("a1/alloc/logs");
        std::fs::write(dir.join("web.stdout.0"), "ab").unwrap();
        assert_eq!(&s.next().await.unwrap().unwrap().data[..], b"b");
        std::fs::write(dir.join("web.stdout.1"), "c").unwrap();
        let f = s.next().await.unwrap().unwrap();
        assert_eq!(&f.data[..], b"c");
        assert_eq!(f.file, "alloc/logs/web.stdout.1");
    }

    #[tokio::test]
    async fn a_planted_symlink_is_not_followed() {
        let tmp = setup(&[]);
        let secret = tmp.path().join("secret");
        std::fs::write(&secret, "hunter2").unwrap();
        std::os::unix::fs::symlink(&secret, tmp.path().join("a1/alloc/logs/web.stdout.0")).unwrap();
        let frames: Vec<_> = stream(tmp.path().to_path_buf(), req(LogOrigin::Start, 0, false))
            .unwrap()
            .collect()
            .await;
        assert!(frames.iter().all(|f| f
            .as_ref()
            .map(|f| !f.data.starts_with(b"hunter2"))
            .unwrap_or(true)));
        assert!(frames.iter().any(|f| f.is_err()), "{frames:?}");
    }

    #[test]
    fn names_that_escape_are_refused() {
        let mut r = req(LogOrigin::Start, 0, false);
        r.task = "../../etc".into();
        assert!(matches!(
            stream(PathBuf::from("/tmp"), r),
            Err(ClientError::BadRequest(_))
        ));
    }
}
