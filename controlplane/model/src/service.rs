//! The native service catalog's records: a service registration (Nomad's
//! `ServiceRegistration`, with noded's health on top), the health a check reports, and the
//! stubs `/v1/services` lists.
//!
//! Nomad's native catalog keeps no health (hashicorp/nomad#15603); noded's does: every
//! registration carries the worst status of its checks, written by the client that runs them
//! when it changes, so a query (and DNS) can ask for passing instances only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The most registrations one write may carry (a client writes one allocation's at a time;
/// a group has far fewer services).
pub const MAX_SERVICES_PER_WRITE: usize = 1024;

/// A check's, and so an instance's, health (Consul's words, which Nomad's users know).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Also an instance without checks: Nomad serves every one.
    #[default]
    Passing,
    Warning,
    Critical,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Passing => "passing",
            HealthStatus::Warning => "warning",
            HealthStatus::Critical => "critical",
        }
    }

    /// `passing`, `warning` or `critical`; `None` for anything else.
    pub fn parse(s: &str) -> Option<HealthStatus> {
        match s {
            "passing" => Some(HealthStatus::Passing),
            "warning" => Some(HealthStatus::Warning),
            "critical" => Some(HealthStatus::Critical),
            _ => None,
        }
    }

    /// The health of an instance with these checks: the worst of them (passing when none).
    pub fn worst(statuses: impl IntoIterator<Item = HealthStatus>) -> HealthStatus {
        statuses.into_iter().max().unwrap_or(HealthStatus::Passing)
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check of a registered instance, as the catalog shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceCheckHealth {
    /// The check's name (`service: "<name>" check`, as Nomad names an unnamed one).
    pub name: String,
    /// `http`, `tcp`, `grpc` or `script`.
    #[serde(rename = "Type")]
    pub check_type: String,
    pub status: HealthStatus,
    /// The last result's output, cut to [`MAX_CHECK_OUTPUT`] bytes.
    pub output: String,
    /// When the status last changed (ns since the epoch).
    pub timestamp: i64,
}

/// The most output kept of one check result (Consul keeps 4 KiB).
pub const MAX_CHECK_OUTPUT: usize = 4096;

/// A service registration: one instance of a service, in one allocation (Nomad's
/// `ServiceRegistration`, field for field, plus `Meta`, `Status` and `Checks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceRegistration {
    /// `_nomad-task-<alloc>-<task or group-<group>>-<service>-<port>`, as Nomad makes it:
    /// unique per allocation, stable across the allocation's restarts.
    #[serde(rename = "ID")]
    pub id: String,
    pub service_name: String,
    pub namespace: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub datacenter: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    #[serde(rename = "AllocID")]
    pub alloc_id: String,
    pub tags: Vec<String>,
    pub address: String,
    pub port: u16,
    /// The service's `meta` (or `canary_meta` for a canary), interpolated.
    pub meta: BTreeMap<String, String>,
    /// The worst status of `checks` (passing when there are none).
    pub status: HealthStatus,
    pub checks: Vec<ServiceCheckHealth>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl ServiceRegistration {
    /// Nomad's registration id for a service of an allocation: `owner` is the task's name,
    /// or `group-<group>` for a group-level service.
    pub fn make_id(alloc_id: &str, owner: &str, service: &str, port_label: &str) -> String {
        format!("_nomad-task-{alloc_id}-{owner}-{service}-{port_label}")
    }

    /// Whether two registrations say the same thing (indexes aside): a client re-writing
    /// what is stored changes nothing.
    pub fn same_content(&self, other: &ServiceRegistration) -> bool {
        let strip = |s: &ServiceRegistration| ServiceRegistration {
            create_index: 0,
            modify_index: 0,
            ..s.clone()
        };
        strip(self) == strip(other)
    }

    /// What is wrong with a registration before it is stored: `None` when it may be.
    pub fn check(&self) -> Option<String> {
        if self.id.is_empty() {
            return Some("a service registration needs an ID".into());
        }
        if self.service_name.is_empty() {
            return Some(format!("service registration {}: no ServiceName", self.id));
        }
        if self.alloc_id.is_empty() || self.node_id.is_empty() || self.job_id.is_empty() {
            return Some(format!(
                "service registration {}: AllocID, NodeID and JobID are required",
                self.id
            ));
        }
        if self.namespace.is_empty() {
            return Some(format!("service registration {}: no Namespace", self.id));
        }
        None
    }
}

/// One service of a namespace in `GET /v1/services`: its name and every tag of its
/// instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceRegistrationStub {
    pub service_name: String,
    pub tags: Vec<String>,
}

/// A namespace's services in `GET /v1/services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceRegistrationListStub {
    pub namespace: String,
    pub services: Vec<ServiceRegistrationStub>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_orders_from_passing_to_critical() {
        assert_eq!(HealthStatus::worst([]), HealthStatus::Passing);
        assert_eq!(
            HealthStatus::worst([HealthStatus::Warning, HealthStatus::Passing]),
            HealthStatus::Warning
        );
        assert_eq!(
            HealthStatus::worst([HealthStatus::Warning, HealthStatus::Critical]),
            HealthStatus::Critical
        );
        for s in [
            HealthStatus::Passing,
            HealthStatus::Warning,
            HealthStatus::Critical,
        ] {
            assert_eq!(HealthStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(HealthStatus::parse("ok"), None);
    }

    #[test]
    fn registration_json_has_nomads_field_names() {
        let r = ServiceRegistration {
            id: ServiceRegistration::make_id("a1", "web", "api", "http"),
            service_name: "api".into(),
            namespace: "default".into(),
            node_id: "n1".into(),
            job_id: "j".into(),
            alloc_id: "a1".into(),
            port: 8080,
            ..Default::default()
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["ID"], "_nomad-task-a1-web-api-http");
        assert_eq!(v["ServiceName"], "api");
        assert_eq!(v["AllocID"], "a1");
        assert_eq!(v["Port"], 8080);
        assert_eq!(v["Status"], "passing");
        assert!(r.check().is_none());
        let mut bad = r.clone();
        bad.alloc_id.clear();
        assert!(bad.check().unwrap().contains("AllocID"));
    }
}
