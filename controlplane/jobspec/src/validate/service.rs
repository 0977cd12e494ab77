//! Services (group or task level) and their checks: names, providers, modes, and port
//! references that must be labels of the group's network.

use std::collections::BTreeMap;

use model::{Job, Service, ServiceCheck, Task, TaskGroup};

use super::Validator;
use crate::error::FieldPath;

impl Validator<'_> {
    /// `provider = "consul"` (Nomad's default) is served by noded's native catalog: one
    /// warning per job, naming the services, so a job written for Nomad runs unchanged and
    /// its author knows no Consul is involved.
    pub(super) fn consul_provider(&mut self, job: &Job, jp: &FieldPath) {
        let mut names: Vec<String> = Vec::new();
        let consul = |s: &Service| s.provider.is_empty() || s.provider == "consul";
        for g in &job.task_groups {
            let services = g
                .services
                .iter()
                .chain(g.tasks.iter().flat_map(|t| t.services.iter()));
            for s in services.filter(|s| consul(s)) {
                let name = format!("{:?}", s.name);
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        if names.is_empty() {
            return;
        }
        let (noun, verb, them) = if names.len() == 1 {
            ("service", "uses", "it")
        } else {
            ("services", "use", "them")
        };
        self.warn(
            jp,
            format!(
                "{noun} {} {verb} provider = \"consul\": noded uses no Consul; it registers {them} in its native catalog (/v1/service/<name>, noded's DNS) as it does for provider = \"nomad\"; Consul-only settings (connect, tagged_addresses, Consul namespaces) are not used",
                names.join(", ")
            ),
        );
    }

    pub(super) fn service(
        &mut self,
        s: &Service,
        sp: &FieldPath,
        labels: &BTreeMap<String, String>,
        g: &TaskGroup,
        task: Option<&Task>,
    ) {
        if !valid_service_name(&s.name) {
            let problem = if s.name.is_empty() {
                "a service needs a name".to_string()
            } else if s.name.contains("${") {
                format!(
                    "service name {:?} is not a valid DNS label once interpolated",
                    s.name
                )
            } else {
                format!("service name {:?} is not a valid DNS label", s.name)
            };
            self.err(
                &sp.field("name").key("Name"),
                format!("{problem}: use letters, digits and dashes, at most 63 characters, not starting or ending with a dash, like \"web-api\" or \"${{NOMAD_JOB_NAME}}-web\""),
            );
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
            self.check(c, &cp, labels, g, task);
        }
    }

    fn check(
        &mut self,
        c: &ServiceCheck,
        cp: &FieldPath,
        labels: &BTreeMap<String, String>,
        g: &TaskGroup,
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
        if !c.task_name.is_empty() && !c.task_name.contains("${") && g.task(&c.task_name).is_none()
        {
            let known: Vec<&str> = g.tasks.iter().map(|t| t.name.as_str()).collect();
            self.err(
                &cp.field("task").key("TaskName"),
                format!(
                    "check refers to task {:?}, which is not in the group (tasks: {known:?}); name one of them",
                    c.task_name
                ),
            );
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

/// Whether a service name is a DNS label (RFC 1123: letters, digits and dashes, 1-63, no dash
/// at either end), as Nomad requires and as noded's DNS answers it. An interpolation
/// (`${NOMAD_JOB_NAME}`) is taken as one letter: what is written around it must still fit.
pub(crate) fn valid_service_name(name: &str) -> bool {
    let literal = without_interpolations(name);
    let b = literal.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// `name` with each `${…}` replaced by one letter (an unterminated one is left as written,
/// so it is refused).
fn without_interpolations(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push('x');
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{check_hcl, ParseOptions};

    /// A job with one group `g` (port "http", task "app") whose group-level service block is
    /// `service`.
    fn job(service: &str) -> String {
        format!(
            r#"job "shop" {{
  group "g" {{
    network {{
      port "http" {{}}
    }}
    {service}
    task "app" {{
      driver = "exec"
      config {{
        command = "/bin/sleep"
      }}
    }}
  }}
}}
"#
        )
    }

    /// The errors of a job, each as "path: message".
    fn errors(src: &str) -> Vec<String> {
        match check_hcl(src, &ParseOptions::for_file("t.hcl")) {
            Ok(_) => Vec::new(),
            Err(e) => {
                e.0.iter()
                    .map(|e| format!("{}: {}", e.path, e.message))
                    .collect()
            }
        }
    }

    fn warnings(src: &str) -> Vec<String> {
        check_hcl(src, &ParseOptions::for_file("t.hcl"))
            .unwrap_or_else(|e| panic!("{e}"))
            .warnings
            .iter()
            .map(|w| w.message.clone())
            .collect()
    }

    fn check(body: &str) -> String {
        job(&format!(
            "service {{\n name = \"web\"\n port = \"http\"\n check {{\n{body}\n interval = \"10s\"\n timeout = \"2s\"\n }}\n }}"
        ))
    }

    #[test]
    fn a_check_on_a_port_label_the_group_lacks_names_the_field() {
        let e = errors(&check("type = \"tcp\"\n port = \"admin\""));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("service[0].check[0].port"), "{e:?}");
        assert!(e[0].contains("\"admin\" is not a port label"), "{e:?}");
        assert!(errors(&check("type = \"tcp\"\n port = \"http\"")).is_empty());
        assert!(errors(&check("type = \"tcp\"\n port = \"HTTP\"")).is_empty());
    }

    #[test]
    fn an_http_check_without_a_path_names_the_field() {
        let e = errors(&check("type = \"http\""));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("check[0].path"), "{e:?}");
        assert!(e[0].contains("needs a path"), "{e:?}");
        assert!(errors(&check("type = \"http\"\n path = \"/health\"")).is_empty());
    }

    #[test]
    fn a_script_check_naming_a_missing_task_names_the_field() {
        let e = errors(&check(
            "type = \"script\"\n task = \"nope\"\n command = \"/bin/true\"",
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("check[0].task"), "{e:?}");
        assert!(
            e[0].contains("task \"nope\", which is not in the group"),
            "{e:?}"
        );
        assert!(e[0].contains("[\"app\"]"), "{e:?}");
        assert!(errors(&check(
            "type = \"script\"\n task = \"app\"\n command = \"/bin/true\""
        ))
        .is_empty());
        // At group level a script check must say which task it runs in.
        let e = errors(&check("type = \"script\"\n command = \"/bin/true\""));
        assert!(e.iter().any(|e| e.contains("check[0].task")), "{e:?}");
    }

    #[test]
    fn a_service_name_must_be_a_dns_label_also_around_interpolations() {
        for bad in [
            "web_app",
            "-web",
            "web-",
            "a.b",
            &"a".repeat(64),
            "${NOMAD_JOB_NAME}_x",
        ] {
            let e = errors(&job(&format!(
                "service {{\n name = \"{bad}\"\n port = \"http\"\n }}"
            )));
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert!(e[0].contains("service[0].name"), "{bad}: {e:?}");
            assert!(e[0].contains("DNS label"), "{bad}: {e:?}");
            assert!(e[0].contains("like \"web-api\""), "{bad}: {e:?}");
        }
        for good in [
            "web",
            "web-api",
            "a",
            "${NOMAD_JOB_NAME}-web",
            "${NOMAD_GROUP_NAME}",
            "w3b",
        ] {
            let e = errors(&job(&format!(
                "service {{\n name = \"{good}\"\n port = \"http\"\n }}"
            )));
            assert!(e.is_empty(), "{good}: {e:?}");
        }
        assert_eq!(without_interpolations("${a}-${b}x"), "x-xx");
        assert_eq!(without_interpolations("${a"), "${a");
    }

    #[test]
    fn the_consul_provider_is_served_natively_with_one_warning_naming_the_services() {
        let src = r#"job "shop" {
  group "g" {
    network {
      port "http" {}
    }
    service {
      name = "web"
      port = "http"
    }
    service {
      name     = "admin"
      port     = "http"
      provider = "consul"
    }
    service {
      name     = "native"
      port     = "http"
      provider = "nomad"
    }
    task "app" {
      driver = "exec"
      config {
        command = "/bin/sleep"
      }
      service {
        name = "api"
        port = "http"
      }
    }
  }
}
"#;
        let consul: Vec<String> = warnings(src)
            .into_iter()
            .filter(|w| w.contains("provider = \"consul\""))
            .collect();
        assert_eq!(consul.len(), 1, "{consul:?}");
        let w = &consul[0];
        for name in ["\"web\"", "\"admin\"", "\"api\""] {
            assert!(w.contains(name), "{name} in {w}");
        }
        assert!(!w.contains("\"native\""), "{w}");
        assert!(w.contains("no Consul"), "{w}");
        assert!(w.starts_with("services "), "{w}");
        assert!(w.contains("registers them"), "{w}");
        let one = job("service {\n name = \"web\"\n port = \"http\"\n }");
        let w = warnings(&one);
        assert!(
            w.iter().any(
                |w| w.starts_with("service \"web\" uses provider = \"consul\"")
                    && w.contains("registers it ")
            ),
            "{w:?}"
        );
        // Only native services: no such warning.
        let native = job("service {\n name = \"web\"\n port = \"http\"\n provider = \"nomad\"\n }");
        assert!(
            !warnings(&native).iter().any(|w| w.contains("consul")),
            "{:?}",
            warnings(&native)
        );
    }
}
