//! A three-server noded region in network namespaces, for `bench raft` and `chaos raft`:
//! the test harness's [`Lan`], [`Host`] and [`ClusterAgent`] (real `noded agent` processes,
//! mutual TLS made by `noded tls`), plus a fourth host with no agent, where the load runs,
//! and a keep-alive HTTP/1.1 client the writers of both noded and etcd use.
//!
//! Owns the cluster's shape and how a writer talks to it; what is measured and how faults are
//! chosen belongs to the bench and the chaos run.
// The keep-alive client and the PKI accessors serve the raft bench, which is only built with
// the `benches` feature; the chaos run uses the rest.
#![cfg_attr(not(feature = "benches"), allow(dead_code))]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use noded_tests::{ClusterAgent, Host, Lan, TempDir};

/// The region's name (what `noded tls cert create -region` signs for).
const REGION: &str = "global";
/// How long one status request may take: a paused or cut-off server must not stall a poll.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest header line or header block a response may have.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The largest response body the client reads.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Three (or `n`) servers, each on a host of its own, and a client host for the load.
pub struct Region {
    // Dropped in this order: agents, then the hosts, then the switch, then the certificates.
    pub agents: Vec<ClusterAgent>,
    /// The host the writers run on: on the same LAN, no agent of its own.
    pub client: Host,
    pub hosts: Vec<Host>,
    pub lan: Lan,
    pki: TempDir,
}

/// Makes a CA and a server certificate for the region with `noded tls`, as an operator would.
impl Region {
    /// Starts `n` servers (`s0`…) that find each other through `retry_join`, over mutual TLS.
    /// `what` names the namespaces (`ip netns list`).
    pub fn start(what: &str, n: usize) -> anyhow::Result<Region> {
        let lan = Lan::create(what);
        let hosts: Vec<Host> = (0..n).map(|i| lan.host(&format!("s{i}"))).collect();
        let client = lan.host("load");
        let pki = TempDir::create("pki");
        let tls = noded_tests::server_certificates(&pki, REGION);
        let agents = noded_tests::start_servers(&hosts, REGION, &tls);
        Ok(Region {
            agents,
            client,
            hosts,
            lan,
            pki,
        })
    }

    /// The directory with the region's CA and server certificate (`noded tls` made them), where
    /// `noded_tests::client_certificate` makes a client certificate of the same CA.
    pub fn pki_dir(&self) -> &std::path::Path {
        &self.pki
    }

    /// The position of the server every server not in `except` names as leader, once they
    /// agree and it is one of them.
    pub fn leader(&self, timeout: Duration, except: &BTreeSet<usize>) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.agreed_leader(except) {
                return Ok(i);
            }
            if Instant::now() > deadline {
                bail!(
                    "no agreed leader among the servers (except {except:?}) within {timeout:?}; \
                     see the agents' logs:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn agreed_leader(&self, except: &BTreeSet<usize>) -> Option<usize> {
        let mut named = BTreeSet::new();
        for (i, agent) in self.agents.iter().enumerate() {
            if except.contains(&i) {
                continue;
            }
            let r = agent
                .http_with_timeout("GET", "/v1/status/leader?stale", None, STATUS_TIMEOUT)
                .ok()?;
            if r.status != 200 {
                return None;
            }
            named.insert(r.json().as_str().unwrap_or_default().to_string());
        }
        if named.len() != 1 {
            return None;
        }
        let leader = named.into_iter().next()?;
        let i = self
            .agents
            .iter()
            .position(|a| leader == format!("{}:4647", a.address()))?;
        (!except.contains(&i)).then_some(i)
    }

    /// The HTTP address of server `i`.
    pub fn http_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from((self.hosts[i].ip(), noded_tests::cluster::HTTP_PORT))
    }

    /// Whether server `i` has job `id` (a stale read: what its own state holds).
    pub fn has_job(&self, i: usize, id: &str, stale: bool) -> bool {
        let path = if stale {
            format!("/v1/job/{id}?stale")
        } else {
            format!("/v1/job/{id}")
        };
        self.agents[i]
            .http_with_timeout("GET", &path, None, Duration::from_secs(5))
            .is_ok_and(|r| r.status == 200)
    }

    /// The last 30 lines of each agent's log.
    pub fn logs(&self) -> String {
        self.agents
            .iter()
            .map(|a| {
                let log = a.log_text();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {} ({})\n{}", a.name, a.address(), tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A batch job's registration body (`PUT /v1/jobs`), padded with a `Meta` entry to at least
/// `min_bytes`, so that noded and etcd are given values of the same size.
pub fn job_body(id: &str, min_bytes: usize) -> String {
    let body = |pad: usize| {
        serde_json::json!({
            "Job": {
                "ID": id,
                "Type": "batch",
                "Meta": {"pad": "x".repeat(pad)},
                "TaskGroups": [{"Name": "g", "Tasks": [{
                    "Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/true"}
                }]}]
            }
        })
        .to_string()
    };
    let bare = body(0).len();
    body(min_bytes.saturating_sub(bare))
}

/// Runs `f` on a new thread that has entered the network namespace at `netns` (its sockets
/// live there). The thread is scoped: it may borrow from the caller.
pub fn spawn_in<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    netns: PathBuf,
    f: impl FnOnce() -> T + Send + 'scope,
) -> std::thread::ScopedJoinHandle<'scope, anyhow::Result<T>> {
    scope.spawn(move || {
        let file = std::fs::File::open(&netns)
            .with_context(|| format!("opening the namespace {}", netns.display()))?;
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering the namespace {}", netns.display()))?;
        Ok(f())
    })
}

/// A keep-alive HTTP/1.1 connection to one server, reopened after any error. Both noded's
/// and etcd's writers use it, so neither pays a TCP handshake per request.
pub struct Connection {
    addr: SocketAddr,
    timeout: Duration,
    stream: Option<BufReader<TcpStream>>,
}

impl Connection {
    pub fn new(addr: SocketAddr, timeout: Duration) -> Connection {
        Connection {
            addr,
            timeout,
            stream: None,
        }
    }

    /// Sends one request and reads its answer: `(status, body)`. After an error the
    /// connection is dropped; the next request opens a new one.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let result = self.exchange(method, path, body);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&self.addr, self.timeout)?;
            stream.set_read_timeout(Some(self.timeout))?;
            stream.set_write_timeout(Some(self.timeout))?;
            stream.set_nodelay(true)?;
            self.stream = Some(BufReader::new(stream));
        }
        let Some(reader) = self.stream.as_mut() else {
            return Err(std::io::Error::other("no connection"));
        };
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        reader.get_mut().write_all(&request)?;

        let status_line = read_line(reader)?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        let mut header_bytes = 0;
        loop {
            let line = read_line(reader)?;
            header_bytes += line.len();
            if header_bytes > MAX_HEADER_BYTES {
                return Err(bad(format!("headers longer than {MAX_HEADER_BYTES} bytes")));
            }
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-length" => {
                    length = Some(
                        value
                            .parse::<usize>()
                            .map_err(|_| bad(format!("bad content-length {value:?}")))?,
                    )
                }
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let body = if chunked {
            read_chunked(reader)?
        } else if let Some(n) = length {
            if n > MAX_BODY_BYTES {
                return Err(bad(format!("a body of {n} bytes")));
            }
            let mut body = vec![0; n];
            reader.read_exact(&mut body)?;
            body
        } else {
            // No length: the body runs to the end of the connection.
            let mut body = Vec::new();
            reader.take(MAX_BODY_BYTES as u64).read_to_end(&mut body)?;
            close = true;
            body
        };
        if close {
            self.stream = None;
        }
        Ok((status, body))
    }
}

fn bad(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

/// One CRLF-terminated line, without its terminator.
fn read_line(reader: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut line = Vec::new();
    let n = reader
        .by_ref()
        .take(MAX_HEADER_BYTES as u64)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY_BYTES {
            return Err(bad(format!("a chunked body over {MAX_BODY_BYTES} bytes")));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        read_line(reader)?;
    }
}

/// A small seeded xorshift64* generator: the chaos run's faults are reproducible by seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // xorshift has a fixed point at zero.
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A duration uniformly in `[lo, hi]`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_millis() as u64;
        lo + Duration::from_millis(self.below(span + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_bodies_are_padded_to_the_asked_size() {
        let body = job_body("bench-0-1", 1024);
        assert_eq!(body.len(), 1024);
        let job: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(job["Job"]["ID"], "bench-0-1");
        // Smaller than the bare job: no padding, still valid.
        assert!(job_body("a", 10).len() > 10);
    }

    #[test]
    fn the_rng_is_reproducible_and_stays_in_range() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<u64> = (0..100).map(|_| a.below(3)).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.below(3)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| *x < 3));
        assert!((0..3).all(|v| xs.contains(&v)), "{xs:?}");
        let d = a.between(Duration::from_millis(500), Duration::from_secs(3));
        assert!(d >= Duration::from_millis(500) && d <= Duration::from_secs(3));
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }
}
