//! `alloc exec` on the node: asks the supervisor to enter the task, then relays between the
//! API's channels and the session's descriptors (a pty master, or three pipes).

use std::os::fd::OwnedFd;
use std::sync::Arc;

use bytes::Bytes;
use controlplane::api::{ClientError, ExecInput, ExecOutput, ExecSession};
use tokio::sync::mpsc;

use crate::supervisor::client::{ExecHandle, SupervisorClient};
use crate::supervisor::protocol::{Request, Response};

/// Bytes read from a session's output at a time.
const CHUNK: usize = 16 * 1024;
/// Frames buffered each way.
const QUEUE: usize = 64;

fn nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Copies everything readable from `fd` into `out` as `wrap(bytes)` until end of file (or EIO),
/// or — once `exited` turns true — until nothing more is buffered: a pty master does not
/// report end of file while anything still holds the slave, so the process's exit decides.
async fn pump_out(
    fd: Arc<tokio::io::unix::AsyncFd<OwnedFd>>,
    out: mpsc::Sender<ExecOutput>,
    wrap: fn(Bytes) -> ExecOutput,
    mut exited: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let done = *exited.borrow();
        let mut guard = if done {
            // Drain: whatever is buffered now, then stop.
            match tokio::time::timeout(std::time::Duration::from_millis(50), fd.readable()).await {
                Ok(Ok(g)) => g,
                _ => return,
            }
        } else {
            tokio::select! {
                g = fd.readable() => match g {
                    Ok(g) => g,
                    Err(_) => return,
                },
                _ = exited.changed() => continue,
            }
        };
        match guard.try_io(|inner| {
            nix::unistd::read(inner.get_ref(), &mut buf).map_err(std::io::Error::from)
        }) {
            Ok(Ok(0)) => return,
            Ok(Ok(n)) => {
                if out
                    .send(wrap(Bytes::copy_from_slice(&buf[..n])))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => return,
            Err(_would_block) => {}
        }
    }
}

async fn write_all(fd: &tokio::io::unix::AsyncFd<OwnedFd>, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let mut guard = fd.writable().await?;
        match guard
            .try_io(|inner| nix::unistd::write(inner.get_ref(), data).map_err(std::io::Error::from))
        {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
    Ok(())
}

/// Starts `command` inside the task and returns the session's channels.
pub async fn start(
    supervisor: &SupervisorClient,
    task_id: &str,
    command: Vec<String>,
    tty: bool,
) -> Result<ExecSession, ClientError> {
    let ExecHandle { exec_id, fds, .. } = supervisor
        .exec(task_id, command, tty)
        .await
        .map_err(|e| ClientError::BadRequest(format!("alloc exec: {e}")))?;
    for fd in &fds {
        nonblocking(fd).map_err(|e| ClientError::Internal(e.to_string()))?;
    }
    let register = |fd: OwnedFd| -> Result<Arc<tokio::io::unix::AsyncFd<OwnedFd>>, ClientError> {
        crate::sys::async_fd(fd)
            .map(Arc::new)
            .map_err(|e| ClientError::Internal(e.to_string()))
    };
    let mut fds = fds.into_iter();
    let (stdin, outputs) = if tty {
        let master = register(
            fds.next()
                .ok_or_else(|| ClientError::Internal("no pty master".into()))?,
        )?;
        (
            master.clone(),
            vec![(master, ExecOutput::Stdout as fn(Bytes) -> ExecOutput)],
        )
    } else {
        let mut take = || {
            fds.next()
                .ok_or_else(|| ClientError::Internal("missing exec descriptor".into()))
        };
        let (i, o, e) = (take()?, take()?, take()?);
        (
            register(i)?,
            vec![
                (register(o)?, ExecOutput::Stdout as fn(Bytes) -> ExecOutput),
                (register(e)?, ExecOutput::Stderr),
            ],
        )
    };
    let (input_tx, mut input_rx) = mpsc::channel::<ExecInput>(QUEUE);
    let (output_tx, output_rx) = mpsc::channel::<ExecOutput>(QUEUE);

    // User → process.
    let writer_supervisor = supervisor.clone();
    let writer_exec = exec_id.clone();
    let writer = tokio::spawn(async move {
        let mut stdin = Some(stdin);
        while let Some(frame) = input_rx.recv().await {
            match frame {
                ExecInput::Stdin(data) => {
                    if let Some(fd) = &stdin {
                        if write_all(fd, &data).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                // A pipe is closed for EOF; a pty has no separate input to close (the user
                // types ^D instead).
                ExecInput::CloseStdin if !tty => stdin = None,
                ExecInput::CloseStdin => {}
                ExecInput::Resize { rows, cols } => {
                    let request = Request::ExecResize {
                        exec_id: writer_exec.clone(),
                        rows,
                        cols,
                    };
                    if let Err(e) = writer_supervisor.call(&request).await {
                        tracing::debug!("exec resize: {e}");
                    }
                }
            }
        }
    });
    // Process → user, then the exit code last.
    let waiter_supervisor = supervisor.clone();
    tokio::spawn(async move {
        let (exited_tx, exited_rx) = tokio::sync::watch::channel(false);
        let pumps: Vec<_> = outputs
            .into_iter()
            .map(|(fd, wrap)| {
                tokio::spawn(pump_out(fd, output_tx.clone(), wrap, exited_rx.clone()))
            })
            .collect();
        let code = match waiter_supervisor
            .call(&Request::ExecWait {
                exec_id: exec_id.clone(),
            })
            .await
        {
            Ok(Response::Exited { exit }) => exit.exit_code,
            Ok(other) => {
                tracing::warn!(exec = %exec_id, "unexpected answer {other:?}");
                -1
            }
            Err(e) => {
                tracing::warn!(exec = %exec_id, "waiting for the exec session: {e}");
                -1
            }
        };
        exited_tx.send_replace(true);
        for p in pumps {
            let _ = p.await;
        }
        writer.abort();
        let _ = output_tx.send(ExecOutput::Exited(code)).await;
    });
    Ok(ExecSession {
        input: input_tx,
        output: output_rx,
    })
}
