//! # noded-tests
//!
//! End-to-end test harness: real `noded` agents as separate processes, each inside a network
//! namespace the test creates (one per simulated host), talked to over HTTP from a thread that
//! has entered that namespace. Everything a test creates — namespaces, agents, cgroups, data
//! dirs — is removed when its guard drops, also when the test fails.
//!
//! Must not touch the root namespace's network: agents listen on loopback inside their own
//! namespace, or on a test-owned bridge ([`cluster::Lan`]) for multi-host tests.

// A test harness: failing loudly with the reason is its whole job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use isolation::privileged::require_root;

pub mod client_checks;
pub mod cluster;
pub mod threat_model;
pub use cluster::{
    client_certificate, client_config, server_and_client_config, server_certificates,
    server_config, start_servers, ClusterAgent, EchoServer, Host, Lan, TcpFlow, TlsPaths, UdpFlow,
};
pub use threat_model::{documented_escape_attempts, DocumentedAttempt};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this test run: `noded-test-<pid>-<n>-<what>`.
pub fn unique_name(what: &str) -> String {
    format!(
        "noded-test-{}-{}-{what}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// `target/<profile>`, where the workspace's binaries are.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let mut dir = exe.parent().expect("test executable dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path of a workspace binary, with a message saying how to build it when it is missing.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`; `cargo xtask test` does)",
        path.display()
    );
    path
}

/// A network namespace (`ip netns add`), with loopback up; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(what: &str) -> Netns {
        sweep_stale_runs();
        let name = unique_name(what);
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        run_ok(
            Command::new("nsenter")
                .arg(format!("--net={}", ns.path().display()))
                .args(["ip", "link", "set", "lo", "up"]),
        );
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `f` on a thread that has entered this namespace (sockets it opens live there).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("setns into the test netns");
            f()
        })
        .join()
        .expect("netns thread panicked")
    }
}

/// The pid of the test process that created `name` (`noded-test-<pid>-…`), if that process is
/// gone: whatever it created is nobody's any more.
fn dead_test_pid(name: &str) -> Option<i32> {
    let pid = name
        .strip_prefix("noded-test-")
        .and_then(|rest| rest.split('-').next())
        .and_then(|p| p.parse::<i32>().ok())?;
    (!Path::new("/proc").join(pid.to_string()).exists()).then_some(pid)
}

/// Removes what test processes killed by SIGKILL left behind (they never ran their drops):
/// the processes still running in their namespaces (agents, supervisors, tasks), the
/// namespaces (with their veths and bridges), their cgroups and their temp dirs. Only names
/// `noded-test-<pid>-…` whose pid no longer exists are touched, so parallel runs are safe.
fn sweep_stale_runs() {
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if dead_test_pid(&name).is_some() {
                kill_processes_in_netns(&entry.path());
                // Parallel tests sweep too: losing the race to delete it is fine.
                let _ = Command::new("ip").args(["netns", "delete", &name]).output();
            }
        }
    }
    for root in cgroup_roots() {
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if dead_test_pid(&name).is_some() {
                    remove_cgroup_tree(&entry.path());
                }
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if dead_test_pid(&name).is_some() {
                remove_dir_with_mounts(&entry.path());
            }
        }
    }
}

/// Pids of the processes whose network namespace is the one bound at `ns_path` (compared by
/// the namespace's inode). Never this process: a test thread that entered the namespace is
/// not the process's own namespace, and the harness must not kill itself.
pub fn processes_in_netns(ns_path: &Path) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(ns_path) else {
        return Vec::new();
    };
    let wanted = format!("net:[{}]", meta.ino());
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|&pid| pid != me && pid > 1)
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|link| link.as_os_str() == wanted.as_str())
        })
        .collect()
}

/// SIGKILLs every process in the namespace at `ns_path` and waits (bounded) until none is
/// left: only then does deleting the namespace free it and its interfaces.
fn kill_processes_in_netns(ns_path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = processes_in_netns(ns_path);
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // The guards of what runs inside (agents, supervisors) have stopped it gracefully by
        // now; anything still inside is a leftover, and would keep the namespace alive.
        kill_processes_in_netns(&self.path());
        // A process that died just now may still hold a mount namespace with a copy of the
        // /run/netns bind mount until it is reaped, and unlinking a mount point another mount
        // namespace uses fails with EBUSY: try again for a while.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("ip")
                .args(["netns", "delete", &self.name])
                .output();
            if !self.path().exists() {
                return;
            }
            if Instant::now() > deadline {
                let why = out
                    .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    .unwrap_or_else(|e| e.to_string());
                let _ = writeln!(
                    std::io::stderr(),
                    "WARNING: namespace {} not deleted: {why}",
                    self.name
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn run_ok(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An HTTP answer.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client (one request per connection), enough for the agent's API.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> std::io::Result<HttpResponse> {
    http_with_timeout(addr, method, path, body, Duration::from_secs(60))
}

/// [`http`] where connecting, and each read and write, give up after `timeout`: for agents
/// that may be paused or cut off, where a plain connect or read would hang.
pub fn http_with_timeout(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> std::io::Result<HttpResponse> {
    let target = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{addr}: no address")))?;
    let mut stream = TcpStream::connect_timeout(&target, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let body = body.unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let end = (start + size).min(data.len());
        out.extend_from_slice(&data[start..end]);
        data = data.get(end + 2..).unwrap_or_default();
    }
    out
}

/// Options for a dev agent under test.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// Extra `client { chroot_env }` entries (host dir → task dir), on top of the defaults.
    pub extra_chroot: Vec<(PathBuf, PathBuf)>,
    /// Extra agent config HCL appended as is.
    pub extra_config: String,
    /// Keep state in a data dir that outlives the agent (`-data-dir`): tasks survive agent
    /// restarts. Without it the dev agent uses a temporary dir and stops its tasks on exit.
    pub persistent: bool,
}

/// A `noded agent -dev` in its own network namespace.
#[derive(Debug)]
pub struct DevAgent {
    pub netns: Netns,
    child: Option<Child>,
    pub cgroup_parent: String,
    pub addr: String,
    pub log: PathBuf,
    pub data_dir: PathBuf,
    config_dir: PathBuf,
    config_path: PathBuf,
    persistent_dir: Option<PathBuf>,
    /// The supervisor the agent started (it outlives a persistent agent).
    pub supervisor_pid: Option<i32>,
}

pub const DEFAULT_CHROOT: [&str; 7] = ["/bin", "/etc", "/lib", "/lib32", "/lib64", "/sbin", "/usr"];

impl DevAgent {
    pub fn start(opts: AgentOptions) -> DevAgent {
        let netns = Netns::create("host");
        let cgroup_parent = unique_name("cg");
        let config_dir = std::env::temp_dir().join(unique_name("cfg"));
        std::fs::create_dir_all(&config_dir).expect("config dir");
        let mut chroot = String::new();
        for d in DEFAULT_CHROOT {
            if Path::new(d).exists() {
                chroot.push_str(&format!("    \"{d}\" = \"{d}\"\n"));
            }
        }
        for (host, task) in &opts.extra_chroot {
            chroot.push_str(&format!(
                "    \"{}\" = \"{}\"\n",
                host.display(),
                task.display()
            ));
        }
        let config = format!(
            "client {{\n  cgroup_parent = \"{cgroup_parent}\"\n  chroot_env = {{\n{chroot}  }}\n}}\n{}\n",
            opts.extra_config
        );
        let config_path = config_dir.join("agent.hcl");
        std::fs::write(&config_path, config).expect("write agent config");
        let persistent_dir = opts.persistent.then(|| config_dir.join("data"));
        let mut agent = DevAgent {
            netns,
            child: None,
            cgroup_parent,
            addr: "127.0.0.1:4646".to_string(),
            log: config_dir.join("agent.log"),
            data_dir: PathBuf::new(),
            config_dir,
            config_path,
            persistent_dir,
            supervisor_pid: None,
        };
        agent.launch();
        agent
    }

    /// Starts the agent process (again) and waits until it is healthy.
    pub fn launch(&mut self) {
        let mut args: Vec<std::ffi::OsString> =
            vec!["agent".into(), "-dev".into(), "-config".into()];
        args.push(self.config_path.clone().into_os_string());
        if let Some(dir) = &self.persistent_dir {
            args.push("-data-dir".into());
            args.push(dir.clone().into_os_string());
        }
        let child = spawn_in_netns(
            &self.netns.path(),
            &binary("noded"),
            &args,
            &[
                ("RUST_LOG", "info,openraft=warn"),
                ("NODED_TEST_AGENT_SECRET", "must-not-leak"),
            ],
            &self.log,
        );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.get("/v1/agent/health") {
                if r.status == 200 {
                    break;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("the agent exited at start ({status}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not become healthy in 30s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let info = self.get("/v1/agent/self").expect("agent self").json();
        self.data_dir = PathBuf::from(info["config"]["DataDir"].as_str().expect("DataDir"));
        self.supervisor_pid = info["client"]["SupervisorPid"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok());
    }

    /// Kills the agent process with SIGKILL (as a crash or `kill -9` would) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> std::io::Result<HttpResponse> {
        let addr = self.addr.clone();
        let method = method.to_string();
        let path = path.to_string();
        self.netns
            .run(move || http(&addr, &method, &path, body.as_deref()))
    }

    pub fn get(&self, path: &str) -> std::io::Result<HttpResponse> {
        self.request("GET", path, None)
    }

    /// Runs the `noded` CLI against this agent.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli_in_netns(&self.netns.path(), &self.addr, args)
    }

    /// Polls `f` until it returns `Some` (or panics after `timeout` with `what`).
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&DevAgent) -> Option<T>,
    ) -> T {
        poll_until(what, timeout, || f(self), || self.log_text())
    }

    /// Host paths of the task cgroups under this agent's parent, on every hierarchy.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        cgroup_dirs(&self.cgroup_parent)
    }

    /// Mounts whose path is under this agent's data dir.
    pub fn mounts(&self) -> Vec<String> {
        mounts_under(&self.data_dir)
    }

    /// Stops the agent (SIGTERM, then SIGKILL after 30s) and waits for it.
    pub fn stop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(30));
        // A dev agent's supervisor exits after the agent (it watches its parent); give it a
        // moment. A persistent agent's supervisor stays, by design.
        if self.persistent_dir.is_none() {
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && !self.cgroup_dirs().is_empty() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for DevAgent {
    fn drop(&mut self) {
        self.stop();
        // A persistent agent's supervisor keeps running (that is its point): SIGTERM makes it
        // stop its tasks and remove their cgroups.
        if self.persistent_dir.is_some() {
            if let Some(pid) = self.supervisor_pid.take() {
                stop_supervisor(pid);
            }
        }
        remove_agent_leftovers(&self.cgroup_parent, &self.data_dir);
        let _ = std::fs::remove_dir_all(&self.config_dir);
    }
}

// ---- what DevAgent and ClusterAgent share: processes in a namespace, and their cleanup ----

/// Starts `program args` inside the network namespace bound at `ns_path`, stdout and stderr
/// appended to `log`. `nsenter` rather than `ip netns exec`, which remounts /sys and hides
/// the cgroup tree the agent needs; without `--fork`, nsenter execs the program, so the
/// child's pid is the program's (signals reach it, not a wrapper). `RUST_LOG` is removed
/// unless `env` sets it, so the agent's own `log_level` decides.
pub fn spawn_in_netns(
    ns_path: &Path,
    program: &Path,
    args: &[std::ffi::OsString],
    env: &[(&str, &str)],
    log: &Path,
) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("opening the log {}: {e}", log.display()));
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", ns_path.display()))
        .arg("--")
        .arg(program)
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log fd"))
        .stderr(log_file);
    cmd.spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"))
}

/// Runs the `noded` CLI inside the namespace at `ns_path` against the agent at `addr`
/// (`host:port`), through `NODED_ADDR` (what `-address` sets) so that `args` stay exactly
/// as a user would type them.
pub fn cli_in_netns(ns_path: &Path, addr: &str, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net={}", ns_path.display()))
        .arg("--")
        .arg(binary("noded"))
        .args(args)
        .env("NODED_ADDR", format!("http://{addr}"))
        .output()
        .expect("run noded CLI")
}

/// Polls `f` every 100 ms until it returns `Some`; after `timeout`, panics naming `what`
/// with `context()` (an agent's log) attached.
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; agent log:\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM, then SIGKILL once `grace` has passed; waits for the process either way. A
/// paused (SIGSTOPped) process also gets SIGCONT, or SIGTERM would stay pending forever.
pub fn terminate(child: &mut Option<Child>, grace: Duration) {
    let Some(mut child) = child.take() else {
        return;
    };
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
    let deadline = Instant::now() + grace;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERMs a task supervisor an agent reported (which stops its tasks and removes their
/// cgroups) and waits up to 20 s for it. The pid is checked to still be a supervisor first:
/// after a long test it may have been reused by an unrelated process.
pub fn stop_supervisor(pid: i32) {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmdline).contains("supervisor") {
        return;
    }
    let target = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && PathBuf::from(format!("/proc/{pid}")).exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The roots of every cgroup hierarchy: each v1 controller's mount and the v2 tree.
fn cgroup_roots() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    out.push(PathBuf::from("/sys/fs/cgroup"));
    out
}

/// Host paths of the cgroups named `parent`, on every hierarchy.
pub fn cgroup_dirs(parent: &str) -> Vec<PathBuf> {
    if parent.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for root in cgroup_roots() {
        let p = root.join(parent);
        if p.exists() && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Mount lines (from /proc/self/mountinfo) whose path is under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| !dir.is_empty() && l.contains(&dir))
        .map(str::to_string)
        .collect()
}

/// Kills what is left in a cgroup tree, deepest cgroups first, then removes the directories.
fn remove_cgroup_tree(dir: &Path) {
    let mut dirs: Vec<PathBuf> = walk_dirs(dir);
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in &dirs {
        if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
            for pid in procs
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    for d in &dirs {
        let _ = std::fs::remove_dir(d);
    }
}

/// Detaches every mount under `dir`, then removes `dir` — but only when no mount is left
/// under it: removing through a bind mount of /bin would delete the host's files.
pub(crate) fn remove_dir_with_mounts(dir: &Path) {
    for line in mounts_under(dir) {
        if let Some(mount_point) = line.split(' ').nth(4) {
            let _ = nix::mount::umount2(mount_point, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    if mounts_under(dir).is_empty() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// After an agent has stopped: removes whatever it left (task cgroups under
/// `cgroup_parent`, mounts under `data_dir`, and `data_dir` itself when it is a temp dir),
/// so a failed test does not break the next run.
pub fn remove_agent_leftovers(cgroup_parent: &str, data_dir: &Path) {
    for dir in cgroup_dirs(cgroup_parent) {
        remove_cgroup_tree(&dir);
    }
    if !data_dir.as_os_str().is_empty() && data_dir.starts_with(std::env::temp_dir()) {
        remove_dir_with_mounts(data_dir);
    } else {
        for line in mounts_under(data_dir) {
            if let Some(mount_point) = line.split(' ').nth(4) {
                let _ = nix::mount::umount2(mount_point, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

fn walk_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(walk_dirs(&e.path()));
            }
        }
    }
    out
}

// ---- helpers for jobs, allocations and task events ----

use serde_json::Value;

/// A directory of the test's own, removed on drop (also when the test fails).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn create(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(unique_name(what));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A directory holding only the verifier, bound into tasks at /verify.
pub fn verifier_dir() -> TempDir {
    let dir = TempDir::create("verify");
    std::fs::copy(binary("noded-verify"), dir.join("noded-verify")).unwrap();
    dir
}

pub fn agent_with_verifier() -> (DevAgent, TempDir) {
    let dir = verifier_dir();
    let agent = DevAgent::start(AgentOptions {
        extra_chroot: vec![(dir.to_path_buf(), PathBuf::from("/verify"))],
        ..Default::default()
    });
    (agent, dir)
}

/// Writes a job file into the agent's own config dir, which goes with the agent.
pub fn write_job(agent: &DevAgent, name: &str, text: &str) -> PathBuf {
    let path = agent.config_dir.join(format!("{}.hcl", unique_name(name)));
    std::fs::write(&path, text).unwrap();
    path
}

pub fn allocs_of(agent: &DevAgent, job: &str) -> Vec<Value> {
    let r = agent.get(&format!("/v1/job/{job}/allocations")).unwrap();
    r.json().as_array().cloned().unwrap_or_default()
}

pub fn alloc(agent: &DevAgent, id: &str) -> Value {
    agent.get(&format!("/v1/allocation/{id}")).unwrap().json()
}

pub fn first_alloc_with_status(agent: &DevAgent, job: &str, statuses: &[&str]) -> Value {
    agent.wait_for(
        &format!("an allocation of {job} in {statuses:?}"),
        Duration::from_secs(60),
        |a| {
            allocs_of(a, job)
                .into_iter()
                .find(|x| statuses.contains(&x["ClientStatus"].as_str().unwrap_or("")))
        },
    )
}

pub fn logs(agent: &DevAgent, alloc_id: &str, task: &str, stream: &str) -> String {
    agent
        .get(&format!(
            "/v1/client/fs/logs/{alloc_id}?task={task}&type={stream}&plain=true"
        ))
        .unwrap()
        .text()
}

pub fn events(alloc: &Value, task: &str) -> Vec<(String, String)> {
    alloc["TaskStates"][task]["Events"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|e| {
                    (
                        e["Type"].as_str().unwrap_or("").to_string(),
                        e["DisplayMessage"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
