//! The `client` block beyond the basics: servers to register with, what the host reserves,
//! host volumes, directories, the dynamic port range, garbage collection and draining on
//! shutdown — Nomad's names and defaults — and the checks that need the machine (reserved
//! resources larger than it, host volume paths that do not exist).

use std::path::{Path, PathBuf};

use controlplane::model::duration::parse_go;
use controlplane::model::ClientHostVolumeConfig;

use super::cluster::{apply_join_settings, positive_duration};
use super::error::Report;
use super::{AgentConfig, ClientBlock, FileConfig, Problems};
use crate::client::fingerprint::MachineTotals;
use crate::client::settings;

/// The port `client.servers` entries get when they name none: the servers' RPC port.
pub const DEFAULT_SERVER_RPC_PORT: u16 = 4647;

/// Reads the machine's totals for the alloc dir's filesystem (checking `client.reserved`).
pub type MachineReader<'a> = &'a mut dyn FnMut(&Path) -> Result<MachineTotals, String>;

/// "host", "host:port", "ip", "ip:port", "[v6]" or "[v6]:port" → "host:port", the port 4647
/// when none is given.
pub fn server_address(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t.is_empty() || t.contains(char::is_whitespace) {
        return Err(format!(
            "{text:?} is not an address: write \"host:port\" or \"ip:port\""
        ));
    }
    if t.contains("provider=") {
        return Err(format!(
            "{text:?}: cloud auto-join is not supported; list the servers' addresses"
        ));
    }
    if t.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(t.to_string());
    }
    if let Ok(ip) = t.parse::<std::net::IpAddr>() {
        return Ok(std::net::SocketAddr::new(ip, DEFAULT_SERVER_RPC_PORT).to_string());
    }
    if t.starts_with('[') && t.ends_with(']') {
        return Ok(format!("{t}:{DEFAULT_SERVER_RPC_PORT}"));
    }
    match t.rsplit_once(':') {
        None => Ok(format!("{t}:{DEFAULT_SERVER_RPC_PORT}")),
        Some((host, port)) => match port.parse::<u16>() {
            Ok(p) if p > 0 && !host.is_empty() && !host.contains(':') => Ok(t.to_string()),
            _ => Err(format!(
                "{text:?} is not an address: write \"host:port\" or \"ip:port\" with a port from 1 to 65535"
            )),
        },
    }
}

/// An absolute path, or a problem saying so.
fn absolute(key: &str, path: &Path, report: Report<'_>) -> Option<PathBuf> {
    if path.is_absolute() {
        Some(path.to_path_buf())
    } else {
        report(
            key,
            format!(
                "{key} = {:?}: give an absolute path",
                path.display().to_string()
            ),
        );
        None
    }
}

/// A port key (`min_dynamic_port`) in 1–65535.
fn port(key: &str, v: i64, report: Report<'_>) -> Option<u16> {
    match u16::try_from(v) {
        Ok(p) if p > 0 => Some(p),
        _ => {
            report(
                key,
                format!("invalid dynamic port range: {key} = {v}: must be from 1 to 65535"),
            );
            None
        }
    }
}

/// `bridge_network_name`, `bridge_network_subnet`, `port_mapping`.
fn apply_network(c: &mut AgentConfig, cl: &ClientBlock, report: Report<'_>) {
    use crate::client::settings::{interface_name_problem, parse_bridge_subnet, PortMappingMode};
    if let Some(name) = &cl.bridge_network_name {
        match interface_name_problem(name) {
            Some(problem) => report(
                "client.bridge_network_name",
                format!("client.bridge_network_name = {name:?}: {problem}"),
            ),
            None => c.network.bridge_network_name = name.clone(),
        }
    }
    if let Some(text) = &cl.bridge_network_subnet {
        match parse_bridge_subnet(text) {
            Ok(subnet) => c.network.bridge_network_subnet = subnet,
            Err(e) => report(
                "client.bridge_network_subnet",
                format!("client.bridge_network_subnet: {e}"),
            ),
        }
    }
    if let Some(text) = &cl.port_mapping {
        match PortMappingMode::parse(text) {
            Ok(mode) => c.network.port_mapping = mode,
            Err(e) => report("client.port_mapping", format!("client.port_mapping: {e}")),
        }
    }
    for (name, block) in &cl.host_network {
        let key = format!("client.host_network.{name}");
        if name == "default" {
            report(
                &key,
                format!("{key}: \"default\" is the node's own address; choose another name"),
            );
            continue;
        }
        let mut network = crate::client::settings::HostNetwork::default();
        if let Some(text) = &block.cidr {
            match text.parse::<netns::Ipv4Cidr>() {
                Ok(cidr) => network.cidr = Some(cidr),
                Err(e) => report(&format!("{key}.cidr"), format!("{key}.cidr: {e}")),
            }
        }
        if let Some(iface) = &block.interface {
            match interface_name_problem(iface) {
                Some(problem) => report(
                    &format!("{key}.interface"),
                    format!("{key}.interface = {iface:?}: {problem}"),
                ),
                None => network.interface = Some(iface.clone()),
            }
        }
        if block.cidr.is_none() && block.interface.is_none() {
            report(
                &key,
                format!("{key}: give cidr (the host's address in it) or interface (its address), e.g. host_network {name:?} {{ cidr = \"10.0.0.0/8\" }}"),
            );
        }
        if let Some(ports) = &block.reserved_ports {
            match controlplane::model::parse_port_list(ports) {
                Ok(_) => network.reserved_ports = ports.clone(),
                Err(e) => report(
                    &format!("{key}.reserved_ports"),
                    format!("{key}.reserved_ports = {ports:?}: {e}"),
                ),
            }
        }
        c.network.host_networks.insert(name.clone(), network);
    }
}

/// A size or count that may not be negative.
fn not_negative(key: &str, v: i64, report: Report<'_>) -> Option<u64> {
    match u64::try_from(v) {
        Ok(n) => Some(n),
        Err(_) => {
            report(key, format!("{key} = {v}: must be 0 or more"));
            None
        }
    }
}

/// A percentage (`gc_disk_usage_threshold`).
fn percent(key: &str, v: f64, report: Report<'_>) -> Option<f64> {
    if (0.0..=100.0).contains(&v) {
        Some(v)
    } else {
        report(
            key,
            format!("{key} = {v}: must be a percentage from 0 to 100"),
        );
        None
    }
}

/// Takes what one `client` block sets beyond `enabled`, `node_class`, `node_pool`, `meta`,
/// `chroot_env`, `gc_max_allocs` and `cgroup_parent`.
pub(super) fn apply(c: &mut AgentConfig, cl: &ClientBlock, report: Report<'_>) {
    if let Some(list) = &cl.servers {
        let mut servers = Vec::new();
        for text in list {
            match server_address(text) {
                Ok(a) => servers.push(a),
                Err(e) => report("client.servers", format!("client.servers: {e}")),
            }
        }
        c.client_servers = servers;
    }
    if let Some(join) = &cl.server_join {
        apply_join_settings(&mut c.client_join, join, "client.server_join", report);
    }
    for (key, value, slot) in [
        ("client.alloc_dir", &cl.alloc_dir, &mut c.alloc_dir),
        ("client.state_dir", &cl.state_dir, &mut c.state_dir),
    ] {
        if let Some(path) = value {
            if let Some(p) = absolute(key, path, report) {
                *slot = Some(p);
            }
        }
    }
    if let Some(name) = &cl.network_interface {
        if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
            report(
                "client.network_interface",
                format!("client.network_interface = {name:?}: give an interface name such as \"eth0\" (at most 15 characters)"),
            );
        } else {
            c.network_interface = Some(name.clone());
        }
    }
    if let Some(text) = &cl.max_kill_timeout {
        if let Some(d) = positive_duration("client.max_kill_timeout", text, report) {
            c.max_kill_timeout = d;
        }
    }
    if let Some(v) = cl.min_dynamic_port {
        if let Some(p) = port("client.min_dynamic_port", v, report) {
            c.min_dynamic_port = p;
        }
    }
    if let Some(v) = cl.max_dynamic_port {
        if let Some(p) = port("client.max_dynamic_port", v, report) {
            c.max_dynamic_port = p;
        }
    }
    apply_network(c, cl, report);
    apply_reserved(c, cl, report);
    for (name, v) in &cl.host_volume {
        let key = format!("client.host_volume.{name}");
        match &v.path {
            None => report(
                &key,
                format!(
                    "{key}: missing path; write host_volume {name:?} {{ path = \"/srv/{name}\" }}"
                ),
            ),
            Some(path) => {
                if absolute(&format!("{key}.path"), Path::new(path), report).is_some() {
                    c.host_volumes.insert(
                        name.clone(),
                        ClientHostVolumeConfig {
                            name: name.clone(),
                            path: path.clone(),
                            read_only: v.read_only.unwrap_or(false),
                        },
                    );
                }
            }
        }
    }
    apply_gc(c, cl, report);
    if let Some(d) = &cl.drain_on_shutdown {
        let mut drain = c.drain_on_shutdown.clone().unwrap_or_default();
        if let Some(text) = &d.deadline {
            let key = "client.drain_on_shutdown.deadline";
            match parse_go(text) {
                Ok(v) => drain.deadline = v,
                Err(e) => report(
                    key,
                    format!("{key} = {text:?}: {e} (write a Go duration such as \"1h\")"),
                ),
            }
        }
        if let Some(v) = d.force {
            drain.force = v;
        }
        if let Some(v) = d.ignore_system_jobs {
            drain.ignore_system_jobs = v;
        }
        c.drain_on_shutdown = Some(drain);
    }
}

fn apply_reserved(c: &mut AgentConfig, cl: &ClientBlock, report: Report<'_>) {
    let Some(r) = &cl.reserved else {
        return;
    };
    for (key, value, slot) in [
        ("client.reserved.cpu", r.cpu, &mut c.reserved.cpu_mhz),
        (
            "client.reserved.memory",
            r.memory,
            &mut c.reserved.memory_mb,
        ),
        ("client.reserved.disk", r.disk, &mut c.reserved.disk_mb),
    ] {
        if let Some(n) = value.and_then(|v| not_negative(key, v, report)) {
            *slot = n;
        }
    }
    if let Some(text) = &r.cores {
        match settings::parse_cores(text) {
            Ok(cores) => c.reserved.cores = cores,
            Err(e) => report(
                "client.reserved.cores",
                format!("client.reserved.cores = {text:?} invalid: {e} (write cores as \"0-1,3\")"),
            ),
        }
    }
    if let Some(text) = &r.reserved_ports {
        match settings::parse_ports(text) {
            Ok(ports) => {
                c.reserved.ports = ports;
                c.reserved.reserved_ports = text.trim().to_string();
            }
            Err(e) => report(
                "client.reserved.reserved_ports",
                format!("client.reserved.reserved_ports = {text:?} invalid: {e} (write ports as \"22,80,8000-8100\")"),
            ),
        }
    }
}

fn apply_gc(c: &mut AgentConfig, cl: &ClientBlock, report: Report<'_>) {
    let gc = &mut c.gc;
    if let Some(text) = &cl.gc_interval {
        if let Some(d) = positive_duration("client.gc_interval", text, report) {
            gc.interval = d;
        }
    }
    for (key, value, slot) in [
        (
            "client.gc_disk_usage_threshold",
            cl.gc_disk_usage_threshold,
            &mut gc.disk_usage_threshold,
        ),
        (
            "client.gc_inode_usage_threshold",
            cl.gc_inode_usage_threshold,
            &mut gc.inode_usage_threshold,
        ),
    ] {
        if let Some(v) = value.and_then(|v| percent(key, v, report)) {
            *slot = v;
        }
    }
    if let Some(v) = cl.gc_max_allocs {
        gc.max_allocs = v;
    }
    if let Some(v) = cl.gc_parallel_destroys {
        let key = "client.gc_parallel_destroys";
        match usize::try_from(v) {
            Ok(n) if n >= 1 => gc.parallel_destroys = n,
            _ => report(key, format!("{key} = {v}: must be at least 1")),
        }
    }
}

/// The checks of a client's settings as the files combined say them: the dynamic port
/// range, what is reserved against the machine, host volume paths (a missing one is a
/// warning and the volume is left out), and the rules of a client-only agent.
pub(super) fn finish(
    c: &mut AgentConfig,
    files: &[FileConfig],
    machine: MachineReader<'_>,
    p: &mut Problems,
) {
    if c.min_dynamic_port >= c.max_dynamic_port {
        p.merged(
            files,
            "client.min_dynamic_port",
            format!(
                "invalid dynamic port range: min_dynamic_port = {} and max_dynamic_port = {}: the minimum must be below the maximum",
                c.min_dynamic_port, c.max_dynamic_port
            ),
        );
    }
    if !c.server_enabled {
        for (key, e) in super::cluster::check_client_only(
            &c.client_servers,
            &c.client_join,
            &c.tls,
            c.dev,
            &c.region,
        ) {
            p.merged(files, key, e);
        }
    }
    let missing: Vec<String> = c
        .host_volumes
        .iter()
        .filter(|(_, v)| !Path::new(&v.path).exists())
        .map(|(name, _)| name.clone())
        .collect();
    for name in missing {
        if let Some(v) = c.host_volumes.remove(&name) {
            let key = format!("client.host_volume.{name}.path");
            let message = format!(
                "client.host_volume {name:?}: path {:?} does not exist; the volume is left out of the node until the path is created and the agent restarted",
                v.path
            );
            warn(c, files, &key, message);
        }
    }
    let r = &c.reserved;
    if r.cpu_mhz == 0 && r.memory_mb == 0 && r.disk_mb == 0 && r.cores.is_empty() {
        return;
    }
    let alloc_dir = c
        .alloc_dir
        .clone()
        .unwrap_or_else(|| c.data_dir.join("alloc"));
    match machine(&alloc_dir) {
        Ok(m) => {
            for (key, e) in check_reserved(&c.reserved, &m) {
                p.merged(files, key, e);
            }
        }
        Err(e) => warn(
            c,
            files,
            "client.reserved",
            format!("cannot check client.reserved against this machine: {e}"),
        ),
    }
}

/// A warning placed at the file and line of `key`.
fn warn(c: &mut AgentConfig, files: &[FileConfig], key: &str, message: String) {
    let mut placed = Problems::default();
    placed.merged(files, key, message);
    c.warnings
        .extend(placed.errors.iter().map(ToString::to_string));
}

/// `client.reserved` must leave the machine something to run tasks on: (key, message) for
/// each resource reserved at or beyond what the machine has, and each core it lacks.
pub fn check_reserved(
    r: &settings::ReservedConfig,
    m: &MachineTotals,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let cores_mhz = r.cores.len() as u64 * m.core_mhz;
    if r.cpu_mhz > 0 && r.cpu_mhz.saturating_add(cores_mhz) >= m.cpu_mhz {
        let with_cores = if cores_mhz > 0 {
            format!(" (with the {cores_mhz} MHz of the reserved cores)")
        } else {
            String::new()
        };
        out.push((
            "client.reserved.cpu",
            format!(
                "client.reserved.cpu = {}{with_cores}: this machine has {} MHz ({} cores × {} MHz); reserve less so tasks have CPU left",
                r.cpu_mhz, m.cpu_mhz, m.cores.len(), m.core_mhz
            ),
        ));
    }
    for (key, reserved, total) in [
        ("client.reserved.memory", r.memory_mb, m.memory_mb),
        ("client.reserved.disk", r.disk_mb, m.disk_mb),
    ] {
        if reserved > 0 && reserved >= total {
            out.push((
                key,
                format!("{key} = {reserved}: this machine has {total} MB; reserve less so tasks have some left"),
            ));
        }
    }
    if !r.cores.is_empty() {
        let absent: Vec<String> = r
            .cores
            .iter()
            .filter(|c| !m.cores.contains(c))
            .map(ToString::to_string)
            .collect();
        if !absent.is_empty() {
            out.push((
                "client.reserved.cores",
                format!(
                    "client.reserved.cores: core {} is not online on this machine (online: {})",
                    absent.join(", "),
                    crate::client::taskenv::cpuset_string(&m.cores)
                ),
            ));
        } else if m.cores.iter().all(|c| r.cores.contains(c)) {
            out.push((
                "client.reserved.cores",
                format!(
                    "client.reserved.cores reserves every core of this machine ({}); leave at least one for tasks",
                    crate::client::taskenv::cpuset_string(&m.cores)
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_get_the_rpc_port_when_they_name_none() {
        for (text, want) in [
            ("10.0.0.1", "10.0.0.1:4647"),
            ("10.0.0.1:5000", "10.0.0.1:5000"),
            ("server-1.example", "server-1.example:4647"),
            ("server-1.example:4700", "server-1.example:4700"),
            ("::1", "[::1]:4647"),
            ("[::1]", "[::1]:4647"),
            ("[::1]:4700", "[::1]:4700"),
        ] {
            assert_eq!(server_address(text).as_deref(), Ok(want), "{text}");
        }
        for text in ["", "a b", "host:0", "host:99999", ":4647", "provider=aws"] {
            assert!(server_address(text).is_err(), "{text}");
        }
    }

    #[test]
    fn reserved_is_checked_against_the_machine() {
        let m = MachineTotals {
            cpu_mhz: 4000,
            core_mhz: 2000,
            memory_mb: 8192,
            disk_mb: 100_000,
            cores: vec![0, 1],
        };
        let ok = settings::ReservedConfig {
            cpu_mhz: 500,
            memory_mb: 1024,
            disk_mb: 1000,
            cores: vec![1],
            ..Default::default()
        };
        assert_eq!(check_reserved(&ok, &m), vec![]);
        let too_much = settings::ReservedConfig {
            cpu_mhz: 2500,
            memory_mb: 8192,
            disk_mb: 200_000,
            cores: vec![1],
            ..Default::default()
        };
        let keys: Vec<&str> = check_reserved(&too_much, &m)
            .iter()
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(
            keys,
            vec![
                "client.reserved.cpu",
                "client.reserved.memory",
                "client.reserved.disk"
            ]
        );
        let absent = settings::ReservedConfig {
            cores: vec![1, 7],
            ..Default::default()
        };
        let e = check_reserved(&absent, &m);
        assert!(
            e[0].1.contains("core 7 is not online") && e[0].1.contains("0-1"),
            "{e:?}"
        );
        let all = settings::ReservedConfig {
            cores: vec![0, 1],
            ..Default::default()
        };
        assert!(check_reserved(&all, &m)[0].1.contains("every core"));
    }
}
