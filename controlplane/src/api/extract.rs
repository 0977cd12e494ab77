//! What a request carries, read once for every endpoint: Nomad's query options
//! ([`QueryOptions`] for reads, [`WriteOptions`] for writes), the caller's token, and a JSON
//! body decoded as Nomad's Go decoder does ([`Body`]).
//!
//! A malformed option is a 400 naming the option and the value, before any handler runs.
//! Booleans are read as Go's `strconv.ParseBool` reads them (`1`, `t`, `true`, `True`, …).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ApiResult};
use super::filter::Filter;
use super::ApiContext;
use crate::model::duration::parse_go;
use crate::model::DEFAULT_NAMESPACE;

/// How long a blocking query waits when `?wait=` is not given (Nomad's default).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5 * 60);
/// The longest a blocking query may wait (Nomad's ceiling).
pub const MAX_WAIT: Duration = Duration::from_secs(10 * 60);
/// The largest page a list endpoint returns at once (`?per_page=`).
pub const MAX_PER_PAGE: u32 = 10_000;
/// Longest token accepted in `X-Nomad-Token` / `Authorization` (a secret id is 36 bytes).
pub const MAX_TOKEN_BYTES: usize = 1024;

/// Query options of a read (Nomad's `QueryOptions`), with the caller's token.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOptions {
    /// `?index=`: block until the data's modify index passes this.
    pub min_index: u64,
    /// `?wait=`: how long to block at most (bounded by [`MAX_WAIT`]).
    pub wait: Duration,
    /// `?stale`: any server may answer (every server answers from its own state today).
    pub stale: bool,
    pub prefix: String,
    /// `?namespace=`, `default` when absent; `*` means every namespace.
    pub namespace: String,
    /// `?region=`, this agent's region when absent.
    pub region: String,
    /// `?per_page=`: at most this many items (0: all).
    pub per_page: u32,
    /// `?next_token=`: the first item's key of the page asked for.
    pub next_token: String,
    /// `?reverse=`: newest (or last) first.
    pub reverse: bool,
    /// `?filter=`: only the items whose JSON form matches (applied before paging).
    pub filter: Option<Arc<Filter>>,
    /// The caller's token (`X-Nomad-Token` or `Authorization: Bearer`), if any.
    pub token: Option<String>,
    /// Every query parameter, for the options of one endpoint ([`QueryOptions::flag`] …).
    params: HashMap<String, String>,
}

/// Options of a write (Nomad's `WriteRequest`), with the caller's token.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOptions {
    pub namespace: String,
    pub region: String,
    pub idempotency_token: String,
    pub token: Option<String>,
    params: HashMap<String, String>,
}

impl QueryOptions {
    /// Reads the options from query parameters and headers; `local_region` answers for an
    /// absent `?region=`.
    pub fn parse(
        params: HashMap<String, String>,
        headers: &HeaderMap,
        local_region: &str,
    ) -> ApiResult<QueryOptions> {
        let params = Params(params);
        let filter = match params.string("filter") {
            f if f.is_empty() => None,
            f => Some(Arc::new(Filter::parse(&f).map_err(|e| {
                ApiError::bad_request(format!("query parameter filter={f:?}: {e}"))
            })?)),
        };
        let per_page = params.number("per_page")?.unwrap_or(0);
        if per_page > u64::from(MAX_PER_PAGE) {
            return Err(ApiError::bad_request(format!(
                "query parameter per_page={per_page} is more than the limit of {MAX_PER_PAGE}"
            )));
        }
        Ok(QueryOptions {
            min_index: params.number("index")?.unwrap_or(0),
            wait: params.wait()?,
            // `?stale` alone means true, as in Nomad.
            stale: match params.0.get("stale") {
                Some(v) if v.is_empty() => true,
                _ => params.flag("stale")?.unwrap_or(false),
            },
            prefix: params.string("prefix"),
            namespace: params.namespace(),
            region: params.region(local_region),
            per_page: per_page as u32,
            next_token: params.string("next_token"),
            filter,
            reverse: params.flag("reverse")?.unwrap_or(false),
            token: token(headers)?,
            params: params.0,
        })
    }

    /// A boolean option of one endpoint (`?purge=true`), `false` when absent.
    pub fn flag(&self, name: &str) -> ApiResult<bool> {
        Ok(Params::get_flag(&self.params, name)?.unwrap_or(false))
    }

    /// A boolean option that defaults to `true` when absent (`?task_states=false`).
    pub fn flag_or(&self, name: &str, absent: bool) -> ApiResult<bool> {
        Ok(Params::get_flag(&self.params, name)?.unwrap_or(absent))
    }

    /// A non-negative whole-number option of one endpoint, 0 when absent.
    pub fn number(&self, name: &str) -> ApiResult<u64> {
        Ok(Params::get_number(&self.params, name)?.unwrap_or(0))
    }

    /// A string option of one endpoint, empty when absent.
    pub fn string(&self, name: &str) -> &str {
        self.params.get(name).map(String::as_str).unwrap_or("")
    }

    /// Whether the query string names `name` at all (`?passing` alone counts).
    pub fn has(&self, name: &str) -> bool {
        self.params.contains_key(name)
    }

    /// Whether the namespace filter covers `namespace` (`*` covers every one).
    pub fn covers(&self, namespace: &str) -> bool {
        self.namespace == "*" || self.namespace == namespace
    }
}

/// Options read from `pairs` as if they were a query string, with no headers, in region
/// `global` (for tests).
#[cfg(test)]
pub(crate) fn query_options(pairs: &[(&str, &str)]) -> ApiResult<QueryOptions> {
    QueryOptions::parse(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        &HeaderMap::new(),
        "global",
    )
}

impl WriteOptions {
    /// A string option of one endpoint, empty when absent.
    pub fn string(&self, name: &str) -> &str {
        self.params.get(name).map(String::as_str).unwrap_or("")
    }

    /// Whether the query string names `name` at all (`?id=` counts).
    pub fn has(&self, name: &str) -> bool {
        self.params.contains_key(name)
    }

    pub fn parse(
        params: HashMap<String, String>,
        headers: &HeaderMap,
        local_region: &str,
    ) -> ApiResult<WriteOptions> {
        let params = Params(params);
        Ok(WriteOptions {
            namespace: params.namespace(),
            region: params.region(local_region),
            idempotency_token: params.string("idempotency_token"),
            token: token(headers)?,
            params: params.0,
        })
    }

    /// A boolean option of one endpoint (`?purge=true`), `false` when absent.
    pub fn flag(&self, name: &str) -> ApiResult<bool> {
        Ok(Params::get_flag(&self.params, name)?.unwrap_or(false))
    }
}

/// The query string, read with Nomad's rules.
struct Params(HashMap<String, String>);

impl Params {
    fn string(&self, name: &str) -> String {
        self.0.get(name).cloned().unwrap_or_default()
    }

    fn flag(&self, name: &str) -> ApiResult<Option<bool>> {
        Params::get_flag(&self.0, name)
    }

    fn number(&self, name: &str) -> ApiResult<Option<u64>> {
        Params::get_number(&self.0, name)
    }

    fn get_flag(params: &HashMap<String, String>, name: &str) -> ApiResult<Option<bool>> {
        match params.get(name).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(v) => parse_go_bool(v).map(Some).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "query parameter {name}={v:?} must be true or false"
                ))
            }),
        }
    }

    fn get_number(params: &HashMap<String, String>, name: &str) -> ApiResult<Option<u64>> {
        match params.get(name).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "query parameter {name}={v:?} is not a non-negative integer"
                ))
            }),
        }
    }

    /// `?wait=`: a Go duration (`30s`, `5m`); a bare number is milliseconds.
    fn wait(&self) -> ApiResult<Duration> {
        let wait = match self.0.get("wait").map(String::as_str) {
            None | Some("") => DEFAULT_WAIT,
            Some(v) => match v.parse::<u64>() {
                Ok(ms) => Duration::from_millis(ms),
                Err(_) => parse_go(v).map_err(|e| {
                    ApiError::bad_request(format!(
                        "query parameter wait={v:?}: {e} (a duration such as 30s or 5m)"
                    ))
                })?,
            },
        };
        Ok(wait.min(MAX_WAIT))
    }

    fn namespace(&self) -> String {
        match self.string("namespace") {
            n if n.is_empty() => DEFAULT_NAMESPACE.to_string(),
            n => n,
        }
    }

    fn region(&self, local: &str) -> String {
        match self.string("region") {
            r if r.is_empty() => local.to_string(),
            r => r,
        }
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The caller's token: `X-Nomad-Token`, else the first word after `Authorization: Bearer`.
fn token(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let header = |name: &str| -> ApiResult<Option<String>> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) if v.len() > MAX_TOKEN_BYTES => Err(ApiError::bad_request(format!(
                "header {name} is longer than {MAX_TOKEN_BYTES} bytes"
            ))),
            Some(v) => v.to_str().map(|s| Some(s.trim().to_string())).map_err(|_| {
                ApiError::bad_request(format!("header {name} is not printable ASCII"))
            }),
        }
    };
    if let Some(token) = header("X-Nomad-Token")?.filter(|t| !t.is_empty()) {
        return Ok(Some(token));
    }
    let Some(authorization) = header("Authorization")? else {
        return Ok(None);
    };
    let mut words = authorization.split_whitespace();
    match (words.next(), words.next()) {
        (Some(scheme), Some(value)) if scheme.eq_ignore_ascii_case("bearer") => {
            Ok(Some(value.to_string()))
        }
        _ => Ok(None),
    }
}

/// The query string as a map (a repeated name: the last wins; no endpoint repeats one).
fn query_map(parts: &Parts) -> ApiResult<HashMap<String, String>> {
    axum::extract::Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::bad_request(format!("the query string is not valid: {e}")))
}

impl FromRequestParts<ApiContext> for QueryOptions {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &ApiContext) -> ApiResult<Self> {
        QueryOptions::parse(query_map(parts)?, &parts.headers, &ctx.region)
            .and_then(|q| check_region(&q.region, ctx).map(|_| q))
    }
}

impl FromRequestParts<ApiContext> for WriteOptions {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &ApiContext) -> ApiResult<Self> {
        WriteOptions::parse(query_map(parts)?, &parts.headers, &ctx.region)
            .and_then(|w| check_region(&w.region, ctx).map(|_| w))
    }
}

/// A region other than this one needs federation, which comes with a later issue: say so
/// rather than answer from the wrong region.
fn check_region(region: &str, ctx: &ApiContext) -> ApiResult<()> {
    let local = &ctx.region;
    if region == local {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "no path to region {region:?}: this agent's region is {local:?} and it knows no other"
    )))
}

/// A request body type: what it is called in error messages, and whether it may be left out.
pub trait RequestBody: DeserializeOwned + Default {
    /// "job register request", "scheduler configuration", …
    const WHAT: &'static str;
    /// Whether an empty body means `Self::default()` (Nomad refuses an empty body; a few
    /// endpoints whose every field has a sensible default accept one).
    const EMPTY_IS_DEFAULT: bool = false;
}

/// A JSON request body decoded as Nomad's Go decoder does: `null` is the field's zero value,
/// a missing field is its zero value, an unknown field is ignored (and named in
/// [`Body::ignored`], for endpoints that report it). An empty body is a 400, or `T::default()`
/// where [`RequestBody::EMPTY_IS_DEFAULT`]. Not JSON at all is a 400 naming the line and
/// column; a wrong type, one naming the field.
#[derive(Debug)]
pub struct Body<T> {
    pub value: T,
    /// Paths of the fields the request had and `T` does not know (`Foo`, `Job.Bar` …).
    pub ignored: Vec<String>,
    /// The body as sent, for a reader that reports positions in it (the job endpoints).
    pub raw: Bytes,
}

impl<T: RequestBody> Body<T> {
    pub fn decode(bytes: Bytes) -> ApiResult<Body<T>> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            if !T::EMPTY_IS_DEFAULT {
                return Err(ApiError::bad_request(format!(
                    "{}: the request body is empty; send a JSON object",
                    T::WHAT
                )));
            }
            return Ok(Body {
                value: T::default(),
                ignored: Vec::new(),
                raw: bytes,
            });
        }
        let mut json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request(format!(
                "{}: the body is not valid JSON: {e} (at line {}, column {})",
                T::WHAT,
                e.line(),
                e.column()
            ))
        })?;
        drop_nulls(&mut json);
        let mut ignored = Vec::new();
        let mut note = |path: serde_ignored::Path<'_>| ignored.push(path.to_string());
        let deserializer = serde_ignored::Deserializer::new(json, &mut note);
        let value = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path.is_empty() || path == "." {
                ApiError::bad_request(format!("{}: {inner}", T::WHAT))
            } else {
                ApiError::bad_request(format!("{}: field {path}: {inner}", T::WHAT))
            }
        })?;
        Ok(Body {
            value,
            ignored,
            raw: bytes,
        })
    }

    /// A warning per ignored field, in the words the job endpoints answer with.
    pub fn ignored_warnings(&self) -> Vec<String> {
        self.ignored
            .iter()
            .map(|path| format!("{}: unknown field {path:?} ignored", T::WHAT))
            .collect()
    }
}

/// Removes every object member whose value is `null`, at any depth: Go leaves such a field at
/// its zero value, which is what a missing field decodes to here.
fn drop_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

impl<T: RequestBody> FromRequest<ApiContext> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, ctx: &ApiContext) -> ApiResult<Self> {
        let bytes = Bytes::from_request(request, ctx)
            .await
            .map_err(|e| ApiError {
                status: e.status(),
                message: format!("{}: {}", T::WHAT, e.body_text()),
            })?;
        Body::decode(bytes)
    }
}

/// Every value of a query parameter that may repeat (`?address=a&address=b`), decoded, in
/// order: [`QueryOptions`] keeps one value per name.
pub(crate) fn query_all(raw: Option<&str>, name: &str) -> ApiResult<Vec<String>> {
    let mut out = Vec::new();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(key)? == name {
            out.push(percent_decode(value)?);
        }
    }
    Ok(out)
}

/// `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte; UTF-8 required.
fn percent_decode(text: &str) -> ApiResult<String> {
    let bad = || {
        ApiError::bad_request(format!(
            "query string part {text:?} is not valid URL encoding"
        ))
    };
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> ApiResult<QueryOptions> {
        query_options(pairs)
    }

    #[test]
    fn defaults_and_bounds() {
        let o = q(&[]).unwrap();
        assert_eq!(o.min_index, 0);
        assert_eq!(o.wait, DEFAULT_WAIT);
        assert_eq!(o.namespace, "default");
        assert_eq!(o.region, "global");
        assert!(!o.stale && !o.reverse);
        assert_eq!(q(&[("wait", "1h")]).unwrap().wait, MAX_WAIT);
        assert_eq!(
            q(&[("wait", "250")]).unwrap().wait,
            Duration::from_millis(250)
        );
        assert_eq!(q(&[("wait", "2s"), ("index", "7")]).unwrap().min_index, 7);
        assert!(q(&[("stale", "")]).unwrap().stale);
        assert!(!q(&[("stale", "false")]).unwrap().stale);
        assert_eq!(q(&[("per_page", "20")]).unwrap().per_page, 20);
        assert!(q(&[("per_page", "20000")])
            .unwrap_err()
            .message
            .contains("per_page"));
    }

    #[test]
    fn booleans_are_read_as_go_reads_them() {
        for yes in ["1", "t", "T", "true", "True", "TRUE"] {
            assert!(q(&[("reverse", yes)]).unwrap().reverse, "{yes}");
            assert!(
                q(&[("purge", yes)]).unwrap().flag("purge").unwrap(),
                "{yes}"
            );
        }
        for no in ["0", "f", "F", "false", "False", "FALSE"] {
            assert!(!q(&[("reverse", no)]).unwrap().reverse, "{no}");
        }
        let e = q(&[("reverse", "yes")]).unwrap_err();
        assert!(e.message.contains("reverse=\"yes\""), "{}", e.message);
        let o = q(&[("task_states", "false")]).unwrap();
        assert!(!o.flag_or("task_states", true).unwrap());
        assert!(q(&[]).unwrap().flag_or("task_states", true).unwrap());
    }

    #[test]
    fn malformed_options_are_a_400_naming_them() {
        for (name, value) in [("index", "abc"), ("index", "-1"), ("wait", "forever")] {
            let e = q(&[(name, value)]).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
            assert!(e.message.contains(&format!("{name}=")), "{}", e.message);
        }
        let e = q(&[("filter", "Status = \"running\"")]).unwrap_err();
        assert!(e.message.contains("filter="), "{}", e.message);
        assert!(e.message.contains("position 7"), "{}", e.message);
        let f = q(&[("filter", "Status == \"running\"")]).unwrap();
        assert!(f
            .filter
            .unwrap()
            .matches(&serde_json::json!({"Status": "running"})));
        let o = q(&[("purge", "maybe")]).unwrap();
        assert!(o.flag("purge").unwrap_err().message.contains("purge"));
        assert!(o.number("purge").unwrap_err().message.contains("purge"));
    }

    #[test]
    fn the_token_comes_from_either_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(token(&headers).unwrap(), None);
        headers.insert("Authorization", "Bearer  abc def".parse().unwrap());
        assert_eq!(token(&headers).unwrap().as_deref(), Some("abc"));
        headers.insert("Authorization", "Basic abc".parse().unwrap());
        assert_eq!(token(&headers).unwrap(), None);
        headers.insert("X-Nomad-Token", " secret ".parse().unwrap());
        assert_eq!(token(&headers).unwrap().as_deref(), Some("secret"));
        headers.insert("X-Nomad-Token", "x".repeat(2000).parse().unwrap());
        assert!(token(&headers)
            .unwrap_err()
            .message
            .contains("X-Nomad-Token"));
    }

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    #[serde(rename_all = "PascalCase", default)]
    struct Sample {
        task: String,
        count: u32,
        inner: Inner,
    }

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    #[serde(rename_all = "PascalCase", default)]
    struct Inner {
        on: bool,
    }

    impl RequestBody for Sample {
        const WHAT: &'static str = "sample request";
    }

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    struct Optional {}

    impl RequestBody for Optional {
        const WHAT: &'static str = "optional request";
        const EMPTY_IS_DEFAULT: bool = true;
    }

    #[test]
    fn bodies_decode_as_go_does() {
        let b = Body::<Sample>::decode(Bytes::from_static(
            br#"{"Task": null, "Count": 2, "Inner": {"On": true, "New": 1}, "Later": "x"}"#,
        ))
        .unwrap();
        assert_eq!(
            b.value,
            Sample {
                task: String::new(),
                count: 2,
                inner: Inner { on: true }
            }
        );
        assert_eq!(
            b.ignored,
            vec!["Inner.New".to_string(), "Later".to_string()]
        );
        assert!(b.ignored_warnings()[1].contains("\"Later\""));
        let e = Body::<Sample>::decode(Bytes::from_static(b" \n")).unwrap_err();
        assert!(e.message.contains("body is empty"), "{}", e.message);
        assert_eq!(
            Body::<Optional>::decode(Bytes::from_static(b""))
                .unwrap()
                .value,
            Optional::default()
        );
        let e = Body::<Sample>::decode(Bytes::from_static(b"{\n  \"Task\": ,")).unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        assert!(e.message.contains("line 2, column"), "{}", e.message);
        let e = Body::<Sample>::decode(Bytes::from_static(br#"{"Count": "two"}"#)).unwrap_err();
        assert!(e.message.contains("field Count"), "{}", e.message);
        assert!(e.message.starts_with("sample request"), "{}", e.message);
    }
}
