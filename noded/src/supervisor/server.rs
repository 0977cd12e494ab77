//! The supervisor's unix socket: one JSON request line in, one JSON answer line out per
//! connection ([`super::protocol`]), descriptors riding on the answer for `alloc exec`. Each
//! connection is served on the supervisor's one thread; requests that wait (`Wait`,
//! `ExecWait`) hold their connection until they are answered.

use std::future::Future;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::protocol::{
    decode_line, encode_line, Request, Response, MAX_MESSAGE_BYTES, PROTOCOL_VERSION,
};
use super::{err, Supervisor, MAX_EXECS, MAX_TASKS};

/// Connections served at once at most. Every task may have a `Wait` open (its runner's) and
/// every exec session an `ExecWait`; the headroom is for the short requests around them. A
/// connection beyond the bound waits in the socket's backlog until one ends.
const MAX_CONNECTIONS: usize = MAX_TASKS + MAX_EXECS + CONNECTION_HEADROOM;
/// Short requests (start, kill, list, stats, ...) served beside the waiting ones.
const CONNECTION_HEADROOM: usize = 1024;
/// Pause after a failed `accept` (out of descriptors, say) before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// An answer, and descriptors to pass with it.
pub(super) struct Reply {
    pub(super) response: Response,
    pub(super) fds: Vec<OwnedFd>,
}

impl From<Response> for Reply {
    fn from(response: Response) -> Reply {
        Reply {
            response,
            fds: Vec::new(),
        }
    }
}

/// Listens on `socket` (replacing a stale one), for root only.
pub(super) fn listen(socket: &Path) -> anyhow::Result<UnixListener> {
    if socket.exists() {
        std::fs::remove_file(socket)
            .with_context(|| format!("removing stale socket {}", socket.display()))?;
    }
    let listener =
        UnixListener::bind(socket).with_context(|| format!("listening on {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private", socket.display()))?;
    Ok(listener)
}

/// Serves connections until `shutdown` resolves, and returns its reason.
pub(super) async fn serve(
    listener: UnixListener,
    supervisor: Rc<Supervisor>,
    shutdown: impl Future<Output = &'static str>,
) -> &'static str {
    tokio::pin!(shutdown);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        if slots.available_permits() == 0 {
            tracing::warn!("{MAX_CONNECTIONS} connections are open; new ones wait for one to end");
        }
        let slot = tokio::select! {
            reason = &mut shutdown => return reason,
            slot = slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else {
            // Not reached: the semaphore is never closed.
            return "the connection bound was closed";
        };
        let accepted = tokio::select! {
            reason = &mut shutdown => return reason,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let sup = supervisor.clone();
                tokio::task::spawn_local(async move {
                    if let Err(e) = serve_connection(sup, stream).await {
                        tracing::debug!("connection: {e}");
                    }
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

/// Reads one request, answers it, and closes.
async fn serve_connection(sup: Rc<Supervisor>, stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read).take(MAX_MESSAGE_BYTES as u64);
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).await?;
    let reply = match decode_line::<Request>(&line) {
        Ok(Request::Exec {
            task_id,
            command,
            tty,
        }) => sup.exec(&task_id, &command, tty),
        Ok(request) => handle(&sup, request).await.into(),
        Err(e) => err(format!("malformed request: {e}")).into(),
    };
    let out = encode_line(&reply.response).unwrap_or_else(|e| {
        format!("{{\"result\":\"error\",\"step\":null,\"message\":\"encoding the answer: {e}\"}}\n")
            .into_bytes()
    });
    if reply.fds.is_empty() {
        write.write_all(&out).await?;
        return write.shutdown().await;
    }
    let stream = reader
        .into_inner()
        .into_inner()
        .reunite(write)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    send_with_fds(stream, &out, &reply.fds).await
}

/// Writes `out` with `fds` riding on its first bytes (SCM_RIGHTS), then closes.
async fn send_with_fds(stream: UnixStream, out: &[u8], fds: &[OwnedFd]) -> std::io::Result<()> {
    let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let mut sent = 0;
    while sent == 0 {
        stream.writable().await?;
        match stream.try_io(tokio::io::Interest::WRITABLE, || {
            crate::sys::send_with_fds(stream.as_raw_fd(), out, &raw)
        }) {
            Ok(n) => sent = n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    let (_, mut write) = stream.into_split();
    write.write_all(&out[sent..]).await?;
    write.shutdown().await
}

/// Every request but `Exec` (whose answer carries descriptors), to the part that owns it.
async fn handle(sup: &Rc<Supervisor>, request: Request) -> Response {
    match request {
        Request::Hello => Response::Hello {
            version: PROTOCOL_VERSION,
            pid: std::process::id() as i32,
        },
        Request::Start { launch } => sup.start(*launch),
        Request::Exec { .. } => err("exec requests are answered with descriptors; internal error"),
        Request::ExecResize {
            exec_id,
            rows,
            cols,
        } => sup.exec_resize(&exec_id, rows, cols),
        Request::ExecWait { exec_id } => sup.exec_wait(&exec_id).await,
        Request::Wait { task_id } => sup.wait(&task_id).await,
        Request::Signal { task_id, signal } => sup.signal(&task_id, signal),
        Request::Kill {
            task_id,
            signal,
            grace_ms,
        } => sup.kill(&task_id, signal, grace_ms),
        Request::Remove { task_id } => sup.remove(&task_id).await,
        Request::SetCpuset { task_id, cpus } => sup.set_cpuset(&task_id, &cpus).await,
        Request::List => sup.list(),
        Request::Stats { task_id } => sup.stats(&task_id),
    }
}
