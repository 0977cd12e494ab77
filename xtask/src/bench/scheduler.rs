//! `cargo xtask bench scheduler`: placements per second, C1M-shaped.
//!
//! `--nodes` simulated client nodes (default 5,000: ten node classes over four datacenters,
//! realistic attributes, one in twenty ineligible) and `--jobs` jobs (default 1,000) of
//! `--count` allocations each (default 1,000), half service and half batch, a share of them
//! with constraints, a spread or an affinity. Two measurements in one run:
//!
//! 1. **The scheduler function alone**, in this process: the same nodes and jobs applied to a
//!    [`State`] with the state machine's own transition function, each job's evaluation run
//!    through [`schedule`], its plan checked by the plan applier's [`evaluate_plan`] and
//!    committed with `State::apply`. Only `schedule` is timed for the figure; the applier's
//!    check and the apply are reported beside it.
//! 2. **End to end** on a one-server region (a real `noded agent` in a network namespace, its
//!    Raft log durable on disk): the nodes register and heartbeat over the QUIC fabric with a
//!    `client.<region>` certificate as real clients do, the jobs are submitted through
//!    `PUT /v1/jobs`, and the real eval broker, scheduler workers, plan applier and Raft
//!    commit place them. Placements are read from the job summaries (`GET /v1/jobs`) every
//!    [`POLL_EVERY`]; the times the total crosses 10 % and 90 % are interpolated between
//!    polls. Reported: placements/s overall, for the first and the last 10 %, time to place
//!    all, and the server's RSS at the end.
//!
//! No peer runs on this machine (Nomad is not installed or packaged here); the reference is
//! Nomad's published C1M figure: 1,000,000 containers on 5,000 hosts in under 5 minutes with
//! 5 servers (≥ 3,750 placements/s).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use controlplane::model::{
    new_id, now_unix_nanos, trigger, DriverInfo, EvalStatus, Evaluation, Job, Node,
    NodeCpuResources, NodeDiskResources, NodeMemoryResources, NodeResources, NodeStatus,
};
use controlplane::scheduler::{schedule, SystemEnv};
use controlplane::server::planner::evaluate_plan;
use controlplane::state::{Command, State};
use federation::TlsMaterial;
use noded::client::heartbeat::next_heartbeat;
use noded::client::remote::RemoteServers;
use noded::client::{HeartbeatError, ServerRpc};

use super::heartbeats::{client_endpoints, rss_kib, NODES_PER_ENDPOINT};
use super::Binaries;
use crate::raft_cluster::{spawn_in, Connection, Region};

const REGION: &str = "global";
const REGISTER_CONCURRENCY: usize = 64;
/// Concurrent job submitters.
const SUBMITTERS: usize = 4;
/// How often the job summaries are read while placing.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// How long placing everything may take before the bench reports what it has.
const PLACE_WITHIN: Duration = Duration::from_secs(1800);
const REGISTER_WITHIN: Duration = Duration::from_secs(600);
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// Nomad's C1M: 1,000,000 placements in under 300 s.
const NOMAD_C1M_PER_S: f64 = 3_750.0;
/// The issue's goal, end to end on this machine.
const GOAL_PER_S: f64 = 10_000.0;
const NODE_CLASSES: usize = 10;
const DATACENTERS: usize = 4;

#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub nodes: usize,
    pub jobs: usize,
    pub count: usize,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            nodes: 5_000,
            jobs: 1_000,
            count: 1_000,
        }
    }
}

pub fn run(options: &SchedulerOptions, binaries: &Binaries) -> anyhow::Result<()> {
    eprintln!("==> noded: {}", binaries.noded.display());
    eprintln!(
        "==> peer: none on this machine (Nomad is not installed or packaged here); reference: \
         Nomad's C1M, {NOMAD_C1M_PER_S:.0} placements/s with 5 servers"
    );
    let total = options.jobs * options.count;
    eprintln!(
        "==> {} nodes, {} jobs × {} allocations = {total} placements",
        options.nodes, options.jobs, options.count
    );
    let alone = scheduler_alone(options)?;
    println!();
    println!("scheduler function alone (in process, {total} placements)");
    println!(
        "  schedule()          {:>10.0} placements/s  ({:.1} s)",
        alone.placed as f64 / alone.schedule.as_secs_f64().max(1e-9),
        alone.schedule.as_secs_f64()
    );
    println!(
        "  applier check       {:>10.1} s   state apply {:.1} s   placed {}",
        alone.check.as_secs_f64(),
        alone.apply.as_secs_f64(),
        alone.placed
    );
    let e2e = end_to_end(options)?;
    println!();
    println!("end to end (one server, durable Raft, {total} placements)");
    println!(
        "  overall             {:>10.0} placements/s  (all placed in {:.1} s; {} of {total} placed)",
        e2e.placed as f64 / e2e.elapsed.as_secs_f64().max(1e-9),
        e2e.elapsed.as_secs_f64(),
        e2e.placed
    );
    println!(
        "  first 10 %          {:>10.0} placements/s   last 10 % {:.0} placements/s",
        e2e.first_tenth_per_s, e2e.last_tenth_per_s
    );
    println!(
        "  server              {:>10.1} MiB RSS at the end; jobs submitted in {:.1} s",
        e2e.server_rss_kib as f64 / 1024.0,
        e2e.submitted_in.as_secs_f64()
    );
    let overall = e2e.placed as f64 / e2e.elapsed.as_secs_f64().max(1e-9);
    println!();
    println!(
        "goal: ≥ {GOAL_PER_S:.0} placements/s end to end, the last 10 % no slower than the \
         first; peer: Nomad C1M {NOMAD_C1M_PER_S:.0}/s (published; not run here)"
    );
    println!(
        "RESULT scheduler placements_per_s={overall:.0} alone_per_s={:.0} time_s={:.1} \
         first10_per_s={:.0} last10_per_s={:.0} placed={} total={total} server_rss_mib={:.1} \
         nodes={} jobs={} count={} nomad_c1m_per_s={NOMAD_C1M_PER_S:.0}",
        alone.placed as f64 / alone.schedule.as_secs_f64().max(1e-9),
        e2e.elapsed.as_secs_f64(),
        e2e.first_tenth_per_s,
        e2e.last_tenth_per_s,
        e2e.placed,
        e2e.server_rss_kib as f64 / 1024.0,
        options.nodes,
        options.jobs,
        options.count,
    );
    if e2e.placed < total {
        bail!(
            "only {} of {total} allocations were placed within {PLACE_WITHIN:?}",
            e2e.placed
        );
    }
    Ok(())
}

/// A simulated node: what a client of a rack server fingerprints, enough capacity for a share
/// of the million allocations, the `exec` driver.
fn bench_node(i: usize, ip: &str) -> Node {
    let class = i % NODE_CLASSES;
    let mut node = Node {
        id: uuid::Uuid::new_v4().to_string(),
        name: format!("sim-{i:05}"),
        datacenter: format!("dc{}", 1 + i % DATACENTERS),
        node_pool: "default".into(),
        node_class: format!("class-{class}"),
        http_addr: format!("{ip}:4646"),
        status: NodeStatus::Initializing,
        scheduling_eligibility: "eligible".into(),
        node_resources: NodeResources {
            cpu: NodeCpuResources {
                cpu_shares: 40_000,
                total_cpu_cores: 16,
                reservable_cpu_cores: (0..16).collect(),
            },
            memory: NodeMemoryResources { memory_mb: 65_536 },
            disk: NodeDiskResources { disk_mb: 500_000 },
            min_dynamic_port: 20_000,
            max_dynamic_port: 32_000,
            networks: None,
            node_networks: Vec::new(),
        },
        ..Node::default()
    };
    let version = format!("6.{class}.0");
    for (k, v) in [
        ("kernel.name", "linux"),
        ("kernel.version", version.as_str()),
        ("os.name", "debian"),
        ("os.version", "12"),
        ("cpu.arch", "amd64"),
        ("cpu.numcores", "16"),
        ("cpu.totalcompute", "40000"),
        ("memory.totalbytes", "68719476736"),
        ("driver.exec", "1"),
        ("unique.network.ip-address", ip),
    ] {
        node.attributes.insert(k.into(), v.into());
    }
    node.attributes
        .insert("unique.hostname".into(), node.name.clone());
    node.meta.insert("rack".into(), format!("r{}", i % 40));
    node.drivers.insert(
        "exec".into(),
        DriverInfo {
            detected: true,
            healthy: true,
            ..Default::default()
        },
    );
    node
}

/// Every twentieth node is marked ineligible after it registers.
fn ineligible(i: usize) -> bool {
    i % 20 == 19
}

/// Job `j` in Nomad's API JSON: half service, half batch; every third with a constraint,
/// one in ten with a spread over datacenters, one in ten with a class affinity.
fn job_json(j: usize, count: usize) -> String {
    let job_type = if j.is_multiple_of(2) {
        "service"
    } else {
        "batch"
    };
    let mut constraints = Vec::new();
    if j.is_multiple_of(3) {
        constraints.push(serde_json::json!({"LTarget": "${attr.kernel.name}", "RTarget": "linux", "Operand": "="}));
    }
    if j % 10 == 1 {
        constraints.push(
            serde_json::json!({"LTarget": "${node.class}", "RTarget": "class-9", "Operand": "!="}),
        );
    }
    if j % 20 == 5 {
        constraints.push(serde_json::json!({"LTarget": "${attr.kernel.version}", "RTarget": ">= 6.2", "Operand": "version"}));
    }
    let spreads = if j % 10 == 2 {
        serde_json::json!([{"Attribute": "${node.datacenter}", "Weight": 50}])
    } else {
        serde_json::json!([])
    };
    let affinities = if j % 10 == 3 {
        serde_json::json!([{"LTarget": "${node.class}", "RTarget": "class-3", "Operand": "=", "Weight": 50}])
    } else {
        serde_json::json!([])
    };
    let memory = if j.is_multiple_of(4) { 64 } else { 32 };
    serde_json::json!({"Job": {
        "ID": job_id(j),
        "Name": job_id(j),
        "Type": job_type,
        "Datacenters": ["dc*"],
        "Constraints": constraints,
        "Spreads": spreads,
        "Affinities": affinities,
        "TaskGroups": [{
            "Name": "g",
            "Count": count,
            "Tasks": [{
                "Name": "t",
                "Driver": "exec",
                "Config": {"command": "/bin/true"},
                "Resources": {"CPU": 20, "MemoryMB": memory}
            }]
        }]
    }})
    .to_string()
}

fn job_id(j: usize) -> String {
    format!("bench-{j:05}")
}

/// What the in-process run measured.
struct Alone {
    placed: usize,
    schedule: Duration,
    check: Duration,
    apply: Duration,
}

/// The scheduler function alone: the state machine, `schedule`, the applier's check.
fn scheduler_alone(options: &SchedulerOptions) -> anyhow::Result<Alone> {
    let mut state = State::default();
    let mut index = 0u64;
    let mut next = || {
        index += 1;
        index
    };
    for i in 0..options.nodes {
        let mut node = bench_node(i, &format!("10.0.{}.{}", i / 250, i % 250));
        if ineligible(i) {
            node.scheduling_eligibility = "ineligible".into();
        }
        state.apply(
            next(),
            &Command::NodeRegister {
                node: Box::new(node),
                now: now_unix_nanos(),
            },
        );
    }
    let mut figures = Alone {
        placed: 0,
        schedule: Duration::ZERO,
        check: Duration::ZERO,
        apply: Duration::ZERO,
    };
    let mut progress = Instant::now();
    for j in 0..options.jobs {
        let job = parse_job(&job_json(j, options.count))?;
        let eval = Evaluation {
            id: new_id(),
            namespace: job.namespace.clone(),
            priority: job.priority,
            eval_type: job.job_type.as_str().to_string(),
            triggered_by: trigger::JOB_REGISTER.to_string(),
            job_id: job.id.clone(),
            status: EvalStatus::Pending,
            ..Default::default()
        };
        let (response, _) = state.apply(
            next(),
            &Command::JobRegister {
                job: Box::new(job),
                eval: Some(eval.clone()),
                now: now_unix_nanos(),
                enforce_index: None,
                tracked_versions: None,
            },
        );
        if let Some(e) = response.error {
            bail!("registering job {j} in the in-process state: {e}");
        }
        let eval = state
            .eval(&eval.id)
            .map(|e| (*e).clone())
            .context("the registered evaluation is not in the state")?;
        let started = Instant::now();
        let plan = schedule(&state, &eval, &mut SystemEnv)
            .map_err(|e| anyhow::anyhow!("scheduling job {j}: {e}"))?;
        figures.schedule += started.elapsed();
        let started = Instant::now();
        let verdict = evaluate_plan(&state, &plan, now_unix_nanos());
        figures.check += started.elapsed();
        if !verdict.fully_accepted() {
            bail!(
                "the plan applier rejected part of job {j}'s plan in the in-process run: {:?}",
                verdict.rejected_nodes
            );
        }
        figures.placed += verdict.result.allocs.len();
        let started = Instant::now();
        let (response, _) = state.apply(next(), &Command::PlanApply(Box::new(verdict.result)));
        figures.apply += started.elapsed();
        if let Some(e) = response.error {
            bail!("committing job {j}'s plan in the in-process state: {e}");
        }
        if progress.elapsed() > PROGRESS_EVERY {
            progress = Instant::now();
            eprintln!(
                "    alone: {} jobs, {} placed, schedule() {:.1} s so far",
                j + 1,
                figures.placed,
                figures.schedule.as_secs_f64()
            );
        }
    }
    Ok(figures)
}

/// The job the API would register for `body`: parsed and validated by the jobspec as the
/// HTTP handler does.
fn parse_job(body: &str) -> anyhow::Result<Job> {
    let opts = jobspec::ParseOptions::for_file("bench job");
    match jobspec::check_api_request(body, &opts) {
        Ok(parsed) => Ok(parsed.job),
        Err(errors) => bail!("the bench's job does not validate: {errors}"),
    }
}

/// What the end-to-end run measured.
struct EndToEnd {
    placed: usize,
    elapsed: Duration,
    first_tenth_per_s: f64,
    last_tenth_per_s: f64,
    server_rss_kib: u64,
    submitted_in: Duration,
}

fn end_to_end(options: &SchedulerOptions) -> anyhow::Result<EndToEnd> {
    let region = Region::start("bench-sched", 1)?;
    let leader = region.leader(Duration::from_secs(60), &BTreeSet::new())?;
    let server_pid = region.agents[leader]
        .pid()
        .context("the server's process is not running")?;
    let client_tls = noded_tests::client_certificate(region.pki_dir(), REGION);
    let tls = TlsMaterial::load(
        &client_tls.ca_file,
        &client_tls.cert_file,
        &client_tls.key_file,
    )
    .context("loading the client certificate noded tls made")?;
    let server_addr = format!("{}:4647", region.hosts[leader].ip());
    let http = region.http_addr(leader);
    let load_ip = region.client.ip();
    let options = options.clone();
    let result = std::thread::scope(|scope| {
        let handle = spawn_in(scope, region.client.netns.path(), move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the bench's tokio runtime")?;
            rt.block_on(drive(Drive {
                options,
                tls,
                server_addr,
                http,
                load_ip,
                server_pid,
            }))
        });
        match handle.join() {
            Ok(result) => result,
            Err(_) => bail!("the load thread panicked"),
        }
    });
    match result {
        Ok(Ok(f)) => Ok(f),
        Ok(Err(e)) | Err(e) => Err(e.context(format!("see the server's log:\n{}", region.logs()))),
    }
}

struct Drive {
    options: SchedulerOptions,
    tls: TlsMaterial,
    server_addr: String,
    http: std::net::SocketAddr,
    load_ip: std::net::Ipv4Addr,
    server_pid: u32,
}

async fn drive(d: Drive) -> anyhow::Result<EndToEnd> {
    let nodes = d.options.nodes;
    let rpcs = client_endpoints(
        nodes,
        d.load_ip,
        &d.tls,
        std::slice::from_ref(&d.server_addr),
    )
    .await?;
    let ip = d.load_ip.to_string();
    let registered = Arc::new(AtomicUsize::new(0));
    let permits = Arc::new(tokio::sync::Semaphore::new(REGISTER_CONCURRENCY));
    let node_list: Vec<Node> = (0..nodes).map(|i| bench_node(i, &ip)).collect();
    let ineligible_ids: Vec<String> = node_list
        .iter()
        .enumerate()
        .filter(|(i, _)| ineligible(*i))
        .map(|(_, n)| n.id.clone())
        .collect();
    let tasks: Vec<_> = node_list
        .into_iter()
        .enumerate()
        .map(|(i, node)| {
            tokio::spawn(node_loop(
                rpcs[i / NODES_PER_ENDPOINT].clone(),
                node,
                registered.clone(),
                permits.clone(),
            ))
        })
        .collect();
    let started = Instant::now();
    while registered.load(Ordering::SeqCst) < nodes {
        if started.elapsed() > REGISTER_WITHIN {
            bail!(
                "only {} of {nodes} nodes registered within {REGISTER_WITHIN:?}",
                registered.load(Ordering::SeqCst)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "==> {nodes} nodes registered in {:.1} s; marking {} ineligible",
        started.elapsed().as_secs_f64(),
        ineligible_ids.len()
    );
    let http = d.http;
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut conn = Connection::new(http, Duration::from_secs(30));
        for id in ineligible_ids {
            let body = format!(r#"{{"NodeID":"{id}","Eligibility":"ineligible"}}"#);
            let (status, text) = conn
                .request(
                    "PUT",
                    &format!("/v1/node/{id}/eligibility"),
                    body.as_bytes(),
                )
                .with_context(|| format!("marking node {id} ineligible"))?;
            if status != 200 {
                bail!(
                    "marking node {id} ineligible: {status} {}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
        Ok(())
    })
    .await
    .context("the eligibility thread panicked")??;

    // Submit every job (SUBMITTERS at once) and poll the summaries until all are placed.
    let total = d.options.jobs * d.options.count;
    let clock = Instant::now();
    let (jobs, count) = (d.options.jobs, d.options.count);
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|k| {
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let mut conn = Connection::new(http, Duration::from_secs(60));
                for j in (k..jobs).step_by(SUBMITTERS) {
                    let (status, text) = conn
                        .request("PUT", "/v1/jobs", job_json(j, count).as_bytes())
                        .with_context(|| format!("submitting job {j}"))?;
                    if status != 200 {
                        bail!(
                            "submitting job {j}: {status} {}",
                            String::from_utf8_lossy(&text)
                        );
                    }
                }
                Ok(())
            })
        })
        .collect();
    let mut submitted_in = None;
    let mut submitters = Some(submitters);
    let mut samples: Vec<(Duration, usize)> = vec![(Duration::ZERO, 0)];
    let mut progress = Instant::now();
    let mut conn_poll = None;
    loop {
        tokio::time::sleep(POLL_EVERY).await;
        if let Some(list) = submitters.take() {
            if list.iter().all(|h| h.is_finished()) {
                for h in list {
                    h.await.context("a submitter panicked")??;
                }
                submitted_in = Some(clock.elapsed());
            } else {
                submitters = Some(list);
            }
        }
        let mut conn = conn_poll
            .take()
            .unwrap_or_else(|| Connection::new(http, Duration::from_secs(60)));
        let (placed, conn) = tokio::task::spawn_blocking(move || {
            let placed = count_placed(&mut conn);
            (placed, conn)
        })
        .await
        .context("the poll thread panicked")?;
        conn_poll = Some(conn);
        let placed = placed?;
        let at = clock.elapsed();
        samples.push((at, placed));
        if progress.elapsed() > PROGRESS_EVERY {
            progress = Instant::now();
            eprintln!(
                "    {placed} of {total} placed after {:.1} s",
                at.as_secs_f64()
            );
        }
        if placed >= total || at > PLACE_WITHIN {
            break;
        }
    }
    let server_rss_kib = rss_kib(d.server_pid)?;
    for t in &tasks {
        t.abort();
    }
    let (last_at, placed) = samples.last().copied().unwrap_or_default();
    let elapsed = crossing(&samples, total).unwrap_or(last_at);
    let tenth = total / 10;
    let t10 = crossing(&samples, tenth).unwrap_or(elapsed);
    let t90 = crossing(&samples, total - tenth).unwrap_or(elapsed);
    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    Ok(EndToEnd {
        placed,
        elapsed,
        first_tenth_per_s: rate(tenth, t10),
        last_tenth_per_s: rate(tenth, elapsed.saturating_sub(t90)),
        server_rss_kib,
        submitted_in: submitted_in.unwrap_or(elapsed),
    })
}

/// When the placed count reached `n`, interpolated linearly between the two polls around it.
fn crossing(samples: &[(Duration, usize)], n: usize) -> Option<Duration> {
    let after = samples.iter().position(|(_, p)| *p >= n)?;
    if after == 0 {
        return Some(samples[0].0);
    }
    let (t0, p0) = samples[after - 1];
    let (t1, p1) = samples[after];
    let fraction = (n - p0) as f64 / (p1 - p0).max(1) as f64;
    Some(t0 + (t1 - t0).mul_f64(fraction))
}

/// Allocations placed over every job, from the job summaries `GET /v1/jobs` lists (an
/// allocation is placed once it exists, whatever its client status).
fn count_placed(conn: &mut Connection) -> anyhow::Result<usize> {
    let (status, body) = conn.request("GET", "/v1/jobs", b"")?;
    if status != 200 {
        bail!("GET /v1/jobs: {status} {}", String::from_utf8_lossy(&body));
    }
    let jobs: serde_json::Value =
        serde_json::from_slice(&body).context("GET /v1/jobs: not JSON")?;
    let mut placed = 0u64;
    for job in jobs.as_array().map(Vec::as_slice).unwrap_or_default() {
        let groups = job["JobSummary"]["Summary"].as_object();
        for g in groups.into_iter().flat_map(|m| m.values()) {
            for key in [
                "Starting", "Running", "Complete", "Failed", "Lost", "Unknown",
            ] {
                placed += g[key].as_u64().unwrap_or(0);
            }
        }
    }
    Ok(usize::try_from(placed).unwrap_or(usize::MAX))
}

/// Registers (retrying), then heartbeats at 0.9 × TTL for ever, as a client does.
async fn node_loop(
    rpc: Arc<RemoteServers>,
    node: Node,
    registered: Arc<AtomicUsize>,
    permits: Arc<tokio::sync::Semaphore>,
) {
    loop {
        let Ok(permit) = permits.acquire().await else {
            return;
        };
        let result = rpc.register_node(node.clone()).await;
        drop(permit);
        match result {
            Ok(_) => break,
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    registered.fetch_add(1, Ordering::SeqCst);
    loop {
        let wait = match rpc.heartbeat(node.id.clone()).await {
            Ok(ttl) => next_heartbeat(ttl),
            Err(HeartbeatError::UnknownNode(_)) => {
                let _ = rpc.register_node(node.clone()).await;
                Duration::ZERO
            }
            Err(HeartbeatError::Failed(_)) => Duration::from_secs(1),
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossings_interpolate_between_polls() {
        let s = |v: &[(u64, usize)]| -> Vec<(Duration, usize)> {
            v.iter()
                .map(|(ms, n)| (Duration::from_millis(*ms), *n))
                .collect()
        };
        let samples = s(&[(0, 0), (1000, 100), (2000, 300)]);
        assert_eq!(crossing(&samples, 50), Some(Duration::from_millis(500)));
        assert_eq!(crossing(&samples, 200), Some(Duration::from_millis(1500)));
        assert_eq!(crossing(&samples, 300), Some(Duration::from_millis(2000)));
        assert_eq!(crossing(&samples, 301), None);
    }

    #[test]
    fn bench_jobs_validate() {
        for j in 0..20 {
            let job = parse_job(&job_json(j, 1000)).unwrap();
            assert_eq!(job.task_groups[0].count, 1000);
        }
    }
}
