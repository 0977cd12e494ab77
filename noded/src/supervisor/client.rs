//! The node daemon's side of the supervisor socket: send one request, read one answer, and
//! start the supervisor when none is listening.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::protocol::{
    decode_line, encode_line, Request, Response, MAX_MESSAGE_BYTES, PROTOCOL_VERSION,
};

/// How long a supervisor just started has to answer on its socket before the start fails.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a supervisor just started is asked whether it answers.
const START_POLL: Duration = Duration::from_millis(10);
/// Longest wait for the answer to an `Exec` (the session's start), on a blocking socket.
const EXEC_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SupervisorClientError {
    #[error("cannot reach the task supervisor at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to the task supervisor at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the task supervisor at {path} answered something unreadable: {detail}")]
    Protocol { path: PathBuf, detail: String },
    #[error("{0}")]
    Refused(String),
    #[error("starting the task supervisor ({exe}): {detail}")]
    Spawn { exe: PathBuf, detail: String },
}

/// A handle on the supervisor's socket.
#[derive(Debug, Clone)]
pub struct SupervisorClient {
    socket: PathBuf,
    /// How [`SupervisorClient::ensure_running`] started the supervisor: set, a call that finds
    /// nobody listening starts a new one (see [`SupervisorClient::call`]).
    launch: Arc<OnceLock<Launch>>,
    /// One start at a time: two would race for the socket.
    starting: Arc<tokio::sync::Mutex<()>>,
    /// The pid of the supervisor last found or started; 0 before that.
    pid: Arc<AtomicI32>,
}

#[derive(Debug, Clone)]
struct Launch {
    exe: PathBuf,
    state_dir: PathBuf,
    cgroup_parent: String,
    exit_with_parent: bool,
}

impl SupervisorClient {
    pub fn new(socket: PathBuf) -> SupervisorClient {
        SupervisorClient {
            socket,
            launch: Arc::new(OnceLock::new()),
            starting: Arc::new(tokio::sync::Mutex::new(())),
            pid: Arc::new(AtomicI32::new(0)),
        }
    }

    /// The pid of the supervisor [`SupervisorClient::ensure_running`] found or started (the
    /// replacement, after one died).
    pub fn pid(&self) -> Option<i32> {
        match self.pid.load(Ordering::Relaxed) {
            0 => None,
            pid => Some(pid),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// One request, one answer. When nobody listens on the socket (the supervisor died: it
    /// was killed, crashed or was OOM-killed) and this client started one before, a new
    /// supervisor is started and the request sent to it. The new one stops the tasks the
    /// old one left (their output went with it); their runners see them lost and restart
    /// them by their restart policy.
    pub async fn call(&self, request: &Request) -> Result<Response, SupervisorClientError> {
        match self.call_once(request).await {
            Err(SupervisorClientError::Connect { source, .. }) if nobody_listens(&source) => {
                let Some(launch) = self.launch.get().cloned() else {
                    return Err(SupervisorClientError::Connect {
                        path: self.socket.clone(),
                        source,
                    });
                };
                self.start_if_gone(&launch).await?;
                self.call_once(request).await
            }
            other => other,
        }
    }

    async fn call_once(&self, request: &Request) -> Result<Response, SupervisorClientError> {
        let io = |source| SupervisorClientError::Io {
            path: self.socket.clone(),
            source,
        };
        let stream = UnixStream::connect(&self.socket).await.map_err(|source| {
            SupervisorClientError::Connect {
                path: self.socket.clone(),
                source,
            }
        })?;
        let (read, mut write) = stream.into_split();
        let line = encode_line(request).map_err(|e| SupervisorClientError::Protocol {
            path: self.socket.clone(),
            detail: e.to_string(),
        })?;
        write.write_all(&line).await.map_err(io)?;
        write.shutdown().await.map_err(io)?;
        let mut reader = BufReader::new(read).take(MAX_MESSAGE_BYTES as u64);
        let mut answer = Vec::new();
        reader.read_until(b'\n', &mut answer).await.map_err(io)?;
        if answer.is_empty() {
            return Err(SupervisorClientError::Protocol {
                path: self.socket.clone(),
                detail: "the connection closed without an answer".to_string(),
            });
        }
        decode_line(&answer).map_err(|e| SupervisorClientError::Protocol {
            path: self.socket.clone(),
            detail: e.to_string(),
        })
    }

    /// Whether a supervisor answers, and its pid.
    pub async fn hello(&self) -> Result<i32, SupervisorClientError> {
        match self.call_once(&Request::Hello).await? {
            Response::Hello { version, pid } if version == PROTOCOL_VERSION => Ok(pid),
            Response::Hello { version, .. } => Err(SupervisorClientError::Protocol {
                path: self.socket.clone(),
                detail: format!(
                    "protocol version {version}, this noded speaks {PROTOCOL_VERSION}; stop the old supervisor's tasks and restart it"
                ),
            }),
            other => Err(SupervisorClientError::Protocol {
                path: self.socket.clone(),
                detail: format!("unexpected answer to hello: {other:?}"),
            }),
        }
    }

    /// Moves a running task onto `cpus` (see [`Request::SetCpuset`]). A supervisor older than
    /// this request answers with an error naming the unknown op, which is passed on.
    pub async fn set_cpuset(
        &self,
        task_id: &str,
        cpus: &[u32],
    ) -> Result<(), SupervisorClientError> {
        let request = Request::SetCpuset {
            task_id: task_id.to_string(),
            cpus: cpus.to_vec(),
        };
        match self.call(&request).await? {
            Response::Ok => Ok(()),
            Response::Error { message, .. } => Err(SupervisorClientError::Refused(message)),
            other => Err(SupervisorClientError::Protocol {
                path: self.socket.clone(),
                detail: format!("unexpected answer to set_cpuset: {other:?}"),
            }),
        }
    }

    /// Connects to a running supervisor, or starts one (`noded supervisor ...`, detached into its
    /// own session so that it outlives this process) and waits for it to answer.
    pub async fn ensure_running(
        &self,
        exe: &Path,
        state_dir: &Path,
        cgroup_parent: &str,
        exit_with_parent: bool,
    ) -> Result<i32, SupervisorClientError> {
        let launch = Launch {
            exe: exe.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            cgroup_parent: cgroup_parent.to_string(),
            exit_with_parent,
        };
        let _ = self.launch.set(launch.clone());
        self.start_if_gone(&launch).await
    }

    /// The running supervisor's pid, starting one first if none answers.
    async fn start_if_gone(&self, launch: &Launch) -> Result<i32, SupervisorClientError> {
        let before = self.pid();
        let pid = self.find_or_start(launch).await?;
        self.pid.store(pid, Ordering::Relaxed);
        if let Some(old) = before.filter(|old| *old != pid) {
            tracing::warn!(old, pid, socket = %self.socket.display(), "the task supervisor was gone; started a new one");
        }
        Ok(pid)
    }

    async fn find_or_start(&self, launch: &Launch) -> Result<i32, SupervisorClientError> {
        let _one_at_a_time = self.starting.lock().await;
        match self.hello().await {
            Ok(pid) => return Ok(pid),
            // Only when nobody listens: a supervisor that answers oddly (another protocol
            // version, a broken connection) is alive and keeps its socket and its tasks.
            Err(SupervisorClientError::Connect { source, .. }) if nobody_listens(&source) => {}
            Err(e) => return Err(e),
        }
        let exe = launch.exe.as_path();
        let spawn_err = |detail: String| SupervisorClientError::Spawn {
            exe: exe.to_path_buf(),
            detail,
        };
        // A stale socket of a supervisor that died is replaced by the new one, once it holds
        // the cgroup parent's claim (so never while the old one lives).
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("supervisor")
            .arg("-socket")
            .arg(&self.socket)
            .arg("-state-dir")
            .arg(&launch.state_dir)
            .arg("-cgroup-parent")
            .arg(&launch.cgroup_parent)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            );
        // The environment is cleared; pass on only the supervisor's own settings.
        for key in ["RUST_LOG", "NODED_SUPERVISOR_LOG_WRITER"] {
            if let Ok(value) = std::env::var(key) {
                cmd.env(key, value);
            }
        }
        if launch.exit_with_parent {
            cmd.arg("-exit-with-parent");
        }
        crate::sys::detach_into_own_session(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| spawn_err(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(pid) = self.hello().await {
                // The supervisor runs on its own; reap our direct child when it eventually
                // exits (the agent's orphan reaper may get there first: either is fine).
                std::thread::spawn(move || {
                    let _ = child.wait();
                });
                return Ok(pid);
            }
            match child.try_wait() {
                Ok(Some(status)) => {
                    return Err(spawn_err(format!(
                        "it exited at once ({status}); see the log above"
                    )))
                }
                Ok(None) => {}
                // Reaped by the agent's orphan reaper: it exited.
                Err(_) => return Err(spawn_err("it exited at once; see the log above".into())),
            }
            if tokio::time::Instant::now() > deadline {
                return Err(spawn_err(format!(
                    "it did not answer on its socket within {}s",
                    START_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(START_POLL).await;
        }
    }
}

/// An exec session the supervisor started, with the descriptors it handed over: the pty
/// master, or stdin (write end), stdout and stderr (read ends).
#[derive(Debug)]
pub struct ExecHandle {
    pub exec_id: String,
    pub pid: i32,
    pub fds: Vec<std::os::fd::OwnedFd>,
}

impl SupervisorClient {
    /// `alloc exec`: asks the supervisor to run `command` inside the task and receives the
    /// session's descriptors (SCM_RIGHTS) with the answer.
    pub async fn exec(
        &self,
        task_id: &str,
        command: Vec<String>,
        tty: bool,
    ) -> Result<ExecHandle, SupervisorClientError> {
        let socket = self.socket.clone();
        let request = super::protocol::Request::Exec {
            task_id: task_id.to_string(),
            command,
            tty,
        };
        let line = encode_line(&request).map_err(|e| SupervisorClientError::Protocol {
            path: socket.clone(),
            detail: e.to_string(),
        })?;
        let path = socket.clone();
        let (answer, fds) = tokio::task::spawn_blocking(move || exec_exchange(&path, line))
            .await
            .map_err(|e| SupervisorClientError::Protocol {
                path: socket.clone(),
                detail: e.to_string(),
            })??;
        match decode_line::<Response>(&answer) {
            Ok(Response::ExecStarted {
                exec_id,
                pid,
                fds: expected,
            }) => {
                if fds.len() != expected as usize {
                    return Err(SupervisorClientError::Protocol {
                        path: socket,
                        detail: format!(
                            "expected {expected} descriptors with the exec answer, got {}",
                            fds.len()
                        ),
                    });
                }
                Ok(ExecHandle { exec_id, pid, fds })
            }
            Ok(Response::Error { step, message, .. }) => {
                Err(SupervisorClientError::Refused(match step {
                    Some(step) => format!("{step}: {message}"),
                    None => message,
                }))
            }
            Ok(other) => Err(SupervisorClientError::Protocol {
                path: socket,
                detail: format!("unexpected answer {other:?}"),
            }),
            Err(e) => Err(SupervisorClientError::Protocol {
                path: socket,
                detail: e.to_string(),
            }),
        }
    }
}

/// One request, one answer with descriptors, on a blocking socket (run off the runtime).
fn exec_exchange(
    path: &Path,
    line: Vec<u8>,
) -> Result<(Vec<u8>, Vec<std::os::fd::OwnedFd>), SupervisorClientError> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let io = |source| SupervisorClientError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(|source| {
        SupervisorClientError::Connect {
            path: path.to_path_buf(),
            source,
        }
    })?;
    stream
        .set_read_timeout(Some(EXEC_ANSWER_TIMEOUT))
        .map_err(io)?;
    stream.write_all(&line).map_err(io)?;
    stream.shutdown(std::net::Shutdown::Write).map_err(io)?;
    let mut answer = Vec::new();
    let mut fds = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let (n, mut got) = crate::sys::recv_with_fds(stream.as_raw_fd(), &mut buf).map_err(io)?;
        fds.append(&mut got);
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.ends_with(b"\n") || answer.len() > MAX_MESSAGE_BYTES {
            break;
        }
    }
    Ok((answer, fds))
}

/// Connecting failed because no supervisor listens: the socket file is gone, or nobody
/// accepts on it.
fn nobody_listens(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
    )
}
