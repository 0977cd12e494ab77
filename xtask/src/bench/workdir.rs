//! The bench's scratch space: one directory under the system temp dir and one name prefix per
//! run, and the guards that remove what was made with them.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

/// A unique name for this run: `noded-bench-<pid>-<nanos>` (cgroups, container ids, dirs).
pub fn unique_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("noded-bench-{}-{nanos:x}", std::process::id())
}

/// A directory removed on drop, after unmounting whatever is still mounted beneath it.
#[derive(Debug)]
pub struct BenchDir {
    path: PathBuf,
    prefix: String,
}

impl BenchDir {
    pub fn create(kind: &str) -> anyhow::Result<BenchDir> {
        let prefix = unique_prefix();
        let path = std::env::temp_dir().join(format!("{prefix}-{kind}"));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(BenchDir { path, prefix })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This run's unique name prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Creates (and returns) a subdirectory.
    pub fn subdir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.path.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        // Deepest first; a mount left beneath would make remove_dir_all delete inside it.
        let mut mounted = mount_points_beneath(&self.path);
        mounted.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        let mut all_gone = true;
        for point in mounted {
            if let Err(e) = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH) {
                eprintln!("warning: cannot unmount {}: {e}", point.display());
                all_gone = false;
            }
        }
        if !all_gone {
            eprintln!(
                "warning: leaving {} in place because something is still mounted beneath it",
                self.path.display()
            );
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("warning: cannot remove {}: {e}", self.path.display());
        }
    }
}

/// Mount points at or beneath `dir` in this process's mount namespace.
pub fn mount_points_beneath(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(isolation::mount::unescape_mountinfo)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// Removes cgroup directories named `<prefix>*` directly under each mounted cgroup hierarchy
/// (left by crun/runc after a failed run), killing what still runs in them first.
pub fn remove_cgroups_named(prefix: &str) {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if !matches!(fields.get(sep + 1), Some(&"cgroup") | Some(&"cgroup2")) {
            continue;
        }
        let Some(mount) = fields
            .get(4)
            .map(|m| isolation::mount::unescape_mountinfo(m))
        else {
            continue;
        };
        let Ok(entries) = std::fs::read_dir(&mount) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(prefix) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // Only processes inside this run's own cgroups are signalled.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    for _ in 0..50 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    eprintln!("warning: cannot remove cgroup {}", dir.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_unique_per_process_and_named() {
        let p = unique_prefix();
        assert!(p.starts_with(&format!("noded-bench-{}-", std::process::id())));
    }
}
