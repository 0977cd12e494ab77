//! The agent's configuration: Nomad's agent HCL or JSON (`data_dir`, `bind_addr`, `ports`,
//! `advertise`, `server`, `client`, `tls`, `autopilot`, `plugin "raw_exec"`…), dev-mode
//! defaults, and flag overrides. `-config` takes files and directories, merged in order (a
//! later file overrides an earlier one; maps merge). Unknown keys and bad values are errors
//! naming the file and line, never silently ignored; every problem is reported, not only the
//! first, so `noded config validate` can list them all.

mod addr;
mod client;
mod cluster;
mod dns;
mod error;
mod load;
mod positions;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use controlplane::model::ClientHostVolumeConfig;
use serde::Deserialize;

pub use crate::client::settings::{DrainOnShutdown, GcSettings, ReservedConfig};
pub use client::{check_reserved, server_address, MachineReader, DEFAULT_SERVER_RPC_PORT};
pub use cluster::{
    AutopilotSettings, JoinSettings, ServerSettings, TlsSettings, MAX_RAFT_MULTIPLIER,
};
pub use dns::{DnsBlock, MAX_DNS_DOMAIN, MAX_DNS_TTL};
pub use error::{ConfigError, ConfigErrors};
pub use load::{expand, load_file, load_paths, parse, MAX_DIR_FILES, MAX_FILE_BYTES};
pub use positions::KeyLines;

/// One agent config file, as written. A block may be written more than once (`server { … }`
/// in two places): each is applied in order, as if they were in files of their own.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file it was read from, for errors found when files are combined.
    #[serde(skip)]
    pub source: String,
    /// Where each key is written in `source`.
    #[serde(skip)]
    pub lines: KeyLines,
    pub data_dir: Option<PathBuf>,
    pub region: Option<String>,
    pub datacenter: Option<String>,
    pub name: Option<String>,
    pub bind_addr: Option<String>,
    pub log_level: Option<String>,
    pub log_json: Option<bool>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub ports: Vec<Ports>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub advertise: Vec<Advertise>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub server: Vec<ServerBlock>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub client: Vec<ClientBlock>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub tls: Vec<TlsBlock>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub autopilot: Vec<AutopilotBlock>,
    #[serde(default)]
    pub plugin: BTreeMap<String, PluginBlock>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub dns: Vec<DnsBlock>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    pub http: Option<u16>,
    pub rpc: Option<u16>,
    pub serf: Option<u16>,
}

/// `advertise { http, rpc, serf }`: "ip" or "ip:port".
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Advertise {
    pub http: Option<String>,
    pub rpc: Option<String>,
    pub serf: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerBlock {
    pub enabled: Option<bool>,
    pub bootstrap_expect: Option<u32>,
    pub num_schedulers: Option<usize>,
    pub server_join: Option<ServerJoinBlock>,
    /// Nomad's pre-0.10 spellings of `server_join { … }`.
    pub retry_join: Option<Vec<String>>,
    pub retry_interval: Option<String>,
    pub retry_max: Option<u32>,
    pub start_join: Option<Vec<String>>,
    pub raft_protocol: Option<u32>,
    pub raft_multiplier: Option<u32>,
    pub raft_snapshot_threshold: Option<u64>,
    pub raft_trailing_logs: Option<u64>,
    pub min_heartbeat_ttl: Option<String>,
    pub max_heartbeats_per_second: Option<f64>,
    pub heartbeat_grace: Option<String>,
    pub failover_heartbeat_ttl: Option<String>,
    pub job_gc_interval: Option<String>,
    pub job_gc_threshold: Option<String>,
    pub eval_gc_threshold: Option<String>,
    pub batch_eval_gc_threshold: Option<String>,
    pub node_gc_threshold: Option<String>,
    pub deployment_gc_threshold: Option<String>,
    /// Versions of a job without a tag kept (Nomad's default 6). Read wide, so that a
    /// negative value gets a message of its own.
    pub job_tracked_versions: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerJoinBlock {
    pub retry_join: Option<Vec<String>>,
    pub retry_interval: Option<String>,
    pub retry_max: Option<u32>,
    pub start_join: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsBlock {
    pub http: Option<bool>,
    pub rpc: Option<bool>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub verify_server_hostname: Option<bool>,
    pub verify_https_client: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AutopilotBlock {
    pub cleanup_dead_servers: Option<bool>,
    pub last_contact_threshold: Option<String>,
    pub max_trailing_logs: Option<u64>,
    pub server_stabilization_time: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientBlock {
    pub enabled: Option<bool>,
    pub node_class: Option<String>,
    pub node_pool: Option<String>,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// Host path → path inside exec tasks (read-only bind mounts).
    pub chroot_env: Option<BTreeMap<String, String>>,
    pub gc_max_allocs: Option<usize>,
    /// Name of the cgroup every task cgroup is created under (on each v1 controller, or in
    /// the v2 tree); Nomad's `cgroup_parent`.
    pub cgroup_parent: Option<String>,
    /// Servers' RPC addresses, "host:port" (port 4647 when left out).
    pub servers: Option<Vec<String>>,
    pub server_join: Option<ServerJoinBlock>,
    pub state_dir: Option<PathBuf>,
    pub alloc_dir: Option<PathBuf>,
    pub network_interface: Option<String>,
    pub max_kill_timeout: Option<String>,
    /// Read as wide integers so an out-of-range port gets a message of its own.
    pub min_dynamic_port: Option<i64>,
    pub max_dynamic_port: Option<i64>,
    pub reserved: Option<ReservedBlock>,
    /// `host_volume "name" { … }`, by name.
    #[serde(default)]
    pub host_volume: BTreeMap<String, HostVolumeBlock>,
    /// `host_network "name" { … }`, by name.
    #[serde(default)]
    pub host_network: BTreeMap<String, HostNetworkBlock>,
    pub gc_interval: Option<String>,
    pub gc_disk_usage_threshold: Option<f64>,
    pub gc_inode_usage_threshold: Option<f64>,
    pub gc_parallel_destroys: Option<i64>,
    pub drain_on_shutdown: Option<DrainBlock>,
    /// The bridge of `bridge` networks (default `noded0`).
    pub bridge_network_name: Option<String>,
    /// Its subnet, IPv4 CIDR (default `172.26.64.0/20`).
    pub bridge_network_subnet: Option<String>,
    /// `auto`, `ebpf` or `nftables` (default `auto`).
    pub port_mapping: Option<String>,
}

/// `client { reserved { cpu, memory, disk, cores, reserved_ports } }`: MHz, MB, MB, and
/// range strings ("0-1,3", "22,80,8000-8100").
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReservedBlock {
    pub cpu: Option<i64>,
    pub memory: Option<i64>,
    pub disk: Option<i64>,
    pub cores: Option<String>,
    pub reserved_ports: Option<String>,
}

/// `client { host_volume "name" { path, read_only } }`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostVolumeBlock {
    pub path: Option<String>,
    pub read_only: Option<bool>,
}

/// `client { host_network "name" { cidr, interface, reserved_ports } }`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostNetworkBlock {
    pub cidr: Option<String>,
    pub interface: Option<String>,
    pub reserved_ports: Option<String>,
}

/// `client { drain_on_shutdown { deadline, force, ignore_system_jobs } }`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DrainBlock {
    pub deadline: Option<String>,
    pub force: Option<bool>,
    pub ignore_system_jobs: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginBlock {
    #[serde(default)]
    pub config: BTreeMap<String, serde_json::Value>,
}

/// A block written once (an object) or several times (HCL makes that a list), read so that
/// an error inside still names its key.
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Blocks<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Blocks<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a block")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Vec<T>, A::Error> {
            Ok(vec![T::deserialize(
                serde::de::value::MapAccessDeserializer::new(map),
            )?])
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(block) = seq.next_element()? {
                out.push(block);
            }
            Ok(out)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
    }
    d.deserialize_any(Blocks(std::marker::PhantomData))
}

/// Nomad's log levels (any case).
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// The settings the agent runs with, after defaults, files and flags.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub dev: bool,
    pub data_dir: PathBuf,
    /// The data dir is a temporary one, removed (with every task) when the agent exits.
    pub ephemeral: bool,
    pub region: String,
    pub datacenter: String,
    pub name: String,
    pub bind_addr: String,
    pub http_port: u16,
    pub rpc_port: u16,
    pub serf_port: u16,
    /// As written ("ip" or "ip:port"); [`AgentConfig::advertise_rpc_addr`] and friends give
    /// the resolved address.
    pub advertise_http: Option<String>,
    pub advertise_rpc: Option<String>,
    pub advertise_serf: Option<String>,
    pub server_enabled: bool,
    pub server: ServerSettings,
    pub tls: TlsSettings,
    pub autopilot: AutopilotSettings,
    pub client_enabled: bool,
    pub node_class: String,
    pub node_pool: String,
    pub meta: BTreeMap<String, String>,
    pub chroot_env: Option<Vec<(PathBuf, PathBuf)>>,
    pub raw_exec_enabled: bool,
    pub allow_caps: Vec<String>,
    pub denied_uids: crate::driver::IdRanges,
    pub denied_gids: crate::driver::IdRanges,
    pub default_pid_mode: controlplane::drivers::NamespaceMode,
    pub default_ipc_mode: controlplane::drivers::NamespaceMode,
    pub cgroup_parent: String,
    /// `client.servers`: the servers a client registers with, each "host:port" (4647 added
    /// when the port was left out).
    pub client_servers: Vec<String>,
    /// `client.server_join`: servers to find, and how hard to try.
    pub client_join: JoinSettings,
    /// `client.reserved`: what the host keeps for itself (checked against the machine).
    pub reserved: ReservedConfig,
    /// `client.host_volume` blocks whose path exists, by name (the others are warnings).
    pub host_volumes: BTreeMap<String, ClientHostVolumeConfig>,
    /// `client.network_interface`: the node's address comes from this interface.
    pub network_interface: Option<String>,
    /// `client.alloc_dir`; `None` = `<data_dir>/alloc`.
    pub alloc_dir: Option<PathBuf>,
    /// `client.state_dir`; `None` = `<data_dir>/client`.
    pub state_dir: Option<PathBuf>,
    /// `client.max_kill_timeout` (default 30s): the longest `kill_timeout` a task gets.
    pub max_kill_timeout: Duration,
    /// `client.min_dynamic_port` / `max_dynamic_port` (20000 / 32000), inclusive.
    pub min_dynamic_port: u16,
    pub max_dynamic_port: u16,
    /// `client.gc_*`.
    pub gc: GcSettings,
    /// `client.drain_on_shutdown`; `None` when the block is not written.
    pub drain_on_shutdown: Option<DrainOnShutdown>,
    /// `client.bridge_network_name`, `bridge_network_subnet`, `port_mapping`.
    pub network: crate::client::settings::NetworkSettings,
    /// `dns { … }`: the DNS server of agents that run a client.
    pub dns: crate::dns::settings::DnsSettings,
    /// Lower case, one of Nomad's levels.
    pub log_level: String,
    pub log_json: bool,
    /// Things that are allowed but probably not meant (an even `bootstrap_expect`), each
    /// naming its file and line; the agent logs them, `config validate` prints them.
    pub warnings: Vec<String>,
    /// The advertised addresses, resolved once when the config is built.
    advertised: Advertised,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Advertised {
    http: SocketAddr,
    rpc: SocketAddr,
    serf: SocketAddr,
}

/// Flags that override the files.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub dev: bool,
    pub data_dir: Option<PathBuf>,
    pub bind: Option<String>,
    pub http_port: Option<u16>,
    pub region: Option<String>,
    pub datacenter: Option<String>,
    pub node_name: Option<String>,
    pub log_level: Option<String>,
    /// `-log-json`: only ever turns JSON logs on.
    pub log_json: bool,
}

/// Problems found while building, each placed at its file and line.
#[derive(Default)]
struct Problems {
    errors: Vec<ConfigError>,
}

impl Problems {
    /// A problem with `key` as `file` writes it.
    fn at(&mut self, file: &FileConfig, key: &str, message: String) {
        self.errors.push(if file.source.is_empty() {
            ConfigError::general(message)
        } else {
            ConfigError::at(&file.source, file.lines.line_of(key), message)
        });
    }

    /// A problem with `key` as the files combined say it: placed at the last file that writes
    /// it, or nowhere (a default or a flag).
    fn merged(&mut self, files: &[FileConfig], key: &str, message: String) {
        match files
            .iter()
            .rev()
            .find(|f| !key.is_empty() && f.lines.contains(key))
        {
            Some(f) => self.at(f, key, message),
            None => self.errors.push(ConfigError::general(message)),
        }
    }
}

impl AgentConfig {
    /// The address other servers dial for Raft and RPC: never `0.0.0.0`.
    pub fn advertise_rpc_addr(&self) -> SocketAddr {
        self.advertised.rpc
    }

    /// The address clients and the CLI are told to use for the HTTP API: never `0.0.0.0`.
    pub fn advertise_http_addr(&self) -> SocketAddr {
        self.advertised.http
    }

    /// Where the client keeps allocation directories: `client.alloc_dir`, else
    /// `<data_dir>/alloc`.
    pub fn client_alloc_dir(&self) -> PathBuf {
        self.alloc_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("alloc"))
    }

    /// Where the client keeps its state (node id, supervisor socket): `client.state_dir`,
    /// else `<data_dir>/client`.
    pub fn client_state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("client"))
    }

    /// The address advertised for gossip (`advertise.serf`, port `ports.serf`).
    pub fn advertise_serf_addr(&self) -> SocketAddr {
        self.advertised.serf
    }

    /// Merges defaults, the files (in order) and the flags, and checks the whole.
    /// `temp_data_dir` supplies a fresh directory when the dev agent has none.
    pub fn build(
        files: &[FileConfig],
        flags: &Overrides,
        temp_data_dir: impl FnOnce() -> anyhow::Result<PathBuf>,
    ) -> Result<AgentConfig, ConfigErrors> {
        Self::build_on_host(files, flags, temp_data_dir, &mut addr::host_ipv4s)
    }

    /// [`AgentConfig::build`] with this host's IPv4 addresses coming from `host_ipv4s`
    /// (asked only when an advertise address must be derived from `0.0.0.0`).
    pub fn build_on_host(
        files: &[FileConfig],
        flags: &Overrides,
        temp_data_dir: impl FnOnce() -> anyhow::Result<PathBuf>,
        host_ipv4s: &mut dyn FnMut() -> Result<Vec<Ipv4Addr>, String>,
    ) -> Result<AgentConfig, ConfigErrors> {
        Self::build_for_machine(
            files,
            flags,
            temp_data_dir,
            host_ipv4s,
            &mut crate::client::fingerprint::machine_totals,
        )
    }

    /// [`AgentConfig::build_on_host`] with the machine's totals (to check `client.reserved`
    /// against) coming from `machine`, asked only when something is reserved.
    pub fn build_for_machine(
        files: &[FileConfig],
        flags: &Overrides,
        temp_data_dir: impl FnOnce() -> anyhow::Result<PathBuf>,
        host_ipv4s: &mut dyn FnMut() -> Result<Vec<Ipv4Addr>, String>,
        machine: MachineReader<'_>,
    ) -> Result<AgentConfig, ConfigErrors> {
        let mut c = Self::defaults(flags.dev);
        let mut problems = Problems::default();
        let mut data_dir = None;
        for f in files {
            c.apply_file(f, &mut data_dir, &mut problems);
        }
        c.apply_flags(flags, &mut data_dir);
        c.finish(
            data_dir,
            files,
            temp_data_dir,
            host_ipv4s,
            machine,
            &mut problems,
        );
        // Read in file order, line by line; what belongs to no file comes last.
        problems.errors.sort_by_key(|e| {
            let file = e
                .file
                .as_ref()
                .and_then(|name| files.iter().position(|f| &f.source == name));
            (file.unwrap_or(usize::MAX), e.line.unwrap_or(usize::MAX))
        });
        if problems.errors.is_empty() {
            Ok(c)
        } else {
            Err(ConfigErrors(problems.errors))
        }
    }

    fn defaults(dev: bool) -> AgentConfig {
        let unset = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        AgentConfig {
            dev,
            data_dir: PathBuf::new(),
            ephemeral: false,
            region: "global".into(),
            datacenter: "dc1".into(),
            name: String::new(),
            bind_addr: if dev { "127.0.0.1" } else { "0.0.0.0" }.into(),
            http_port: 4646,
            rpc_port: 4647,
            serf_port: 4648,
            advertise_http: None,
            advertise_rpc: None,
            advertise_serf: None,
            server_enabled: dev,
            server: ServerSettings::defaults(dev),
            tls: TlsSettings::default(),
            autopilot: AutopilotSettings::default(),
            client_enabled: dev,
            node_class: String::new(),
            node_pool: "default".into(),
            meta: BTreeMap::new(),
            chroot_env: None,
            raw_exec_enabled: false,
            allow_caps: capabilities::NOMAD_DEFAULT_ALLOW
                .iter()
                .map(|s| s.to_string())
                .collect(),
            denied_uids: Default::default(),
            denied_gids: Default::default(),
            default_pid_mode: controlplane::drivers::NamespaceMode::Private,
            default_ipc_mode: controlplane::drivers::NamespaceMode::Private,
            cgroup_parent: "noded".into(),
            client_servers: Vec::new(),
            client_join: JoinSettings::default(),
            reserved: ReservedConfig::default(),
            host_volumes: BTreeMap::new(),
            network_interface: None,
            alloc_dir: None,
            state_dir: None,
            max_kill_timeout: Duration::from_secs(30),
            min_dynamic_port: crate::client::settings::DEFAULT_MIN_DYNAMIC_PORT,
            max_dynamic_port: crate::client::settings::DEFAULT_MAX_DYNAMIC_PORT,
            gc: GcSettings::default(),
            drain_on_shutdown: None,
            network: crate::client::settings::NetworkSettings::default(),
            dns: crate::dns::settings::DnsSettings::default(),
            log_level: "info".into(),
            log_json: false,
            warnings: Vec::new(),
            advertised: Advertised {
                http: unset,
                rpc: unset,
                serf: unset,
            },
        }
    }

    /// Takes what one file sets (later files override earlier ones).
    fn apply_file(&mut self, f: &FileConfig, data_dir: &mut Option<PathBuf>, p: &mut Problems) {
        if let Some(v) = &f.data_dir {
            *data_dir = Some(v.clone());
        }
        self.apply_top_level(f, &mut |key, message| p.at(f, key, message));
        for (i, s) in f.server.iter().enumerate() {
            if let Some(v) = s.enabled {
                self.server_enabled = v;
            }
            let mut report = |key: &str, m| p.at(f, &in_block(key, "server", i, &f.server), m);
            cluster::apply_server(&mut self.server, s, &mut report);
        }
        for t in &f.tls {
            cluster::apply_tls(&mut self.tls, t);
        }
        for (i, a) in f.autopilot.iter().enumerate() {
            let mut report =
                |key: &str, m| p.at(f, &in_block(key, "autopilot", i, &f.autopilot), m);
            cluster::apply_autopilot(&mut self.autopilot, a, &mut report);
        }
        for (i, d) in f.dns.iter().enumerate() {
            let mut report = |key: &str, m| p.at(f, &in_block(key, "dns", i, &f.dns), m);
            dns::apply_dns(&mut self.dns, d, &mut report);
        }
        for (i, cl) in f.client.iter().enumerate() {
            let mut report = |key: &str, m| p.at(f, &in_block(key, "client", i, &f.client), m);
            self.apply_client(cl, &mut report);
        }
        let mut report = |key: &str, message: String| p.at(f, key, message);
        if let Some(raw) = f.plugin.get("raw_exec") {
            if let Some(v) = raw.config.get("enabled") {
                match v.as_bool() {
                    Some(b) => self.raw_exec_enabled = b,
                    None => report(
                        "plugin.raw_exec.config.enabled",
                        "plugin \"raw_exec\" config.enabled must be true or false".into(),
                    ),
                }
            }
        }
        if let Some(exec) = f.plugin.get("exec") {
            self.apply_exec_plugin(exec, &mut report);
        }
    }

    /// `region`, `datacenter`, `name`, `bind_addr`, `log_level`, `log_json`, `ports`,
    /// `advertise`.
    fn apply_top_level(&mut self, f: &FileConfig, report: error::Report<'_>) {
        let c = self;
        for (value, slot) in [
            (&f.region, &mut c.region),
            (&f.datacenter, &mut c.datacenter),
            (&f.name, &mut c.name),
            (&f.bind_addr, &mut c.bind_addr),
        ] {
            if let Some(v) = value {
                *slot = v.clone();
            }
        }
        if let Some(v) = &f.log_level {
            match log_level(v) {
                Some(level) => c.log_level = level,
                None => report("log_level", log_level_error("log_level", v)),
            }
        }
        if let Some(v) = f.log_json {
            c.log_json = v;
        }
        for p in &f.ports {
            for (value, slot) in [
                (p.http, &mut c.http_port),
                (p.rpc, &mut c.rpc_port),
                (p.serf, &mut c.serf_port),
            ] {
                if let Some(v) = value {
                    *slot = v;
                }
            }
        }
        for a in &f.advertise {
            for (value, slot) in [
                (&a.http, &mut c.advertise_http),
                (&a.rpc, &mut c.advertise_rpc),
                (&a.serf, &mut c.advertise_serf),
            ] {
                if let Some(v) = value {
                    *slot = Some(v.clone());
                }
            }
        }
    }

    /// The `client` block.
    fn apply_client(&mut self, cl: &ClientBlock, report: error::Report<'_>) {
        let c = self;
        if let Some(v) = cl.enabled {
            c.client_enabled = v;
        }
        if let Some(v) = &cl.node_class {
            c.node_class = v.clone();
        }
        if let Some(v) = &cl.node_pool {
            c.node_pool = v.clone();
        }
        c.meta.extend(cl.meta.clone());
        if let Some(env) = &cl.chroot_env {
            let mut binds = Vec::new();
            for (host, task) in env {
                let (h, t) = (PathBuf::from(host), PathBuf::from(task));
                if !h.is_absolute() || !t.is_absolute() {
                    report(
                        &format!("client.chroot_env.{host}"),
                        format!(
                            "client.chroot_env: {host:?} = {task:?}: both paths must be absolute"
                        ),
                    );
                    continue;
                }
                binds.push((h, t));
            }
            c.chroot_env = Some(binds);
        }
        if let Some(v) = &cl.cgroup_parent {
            if v.is_empty() || v.contains('/') || v == "." || v == ".." {
                report(
                    "client.cgroup_parent",
                    format!(
                        "client.cgroup_parent = {v:?}: give a single cgroup name such as \"noded\""
                    ),
                );
            } else {
                c.cgroup_parent = v.clone();
            }
        }
        client::apply(c, cl, report);
    }

    /// `plugin "exec" { config { … } }`: what the node allows exec tasks.
    fn apply_exec_plugin(&mut self, exec: &PluginBlock, report: error::Report<'_>) {
        let c = self;
        let mut text = |key: &str| -> Option<String> {
            match exec.config.get(key) {
                None => None,
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(other) => {
                    report(
                        &format!("plugin.exec.config.{key}"),
                        format!("plugin \"exec\" config.{key} must be a string, not {other}"),
                    );
                    None
                }
            }
        };
        let uids = text("denied_host_uids");
        let gids = text("denied_host_gids");
        let pid = text("default_pid_mode");
        let ipc = text("default_ipc_mode");
        for (key, value, slot) in [
            ("denied_host_uids", uids, &mut c.denied_uids),
            ("denied_host_gids", gids, &mut c.denied_gids),
        ] {
            if let Some(v) = value {
                match crate::driver::IdRanges::parse(&v) {
                    Ok(r) => *slot = r,
                    Err(e) => report(
                        &format!("plugin.exec.config.{key}"),
                        format!("plugin \"exec\" config.{key}: {e}"),
                    ),
                }
            }
        }
        for (key, value, slot) in [
            ("default_pid_mode", pid, &mut c.default_pid_mode),
            ("default_ipc_mode", ipc, &mut c.default_ipc_mode),
        ] {
            match value.as_deref() {
                None => {}
                Some("private") => *slot = controlplane::drivers::NamespaceMode::Private,
                Some("host") => *slot = controlplane::drivers::NamespaceMode::Host,
                Some(other) => report(
                    &format!("plugin.exec.config.{key}"),
                    format!(
                        "plugin \"exec\" config.{key} = {other:?}: must be \"private\" or \"host\""
                    ),
                ),
            }
        }
        if let Some(v) = exec.config.get("allow_caps") {
            if let Some(caps) = allow_caps(v, report) {
                c.allow_caps = caps;
            }
        }
    }

    /// The command-line flags over the files.
    fn apply_flags(&mut self, flags: &Overrides, data_dir: &mut Option<PathBuf>) {
        let c = self;
        for (value, slot) in [
            (&flags.bind, &mut c.bind_addr),
            (&flags.region, &mut c.region),
            (&flags.datacenter, &mut c.datacenter),
            (&flags.node_name, &mut c.name),
        ] {
            if let Some(v) = value {
                *slot = v.clone();
            }
        }
        if c.name.is_empty() {
            // Nomad's default: the machine's host name.
            c.name = nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "noded".to_string());
        }
        if let Some(v) = flags.http_port {
            c.http_port = v;
        }
        if let Some(v) = &flags.log_level {
            // Checked in `finish`, where a flag's problems are reported.
            c.log_level = log_level(v).unwrap_or_else(|| v.clone());
        }
        c.log_json |= flags.log_json;
        if let Some(v) = &flags.data_dir {
            *data_dir = Some(v.clone());
        }
    }

    /// The data dir, and the checks of the whole.
    fn finish(
        &mut self,
        data_dir: Option<PathBuf>,
        files: &[FileConfig],
        temp_data_dir: impl FnOnce() -> anyhow::Result<PathBuf>,
        host_ipv4s: &mut dyn FnMut() -> Result<Vec<Ipv4Addr>, String>,
        machine: MachineReader<'_>,
        p: &mut Problems,
    ) {
        let c = self;
        c.finish_data_dir(data_dir, files, temp_data_dir, p);
        if !LOG_LEVELS.contains(&c.log_level.as_str()) {
            p.errors.push(ConfigError::general(log_level_error(
                "-log-level",
                &c.log_level,
            )));
        }
        if c.region.is_empty() || c.region.contains('\0') {
            p.merged(
                files,
                "region",
                format!(
                    "region = {:?}: give a region name without NUL characters",
                    c.region
                ),
            );
        }
        if c.datacenter.is_empty() || c.datacenter.contains(['\0', '*']) {
            p.merged(
                files,
                "datacenter",
                format!(
                    "datacenter = {:?}: give a datacenter name without NUL or '*'",
                    c.datacenter
                ),
            );
        }
        if !c.server_enabled && !c.client_enabled {
            p.errors.push(ConfigError::general("neither server nor client is enabled: enable one in the agent config (server { enabled = true }) or use -dev"));
        }
        c.finish_addresses(files, host_ipv4s, p);
        if c.server_enabled {
            c.finish_server(files, p);
        }
        if c.client_enabled {
            client::finish(c, files, machine, p);
        }
        if c.dev {
            // Nomad's dev agent enables raw_exec too.
            c.raw_exec_enabled = true;
        }
    }

    fn finish_data_dir(
        &mut self,
        data_dir: Option<PathBuf>,
        files: &[FileConfig],
        temp_data_dir: impl FnOnce() -> anyhow::Result<PathBuf>,
        p: &mut Problems,
    ) {
        let c = self;
        match data_dir {
            Some(d) => c.data_dir = d,
            None if c.dev => match temp_data_dir() {
                Ok(d) => {
                    c.data_dir = d;
                    c.ephemeral = true;
                }
                Err(e) => p.errors.push(ConfigError::general(format!(
                    "creating a temporary data dir for -dev: {e:#}"
                ))),
            },
            None => p.errors.push(ConfigError::general(
                "no data_dir: set data_dir in the agent config or pass -data-dir (or use -dev)",
            )),
        }
        if !c.data_dir.as_os_str().is_empty() && !c.data_dir.is_absolute() {
            match std::env::current_dir() {
                Ok(cwd) => c.data_dir = cwd.join(&c.data_dir),
                Err(e) => p.merged(
                    files,
                    "data_dir",
                    format!(
                        "data_dir = {:?} is relative and the current directory is unknown ({e}); give an absolute path",
                        c.data_dir.display().to_string()
                    ),
                ),
            }
        }
    }

    /// `bind_addr` and the advertised addresses.
    fn finish_addresses(
        &mut self,
        files: &[FileConfig],
        host_ipv4s: &mut dyn FnMut() -> Result<Vec<Ipv4Addr>, String>,
        p: &mut Problems,
    ) {
        let c = self;
        let bind = match addr::parse_bind(&c.bind_addr) {
            Ok(ip) => ip,
            Err(e) => return p.merged(files, "bind_addr", e),
        };
        let wanted = [
            ("advertise.http", c.advertise_http.clone(), c.http_port),
            ("advertise.rpc", c.advertise_rpc.clone(), c.rpc_port),
            ("advertise.serf", c.advertise_serf.clone(), c.serf_port),
        ];
        let mut resolved = Vec::new();
        for (key, written, port) in wanted {
            match addr::resolve(key, written.as_deref(), bind, port, c.dev, host_ipv4s) {
                Ok(a) => resolved.push(a),
                Err(e) => p.merged(files, key, e),
            }
        }
        if let [http, rpc, serf] = resolved[..] {
            c.advertised = Advertised { http, rpc, serf };
        }
    }

    /// Bootstrapping and TLS of a server.
    fn finish_server(&mut self, files: &[FileConfig], p: &mut Problems) {
        let c = self;
        let (errors, warnings) = cluster::check_bootstrap(&c.server, c.dev);
        for e in errors {
            p.merged(files, "server.bootstrap_expect", e);
        }
        for w in warnings {
            let mut placed = Problems::default();
            placed.merged(files, "server.bootstrap_expect", w);
            c.warnings
                .extend(placed.errors.iter().map(ToString::to_string));
        }
        for (key, e) in cluster::check_tls(&c.tls, c.dev, c.server_enabled, &c.region) {
            p.merged(files, key, e);
        }
    }
}

/// `server.x` of the `i`th of several `server` blocks in one file is `server[i].x`, as
/// [`KeyLines`] records it.
fn in_block<T>(key: &str, block: &str, i: usize, all: &[T]) -> String {
    match key.strip_prefix(block) {
        Some(rest) if all.len() > 1 && rest.starts_with('.') => format!("{block}[{i}]{rest}"),
        _ => key.to_string(),
    }
}

/// `allow_caps = ["net_raw", "CAP_CHOWN"]`, read as the control plane reads `cap_add`.
fn allow_caps(v: &serde_json::Value, report: error::Report<'_>) -> Option<Vec<String>> {
    let key = "plugin.exec.config.allow_caps";
    let Some(texts) = v
        .as_array()
        .and_then(|list| list.iter().map(|x| x.as_str()).collect::<Option<Vec<_>>>())
    else {
        report(
            key,
            "plugin \"exec\" config.allow_caps must be a list of capability names".into(),
        );
        return None;
    };
    let mut caps = Vec::new();
    for text in texts {
        match capabilities::normalize(text) {
            Some(cap) => caps.push(cap.to_string()),
            None => report(
                key,
                format!("plugin \"exec\" config.allow_caps: {text:?} is not a Linux capability"),
            ),
        }
    }
    (caps.len() == v.as_array().map_or(0, Vec::len)).then_some(caps)
}

fn log_level(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    LOG_LEVELS.contains(&lower.as_str()).then_some(lower)
}

fn log_level_error(key: &str, text: &str) -> String {
    format!(
        "{key} = {text:?}: must be one of {} (any case)",
        LOG_LEVELS.map(str::to_uppercase).join(", ")
    )
}
