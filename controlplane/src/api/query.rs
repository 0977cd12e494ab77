//! Query options every read endpoint shares, and Nomad's blocking-query protocol: `?index=N`
//! holds the request until the data's modify index passes N or `?wait=` (default 5m, at most
//! 10m) runs out; every answer carries `X-Nomad-Index` for the next call.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};

use super::error::{ApiError, ApiResult};
use crate::model::duration::parse_go;
use crate::state::{State, StateStore, Table};

pub const DEFAULT_WAIT: Duration = Duration::from_secs(5 * 60);
pub const MAX_WAIT: Duration = Duration::from_secs(10 * 60);

/// Options parsed from the query string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryOptions {
    pub min_index: u64,
    pub wait: Duration,
    pub prefix: String,
    pub namespace: String,
    pub params: HashMap<String, String>,
}

impl QueryOptions {
    pub fn parse(params: HashMap<String, String>) -> ApiResult<QueryOptions> {
        let min_index = match params.get("index") {
            None => 0,
            Some(v) if v.is_empty() => 0,
            Some(v) => v.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "query parameter index={v:?} is not a non-negative integer"
                ))
            })?,
        };
        let wait = match params.get("wait") {
            None => DEFAULT_WAIT,
            Some(v) if v.is_empty() => DEFAULT_WAIT,
            Some(v) => {
                // Nomad accepts a Go duration; a bare number means milliseconds there.
                let d = match v.parse::<u64>() {
                    Ok(ms) => Duration::from_millis(ms),
                    Err(_) => parse_go(v).map_err(|e| {
                        ApiError::bad_request(format!("query parameter wait={v:?}: {e}"))
                    })?,
                };
                d.min(MAX_WAIT)
            }
        };
        let namespace = params
            .get("namespace")
            .filter(|n| !n.is_empty())
            .cloned()
            .unwrap_or_else(|| crate::model::DEFAULT_NAMESPACE.to_string());
        Ok(QueryOptions {
            min_index,
            wait,
            prefix: params.get("prefix").cloned().unwrap_or_default(),
            namespace,
            params,
        })
    }

    /// A boolean flag like `?purge=true`.
    pub fn flag(&self, name: &str) -> ApiResult<bool> {
        match self.params.get(name).map(String::as_str) {
            None | Some("") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some("false") | Some("0") => Ok(false),
            Some(other) => Err(ApiError::bad_request(format!(
                "query parameter {name}={other:?} must be true or false"
            ))),
        }
    }

    /// Whether the namespace filter covers `namespace` (`*` covers every one).
    pub fn covers(&self, namespace: &str) -> bool {
        self.namespace == "*" || self.namespace == namespace
    }

    /// Runs the blocking-query wait and returns the state to answer from, with the index to
    /// report.
    pub async fn block(&self, store: &StateStore, tables: &[Table]) -> (State, u64) {
        let wait = self.wait + jitter(self.wait);
        let (state, _) = store.wait_for(tables, self.min_index, wait).await;
        // Never report 0: a client passing it back would not block at all.
        let index = state.max_index(tables).max(1);
        (state, index)
    }
}

/// Up to wait/16 extra, so that many watchers do not wake at the same instant (as Nomad does).
fn jitter(wait: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let max = wait / 16;
    if max.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_nanos(u64::from(nanos) % (max.as_nanos().max(1) as u64))
}

/// The headers every read answer carries.
pub fn index_headers(index: u64, known_leader: bool) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("X-Nomad-Index", HeaderValue::from(index));
    headers.insert(
        "X-Nomad-KnownLeader",
        HeaderValue::from_static(if known_leader { "true" } else { "false" }),
    );
    headers.insert("X-Nomad-LastContact", HeaderValue::from_static("0"));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> ApiResult<QueryOptions> {
        QueryOptions::parse(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_and_bounds() {
        let o = q(&[]).unwrap();
        assert_eq!(o.min_index, 0);
        assert_eq!(o.wait, DEFAULT_WAIT);
        assert_eq!(o.namespace, "default");
        assert_eq!(q(&[("wait", "1h")]).unwrap().wait, MAX_WAIT);
        assert_eq!(
            q(&[("wait", "250")]).unwrap().wait,
            Duration::from_millis(250)
        );
        assert_eq!(q(&[("wait", "2s"), ("index", "7")]).unwrap().min_index, 7);
    }

    #[test]
    fn malformed_parameters_are_a_400_naming_them() {
        let e = q(&[("index", "-1")]).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(e.message.contains("index"));
        assert!(q(&[("wait", "soon")]).unwrap_err().message.contains("wait"));
        let o = q(&[("purge", "maybe")]).unwrap();
        assert!(o.flag("purge").unwrap_err().message.contains("purge"));
    }
}
