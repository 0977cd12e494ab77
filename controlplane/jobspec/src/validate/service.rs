//! Services (group or task level) and their checks: names, providers, modes, and port
//! references that must be labels of the group's network.

use std::collections::BTreeMap;

use model::{Service, ServiceCheck, Task, TaskGroup};

use super::Validator;
use crate::error::FieldPath;

impl Validator<'_> {
    pub(super) fn service(
        &mut self,
        s: &Service,
        sp: &FieldPath,
        labels: &BTreeMap<String, String>,
        g: &TaskGroup,
        task: Option<&Task>,
    ) {
        if !s.name.contains("${") && !valid_service_name(&s.name) {
            self.err(&sp.field("name").key("Name"), format!("service name {:?} is not valid: use letters, digits and dashes, at most 63 characters, not starting or ending with a dash", s.name));
        }
        if !["consul", "nomad"].contains(&s.provider.as_str()) {
            self.err(
                &sp.field("provider").key("Provider"),
                format!(
                    "provider must be \"consul\" or \"nomad\" (got {:?})",
                    s.provider
                ),
            );
        }
        if s.provider == "nomad" && s.connect.is_some() {
            self.err(
                &sp.field("connect").key("Connect"),
                "connect needs provider = \"consul\"",
            );
        }
        if !["auto", "host", "driver", "alloc"].contains(&s.address_mode.as_str()) {
            self.err(
                &sp.field("address_mode").key("AddressMode"),
                format!(
                    "address_mode must be auto, host, driver or alloc (got {:?})",
                    s.address_mode
                ),
            );
        }
        if !["require_healthy", "ignore_warnings", "ignore"].contains(&s.on_update.as_str()) {
            self.err(
                &sp.field("on_update").key("OnUpdate"),
                format!(
                    "on_update must be require_healthy, ignore_warnings or ignore (got {:?})",
                    s.on_update
                ),
            );
        }
        self.port_ref(&s.port_label, &sp.field("port").key("PortLabel"), labels);
        if task.is_none() && !s.task_name.is_empty() && g.task(&s.task_name).is_none() {
            self.err(
                &sp.field("task").key("TaskName"),
                format!(
                    "service refers to task {:?}, which is not in the group",
                    s.task_name
                ),
            );
        }
        for (ci, c) in s.checks.iter().enumerate() {
            let cp = sp
                .field("check")
                .index(ci)
                .key("Checks")
                .key(&ci.to_string());
            self.check(c, &cp, labels, task);
        }
    }

    fn check(
        &mut self,
        c: &ServiceCheck,
        cp: &FieldPath,
        labels: &BTreeMap<String, String>,
        task: Option<&Task>,
    ) {
        match c.check_type.as_str() {
            "http" if c.path.is_empty() => {
                self.err(&cp.field("path").key("Path"), "an http check needs a path")
            }
            "script" if c.command.is_empty() => self.err(
                &cp.field("command").key("Command"),
                "a script check needs a command",
            ),
            "script" if task.is_none() && c.task_name.is_empty() => self.err(
                &cp.field("task").key("TaskName"),
                "a group-level script check needs task = \"<task name>\" to run in",
            ),
            "http" | "tcp" | "script" | "grpc" => {}
            "" => self.err(
                &cp.field("type").key("Type"),
                "a check needs a type: http, tcp, script or grpc",
            ),
            other => self.err(
                &cp.field("type").key("Type"),
                format!("check type must be http, tcp, script or grpc (got {other:?})"),
            ),
        }
        if c.interval.is_zero() {
            self.err(
                &cp.field("interval").key("Interval"),
                "a check needs an interval, like interval = \"10s\"",
            );
        }
        if c.timeout.is_zero() {
            self.err(
                &cp.field("timeout").key("Timeout"),
                "a check needs a timeout, like timeout = \"2s\"",
            );
        }
        if !["", "require_healthy", "ignore_warnings", "ignore"].contains(&c.on_update.as_str()) {
            self.err(
                &cp.field("on_update").key("OnUpdate"),
                format!(
                    "on_update must be require_healthy, ignore_warnings or ignore (got {:?})",
                    c.on_update
                ),
            );
        }
        self.port_ref(&c.port_label, &cp.field("port").key("PortLabel"), labels);
        if let Some(cr) = &c.check_restart {
            if cr.limit < 0 {
                self.err(
                    &cp.field("check_restart")
                        .field("limit")
                        .key("CheckRestart")
                        .key("Limit"),
                    "limit must not be negative",
                );
            }
        }
    }

    /// A service or check port is a port label of the group's network, or a number.
    fn port_ref(&mut self, port: &str, path: &FieldPath, labels: &BTreeMap<String, String>) {
        if port.is_empty() || port.contains("${") || port.parse::<u16>().is_ok() {
            return;
        }
        if !labels.contains_key(&port.to_lowercase()) {
            let known: Vec<&String> = labels.values().collect();
            self.err(path, format!("port {port:?} is not a port label of the group's network (labels: {known:?}); add port \"{port}\" {{}} to the network block"));
        }
    }
}

fn valid_service_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}
