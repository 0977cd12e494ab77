//! The narrow kernel interface of the cgroup code: files and directories of a cgroup
//! filesystem, plus sending a signal to a pid found in one.
//!
//! [`RealCgroupFs`] is the kernel. Tests use a recording fake on a temp dir, so the limit,
//! stats and lifecycle logic runs without root.

use std::fmt;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

/// File and process operations the cgroup logic needs.
pub trait CgroupFs: Send + Sync + fmt::Debug {
    /// Reads a whole control file.
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Writes `value` to an existing control file in one `write(2)` (cgroupfs parses each
    /// write separately). Never creates files.
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    /// `mkdir`; an existing directory is reported as `AlreadyExists`.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// `rmdir` of a cgroup (the kernel removes its control files with it).
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// `rename` of a cgroup directory within its parent (v1 only: the kernel has no rename
    /// for v2 directories).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Names of the child directories (child cgroups) of `path`.
    fn child_dirs(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Opens a control file for writing, close-on-exec (the v1 `tasks` file a child joins by).
    fn open_for_write(&self, path: &Path) -> io::Result<OwnedFd>;
    /// Opens a cgroup directory, close-on-exec (for `CLONE_INTO_CGROUP`).
    fn open_dir(&self, path: &Path) -> io::Result<OwnedFd>;
    /// Sends `signal` to the process `pid` (a host pid read from `cgroup.procs`).
    fn signal(&self, pid: i32, signal: i32) -> io::Result<()>;
    /// Waits between polls (freeze, drain); fakes may return at once.
    fn pause(&self, duration: Duration);
}

/// The kernel's cgroup filesystems.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealCgroupFs;

impl CgroupFs for RealCgroupFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.write_all(value.as_bytes())
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn child_dirs(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn open_for_write(&self, path: &Path) -> io::Result<OwnedFd> {
        // std opens with O_CLOEXEC.
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        Ok(OwnedFd::from(file))
    }

    fn open_dir(&self, path: &Path) -> io::Result<OwnedFd> {
        nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(io::Error::from)
    }

    fn signal(&self, pid: i32, signal: i32) -> io::Result<()> {
        let signal = nix::sys::signal::Signal::try_from(signal).map_err(io::Error::from)?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).map_err(io::Error::from)
    }

    fn pause(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}
