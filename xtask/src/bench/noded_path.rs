//! noded's real start path, driven the way the client drives it for one task, against the
//! real `noded supervisor` process.
//!
//! Per task, in the client's order (`client::alloc_runner::run` and
//! `client::task_runner::TaskRunner::start_and_wait`): `AllocDir::new` → `build_shared` (a
//! spare directory renamed into place, made by `SpareAllocDirs`'s own thread as in the client)
//! → the task user's lookup → `build_task` (which mounts the `secrets` tmpfs) → the `NOMAD_*`
//! environment → `ExecDriver::prepare` → `Start` on the supervisor socket (the task has
//! exec'd when `Started` comes back) → `Wait` (exited) → `Remove` (cgroup destroyed) →
//! `AllocDir::unmount_all` (cleaned up, as the client leaves it: the directory stays for
//! `alloc logs` until the client's GC removes it, as Nomad's does). The clock starts when the
//! allocation is in the client's hands, i.e. before `AllocDir::new`, and stops there; the
//! GC's `destroy` of the directory runs next, after the clock, and is reported on its own.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use controlplane::model::{
    AllocatedCpuResources, AllocatedMemoryResources, AllocatedResources, AllocatedTaskResources,
    Allocation, Job,
};
use isolation::cgroup::{CgroupLayout, CgroupManager};
use noded::client::allocdir::{AllocDir, DirOwner, SpareAllocDirs};
use noded::client::network::task::{NetworkMode, TaskNetwork};
use noded::client::taskenv::{self, NodeContext, TaskPaths};
use noded::driver::{Driver, ExecDriver, ExecSettings, TaskContext};
use noded::supervisor::client::SupervisorClient;
use noded::supervisor::protocol::{ExitInfo, Request, Response, TaskLaunch};

/// The task group and task every bench job has.
const GROUP: &str = "g";
const TASK: &str = "t";

/// A job of one `exec` task running `command args…`, parsed from HCL and canonicalised by
/// controlplane's jobspec code (Nomad's defaults: 100 MHz, 300 MB, batch restart policy).
pub fn job(name: &str, command: &str, args: &[&str]) -> anyhow::Result<Arc<Job>> {
    let args = args
        .iter()
        .map(|a| serde_json::Value::String((*a).to_string()).to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let command = serde_json::Value::String(command.to_string());
    let hcl = format!(
        "job \"{name}\" {{\n  type = \"batch\"\n  group \"{GROUP}\" {{\n    task \"{TASK}\" {{\n      driver = \"exec\"\n      config {{\n        command = {command}\n        args = [{args}]\n      }}\n    }}\n  }}\n}}\n"
    );
    let opts = controlplane::jobspec::ParseOptions::for_file(format!("{name}.nomad.hcl"));
    let parsed = controlplane::jobspec::check_hcl(&hcl, &opts)
        .map_err(|e| anyhow::anyhow!("bench jobspec {name}: {e}"))?;
    Ok(Arc::new(parsed.job))
}

/// The supervisor process started for the bench; stopped (by pid) and its cgroup parent
/// removed on drop.
#[derive(Debug)]
pub struct Supervisor {
    pub pid: i32,
    pub client: SupervisorClient,
    cgroup_parent: String,
    log: PathBuf,
}

impl Supervisor {
    /// Starts `noded supervisor` through [`SupervisorClient::ensure_running`], as the client
    /// does. Its stderr (info-level logs, as in production) goes to `<state_dir>.log`.
    pub fn start(
        rt: &tokio::runtime::Runtime,
        noded: &Path,
        dir: &Path,
        cgroup_parent: &str,
    ) -> anyhow::Result<Supervisor> {
        let socket = dir.join("supervisor.sock");
        let state = dir.join("supervisor");
        let log = dir.join("supervisor.log");
        let client = SupervisorClient::new(socket);
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        // The supervisor inherits stderr: point ours at the log file while it is spawned.
        let saved = nix::unistd::dup(std::io::stderr().as_fd()).context("saving stderr")?;
        nix::unistd::dup2_stderr(log_file.as_fd()).context("redirecting stderr")?;
        let started = rt.block_on(client.ensure_running(noded, &state, cgroup_parent, true));
        nix::unistd::dup2_stderr(saved.as_fd()).context("restoring stderr")?;
        let pid = started.with_context(|| {
            format!(
                "starting {} supervisor (log: {})",
                noded.display(),
                log.display()
            )
        })?;
        Ok(Supervisor {
            pid,
            client,
            cgroup_parent: cgroup_parent.to_string(),
            log,
        })
    }

    /// The supervisor's log so far (for error messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.pid);
        // It is our own child (ensure_running spawned it; its reaper thread reaps it).
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Path::new(&format!("/proc/{}", self.pid)).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if Path::new(&format!("/proc/{}", self.pid)).exists() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        // Whatever task cgroup is left (a failed run) is killed and removed, then the parent.
        let cleanup = || -> anyhow::Result<()> {
            let manager = CgroupManager::new(CgroupLayout::detect()?, &self.cgroup_parent)?;
            for name in manager.list()? {
                if let Some(cgroup) = manager.open(&name)? {
                    cgroup.destroy()?;
                }
            }
            manager.remove_parent()?;
            Ok(())
        };
        if let Err(e) = cleanup() {
            eprintln!(
                "warning: cleaning up cgroup parent {}: {e:#}",
                self.cgroup_parent
            );
        }
    }
}

/// Where the time of one run went, step by step (each from the end of the previous one).
#[derive(Debug, Clone, Copy, Default)]
pub struct Phases {
    /// Alloc dir, user lookup, task dir with its secrets tmpfs.
    pub dirs: Duration,
    /// `--netns`: the allocation's network namespace made (created, `lo` up), as the
    /// client's network hook does for `mode = "none"`; zero otherwise.
    pub netns: Duration,
    /// `NOMAD_*` environment and the driver's launch description.
    pub prepare: Duration,
    /// `Start` until `Started` (the task has exec'd).
    pub start: Duration,
    /// `Wait` until `Exited`.
    pub wait: Duration,
    /// `Remove` until `Ok` (cgroup destroyed).
    pub remove: Duration,
    /// `unmount_all` of the alloc dir (the secrets tmpfs).
    pub unmount: Duration,
    /// `--netns`: the namespace deleted (the client's teardown); zero otherwise.
    pub netns_delete: Duration,
    /// The client GC's `destroy` of the alloc dir (the tree removed), after the clock
    /// stopped: the client keeps finished alloc dirs for logs until GC.
    pub destroy: Duration,
}

impl Phases {
    pub const NAMES: [&'static str; 9] = [
        "alloc+task dirs",
        "netns create+lo up",
        "env+prepare",
        "Start rpc",
        "Wait rpc",
        "Remove rpc",
        "unmount_all",
        "netns delete",
        "(after) GC: destroy dir",
    ];

    pub fn values(&self) -> [Duration; 9] {
        [
            self.dirs,
            self.netns,
            self.prepare,
            self.start,
            self.wait,
            self.remove,
            self.unmount,
            self.netns_delete,
            self.destroy,
        ]
    }
}

/// What one start returned: the task is running (or has run) under the supervisor.
#[derive(Debug)]
pub struct StartedTask {
    pub task_id: String,
    pub dir: AllocGuard,
    /// `--netns`: the allocation's network namespace, deleted in `finish_task`.
    netns: Option<NetnsGuard>,
    started: Instant,
    /// Received → exec'd.
    pub exec: Duration,
    phases: Phases,
}

/// How one run ended.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    pub exit: ExitInfo,
    /// Received → exec'd.
    pub exec: Duration,
    /// Received → exited and cleaned up.
    pub full: Duration,
    pub phases: Phases,
}

/// A network namespace (`/run/netns/NAME`) deleted on drop unless deleted already.
#[derive(Debug)]
pub struct NetnsGuard {
    name: String,
    armed: bool,
}

impl NetnsGuard {
    /// Creates the namespace `name` with `lo` up: what the client's network hook does for a
    /// `mode = "none"` allocation (`NetworkManager::setup_none`, without its state record).
    pub fn create(name: &str) -> anyhow::Result<NetnsGuard> {
        let guard = NetnsGuard {
            name: name.to_string(),
            armed: true,
        };
        netns::namespace::create(name)
            .and_then(|_| netns::namespace::loopback_up(name))
            .with_context(|| format!("creating network namespace {name}"))?;
        Ok(guard)
    }

    pub fn path(&self) -> PathBuf {
        netns::namespace::path(&self.name)
    }

    /// Deletes it now (the client's teardown).
    pub fn delete(mut self) -> anyhow::Result<()> {
        self.armed = false;
        netns::namespace::delete(&self.name)
            .with_context(|| format!("deleting network namespace {}", self.name))
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = netns::namespace::delete(&self.name) {
                eprintln!("warning: deleting network namespace {}: {e}", self.name);
            }
        }
    }
}

/// The network a task of the bench joins: a namespace of its own (`mode = "none"`: the
/// namespace path only; the client also renders `/etc/hosts` and `resolv.conf`, not done
/// here), or the host's.
pub fn task_network(netns: Option<&NetnsGuard>) -> TaskNetwork {
    match netns {
        Some(ns) => TaskNetwork {
            mode: NetworkMode::None,
            namespace_path: Some(ns.path()),
            ..Default::default()
        },
        None => TaskNetwork::default(),
    }
}

/// An allocation directory that is unmounted and removed on drop unless cleaned up already.
#[derive(Debug)]
pub struct AllocGuard {
    dir: AllocDir,
    armed: bool,
}

impl AllocGuard {
    pub fn dir(&self) -> &AllocDir {
        &self.dir
    }
}

impl Drop for AllocGuard {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = self.dir.destroy() {
                eprintln!(
                    "warning: removing allocation dir {}: {e}",
                    self.dir.root().display()
                );
            }
        }
    }
}

impl Drop for NodedPath {
    fn drop(&mut self) {
        // Stops the spare maker before the bench dir goes.
        if let Err(e) = self.alloc_dirs.remove_all() {
            eprintln!("warning: removing spare allocation dirs: {e}");
        }
    }
}

/// The client's half of the start path, against one supervisor.
#[derive(Debug)]
pub struct NodedPath {
    rt: tokio::runtime::Runtime,
    pub supervisor: Supervisor,
    driver: ExecDriver,
    allocs_root: PathBuf,
    /// The client's spare allocation directories (made on their own thread, as in the client).
    alloc_dirs: Arc<SpareAllocDirs>,
    node: NodeContext,
    /// The shared cores a task without reserved cores gets, as the client computes them for
    /// a node with no reservations (every task pays for its cpuset cgroup, as in production).
    shared_cpuset: Vec<u32>,
    /// `--netns`: each allocation gets a network namespace named `<prefix>-<n>`.
    netns_prefix: Option<String>,
    netns_counter: std::sync::atomic::AtomicU64,
}

impl NodedPath {
    /// Starts a supervisor (cgroup parent `<prefix>`) with its state in `dir`.
    pub fn start(noded: &Path, dir: &Path, prefix: &str) -> anyhow::Result<NodedPath> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a tokio runtime")?;
        let supervisor = Supervisor::start(&rt, noded, dir, prefix)?;
        let allocs_root = dir.join("alloc");
        let alloc_dirs = SpareAllocDirs::start(&allocs_root).with_context(|| {
            format!(
                "preparing spare allocation dirs in {}",
                allocs_root.display()
            )
        })?;
        // The agent's own defaults (allow_caps, pid/ipc modes …), built as `noded agent` does.
        let defaults = noded::agent::config::AgentConfig::build(
            &[],
            &noded::agent::config::Overrides {
                dev: true,
                data_dir: Some(dir.to_path_buf()),
                ..Default::default()
            },
            || Ok(dir.to_path_buf()),
        )
        .context("building the agent's default config")?;
        let settings = ExecSettings {
            chroot_env: defaults
                .chroot_env
                .clone()
                .unwrap_or_else(ExecDriver::default_chroot_env),
            allow_caps: defaults.allow_caps.clone(),
            denied_uids: defaults.denied_uids.clone(),
            denied_gids: defaults.denied_gids.clone(),
            default_pid_mode: defaults.default_pid_mode,
            default_ipc_mode: defaults.default_ipc_mode,
            // As the client does from its fingerprint (`cpu.frequency`, 1000 if unknown).
            mhz_per_core: std::fs::read_to_string("/proc/cpuinfo")
                .map(|t| u64::from(noded::client::fingerprint::parse_cpuinfo(&t).mhz))
                .ok()
                .filter(|mhz| *mhz > 0)
                .unwrap_or(1000),
        };
        let fingerprint = noded::client::fingerprint::gather(dir, "127.0.0.1");
        let usable = noded::client::cpuset::usable_cores(&fingerprint.resources.cpu);
        let shared_cpuset = noded::client::cpuset::shared_cores(&usable, [])
            .cpus()
            .map(<[u32]>::to_vec)
            .unwrap_or_default();
        Ok(NodedPath {
            netns_prefix: None,
            netns_counter: std::sync::atomic::AtomicU64::new(0),
            shared_cpuset,
            rt,
            supervisor,
            driver: ExecDriver::exec(settings, Ok(())),
            allocs_root,
            alloc_dirs,
            node: NodeContext {
                node_id: uuid::Uuid::new_v4().to_string(),
                node_name: "bench".into(),
                datacenter: defaults.datacenter.clone(),
                region: defaults.region.clone(),
            },
        })
    }

    /// Gives every allocation from now on a network namespace of its own (`--netns`), named
    /// `<prefix>-<n>`.
    pub fn with_netns(mut self, prefix: &str) -> NodedPath {
        self.netns_prefix = Some(prefix.to_string());
        self
    }

    fn call(&self, request: &Request) -> anyhow::Result<Response> {
        self.rt
            .block_on(self.supervisor.client.call(request))
            .map_err(anyhow::Error::from)
    }

    /// An allocation of `job` as the client receives it from the servers (with the resources
    /// the scheduler grants: what each task asked for).
    pub fn allocation(&self, job: &Arc<Job>) -> Allocation {
        let tasks = job
            .task_groups
            .iter()
            .flat_map(|g| &g.tasks)
            .map(|t| {
                let r = t.resources.clone().unwrap_or_default();
                let granted = AllocatedTaskResources {
                    cpu: AllocatedCpuResources {
                        cpu_shares: r.cpu,
                        reserved_cores: Vec::new(),
                    },
                    memory: AllocatedMemoryResources {
                        memory_mb: r.memory_mb,
                        memory_max_mb: r.memory_max_mb,
                    },
                };
                (t.name.clone(), granted)
            })
            .collect();
        Allocation {
            allocated_resources: AllocatedResources {
                tasks,
                ..Default::default()
            },
            id: uuid::Uuid::new_v4().to_string(),
            namespace: job.namespace.clone(),
            eval_id: uuid::Uuid::new_v4().to_string(),
            name: format!("{}.{GROUP}[0]", job.id),
            node_id: self.node.node_id.clone(),
            node_name: self.node.node_name.clone(),
            job_id: job.id.clone(),
            job: Some(job.clone()),
            task_group: GROUP.to_string(),
            ..Default::default()
        }
    }

    /// From "allocation received" to "task exec'd".
    pub fn start_task(&self, alloc: &Allocation) -> anyhow::Result<StartedTask> {
        let started = Instant::now();
        let netns = match &self.netns_prefix {
            Some(prefix) => {
                let n = self
                    .netns_counter
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Some(NetnsGuard::create(&format!("{prefix}-{n}"))?)
            }
            None => None,
        };
        let netns_made = started.elapsed();
        let (dir, launch, mut phases) =
            self.prepare_task(alloc, started, task_network(netns.as_ref()))?;
        // prepare_task timed its dirs from `started`: the namespace came first.
        phases.netns = netns_made;
        phases.dirs = phases.dirs.saturating_sub(netns_made);
        let task_id = launch.task_id.clone();
        match self.call(&Request::Start {
            launch: Box::new(launch),
        })? {
            Response::Started { .. } => {}
            other => bail!(
                "the supervisor did not start task {task_id}: {other:?}\nsupervisor log:\n{}",
                self.supervisor.log_tail()
            ),
        }
        let exec = started.elapsed();
        phases.start = exec - phases.netns - phases.dirs - phases.prepare;
        Ok(StartedTask {
            task_id,
            dir,
            netns,
            exec,
            started,
            phases,
        })
    }

    /// The client's work before `Start`: the allocation and task dirs, the environment and
    /// the driver's launch description (timed from `started`), for a task joining `network`.
    pub fn prepare_task(
        &self,
        alloc: &Allocation,
        started: Instant,
        network: TaskNetwork,
    ) -> anyhow::Result<(AllocGuard, TaskLaunch, Phases)> {
        let job = alloc
            .job
            .as_ref()
            .context("bench allocation without a job")?;
        let task = job
            .group(&alloc.task_group)
            .and_then(|g| g.tasks.first())
            .context("bench job without a task")?;
        let dir = AllocDir::new(&self.allocs_root, &alloc.id)?;
        let dir = AllocGuard { dir, armed: true };
        self.alloc_dirs.build_shared(&dir.dir)?;
        let user_name = if task.user.is_empty() {
            self.driver.default_user().to_string()
        } else {
            task.user.clone()
        };
        let user = isolation::user::lookup(&user_name, Path::new("/etc"))?;
        self.alloc_dirs.build_task(
            &dir.dir,
            &task.name,
            DirOwner {
                uid: user.uid,
                gid: user.gid,
            },
        )?;
        dir.dir.discard_spare_task(&[task.name.as_str()])?;
        let mut phases = Phases {
            dirs: started.elapsed(),
            ..Default::default()
        };
        let task_dir = dir.dir.task_dir(&task.name);
        let paths = if self.driver.sees_host_paths() {
            TaskPaths::host(&dir.dir.shared_dir(), &task_dir)
        } else {
            TaskPaths::jailed()
        };
        let nomad = taskenv::nomad_variables(alloc, job, task, &paths, &self.node, &network);
        // The bench task sets no `env`, so the client's interpolation callback never runs.
        let env = taskenv::task_environment(&nomad, &task.env, |v| Ok(v.to_string()))
            .map_err(anyhow::Error::msg)?;
        let ctx = TaskContext {
            task_id: format!("{}.{}", alloc.id, task.name),
            allocated: alloc
                .allocated_resources
                .tasks
                .get(&task.name)
                .cloned()
                .with_context(|| format!("allocation without resources for task {}", task.name))?,
            env,
            alloc_dir: dir.dir.shared_dir(),
            task_dir,
            logs_dir: dir.dir.logs_dir(),
            network,
        };
        let mut launch = self.driver.prepare(task, &ctx)?;
        if launch.limits.cpuset.is_empty() {
            launch.limits.shared_cpuset = self.shared_cpuset.clone();
        }
        phases.prepare = started.elapsed() - phases.dirs;
        Ok((dir, launch, phases))
    }

    /// From "task exec'd" to "exited and cleaned up". `inspect` sees the allocation dir
    /// (logs) after the task's output was drained and before the dir is removed.
    pub fn finish_task(
        &self,
        mut task: StartedTask,
        inspect: impl FnOnce(&AllocDir) -> anyhow::Result<()>,
    ) -> anyhow::Result<Finished> {
        let mut phases = task.phases;
        let mut mark = Instant::now();
        let mut lap = || {
            let now = Instant::now();
            let d = now - mark;
            mark = now;
            d
        };
        let exit = match self.call(&Request::Wait {
            task_id: task.task_id.clone(),
        })? {
            Response::Exited { exit } => exit,
            other => bail!("waiting for task {}: {other:?}", task.task_id),
        };
        phases.wait = lap();
        match self.call(&Request::Remove {
            task_id: task.task_id.clone(),
        })? {
            Response::Ok => {}
            other => bail!("removing task {}: {other:?}", task.task_id),
        }
        phases.remove = lap();
        inspect(task.dir.dir())?;
        lap();
        task.dir.dir.unmount_all()?;
        phases.unmount = lap();
        if let Some(ns) = task.netns.take() {
            ns.delete()?;
        }
        phases.netns_delete = lap();
        let full = task.started.elapsed();
        task.dir.dir.destroy()?;
        task.dir.armed = false;
        phases.destroy = lap();
        Ok(Finished {
            exit,
            exec: task.exec,
            full,
            phases,
        })
    }

    /// One `Hello` to the supervisor and its answer: the cost of a request crossing noded's
    /// process boundary (connect, both wake-ups, JSON both ways), with no work behind it.
    pub fn round_trip(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        match self.call(&Request::Hello)? {
            Response::Hello { .. } => Ok(started.elapsed()),
            other => bail!("the supervisor answered Hello with {other:?}"),
        }
    }

    /// Kills a running task (SIGKILL to its whole cgroup, as the client's kill ends).
    pub fn kill_task(&self, task: &StartedTask) -> anyhow::Result<()> {
        match self.call(&Request::Kill {
            task_id: task.task_id.clone(),
            signal: libc::SIGKILL,
            grace_ms: 0,
        })? {
            Response::Ok => Ok(()),
            other => bail!("killing task {}: {other:?}", task.task_id),
        }
    }

    /// One whole run of `job`; fails unless the task exited 0.
    pub fn run(&self, job: &Arc<Job>) -> anyhow::Result<Finished> {
        let alloc = self.allocation(job);
        let task = self.start_task(&alloc)?;
        let finished = self.finish_task(task, |_| Ok(()))?;
        if !finished.exit.succeeded() {
            bail!(
                "noded task of job {} failed: {:?}\nsupervisor log:\n{}",
                job.id,
                finished.exit,
                self.supervisor.log_tail()
            );
        }
        Ok(finished)
    }

    /// Proves the measured path really runs the program: a marker printed by the task reaches
    /// its log file, and a failing program's exit code comes back.
    pub fn validate(&self) -> anyhow::Result<()> {
        let marker = format!("noded-bench-marker-{}", std::process::id());
        let echo = job(
            "bench-marker",
            "/bin/sh",
            &["-c", &format!("echo {marker}")],
        )?;
        let alloc = self.allocation(&echo);
        let task = self.start_task(&alloc)?;
        let mut seen = String::new();
        let finished = self.finish_task(task, |dir| {
            let log = dir.logs_dir().join(format!("{TASK}.stdout.0"));
            seen = std::fs::read_to_string(&log)
                .with_context(|| format!("reading {}", log.display()))?;
            Ok(())
        })?;
        if !finished.exit.succeeded() || seen.trim() != marker {
            bail!(
                "noded validation run failed: exit {:?}, stdout {seen:?} (expected {marker:?})",
                finished.exit
            );
        }
        let fail = job("bench-false", "/bin/false", &[])?;
        let alloc = self.allocation(&fail);
        let task = self.start_task(&alloc)?;
        let finished = self.finish_task(task, |_| Ok(()))?;
        if finished.exit.exit_code != 1 {
            bail!(
                "noded validation: /bin/false should exit 1, got {:?}",
                finished.exit
            );
        }
        Ok(())
    }
}
