//! The wire between the node daemon and the task supervisor: one JSON request and one JSON
//! answer per connection on a unix socket, each a single line.
//!
//! A versioned boundary: the supervisor outlives node daemon upgrades, so an old supervisor may
//! talk to a new daemon. Fields are only added (with defaults); `Hello` reports the version.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Bumped when a change is not backwards compatible.
pub const PROTOCOL_VERSION: u32 = 1;
/// The `step` of the error `Stats` answers for a task that has exited (its cgroup is gone).
pub const STEP_EXITED: &str = "exited";
/// Largest request or answer line accepted.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Frames one message (a [`Request`] or a [`Response`]) as it goes on the socket: compact JSON,
/// then a newline. The one encoder of the protocol, used by both ends.
pub fn encode_line<T: Serialize>(message: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut line = serde_json::to_vec(message)?;
    line.push(b'\n');
    Ok(line)
}

/// Reads one framed message, as [`encode_line`] writes it (the trailing newline is optional).
pub fn decode_line<T: serde::de::DeserializeOwned>(line: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(line)
}

/// How much of the host a task sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IsolationMode {
    /// `exec`: namespaces, a pivot_root jail of read-only bind mounts, dropped privileges.
    Jail {
        /// Host path → path inside the task, bound read-only.
        chroot_env: Vec<(PathBuf, PathBuf)>,
        /// Capabilities the task keeps (lower-case names without `cap_`).
        capabilities: Vec<String>,
        /// `"default"`, `"unconfined"` or a profile path.
        seccomp: String,
        /// Share the host's pid / ipc namespace (`pid_mode`/`ipc_mode = "host"`).
        host_pid: bool,
        host_ipc: bool,
        /// The task's `/local` is read-only too (`readonly_rootfs`).
        #[serde(default)]
        readonly_rootfs: bool,
        /// The task itself is PID 1 of its pid namespace (`init = false`), without the
        /// small init that forwards signals and reaps (written only when set, so launches
        /// read the same as before).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        no_init: bool,
    },
    /// `raw_exec`: the host's filesystem; still a cgroup that tracks, limits and kills.
    Host,
}

/// Resource limits for the task's cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TaskLimits {
    pub memory_mb: u64,
    /// Hard limit when oversubscribing (`memory_max`); 0 = same as `memory_mb`.
    pub memory_max_mb: u64,
    pub cpu_mhz: u64,
    pub pids_max: u64,
    /// Cores reserved for the task alone (its cpuset); empty = no pinning.
    #[serde(default)]
    pub cpuset: Vec<u32>,
    /// CFS quota per 100 ms period, in microseconds (0 = no hard cap).
    #[serde(default)]
    pub cpu_quota_us: u64,
    /// For a task without reserved cores: the node's shared cores it starts on (every core no
    /// allocation reserved); later changes arrive as [`Request::SetCpuset`]. Ignored when
    /// `cpuset` is set; empty = the cgroup parent's cpus, never changed afterwards.
    #[serde(default)]
    pub shared_cpuset: Vec<u32>,
}

/// Where and how a task's output is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSettings {
    /// Directory of the log files (`<alloc>/alloc/logs`).
    pub dir: PathBuf,
    /// File name prefix: `<task>` gives `<task>.stdout.0`.
    pub prefix: String,
    pub max_files: u32,
    pub max_file_size_bytes: u64,
}

/// The allocation's network, as a task joins it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LaunchNetwork {
    /// The network namespace to join (`/run/netns/…`); `None` stays in the supervisor's.
    #[serde(default)]
    pub namespace: Option<PathBuf>,
    /// The task's UTS hostname (`jail` only: it has a UTS namespace of its own).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Host files bound read-only at `/etc/hosts` and `/etc/resolv.conf` (`jail` only).
    #[serde(default)]
    pub hosts_file: Option<PathBuf>,
    #[serde(default)]
    pub resolv_conf_file: Option<PathBuf>,
}

/// Everything needed to start one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLaunch {
    /// Unique per task run slot: `<alloc id>.<task name>`; also names its cgroup.
    pub task_id: String,
    pub command: String,
    pub args: Vec<String>,
    /// The task's complete environment (nothing else is inherited).
    pub env: BTreeMap<String, String>,
    /// User name or uid; empty = the driver's default.
    pub user: String,
    /// Working directory inside the task; empty = `/` (jail) or the task dir (host).
    pub work_dir: String,
    /// Host path of the allocation's shared dir (`/alloc` inside).
    pub alloc_dir: PathBuf,
    /// Host path of the task's dir: `local/`, `secrets/`, `tmp/` (`/local`, `/secrets`, `/tmp`).
    pub task_dir: PathBuf,
    pub limits: TaskLimits,
    pub logs: LogSettings,
    pub isolation: IsolationMode,
    /// For a non-root user: capabilities kept across exec (ambient), a subset of the jail's.
    #[serde(default)]
    pub ambient_capabilities: Vec<String>,
    /// Resource limits: name (`nofile`, …), soft, hard.
    #[serde(default)]
    pub rlimits: Vec<(String, u64, u64)>,
    /// The allocation's network namespace, hostname and `/etc` files; `None`: the host's
    /// network (written only when set, so launches in host mode read the same as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<LaunchNetwork>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Hello,

    Start {
        launch: Box<TaskLaunch>,
    },
    /// Answers when the task has exited (at once if it already has).
    Wait {
        task_id: String,
    },
    Signal {
        task_id: String,
        signal: i32,
    },
    /// Sends `signal`, then SIGKILL to everything in the task's cgroup after `grace_ms`.
    Kill {
        task_id: String,
        signal: i32,
        grace_ms: u64,
    },
    /// Forgets an exited task and removes its cgroup.
    Remove {
        task_id: String,
    },
    List,
    Stats {
        task_id: String,
    },
    /// Runs `command` inside the task (`alloc exec`). The answer is `ExecStarted`, carrying
    /// the session's fds with SCM_RIGHTS: the pty master (`tty`) or stdin, stdout, stderr.
    Exec {
        task_id: String,
        command: Vec<String>,
        tty: bool,
    },
    ExecResize {
        exec_id: String,
        rows: u16,
        cols: u16,
    },
    /// Answers when the exec'd process has exited.
    ExecWait {
        exec_id: String,
    },
    /// Moves a running task onto `cpus` (its cgroup's `cpuset.cpus`): how tasks without
    /// reserved cores are kept off cores reserved for others. `cpus` must not be empty.
    SetCpuset {
        task_id: String,
        cpus: Vec<u32>,
    },
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExitInfo {
    pub exit_code: i32,
    /// The signal that ended it, 0 if it exited.
    pub signal: i32,
    pub oom_killed: bool,
    /// Unix nanoseconds.
    pub finished_at: i64,
}

impl ExitInfo {
    pub fn succeeded(&self) -> bool {
        self.exit_code == 0 && self.signal == 0 && !self.oom_killed
    }
}

/// A task the supervisor knows, for reattaching after a node daemon restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub task_id: String,
    pub pid: i32,
    /// Unix nanoseconds.
    pub started_at: i64,
    pub exit: Option<ExitInfo>,
}

/// Resource usage, in the units Nomad's `ResourceUsage` reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct TaskStats {
    pub cpu_total_ns: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub throttled_periods: u64,
    pub throttled_time_ns: u64,
    pub memory_rss_bytes: u64,
    pub memory_cache_bytes: u64,
    pub memory_usage_bytes: u64,
    pub memory_max_usage_bytes: u64,
    pub pids: u64,
    /// Unix nanoseconds.
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Hello {
        version: u32,
        pid: i32,
    },
    Started {
        pid: i32,
        started_at: i64,
    },
    Exited {
        exit: ExitInfo,
    },
    Ok,
    Tasks {
        tasks: Vec<TaskStatus>,
    },
    Stats {
        stats: TaskStats,
    },
    /// `fds` descriptors ride along with this answer (SCM_RIGHTS).
    ExecStarted {
        exec_id: String,
        pid: i32,
        fds: u32,
    },
    /// `step` names the sandbox step that failed (e.g. "exec", "pivot_root"), when one did.
    Error {
        step: Option<String>,
        message: String,
        /// Trying again cannot help: the request itself is wrong for this node (a user,
        /// capability or seccomp profile it refuses, a program or working directory that is
        /// not there). A task that failed to start so is not restarted.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        permanent: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_single_json_lines_tagged_by_op() {
        let line = serde_json::to_string(&Request::Signal {
            task_id: "a.t".into(),
            signal: 15,
        })
        .unwrap();
        assert_eq!(line, r#"{"op":"signal","task_id":"a.t","signal":15}"#);
        let back: Request = serde_json::from_str(&line).unwrap();
        assert_eq!(
            back,
            Request::Signal {
                task_id: "a.t".into(),
                signal: 15
            }
        );
        let set = serde_json::to_string(&Request::SetCpuset {
            task_id: "a.t".into(),
            cpus: vec![1, 2],
        })
        .unwrap();
        assert_eq!(set, r#"{"op":"set_cpuset","task_id":"a.t","cpus":[1,2]}"#);
        let err = serde_json::to_string(&Response::Error {
            step: Some("exec".into()),
            message: "x".into(),
            permanent: false,
        })
        .unwrap();
        assert!(!err.contains('\n'));
        // `permanent` is written only when set, and an answer without it (from a supervisor
        // that predates it) reads as a failure worth retrying.
        assert!(!err.contains("permanent"));
        let old: Response =
            serde_json::from_str(r#"{"result":"error","step":"exec","message":"x"}"#).unwrap();
        assert!(matches!(
            old,
            Response::Error {
                permanent: false,
                ..
            }
        ));
        let permanent = serde_json::to_string(&Response::Error {
            step: None,
            message: "x".into(),
            permanent: true,
        })
        .unwrap();
        assert!(permanent.contains(r#""permanent":true"#), "{permanent}");
    }

    #[test]
    fn launches_from_an_older_daemon_still_parse() {
        // Written before `shared_cpuset` existed (and before `cpuset`/`cpu_quota_us`).
        let limits: TaskLimits = serde_json::from_str(
            r#"{"memory_mb":64,"memory_max_mb":0,"cpu_mhz":100,"pids_max":10}"#,
        )
        .unwrap();
        assert!(limits.shared_cpuset.is_empty());
        assert!(limits.cpuset.is_empty());
        // And an older supervisor reading a newer launch ignores the field it does not know.
        #[derive(Deserialize)]
        struct OldLimits {
            memory_mb: u64,
        }
        let new = TaskLimits {
            memory_mb: 64,
            shared_cpuset: vec![1],
            ..Default::default()
        };
        let old: OldLimits = serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
        assert_eq!(old.memory_mb, 64);
    }
}
