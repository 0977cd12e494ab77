//! Which service instances an allocation has right now and how each is checked: a pure
//! function of the allocation, its task states and the node, so the registration loop and its
//! tests share one answer (Nomad's `serviceregistration.WorkloadServices` and
//! `nsd.ServiceRegistrationHandler` build the same records).
//!
//! A group-level service exists while the allocation runs (some task is running); a task's
//! service while that task runs. A canary (`DeploymentStatus.Canary`) is registered with its
//! service's `canary_tags` (when it has any) and `canary_meta` (over `meta`).

use std::collections::BTreeMap;
use std::time::Duration;

use controlplane::model::{
    get_address, AddressInputs, Allocation, CheckRestart, HealthStatus, Service, ServiceCheck,
    ServiceRegistration, TaskGroup, TaskLifecycleState, TaskState,
};
use sha2::{Digest, Sha256};

use super::probe::{Endpoint, GrpcRequest, HttpRequest, Probe};
use super::status::Thresholds;

/// Nomad's floor and default for a check's `interval` and `timeout` when missing (the
/// jobspec requires them; an allocation written by an older server may lack them).
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The node's side of an allocation's services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSide {
    pub node_id: String,
    pub datacenter: String,
    /// The node's address: what "the agent's address" (an empty one) means.
    pub address: String,
    /// The allocation's network namespace (its name under `/run/netns`), for bridge and none.
    pub netns: Option<String>,
}

/// One instance to register, with its checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// Status `passing` and no checks: the check loop fills them in.
    pub registration: ServiceRegistration,
    /// The task whose service it is (`None` for a group-level one).
    pub task: Option<String>,
    pub checks: Vec<PlannedCheck>,
}

/// One check of an instance.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedCheck {
    /// Nomad's check id (`NomadCheckID`): a hash of the allocation, group and check.
    pub id: String,
    pub name: String,
    pub check_type: String,
    /// `healthiness`, or `readiness` when `on_update = "ignore"` (Nomad's `CheckMode`).
    pub mode: &'static str,
    pub interval: Duration,
    pub timeout: Duration,
    pub thresholds: Thresholds,
    pub probe: Probe,
    /// The task the check is for: the service's, or the one a group service's check names.
    pub task: Option<String>,
    /// What `check_restart` restarts, with its settings: the check's task, or (`None`) every
    /// task of the allocation for a group service's check that names none, as Nomad's
    /// group service hook restarts the allocation.
    pub restart: Option<(Option<String>, CheckRestart)>,
}

/// Interpolates a value for a task (`Some(name)`: its environment) or for the group
/// (`None`: the allocation's environment).
pub type Interpolate<'a> = &'a dyn Fn(Option<&str>, &str) -> Result<String, String>;

/// The instances `alloc` has now; what could not be built is named in the second list (a
/// bad address, a failed interpolation) and left out.
pub fn instances(
    alloc: &Allocation,
    group: &TaskGroup,
    states: &BTreeMap<String, TaskState>,
    node: &NodeSide,
    interpolate: Interpolate<'_>,
) -> (Vec<Instance>, Vec<String>) {
    let running = |task: &str| {
        states
            .get(task)
            .is_some_and(|s| s.state == TaskLifecycleState::Running)
    };
    let any_running = group.tasks.iter().any(|t| running(&t.name));
    let mut owners: Vec<(Option<&str>, &Service)> = Vec::new();
    if any_running {
        owners.extend(group.services.iter().map(|s| (None, s)));
    }
    for task in group.tasks.iter().filter(|t| running(&t.name)) {
        owners.extend(task.services.iter().map(|s| (Some(task.name.as_str()), s)));
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (task, service) in owners {
        match instance(alloc, group, task, service, node, interpolate) {
            Ok(i) => out.push(i),
            Err(e) => errors.push(format!("service {:?}: {e}", service.name)),
        }
    }
    (out, errors)
}

fn instance(
    alloc: &Allocation,
    group: &TaskGroup,
    task: Option<&str>,
    service: &Service,
    node: &NodeSide,
    interpolate: Interpolate<'_>,
) -> Result<Instance, String> {
    let resolve = |v: &str| interpolate(task, v);
    let name = resolve(&service.name)?;
    let canary = alloc.deployment_status.as_ref().is_some_and(|d| d.canary);
    let tags = if canary && !service.canary_tags.is_empty() {
        &service.canary_tags
    } else {
        &service.tags
    };
    let tags = tags
        .iter()
        .map(|t| resolve(t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut meta = BTreeMap::new();
    let metas = if canary {
        vec![&service.meta, &service.canary_meta]
    } else {
        vec![&service.meta]
    };
    for m in metas {
        for (k, v) in m {
            meta.insert(k.clone(), resolve(v)?);
        }
    }
    let address = resolve(&service.address)?;
    let inputs = AddressInputs::of(alloc);
    let (mut ip, port) = get_address(
        &address,
        &service.address_mode,
        &service.port_label,
        &inputs,
    )
    .map_err(|e| e.to_string())?;
    if ip.is_empty() {
        ip = node.address.clone();
    }
    let owner = match task {
        Some(t) => t.to_string(),
        None => format!("group-{}", group.name),
    };
    let registration = ServiceRegistration {
        id: ServiceRegistration::make_id(&alloc.id, &owner, &name, &service.port_label),
        service_name: name,
        namespace: alloc.namespace.clone(),
        node_id: node.node_id.clone(),
        datacenter: node.datacenter.clone(),
        job_id: alloc.job_id.clone(),
        alloc_id: alloc.id.clone(),
        tags,
        address: ip,
        port,
        meta,
        status: HealthStatus::Passing,
        ..Default::default()
    };
    let mut checks = Vec::new();
    for check in &service.checks {
        checks.push(
            planned_check(
                alloc,
                group,
                task,
                service,
                &registration,
                check,
                node,
                interpolate,
            )
            .map_err(|e| {
                format!(
                    "check {:?}: {e}",
                    check_name(check, &registration.service_name)
                )
            })?,
        );
    }
    Ok(Instance {
        registration,
        task: task.map(str::to_string),
        checks,
    })
}

/// An unnamed check's name, as Nomad gives it.
pub fn check_name(check: &ServiceCheck, service: &str) -> String {
    if check.name.is_empty() {
        format!("service: {service:?} check")
    } else {
        check.name.clone()
    }
}

#[allow(clippy::too_many_arguments)]
fn planned_check(
    alloc: &Allocation,
    group: &TaskGroup,
    task: Option<&str>,
    service: &Service,
    registration: &ServiceRegistration,
    check: &ServiceCheck,
    node: &NodeSide,
    interpolate: Interpolate<'_>,
) -> Result<PlannedCheck, String> {
    // A group service's check runs for the task it names (script, check_restart).
    let check_task = if check.task_name.is_empty() {
        task.map(str::to_string)
    } else {
        Some(check.task_name.clone())
    };
    let resolve = |v: &str| interpolate(check_task.as_deref().or(task), v);
    let probe = match check.check_type.as_str() {
        "script" => {
            let Some(t) = &check_task else {
                return Err("a script check of a group service needs task = \"<task>\"".into());
            };
            let mut command = vec![resolve(&check.command)?];
            for a in &check.args {
                command.push(resolve(a)?);
            }
            Probe::Script {
                task_id: format!("{}.{t}", alloc.id),
                command,
            }
        }
        kind @ ("http" | "tcp" | "grpc") => {
            let endpoint = check_endpoint(alloc, service, check, node)?;
            match kind {
                "tcp" => Probe::Tcp(endpoint),
                "http" => {
                    let mut headers = BTreeMap::new();
                    for (k, vs) in &check.header {
                        headers.insert(
                            k.clone(),
                            vs.iter()
                                .map(|v| resolve(v))
                                .collect::<Result<Vec<_>, _>>()?,
                        );
                    }
                    Probe::Http(
                        endpoint,
                        HttpRequest {
                            method: check.method.clone(),
                            path: resolve(&check.path)?,
                            headers,
                            body: resolve(&check.body)?,
                            tls: check.protocol == "https",
                            tls_skip_verify: check.tls_skip_verify,
                            tls_server_name: check.tls_server_name.clone(),
                        },
                    )
                }
                _ => Probe::Grpc(
                    endpoint,
                    GrpcRequest {
                        service: resolve(&check.grpc_service)?,
                        tls: check.grpc_use_tls,
                        tls_skip_verify: check.tls_skip_verify,
                        tls_server_name: check.tls_server_name.clone(),
                    },
                ),
            }
        }
        other => {
            return Err(format!(
                "check type {other:?} is not run by noded: use http, tcp, grpc or script"
            ))
        }
    };
    let restart = match &check.check_restart {
        Some(r) if r.limit > 0 => Some((check_task.clone(), r.clone())),
        _ => None,
    };
    Ok(PlannedCheck {
        id: check_id(&alloc.id, &group.name, check),
        name: check_name(check, &registration.service_name),
        check_type: check.check_type.clone(),
        mode: if check.on_update == "ignore" {
            "readiness"
        } else {
            "healthiness"
        },
        interval: check.interval.max(MIN_CHECK_INTERVAL),
        timeout: if check.timeout.is_zero() {
            DEFAULT_CHECK_TIMEOUT
        } else {
            check.timeout
        },
        thresholds: Thresholds::of(check),
        probe,
        task: check_task,
        restart,
    })
}

/// Where a network check connects. With the allocation's own namespace (bridge, none), from
/// inside it to the allocation's address and the port inside (`to`), so that a port never
/// mapped to the host can be checked; `address_mode = "host"` checks the host side from the
/// host. Without a namespace, the host address and port from the host.
fn check_endpoint(
    alloc: &Allocation,
    service: &Service,
    check: &ServiceCheck,
    node: &NodeSide,
) -> Result<Endpoint, String> {
    let port_label = if check.port_label.is_empty() {
        service.port_label.as_str()
    } else {
        check.port_label.as_str()
    };
    if port_label.is_empty() {
        return Err("no port: set the check's port or the service's".into());
    }
    let inputs = AddressInputs::of(alloc);
    let inside = node.netns.is_some() && check.address_mode != "host";
    let (host, port, netns) = if inside {
        let mode = if alloc.network_status.is_some() {
            "alloc"
        } else {
            // `none`: loopback only; the port inside is the label's `to` or its number.
            "host"
        };
        let (ip, port) = get_address("", mode, port_label, &inputs).map_err(|e| e.to_string())?;
        let ip = if mode == "host" || ip.is_empty() {
            "127.0.0.1".to_string()
        } else {
            ip
        };
        (ip, port, node.netns.clone())
    } else {
        let mode = if check.address_mode.is_empty() {
            "host"
        } else {
            check.address_mode.as_str()
        };
        let (ip, port) = get_address("", mode, port_label, &inputs).map_err(|e| e.to_string())?;
        (
            if ip.is_empty() {
                node.address.clone()
            } else {
                ip
            },
            port,
            None,
        )
    };
    if port == 0 {
        return Err(format!("port {port_label:?} has no number"));
    }
    Ok(Endpoint { host, port, netns })
}

/// Nomad's `NomadCheckID`: a SHA-256 over the allocation, the group and what defines the
/// check, in hex.
pub fn check_id(alloc_id: &str, group: &str, c: &ServiceCheck) -> String {
    let mut h = Sha256::new();
    for s in [
        alloc_id,
        group,
        &c.task_name,
        &c.name,
        &c.check_type,
        &c.port_label,
        &c.on_update,
        &c.address_mode,
    ] {
        h.update(s.as_bytes());
    }
    h.update(c.interval.as_nanos().to_string().as_bytes());
    h.update(c.timeout.as_nanos().to_string().as_bytes());
    for s in [&c.protocol, &c.path, &c.method] {
        h.update(s.as_bytes());
    }
    h.update(c.tls_skip_verify.to_string().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use controlplane::model::{
        AllocDeploymentStatus, AllocNetworkStatus, AllocatedPortMapping, Task,
    };

    fn alloc(bridge: bool) -> Allocation {
        let mut a = Allocation {
            id: "a1".into(),
            namespace: "default".into(),
            job_id: "web".into(),
            task_group: "g".into(),
            ..Default::default()
        };
        a.allocated_resources.shared.ports = vec![AllocatedPortMapping {
            label: "http".into(),
            value: 23456,
            to: 8080,
            host_ip: "10.0.0.5".into(),
            ignore_collision: false,
        }];
        if bridge {
            a.network_status = Some(AllocNetworkStatus {
                interface_name: "eth0".into(),
                address: "172.26.64.7".into(),
                ..Default::default()
            });
        }
        a
    }

    fn check(kind: &str) -> ServiceCheck {
        ServiceCheck {
            check_type: kind.into(),
            path: "/health/${NOMAD_ALLOC_ID}".into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            ..Default::default()
        }
    }

    fn group() -> TaskGroup {
        TaskGroup {
            name: "g".into(),
            services: vec![Service {
                name: "api-${NOMAD_ALLOC_ID}".into(),
                port_label: "http".into(),
                tags: vec!["v1".into()],
                canary_tags: vec!["canary".into()],
                meta: [("k".to_string(), "v".to_string())].into(),
                canary_meta: [("k".to_string(), "c".to_string())].into(),
                checks: vec![check("http")],
                ..Default::default()
            }],
            tasks: vec![
                Task {
                    name: "server".into(),
                    services: vec![Service {
                        name: "admin".into(),
                        port_label: "http".into(),
                        address_mode: "alloc".into(),
                        checks: vec![ServiceCheck {
                            check_restart: Some(CheckRestart {
                                limit: 3,
                                ..Default::default()
                            }),
                            ..check("tcp")
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                Task {
                    name: "sidecar".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    fn states(running: &[&str]) -> BTreeMap<String, TaskState> {
        ["server", "sidecar"]
            .iter()
            .map(|t| {
                let state = if running.contains(t) {
                    TaskLifecycleState::Running
                } else {
                    TaskLifecycleState::Pending
                };
                (
                    t.to_string(),
                    TaskState {
                        state,
                        ..Default::default()
                    },
                )
            })
            .collect()
    }

    fn node(netns: bool) -> NodeSide {
        NodeSide {
            node_id: "n1".into(),
            datacenter: "dc1".into(),
            address: "10.0.0.5".into(),
            netns: netns.then(|| "noded-abcd1234-a1".to_string()),
        }
    }

    fn interpolate(task: Option<&str>, v: &str) -> Result<String, String> {
        let _ = task;
        Ok(v.replace("${NOMAD_ALLOC_ID}", "a1"))
    }

    #[test]
    fn services_exist_while_their_tasks_run() {
        let (none, errors) = instances(
            &alloc(true),
            &group(),
            &states(&[]),
            &node(true),
            &interpolate,
        );
        assert!(none.is_empty() && errors.is_empty());
        // A sibling running is enough for the group's service; not for the server's own.
        let (some, _) = instances(
            &alloc(true),
            &group(),
            &states(&["sidecar"]),
            &node(true),
            &interpolate,
        );
        let names: Vec<_> = some
            .iter()
            .map(|i| i.registration.service_name.as_str())
            .collect();
        assert_eq!(names, ["api-a1"]);
        let (all, _) = instances(
            &alloc(true),
            &group(),
            &states(&["server"]),
            &node(true),
            &interpolate,
        );
        let ids: Vec<_> = all.iter().map(|i| i.registration.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "_nomad-task-a1-group-g-api-a1-http",
                "_nomad-task-a1-server-admin-http"
            ]
        );
        assert_eq!(all[1].task.as_deref(), Some("server"));
    }

    #[test]
    fn registrations_carry_the_address_mode_s_address_and_the_interpolated_fields() {
        let (all, _) = instances(
            &alloc(true),
            &group(),
            &states(&["server"]),
            &node(true),
            &interpolate,
        );
        let group_service = &all[0].registration;
        assert_eq!(
            (group_service.address.as_str(), group_service.port),
            ("10.0.0.5", 23456)
        );
        assert_eq!(group_service.tags, ["v1"]);
        assert_eq!(group_service.meta["k"], "v");
        assert_eq!(
            (
                group_service.node_id.as_str(),
                group_service.datacenter.as_str()
            ),
            ("n1", "dc1")
        );
        assert_eq!(group_service.namespace, "default");
        assert_eq!(group_service.job_id, "web");
        let task_service = &all[1].registration;
        assert_eq!(
            (task_service.address.as_str(), task_service.port),
            ("172.26.64.7", 8080)
        );
    }

    #[test]
    fn a_canary_gets_canary_tags_and_meta() {
        let mut a = alloc(true);
        a.deployment_status = Some(AllocDeploymentStatus {
            canary: true,
            ..Default::default()
        });
        let (all, _) = instances(
            &a,
            &group(),
            &states(&["server"]),
            &node(true),
            &interpolate,
        );
        assert_eq!(all[0].registration.tags, ["canary"]);
        assert_eq!(all[0].registration.meta["k"], "c");
        // A service without canary tags keeps its tags.
        assert!(all[1].registration.tags.is_empty());
    }

    #[test]
    fn bridge_checks_run_inside_the_namespace_on_the_port_inside() {
        let (all, _) = instances(
            &alloc(true),
            &group(),
            &states(&["server"]),
            &node(true),
            &interpolate,
        );
        let http = &all[0].checks[0];
        let Probe::Http(endpoint, request) = &http.probe else {
            panic!("{http:?}")
        };
        assert_eq!(endpoint.host, "172.26.64.7");
        assert_eq!(endpoint.port, 8080);
        assert_eq!(endpoint.netns.as_deref(), Some("noded-abcd1234-a1"));
        assert_eq!(request.path, "/health/a1");
        assert_eq!(http.name, "service: \"api-a1\" check");
        assert_eq!(http.mode, "healthiness");
        assert_eq!(http.thresholds.initial, HealthStatus::Critical);
        assert_eq!(http.restart, None);
        let tcp = &all[1].checks[0];
        assert_eq!(
            tcp.restart.as_ref().map(|(t, r)| (t.as_deref(), r.limit)),
            Some((Some("server"), 3))
        );
        // address_mode = "host" on the check: the host side, from the host.
        let mut g = group();
        g.services[0].checks[0].address_mode = "host".into();
        let (all, _) = instances(
            &alloc(true),
            &g,
            &states(&["server"]),
            &node(true),
            &interpolate,
        );
        let Probe::Http(endpoint, _) = &all[0].checks[0].probe else {
            panic!()
        };
        assert_eq!(
            (
                endpoint.host.as_str(),
                endpoint.port,
                endpoint.netns.as_deref()
            ),
            ("10.0.0.5", 23456, None)
        );
    }

    #[test]
    fn host_mode_checks_run_from_the_host() {
        let (all, _) = instances(
            &alloc(false),
            &group(),
            &states(&["sidecar"]),
            &node(false),
            &interpolate,
        );
        let Probe::Http(endpoint, _) = &all[0].checks[0].probe else {
            panic!()
        };
        assert_eq!(
            (
                endpoint.host.as_str(),
                endpoint.port,
                endpoint.netns.as_deref()
            ),
            ("10.0.0.5", 23456, None)
        );
    }

    #[test]
    fn what_cannot_be_registered_is_named_and_left_out() {
        let mut g = group();
        g.services[0].checks[0] = ServiceCheck {
            check_type: "script".into(),
            command: "/bin/check".into(),
            ..check("script")
        };
        // The task's service needs an allocation address; host mode has none.
        let (all, errors) = instances(
            &alloc(false),
            &g,
            &states(&["server"]),
            &node(false),
            &interpolate,
        );
        assert!(all.is_empty(), "{all:?}");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("needs task"), "{errors:?}");
        assert!(errors[1].contains("address_mode=\"alloc\""), "{errors:?}");
        // With the task named, the script runs in it.
        g.services[0].checks[0].task_name = "server".into();
        let (all, _) = instances(
            &alloc(true),
            &g,
            &states(&["server"]),
            &node(true),
            &interpolate,
        );
        assert_eq!(
            all[0].checks[0].probe,
            Probe::Script {
                task_id: "a1.server".into(),
                command: vec!["/bin/check".into()]
            }
        );
        assert_eq!(all[0].checks[0].task.as_deref(), Some("server"));
    }

    #[test]
    fn check_ids_are_stable_and_differ_per_check() {
        let a = check_id("a1", "g", &check("http"));
        assert_eq!(a, check_id("a1", "g", &check("http")));
        assert_eq!(a.len(), 64);
        assert_ne!(a, check_id("a2", "g", &check("http")));
        assert_ne!(a, check_id("a1", "g", &check("tcp")));
    }
}
