//! The `config` schemas of the drivers noded ships (`exec`, `raw_exec`), as pure parsing, so a
//! bad task config is refused when the job is submitted — not only when a node tries to run
//! it. What only a node can check (its `allow_caps`, denied uids, rlimit ceilings, whether a
//! seccomp profile file exists) stays with the node's driver.

use std::collections::BTreeMap;

use serde_json::Value;

/// `pid_mode` / `ipc_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceMode {
    Private,
    Host,
}

/// A task's `config` for `exec` and `raw_exec`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecConfig {
    pub command: String,
    pub args: Vec<String>,
    /// Working directory inside the task (absolute).
    pub work_dir: Option<String>,
    pub pid_mode: Option<NamespaceMode>,
    pub ipc_mode: Option<NamespaceMode>,
    /// Lower-case names without `cap_` (as in `capabilities::NAMES`), or `all`.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// Resource name (`nofile`, `nproc`, …) → (soft, hard).
    pub rlimits: BTreeMap<String, (u64, u64)>,
    /// `default`, `unconfined`, or an absolute path to a profile on the node.
    pub seccomp: Option<String>,
    /// Cap CPU at the task's `cpu` MHz with a CFS quota instead of only weighting it
    /// (beyond Nomad's exec driver; the docker driver has the same option).
    pub cpu_hard_limit: bool,
    /// Make the task's own `/local` read-only as well (beyond Nomad's exec driver, whose
    /// chroot is writable; the docker driver has an option of this name). The jail's system
    /// directories are read-only for every task; `/alloc`, `/secrets` and `/tmp` stay
    /// writable. `exec` only: `raw_exec` has no task root.
    pub readonly_rootfs: bool,
    /// Run a small init as PID 1 of the task's pid namespace (`init = true`, the default):
    /// it forwards signals to the task and reaps zombies, so a task without a handler for
    /// its `kill_signal` still stops at once. `init = false` makes the task PID 1 itself.
    /// `exec` with its own pid namespace only (`raw_exec` and `pid_mode = "host"` have no
    /// pid namespace, so no PID 1 to stand in for).
    pub no_init: bool,
}

/// Resource names `rlimits` accepts (setrlimit(2) without the `RLIMIT_` prefix).
pub const RLIMIT_NAMES: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// One problem in a task's `config`: the field (`args[2]`, `rlimits.nofile`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "config.{}: {}", self.field, self.message)
    }
}

/// Whether noded's own drivers take a `config` it can check.
pub fn is_builtin(driver: &str) -> bool {
    matches!(driver, "exec" | "raw_exec")
}

fn string_list(field: &str, value: &Value, errors: &mut Vec<ConfigError>) -> Vec<String> {
    let err = |message: String| ConfigError {
        field: field.to_string(),
        message,
    };
    match value {
        Value::Array(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    Value::Number(n) => out.push(n.to_string()),
                    Value::Bool(b) => out.push(b.to_string()),
                    other => errors.push(ConfigError {
                        field: format!("{field}[{i}]"),
                        message: format!("must be a string, not {other}"),
                    }),
                }
            }
            out
        }
        other => {
            errors.push(err(format!("must be a list of strings, not {other}")));
            Vec::new()
        }
    }
}

fn capability_list(field: &str, value: &Value, errors: &mut Vec<ConfigError>) -> Vec<String> {
    let mut out = Vec::new();
    for (i, name) in string_list(field, value, errors).into_iter().enumerate() {
        // `CAP_NET_RAW`, ` net_raw `, `all`...: stored as `net_raw`, `all`.
        if let Some(bare) = capabilities::normalize(&name) {
            out.push(bare.to_string());
        } else {
            errors.push(ConfigError {
                field: format!("{field}[{i}]"),
                message: format!(
                    "{name:?} is not a Linux capability (e.g. \"net_bind_service\", \"sys_time\")"
                ),
            });
        }
    }
    out
}

fn rlimit_value(field: &str, value: &Value) -> Result<(u64, u64), ConfigError> {
    let err = |message: String| ConfigError {
        field: field.to_string(),
        message,
    };
    let one = |text: &str| -> Result<u64, ConfigError> {
        match text.trim() {
            "unlimited" | "infinity" => Ok(u64::MAX),
            t => t.parse::<u64>().map_err(|_| {
                err(format!(
                    "{t:?} is not a non-negative number or \"unlimited\""
                ))
            }),
        }
    };
    match value {
        Value::Number(n) => n
            .as_u64()
            .map(|v| (v, v))
            .ok_or_else(|| err(format!("{n} must be a non-negative integer"))),
        Value::String(s) => match s.split_once(':') {
            Some((soft, hard)) => {
                let (soft, hard) = (one(soft)?, one(hard)?);
                if soft > hard {
                    return Err(err(format!(
                        "soft limit {soft} is above the hard limit {hard}"
                    )));
                }
                Ok((soft, hard))
            }
            None => one(s).map(|v| (v, v)),
        },
        other => Err(err(format!(
            "must be a number or \"soft:hard\", not {other}"
        ))),
    }
}

/// `rlimits`: an object (API JSON), or the list of objects an HCL block becomes (one per
/// `rlimits { … }` block; a resource may be named once).
fn rlimits(value: &Value, errors: &mut Vec<ConfigError>) -> BTreeMap<String, (u64, u64)> {
    let blocks: Vec<&serde_json::Map<String, Value>> = match value {
        Value::Object(map) => vec![map],
        Value::Array(items) if items.iter().all(Value::is_object) => {
            items.iter().filter_map(Value::as_object).collect()
        }
        other => {
            errors.push(ConfigError {
                field: "rlimits".into(),
                message: format!(
                    "must be a block such as rlimits {{ nofile = 4096 }}, not {other}"
                ),
            });
            return BTreeMap::new();
        }
    };
    let mut out = BTreeMap::new();
    for (name, v) in blocks.into_iter().flatten() {
        let field = format!("rlimits.{name}");
        if !RLIMIT_NAMES.contains(&name.as_str()) {
            errors.push(ConfigError {
                field,
                message: format!("unknown resource (known: {})", RLIMIT_NAMES.join(", ")),
            });
            continue;
        }
        match rlimit_value(&field, v) {
            Ok(limits) => {
                if out.insert(name.clone(), limits).is_some() {
                    errors.push(ConfigError {
                        field,
                        message: "is set twice; name each resource once".into(),
                    });
                }
            }
            Err(e) => errors.push(e),
        }
    }
    out
}

fn boolean(field: &str, value: &Value, errors: &mut Vec<ConfigError>) -> bool {
    match value {
        Value::Bool(b) => *b,
        other => {
            errors.push(ConfigError {
                field: field.to_string(),
                message: format!("must be true or false, not {other}"),
            });
            false
        }
    }
}

fn mode(field: &str, value: &Value, errors: &mut Vec<ConfigError>) -> Option<NamespaceMode> {
    match value.as_str() {
        Some("private") => Some(NamespaceMode::Private),
        Some("host") => Some(NamespaceMode::Host),
        _ => {
            errors.push(ConfigError {
                field: field.to_string(),
                message: format!("must be \"private\" or \"host\", not {value}"),
            });
            None
        }
    }
}

/// Parses the config of a task of `driver` (`exec` or `raw_exec`): [`parse_exec`], plus the
/// options only `exec` has. A `raw_exec` task asking for them is refused, never run with
/// less isolation than it asked for.
pub fn parse_driver_config(
    driver: &str,
    config: &serde_json::Map<String, Value>,
) -> Result<ExecConfig, Vec<ConfigError>> {
    let parsed = parse_exec(config);
    if driver != "raw_exec" {
        return parsed;
    }
    let mut errors = match &parsed {
        Ok(_) => Vec::new(),
        Err(errors) => errors.clone(),
    };
    if config.get("readonly_rootfs") == Some(&Value::Bool(true)) {
        errors.push(ConfigError {
            field: "readonly_rootfs".into(),
            message: "raw_exec runs on the host's filesystem and has no task root to make read-only; use the exec driver".into(),
        });
    }
    if errors.is_empty() {
        parsed
    } else {
        Err(errors)
    }
}

/// Parses an `exec`/`raw_exec` config; every problem is reported, not just the first.
/// [`parse_driver_config`] adds what depends on the driver.
pub fn parse_exec(config: &serde_json::Map<String, Value>) -> Result<ExecConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut c = ExecConfig::default();
    for (key, value) in config {
        match key.as_str() {
            "command" => match value {
                Value::String(s) if !s.trim().is_empty() => c.command = s.clone(),
                Value::String(_) => errors.push(ConfigError { field: "command".into(), message: "must not be empty".into() }),
                other => errors.push(ConfigError { field: "command".into(), message: format!("must be a string, not {other}") }),
            },
            "args" => c.args = string_list("args", value, &mut errors),
            "work_dir" => match value.as_str() {
                Some(s) if s.starts_with('/') => c.work_dir = Some(s.to_string()),
                _ => errors.push(ConfigError {
                    field: "work_dir".into(),
                    message: format!("must be an absolute path inside the task (e.g. \"/local\"), not {value}"),
                }),
            },
            "pid_mode" => c.pid_mode = mode("pid_mode", value, &mut errors),
            "ipc_mode" => c.ipc_mode = mode("ipc_mode", value, &mut errors),
            "cap_add" => c.cap_add = capability_list("cap_add", value, &mut errors),
            "cap_drop" => c.cap_drop = capability_list("cap_drop", value, &mut errors),
            "rlimits" => c.rlimits = rlimits(value, &mut errors),
            "cpu_hard_limit" => c.cpu_hard_limit = boolean("cpu_hard_limit", value, &mut errors),
            "readonly_rootfs" => c.readonly_rootfs = boolean("readonly_rootfs", value, &mut errors),
            "init" => c.no_init = !boolean("init", value, &mut errors),
            "seccomp" => match value.as_str() {
                Some("default") | Some("unconfined") => c.seccomp = value.as_str().map(str::to_string),
                Some(p) if p.starts_with('/') => c.seccomp = Some(p.to_string()),
                _ => errors.push(ConfigError {
                    field: "seccomp".into(),
                    message: format!("must be \"default\", \"unconfined\" or an absolute path to a profile, not {value}"),
                }),
            },
            other => errors.push(ConfigError {
                field: other.to_string(),
                message: "unknown option (the exec driver takes: command, args, work_dir, pid_mode, ipc_mode, cap_add, cap_drop, rlimits, seccomp, cpu_hard_limit, readonly_rootfs, init)".into(),
            }),
        }
    }
    if c.command.is_empty() && !errors.iter().any(|e| e.field == "command") {
        errors.push(ConfigError {
            field: "command".into(),
            message: "is required: the program to run".into(),
        });
    }
    if errors.is_empty() {
        Ok(c)
    } else {
        Err(errors)
    }
}

/// Checks every task of `job` that uses a built-in driver; each error is
/// `group "g" → task "t" → config.field: message`.
pub fn check_job(job: &crate::model::Job) -> Vec<String> {
    let mut out = Vec::new();
    for group in &job.task_groups {
        for task in &group.tasks {
            if !is_builtin(&task.driver) {
                continue;
            }
            if let Err(errors) = parse_driver_config(&task.driver, &task.config) {
                for e in errors {
                    out.push(format!(
                        "group {:?} → task {:?} → {e}",
                        group.name, task.name
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<ExecConfig, Vec<ConfigError>> {
        parse_exec(v.as_object().unwrap())
    }

    #[test]
    fn every_option_parses() {
        let c = parse(json!({
            "command": "/bin/app", "args": ["-v", 3], "work_dir": "/local",
            "pid_mode": "host", "ipc_mode": "private",
            "cap_add": ["CAP_NET_RAW", "sys_time"], "cap_drop": ["all"],
            "rlimits": {"nofile": 4096, "core": "0:unlimited"},
            "seccomp": "unconfined", "readonly_rootfs": true, "init": false
        }))
        .unwrap();
        assert!(c.readonly_rootfs);
        assert!(c.no_init, "init = false opts out of the small init");
        assert!(
            !parse(json!({"command": "/bin/app"})).unwrap().no_init,
            "the init is on by default"
        );
        assert_eq!(c.args, vec!["-v", "3"]);
        assert_eq!(c.pid_mode, Some(NamespaceMode::Host));
        assert_eq!(c.cap_add, vec!["net_raw", "sys_time"]);
        assert_eq!(c.cap_drop, vec!["all"]);
        assert_eq!(c.rlimits["nofile"], (4096, 4096));
        assert_eq!(c.rlimits["core"], (0, u64::MAX));
        assert_eq!(c.seccomp.as_deref(), Some("unconfined"));
    }

    #[test]
    fn all_problems_are_reported_with_their_field() {
        let errors = parse(json!({
            "args": "not-a-list", "work_dir": "relative", "pid_mode": "shared",
            "cap_add": ["net_bind_service", "superpowers"], "rlimits": {"files": 1, "nproc": "9:3"},
            "seccomp": "strict", "image": "redis", "readonly_rootfs": "yes"
        }))
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "args",
            "work_dir",
            "pid_mode",
            "cap_add[1]",
            "rlimits.files",
            "rlimits.nproc",
            "seccomp",
            "image",
            "readonly_rootfs",
            "command",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
        let soft = errors.iter().find(|e| e.field == "rlimits.nproc").unwrap();
        assert!(soft.message.contains("above the hard limit"), "{soft}");
    }

    #[test]
    fn readonly_rootfs_is_for_exec_only() {
        let config = json!({"command": "/bin/app", "readonly_rootfs": true});
        let config = config.as_object().unwrap();
        assert!(parse_driver_config("exec", config).unwrap().readonly_rootfs);
        let errors = parse_driver_config("raw_exec", config).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "readonly_rootfs");
        assert!(
            errors[0].message.contains("use the exec driver"),
            "{}",
            errors[0]
        );
        // Other problems of a raw_exec config are still all reported.
        let bad = json!({"readonly_rootfs": true});
        let fields: Vec<String> = parse_driver_config("raw_exec", bad.as_object().unwrap())
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["command", "readonly_rootfs"]);
        // Off is fine everywhere.
        let off = json!({"command": "/bin/app", "readonly_rootfs": false});
        assert!(
            !parse_driver_config("raw_exec", off.as_object().unwrap())
                .unwrap()
                .readonly_rootfs
        );
    }

    #[test]
    fn rlimits_come_as_an_object_or_as_hcl_blocks() {
        let json_form = parse(json!({"command": "/a", "rlimits": {"nofile": 64}})).unwrap();
        let block_form =
            parse(json!({"command": "/a", "rlimits": [{"nofile": 64}, {"core": 0}]})).unwrap();
        assert_eq!(json_form.rlimits["nofile"], (64, 64));
        assert_eq!(block_form.rlimits["nofile"], (64, 64));
        assert_eq!(block_form.rlimits["core"], (0, 0));
        let twice = parse(json!({"command": "/a", "rlimits": [{"nofile": 64}, {"nofile": 65}]}))
            .unwrap_err();
        assert_eq!(twice[0].field, "rlimits.nofile");
        assert!(twice[0].message.contains("twice"), "{}", twice[0]);
        let bad = parse(json!({"command": "/a", "rlimits": [64]})).unwrap_err();
        assert_eq!(bad[0].field, "rlimits");
    }
}
