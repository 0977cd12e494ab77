//! `cargo xtask bench dns`: noded's DNS server against unbound and dnsmasq, measured from a
//! client namespace in the same run, and the catalog's convergence time (issue 18, item 6).
//!
//! ```text
//!   client ns ─veth─┐                 (one test LAN: a switch namespace with a bridge)
//!   noded ns  ─veth─┤ switch ns: br0  noded agent (server + client), DNS on <ip>:8600
//!   unbound ns ─veth┤                 unbound -d, local-data, <ip>:8600
//!   dnsmasq ns ─veth┘                 dnsmasq -k, host-record/srv-host, <ip>:8600
//! ```
//!
//! 1. **Throughput and p99**: the same load (UDP, `--outstanding` queries in flight over
//!    `--threads` sockets, A and SRV of `web.service.noded.` alternating, a warm-up second then
//!    `--seconds` measured) from the client namespace against each server in turn, for
//!    `--rounds` rounds in a rotating order; medians of the rounds. Every answer is checked
//!    against the zone (complete A set, SRV ports and targets): one wrong answer fails the
//!    bench. The peers serve the zone noded's catalog holds (same names, addresses, ports),
//!    read back from `/v1/service/web` once the job's instances pass their checks.
//! 2. **Convergence**: one instance's http check is made to fail (its health file removed:
//!    404); the time until it leaves the SRV answer (polled every 5 ms from the client), over
//!    `--converge-runs` runs, against the check's interval (goal ≤ interval + 1 s).
//!
//! `--peers-only` skips noded (a zone of three synthetic instances is served by the peers):
//! the peers' figures alone, for a build whose agent has no DNS server yet.
//!
//! Everything (namespaces, processes, files) is this run's and goes when its guard drops,
//! also on error; nothing touches the root namespace.

mod load;
mod noded;
mod peers;
mod wire;
mod zone;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use noded_tests::{Host, Lan, TempDir};

use load::{Asker, Load, Outcome};
use wire::QType;
use zone::{Instance, Zone};

/// The port every server listens on (noded's default DNS port).
const DNS_PORT: u16 = 8600;
/// The service and domain asked for.
const SERVICE: &str = "web";
const DOMAIN: &str = "noded";
/// How long a server may take to answer correctly after it starts.
const READY_WITHIN: Duration = Duration::from_secs(15);
/// The unmeasured start of each load run.
const WARM_UP: Duration = Duration::from_secs(1);
/// The goal on convergence: the check's interval plus this.
const CONVERGE_SLACK_MS: f64 = 1000.0;

#[derive(Debug, Clone)]
pub struct DnsOptions {
    /// Measured seconds of each load run.
    pub seconds: u64,
    /// Rounds over all servers (medians are reported).
    pub rounds: usize,
    /// Queries in flight.
    pub outstanding: usize,
    /// Client sockets (threads).
    pub threads: usize,
    /// Instances of the service.
    pub instances: u32,
    /// The http check's interval.
    pub interval_ms: u64,
    /// Convergence runs.
    pub converge_runs: usize,
    /// Peers only (no noded agent).
    pub peers_only: bool,
}

impl Default for DnsOptions {
    fn default() -> Self {
        DnsOptions {
            seconds: 5,
            rounds: 3,
            outstanding: 64,
            threads: 2,
            instances: 3,
            interval_ms: 1000,
            converge_runs: 5,
            peers_only: false,
        }
    }
}

/// One server under load and what each round measured.
struct Server {
    name: &'static str,
    addr: SocketAddr,
    rounds: Vec<Outcome>,
}

impl Server {
    fn median_qps(&self) -> f64 {
        median(self.rounds.iter().map(Outcome::qps).collect())
    }

    fn median_p99_us(&self) -> f64 {
        median(
            self.rounds
                .iter()
                .map(|o| f64::from(o.percentile_us(99.0)))
                .collect(),
        )
    }

    fn median_p50_us(&self) -> f64 {
        median(
            self.rounds
                .iter()
                .map(|o| f64::from(o.percentile_us(50.0)))
                .collect(),
        )
    }

    fn wrong(&self) -> u64 {
        self.rounds.iter().map(|o| o.wrong).sum()
    }

    fn lost(&self) -> u64 {
        self.rounds.iter().map(|o| o.lost).sum()
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if !values.len().is_multiple_of(2) {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// The zone `--peers-only` serves: `count` instances on distinct addresses and ports.
fn synthetic_zone(count: u32) -> Zone {
    Zone {
        service: SERVICE.into(),
        domain: DOMAIN.into(),
        instances: (0..count)
            .map(|i| Instance {
                address: Ipv4Addr::new(172, 26, 64, u8::try_from(2 + i % 250).unwrap_or(2)),
                port: u16::try_from(20_000 + i).unwrap_or(20_000),
            })
            .collect(),
    }
}

/// Waits until `addr` answers A and SRV for `zone` correctly (from the client namespace).
fn wait_ready(client: &Host, name: &str, addr: SocketAddr, zone: &Zone) -> anyhow::Result<()> {
    let mut asker = Asker::new(client, addr)?;
    let start = Instant::now();
    loop {
        let verdict = [QType::A, QType::Srv].into_iter().try_for_each(|q| {
            let r = asker.ask(&zone.fqdn(), q, Duration::from_millis(300))?;
            zone.check(q, &r).map_err(anyhow::Error::msg)
        });
        match verdict {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() > READY_WITHIN => {
                bail!("{name} on {addr} gives no correct answer after {READY_WITHIN:?}: {e:#}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// dig's view of a server's answers, for the log: an independent check of the zone.
fn show_with_dig(client: &Host, addr: SocketAddr, zone: &Zone) {
    for qtype in ["A", "SRV"] {
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net={}", client.netns.path().display()))
            .args(["--", "dig", "+short", "+tries=1", "+time=1"])
            .arg(format!("@{}", addr.ip()))
            .args(["-p", &addr.port().to_string()])
            .args([zone.fqdn().as_str(), qtype])
            .output();
        match out {
            Ok(o) => eprintln!(
                "    dig {qtype}: {}",
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .replace('\n', " | ")
            ),
            Err(e) => eprintln!("    dig {qtype}: not run ({e})"),
        }
    }
}

pub fn run(options: &DnsOptions) -> anyhow::Result<()> {
    crate::install(&[
        ("unbound", "/usr/sbin/unbound"),
        ("dnsmasq-base", "/usr/sbin/dnsmasq"),
        ("dnsutils", "dig"),
    ])?;
    let interval = Duration::from_millis(options.interval_ms);
    let load_start = load_average();
    let lan = Lan::create("bench-dns");
    let client = lan.host("client");
    let dir = TempDir::create("dnsbench");
    // Declared before the peers and the agent, so that it is dropped after them.
    let noded_host = (!options.peers_only).then(|| lan.host("noded"));
    let unbound_host = lan.host("unbound");
    let dnsmasq_host = lan.host("dnsmasq");

    let noded = match &noded_host {
        Some(host) => {
            eprintln!(
                "==> noded: agent with dns {{ bind = {}, port = {DNS_PORT} }}, job of {} instances",
                host.ip(),
                options.instances
            );
            let pki = dir.join("pki");
            std::fs::create_dir_all(&pki).with_context(|| format!("creating {}", pki.display()))?;
            let tls = noded_tests::server_certificates(&pki, "global");
            let serve = dir.join("serve");
            std::fs::create_dir_all(&serve)
                .with_context(|| format!("creating {}", serve.display()))?;
            Some(noded::start(
                host,
                &tls,
                DNS_PORT,
                (SERVICE, DOMAIN),
                options.instances,
                interval,
                &serve,
            )?)
        }
        None => None,
    };
    let zone = noded
        .as_ref()
        .map(|n| n.zone.clone())
        .unwrap_or_else(|| synthetic_zone(options.instances));
    eprintln!(
        "==> zone {}: {}",
        zone.fqdn(),
        zone.instances
            .iter()
            .map(|i| format!("{}:{}", i.address, i.port))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let peer_dir = |name: &str| -> anyhow::Result<std::path::PathBuf> {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        Ok(d)
    };
    let mut unbound = peers::start_unbound(&unbound_host, &zone, DNS_PORT, &peer_dir("unbound")?)?;
    let mut dnsmasq = peers::start_dnsmasq(&dnsmasq_host, &zone, DNS_PORT, &peer_dir("dnsmasq")?)?;

    let mut servers: Vec<Server> = Vec::new();
    if let Some(n) = &noded {
        servers.push(Server {
            name: "noded",
            addr: n.dns,
            rounds: Vec::new(),
        });
    }
    for daemon in [&unbound, &dnsmasq] {
        servers.push(Server {
            name: daemon.name,
            addr: daemon.addr,
            rounds: Vec::new(),
        });
    }
    for server in &servers {
        let ready = wait_ready(&client, server.name, server.addr, &zone);
        if let Err(e) = ready {
            for daemon in [&mut unbound, &mut dnsmasq] {
                daemon.check_alive()?;
            }
            return Err(e);
        }
        eprintln!("==> {} answers correctly on {}", server.name, server.addr);
        show_with_dig(&client, server.addr, &zone);
    }

    let client_ns = client.netns.path();
    for round in 0..options.rounds {
        for k in 0..servers.len() {
            // Rotate the order each round so no server always runs first or last.
            let index = (k + round) % servers.len();
            let server = &mut servers[index];
            let spec = Load {
                server: server.addr,
                warm_up: WARM_UP,
                measured: Duration::from_secs(options.seconds),
                outstanding: options.outstanding,
                threads: options.threads,
            };
            let outcome = load::run(&client_ns, &spec, &zone)
                .with_context(|| format!("load against {}", server.name))?;
            eprintln!(
                "    round {round} {:<8} {:>9.0} q/s  p50 {:>6} µs  p99 {:>6} µs  wrong {}  lost {}{}",
                server.name,
                outcome.qps(),
                outcome.percentile_us(50.0),
                outcome.percentile_us(99.0),
                outcome.wrong,
                outcome.lost,
                outcome
                    .first_wrong
                    .as_deref()
                    .map(|w| format!("  first wrong: {w}"))
                    .unwrap_or_default()
            );
            if outcome.wrong > 0 && server.name == "noded" {
                if let Some(n) = &noded {
                    eprintln!("      {}", noded::health_report(n));
                }
            }
            server.rounds.push(outcome);
            for daemon in [&mut unbound, &mut dnsmasq] {
                daemon.check_alive()?;
            }
        }
    }

    let converge = match &noded {
        Some(n) => {
            eprintln!(
                "==> convergence: {} runs, check interval {} ms",
                options.converge_runs, options.interval_ms
            );
            Some(noded::convergence(n, &client, options.converge_runs)?)
        }
        None => None,
    };
    report(options, &servers, converge.as_deref(), load_start);
    drop(noded);
    drop((unbound, dnsmasq));
    let wrong: u64 = servers.iter().map(Server::wrong).sum();
    if wrong > 0 {
        bail!("{wrong} wrong answers (see the rounds above): a fast wrong answer is a failure");
    }
    Ok(())
}

fn report(options: &DnsOptions, servers: &[Server], converge: Option<&[f64]>, load_start: f64) {
    let fmt = |v: f64| {
        if v.is_finite() {
            format!("{v:.0}")
        } else {
            "skipped".to_string()
        }
    };
    println!(
        "dns bench: {} rounds × {} s per server, {} queries in flight over {} sockets, A and SRV alternating; medians of the rounds",
        options.rounds, options.seconds, options.outstanding, options.threads
    );
    for s in servers {
        println!(
            "  {:<8} {:>9.0} q/s  p50 {:>6.0} µs  p99 {:>6.0} µs  wrong {}  lost {}",
            s.name,
            s.median_qps(),
            s.median_p50_us(),
            s.median_p99_us(),
            s.wrong(),
            s.lost()
        );
    }
    let get = |name: &str| servers.iter().find(|s| s.name == name);
    let (qps, p99) = get("noded").map_or((f64::NAN, f64::NAN), |s| {
        (s.median_qps(), s.median_p99_us())
    });
    let unbound = get("unbound");
    let dnsmasq = get("dnsmasq");
    let best_peer = servers
        .iter()
        .filter(|s| s.name != "noded")
        .map(Server::median_qps)
        .fold(f64::NAN, f64::max);
    let ratio = qps / best_peer;
    let (converge_ms, converge_max_ms) = match converge {
        Some(times) => (
            median(times.to_vec()),
            times.iter().copied().fold(f64::NAN, f64::max),
        ),
        None => (f64::NAN, f64::NAN),
    };
    let verdict = |v: f64, ok: bool| {
        if !v.is_finite() {
            "skipped"
        } else if ok {
            "met"
        } else {
            "missed"
        }
    };
    let goal_qps = verdict(ratio, ratio >= 1.0);
    let goal_converge = verdict(
        converge_max_ms,
        converge_max_ms <= options.interval_ms as f64 + CONVERGE_SLACK_MS,
    );
    if let Some(times) = converge {
        println!(
            "  convergence (check failing → instance out of DNS): {} ms (median {converge_ms:.0}, max {converge_max_ms:.0}), interval {} ms",
            times.iter().map(|t| format!("{t:.0}")).collect::<Vec<_>>().join(", "),
            options.interval_ms
        );
    }
    println!(
        "(1-minute load average {load_start:.2} at the start, {:.2} at the end, on {} cpus: compare the ratios, not the absolute figures)",
        load_average(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("goal: noded ≥ 1.0× the best peer's q/s: {goal_qps}; convergence ≤ interval + 1 s: {goal_converge}");
    println!(
        "RESULT dns qps={} p99_us={} unbound_qps={} unbound_p99_us={} dnsmasq_qps={} dnsmasq_p99_us={} ratio={} converge_ms={} interval_ms={} converge_max_ms={} instances={} seconds={} rounds={} outstanding={} goal_qps={goal_qps} goal_converge={goal_converge}",
        fmt(qps),
        fmt(p99),
        fmt(unbound.map_or(f64::NAN, Server::median_qps)),
        fmt(unbound.map_or(f64::NAN, Server::median_p99_us)),
        fmt(dnsmasq.map_or(f64::NAN, Server::median_qps)),
        fmt(dnsmasq.map_or(f64::NAN, Server::median_p99_us)),
        if ratio.is_finite() { format!("{ratio:.2}") } else { "skipped".into() },
        fmt(converge_ms),
        options.interval_ms,
        fmt(converge_max_ms),
        options.instances,
        options.seconds,
        options.rounds,
        options.outstanding,
    );
}

/// The 1-minute load average (0 when unreadable).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_the_synthetic_zone() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
        let z = synthetic_zone(3);
        assert_eq!(z.fqdn(), "web.service.noded.");
        assert_eq!(z.addresses().len(), 3);
    }
}
