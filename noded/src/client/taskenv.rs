//! A task's environment: exactly what the job sets plus Nomad's `NOMAD_*` task variables —
//! nothing from the agent's own environment leaks in.

use std::collections::BTreeMap;
use std::path::Path;

use controlplane::model::{short_id, Allocation, Job, Task};

use super::network::task::{alloc_port, TaskNetwork};

/// Paths as the task sees them: inside the jail (`/alloc`) or on the host (`raw_exec`).
#[derive(Debug, Clone)]
pub struct TaskPaths {
    pub alloc_dir: String,
    pub task_dir: String,
    pub secrets_dir: String,
    pub tmp_dir: String,
}

impl TaskPaths {
    pub fn jailed() -> TaskPaths {
        TaskPaths {
            alloc_dir: "/alloc".into(),
            task_dir: "/local".into(),
            secrets_dir: "/secrets".into(),
            tmp_dir: "/tmp".into(),
        }
    }

    pub fn host(alloc_dir: &Path, task_dir: &Path) -> TaskPaths {
        TaskPaths {
            alloc_dir: alloc_dir.display().to_string(),
            task_dir: task_dir.join("local").display().to_string(),
            secrets_dir: task_dir.join("secrets").display().to_string(),
            tmp_dir: task_dir.join("tmp").display().to_string(),
        }
    }
}

/// What the node adds: its datacenter, region and identity.
#[derive(Debug, Clone, Default)]
pub struct NodeContext {
    pub node_id: String,
    pub node_name: String,
    pub datacenter: String,
    pub region: String,
}

fn meta_key(k: &str) -> String {
    k.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The `NOMAD_*` variables of the allocation, without a task's: what the group network's
/// `hostname` is interpolated with (Nomad's allocation environment).
pub fn alloc_variables(
    alloc: &Allocation,
    job: &Job,
    node: &NodeContext,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set("NOMAD_ALLOC_ID", alloc.id.clone());
    set("NOMAD_SHORT_ALLOC_ID", short_id(&alloc.id).to_string());
    set("NOMAD_ALLOC_NAME", alloc.name.clone());
    set(
        "NOMAD_ALLOC_INDEX",
        alloc
            .name_index()
            .map(|i| i.to_string())
            .unwrap_or_default(),
    );
    set("NOMAD_GROUP_NAME", alloc.task_group.clone());
    set("NOMAD_JOB_NAME", job.name.clone());
    set("NOMAD_JOB_ID", job.id.clone());
    set("NOMAD_JOB_PARENT_ID", job.parent_id.clone());
    set("NOMAD_NAMESPACE", job.namespace.clone());
    set(
        "NOMAD_REGION",
        if node.region.is_empty() {
            job.region.clone()
        } else {
            node.region.clone()
        },
    );
    set("NOMAD_DC", node.datacenter.clone());
    set("NOMAD_NODE_ID", node.node_id.clone());
    set("NOMAD_NODE_NAME", node.node_name.clone());
    env
}

/// `host:port`, with brackets around an IPv6 address (Go's `net.JoinHostPort`).
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Nomad's port variables, for every port of the allocation's group network:
/// `NOMAD_{IP,HOST_IP}_<label>` (the host address), `NOMAD_{ADDR,HOST_ADDR}_<label>` (host
/// address and port), `NOMAD_HOST_PORT_<label>` (the host port), `NOMAD_{PORT,ALLOC_PORT}_<label>`
/// (the port inside the allocation: `to` when set, else the host port); and, when the
/// allocation has an address of its own (bridge), `NOMAD_ALLOC_{IP,ADDR,INTERFACE}_<label>`.
pub fn port_variables(network: &TaskNetwork) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let status = network.network_status();
    for p in &network.ports {
        let label = &p.label;
        let host_ip = if p.host_ip.is_empty() {
            network.host_ip.as_str()
        } else {
            p.host_ip.as_str()
        };
        let inside = alloc_port(p);
        let host_addr = join_host_port(host_ip, p.value);
        env.insert(format!("NOMAD_IP_{label}"), host_ip.to_string());
        env.insert(format!("NOMAD_HOST_IP_{label}"), host_ip.to_string());
        env.insert(format!("NOMAD_ADDR_{label}"), host_addr.clone());
        env.insert(format!("NOMAD_HOST_ADDR_{label}"), host_addr);
        env.insert(format!("NOMAD_HOST_PORT_{label}"), p.value.to_string());
        env.insert(format!("NOMAD_PORT_{label}"), inside.to_string());
        env.insert(format!("NOMAD_ALLOC_PORT_{label}"), inside.to_string());
        if let Some(status) = &status {
            env.insert(format!("NOMAD_ALLOC_IP_{label}"), status.address.clone());
            env.insert(
                format!("NOMAD_ALLOC_ADDR_{label}"),
                join_host_port(&status.address, inside),
            );
            env.insert(
                format!("NOMAD_ALLOC_INTERFACE_{label}"),
                status.interface_name.clone(),
            );
        }
    }
    env
}

/// The `NOMAD_*` variables of a task: the allocation's, its ports', and the task's own.
pub fn nomad_variables(
    alloc: &Allocation,
    job: &Job,
    task: &Task,
    paths: &TaskPaths,
    node: &NodeContext,
    network: &TaskNetwork,
) -> BTreeMap<String, String> {
    let mut env = alloc_variables(alloc, job, node);
    env.extend(port_variables(network));
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set("NOMAD_ALLOC_DIR", paths.alloc_dir.clone());
    set("NOMAD_TASK_DIR", paths.task_dir.clone());
    set("NOMAD_SECRETS_DIR", paths.secrets_dir.clone());
    set("NOMAD_TASK_NAME", task.name.clone());
    // What the scheduler granted (memory_max only with oversubscription, cores as ids);
    // what the task asked for when the allocation carries nothing.
    if let Some(granted) = alloc.allocated_resources.tasks.get(&task.name) {
        set("NOMAD_CPU_LIMIT", granted.cpu.cpu_shares.to_string());
        set("NOMAD_MEMORY_LIMIT", granted.memory.memory_mb.to_string());
        if granted.memory.memory_max_mb > 0 {
            set(
                "NOMAD_MEMORY_MAX_LIMIT",
                granted.memory.memory_max_mb.to_string(),
            );
        }
        if !granted.cpu.reserved_cores.is_empty() {
            set(
                "NOMAD_CPU_CORES",
                cpuset_string(&granted.cpu.reserved_cores),
            );
        }
    } else if let Some(r) = &task.resources {
        set("NOMAD_CPU_LIMIT", r.cpu.to_string());
        set("NOMAD_MEMORY_LIMIT", r.memory_mb.to_string());
    }
    // Meta: job, then group, then task (the more specific wins), as NOMAD_META_<key>.
    let group = job.group(&alloc.task_group);
    let metas = [Some(&job.meta), group.map(|g| &g.meta), Some(&task.meta)];
    for meta in metas.into_iter().flatten() {
        for (k, v) in meta {
            set(&format!("NOMAD_META_{}", meta_key(k)), v.clone());
            set(&format!("NOMAD_META_{k}"), v.clone());
        }
    }
    env
}

/// Core ids in cpuset notation: `[0, 1, 2, 5]` → `0-2,5`.
pub fn cpuset_string(cores: &[u32]) -> String {
    let mut sorted = cores.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// The full environment: `NOMAD_*` first, then the task's `env` (which may override none of the
/// `NOMAD_*` names, as in Nomad), with `${NOMAD_…}` references in values resolved.
pub fn task_environment(
    nomad: &BTreeMap<String, String>,
    task_env: &BTreeMap<String, String>,
    resolve: impl Fn(&str) -> Result<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut env = nomad.clone();
    for (k, v) in task_env {
        if nomad.contains_key(k) {
            continue;
        }
        let value = resolve(v).map_err(|e| format!("env.{k}: {e}"))?;
        env.insert(k.clone(), value);
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use controlplane::model::{Resources, TaskGroup};

    fn fixture() -> (Allocation, Job, Task) {
        let task = Task {
            name: "api".into(),
            resources: Some(Resources {
                cpu: 250,
                memory_mb: 128,
                ..Default::default()
            }),
            meta: [("tier".to_string(), "gold".to_string())].into(),
            ..Default::default()
        };
        let job = Job {
            id: "web".into(),
            name: "web".into(),
            namespace: "default".into(),
            region: "global".into(),
            meta: [
                ("owner.team".to_string(), "infra".to_string()),
                ("tier".to_string(), "silver".to_string()),
            ]
            .into(),
            task_groups: vec![TaskGroup {
                name: "g".into(),
                tasks: vec![task.clone()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let alloc = Allocation {
            id: "0123456789abcdef".into(),
            name: "web.g[2]".into(),
            task_group: "g".into(),
            ..Default::default()
        };
        (alloc, job, task)
    }

    #[test]
    fn nomad_variables_cover_the_task() {
        let (alloc, job, task) = fixture();
        let env = nomad_variables(
            &alloc,
            &job,
            &task,
            &TaskPaths::jailed(),
            &NodeContext {
                datacenter: "dc1".into(),
                ..Default::default()
            },
            &TaskNetwork::default(),
        );
        assert_eq!(env["NOMAD_ALLOC_DIR"], "/alloc");
        assert_eq!(env["NOMAD_TASK_DIR"], "/local");
        assert_eq!(env["NOMAD_SECRETS_DIR"], "/secrets");
        assert_eq!(env["NOMAD_SHORT_ALLOC_ID"], "01234567");
        assert_eq!(env["NOMAD_ALLOC_INDEX"], "2");
        assert_eq!(env["NOMAD_GROUP_NAME"], "g");
        assert_eq!(env["NOMAD_JOB_NAME"], "web");
        assert_eq!(env["NOMAD_MEMORY_LIMIT"], "128");
        assert_eq!(env["NOMAD_CPU_LIMIT"], "250");
        assert_eq!(env["NOMAD_DC"], "dc1");
        assert_eq!(env["NOMAD_META_OWNER_TEAM"], "infra");
        assert_eq!(
            env["NOMAD_META_tier"], "gold",
            "the task's meta wins over the job's"
        );
        assert!(!env.contains_key("NOMAD_MEMORY_MAX_LIMIT"));
    }

    #[test]
    fn granted_resources_win_and_cores_are_a_cpuset() {
        let (mut alloc, job, task) = fixture();
        alloc.allocated_resources.tasks.insert(
            "api".into(),
            controlplane::model::AllocatedTaskResources {
                cpu: controlplane::model::AllocatedCpuResources {
                    cpu_shares: 4000,
                    reserved_cores: vec![0, 1, 3],
                },
                memory: controlplane::model::AllocatedMemoryResources {
                    memory_mb: 128,
                    memory_max_mb: 512,
                },
            },
        );
        let env = nomad_variables(
            &alloc,
            &job,
            &task,
            &TaskPaths::jailed(),
            &NodeContext::default(),
            &TaskNetwork::default(),
        );
        assert_eq!(env["NOMAD_CPU_LIMIT"], "4000");
        assert_eq!(env["NOMAD_CPU_CORES"], "0-1,3");
        assert_eq!(env["NOMAD_MEMORY_MAX_LIMIT"], "512");
        assert_eq!(cpuset_string(&[5, 2, 3, 4, 9]), "2-5,9");
    }

    fn mapping(label: &str, value: i64, to: i64) -> controlplane::model::AllocatedPortMapping {
        controlplane::model::AllocatedPortMapping {
            label: label.into(),
            value,
            to,
            host_ip: "10.0.0.5".into(),
            ignore_collision: false,
        }
    }

    #[test]
    fn host_mode_ports_are_the_hosts() {
        use crate::client::network::task::NetworkMode;
        // port "http" { static = 8080 }, port "db" {} (dynamic 23456), in host mode.
        let net = TaskNetwork {
            mode: NetworkMode::Host,
            host_ip: "10.0.0.5".into(),
            ports: vec![mapping("http", 8080, 0), mapping("db", 23456, 0)],
            ..Default::default()
        };
        let env = port_variables(&net);
        for (k, v) in [
            ("NOMAD_IP_http", "10.0.0.5"),
            ("NOMAD_PORT_http", "8080"),
            ("NOMAD_ADDR_http", "10.0.0.5:8080"),
            ("NOMAD_HOST_IP_http", "10.0.0.5"),
            ("NOMAD_HOST_PORT_http", "8080"),
            ("NOMAD_HOST_ADDR_http", "10.0.0.5:8080"),
            ("NOMAD_ALLOC_PORT_http", "8080"),
            ("NOMAD_PORT_db", "23456"),
            ("NOMAD_ADDR_db", "10.0.0.5:23456"),
        ] {
            assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
        }
        // No address of its own in host mode: no NOMAD_ALLOC_IP_*/ADDR_* (as Nomad, which
        // sets them only with a network status).
        assert!(!env.contains_key("NOMAD_ALLOC_IP_http"));
        assert!(!env.contains_key("NOMAD_ALLOC_ADDR_http"));
        assert_eq!(env.len(), 14);
    }

    #[test]
    fn bridge_mode_ports_map_to_the_allocation() {
        use crate::client::network::task::NetworkMode;
        // port "http" { to = 8080 } got host port 23456; port "raw" { to = -1 } got 23457;
        // port "plain" {} got 23458.
        let net = TaskNetwork {
            mode: NetworkMode::Bridge,
            host_ip: "10.0.0.5".into(),
            alloc_ip: Some(std::net::Ipv4Addr::new(172, 26, 64, 2)),
            ports: vec![
                mapping("http", 23456, 8080),
                mapping("raw", 23457, -1),
                mapping("plain", 23458, 0),
            ],
            ..Default::default()
        };
        let env = port_variables(&net);
        for (k, v) in [
            ("NOMAD_PORT_http", "8080"),
            ("NOMAD_ALLOC_PORT_http", "8080"),
            ("NOMAD_HOST_PORT_http", "23456"),
            ("NOMAD_IP_http", "10.0.0.5"),
            ("NOMAD_ADDR_http", "10.0.0.5:23456"),
            ("NOMAD_HOST_ADDR_http", "10.0.0.5:23456"),
            ("NOMAD_ALLOC_IP_http", "172.26.64.2"),
            ("NOMAD_ALLOC_ADDR_http", "172.26.64.2:8080"),
            ("NOMAD_ALLOC_INTERFACE_http", "eth0"),
            ("NOMAD_PORT_raw", "23457"),
            ("NOMAD_ALLOC_ADDR_raw", "172.26.64.2:23457"),
            ("NOMAD_PORT_plain", "23458"),
        ] {
            assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
        }
        // A port without its own HostIP takes the node's; IPv6 is bracketed.
        let mut v6 = mapping("v6", 80, 0);
        v6.host_ip = "fd00::1".into();
        let mut bare = mapping("bare", 81, 0);
        bare.host_ip.clear();
        let env = port_variables(&TaskNetwork {
            host_ip: "192.168.0.9".into(),
            ports: vec![v6, bare],
            ..Default::default()
        });
        assert_eq!(env["NOMAD_ADDR_v6"], "[fd00::1]:80");
        assert_eq!(env["NOMAD_ADDR_bare"], "192.168.0.9:81");
    }

    #[test]
    fn the_task_sees_its_ports_among_its_variables() {
        let (alloc, job, task) = fixture();
        let net = TaskNetwork {
            host_ip: "10.0.0.5".into(),
            ports: vec![mapping("http", 8080, 0)],
            ..Default::default()
        };
        let env = nomad_variables(
            &alloc,
            &job,
            &task,
            &TaskPaths::jailed(),
            &NodeContext::default(),
            &net,
        );
        assert_eq!(env["NOMAD_PORT_http"], "8080");
        assert_eq!(env["NOMAD_ALLOC_ID"], "0123456789abcdef");
    }

    #[test]
    fn job_env_cannot_override_nomad_variables_and_is_resolved() {
        let nomad: BTreeMap<String, String> =
            [("NOMAD_ALLOC_ID".to_string(), "a1".to_string())].into();
        let task_env: BTreeMap<String, String> = [
            ("NOMAD_ALLOC_ID".to_string(), "fake".to_string()),
            ("GREETING".to_string(), "hi ${NOMAD_ALLOC_ID}".to_string()),
        ]
        .into();
        let env = task_environment(&nomad, &task_env, |v| {
            Ok(v.replace("${NOMAD_ALLOC_ID}", "a1"))
        })
        .unwrap();
        assert_eq!(env["NOMAD_ALLOC_ID"], "a1");
        assert_eq!(env["GREETING"], "hi a1");
        let err = task_environment(&nomad, &task_env, |_| Err("unknown key".into())).unwrap_err();
        assert_eq!(err, "env.GREETING: unknown key");
    }
}
