//! Task-level rules: name, driver and its config, the task's blocks (logs, lifecycle,
//! artifacts, templates, vault, volume mounts, CSI plugin, scaling, identities, secrets),
//! environment names and services. Resources and restart policies are checked by
//! [`super::resources`] and [`super::policies`].

use std::collections::{BTreeMap, BTreeSet};

use model::duration::format_go;
use model::{Job, Task, TaskGroup, Template};

use super::Validator;
use crate::error::FieldPath;

impl Validator<'_> {
    pub(super) fn task(&mut self, job: &Job, g: &TaskGroup, t: &Task, tp: &FieldPath) {
        self.task_name_and_driver(t, tp);
        self.exec_config(t, tp);
        if let Some(r) = &t.resources {
            self.resources(r, &tp.field("resources").key("Resources"));
        }
        // A task inherits the group's policy; only its own changes need checking again.
        if let Some(r) = t
            .restart_policy
            .as_ref()
            .filter(|r| Some(*r) != g.restart_policy.as_ref())
        {
            self.restart(r, &tp.field("restart").key("RestartPolicy"));
        }
        self.log_config(t, tp);
        self.lifecycle(t, tp);
        self.artifacts(t, tp);
        self.templates(t, tp);
        self.vault(t, tp);
        if t.dispatch_payload.is_some() && job.parameterized_job.is_none() {
            self.err(
                &tp.field("dispatch_payload").key("DispatchPayload"),
                "dispatch_payload is only for parameterized jobs (add a parameterized block)",
            );
        }
        self.volume_mounts(g, t, tp);
        self.csi_plugin(t, tp);
        self.task_scaling(t, tp);
        self.identities(t, tp);
        self.secrets(t, tp);
        self.env_names(t, tp);
        self.task_services(g, t, tp);
        self.constraints(&t.constraints, tp);
        self.affinities(&t.affinities, tp);
    }

    fn task_name_and_driver(&mut self, t: &Task, tp: &FieldPath) {
        if t.name.is_empty() {
            self.err(tp, "the task needs a name: task \"api\" { … }");
        } else if t.name.contains('/') || t.name.contains('\0') {
            self.err(
                tp,
                format!(
                    "task name {:?} must not contain '/' or a null character",
                    t.name
                ),
            );
        }
        if t.driver.is_empty() {
            self.err(
                &tp.field("driver").key("Driver"),
                "the task has no driver; set driver = \"exec\" (or raw_exec, docker, …)",
            );
        }
    }

    /// The `config` keys the exec drivers cannot do without.
    fn exec_config(&mut self, t: &Task, tp: &FieldPath) {
        if !matches!(t.driver.as_str(), "exec" | "raw_exec" | "exec2") {
            return;
        }
        let cp = tp.field("config").key("Config");
        match t.config.get("command") {
            None => self.err(
                &cp,
                format!(
                    "the {} driver needs config {{ command = \"/path/to/program\" }}",
                    t.driver
                ),
            ),
            Some(serde_json::Value::String(s)) if s.is_empty() => {
                self.err(&cp.field("command"), "command must not be empty")
            }
            Some(serde_json::Value::String(_)) => {}
            Some(other) => self.err(
                &cp.field("command"),
                format!("command must be a string, got {other}"),
            ),
        }
        if let Some(args) = t.config.get("args") {
            let ok = args
                .as_array()
                .is_some_and(|a| a.iter().all(serde_json::Value::is_string));
            if !ok {
                self.err(
                    &cp.field("args"),
                    "args must be a list of strings, like args = [\"-c\", \"echo hi\"]",
                );
            }
        }
    }

    fn log_config(&mut self, t: &Task, tp: &FieldPath) {
        let Some(l) = &t.log_config else {
            return;
        };
        let lp = tp.field("logs").key("LogConfig");
        if l.max_files < 1 {
            self.err(
                &lp.field("max_files").key("MaxFiles"),
                format!("max_files must be at least 1 (got {})", l.max_files),
            );
        }
        if l.max_file_size_mb < 1 {
            self.err(
                &lp.field("max_file_size").key("MaxFileSizeMB"),
                format!(
                    "max_file_size must be at least 1 MB (got {})",
                    l.max_file_size_mb
                ),
            );
        }
    }

    fn lifecycle(&mut self, t: &Task, tp: &FieldPath) {
        let Some(l) = &t.lifecycle else {
            return;
        };
        let lp = tp.field("lifecycle").key("Lifecycle");
        match l.hook.as_str() {
            "prestart" | "poststart" => {}
            "poststop" if l.sidecar => self.err(
                &lp.field("sidecar").key("Sidecar"),
                "a poststop task cannot be a sidecar",
            ),
            "poststop" => {}
            "" => self.err(
                &lp.field("hook").key("Hook"),
                "lifecycle needs hook = \"prestart\", \"poststart\" or \"poststop\"",
            ),
            other => self.err(
                &lp.field("hook").key("Hook"),
                format!("hook must be \"prestart\", \"poststart\" or \"poststop\" (got {other:?})"),
            ),
        }
    }

    fn artifacts(&mut self, t: &Task, tp: &FieldPath) {
        for (ai, a) in t.artifacts.iter().enumerate() {
            let ap = tp
                .field("artifact")
                .index(ai)
                .key("Artifacts")
                .key(&ai.to_string());
            if a.getter_source.is_empty() {
                self.err(
                    &ap.field("source").key("GetterSource"),
                    "an artifact needs a source URL",
                );
            }
            if !["any", "file", "dir"].contains(&a.getter_mode.as_str()) {
                self.err(
                    &ap.field("mode").key("GetterMode"),
                    format!(
                        "mode must be \"any\", \"file\" or \"dir\" (got {:?})",
                        a.getter_mode
                    ),
                );
            }
            if let Some(dest) = &a.relative_dest {
                if escapes_alloc_dir(dest) {
                    self.err(
                        &ap.field("destination").key("RelativeDest"),
                        format!("destination {dest:?} escapes the allocation directory"),
                    );
                }
            }
        }
    }

    fn templates(&mut self, t: &Task, tp: &FieldPath) {
        for (i, tm) in t.templates.iter().enumerate() {
            let tmp = tp
                .field("template")
                .index(i)
                .key("Templates")
                .key(&i.to_string());
            self.template(tm, &tmp);
        }
    }

    fn template(&mut self, tm: &Template, tmp: &FieldPath) {
        if tm.source_path.is_empty() && tm.embedded_tmpl.is_empty() {
            self.err(tmp, "a template needs data = \"…\" or source = \"path\"");
        }
        if !tm.source_path.is_empty() && !tm.embedded_tmpl.is_empty() {
            self.err(tmp, "a template takes data or source, not both");
        }
        if tm.dest_path.is_empty() {
            self.err(
                &tmp.field("destination").key("DestPath"),
                "a template needs a destination",
            );
        } else if escapes_alloc_dir(&tm.dest_path) {
            self.err(
                &tmp.field("destination").key("DestPath"),
                format!(
                    "destination {:?} escapes the allocation directory",
                    tm.dest_path
                ),
            );
        }
        match tm.change_mode.as_str() {
            "noop" | "restart" => {}
            "signal" if tm.change_signal.is_empty() => self.err(
                &tmp.field("change_signal").key("ChangeSignal"),
                "change_mode \"signal\" needs change_signal",
            ),
            "signal" => {}
            "script" if tm.change_script.is_none() => self.err(
                &tmp.field("change_script").key("ChangeScript"),
                "change_mode \"script\" needs a change_script block",
            ),
            "script" => {}
            other => self.err(
                &tmp.field("change_mode").key("ChangeMode"),
                format!("change_mode must be noop, restart, signal or script (got {other:?})"),
            ),
        }
        if let Some(cs) = &tm.change_script {
            if cs.command.is_empty() {
                self.err(
                    &tmp.field("change_script")
                        .field("command")
                        .key("ChangeScript")
                        .key("Command"),
                    "change_script needs a command",
                );
            }
        }
        if u32::from_str_radix(&tm.perms, 8).is_err() || tm.perms.len() > 4 {
            self.err(
                &tmp.field("perms").key("Perms"),
                format!(
                    "perms must be an octal mode like \"0644\" (got {:?})",
                    tm.perms
                ),
            );
        }
        if let Some(w) = &tm.wait {
            if let (Some(min), Some(max)) = (w.min, w.max) {
                if min > max {
                    self.err(
                        &tmp.field("wait").key("Wait"),
                        format!(
                            "wait min ({}) must not be more than max ({})",
                            format_go(min),
                            format_go(max)
                        ),
                    );
                }
            }
        }
    }

    fn vault(&mut self, t: &Task, tp: &FieldPath) {
        let Some(v) = &t.vault else {
            return;
        };
        let vp = tp.field("vault").key("Vault");
        match v.change_mode.as_str() {
            "noop" | "restart" => {}
            "signal" if v.change_signal.is_empty() => self.err(
                &vp.field("change_signal").key("ChangeSignal"),
                "change_mode \"signal\" needs change_signal",
            ),
            "signal" => {}
            other => self.err(
                &vp.field("change_mode").key("ChangeMode"),
                format!("change_mode must be noop, restart or signal (got {other:?})"),
            ),
        }
    }

    fn volume_mounts(&mut self, g: &TaskGroup, t: &Task, tp: &FieldPath) {
        for (i, vm) in t.volume_mounts.iter().enumerate() {
            let vp = tp
                .field("volume_mount")
                .index(i)
                .key("VolumeMounts")
                .key(&i.to_string());
            if !g.volumes.contains_key(&vm.volume) {
                let known: Vec<&String> = g.volumes.keys().collect();
                self.err(&vp.field("volume").key("Volume"), format!("volume_mount refers to volume {:?}, which the group does not declare (declared: {known:?})", vm.volume));
            }
            if vm.destination.is_empty() {
                self.err(
                    &vp.field("destination").key("Destination"),
                    "a volume_mount needs a destination",
                );
            }
            if !["", "private", "host-to-task", "bidirectional"]
                .contains(&vm.propagation_mode.as_str())
            {
                self.err(&vp.field("propagation_mode").key("PropagationMode"), format!("propagation_mode must be private, host-to-task or bidirectional (got {:?})", vm.propagation_mode));
            }
        }
    }

    fn csi_plugin(&mut self, t: &Task, tp: &FieldPath) {
        let Some(c) = &t.csi_plugin_config else {
            return;
        };
        let cp = tp.field("csi_plugin").key("CSIPluginConfig");
        if c.id.is_empty() {
            self.err(&cp.field("id").key("ID"), "csi_plugin needs an id");
        }
        if !["controller", "node", "monolith"].contains(&c.plugin_type.as_str()) {
            self.err(
                &cp.field("type").key("Type"),
                format!(
                    "csi_plugin type must be controller, node or monolith (got {:?})",
                    c.plugin_type
                ),
            );
        }
    }

    fn task_scaling(&mut self, t: &Task, tp: &FieldPath) {
        for (i, s) in t.scaling_policies.iter().enumerate() {
            let sp = tp
                .field("scaling")
                .index(i)
                .key("ScalingPolicies")
                .key(&i.to_string());
            if let (Some(min), Some(max)) = (s.min, s.max) {
                if min > max {
                    self.err(
                        &sp,
                        format!("scaling min ({min}) must not be more than max ({max})"),
                    );
                }
            }
        }
    }

    fn identities(&mut self, t: &Task, tp: &FieldPath) {
        let mut ids = BTreeSet::new();
        for (i, id) in t.identities.iter().chain(t.identity.iter()).enumerate() {
            let ip = tp.field("identity").index(i).key("Identities");
            let name = if id.name.is_empty() {
                "default"
            } else {
                id.name.as_str()
            };
            if !ids.insert(name.to_string()) {
                self.err(&ip, format!("identity {name:?} is defined twice"));
            }
            if !["", "noop", "restart", "signal"].contains(&id.change_mode.as_str()) {
                self.err(
                    &ip.field("change_mode"),
                    format!(
                        "change_mode must be noop, restart or signal (got {:?})",
                        id.change_mode
                    ),
                );
            }
        }
    }

    fn secrets(&mut self, t: &Task, tp: &FieldPath) {
        let mut secret_names = BTreeSet::new();
        for (i, s) in t.secrets.iter().enumerate() {
            let sp = tp
                .labeled("secret", &s.name)
                .key("Secrets")
                .key(&i.to_string());
            if !secret_names.insert(&s.name) {
                self.err(&sp, format!("secret {:?} is defined twice", s.name));
            }
            if s.provider.is_empty() {
                self.err(
                    &sp.field("provider").key("Provider"),
                    "a secret needs a provider",
                );
            }
        }
    }

    fn env_names(&mut self, t: &Task, tp: &FieldPath) {
        for k in t.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                self.err(
                    &tp.field("env").key("Env"),
                    format!("environment variable name {k:?} is not valid"),
                );
            }
        }
    }

    /// The task's services may name any port label of the group's network or the task's own.
    fn task_services(&mut self, g: &TaskGroup, t: &Task, tp: &FieldPath) {
        let labels: BTreeMap<String, String> = g
            .networks
            .iter()
            .chain(t.resources.iter().flat_map(|r| r.networks.iter()))
            .flat_map(|n| n.reserved_ports.iter().chain(n.dynamic_ports.iter()))
            .map(|p| (p.label.to_lowercase(), p.label.clone()))
            .collect();
        for (si, s) in t.services.iter().enumerate() {
            self.service(
                s,
                &tp.field("service")
                    .index(si)
                    .key("Services")
                    .key(&si.to_string()),
                &labels,
                g,
                Some(t),
            );
        }
    }
}

/// Whether a task-relative path leaves the allocation directory (`../alloc` is fine; `../../x`
/// is not). Interpolations are taken as staying inside.
fn escapes_alloc_dir(p: &str) -> bool {
    if p.starts_with("${") {
        return false;
    }
    let mut depth: i64 = 1; // relative paths start in the task directory, one below the alloc dir
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}
