//! The registration loop against a catalog kept in memory (the servers' side is tested in
//! `controlplane`): what it writes as tasks run and stop, as a check's port opens and closes,
//! when writes fail, and when `check_restart` fires.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use controlplane::model::{
    AllocatedPortMapping, Allocation, CheckRestart, HealthStatus, Node, Service, ServiceCheck,
    ServiceRegistration, Task, TaskGroup, TaskLifecycleState, TaskState,
};
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::plan::NodeSide;
use super::{AllocServices, ServiceContext, Setup, View};
use crate::client::alloc_runner::{AllocAction, AllocControl};
use crate::client::{HeartbeatError, NodeAllocs, ServerRpc, ServiceCatalog};
use crate::supervisor::client::SupervisorClient;

/// The catalog as the servers would hold it, and how many writes to refuse first.
#[derive(Default)]
struct Catalog {
    entries: Mutex<BTreeMap<String, ServiceRegistration>>,
    writes: Mutex<u32>,
    refuse: Mutex<u32>,
}

impl Catalog {
    fn write(&self) -> Result<u64, String> {
        let mut refuse = self.refuse.lock().unwrap();
        if *refuse > 0 {
            *refuse -= 1;
            return Err("no leader".into());
        }
        let mut writes = self.writes.lock().unwrap();
        *writes += 1;
        Ok(u64::from(*writes))
    }

    fn get(&self, id: &str) -> Option<ServiceRegistration> {
        self.entries.lock().unwrap().get(id).cloned()
    }
}

impl ServerRpc for Catalog {
    fn register_node(&self, _node: Node) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(async { Err("not in this test".into()) })
    }
    fn update_allocs(
        &self,
        _updates: Vec<controlplane::model::AllocClientUpdate>,
    ) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(async { Err("not in this test".into()) })
    }
    fn node_allocs(
        &self,
        _node_id: String,
        _min_index: u64,
        _wait: Duration,
    ) -> BoxFuture<'_, Result<NodeAllocs, String>> {
        Box::pin(async { Err("not in this test".into()) })
    }
    fn heartbeat(&self, _node_id: String) -> BoxFuture<'_, Result<Duration, HeartbeatError>> {
        Box::pin(async { Err(HeartbeatError::Failed("not in this test".into())) })
    }
    fn drain_self(
        &self,
        _node_id: String,
        _drain: Option<controlplane::model::DrainStrategy>,
    ) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(async { Err("not in this test".into()) })
    }
    fn upsert_services(
        &self,
        services: Vec<ServiceRegistration>,
    ) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(async move {
            let index = self.write()?;
            let mut entries = self.entries.lock().unwrap();
            for s in services {
                entries.insert(s.id.clone(), s);
            }
            Ok(index)
        })
    }
    fn delete_services(
        &self,
        ids: Vec<String>,
        alloc_ids: Vec<String>,
    ) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(async move {
            let index = self.write()?;
            let mut entries = self.entries.lock().unwrap();
            entries.retain(|id, r| !ids.contains(id) && !alloc_ids.contains(&r.alloc_id));
            Ok(index)
        })
    }
    fn watch_services(
        &self,
        _min_index: u64,
        _wait: Duration,
    ) -> BoxFuture<'_, Result<ServiceCatalog, String>> {
        Box::pin(async { Err("not in this test".into()) })
    }
}

const ID: &str = "_nomad-task-a1-web-api-http";

fn alloc(port: u16) -> Arc<Allocation> {
    let mut a = Allocation {
        id: "a1".into(),
        namespace: "default".into(),
        job_id: "j".into(),
        task_group: "g".into(),
        ..Default::default()
    };
    a.allocated_resources.shared.ports = vec![AllocatedPortMapping {
        label: "http".into(),
        value: i64::from(port),
        to: 0,
        host_ip: "127.0.0.1".into(),
        ignore_collision: false,
    }];
    Arc::new(a)
}

fn group(restart: Option<CheckRestart>) -> TaskGroup {
    TaskGroup {
        name: "g".into(),
        tasks: vec![Task {
            name: "web".into(),
            services: vec![Service {
                name: "api".into(),
                port_label: "http".into(),
                tags: vec!["v1".into()],
                canary_tags: vec!["canary".into()],
                checks: vec![ServiceCheck {
                    name: "alive".into(),
                    check_type: "tcp".into(),
                    interval: Duration::from_secs(1),
                    timeout: Duration::from_millis(500),
                    check_restart: restart,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn view(alloc: &Arc<Allocation>, state: TaskLifecycleState, restarts: u64) -> View {
    View {
        alloc: alloc.clone(),
        states: [(
            "web".to_string(),
            TaskState {
                state,
                restarts,
                ..Default::default()
            },
        )]
        .into(),
    }
}

fn start(
    catalog: &Arc<Catalog>,
    group: TaskGroup,
    first: View,
) -> (
    Arc<ServiceContext>,
    AllocServices,
    mpsc::Receiver<AllocControl>,
) {
    let ctx = Arc::new(ServiceContext::new(catalog.clone()));
    let (controls, controls_rx) = mpsc::channel(4);
    let setup = Setup {
        group,
        node: NodeSide {
            node_id: "n1".into(),
            datacenter: "dc1".into(),
            address: "127.0.0.1".into(),
            netns: None,
        },
        task_envs: BTreeMap::new(),
        alloc_env: BTreeMap::new(),
        interpolate: Arc::new(|v: &str, _: &BTreeMap<String, String>| Ok(v.to_string())),
        controls,
        supervisor: SupervisorClient::new("/nonexistent/noded-test/supervisor.sock".into()),
    };
    let services = AllocServices::start(ctx.clone(), setup, first);
    (ctx, services, controls_rx)
}

/// Waits (up to `within`) until `f` holds of the catalog.
async fn until(catalog: &Catalog, within: Duration, f: impl Fn(&Catalog) -> bool) -> bool {
    let end = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < end {
        if f(catalog) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f(catalog)
}

fn status(catalog: &Catalog) -> Option<HealthStatus> {
    catalog.get(ID).map(|r| r.status)
}

#[tokio::test]
async fn an_instance_is_registered_while_its_task_runs_and_follows_its_check() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let a = alloc(port);
    let catalog = Arc::new(Catalog::default());
    // What a daemon that restarted left while the task is down: cleared.
    catalog.entries.lock().unwrap().insert(
        ID.into(),
        ServiceRegistration {
            id: ID.into(),
            alloc_id: "a1".into(),
            ..Default::default()
        },
    );
    let (ctx, services, _controls) = start(
        &catalog,
        group(None),
        view(&a, TaskLifecycleState::Pending, 0),
    );
    assert!(until(&catalog, Duration::from_secs(1), |c| c.get(ID).is_none()).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(catalog.get(ID).is_none(), "registered before its task runs");

    services.update(view(&a, TaskLifecycleState::Running, 0));
    assert!(
        until(&catalog, Duration::from_secs(2), |c| status(c)
            == Some(HealthStatus::Passing))
        .await
    );
    let r = catalog.get(ID).unwrap();
    assert_eq!((r.address.as_str(), r.port), ("127.0.0.1", port));
    assert_eq!(
        (r.node_id.as_str(), r.alloc_id.as_str(), r.job_id.as_str()),
        ("n1", "a1", "j")
    );
    assert_eq!(r.checks.len(), 1);
    assert_eq!(
        (r.checks[0].name.as_str(), r.checks[0].check_type.as_str()),
        ("alive", "tcp")
    );
    let api = ctx.alloc_checks("a1").unwrap();
    let result = api.values().next().unwrap();
    assert_eq!(
        (result.status.as_str(), result.health),
        ("success", HealthStatus::Passing)
    );
    assert_eq!(
        (
            result.task.as_str(),
            result.service.as_str(),
            result.group.as_str()
        ),
        ("web", "api", "g")
    );

    // A canary and then promoted: other tags, the same check status (no step back to the
    // initial critical).
    let mut canary = (*a).clone();
    canary.deployment_status = Some(controlplane::model::AllocDeploymentStatus {
        canary: true,
        ..Default::default()
    });
    services.update(view(&Arc::new(canary), TaskLifecycleState::Running, 0));
    let tags = |c: &Catalog| c.get(ID).map(|r| r.tags).unwrap_or_default();
    assert!(until(&catalog, Duration::from_secs(1), |c| tags(c) == ["canary"]).await);
    assert_eq!(status(&catalog), Some(HealthStatus::Passing));
    services.update(view(&a, TaskLifecycleState::Running, 0));
    assert!(until(&catalog, Duration::from_secs(1), |c| tags(c) == ["v1"]).await);
    assert_eq!(status(&catalog), Some(HealthStatus::Passing));

    // The port closes: critical within the interval and a second.
    let closed_at = std::time::Instant::now();
    drop(listener);
    assert!(
        until(&catalog, Duration::from_secs(3), |c| status(c)
            == Some(HealthStatus::Critical))
        .await
    );
    assert!(
        closed_at.elapsed() <= Duration::from_secs(2),
        "{:?}",
        closed_at.elapsed()
    );
    assert!(catalog.get(ID).unwrap().checks[0]
        .output
        .contains("refused"));

    // The task stops: the instance leaves the catalog.
    services.update(view(&a, TaskLifecycleState::Dead, 0));
    assert!(until(&catalog, Duration::from_secs(2), |c| c.get(ID).is_none()).await);
    services.finish().await;
    assert!(ctx.alloc_checks("a1").is_none());
}

#[tokio::test]
async fn refused_writes_are_retried_and_deregistration_clears_the_allocation() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let a = alloc(port);
    let catalog = Arc::new(Catalog::default());
    *catalog.refuse.lock().unwrap() = 2;
    // Something an earlier daemon left for this allocation.
    catalog.entries.lock().unwrap().insert(
        "_nomad-task-a1-web-old-http".into(),
        ServiceRegistration {
            id: "_nomad-task-a1-web-old-http".into(),
            alloc_id: "a1".into(),
            ..Default::default()
        },
    );
    let (_ctx, services, _controls) = start(
        &catalog,
        group(None),
        view(&a, TaskLifecycleState::Running, 0),
    );
    assert!(
        until(&catalog, Duration::from_secs(3), |c| status(c)
            == Some(HealthStatus::Passing))
        .await
    );
    assert_eq!(*catalog.refuse.lock().unwrap(), 0);

    services.deregister(Duration::from_secs(2)).await;
    assert!(catalog.entries.lock().unwrap().is_empty());
    // Stopped for good: a later view registers nothing.
    services.update(view(&a, TaskLifecycleState::Running, 1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(catalog.entries.lock().unwrap().is_empty());
    services.finish().await;
    drop(listener);
}

#[tokio::test]
async fn check_restart_restarts_the_task_after_limit_unhealthy_results() {
    // Nobody listens: every result is critical.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let a = alloc(port);
    let catalog = Arc::new(Catalog::default());
    let restart = CheckRestart {
        limit: 2,
        grace: Some(Duration::ZERO),
        ignore_warnings: false,
    };
    let started = std::time::Instant::now();
    let (_ctx, services, mut controls) = start(
        &catalog,
        group(Some(restart)),
        view(&a, TaskLifecycleState::Running, 0),
    );
    let control = tokio::time::timeout(Duration::from_secs(4), controls.recv())
        .await
        .expect("no restart within 4 s")
        .unwrap();
    // Two results a second apart: the first at once, the second after the interval.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(control.task.as_deref(), Some("web"));
    assert_eq!(control.action, AllocAction::Restart);
    assert_eq!(
        control.reason.as_deref(),
        Some("healthcheck: check \"alive\" unhealthy")
    );
    let _ = control.reply.send(Ok(()));
    // The task restarted: a new instance whose checks start over (initial status critical).
    services.update(view(&a, TaskLifecycleState::Running, 1));
    assert!(
        until(&catalog, Duration::from_secs(2), |c| status(c)
            == Some(HealthStatus::Critical))
        .await
    );
    services.finish().await;
}
