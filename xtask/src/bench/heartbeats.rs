//! `cargo xtask bench heartbeats`: how many client nodes a region's leader keeps alive.
//!
//! A region of one or three real `noded agent` servers (the harness's [`Region`]: one network
//! namespace per server, mutual TLS over the QUIC fabric) and, on a fourth host of the same
//! LAN, `--nodes` simulated clients inside this process. A simulated client is what a real
//! client-only agent is to the servers, minus its tasks: a node id, its registration and its
//! heartbeat timer, spoken through the client's own [`RemoteServers`] (fabric method
//! `METHOD_NODE`, JSON `NodeRequest`) with a real `client.<region>` certificate made by
//! `noded tls cert create -client`.
//!
//! Endpoints: one [`Fabric`] (one UDP socket, one QUIC connection per server) per
//! [`NODES_PER_ENDPOINT`] nodes. A real fleet has one connection per node, but 10,000 QUIC
//! connections from one process would measure this process, and the servers refuse more than
//! `Limits::max_connections` (256) at once; 100 nodes per connection keeps every server under
//! that bound (≤ 100 connections for 10,000 nodes) while the server still demultiplexes
//! thousands of concurrent streams from many connections, as it would from a fleet.
//!
//! Phases, per region size:
//! 1. register: every node registers (at most [`REGISTER_CONCURRENCY`] at once), then starts
//!    heartbeating at once, as a real client does. Reported: registrations/s.
//! 2. steady: every node heartbeats at 0.9 × the TTL its last answer gave
//!    ([`noded::client::heartbeat::next_heartbeat`], the client's own rule), for one full TTL
//!    plus the leader's grace after the last registration, the TTL being the longest any
//!    answer gave (or `--duration`). Then the nodes the leader marked `down` are counted from
//!    `GET /v1/nodes` (must be 0). Reported: heartbeats/s, p50/p99 latency, the leader's CPU
//!    (utime + stime over the window, in cores) and RSS.
//! 3. capacity: the timers stop; [`CAPACITY_CALLERS`] callers heartbeat back to back, closed
//!    loop, for [`CAPACITY_WINDOW`]. Reported: the most heartbeats/s the leader answers, p99.
//!
//! No peer runs on this machine (Nomad is not packaged for Debian); Nomad's reference figure is
//! its design rate, `max_heartbeats_per_second` = 50 (TTLs grow so the leader sees at most that).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use controlplane::model::{Node, NodeResources, NodeStatus};
use federation::{Fabric, FabricConfig, Limits, Role, TlsMaterial};
use noded::client::heartbeat::next_heartbeat;
use noded::client::remote::RemoteServers;
use noded::client::{HeartbeatError, ServerRpc};

use super::stats::Samples;
use super::Binaries;
use crate::raft_cluster::{spawn_in, Region};

/// The region the servers and the client certificate are for.
const REGION: &str = "global";
/// Simulated nodes per fabric endpoint (one QUIC connection per server).
pub(super) const NODES_PER_ENDPOINT: usize = 100;
/// Registrations in flight at once (a fleet booting together, bounded).
const REGISTER_CONCURRENCY: usize = 64;
/// Closed-loop callers in the capacity phase.
const CAPACITY_CALLERS: usize = 64;
/// How long the capacity phase measures (after [`CAPACITY_WARM_UP`]).
const CAPACITY_WINDOW: Duration = Duration::from_secs(15);
const CAPACITY_WARM_UP: Duration = Duration::from_secs(1);
/// The leader's `heartbeat_grace` (the servers run with Nomad's default, 10 s).
const GRACE: Duration = Duration::from_secs(10);
/// Slack after TTL + grace for the leader's timer loop to propose a missed node down.
const MARGIN: Duration = Duration::from_secs(5);
/// A failed heartbeat or registration is tried again after this (the client's first backoff).
const RETRY: Duration = Duration::from_secs(1);
/// How long registering every node may take before the bench gives up.
const REGISTER_WITHIN: Duration = Duration::from_secs(900);
/// Latency samples one phase keeps (a bound; ~100 heartbeats/s for hours fits).
const MAX_SAMPLES: usize = 2_000_000;
/// Progress lines while waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct HeartbeatsOptions {
    pub nodes: usize,
    /// 1 or 3; both, one after the other, when not given.
    pub servers: Option<usize>,
    /// The steady window; one TTL + grace from the answers when not given.
    pub duration: Option<Duration>,
}

impl Default for HeartbeatsOptions {
    fn default() -> Self {
        HeartbeatsOptions {
            nodes: 10_000,
            servers: None,
            duration: None,
        }
    }
}

/// Parses `90`, `90s`, `5m`, `1h` into a duration.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .with_context(|| format!("--duration {text:?}: expected a number with s, m or h"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        other => bail!("--duration {text:?}: unknown unit {other:?} (use s, m or h)"),
    };
    if !(1..=24 * 3600).contains(&seconds) {
        bail!("--duration must be 1s to 24h");
    }
    Ok(Duration::from_secs(seconds))
}

/// What one region size measured.
#[derive(Debug)]
struct Figures {
    servers: usize,
    nodes: usize,
    registrations_per_s: f64,
    steady_window: Duration,
    max_ttl: Duration,
    steady_ok: u64,
    steady_failed: u64,
    reregistered: u64,
    steady: Samples,
    missed: usize,
    not_ready: usize,
    known: usize,
    leader_cpu_core: f64,
    leader_rss_kib: u64,
    bench_cpu_core: f64,
    capacity_ok: u64,
    capacity_failed: u64,
    capacity: Samples,
    first_error: Option<String>,
}

impl Figures {
    fn steady_per_s(&self) -> f64 {
        self.steady_ok as f64 / self.steady_window.as_secs_f64().max(1e-9)
    }

    fn capacity_per_s(&self) -> f64 {
        self.capacity_ok as f64 / CAPACITY_WINDOW.as_secs_f64()
    }
}

pub fn run(options: &HeartbeatsOptions, binaries: &Binaries) -> anyhow::Result<()> {
    eprintln!("==> noded: {}", binaries.noded.display());
    eprintln!(
        "==> peer: none on this machine (Nomad is not installed or packaged here); Nomad's \
         reference is its design rate, max_heartbeats_per_second = 50"
    );
    let sizes = match options.servers {
        Some(n) => vec![n],
        None => vec![1, 3],
    };
    let mut all = Vec::new();
    for servers in sizes {
        let figures = one_region(options, servers)?;
        print_figures(&figures);
        all.push(figures);
    }
    println!();
    println!(
        "goal: ≥ 10000 nodes per region at the default TTL, missed=0, leader < 1 core; \
         peer: none on this machine (Nomad's default max_heartbeats_per_second = 50)"
    );
    let mut failed = Vec::new();
    for f in &all {
        println!(
            "RESULT heartbeats nodes={} servers={} missed={} steady_hb_per_s={:.1} p99_ms={:.2} \
             leader_cpu_core={:.3} leader_rss_mib={:.1} capacity_hb_per_s={:.0} \
             capacity_p99_ms={:.2} registrations_per_s={:.0} p50_ms={:.2} max_ttl_s={:.0}",
            f.nodes,
            f.servers,
            f.missed,
            f.steady_per_s(),
            f.steady.p99(),
            f.leader_cpu_core,
            f.leader_rss_kib as f64 / 1024.0,
            f.capacity_per_s(),
            f.capacity.p99(),
            f.registrations_per_s,
            f.steady.p50(),
            f.max_ttl.as_secs_f64(),
        );
        if f.missed > 0 || f.not_ready > 0 || f.known != f.nodes {
            failed.push(format!(
                "{} server(s): {} of {} nodes down, {} not ready, {} known",
                f.servers, f.missed, f.nodes, f.not_ready, f.known
            ));
        }
    }
    if !failed.is_empty() {
        bail!(
            "the leader lost nodes that heartbeat on time: {}",
            failed.join("; ")
        );
    }
    Ok(())
}

fn print_figures(f: &Figures) {
    println!();
    println!("{} server(s), {} simulated nodes", f.servers, f.nodes);
    println!(
        "  register            {:>9.0} registrations/s",
        f.registrations_per_s
    );
    println!(
        "  steady ({:>4.0} s)     {:>9.1} heartbeats/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ok {}  failed {}  re-registered {}",
        f.steady_window.as_secs_f64(),
        f.steady_per_s(),
        f.steady.p50(),
        f.steady.p99(),
        f.steady_ok,
        f.steady_failed,
        f.reregistered
    );
    println!(
        "  longest TTL given   {:>9.0} s (+ {} s grace)",
        f.max_ttl.as_secs_f64(),
        GRACE.as_secs()
    );
    println!(
        "  nodes down          {:>9}  (not ready {}, known {} of {})",
        f.missed, f.not_ready, f.known, f.nodes
    );
    println!(
        "  leader              {:>9.3} cores  {:.1} MiB RSS   (the bench's own: {:.3} cores)",
        f.leader_cpu_core,
        f.leader_rss_kib as f64 / 1024.0,
        f.bench_cpu_core
    );
    println!(
        "  capacity ({CAPACITY_CALLERS} callers) {:>9.0} heartbeats/s  p50 {:>7.2} ms  p99 {:>7.2} ms  failed {}",
        f.capacity_per_s(),
        f.capacity.p50(),
        f.capacity.p99(),
        f.capacity_failed
    );
    if let Some(e) = &f.first_error {
        println!("  first error: {e}");
    }
}

/// State the node tasks share with the driver.
#[derive(Default)]
struct Shared {
    registered: AtomicUsize,
    /// Set while the steady window runs: heartbeats are counted and timed.
    measuring: AtomicBool,
    steady_ok: AtomicU64,
    steady_failed: AtomicU64,
    reregistered: AtomicU64,
    /// The longest TTL any answer gave, in ms.
    max_ttl_ms: AtomicU64,
    samples: Mutex<Samples>,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn error(&self, e: String) {
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(e);
        }
    }

    fn sample(&self, took: Duration) {
        if let Ok(mut samples) = self.samples.lock() {
            if samples.len() < MAX_SAMPLES {
                samples.push(took);
            }
        }
    }
}

/// A simulated node as a client fingerprints one: the attributes the scheduler reads, no
/// drivers (it runs nothing), resources of a small machine.
fn simulated_node(i: usize, ip: &str) -> Node {
    let mut node = Node {
        id: uuid::Uuid::new_v4().to_string(),
        name: format!("sim-{i:05}"),
        datacenter: "dc1".into(),
        node_pool: "default".into(),
        http_addr: format!("{ip}:4646"),
        status: NodeStatus::Initializing,
        scheduling_eligibility: "eligible".into(),
        node_resources: NodeResources::default(),
        ..Node::default()
    };
    for (k, v) in [
        ("kernel.name", "linux"),
        ("kernel.version", "6.1.0"),
        ("os.name", "debian"),
        ("cpu.arch", "amd64"),
        ("cpu.numcores", "2"),
        ("memory.totalbytes", "4294967296"),
        ("unique.network.ip-address", ip),
        ("nomad.version", "1.9.0"),
    ] {
        node.attributes.insert(k.into(), v.into());
    }
    node.attributes
        .insert("unique.hostname".into(), node.name.clone());
    node
}

/// Registers (retrying), then heartbeats for ever at 0.9 × TTL, as a client does.
async fn node_loop(
    rpc: Arc<RemoteServers>,
    node: Node,
    shared: Arc<Shared>,
    permits: Arc<tokio::sync::Semaphore>,
) {
    loop {
        let Ok(_permit) = permits.acquire().await else {
            return;
        };
        match rpc.register_node(node.clone()).await {
            Ok(_) => break,
            Err(e) => {
                shared.error(format!("register {}: {e}", node.id));
                tokio::time::sleep(RETRY).await;
            }
        }
    }
    shared.registered.fetch_add(1, Ordering::SeqCst);
    loop {
        let sent = Instant::now();
        let result = rpc.heartbeat(node.id.clone()).await;
        let took = sent.elapsed();
        let measuring = shared.measuring.load(Ordering::SeqCst);
        let wait = match result {
            Ok(ttl) => {
                let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                shared.max_ttl_ms.fetch_max(ms, Ordering::SeqCst);
                if measuring {
                    shared.steady_ok.fetch_add(1, Ordering::SeqCst);
                    shared.sample(took);
                }
                next_heartbeat(ttl)
            }
            Err(HeartbeatError::UnknownNode(e)) => {
                shared.error(format!("heartbeat {}: {e}", node.id));
                shared.reregistered.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = rpc.register_node(node.clone()).await {
                    shared.error(format!("register again {}: {e}", node.id));
                }
                Duration::ZERO
            }
            Err(HeartbeatError::Failed(e)) => {
                if measuring {
                    shared.steady_failed.fetch_add(1, Ordering::SeqCst);
                }
                shared.error(format!("heartbeat {}: {e}", node.id));
                RETRY
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("{path}: no command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("{path}: field {n} is not a number"))
    };
    Ok(field(14)? + field(15)?)
}

/// `getconf CLK_TCK`: the unit of /proc/PID/stat's times.
fn clock_ticks_per_s() -> anyhow::Result<f64> {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("running getconf CLK_TCK (libc-bin)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let n: f64 = text
        .trim()
        .parse()
        .with_context(|| format!("getconf CLK_TCK printed {text:?}"))?;
    if n <= 0.0 {
        bail!("getconf CLK_TCK printed {n}");
    }
    Ok(n)
}

pub(super) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("{path}: no VmRSS line"))
}

/// (down, not ready, known) among the nodes `GET /v1/nodes` lists on `addr`.
fn count_nodes(addr: &str) -> anyhow::Result<(usize, usize, usize)> {
    let r = noded_tests::http_with_timeout(addr, "GET", "/v1/nodes", None, Duration::from_secs(60))
        .with_context(|| format!("GET http://{addr}/v1/nodes"))?;
    if r.status != 200 {
        bail!("GET http://{addr}/v1/nodes: {} {}", r.status, r.text());
    }
    let nodes = r.json();
    let list = nodes
        .as_array()
        .with_context(|| format!("GET http://{addr}/v1/nodes did not answer a list"))?;
    let status = |n: &serde_json::Value| n["Status"].as_str().unwrap_or_default().to_string();
    let down = list.iter().filter(|n| status(n) == "down").count();
    let not_ready = list.iter().filter(|n| status(n) != "ready").count();
    Ok((down, not_ready, list.len()))
}

fn one_region(options: &HeartbeatsOptions, servers: usize) -> anyhow::Result<Figures> {
    let region = Region::start("bench-hb", servers)?;
    let leader = region.leader(Duration::from_secs(60), &BTreeSet::new())?;
    let leader_pid = region.agents[leader]
        .pid()
        .context("the leader's process is not running")?;
    let client_tls = noded_tests::client_certificate(region.pki_dir(), REGION);
    let tls = TlsMaterial::load(
        &client_tls.ca_file,
        &client_tls.cert_file,
        &client_tls.key_file,
    )
    .context("loading the client certificate noded tls made")?;
    let server_addrs: Vec<String> = region
        .hosts
        .iter()
        .map(|h| format!("{}:4647", h.ip()))
        .collect();
    let leader_http = region.http_addr(leader).to_string();
    let load_ip = region.client.ip();
    let ticks = clock_ticks_per_s()?;
    eprintln!(
        "==> {servers} server(s) up, leader s{leader} (pid {leader_pid}); {} nodes over {} fabric endpoints from {load_ip}",
        options.nodes,
        options.nodes.div_ceil(NODES_PER_ENDPOINT)
    );
    let nodes = options.nodes;
    let duration = options.duration;
    let result = std::thread::scope(|scope| {
        let handle = spawn_in(scope, region.client.netns.path(), move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the bench's tokio runtime")?;
            rt.block_on(drive(DriveArgs {
                nodes,
                duration,
                tls,
                server_addrs,
                load_ip,
                leader_pid,
                leader_http,
                ticks,
                servers,
            }))
        });
        match handle.join() {
            Ok(result) => result,
            Err(_) => bail!("the load thread panicked"),
        }
    });
    let figures = match result {
        Ok(Ok(f)) => f,
        Ok(Err(e)) | Err(e) => {
            return Err(e.context(format!("see the servers' logs:\n{}", region.logs())));
        }
    };
    drop(region);
    Ok(figures)
}

struct DriveArgs {
    nodes: usize,
    duration: Option<Duration>,
    tls: TlsMaterial,
    server_addrs: Vec<String>,
    load_ip: std::net::Ipv4Addr,
    leader_pid: u32,
    leader_http: String,
    ticks: f64,
    servers: usize,
}

/// The fabric endpoints `nodes` simulated clients speak through: one per
/// [`NODES_PER_ENDPOINT`] nodes, bound on the load host as a client agent binds its own
/// (keep-alive 1 s, idle timeout 5 s).
pub(super) async fn client_endpoints(
    nodes: usize,
    load_ip: std::net::Ipv4Addr,
    tls: &TlsMaterial,
    server_addrs: &[String],
) -> anyhow::Result<Vec<Arc<RemoteServers>>> {
    let mut rpcs = Vec::new();
    for _ in 0..nodes.div_ceil(NODES_PER_ENDPOINT) {
        let fabric = Fabric::bind(
            FabricConfig {
                bind: std::net::SocketAddr::from((load_ip, 0)),
                region: REGION.into(),
                role: Role::Client,
                tls: tls.clone(),
                limits: Limits {
                    keep_alive: Duration::from_secs(1),
                    idle_timeout: Duration::from_secs(5),
                    ..Limits::default()
                },
            },
            None,
        )
        .await
        .context("binding a client fabric endpoint")?;
        rpcs.push(Arc::new(RemoteServers::new(fabric, server_addrs.to_vec())));
    }
    Ok(rpcs)
}

async fn drive(a: DriveArgs) -> anyhow::Result<Figures> {
    let rpcs = client_endpoints(a.nodes, a.load_ip, &a.tls, &a.server_addrs).await?;
    let ip = a.load_ip.to_string();
    let node_list: Vec<Node> = (0..a.nodes).map(|i| simulated_node(i, &ip)).collect();
    let ids: Vec<String> = node_list.iter().map(|n| n.id.clone()).collect();
    let shared = Arc::new(Shared::default());
    let permits = Arc::new(tokio::sync::Semaphore::new(REGISTER_CONCURRENCY));

    // Phase 1: register (each node starts heartbeating as soon as it is registered).
    let started = Instant::now();
    let tasks: Vec<_> = node_list
        .into_iter()
        .enumerate()
        .map(|(i, node)| {
            tokio::spawn(node_loop(
                rpcs[i / NODES_PER_ENDPOINT].clone(),
                node,
                shared.clone(),
                permits.clone(),
            ))
        })
        .collect();
    let mut progress = Instant::now();
    while shared.registered.load(Ordering::SeqCst) < a.nodes {
        if started.elapsed() > REGISTER_WITHIN {
            bail!(
                "only {} of {} nodes registered within {REGISTER_WITHIN:?}; first error: {:?}",
                shared.registered.load(Ordering::SeqCst),
                a.nodes,
                shared.first_error.lock().ok().and_then(|e| e.clone())
            );
        }
        if progress.elapsed() > PROGRESS_EVERY {
            progress = Instant::now();
            eprintln!(
                "    {} of {} registered after {:.0} s",
                shared.registered.load(Ordering::SeqCst),
                a.nodes,
                started.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let registrations_per_s = a.nodes as f64 / started.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "==> {} nodes registered in {:.1} s ({registrations_per_s:.0}/s); steady heartbeats",
        a.nodes,
        started.elapsed().as_secs_f64()
    );

    // Phase 2: steady, for one TTL + grace after the last registration (every deadline the
    // leader held then has come due by the end), as long as the longest TTL answered.
    let leader_ticks_before = cpu_ticks(a.leader_pid)?;
    let self_ticks_before = cpu_ticks(std::process::id())?;
    let steady_start = Instant::now();
    shared.measuring.store(true, Ordering::SeqCst);
    let mut progress = Instant::now();
    let max_ttl = loop {
        let max_ttl = Duration::from_millis(shared.max_ttl_ms.load(Ordering::SeqCst));
        let window = a.duration.unwrap_or(max_ttl + GRACE + MARGIN);
        let elapsed = steady_start.elapsed();
        if elapsed >= window {
            break max_ttl;
        }
        if progress.elapsed() > PROGRESS_EVERY {
            progress = Instant::now();
            eprintln!(
                "    steady {:.0}/{:.0} s: {} heartbeats answered, {} failed",
                elapsed.as_secs_f64(),
                window.as_secs_f64(),
                shared.steady_ok.load(Ordering::SeqCst),
                shared.steady_failed.load(Ordering::SeqCst)
            );
        }
        tokio::time::sleep((window - elapsed).min(Duration::from_secs(1))).await;
    };
    shared.measuring.store(false, Ordering::SeqCst);
    let steady_window = steady_start.elapsed();
    let leader_ticks = cpu_ticks(a.leader_pid)?.saturating_sub(leader_ticks_before);
    let self_ticks = cpu_ticks(std::process::id())?.saturating_sub(self_ticks_before);
    let leader_rss_kib = rss_kib(a.leader_pid)?;
    if let Some(d) = a.duration {
        if d < max_ttl + GRACE {
            eprintln!(
                "note: --duration {d:?} is shorter than the longest TTL ({max_ttl:?}) + grace: \
                 a missed heartbeat may not have come due yet"
            );
        }
    }
    let addr = a.leader_http.clone();
    let (missed, not_ready, known) = tokio::task::spawn_blocking(move || count_nodes(&addr))
        .await
        .context("the node count thread panicked")??;
    eprintln!("==> steady done: {missed} nodes down; capacity: {CAPACITY_CALLERS} callers for {CAPACITY_WINDOW:?}");

    // Phase 3: capacity, closed loop, timers stopped.
    for task in &tasks {
        task.abort();
    }
    let capacity_start = Instant::now();
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let capacity_samples = Arc::new(Mutex::new(Samples::default()));
    let ids = Arc::new(ids);
    let callers: Vec<_> = (0..CAPACITY_CALLERS)
        .map(|k| {
            let (rpcs, ids) = (rpcs.clone(), ids.clone());
            let (ok, failed, samples, shared) = (
                ok.clone(),
                failed.clone(),
                capacity_samples.clone(),
                shared.clone(),
            );
            tokio::spawn(async move {
                let mut i = k;
                let end = capacity_start + CAPACITY_WARM_UP + CAPACITY_WINDOW;
                while Instant::now() < end {
                    let n = i % ids.len();
                    i += CAPACITY_CALLERS;
                    let sent = Instant::now();
                    let result = rpcs[n / NODES_PER_ENDPOINT].heartbeat(ids[n].clone()).await;
                    let counted = sent >= capacity_start + CAPACITY_WARM_UP && Instant::now() < end;
                    match result {
                        Ok(_) if counted => {
                            ok.fetch_add(1, Ordering::SeqCst);
                            if let Ok(mut s) = samples.lock() {
                                if s.len() < MAX_SAMPLES {
                                    s.push(sent.elapsed());
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            if counted {
                                failed.fetch_add(1, Ordering::SeqCst);
                            }
                            shared.error(format!("capacity heartbeat: {e}"));
                        }
                    }
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.context("a capacity caller panicked")?;
    }
    let capacity = capacity_samples
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    let steady = shared.samples.lock().map(|s| s.clone()).unwrap_or_default();
    let first_error = shared.first_error.lock().ok().and_then(|e| e.clone());
    Ok(Figures {
        servers: a.servers,
        nodes: a.nodes,
        registrations_per_s,
        steady_window,
        max_ttl,
        steady_ok: shared.steady_ok.load(Ordering::SeqCst),
        steady_failed: shared.steady_failed.load(Ordering::SeqCst),
        reregistered: shared.reregistered.load(Ordering::SeqCst),
        steady,
        missed,
        not_ready,
        known,
        leader_cpu_core: leader_ticks as f64 / a.ticks / steady_window.as_secs_f64(),
        leader_rss_kib,
        bench_cpu_core: self_ticks as f64 / a.ticks / steady_window.as_secs_f64(),
        capacity_ok: ok.load(Ordering::SeqCst),
        capacity_failed: failed.load(Ordering::SeqCst),
        capacity,
        first_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_minutes_and_hours() {
        assert_eq!(parse_duration("90").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m").ok(), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h").ok(), Some(Duration::from_secs(3600)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
    }
}
