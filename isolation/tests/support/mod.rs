//! Helpers for the privileged isolation tests: the verifier binary, cgroups and jail
//! directories that clean up after themselves, a private network namespace, a running task.
//!
//! Everything here panics loudly on a failed setup: that is a test failure, not a skip.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use isolation::caps::{CapabilitySet, DEFAULT_ALLOW};
use isolation::cgroup::{CgroupLayout, CgroupLimits, CgroupManager, TaskCgroup};
use isolation::sandbox::{
    spawn, Bind, Filesystem, NamespaceSpec, Rlimit, RlimitResource, RootfsSpec, SandboxChild,
    SandboxSpec, SeccompPolicy, Stdio,
};
use isolation::user::{lookup, ResolvedUser};
use serde_json::Value;

pub const VERIFY_IN_JAIL: &str = "/opt/noded/noded-verify";
pub const MIB: u64 = 1 << 20;

/// The verifier binary: `NODED_VERIFY_BIN`, else `noded-verify` next to this test's target dir.
pub fn verifier_bin() -> PathBuf {
    if let Ok(path) = std::env::var("NODED_VERIFY_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current_exe");
    for dir in exe.ancestors().skip(1).take(4) {
        let candidate = dir.join("noded-verify");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "noded-verify not found near {}: run `cargo build -p noded-tests --bins` first (with the same CARGO_TARGET_DIR), or set NODED_VERIFY_BIN",
        exe.display()
    );
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A parent cgroup for one test; everything under it is destroyed on drop, even on failure.
pub struct TestCgroups {
    pub manager: CgroupManager,
}

impl TestCgroups {
    pub fn new() -> TestCgroups {
        Self::with_layout(CgroupLayout::detect().expect("detect cgroups"))
    }

    pub fn with_layout(layout: CgroupLayout) -> TestCgroups {
        let manager =
            CgroupManager::new(layout, &unique("noded-test")).expect("create parent cgroup");
        TestCgroups { manager }
    }

    pub fn create(&self, limits: &CgroupLimits) -> TaskCgroup {
        self.manager
            .create(&unique("t"), limits)
            .expect("create task cgroup")
    }
}

impl Drop for TestCgroups {
    fn drop(&mut self) {
        for name in self.manager.list().unwrap_or_default() {
            if let Ok(Some(cg)) = self.manager.open(&name) {
                if let Err(e) = cg.destroy() {
                    eprintln!("cleanup: {e}");
                }
            }
        }
        if let Err(e) = self.manager.remove_parent() {
            eprintln!("cleanup: {e}");
        }
    }
}

pub fn limits(memory_mb: u64, pids: u64) -> CgroupLimits {
    CgroupLimits {
        memory_limit_bytes: memory_mb * MIB,
        memory_reservation_bytes: None,
        cpu_shares_mhz: 500,
        cpu_hard_limit: None,
        cpuset_cpus: None,
        pids_max: Some(pids),
    }
}

/// Host directories of one jail: staging dir and the task's writable dirs.
pub struct JailDirs {
    pub root: tempfile::TempDir,
}

impl JailDirs {
    pub fn new() -> JailDirs {
        let root = tempfile::Builder::new()
            .prefix("noded-jail-")
            .tempdir()
            .unwrap();
        for (dir, mode) in [
            ("staging", 0o755),
            ("alloc", 0o777),
            ("local", 0o777),
            ("secrets", 0o777),
            ("tmp", 0o1777),
        ] {
            let path = root.path().join(dir);
            std::fs::create_dir(&path).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        JailDirs { root }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    pub fn rootfs(&self) -> RootfsSpec {
        let mut rootfs = RootfsSpec::new(self.path("staging"));
        rootfs
            .ro_binds
            .push(Bind::new(verifier_bin(), VERIFY_IN_JAIL));
        for dir in ["alloc", "local", "secrets", "tmp"] {
            rootfs
                .rw_binds
                .push(Bind::new(self.path(dir), format!("/{dir}")));
        }
        rootfs
    }
}

pub fn nobody() -> ResolvedUser {
    lookup("nobody", Path::new("/etc")).expect("nobody in /etc/passwd")
}

/// The environment every test task gets.
pub fn task_env() -> Vec<(String, String)> {
    vec![
        ("PATH".to_string(), "/usr/bin:/bin".to_string()),
        ("TASK_MARK".to_string(), "42".to_string()),
    ]
}

pub fn task_spec(
    program: &str,
    args: &[&str],
    jail: &JailDirs,
    cgroup: Option<&TaskCgroup>,
) -> SandboxSpec {
    SandboxSpec {
        program: program.to_string(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: task_env(),
        work_dir: PathBuf::from("/local"),
        user: nobody(),
        filesystem: Filesystem::Jail(jail.rootfs()),
        namespaces: NamespaceSpec::isolated(),
        hostname: Some("task-host".to_string()),
        cgroup: cgroup.map(|c| c.join_handle().expect("join handle")),
        capabilities: DEFAULT_ALLOW,
        ambient_capabilities: CapabilitySet::EMPTY,
        rlimits: vec![Rlimit {
            resource: RlimitResource::Nofile,
            soft: 1024,
            hard: 4096,
        }],
        seccomp: SeccompPolicy::Default,
        stdin: Stdio::Null,
        stdout: Stdio::Null,
        stderr: Stdio::Null,
        go_ahead: None,
        init: false,
    }
}

pub fn pipe() -> (std::fs::File, OwnedFd) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    (std::fs::File::from(r), w)
}

/// Reads a pipe to its end on a thread of its own.
pub fn drain(mut file: std::fs::File) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        file.read_to_string(&mut s).unwrap();
        s
    })
}

/// Mount points at or under `dir` in this (the host's) mount namespace.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&prefix))
        .collect()
}

pub fn hex_mask(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().expect("hex string"), 16).expect("hex")
}

/// A network namespace of our own, alive while the guard lives (a thread that unshared).
pub struct TestNetns {
    pub path: PathBuf,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestNetns {
    pub fn new() -> TestNetns {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare netns");
            ready_tx.send(nix::unistd::gettid().as_raw()).unwrap();
            let _ = stop_rx.recv();
        });
        let tid = ready_rx.recv().unwrap();
        TestNetns {
            path: PathBuf::from(format!("/proc/{}/task/{tid}/ns/net", std::process::id())),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A task started with `spawn`, killed and reaped on drop (before its cgroup is destroyed,
/// as long as it is declared after the `TestCgroups`).
pub struct RunningTask {
    pub child: SandboxChild,
    reaped: bool,
}

impl RunningTask {
    pub fn start(spec: &SandboxSpec) -> RunningTask {
        RunningTask {
            child: spawn(spec).expect("spawn the task"),
            reaped: false,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.pid
    }

    pub fn is_running(&self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// SIGKILL and reap now.
    pub fn kill(&mut self) -> isolation::sandbox::ExitStatus {
        let _ = self.child.signal(libc::SIGKILL);
        self.reaped = true;
        self.child.wait().expect("wait for the task")
    }
}

impl Drop for RunningTask {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// One line of `noded-verify escape`.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub name: String,
    pub blocked: bool,
    pub tried: bool,
    pub detail: String,
}

pub fn parse_attempts(stdout: &str) -> Vec<Attempt> {
    stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            Attempt {
                name: v["name"].as_str().unwrap().to_string(),
                blocked: v["blocked"].as_bool().unwrap(),
                tried: v["tried"].as_bool().unwrap(),
                detail: v["detail"].as_str().unwrap().to_string(),
            }
        })
        .collect()
}

/// Hints for `noded-verify escape` (see its docs); the guards must outlive the run.
pub struct EscapeHints {
    pub marker: tempfile::NamedTempFile,
    pub listener: std::net::TcpListener,
    pub other_alloc: JailDirs,
}

impl EscapeHints {
    pub fn new() -> EscapeHints {
        EscapeHints {
            marker: tempfile::Builder::new()
                .prefix("noded-host-marker-")
                .tempfile_in("/var/tmp")
                .unwrap(),
            listener: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            other_alloc: JailDirs::new(),
        }
    }

    /// The variables to add to the environment of the escaping process.
    pub fn env(&self, base: &[(String, String)]) -> Vec<(String, String)> {
        let mut env = base.to_vec();
        let hints = [
            ("NODED_VERIFY_HOST_PID", std::process::id().to_string()),
            (
                "NODED_VERIFY_HOST_MARKER",
                self.marker.path().display().to_string(),
            ),
            (
                "NODED_VERIFY_HOST_TCP",
                self.listener.local_addr().unwrap().to_string(),
            ),
            (
                "NODED_VERIFY_OTHER_ALLOC",
                self.other_alloc.path("alloc").display().to_string(),
            ),
        ];
        let mut allowed: Vec<String> = base.iter().map(|(k, _)| k.clone()).collect();
        for (k, v) in hints {
            allowed.push(k.to_string());
            env.push((k.to_string(), v));
        }
        env.push(("NODED_VERIFY_ALLOWED_ENV".to_string(), allowed.join(",")));
        env
    }
}

/// The attempt names of the tables in `docs/threat-model.md` (rows starting with "| `name`").
pub fn documented_attempts() -> std::collections::BTreeSet<String> {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/threat-model.md");
    let text = std::fs::read_to_string(&doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_string()))
        .collect()
}
