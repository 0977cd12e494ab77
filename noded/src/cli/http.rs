//! The CLI's HTTP client for the agent's `/v1` API: JSON in and out, blocking queries, and
//! errors that say which agent could not be reached and what to do.

use std::time::Duration;

use anyhow::{anyhow, Context};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

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
    Unreachable { address: String, detail: String },
    #[error("{0}")]
    Other(String),
}

impl ApiCallError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiCallError::Status { status, .. } if *status == StatusCode::NOT_FOUND)
    }
}

#[derive(Debug, Clone)]
pub struct ApiClient {
    address: String,
    http: reqwest::Client,
    namespace: String,
}

impl ApiClient {
    pub fn new(address: &str, namespace: &str) -> anyhow::Result<ApiClient> {
        let address = address.trim_end_matches('/').to_string();
        if !address.starts_with("http://") && !address.starts_with("https://") {
            return Err(anyhow!(
                "agent address {address:?} must start with http:// or https://"
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        Ok(ApiClient {
            address,
            http,
            namespace: namespace.to_string(),
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<reqwest::Url> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.address))
            .with_context(|| format!("agent address {:?}", self.address))?;
        {
            let mut pairs = url.query_pairs_mut();
            if !self.namespace.is_empty() {
                pairs.append_pair("namespace", &self.namespace);
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
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<reqwest::Response, ApiCallError> {
        let url = self
            .url(path, query)
            .map_err(|e| ApiCallError::Other(e.to_string()))?;
        let mut request = self.http.request(method, url).timeout(timeout);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ApiCallError::Unreachable {
                address: self.address.clone(),
                detail: describe_reqwest(&e),
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
            .send(Method::GET, path, &q, None, wait + Duration::from_secs(30))
            .await?;
        let index = response
            .headers()
            .get("X-Nomad-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ApiCallError::Other(e.to_string()))?;
        let value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiCallError::Other(format!(
                "the agent's answer to {path} is not what this CLI expects: {e}"
            ))
        })?;
        Ok(Indexed { value, index })
    }

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
            .send(Method::PUT, path, &[], Some(body), Duration::from_secs(60))
            .await?;
        response
            .json()
            .await
            .map_err(|e| ApiCallError::Other(e.to_string()))
    }

    pub async fn post_raw(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<serde_json::Value, ApiCallError> {
        let response = self
            .send(Method::POST, path, &[], Some(body), Duration::from_secs(60))
            .await?;
        response
            .json()
            .await
            .map_err(|e| ApiCallError::Other(e.to_string()))
    }

    pub async fn delete<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ApiCallError> {
        let response = self
            .send(Method::DELETE, path, query, None, Duration::from_secs(60))
            .await?;
        response
            .json()
            .await
            .map_err(|e| ApiCallError::Other(e.to_string()))
    }

    /// A streaming GET (logs): the raw response.
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
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut deepest = e.to_string();
    while let Some(s) = source {
        deepest = s.to_string();
        source = s.source();
    }
    if e.is_timeout() {
        return "the request timed out".to_string();
    }
    deepest
}
