//! A recording fake of the cgroup filesystems on a temp dir, for tests without root.
//!
//! It imitates what the tests rely on: `mkdir` creates the control files of the hierarchy
//! (v2: those of the controllers the parent enabled), writes need an existing file and are
//! recorded in order, `cgroup.kill`/`cgroup.freeze`/`freezer.state`/`subtree_control` behave
//! like the kernel's, `rmdir` refuses populated or non-empty cgroups, SIGKILL removes a pid.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::{CgroupFs, CgroupLayout};

#[derive(Debug, Clone)]
enum Kind {
    V1(Vec<String>),
    Unified,
    V2,
}

#[derive(Debug)]
pub(crate) struct FakeCgroupFs {
    hierarchies: Vec<(PathBuf, Kind)>,
    pub writes: Mutex<Vec<(PathBuf, String)>>,
    pub signals: Mutex<Vec<(i32, i32)>>,
    /// Pids that survive SIGKILL (a process stuck in D state).
    pub immortal: Mutex<BTreeSet<i32>>,
}

fn io_err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// The cpus of a cpu list (`"0-2,5"`); `None` when it is not one.
fn cpu_list(text: &str) -> Option<BTreeSet<u32>> {
    let mut cpus = BTreeSet::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (lo, hi): (u32, u32) = (lo.parse().ok()?, hi.parse().ok()?);
        cpus.extend(lo..=hi);
    }
    Some(cpus)
}

const V1_ROOT_LIMIT: &str = "9223372036854771712";

impl FakeCgroupFs {
    /// Builds the root directories of every hierarchy of `layout` (which must point into a
    /// temp dir).
    pub fn new(layout: &CgroupLayout) -> FakeCgroupFs {
        let mut hierarchies = Vec::new();
        match layout {
            CgroupLayout::V2 { root } => hierarchies.push((root.clone(), Kind::V2)),
            CgroupLayout::V1 {
                hierarchies: v1,
                unified,
            } => {
                for h in v1 {
                    hierarchies.push((h.mount_point.clone(), Kind::V1(h.controllers.clone())));
                }
                if let Some(u) = unified {
                    hierarchies.push((u.clone(), Kind::Unified));
                }
            }
        }
        let fake = FakeCgroupFs {
            hierarchies,
            writes: Mutex::new(Vec::new()),
            signals: Mutex::new(Vec::new()),
            immortal: Mutex::new(BTreeSet::new()),
        };
        for (root, kind) in &fake.hierarchies {
            std::fs::create_dir_all(root).unwrap();
            let files: Vec<(&str, String)> = match kind {
                Kind::V2 => vec![
                    (
                        "cgroup.controllers",
                        "cpuset cpu io memory hugetlb pids".to_string(),
                    ),
                    ("cgroup.subtree_control", String::new()),
                    ("cgroup.procs", String::new()),
                ],
                Kind::Unified => vec![
                    ("cgroup.controllers", String::new()),
                    ("cgroup.subtree_control", String::new()),
                    ("cgroup.procs", String::new()),
                ],
                Kind::V1(controllers) => {
                    let mut files = vec![("cgroup.procs", String::new())];
                    if controllers.iter().any(|c| c == "cpuset") {
                        files.push(("cpuset.cpus", "0-3".to_string()));
                        files.push(("cpuset.mems", "0".to_string()));
                    }
                    files
                }
            };
            for (name, content) in files {
                std::fs::write(root.join(name), content).unwrap();
            }
        }
        fake
    }

    fn kind_of(&self, path: &Path) -> Option<Kind> {
        self.hierarchies
            .iter()
            .filter(|(root, _)| path.starts_with(root))
            .max_by_key(|(root, _)| root.components().count())
            .map(|(_, kind)| kind.clone())
    }

    /// Puts `pid` into the cgroup directory `dir` (as if a process had joined).
    pub fn add_process(&self, dir: &Path, pid: i32) {
        let path = dir.join("cgroup.procs");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!("{pid}\n"));
        std::fs::write(path, text).unwrap();
    }

    /// Overwrites a control file (kernel-maintained statistics in tests).
    pub fn set(&self, path: &Path, content: &str) {
        assert!(
            path.exists(),
            "{} is not a control file of the fake",
            path.display()
        );
        std::fs::write(path, content).unwrap();
    }

    pub fn written(&self) -> Vec<(PathBuf, String)> {
        self.writes.lock().unwrap().clone()
    }

    fn populate(&self, dir: &Path, kind: &Kind) -> io::Result<()> {
        let mut files: Vec<(&str, String)> = vec![("cgroup.procs", String::new())];
        match kind {
            Kind::V2 | Kind::Unified => {
                let enabled = match kind {
                    Kind::V2 => std::fs::read_to_string(
                        dir.parent().unwrap_or(dir).join("cgroup.subtree_control"),
                    )?,
                    _ => String::new(),
                };
                let has = |c: &str| enabled.split_whitespace().any(|e| e == c);
                files.extend([
                    ("cgroup.controllers", enabled.trim().to_string()),
                    ("cgroup.subtree_control", String::new()),
                    ("cgroup.events", "populated 0\nfrozen 0\n".to_string()),
                    ("cgroup.freeze", "0".to_string()),
                    ("cgroup.kill", String::new()),
                    (
                        "cpu.stat",
                        "usage_usec 0\nuser_usec 0\nsystem_usec 0\n".to_string(),
                    ),
                ]);
                if has("memory") {
                    files.extend([
                        ("memory.max", "max".to_string()),
                        ("memory.low", "0".to_string()),
                        ("memory.swap.max", "max".to_string()),
                        ("memory.current", "0".to_string()),
                        ("memory.peak", "0".to_string()),
                        (
                            "memory.events",
                            "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n"
                                .to_string(),
                        ),
                        ("memory.stat", "anon 0\nfile 0\n".to_string()),
                    ]);
                }
                if has("cpu") {
                    files.extend([
                        ("cpu.weight", "100".to_string()),
                        ("cpu.max", "max 100000".to_string()),
                    ]);
                }
                if has("cpuset") {
                    files.extend([
                        ("cpuset.cpus", String::new()),
                        ("cpuset.mems", String::new()),
                    ]);
                }
                if has("pids") {
                    files.extend([
                        ("pids.max", "max".to_string()),
                        ("pids.current", "0".to_string()),
                    ]);
                }
            }
            Kind::V1(controllers) => {
                files.push(("tasks", String::new()));
                for c in controllers {
                    match c.as_str() {
                        "memory" => files.extend([
                            ("memory.limit_in_bytes", V1_ROOT_LIMIT.to_string()),
                            ("memory.memsw.limit_in_bytes", V1_ROOT_LIMIT.to_string()),
                            ("memory.soft_limit_in_bytes", V1_ROOT_LIMIT.to_string()),
                            ("memory.kmem.limit_in_bytes", V1_ROOT_LIMIT.to_string()),
                            ("memory.swappiness", "60".to_string()),
                            ("memory.usage_in_bytes", "0".to_string()),
                            ("memory.max_usage_in_bytes", "0".to_string()),
                            ("memory.failcnt", "0".to_string()),
                            (
                                "memory.oom_control",
                                "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n".to_string(),
                            ),
                            ("memory.stat", "cache 0\nrss 0\n".to_string()),
                        ]),
                        "cpu" => files.extend([
                            ("cpu.shares", "1024".to_string()),
                            ("cpu.cfs_period_us", "100000".to_string()),
                            ("cpu.cfs_quota_us", "-1".to_string()),
                            (
                                "cpu.stat",
                                "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n".to_string(),
                            ),
                        ]),
                        "cpuacct" => files.extend([
                            ("cpuacct.usage", "0".to_string()),
                            ("cpuacct.usage_user", "0".to_string()),
                            ("cpuacct.usage_sys", "0".to_string()),
                            ("cpuacct.stat", "user 0\nsystem 0\n".to_string()),
                        ]),
                        "cpuset" => files.extend([
                            ("cpuset.cpus", String::new()),
                            ("cpuset.mems", String::new()),
                        ]),
                        "pids" => files.extend([
                            ("pids.max", "max".to_string()),
                            ("pids.current", "0".to_string()),
                        ]),
                        "freezer" => files.push(("freezer.state", "THAWED".to_string())),
                        _ => {}
                    }
                }
            }
        }
        for (name, content) in files {
            std::fs::write(dir.join(name), content)?;
        }
        Ok(())
    }

    /// The process `pid` dies (unless immortal): it leaves every cgroup.
    fn kill(&self, pid: i32) -> io::Result<()> {
        if self.immortal.lock().unwrap().contains(&pid) {
            return Ok(());
        }
        for procs in self.procs_files() {
            let text = std::fs::read_to_string(&procs)?;
            let kept: String = text
                .lines()
                .filter(|l| l.trim() != pid.to_string())
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(&procs, kept)?;
        }
        Ok(())
    }

    fn procs_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.file_name().is_some_and(|n| n == "cgroup.procs") {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        for (root, _) in &self.hierarchies {
            walk(root, &mut out);
        }
        out
    }
}

impl CgroupFs for FakeCgroupFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        if !path.is_file() {
            return Err(io_err(libc::ENOENT));
        }
        self.writes
            .lock()
            .unwrap()
            .push((path.to_path_buf(), value.to_string()));
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let dir = path.parent().unwrap_or(path);
        match name {
            "cgroup.subtree_control" => {
                let mut enabled: BTreeSet<String> = std::fs::read_to_string(path)?
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                for token in value.split_whitespace() {
                    if let Some(c) = token.strip_prefix('+') {
                        enabled.insert(c.to_string());
                    } else if let Some(c) = token.strip_prefix('-') {
                        enabled.remove(c);
                    } else {
                        return Err(io_err(libc::EINVAL));
                    }
                }
                std::fs::write(path, enabled.into_iter().collect::<Vec<_>>().join(" "))
            }
            "cgroup.kill" if value == "1" => {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs"))?;
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    self.kill(pid)?;
                }
                Ok(())
            }
            "cgroup.freeze" => {
                std::fs::write(path, value)?;
                std::fs::write(
                    dir.join("cgroup.events"),
                    format!("populated 1\nfrozen {value}\n"),
                )
            }
            // v1 refuses cpus outside the parent's (v2 accepts them and narrows
            // `cpuset.cpus.effective` instead).
            "cpuset.cpus" if matches!(self.kind_of(path), Some(Kind::V1(_))) => {
                let parent = dir.parent().unwrap_or(dir).join("cpuset.cpus");
                if let Ok(allowed) = std::fs::read_to_string(&parent) {
                    let allowed = cpu_list(&allowed).ok_or_else(|| io_err(libc::EINVAL))?;
                    let wanted = cpu_list(value).ok_or_else(|| io_err(libc::EINVAL))?;
                    if !wanted.is_subset(&allowed) {
                        return Err(io_err(libc::EINVAL));
                    }
                }
                std::fs::write(path, value)
            }
            // v1 keeps memory+swap at or above memory: a write that would break that is
            // refused, so lowering writes the memory limit first and raising writes memsw first.
            "memory.limit_in_bytes" | "memory.memsw.limit_in_bytes"
                if matches!(self.kind_of(path), Some(Kind::V1(_))) =>
            {
                let limit = |text: &str| -> io::Result<u64> {
                    match text.trim() {
                        "-1" => Ok(V1_ROOT_LIMIT.parse().unwrap_or(u64::MAX)),
                        n => n.parse().map_err(|_| io_err(libc::EINVAL)),
                    }
                };
                let new = limit(value)?;
                let memory = limit(&std::fs::read_to_string(dir.join("memory.limit_in_bytes"))?)?;
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                let memsw = match std::fs::read_to_string(&memsw) {
                    Ok(text) => Some(limit(&text)?),
                    Err(_) => None,
                };
                let refused = match (name, memsw) {
                    ("memory.limit_in_bytes", Some(memsw)) => new > memsw,
                    ("memory.memsw.limit_in_bytes", _) => new < memory,
                    _ => false,
                };
                if refused {
                    return Err(io_err(libc::EINVAL));
                }
                std::fs::write(path, new.to_string())
            }
            "cgroup.procs" => {
                let mut text = std::fs::read_to_string(path)?;
                text.push_str(&format!("{}\n", value.trim()));
                std::fs::write(path, text)
            }
            _ => std::fs::write(path, value),
        }
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)?;
        let kind = self.kind_of(path).ok_or_else(|| io_err(libc::EINVAL))?;
        self.populate(path, &kind)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        if !path.is_dir() {
            return Err(io_err(libc::ENOENT));
        }
        for entry in std::fs::read_dir(path)? {
            if entry?.path().is_dir() {
                return Err(io_err(libc::EBUSY));
            }
        }
        if !std::fs::read_to_string(path.join("cgroup.procs"))?
            .trim()
            .is_empty()
        {
            return Err(io_err(libc::EBUSY));
        }
        std::fs::remove_dir_all(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if !from.is_dir() {
            return Err(io_err(libc::ENOENT));
        }
        if to.exists() {
            return Err(io_err(libc::EEXIST));
        }
        std::fs::rename(from, to)
    }

    fn child_dirs(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.path().is_dir() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn open_for_write(&self, path: &Path) -> io::Result<OwnedFd> {
        Ok(OwnedFd::from(
            std::fs::OpenOptions::new().write(true).open(path)?,
        ))
    }

    fn open_dir(&self, path: &Path) -> io::Result<OwnedFd> {
        Ok(OwnedFd::from(std::fs::File::open(path)?))
    }

    fn signal(&self, pid: i32, signal: i32) -> io::Result<()> {
        self.signals.lock().unwrap().push((pid, signal));
        let found = self.procs_files().iter().any(|p| {
            std::fs::read_to_string(p).is_ok_and(|t| t.lines().any(|l| l.trim() == pid.to_string()))
        });
        if !found {
            return Err(io_err(libc::ESRCH));
        }
        if signal == libc::SIGKILL {
            self.kill(pid)?;
        }
        Ok(())
    }

    fn pause(&self, _duration: Duration) {}
}
