use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn host() -> Result<Vec<Ipv4Addr>, String> {
    Ok(vec![Ipv4Addr::LOCALHOST, Ipv4Addr::new(10, 0, 0, 7)])
}

fn build(files: &[FileConfig], flags: &Overrides) -> Result<AgentConfig, ConfigErrors> {
    AgentConfig::build_on_host(
        files,
        flags,
        || Ok(PathBuf::from("/tmp/dev-data")),
        &mut host,
    )
}

fn dev() -> Overrides {
    Overrides {
        dev: true,
        ..Default::default()
    }
}

/// Three files standing in for a CA and a server certificate and key.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn new() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(dir.path().join(f), "-----BEGIN-----\n").unwrap();
        }
        Certs { dir }
    }

    fn block(&self) -> String {
        let p = |f: &str| self.dir.path().join(f).display().to_string();
        format!(
            "tls {{\n  rpc       = true\n  ca_file   = \"{}\"\n  cert_file = \"{}\"\n  key_file  = \"{}\"\n}}\n",
            p("ca.pem"),
            p("cert.pem"),
            p("key.pem")
        )
    }
}

/// A valid non-dev server: data dir, bootstrap, TLS.
fn server_hcl(certs: &Certs) -> String {
    format!(
        "data_dir = \"/var/lib/noded\"\nserver {{\n  enabled          = true\n  bootstrap_expect = 3\n}}\n{}",
        certs.block()
    )
}

fn errors_of(text: &str, name: &str, flags: &Overrides) -> Vec<String> {
    let f = match parse(text, name) {
        Ok(f) => f,
        Err(e) => return e.0.iter().map(ToString::to_string).collect(),
    };
    match build(&[f], flags) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn dev_defaults_use_a_temp_dir_and_loopback() {
    let c = build(&[], &dev()).unwrap();
    assert!(c.ephemeral && c.server_enabled && c.client_enabled && c.raw_exec_enabled);
    assert_eq!(c.bind_addr, "127.0.0.1");
    assert_eq!((c.http_port, c.rpc_port, c.serf_port), (4646, 4647, 4648));
    assert_eq!(c.data_dir, PathBuf::from("/tmp/dev-data"));
    assert_eq!(c.region, "global");
    assert_eq!(c.log_level, "info");
    assert!(!c.log_json);
    assert_eq!(c.server, ServerSettings::defaults(true));
    assert_eq!(c.server.bootstrap_expect, 1);
    assert_eq!(c.server.retry_interval, Duration::from_secs(30));
    assert_eq!(c.server.retry_max, 0);
    assert_eq!(c.server.raft_snapshot_threshold, 8192);
    assert_eq!(c.server.raft_trailing_logs, 10240);
    assert_eq!(c.server.raft_multiplier, 1);
    assert_eq!(c.server.num_schedulers, None);
    assert_eq!(c.tls, TlsSettings::default());
    assert!(!c.tls.rpc && !c.tls.verify_server_hostname);
    let a = &c.autopilot;
    assert!(a.cleanup_dead_servers);
    assert_eq!(a.last_contact_threshold, Duration::from_millis(200));
    assert_eq!(a.max_trailing_logs, 250);
    assert_eq!(a.server_stabilization_time, Duration::from_secs(10));
    assert_eq!(c.advertise_rpc_addr(), "127.0.0.1:4647".parse().unwrap());
    assert_eq!(c.advertise_http_addr(), "127.0.0.1:4646".parse().unwrap());
    assert_eq!(c.advertise_serf_addr(), "127.0.0.1:4648".parse().unwrap());
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn a_non_dev_server_reads_every_key() {
    let certs = Certs::new();
    let text = format!(
        r#"
name       = "s1"
region     = "eu"
datacenter = "eu-west"
data_dir   = "/var/lib/noded"
bind_addr  = "0.0.0.0"
log_level  = "DEBUG"
log_json   = true
ports {{
  http = 5646
  rpc  = 5647
  serf = 5648
}}
advertise {{
  http = "10.1.0.1"
  rpc  = "10.1.0.1:6000"
}}
server {{
  enabled                 = true
  bootstrap_expect        = 5
  num_schedulers          = 2
  raft_protocol           = 3
  raft_multiplier         = 4
  raft_snapshot_threshold = 100
  raft_trailing_logs      = 200
  min_heartbeat_ttl       = "20s"
  max_heartbeats_per_second = 100.0
  heartbeat_grace         = "15s"
  failover_heartbeat_ttl  = "10m"
  job_gc_interval         = "1m"
  job_gc_threshold        = "2h"
  node_gc_threshold       = "48h"
  job_tracked_versions    = 12
  server_join {{
    retry_join     = ["10.1.0.2", "10.1.0.3:5647"]
    retry_interval = "15s"
    retry_max      = 3
  }}
}}
autopilot {{
  cleanup_dead_servers      = false
  last_contact_threshold    = "500ms"
  max_trailing_logs         = 99
  server_stabilization_time = "1m"
}}
{}"#,
        certs.block().replace(
            "  rpc       = true\n",
            "  rpc       = true\n  http = true\n  verify_server_hostname = true\n  verify_https_client = true\n"
        )
    );
    let f = parse(&text, "agent.hcl").unwrap();
    let c = build(&[f], &Overrides::default()).unwrap();
    assert_eq!(
        (c.name.as_str(), c.region.as_str(), c.datacenter.as_str()),
        ("s1", "eu", "eu-west")
    );
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/noded"));
    assert_eq!((c.log_level.as_str(), c.log_json), ("debug", true));
    assert_eq!((c.http_port, c.rpc_port, c.serf_port), (5646, 5647, 5648));
    assert_eq!(c.advertise_http.as_deref(), Some("10.1.0.1"));
    assert_eq!(c.advertise_rpc.as_deref(), Some("10.1.0.1:6000"));
    assert_eq!(c.advertise_serf, None);
    assert_eq!(c.advertise_http_addr(), "10.1.0.1:5646".parse().unwrap());
    assert_eq!(c.advertise_rpc_addr(), "10.1.0.1:6000".parse().unwrap());
    // Not written, bind is 0.0.0.0: the host's private address.
    assert_eq!(c.advertise_serf_addr(), "10.0.0.7:5648".parse().unwrap());
    assert_eq!(
        c.server,
        ServerSettings {
            bootstrap_expect: 5,
            retry_join: vec!["10.1.0.2".into(), "10.1.0.3:5647".into()],
            retry_interval: Duration::from_secs(15),
            retry_max: 3,
            raft_snapshot_threshold: 100,
            raft_trailing_logs: 200,
            raft_multiplier: 4,
            num_schedulers: Some(2),
            heartbeat: controlplane::server::heartbeat::HeartbeatConfig {
                min_ttl: Duration::from_secs(20),
                max_per_second: 100,
                grace: Duration::from_secs(15),
                failover_ttl: Duration::from_secs(600),
            },
            gc_interval: Duration::from_secs(60),
            gc_thresholds: controlplane::state::GcThresholds {
                job: Duration::from_secs(2 * 3600),
                node: Duration::from_secs(48 * 3600),
                ..Default::default()
            },
            job_tracked_versions: 12,
        }
    );
    assert!(c.tls.rpc && c.tls.http && c.tls.verify_server_hostname && c.tls.verify_https_client);
    assert_eq!(c.tls.cert_file, Some(certs.dir.path().join("cert.pem")));
    assert_eq!(
        c.autopilot,
        AutopilotSettings {
            cleanup_dead_servers: false,
            last_contact_threshold: Duration::from_millis(500),
            max_trailing_logs: 99,
            server_stabilization_time: Duration::from_secs(60),
        }
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn json_files_read_the_same_keys() {
    let text = r#"{
  "data_dir": "/d",
  "log_json": true,
  "ports": {"serf": 7000},
  "advertise": {"rpc": "192.168.0.4"},
  "server": {"enabled": true, "server_join": {"retry_join": ["a:1"], "retry_interval": "5s"}},
  "autopilot": {"max_trailing_logs": 7}
}"#;
    let f = parse(text, "agent.json").unwrap();
    let c = build(&[f], &dev()).unwrap();
    assert!(c.log_json);
    assert_eq!(c.serf_port, 7000);
    assert_eq!(c.advertise_rpc_addr(), "192.168.0.4:4647".parse().unwrap());
    assert_eq!(c.server.retry_join, vec!["a:1".to_string()]);
    assert_eq!(c.server.retry_interval, Duration::from_secs(5));
    assert_eq!(c.autopilot.max_trailing_logs, 7);
}

#[test]
fn the_older_server_join_keys_are_read_too() {
    let f = parse(
        "server {\n  retry_join = [\"x\"]\n  retry_interval = \"2s\"\n  retry_max = 9\n}\n",
        "a.hcl",
    )
    .unwrap();
    let c = build(&[f], &dev()).unwrap();
    assert_eq!(c.server.retry_join, vec!["x".to_string()]);
    assert_eq!(c.server.retry_interval, Duration::from_secs(2));
    assert_eq!(c.server.retry_max, 9);
}

#[test]
fn a_file_and_flags_override_in_order() {
    let f = parse(
        r#"
data_dir = "/var/lib/noded"
datacenter = "eu1"
ports { http = 5000 }
server { enabled = true }
client {
  enabled = true
  chroot_env = { "/bin" = "/bin" }
}
plugin "raw_exec" {
  config {
    enabled = true
  }
}
"#,
        "agent.hcl",
    )
    .unwrap();
    let c = build(
        &[f],
        &Overrides {
            dev: true,
            http_port: Some(6000),
            log_level: Some("WARN".into()),
            log_json: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(c.datacenter, "eu1");
    assert_eq!(c.http_port, 6000);
    assert_eq!(c.log_level, "warn");
    assert!(c.log_json);
    assert!(c.raw_exec_enabled);
    assert!(!c.ephemeral);
    assert_eq!(
        c.chroot_env.unwrap(),
        vec![(PathBuf::from("/bin"), PathBuf::from("/bin"))]
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn directories_are_read_in_lexical_order_and_files_merge_in_order() {
    let d = tempfile::tempdir().unwrap();
    let conf = d.path().join("conf.d");
    std::fs::create_dir(&conf).unwrap();
    write(
        &conf,
        "20-b.json",
        r#"{"datacenter": "b", "client": {"meta": {"k2": "2"}}}"#,
    );
    write(
        &conf,
        "10-a.hcl",
        "datacenter = \"a\"\nname = \"n\"\nclient {\n  meta = { k1 = \"1\" }\n}\n",
    );
    // Not config: other extensions, editor leftovers, directories.
    write(&conf, "30-c.txt", "not hcl at all {");
    write(&conf, "40-d.hcl~", "not hcl at all {");
    write(&conf, ".#50-e.hcl", "not hcl at all {");
    std::fs::create_dir(conf.join("60-f.hcl")).unwrap();
    let last = write(d.path(), "last.hcl", "name = \"last\"\n");
    let files = load_paths(&[conf.clone(), last]).unwrap();
    let sources: Vec<_> = files.iter().map(|f| f.source.clone()).collect();
    assert_eq!(
        sources,
        vec![
            conf.join("10-a.hcl").display().to_string(),
            conf.join("20-b.json").display().to_string(),
            d.path().join("last.hcl").display().to_string(),
        ]
    );
    let c = build(&files, &dev()).unwrap();
    assert_eq!(c.datacenter, "b");
    assert_eq!(c.name, "last");
    assert_eq!(
        c.meta,
        BTreeMap::from([("k1".into(), "1".into()), ("k2".into(), "2".into())])
    );
    // An empty directory is no error (Nomad's `config validate` warns).
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(load_paths(&[empty]).unwrap().is_empty());
    let e = load_paths(&[d.path().join("missing.hcl")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.hcl: cannot read agent config"), "{e}");
}

#[test]
fn a_valid_non_dev_server_passes() {
    let certs = Certs::new();
    let errors = errors_of(&server_hcl(&certs), "agent.hcl", &Overrides::default());
    assert!(errors.is_empty(), "{errors:?}");
}

/// (text after a valid server config, the error expected), the error naming file:line.
#[test]
fn each_bad_key_or_value_names_its_file_and_line() {
    let certs = Certs::new();
    let base = server_hcl(&certs);
    let base_lines = base.lines().count();
    let cases: &[(&str, &str)] = &[
        (
            "data_dirr = \"/x\"",
            "1: data_dirr: unknown field `data_dirr`",
        ),
        (
            "server {\n  raft_multiplier = 11\n}",
            "2: server.raft_multiplier = 11: must be between 1 and 10",
        ),
        (
            "server {\n  raft_protocol = 2\n}",
            "2: server.raft_protocol = 2: must be 3",
        ),
        (
            "server {\n  job_tracked_versions = 0\n}",
            "2: server.job_tracked_versions = 0: must be between 1 and 1000",
        ),
        (
            "server {\n  job_tracked_versions = -3\n}",
            "2: server.job_tracked_versions = -3: must be between 1 and 1000",
        ),
        (
            "server {\n  bootstrap_expectt = 3\n}",
            "2: server.bootstrap_expectt: unknown field",
        ),
        (
            "server {\n  bootstrap_expect = \"three\"\n}",
            "2: server.bootstrap_expect: invalid type",
        ),
        (
            "server {\n  raft_snapshot_threshold = 0\n}",
            "2: server.raft_snapshot_threshold = 0: must be at least 1",
        ),
        (
            "server {\n  raft_trailing_logs = 0\n}",
            "2: server.raft_trailing_logs = 0: must be at least 1",
        ),
        (
            "server {\n  server_join {\n    retry_interval = \"30\"\n  }\n}",
            "3: server.server_join.retry_interval = \"30\": duration",
        ),
        (
            "server {\n  server_join {\n    retry_interval = \"0s\"\n  }\n}",
            "3: server.server_join.retry_interval = \"0s\": must be more than zero",
        ),
        (
            "server {\n  server_join {\n    start_join = [\"a\"]\n  }\n}",
            "3: server.server_join.start_join: noded does not support start_join",
        ),
        (
            "server {\n  server_join {\n    retry_join = [\"provider=aws tag_key=x\"]\n  }\n}",
            "3: server.server_join.retry_join: \"provider=aws tag_key=x\": cloud auto-join",
        ),
        (
            "server {\n  retry_join = [\"a\"]\n  server_join {\n    retry_join = [\"b\"]\n  }\n}",
            "2: server_join and server.retry_join cannot both be defined",
        ),
        (
            "server {\n  heartbeat_grace = \"0s\"\n}",
            "2: server.heartbeat_grace = \"0s\": must be more than zero",
        ),
        (
            "autopilot {\n  last_contact_threshold = \"fast\"\n}",
            "2: autopilot.last_contact_threshold = \"fast\"",
        ),
        (
            "autopilot {\n  min_quorum = 3\n}",
            "2: autopilot.min_quorum: unknown field",
        ),
        (
            "tls {\n  rpc_upgrade_mode = true\n}",
            "2: tls.rpc_upgrade_mode: unknown field",
        ),
        (
            "log_level = \"loud\"",
            "1: log_level = \"loud\": must be one of TRACE, DEBUG, INFO, WARN, ERROR, OFF",
        ),
        ("log_json = \"yes\"", "1: log_json: invalid type"),
        ("ports {\n  serf = 70000\n}", "2: ports.serf: invalid value"),
        (
            "advertise {\n  rpc = \"0.0.0.0\"\n}",
            "2: advertise.rpc = \"0.0.0.0\": other agents cannot dial 0.0.0.0",
        ),
        (
            "advertise {\n  http = \"my-host\"\n}",
            "2: advertise.http = \"my-host\": give an IP address",
        ),
        (
            "advertise {\n  gossip = \"1.2.3.4\"\n}",
            "2: advertise.gossip: unknown field",
        ),
        (
            "bind_addr = \"{{ GetPrivateIP }}\"",
            "1: bind_addr = \"{{ GetPrivateIP }}\": give an IP address",
        ),
        (
            "datacenter = \"dc*\"",
            "1: datacenter = \"dc*\": give a datacenter name without NUL or '*'",
        ),
        (
            "client {\n  cgroup_parent = \"a/b\"\n}",
            "2: client.cgroup_parent = \"a/b\"",
        ),
        (
            "client {\n  chroot_env = {\n    \"bin\" = \"/bin\"\n  }\n}",
            "3: client.chroot_env: \"bin\" = \"/bin\": both paths must be absolute",
        ),
        (
            "plugin \"docker\" {\n  config {}\n}",
            "1: plugin \"docker\" is unknown",
        ),
        (
            "plugin \"raw_exec\" {\n  config {\n    enable = true\n  }\n}",
            "3: plugin \"raw_exec\" config: unknown option \"enable\"",
        ),
        (
            "plugin \"exec\" {\n  config {\n    allow_caps = [\"bogus\"]\n  }\n}",
            "3: plugin \"exec\" config.allow_caps: \"bogus\" is not a Linux capability",
        ),
        (
            "plugin \"exec\" {\n  config {\n    default_pid_mode = \"shared\"\n  }\n}",
            "3: plugin \"exec\" config.default_pid_mode = \"shared\"",
        ),
        ("server {\n  enabled = true\n", "3: syntax error"),
    ];
    for (extra, want) in cases {
        let text = format!("{base}{extra}\n");
        let errors = errors_of(&text, "agent.hcl", &Overrides::default());
        let (line, rest) = want.split_once(": ").unwrap();
        let line: usize = line.parse().unwrap();
        let expected = format!("agent.hcl:{}: {rest}", base_lines + line);
        assert!(
            errors.iter().any(|e| e.starts_with(&expected)),
            "{extra:?}: want {expected:?} in {errors:#?}"
        );
    }
}

#[test]
fn json_errors_name_the_line_too() {
    let text = "{\n  \"data_dir\": \"/d\",\n  \"server\": {\n    \"enabled\": true,\n    \"raft_multiplier\": 11\n  },\n  \"serverr\": {}\n}\n";
    let errors = errors_of(text, "agent.json", &dev());
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("agent.json:7: serverr: unknown field")),
        "{errors:?}"
    );
    let text = "{\n  \"server\": {\n    \"raft_multiplier\": 11\n  }\n}\n";
    let errors = errors_of(text, "agent.json", &dev());
    assert_eq!(
        errors,
        vec!["agent.json:3: server.raft_multiplier = 11: must be between 1 and 10".to_string()]
    );
    let errors = errors_of("{\n  \"name\": \"x\",,\n}", "agent.json", &dev());
    assert!(errors[0].starts_with("agent.json:2: "), "{errors:?}");
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let text = "data_dir = \"/d\"\nlog_level = \"loud\"\nserver {\n  enabled = true\n  raft_multiplier = 0\n  raft_trailing_logs = 0\n  raft_protocol = 1\n}\n";
    let errors = errors_of(text, "a.hcl", &dev());
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].starts_with("a.hcl:2: log_level"), "{errors:#?}");
    assert!(
        errors[1].starts_with("a.hcl:6: server.raft_trailing_logs"),
        "{errors:#?}"
    );
    assert!(
        errors[2].starts_with("a.hcl:7: server.raft_protocol"),
        "{errors:#?}"
    );
}

#[test]
fn an_invalid_value_names_the_file_it_came_from() {
    let good = parse(
        "data_dir = \"/tmp/x\"\nserver { enabled = true }\n",
        "base.hcl",
    )
    .unwrap();
    let bad = parse(
        "plugin \"exec\" {\n  config {\n    allow_caps = [\"bogus\"]\n  }\n}\n",
        "exec.hcl",
    )
    .unwrap();
    let err = build(&[good, bad], &dev()).unwrap_err().to_string();
    assert!(
        err.starts_with("exec.hcl:3: plugin \"exec\" config.allow_caps: \"bogus\""),
        "{err}"
    );
}

#[test]
fn a_server_outside_dev_without_certificates_is_told_how_to_make_them() {
    let text = "region = \"eu\"\ndata_dir = \"/d\"\nserver {\n  enabled = true\n  bootstrap_expect = 1\n}\n";
    let errors = errors_of(text, "a.hcl", &Overrides::default());
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = &errors[0];
    for want in [
        "tls.rpc is not enabled",
        "noded tls ca create",
        "noded tls cert create -server -region eu",
        "tls {",
        "rpc       = true",
        "cert_file = \"eu-server-noded.pem\"",
    ] {
        assert!(e.contains(want), "{want:?} in {e}");
    }
    // rpc on, files not named.
    let errors = errors_of(
        &format!("{text}tls {{\n  rpc = true\n}}\n"),
        "a.hcl",
        &Overrides::default(),
    );
    assert!(
        errors[0].contains("tls.ca_file, tls.cert_file, tls.key_file not set"),
        "{errors:?}"
    );
    // Named files that do not exist: the line that names them.
    let errors = errors_of(
        &format!("{text}tls {{\n  rpc = true\n  ca_file = \"/nonexistent/ca.pem\"\n  cert_file = \"/nonexistent/c.pem\"\n  key_file = \"/nonexistent/k.pem\"\n}}\n"),
        "a.hcl",
        &Overrides::default(),
    );
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(
        errors[0].starts_with("a.hcl:9: tls.ca_file = \"/nonexistent/ca.pem\": No such file")
            && errors[0].contains("noded tls ca create"),
        "{errors:#?}"
    );
    // -dev makes its own: no certificates needed.
    assert!(errors_of(text, "a.hcl", &dev()).is_empty());
}

#[test]
fn bootstrap_expect_follows_nomad() {
    let certs = Certs::new();
    let head = format!("data_dir = \"/d\"\n{}", certs.block());
    let server = |body: &str| format!("{head}server {{\n  enabled = true\n{body}}}\n");
    // Unset and nothing to join: neither starts a region nor joins one.
    let errors = errors_of(&server(""), "a.hcl", &Overrides::default());
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains("bootstrap_expect is not set"),
        "{errors:?}"
    );
    // Unset with servers to join: joins an existing region (Nomad's behaviour).
    let text = server("  server_join {\n    retry_join = [\"10.0.0.1\"]\n  }\n");
    let c = build(&[parse(&text, "a.hcl").unwrap()], &Overrides::default()).unwrap();
    assert_eq!(c.server.bootstrap_expect, 0);
    // Even: allowed, with a warning at its line.
    let text = server("  bootstrap_expect = 4\n");
    let c = build(&[parse(&text, "a.hcl").unwrap()], &Overrides::default()).unwrap();
    let line = head.lines().count() + 3;
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].starts_with(&format!(
            "a.hcl:{line}: server.bootstrap_expect = 4: an even number"
        )),
        "{:?}",
        c.warnings
    );
    // 3 is quiet; 1 outside dev warns that it elects itself.
    let c = build(
        &[parse(&server("  bootstrap_expect = 3\n"), "a.hcl").unwrap()],
        &Overrides::default(),
    )
    .unwrap();
    assert!(c.warnings.is_empty());
    let c = build(
        &[parse(&server("  bootstrap_expect = 1\n"), "a.hcl").unwrap()],
        &Overrides::default(),
    )
    .unwrap();
    assert!(c.warnings[0].contains("region of one"), "{:?}", c.warnings);
    // A dev agent is one server.
    let errors = errors_of("server {\n  bootstrap_expect = 3\n}\n", "d.hcl", &dev());
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("d.hcl:2: server.bootstrap_expect = 3: a -dev agent"),
        "{errors:?}"
    );
}

#[test]
fn an_advertise_address_is_derived_never_zero() {
    let certs = Certs::new();
    let f = parse(&server_hcl(&certs), "a.hcl").unwrap();
    // bind 0.0.0.0 on a host with only loopback: no address to advertise.
    let e = AgentConfig::build_on_host(
        std::slice::from_ref(&f),
        &Overrides::default(),
        || unreachable!(),
        &mut || Ok(vec![Ipv4Addr::LOCALHOST]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("advertise.rpc is not set, bind_addr is 0.0.0.0"),
        "{e}"
    );
    // A bind address of the host is advertised as is.
    let c = build(
        std::slice::from_ref(&f),
        &Overrides {
            bind: Some("192.168.7.7".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(c.advertise_rpc_addr(), "192.168.7.7:4647".parse().unwrap());
    // Loopback outside dev is refused unless advertised by hand, as Nomad does.
    let e = build(
        &[f],
        &Overrides {
            bind: Some("127.0.0.1".into()),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("loopback"), "{e}");
}

#[test]
fn a_missing_data_dir_and_no_role_are_refused() {
    let e = build(&[], &Overrides::default()).unwrap_err().to_string();
    assert!(
        e.contains("no data_dir") && e.contains("neither server nor client"),
        "{e}"
    );
}

/// A machine of 2 cores × 2000 MHz, 8 GiB and a 100 GB disk.
fn small_machine(_: &Path) -> Result<crate::client::fingerprint::MachineTotals, String> {
    Ok(crate::client::fingerprint::MachineTotals {
        cpu_mhz: 4000,
        core_mhz: 2000,
        memory_mb: 8192,
        disk_mb: 100_000,
        cores: vec![0, 1],
    })
}

fn build_small(files: &[FileConfig], flags: &Overrides) -> Result<AgentConfig, ConfigErrors> {
    AgentConfig::build_for_machine(
        files,
        flags,
        || Ok(PathBuf::from("/tmp/dev-data")),
        &mut host,
        &mut small_machine,
    )
}

fn client_errors(text: &str, flags: &Overrides) -> Vec<String> {
    let f = match parse(text, "c.hcl") {
        Ok(f) => f,
        Err(e) => return e.0.iter().map(ToString::to_string).collect(),
    };
    match build_small(&[f], flags) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_client_block_has_nomads_defaults() {
    let c = build(&[], &dev()).unwrap();
    assert!(c.client_servers.is_empty() && c.client_join.retry_join.is_empty());
    assert_eq!(c.client_join.retry_interval, Duration::from_secs(30));
    assert_eq!(c.client_join.retry_max, 0);
    assert_eq!(c.reserved, ReservedConfig::default());
    assert!(c.host_volumes.is_empty());
    assert_eq!(c.network_interface, None);
    assert_eq!(c.client_alloc_dir(), PathBuf::from("/tmp/dev-data/alloc"));
    assert_eq!(c.client_state_dir(), PathBuf::from("/tmp/dev-data/client"));
    assert_eq!(c.max_kill_timeout, Duration::from_secs(30));
    assert_eq!((c.min_dynamic_port, c.max_dynamic_port), (20000, 32000));
    assert_eq!(
        c.network,
        crate::client::settings::NetworkSettings::default(),
        "noded0, 172.26.64.0/20, auto"
    );
    assert_eq!(c.gc, GcSettings::default());
    assert_eq!(c.gc.interval, Duration::from_secs(60));
    assert_eq!(
        (
            c.gc.disk_usage_threshold,
            c.gc.inode_usage_threshold,
            c.gc.max_allocs,
            c.gc.parallel_destroys
        ),
        (80.0, 70.0, 50, 2)
    );
    assert_eq!(c.drain_on_shutdown, None);
}

#[test]
fn a_client_reads_every_key() {
    let certs = Certs::new();
    let vol = tempfile::tempdir().unwrap();
    let text = format!(
        r#"data_dir = "/var/lib/noded"
server {{
  enabled = false
}}
client {{
  enabled           = true
  servers           = ["10.0.0.10", "10.0.0.11:4700", "[fd00::1]"]
  server_join {{
    retry_join     = ["10.0.0.12"]
    retry_interval = "15s"
    retry_max      = 3
  }}
  node_class        = "edge"
  node_pool         = "gpu"
  meta {{
    rack = "r1"
  }}
  network_interface = "eth0"
  alloc_dir         = "/srv/alloc"
  state_dir         = "/srv/state"
  chroot_env = {{
    "/bin" = "/bin"
  }}
  max_kill_timeout  = "1m"
  min_dynamic_port  = 21000
  max_dynamic_port  = 22000
  bridge_network_name   = "br-test"
  bridge_network_subnet = "10.88.0.0/16"
  port_mapping          = "nftables"
  gc_interval              = "5m"
  gc_disk_usage_threshold  = 90
  gc_inode_usage_threshold = 75.5
  gc_max_allocs            = 10
  gc_parallel_destroys     = 4
  reserved {{
    cpu            = 500
    memory         = 512
    disk           = 1024
    cores          = "1"
    reserved_ports = "22,80,8000-8002"
  }}
  host_volume "data" {{
    path      = "{}"
    read_only = true
  }}
  host_network "public" {{
    cidr           = "203.0.113.0/24"
    interface      = "eth1"
    reserved_ports = "22"
  }}
  drain_on_shutdown {{
    deadline           = "10m"
    force              = true
    ignore_system_jobs = true
  }}
}}
plugin "raw_exec" {{
  config {{
    enabled = true
  }}
}}
{}"#,
        vol.path().display(),
        certs.block()
    );
    let c = build_small(&[parse(&text, "c.hcl").unwrap()], &Overrides::default()).unwrap();
    assert!(c.client_enabled && !c.server_enabled && c.raw_exec_enabled);
    assert_eq!(
        c.client_servers,
        vec!["10.0.0.10:4647", "10.0.0.11:4700", "[fd00::1]:4647"]
    );
    assert_eq!(
        c.client_join,
        JoinSettings {
            retry_join: vec!["10.0.0.12".into()],
            retry_interval: Duration::from_secs(15),
            retry_max: 3,
        }
    );
    assert_eq!(
        (c.node_class.as_str(), c.node_pool.as_str()),
        ("edge", "gpu")
    );
    assert_eq!(c.meta.get("rack").map(String::as_str), Some("r1"));
    assert_eq!(c.network_interface.as_deref(), Some("eth0"));
    assert_eq!(c.client_alloc_dir(), PathBuf::from("/srv/alloc"));
    assert_eq!(c.client_state_dir(), PathBuf::from("/srv/state"));
    assert_eq!(c.max_kill_timeout, Duration::from_secs(60));
    assert_eq!((c.min_dynamic_port, c.max_dynamic_port), (21000, 22000));
    assert_eq!(c.network.bridge_network_name, "br-test");
    assert_eq!(c.network.bridge_network_subnet.to_string(), "10.88.0.0/16");
    assert_eq!(
        c.network.port_mapping,
        crate::client::settings::PortMappingMode::Nftables
    );
    let public = &c.network.host_networks["public"];
    assert_eq!(
        (
            public.cidr.map(|c| c.to_string()),
            public.interface.as_deref(),
            public.reserved_ports.as_str()
        ),
        (Some("203.0.113.0/24".to_string()), Some("eth1"), "22")
    );
    assert_eq!(
        c.gc,
        GcSettings {
            interval: Duration::from_secs(300),
            disk_usage_threshold: 90.0,
            inode_usage_threshold: 75.5,
            max_allocs: 10,
            parallel_destroys: 4,
        }
    );
    assert_eq!(
        c.reserved,
        ReservedConfig {
            cpu_mhz: 500,
            memory_mb: 512,
            disk_mb: 1024,
            cores: vec![1],
            reserved_ports: "22,80,8000-8002".into(),
            ports: vec![22, 80, 8000, 8001, 8002],
        }
    );
    let data = c.host_volumes.get("data").unwrap();
    assert_eq!(data.path, vol.path().display().to_string());
    assert!(data.read_only && data.name == "data");
    assert_eq!(
        c.drain_on_shutdown,
        Some(DrainOnShutdown {
            deadline: Duration::from_secs(600),
            force: true,
            ignore_system_jobs: true,
        })
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn drain_on_shutdown_defaults_to_an_hour_once_written() {
    let c = build(
        &[parse(
            "client {\n  drain_on_shutdown {\n    force = true\n  }\n}\n",
            "c.hcl",
        )
        .unwrap()],
        &dev(),
    )
    .unwrap();
    assert_eq!(
        c.drain_on_shutdown,
        Some(DrainOnShutdown {
            deadline: Duration::from_secs(3600),
            force: true,
            ignore_system_jobs: false,
        })
    );
}

#[test]
fn each_bad_client_value_names_its_file_and_line() {
    let cases: &[(&str, &str)] = &[
        ("client {\n  serverz = []\n}", "c.hcl:2: client.serverz: unknown field"),
        (
            "client {\n  servers = [\"a b\"]\n}",
            "c.hcl:2: client.servers: \"a b\" is not an address",
        ),
        (
            "client {\n  servers = [\"host:0\"]\n}",
            "c.hcl:2: client.servers: \"host:0\" is not an address",
        ),
        (
            "client {\n  server_join {\n    retry_interval = \"soon\"\n  }\n}",
            "c.hcl:3: client.server_join.retry_interval = \"soon\"",
        ),
        (
            "client {\n  server_join {\n    start_join = [\"a\"]\n  }\n}",
            "c.hcl:3: client.server_join.start_join: noded does not support start_join",
        ),
        (
            "client {\n  alloc_dir = \"alloc\"\n}",
            "c.hcl:2: client.alloc_dir = \"alloc\": give an absolute path",
        ),
        (
            "client {\n  state_dir = \"rel/state\"\n}",
            "c.hcl:2: client.state_dir = \"rel/state\": give an absolute path",
        ),
        (
            "client {\n  network_interface = \"a/b\"\n}",
            "c.hcl:2: client.network_interface = \"a/b\"",
        ),
        (
            "client {\n  max_kill_timeout = \"30\"\n}",
            "c.hcl:2: client.max_kill_timeout = \"30\"",
        ),
        (
            "client {\n  min_dynamic_port = 0\n}",
            "c.hcl:2: invalid dynamic port range: client.min_dynamic_port = 0: must be from 1 to 65535",
        ),
        (
            "client {\n  max_dynamic_port = 70000\n}",
            "c.hcl:2: invalid dynamic port range: client.max_dynamic_port = 70000",
        ),
        (
            "client {\n  min_dynamic_port = 30000\n  max_dynamic_port = 25000\n}",
            "c.hcl:2: invalid dynamic port range: min_dynamic_port = 30000 and max_dynamic_port = 25000",
        ),
        (
            "client {\n  gc_interval = \"0s\"\n}",
            "c.hcl:2: client.gc_interval = \"0s\": must be more than zero",
        ),
        (
            "client {\n  bridge_network_subnet = \"172.26.64.1/20\"\n}",
            "c.hcl:2: client.bridge_network_subnet: invalid IPv4 CIDR \"172.26.64.1/20\": host bits are set; the network is 172.26.64.0/20",
        ),
        (
            "client {\n\n  bridge_network_subnet = \"10.0.0.0\"\n}",
            "c.hcl:3: client.bridge_network_subnet: invalid IPv4 CIDR \"10.0.0.0\": expected ADDRESS/PREFIX",
        ),
        (
            "client {\n  bridge_network_name = \"a-bridge-name-too-long\"\n}",
            "c.hcl:2: client.bridge_network_name = \"a-bridge-name-too-long\": give an interface name of 1 to 15 characters",
        ),
        (
            "client {\n  port_mapping = \"iptables\"\n}",
            "c.hcl:2: client.port_mapping: \"iptables\" is not a port mapping",
        ),
        (
            "client {\n  gc_disk_usage_threshold = 120\n}",
            "c.hcl:2: client.gc_disk_usage_threshold = 120: must be a percentage",
        ),
        (
            "client {\n  gc_inode_usage_threshold = -1\n}",
            "c.hcl:2: client.gc_inode_usage_threshold = -1: must be a percentage",
        ),
        (
            "client {\n  gc_parallel_destroys = 0\n}",
            "c.hcl:2: client.gc_parallel_destroys = 0: must be at least 1",
        ),
        (
            "client {\n  gc_max_allocs = \"many\"\n}",
            "c.hcl:2: client.gc_max_allocs: invalid type",
        ),
        (
            "client {\n  reserved {\n    cpu = -1\n  }\n}",
            "c.hcl:3: client.reserved.cpu = -1: must be 0 or more",
        ),
        (
            "client {\n  reserved {\n    cores = \"1-0\"\n  }\n}",
            "c.hcl:3: client.reserved.cores = \"1-0\" invalid",
        ),
        (
            "client {\n  reserved {\n    reserved_ports = \"22,70000\"\n  }\n}",
            "c.hcl:3: client.reserved.reserved_ports = \"22,70000\" invalid: 70000 is outside 1-65535",
        ),
        (
            "client {\n  reserved {\n    gpus = 1\n  }\n}",
            "c.hcl:3: client.reserved.gpus: unknown field",
        ),
        (
            "client {\n  host_volume \"data\" {\n    read_only = true\n  }\n}",
            "c.hcl:2: client.host_volume.data: missing path",
        ),
        (
            "client {\n  host_volume \"data\" {\n    path = \"srv/data\"\n  }\n}",
            "c.hcl:3: client.host_volume.data.path = \"srv/data\": give an absolute path",
        ),
        (
            "client {\n  host_volume \"data\" {\n    path = \"/srv\"\n    mode = \"rw\"\n  }\n}",
            "c.hcl:4: client.host_volume.data.mode: unknown field",
        ),
        (
            "client {\n  host_network \"public\" {\n    reserved_ports = \"22\"\n  }\n}",
            "c.hcl:2: client.host_network.public: give cidr (the host's address in it) or interface",
        ),
        (
            "client {\n  host_network \"public\" {\n    cidr = \"203.0.113.7/24\"\n  }\n}",
            "c.hcl:3: client.host_network.public.cidr: invalid IPv4 CIDR \"203.0.113.7/24\": host bits are set",
        ),
        (
            "client {\n  drain_on_shutdown {\n    deadline = \"later\"\n  }\n}",
            "c.hcl:3: client.drain_on_shutdown.deadline = \"later\"",
        ),
        (
            "client {\n  drain_on_shutdown {\n    forced = true\n  }\n}",
            "c.hcl:3: client.drain_on_shutdown.forced: unknown field",
        ),
    ];
    for (text, want) in cases {
        let errors = client_errors(text, &dev());
        assert!(
            errors.len() == 1 && errors[0].contains(want),
            "{text}\nwant: {want}\ngot: {errors:?}"
        );
    }
}

#[test]
fn reserving_more_than_the_machine_has_is_an_error_naming_the_key() {
    let text = "client {\n  reserved {\n    cpu    = 4000\n    memory = 9000\n    disk   = 100000\n    cores  = \"0-3\"\n  }\n}\n";
    let errors = client_errors(text, &dev());
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(
        errors[0].starts_with("c.hcl:3: client.reserved.cpu = 4000"),
        "{errors:?}"
    );
    assert!(errors[0].contains("this machine has 4000 MHz (2 cores × 2000 MHz)"));
    assert!(
        errors[1].starts_with("c.hcl:4: client.reserved.memory = 9000: this machine has 8192 MB")
    );
    assert!(errors[2].starts_with("c.hcl:5: client.reserved.disk = 100000"));
    assert!(errors[3].starts_with("c.hcl:6: client.reserved.cores: core 2, 3 is not online"));
    // What fits is accepted; nothing reserved never reads the machine.
    let fits = "client {\n  reserved {\n    cpu    = 1000\n    memory = 1024\n    cores  = \"1\"\n  }\n}\n";
    assert_eq!(client_errors(fits, &dev()), Vec::<String>::new());
    let mut asked = false;
    let c = AgentConfig::build_for_machine(
        &[],
        &dev(),
        || Ok(PathBuf::from("/tmp/dev-data")),
        &mut host,
        &mut |_: &Path| {
            asked = true;
            Err("unreachable".into())
        },
    );
    assert!(c.is_ok() && !asked);
}

#[test]
fn a_host_volume_whose_path_is_missing_is_a_warning_and_left_out() {
    let vol = tempfile::tempdir().unwrap();
    let text = format!(
        "client {{\n  host_volume \"here\" {{\n    path = \"{}\"\n  }}\n  host_volume \"gone\" {{\n    path = \"/nonexistent/noded-test-volume\"\n  }}\n}}\n",
        vol.path().display()
    );
    let c = build_small(&[parse(&text, "c.hcl").unwrap()], &dev()).unwrap();
    assert_eq!(c.host_volumes.keys().collect::<Vec<_>>(), vec!["here"]);
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].starts_with("c.hcl:6: client.host_volume \"gone\": path \"/nonexistent/noded-test-volume\" does not exist"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn a_client_only_agent_needs_servers_and_outside_dev_a_client_certificate() {
    let certs = Certs::new();
    let client_only = "data_dir = \"/var/lib/noded\"\nserver {\n  enabled = false\n}\nclient {\n  enabled = true\n";
    // No servers: say how to add them.
    let e = client_errors(
        &format!("{client_only}}}\n{}", certs.block()),
        &Overrides::default(),
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("needs servers to register with") && e[0].contains("servers = ["),
        "{e:?}"
    );
    // Servers but no TLS outside dev: say how to make a client certificate.
    let e = client_errors(
        &format!("{client_only}  servers = [\"10.0.0.10\"]\n}}\n"),
        &Overrides::default(),
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("tls.rpc is not enabled")
            && e[0].contains("noded tls cert create -client -region global")
            && e[0].contains("global-client-noded.pem"),
        "{e:?}"
    );
    // retry_join is as good as servers; with a certificate it passes.
    let ok = format!(
        "{client_only}  server_join {{\n    retry_join = [\"10.0.0.10\"]\n  }}\n}}\n{}",
        certs.block()
    );
    assert_eq!(
        client_errors(&ok, &Overrides::default()),
        Vec::<String>::new()
    );
    // In -dev no certificate is needed, servers still are.
    let dev_only = "server {\n  enabled = false\n}\nclient {\n  servers = [\"127.0.0.1\"]\n}\n";
    assert_eq!(client_errors(dev_only, &dev()), Vec::<String>::new());
    let e = client_errors("server {\n  enabled = false\n}\n", &dev());
    assert!(e.len() == 1 && e[0].contains("needs servers"), "{e:?}");
}

#[test]
fn dns_is_on_by_default_on_loopback_8600() {
    let c = build(&[], &dev()).unwrap();
    let d = &c.dns;
    assert!(d.enabled && d.forward && !d.required);
    assert_eq!(
        (d.bind, d.port, d.domain.as_str(), d.ttl),
        (
            "127.0.0.1".parse().unwrap(),
            8600,
            "noded",
            Duration::from_secs(5)
        )
    );
    assert!(d.recursors.is_empty());
}

#[test]
fn the_dns_block_sets_every_key() {
    let text = r#"
dns {
  enabled   = true
  bind      = "127.0.0.2"
  port      = 5353
  domain    = "Cluster.Example."
  ttl       = "2s"
  forward   = false
  recursors = ["10.0.0.2", "10.0.0.3:5300"]
}
"#;
    let f = parse(text, "agent.hcl").unwrap();
    let c = build(&[f], &dev()).unwrap();
    let d = &c.dns;
    assert!(d.enabled && d.required && !d.forward);
    assert_eq!((d.bind, d.port), ("127.0.0.2".parse().unwrap(), 5353));
    assert_eq!(d.domain, "cluster.example");
    assert_eq!(d.ttl, Duration::from_secs(2));
    assert_eq!(
        d.recursors,
        vec![
            "10.0.0.2:53".parse().unwrap(),
            "10.0.0.3:5300".parse().unwrap()
        ]
    );
    let off = parse("dns {\n  enabled = false\n}\n", "agent.hcl").unwrap();
    let c = build(&[off], &dev()).unwrap();
    assert!(!c.dns.enabled && !c.dns.required);
}

#[test]
fn bad_dns_values_name_their_file_and_line() {
    let text = "dns {\n  bind = \"0.0.0.0\"\n  port = 0\n  domain = \"bad domain\"\n  ttl = \"soon\"\n  recursors = [\"nowhere\"]\n}\n";
    let errors = errors_of(text, "agent.hcl", &dev());
    let want = [
        (
            "agent.hcl:2",
            "dns.bind = \"0.0.0.0\": listening on every address",
        ),
        ("agent.hcl:3", "dns.port = 0"),
        (
            "agent.hcl:4",
            "dns.domain = \"bad domain\": \"bad domain\" is not a DNS label",
        ),
        ("agent.hcl:5", "dns.ttl = \"soon\""),
        ("agent.hcl:6", "dns.recursors: \"nowhere\""),
    ];
    assert_eq!(errors.len(), want.len(), "{errors:#?}");
    for ((at, what), got) in want.iter().zip(&errors) {
        assert!(
            got.contains(at) && got.contains(what),
            "{got:?} should say {at}: {what}"
        );
    }
    let unknown = errors_of("dns {\n  listen = true\n}\n", "agent.hcl", &dev());
    assert!(
        unknown.len() == 1 && unknown[0].contains("agent.hcl:2") && unknown[0].contains("listen"),
        "{unknown:?}"
    );
}
