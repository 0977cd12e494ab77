//! `noded alloc exec`: a command inside a running task, over the agent's exec websocket
//! (Nomad's protocol), with the local terminal in raw mode for `-t`.

use std::io::{IsTerminal, Write};
use std::os::fd::AsRawFd;

use anyhow::{anyhow, bail};
use base64::Engine;
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

use super::alloc::resolve_alloc;
use super::format::short;
use super::http::ApiClient;
use super::Exit;

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

#[derive(Debug, Clone, Copy)]
pub struct ExecOptions<'a> {
    pub task: Option<&'a str>,
    pub stdin: bool,
    pub tty: Option<bool>,
}

pub async fn exec(
    api: &ApiClient,
    id: &str,
    command: &[String],
    opts: ExecOptions<'_>,
) -> anyhow::Result<Exit> {
    if command.is_empty() {
        bail!("name a command to run, e.g. noded alloc exec {id} /bin/sh");
    }
    let alloc = resolve_alloc(api, id).await?;
    let task = match opts.task {
        Some(t) => t.to_string(),
        None => {
            let tasks: Vec<String> = alloc
                .job
                .as_ref()
                .and_then(|j| j.group(&alloc.task_group))
                .map(|g| g.tasks.iter().map(|t| t.name.clone()).collect())
                .unwrap_or_default();
            match tasks.as_slice() {
                [one] => one.clone(),
                many => bail!(
                    "allocation {} has several tasks; choose one with -task ({})",
                    short(&alloc.id),
                    many.join(", ")
                ),
            }
        }
    };
    let tty = opts
        .tty
        .unwrap_or_else(|| std::io::stdin().is_terminal() && std::io::stdout().is_terminal());
    let base = api
        .address()
        .replacen("http://", "ws://", 1)
        .replacen("https://", "wss://", 1);
    let mut url = reqwest::Url::parse(&format!("{base}/v1/client/allocation/{}/exec", alloc.id))?;
    url.query_pairs_mut()
        .append_pair("task", &task)
        .append_pair("tty", &tty.to_string())
        .append_pair("command", &serde_json::to_string(command)?);
    let (socket, _) = match tokio_tungstenite::connect_async(url.as_str()).await {
        Ok(s) => s,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            bail!("Error starting exec: {} {}", response.status(), body.trim());
        }
        Err(e) => bail!("Error starting exec: {e}"),
    };
    let (mut sink, mut stream) = socket.split();
    let _raw = if tty && std::io::stdin().is_terminal() {
        Some(RawMode::enter()?)
    } else {
        None
    };
    if tty {
        if let Some(size) = size_frame() {
            sink.send(size).await?;
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(64);
    if opts.stdin {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 8192];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = tx
                            .send(Message::Text(r#"{"stdin":{"close":true}}"#.into()))
                            .await;
                        return;
                    }
                    Ok(n) => {
                        if tx.send(frame("stdin", &buf[..n])).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    } else {
        let _ = tx
            .send(Message::Text(r#"{"stdin":{"close":true}}"#.into()))
            .await;
    }
    if tty {
        let tx = tx.clone();
        tokio::spawn(async move {
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
        });
    }
    drop(tx);
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let decode = |v: &serde_json::Value| -> Vec<u8> {
        v.get("data")
            .and_then(|d| d.as_str())
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
            .unwrap_or_default()
    };
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
                    stdout.write_all(&decode(out))?;
                    stdout.flush()?;
                } else if let Some(err) = v.get("stderr") {
                    stderr.write_all(&decode(err))?;
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
