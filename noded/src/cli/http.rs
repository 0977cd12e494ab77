//! The CLI's one HTTP client for the agent's `/v1` API: every request carries the global
//! flags (`?namespace=`, `?region=`, `X-Nomad-Token`); JSON in and out, blocking queries, the
//! exec websocket, and errors that say which agent could not be reached and what to do.

use std::time::Duration;

use anyhow::{anyhow, Context};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// How long a connection to the agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a write may take (a Raft commit, behind a busy leader).
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Slack on top of a blocking query's `wait` before the request is given up.
const BLOCKING_SLACK: Duration = Duration::from_secs(30);

/// An answer with its `X-Nomad-Index`.
#[derive(Debug)]
pub struct Indexed<T> {
    pub value: T,
    pub index: u64,
}

/// A failed call: what the agent answered (status, message) or why it could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ApiCallError {
    #[error("{message}")]
    Status { status: StatusCode, message: String },
    #[error("cannot reach the noded agent at {address}: {detail}. Is `noded agent -dev` running? Set NODED_ADDR or -address to point elsewhere")]
    Unreachable {
        address: String,
        detail: String,
        /// Whether the request may have reached the agent (false: the connection itself
        /// failed, so nothing was delivered and a write may safely go elsewhere).
        request_sent: bool,
    },
    #[error("{0}")]
    Other(String),
}

impl ApiCallError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiCallError::Status { status, .. } if *status == StatusCode::NOT_FOUND)
    }

    /// Whether a call that failed this way at a node's own agent is asked again of the agent
    /// the CLI was given, as Nomad's `api` package does on a `net.Error`: only when the node
    /// could not be reached, never when it answered (a 404 or 400 from the node is the
    /// answer). A write (`idempotent = false`) goes elsewhere only when nothing was
    /// delivered, so a signal is never sent twice.
    pub fn falls_back(&self, idempotent: bool) -> bool {
        match self {
            ApiCallError::Unreachable { request_sent, .. } => idempotent || !request_sent,
            ApiCallError::Status { .. } | ApiCallError::Other(_) => false,
        }
    }
}

/// Which agent to talk to, and what every request carries.
#[derive(Debug, Clone, Default)]
pub struct Endpoint {
    /// `http://host:port` (or https).
    pub address: String,
    /// `?namespace=`, left out when empty.
    pub namespace: String,
    /// `?region=`, left out when empty (the agent's own region).
    pub region: String,
    /// `X-Nomad-Token`, left out when empty.
    pub token: String,
}

#[derive(Debug, Clone)]
pub struct ApiClient {
    address: String,
    connect_timeout: Duration,
    http: reqwest::Client,
    namespace: String,
    region: String,
    token: String,
}

impl ApiClient {
    pub fn new(endpoint: &Endpoint) -> anyhow::Result<ApiClient> {
        ApiClient::with_connect_timeout(endpoint, CONNECT_TIMEOUT)
    }

    fn with_connect_timeout(
        endpoint: &Endpoint,
        connect_timeout: Duration,
    ) -> anyhow::Result<ApiClient> {
        let address = endpoint.address.trim_end_matches('/').to_string();
        if !address.starts_with("http://") && !address.starts_with("https://") {
            return Err(anyhow!(
                "agent address {address:?} must start with http:// or https://"
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .build()
            .context("building the HTTP client")?;
        Ok(ApiClient {
            address,
            connect_timeout,
            http,
            namespace: endpoint.namespace.clone(),
            region: endpoint.region.clone(),
            token: endpoint.token.clone(),
        })
    }

    /// The same namespace, region and token, sent to the agent at `address` (`http://…`),
    /// giving up on connecting after `connect_timeout`.
    pub fn elsewhere(&self, address: &str, connect_timeout: Duration) -> anyhow::Result<ApiClient> {
        ApiClient::with_connect_timeout(
            &Endpoint {
                address: address.to_string(),
                namespace: self.namespace.clone(),
                region: self.region.clone(),
                token: self.token.clone(),
            },
            connect_timeout,
        )
    }

    /// `http://host:port` of the agent this client talks to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The namespace the global flags name (`*` for every one).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<reqwest::Url> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.address))
            .with_context(|| format!("agent address {:?}", self.address))?;
        {
            let mut pairs = url.query_pairs_mut();
            if !self.namespace.is_empty() {
                pairs.append_pair("namespace", &self.namespace);
            }
            if !self.region.is_empty() {
                pairs.append_pair("region", &self.region);
            }
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<(Vec<u8>, &'static str)>,
        timeout: Duration,
    ) -> Result<reqwest::Response, ApiCallError> {
        let url = self
            .url(path, query)
            .map_err(|e| ApiCallError::Other(e.to_string()))?;
        let mut request = self.http.request(method, url).timeout(timeout);
        if !self.token.is_empty() {
            request = request.header("X-Nomad-Token", &self.token);
        }
        if let Some((body, content_type)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ApiCallError::Unreachable {
                address: self.address.clone(),
                detail: describe_reqwest(&e),
                request_sent: !e.is_connect(),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        Err(ApiCallError::Status {
            status,
            message: text.trim().to_string(),
        })
    }

    /// GET a JSON answer; `index > 0` makes it a blocking query waiting up to `wait`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        index: u64,
        wait: Duration,
    ) -> Result<Indexed<T>, ApiCallError> {
        let mut q: Vec<(&str, String)> = query.to_vec();
        if index > 0 {
            q.push(("index", index.to_string()));
            q.push(("wait", format!("{}ms", wait.as_millis())));
        }
        let response = self
            .send(Method::GET, path, &q, None, wait + BLOCKING_SLACK)
            .await?;
        let index = response
            .headers()
            .get("X-Nomad-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let value = decode(path, response).await?;
        Ok(Indexed { value, index })
    }

    /// GET a JSON answer now.
    pub async fn get_now<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ApiCallError> {
        Ok(self.get(path, query, 0, Duration::ZERO).await?.value)
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiCallError> {
        let body = serde_json::to_vec(body).map_err(|e| ApiCallError::Other(e.to_string()))?;
        let response = self
            .send(
                Method::PUT,
                path,
                &[],
                Some((body, "application/json")),
                WRITE_TIMEOUT,
            )
            .await?;
        decode(path, response).await
    }

    /// PUT with query parameters (repeatable: `address=a`, `address=b`) and an optional JSON
    /// body.
    pub async fn put_query<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<T, ApiCallError> {
        let body = match body {
            Some(b) => Some((
                serde_json::to_vec(b).map_err(|e| ApiCallError::Other(e.to_string()))?,
                "application/json",
            )),
            None => None,
        };
        let response = self
            .send(Method::PUT, path, query, body, WRITE_TIMEOUT)
            .await?;
        decode(path, response).await
    }

    /// PUT raw bytes (a snapshot archive).
    pub async fn put_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<T, ApiCallError> {
        let response = self
            .send(
                Method::PUT,
                path,
                &[],
                Some((bytes, "application/octet-stream")),
                WRITE_TIMEOUT,
            )
            .await?;
        decode(path, response).await
    }

    /// GET a list page now: the answer and `X-Nomad-NextToken`, if more follow.
    pub async fn get_page<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(T, Option<String>), ApiCallError> {
        let response = self
            .send(Method::GET, path, query, None, WRITE_TIMEOUT)
            .await?;
        let next = response
            .headers()
            .get("X-Nomad-NextToken")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        Ok((decode(path, response).await?, next))
    }

    /// DELETE with a JSON body (`DELETE /v1/evaluations`).
    pub async fn delete_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiCallError> {
        let body = serde_json::to_vec(body).map_err(|e| ApiCallError::Other(e.to_string()))?;
        let response = self
            .send(
                Method::DELETE,
                path,
                &[],
                Some((body, "application/json")),
                WRITE_TIMEOUT,
            )
            .await?;
        decode(path, response).await
    }

    pub async fn delete<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ApiCallError> {
        let response = self
            .send(Method::DELETE, path, query, None, WRITE_TIMEOUT)
            .await?;
        decode(path, response).await
    }

    /// A streaming GET (logs, file contents): the raw response.
    pub async fn stream(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<reqwest::Response, ApiCallError> {
        self.send(
            Method::GET,
            path,
            query,
            None,
            Duration::from_secs(365 * 24 * 3600),
        )
        .await
    }

    /// The request opening a websocket on `path` (`alloc exec`), with the same namespace,
    /// region and token as every other call.
    pub fn websocket(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut url = self.url(path, query)?;
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme)
            .map_err(|()| anyhow!("cannot open a websocket to {}", self.address))?;
        let mut request = url.as_str().into_client_request()?;
        if !self.token.is_empty() {
            request.headers_mut().insert(
                "X-Nomad-Token",
                self.token
                    .parse()
                    .map_err(|_| anyhow!("the token is not a valid header value"))?,
            );
        }
        Ok(request)
    }
}

/// An open exec websocket.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl ApiClient {
    /// Opens the websocket on `path` (`alloc exec`). The TCP connection is made first, under
    /// the client's connect timeout, so an unreachable agent is told apart (nothing sent)
    /// from one that refused the request (its status and message).
    pub async fn open_websocket(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Socket, ApiCallError> {
        let request = self
            .websocket(path, query)
            .map_err(|e| ApiCallError::Other(e.to_string()))?;
        let unreachable = |detail: String| ApiCallError::Unreachable {
            address: self.address.clone(),
            detail,
            request_sent: false,
        };
        let uri = request.uri();
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16().unwrap_or(80);
        let tcp = match tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable("the connection timed out".to_string())),
        };
        let stream = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
        match tokio_tungstenite::client_async(request, stream).await {
            Ok((socket, _)) => Ok(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err(ApiCallError::Status {
                    status: response.status(),
                    message: body.trim().to_string(),
                })
            }
            Err(e) => Err(ApiCallError::Unreachable {
                address: self.address.clone(),
                detail: format!("opening the websocket: {e}"),
                request_sent: true,
            }),
        }
    }
}

async fn decode<T: DeserializeOwned>(
    path: &str,
    response: reqwest::Response,
) -> Result<T, ApiCallError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ApiCallError::Other(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiCallError::Other(format!(
            "the agent's answer to {path} is not what this CLI expects: {e}"
        ))
    })
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "the request timed out".to_string();
    }
    let mut deepest = e.to_string();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        deepest = s.to_string();
        source = s.source();
    }
    deepest
}

/// `s` as one URL path segment.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(region: &str, token: &str) -> ApiClient {
        ApiClient::new(&Endpoint {
            address: "http://127.0.0.1:4646/".into(),
            region: region.into(),
            namespace: "default".into(),
            token: token.into(),
        })
        .unwrap()
    }

    #[test]
    fn every_request_carries_the_global_flags() {
        let url = client("eu", "")
            .url("/v1/jobs", &[("prefix", "a b".into())])
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:4646/v1/jobs?namespace=default&region=eu&prefix=a+b"
        );
        let ws = client("", "s3cret")
            .websocket("/v1/client/allocation/x/exec", &[("task", "t".into())])
            .unwrap();
        assert_eq!(
            ws.uri().to_string(),
            "ws://127.0.0.1:4646/v1/client/allocation/x/exec?namespace=default&task=t"
        );
        assert_eq!(ws.headers()["X-Nomad-Token"], "s3cret");
        let bad = ApiClient::new(&Endpoint {
            address: "127.0.0.1:4646".into(),
            ..Endpoint::default()
        });
        assert!(bad.unwrap_err().to_string().contains("http://"));
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(urlencode("web/v2 x"), "web%2Fv2%20x");
    }
}
