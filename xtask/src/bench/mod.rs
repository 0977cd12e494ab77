//! `cargo xtask bench NAME`: benchmarks that measure noded against its peers in the same run
//! and end with one machine-readable `RESULT NAME key=value …` line.
//!
//! - `start [--runs N] [--gap-ms MS] [--noded-only]` — `/bin/true` through noded's real start path (alloc
//!   dir with its secrets tmpfs, the exec driver's launch, the real `noded supervisor` over its
//!   socket: start, wait, remove, then the alloc dir unmounted; its removal by the client's GC
//!   is timed apart, after the clock, as the client keeps it for logs), back to back and
//!   sporadic (`MS` apart), side by side with crun and runc on the same `/bin/true`, plus a
//!   probe of the kernel's v1 cgroup attach cost ([`start`]).
//! - `raft [--concurrency C] [--seconds S] [--kills K] [--value-bytes B]` — replicated durable
//!   writes through `PUT /v1/jobs` on a three-server region in network namespaces, failover
//!   time over K leader kills, and a three-member etcd cluster under the same load ([`raft`]).
//! - `rss [--tasks N]` — what each running task costs in RSS and PSS: the supervisor driven
//!   directly, then the whole product (`noded agent -dev` running one job of N tasks) ([`rss`]).
//! - `heartbeats [--nodes N] [--servers 1|3] [--duration D]` — N simulated client nodes
//!   registering and heartbeating over the real QUIC fabric against a one- and a three-server
//!   region: missed nodes, heartbeats/s, latency, the leader's CPU and RSS, closed-loop
//!   capacity ([`heartbeats`]).
//! - `scheduler [--nodes N] [--jobs J] [--count C]` — C1M-shaped: J jobs of C allocations on
//!   N simulated nodes, through the scheduler function alone and end to end through a real
//!   server's broker, workers, plan applier and durable Raft ([`scheduler`]).
//! - `footprint [--tasks N]` — RSS and PSS of an idle client-only agent and its supervisor,
//!   an idle server, and per running task, beside containerd when installed ([`footprint`]).
//!
//! - `net [--allocs N] [--seconds S] [--threads T]` — an allocation's network (namespace,
//!   veth into the bridge, address, routes, port-map entries) made and removed through the
//!   `netns`/`ebpf` crates against a C floor doing the same kernel steps, the isolation set's
//!   nft cost apart; connections/s and one stream's MB/s from an "external" namespace through
//!   the eBPF port mapping and through an nftables DNAT, side by side ([`net`], measured by
//!   the `noded-netbench` binary of `noded-tests`).
//!
//! - `dns [--seconds S] [--rounds R] [--outstanding N] [--threads T] [--instances I]
//!   [--interval-ms MS] [--converge-runs K] [--peers-only]` — noded's DNS server against
//!   unbound and dnsmasq (Debian packages, installed if missing) serving the same zone, each
//!   in its own namespace, queried from a client namespace with the same UDP load (A and SRV,
//!   a fixed number in flight, every answer checked); and the time from an http check failing
//!   to its instance leaving the DNS answer ([`dns`]).
//!
//! All run as root and leave nothing behind: every directory, mount, cgroup and process they
//! create carries this run's unique name and is removed by a guard, also when a step fails.
//!
//! The measured code is release code: run from a debug `cargo xtask`, the bench builds
//! `noded` and `xtask` with `--release` and re-executes the release `xtask`, so the client's
//! half of the start path (which runs inside the bench) is optimised like the supervisor.
//!
//! Owns measurement only; must not change noded's behaviour or any host setting (crun runs in
//! a private mount namespace of a helper process, never by changing the host's mounts).

mod agent;
mod dns;
mod floor;
mod footprint;
mod heartbeats;
mod net;
mod noded_path;
mod oci;
mod probe;
mod raft;
pub(crate) mod rss;
mod scheduler;
mod start;
mod stats;
mod workdir;

use anyhow::{bail, Context};

pub use crate::release::Binaries;
use crate::release::{reexec_release, release_binaries};

/// Hidden sub-command: the helper process that runs one OCI runtime for the start bench.
const OCI_HELPER: &str = "__oci-helper";

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let Some((name, rest)) = args.split_first() else {
        bail!(
            "usage: cargo xtask bench <start|rss|raft|heartbeats|footprint|scheduler|net|dns> [options] ({OPTIONS})"
        );
    };
    if name == OCI_HELPER {
        return oci::helper_main(rest);
    }
    if !matches!(
        name.as_str(),
        "start" | "rss" | "raft" | "heartbeats" | "footprint" | "scheduler" | "net" | "dns"
    ) {
        bail!("unknown bench {name:?} (available: start, rss, raft, heartbeats, footprint, scheduler, net, dns)");
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("bench {name} needs root (namespaces, mounts, cgroups): run it as root");
    }
    if name == "net" {
        // Its own binary (it links the ebpf crate); no release xtask needed.
        return net::run(rest);
    }
    // Parse before building so that a typo fails in a second, not after a release build.
    let options = Options::parse(name, rest)?;
    // The debug xtask builds the release binaries and hands over; the release one uses them.
    let binaries = release_binaries(cfg!(debug_assertions))?;
    if cfg!(debug_assertions) {
        return reexec_release(&binaries, "bench", args);
    }
    match options {
        Options::Start(o) => start::run(&o, &binaries),
        Options::Rss(o) => rss::run(&o, &binaries),
        Options::Raft(o) => raft::run(&o, &binaries),
        Options::Heartbeats(o) => heartbeats::run(&o, &binaries),
        Options::Footprint(o) => footprint::run(&o, &binaries),
        Options::Scheduler(o) => scheduler::run(&o, &binaries),
        Options::Dns(o) => dns::run(&o),
    }
}

/// Options of each bench.
#[derive(Debug)]
enum Options {
    Start(start::StartOptions),
    Rss(rss::RssOptions),
    Raft(raft::RaftOptions),
    Heartbeats(heartbeats::HeartbeatsOptions),
    Footprint(footprint::FootprintOptions),
    Scheduler(scheduler::SchedulerOptions),
    Dns(dns::DnsOptions),
}

/// Every bench's options, for usage messages.
const OPTIONS: &str = "start: --runs N --gap-ms MS --noded-only --netns; net: --allocs N --seconds S --threads T; rss: --tasks N; raft: --concurrency C --seconds S --kills K --value-bytes B; heartbeats: --nodes N --servers 1|3 --duration D; footprint: --tasks N; scheduler: --nodes N --jobs J --count C; dns: --seconds S --rounds R --outstanding N --threads T --instances I --interval-ms MS --converge-runs K --peers-only";

impl Options {
    fn parse(name: &str, args: &[String]) -> anyhow::Result<Options> {
        let mut start = start::StartOptions::default();
        let mut rss = rss::RssOptions::default();
        let mut raft = raft::RaftOptions::default();
        let mut heartbeats = heartbeats::HeartbeatsOptions::default();
        let mut footprint = footprint::FootprintOptions::default();
        let mut scheduler = scheduler::SchedulerOptions::default();
        let mut dns = dns::DnsOptions::default();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = |what: &str| -> anyhow::Result<u64> {
                let text = it
                    .next()
                    .with_context(|| format!("{flag} needs a value ({what})"))?;
                text.parse::<u64>()
                    .with_context(|| format!("{flag} {text:?}: expected {what}"))
            };
            match (name, flag.as_str()) {
                ("start", "--runs") => {
                    start.runs = usize::try_from(value("a number of runs ≥ 1")?)?;
                    if start.runs == 0 {
                        bail!("--runs must be at least 1 (the issue asks for ≥ 100)");
                    }
                }
                ("start", "--gap-ms") => {
                    start.gap_ms = value("milliseconds")?;
                    start.gap_given = true;
                }
                ("start", "--noded-only") => start.noded_only = true,
                ("start", "--netns") => start.netns = true,
                ("rss", "--tasks") => {
                    rss.tasks = usize::try_from(value("a number of tasks ≥ 1")?)?;
                    if rss.tasks == 0 {
                        bail!("--tasks must be at least 1 (the issue asks for 100)");
                    }
                }
                ("raft", "--concurrency") => {
                    raft.concurrency = usize::try_from(value("a number of writers, 1 to 1024")?)?;
                    if !(1..=1024).contains(&raft.concurrency) {
                        bail!("--concurrency must be 1 to 1024 (default 32)");
                    }
                }
                ("raft", "--seconds") => {
                    raft.seconds = value("seconds of load, 1 to 3600")?;
                    if !(1..=3600).contains(&raft.seconds) {
                        bail!("--seconds must be 1 to 3600 (default 10)");
                    }
                }
                ("raft", "--kills") => {
                    raft.kills = usize::try_from(value("a number of leader kills ≥ 1")?)?;
                    if raft.kills == 0 {
                        bail!("--kills must be at least 1 (the issue asks for 20)");
                    }
                }
                ("raft", "--value-bytes") => {
                    raft.value_bytes = usize::try_from(value("bytes, 300 to 65536")?)?;
                    if !(300..=65536).contains(&raft.value_bytes) {
                        bail!("--value-bytes must be 300 to 65536 (a job body is ~300 bytes bare)");
                    }
                }
                ("heartbeats", "--nodes") => {
                    heartbeats.nodes = usize::try_from(value("a number of nodes, 1 to 100000")?)?;
                    if !(1..=100_000).contains(&heartbeats.nodes) {
                        bail!("--nodes must be 1 to 100000 (default 10000)");
                    }
                }
                ("heartbeats", "--servers") => {
                    let n = usize::try_from(value("1 or 3")?)?;
                    if !matches!(n, 1 | 3) {
                        bail!(
                            "--servers must be 1 or 3 (both, one after the other, when not given)"
                        );
                    }
                    heartbeats.servers = Some(n);
                }
                ("heartbeats", "--duration") => {
                    let text = it
                        .next()
                        .with_context(|| format!("{flag} needs a value (90s, 5m)"))?;
                    heartbeats.duration = Some(heartbeats::parse_duration(text)?);
                }
                ("footprint", "--tasks") => {
                    footprint.tasks = usize::try_from(value("a number of tasks, 1 to 1000")?)?;
                    if !(1..=1000).contains(&footprint.tasks) {
                        bail!("--tasks must be 1 to 1000 (default 100)");
                    }
                }
                ("scheduler", "--nodes") => {
                    scheduler.nodes = usize::try_from(value("a number of nodes, 1 to 100000")?)?;
                    if !(1..=100_000).contains(&scheduler.nodes) {
                        bail!("--nodes must be 1 to 100000 (default 5000)");
                    }
                }
                ("scheduler", "--jobs") => {
                    scheduler.jobs = usize::try_from(value("a number of jobs, 1 to 100000")?)?;
                    if !(1..=100_000).contains(&scheduler.jobs) {
                        bail!("--jobs must be 1 to 100000 (default 1000)");
                    }
                }
                ("scheduler", "--count") => {
                    scheduler.count = usize::try_from(value("allocations per job, 1 to 10000")?)?;
                    if !(1..=10_000).contains(&scheduler.count) {
                        bail!("--count must be 1 to 10000 (default 1000; the jobspec's max count)");
                    }
                }
                ("dns", "--seconds") => {
                    dns.seconds = value("measured seconds per run, 1 to 600")?;
                    if !(1..=600).contains(&dns.seconds) {
                        bail!("--seconds must be 1 to 600 (default 5)");
                    }
                }
                ("dns", "--rounds") => {
                    dns.rounds = usize::try_from(value("rounds, 1 to 100")?)?;
                    if !(1..=100).contains(&dns.rounds) {
                        bail!("--rounds must be 1 to 100 (default 3)");
                    }
                }
                ("dns", "--outstanding") => {
                    dns.outstanding = usize::try_from(value("queries in flight, 1 to 4096")?)?;
                    if !(1..=4096).contains(&dns.outstanding) {
                        bail!("--outstanding must be 1 to 4096 (default 64)");
                    }
                }
                ("dns", "--threads") => {
                    dns.threads = usize::try_from(value("client sockets, 1 to 64")?)?;
                    if !(1..=64).contains(&dns.threads) {
                        bail!("--threads must be 1 to 64 (default 2)");
                    }
                }
                ("dns", "--instances") => {
                    dns.instances = u32::try_from(value("instances, 2 to 100")?)?;
                    if !(2..=100).contains(&dns.instances) {
                        bail!("--instances must be 2 to 100 (default 3; one is made to fail)");
                    }
                }
                ("dns", "--interval-ms") => {
                    dns.interval_ms = value("the check interval in ms, 100 to 60000")?;
                    if !(100..=60_000).contains(&dns.interval_ms) {
                        bail!("--interval-ms must be 100 to 60000 (default 1000)");
                    }
                }
                ("dns", "--converge-runs") => {
                    dns.converge_runs = usize::try_from(value("runs, 1 to 100")?)?;
                    if !(1..=100).contains(&dns.converge_runs) {
                        bail!("--converge-runs must be 1 to 100 (default 5)");
                    }
                }
                ("dns", "--peers-only") => dns.peers_only = true,
                (_, other) => bail!("unknown option {other:?} for bench {name} ({OPTIONS})"),
            }
        }
        Ok(match name {
            "rss" => Options::Rss(rss),
            "raft" => Options::Raft(raft),
            "heartbeats" => Options::Heartbeats(heartbeats),
            "footprint" => Options::Footprint(footprint),
            "scheduler" => Options::Scheduler(scheduler),
            "dns" => Options::Dns(dns),
            _ => Options::Start(start),
        })
    }
}
