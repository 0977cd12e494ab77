//! The settings a server needs to form a region with others: `server` (bootstrap, joining,
//! Raft tuning), `tls` and `autopilot`, with Nomad's names, defaults and limits.

use std::path::PathBuf;
use std::time::Duration;

use controlplane::model::duration::parse_go;

use super::error::Report;
use super::{AutopilotBlock, ServerBlock, ServerJoinBlock, TlsBlock};

/// Nomad's `raft_multiplier` ceiling: beyond 10× its timings a failed leader goes unnoticed
/// for too long to be useful.
pub const MAX_RAFT_MULTIPLIER: u32 = 10;

/// The `server` block.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// How many servers to wait for before bootstrapping the region: 1 in dev; 0 (unset)
    /// otherwise, which means this server never bootstraps and only joins a region that
    /// exists (Nomad's behaviour) through `retry_join`.
    pub bootstrap_expect: u32,
    /// Addresses of servers to join (`server_join { retry_join }`, or the older
    /// `server { retry_join }`), as written: "ip", "ip:port" or "host:port".
    pub retry_join: Vec<String>,
    /// Wait between join attempts (default 30s).
    pub retry_interval: Duration,
    /// Attempts before giving up; 0 = forever.
    pub retry_max: u32,
    /// Raft log entries between snapshots (default 8192).
    pub raft_snapshot_threshold: u64,
    /// Raft log entries kept after a snapshot (default 10240).
    pub raft_trailing_logs: u64,
    /// Scales Raft's timings, 1 (fastest failure detection, the default) to 10.
    pub raft_multiplier: u32,
    /// Scheduler workers; `None` = one per core.
    pub num_schedulers: Option<usize>,
    /// Node heartbeats: `min_heartbeat_ttl`, `max_heartbeats_per_second`,
    /// `heartbeat_grace`, `failover_heartbeat_ttl`.
    pub heartbeat: controlplane::server::heartbeat::HeartbeatConfig,
    /// How often the leader collects garbage (`job_gc_interval`, 5m).
    pub gc_interval: Duration,
    /// `job_gc_threshold`, `eval_gc_threshold`, `batch_eval_gc_threshold`,
    /// `node_gc_threshold`.
    pub gc_thresholds: controlplane::state::GcThresholds,
    /// `job_tracked_versions`: versions of a job without a tag kept (6).
    pub job_tracked_versions: u64,
}

impl ServerSettings {
    pub fn defaults(dev: bool) -> ServerSettings {
        ServerSettings {
            bootstrap_expect: u32::from(dev),
            retry_join: Vec::new(),
            retry_interval: Duration::from_secs(30),
            retry_max: 0,
            raft_snapshot_threshold: 8192,
            raft_trailing_logs: 10240,
            raft_multiplier: 1,
            num_schedulers: None,
            heartbeat: Default::default(),
            gc_interval: Duration::from_secs(300),
            gc_thresholds: Default::default(),
            job_tracked_versions: controlplane::state::JOB_TRACKED_VERSIONS,
        }
    }
}

/// Where to find servers and how hard to try: `server_join` (of a server or a client).
#[derive(Debug, Clone, PartialEq)]
pub struct JoinSettings {
    /// Addresses as written: "ip", "ip:port" or "host:port".
    pub retry_join: Vec<String>,
    /// Wait between attempts (default 30s).
    pub retry_interval: Duration,
    /// Attempts before giving up; 0 = forever.
    pub retry_max: u32,
}

impl Default for JoinSettings {
    fn default() -> JoinSettings {
        JoinSettings {
            retry_join: Vec::new(),
            retry_interval: Duration::from_secs(30),
            retry_max: 0,
        }
    }
}

/// The `tls` block: mutual TLS between agents (`rpc`) and on the HTTP API (`http`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsSettings {
    pub rpc: bool,
    pub http: bool,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Check that a server's certificate names `server.<region>.noded`.
    pub verify_server_hostname: bool,
    /// Require HTTPS clients to present a certificate signed by the CA.
    pub verify_https_client: bool,
}

/// The `autopilot` block: how the leader looks after the other servers.
#[derive(Debug, Clone, PartialEq)]
pub struct AutopilotSettings {
    /// Remove failed servers from the Raft configuration when a new one joins.
    pub cleanup_dead_servers: bool,
    /// A server that has not heard from the leader for longer is unhealthy.
    pub last_contact_threshold: Duration,
    /// A server this many log entries behind the leader is unhealthy.
    pub max_trailing_logs: u64,
    /// How long a new server must be healthy before it may vote.
    pub server_stabilization_time: Duration,
}

impl Default for AutopilotSettings {
    fn default() -> AutopilotSettings {
        AutopilotSettings {
            cleanup_dead_servers: true,
            last_contact_threshold: Duration::from_millis(200),
            max_trailing_logs: 250,
            server_stabilization_time: Duration::from_secs(10),
        }
    }
}

/// Reads a Go duration ("30s", "1m30s") that must be more than zero.
pub(super) fn positive_duration(key: &str, text: &str, report: Report<'_>) -> Option<Duration> {
    match parse_go(text) {
        Ok(d) if d.is_zero() => {
            report(key, format!("{key} = {text:?}: must be more than zero"));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            report(
                key,
                format!("{key} = {text:?}: {e} (write a Go duration such as \"30s\" or \"1m\")"),
            );
            None
        }
    }
}

/// Takes what one file's `server` block sets (besides `enabled`).
pub fn apply_server(s: &mut ServerSettings, block: &ServerBlock, report: Report<'_>) {
    if let Some(n) = block.bootstrap_expect {
        s.bootstrap_expect = n;
    }
    if let Some(n) = block.num_schedulers {
        s.num_schedulers = Some(n);
    }
    if let Some(v) = block.raft_protocol {
        if v != 3 {
            report(
                "server.raft_protocol",
                format!("server.raft_protocol = {v}: must be 3, the only Raft protocol noded speaks (or leave it out)"),
            );
        }
    }
    // Nomad reads 0 as "the default".
    match block.raft_multiplier {
        None | Some(0) => {}
        Some(v @ 1..=MAX_RAFT_MULTIPLIER) => s.raft_multiplier = v,
        Some(v) => report(
            "server.raft_multiplier",
            format!("server.raft_multiplier = {v}: must be between 1 and {MAX_RAFT_MULTIPLIER}"),
        ),
    }
    for (key, value, slot) in [
        (
            "server.raft_snapshot_threshold",
            block.raft_snapshot_threshold,
            &mut s.raft_snapshot_threshold,
        ),
        (
            "server.raft_trailing_logs",
            block.raft_trailing_logs,
            &mut s.raft_trailing_logs,
        ),
    ] {
        match value {
            None => {}
            Some(0) => report(key, format!("{key} = 0: must be at least 1")),
            Some(v) => *slot = v,
        }
    }
    if let Some(n) = block.job_tracked_versions {
        let max = controlplane::state::MAX_JOB_TRACKED_VERSIONS;
        match u64::try_from(n) {
            Ok(n @ 1..) if n <= max => s.job_tracked_versions = n,
            _ => report(
                "server.job_tracked_versions",
                format!("server.job_tracked_versions = {n}: must be between 1 and {max}"),
            ),
        }
    }
    apply_heartbeat(s, block, report);
    apply_durations(s, block, report);
    apply_join(s, block, report);
}

/// The `server` block's durations: heartbeat TTLs and grace, garbage-collection interval and
/// thresholds; each must be a Go duration above zero.
fn apply_durations(s: &mut ServerSettings, block: &ServerBlock, report: Report<'_>) {
    for (key, value, slot) in [
        (
            "server.job_gc_interval",
            &block.job_gc_interval,
            &mut s.gc_interval,
        ),
        (
            "server.job_gc_threshold",
            &block.job_gc_threshold,
            &mut s.gc_thresholds.job,
        ),
        (
            "server.eval_gc_threshold",
            &block.eval_gc_threshold,
            &mut s.gc_thresholds.eval,
        ),
        (
            "server.batch_eval_gc_threshold",
            &block.batch_eval_gc_threshold,
            &mut s.gc_thresholds.batch_eval,
        ),
        (
            "server.node_gc_threshold",
            &block.node_gc_threshold,
            &mut s.gc_thresholds.node,
        ),
        (
            "server.deployment_gc_threshold",
            &block.deployment_gc_threshold,
            &mut s.gc_thresholds.deployment,
        ),
        (
            "server.min_heartbeat_ttl",
            &block.min_heartbeat_ttl,
            &mut s.heartbeat.min_ttl,
        ),
        (
            "server.heartbeat_grace",
            &block.heartbeat_grace,
            &mut s.heartbeat.grace,
        ),
        (
            "server.failover_heartbeat_ttl",
            &block.failover_heartbeat_ttl,
            &mut s.heartbeat.failover_ttl,
        ),
    ] {
        if let Some(text) = value {
            if let Some(d) = positive_duration(key, text, report) {
                *slot = d;
            }
        }
    }
}

/// `max_heartbeats_per_second` (the heartbeat durations are in [`apply_durations`]).
fn apply_heartbeat(s: &mut ServerSettings, block: &ServerBlock, report: Report<'_>) {
    if let Some(rate) = block.max_heartbeats_per_second {
        if rate.is_finite() && rate >= 1.0 && rate <= f64::from(u32::MAX) {
            // Whole heartbeats per second; Nomad's float is never meant to be fractional.
            s.heartbeat.max_per_second = rate as u32;
        } else {
            report(
                "server.max_heartbeats_per_second",
                format!("server.max_heartbeats_per_second = {rate}: must be at least 1"),
            );
        }
    }
}

/// `server_join { … }`, or the same keys written directly in `server` (Nomad before 0.10);
/// one file may not mix the two.
fn apply_join(s: &mut ServerSettings, block: &ServerBlock, report: Report<'_>) {
    let legacy = ServerJoinBlock {
        retry_join: block.retry_join.clone(),
        retry_interval: block.retry_interval.clone(),
        retry_max: block.retry_max,
        start_join: block.start_join.clone(),
    };
    let legacy_keys = [
        ("retry_join", legacy.retry_join.is_some()),
        ("retry_interval", legacy.retry_interval.is_some()),
        ("retry_max", legacy.retry_max.is_some()),
        ("start_join", legacy.start_join.is_some()),
    ];
    if let Some(join) = &block.server_join {
        for (key, set) in legacy_keys {
            if set {
                report(
                    &format!("server.{key}"),
                    format!("server_join and server.{key} cannot both be defined; prefer setting the server_join block"),
                );
            }
        }
        apply_join_block(s, join, "server.server_join", report);
    } else if legacy_keys.iter().any(|(_, set)| *set) {
        apply_join_block(s, &legacy, "server", report);
    }
}

fn apply_join_block(
    s: &mut ServerSettings,
    join: &ServerJoinBlock,
    prefix: &str,
    report: Report<'_>,
) {
    let mut j = JoinSettings {
        retry_join: std::mem::take(&mut s.retry_join),
        retry_interval: s.retry_interval,
        retry_max: s.retry_max,
    };
    apply_join_settings(&mut j, join, prefix, report);
    s.retry_join = j.retry_join;
    s.retry_interval = j.retry_interval;
    s.retry_max = j.retry_max;
}

/// Takes what one `server_join` block (at `prefix`) sets.
pub fn apply_join_settings(
    s: &mut JoinSettings,
    join: &ServerJoinBlock,
    prefix: &str,
    report: Report<'_>,
) {
    if join.start_join.is_some() {
        let key = format!("{prefix}.start_join");
        report(
            &key,
            format!("{key}: noded does not support start_join; use server_join {{ retry_join = [...] }} (with retry_max to give up after a number of attempts)"),
        );
    }
    if let Some(list) = &join.retry_join {
        let key = format!("{prefix}.retry_join");
        for addr in list {
            if addr.contains("provider=") {
                report(
                    &key,
                    format!("{key}: {addr:?}: cloud auto-join is not supported; list the servers' addresses"),
                );
            } else if addr.trim().is_empty() || addr.contains(char::is_whitespace) {
                report(
                    &key,
                    format!("{key}: {addr:?} is not an address: write \"ip\", \"ip:port\" or \"host:port\""),
                );
            }
        }
        s.retry_join = list.clone();
    }
    if let Some(text) = &join.retry_interval {
        let key = format!("{prefix}.retry_interval");
        if let Some(d) = positive_duration(&key, text, report) {
            s.retry_interval = d;
        }
    }
    if let Some(n) = join.retry_max {
        s.retry_max = n;
    }
}

/// Takes what one file's `tls` block sets.
pub fn apply_tls(t: &mut TlsSettings, block: &TlsBlock) {
    let flags = [
        (block.rpc, &mut t.rpc),
        (block.http, &mut t.http),
        (block.verify_server_hostname, &mut t.verify_server_hostname),
        (block.verify_https_client, &mut t.verify_https_client),
    ];
    for (value, slot) in flags {
        if let Some(v) = value {
            *slot = v;
        }
    }
    for (value, slot) in [
        (&block.ca_file, &mut t.ca_file),
        (&block.cert_file, &mut t.cert_file),
        (&block.key_file, &mut t.key_file),
    ] {
        if let Some(v) = value {
            *slot = Some(v.clone());
        }
    }
}

/// Takes what one file's `autopilot` block sets.
pub fn apply_autopilot(a: &mut AutopilotSettings, block: &AutopilotBlock, report: Report<'_>) {
    if let Some(v) = block.cleanup_dead_servers {
        a.cleanup_dead_servers = v;
    }
    if let Some(v) = block.max_trailing_logs {
        a.max_trailing_logs = v;
    }
    for (key, text, slot) in [
        (
            "autopilot.last_contact_threshold",
            &block.last_contact_threshold,
            &mut a.last_contact_threshold,
        ),
        (
            "autopilot.server_stabilization_time",
            &block.server_stabilization_time,
            &mut a.server_stabilization_time,
        ),
    ] {
        if let Some(text) = text {
            if let Some(d) = positive_duration(key, text, report) {
                *slot = d;
            }
        }
    }
}

/// What a non-dev server must have before it talks to other servers: mutual TLS with files
/// that exist. Returns the problems as (key, message); an empty key is the config as a whole.
pub fn check_tls(
    t: &TlsSettings,
    dev: bool,
    server: bool,
    region: &str,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let files = [
        ("tls.ca_file", &t.ca_file),
        ("tls.cert_file", &t.cert_file),
        ("tls.key_file", &t.key_file),
    ];
    // Named files must exist whoever names them (a dev agent too).
    for (key, file) in files {
        if let Some(path) = file {
            match std::fs::metadata(path) {
                Ok(m) if m.is_file() => {}
                Ok(_) => out.push((
                    key,
                    format!(
                        "{key} = {:?}: not a regular file",
                        path.display().to_string()
                    ),
                )),
                Err(e) => out.push((
                    key,
                    format!(
                        "{key} = {:?}: {e}; {}",
                        path.display().to_string(),
                        make_them(region)
                    ),
                )),
            }
        }
    }
    // `-dev` makes its own certificates; a real server must be given them.
    if dev || !server {
        return out;
    }
    if let Some(what) = missing_mutual_tls(t) {
        out.push((
            "",
            format!(
                "a server outside -dev needs mutual TLS between agents, but {what}.\n{}\nand add to the agent config:\n{}",
                make_them(region),
                tls_block(region)
            ),
        ));
    }
    out
}

/// The two commands that make a region's certificates.
fn make_them(region: &str) -> String {
    format!(
        "make the certificates with:\n    noded tls ca create\n    noded tls cert create -server -region {region}"
    )
}

/// The `tls` block that uses what those commands write.
fn tls_block(region: &str) -> String {
    format!(
        "    tls {{\n      rpc       = true\n      ca_file   = \"noded-agent-ca.pem\"\n      cert_file = \"{region}-server-noded.pem\"\n      key_file  = \"{region}-server-noded-key.pem\"\n    }}"
    )
}

/// Nomad's judgement of `bootstrap_expect` on a server outside -dev: (errors, warnings).
pub fn check_bootstrap(s: &ServerSettings, dev: bool) -> (Vec<String>, Vec<String>) {
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    let n = s.bootstrap_expect;
    if dev {
        if n > 1 {
            errors.push(format!("server.bootstrap_expect = {n}: a -dev agent is a region of one server; leave bootstrap_expect out or set it to 1"));
        }
        return (errors, warnings);
    }
    if n == 0 && s.retry_join.is_empty() {
        errors.push(
            "server.bootstrap_expect is not set and server_join.retry_join is empty: this server could neither start a region nor join one. \
             Set bootstrap_expect = 1 for a single server (3 or 5 for a highly available region, on every server), \
             or list existing servers in server_join { retry_join = [...] }"
                .to_string(),
        );
    }
    if n == 1 {
        warnings.push("server.bootstrap_expect = 1: this server elects itself leader of a region of one; that is right for a single server, unsafe if others are meant to join".to_string());
    }
    if n >= 2 && n.is_multiple_of(2) {
        warnings.push(format!("server.bootstrap_expect = {n}: an even number of servers tolerates no more failures than {} would; use an odd number (3 or 5)", n - 1));
    }
    (errors, warnings)
}

/// What a client-only agent (`server { enabled = false }`, `client { enabled = true }`) must
/// have: servers to register with and, outside -dev, a client certificate for mutual TLS with
/// them. Returns the problems as (key, message); an empty key is the config as a whole.
pub fn check_client_only(
    servers: &[String],
    join: &JoinSettings,
    t: &TlsSettings,
    dev: bool,
    region: &str,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if servers.is_empty() && join.retry_join.is_empty() {
        out.push((
            "",
            "a client-only agent (server { enabled = false }) needs servers to register with, but client.servers and client.server_join.retry_join are both empty. \
             Add the servers' RPC addresses to the agent config:\n    client {\n      enabled = true\n      servers = [\"10.0.0.10:4647\", \"10.0.0.11:4647\"]\n    }\n\
             (or client { server_join { retry_join = [...] } })"
                .to_string(),
        ));
    }
    // Files named must exist, as for a server.
    out.extend(check_tls(t, dev, false, region));
    if dev {
        return out;
    }
    if let Some(what) = missing_mutual_tls(t) {
        out.push((
            "",
            format!(
                "a client-only agent outside -dev talks to the servers over mutual TLS, but {what}.\n\
                 make a client certificate with the region's CA (where noded-agent-ca-key.pem is):\n    noded tls cert create -client -region {region}\n\
                 copy it, its key and noded-agent-ca.pem to this machine, and add to the agent config:\n{}",
                client_tls_block(region)
            ),
        ));
    }
    out
}

/// Why `t` does not give an agent mutual TLS on RPC (`tls.rpc` off, or a file not named),
/// or `None` when it does.
fn missing_mutual_tls(t: &TlsSettings) -> Option<String> {
    if !t.rpc {
        return Some("tls.rpc is not enabled".to_string());
    }
    let missing: Vec<&str> = [
        ("tls.ca_file", t.ca_file.is_none()),
        ("tls.cert_file", t.cert_file.is_none()),
        ("tls.key_file", t.key_file.is_none()),
    ]
    .into_iter()
    .filter_map(|(key, absent)| absent.then_some(key))
    .collect();
    (!missing.is_empty()).then(|| format!("{} not set", missing.join(", ")))
}

/// The `tls` block that uses what `noded tls cert create -client` writes.
fn client_tls_block(region: &str) -> String {
    format!(
        "    tls {{\n      rpc       = true\n      ca_file   = \"noded-agent-ca.pem\"\n      cert_file = \"{region}-client-noded.pem\"\n      key_file  = \"{region}-client-noded-key.pem\"\n    }}"
    )
}
