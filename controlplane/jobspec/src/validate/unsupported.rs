//! The fields noded keeps but its runtime does not act on yet, reported as warnings so a
//! job's author knows what is ignored.

use model::{Job, Resources, Service, ServiceCheck, Task, TaskGroup};

use crate::error::{FieldPath, Warning};
use crate::schema::{self, Kind, Schema};

/// The API fields noded's runtime acts on, as `Struct.Field` type paths (lists are looked
/// through). Everything else a job sets is kept, and reported by [`unsupported_warnings`].
/// The lead maintains this list as the runtime grows.
pub const ACTED_ON: &[&str] = &[
    "Job.ID",
    "Job.Name",
    "Job.Region",
    "Job.Namespace",
    "Job.Type",
    "Job.Datacenters",
    "Job.Priority",
    "Job.Meta",
    "Job.NodePool",
    "Job.TaskGroups",
    "TaskGroups.Name",
    "TaskGroups.Count",
    "TaskGroups.Meta",
    "TaskGroups.RestartPolicy",
    // Node lifecycle: drains, lost and disconnected nodes (the drainer, the scheduler's
    // triage, the client's stop_on_client_after).
    "Job.Migrate",
    "TaskGroups.Migrate",
    "TaskGroups.Disconnect",
    "TaskGroups.MaxClientDisconnect",
    "TaskGroups.StopAfterClientDisconnect",
    "TaskGroups.PreventRescheduleOnLost",
    // Rollouts: deployments (the scheduler's reconciler and the leader's deployment
    // watcher).
    "Job.Update",
    "TaskGroups.Update",
    "Update.MaxParallel",
    "Update.HealthCheck",
    "Update.MinHealthyTime",
    "Update.HealthyDeadline",
    "Update.ProgressDeadline",
    "Update.Canary",
    "Update.AutoRevert",
    "Update.AutoPromote",
    // (`Update.Stagger` is not: deployments pace themselves by health, as Nomad's do.)
    // Rescheduling of failed allocations (the scheduler's reschedule rules).
    "Job.Reschedule",
    "TaskGroups.ReschedulePolicy",
    // Their fields, by the block's own name (job level: `Reschedule`, group: `ReschedulePolicy`).
    "Reschedule.Attempts",
    "Reschedule.Interval",
    "Reschedule.Delay",
    "Reschedule.DelayFunction",
    "Reschedule.MaxDelay",
    "Reschedule.Unlimited",
    "ReschedulePolicy.Attempts",
    "ReschedulePolicy.Interval",
    "ReschedulePolicy.Delay",
    "ReschedulePolicy.DelayFunction",
    "ReschedulePolicy.MaxDelay",
    "ReschedulePolicy.Unlimited",
    "Migrate.MaxParallel",
    "Migrate.HealthCheck",
    "Migrate.MinHealthyTime",
    "Migrate.HealthyDeadline",
    "TaskGroups.Tasks",
    "Tasks.Name",
    "Tasks.Driver",
    "Tasks.Config.command",
    "Tasks.Config.args",
    "Tasks.Config.work_dir",
    "Tasks.Config.pid_mode",
    "Tasks.Config.ipc_mode",
    "Tasks.Config.cap_add",
    "Tasks.Config.cap_drop",
    "Tasks.Config.rlimits",
    "Tasks.Config.seccomp",
    "Tasks.Config.cpu_hard_limit",
    "Tasks.Config.readonly_rootfs",
    "Tasks.Resources.Cores",
    "Tasks.Env",
    "Tasks.User",
    "Tasks.Meta",
    "Tasks.Resources.CPU",
    "Tasks.Resources.MemoryMB",
    "Tasks.Resources.MemoryMaxMB",
    "Tasks.Leader",
    "Tasks.KillTimeout",
    "Tasks.KillSignal",
    "Tasks.LogConfig",
    "Tasks.RestartPolicy",
    // Placement (the scheduler's constraints, affinities, spreads and ephemeral disk size).
    // Nested blocks are matched by their own type path, so each field is listed. Host
    // volumes are placed by (the node's volumes) but not yet mounted on the node: they keep
    // warning until the volume work lands.
    "Job.Constraints",
    "Job.Affinities",
    "Job.Spreads",
    "TaskGroups.Constraints",
    "TaskGroups.Affinities",
    "TaskGroups.Spreads",
    "TaskGroups.EphemeralDisk.SizeMB",
    "EphemeralDisk.SizeMB",
    "Tasks.Constraints",
    "Tasks.Affinities",
    "Constraints.LTarget",
    "Constraints.RTarget",
    "Constraints.Operand",
    "Affinities.LTarget",
    "Affinities.RTarget",
    "Affinities.Operand",
    "Affinities.Weight",
    "Spreads.Attribute",
    "Spreads.Weight",
    "Spreads.SpreadTarget",
    "SpreadTarget.Value",
    "SpreadTarget.Percent",
    // Networking (the client's namespaces, veths, port mappings and /etc files, ports on a
    // named `host_network`). CNI still warns.
    "TaskGroups.Networks",
    "Networks.Mode",
    // Filled in by placement (the node's address), never written in a job.
    "Networks.Device",
    "Networks.CIDR",
    "Networks.IP",
    "Networks.Hostname",
    "Networks.DNS",
    "DNS.Servers",
    "DNS.Searches",
    "DNS.Options",
    "Networks.ReservedPorts",
    "Networks.DynamicPorts",
    "ReservedPorts.Label",
    "ReservedPorts.Value",
    "ReservedPorts.To",
    "ReservedPorts.HostNetwork",
    "DynamicPorts.Label",
    "DynamicPorts.To",
    "DynamicPorts.HostNetwork",
    "Job.Periodic",
    "Job.ParameterizedJob",
    "Tasks.DispatchPayload",
    "TaskGroups.Scaling",
    // Services in the native catalog, their checks run by the client, check_restart.
    // Consul Connect, workload identities, weights, tag override and tagged addresses keep
    // warning: nothing acts on them.
    "TaskGroups.Services",
    "Tasks.Services",
    "Services.Name",
    "Services.Tags",
    "Services.CanaryTags",
    "Services.PortLabel",
    "Services.AddressMode",
    "Services.Address",
    "Services.Checks",
    "Services.CheckRestart",
    "Services.Meta",
    "Services.CanaryMeta",
    "Services.TaskName",
    "Services.OnUpdate",
    "Services.Provider",
    "Checks.Name",
    "Checks.Type",
    "Checks.Command",
    "Checks.Args",
    "Checks.Path",
    "Checks.Protocol",
    "Checks.PortLabel",
    "Checks.AddressMode",
    "Checks.Interval",
    "Checks.Timeout",
    "Checks.InitialStatus",
    "Checks.TLSServerName",
    "Checks.TLSSkipVerify",
    "Checks.Header",
    "Checks.Method",
    "Checks.CheckRestart",
    "Checks.GRPCService",
    "Checks.GRPCUseTLS",
    "Checks.TaskName",
    "Checks.SuccessBeforePassing",
    "Checks.FailuresBeforeCritical",
    "Checks.FailuresBeforeWarning",
    "Checks.Body",
    "Checks.OnUpdate",
    "CheckRestart.Limit",
    "CheckRestart.Grace",
    "CheckRestart.IgnoreWarnings",
    // The wait between deregistering an allocation's services and killing its tasks.
    "TaskGroups.ShutdownDelay",
    "Tasks.ShutdownDelay",
    // Lifecycle hooks (the client's coordinator), a batch group's time limit, and the exec
    // driver's small init.
    "Tasks.Lifecycle",
    "Lifecycle.Hook",
    "Lifecycle.Sidecar",
    "TaskGroups.MaxRunDuration",
    "Tasks.Config.init",
];

/// Drivers noded runs.
pub const SUPPORTED_DRIVERS: &[&str] = &["exec", "raw_exec"];

/// Warnings naming every field this job sets that noded keeps but does not act on yet.
/// A field counts as set when it differs from what the same job would hold without it (so
/// defaults Nomad fills in do not warn).
pub fn unsupported_warnings(job: &Job) -> Vec<Warning> {
    let mut out = Vec::new();
    let baseline = baseline_of(job);
    let (Ok(actual), Ok(base)) = (serde_json::to_value(job), serde_json::to_value(&baseline))
    else {
        return out;
    };
    let jp = FieldPath::root().labeled("job", &job.id);
    diff(&actual, &base, &schema::JOB, "Job", &jp, &mut out);
    for (gi, g) in job.task_groups.iter().enumerate() {
        for t in &g.tasks {
            if !SUPPORTED_DRIVERS.contains(&t.driver.as_str()) && !t.driver.is_empty() {
                let p = jp
                    .labeled("group", &g.name)
                    .labeled("task", &t.name)
                    .field("driver");
                out.push(Warning::new(
                    None,
                    p.to_string(),
                    format!(
                        "driver {:?} is kept but noded runs only {}; this task will not be placed",
                        t.driver,
                        SUPPORTED_DRIVERS.join(" and ")
                    ),
                ));
            }
        }
        let _ = gi;
    }
    out
}

/// The job with only what noded acts on: names, types, counts, drivers, commands, resources.
fn baseline_of(job: &Job) -> Job {
    let mut b = Job {
        id: job.id.clone(),
        name: job.name.clone(),
        region: job.region.clone(),
        namespace: job.namespace.clone(),
        job_type: job.job_type,
        priority: job.priority,
        datacenters: job.datacenters.clone(),
        node_pool: job.node_pool.clone(),
        meta: job.meta.clone(),
        periodic: job.periodic.clone(),
        parameterized_job: job.parameterized_job.clone(),
        ..Default::default()
    };
    for g in &job.task_groups {
        let mut bg = TaskGroup {
            name: g.name.clone(),
            count: g.count,
            meta: g.meta.clone(),
            restart_policy: g.restart_policy.clone(),
            scaling: g.scaling.clone(),
            // The network as the client acts on it: CNI and mbits are not.
            networks: g
                .networks
                .iter()
                .map(|n| {
                    let mut acted = n.clone();
                    acted.cni = None;
                    acted.mbits = None;
                    acted
                })
                .collect(),
            services: g.services.iter().map(acted_service).collect(),
            shutdown_delay: g.shutdown_delay,
            max_run_duration: g.max_run_duration,
            ..Default::default()
        };
        for t in &g.tasks {
            let mut config = serde_json::Map::new();
            // The exec/raw_exec options noded acts on (see crate::drivers).
            for k in [
                "command",
                "args",
                "work_dir",
                "pid_mode",
                "ipc_mode",
                "cap_add",
                "cap_drop",
                "rlimits",
                "seccomp",
                "cpu_hard_limit",
                "readonly_rootfs",
                "init",
            ] {
                if let Some(v) = t.config.get(k) {
                    config.insert(k.to_string(), v.clone());
                }
            }
            bg.tasks.push(Task {
                name: t.name.clone(),
                driver: t.driver.clone(),
                user: t.user.clone(),
                config,
                env: t.env.clone(),
                meta: t.meta.clone(),
                kill_timeout: t.kill_timeout,
                kill_signal: t.kill_signal.clone(),
                log_config: t.log_config.clone(),
                leader: t.leader,
                lifecycle: t.lifecycle.clone(),
                restart_policy: t.restart_policy.clone(),
                dispatch_payload: t.dispatch_payload.clone(),
                services: t.services.iter().map(acted_service).collect(),
                shutdown_delay: t.shutdown_delay,
                resources: t.resources.as_ref().map(|r| Resources {
                    cpu: r.cpu,
                    memory_mb: r.memory_mb,
                    memory_max_mb: r.memory_max_mb,
                    cores: r.cores,
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        b.task_groups.push(bg);
    }
    b.canonicalize();
    b
}

/// A service as the runtime acts on it: what only Consul (or nothing yet) would act on is
/// left at its default, so that setting it warns and leaving it does not.
fn acted_service(s: &Service) -> Service {
    Service {
        enable_tag_override: false,
        tagged_addresses: Default::default(),
        connect: None,
        identity: None,
        weights: None,
        cluster: String::new(),
        kind: String::new(),
        checks: s
            .checks
            .iter()
            .map(|c| ServiceCheck {
                expose: false,
                advertise: String::new(),
                notes: String::new(),
                ..c.clone()
            })
            .collect(),
        ..s.clone()
    }
}

/// Reports the outermost fields where `actual` differs from `base`.
fn diff(
    actual: &serde_json::Value,
    base: &serde_json::Value,
    schema: &'static Schema,
    type_path: &str,
    path: &FieldPath,
    out: &mut Vec<Warning>,
) {
    use serde_json::Value as J;
    let (J::Object(a), b) = (actual, base) else {
        return;
    };
    let empty = serde_json::Map::new();
    let b = b.as_object().unwrap_or(&empty);
    for field in schema.fields {
        let av = a.get(field.api).unwrap_or(&J::Null);
        let bv = b.get(field.api).unwrap_or(&J::Null);
        if av == bv || is_empty(av) && is_empty(bv) {
            continue;
        }
        let tp = format!("{type_path}.{}", field.api);
        let short = format!(
            "{}.{}",
            type_path.rsplit('.').next().unwrap_or(type_path),
            field.api
        );
        let acted = ACTED_ON
            .iter()
            .any(|a| *a == tp || *a == short || a.starts_with(&format!("{short}.")));
        let hcl = if field.hcl.is_empty() {
            field.api
        } else {
            field.hcl
        };
        match (field.kind, acted) {
            (Kind::Block(s), true) => diff(av, bv, s, field.api, &path.field(hcl), out),
            (Kind::Labeled(s), true) | (Kind::Blocks(s), true) => {
                let (Some(al), Some(bl)) = (av.as_array(), bv.as_array()) else {
                    continue;
                };
                for (i, item) in al.iter().enumerate() {
                    let name = item.get("Name").and_then(J::as_str).unwrap_or("");
                    let ip = if s.label.is_some() {
                        path.labeled(hcl, name)
                    } else {
                        path.field(hcl).index(i)
                    };
                    diff(item, bl.get(i).unwrap_or(&J::Null), s, field.api, &ip, out);
                }
            }
            (Kind::FreeForm, true) => {
                let (Some(am), bm) = (av.as_object(), bv.as_object()) else {
                    continue;
                };
                for (k, v) in am {
                    if bm.and_then(|m| m.get(k)) != Some(v) {
                        out.push(Warning::new(
                            None,
                            path.field(hcl).field(k).to_string(),
                            format!("{hcl}.{k} is kept but noded does not act on it yet"),
                        ));
                    }
                }
            }
            (_, true) => {}
            (_, false) => {
                out.push(Warning::new(
                    None,
                    path.field(hcl).to_string(),
                    format!("{hcl} is kept but noded does not act on it yet"),
                ));
            }
        }
    }
}

fn is_empty(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::unsupported_warnings;

    #[test]
    fn reschedule_and_migrate_fields_do_not_warn_at_job_or_group_level() {
        let src = r#"
job "web" {
  reschedule {
    delay          = "10s"
    delay_function = "fibonacci"
  }
  group "g" {
    reschedule {
      attempts       = 3
      interval       = "5m"
      delay          = "15s"
      delay_function = "exponential"
      max_delay      = "1m"
      unlimited      = false
    }
    migrate {
      max_parallel     = 2
      health_check     = "task_states"
      min_healthy_time = "5s"
      healthy_deadline = "1m"
    }
    task "t" {
      driver = "exec"
      config {
        command = "/bin/true"
      }
    }
  }
}
"#;
        let job = crate::parse_hcl(src, &crate::ParseOptions::default())
            .unwrap()
            .job;
        let warnings: Vec<String> = unsupported_warnings(&job)
            .iter()
            .map(|w| w.to_string())
            .collect();
        assert!(
            warnings.is_empty(),
            "reschedule and migrate are acted on: {warnings:?}"
        );
    }

    #[test]
    fn placement_rules_and_networks_do_not_warn_but_cni_still_does() {
        let src = r#"
job "web" {
  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }
  affinity {
    attribute = "${node.class}"
    value     = "fast"
    weight    = 50
  }
  spread {
    attribute = "${node.datacenter}"
    target "dc1" {
      percent = 70
    }
  }
  group "g" {
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }
    ephemeral_disk {
      size = 500
    }
    network {
      mode     = "bridge"
      hostname = "web"
      port "http" {
        to = 8080
      }
      port "admin" {
        static       = 9000
        host_network = "public"
      }
      dns {
        servers = ["1.1.1.1"]
      }
    }
    task "t" {
      driver = "exec"
      config {
        command = "/bin/true"
      }
      constraint {
        attribute = "${attr.cpu.arch}"
        value     = "amd64"
      }
    }
  }
}
"#;
        let job = crate::parse_hcl(src, &crate::ParseOptions::default())
            .unwrap()
            .job;
        let warnings: Vec<String> = unsupported_warnings(&job)
            .iter()
            .map(|w| w.to_string())
            .collect();
        let placement = ["constraint", "affinity", "spread", "ephemeral_disk"];
        for w in &warnings {
            assert!(
                !placement.iter().any(|p| w.contains(&format!("→ {p}"))
                    || w.contains(&format!("{p}["))
                    || w.contains(&format!("{p}."))),
                "a placement rule still warns: {w}"
            );
        }
        assert!(
            !warnings.iter().any(|w| w.contains("network")),
            "the network block is acted on: {warnings:?}"
        );
        let with_cni = src.replace(
            "      dns {",
            "      cni {\n        args = {\n          a = \"b\"\n        }\n      }\n      dns {",
        );
        let job = crate::parse_hcl(&with_cni, &crate::ParseOptions::default())
            .unwrap()
            .job;
        let warnings: Vec<String> = unsupported_warnings(&job)
            .iter()
            .map(|w| w.to_string())
            .collect();
        assert!(
            warnings.iter().any(|w| w.contains("cni")),
            "CNI networks are not offered: {warnings:?}"
        );
    }

    fn warnings_of(src: &str) -> Vec<String> {
        let job = crate::parse_hcl(src, &crate::ParseOptions::default())
            .unwrap()
            .job;
        unsupported_warnings(&job)
            .iter()
            .map(|w| w.to_string())
            .collect()
    }

    #[test]
    fn services_checks_and_shutdown_delay_do_not_warn_but_consul_only_fields_do() {
        let job = |extra_service: &str, extra_check: &str| {
            format!(
                r#"
job "web" {{
  group "g" {{
    shutdown_delay = "5s"
    network {{
      port "http" {{}}
    }}
    service {{
      name     = "web"
      port     = "http"
      provider = "nomad"
      tags     = ["v1"]
      meta {{
        team = "a"
      }}{extra_service}
      check {{
        type     = "http"
        path     = "/health"
        interval = "1s"
        timeout  = "1s"{extra_check}
      }}
      check_restart {{
        limit = 3
      }}
    }}
    task "t" {{
      driver         = "raw_exec"
      shutdown_delay = "2s"
      config {{
        command = "/bin/true"
      }}
      service {{
        name = "t"
        port = "http"
      }}
    }}
  }}
}}
"#
            )
        };
        let warnings = warnings_of(&job("", ""));
        assert!(warnings.is_empty(), "{warnings:?}");
        let warnings = warnings_of(&job(
            "\n      enable_tag_override = true",
            "\n        expose   = true",
        ));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("enable_tag_override"), "{warnings:?}");
        assert!(warnings[1].contains("expose"), "{warnings:?}");
    }
}
