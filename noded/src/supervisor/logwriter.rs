//! Writes one output stream of a task to rotating files `<task>.<stream>.<n>`: when a file
//! reaches `max_file_size` the next index is started, and only the newest `max_files` are kept.
//!
//! The log directory is held as a directory fd opened without following symlinks, and every file
//! is opened beneath it with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` and `O_NOFOLLOW`:
//! a task that can write to `/alloc/logs` (one running as root) cannot redirect its logs onto a
//! host file by planting a link or swapping the directory.
//!
//! Two writers share one rotation state ([`LogSet`]), so they rotate identically:
//! [`LogWriter`] writes with `write(2)` from the calling thread, [`UringLogWriter`] submits the
//! same writes to io_uring (it must run inside a tokio-uring runtime; see `logsink`). Both keep
//! `O_APPEND`, so two writers of one set (a leftover pump of a previous run and a new one)
//! never overwrite each other; the tracked offset the io_uring writer passes is therefore the
//! end of the file the kernel appends at anyway.
//!
//! Owns the files of one stream; must not know about pipes, tasks or runtimes.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use isolation::path::{open_beneath, Resolve, Root};
use nix::fcntl::OFlag;
use tokio_uring::buf::BoundedBuf;

/// Where one rotating file set stands: the directory, the newest index and its size.
#[derive(Debug)]
struct LogSet {
    dir: OwnedFd,
    /// `<task>.<stream>`.
    base: String,
    max_files: u32,
    max_size: u64,
    index: u32,
    size: u64,
}

/// The next piece of a write: `len` bytes go into the current file at `offset`; `rotated` is
/// the file that replaces the current one first, when it was full.
#[derive(Debug)]
struct Chunk {
    rotated: Option<File>,
    len: usize,
    offset: u64,
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl LogSet {
    /// Opens the newest existing file of the set for appending (a restarted task continues where
    /// the last run stopped), or creates index 0.
    fn open(
        dir: OwnedFd,
        base: &str,
        max_files: u32,
        max_size: u64,
    ) -> std::io::Result<(LogSet, File)> {
        let index = Self::existing_indexes(&dir, base)?
            .into_iter()
            .max()
            .unwrap_or(0);
        let (file, size) = Self::open_index(&dir, base, index)?;
        let set = LogSet {
            dir,
            base: base.to_string(),
            max_files: max_files.max(1),
            max_size: max_size.max(1),
            index,
            size,
        };
        Ok((set, file))
    }

    fn existing_indexes(dir: &OwnedFd, base: &str) -> std::io::Result<Vec<u32>> {
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(dir));
        let prefix = format!("{base}.");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(path)?.flatten() {
            if let Some(i) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(|n| n.parse().ok())
            {
                out.push(i);
            }
        }
        Ok(out)
    }

    fn open_index(dir: &OwnedFd, base: &str, index: u32) -> std::io::Result<(File, u64)> {
        let name = format!("{base}.{index}");
        let fd = open_beneath(
            Root::Fd(dir.as_fd()),
            Path::new(&name),
            OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT | OFlag::O_NOFOLLOW,
            Resolve::STRICT,
        )
        .map_err(io_err)?;
        let file = File::from(fd);
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io_err(format!("log {name} is not a regular file")));
        }
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        Ok((file, meta.len()))
    }

    /// Places the next `wanted` (> 0) bytes: rotates first when the current file is full, and
    /// says how many of them fit before the size limit. Call [`LogSet::advance`] once written.
    fn next_chunk(&mut self, wanted: usize) -> std::io::Result<Chunk> {
        let rotated = if self.size >= self.max_size {
            Some(self.rotate()?)
        } else {
            None
        };
        let room = usize::try_from(self.max_size - self.size).unwrap_or(usize::MAX);
        Ok(Chunk {
            rotated,
            len: room.min(wanted),
            offset: self.size,
        })
    }

    fn advance(&mut self, written: usize) {
        self.size += written as u64;
    }

    fn rotate(&mut self) -> std::io::Result<File> {
        let next = self
            .index
            .checked_add(1)
            .ok_or_else(|| io_err("log rotation index overflowed"))?;
        let (file, size) = Self::open_index(&self.dir, &self.base, next)?;
        self.size = size;
        self.index = next;
        // Keep the newest max_files: delete every index <= next - max_files.
        for old in Self::existing_indexes(&self.dir, &self.base)? {
            if old + self.max_files <= next {
                let name = format!("{}.{old}", self.base);
                if let Err(e) = nix::unistd::unlinkat(
                    &self.dir,
                    name.as_str(),
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                ) {
                    tracing::warn!("removing rotated log {name}: {e}");
                }
            }
        }
        Ok(file)
    }
}

/// A rotating log file set written with `write(2)` on the calling thread.
#[derive(Debug)]
pub struct LogWriter {
    set: LogSet,
    file: File,
}

impl LogWriter {
    /// Opens the newest existing file of the set for appending (a restarted task continues where
    /// the last run stopped), or creates index 0.
    pub fn open(
        dir: OwnedFd,
        base: &str,
        max_files: u32,
        max_size: u64,
    ) -> std::io::Result<LogWriter> {
        let (set, file) = LogSet::open(dir, base, max_files, max_size)?;
        Ok(LogWriter { set, file })
    }

    /// Appends `data`, rotating as many times as the size limit requires.
    pub fn write(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let chunk = self.set.next_chunk(data.len())?;
            if let Some(file) = chunk.rotated {
                self.file = file;
            }
            self.file.write_all(&data[..chunk.len])?;
            self.set.advance(chunk.len);
            data = &data[chunk.len..];
        }
        Ok(())
    }
}

/// The same rotating file set, written through io_uring. Every method that writes must run
/// inside a tokio-uring runtime (tokio-uring panics otherwise); opening needs none.
#[derive(Debug)]
pub struct UringLogWriter {
    set: LogSet,
    file: tokio_uring::fs::File,
}

impl UringLogWriter {
    /// Like [`LogWriter::open`].
    pub fn open(
        dir: OwnedFd,
        base: &str,
        max_files: u32,
        max_size: u64,
    ) -> std::io::Result<UringLogWriter> {
        LogWriter::open(dir, base, max_files, max_size).map(UringLogWriter::from)
    }

    /// Appends the first `len` bytes of `buf`, rotating as many times as the size limit
    /// requires. The buffer is lent to the kernel while a write is in flight and handed back
    /// with the result.
    pub async fn write(&mut self, mut buf: Vec<u8>, len: usize) -> (std::io::Result<()>, Vec<u8>) {
        let end = len.min(buf.len());
        let mut done = 0;
        while done < end {
            let chunk = match self.set.next_chunk(end - done) {
                Ok(c) => c,
                Err(e) => return (Err(e), buf),
            };
            if let Some(file) = chunk.rotated {
                // The old file has no write in flight (writes are awaited one at a time), so
                // dropping it closes it at once.
                self.file = tokio_uring::fs::File::from_std(file);
            }
            let (result, slice) = self
                .file
                .write_all_at(buf.slice(done..done + chunk.len), chunk.offset)
                .await;
            buf = slice.into_inner();
            if let Err(e) = result {
                return (Err(e), buf);
            }
            self.set.advance(chunk.len);
            done += chunk.len;
        }
        (Ok(()), buf)
    }
}

impl From<LogWriter> for UringLogWriter {
    /// Takes over the set and its open file (opened beneath the directory fd, symlink-safe).
    fn from(w: LogWriter) -> UringLogWriter {
        UringLogWriter {
            set: w.set,
            file: tokio_uring::fs::File::from_std(w.file),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_fd(p: &Path) -> OwnedFd {
        isolation::path::open_dir(p).unwrap()
    }

    fn files(p: &Path) -> Vec<(String, String)> {
        let mut v: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .map(|e| {
                (
                    e.file_name().into_string().unwrap(),
                    std::fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn rotates_at_the_size_limit_and_keeps_max_files() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir_fd(tmp.path()), "web.stdout", 2, 4).unwrap();
        w.write(b"abcdefghij").unwrap();
        assert_eq!(
            files(tmp.path()),
            vec![
                ("web.stdout.1".into(), "efgh".into()),
                ("web.stdout.2".into(), "ij".into())
            ]
        );
    }

    #[test]
    fn a_reopened_set_continues_the_newest_file() {
        let tmp = tempfile::tempdir().unwrap();
        LogWriter::open(dir_fd(tmp.path()), "t.stderr", 5, 100)
            .unwrap()
            .write(b"one ")
            .unwrap();
        LogWriter::open(dir_fd(tmp.path()), "t.stderr", 5, 100)
            .unwrap()
            .write(b"two")
            .unwrap();
        assert_eq!(
            files(tmp.path()),
            vec![("t.stderr.0".into(), "one two".into())]
        );
    }

    #[test]
    fn a_planted_symlink_is_refused_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let logs = tmp.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        std::os::unix::fs::symlink(&victim, logs.join("t.stdout.0")).unwrap();
        assert!(LogWriter::open(dir_fd(&logs), "t.stdout", 2, 10).is_err());
        assert_eq!(std::fs::read_to_string(victim).unwrap(), "keep");
    }

    /// A tokio-uring runtime, or `None` after a loud skip where the kernel refuses io_uring
    /// (a failure under `NODED_REQUIRE_PRIVILEGED=1`, as CI runs on hosts that have it).
    fn uring_runtime() -> Option<tokio_uring::Runtime> {
        match tokio_uring::Runtime::new(&tokio_uring::builder()) {
            Ok(rt) => Some(rt),
            Err(e) => {
                let required = std::env::var(isolation::privileged::REQUIRE_PRIVILEGED_ENV)
                    .is_ok_and(|v| v.trim() == "1");
                assert!(!required, "io_uring is unavailable here: {e}");
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: io_uring log writer needs io_uring ({e})"
                );
                None
            }
        }
    }

    /// Writes `data` through a fresh [`UringLogWriter`] in `len`-byte pieces of a larger buffer.
    fn uring_write(
        rt: &tokio_uring::Runtime,
        dir: &Path,
        base: &str,
        files: u32,
        size: u64,
        data: &[u8],
    ) {
        let mut w = UringLogWriter::open(dir_fd(dir), base, files, size).unwrap();
        rt.block_on(async {
            let mut buf = vec![0u8; 64];
            buf[..data.len()].copy_from_slice(data);
            let (result, back) = w.write(buf, data.len()).await;
            result.unwrap();
            assert_eq!(back.len(), 64, "the buffer comes back whole");
        });
    }

    #[test]
    fn uring_writer_rotates_at_the_size_limit_and_keeps_max_files() {
        let Some(rt) = uring_runtime() else { return };
        let tmp = tempfile::tempdir().unwrap();
        uring_write(&rt, tmp.path(), "web.stdout", 2, 4, b"abcdefghij");
        assert_eq!(
            files(tmp.path()),
            vec![
                ("web.stdout.1".into(), "efgh".into()),
                ("web.stdout.2".into(), "ij".into())
            ]
        );
    }

    #[test]
    fn uring_writer_rotates_like_the_plain_writer_across_many_writes() {
        let Some(rt) = uring_runtime() else { return };
        let plain = tempfile::tempdir().unwrap();
        let uring = tempfile::tempdir().unwrap();
        let mut p = LogWriter::open(dir_fd(plain.path()), "t.stdout", 3, 7).unwrap();
        let mut u = UringLogWriter::open(dir_fd(uring.path()), "t.stdout", 3, 7).unwrap();
        rt.block_on(async {
            let mut buf = Vec::new();
            for i in 0..40u8 {
                let line: Vec<u8> =
                    std::iter::repeat_n(b'a' + i % 26, usize::from(i % 5)).collect();
                p.write(&line).unwrap();
                buf.clear();
                buf.extend_from_slice(&line);
                buf.extend_from_slice(b"junk past len");
                let (result, back) = u.write(buf, line.len()).await;
                result.unwrap();
                buf = back;
            }
        });
        assert_eq!(files(plain.path()), files(uring.path()));
        assert_eq!(files(uring.path()).len(), 3);
    }

    #[test]
    fn uring_writer_continues_the_newest_file_of_a_reopened_set() {
        let Some(rt) = uring_runtime() else { return };
        let tmp = tempfile::tempdir().unwrap();
        LogWriter::open(dir_fd(tmp.path()), "t.stderr", 5, 100)
            .unwrap()
            .write(b"one ")
            .unwrap();
        uring_write(&rt, tmp.path(), "t.stderr", 5, 100, b"two ");
        uring_write(&rt, tmp.path(), "t.stderr", 5, 100, b"three");
        assert_eq!(
            files(tmp.path()),
            vec![("t.stderr.0".into(), "one two three".into())]
        );
    }

    #[test]
    fn uring_writer_refuses_a_planted_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let logs = tmp.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        std::os::unix::fs::symlink(&victim, logs.join("t.stdout.1")).unwrap();
        // The planted link is the newest index, so opening the set must refuse it.
        assert!(UringLogWriter::open(dir_fd(&logs), "t.stdout", 2, 3).is_err());
        std::fs::remove_file(logs.join("t.stdout.1")).unwrap();
        let Some(rt) = uring_runtime() else { return };
        // And rotating onto a link planted while the set is open must fail, not follow it.
        let mut w = UringLogWriter::open(dir_fd(&logs), "t.stdout", 2, 3).unwrap();
        std::os::unix::fs::symlink(&victim, logs.join("t.stdout.1")).unwrap();
        rt.block_on(async {
            let (result, _) = w.write(b"abcdef".to_vec(), 6).await;
            assert!(result.is_err(), "rotating onto a symlink must fail");
        });
        assert_eq!(std::fs::read_to_string(victim).unwrap(), "keep");
        assert_eq!(
            std::fs::read_to_string(logs.join("t.stdout.0")).unwrap(),
            "abc"
        );
    }
}
