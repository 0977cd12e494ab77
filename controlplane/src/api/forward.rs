//! A client-only agent's API: it answers its own endpoints and hands the rest to a server.
//!
//! Nomad's client agents serve the whole `/v1` API: what only servers know they forward over
//! RPC. noded does the same in one place: on an agent without a server, a layer around the
//! router sends every request whose path is not the agent's own ([`answered_locally`]) to a
//! server through [`ServerForwarder`] (the binary implements it over the QUIC fabric), and
//! the server answers it with its own router ([`serve_forwarded`]), checks and all. Responses
//! are buffered whole, so what streams (`/v1/client/…` logs, exec) is only ever answered
//! locally.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::{ApiContext, MAX_BODY_BYTES};

/// The largest answer a forwarded request may bring back (a snapshot download is the
/// largest; bigger ones must be asked of a server directly).
pub const MAX_FORWARDED_RESPONSE_BYTES: usize = 48 * 1024 * 1024;

/// An HTTP request as it travels to a server. A wire type: fields are only ever added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ForwardedRequest {
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// The request's headers that matter to a server (token, content type, index…).
    pub headers: Vec<(String, String)>,
    #[serde(skip)]
    pub body: Bytes,
}

/// A server's answer to a [`ForwardedRequest`]. A wire type: fields are only ever added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ForwardedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    #[serde(skip)]
    pub body: Bytes,
}

/// How a client-only agent reaches a server.
pub trait ServerForwarder: Send + Sync + 'static {
    /// Sends one request to a server of this region and returns its answer, or says why no
    /// server answered.
    fn forward(
        &self,
        request: ForwardedRequest,
    ) -> BoxFuture<'_, Result<ForwardedResponse, String>>;
}

/// Whether an agent answers `path` itself rather than a server: the node's own endpoints and
/// the agent's description of itself.
pub fn answered_locally(path: &str) -> bool {
    path.starts_with("/v1/client/")
        || matches!(
            path,
            "/v1/agent/self" | "/v1/agent/health" | "/v1/agent/host" | "/v1/agent/monitor"
        )
}

/// Headers a request carries to the server: everything but hop-by-hop ones and those that
/// describe the body framing (which is rebuilt).
fn forwarded_header(name: &str) -> bool {
    !matches!(
        name,
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
            | "te"
            | "trailer"
            | "proxy-connection"
    )
}

/// The layer of a client-only agent's router: what the agent does not answer itself goes to
/// a server.
pub(super) async fn forward_unless_local(
    State(ctx): State<ApiContext>,
    request: Request,
    next: Next,
) -> Response {
    if answered_locally(request.uri().path()) {
        return next.run(request).await;
    }
    let Some(forwarder) = ctx.forwarder.clone() else {
        return ApiError::internal(
            "this agent runs no server and has no server to forward the request to; check the client's `servers` or `server_join` settings",
        )
        .into_response();
    };
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::bad_request(format!(
                "reading the request body (at most {MAX_BODY_BYTES} bytes): {e}"
            ))
            .into_response()
        }
    };
    let forwarded = ForwardedRequest {
        method: parts.method.as_str().to_string(),
        uri: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| parts.uri.path().to_string()),
        headers: parts
            .headers
            .iter()
            .filter(|(name, _)| forwarded_header(name.as_str()))
            .filter_map(|(name, value)| {
                Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
            })
            .collect(),
        body,
    };
    match forwarder.forward(forwarded).await {
        Ok(answer) => into_response(answer),
        Err(e) => {
            ApiError::internal(format!("no server answered the request: {e}")).into_response()
        }
    }
}

fn into_response(answer: ForwardedResponse) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, answer.body).into_response();
    let headers = response.headers_mut();
    for (name, value) in answer.headers {
        if !forwarded_header(&name) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    }
    response
}

/// A server answers a request a client-only agent forwarded, with its own router: the same
/// route table, declarations and checks as a request made to it directly.
pub async fn serve_forwarded(router: Router, request: ForwardedRequest) -> ForwardedResponse {
    use tower::ServiceExt;
    let method = match Method::from_bytes(request.method.as_bytes()) {
        Ok(m) => m,
        Err(_) => {
            return error_answer(
                StatusCode::BAD_REQUEST,
                "the forwarded request's method is not valid",
            )
        }
    };
    let mut builder = axum::http::Request::builder()
        .method(method)
        .uri(&request.uri);
    for (name, value) in &request.headers {
        if forwarded_header(name) {
            builder = builder.header(name, value);
        }
    }
    let http_request = match builder.body(Body::from(request.body)) {
        Ok(r) => r,
        Err(e) => {
            return error_answer(
                StatusCode::BAD_REQUEST,
                &format!("the forwarded request is not valid: {e}"),
            )
        }
    };
    let response = match router.oneshot(http_request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let body = match axum::body::to_bytes(body, MAX_FORWARDED_RESPONSE_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            return error_answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("the answer is larger than {MAX_FORWARDED_RESPONSE_BYTES} bytes, which a client agent does not forward; ask a server directly ({e})"),
            )
        }
    };
    ForwardedResponse {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
            })
            .collect(),
        body,
    }
}

fn error_answer(status: StatusCode, message: &str) -> ForwardedResponse {
    ForwardedResponse {
        status: status.as_u16(),
        headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
        body: Bytes::from(message.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nodes_own_endpoints_are_answered_locally_and_the_rest_forwarded() {
        for local in [
            "/v1/client/fs/logs/abc",
            "/v1/client/allocation/abc/stats",
            "/v1/client/allocation/abc/checks",
            "/v1/agent/self",
            "/v1/agent/health",
        ] {
            assert!(answered_locally(local), "{local}");
        }
        for forwarded in [
            "/v1/jobs",
            "/v1/nodes",
            "/v1/agent/members",
            "/v1/status/leader",
            "/v1/clientx",
        ] {
            assert!(!answered_locally(forwarded), "{forwarded}");
        }
    }

    #[test]
    fn hop_by_hop_headers_are_not_forwarded() {
        assert!(forwarded_header("x-nomad-token"));
        assert!(forwarded_header("content-type"));
        assert!(!forwarded_header("connection"));
        assert!(!forwarded_header("content-length"));
    }
}
