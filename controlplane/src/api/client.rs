//! `/v1/client/...`: endpoints the node running an allocation answers (through
//! [`super::ClientEndpoints`]).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

use super::error::{ApiError, ApiResult};
use super::{ApiContext, QueryOptions};

/// Which of a task's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// Where reading starts: `offset` counts from the beginning or from the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOrigin {
    Start,
    End,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsRequest {
    pub alloc_id: String,
    pub task: String,
    pub stream: LogStream,
    pub follow: bool,
    pub origin: LogOrigin,
    pub offset: u64,
}

/// A piece of a log: which file (relative to the allocation dir), where in it, and the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogFrame {
    pub file: String,
    pub offset: u64,
    pub data: Bytes,
    /// "file rotated", "file truncated"… when the frame marks an event rather than data.
    pub file_event: String,
}

/// One entry of an allocation's directory, Nomad's `AllocFileInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct AllocFileInfo {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    /// `ls -l` style: `-rw-r--r--`, `drwxr-xr-x`, `Lrwxrwxrwx` for a link.
    pub file_mode: String,
    /// RFC 3339.
    pub mod_time: String,
    pub content_type: String,
}

/// A node-side failure.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ClientError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Internal(String),
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::NotFound(m) => ApiError::not_found(m),
            ClientError::BadRequest(m) => ApiError::bad_request(m),
            ClientError::Internal(m) => ApiError::internal(m),
        }
    }
}

/// Nomad's `StreamFrame` JSON.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct StreamFrame<'a> {
    offset: u64,
    data: String,
    file: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    file_event: &'a str,
}

fn parse_logs_request(alloc_id: String, q: &QueryOptions) -> ApiResult<LogsRequest> {
    let task = q.params.get("task").cloned().unwrap_or_default();
    if task.is_empty() {
        return Err(ApiError::bad_request(
            "missing query parameter task (the task's name)",
        ));
    }
    let stream = match q.params.get("type").map(String::as_str) {
        Some("stdout") => LogStream::Stdout,
        Some("stderr") => LogStream::Stderr,
        other => {
            return Err(ApiError::bad_request(format!(
                "query parameter type={:?} must be \"stdout\" or \"stderr\"",
                other.unwrap_or("")
            )))
        }
    };
    let origin = match q.params.get("origin").map(String::as_str) {
        None | Some("") | Some("start") => LogOrigin::Start,
        Some("end") => LogOrigin::End,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "query parameter origin={other:?} must be \"start\" or \"end\""
            )))
        }
    };
    let offset = match q.params.get("offset").map(String::as_str) {
        None | Some("") => 0,
        Some(v) => v.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "query parameter offset={v:?} is not a non-negative integer"
            ))
        })?,
    };
    Ok(LogsRequest {
        alloc_id,
        task,
        stream,
        follow: q.flag("follow")?,
        origin,
        offset,
    })
}

pub async fn logs(
    State(ctx): State<ApiContext>,
    Path(alloc): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let q = QueryOptions::parse(params)?;
    let request = parse_logs_request(alloc.clone(), &q)?;
    let plain = q.flag("plain")?;
    let Some(client) = ctx.client.clone() else {
        return Err(ApiError::bad_request(
            "this agent runs no client; ask the agent on the node that runs the allocation",
        ));
    };
    if ctx.server.state().alloc(&alloc).is_none() {
        return Err(ApiError::not_found(format!(
            "allocation {alloc:?} not found"
        )));
    }
    let frames = client.logs(request).await?;
    let body = if plain {
        Body::from_stream(frames.map(|r| r.map(|f| f.data).map_err(std::io::Error::other)))
    } else {
        Body::from_stream(frames.map(|r| {
            let frame = r.map_err(std::io::Error::other)?;
            let json = serde_json::to_vec(&StreamFrame {
                offset: frame.offset,
                data: base64::engine::general_purpose::STANDARD.encode(&frame.data),
                file: &frame.file,
                file_event: &frame.file_event,
            })
            .map_err(std::io::Error::other)?;
            Ok::<Bytes, std::io::Error>(Bytes::from(json))
        }))
    };
    let content_type = if plain {
        "text/plain; charset=utf-8"
    } else {
        "application/json"
    };
    Ok((StatusCode::OK, [("content-type", content_type)], body).into_response())
}

fn client_of(ctx: &ApiContext) -> ApiResult<std::sync::Arc<dyn super::ClientEndpoints>> {
    ctx.client.clone().ok_or_else(|| {
        ApiError::bad_request(
            "this agent runs no client; ask the agent on the node that runs the allocation",
        )
    })
}

fn fs_path(q: &QueryOptions) -> String {
    q.params
        .get("path")
        .cloned()
        .unwrap_or_else(|| "/".to_string())
}

fn number(q: &QueryOptions, name: &str) -> ApiResult<u64> {
    match q.params.get(name).map(String::as_str) {
        None | Some("") => Ok(0),
        Some(v) => v.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "query parameter {name}={v:?} is not a non-negative integer"
            ))
        }),
    }
}

/// `GET /v1/client/fs/ls/:alloc?path=`.
pub async fn fs_ls(
    State(ctx): State<ApiContext>,
    Path(alloc): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let q = QueryOptions::parse(params)?;
    let entries = client_of(&ctx)?.fs_list(alloc, fs_path(&q)).await?;
    Ok(axum::Json(entries).into_response())
}

/// `GET /v1/client/fs/stat/:alloc?path=`.
pub async fn fs_stat(
    State(ctx): State<ApiContext>,
    Path(alloc): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let q = QueryOptions::parse(params)?;
    let entry = client_of(&ctx)?.fs_stat(alloc, fs_path(&q)).await?;
    Ok(axum::Json(entry).into_response())
}

/// `GET /v1/client/fs/cat/:alloc?path=` and `/readat/:alloc?path=&offset=&limit=`.
pub async fn fs_read(
    State(ctx): State<ApiContext>,
    Path(alloc): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let q = QueryOptions::parse(params)?;
    let data = client_of(&ctx)?
        .fs_read(
            alloc,
            fs_path(&q),
            number(&q, "offset")?,
            number(&q, "limit")?,
        )
        .await?;
    Ok((
        StatusCode::OK,
        [("content-type", "application/octet-stream")],
        data,
    )
        .into_response())
}

/// Nomad's `AllocSignalRequest`.
#[derive(Debug, serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct AllocSignalRequest {
    task: String,
    signal: String,
}

/// Nomad's `AllocRestartRequest`.
#[derive(Debug, serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct AllocRestartRequest {
    task_name: String,
    all_tasks: bool,
}

fn known_alloc(ctx: &ApiContext, alloc: &str) -> ApiResult<()> {
    if ctx.server.state().alloc(alloc).is_none() {
        return Err(ApiError::not_found(format!(
            "allocation {alloc:?} not found"
        )));
    }
    Ok(())
}

pub async fn alloc_signal(
    State(ctx): State<ApiContext>,
    Path(alloc): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    known_alloc(&ctx, &alloc)?;
    let request: AllocSignalRequest = if body.is_empty() {
        AllocSignalRequest::default()
    } else {
        super::decode_body(&body, "alloc signal request")?
    };
    let signal = if request.signal.is_empty() {
        "SIGKILL".to_string()
    } else {
        request.signal
    };
    let task = (!request.task.is_empty()).then_some(request.task);
    client_of(&ctx)?.signal(alloc, task, signal).await?;
    Ok(axum::Json(serde_json::json!({})).into_response())
}

pub async fn alloc_restart(
    State(ctx): State<ApiContext>,
    Path(alloc): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    known_alloc(&ctx, &alloc)?;
    let request: AllocRestartRequest = if body.is_empty() {
        AllocRestartRequest::default()
    } else {
        super::decode_body(&body, "alloc restart request")?
    };
    if request.all_tasks && !request.task_name.is_empty() {
        return Err(ApiError::bad_request(
            "give either TaskName or AllTasks, not both",
        ));
    }
    let task = (!request.task_name.is_empty()).then_some(request.task_name);
    client_of(&ctx)?.restart(alloc, task).await?;
    Ok(axum::Json(serde_json::json!({})).into_response())
}

pub async fn alloc_stats(
    State(ctx): State<ApiContext>,
    Path(alloc): Path<String>,
) -> ApiResult<Response> {
    let Some(client) = ctx.client.clone() else {
        return Err(ApiError::bad_request(
            "this agent runs no client; ask the agent on the node that runs the allocation",
        ));
    };
    if ctx.server.state().alloc(&alloc).is_none() {
        return Err(ApiError::not_found(format!(
            "allocation {alloc:?} not found"
        )));
    }
    let stats = client.alloc_stats(alloc).await?;
    Ok(axum::Json(stats).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> QueryOptions {
        QueryOptions::parse(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn a_logs_request_needs_a_task_and_a_stream() {
        assert!(parse_logs_request("a".into(), &q(&[("type", "stdout")]))
            .unwrap_err()
            .message
            .contains("task"));
        assert!(
            parse_logs_request("a".into(), &q(&[("task", "t"), ("type", "x")]))
                .unwrap_err()
                .message
                .contains("stdout")
        );
        let r = parse_logs_request(
            "a".into(),
            &q(&[
                ("task", "t"),
                ("type", "stderr"),
                ("follow", "true"),
                ("origin", "end"),
                ("offset", "10"),
            ]),
        )
        .unwrap();
        assert_eq!(r.stream, LogStream::Stderr);
        assert!(r.follow);
        assert_eq!(r.origin, LogOrigin::End);
        assert_eq!(r.offset, 10);
    }
}

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

/// `GET /v1/client/allocation/:id/exec?task=&command=["…"]&tty=` — a websocket speaking
/// Nomad's exec protocol (JSON frames: `stdin`, `tty_size` in; `stdout`, `stderr`, `exited`
/// out).
pub async fn alloc_exec(
    State(ctx): State<ApiContext>,
    Path(alloc): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> ApiResult<Response> {
    known_alloc(&ctx, &alloc)?;
    let q = QueryOptions::parse(params)?;
    let task = q.params.get("task").cloned().unwrap_or_default();
    if task.is_empty() {
        return Err(ApiError::bad_request(
            "missing query parameter task (the task to run in)",
        ));
    }
    let command: Vec<String> = match q.params.get("command") {
        Some(c) => serde_json::from_str(c).map_err(|e| {
            ApiError::bad_request(format!(
                "query parameter command must be a JSON list of strings like [\"/bin/sh\"]: {e}"
            ))
        })?,
        None => return Err(ApiError::bad_request("missing query parameter command")),
    };
    if command.is_empty() || command[0].is_empty() {
        return Err(ApiError::bad_request("command must name a program"));
    }
    let request = ExecRequest {
        alloc_id: alloc,
        task,
        command,
        tty: q.flag("tty")?,
    };
    // Start the command before upgrading, so a bad task or program is a plain HTTP error.
    let session = client_of(&ctx)?.exec(request).await?;
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
