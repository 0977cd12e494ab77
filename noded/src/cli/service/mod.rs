//! `noded service list|info|delete`: the native service catalog, shown as Nomad's
//! `nomad service` commands show it, with noded's health on top (a Status column, and each
//! check's status with `info -verbose`).

mod delete;
mod info;
mod list;

use clap::Subcommand;
use controlplane::model::{ServiceRegistration, ServiceRegistrationListStub};

use super::format::{kv, short, table};
use super::global::Api;
use super::Exit;

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// List the services of the catalog (-namespace=* for every namespace).
    List(Api<list::ServiceList>),
    /// Show the instances of one service, with their health.
    Info(Api<info::ServiceInfo>),
    /// Remove one instance from the catalog (a client still running it registers it again).
    Delete(Api<delete::ServiceDelete>),
}

impl ServiceCommand {
    pub async fn run(self) -> anyhow::Result<Exit> {
        match self {
            ServiceCommand::List(c) => c.run().await,
            ServiceCommand::Info(c) => c.run().await,
            ServiceCommand::Delete(c) => c.run().await,
        }
    }
}

/// Nomad's `[a,b]` for a tag list.
fn tags(tags: &[String]) -> String {
    format!("[{}]", tags.join(","))
}

/// `host:port` (`[v6]:port`), or the address alone when there is no port, as Nomad shows it.
pub(crate) fn address(host: &str, port: u16) -> String {
    if port == 0 {
        return host.to_string();
    }
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The `service list` table: name, the namespace when every namespace was asked for, tags;
/// namespaces and names in order, tags sorted.
pub(crate) fn render_list(all_namespaces: bool, list: &[ServiceRegistrationListStub]) -> String {
    let mut header = vec!["Service Name".to_string()];
    if all_namespaces {
        header.push("Namespace".into());
    }
    header.push("Tags".into());
    let mut rows = vec![header];
    let mut namespaces: Vec<&ServiceRegistrationListStub> = list.iter().collect();
    namespaces.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    for ns in namespaces {
        let mut services: Vec<_> = ns.services.iter().collect();
        services.sort_by(|a, b| a.service_name.cmp(&b.service_name));
        for s in services {
            let mut sorted = s.tags.clone();
            sorted.sort();
            let mut row = vec![s.service_name.clone()];
            if all_namespaces {
                row.push(ns.namespace.clone());
            }
            row.push(tags(&sorted));
            rows.push(row);
        }
    }
    table(&rows)
}

/// The `service info` table: Nomad's columns and noded's Status, grouped by job.
pub(crate) fn render_info(services: &[ServiceRegistration]) -> String {
    let mut rows = vec![
        ["Job ID", "Address", "Tags", "Node ID", "Alloc ID", "Status"]
            .iter()
            .map(|c| c.to_string())
            .collect(),
    ];
    for s in by_job(services) {
        rows.push(vec![
            s.job_id.clone(),
            address(&s.address, s.port),
            tags(&s.tags),
            short(&s.node_id),
            short(&s.alloc_id),
            s.status.as_str().to_string(),
        ]);
    }
    table(&rows)
}

/// `service info -verbose`: one block per instance, with each check's status and output.
pub(crate) fn render_info_verbose(services: &[ServiceRegistration]) -> String {
    let mut out = String::new();
    for s in by_job(services) {
        let pairs = [
            ("ID", s.id.clone()),
            ("Service Name", s.service_name.clone()),
            ("Namespace", s.namespace.clone()),
            ("Job ID", s.job_id.clone()),
            ("Alloc ID", s.alloc_id.clone()),
            ("Node ID", s.node_id.clone()),
            ("Datacenter", s.datacenter.clone()),
            ("Address", address(&s.address, s.port)),
            ("Tags", tags(&s.tags)),
            ("Status", s.status.as_str().to_string()),
        ];
        out.push_str(&kv(&pairs));
        if !s.checks.is_empty() {
            let mut rows = vec![["Check", "Type", "Status", "Output"]
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()];
            for c in &s.checks {
                rows.push(vec![
                    c.name.clone(),
                    c.check_type.clone(),
                    c.status.as_str().to_string(),
                    // One line per check: the first line of what it said.
                    c.output.lines().next().unwrap_or("").to_string(),
                ]);
            }
            out.push('\n');
            out.push_str(&table(&rows));
        }
        out.push('\n');
    }
    out
}

/// Instances grouped by job id (jobs in order), each job's in the order given.
fn by_job(services: &[ServiceRegistration]) -> Vec<&ServiceRegistration> {
    let mut sorted: Vec<&ServiceRegistration> = services.iter().collect();
    sorted.sort_by(|a, b| a.job_id.cmp(&b.job_id));
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;
    use controlplane::model::{HealthStatus, ServiceCheckHealth, ServiceRegistrationStub};

    fn reg(job: &str, port: u16, status: HealthStatus) -> ServiceRegistration {
        ServiceRegistration {
            id: format!("_nomad-task-{job}-{port}"),
            service_name: "web".into(),
            namespace: "default".into(),
            node_id: "0123456789abcdef".into(),
            datacenter: "dc1".into(),
            job_id: job.into(),
            alloc_id: format!("a{port}-0000-0000"),
            tags: vec!["v1".into(), "blue".into()],
            address: "10.0.0.1".into(),
            port,
            status,
            ..Default::default()
        }
    }

    #[test]
    fn the_list_is_nomads_table() {
        let list = vec![
            ServiceRegistrationListStub {
                namespace: "prod".into(),
                services: vec![ServiceRegistrationStub {
                    service_name: "api".into(),
                    tags: vec![],
                }],
            },
            ServiceRegistrationListStub {
                namespace: "default".into(),
                services: vec![
                    ServiceRegistrationStub {
                        service_name: "web".into(),
                        tags: vec!["v2".into(), "a".into()],
                    },
                    ServiceRegistrationStub {
                        service_name: "db".into(),
                        tags: vec![],
                    },
                ],
            },
        ];
        assert_eq!(
            render_list(false, &list[1..]),
            "Service Name  Tags\ndb            []\nweb           [a,v2]\n"
        );
        assert_eq!(
            render_list(true, &list),
            "Service Name  Namespace  Tags\n\
             db            default    []\n\
             web           default    [a,v2]\n\
             api           prod       []\n"
        );
    }

    #[test]
    fn info_shows_nomads_columns_and_the_health() {
        let services = vec![
            reg("web", 8081, HealthStatus::Critical),
            reg("api", 9090, HealthStatus::Passing),
        ];
        assert_eq!(
            render_info(&services),
            "Job ID  Address        Tags       Node ID   Alloc ID  Status\n\
             api     10.0.0.1:9090  [v1,blue]  01234567  a9090-00  passing\n\
             web     10.0.0.1:8081  [v1,blue]  01234567  a8081-00  critical\n"
        );
        assert_eq!(address("fd00::1", 80), "[fd00::1]:80");
        assert_eq!(address("10.0.0.1", 0), "10.0.0.1");
    }

    #[test]
    fn verbose_info_shows_every_field_and_each_check() {
        let mut r = reg("web", 8080, HealthStatus::Critical);
        r.checks = vec![ServiceCheckHealth {
            name: "alive".into(),
            check_type: "http".into(),
            status: HealthStatus::Critical,
            output: "HTTP GET /health: 503 Service Unavailable\nbody".into(),
            timestamp: 1,
        }];
        let out = render_info_verbose(&[r]);
        for want in [
            "ID           = _nomad-task-web-8080\n",
            "Service Name = web\n",
            "Node ID      = 0123456789abcdef\n",
            "Address      = 10.0.0.1:8080\n",
            "Tags         = [v1,blue]\n",
            "Status       = critical\n",
            "Check  Type  Status    Output\n",
            "alive  http  critical  HTTP GET /health: 503 Service Unavailable\n",
        ] {
            assert!(out.contains(want), "{want:?} in\n{out}");
        }
        assert!(!out.contains("\nbody"), "one line per check:\n{out}");
    }
}
