//! The whole product for the rss bench: a real `noded agent -dev` (server, client and the
//! supervisor it starts) on a free loopback port, its temporary data dir and its cgroups named
//! after the bench run, driven through its HTTP API and CLI as an operator would.
//!
//! The agent is stopped by pid with SIGTERM (a dev agent stops its tasks, its supervisor
//! follows it and the data dir is removed); [`Agent::stop`] checks that nothing is left, and
//! the drop guard forces whatever remains away (agent, supervisor, task cgroups), also when a
//! step failed. Mounts under the bench dir are the [`super::workdir::BenchDir`] guard's.
//!
//! Owns this one agent's lifecycle only; must not touch other agents, their ports or cgroups,
//! or any host setting.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use controlplane::model::{AllocListStub, Node, NodeListStub, NodeStatus};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use noded::cli::http::{ApiClient, Endpoint};

/// How long the agent may take to answer `/v1/agent/health`.
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);
/// How long the agent may take to exit after SIGTERM (it stops every task first).
const EXIT_WITHIN: Duration = Duration::from_secs(60);
/// How long its supervisor may outlive it (it notices the agent's exit through a pidfd).
const SUPERVISOR_EXIT_WITHIN: Duration = Duration::from_secs(15);

/// A running `noded agent -dev`, stopped and cleaned up on drop.
#[derive(Debug)]
pub struct Agent {
    child: Option<Child>,
    pub pid: i32,
    noded: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    api: ApiClient,
    rt: tokio::runtime::Runtime,
    log: PathBuf,
    /// The cgroup every task cgroup is made under (this run's unique name).
    pub cgroup_parent: String,
    /// The agent's temporary data dir (inside the bench dir).
    pub data_dir: PathBuf,
    pub supervisor_pid: Option<i32>,
}

impl Agent {
    /// Starts `noded agent -dev` with its files in `dir` and task cgroups under
    /// `cgroup_parent`; returns once its HTTP API answers healthy.
    pub fn start(noded: &Path, dir: &Path, cgroup_parent: &str) -> anyhow::Result<Agent> {
        let port = free_port()?;
        let address = format!("http://127.0.0.1:{port}");
        let config = dir.join("agent.hcl");
        std::fs::write(
            &config,
            format!("client {{\n  cgroup_parent = \"{cgroup_parent}\"\n}}\n"),
        )
        .with_context(|| format!("writing {}", config.display()))?;
        // A dev agent without -data-dir makes a temporary one (and, being ephemeral, stops its
        // tasks and removes it on exit): TMPDIR puts it inside the bench dir.
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let log = dir.join("agent.log");
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let log_err = log_file
            .try_clone()
            .with_context(|| format!("duplicating the handle of {}", log.display()))?;
        // What the agent leaves behind when it exits (its supervisor, if it outlives it) is
        // re-parented to the nearest subreaper: make that this bench, which reaps it, rather
        // than this host's init, which does not.
        nix::sys::prctl::set_child_subreaper(true)
            .context("making the bench a child subreaper (prctl PR_SET_CHILD_SUBREAPER)")?;
        let mut cmd = Command::new(noded);
        cmd.args(["agent", "-dev", "-bind", "127.0.0.1", "-http-port"])
            .arg(port.to_string())
            .arg("-config")
            .arg(&config)
            .env("TMPDIR", &tmp)
            // Measured as shipped: the agent's own default log level, not the caller's.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log_file)
            // Same process group as the bench: a Ctrl-C at the terminal, which ends the bench
            // without running its guards, reaches the agent too, and it stops its tasks.
            .stderr(log_err);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} agent -dev", noded.display()))?;
        let pid = i32::try_from(child.id()).context("the agent's pid does not fit an i32")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a tokio runtime")?;
        let api = {
            let _entered = rt.enter();
            ApiClient::new(&Endpoint {
                address: address.clone(),
                namespace: "default".to_string(),
                ..Endpoint::default()
            })?
        };
        let mut agent = Agent {
            child: Some(child),
            pid,
            noded: noded.to_path_buf(),
            address,
            api,
            rt,
            log,
            cgroup_parent: cgroup_parent.to_string(),
            data_dir: PathBuf::new(),
            supervisor_pid: None,
        };
        agent.wait_healthy()?;
        let info = agent.get("/v1/agent/self")?;
        agent.data_dir = info["config"]["DataDir"]
            .as_str()
            .map(PathBuf::from)
            .with_context(|| format!("/v1/agent/self without config.DataDir: {info}"))?;
        if !agent.data_dir.starts_with(&tmp) {
            bail!(
                "the dev agent's data dir {} is not under {} (TMPDIR was not honoured)",
                agent.data_dir.display(),
                tmp.display()
            );
        }
        agent.supervisor_pid = info["client"]["SupervisorPid"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok());
        if agent.supervisor_pid.is_none() {
            bail!("/v1/agent/self names no client.SupervisorPid: is the client enabled? ({info})");
        }
        Ok(agent)
    }

    fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        loop {
            if self.get("/v1/agent/health").is_ok() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                bail!(
                    "the agent exited at start ({status}); its log:\n{}",
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the agent did not answer healthy at {} within {HEALTHY_WITHIN:?}; its log:\n{}",
                    self.address,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the agent's log (for error messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// GET `path` as JSON.
    pub fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.rt
            .block_on(self.api.get_now::<serde_json::Value>(path, &[]))
            .with_context(|| format!("GET {}{path}", self.address))
    }

    /// Waits for the agent's own node to be ready with a healthy `exec` driver.
    pub fn wait_ready_node(&self, within: Duration) -> anyhow::Result<Node> {
        let deadline = Instant::now() + within;
        loop {
            let nodes: Vec<NodeListStub> = serde_json::from_value(self.get("/v1/nodes")?)
                .context("reading the agent's /v1/nodes answer")?;
            if let Some(stub) = nodes.iter().find(|n| n.status == NodeStatus::Ready) {
                let path = format!("/v1/node/{}", stub.id);
                let node: Node = serde_json::from_value(self.get(&path)?)
                    .with_context(|| format!("reading the agent's {path} answer"))?;
                if node.has_driver("exec") {
                    return Ok(node);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "no ready node with a healthy exec driver at {} after {within:?} (nodes: {nodes:?}); agent log:\n{}",
                    self.address,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `noded job run -detach FILE` against this agent, as an operator submits a job.
    pub fn run_job(&self, file: &Path) -> anyhow::Result<()> {
        let output = Command::new(&self.noded)
            .args(["job", "run", "-detach"])
            .arg(file)
            .env("NODED_ADDR", &self.address)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} job run", self.noded.display()))?;
        if !output.status.success() {
            bail!(
                "noded job run -detach {} failed ({}):\n{}{}",
                file.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// The job's allocations as `/v1/job/ID/allocations` lists them.
    pub fn allocations(&self, job_id: &str) -> anyhow::Result<Vec<AllocListStub>> {
        let path = format!("/v1/job/{job_id}/allocations");
        serde_json::from_value(self.get(&path)?)
            .with_context(|| format!("reading the agent's {path} answer"))
    }

    /// Whether the server still knows the job (false once purged).
    pub fn job_exists(&self, job_id: &str) -> anyhow::Result<bool> {
        match self.rt.block_on(
            self.api
                .get_now::<serde_json::Value>(&format!("/v1/job/{job_id}"), &[]),
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e).with_context(|| format!("GET {}/v1/job/{job_id}", self.address)),
        }
    }

    /// `DELETE /v1/job/ID` (`job stop`, or `job stop -purge`).
    pub fn stop_job(&self, job_id: &str, purge: bool) -> anyhow::Result<()> {
        let query = [("purge", purge.to_string())];
        self.rt
            .block_on(
                self.api
                    .delete::<serde_json::Value>(&format!("/v1/job/{job_id}"), &query),
            )
            .with_context(|| format!("DELETE {}/v1/job/{job_id}?purge={purge}", self.address))?;
        Ok(())
    }

    /// Stops the agent with SIGTERM and checks that it left nothing behind: the agent and its
    /// supervisor gone, no task cgroup, no data dir.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        kill(Pid::from_raw(self.pid), Signal::SIGTERM)
            .with_context(|| format!("sending SIGTERM to the agent (pid {})", self.pid))?;
        let deadline = Instant::now() + EXIT_WITHIN;
        let status = loop {
            if let Some(status) = child.try_wait().context("waiting for the agent")? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the agent (pid {}) did not exit within {EXIT_WITHIN:?} of SIGTERM and was killed; its log:\n{}",
                    self.pid,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if !status.success() {
            bail!(
                "the agent exited with {status} after SIGTERM; its log:\n{}",
                self.log_tail()
            );
        }
        if let Some(pid) = self.supervisor_pid {
            if !wait_gone(pid, SUPERVISOR_EXIT_WITHIN) {
                bail!("the supervisor (pid {pid}) still runs {SUPERVISOR_EXIT_WITHIN:?} after its dev agent exited");
            }
            self.supervisor_pid = None;
        }
        let cgroups = cgroups_named(&self.cgroup_parent);
        if !cgroups.is_empty() {
            bail!("task cgroups left after the agent exited: {cgroups:?}");
        }
        if self.data_dir.exists() {
            bail!(
                "the dev agent's data dir {} is left after it exited",
                self.data_dir.display()
            );
        }
        Ok(())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGTERM);
            let deadline = Instant::now() + EXIT_WITHIN;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(child.try_wait(), Ok(None)) {
                eprintln!(
                    "warning: the agent (pid {}) ignored SIGTERM; killing it",
                    self.pid
                );
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // The supervisor was started by this agent, hence by this bench: end it by its pid.
        if let Some(pid) = self.supervisor_pid.take() {
            if !wait_gone(pid, SUPERVISOR_EXIT_WITHIN) {
                eprintln!("warning: the supervisor (pid {pid}) outlived its agent; stopping it");
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                if !wait_gone(pid, Duration::from_secs(10)) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        // Task cgroups left by a failed run: what runs in them is killed, then they go.
        if !cgroups_named(&self.cgroup_parent).is_empty() {
            eprintln!(
                "warning: removing task cgroups left under {}",
                self.cgroup_parent
            );
            super::workdir::remove_cgroups_named(&self.cgroup_parent);
        }
    }
}

/// A port on 127.0.0.1 that nothing listens on now.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener
        .local_addr()
        .context("reading the free port's address")?
        .port())
}

/// Whether `pid` is alive: it exists and is not a zombie. A zombie that became this bench's
/// child (the agent's orphaned supervisor, the bench being a subreaper) is reaped here.
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which may hold spaces and parentheses.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z") | Some("X")) {
        // Fails harmlessly (ECHILD) when the zombie is not ours.
        let _ = nix::sys::wait::waitpid(
            Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
        return false;
    }
    true
}

/// Waits until `pid` has exited; false if it is still alive after `within`.
fn wait_gone(pid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Directories named `name` directly under each mounted cgroup hierarchy.
pub fn cgroups_named(name: &str) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            if !matches!(fields.get(sep + 1), Some(&"cgroup") | Some(&"cgroup2")) {
                return None;
            }
            let mount = isolation::mount::unescape_mountinfo(fields.get(4)?);
            Some(mount.join(name))
        })
        .filter(|dir| dir.is_dir())
        .collect()
}
