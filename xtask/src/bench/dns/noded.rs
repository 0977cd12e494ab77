//! noded's half: a one-server agent with its own client (what `agent -dev` is, bound to the
//! server namespace's address rather than loopback, with the dns block) running a job of
//! `count` instances behind one service with an http check, its DNS server answering on
//! the namespace's address; and the convergence run (an instance's check made to fail, timed
//! until the instance leaves the DNS answer).
//!
//! Each instance is a raw_exec task serving a directory of its own (`<dir>/<port>/health`,
//! made by the task itself at start) with `python3 -m http.server`; deleting that file makes
//! the check's GET return 404, i.e. critical.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use noded_tests::{server_and_client_config, ClusterAgent, Host};

use super::load::Asker;
use super::wire::QType;
use super::zone::{Instance, Zone};

/// The job the bench registers.
pub const JOB_ID: &str = "dnsbench";
/// How long the job may take to have every instance passing and in the catalog.
const PLACED_WITHIN: Duration = Duration::from_secs(90);
/// How long an instance may take to leave (or re-enter) DNS before the bench gives up.
const CONVERGE_LIMIT: Duration = Duration::from_secs(30);
/// How often DNS is polled while timing convergence.
const POLL_EVERY: Duration = Duration::from_millis(5);

/// The agent's config: [`server_and_client_config`] plus the dns block the issue specifies.
pub fn agent_config(host_ip: Ipv4Addr, tls: &noded_tests::TlsPaths, dns_port: u16) -> String {
    format!(
        "{}\ndns {{\n  enabled = true\n  bind    = \"{host_ip}\"\n  port    = {dns_port}\n}}\n",
        server_and_client_config(host_ip, "dnsbench", tls)
    )
}

/// The job, as `/v1/jobs` JSON: `count` instances of `service`, each a python http.server on
/// its dynamic port `http`, checked every `interval` with GET /health.
pub fn job(service: &str, count: u32, interval: Duration, dir: &Path) -> serde_json::Value {
    let script = format!(
        "d={}/$NOMAD_PORT_http && mkdir -p \"$d\" && : > \"$d/health\" && exec /usr/bin/python3 -m http.server \"$NOMAD_PORT_http\" --directory \"$d\"",
        dir.display()
    );
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    serde_json::json!({"Job": {
        "ID": JOB_ID, "Name": JOB_ID, "Type": "service", "Datacenters": ["dc1"],
        "TaskGroups": [{
            "Name": "web", "Count": count,
            "Networks": [{"DynamicPorts": [{"Label": "http"}]}],
            "Services": [{
                "Name": service, "PortLabel": "http", "Provider": "nomad",
                "Checks": [{
                    "Name": "alive", "Type": "http", "Path": "/health",
                    "Interval": nanos(interval),
                    // The whole interval: with both cores saturated by the load a probe can
                    // wait hundreds of ms for a CPU, and a check failing for that would
                    // change the zone under the throughput rounds.
                    "Timeout": nanos(interval),
                }]
            }],
            "Tasks": [{
                "Name": "serve", "Driver": "raw_exec",
                "Config": {"command": "/bin/sh", "args": ["-c", script]},
                "Resources": {"CPU": 100, "MemoryMB": 64}
            }]
        }]
    }})
}

/// The agent and its job, up and serving.
pub struct Noded {
    pub agent: ClusterAgent,
    pub dns: SocketAddr,
    pub zone: Zone,
    /// Where the instances' directories are (`<dir>/<port>/health`).
    pub serve_dir: PathBuf,
}

/// Starts the agent on `host` (its DNS server on `host:dns_port`), registers the job and
/// waits for `count` passing instances; reads the zone back from the catalog.
pub fn start(
    host: &Host,
    tls: &noded_tests::TlsPaths,
    dns_port: u16,
    zone_name: (&str, &str),
    count: u32,
    interval: Duration,
    serve_dir: &Path,
) -> anyhow::Result<Noded> {
    let (service, domain) = zone_name;
    let config = agent_config(host.ip(), tls, dns_port);
    // The harness panics (with the agent's log) when the agent does not come up; an agent
    // without the DNS server refuses the `dns` block, which deserves a hint, not a backtrace.
    let agent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ClusterAgent::start(host, "dnsbench", &config)
    }))
    .map_err(|_| {
        anyhow::anyhow!(
            "noded's agent did not start with `dns {{ enabled = true, bind = \"{}\", port = {dns_port} }}` (its log is above); if it refused the dns block, this build has no DNS server yet: run `cargo xtask bench dns --peers-only` for the peers' figures",
            host.ip()
        )
    })?;
    let body = serde_json::to_vec(&job(service, count, interval, serve_dir))?;
    let r = agent
        .http("PUT", "/v1/jobs", Some(&body))
        .context("registering the bench's job")?;
    if r.status != 200 {
        bail!(
            "registering the job: HTTP {}: {}\nagent log:\n{}",
            r.status,
            r.text(),
            agent.log_text()
        );
    }
    let deadline = Instant::now() + PLACED_WITHIN;
    let instances = loop {
        let found = passing_instances(&agent, service);
        match &found {
            Ok(list) if list.len() == count as usize => break list.clone(),
            _ if Instant::now() > deadline => bail!(
                "{count} passing instances of {service} not in the catalog after {PLACED_WITHIN:?} (last: {found:?}); is the client's service registration merged?\nagent log:\n{}",
                agent.log_text()
            ),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    Ok(Noded {
        agent,
        dns: SocketAddr::from((host.ip(), dns_port)),
        zone: Zone {
            service: service.to_string(),
            domain: domain.to_string(),
            instances,
        },
        serve_dir: serve_dir.to_path_buf(),
    })
}

/// The passing instances of `service` in the catalog (`/v1/service/:name`, Nomad's list of
/// registrations; an entry without a `Status` counts as passing, as Nomad's have none).
fn passing_instances(agent: &ClusterAgent, service: &str) -> anyhow::Result<Vec<Instance>> {
    let r = agent.get(&format!("/v1/service/{service}"))?;
    if r.status != 200 {
        bail!("GET /v1/service/{service}: HTTP {}: {}", r.status, r.text());
    }
    let json = r.json();
    let list = json
        .as_array()
        .with_context(|| format!("/v1/service/{service} is not a list: {json}"))?;
    let mut out = Vec::new();
    for reg in list {
        if reg["Status"].as_str().is_some_and(|s| s != "passing") {
            continue;
        }
        let address: Ipv4Addr = reg["Address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("registration without an IPv4 Address: {reg}"))?;
        let port = reg["Port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .with_context(|| format!("registration without a Port: {reg}"))?;
        out.push(Instance { address, port });
    }
    out.sort();
    Ok(out)
}

/// Whether DNS's SRV answer holds `port` (other answers must be well-formed NOERROR).
fn srv_has(asker: &mut Asker, zone: &Zone, port: u16) -> anyhow::Result<bool> {
    let r = asker.ask(&zone.fqdn(), QType::Srv, Duration::from_millis(500))?;
    if r.rcode != 0 && r.rcode != 3 {
        bail!("SRV {}: rcode {}", zone.fqdn(), r.rcode);
    }
    Ok(r.srv.iter().any(|s| s.port == port))
}

/// Polls until `port` is (`present`) or is not in the SRV answer; returns how long it took.
fn wait_srv(asker: &mut Asker, zone: &Zone, port: u16, present: bool) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        // A lost datagram is retried at the next poll, not counted as converged.
        if let Ok(has) = srv_has(asker, zone, port) {
            if has == present {
                return Ok(start.elapsed());
            }
        }
        if start.elapsed() > CONVERGE_LIMIT {
            bail!(
                "instance on port {port} still {} DNS after {CONVERGE_LIMIT:?}",
                if present { "missing from" } else { "in" }
            );
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// `runs` times: deletes one instance's health file (its check now fails) and times until
/// that instance leaves the SRV answer; restores the file and waits for it to come back.
/// Returns the times in milliseconds.
pub fn convergence(noded: &Noded, client: &Host, runs: usize) -> anyhow::Result<Vec<f64>> {
    let mut asker = Asker::new(client, noded.dns)?;
    let victim = noded
        .zone
        .instances
        .first()
        .context("the zone has no instance")?
        .port;
    let health = noded.serve_dir.join(victim.to_string()).join("health");
    let mut times = Vec::with_capacity(runs);
    for run in 0..runs {
        wait_srv(&mut asker, &noded.zone, victim, true)
            .with_context(|| format!("convergence run {run}: before the check fails"))?;
        std::fs::remove_file(&health)
            .with_context(|| format!("removing {} (the check's target)", health.display()))?;
        let took = wait_srv(&mut asker, &noded.zone, victim, false).with_context(|| {
            format!(
                "convergence run {run}; agent log:\n{}",
                noded.agent.log_text()
            )
        })?;
        times.push(took.as_secs_f64() * 1e3);
        std::fs::write(&health, b"").with_context(|| format!("restoring {}", health.display()))?;
    }
    // Back to a full answer, so nothing after this sees a partial zone.
    wait_srv(&mut asker, &noded.zone, victim, true).context("after the convergence runs")?;
    Ok(times)
}

/// What the catalog and the agent's log say of the instances' health: printed when noded
/// answered differently from the zone, so a wrong answer can be told from a check that
/// failed under the load (the answer then follows the catalog, as it must).
pub fn health_report(noded: &Noded) -> String {
    let statuses = match noded.agent.get("/v1/service/web") {
        Ok(r) => r
            .json()
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|s| format!("{}:{}", s["Port"], s["Status"].as_str().unwrap_or("?")))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default(),
        Err(e) => format!("catalog unreadable: {e}"),
    };
    let log = noded.agent.log_text();
    let changes: Vec<&str> = log.lines().filter(|l| l.contains("check is now")).collect();
    let tail = &changes[changes.len().saturating_sub(6)..];
    format!(
        "catalog now: {statuses}; last check changes:\n      {}",
        tail.join("\n      ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_has_the_service_and_the_http_check_the_bench_breaks() {
        let job = job("web", 3, Duration::from_secs(1), Path::new("/t/serve"));
        let group = &job["Job"]["TaskGroups"][0];
        assert_eq!(group["Count"], 3);
        assert_eq!(group["Services"][0]["Provider"], "nomad");
        assert_eq!(group["Services"][0]["Checks"][0]["Path"], "/health");
        assert_eq!(
            group["Services"][0]["Checks"][0]["Interval"],
            1_000_000_000u64
        );
        let script = group["Tasks"][0]["Config"]["args"][1].as_str().unwrap();
        assert!(script.contains("d=/t/serve/$NOMAD_PORT_http"), "{script}");
    }
}
