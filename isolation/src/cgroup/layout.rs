//! Where a host's cgroups are: pure v2, or v1 hierarchies with an optional controller-less
//! cgroup2 tree beside them (hybrid), read from `/proc/self/mountinfo`; and which
//! controllers task cgroups are made in.

use std::path::{Path, PathBuf};

use super::CgroupError;

/// v1 controllers a task cgroup may be created in (when the host mounts them; see the module
/// docs for which ones a given task gets).
pub const MANAGED_V1_CONTROLLERS: [&str; 6] =
    ["memory", "cpu", "cpuacct", "cpuset", "pids", "freezer"];

/// v1 controllers every task cgroup gets.
pub(super) const ALWAYS_V1_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// v1 controllers a task gets only when there is no cgroup2 tree to do their job.
pub(super) const V1_ONLY_CONTROLLERS: [&str; 2] = ["cpuacct", "freezer"];

/// v2 controllers enabled for task cgroups (when the host offers them).
pub const MANAGED_V2_CONTROLLERS: [&str; 4] = ["cpuset", "cpu", "memory", "pids"];

/// One mounted v1 hierarchy (one mount may carry several controllers, e.g. `cpu,cpuacct`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// Controllers of the hierarchy, e.g. `["cpu", "cpuacct"]` or `["name=systemd"]`.
    pub controllers: Vec<String>,
    /// Where the hierarchy is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mount_point: PathBuf,
    /// Super options to mount the same hierarchy again (inside a jail), e.g. `memory`.
    pub mount_options: String,
}

impl V1Hierarchy {
    pub(super) fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    fn is_managed(&self) -> bool {
        MANAGED_V1_CONTROLLERS.iter().any(|c| self.has(c))
    }
}

/// Which cgroup version a host uses and where the hierarchies are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// v1 controllers, optionally with a controller-less cgroup2 tree beside them (hybrid).
    V1 {
        hierarchies: Vec<V1Hierarchy>,
        unified: Option<PathBuf>,
    },
    /// Pure cgroup2 mounted at `root`.
    V2 { root: PathBuf },
}

impl CgroupLayout {
    /// Reads the layout from `/proc/self/mountinfo`.
    pub fn detect() -> Result<CgroupLayout, CgroupError> {
        let text =
            std::fs::read_to_string("/proc/self/mountinfo").map_err(CgroupError::Mountinfo)?;
        CgroupLayout::from_mountinfo(&text)
    }

    /// The layout described by a mountinfo text. v1 wins over v2 when both are mounted (hybrid:
    /// the v1 hierarchies hold the controllers).
    pub fn from_mountinfo(mountinfo: &str) -> Result<CgroupLayout, CgroupError> {
        let mut hierarchies: Vec<V1Hierarchy> = Vec::new();
        let mut cgroup2: Vec<(PathBuf, bool)> = Vec::new();
        for line in mountinfo.lines() {
            let Some(mount) = MountLine::parse(line) else {
                continue;
            };
            match mount.fstype {
                "cgroup" => {
                    let controllers = v1_controllers(mount.super_options);
                    if controllers.is_empty()
                        || hierarchies.iter().any(|h| h.controllers == controllers)
                    {
                        continue;
                    }
                    let mount_options = mount
                        .super_options
                        .split(',')
                        .filter(|o| *o != "rw" && *o != "ro")
                        .collect::<Vec<_>>()
                        .join(",");
                    hierarchies.push(V1Hierarchy {
                        controllers,
                        mount_point: mount.mount_point,
                        mount_options,
                    });
                }
                "cgroup2" => cgroup2.push((mount.mount_point, mount.root == "/")),
                _ => {}
            }
        }
        let first_v2 = cgroup2
            .iter()
            .find(|(_, full)| *full)
            .or_else(|| cgroup2.first())
            .map(|(p, _)| p.clone());
        if !hierarchies.is_empty() {
            return Ok(CgroupLayout::V1 {
                hierarchies,
                unified: first_v2,
            });
        }
        match first_v2 {
            Some(root) => Ok(CgroupLayout::V2 { root }),
            None => Err(CgroupError::NoCgroupMounts),
        }
    }

    /// A pure-v2 layout rooted at `root` (a real mount or a fake tree in tests).
    pub fn v2_at(root: impl Into<PathBuf>) -> CgroupLayout {
        CgroupLayout::V2 { root: root.into() }
    }

    /// A v1 layout with one hierarchy per controller at `root/<controller>` and, with
    /// `unified`, a cgroup2 tree at `root/unified` (a fake tree in tests, or a subset of the
    /// real hierarchies).
    pub fn v1_at(root: &Path, controllers: &[&str], unified: bool) -> CgroupLayout {
        CgroupLayout::V1 {
            hierarchies: controllers
                .iter()
                .map(|c| V1Hierarchy {
                    controllers: vec![(*c).to_string()],
                    mount_point: root.join(c),
                    mount_options: (*c).to_string(),
                })
                .collect(),
            unified: unified.then(|| root.join("unified")),
        }
    }

    /// This layout without its cgroup2 tree (to exercise the pure-v1 code paths on a hybrid
    /// host).
    pub fn without_unified(&self) -> CgroupLayout {
        match self {
            CgroupLayout::V1 { hierarchies, .. } => CgroupLayout::V1 {
                hierarchies: hierarchies.clone(),
                unified: None,
            },
            other => other.clone(),
        }
    }

    pub fn is_v2(&self) -> bool {
        matches!(self, CgroupLayout::V2 { .. })
    }

    /// The v1 hierarchies task cgroups are made in.
    pub(super) fn managed_v1(&self) -> Vec<&V1Hierarchy> {
        match self {
            CgroupLayout::V1 { hierarchies, .. } => {
                hierarchies.iter().filter(|h| h.is_managed()).collect()
            }
            CgroupLayout::V2 { .. } => Vec::new(),
        }
    }
}

/// The fields of a mountinfo line this module needs.
struct MountLine<'a> {
    root: &'a str,
    mount_point: PathBuf,
    fstype: &'a str,
    super_options: &'a str,
}

impl<'a> MountLine<'a> {
    fn parse(line: &'a str) -> Option<MountLine<'a>> {
        let fields: Vec<&str> = line.split(' ').collect();
        let separator = fields.iter().position(|f| *f == "-")?;
        Some(MountLine {
            root: fields.get(3)?,
            mount_point: crate::mount::unescape_mountinfo(fields.get(4)?),
            fstype: fields.get(separator + 1)?,
            super_options: fields.get(separator + 3)?,
        })
    }
}

/// Controller names of a v1 super-options string (`rw,cpu,cpuacct` → `[cpu, cpuacct]`).
fn v1_controllers(super_options: &str) -> Vec<String> {
    const NOT_CONTROLLERS: [&str; 8] = [
        "rw",
        "ro",
        "noprefix",
        "xattr",
        "clone_children",
        "cpuset_v2_mode",
        "favordynmods",
        "none",
    ];
    let mut controllers: Vec<String> = super_options
        .split(',')
        .filter(|o| !NOT_CONTROLLERS.contains(o) && !o.starts_with("release_agent="))
        .map(str::to_string)
        .collect();
    controllers.sort();
    controllers
}
