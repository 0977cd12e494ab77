//! The load generator: UDP queries from the client namespace with a fixed number outstanding
//! for a fixed time, every answer timed and checked.
//!
//! `threads` sockets, each keeping `outstanding / threads` queries in flight (ids are slots of
//! a table, so an answer is matched to its query in O(1)); A and SRV alternate. An answer is
//! counted only when it arrives inside the measured window (after the warm-up); a query with
//! no answer after [`QUERY_TIMEOUT`] is counted lost and replaced, so a server that drops
//! packets loses throughput instead of stalling the run. A wrong answer (see
//! [`Zone::check`]) is counted apart and fails the bench.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::wire::{self, QType};
use super::zone::Zone;
use crate::raft_cluster::spawn_in;

/// How long a query may wait for its answer before it is counted lost and replaced.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the in-flight table is scanned for lost queries.
const SCAN_EVERY: Duration = Duration::from_millis(100);
/// How long one `recv` blocks: bounds how late the end of the run and a scan can be noticed.
const RECV_TIMEOUT: Duration = Duration::from_millis(20);
/// Outstanding queries per socket at most (ids are 16-bit; far below that keeps ids of lost
/// queries from being reused while their late answers may still come).
pub const MAX_OUTSTANDING_PER_SOCKET: usize = 4096;

/// One load run's shape; the same for every server.
#[derive(Debug, Clone)]
pub struct Load {
    pub server: SocketAddr,
    pub warm_up: Duration,
    pub measured: Duration,
    pub outstanding: usize,
    pub threads: usize,
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Correct answers inside the window.
    pub answered: u64,
    /// Wrong answers inside the window (any is a failure).
    pub wrong: u64,
    /// Queries never answered within [`QUERY_TIMEOUT`].
    pub lost: u64,
    pub first_wrong: Option<String>,
    /// Latency of every correct answer in the window, in microseconds, per type.
    pub a_us: Vec<u32>,
    pub srv_us: Vec<u32>,
    pub window: Duration,
}

impl Outcome {
    pub fn qps(&self) -> f64 {
        self.answered as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// Nearest-rank percentile of both types together, in µs (0 without samples).
    pub fn percentile_us(&self, p: f64) -> u32 {
        let mut all: Vec<u32> = self.a_us.iter().chain(&self.srv_us).copied().collect();
        percentile(&mut all, p)
    }

    fn merge(&mut self, other: Outcome) {
        self.answered += other.answered;
        self.wrong += other.wrong;
        self.lost += other.lost;
        if self.first_wrong.is_none() {
            self.first_wrong = other.first_wrong;
        }
        self.a_us.extend(other.a_us);
        self.srv_us.extend(other.srv_us);
    }
}

/// Nearest-rank percentile `p` (0 < p ≤ 100) of `values` (sorted in place); 0 when empty.
pub fn percentile(values: &mut [u32], p: f64) -> u32 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// The two questions, ready to send but for their id.
struct Questions {
    a: Vec<u8>,
    srv: Vec<u8>,
}

impl Questions {
    fn new(zone: &Zone) -> anyhow::Result<Questions> {
        let fqdn = zone.fqdn();
        Ok(Questions {
            a: wire::query(&fqdn, QType::A).map_err(anyhow::Error::msg)?,
            srv: wire::query(&fqdn, QType::Srv).map_err(anyhow::Error::msg)?,
        })
    }

    fn get(&self, qtype: QType) -> &[u8] {
        match qtype {
            QType::A => &self.a,
            QType::Srv => &self.srv,
        }
    }
}

/// Runs `load` from the namespace `client` against the server holding `zone`.
pub fn run(client: &Path, load: &Load, zone: &Zone) -> anyhow::Result<Outcome> {
    let questions = Questions::new(zone)?;
    let threads = load.threads.max(1);
    let per_socket = load.outstanding.div_ceil(threads).max(1);
    anyhow::ensure!(
        per_socket <= MAX_OUTSTANDING_PER_SOCKET,
        "{} outstanding queries over {threads} sockets is more than {MAX_OUTSTANDING_PER_SOCKET} per socket: use more threads",
        load.outstanding
    );
    let start = Instant::now();
    let measured_from = start + load.warm_up;
    let end = measured_from + load.measured;
    let mut total = Outcome {
        window: load.measured,
        ..Outcome::default()
    };
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let questions = &questions;
                spawn_in(scope, client.to_path_buf(), move || {
                    drive_socket(load.server, per_socket, questions, zone, measured_from, end)
                })
            })
            .collect();
        for handle in handles {
            let outcome = handle
                .join()
                .map_err(|_| anyhow::anyhow!("a load thread panicked"))???;
            total.merge(outcome);
        }
        Ok(())
    })?;
    Ok(total)
}

/// One query in flight: when it was sent and what it asked.
#[derive(Clone, Copy)]
struct Pending {
    sent: Instant,
    qtype: QType,
}

fn drive_socket(
    server: SocketAddr,
    outstanding: usize,
    questions: &Questions,
    zone: &Zone,
    measured_from: Instant,
    end: Instant,
) -> anyhow::Result<Outcome> {
    let socket = UdpSocket::bind("0.0.0.0:0").context("binding a UDP socket for the load")?;
    socket
        .connect(server)
        .with_context(|| format!("connecting the load socket to {server}"))?;
    socket
        .set_read_timeout(Some(RECV_TIMEOUT))
        .context("setting the load socket's read timeout")?;
    let mut table: Vec<Option<Pending>> = vec![None; usize::from(u16::MAX) + 1];
    let mut next_id: u16 = 0;
    let mut sent_count: u64 = 0;
    let mut packet = Vec::with_capacity(64);
    let mut out = Outcome::default();
    let mut buf = [0u8; 4096];
    let mut send = |table: &mut Vec<Option<Pending>>, out: &mut Outcome| -> anyhow::Result<()> {
        // The next free id: with at most MAX_OUTSTANDING_PER_SOCKET in flight out of 65536,
        // a free one is always near.
        while table[usize::from(next_id)].is_some() {
            next_id = next_id.wrapping_add(1);
        }
        let qtype = if sent_count.is_multiple_of(2) {
            QType::A
        } else {
            QType::Srv
        };
        sent_count += 1;
        packet.clear();
        packet.extend_from_slice(questions.get(qtype));
        wire::set_id(&mut packet, next_id);
        match socket.send(&packet) {
            Ok(_) => {}
            // A full socket buffer or an ICMP error from an earlier datagram: the query is
            // lost like a dropped packet (the timeout scan replaces it).
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => out.lost += 1,
            Err(e) => return Err(e).context("sending a query"),
        }
        table[usize::from(next_id)] = Some(Pending {
            sent: Instant::now(),
            qtype,
        });
        next_id = next_id.wrapping_add(1);
        Ok(())
    };
    for _ in 0..outstanding {
        send(&mut table, &mut out)?;
    }
    let mut last_scan = Instant::now();
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        match socket.recv(&mut buf) {
            Ok(n) => {
                let received = Instant::now();
                let Some(id) = wire::id_of(&buf[..n]) else {
                    continue;
                };
                // An answer to nothing in flight (a late answer to a query counted lost).
                let Some(pending) = table[usize::from(id)].take() else {
                    continue;
                };
                if received >= measured_from && received < end {
                    let verdict = wire::parse(&buf[..n])
                        .and_then(|response| zone.check(pending.qtype, &response));
                    match verdict {
                        Ok(()) => {
                            out.answered += 1;
                            let us =
                                u32::try_from(received.duration_since(pending.sent).as_micros())
                                    .unwrap_or(u32::MAX);
                            match pending.qtype {
                                QType::A => out.a_us.push(us),
                                QType::Srv => out.srv_us.push(us),
                            }
                        }
                        Err(e) => {
                            out.wrong += 1;
                            out.first_wrong
                                .get_or_insert_with(|| format!("{}: {e}", pending.qtype.name()));
                        }
                    }
                }
                send(&mut table, &mut out)?;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // An ICMP port unreachable from an earlier query (server not up yet or gone).
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e).context("receiving an answer"),
        }
        if last_scan.elapsed() >= SCAN_EVERY {
            last_scan = Instant::now();
            let mut expired = 0;
            for slot in table.iter_mut() {
                if slot.is_some_and(|p| last_scan.duration_since(p.sent) > QUERY_TIMEOUT) {
                    *slot = None;
                    expired += 1;
                }
            }
            // Only losses inside the window count; the replacements keep the load constant.
            if last_scan >= measured_from {
                out.lost += expired;
            }
            for _ in 0..expired {
                send(&mut table, &mut out)?;
            }
        }
    }
    Ok(out)
}

/// A socket in the client namespace for single questions (readiness, convergence polling).
pub struct Asker {
    socket: UdpSocket,
    next_id: u16,
}

impl Asker {
    pub fn new(client: &noded_tests::Host, server: SocketAddr) -> anyhow::Result<Asker> {
        let socket = client
            .run(move || -> std::io::Result<UdpSocket> {
                let s = UdpSocket::bind("0.0.0.0:0")?;
                s.connect(server)?;
                Ok(s)
            })
            .with_context(|| format!("a UDP socket in {} to {server}", client.name))?;
        Ok(Asker { socket, next_id: 1 })
    }

    /// Asks `name` of `qtype` and returns the parsed answer, or why there is none within
    /// `timeout`.
    pub fn ask(
        &mut self,
        name: &str,
        qtype: QType,
        timeout: Duration,
    ) -> anyhow::Result<wire::Response> {
        let mut packet = wire::query(name, qtype).map_err(anyhow::Error::msg)?;
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        wire::set_id(&mut packet, id);
        self.socket.send(&packet).context("sending a query")?;
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            anyhow::ensure!(!left.is_zero(), "no answer within {timeout:?}");
            self.socket
                .set_read_timeout(Some(left))
                .context("setting a read timeout")?;
            let n = self
                .socket
                .recv(&mut buf)
                .context("waiting for an answer")?;
            // Earlier questions' late answers are skipped.
            if wire::id_of(&buf[..n]) == Some(id) {
                return wire::parse(&buf[..n]).map_err(anyhow::Error::msg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<u32> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut v, 50.0), 50);
        assert_eq!(percentile(&mut v, 99.0), 99);
        assert_eq!(percentile(&mut v, 100.0), 100);
        assert_eq!(percentile(&mut [], 99.0), 0);
    }
}
