//! The `exec` and `raw_exec` drivers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use controlplane::drivers::{parse_driver_config, ExecConfig, NamespaceMode};
use controlplane::model::{DriverInfo, Task};

use super::{Driver, DriverError, TaskContext};
use crate::client::network::task::TaskNetwork;
use crate::supervisor::protocol::{
    IsolationMode, LaunchNetwork, LogSettings, TaskLaunch, TaskLimits,
};

/// Nomad's default `chroot_env`, bound read-only (never copied) into every `exec` task.
pub const DEFAULT_CHROOT_ENV: &[&str] =
    &["/bin", "/etc", "/lib", "/lib32", "/lib64", "/sbin", "/usr"];
/// Default pids limit per task (a fork bomb stops there).
pub const DEFAULT_PIDS_MAX: u64 = 4096;

/// Ids a task may not run as: Nomad's `denied_host_uids`/`denied_host_gids` ("0,10-100").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdRanges(Vec<(u32, u32)>);

impl IdRanges {
    pub fn parse(text: &str) -> Result<IdRanges, String> {
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let lo: u32 = lo
                .parse()
                .map_err(|_| format!("{part:?} is not an id or an id range like 10-100"))?;
            let hi: u32 = hi
                .parse()
                .map_err(|_| format!("{part:?} is not an id or an id range like 10-100"))?;
            if lo > hi {
                return Err(format!("range {part:?} goes backwards"));
            }
            ranges.push((lo, hi));
        }
        Ok(IdRanges(ranges))
    }

    pub fn contains(&self, id: u32) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&id))
    }
}

/// Node-side settings of the exec driver (`plugin "exec" { config { … } }`).
#[derive(Debug, Clone)]
pub struct ExecSettings {
    pub chroot_env: Vec<(PathBuf, PathBuf)>,
    /// Capabilities a task may have (lower-case names).
    pub allow_caps: Vec<String>,
    pub denied_uids: IdRanges,
    pub denied_gids: IdRanges,
    pub default_pid_mode: NamespaceMode,
    pub default_ipc_mode: NamespaceMode,
    /// MHz of one core here, to turn `cpu` MHz into a CFS quota for `cpu_hard_limit`.
    pub mhz_per_core: u64,
}

/// `exec` (jailed) or `raw_exec` (host filesystem).
#[derive(Debug, Clone)]
pub struct ExecDriver {
    raw: bool,
    enabled: bool,
    settings: ExecSettings,
    health: Result<(), String>,
}

impl ExecDriver {
    /// The jailed driver. `health` says why it cannot run here (not root, no cgroups…).
    pub fn exec(settings: ExecSettings, health: Result<(), String>) -> ExecDriver {
        ExecDriver {
            raw: false,
            enabled: true,
            settings,
            health,
        }
    }

    /// The host-filesystem driver; off unless the agent config enables it, as in Nomad.
    pub fn raw_exec(
        enabled: bool,
        settings: ExecSettings,
        health: Result<(), String>,
    ) -> ExecDriver {
        ExecDriver {
            raw: true,
            enabled,
            settings,
            health,
        }
    }

    pub fn default_chroot_env() -> Vec<(PathBuf, PathBuf)> {
        DEFAULT_CHROOT_ENV
            .iter()
            .map(|p| (PathBuf::from(p), PathBuf::from(p)))
            .filter(|(host, _)| host.exists())
            .collect()
    }

    /// An error about the config option `option`.
    fn err(task: &Task, option: &str, message: impl Into<String>) -> DriverError {
        DriverError {
            task: task.name.clone(),
            field: format!("config.{option}"),
            message: message.into(),
        }
    }

    /// The task's capabilities, as Nomad computes them: (Nomad's default set ∩ allow_caps)
    /// − cap_drop ∪ cap_add, with cap_add inside allow_caps. cap_add wins over cap_drop, so
    /// `cap_drop = ["all"]` with `cap_add = ["chown"]` gives exactly `chown`; allow_caps
    /// only says what a task may ask for, it adds nothing by itself. Returns (the jail's set,
    /// the ambient set for a non-root user).
    fn capabilities(
        &self,
        task: &Task,
        config: &ExecConfig,
    ) -> Result<(Vec<String>, Vec<String>), DriverError> {
        let allowed: BTreeSet<&str> = self
            .settings
            .allow_caps
            .iter()
            .map(String::as_str)
            .collect();
        let allow_all = allowed.contains("all");
        let mut set: BTreeSet<String> = capabilities::NOMAD_DEFAULT_ALLOW
            .iter()
            .filter(|c| allow_all || allowed.contains(**c))
            .map(|c| c.to_string())
            .collect();
        for cap in &config.cap_drop {
            if cap == "all" {
                set.clear();
            } else {
                set.remove(cap);
            }
        }
        for cap in &config.cap_add {
            if !(allow_all || allowed.contains(cap.as_str())) {
                return Err(Self::err(
                    task,
                    "cap_add",
                    format!(
                        "{cap:?} is not allowed on this node (allow_caps: {}); an operator can add it to plugin \"exec\" config allow_caps",
                        self.settings.allow_caps.join(", ")
                    ),
                ));
            }
            if cap == "all" {
                set.extend(capabilities::NAMES.iter().map(|c| c.to_string()));
            } else {
                set.insert(cap.clone());
            }
        }
        let ambient: Vec<String> = config
            .cap_add
            .iter()
            .filter(|c| set.contains(*c))
            .cloned()
            .collect();
        Ok((set.into_iter().collect(), ambient))
    }

    fn rlimits(
        &self,
        task: &Task,
        config: &ExecConfig,
    ) -> Result<Vec<(String, u64, u64)>, DriverError> {
        let mut out = Vec::new();
        for (name, (soft, hard)) in &config.rlimits {
            if let Some(ceiling) = rlimit_ceiling(name) {
                if *hard > ceiling {
                    return Err(Self::err(
                        task,
                        &format!("rlimits.{name}"),
                        format!("hard limit {hard} is above this node's ceiling {ceiling} (the agent's own hard limit)"),
                    ));
                }
            }
            out.push((name.clone(), *soft, *hard));
        }
        Ok(out)
    }

    fn check_user(&self, task: &Task, user: &str) -> Result<(), DriverError> {
        let resolved =
            isolation::user::lookup(user, Path::new("/etc")).map_err(|e| DriverError {
                task: task.name.clone(),
                field: "user".into(),
                message: e.to_string(),
            })?;
        if self.settings.denied_uids.contains(resolved.uid) {
            return Err(DriverError {
                task: task.name.clone(),
                field: "user".into(),
                message: format!(
                    "uid {} ({user:?}) is denied on this node (denied_host_uids)",
                    resolved.uid
                ),
            });
        }
        if let Some(gid) = resolved
            .groups
            .iter()
            .chain(std::iter::once(&resolved.gid))
            .find(|g| self.settings.denied_gids.contains(**g))
        {
            return Err(DriverError {
                task: task.name.clone(),
                field: "user".into(),
                message: format!(
                    "group {gid} of {user:?} is denied on this node (denied_host_gids)"
                ),
            });
        }
        Ok(())
    }
}

/// The agent's own hard limit for `name`: no task gets more than the agent has.
fn rlimit_ceiling(name: &str) -> Option<u64> {
    use nix::sys::resource::{getrlimit, Resource};
    let resource = match name {
        "as" => Resource::RLIMIT_AS,
        "core" => Resource::RLIMIT_CORE,
        "cpu" => Resource::RLIMIT_CPU,
        "data" => Resource::RLIMIT_DATA,
        "fsize" => Resource::RLIMIT_FSIZE,
        "locks" => Resource::RLIMIT_LOCKS,
        "memlock" => Resource::RLIMIT_MEMLOCK,
        "msgqueue" => Resource::RLIMIT_MSGQUEUE,
        "nice" => Resource::RLIMIT_NICE,
        "nofile" => Resource::RLIMIT_NOFILE,
        "nproc" => Resource::RLIMIT_NPROC,
        "rss" => Resource::RLIMIT_RSS,
        "rtprio" => Resource::RLIMIT_RTPRIO,
        "rttime" => Resource::RLIMIT_RTTIME,
        "sigpending" => Resource::RLIMIT_SIGPENDING,
        "stack" => Resource::RLIMIT_STACK,
        _ => return None,
    };
    getrlimit(resource).ok().map(|(_, hard)| hard)
}

impl Driver for ExecDriver {
    fn name(&self) -> &'static str {
        if self.raw {
            "raw_exec"
        } else {
            "exec"
        }
    }

    fn fingerprint(&self) -> DriverInfo {
        let (healthy, description) = match (&self.health, self.enabled) {
            (_, false) => (
                false,
                "disabled (enable it in the agent's client config)".to_string(),
            ),
            (Ok(()), true) => (true, "Healthy".to_string()),
            (Err(why), true) => (false, why.clone()),
        };
        DriverInfo {
            attributes: [(format!("driver.{}", self.name()), "1".to_string())].into(),
            detected: self.enabled,
            healthy,
            health_description: description,
            update_time: String::new(),
        }
    }

    fn default_user(&self) -> &str {
        if self.raw {
            // raw_exec runs as the agent's user unless told otherwise, as Nomad's does.
            "root"
        } else {
            "nobody"
        }
    }

    fn sees_host_paths(&self) -> bool {
        self.raw
    }

    fn prepare(&self, task: &Task, ctx: &TaskContext) -> Result<TaskLaunch, DriverError> {
        let config = parse_driver_config(self.name(), &task.config).map_err(|errors| {
            let (field, message) = match errors.as_slice() {
                [one] => (format!("config.{}", one.field), one.message.clone()),
                many => (
                    "config".to_string(),
                    many.iter()
                        .map(|e| format!("{}: {}", e.field, e.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            };
            DriverError {
                task: task.name.clone(),
                field,
                message,
            }
        })?;
        let user = if task.user.is_empty() {
            self.default_user().to_string()
        } else {
            task.user.clone()
        };
        if !self.raw {
            self.check_user(task, &user)?;
        }
        // Limits come from what the scheduler granted, not from what the task asked for:
        // `memory_max` only when oversubscription is enabled, `cores` as specific cores.
        let granted = &ctx.allocated;
        let log = task.log_config.clone().unwrap_or_default();
        let cpu_mhz = u64::try_from(granted.cpu.cpu_shares).unwrap_or(0);
        let cpu_quota_us = if config.cpu_hard_limit {
            // quota/period = cpu MHz / MHz per core, over a 100 ms period; at least 1 ms.
            (cpu_mhz * 100_000 / self.settings.mhz_per_core.max(1)).max(1_000)
        } else {
            0
        };
        let limits = TaskLimits {
            memory_mb: u64::try_from(granted.memory.memory_mb).unwrap_or(0),
            memory_max_mb: u64::try_from(granted.memory.memory_max_mb).unwrap_or(0),
            cpu_mhz,
            pids_max: DEFAULT_PIDS_MAX,
            cpuset: granted.cpu.reserved_cores.clone(),
            cpu_quota_us,
            // The client fills in the node's shared cores for a task without reserved ones.
            shared_cpuset: Vec::new(),
        };
        let rlimits = self.rlimits(task, &config)?;
        let (isolation, ambient) = if self.raw {
            (IsolationMode::Host, Vec::new())
        } else {
            let (capabilities, ambient) = self.capabilities(task, &config)?;
            let pid = config.pid_mode.unwrap_or(self.settings.default_pid_mode);
            let ipc = config.ipc_mode.unwrap_or(self.settings.default_ipc_mode);
            (
                IsolationMode::Jail {
                    chroot_env: self.settings.chroot_env.clone(),
                    capabilities,
                    seccomp: config
                        .seccomp
                        .clone()
                        .unwrap_or_else(|| "default".to_string()),
                    host_pid: pid == NamespaceMode::Host,
                    host_ipc: ipc == NamespaceMode::Host,
                    readonly_rootfs: config.readonly_rootfs,
                    no_init: config.no_init,
                },
                ambient,
            )
        };
        Ok(TaskLaunch {
            task_id: ctx.task_id.clone(),
            command: config.command,
            args: config.args,
            env: ctx.env.clone(),
            user,
            work_dir: config.work_dir.unwrap_or_default(),
            alloc_dir: ctx.alloc_dir.clone(),
            task_dir: ctx.task_dir.clone(),
            limits,
            logs: LogSettings {
                dir: ctx.logs_dir.clone(),
                prefix: task.name.clone(),
                max_files: u32::try_from(log.max_files.max(1)).unwrap_or(10),
                max_file_size_bytes: u64::try_from(log.max_file_size_mb.max(1)).unwrap_or(10)
                    * 1024
                    * 1024,
            },
            isolation,
            ambient_capabilities: ambient,
            rlimits,
            network: self.launch_network(&ctx.network),
        })
    }
}

impl ExecDriver {
    /// How the task joins its allocation's network: the namespace (both drivers, as Nomad's
    /// raw_exec joins it too); the hostname and `/etc` files only in `exec`'s jail (raw_exec
    /// sees the host's files and shares its UTS namespace).
    fn launch_network(&self, network: &TaskNetwork) -> Option<LaunchNetwork> {
        let launch = if self.raw {
            LaunchNetwork {
                namespace: network.namespace_path.clone(),
                ..Default::default()
            }
        } else {
            LaunchNetwork {
                namespace: network.namespace_path.clone(),
                hostname: network.uts_hostname().map(str::to_string),
                hosts_file: network.hosts_file(),
                resolv_conf_file: network.resolv_conf_file(),
            }
        };
        (launch != LaunchNetwork::default()).then_some(launch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn settings() -> ExecSettings {
        ExecSettings {
            chroot_env: vec![],
            allow_caps: vec!["chown".into(), "kill".into(), "net_bind_service".into()],
            denied_uids: IdRanges::parse("0").unwrap(),
            denied_gids: IdRanges::default(),
            default_pid_mode: NamespaceMode::Private,
            default_ipc_mode: NamespaceMode::Private,
            mhz_per_core: 2000,
        }
    }

    fn task(config: Value, user: &str) -> Task {
        Task {
            name: "t".into(),
            driver: "exec".into(),
            user: user.into(),
            config: config.as_object().cloned().unwrap_or_default(),
            ..Default::default()
        }
    }

    fn ctx() -> TaskContext {
        TaskContext {
            task_id: "a.t".into(),
            allocated: controlplane::model::AllocatedTaskResources {
                cpu: controlplane::model::AllocatedCpuResources {
                    cpu_shares: 500,
                    reserved_cores: vec![2, 3],
                },
                memory: controlplane::model::AllocatedMemoryResources {
                    memory_mb: 256,
                    memory_max_mb: 512,
                },
            },
            env: Default::default(),
            alloc_dir: "/x/alloc".into(),
            task_dir: "/x/t".into(),
            logs_dir: "/x/alloc/logs".into(),
            network: TaskNetwork::default(),
        }
    }

    #[test]
    fn tasks_join_their_allocations_network() {
        use crate::client::network::task::NetworkMode;
        let mut c = ctx();
        let config = json!({"command": "/bin/true"});
        // Host mode: nothing to join, the launch says nothing.
        let launch = ExecDriver::exec(settings(), Ok(()))
            .prepare(&task(config.clone(), "nobody"), &c)
            .unwrap();
        assert_eq!(launch.network, None);
        c.network = TaskNetwork {
            mode: NetworkMode::Bridge,
            namespace_path: Some("/run/netns/noded-t-a".into()),
            alloc_ip: Some(std::net::Ipv4Addr::new(172, 26, 64, 2)),
            hostname: Some("web".into()),
            etc_dir: Some("/x/.etc".into()),
            ..Default::default()
        };
        let launch = ExecDriver::exec(settings(), Ok(()))
            .prepare(&task(config.clone(), "nobody"), &c)
            .unwrap();
        assert_eq!(
            launch.network,
            Some(LaunchNetwork {
                namespace: Some("/run/netns/noded-t-a".into()),
                hostname: Some("web".into()),
                hosts_file: Some("/x/.etc/hosts".into()),
                resolv_conf_file: Some("/x/.etc/resolv.conf".into()),
            })
        );
        // raw_exec joins the namespace and nothing else.
        let launch = ExecDriver::raw_exec(true, settings(), Ok(()))
            .prepare(&task(config, "root"), &c)
            .unwrap();
        assert_eq!(
            launch.network,
            Some(LaunchNetwork {
                namespace: Some("/run/netns/noded-t-a".into()),
                ..Default::default()
            })
        );
    }

    #[test]
    fn capabilities_are_computed_within_allow_caps() {
        let d = ExecDriver::exec(settings(), Ok(()));
        let launch = d.prepare(&task(json!({"command": "/bin/true", "cap_add": ["net_bind_service"], "cap_drop": ["chown"]}), "nobody"), &ctx()).unwrap();
        match launch.isolation {
            IsolationMode::Jail { capabilities, .. } => {
                assert_eq!(capabilities, vec!["kill", "net_bind_service"])
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(launch.ambient_capabilities, vec!["net_bind_service"]);
        let err = d
            .prepare(
                &task(
                    json!({"command": "/bin/true", "cap_add": ["sys_admin"]}),
                    "nobody",
                ),
                &ctx(),
            )
            .unwrap_err();
        assert_eq!(err.field, "config.cap_add");
        assert!(
            err.message.contains("\"sys_admin\" is not allowed"),
            "{err}"
        );
    }

    #[test]
    fn cap_add_wins_over_cap_drop_and_allow_caps_grants_nothing_by_itself() {
        let caps = |allow: &[&str], config: Value| {
            let mut s = settings();
            s.allow_caps = allow.iter().map(|c| c.to_string()).collect();
            let launch = ExecDriver::exec(s, Ok(()))
                .prepare(&task(config, "nobody"), &ctx())
                .unwrap();
            match launch.isolation {
                IsolationMode::Jail { capabilities, .. } => capabilities,
                other => panic!("{other:?}"),
            }
        };
        let defaults: &[&str] = &capabilities::NOMAD_DEFAULT_ALLOW;
        // Drop everything, add back what the task needs: exactly that.
        assert_eq!(
            caps(
                defaults,
                json!({"command": "/a", "cap_drop": ["all"], "cap_add": ["chown", "kill"]})
            ),
            ["chown", "kill"]
        );
        // Dropping and adding the same one keeps it (as Nomad: adds are applied last).
        assert_eq!(
            caps(
                defaults,
                json!({"command": "/a", "cap_drop": ["kill"], "cap_add": ["kill"]})
            )
            .len(),
            defaults.len()
        );
        // An operator allowing net_raw lets tasks ask for it; a task that does not ask
        // does not get it.
        let mut wider: Vec<&str> = defaults.to_vec();
        wider.push("net_raw");
        let plain = caps(&wider, json!({"command": "/a"}));
        assert!(!plain.iter().any(|c| c == "net_raw"), "{plain:?}");
        assert_eq!(plain.len(), defaults.len());
        let asked = caps(&wider, json!({"command": "/a", "cap_add": ["net_raw"]}));
        assert!(asked.iter().any(|c| c == "net_raw"), "{asked:?}");
        // A narrower allow-list narrows the default set too.
        assert_eq!(caps(&["chown"], json!({"command": "/a"})), ["chown"]);
    }

    #[test]
    fn denied_users_unknown_users_and_rlimit_ceilings_are_refused_naming_the_field() {
        let d = ExecDriver::exec(settings(), Ok(()));
        let err = d
            .prepare(&task(json!({"command": "/bin/true"}), "root"), &ctx())
            .unwrap_err();
        assert_eq!(err.field, "user");
        assert!(err.message.contains("denied_host_uids"), "{err}");
        // `user` is the task's, not a config option.
        assert!(err.to_string().contains("\": user: uid 0"), "{err}");
        let err = d
            .prepare(
                &task(json!({"command": "/bin/true"}), "no-such-user-here"),
                &ctx(),
            )
            .unwrap_err();
        assert_eq!(err.field, "user");
        let err = d.prepare(
            &task(
                json!({"command": "/bin/true", "rlimits": {"nofile": "unlimited"}}),
                "nobody",
            ),
            &ctx(),
        );
        // The agent's own hard limit for nofile is finite on Linux.
        let err = err.unwrap_err();
        assert_eq!(err.field, "config.rlimits.nofile");
        let ok = d.prepare(&task(json!({"command": "/bin/true", "rlimits": {"nofile": 64}, "work_dir": "/local", "pid_mode": "host"}), "nobody"), &ctx()).unwrap();
        assert_eq!(ok.rlimits, vec![("nofile".to_string(), 64, 64)]);
        // Limits are what the scheduler granted.
        assert_eq!(ok.limits.memory_mb, 256);
        assert_eq!(ok.limits.memory_max_mb, 512);
        assert_eq!(ok.limits.cpuset, vec![2, 3]);
        assert_eq!(ok.limits.cpu_quota_us, 0);
        let capped = d
            .prepare(
                &task(
                    json!({"command": "/bin/true", "cpu_hard_limit": true}),
                    "nobody",
                ),
                &ctx(),
            )
            .unwrap();
        // 500 MHz of a 2000 MHz core: a quarter of each 100 ms period.
        assert_eq!(capped.limits.cpu_quota_us, 25_000);
        assert_eq!(ok.work_dir, "/local");
        assert!(matches!(
            ok.isolation,
            IsolationMode::Jail {
                host_pid: true,
                host_ipc: false,
                ..
            }
        ));
    }

    #[test]
    fn id_ranges() {
        let r = IdRanges::parse("0, 10-20,65534").unwrap();
        assert!(r.contains(0) && r.contains(15) && r.contains(65534) && !r.contains(21));
        assert!(IdRanges::parse("20-10").is_err());
        assert!(IdRanges::parse("x").is_err());
    }

    #[test]
    fn raw_exec_is_off_unless_enabled() {
        let d = ExecDriver::raw_exec(false, settings(), Ok(()));
        let f = d.fingerprint();
        assert!(!f.detected && !f.healthy);
        assert!(
            ExecDriver::raw_exec(true, settings(), Ok(()))
                .fingerprint()
                .healthy
        );
        let unhealthy = ExecDriver::exec(settings(), Err("needs root".into())).fingerprint();
        assert!(!unhealthy.healthy);
        assert_eq!(unhealthy.health_description, "needs root");
    }

    #[test]
    fn readonly_rootfs_reaches_the_launch_and_raw_exec_refuses_it() {
        let config = json!({"command": "/bin/true", "readonly_rootfs": true});
        let launch = ExecDriver::exec(settings(), Ok(()))
            .prepare(&task(config.clone(), "nobody"), &ctx())
            .unwrap();
        assert!(matches!(
            launch.isolation,
            IsolationMode::Jail {
                readonly_rootfs: true,
                ..
            }
        ));
        let err = ExecDriver::raw_exec(true, settings(), Ok(()))
            .prepare(&task(config, "root"), &ctx())
            .unwrap_err();
        assert_eq!(err.field, "config.readonly_rootfs");
        assert!(
            err.to_string()
                .starts_with("task \"t\": config.readonly_rootfs: raw_exec"),
            "{err}"
        );
    }
}
