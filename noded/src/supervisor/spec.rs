//! From a task's launch description to what `isolation` runs: the cgroup limits and the
//! `SandboxSpec` (jail or host filesystem, namespaces, user, capabilities, rlimits, seccomp).
//! Pure apart from reading the user database, a seccomp profile and `/proc/self/status`; also
//! used by the start bench's floor (`noded::supervisor::sandbox_spec`).

use std::path::{Path, PathBuf};

use isolation::caps::CapabilitySet;
use isolation::cgroup::{CgroupJoin, CgroupLimits, CpuQuota};
use isolation::sandbox::{
    self, Bind, Filesystem, NamespaceSpec, RootfsSpec, SandboxSpec, SeccompPolicy, Stdio,
};

use super::protocol::{IsolationMode, LaunchNetwork, TaskLaunch};

/// Paths of the host's `/etc` a jailed task must not read (an empty read-only tmpfs covers them
/// when they exist).
pub const HOST_SECRET_PATHS: &[&str] = &[
    "/etc/noded.d",
    "/etc/noded",
    "/etc/nomad.d",
    "/etc/ssl/private",
];

/// The CFS period a `cpu_hard_limit` quota is a share of.
const CPU_PERIOD_US: u64 = 100_000;

/// The host's secret paths that exist now: the fixed ones plus SSH host private keys.
fn host_secret_paths() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = HOST_SECRET_PATHS.iter().map(PathBuf::from).collect();
    if let Ok(entries) = std::fs::read_dir("/etc/ssh") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("ssh_host_") && name.ends_with("_key") {
                out.push(e.path());
            }
        }
    }
    out
}

/// The cgroup limits of a task: `memory` is the hard limit, or the reservation when a
/// larger `memory_max` was granted (oversubscription).
pub fn cgroup_limits(launch: &TaskLaunch) -> CgroupLimits {
    let mib = 1024 * 1024;
    let memory = launch.limits.memory_mb.max(1);
    let hard = if launch.limits.memory_max_mb > memory {
        launch.limits.memory_max_mb
    } else {
        memory
    };
    CgroupLimits {
        memory_limit_bytes: hard * mib,
        memory_reservation_bytes: (hard > memory).then_some(memory * mib),
        cpu_shares_mhz: launch.limits.cpu_mhz,
        cpu_hard_limit: (launch.limits.cpu_quota_us > 0).then_some(CpuQuota {
            quota_us: launch.limits.cpu_quota_us,
            period_us: CPU_PERIOD_US,
        }),
        // Reserved cores pin the task; otherwise the shared cores it was given (which also
        // puts it in a cpuset cgroup, so that `SetCpuset` can move it later).
        cpuset_cpus: [&launch.limits.cpuset, &launch.limits.shared_cpuset]
            .into_iter()
            .find(|cpus| !cpus.is_empty())
            .map(|cpus| crate::client::taskenv::cpuset_string(cpus)),
        pids_max: (launch.limits.pids_max > 0).then_some(launch.limits.pids_max),
    }
}

/// How much of the host a task sees and may do: the part of its spec that the isolation mode
/// decides.
struct Confinement {
    filesystem: Filesystem,
    namespaces: NamespaceSpec,
    capabilities: CapabilitySet,
    seccomp: SeccompPolicy,
    work_dir: PathBuf,
    /// A small init as PID 1 of the task's pid namespace (see `SandboxSpec::init`).
    init: bool,
}

/// A spec that cannot be built: the step (as the protocol's error names it) and why.
type SpecError = (&'static str, String);

/// The sandbox a task runs in, from its launch description, with its jail's root built on
/// `staging_dir`: also what `alloc exec` enters (same user, capabilities, rlimits, seccomp),
/// and what the start bench's floor spawns. Errors name the step.
pub fn sandbox_spec(
    launch: &TaskLaunch,
    staging_dir: &Path,
    join: CgroupJoin,
    stdout: Stdio,
    stderr: Stdio,
) -> Result<SandboxSpec, SpecError> {
    let user = isolation::user::lookup(&launch.user, Path::new("/etc"))
        .map_err(|e| ("user", e.to_string()))?;
    let network = launch.network.clone().unwrap_or_default();
    let confinement = match &launch.isolation {
        // `exec`: a pivot_root jail, its own namespaces, the capabilities and seccomp
        // profile it asked for.
        IsolationMode::Jail {
            chroot_env,
            capabilities,
            seccomp,
            host_pid,
            host_ipc,
            readonly_rootfs,
            no_init,
        } => {
            let mut namespaces = NamespaceSpec::isolated();
            namespaces.pid = !host_pid;
            namespaces.ipc = !host_ipc;
            namespaces.net = network.namespace.clone();
            let mut root = jail_root(launch, staging_dir, chroot_env, *readonly_rootfs);
            root.task_ro_binds
                .extend(etc_binds(&network, chroot_env, Path::new("/"))?);
            Confinement {
                filesystem: Filesystem::Jail(root),
                namespaces,
                capabilities: CapabilitySet::parse_list(capabilities.iter())
                    .map_err(|e| ("capabilities", e.to_string()))?,
                seccomp: seccomp_policy(seccomp)?,
                work_dir: work_dir(launch, || PathBuf::from("/")),
                // Only a task with a pid namespace of its own has a PID 1 to stand in for.
                init: !no_init && !host_pid,
            }
        }
        IsolationMode::Host => {
            let mut confinement = host(launch);
            confinement.namespaces.net = network.namespace.clone();
            confinement
        }
    };
    let hostname = match launch.isolation {
        IsolationMode::Jail { .. } => network.hostname.clone(),
        IsolationMode::Host => None,
    };
    let ambient = CapabilitySet::parse_list(launch.ambient_capabilities.iter())
        .map_err(|e| ("capabilities", e.to_string()))?;
    let mut env: Vec<(String, String)> = launch
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.sort();
    Ok(SandboxSpec {
        program: launch.command.clone(),
        args: launch.args.clone(),
        env,
        work_dir: confinement.work_dir,
        user,
        filesystem: confinement.filesystem,
        namespaces: confinement.namespaces,
        hostname,
        cgroup: Some(join),
        capabilities: confinement.capabilities,
        ambient_capabilities: ambient,
        rlimits: rlimits(launch)?,
        seccomp: confinement.seccomp,
        stdin: Stdio::Null,
        stdout,
        stderr,
        go_ahead: None,
        init: confinement.init,
    })
}

/// `exec`: the jail's root: the host's system dirs, the allocation's and task's own dirs,
/// and the host's secrets masked.
fn jail_root(
    launch: &TaskLaunch,
    staging_dir: &Path,
    chroot_env: &[(PathBuf, PathBuf)],
    readonly_rootfs: bool,
) -> RootfsSpec {
    let mut root = RootfsSpec::new(staging_dir);
    root.system_dirs.clear();
    // The host's /etc is bound whole (as Nomad does); hide noded's own config and
    // credentials in it.
    root.masked_paths.extend(host_secret_paths());
    for (host, inside) in chroot_env {
        if host == inside
            && sandbox::DEFAULT_SYSTEM_DIRS
                .iter()
                .any(|d| Path::new(d) == host)
        {
            root.system_dirs.push(host.clone());
        } else {
            root.ro_binds.push(Bind::new(host, inside));
        }
    }
    root.rw_binds = vec![
        Bind::new(&launch.alloc_dir, "/alloc"),
        Bind::new(launch.task_dir.join("secrets"), "/secrets"),
        Bind::new(launch.task_dir.join("tmp"), "/tmp"),
    ];
    let local = Bind::new(launch.task_dir.join("local"), "/local");
    if readonly_rootfs {
        root.task_ro_binds.push(local);
    } else {
        root.rw_binds.push(local);
    }
    root
}

/// Most symlinks followed to find where a jail's `/etc/hosts` or `/etc/resolv.conf` really is.
const MAX_SYMLINK_HOPS: usize = 8;

/// The allocation's `hosts` and `resolv.conf`, bound read-only over the jail's. When the jail
/// shows the host's `/etc` and the host's file there is a symlink (systemd-resolved's
/// `/etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf`), the bind goes where the link
/// leads, so the link the task reads resolves to the allocation's file (the jail's root makes
/// the missing directories). `host_root` is `/` outside tests.
fn etc_binds(
    network: &LaunchNetwork,
    chroot_env: &[(PathBuf, PathBuf)],
    host_root: &Path,
) -> Result<Vec<Bind>, SpecError> {
    let host_etc_shown = chroot_env
        .iter()
        .any(|(host, inside)| host == Path::new("/etc") && inside == Path::new("/etc"));
    let mut binds = Vec::new();
    for (file, inside) in [
        (&network.hosts_file, "/etc/hosts"),
        (&network.resolv_conf_file, "/etc/resolv.conf"),
    ] {
        let Some(file) = file else { continue };
        let target = if host_etc_shown {
            follow_links(host_root, Path::new(inside))?
        } else {
            PathBuf::from(inside)
        };
        binds.push(Bind::new(file, target));
    }
    Ok(binds)
}

/// Where `path` (absolute, as the jail sees it) leads through symlinks under `host_root`.
fn follow_links(host_root: &Path, path: &Path) -> Result<PathBuf, SpecError> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_SYMLINK_HOPS {
        let on_host = host_root.join(current.strip_prefix("/").unwrap_or(&current));
        let Ok(link) = std::fs::read_link(&on_host) else {
            return Ok(current);
        };
        let next = if link.is_absolute() {
            link
        } else {
            current.parent().unwrap_or(Path::new("/")).join(link)
        };
        current = normalize(&next);
    }
    Err((
        "network",
        format!(
            "{} leads through more than {MAX_SYMLINK_HOPS} symlinks on this host; point it at a file",
            path.display()
        ),
    ))
}

/// `path` without `.` and `..` components (lexically: symlinks are followed one at a time by
/// the caller).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(p) => out.push(p),
            _ => {}
        }
    }
    out
}

/// `exec`'s seccomp setting: `default` (or empty), `unconfined`, or a profile's path.
fn seccomp_policy(setting: &str) -> Result<SeccompPolicy, SpecError> {
    Ok(match setting {
        "" | "default" => SeccompPolicy::Default,
        "unconfined" => SeccompPolicy::Unconfined,
        path => SeccompPolicy::from_profile_file(Path::new(path))
            .map_err(|e| ("seccomp", e.to_string()))?,
    })
}

/// The launch's working directory, or `default` when it names none.
fn work_dir(launch: &TaskLaunch, default: impl FnOnce() -> PathBuf) -> PathBuf {
    if launch.work_dir.is_empty() {
        default()
    } else {
        PathBuf::from(&launch.work_dir)
    }
}

/// `raw_exec`: the host's filesystem and namespaces, and what the supervisor itself may do,
/// as Nomad's raw_exec keeps the agent's privileges.
fn host(launch: &TaskLaunch) -> Confinement {
    Confinement {
        filesystem: Filesystem::Host,
        namespaces: NamespaceSpec::default(),
        capabilities: own_capabilities(),
        seccomp: SeccompPolicy::Unconfined,
        work_dir: work_dir(launch, || launch.task_dir.clone()),
        // No pid namespace: the task is not PID 1 of anything.
        init: false,
    }
}

/// The launch's rlimits; an unknown resource name is an error naming it.
fn rlimits(launch: &TaskLaunch) -> Result<Vec<sandbox::Rlimit>, SpecError> {
    launch
        .rlimits
        .iter()
        .map(|(name, soft, hard)| {
            let resource = rlimit_resource(name)
                .ok_or_else(|| ("rlimits", format!("unknown resource {name:?}")))?;
            Ok(sandbox::Rlimit {
                resource,
                soft: *soft,
                hard: *hard,
            })
        })
        .collect()
}

/// The supervisor's own effective capabilities (from `/proc/self/status`).
fn own_capabilities() -> CapabilitySet {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .map(CapabilitySet::from_mask)
        .unwrap_or_default()
}

fn rlimit_resource(name: &str) -> Option<sandbox::RlimitResource> {
    use sandbox::RlimitResource as R;
    Some(match name {
        "as" => R::As,
        "core" => R::Core,
        "cpu" => R::Cpu,
        "data" => R::Data,
        "fsize" => R::Fsize,
        "locks" => R::Locks,
        "memlock" => R::Memlock,
        "msgqueue" => R::Msgqueue,
        "nice" => R::Nice,
        "nofile" => R::Nofile,
        "nproc" => R::Nproc,
        "rss" => R::Rss,
        "rtprio" => R::Rtprio,
        "rttime" => R::Rttime,
        "sigpending" => R::Sigpending,
        "stack" => R::Stack,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etc_files_are_bound_where_the_hosts_links_lead() {
        let root = std::env::temp_dir().join(format!("noded-spec-etc-{}", std::process::id()));
        let etc = root.join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("hosts"), "127.0.0.1 localhost\n").unwrap();
        // systemd-resolved's layout: an absolute link; Debian's resolvconf: a relative one.
        std::os::unix::fs::symlink(
            "/run/systemd/resolve/stub-resolv.conf",
            etc.join("resolv.conf"),
        )
        .unwrap();
        let network = LaunchNetwork {
            hosts_file: Some("/a/.etc/hosts".into()),
            resolv_conf_file: Some("/a/.etc/resolv.conf".into()),
            ..Default::default()
        };
        let etc_env = vec![(PathBuf::from("/etc"), PathBuf::from("/etc"))];
        let binds = etc_binds(&network, &etc_env, &root).unwrap();
        assert_eq!(
            binds,
            vec![
                Bind::new("/a/.etc/hosts", "/etc/hosts"),
                Bind::new(
                    "/a/.etc/resolv.conf",
                    "/run/systemd/resolve/stub-resolv.conf"
                ),
            ]
        );
        std::fs::remove_file(etc.join("resolv.conf")).unwrap();
        std::os::unix::fs::symlink("../run/resolvconf/resolv.conf", etc.join("resolv.conf"))
            .unwrap();
        assert_eq!(
            follow_links(&root, Path::new("/etc/resolv.conf")).unwrap(),
            PathBuf::from("/run/resolvconf/resolv.conf")
        );
        // A loop is refused naming the file.
        std::fs::remove_file(etc.join("resolv.conf")).unwrap();
        std::os::unix::fs::symlink("/etc/resolv.conf", etc.join("resolv.conf")).unwrap();
        let (step, message) = follow_links(&root, Path::new("/etc/resolv.conf")).unwrap_err();
        assert_eq!(step, "network");
        assert!(
            message.contains("/etc/resolv.conf leads through more than"),
            "{message}"
        );
        // A jail without the host's /etc: the files go where the task looks, no links.
        let binds = etc_binds(&network, &[], &root).unwrap();
        assert_eq!(
            binds[1],
            Bind::new("/a/.etc/resolv.conf", "/etc/resolv.conf")
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
