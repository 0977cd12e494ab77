//! What a task sees of its allocation's network: the mode, the namespace it joins, the
//! allocation's address and ports, its hostname, and the `/etc/hosts` and `/etc/resolv.conf`
//! bound into it.
//!
//! The allocation runner builds one [`TaskNetwork`] per allocation (with [`task_network`],
//! after the network is set up) and hands a copy to every task: the task environment reads
//! the ports and address from it, the drivers the namespace, hostname and files. The files
//! are rendered by pure functions ([`render_hosts`], [`render_resolv_conf`]) and written once
//! per allocation by [`write_etc_files`].

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use controlplane::model::{
    hostname_problem, AllocNetworkStatus, AllocatedPortMapping, Allocation, DnsConfig, TaskGroup,
};

/// The interface an allocation's namespace holds its address on (the veth peer's name).
pub const ALLOC_INTERFACE: &str = "eth0";
/// The host's resolver configuration.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// Where systemd-resolved keeps the real upstream servers, used when the host's file only
/// names its local stub (unreachable from an allocation's namespace), as Nomad does.
pub const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";
/// systemd-resolved's stub listener.
const SYSTEMD_STUB: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53));
/// File names in [`TaskNetwork::etc_dir`].
pub const HOSTS_FILE: &str = "hosts";
pub const RESOLV_CONF_FILE: &str = "resolv.conf";

/// A group network's `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// The host's namespace (also a group without a network block).
    #[default]
    Host,
    /// A namespace of its own on noded's bridge, ports mapped from the host.
    Bridge,
    /// A namespace of its own with loopback only.
    None,
}

impl NetworkMode {
    /// The mode as the job writes it (`""` is host, as in Nomad).
    pub fn parse(mode: &str) -> Result<NetworkMode, TaskNetworkError> {
        match mode {
            "" | "host" => Ok(NetworkMode::Host),
            "bridge" => Ok(NetworkMode::Bridge),
            "none" => Ok(NetworkMode::None),
            other => Err(TaskNetworkError::Mode(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Host => "host",
            NetworkMode::Bridge => "bridge",
            NetworkMode::None => "none",
        }
    }

    /// Whether the allocation has a network namespace of its own.
    pub fn is_isolated(self) -> bool {
        self != NetworkMode::Host
    }
}

/// Why an allocation's network cannot be described to its tasks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskNetworkError {
    #[error("network.mode {0:?} is not supported by noded; use \"host\", \"bridge\" or \"none\"")]
    Mode(String),
    #[error("network.hostname {raw:?}: {message}")]
    Hostname { raw: String, message: String },
}

/// An allocation's network as its tasks see it. A plain value: every task of the allocation
/// gets a copy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskNetwork {
    pub mode: NetworkMode,
    /// The namespace to join (`/run/netns/…`), for bridge and none; `None` stays in the
    /// agent's.
    pub namespace_path: Option<PathBuf>,
    /// Bridge: the allocation's address on the bridge.
    pub alloc_ip: Option<Ipv4Addr>,
    /// The node's address (the ports' `HostIP` when they carry none).
    pub host_ip: String,
    /// Every port of the group network with its host port
    /// (`AllocatedResources.Shared.Ports`).
    pub ports: Vec<AllocatedPortMapping>,
    /// `network.hostname`, interpolated and checked.
    pub hostname: Option<String>,
    /// `network.dns`.
    pub dns: Option<DnsConfig>,
    /// Where the allocation's rendered `hosts` and `resolv.conf` live (in its directory).
    pub etc_dir: Option<PathBuf>,
    /// Bridge mode: the agent's DNS server on the bridge's gateway, when it serves there.
    /// The allocation's resolv.conf names it unless `network.dns` sets servers.
    pub node_dns: Option<Ipv4Addr>,
}

/// The port a mapping has inside the allocation: `to` when set, else the host port (`to = 0`,
/// or `-1`: "the same as the host port").
pub fn alloc_port(mapping: &AllocatedPortMapping) -> i64 {
    if mapping.to > 0 {
        mapping.to
    } else {
        mapping.value
    }
}

impl TaskNetwork {
    /// The host's network, no ports: what a group without a network block gets.
    pub fn host(host_ip: impl Into<String>) -> TaskNetwork {
        TaskNetwork {
            host_ip: host_ip.into(),
            ..Default::default()
        }
    }

    /// The rendered `/etc/hosts`, when the allocation has one: bridge mode with a hostname
    /// and an address (Nomad writes it only then; otherwise tasks see the host's).
    pub fn hosts_file(&self) -> Option<PathBuf> {
        match (self.mode, &self.hostname, self.alloc_ip, &self.etc_dir) {
            (NetworkMode::Bridge, Some(_), Some(_), Some(dir)) => Some(dir.join(HOSTS_FILE)),
            _ => None,
        }
    }

    /// The rendered `/etc/resolv.conf`, when the allocation has one: a `dns` block (any mode,
    /// as Nomad's exec driver does), or a namespace of its own (where the host's
    /// systemd-resolved stub would not answer).
    pub fn resolv_conf_file(&self) -> Option<PathBuf> {
        let wanted = self.dns.is_some() || self.mode.is_isolated();
        match &self.etc_dir {
            Some(dir) if wanted => Some(dir.join(RESOLV_CONF_FILE)),
            _ => None,
        }
    }

    /// The UTS hostname of the allocation's tasks: `network.hostname`, in a namespace of its
    /// own only (in host mode the task shares the host's name, as in Nomad).
    pub fn uts_hostname(&self) -> Option<&str> {
        if self.mode.is_isolated() {
            self.hostname.as_deref()
        } else {
            None
        }
    }

    /// What the client reports as the allocation's `NetworkStatus`: its interface and
    /// address (bridge), nothing for host mode or before the address is known.
    pub fn network_status(&self) -> Option<AllocNetworkStatus> {
        let ip = self.alloc_ip?;
        if self.mode != NetworkMode::Bridge {
            return None;
        }
        Some(AllocNetworkStatus {
            interface_name: ALLOC_INTERFACE.to_string(),
            address: ip.to_string(),
            address_ipv6: String::new(),
            dns: self.dns.clone(),
        })
    }
}

/// The network of `alloc` (of `group`) for its tasks. `host_ip` is the node's address;
/// `namespace_path`, `alloc_ip` and `etc_dir` come from the network's setup (`None` where it
/// has none); `resolve` interpolates the hostname (`${NOMAD_ALLOC_INDEX}`…) as Nomad does
/// with the allocation's environment.
pub fn task_network(
    alloc: &Allocation,
    group: &TaskGroup,
    host_ip: &str,
    namespace_path: Option<PathBuf>,
    alloc_ip: Option<Ipv4Addr>,
    etc_dir: Option<PathBuf>,
    resolve: &dyn Fn(&str) -> Result<String, String>,
) -> Result<TaskNetwork, TaskNetworkError> {
    let Some(network) = group.networks.first() else {
        return Ok(TaskNetwork {
            etc_dir,
            ..TaskNetwork::host(host_ip)
        });
    };
    let mode = NetworkMode::parse(&network.mode)?;
    let hostname = if network.hostname.is_empty() {
        None
    } else {
        let bad = |message: String| TaskNetworkError::Hostname {
            raw: network.hostname.clone(),
            message,
        };
        let name = resolve(&network.hostname).map_err(bad)?;
        if let Some(problem) = hostname_problem(&name) {
            return Err(bad(format!("{name:?} is not a valid hostname: {problem}")));
        }
        Some(name)
    };
    Ok(TaskNetwork {
        mode,
        namespace_path,
        alloc_ip,
        host_ip: host_ip.to_string(),
        ports: alloc.allocated_resources.shared.ports.clone(),
        hostname,
        dns: network.dns.clone(),
        etc_dir,
        node_dns: None,
    })
}

/// `/etc/hosts` of an allocation: the loopback and IPv6 names every resolver expects, then
/// the allocation's own address with its hostname (the lines Nomad writes).
pub fn render_hosts(hostname: &str, alloc_ip: Ipv4Addr) -> String {
    format!(
        "# this file was generated by noded\n\
         127.0.0.1 localhost\n\
         ::1 localhost\n\
         ::1 ip6-localhost ip6-loopback\n\
         fe00::0 ip6-localnet\n\
         ff00::0 ip6-mcastprefix\n\
         ff02::1 ip6-allnodes\n\
         ff02::2 ip6-allrouters\n\
         ff02::3 ip6-allhosts\n\
         \n\
         # this entry is the IP address and hostname of the allocation\n\
         # shared with tasks in the task group's network\n\
         {alloc_ip} {hostname}\n"
    )
}

/// A resolver configuration, read as glibc reads it: name servers, the last `search` (or
/// `domain`) line, every `options` line.
#[derive(Debug, Default, PartialEq, Eq)]
struct Resolv {
    servers: Vec<String>,
    searches: Vec<String>,
    options: Vec<String>,
}

fn parse_resolv(content: &str) -> Resolv {
    let mut out = Resolv::default();
    for line in content.lines() {
        let mut fields = line.split_whitespace();
        let Some(key) = fields.next() else { continue };
        let rest: Vec<String> = fields.map(str::to_string).collect();
        match key {
            "nameserver" => {
                if let Some(server) = rest.first().filter(|s| s.parse::<IpAddr>().is_ok()) {
                    out.servers.push(server.clone());
                }
            }
            "search" | "domain" if !rest.is_empty() => out.searches = rest,
            "options" => out.options.extend(rest),
            _ => {}
        }
    }
    out
}

/// `/etc/resolv.conf` of an allocation. Without a `dns` block (or an empty one), the host's
/// file as it is; with one, each of servers, searches and options the block sets replaces
/// the host's, the others are kept (Nomad's `GenerateDNSMount`).
///
/// `node_dns` (bridge mode, the agent's DNS server on the gateway) takes the place of the
/// host's name servers: tasks resolve `<service>.service.<domain>` with no set-up, and the
/// server forwards the rest to the host's resolvers. A `dns` block's `servers` still win.
/// No `search service.<domain>` is added: a bare `web` then means what it means on the host
/// (Nomad adds none either), and a job that wants short names writes `searches`.
pub fn render_resolv_conf(
    dns: Option<&DnsConfig>,
    host_resolv_conf: &str,
    node_dns: Option<Ipv4Addr>,
) -> String {
    let empty = DnsConfig::default();
    let dns = match dns {
        Some(d) if !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()) => d,
        _ if node_dns.is_some() => &empty,
        _ => return host_resolv_conf.to_string(),
    };
    let mut host = parse_resolv(host_resolv_conf);
    if let Some(ip) = node_dns {
        host.servers = vec![ip.to_string()];
    }
    let pick = |mine: &Vec<String>, theirs: Vec<String>| {
        if mine.is_empty() {
            theirs
        } else {
            mine.clone()
        }
    };
    let servers = pick(&dns.servers, host.servers);
    let searches: Vec<String> = pick(&dns.searches, host.searches)
        .into_iter()
        .filter(|s| s != ".")
        .collect();
    let options = pick(&dns.options, host.options);
    let mut out = String::new();
    for server in &servers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// Whether a resolver configuration names only systemd-resolved's local stub.
fn only_systemd_stub(content: &str) -> bool {
    let servers = parse_resolv(content).servers;
    servers.len() == 1 && servers[0].parse::<IpAddr>().ok() == Some(SYSTEMD_STUB)
}

/// The host's resolver configuration for an allocation: `/etc/resolv.conf`, or
/// systemd-resolved's upstream file when the former only names the local stub.
pub fn host_resolv_conf() -> io::Result<String> {
    let content = read_named(Path::new(HOST_RESOLV_CONF))?;
    if only_systemd_stub(&content) {
        if let Ok(upstream) = std::fs::read_to_string(SYSTEMD_RESOLV_CONF) {
            return Ok(upstream);
        }
    }
    Ok(content)
}

fn read_named(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))
}

/// Writes `content` to `path` whole or not at all (a temporary file renamed over it), world
/// readable so a task of any user reads it.
fn write_whole(path: &Path, content: &str) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let named = |what: &str, p: &Path, e: io::Error| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", p.display()))
    };
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(|e| named("creating", &tmp, e))?;
    file.write_all(content.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| named("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| named("renaming into place", path, e))
}

/// Writes the allocation's `hosts` and `resolv.conf` into its `etc_dir` (created if needed),
/// those of the two that [`TaskNetwork::hosts_file`] / [`TaskNetwork::resolv_conf_file`]
/// name. Called once per allocation, before its tasks start; nothing to do in host mode
/// without a `dns` block.
pub fn write_etc_files(net: &TaskNetwork) -> io::Result<()> {
    let hosts = net.hosts_file();
    let resolv = net.resolv_conf_file();
    if hosts.is_none() && resolv.is_none() {
        return Ok(());
    }
    if let Some(dir) = &net.etc_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", dir.display())))?;
    }
    if let (Some(path), Some(name), Some(ip)) = (&hosts, &net.hostname, net.alloc_ip) {
        write_whole(path, &render_hosts(name, ip))?;
    }
    if let Some(path) = &resolv {
        let host = host_resolv_conf()?;
        write_whole(
            path,
            &render_resolv_conf(net.dns.as_ref(), &host, net.node_dns),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use controlplane::model::{NetworkResource, Port};

    fn group(mode: &str, hostname: &str, dns: Option<DnsConfig>) -> TaskGroup {
        TaskGroup {
            name: "g".into(),
            networks: vec![NetworkResource {
                mode: mode.into(),
                hostname: hostname.into(),
                dns,
                dynamic_ports: vec![Port {
                    label: "http".into(),
                    to: 8080,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn alloc() -> Allocation {
        let mut a = Allocation {
            id: "a1".into(),
            name: "web.g[3]".into(),
            ..Default::default()
        };
        a.allocated_resources.shared.ports = vec![AllocatedPortMapping {
            label: "http".into(),
            value: 23000,
            to: 8080,
            host_ip: "10.0.0.5".into(),
            ignore_collision: false,
        }];
        a
    }

    fn literal(s: &str) -> Result<String, String> {
        Ok(s.replace("${NOMAD_ALLOC_INDEX}", "3"))
    }

    #[test]
    fn a_group_without_a_network_is_host_mode_without_files() {
        let net = task_network(
            &alloc(),
            &TaskGroup::default(),
            "10.0.0.5",
            None,
            None,
            Some("/x/.etc".into()),
            &literal,
        )
        .unwrap();
        assert_eq!(net.mode, NetworkMode::Host);
        assert!(net.ports.is_empty());
        assert_eq!(net.hosts_file(), None);
        assert_eq!(net.resolv_conf_file(), None);
        assert_eq!(net.network_status(), None);
        assert_eq!(net.uts_hostname(), None);
    }

    #[test]
    fn bridge_mode_has_hosts_resolv_conf_hostname_and_a_status() {
        let net = task_network(
            &alloc(),
            &group("bridge", "web-${NOMAD_ALLOC_INDEX}", None),
            "10.0.0.5",
            Some("/run/netns/noded-x-a1".into()),
            Some(Ipv4Addr::new(172, 26, 64, 2)),
            Some("/x/.etc".into()),
            &literal,
        )
        .unwrap();
        assert_eq!(net.hostname.as_deref(), Some("web-3"));
        assert_eq!(net.uts_hostname(), Some("web-3"));
        assert_eq!(net.hosts_file(), Some(PathBuf::from("/x/.etc/hosts")));
        assert_eq!(
            net.resolv_conf_file(),
            Some(PathBuf::from("/x/.etc/resolv.conf"))
        );
        assert_eq!(net.ports.len(), 1);
        let status = net.network_status().unwrap();
        assert_eq!(
            (status.interface_name.as_str(), status.address.as_str()),
            ("eth0", "172.26.64.2")
        );
        // Before the lead's setup gives it an address: no hosts file, no status.
        let early = TaskNetwork {
            alloc_ip: None,
            ..net
        };
        assert_eq!(early.hosts_file(), None);
        assert_eq!(early.network_status(), None);
    }

    #[test]
    fn host_mode_with_dns_gets_a_resolv_conf_but_no_hostname() {
        let dns = DnsConfig {
            servers: vec!["1.1.1.1".into()],
            ..Default::default()
        };
        let net = task_network(
            &alloc(),
            &group("host", "", Some(dns)),
            "10.0.0.5",
            None,
            None,
            Some("/x/.etc".into()),
            &literal,
        )
        .unwrap();
        assert!(net.resolv_conf_file().is_some());
        assert_eq!(net.hosts_file(), None);
    }

    #[test]
    fn a_bad_mode_or_hostname_is_refused_naming_the_field() {
        let err = task_network(
            &alloc(),
            &group("cni/flannel", "", None),
            "",
            None,
            None,
            None,
            &literal,
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("network.mode \"cni/flannel\""),
            "{err}"
        );
        let err = task_network(
            &alloc(),
            &group("bridge", "web ${NOMAD_ALLOC_INDEX}", None),
            "",
            None,
            None,
            None,
            &literal,
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "network.hostname \"web ${NOMAD_ALLOC_INDEX}\": \"web 3\" is not a valid hostname"
            ),
            "{err}"
        );
        let err = task_network(
            &alloc(),
            &group("bridge", "${meta.nope}", None),
            "",
            None,
            None,
            None,
            &|_| Err("unknown key meta.nope".to_string()),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "network.hostname \"${meta.nope}\": unknown key meta.nope"
        );
    }

    #[test]
    fn alloc_port_is_to_or_the_host_port() {
        let m = |value, to| AllocatedPortMapping {
            value,
            to,
            ..Default::default()
        };
        assert_eq!(alloc_port(&m(23000, 8080)), 8080);
        assert_eq!(alloc_port(&m(23000, 0)), 23000);
        assert_eq!(alloc_port(&m(23000, -1)), 23000);
    }

    #[test]
    fn hosts_has_localhost_and_the_allocation() {
        let hosts = render_hosts("web-3", Ipv4Addr::new(172, 26, 64, 2));
        let lines: Vec<&str> = hosts.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(lines.contains(&"127.0.0.1 localhost"));
        assert!(lines.contains(&"::1 ip6-localhost ip6-loopback"));
        assert_eq!(lines.last(), Some(&"172.26.64.2 web-3"));
    }

    #[test]
    fn resolv_conf_overrides_only_what_the_dns_block_sets() {
        let host = "# generated\nnameserver 10.0.0.53\nnameserver bogus\nsearch a.example b.example\ndomain c.example\noptions ndots:2\noptions rotate\nsortlist 10.0.0.0\n";
        // No block, or an empty one: the host's file unchanged.
        assert_eq!(render_resolv_conf(None, host, None), host);
        assert_eq!(
            render_resolv_conf(Some(&DnsConfig::default()), host, None),
            host
        );
        // Servers only: the host's searches (the last line) and options stay.
        let servers = DnsConfig {
            servers: vec!["1.1.1.1".into(), "8.8.8.8".into()],
            ..Default::default()
        };
        assert_eq!(
            render_resolv_conf(Some(&servers), host, None),
            "nameserver 1.1.1.1\nnameserver 8.8.8.8\nsearch c.example\noptions ndots:2 rotate\n"
        );
        // Everything set: nothing of the host's.
        let all = DnsConfig {
            servers: vec!["1.1.1.1".into()],
            searches: vec!["svc.local".into(), ".".into()],
            options: vec!["edns0".into()],
        };
        assert_eq!(
            render_resolv_conf(Some(&all), host, None),
            "nameserver 1.1.1.1\nsearch svc.local\noptions edns0\n"
        );
        // Searches only, host without any: its servers kept, no empty lines.
        let search = DnsConfig {
            searches: vec!["x".into()],
            ..Default::default()
        };
        assert_eq!(
            render_resolv_conf(Some(&search), "nameserver 10.1.1.1\n", None),
            "nameserver 10.1.1.1\nsearch x\n"
        );
    }

    #[test]
    fn resolv_conf_of_bridge_tasks_names_the_node_dns_unless_the_job_sets_servers() {
        let host = "nameserver 10.0.0.53\nsearch corp.example\noptions ndots:2\n";
        let gw = Some(Ipv4Addr::new(172, 26, 64, 1));
        // No block: the gateway replaces the host's servers; searches and options stay.
        assert_eq!(
            render_resolv_conf(None, host, gw),
            "nameserver 172.26.64.1\nsearch corp.example\noptions ndots:2\n"
        );
        // Searches only: still the gateway.
        let search = DnsConfig {
            searches: vec!["service.noded".into()],
            ..Default::default()
        };
        assert_eq!(
            render_resolv_conf(Some(&search), host, gw),
            "nameserver 172.26.64.1\nsearch service.noded\noptions ndots:2\n"
        );
        // The job's servers win.
        let servers = DnsConfig {
            servers: vec!["1.1.1.1".into()],
            ..Default::default()
        };
        assert_eq!(
            render_resolv_conf(Some(&servers), host, gw),
            "nameserver 1.1.1.1\nsearch corp.example\noptions ndots:2\n"
        );
    }

    #[test]
    fn systemd_resolved_stub_is_recognised() {
        assert!(only_systemd_stub("nameserver 127.0.0.53\noptions edns0\n"));
        assert!(!only_systemd_stub(
            "nameserver 127.0.0.53\nnameserver 1.1.1.1\n"
        ));
        assert!(!only_systemd_stub("nameserver 10.0.0.1\n"));
    }

    #[test]
    fn etc_files_are_written_into_the_allocation_once_and_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("noded-netenv-{}", std::process::id()));
        let etc = dir.join(".etc");
        let net = TaskNetwork {
            mode: NetworkMode::Bridge,
            alloc_ip: Some(Ipv4Addr::new(172, 26, 64, 9)),
            hostname: Some("api".into()),
            dns: Some(DnsConfig {
                servers: vec!["9.9.9.9".into()],
                ..Default::default()
            }),
            etc_dir: Some(etc.clone()),
            ..Default::default()
        };
        write_etc_files(&net).unwrap();
        let hosts = std::fs::read_to_string(etc.join("hosts")).unwrap();
        assert!(hosts.ends_with("172.26.64.9 api\n"), "{hosts}");
        let resolv = std::fs::read_to_string(etc.join("resolv.conf")).unwrap();
        assert!(resolv.starts_with("nameserver 9.9.9.9\n"), "{resolv}");
        let mode = std::fs::metadata(etc.join("resolv.conf"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        assert!(!etc.join("hosts.tmp").exists());
        // Host mode without dns: nothing written, not even the directory.
        let nothing = dir.join("none");
        write_etc_files(&TaskNetwork {
            etc_dir: Some(nothing.clone()),
            ..Default::default()
        })
        .unwrap();
        assert!(!nothing.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
