//! `cargo xtask bench raft`: replicated durable writes, noded against etcd on the same machine,
//! in the same kind of network namespaces, with the same load.
//!
//! 1. noded: three `noded agent` servers (mutual TLS over the QUIC fabric) on a test LAN, and
//!    a fourth host with the writers: `--concurrency` keep-alive connections registering
//!    ~`--value-bytes` jobs (`PUT /v1/jobs`) for `--seconds`, to the leader, then to a
//!    follower (which forwards to the leader). Each acknowledged registration is a committed,
//!    fsynced Raft entry on a majority.
//! 2. noded failover, `--kills` times: kill -9 of the leader, then the time until the first
//!    registration is acknowledged by a survivor (both survivors are tried in parallel, each
//!    retrying every 20 ms); the killed server is restarted and caught up before the next.
//! 3. etcd (Debian's `etcd-server`, installed if missing): three members with their data dirs
//!    (fsync on, the default), one per host namespace on a LAN of the same kind, the same
//!    writers through etcd's JSON gateway (`POST /v3/kv/put`, base64 key and value) with
//!    values of the same size as noded's job bodies, to the leader.
//!
//! The internal propose path (a `RaftNode` driven in-process) is not measured yet: the
//! RESULT line says `noded_propose_writes_per_s=skipped`.
//!
//! Every process, namespace and directory goes when its guard drops, also on error.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine as _;
use noded_tests::{Host, Lan, TempDir};

use super::stats::Samples;
use super::Binaries;
use crate::raft_cluster::{job_body, spawn_in, Connection, Region};

/// Requests in the first second of a load run are not counted: connections open, the leader's
/// caches and redb's pages warm up.
const WARM_UP: Duration = Duration::from_secs(1);
/// How long one write may take before the writer counts it as failed and reconnects.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a failover may take before the bench gives up on it.
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);
/// How often a writer retries after a failed write during a failover (the issue's 20 ms).
const FAILOVER_RETRY: Duration = Duration::from_millis(20);
/// How long one write may take during a failover before it is abandoned and retried: a
/// write a survivor forwards to the dead leader hangs (until the client gives up), so
/// without this bound the figure would be the client's timeout, not the region's failover.
/// An idle region commits in a few ms, so this adds at most this much to a sample.
const FAILOVER_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(200);
/// etcd's client port and peer port.
const ETCD_CLIENT_PORT: u16 = 2379;
const ETCD_PEER_PORT: u16 = 2380;

#[derive(Debug, Clone)]
pub struct RaftOptions {
    /// Concurrent writers, each with its own keep-alive connection.
    pub concurrency: usize,
    /// Measured seconds of load per system (after [`WARM_UP`]).
    pub seconds: u64,
    /// Leader kills for the failover figure.
    pub kills: usize,
    /// The size of each written value: noded's job body, etcd's value.
    pub value_bytes: usize,
}

impl Default for RaftOptions {
    fn default() -> Self {
        RaftOptions {
            concurrency: 32,
            seconds: 10,
            kills: 20,
            value_bytes: 1024,
        }
    }
}

/// What one load run measured.
#[derive(Debug, Default)]
struct Load {
    /// Acknowledged writes inside the measured window.
    ok: u64,
    /// Failed writes (error status, timeout, broken connection) inside the window.
    failed: u64,
    latencies: Samples,
    window: Duration,
    first_error: Option<String>,
}

impl Load {
    fn per_s(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64().max(1e-9)
    }

    fn row(&self, what: &str) -> String {
        format!(
            "{what:<28} {:>9.0} writes/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ok {:>7}  failed {:>5}",
            self.per_s(),
            self.latencies.p50(),
            self.latencies.p99(),
            self.ok,
            self.failed
        )
    }
}

/// Drives `concurrency` writers from the namespace `netns` against `addr` for the measured
/// window; `request(writer, n)` gives the n-th request body of a writer, `acknowledged`
/// decides from status and body whether the write was acknowledged.
fn drive(
    netns: &Path,
    addr: SocketAddr,
    options: &RaftOptions,
    method: &str,
    path: &str,
    request: &(dyn Fn(usize, u64) -> Vec<u8> + Sync),
    acknowledged: fn(u16, &[u8]) -> bool,
) -> anyhow::Result<Load> {
    let start = Instant::now();
    let measured_from = start + WARM_UP;
    let end = measured_from + Duration::from_secs(options.seconds);
    let total = Mutex::new(Load::default());
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..options.concurrency)
            .map(|writer| {
                let total = &total;
                spawn_in(scope, netns.to_path_buf(), move || {
                    let mut mine = Load::default();
                    let mut connection = Connection::new(addr, WRITE_TIMEOUT);
                    let mut n = 0;
                    loop {
                        let sent = Instant::now();
                        if sent >= end {
                            break;
                        }
                        n += 1;
                        let body = request(writer, n);
                        let answer = connection.request(method, path, &body);
                        let took = sent.elapsed();
                        let counted = sent >= measured_from && sent + took <= end;
                        let ok = match &answer {
                            Ok((status, body)) => acknowledged(*status, body),
                            Err(_) => false,
                        };
                        if !ok {
                            // Do not spin on a failing server.
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        if !counted {
                            continue;
                        }
                        if ok {
                            mine.ok += 1;
                            mine.latencies.push(took);
                        } else {
                            mine.failed += 1;
                            if mine.first_error.is_none() {
                                mine.first_error = Some(match answer {
                                    Ok((status, body)) => {
                                        format!("{status} {}", String::from_utf8_lossy(&body))
                                    }
                                    Err(e) => e.to_string(),
                                });
                            }
                        }
                    }
                    let mut total = total.lock().unwrap_or_else(|e| e.into_inner());
                    total.ok += mine.ok;
                    total.failed += mine.failed;
                    for d in mine.latencies.values() {
                        total.latencies.push(*d);
                    }
                    if total.first_error.is_none() {
                        total.first_error = mine.first_error;
                    }
                })
            })
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(result) => result?,
                Err(_) => bail!("a writer thread panicked"),
            }
        }
        Ok(())
    })?;
    let mut load = total.into_inner().unwrap_or_else(|e| e.into_inner());
    load.window = Duration::from_secs(options.seconds);
    Ok(load)
}

fn noded_acknowledged(status: u16, _body: &[u8]) -> bool {
    status == 200
}

fn etcd_acknowledged(status: u16, body: &[u8]) -> bool {
    // The gateway answers 200 with the response header; errors carry an "error" field.
    status == 200 && !String::from_utf8_lossy(body).contains("\"error\"")
}

pub fn run(options: &RaftOptions, binaries: &Binaries) -> anyhow::Result<()> {
    let etcd = etcd_binary()?;
    eprintln!(
        "==> noded: {}; etcd: {}",
        binaries.noded.display(),
        etcd.display()
    );
    let value_bytes = job_body("bench-00-0000000", options.value_bytes).len();

    // noded: load on the leader, then on a follower, then the failovers.
    let region = Region::start("bench-raft", 3)?;
    let leader = region.leader(Duration::from_secs(60), &BTreeSet::new())?;
    eprintln!(
        "==> noded region up, leader s{leader}; {} writers for {}s, {value_bytes}-byte jobs",
        options.concurrency, options.seconds
    );
    let client_ns = region.client.netns.path();
    let value = options.value_bytes;
    let register = |prefix: &'static str| {
        move |writer: usize, n: u64| job_body(&format!("{prefix}-{writer}-{n}"), value).into_bytes()
    };
    let on_leader = drive(
        &client_ns,
        region.http_addr(leader),
        options,
        "PUT",
        "/v1/jobs",
        &register("bench-leader"),
        noded_acknowledged,
    )?;
    eprintln!("{}", on_leader.row("noded PUT /v1/jobs, leader"));
    let follower = (leader + 1) % region.agents.len();
    let on_follower = drive(
        &client_ns,
        region.http_addr(follower),
        options,
        "PUT",
        "/v1/jobs",
        &register("bench-follower"),
        noded_acknowledged,
    )?;
    eprintln!("{}", on_follower.row("noded PUT /v1/jobs, follower"));
    let mut region = region;
    let failover = failovers(&mut region, options)?;
    eprintln!(
        "noded failover (kill -9 → first ack)  p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms  (n={})",
        failover.p50(),
        failover.p99(),
        failover.max_ms(),
        failover.len()
    );
    drop(region);

    // etcd, with the machine to itself again.
    let cluster = EtcdCluster::start(&etcd)?;
    let etcd_leader = cluster.leader(Duration::from_secs(30))?;
    eprintln!("==> etcd cluster up, leader e{etcd_leader}");
    let b64 = base64::engine::general_purpose::STANDARD;
    let etcd_value = b64.encode(vec![b'x'; value_bytes]);
    let put = |writer: usize, n: u64| {
        let key = b64.encode(format!("bench/{writer}/{n}"));
        format!(r#"{{"key":"{key}","value":"{etcd_value}"}}"#).into_bytes()
    };
    let etcd_load = drive(
        &cluster.client.netns.path(),
        cluster.client_addr(etcd_leader),
        options,
        "POST",
        "/v3/kv/put",
        &put,
        etcd_acknowledged,
    )?;
    eprintln!("{}", etcd_load.row("etcd POST /v3/kv/put, leader"));
    drop(cluster);

    for (what, load) in [
        ("noded leader", &on_leader),
        ("noded follower", &on_follower),
        ("etcd", &etcd_load),
    ] {
        if let Some(e) = &load.first_error {
            eprintln!(
                "note: {what}: {} failed writes, the first: {e}",
                load.failed
            );
        }
    }
    println!();
    println!(
        "{:<34} {:>10} {:>9} {:>9}",
        "durable replicated writes", "writes/s", "p50 ms", "p99 ms"
    );
    for (what, load) in [
        ("noded PUT /v1/jobs → leader", &on_leader),
        ("noded PUT /v1/jobs → follower", &on_follower),
        ("etcd POST /v3/kv/put → leader", &etcd_load),
    ] {
        println!(
            "{what:<34} {:>10.0} {:>9.2} {:>9.2}",
            load.per_s(),
            load.latencies.p50(),
            load.latencies.p99()
        );
    }
    println!("{:<34} {:>10}", "noded internal propose path", "skipped");
    println!(
        "{:<34} {:>10} {:>9.0} {:>9.0}",
        format!("noded failover ({} kills)", failover.len()),
        "",
        failover.p50(),
        failover.p99()
    );
    let ratio = if etcd_load.ok == 0 {
        "n/a (etcd acknowledged nothing)".to_string()
    } else {
        format!("{:.2}", on_leader.per_s() / etcd_load.per_s())
    };
    println!(
        "noded/etcd writes/s: {ratio} (goal ≥ 1); failover p99 {:.0} ms (goal ≤ 1500)",
        failover.p99()
    );
    println!(
        "RESULT raft noded_http_writes_per_s={:.0} noded_http_p50_ms={:.2} noded_http_p99_ms={:.2} \
         noded_http_follower_writes_per_s={:.0} noded_propose_writes_per_s=skipped \
         etcd_puts_per_s={:.0} etcd_p50_ms={:.2} etcd_p99_ms={:.2} failover_p50_ms={:.0} \
         failover_p99_ms={:.0} kills={} concurrency={} value_bytes={value_bytes}",
        on_leader.per_s(),
        on_leader.latencies.p50(),
        on_leader.latencies.p99(),
        on_follower.per_s(),
        etcd_load.per_s(),
        etcd_load.latencies.p50(),
        etcd_load.latencies.p99(),
        failover.p50(),
        failover.p99(),
        failover.len(),
        options.concurrency,
    );
    Ok(())
}

/// `kills` rounds of: kill -9 the leader, time the first acknowledged registration on a
/// survivor, restart the killed server and wait until it holds that registration.
fn failovers(region: &mut Region, options: &RaftOptions) -> anyhow::Result<Samples> {
    let mut samples = Samples::default();
    let client_ns = region.client.netns.path();
    for round in 0..options.kills {
        let leader = region.leader(Duration::from_secs(60), &BTreeSet::new())?;
        let survivors: Vec<usize> = (0..region.agents.len()).filter(|i| *i != leader).collect();
        let addrs: Vec<SocketAddr> = survivors.iter().map(|i| region.http_addr(*i)).collect();
        region.agents[leader].kill9();
        let killed_at = Instant::now();
        let done = AtomicBool::new(false);
        let first = Mutex::new(None::<(Duration, String)>);
        std::thread::scope(|scope| -> anyhow::Result<()> {
            let handles: Vec<_> = addrs
                .iter()
                .enumerate()
                .map(|(k, addr)| {
                    let (done, first) = (&done, &first);
                    let addr = *addr;
                    spawn_in(scope, client_ns.clone(), move || {
                        let mut connection = Connection::new(addr, FAILOVER_ATTEMPT_TIMEOUT);
                        let mut n = 0;
                        while !done.load(Ordering::SeqCst) && killed_at.elapsed() < FAILOVER_LIMIT {
                            n += 1;
                            let id = format!("failover-{round}-{k}-{n}");
                            let body = job_body(&id, options.value_bytes);
                            match connection.request("PUT", "/v1/jobs", body.as_bytes()) {
                                Ok((200, _)) => {
                                    let took = killed_at.elapsed();
                                    if !done.swap(true, Ordering::SeqCst) {
                                        *first.lock().unwrap_or_else(|e| e.into_inner()) =
                                            Some((took, id));
                                    }
                                }
                                _ => std::thread::sleep(FAILOVER_RETRY),
                            }
                        }
                    })
                })
                .collect();
            for handle in handles {
                match handle.join() {
                    Ok(result) => result?,
                    Err(_) => bail!("a failover writer thread panicked"),
                }
            }
            Ok(())
        })?;
        let Some((took, id)) = first.into_inner().unwrap_or_else(|e| e.into_inner()) else {
            bail!(
                "round {round}: no registration acknowledged within {FAILOVER_LIMIT:?} after \
                 killing the leader s{leader}; see the agents' logs:\n{}",
                region.logs()
            );
        };
        samples.push(took);
        eprintln!(
            "failover {:>3}/{}: leader s{leader} killed, first ack after {:>5.0} ms",
            round + 1,
            options.kills,
            took.as_secs_f64() * 1e3
        );
        region.agents[leader].restart();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !region.has_job(leader, &id, true) {
            if Instant::now() > deadline {
                bail!(
                    "round {round}: the restarted server s{leader} did not catch up (job {id}) \
                     within 60s; see the agents' logs:\n{}",
                    region.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(samples)
}

/// Where `etcd` is, installing Debian's `etcd-server` when it is missing.
fn etcd_binary() -> anyhow::Result<PathBuf> {
    crate::install(&[("etcd-server", "etcd")])?;
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .map(|dir| dir.join("etcd"))
        .find(|p| p.is_file())
        .context("etcd is not on PATH after installing etcd-server: install it by hand")
}

/// One etcd member process; killed (SIGKILL) and reaped when dropped.
struct EtcdMember {
    child: Child,
    ip: Ipv4Addr,
    log: PathBuf,
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three etcd members on a LAN of their own, and a client host for the load.
struct EtcdCluster {
    // Dropped in this order: the processes, the hosts, the switch, the data dirs.
    members: Vec<EtcdMember>,
    client: Host,
    _hosts: Vec<Host>,
    _lan: Lan,
    _dir: TempDir,
}

impl EtcdCluster {
    fn start(etcd: &Path) -> anyhow::Result<EtcdCluster> {
        let lan = Lan::create("bench-etcd");
        let hosts: Vec<Host> = (0..3).map(|i| lan.host(&format!("e{i}"))).collect();
        let client = lan.host("load");
        let dir = TempDir::create("etcd");
        let initial_cluster = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| format!("e{i}=http://{}:{ETCD_PEER_PORT}", h.ip()))
            .collect::<Vec<_>>()
            .join(",");
        let token = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "noded-bench".into());
        let mut members = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            let ip = host.ip();
            let data = dir.join(format!("e{i}"));
            let log = dir.join(format!("e{i}.log"));
            let args: Vec<std::ffi::OsString> = vec![
                format!("--name=e{i}").into(),
                format!("--data-dir={}", data.display()).into(),
                format!("--listen-peer-urls=http://{ip}:{ETCD_PEER_PORT}").into(),
                format!("--initial-advertise-peer-urls=http://{ip}:{ETCD_PEER_PORT}").into(),
                format!("--listen-client-urls=http://{ip}:{ETCD_CLIENT_PORT}").into(),
                format!("--advertise-client-urls=http://{ip}:{ETCD_CLIENT_PORT}").into(),
                format!("--initial-cluster={initial_cluster}").into(),
                "--initial-cluster-state=new".into(),
                format!("--initial-cluster-token={token}").into(),
                "--log-level=warn".into(),
            ];
            let child = noded_tests::spawn_in_netns(&host.netns.path(), etcd, &args, &[], &log);
            members.push(EtcdMember { child, ip, log });
        }
        Ok(EtcdCluster {
            members,
            client,
            _hosts: hosts,
            _lan: lan,
            _dir: dir,
        })
    }

    fn client_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from((self.members[i].ip, ETCD_CLIENT_PORT))
    }

    /// Waits until every member reports the same leader; returns its position.
    fn leader(&self, timeout: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        let addrs: Vec<SocketAddr> = (0..self.members.len())
            .map(|i| self.client_addr(i))
            .collect();
        loop {
            let addrs = addrs.clone();
            let statuses = self.client.run(move || {
                addrs
                    .iter()
                    .map(|addr| {
                        let mut c = Connection::new(*addr, Duration::from_secs(1));
                        let (status, body) =
                            c.request("POST", "/v3/maintenance/status", b"{}").ok()?;
                        if status != 200 {
                            return None;
                        }
                        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
                        let me = v["header"]["member_id"].as_str()?.to_string();
                        let leader = v["leader"].as_str()?.to_string();
                        Some((me, leader))
                    })
                    .collect::<Vec<_>>()
            });
            if let Some(statuses) = statuses.into_iter().collect::<Option<Vec<_>>>() {
                let leaders: BTreeSet<&str> = statuses.iter().map(|(_, l)| l.as_str()).collect();
                if leaders.len() == 1 {
                    if let Some(i) = statuses.iter().position(|(me, l)| me == l) {
                        return Ok(i);
                    }
                }
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .members
                    .iter()
                    .map(|m| {
                        format!(
                            "--- {}\n{}",
                            m.log.display(),
                            std::fs::read_to_string(&m.log).unwrap_or_default()
                        )
                    })
                    .collect();
                bail!(
                    "etcd: no agreed leader within {timeout:?}; logs:\n{}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
