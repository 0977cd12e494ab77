//! `alloc exec`: a command inside a running task, over a websocket speaking Nomad's exec
//! protocol (JSON frames: `stdin`, `tty_size` in; `stdout`, `stderr`, `exited` out).
//! The session itself is a pair of channels from [`super::ClientEndpoints::exec`], so this
//! crate never holds a descriptor.

use axum::extract::{Path, State};
use axum::response::Response;
use base64::Engine;
use bytes::Bytes;

use super::error::{ApiError, ApiResult};
use super::extract::QueryOptions;
use super::ApiContext;

/// A command to run inside a task of an allocation (`alloc exec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    pub alloc_id: String,
    pub task: String,
    /// Program and arguments.
    pub command: Vec<String>,
    /// A terminal (`-t`): output comes as one stream, and the size can change.
    pub tty: bool,
}

/// What the user sends to an exec session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecInput {
    Stdin(Bytes),
    CloseStdin,
    Resize { rows: u16, cols: u16 },
}

/// What an exec session sends back. `Exited` is the last message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutput {
    Stdout(Bytes),
    Stderr(Bytes),
    Exited(i32),
}

/// A running exec: a channel in and a channel out.
#[derive(Debug)]
pub struct ExecSession {
    pub input: tokio::sync::mpsc::Sender<ExecInput>,
    pub output: tokio::sync::mpsc::Receiver<ExecOutput>,
}

/// Decodes one frame of Nomad's exec websocket protocol from the user.
fn decode_exec_frame(text: &str) -> Result<Option<ExecInput>, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("malformed exec frame: {e}"))?;
    if let Some(stdin) = v.get("stdin") {
        if stdin.get("close").and_then(|c| c.as_bool()) == Some(true) {
            return Ok(Some(ExecInput::CloseStdin));
        }
        if let Some(data) = stdin.get("data").and_then(|d| d.as_str()) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| format!("exec frame stdin.data is not base64: {e}"))?;
            return Ok(Some(ExecInput::Stdin(Bytes::from(bytes))));
        }
    }
    if let Some(size) = v.get("tty_size") {
        let num = |k: &str| {
            size.get(k)
                .and_then(|x| x.as_u64())
                .and_then(|x| u16::try_from(x).ok())
        };
        if let (Some(rows), Some(cols)) = (num("height"), num("width")) {
            return Ok(Some(ExecInput::Resize { rows, cols }));
        }
        return Err("exec frame tty_size needs height and width".to_string());
    }
    Ok(None)
}

/// Encodes one frame of Nomad's exec websocket protocol to the user.
fn encode_exec_frame(out: &ExecOutput) -> String {
    let b64 = |b: &Bytes| base64::engine::general_purpose::STANDARD.encode(b);
    match out {
        ExecOutput::Stdout(b) => serde_json::json!({"stdout": {"data": b64(b)}}).to_string(),
        ExecOutput::Stderr(b) => serde_json::json!({"stderr": {"data": b64(b)}}).to_string(),
        ExecOutput::Exited(code) => {
            serde_json::json!({"exited": true, "result": {"exit_code": code}}).to_string()
        }
    }
}

/// `GET /v1/client/allocation/:id/exec?task=&command=["…"]&tty=` — the websocket.
pub async fn alloc_exec(
    State(ctx): State<ApiContext>,
    Path(alloc): Path<String>,
    q: QueryOptions,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> ApiResult<Response> {
    ctx.known_alloc(&alloc)?;
    let task = q.string("task");
    if task.is_empty() {
        return Err(ApiError::bad_request(
            "missing query parameter task (the task to run in)",
        ));
    }
    let command: Vec<String> = match q.string("command") {
        "" => return Err(ApiError::bad_request("missing query parameter command")),
        c => serde_json::from_str(c).map_err(|e| {
            ApiError::bad_request(format!(
                "query parameter command must be a JSON list of strings like [\"/bin/sh\"]: {e}"
            ))
        })?,
    };
    if command.first().is_none_or(String::is_empty) {
        return Err(ApiError::bad_request("command must name a program"));
    }
    let request = ExecRequest {
        alloc_id: alloc,
        task: task.to_string(),
        command,
        tty: q.flag("tty")?,
    };
    let client = ctx.client_endpoints()?;
    // Start the command before upgrading, so a bad task or program is a plain HTTP error.
    let session = client.exec(request).await?;
    Ok(ws.on_upgrade(move |socket| relay_exec(socket, session)))
}

async fn relay_exec(socket: axum::extract::ws::WebSocket, mut session: ExecSession) {
    use axum::extract::ws::Message;
    use futures::{SinkExt, StreamExt};
    let (mut sink, mut stream) = socket.split();
    let input = session.input.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            let text = match message {
                Message::Text(t) => t.to_string(),
                Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                Message::Close(_) => break,
                _ => continue,
            };
            match decode_exec_frame(&text) {
                Ok(Some(frame)) => {
                    if input.send(frame).await.is_err() {
                        break;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::debug!("exec: {e}"),
            }
        }
        // The user went away: close stdin so the command sees EOF.
        let _ = input.send(ExecInput::CloseStdin).await;
    });
    while let Some(out) = session.output.recv().await {
        let last = matches!(out, ExecOutput::Exited(_));
        if sink
            .send(Message::Text(encode_exec_frame(&out).into()))
            .await
            .is_err()
        {
            break;
        }
        if last {
            break;
        }
    }
    let _ = sink.send(Message::Close(None)).await;
    // Closing our end while the user's frames are unread makes the kernel answer with a reset,
    // and a reset discards what the user has not read yet: the last output and the exit code.
    // Keep reading until the user closes (or goes away), for a bounded time.
    let mut reader = reader;
    if tokio::time::timeout(EXEC_CLOSE_GRACE, &mut reader)
        .await
        .is_err()
    {
        reader.abort();
    }
}

/// How long an ended exec session waits for the user's side to close the websocket.
const EXEC_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(test)]
mod exec_frame_tests {
    use super::*;

    #[test]
    fn nomads_exec_frames_round_trip() {
        assert_eq!(
            decode_exec_frame(r#"{"stdin":{"data":"aGk="}}"#).unwrap(),
            Some(ExecInput::Stdin(Bytes::from_static(b"hi")))
        );
        assert_eq!(
            decode_exec_frame(r#"{"stdin":{"close":true}}"#).unwrap(),
            Some(ExecInput::CloseStdin)
        );
        assert_eq!(
            decode_exec_frame(r#"{"tty_size":{"height":40,"width":120}}"#).unwrap(),
            Some(ExecInput::Resize {
                rows: 40,
                cols: 120
            })
        );
        assert!(decode_exec_frame("not json").is_err());
        assert!(decode_exec_frame(r#"{"stdin":{"data":"%%%"}}"#).is_err());
        assert_eq!(
            encode_exec_frame(&ExecOutput::Exited(3)),
            r#"{"exited":true,"result":{"exit_code":3}}"#
        );
        assert_eq!(
            encode_exec_frame(&ExecOutput::Stdout(Bytes::from_static(b"hi"))),
            r#"{"stdout":{"data":"aGk="}}"#
        );
    }
}
