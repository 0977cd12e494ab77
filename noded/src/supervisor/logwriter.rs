//! Writes one output stream of a task to rotating files `<task>.<stream>.<n>`: when a file
//! reaches `max_file_size` the next index is started, and only the newest `max_files` are kept.
//!
//! The log directory is held as a directory fd opened without following symlinks, and every file
//! is opened beneath it with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` and `O_NOFOLLOW`:
//! a task that can write to `/alloc/logs` (one running as root) cannot redirect its logs onto a
//! host file by planting a link or swapping the directory.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use isolation::path::{open_beneath, Resolve, Root};
use nix::fcntl::OFlag;

/// A rotating log file set.
#[derive(Debug)]
pub struct LogWriter {
    dir: OwnedFd,
    /// `<task>.<stream>`.
    base: String,
    max_files: u32,
    max_size: u64,
    index: u32,
    file: File,
    size: u64,
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
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
        let index = Self::existing_indexes(&dir, base)?
            .into_iter()
            .max()
            .unwrap_or(0);
        let (file, size) = Self::open_index(&dir, base, index)?;
        Ok(LogWriter {
            dir,
            base: base.to_string(),
            max_files: max_files.max(1),
            max_size: max_size.max(1),
            index,
            file,
            size,
        })
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

    /// Appends `data`, rotating as many times as the size limit requires.
    pub fn write(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            if self.size >= self.max_size {
                self.rotate()?;
            }
            let room = usize::try_from(self.max_size - self.size).unwrap_or(usize::MAX);
            let n = room.min(data.len());
            self.file.write_all(&data[..n])?;
            self.size += n as u64;
            data = &data[n..];
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let next = self
            .index
            .checked_add(1)
            .ok_or_else(|| io_err("log rotation index overflowed"))?;
        let (file, size) = Self::open_index(&self.dir, &self.base, next)?;
        self.file = file;
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
        Ok(())
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
}
