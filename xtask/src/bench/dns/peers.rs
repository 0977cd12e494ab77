//! The peers: Debian's `unbound` and `dnsmasq`, each in a server namespace of its own,
//! serving the bench's [`Zone`] as static local data (unbound's `local-zone`/`local-data`,
//! dnsmasq's `--host-record`/`--srv-host`), authoritative for the domain (NXDOMAIN for other
//! names in it, as noded answers), forwarding nothing.
//!
//! unbound gets one thread per CPU (it scales that way, as noded's runtime does); dnsmasq is
//! single-threaded by design. Both run in the foreground as the bench's children, logging to
//! a file in the bench's temporary directory, and are killed and reaped when dropped.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;

use anyhow::Context;
use noded_tests::Host;

use super::zone::Zone;

/// The TTL the peers give their records (noded's answers have short TTLs too; nobody caches
/// in this bench, so it only has to be the same everywhere).
pub const TTL_S: u32 = 5;

/// A DNS server process the bench started; SIGKILL and reaped when dropped.
#[derive(Debug)]
pub struct Daemon {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Whether it is still running; its log's tail when it is not.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                anyhow::bail!(
                    "{} exited ({status}); its log {}:\n{}",
                    self.name,
                    self.log.display(),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where `program` is: on PATH or in the sbin directories Debian puts daemons in.
pub fn locate(program: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .with_context(|| format!("{program} is not installed (the bench installs it with apt: unbound, dnsmasq-base)"))
}

/// unbound.conf for `zone` on `ip:port`.
pub fn unbound_conf(zone: &Zone, ip: Ipv4Addr, port: u16, dir: &Path, threads: usize) -> String {
    let mut c = String::new();
    let _ = writeln!(c, "server:");
    for line in [
        format!("interface: {ip}"),
        format!("port: {port}"),
        "do-ip6: no".into(),
        format!("num-threads: {threads}"),
        "so-reuseport: yes".into(),
        // The bench's child in the foreground, as root, no chroot: nothing to set up.
        "do-daemonize: no".into(),
        "username: \"\"".into(),
        "chroot: \"\"".into(),
        format!("directory: \"{}\"", dir.display()),
        "pidfile: \"\"".into(),
        "use-syslog: no".into(),
        format!("logfile: \"{}\"", dir.join("unbound.log").display()),
        "verbosity: 0".into(),
        "access-control: 0.0.0.0/0 allow".into(),
        // No validation, no trust anchor to fetch: it answers local data only.
        "module-config: \"iterator\"".into(),
        format!("local-zone: \"{}.\" static", zone.domain),
    ] {
        let _ = writeln!(c, "  {line}");
    }
    for address in zone.addresses() {
        let _ = writeln!(
            c,
            "  local-data: \"{} {TTL_S} IN A {address}\"",
            zone.fqdn()
        );
    }
    for (index, instance) in zone.instances.iter().enumerate() {
        let target = zone.target(index);
        let _ = writeln!(
            c,
            "  local-data: \"{} {TTL_S} IN SRV 1 1 {} {target}\"",
            zone.fqdn(),
            instance.port
        );
        let _ = writeln!(
            c,
            "  local-data: \"{target} {TTL_S} IN A {}\"",
            instance.address
        );
    }
    let _ = writeln!(c, "remote-control:\n  control-enable: no");
    c
}

/// dnsmasq's arguments for `zone` on `ip:port` (no config file, no upstream, no hosts file).
pub fn dnsmasq_args(zone: &Zone, ip: Ipv4Addr, port: u16, log: &Path) -> Vec<String> {
    let fqdn = zone.fqdn();
    let name = fqdn.trim_end_matches('.');
    let mut args: Vec<String> = vec![
        "--keep-in-foreground".into(),
        "--conf-file=/dev/null".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--no-poll".into(),
        "--bind-interfaces".into(),
        format!("--listen-address={ip}"),
        format!("--port={port}"),
        "--user=root".into(),
        "--pid-file".into(),
        format!("--local=/{}/", zone.domain),
        format!("--local-ttl={TTL_S}"),
        format!("--log-facility={}", log.display()),
    ];
    for address in zone.addresses() {
        args.push(format!("--host-record={name},{address}"));
    }
    for (index, instance) in zone.instances.iter().enumerate() {
        let target = zone.target(index);
        let target = target.trim_end_matches('.');
        args.push(format!("--host-record={target},{}", instance.address));
        args.push(format!("--srv-host={name},{target},{},1,1", instance.port));
    }
    args
}

/// Starts unbound on `host`, port `port`, serving `zone`; files in `dir`.
pub fn start_unbound(host: &Host, zone: &Zone, port: u16, dir: &Path) -> anyhow::Result<Daemon> {
    let program = locate("unbound")?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let conf = dir.join("unbound.conf");
    std::fs::write(&conf, unbound_conf(zone, host.ip(), port, dir, threads))
        .with_context(|| format!("writing {}", conf.display()))?;
    let log = dir.join("unbound.out");
    let args = vec!["-d".into(), "-c".into(), conf.into_os_string()];
    let child = noded_tests::spawn_in_netns(&host.netns.path(), &program, &args, &[], &log);
    Ok(Daemon {
        name: "unbound",
        addr: SocketAddr::from((host.ip(), port)),
        log,
        child: Some(child),
    })
}

/// Starts dnsmasq on `host`, port `port`, serving `zone`; its log in `dir`.
pub fn start_dnsmasq(host: &Host, zone: &Zone, port: u16, dir: &Path) -> anyhow::Result<Daemon> {
    let program = locate("dnsmasq")?;
    let log = dir.join("dnsmasq.log");
    let args: Vec<std::ffi::OsString> = dnsmasq_args(zone, host.ip(), port, &log)
        .into_iter()
        .map(Into::into)
        .collect();
    let child = noded_tests::spawn_in_netns(
        &host.netns.path(),
        &program,
        &args,
        &[],
        &dir.join("dnsmasq.out"),
    );
    Ok(Daemon {
        name: "dnsmasq",
        addr: SocketAddr::from((host.ip(), port)),
        log,
        child: Some(child),
    })
}

#[cfg(test)]
mod tests {
    use super::super::zone::Instance;
    use super::*;

    #[test]
    fn both_peers_are_given_the_same_records() {
        let zone = Zone {
            service: "web".into(),
            domain: "noded".into(),
            instances: vec![
                Instance {
                    address: Ipv4Addr::new(10, 0, 0, 1),
                    port: 20001,
                },
                Instance {
                    address: Ipv4Addr::new(10, 0, 0, 1),
                    port: 20002,
                },
            ],
        };
        let conf = unbound_conf(&zone, Ipv4Addr::new(10, 9, 9, 9), 8600, Path::new("/t"), 2);
        assert!(conf.contains("local-zone: \"noded.\" static"));
        // One A per distinct address; one SRV and target per instance.
        assert_eq!(conf.matches("\"web.service.noded. 5 IN A ").count(), 1);
        assert!(conf.contains("\"web.service.noded. 5 IN SRV 1 1 20002 i1.web.service.noded.\""));
        assert!(conf.contains("\"i1.web.service.noded. 5 IN A 10.0.0.1\""));
        let args = dnsmasq_args(&zone, Ipv4Addr::new(10, 9, 9, 9), 8600, Path::new("/t/l"));
        assert!(args.contains(&"--host-record=web.service.noded,10.0.0.1".to_string()));
        assert!(args
            .contains(&"--srv-host=web.service.noded,i1.web.service.noded,20002,1,1".to_string()));
        assert!(args.contains(&"--local=/noded/".to_string()));
    }
}
