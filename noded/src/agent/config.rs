//! The agent's configuration: Nomad's agent HCL (`data_dir`, `bind_addr`, `ports`, `server`,
//! `client`, `plugin "raw_exec"`…), dev-mode defaults, and flag overrides. Unknown keys are an
//! error naming the file, never silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The agent config file, as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file it was read from, for errors found when files are combined.
    #[serde(skip)]
    pub source: String,
    pub data_dir: Option<PathBuf>,
    pub region: Option<String>,
    pub datacenter: Option<String>,
    pub name: Option<String>,
    pub bind_addr: Option<String>,
    pub log_level: Option<String>,
    pub ports: Option<Ports>,
    pub server: Option<ServerBlock>,
    pub client: Option<ClientBlock>,
    #[serde(default)]
    pub plugin: BTreeMap<String, PluginBlock>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    pub http: Option<u16>,
    pub rpc: Option<u16>,
    pub serf: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerBlock {
    pub enabled: Option<bool>,
    pub bootstrap_expect: Option<u32>,
    pub num_schedulers: Option<usize>,
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
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginBlock {
    #[serde(default)]
    pub config: BTreeMap<String, serde_json::Value>,
}

/// Reads and parses an agent config file.
pub fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading agent config {}: {e}", path.display()))?;
    parse(&text, &path.display().to_string())
}

pub fn parse(text: &str, name: &str) -> anyhow::Result<FileConfig> {
    let mut config: FileConfig = if name.ends_with(".json") {
        serde_json::from_str(text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?
    } else {
        hcl::from_str(text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?
    };
    config.source = name.to_string();
    for (plugin, block) in &config.plugin {
        let known: &[&str] = match plugin.as_str() {
            "raw_exec" => &["enabled"],
            "exec" => &[
                "allow_caps",
                "denied_host_uids",
                "denied_host_gids",
                "default_pid_mode",
                "default_ipc_mode",
            ],
            other => anyhow::bail!(
                "{name}: plugin {other:?} is unknown (noded has plugins \"exec\" and \"raw_exec\")"
            ),
        };
        for key in block.config.keys() {
            if !known.contains(&key.as_str()) {
                anyhow::bail!(
                    "{name}: plugin {plugin:?} config: unknown option {key:?} (known: {})",
                    known.join(", ")
                );
            }
        }
    }
    Ok(config)
}

/// The settings the agent runs with, after defaults, file and flags.
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
    pub server_enabled: bool,
    pub num_schedulers: Option<usize>,
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
    pub gc_max_allocs: usize,
    pub cgroup_parent: String,
    pub log_level: String,
}

/// Flags that override the file.
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
}

impl AgentConfig {
    /// Merges defaults, the files (in order) and the flags. `temp_data_dir` supplies a fresh
    /// directory when the dev agent has none.
    pub fn build(
        files: &[FileConfig],
        flags: &Overrides,
        temp_data_dir: impl FnOnce() -> anyhow::Result<PathBuf>,
    ) -> anyhow::Result<AgentConfig> {
        let mut c = AgentConfig {
            dev: flags.dev,
            data_dir: PathBuf::new(),
            ephemeral: false,
            region: "global".into(),
            datacenter: "dc1".into(),
            name: String::new(),
            bind_addr: if flags.dev {
                "127.0.0.1".into()
            } else {
                "0.0.0.0".into()
            },
            http_port: 4646,
            rpc_port: 4647,
            server_enabled: flags.dev,
            num_schedulers: None,
            client_enabled: flags.dev,
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
            gc_max_allocs: 50,
            cgroup_parent: "noded".into(),
            log_level: "info".into(),
        };
        let mut data_dir = None;
        for f in files {
            c.apply_file(f, &mut data_dir).map_err(|e| {
                if f.source.is_empty() {
                    e
                } else {
                    anyhow::anyhow!("{}: {e}", f.source)
                }
            })?;
        }
        Self::finish(c, data_dir, flags, temp_data_dir)
    }

    /// Takes what one file sets (later files override earlier ones).
    fn apply_file(&mut self, f: &FileConfig, data_dir: &mut Option<PathBuf>) -> anyhow::Result<()> {
        if let Some(v) = &f.data_dir {
            *data_dir = Some(v.clone());
        }
        self.apply_top_level(f);
        if let Some(s) = &f.server {
            self.apply_server(s)?;
        }
        if let Some(cl) = &f.client {
            self.apply_client(cl)?;
        }
        if let Some(raw) = f.plugin.get("raw_exec") {
            if let Some(v) = raw.config.get("enabled") {
                self.raw_exec_enabled = v.as_bool().ok_or_else(|| {
                    anyhow::anyhow!("plugin \"raw_exec\" config.enabled must be true or false")
                })?;
            }
        }
        if let Some(exec) = f.plugin.get("exec") {
            self.apply_exec_plugin(exec)?;
        }
        Ok(())
    }

    /// `region`, `datacenter`, `name`, `bind_addr`, `log_level`, `ports`.
    fn apply_top_level(&mut self, f: &FileConfig) {
        let c = self;
        if let Some(v) = &f.region {
            c.region = v.clone();
        }
        if let Some(v) = &f.datacenter {
            c.datacenter = v.clone();
        }
        if let Some(v) = &f.name {
            c.name = v.clone();
        }
        if let Some(v) = &f.bind_addr {
            c.bind_addr = v.clone();
        }
        if let Some(v) = &f.log_level {
            c.log_level = v.clone();
        }
        if let Some(p) = &f.ports {
            if let Some(v) = p.http {
                c.http_port = v;
            }
            if let Some(v) = p.rpc {
                c.rpc_port = v;
            }
        }
    }

    /// The `server` block.
    fn apply_server(&mut self, s: &ServerBlock) -> anyhow::Result<()> {
        if let Some(v) = s.enabled {
            self.server_enabled = v;
        }
        if let Some(n) = s.bootstrap_expect {
            if n > 1 {
                anyhow::bail!("server.bootstrap_expect = {n}: this noded runs single-server regions only (multi-server Raft arrives later); use 1");
            }
        }
        if s.num_schedulers.is_some() {
            self.num_schedulers = s.num_schedulers;
        }
        Ok(())
    }

    /// The `client` block.
    fn apply_client(&mut self, cl: &ClientBlock) -> anyhow::Result<()> {
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
                    anyhow::bail!(
                        "client.chroot_env: {host:?} = {task:?}: both paths must be absolute"
                    );
                }
                binds.push((h, t));
            }
            c.chroot_env = Some(binds);
        }
        if let Some(v) = cl.gc_max_allocs {
            c.gc_max_allocs = v;
        }
        if let Some(v) = &cl.cgroup_parent {
            if v.is_empty() || v.contains('/') || v == "." || v == ".." {
                anyhow::bail!(
                    "client.cgroup_parent = {v:?}: give a single cgroup name such as \"noded\""
                );
            }
            c.cgroup_parent = v.clone();
        }
        Ok(())
    }

    /// `plugin "exec" { config { … } }`: what the node allows exec tasks.
    fn apply_exec_plugin(&mut self, exec: &PluginBlock) -> anyhow::Result<()> {
        let c = self;
        let text = |key: &str| -> anyhow::Result<Option<String>> {
            match exec.config.get(key) {
                None => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => {
                    anyhow::bail!("plugin \"exec\" config.{key} must be a string, not {other}")
                }
            }
        };
        if let Some(v) = text("denied_host_uids")? {
            c.denied_uids = crate::driver::IdRanges::parse(&v)
                .map_err(|e| anyhow::anyhow!("plugin \"exec\" config.denied_host_uids: {e}"))?;
        }
        if let Some(v) = text("denied_host_gids")? {
            c.denied_gids = crate::driver::IdRanges::parse(&v)
                .map_err(|e| anyhow::anyhow!("plugin \"exec\" config.denied_host_gids: {e}"))?;
        }
        for (key, slot) in [
            ("default_pid_mode", &mut c.default_pid_mode),
            ("default_ipc_mode", &mut c.default_ipc_mode),
        ] {
            match text(key)?.as_deref() {
                None => {}
                Some("private") => *slot = controlplane::drivers::NamespaceMode::Private,
                Some("host") => *slot = controlplane::drivers::NamespaceMode::Host,
                Some(other) => anyhow::bail!(
                    "plugin \"exec\" config.{key} = {other:?}: must be \"private\" or \"host\""
                ),
            }
        }
        if let Some(v) = exec.config.get("allow_caps") {
            let list = v.as_array().ok_or_else(|| {
                anyhow::anyhow!(
                    "plugin \"exec\" config.allow_caps must be a list of capability names"
                )
            })?;
            let texts = list
                .iter()
                .map(|x| x.as_str())
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    anyhow::anyhow!("plugin \"exec\" config.allow_caps must hold strings")
                })?;
            // Read as the control plane reads cap_add: `CAP_NET_RAW` → `net_raw`.
            c.allow_caps = texts
                .into_iter()
                .map(|text| match capabilities::normalize(text) {
                    Some(cap) => Ok(cap.to_string()),
                    None => Err(anyhow::anyhow!(
                        "plugin \"exec\" config.allow_caps: {text:?} is not a Linux capability"
                    )),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
        }
        Ok(())
    }

    /// The command-line flags over the files, the data dir, and the checks of the whole.
    fn finish(
        mut c: AgentConfig,
        mut data_dir: Option<PathBuf>,
        flags: &Overrides,
        temp_data_dir: impl FnOnce() -> anyhow::Result<PathBuf>,
    ) -> anyhow::Result<AgentConfig> {
        if let Some(v) = &flags.bind {
            c.bind_addr = v.clone();
        }
        if let Some(v) = flags.http_port {
            c.http_port = v;
        }
        if let Some(v) = &flags.region {
            c.region = v.clone();
        }
        if let Some(v) = &flags.datacenter {
            c.datacenter = v.clone();
        }
        if let Some(v) = &flags.node_name {
            c.name = v.clone();
        }
        if let Some(v) = &flags.log_level {
            c.log_level = v.clone();
        }
        if let Some(v) = &flags.data_dir {
            data_dir = Some(v.clone());
        }
        match data_dir {
            Some(d) => c.data_dir = d,
            None if c.dev => {
                c.data_dir = temp_data_dir()?;
                c.ephemeral = true;
            }
            None => anyhow::bail!(
                "no data_dir: set data_dir in the agent config or pass -data-dir (or use -dev)"
            ),
        }
        if !c.data_dir.is_absolute() {
            c.data_dir = std::env::current_dir()?.join(&c.data_dir);
        }
        if !c.server_enabled && !c.client_enabled {
            anyhow::bail!("neither server nor client is enabled: enable one in the agent config (server {{ enabled = true }}) or use -dev");
        }
        if c.client_enabled && !c.server_enabled {
            anyhow::bail!("a client-only agent needs servers to join, which arrives with multi-node support; run with server {{ enabled = true }} for now");
        }
        if c.dev {
            // Nomad's dev agent enables raw_exec too.
            c.raw_exec_enabled = true;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_defaults_use_a_temp_dir_and_loopback() {
        let c = AgentConfig::build(
            &[],
            &Overrides {
                dev: true,
                ..Default::default()
            },
            || Ok(PathBuf::from("/tmp/x")),
        )
        .unwrap();
        assert!(c.ephemeral && c.server_enabled && c.client_enabled);
        assert_eq!(c.bind_addr, "127.0.0.1");
        assert_eq!(c.http_port, 4646);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
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
        let c = AgentConfig::build(
            &[f],
            &Overrides {
                http_port: Some(6000),
                ..Default::default()
            },
            || unreachable!(),
        )
        .unwrap();
        assert_eq!(c.datacenter, "eu1");
        assert_eq!(c.http_port, 6000);
        assert!(c.raw_exec_enabled);
        assert!(!c.ephemeral);
        assert_eq!(
            c.chroot_env.unwrap(),
            vec![(PathBuf::from("/bin"), PathBuf::from("/bin"))]
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_naming_the_file() {
        let e = parse("data_dirr = \"/x\"\n", "agent.hcl")
            .unwrap_err()
            .to_string();
        assert!(e.contains("agent.hcl") && e.contains("data_dirr"), "{e}");
        let e = parse("plugin \"docker\" {\n  config {}\n}\n", "a.hcl")
            .unwrap_err()
            .to_string();
        assert!(e.contains("docker"), "{e}");
        let e = parse(
            "plugin \"raw_exec\" {\n  config {\n    enable = true\n  }\n}\n",
            "a.hcl",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"enable\""), "{e}");
        let f = parse("server { bootstrap_expect = 3 }\n", "a.hcl").unwrap();
        let e = AgentConfig::build(&[f], &Overrides::default(), || unreachable!())
            .unwrap_err()
            .to_string();
        assert!(e.contains("bootstrap_expect"), "{e}");
        let e = AgentConfig::build(&[], &Overrides::default(), || unreachable!())
            .unwrap_err()
            .to_string();
        assert!(e.contains("data_dir"), "{e}");
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
        let err = AgentConfig::build(&[good, bad], &Overrides::default(), || {
            unreachable!("not a dev agent")
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("exec.hcl: plugin \"exec\" config.allow_caps: \"bogus\""),
            "{err}"
        );
    }
}
