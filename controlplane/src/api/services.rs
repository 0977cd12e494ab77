//! The native service catalog over HTTP, in Nomad's shapes: `GET /v1/services`,
//! `GET /v1/service/:name`, `DELETE /v1/service/:name/:id`, `GET /v1/allocation/:id/services`
//! and `GET /v1/job/:id/services`. Every read is a blocking query on the services table.
//!
//! Beyond Nomad: every registration carries its health (`Status`, `Checks`), and
//! `/v1/service/:name` can ask for the passing instances only (`?passing`, or
//! `?status=passing|warning|critical` for one status).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, State};
use sha2::{Digest, Sha256};

use super::error::{ApiError, ApiResult};
use super::extract::{QueryOptions, WriteOptions};
use super::reply::Reply;
use super::ApiContext;
use crate::model::{
    HealthStatus, ServiceRegistration, ServiceRegistrationListStub, ServiceRegistrationStub,
    DEFAULT_NAMESPACE,
};
use crate::state::Table;

/// Longest service name a request may name (a valid one is a DNS label of at most 63
/// characters; this leaves room for what interpolation makes while bounding the input).
pub const MAX_SERVICE_NAME_LEN: usize = 255;
/// Longest `?choose=` key (Nomad's are allocation ids or job names).
pub const MAX_CHOOSE_KEY_LEN: usize = 512;
/// The most instances `?choose=` may ask for.
pub const MAX_CHOOSE: usize = super::MAX_PER_PAGE as usize;

/// Nomad's words for a malformed `?choose=`.
const MALFORMED_CHOOSE: &str = "Parameter for choose must be in form '<number>|<key>'";

/// `GET /v1/services[?namespace=|*][&prefix=][&filter=]`: per namespace, every service name
/// and the union of its instances' tags, sorted. `?filter=` is applied to the registrations
/// before they are grouped (so `Tags contains "v2"` or `Status == "passing"` select
/// instances), `?prefix=` to service names.
pub async fn list(State(ctx): State<ApiContext>, q: QueryOptions) -> ApiResult<Reply> {
    known_namespace(&q.namespace)?;
    let (state, meta) = ctx.read(&q, &[Table::Services]).await?;
    let registrations: Vec<Arc<ServiceRegistration>> = state
        .service_registrations()
        .into_iter()
        .filter(|r| q.covers(&r.namespace) && r.service_name.starts_with(&q.prefix))
        .collect();
    let registrations = super::reply::filtered(registrations, &q)?;
    Reply::read(&list_stubs(&registrations), meta)
}

/// Groups registrations as `/v1/services` lists them: namespaces in order, their services in
/// order of name, each with its instances' tags, sorted and without repeats.
pub fn list_stubs(registrations: &[Arc<ServiceRegistration>]) -> Vec<ServiceRegistrationListStub> {
    let mut by_namespace: BTreeMap<&str, BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
    for r in registrations {
        by_namespace
            .entry(&r.namespace)
            .or_default()
            .entry(&r.service_name)
            .or_default()
            .extend(r.tags.iter().map(String::as_str));
    }
    by_namespace
        .into_iter()
        .map(|(namespace, services)| ServiceRegistrationListStub {
            namespace: namespace.to_string(),
            services: services
                .into_iter()
                .map(|(name, tags)| ServiceRegistrationStub {
                    service_name: name.to_string(),
                    tags: tags.into_iter().map(str::to_string).collect(),
                })
                .collect(),
        })
        .collect()
}

/// Which health `/v1/service/:name` keeps: `?passing[=true]`, or `?status=<one status>`.
fn health_filter(q: &QueryOptions) -> ApiResult<Option<HealthStatus>> {
    let passing = if q.has("passing") && q.string("passing").is_empty() {
        true
    } else {
        q.flag("passing")?
    };
    let status = match q.string("status") {
        "" => None,
        s => Some(HealthStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "query parameter status={s:?} must be passing, warning or critical"
            ))
        })?),
    };
    match (passing, status) {
        (true, Some(s)) if s != HealthStatus::Passing => Err(ApiError::bad_request(format!(
            "query parameters passing=true and status={s} contradict each other; use one"
        ))),
        (true, _) => Ok(Some(HealthStatus::Passing)),
        (false, s) => Ok(s),
    }
}

/// A 404 for a namespace that does not exist (only `default` does until namespaces come; `*`
/// asks for every one).
fn known_namespace(namespace: &str) -> ApiResult<()> {
    if namespace == "*" || namespace == DEFAULT_NAMESPACE {
        return Ok(());
    }
    Err(ApiError::not_found(format!(
        "namespace {namespace:?} not found (only {DEFAULT_NAMESPACE:?} exists)"
    )))
}

/// A service name from the path: not empty, bounded.
fn service_name(name: &str) -> ApiResult<()> {
    if name.is_empty() {
        return Err(ApiError::bad_request("missing service name"));
    }
    if name.len() > MAX_SERVICE_NAME_LEN {
        return Err(ApiError::bad_request(format!(
            "service name is {} bytes long; a service name is at most {MAX_SERVICE_NAME_LEN}",
            name.len()
        )));
    }
    Ok(())
}

/// `?choose=N|key`, read with Nomad's rules and noded's bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choose {
    pub n: usize,
    pub key: String,
}

impl Choose {
    pub fn parse(text: &str) -> ApiResult<Choose> {
        let malformed = || {
            ApiError::bad_request(format!(
                "failed to choose services: {MALFORMED_CHOOSE} (got {text:?})"
            ))
        };
        let (n, key) = text.split_once('|').ok_or_else(malformed)?;
        let n: usize = n.parse().map_err(|_| malformed())?;
        if key.is_empty() {
            return Err(malformed());
        }
        if n > MAX_CHOOSE {
            return Err(ApiError::bad_request(format!(
                "failed to choose services: {n} is more than the limit of {MAX_CHOOSE}"
            )));
        }
        if key.len() > MAX_CHOOSE_KEY_LEN {
            return Err(ApiError::bad_request(format!(
                "failed to choose services: the key is longer than {MAX_CHOOSE_KEY_LEN} bytes"
            )));
        }
        Ok(Choose {
            n,
            key: key.to_string(),
        })
    }

    /// Nomad's rendezvous hashing: the `n` instances whose hash with the key is lowest, so
    /// that every caller with the same key picks the same ones, and an instance coming or
    /// going moves few choices.
    pub fn apply<R: std::ops::Deref<Target = ServiceRegistration>>(
        &self,
        services: Vec<R>,
    ) -> Vec<R> {
        let mut ranked: Vec<(String, R)> = services
            .into_iter()
            .map(|s| (hash_with(&s, &self.key), s))
            .collect();
        // Stable, as Nomad's `sort.SliceStable`.
        ranked.sort_by(|a, b| a.0.cmp(&b.0));
        ranked.truncate(self.n);
        ranked.into_iter().map(|(_, s)| s).collect()
    }
}

/// Nomad's `ServiceRegistration.HashWith`: SHA-256 over the port (8 bytes, big-endian), the
/// allocation id, id, namespace, address, service name, each tag and the key, in hex; so noded
/// chooses what Nomad would for the same catalog and key.
pub fn hash_with(s: &ServiceRegistration, key: &str) -> String {
    let mut sum = Sha256::new();
    sum.update(u64::from(s.port).to_be_bytes());
    sum.update(s.alloc_id.as_bytes());
    sum.update(s.id.as_bytes());
    sum.update(s.namespace.as_bytes());
    sum.update(s.address.as_bytes());
    sum.update(s.service_name.as_bytes());
    for tag in &s.tags {
        sum.update(tag.as_bytes());
    }
    sum.update(key.as_bytes());
    sum.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET /v1/service/:name[?namespace=][&choose=N|key][&passing][&status=][&filter=]` (and
/// paging): the instances of one service; an unknown service has none (`[]`, as in Nomad).
pub async fn read(
    State(ctx): State<ApiContext>,
    Path(name): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    service_name(&name)?;
    known_namespace(&q.namespace)?;
    let health = health_filter(&q)?;
    let choose = match q.string("choose") {
        "" => None,
        c => Some(Choose::parse(c)?),
    };
    let (state, meta) = ctx.read(&q, &[Table::Services]).await?;
    let mut instances: Vec<ServiceRegistration> = if q.namespace == "*" {
        state
            .service_registrations()
            .into_iter()
            .filter(|r| r.service_name == name)
            .map(|r| (*r).clone())
            .collect()
    } else {
        state
            .service_registrations_by_name(&q.namespace, &name)
            .into_iter()
            .map(|r| (*r).clone())
            .collect()
    };
    instances.retain(|r| health.is_none_or(|h| r.status == h));
    instances.sort_by(|a, b| (&a.namespace, &a.id).cmp(&(&b.namespace, &b.id)));
    Reply::page_then(
        instances,
        |r| format!("{}.{}", r.namespace, r.id),
        &q,
        meta,
        |page| {
            Ok(match &choose {
                Some(c) => {
                    let boxed: Vec<Box<ServiceRegistration>> =
                        page.into_iter().map(Box::new).collect();
                    c.apply(boxed).into_iter().map(|b| *b).collect()
                }
                None => page,
            })
        },
    )
}

/// `DELETE /v1/service/:name/:id[?namespace=]`: removes one instance from the catalog (a
/// client still running it registers it again on its next write).
pub async fn delete(
    State(ctx): State<ApiContext>,
    Path((name, id)): Path<(String, String)>,
    w: WriteOptions,
) -> ApiResult<Reply> {
    service_name(&name)?;
    known_namespace(&w.namespace)?;
    if id.is_empty() {
        return Err(ApiError::bad_request("missing service id"));
    }
    let index = ctx
        .server()?
        .delete_service(&w.namespace, &name, &id)
        .await?;
    Reply::write(&serde_json::Value::Null, index)
}

/// `GET /v1/allocation/:id/services`: the instances one allocation registered.
pub async fn alloc_services(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Allocs, Table::Services]).await?;
    if state.alloc(&id).is_none() {
        return Err(ApiError::not_found(format!("allocation {id:?} not found")));
    }
    let mut services: Vec<ServiceRegistration> = state
        .service_registrations_by_alloc(&id)
        .into_iter()
        .map(|r| (*r).clone())
        .collect();
    services.sort_by(|a, b| a.id.cmp(&b.id));
    let services = super::reply::filtered(services, &q)?;
    Reply::read(&services, meta)
}

/// `GET /v1/job/:id/services[?namespace=]`: the instances of every allocation of one job.
pub async fn job_services(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    known_namespace(&q.namespace)?;
    let (state, meta) = ctx
        .read(&q, &[Table::Jobs, Table::Allocs, Table::Services])
        .await?;
    if state.job(&q.namespace, &id).is_none() {
        return Err(ApiError::not_found(format!(
            "job {id:?} not found in namespace {:?}",
            q.namespace
        )));
    }
    let mut services: Vec<ServiceRegistration> = state
        .service_registrations_by_job(&q.namespace, &id)
        .into_iter()
        .map(|r| (*r).clone())
        .collect();
    services.sort_by(|a, b| a.id.cmp(&b.id));
    let services = super::reply::filtered(services, &q)?;
    Reply::read(&services, meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: &str, port: u16) -> ServiceRegistration {
        ServiceRegistration {
            id: id.into(),
            service_name: "web".into(),
            namespace: "default".into(),
            alloc_id: format!("alloc-{id}"),
            address: "10.0.0.1".into(),
            port,
            tags: vec!["a".into(), "b".into()],
            ..Default::default()
        }
    }

    #[test]
    fn choose_is_read_as_nomad_reads_it() {
        assert_eq!(
            Choose::parse("2|abc").unwrap(),
            Choose {
                n: 2,
                key: "abc".into()
            }
        );
        // The key may itself hold a '|'.
        assert_eq!(Choose::parse("1|a|b").unwrap().key, "a|b");
        for bad in ["2", "x|k", "2|", "-1|k", "|k"] {
            let e = Choose::parse(bad).unwrap_err();
            assert!(e.message.contains("<number>|<key>"), "{bad}: {}", e.message);
        }
        let e = Choose::parse(&format!("{}|k", MAX_CHOOSE + 1)).unwrap_err();
        assert!(e.message.contains("limit"), "{}", e.message);
        let e = Choose::parse(&format!("1|{}", "k".repeat(MAX_CHOOSE_KEY_LEN + 1))).unwrap_err();
        assert!(e.message.contains("key is longer"), "{}", e.message);
    }

    #[test]
    fn the_hash_is_nomads() {
        // Computed by hand from Nomad's HashWith: sha256(port as 8 BE bytes ‖ AllocID ‖ ID ‖
        // Namespace ‖ Address ‖ ServiceName ‖ tags… ‖ key).
        let r = reg("id1", 8080);
        let mut bytes = 8080u64.to_be_bytes().to_vec();
        bytes.extend_from_slice(b"alloc-id1id1default10.0.0.1webabkey");
        let want: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hash_with(&r, "key"), want);
        assert_ne!(hash_with(&r, "key"), hash_with(&r, "other"));
    }

    #[test]
    fn choose_is_stable_and_moves_little() {
        let all: Vec<Box<ServiceRegistration>> = (0..20)
            .map(|i| Box::new(reg(&format!("i{i}"), 8000 + i)))
            .collect();
        let c = Choose::parse("3|client-a").unwrap();
        let first: Vec<String> = c.apply(all.clone()).iter().map(|r| r.id.clone()).collect();
        assert_eq!(first.len(), 3);
        let mut shuffled = all.clone();
        shuffled.reverse();
        let again: Vec<String> = c.apply(shuffled).iter().map(|r| r.id.clone()).collect();
        assert_eq!(first, again, "the order of the catalog does not matter");
        // Removing an instance that was not chosen changes nothing.
        let gone = all
            .iter()
            .find(|r| !first.contains(&r.id))
            .unwrap()
            .id
            .clone();
        let unchosen: Vec<Box<ServiceRegistration>> =
            all.iter().filter(|r| r.id != gone).cloned().collect();
        let after: Vec<String> = c.apply(unchosen).iter().map(|r| r.id.clone()).collect();
        assert_eq!(first, after);
        // Another key picks differently (for 20 instances and 3 picks, almost surely).
        let other: Vec<String> = Choose::parse("3|client-b")
            .unwrap()
            .apply(all.clone())
            .iter()
            .map(|r| r.id.clone())
            .collect();
        assert_ne!(first, other);
        // Asking for more than there are gives them all.
        assert_eq!(Choose::parse("50|k").unwrap().apply(all).len(), 20);
    }

    #[test]
    fn the_list_groups_by_namespace_and_merges_tags() {
        let mut a = reg("a", 1);
        a.tags = vec!["z".into(), "x".into()];
        let mut b = reg("b", 2);
        b.tags = vec!["x".into(), "y".into()];
        let mut c = reg("c", 3);
        c.namespace = "prod".into();
        c.service_name = "api".into();
        c.tags = Vec::new();
        let stubs = list_stubs(&[Arc::new(c), Arc::new(b), Arc::new(a)]);
        let json = serde_json::to_value(&stubs).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"Namespace": "default", "Services": [{"ServiceName": "web", "Tags": ["x", "y", "z"]}]},
                {"Namespace": "prod", "Services": [{"ServiceName": "api", "Tags": []}]},
            ])
        );
    }
}
