//! `noded-netbench`: the measuring half of `cargo xtask bench net` (issue 17, item 8). xtask
//! builds this binary (`-p noded-tests --features netbench`, release) and runs it as root;
//! it lives here rather than in xtask because it links the `ebpf` crate, whose build needs
//! clang, and xtask must build before `cargo xtask deps` has installed clang.
//!
//! ```text
//!  "ext" ns                 "host" ns (the agent's)                        allocation ns
//!  eth0 10.77.0.2 ──veth── nbx… 10.77.0.1 (host_ip; tc programs here)
//!                          noded0 172.26.64.1/20 (bridge) ──veth── eth0 172.26.64.x
//! ```
//!
//! (a) **setup/teardown**: allocations' networks made and removed with the `netns`/`ebpf`
//! crates' API in the client's order (`NetworkManager::setup_bridge`/`teardown`), against a
//! C floor doing the same kernel steps (`floor.c`), in blocks that alternate, in one run;
//! the isolation set's nft runs (`Firewall::allow_endpoints`/`disallow_endpoints`) timed
//! apart. (b) **traffic**: connections per second and one stream's throughput from the
//! ext namespace to a server in an allocation through `host_ip:host_port`, first through
//! the eBPF port mapping, then (eBPF removed) through a plain nftables DNAT rule.
//!
//! Every object carries this run's pid in its name and is removed by guards, also on error
//! or panic; nothing touches the root network namespace (the eBPF cgroup programs attach to
//! the cgroup2 root, as the agent's do, and act only for the host namespace's sockets; their
//! pins are removed at the end).

mod setup;
mod stats;
mod topo;
mod traffic;

use std::process::ExitCode;

use stats::num;

/// Errors of this binary: what failed, with where and why, as text.
pub type Result<T> = std::result::Result<T, String>;

/// Adds what was being done to an error.
pub trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| format!("{}: {e}", what()))
    }
}

/// Command-line options (xtask passes them through).
#[derive(Debug, Clone)]
pub struct Options {
    /// Allocations set up and torn down per path (noded, floor).
    pub allocs: usize,
    /// Seconds of each connection-rate and throughput run.
    pub seconds: u64,
    /// Client threads of the connection-rate run.
    pub threads: usize,
}

const USAGE: &str = "usage: noded-netbench [--allocs N (1-2000, default 100)] [--seconds S (1-60, default 5)] [--threads T (1-64, default 4)]";

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        allocs: 100,
        seconds: 5,
        threads: 4,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value; {USAGE}"))?;
        let n: u64 = value
            .parse()
            .map_err(|_| format!("{flag} {value:?} is not a number; {USAGE}"))?;
        let bad = || format!("{flag} {n} is out of range; {USAGE}");
        match flag.as_str() {
            "--allocs" if (1..=2000).contains(&n) => {
                o.allocs = usize::try_from(n).map_err(|_| bad())?
            }
            "--seconds" if (1..=60).contains(&n) => o.seconds = n,
            "--threads" if (1..=64).contains(&n) => {
                o.threads = usize::try_from(n).map_err(|_| bad())?
            }
            "--allocs" | "--seconds" | "--threads" => return Err(bad()),
            other => return Err(format!("unknown option {other:?}; {USAGE}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args).and_then(|o| run(&o)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("noded-netbench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(o: &Options) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err("needs root (network namespaces, bpf, nftables): run it as root".into());
    }
    let load_start = stats::load_average();
    eprintln!(
        "==> building the topology (host, ext namespaces; bridge; eBPF port mapper; firewall)"
    );
    let topo = topo::Topology::create()?;
    println!("net bench: run {} (times in ms)", topo.run_id);
    println!(
        "  eBPF port mapper loaded and attached in {:.1} ms (once per node, not per allocation)",
        topo.ebpf_open_ms
    );

    let a = setup::measure(&topo, o)?;
    a.print();
    let b = traffic::measure(&topo, o)?;
    b.print();
    let load_end = stats::load_average();
    println!(
        "(1-minute load average {load_start:.2} at the start, {load_end:.2} at the end, on {} cpus: compare the ratios, not the absolute times)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let verdict = |ok: bool| if ok { "met" } else { "missed" };
    let setup_ratio = a.ratio();
    let conn_ratio = b.conn_ratio();
    println!(
        "goal: setup ≤ 1.3× the floor (p50): {} ({setup_ratio:.3})",
        verdict(setup_ratio <= 1.3)
    );
    println!(
        "goal: eBPF ≥ 1.2× nftables on connection rate: {} ({conn_ratio:.3})",
        verdict(conn_ratio >= 1.2)
    );
    println!(
        "RESULT net setup_p50_ms={} setup_p99_ms={} floor_p50_ms={} floor_p99_ms={} ratio={} teardown_p50_ms={} teardown_p99_ms={} floor_teardown_p50_ms={} nft_allow_ms={} nft_disallow_ms={} conn_per_s_ebpf={:.0} conn_per_s_nft={:.0} conn_ratio={} mbps_ebpf={:.0} mbps_nft={:.0} allocs={} seconds={} threads={} goal_setup={} goal_conn={}",
        num(a.setup.p50()),
        num(a.setup.p99()),
        num(a.floor_setup.p50()),
        num(a.floor_setup.p99()),
        num(setup_ratio),
        num(a.teardown.p50()),
        num(a.teardown.p99()),
        num(a.floor_teardown.p50()),
        num(a.nft_allow.p50()),
        num(a.nft_disallow.p50()),
        b.ebpf.conn_per_s,
        b.nft.conn_per_s,
        num(conn_ratio),
        b.ebpf.mbps,
        b.nft.mbps,
        o.allocs,
        o.seconds,
        o.threads,
        verdict(setup_ratio <= 1.3),
        verdict(conn_ratio >= 1.2),
    );
    drop(topo);
    Ok(())
}
