//! Golden fixtures for the supervisor protocol, as framed on its unix socket.
//!
//! The supervisor outlives the node daemon: after an upgrade, a new daemon talks to the
//! supervisor an older one started (and its answers come back in the older encoding). Each
//! fixture in `tests/fixtures/supervisor/` holds the exact line [`encode_line`] writes for one
//! value built below; every run decodes it with [`decode_line`], compares with the value, and
//! checks that encoding the value now gives the same bytes. Fields are filled with non-default
//! values, so that a renamed field (read back as its default) is seen.
//!
//! `NODED_BLESS_FIXTURES=1 cargo test -p noded --test supervisor_wire_fixtures` (re)writes them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use noded::supervisor::protocol::{
    decode_line, encode_line, ExitInfo, IsolationMode, LaunchNetwork, LogSettings, Request,
    Response, TaskLaunch, TaskLimits, TaskStats, TaskStatus, PROTOCOL_VERSION,
};

const BLESS_ENV: &str = "NODED_BLESS_FIXTURES";

const UPGRADE_HINT: &str = "if this change is intended and older servers/supervisors can still \
read what this version writes, bless with NODED_BLESS_FIXTURES=1 and say so in the commit; \
otherwise this breaks rolling upgrades";

const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z in nanoseconds
const TASK_ID: &str = "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9.server";

fn launch(isolation: IsolationMode) -> Box<TaskLaunch> {
    Box::new(TaskLaunch {
        task_id: TASK_ID.into(),
        command: "/bin/sleep".into(),
        args: vec!["1000".into()],
        env: BTreeMap::from([("NOMAD_TASK_NAME".to_string(), "server".to_string())]),
        user: "nobody".into(),
        work_dir: "/local".into(),
        alloc_dir: "/var/lib/noded/alloc/a1/alloc".into(),
        task_dir: "/var/lib/noded/alloc/a1/server".into(),
        limits: TaskLimits {
            memory_mb: 256,
            memory_max_mb: 512,
            cpu_mhz: 500,
            pids_max: 128,
            cpuset: vec![2, 3],
            cpu_quota_us: 50_000,
            shared_cpuset: vec![0, 1],
        },
        logs: LogSettings {
            dir: "/var/lib/noded/alloc/a1/alloc/logs".into(),
            prefix: "server".into(),
            max_files: 3,
            max_file_size_bytes: 5 * 1024 * 1024,
        },
        isolation,
        ambient_capabilities: vec!["net_bind_service".into()],
        rlimits: vec![("nofile".into(), 1024, 4096)],
        network: None,
    })
}

/// A task of a bridge-mode allocation: its namespace, hostname and `/etc` files.
fn launch_in_bridge() -> Box<TaskLaunch> {
    let mut launch = launch(jail());
    launch.network = Some(LaunchNetwork {
        namespace: Some("/run/netns/noded-0a1b2c3d-a1".into()),
        hostname: Some("web-0".into()),
        hosts_file: Some("/var/lib/noded/alloc/a1/.etc/hosts".into()),
        resolv_conf_file: Some("/var/lib/noded/alloc/a1/.etc/resolv.conf".into()),
    });
    launch
}

fn jail() -> IsolationMode {
    IsolationMode::Jail {
        chroot_env: vec![
            ("/usr".into(), "/usr".into()),
            ("/etc/ssl".into(), "/etc/ssl".into()),
        ],
        capabilities: vec!["chown".into(), "net_bind_service".into()],
        seccomp: "default".into(),
        host_pid: true,
        host_ipc: true,
        readonly_rootfs: true,
        no_init: false,
    }
}

fn exit_info() -> ExitInfo {
    ExitInfo {
        exit_code: 137,
        signal: 9,
        oom_killed: true,
        finished_at: T0 + 9,
    }
}

fn requests() -> Vec<(&'static str, Request)> {
    vec![
        ("request-hello", Request::Hello),
        (
            "request-start-jail",
            Request::Start {
                launch: launch(jail()),
            },
        ),
        (
            "request-start-host",
            Request::Start {
                launch: launch(IsolationMode::Host),
            },
        ),
        (
            "request-start-bridge",
            Request::Start {
                launch: launch_in_bridge(),
            },
        ),
        (
            "request-wait",
            Request::Wait {
                task_id: TASK_ID.into(),
            },
        ),
        (
            "request-signal",
            Request::Signal {
                task_id: TASK_ID.into(),
                signal: 1,
            },
        ),
        (
            "request-kill",
            Request::Kill {
                task_id: TASK_ID.into(),
                signal: 15,
                grace_ms: 5000,
            },
        ),
        (
            "request-remove",
            Request::Remove {
                task_id: TASK_ID.into(),
            },
        ),
        ("request-list", Request::List),
        (
            "request-stats",
            Request::Stats {
                task_id: TASK_ID.into(),
            },
        ),
        (
            "request-exec",
            Request::Exec {
                task_id: TASK_ID.into(),
                command: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
                tty: true,
            },
        ),
        (
            "request-exec-resize",
            Request::ExecResize {
                exec_id: "exec-7".into(),
                rows: 40,
                cols: 120,
            },
        ),
        (
            "request-exec-wait",
            Request::ExecWait {
                exec_id: "exec-7".into(),
            },
        ),
        (
            "request-set-cpuset",
            Request::SetCpuset {
                task_id: TASK_ID.into(),
                cpus: vec![0, 1, 5],
            },
        ),
    ]
}

/// Names a request's variant, so that adding one without a fixture fails to compile here.
fn request_variant(request: &Request) -> &'static str {
    match request {
        Request::Hello => "Hello",
        Request::Start { .. } => "Start",
        Request::Wait { .. } => "Wait",
        Request::Signal { .. } => "Signal",
        Request::Kill { .. } => "Kill",
        Request::Remove { .. } => "Remove",
        Request::List => "List",
        Request::Stats { .. } => "Stats",
        Request::Exec { .. } => "Exec",
        Request::ExecResize { .. } => "ExecResize",
        Request::ExecWait { .. } => "ExecWait",
        Request::SetCpuset { .. } => "SetCpuset",
    }
}

fn responses() -> Vec<(&'static str, Response)> {
    vec![
        (
            "response-hello",
            Response::Hello {
                version: PROTOCOL_VERSION,
                pid: 4242,
            },
        ),
        (
            "response-started",
            Response::Started {
                pid: 4300,
                started_at: T0 + 1,
            },
        ),
        ("response-exited", Response::Exited { exit: exit_info() }),
        ("response-ok", Response::Ok),
        (
            "response-tasks",
            Response::Tasks {
                tasks: vec![TaskStatus {
                    task_id: TASK_ID.into(),
                    pid: 4300,
                    started_at: T0 + 1,
                    exit: Some(exit_info()),
                }],
            },
        ),
        (
            "response-stats",
            Response::Stats {
                stats: TaskStats {
                    cpu_total_ns: 1_000,
                    cpu_user_ns: 600,
                    cpu_system_ns: 400,
                    throttled_periods: 3,
                    throttled_time_ns: 900,
                    memory_rss_bytes: 4096,
                    memory_cache_bytes: 8192,
                    memory_usage_bytes: 12_288,
                    memory_max_usage_bytes: 16_384,
                    pids: 2,
                    timestamp: T0 + 5,
                },
            },
        ),
        (
            "response-exec-started",
            Response::ExecStarted {
                exec_id: "exec-7".into(),
                pid: 4400,
                fds: 3,
            },
        ),
        (
            "response-error",
            Response::Error {
                step: Some("pivot_root".into()),
                message: "pivot_root failed: EINVAL".into(),
                permanent: false,
            },
        ),
        (
            "response-error-permanent",
            Response::Error {
                step: Some("exec".into()),
                message: "/bin/nope: no such file".into(),
                permanent: true,
            },
        ),
    ]
}

/// Names a response's variant, so that adding one without a fixture fails to compile here.
fn response_variant(response: &Response) -> &'static str {
    match response {
        Response::Hello { .. } => "Hello",
        Response::Started { .. } => "Started",
        Response::Exited { .. } => "Exited",
        Response::Ok => "Ok",
        Response::Tasks { .. } => "Tasks",
        Response::Stats { .. } => "Stats",
        Response::ExecStarted { .. } => "ExecStarted",
        Response::Error { .. } => "Error",
    }
}

/// Checks every fixture and reports all failures at once.
fn check_all<T>(values: &[(&str, T)]) -> Vec<String>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/supervisor");
    let bless = std::env::var_os(BLESS_ENV).is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    for (name, value) in values {
        let name = format!("{name}.jsonl");
        let path = dir.join(&name);
        let encoded =
            encode_line(value).unwrap_or_else(|e| panic!("{name}: cannot encode the value: {e}"));
        assert_eq!(
            encoded.iter().filter(|b| **b == b'\n').count(),
            1,
            "{name}: one line"
        );
        let back: T = decode_line(&encoded)
            .unwrap_or_else(|e| panic!("{name}: cannot decode its own encoding: {e}"));
        assert_eq!(
            &back, value,
            "{name}: the value does not survive its own encoding"
        );
        if bless {
            if std::fs::read(&path).ok().as_deref() != Some(&encoded[..]) {
                std::fs::write(&path, &encoded)
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
                eprintln!("blessed {}", path.display());
            }
            continue;
        }
        let stored = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                failures.push(format!(
                    "{name}: the fixture {} cannot be read ({e}); a new fixture is written by \
                     blessing",
                    path.display()
                ));
                continue;
            }
        };
        match decode_line::<T>(&stored) {
            Ok(decoded) if &decoded == value => {}
            Ok(decoded) => failures.push(format!(
                "{name}: the checked-in line no longer decodes to the value this version \
                 builds\n    decoded:  {decoded:?}\n    expected: {value:?}"
            )),
            Err(e) => failures.push(format!(
                "{name}: the checked-in line ({}) no longer decodes: {e}",
                path.display()
            )),
        }
        if stored != encoded {
            failures.push(format!(
                "{name}: this version frames the value differently\n    fixture: {}\n    now:     {}",
                String::from_utf8_lossy(&stored).trim_end(),
                String::from_utf8_lossy(&encoded).trim_end()
            ));
        }
    }
    failures
}

fn report(failures: Vec<String>) {
    if !failures.is_empty() {
        panic!(
            "{} supervisor wire fixture failure(s):\n- {}\n\n{UPGRADE_HINT}",
            failures.len(),
            failures.join("\n- ")
        );
    }
}

#[test]
fn every_supervisor_request_decodes_from_the_line_this_version_pins() {
    let requests = requests();
    let variants: BTreeSet<&str> = requests.iter().map(|(_, r)| request_variant(r)).collect();
    assert_eq!(variants.len(), 12, "a fixture per Request variant");
    report(check_all(&requests));
}

#[test]
fn every_supervisor_response_decodes_from_the_line_this_version_pins() {
    let responses = responses();
    let variants: BTreeSet<&str> = responses.iter().map(|(_, r)| response_variant(r)).collect();
    assert_eq!(variants.len(), 8, "a fixture per Response variant");
    report(check_all(&responses));
}

#[test]
fn an_answer_from_a_supervisor_that_predates_permanent_errors_still_reads() {
    // Frozen bytes (never blessed): what version 1 supervisors answered before `permanent`.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/supervisor/legacy-response-error-without-permanent.jsonl");
    let stored = std::fs::read(&path).unwrap();
    let decoded: Response = decode_line(&stored).unwrap();
    assert_eq!(
        decoded,
        Response::Error {
            step: Some("exec".into()),
            message: "no such file".into(),
            permanent: false,
        }
    );
}
