//! `noded alloc exec [-i] [-t] [-task T] ID COMMAND...`: a command inside a running task, over
//! the agent's exec websocket (Nomad's protocol), with the local terminal in raw mode for `-t`.

use std::io::{IsTerminal, Write};
use std::os::fd::AsRawFd;

use anyhow::{anyhow, bail};
use base64::Engine;
use clap::Args;
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

use super::super::global::ApiCommand;
use super::super::http::{ApiCallError, ApiClient, Socket};
use super::super::resolve::node_api;
use super::super::Exit;
use super::{fetch_alloc, task_of};

/// Messages from stdin and terminal resizes waiting to be sent.
const INPUT_QUEUE: usize = 64;
/// Bytes read from stdin per frame.
const STDIN_CHUNK: usize = 8192;

#[derive(Debug, Args)]
pub struct AllocExec {
    /// Pass stdin (default true).
    #[arg(short = 'i', default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    stdin: bool,
    /// Allocate a terminal (default: when stdin and stdout are terminals).
    #[arg(short = 't', num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    tty: Option<bool>,
    #[arg(long)]
    task: Option<String>,
    id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

impl ApiCommand for AllocExec {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        exec(api, &self).await
    }
}

/// Puts the terminal in raw mode and restores it when dropped (also on error paths).
#[derive(Debug)]
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter() -> anyhow::Result<RawMode> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).map_err(|e| anyhow!("reading the terminal mode: {e}"))?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).map_err(|e| anyhow!("setting raw mode: {e}"))?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

fn frame(kind: &str, data: &[u8]) -> Message {
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    Message::Text(
        serde_json::json!({ kind: { "data": b64 } })
            .to_string()
            .into(),
    )
}

fn size_frame() -> Option<Message> {
    let (rows, cols) = crate::sys::terminal_size(std::io::stdin().as_raw_fd())?;
    Some(Message::Text(
        serde_json::json!({"tty_size": {"height": rows, "width": cols}})
            .to_string()
            .into(),
    ))
}

async fn exec(api: &ApiClient, opts: &AllocExec) -> anyhow::Result<Exit> {
    let command = &opts.command;
    if command.is_empty() {
        bail!(
            "name a command to run, e.g. noded alloc exec {} /bin/sh",
            opts.id
        );
    }
    let alloc = fetch_alloc(api, &opts.id).await?;
    let task = task_of(&alloc, opts.task.as_deref())?;
    let tty = opts
        .tty
        .unwrap_or_else(|| std::io::stdin().is_terminal() && std::io::stdout().is_terminal());
    let socket = node_api(api, &alloc)
        .await?
        .open_websocket(
            &format!("/v1/client/allocation/{}/exec", alloc.id),
            &[
                ("task", task),
                ("tty", tty.to_string()),
                ("command", serde_json::to_string(command)?),
            ],
        )
        .await
        .map_err(|e| match e {
            ApiCallError::Status { status, message } => {
                anyhow!("Error starting exec: {status} {message}")
            }
            other => anyhow!("Error starting exec: {other}"),
        })?;
    let _raw = if tty && std::io::stdin().is_terminal() {
        Some(RawMode::enter()?)
    } else {
        None
    };
    let (mut sink, stream) = socket.split();
    if tty {
        if let Some(size) = size_frame() {
            sink.send(size).await?;
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Message>(INPUT_QUEUE);
    if opts.stdin {
        tokio::spawn(forward_stdin(tx.clone()));
    } else {
        let _ = tx.send(close_stdin()).await;
    }
    if tty {
        tokio::spawn(forward_resizes(tx.clone()));
    }
    drop(tx);
    relay(sink, stream, rx).await
}

fn close_stdin() -> Message {
    Message::Text(r#"{"stdin":{"close":true}}"#.into())
}

/// Sends stdin as frames, then the close frame at its end.
async fn forward_stdin(tx: tokio::sync::mpsc::Sender<Message>) {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; STDIN_CHUNK];
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = tx.send(close_stdin()).await;
                return;
            }
            Ok(n) => {
                if tx.send(frame("stdin", &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Sends the terminal's size each time it changes (SIGWINCH).
async fn forward_resizes(tx: tokio::sync::mpsc::Sender<Message>) {
    let Ok(mut winch) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
    else {
        return;
    };
    while winch.recv().await.is_some() {
        if let Some(size) = size_frame() {
            if tx.send(size).await.is_err() {
                return;
            }
        }
    }
}

/// Moves input frames to the agent and its output to stdout and stderr until the command's
/// exit code arrives, which becomes this command's.
async fn relay(
    mut sink: futures::stream::SplitSink<Socket, Message>,
    mut stream: futures::stream::SplitStream<Socket>,
    mut rx: tokio::sync::mpsc::Receiver<Message>,
) -> anyhow::Result<Exit> {
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    // Once every input source is done, only the agent's frames are awaited.
    let mut input_open = true;
    let lost = loop {
        tokio::select! {
            out = rx.recv(), if input_open => {
                match out {
                    Some(message) => {
                        if let Err(e) = sink.send(message).await {
                            break format!("sending: {e}");
                        }
                    }
                    None => input_open = false,
                }
            }
            incoming = stream.next() => {
                let message = match incoming {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => break format!("receiving: {e}"),
                    None => break "the agent closed it".to_string(),
                };
                let Message::Text(text) = message else { continue };
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if let Some(out) = v.get("stdout") {
                    stdout.write_all(&frame_data(out))?;
                    stdout.flush()?;
                } else if let Some(err) = v.get("stderr") {
                    stderr.write_all(&frame_data(err))?;
                    stderr.flush()?;
                } else if v.get("exited") == Some(&serde_json::Value::Bool(true)) {
                    let code = v["result"]["exit_code"].as_i64().unwrap_or(0);
                    return Ok(if code == 0 { Exit::Ok } else { Exit::Code(i32::try_from(code).unwrap_or(1)) });
                }
            }
        }
    };
    bail!("the exec session ended without an exit code (connection lost: {lost})")
}

/// The bytes of an output frame (`{"data": "<base64>"}`).
fn frame_data(v: &serde_json::Value) -> Vec<u8> {
    v.get("data")
        .and_then(|d| d.as_str())
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .unwrap_or_default()
}
