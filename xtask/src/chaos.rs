//! `cargo xtask chaos raft [--kills N] [--seed S] [--writers W]`: the long version of the
//! cluster test's lost-write check. Three noded servers in network namespaces; `W` writers
//! (2 to 4) register jobs continuously, each write to another server; meanwhile `N` faults,
//! chosen by a seeded generator (the same seed gives the same faults), each followed by the
//! region's repair:
//!
//! - kill -9 of the leader, or of a random server, restarted once the others agree on a leader;
//! - SIGSTOP of a random server for 0.5–3 s, then SIGCONT;
//! - the leader, or a random server, cut off the LAN for 1–5 s, then plugged back;
//! - a split `[[a], [b, c]]` for 1–5 s, then healed.
//!
//! At the end, once the servers agree on a leader, every acknowledged registration must be
//! there (`GET /v1/job/:id` on the leader, a linearizable read). Prints
//! `acknowledged=N found=N lost=N`; exits non-zero when anything acknowledged is lost.
//!
//! A write counts as acknowledged only on a 200; a timeout or an error status is "unknown",
//! and unknown writes may or may not be found (they are not checked).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::raft_cluster::{job_body, spawn_in, Region, Rng};

/// How long one registration may take before the writer gives up on it (not acknowledged).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the region may take to agree on a leader after a fault is repaired.
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);
/// Acknowledged ids one run keeps (a bound: ~10 writes/s per writer for hours fits).
const MAX_ACKNOWLEDGED: usize = 1_000_000;

#[derive(Debug, Clone)]
struct ChaosOptions {
    kills: usize,
    seed: u64,
    writers: usize,
}

fn parse(args: &[String]) -> anyhow::Result<ChaosOptions> {
    let usage = "usage: cargo xtask chaos raft [--kills N] [--seed S] [--writers 2..4]";
    let Some((what, rest)) = args.split_first() else {
        bail!("{usage}");
    };
    if what != "raft" {
        bail!("unknown chaos run {what:?} (available: raft, client); {usage}");
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let mut options = ChaosOptions {
        kills: 100,
        seed,
        writers: 3,
    };
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let text = it
            .next()
            .with_context(|| format!("{flag} needs a value; {usage}"))?;
        let number = text
            .parse::<u64>()
            .with_context(|| format!("{flag} {text:?}: expected a number; {usage}"))?;
        match flag.as_str() {
            "--kills" => {
                options.kills = usize::try_from(number)?;
                if !(1..=100_000).contains(&options.kills) {
                    bail!("--kills must be 1 to 100000 (default 100)");
                }
            }
            "--seed" => options.seed = number,
            "--writers" => {
                options.writers = usize::try_from(number)?;
                if !(2..=4).contains(&options.writers) {
                    bail!("--writers must be 2 to 4 (default 3)");
                }
            }
            other => bail!("unknown option {other:?}; {usage}"),
        }
    }
    Ok(options)
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    if args.first().map(String::as_str) == Some("client") {
        return crate::chaos_client::run(args);
    }
    let options = parse(args)?;
    if !nix::unistd::geteuid().is_root() {
        bail!("chaos raft needs root (network namespaces, bridges): run it as root");
    }
    // Like the benches: the debug xtask builds release noded + xtask and hands over.
    let binaries = crate::release::release_binaries(cfg!(debug_assertions))?;
    if cfg!(debug_assertions) {
        return crate::release::reexec_release(&binaries, "chaos", args);
    }
    eprintln!(
        "==> chaos raft: {} faults, seed {} (rerun with --seed {} for the same faults), {} writers",
        options.kills, options.seed, options.seed, options.writers
    );
    let mut region = Region::start("chaos-raft", 3)?;
    region.leader(RECOVERY_LIMIT, &BTreeSet::new())?;

    let acknowledged = Mutex::new(Vec::<String>::new());
    let attempted = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let client_ns = region.client.netns.path();
    let addrs: Vec<String> = (0..region.agents.len())
        .map(|i| region.http_addr(i).to_string())
        .collect();
    let seed = options.seed;
    let started = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        // Whatever way the fault loop ends (an error, a panic in the harness), the writers stop,
        // or the scope would wait for them forever.
        let _stop = StopOnDrop(&stop);
        let writers: Vec<_> = (0..options.writers)
            .map(|w| {
                let (acknowledged, attempted, stop, addrs) =
                    (&acknowledged, &attempted, &stop, &addrs);
                spawn_in(scope, client_ns.clone(), move || {
                    let mut n = 0usize;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        let id = format!("chaos-{seed}-{w}-{n}");
                        let to = &addrs[(w + n) % addrs.len()];
                        let body = job_body(&id, 0);
                        attempted.fetch_add(1, Ordering::Relaxed);
                        let answer = noded_tests::http_with_timeout(
                            to,
                            "PUT",
                            "/v1/jobs",
                            Some(body.as_bytes()),
                            WRITE_TIMEOUT,
                        );
                        if answer.is_ok_and(|r| r.status == 200) {
                            let mut acked = acknowledged.lock().unwrap_or_else(|e| e.into_inner());
                            if acked.len() < MAX_ACKNOWLEDGED {
                                acked.push(id);
                            }
                        } else {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                })
            })
            .collect();
        let mut rng = Rng::new(options.seed);
        for round in 0..options.kills {
            let fault = inject(&mut region, &mut rng)?;
            let leader = region.leader(RECOVERY_LIMIT, &BTreeSet::new())?;
            let acked = acknowledged.lock().map(|a| a.len()).unwrap_or_default();
            eprintln!(
                "fault {:>4}/{}: {fault}; leader now s{leader}; {acked} acknowledged so far",
                round + 1,
                options.kills
            );
            // Let the writers work on a healthy region for a moment between faults.
            std::thread::sleep(rng.between(Duration::from_millis(200), Duration::from_secs(1)));
        }
        stop.store(true, Ordering::SeqCst);
        for writer in writers {
            match writer.join() {
                Ok(result) => result?,
                Err(_) => bail!("a writer thread panicked"),
            }
        }
        Ok(())
    })?;

    let leader = region.leader(RECOVERY_LIMIT, &BTreeSet::new())?;
    let acknowledged = acknowledged.into_inner().unwrap_or_else(|e| e.into_inner());
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !region.has_job(leader, id, false))
        .collect();
    let found = acknowledged.len() - lost.len();
    eprintln!(
        "==> {} faults in {:.0?}; {} registrations attempted",
        options.kills,
        started.elapsed(),
        attempted.load(Ordering::Relaxed)
    );
    println!(
        "acknowledged={} found={found} lost={} seed={}",
        acknowledged.len(),
        lost.len(),
        options.seed
    );
    if acknowledged.is_empty() {
        bail!(
            "no write was acknowledged at all: the region never served; see the agents' logs:\n{}",
            region.logs()
        );
    }
    if !lost.is_empty() {
        let shown: Vec<&String> = lost.iter().take(20).copied().collect();
        bail!(
            "{} acknowledged registrations lost (first: {shown:?}); rerun with --seed {} to \
             replay the same faults",
            lost.len(),
            options.seed
        );
    }
    Ok(())
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Chooses one fault, applies it, waits, and repairs the region; says what it did.
fn inject(region: &mut Region, rng: &mut Rng) -> anyhow::Result<String> {
    let n = region.agents.len() as u64;
    let random = rng.below(n) as usize;
    Ok(match rng.below(5) {
        0 | 1 => {
            let (victim, what) = if rng.below(2) == 0 {
                (region.leader(RECOVERY_LIMIT, &BTreeSet::new())?, "leader")
            } else {
                (random, "server")
            };
            region.agents[victim].kill9();
            // The survivors must agree on a leader before the victim comes back.
            region.leader(RECOVERY_LIMIT, &BTreeSet::from([victim]))?;
            region.agents[victim].restart();
            format!("kill -9 of the {what} s{victim}, restarted")
        }
        2 => {
            let pause = rng.between(Duration::from_millis(500), Duration::from_secs(3));
            region.agents[random].pause();
            std::thread::sleep(pause);
            region.agents[random].resume();
            format!("SIGSTOP of s{random} for {pause:?}")
        }
        3 => {
            let (victim, what) = if rng.below(2) == 0 {
                (region.leader(RECOVERY_LIMIT, &BTreeSet::new())?, "leader")
            } else {
                (random, "server")
            };
            let cut = rng.between(Duration::from_secs(1), Duration::from_secs(5));
            region.lan.cut(&region.hosts[victim]);
            std::thread::sleep(cut);
            region.lan.heal(&region.hosts[victim]);
            format!("{what} s{victim} cut off for {cut:?}")
        }
        _ => {
            let split = rng.between(Duration::from_secs(1), Duration::from_secs(5));
            let alone = &region.hosts[random];
            // The writers' host goes with the majority, so some writes can succeed meanwhile.
            let rest: Vec<&noded_tests::Host> = region
                .hosts
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != random)
                .map(|(_, h)| h)
                .chain([&region.client])
                .collect();
            region.lan.split(&[&[alone], &rest]);
            std::thread::sleep(split);
            region.lan.heal_all();
            format!("split [[s{random}], rest] for {split:?}")
        }
    })
}
