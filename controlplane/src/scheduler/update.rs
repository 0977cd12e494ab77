//! Which job changes need new allocations and which can be applied to running ones: Nomad's
//! `tasksUpdated`. A destructive change (what the task runs, with what, in what sandbox) stops
//! the allocation and places a replacement; anything else (count, update/migrate/reschedule/
//! restart policies, placement rules the node still satisfies, kill timeouts, services) is an
//! update in place: the allocation keeps running under the new job version.

use std::collections::BTreeMap;

use crate::model::{Consul, Job, Service, Task, TaskGroup};

/// Why allocations of `group` running `old` must be replaced to run `new`, or `None` when
/// they can be updated in place. The reason names the first destructive difference found,
/// in Nomad's words (`job plan` shows it). A group missing from either job is a difference.
pub fn tasks_updated(old: &Job, new: &Job, group: &str) -> Option<String> {
    let (Some(a), Some(b)) = (old.group(group), new.group(group)) else {
        return Some(format!("task group {group:?} added or removed"));
    };
    group_updated(a, b).or_else(|| {
        a.tasks.iter().find_map(|at| match b.task(&at.name) {
            None => Some(format!("task deleted: {:?}", at.name)),
            Some(bt) => task_updated(old, new, a, b, at, bt),
        })
    })
}

/// The group-level destructive differences.
fn group_updated(a: &TaskGroup, b: &TaskGroup) -> Option<String> {
    if a.tasks.len() != b.tasks.len() {
        return Some(format!(
            "number of tasks: {} → {}",
            a.tasks.len(),
            b.tasks.len()
        ));
    }
    if a.ephemeral_disk != b.ephemeral_disk {
        return Some("ephemeral disk".to_string());
    }
    if a.networks != b.networks {
        return Some("network".to_string());
    }
    if let Some(why) = consul_updated(a.consul.as_ref(), b.consul.as_ref()) {
        return Some(why);
    }
    if connect_services(&a.services) != connect_services(&b.services) {
        return Some("connect service".to_string());
    }
    if a.volumes != b.volumes {
        return Some("volume request".to_string());
    }
    let render = |g: &TaskGroup| g.restart_policy.as_ref().map(|r| r.render_templates);
    if render(a) != render(b) {
        return Some("group restart render_templates".to_string());
    }
    None
}

/// The task-level destructive differences of one task present in both versions.
fn task_updated(
    old: &Job,
    new: &Job,
    ga: &TaskGroup,
    gb: &TaskGroup,
    a: &Task,
    b: &Task,
) -> Option<String> {
    let name = &a.name;
    let checks: [(&str, bool); 16] = [
        ("task driver", a.driver != b.driver),
        ("task user", a.user != b.user),
        ("task config", a.config != b.config),
        ("task env", a.env != b.env),
        ("task artifacts", a.artifacts != b.artifacts),
        ("task vault", a.vault != b.vault),
        ("task secrets", a.secrets != b.secrets),
        ("task templates", a.templates != b.templates),
        (
            "task csi config",
            a.csi_plugin_config != b.csi_plugin_config,
        ),
        ("task volume mount", a.volume_mounts != b.volume_mounts),
        (
            "task meta",
            combined_meta(old, ga, a) != combined_meta(new, gb, b),
        ),
        ("task resources", a.resources != b.resources),
        (
            "task identity",
            a.identity != b.identity || a.identities != b.identities,
        ),
        (
            "task log disabled",
            a.log_config.as_ref().map(|l| l.disabled) != b.log_config.as_ref().map(|l| l.disabled),
        ),
        (
            "task restart render_templates",
            a.restart_policy.as_ref().map(|r| r.render_templates)
                != b.restart_policy.as_ref().map(|r| r.render_templates),
        ),
        // noded's client sets a task's place in the start order up when the allocation
        // starts; it cannot move a running task from prestart to main.
        ("task lifecycle", a.lifecycle != b.lifecycle),
    ];
    if let Some((what, _)) = checks.iter().find(|(_, changed)| *changed) {
        return Some(format!("{what} of task {name:?}"));
    }
    consul_updated(a.consul.as_ref(), b.consul.as_ref())
}

/// Job, group and task meta merged (task wins), as the task sees it in `NOMAD_META_*`.
fn combined_meta(job: &Job, group: &TaskGroup, task: &Task) -> BTreeMap<String, String> {
    let mut meta = job.meta.clone();
    meta.extend(group.meta.clone());
    meta.extend(task.meta.clone());
    meta
}

/// A changed Consul namespace, cluster or partition moves the workload to another network of
/// intentions: destructive. (No block on either side is not a difference by itself.)
fn consul_updated(a: Option<&Consul>, b: Option<&Consul>) -> Option<String> {
    let namespace = |c: Option<&Consul>| c.map(|c| c.namespace.clone()).unwrap_or_default();
    if namespace(a) != namespace(b) {
        return Some("consul namespace".to_string());
    }
    match (a, b) {
        (Some(a), Some(b)) if a.cluster != b.cluster => Some("consul cluster".to_string()),
        (Some(a), Some(b)) if a.partition != b.partition => Some("consul partition".to_string()),
        _ => None,
    }
}

/// The group's Connect services (their sidecars are tasks): a change to one is destructive,
/// other service changes are re-registered in place.
fn connect_services(services: &[Service]) -> Vec<&Service> {
    services.iter().filter(|s| s.connect.is_some()).collect()
}
