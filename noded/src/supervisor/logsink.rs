//! The supervisor's log write path: the pump that copies a task's output pipe into its rotating
//! log files, the two backends that do the file writes, and the runtime each backend needs.
//!
//! - [`LogBackend::Tokio`]: the supervisor's plain tokio current-thread runtime, and each write
//!   is a `write(2)` made right on that thread ([`LogWriter`]). Not `tokio::fs`: that hops to the
//!   blocking pool for every write, which costs more than appending to the page cache does.
//! - [`LogBackend::Uring`]: the same runtime built by tokio-uring (tokio's current-thread runtime
//!   plus a `LocalSet`, so the supervisor's unix socket, `AsyncFd` and timers keep working),
//!   and the writes are submitted to io_uring ([`UringLogWriter`]); the submissions of every
//!   task's pump are flushed together when the thread goes idle.
//!
//! [`SupervisorRuntime::start`] detects at start whether io_uring works here (it may be missing
//! from an old kernel, disabled by sysctl `kernel.io_uring_disabled`, or refused by a seccomp
//! filter) by setting up a ring and running one real write through it; when it does not, the
//! supervisor runs on plain tokio and says why in one log line.
//!
//! Owns how log bytes travel from a pipe to a file; must not know about tasks, cgroups or the
//! protocol (rotation and the files themselves belong to [`super::logwriter`]).

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::os::fd::{AsFd, OwnedFd};
use std::str::FromStr;
use std::time::Duration;

use super::logwriter::{LogWriter, UringLogWriter};

/// Environment variable that picks the log writer (`tokio` or `uring`) over [`DEFAULT_BACKEND`].
pub const BACKEND_ENV: &str = "NODED_SUPERVISOR_LOG_WRITER";

/// The log writer the supervisor uses unless [`BACKEND_ENV`] says otherwise.
///
/// Plain tokio, by measurement: io_uring is kept only where it is at least as fast, and here it
/// is not. `cargo xtask bench logs` (1, 16 and 100 tasks × 100 B and 4 KiB lines, 128 MiB per
/// run, 1 MB files × 3, medians of 5 alternating rounds, both backends in one run; 2 vCPU,
/// kernel 6.18, ext4, release build), two runs: io_uring 285.7 and 268.7 MB/s against 312.2
/// and 306.8 MB/s for plain tokio (geometric mean of the shapes; ratio 0.915 and 0.876), and
/// 1.82 s of writer CPU against 1.51 s both times. Per shape io_uring ranges from 0.38× (one
/// task, 4 KiB lines: 345 against 906 MB/s) to 1.30× (many tasks, short lines, where its
/// deferred submission lets the pipes fill between reads; it then also spends less CPU). The
/// steady facts: the one-task loss, and 20 % more CPU over a pass. ext4 does not take these
/// buffered writes without blocking, so io_uring hands them to its kernel worker threads
/// (`iou-wrk-*`, busy throughout the run): a thread hop per write that costs more than the
/// page-cache append itself. A filesystem that takes non-blocking buffered writes may measure
/// differently: rerun the bench there.
pub const DEFAULT_BACKEND: LogBackend = LogBackend::Tokio;

/// Bytes read from a task's output pipe at a time.
pub const PIPE_CHUNK: usize = 32 * 1024;

/// Submission queue entries of the supervisor's ring. A pump has at most one write in flight,
/// and a full queue is flushed to the kernel before more are queued, so this bounds batching,
/// not the number of tasks.
const RING_ENTRIES: u32 = 256;

/// How long the start-up probe write may take before io_uring counts as unusable (a filter that
/// lets the ring be set up but blocks `io_uring_enter` leaves the write pending for ever).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How the supervisor writes task logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogBackend {
    /// `write(2)` on the runtime thread of a plain tokio runtime.
    Tokio,
    /// io_uring writes from a tokio-uring runtime.
    Uring,
}

impl LogBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            LogBackend::Tokio => "tokio",
            LogBackend::Uring => "uring",
        }
    }

    /// [`BACKEND_ENV`] when set (and not empty), else [`DEFAULT_BACKEND`].
    pub fn configured() -> anyhow::Result<LogBackend> {
        match std::env::var(BACKEND_ENV) {
            Ok(value) if value.trim().is_empty() => Ok(DEFAULT_BACKEND),
            Ok(value) => value
                .parse()
                .map_err(|e| anyhow::anyhow!("environment variable {BACKEND_ENV}: {e}")),
            Err(std::env::VarError::NotPresent) => Ok(DEFAULT_BACKEND),
            Err(e) => anyhow::bail!("environment variable {BACKEND_ENV}: {e}"),
        }
    }
}

impl fmt::Display for LogBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogBackend {
    type Err = String;

    fn from_str(s: &str) -> Result<LogBackend, String> {
        match s.trim() {
            "tokio" => Ok(LogBackend::Tokio),
            "uring" => Ok(LogBackend::Uring),
            other => Err(format!(
                "unknown log writer {other:?}: use \"tokio\" or \"uring\""
            )),
        }
    }
}

thread_local! {
    /// The backend of the runtime this thread is inside (set by [`SupervisorRuntime::block_on`]):
    /// io_uring files only work on the thread that runs the tokio-uring runtime.
    static ACTIVE: Cell<LogBackend> = const { Cell::new(LogBackend::Tokio) };
}

/// The supervisor's single-threaded runtime, of the flavour its log backend needs.
pub struct SupervisorRuntime {
    kind: RuntimeKind,
}

enum RuntimeKind {
    Tokio {
        runtime: tokio::runtime::Runtime,
        local: tokio::task::LocalSet,
    },
    Uring(tokio_uring::Runtime),
}

impl fmt::Debug for SupervisorRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorRuntime")
            .field("backend", &self.backend())
            .finish()
    }
}

impl SupervisorRuntime {
    /// Builds the runtime for `wanted`. Asked for io_uring where it does not work, it logs one
    /// line saying why and builds the plain tokio runtime instead.
    pub fn start(wanted: LogBackend) -> std::io::Result<SupervisorRuntime> {
        Self::start_with(wanted, RING_ENTRIES)
    }

    fn start_with(wanted: LogBackend, ring_entries: u32) -> std::io::Result<SupervisorRuntime> {
        if wanted == LogBackend::Uring {
            match try_uring(ring_entries) {
                Ok(runtime) => {
                    tracing::info!("task logs: written through io_uring");
                    return Ok(SupervisorRuntime {
                        kind: RuntimeKind::Uring(runtime),
                    });
                }
                Err(reason) => tracing::warn!(
                    "task logs: io_uring is unavailable ({reason}); writing them with plain tokio"
                ),
            }
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(2)
            .build()?;
        Ok(SupervisorRuntime {
            kind: RuntimeKind::Tokio {
                runtime,
                local: tokio::task::LocalSet::new(),
            },
        })
    }

    /// The backend the runtime actually has (after any fallback).
    pub fn backend(&self) -> LogBackend {
        match self.kind {
            RuntimeKind::Tokio { .. } => LogBackend::Tokio,
            RuntimeKind::Uring(_) => LogBackend::Uring,
        }
    }

    /// Runs `future` to completion on this thread; `tokio::task::spawn_local` works inside it.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let _active = ActiveBackend::enter(self.backend());
        match &self.kind {
            RuntimeKind::Tokio { runtime, local } => local.block_on(runtime, future),
            RuntimeKind::Uring(runtime) => runtime.block_on(future),
        }
    }
}

/// Restores the thread's previous backend when a `block_on` ends.
struct ActiveBackend(LogBackend);

impl ActiveBackend {
    fn enter(backend: LogBackend) -> ActiveBackend {
        ActiveBackend(ACTIVE.with(|a| a.replace(backend)))
    }
}

impl Drop for ActiveBackend {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.set(self.0));
    }
}

/// Sets up a ring and proves a write goes through it; the error is the reason to fall back.
fn try_uring(ring_entries: u32) -> Result<tokio_uring::Runtime, String> {
    let runtime =
        tokio_uring::Runtime::new(tokio_uring::builder().entries(ring_entries)).map_err(|e| {
            let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok();
            unavailable_reason(&e, sysctl.as_deref())
        })?;
    let probed =
        runtime.block_on(async { tokio::time::timeout(PROBE_TIMEOUT, probe_write()).await });
    match probed {
        Ok(Ok(())) => Ok(runtime),
        Ok(Err(reason)) => Err(reason),
        Err(_elapsed) => {
            // The write is still queued in a ring the kernel does not serve: dropping the
            // runtime would wait for (and fail on) it, so leave it be (one fd, once).
            std::mem::forget(runtime);
            Err(format!(
                "a probe write did not complete within {PROBE_TIMEOUT:?} (io_uring_enter blocked?)"
            ))
        }
    }
}

/// Why setting up a ring failed, in words an operator can act on.
fn unavailable_reason(e: &std::io::Error, io_uring_disabled: Option<&str>) -> String {
    let disabled = io_uring_disabled.map(str::trim).filter(|v| *v != "0");
    match (e.raw_os_error(), disabled) {
        (Some(libc::EPERM), Some(v)) => {
            format!("disabled by sysctl kernel.io_uring_disabled={v}; set it to 0 to use io_uring")
        }
        (Some(libc::ENOSYS), _) => {
            "io_uring_setup: the kernel has no io_uring (older than 5.1, built without it, \
             or a seccomp filter hides it)"
                .to_string()
        }
        (Some(libc::EPERM), None) => {
            "io_uring_setup: permission denied (a seccomp filter or security module)".to_string()
        }
        _ => format!("io_uring_setup: {e}"),
    }
}

/// One write through the ring into a pipe, read back: the operation the log writer uses.
async fn probe_write() -> Result<(), String> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("creating the probe pipe: {e}"))?;
    let file = tokio_uring::fs::File::from_std(std::fs::File::from(write));
    let (written, _) = file.write_at(vec![b'!'], 0).submit().await;
    match written {
        Ok(1) => {}
        Ok(n) => {
            return Err(format!(
                "a probe write through io_uring wrote {n} bytes, not 1"
            ))
        }
        Err(e) => return Err(format!("a probe write through io_uring failed: {e}")),
    }
    let mut back = [0u8; 1];
    match nix::unistd::read(read.as_fd(), &mut back) {
        Ok(1) if back[0] == b'!' => Ok(()),
        Ok(_) => Err("a probe write through io_uring did not arrive".to_string()),
        Err(e) => Err(format!("reading the probe write back: {e}")),
    }
}

/// The file end of one pump: a rotating log set written by the current runtime's backend.
#[derive(Debug)]
pub enum LogSink {
    Tokio(LogWriter),
    Uring(UringLogWriter),
}

impl LogSink {
    /// Wraps `log` for the backend of the runtime this thread is inside (plain `write(2)`
    /// outside any [`SupervisorRuntime`]).
    pub fn for_this_runtime(log: LogWriter) -> LogSink {
        match ACTIVE.with(Cell::get) {
            LogBackend::Tokio => LogSink::Tokio(log),
            LogBackend::Uring => LogSink::Uring(UringLogWriter::from(log)),
        }
    }

    /// Appends the first `len` bytes of `buf` and hands the buffer back.
    pub async fn write(&mut self, buf: Vec<u8>, len: usize) -> (std::io::Result<()>, Vec<u8>) {
        match self {
            LogSink::Tokio(w) => {
                let result = w.write(&buf[..len.min(buf.len())]);
                (result, buf)
            }
            LogSink::Uring(w) => w.write(buf, len).await,
        }
    }
}

/// Copies a task's output pipe (`read`, non-blocking) into its log files until the pipe closes.
pub async fn pump(read: OwnedFd, mut sink: LogSink, task_id: &str) {
    let afd = match crate::sys::async_fd(read) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(task = %task_id, "watching output: {e}");
            return;
        }
    };
    let mut buf = vec![0u8; PIPE_CHUNK];
    loop {
        let mut guard = match afd.readable().await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(task = %task_id, "output: {e}");
                return;
            }
        };
        let n = match guard.try_io(|inner| {
            nix::unistd::read(inner.get_ref().as_fd(), &mut buf).map_err(std::io::Error::from)
        }) {
            Ok(Ok(0)) => return,
            Ok(Ok(n)) => n,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(Err(e)) => {
                tracing::warn!(task = %task_id, "reading output: {e}");
                return;
            }
            Err(_would_block) => continue,
        };
        drop(guard);
        let (written, back) = sink.write(buf, n).await;
        buf = back;
        if let Err(e) = written {
            tracing::warn!(task = %task_id, "writing log: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::path::Path;

    #[test]
    fn backends_parse_by_name_and_a_typo_is_a_clear_error() {
        assert_eq!("uring".parse::<LogBackend>(), Ok(LogBackend::Uring));
        assert_eq!(" tokio\n".parse::<LogBackend>(), Ok(LogBackend::Tokio));
        let e = "io_uring".parse::<LogBackend>().unwrap_err();
        assert!(
            e.contains("\"io_uring\"") && e.contains("\"tokio\" or \"uring\""),
            "{e}"
        );
    }

    #[test]
    fn fallback_reasons_name_the_cause() {
        let eperm = std::io::Error::from_raw_os_error(libc::EPERM);
        let r = unavailable_reason(&eperm, Some("2\n"));
        assert!(r.contains("kernel.io_uring_disabled=2"), "{r}");
        let r = unavailable_reason(&eperm, Some("0\n"));
        assert!(r.contains("seccomp"), "{r}");
        let r = unavailable_reason(&std::io::Error::from_raw_os_error(libc::ENOSYS), None);
        assert!(r.contains("no io_uring"), "{r}");
        let r = unavailable_reason(&std::io::Error::from_raw_os_error(libc::EINVAL), Some("0"));
        assert!(r.starts_with("io_uring_setup: "), "{r}");
    }

    fn io_uring_works() -> bool {
        match tokio_uring::Runtime::new(&tokio_uring::builder()) {
            Ok(_) => true,
            Err(e) => {
                let required = std::env::var(isolation::privileged::REQUIRE_PRIVILEGED_ENV)
                    .is_ok_and(|v| v.trim() == "1");
                assert!(!required, "io_uring is unavailable here: {e}");
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: the io_uring log backend needs io_uring ({e})"
                );
                false
            }
        }
    }

    #[test]
    fn uring_is_used_where_it_works() {
        if !io_uring_works() {
            return;
        }
        let rt = SupervisorRuntime::start(LogBackend::Uring).unwrap();
        assert_eq!(rt.backend(), LogBackend::Uring);
        assert_eq!(
            SupervisorRuntime::start(LogBackend::Tokio)
                .unwrap()
                .backend(),
            LogBackend::Tokio
        );
    }

    #[test]
    fn a_ring_the_kernel_refuses_falls_back_to_plain_tokio() {
        // More entries than the kernel allows (32768): io_uring_setup fails with EINVAL, the
        // same path as a kernel or filter that refuses io_uring altogether.
        let rt = SupervisorRuntime::start_with(LogBackend::Uring, 1 << 20).unwrap();
        assert_eq!(rt.backend(), LogBackend::Tokio);
        assert_eq!(
            rt.block_on(async { ACTIVE.with(Cell::get) }),
            LogBackend::Tokio
        );
    }

    #[test]
    fn the_probe_write_goes_through_a_ring() {
        if !io_uring_works() {
            return;
        }
        let rt = tokio_uring::Runtime::new(&tokio_uring::builder()).unwrap();
        rt.block_on(async { probe_write().await.unwrap() });
    }

    /// Pumps `data` through a real pipe into a rotating set in `dir`, on `backend`'s runtime.
    fn pump_through(backend: LogBackend, dir: &Path, data: &[u8]) -> LogBackend {
        let rt = SupervisorRuntime::start(backend).unwrap();
        // Like a task's pipe: the supervisor's end non-blocking, the task's end blocking.
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        nix::fcntl::fcntl(
            &r,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        let data = data.to_vec();
        let writer = std::thread::spawn(move || {
            let mut w = std::fs::File::from(w);
            for piece in data.chunks(777) {
                w.write_all(piece).unwrap();
            }
        });
        let log = LogWriter::open(
            isolation::path::open_dir(dir).unwrap(),
            "t.stdout",
            3,
            10_000,
        )
        .unwrap();
        rt.block_on(async {
            let sink = LogSink::for_this_runtime(log);
            let used = match sink {
                LogSink::Tokio(_) => LogBackend::Tokio,
                LogSink::Uring(_) => LogBackend::Uring,
            };
            assert_eq!(used, rt.backend());
            tokio::task::spawn_local(async move { pump(r, sink, "t").await })
                .await
                .unwrap();
        });
        writer.join().unwrap();
        rt.backend()
    }

    fn read_set(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| {
                (
                    e.file_name().into_string().unwrap(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn both_backends_pump_a_pipe_into_the_same_rotated_files() {
        let data: Vec<u8> = (0..45_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let tokio_dir = tempfile::tempdir().unwrap();
        assert_eq!(
            pump_through(LogBackend::Tokio, tokio_dir.path(), &data),
            LogBackend::Tokio
        );
        let files = read_set(tokio_dir.path());
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["t.stdout.2", "t.stdout.3", "t.stdout.4"]);
        let kept: Vec<u8> = files.iter().flat_map(|(_, b)| b.clone()).collect();
        assert_eq!(kept, data[20_000..]);
        if !io_uring_works() {
            return;
        }
        let uring_dir = tempfile::tempdir().unwrap();
        assert_eq!(
            pump_through(LogBackend::Uring, uring_dir.path(), &data),
            LogBackend::Uring
        );
        assert_eq!(read_set(uring_dir.path()), files);
    }
}
