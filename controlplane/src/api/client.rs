//! `/v1/client/...`: endpoints the node running an allocation answers (through
//! [`super::ClientEndpoints`]).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
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
    let origin = match q.string("origin") {
        "" | "start" => LogOrigin::Start,
        "end" => LogOrigin::End,
        other => {
            return Err(ApiError::bad_request(format!(
                "query parameter origin={other:?} must be \"start\" or \"end\""
            )))
        }
    };
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
    let body = if plain {
        axum::body::Body::from_stream(
            frames.map(|r| r.map(|f| f.data).map_err(std::io::Error::other)),
        )
    } else {
        axum::body::Body::from_stream(frames.map(|r| {
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
}
