//! `/v1/client/...`: endpoints the node running an allocation answers (through
//! [`super::ClientEndpoints`]).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::Serialize;

use super::error::{ApiError, ApiResult};
use super::extract::{Body, QueryOptions, RequestBody, WriteOptions};
use super::reply::Reply;
use super::ApiContext;

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

/// `/v1/client/fs/stream`: one file of an allocation's directory, from `offset` bytes after
/// the start or before the end, followed (appends, truncation, deletion) while `follow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsStreamRequest {
    pub alloc_id: String,
    /// Relative to the allocation directory, as the other fs endpoints take it.
    pub path: String,
    pub origin: LogOrigin,
    pub offset: u64,
    pub follow: bool,
}

/// How long a framed stream may stay silent before a heartbeat frame (`{}`) is sent, as
/// Nomad's stream framer does: proxies and clients see the connection is alive, and a
/// client that went away is noticed on the write.
pub const STREAM_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

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

/// Nomad's `StreamFrame` JSON: every field left out when empty (Go's `omitempty`), so a
/// heartbeat is `{}`.
#[derive(Serialize, Default)]
#[serde(rename_all = "PascalCase")]
struct StreamFrame<'a> {
    #[serde(skip_serializing_if = "is_zero")]
    offset: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    data: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    file: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    file_event: &'a str,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A frame's JSON; `None` is a heartbeat.
fn frame_json(frame: Option<&LogFrame>) -> serde_json::Result<Vec<u8>> {
    let Some(frame) = frame else {
        return serde_json::to_vec(&StreamFrame::default());
    };
    serde_json::to_vec(&StreamFrame {
        offset: frame.offset,
        data: base64::engine::general_purpose::STANDARD.encode(&frame.data),
        file: &frame.file,
        file_event: &frame.file_event,
    })
}

type Frames = BoxStream<'static, Result<LogFrame, ClientError>>;

/// `frames` with `None` (a heartbeat) whenever [`STREAM_HEARTBEAT`] passes without one.
/// Waiting on the next frame under a timeout loses nothing: the pending read stays inside
/// the inner stream and is polled again on the next turn.
fn with_heartbeats(
    frames: Frames,
    every: std::time::Duration,
) -> BoxStream<'static, Result<Option<LogFrame>, ClientError>> {
    futures::stream::unfold(frames, move |mut frames| async move {
        match tokio::time::timeout(every, frames.next()).await {
            Ok(Some(item)) => Some((item.map(Some), frames)),
            Ok(None) => None,
            Err(_elapsed) => Some((Ok(None), frames)),
        }
    })
    .boxed()
}

/// The response of a framed endpoint (logs, fs stream): JSON `StreamFrame`s one after
/// another with heartbeats, or with `plain` the raw bytes alone.
fn framed_response(frames: Frames, plain: bool) -> Response {
    let body = if plain {
        axum::body::Body::from_stream(
            frames.map(|r| r.map(|f| f.data).map_err(std::io::Error::other)),
        )
    } else {
        axum::body::Body::from_stream(with_heartbeats(frames, STREAM_HEARTBEAT).map(|r| {
            let frame = r.map_err(std::io::Error::other)?;
            let json = frame_json(frame.as_ref()).map_err(std::io::Error::other)?;
            Ok::<Bytes, std::io::Error>(Bytes::from(json))
        }))
    };
    let content_type = if plain {
        "text/plain; charset=utf-8"
    } else {
        "application/json"
    };
    (StatusCode::OK, [("content-type", content_type)], body).into_response()
}

fn parse_logs_request(alloc_id: String, q: &QueryOptions) -> ApiResult<LogsRequest> {
    let task = q.string("task");
    if task.is_empty() {
        return Err(ApiError::bad_request(
            "missing query parameter task (the task's name)",
        ));
    }
    let stream = match q.string("type") {
        "stdout" => LogStream::Stdout,
        "stderr" => LogStream::Stderr,
        other => {
            return Err(ApiError::bad_request(format!(
                "query parameter type={other:?} must be \"stdout\" or \"stderr\""
            )))
        }
    };
    let origin = parse_origin(q)?;
    Ok(LogsRequest {
        alloc_id,
        task: task.to_string(),
        stream,
        follow: q.flag("follow")?,
        origin,
        offset: q.number("offset")?,
    })
}

/// `GET /v1/client/fs/logs/:alloc?task=&type=&follow=&origin=&offset=&plain=`.
pub async fn logs(
    State(ctx): State<ApiContext>,
    Path(alloc): Path<String>,
    q: QueryOptions,
) -> ApiResult<Response> {
    let request = parse_logs_request(alloc.clone(), &q)?;
    let plain = q.flag("plain")?;
    let client = ctx.client_endpoints()?;
    ctx.known_alloc(&alloc)?;
    let frames = client.logs(request).await?;
    Ok(framed_response(frames, plain))
}

fn parse_origin(q: &QueryOptions) -> ApiResult<LogOrigin> {
    match q.string("origin") {
        "" | "start" => Ok(LogOrigin::Start),
        "end" => Ok(LogOrigin::End),
        other => Err(ApiError::bad_request(format!(
            "query parameter origin={other:?} must be \"start\" or \"end\""
        ))),
    }
}

fn parse_fs_stream_request(alloc_id: String, q: &QueryOptions) -> ApiResult<FsStreamRequest> {
    let path = q.string("path");
    if path.is_empty() {
        return Err(ApiError::bad_request(
            "must provide a file name (query parameter path, relative to the allocation directory)",
        ));
    }
    // Nomad's default: a stream follows unless told not to.
    let follow = q.flag_or("follow", true)?;
    Ok(FsStreamRequest {
        alloc_id,
        path: path.to_string(),
        origin: parse_origin(q)?,
        offset: q.number("offset")?,
        follow,
    })
}

/// `GET /v1/client/fs/stream/:alloc?path=&offset=&origin=&follow=&plain=`: a file as
/// frames, following it by default.
pub async fn fs_stream(
    State(ctx): State<ApiContext>,
    Path(alloc): Path<String>,
    q: QueryOptions,
) -> ApiResult<Response> {
    let request = parse_fs_stream_request(alloc.clone(), &q)?;
    let plain = q.flag("plain")?;
    let client = ctx.client_endpoints()?;
    ctx.known_alloc(&alloc)?;
    let frames = client.fs_stream(request).await?;
    Ok(framed_response(frames, plain))
}

/// `?path=`, the allocation directory's root when absent.
fn fs_path(q: &QueryOptions) -> String {
    match q.string("path") {
        "" => "/".to_string(),
        path => path.to_string(),
    }
}

/// `GET /v1/client/fs/ls/:alloc?path=`.
pub async fn fs_ls(
    State(ctx): State<ApiContext>,
    Path(alloc): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let entries = ctx.client_endpoints()?.fs_list(alloc, fs_path(&q)).await?;
    Reply::json(&entries)
}

/// `GET /v1/client/fs/stat/:alloc?path=`.
pub async fn fs_stat(
    State(ctx): State<ApiContext>,
    Path(alloc): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let entry = ctx.client_endpoints()?.fs_stat(alloc, fs_path(&q)).await?;
    Reply::json(&entry)
}

/// `GET /v1/client/fs/cat/:alloc?path=`: the whole file.
pub async fn fs_cat(
    State(ctx): State<ApiContext>,
    Path(alloc): Path<String>,
    q: QueryOptions,
) -> ApiResult<Response> {
    let data = ctx
        .client_endpoints()?
        .fs_read(alloc, fs_path(&q), 0, 0)
        .await?;
    Ok(octets(data))
}

/// `GET /v1/client/fs/readat/:alloc?path=&offset=&limit=`: `limit` bytes from `offset`.
pub async fn fs_readat(
    State(ctx): State<ApiContext>,
    Path(alloc): Path<String>,
    q: QueryOptions,
) -> ApiResult<Response> {
    let (offset, limit) = (q.number("offset")?, q.number("limit")?);
    let data = ctx
        .client_endpoints()?
        .fs_read(alloc, fs_path(&q), offset, limit)
        .await?;
    Ok(octets(data))
}

/// File contents are the task's bytes: never a type a browser would render.
fn octets(data: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/octet-stream")],
        data,
    )
        .into_response()
}

/// Nomad's `AllocSignalRequest`.
#[derive(Debug, serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct AllocSignalRequest {
    task: String,
    signal: String,
}

impl RequestBody for AllocSignalRequest {
    const WHAT: &'static str = "alloc signal request";
    const EMPTY_IS_DEFAULT: bool = true;
}

/// Nomad's `AllocRestartRequest`.
#[derive(Debug, serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct AllocRestartRequest {
    task_name: String,
    all_tasks: bool,
}

impl RequestBody for AllocRestartRequest {
    const WHAT: &'static str = "alloc restart request";
    const EMPTY_IS_DEFAULT: bool = true;
}

pub async fn alloc_signal(
    State(ctx): State<ApiContext>,
    Path(alloc): Path<String>,
    _w: WriteOptions,
    body: Body<AllocSignalRequest>,
) -> ApiResult<Reply> {
    ctx.known_alloc(&alloc)?;
    let request = body.value;
    let signal = if request.signal.is_empty() {
        "SIGKILL".to_string()
    } else {
        request.signal
    };
    let task = (!request.task.is_empty()).then_some(request.task);
    ctx.client_endpoints()?.signal(alloc, task, signal).await?;
    Reply::json(&serde_json::json!({}))
}

pub async fn alloc_restart(
    State(ctx): State<ApiContext>,
    Path(alloc): Path<String>,
    _w: WriteOptions,
    body: Body<AllocRestartRequest>,
) -> ApiResult<Reply> {
    ctx.known_alloc(&alloc)?;
    let request = body.value;
    if request.all_tasks && !request.task_name.is_empty() {
        return Err(ApiError::bad_request(
            "give either TaskName or AllTasks, not both",
        ));
    }
    let task = (!request.task_name.is_empty()).then_some(request.task_name);
    ctx.client_endpoints()?.restart(alloc, task).await?;
    Reply::json(&serde_json::json!({}))
}

/// `/v1/client/gc` (Nomad's `nomad system gc` client side, and `Nodes().GC`, a GET).
pub async fn gc_all(State(ctx): State<ApiContext>, _q: QueryOptions) -> ApiResult<Reply> {
    ctx.client_endpoints()?.gc_all().await?;
    Reply::json(&serde_json::json!({}))
}

/// `/v1/client/allocation/:id/gc` (Nomad's `Allocations().GC`, a GET).
pub async fn alloc_gc(
    State(ctx): State<ApiContext>,
    Path(alloc): Path<String>,
    _q: QueryOptions,
) -> ApiResult<Reply> {
    let client = ctx.client_endpoints()?;
    client.gc_alloc(alloc).await?;
    Reply::json(&serde_json::json!({}))
}

/// `/v1/client/allocation/:id/checks` (Nomad's `Allocations().Checks`): check id → the
/// latest result.
pub async fn alloc_checks(
    State(ctx): State<ApiContext>,
    Path(alloc): Path<String>,
    _q: QueryOptions,
) -> ApiResult<Reply> {
    let client = ctx.client_endpoints()?;
    ctx.known_alloc(&alloc)?;
    let checks = client.alloc_checks(alloc).await?;
    Reply::json(&checks)
}

pub async fn alloc_stats(
    State(ctx): State<ApiContext>,
    Path(alloc): Path<String>,
    _q: QueryOptions,
) -> ApiResult<Reply> {
    let client = ctx.client_endpoints()?;
    ctx.known_alloc(&alloc)?;
    let stats = client.alloc_stats(alloc).await?;
    Reply::json(&stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> QueryOptions {
        super::super::extract::query_options(pairs).unwrap()
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
        assert!(parse_logs_request(
            "a".into(),
            &q(&[("task", "t"), ("type", "stdout"), ("offset", "-3")])
        )
        .unwrap_err()
        .message
        .contains("offset"));
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

    #[test]
    fn an_fs_stream_request_needs_a_path_and_follows_by_default() {
        let e = parse_fs_stream_request("a".into(), &q(&[])).unwrap_err();
        assert!(e.message.contains("file name"), "{}", e.message);
        let r = parse_fs_stream_request("a".into(), &q(&[("path", "alloc/x")])).unwrap();
        assert_eq!(
            r,
            FsStreamRequest {
                alloc_id: "a".into(),
                path: "alloc/x".into(),
                origin: LogOrigin::Start,
                offset: 0,
                follow: true,
            }
        );
        let r = parse_fs_stream_request(
            "a".into(),
            &q(&[
                ("path", "x"),
                ("follow", "false"),
                ("origin", "end"),
                ("offset", "7"),
            ]),
        )
        .unwrap();
        assert!(!r.follow);
        assert_eq!((r.origin, r.offset), (LogOrigin::End, 7));
        for bad in [("origin", "middle"), ("follow", "maybe"), ("offset", "x")] {
            let e = parse_fs_stream_request("a".into(), &q(&[("path", "x"), bad])).unwrap_err();
            assert!(e.message.contains(bad.0), "{bad:?}: {}", e.message);
        }
    }

    #[test]
    fn frames_are_nomads_json_and_a_heartbeat_is_empty() {
        let frame = LogFrame {
            file: "alloc/logs/x".into(),
            offset: 3,
            data: Bytes::from_static(b"hi"),
            file_event: String::new(),
        };
        assert_eq!(
            String::from_utf8(frame_json(Some(&frame)).unwrap()).unwrap(),
            r#"{"Offset":3,"Data":"aGk=","File":"alloc/logs/x"}"#
        );
        assert_eq!(frame_json(None).unwrap(), b"{}");
        let event = LogFrame {
            file: "x".into(),
            file_event: "file truncated".into(),
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(frame_json(Some(&event)).unwrap()).unwrap(),
            r#"{"File":"x","FileEvent":"file truncated"}"#
        );
    }

    #[tokio::test]
    async fn a_silent_stream_gets_heartbeats_and_loses_no_frame() {
        // One frame after 300 ms of silence, then the end.
        let slow = futures::stream::once(async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            Ok(LogFrame {
                data: Bytes::from_static(b"late"),
                ..Default::default()
            })
        })
        .boxed();
        let items: Vec<_> = with_heartbeats(slow, std::time::Duration::from_millis(50))
            .collect()
            .await;
        let (beats, frames): (Vec<_>, Vec<_>) = items
            .into_iter()
            .map(Result::unwrap)
            .partition(Option::is_none);
        assert!(beats.len() >= 3, "{} heartbeats", beats.len());
        assert_eq!(frames.len(), 1);
        assert_eq!(&frames[0].as_ref().unwrap().data[..], b"late");
    }
}
