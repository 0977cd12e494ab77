//! How an endpoint answers: JSON with Nomad's metadata headers, set in one place.
//!
//! A read answers with [`Reply::read`] (or [`Reply::page`] for a list), carrying the
//! [`QueryMeta`] of the state it read: `X-Nomad-Index` (what to pass as `?index=` to block for
//! the next change), `X-Nomad-KnownLeader` and `X-Nomad-LastContact`. A write answers with
//! [`Reply::write`] and the index it committed at. Anything else is [`Reply::json`].

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;

use super::error::{ApiError, ApiResult};
use super::extract::QueryOptions;
use super::ApiContext;
use crate::state::{State, Table};

/// What a read answer says about the state it came from (Nomad's `QueryMeta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryMeta {
    /// The highest modify index of the tables read; never 0, so that a client passing it
    /// back as `?index=` blocks.
    pub index: u64,
    pub known_leader: bool,
    /// Milliseconds since this server last heard from the leader (0 on the leader).
    pub last_contact_ms: u64,
}

impl ApiContext {
    /// The metadata of an answer read at `index`.
    pub(crate) fn meta(&self, index: u64) -> QueryMeta {
        let Some(server) = &self.server else {
            // A client-only agent answering its own endpoints: no Raft to speak of.
            return QueryMeta {
                index: index.max(1),
                known_leader: false,
                last_contact_ms: 0,
            };
        };
        let consensus = server.consensus();
        QueryMeta {
            index: index.max(1),
            known_leader: consensus.leader_address().is_some(),
            // Every server answers from its own applied state; a follower says how old the
            // leader's last word is (a server that never heard one says so with the most).
            last_contact_ms: consensus
                .last_contact()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(u64::MAX),
        }
    }

    /// Runs Nomad's blocking query for `tables`: waits until their modify index passes
    /// `?index=` or `?wait=` (plus up to 1/16 jitter, so watchers do not wake together) runs
    /// out, and returns the state to answer from with its metadata.
    ///
    /// Reads are linearizable unless the caller asks for `?stale`: first a read barrier
    /// (Raft's read index through the leader), so a follower, or a leader that has lost its
    /// quorum without knowing it yet, never answers from a state older than the last
    /// acknowledged write. With `?stale` any server answers from what it has applied, and
    /// `X-Nomad-LastContact` says how old that may be.
    pub(crate) async fn read(
        &self,
        q: &QueryOptions,
        tables: &[Table],
    ) -> ApiResult<(State, QueryMeta)> {
        let server = self.server()?;
        if !q.stale {
            server
                .consensus()
                .read_barrier()
                .await
                .map_err(crate::server::ServerError::from)?;
        }
        let wait = q.wait + jitter(q.wait);
        let (state, _) = server.store().wait_for(tables, q.min_index, wait).await;
        let index = state.max_index(tables);
        Ok((state, self.meta(index)))
    }
}

/// Up to wait/16 extra, derived from the clock's nanoseconds (no randomness source needed).
fn jitter(wait: Duration) -> Duration {
    let max = wait / 16;
    if max.is_zero() {
        return Duration::ZERO;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let max_nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX).max(1);
    Duration::from_nanos(u64::from(nanos) % max_nanos)
}

/// An answer: status, headers and a JSON body.
#[derive(Debug)]
pub struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    /// JSON with no metadata (parse and validate answers, agent information).
    pub fn json<T: Serialize + ?Sized>(value: &T) -> ApiResult<Reply> {
        let body = serde_json::to_vec(value)
            .map_err(|e| ApiError::internal(format!("encoding the answer as JSON: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        Ok(Reply {
            status: StatusCode::OK,
            headers,
            body: Bytes::from(body),
        })
    }

    /// A read's answer, with the state's metadata.
    pub fn read<T: Serialize + ?Sized>(value: &T, meta: QueryMeta) -> ApiResult<Reply> {
        Ok(Reply::json(value)?.with_meta(meta))
    }

    /// A write's answer, with the index it was committed at.
    pub fn write<T: Serialize + ?Sized>(value: &T, index: u64) -> ApiResult<Reply> {
        let mut reply = Reply::json(value)?;
        reply
            .headers
            .insert("X-Nomad-Index", HeaderValue::from(index));
        Ok(reply)
    }

    /// A list's answer: `?reverse`, `?next_token` and `?per_page` applied, and
    /// `X-Nomad-NextToken` set when more follow. `items` must be in ascending order of `key`
    /// (the token is the key of the first item of the next page).
    pub fn page<T: Serialize>(
        items: Vec<T>,
        key: impl Fn(&T) -> String,
        q: &QueryOptions,
        meta: QueryMeta,
    ) -> ApiResult<Reply> {
        Reply::page_then(items, key, q, meta, Ok)
    }

    /// [`Reply::page`], with `then` applied to the page before it is sent (`?choose=` picks
    /// among the page's items, as Nomad does).
    pub fn page_then<T: Serialize>(
        items: Vec<T>,
        key: impl Fn(&T) -> String,
        q: &QueryOptions,
        meta: QueryMeta,
        then: impl FnOnce(Vec<T>) -> ApiResult<Vec<T>>,
    ) -> ApiResult<Reply> {
        let items = filtered(items, q)?;
        let (items, next) = paginate(items, key, q);
        let items = then(items)?;
        let mut reply = Reply::read(&items, meta)?;
        if let Some(next) = next {
            let value = HeaderValue::from_str(&next).map_err(|_| {
                ApiError::internal(format!("next page token {next:?} is not a header value"))
            })?;
            reply.headers.insert("X-Nomad-NextToken", value);
        }
        Ok(reply)
    }

    fn with_meta(mut self, meta: QueryMeta) -> Reply {
        debug_assert!(meta.index > 0, "a read answer's index is never 0");
        self.headers
            .insert("X-Nomad-Index", HeaderValue::from(meta.index));
        self.headers.insert(
            "X-Nomad-KnownLeader",
            HeaderValue::from_static(if meta.known_leader { "true" } else { "false" }),
        );
        self.headers.insert(
            "X-Nomad-LastContact",
            HeaderValue::from(meta.last_contact_ms),
        );
        self
    }
}

/// The items `?filter=` keeps, judged on their JSON form (as Nomad filters before it pages).
pub(crate) fn filtered<T: Serialize>(items: Vec<T>, q: &QueryOptions) -> ApiResult<Vec<T>> {
    let Some(filter) = &q.filter else {
        return Ok(items);
    };
    let mut kept = Vec::with_capacity(items.len());
    for item in items {
        let json = serde_json::to_value(&item)
            .map_err(|e| ApiError::internal(format!("encoding an item to filter it: {e}")))?;
        if filter.matches(&json) {
            kept.push(item);
        }
    }
    Ok(kept)
}

/// The page of `items` that `q` asks for, and the token of the next one.
fn paginate<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    q: &QueryOptions,
) -> (Vec<T>, Option<String>) {
    debug_assert!(
        items.windows(2).all(|w| key(&w[0]) <= key(&w[1])),
        "a list is paged in ascending order of its key"
    );
    if q.reverse {
        items.reverse();
    }
    if !q.next_token.is_empty() {
        let token = q.next_token.as_str();
        let before = |k: &str| if q.reverse { k > token } else { k < token };
        let first = items
            .iter()
            .position(|i| !before(&key(i)))
            .unwrap_or(items.len());
        items.drain(..first);
    }
    let per_page = q.per_page as usize;
    if per_page == 0 || items.len() <= per_page {
        return (items, None);
    }
    let next = key(&items[per_page]);
    items.truncate(per_page);
    (items, Some(next))
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        (self.status, self.headers, self.body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> QueryOptions {
        super::super::extract::query_options(pairs).unwrap()
    }

    fn page(pairs: &[(&str, &str)]) -> (Vec<&'static str>, Option<String>) {
        paginate(vec!["a", "b", "c", "d", "e"], |s| s.to_string(), &q(pairs))
    }

    #[test]
    fn pages_follow_their_tokens_both_ways() {
        assert_eq!(page(&[]), (vec!["a", "b", "c", "d", "e"], None));
        assert_eq!(
            page(&[("per_page", "2")]),
            (vec!["a", "b"], Some("c".to_string()))
        );
        assert_eq!(
            page(&[("per_page", "2"), ("next_token", "c")]),
            (vec!["c", "d"], Some("e".to_string()))
        );
        assert_eq!(
            page(&[("per_page", "2"), ("next_token", "e")]),
            (vec!["e"], None)
        );
        assert_eq!(
            page(&[("per_page", "2"), ("reverse", "true")]),
            (vec!["e", "d"], Some("c".to_string()))
        );
        assert_eq!(
            page(&[("per_page", "2"), ("reverse", "true"), ("next_token", "c")]),
            (vec!["c", "b"], Some("a".to_string()))
        );
        // A token between keys starts at the next key.
        assert_eq!(page(&[("next_token", "bb")]).0, vec!["c", "d", "e"]);
        assert_eq!(page(&[("next_token", "z")]).0, Vec::<&str>::new());
    }

    #[test]
    fn every_read_carries_nomads_headers() {
        let meta = QueryMeta {
            index: 7,
            known_leader: true,
            last_contact_ms: 0,
        };
        let r = Reply::read(&serde_json::json!([]), meta).unwrap();
        assert_eq!(r.headers["X-Nomad-Index"], "7");
        assert_eq!(r.headers["X-Nomad-KnownLeader"], "true");
        assert_eq!(r.headers["X-Nomad-LastContact"], "0");
        assert_eq!(r.headers["content-type"], "application/json");
        let w = Reply::write(&serde_json::json!({}), 9).unwrap();
        assert_eq!(w.headers["X-Nomad-Index"], "9");
        assert!(!w.headers.contains_key("X-Nomad-KnownLeader"));
        let p = Reply::page(
            vec!["a", "b", "c"],
            |s| s.to_string(),
            &q(&[("per_page", "1")]),
            meta,
        )
        .unwrap();
        assert_eq!(p.headers["X-Nomad-NextToken"], "b");
        // The filter applies before the page is cut.
        let items = vec![
            serde_json::json!({"ID": "a", "S": "x"}),
            serde_json::json!({"ID": "b", "S": "y"}),
            serde_json::json!({"ID": "c", "S": "x"}),
            serde_json::json!({"ID": "d", "S": "x"}),
        ];
        let id = |v: &serde_json::Value| v["ID"].as_str().unwrap_or("").to_string();
        let query = q(&[("per_page", "2"), ("filter", "S == x")]);
        let kept = filtered(items, &query).unwrap();
        let (page, next) = paginate(kept, id, &query);
        assert_eq!(page.iter().map(id).collect::<Vec<_>>(), vec!["a", "c"]);
        assert_eq!(next.as_deref(), Some("d"));
    }
}
