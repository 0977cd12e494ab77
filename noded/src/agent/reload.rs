//! SIGHUP: read the agent's config files again and apply what can change while it runs — the
//! log level, the TLS certificates of the fabric, the node's `meta` and `reserved` — and say
//! what changed but needs a restart.
//!
//! The comparison of the two configs is a pure function ([`changes`]); a config that no
//! longer builds changes nothing and is reported with every error.

use std::path::PathBuf;
use std::sync::Arc;

use federation::{Fabric, TlsMaterial};

use super::config::{AgentConfig, Overrides};
use super::systemd;
use crate::client::Client;

/// Changes the log filter of the running process (`log_level`).
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What the agent needs to read its config again.
pub struct Reload {
    /// The `-config` paths, read again as they are now.
    pub paths: Vec<PathBuf>,
    /// The command-line flags, which keep overriding the files.
    pub overrides: Overrides,
    pub set_log_level: SetLogLevel,
}

impl std::fmt::Debug for Reload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reload")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

/// What a reload found changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub log_level: bool,
    pub tls: bool,
    pub meta: bool,
    pub reserved: bool,
    /// Settings that changed but only take effect after a restart, by config key.
    pub need_restart: Vec<&'static str>,
}

impl Changes {
    pub fn reloaded(&self) -> Vec<&'static str> {
        [
            (self.log_level, "log_level"),
            (self.tls, "tls certificates"),
            (self.meta, "client.meta"),
            (self.reserved, "client.reserved"),
        ]
        .into_iter()
        .filter_map(|(changed, name)| changed.then_some(name))
        .collect()
    }
}

/// What differs between the running config and the one read now.
pub fn changes(old: &AgentConfig, new: &AgentConfig) -> Changes {
    let mut need_restart = Vec::new();
    let mut differs = |key: &'static str, changed: bool| {
        if changed {
            need_restart.push(key);
        }
    };
    differs("name", old.name != new.name);
    differs("region", old.region != new.region);
    differs("datacenter", old.datacenter != new.datacenter);
    differs("bind_addr", old.bind_addr != new.bind_addr);
    differs(
        "ports",
        (old.http_port, old.rpc_port, old.serf_port)
            != (new.http_port, new.rpc_port, new.serf_port),
    );
    differs(
        "advertise",
        (&old.advertise_http, &old.advertise_rpc, &old.advertise_serf)
            != (&new.advertise_http, &new.advertise_rpc, &new.advertise_serf),
    );
    differs(
        "server",
        old.server_enabled != new.server_enabled || old.server != new.server,
    );
    differs("autopilot", old.autopilot != new.autopilot);
    differs("dns", old.dns != new.dns);
    differs("client.enabled", old.client_enabled != new.client_enabled);
    differs(
        "client.servers",
        old.client_servers != new.client_servers || old.client_join != new.client_join,
    );
    differs("client.node_class", old.node_class != new.node_class);
    differs("client.node_pool", old.node_pool != new.node_pool);
    differs("client.host_volume", old.host_volumes != new.host_volumes);
    differs("client.gc_*", old.gc != new.gc);
    differs(
        "client.drain_on_shutdown",
        old.drain_on_shutdown != new.drain_on_shutdown,
    );
    differs(
        "plugin \"raw_exec\"",
        old.raw_exec_enabled != new.raw_exec_enabled,
    );
    differs(
        "tls.rpc or tls.http",
        (old.tls.rpc, old.tls.http) != (new.tls.rpc, new.tls.http),
    );
    Changes {
        log_level: old.log_level != new.log_level,
        tls: (&old.tls.ca_file, &old.tls.cert_file, &old.tls.key_file)
            != (&new.tls.ca_file, &new.tls.cert_file, &new.tls.key_file),
        meta: old.meta != new.meta,
        reserved: old.reserved != new.reserved,
        need_restart,
    }
}

/// Reloads on every SIGHUP until the agent stops.
pub async fn run(
    reload: Reload,
    mut current: AgentConfig,
    fabric: Fabric,
    client: Option<Arc<Client>>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch SIGHUP, so the config cannot be reloaded: {e}");
            return;
        }
    };
    while hangup.recv().await.is_some() {
        systemd::reloading();
        tracing::info!(paths = ?reload.paths, "SIGHUP: reading the config again");
        match reload_once(&reload, &current, &fabric, client.as_deref()) {
            Ok(next) => current = next,
            Err(e) => tracing::error!("reloading the config: {e}; the running config is kept"),
        }
        systemd::ready("serving (config reloaded)");
    }
}

fn reload_once(
    reload: &Reload,
    current: &AgentConfig,
    fabric: &Fabric,
    client: Option<&Client>,
) -> anyhow::Result<AgentConfig> {
    let files = super::config::load_paths(&reload.paths)?;
    let next = AgentConfig::build(&files, &reload.overrides, super::temp_data_dir)?;
    let found = changes(current, &next);
    if found.log_level {
        (reload.set_log_level)(&next.log_level)
            .map_err(|e| anyhow::anyhow!("log_level = {:?}: {e}", next.log_level))?;
    }
    if found.tls {
        let (Some(ca), Some(cert), Some(key)) =
            (&next.tls.ca_file, &next.tls.cert_file, &next.tls.key_file)
        else {
            anyhow::bail!(
                "tls: ca_file, cert_file and key_file must all be set to reload certificates"
            );
        };
        let tls = TlsMaterial::load(ca, cert, key)?;
        fabric.reload_tls(&tls)?;
    }
    if let Some(client) = client {
        if found.meta || found.reserved {
            client.reload(next.meta.clone(), next.reserved.clone());
        }
    }
    let reloaded = found.reloaded();
    tracing::info!(
        reloaded = %if reloaded.is_empty() { "nothing changed".to_string() } else { reloaded.join(", ") },
        "config reloaded"
    );
    if !found.need_restart.is_empty() {
        tracing::warn!(
            "changed but not reloaded (restart the agent for these): {}",
            found.need_restart.join(", ")
        );
    }
    // What was not reloaded keeps running as it was: remember it as it runs, so a later
    // reload compares against what is in effect.
    let mut kept = current.clone();
    kept.log_level = next.log_level.clone();
    kept.tls.ca_file = next.tls.ca_file.clone();
    kept.tls.cert_file = next.tls.cert_file.clone();
    kept.tls.key_file = next.tls.key_file.clone();
    kept.meta = next.meta.clone();
    kept.reserved = next.reserved.clone();
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev_config() -> AgentConfig {
        let overrides = Overrides {
            dev: true,
            data_dir: Some(PathBuf::from("/nonexistent/noded-reload-test")),
            ..Default::default()
        };
        AgentConfig::build(&[], &overrides, || unreachable!("the data dir is given")).unwrap()
    }

    #[test]
    fn what_can_change_while_running_is_told_apart_from_what_needs_a_restart() {
        let old = dev_config();
        assert_eq!(changes(&old, &old.clone()), Changes::default());

        let mut new = old.clone();
        new.log_level = "debug".into();
        new.meta.insert("rack".into(), "r2".into());
        new.reserved.memory_mb = 512;
        new.tls.cert_file = Some("/etc/noded/new.pem".into());
        new.node_class = "big".into();
        new.http_port = 5646;
        let found = changes(&old, &new);
        assert_eq!(
            found.reloaded(),
            vec![
                "log_level",
                "tls certificates",
                "client.meta",
                "client.reserved"
            ]
        );
        assert_eq!(found.need_restart, vec!["ports", "client.node_class"]);
    }
}
