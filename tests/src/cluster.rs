//! Multi-host clusters in one machine: a [`Lan`] is a test-owned "switch" namespace holding
//! Linux bridges; each [`Host`] is a network namespace wired to it by a veth pair (`eth0`
//! inside the host, a bridge port in the switch); a [`ClusterAgent`] is a real `noded agent`
//! process running inside a host. Partitions move bridge ports, so they act at once on every
//! flow (QUIC/UDP and TCP alike) and in both directions.
//!
//! Nothing here touches the root namespace: every `ip` command runs with `-n <namespace>`
//! (never `ip netns exec`, which remounts /sys and hides the cgroup tree), and every name
//! carries the test process's pid (`noded-test-<pid>-…`). Guards remove what they created when
//! they drop, also when the test panics; what a killed test (SIGKILL) left is removed by the
//! next [`Lan::create`] (or any [`crate::Netns::create`]): processes still running in a dead
//! run's namespaces, the namespaces, their cgroups and temp dirs.
//!
//! # How later tests use it
//!
//! A three-server region (with the multi-server config keys of [`server_config`]); drop
//! order is reverse declaration order, so agents (declared last) stop before their hosts go:
//!
//! ```no_run
//! use std::time::Duration;
//! use noded_tests::{server_config, ClusterAgent, Lan};
//!
//! let lan = Lan::create("raft");
//! let hosts: Vec<_> = ["a", "b", "c"].iter().map(|n| lan.host(n)).collect();
//! let peers: Vec<String> = hosts.iter().map(|h| format!("{}:4647", h.ip())).collect();
//! let mut agents: Vec<ClusterAgent> = hosts
//!     .iter()
//!     .map(|h| {
//!         let config = server_config(h.ip(), &h.name, "global", 3, &peers, None);
//!         ClusterAgent::start(h, &h.name, &config)
//!     })
//!     .collect();
//! let leader = agents[0].wait_for("a leader", Duration::from_secs(20), |a| {
//!     let r = a.get("/v1/status/leader").ok()?;
//!     (r.status == 200).then(|| r.json().as_str().map(str::to_string)).flatten()
//! });
//! // Isolate the first server: the other two elect (or keep) a leader between them.
//! lan.split(&[&[&hosts[0]], &[&hosts[1], &hosts[2]]]);
//! agents[0].kill9();
//! lan.heal_all();
//! agents[0].restart();
//! # let _ = leader;
//! ```

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{
    binary, cli_in_netns, http_with_timeout, poll_until, remove_agent_leftovers,
    remove_dir_with_mounts, spawn_in_netns, stop_supervisor, terminate, unique_name, HttpResponse,
    Netns,
};

/// Hosts one [`Lan`] can hold: their addresses are `10.a.b.1` to `10.a.b.200`.
pub const MAX_HOSTS: usize = 200;
/// Split sides one [`Lan`] may create over its life (each gets a bridge `br<n>`).
const MAX_SEGMENTS: u32 = 100_000;
/// The bridge every host is on until a partition moves it.
const COMMON: u32 = 0;
/// The HTTP port agents listen on (Nomad's default): each host has an address of its own, so
/// every agent can keep it.
pub const HTTP_PORT: u16 = 4646;
/// How long [`ClusterAgent::http`] waits to connect and for each read: a paused or cut-off
/// agent must fail a request, not hang the test.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Open TCP connections one [`EchoServer`] serves at a time; more are closed at once.
const MAX_ECHO_CONNECTIONS: usize = 16;

static LAN_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A simulated LAN: a switch namespace with bridges, and the hosts plugged into it.
///
/// Partitions are modelled as segments: every host's port is on exactly one bridge (or on
/// none, when cut). [`Lan::cut`] unplugs a host, [`Lan::split`] puts each side on a fresh
/// bridge of its own, [`Lan::heal`] plugs a host back into the common bridge, and
/// [`Lan::heal_all`] plugs every host back. Why bridges and not VLANs, nftables or tc: this
/// kernel has no bridge VLAN filtering, no tc classifiers and no `nft` binary, while moving a
/// port between bridges needs only `ip`; and unlike setting a link down, the hosts' `eth0`
/// keeps its carrier, so a partition is silent loss, as a real one is, and takes effect for
/// established flows at the next packet.
#[derive(Debug)]
pub struct Lan {
    switch: Netns,
    prefix: [u8; 3],
    state: Mutex<LanState>,
}

#[derive(Debug, Default)]
struct LanState {
    /// Host names, by port index.
    hosts: Vec<String>,
    /// The bridge each port is on (`br<n>`), or `None` when cut; by port index.
    segment: Vec<Option<u32>>,
    next_segment: u32,
}

impl Lan {
    /// Creates the switch namespace and its common bridge (first removing what killed test
    /// runs left). `what` names it in `ip netns list`.
    pub fn create(what: &str) -> Lan {
        let switch = Netns::create(&format!("{what}-lan"));
        // The subnet only has to be unique for readability of logs: each Lan is its own L2
        // domain, so two Lans with the same subnet would not interfere anyway.
        let n = LAN_COUNTER.fetch_add(1, Ordering::SeqCst);
        let block = std::process::id().wrapping_mul(16).wrapping_add(n % 16) & 0xffff;
        let prefix = [10, (block >> 8) as u8, (block & 0xff) as u8];
        ip_batch(
            &switch,
            &[
                format!("link add {} type bridge forward_delay 0", bridge(COMMON)),
                format!("link set {} up", bridge(COMMON)),
            ],
        );
        Lan {
            switch,
            prefix,
            state: Mutex::new(LanState {
                next_segment: COMMON + 1,
                ..LanState::default()
            }),
        }
    }

    /// The switch namespace's name.
    pub fn switch_name(&self) -> &str {
        &self.switch.name
    }

    /// The LAN's subnet, `10.a.b.0/24`.
    pub fn subnet(&self) -> String {
        let [a, b, c] = self.prefix;
        format!("{a}.{b}.{c}.0/24")
    }

    /// Plugs a new host into the common bridge: its own namespace, `eth0` with the next
    /// address of the subnet, loopback up.
    pub fn host(&self, name: &str) -> Host {
        let mut state = self.lock();
        let index = state.hosts.len();
        assert!(
            index < MAX_HOSTS,
            "Lan {}: a LAN holds at most {MAX_HOSTS} hosts",
            self.switch.name
        );
        let netns = Netns::create(name);
        let [a, b, c] = self.prefix;
        let ip = Ipv4Addr::new(a, b, c, (index + 1) as u8);
        let port = port(index);
        // Both ends are created from inside the switch namespace; the host end goes straight
        // into the host's namespace, so no interface ever exists in the root namespace.
        ip_batch(
            &self.switch,
            &[
                format!(
                    "link add {port} type veth peer name eth0 netns {}",
                    netns.name
                ),
                format!("link set {port} master {} up", bridge(COMMON)),
            ],
        );
        ip_batch(
            &netns,
            &[
                format!("addr add {ip}/24 dev eth0"),
                "link set eth0 up".to_string(),
            ],
        );
        state.hosts.push(name.to_string());
        state.segment.push(Some(COMMON));
        Host {
            netns,
            name: name.to_string(),
            ip,
            index,
            lan: self.switch.name.clone(),
        }
    }

    /// Unplugs `host`: it reaches no other host and none reaches it, until [`Lan::heal`] or
    /// [`Lan::heal_all`].
    pub fn cut(&self, host: &Host) {
        self.assign(&[(self.index_of(host), None)]);
    }

    /// Plugs `host` back into the common bridge (where hosts no partition moved are).
    pub fn heal(&self, host: &Host) {
        self.assign(&[(self.index_of(host), Some(COMMON))]);
    }

    /// Splits the LAN: the hosts of each side reach each other and nobody on another side.
    /// Hosts named in no side stay where they are (by default, together on the common
    /// bridge, cut off from every side).
    pub fn split(&self, sides: &[&[&Host]]) {
        assert!(
            sides.len() >= 2,
            "Lan::split needs two sides or more, got {}",
            sides.len()
        );
        let mut seen = BTreeSet::new();
        let mut moves = Vec::new();
        let mut state = self.lock();
        for side in sides {
            let segment = state.next_segment;
            assert!(
                segment < MAX_SEGMENTS,
                "Lan {}: more than {MAX_SEGMENTS} split sides",
                self.switch.name
            );
            state.next_segment += 1;
            for host in side.iter() {
                let index = self.index_of(host);
                assert!(
                    seen.insert(index),
                    "Lan::split: host {} is on two sides",
                    host.name
                );
                moves.push((index, Some(segment)));
            }
        }
        drop(state);
        self.assign(&moves);
    }

    /// Every host back on the common bridge; the split bridges are deleted.
    pub fn heal_all(&self) {
        let count = self.lock().hosts.len();
        let moves: Vec<_> = (0..count).map(|i| (i, Some(COMMON))).collect();
        self.assign(&moves);
    }

    /// Who is with whom, for failure messages: `common: [a, b]; br3: [c]; cut: [d]`.
    pub fn describe(&self) -> String {
        let state = self.lock();
        let mut groups: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
        for (name, segment) in state.hosts.iter().zip(&state.segment) {
            let key = match segment {
                Some(COMMON) => "common".to_string(),
                Some(n) => bridge(*n),
                None => "cut".to_string(),
            };
            groups.entry(key).or_default().push(name);
        }
        groups
            .iter()
            .map(|(k, v)| format!("{k}: [{}]", v.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LanState> {
        // A panic while holding the lock leaves the state as it was before the batch ran,
        // which is still the truth about the bridges (commands only run after planning).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn index_of(&self, host: &Host) -> usize {
        assert_eq!(
            host.lan, self.switch.name,
            "host {} is plugged into another Lan ({}), not {}",
            host.name, host.lan, self.switch.name
        );
        host.index
    }

    /// Moves ports to segments in one `ip -batch`: new bridges first, then the ports, then
    /// the bridges left empty. A port leaves its old bridge before it joins the new one, so
    /// for an instant it is on neither — never on both.
    fn assign(&self, moves: &[(usize, Option<u32>)]) {
        let mut state = self.lock();
        let before: BTreeSet<u32> = state.segment.iter().flatten().copied().collect();
        let mut commands = Vec::new();
        let mut after = state.segment.clone();
        for &(index, segment) in moves {
            after[index] = segment;
        }
        let used: BTreeSet<u32> = after.iter().flatten().copied().collect();
        // The common bridge lives as long as the Lan, empty or not.
        for new in used.difference(&before).filter(|s| **s != COMMON) {
            commands.push(format!(
                "link add {} type bridge forward_delay 0",
                bridge(*new)
            ));
            commands.push(format!("link set {} up", bridge(*new)));
        }
        for (index, (old, new)) in state.segment.iter().zip(&after).enumerate() {
            if old == new {
                continue;
            }
            commands.push(match new {
                Some(segment) => format!("link set {} master {}", port(index), bridge(*segment)),
                None => format!("link set {} nomaster", port(index)),
            });
        }
        for gone in before.difference(&used) {
            if *gone != COMMON {
                commands.push(format!("link del {}", bridge(*gone)));
            }
        }
        if !commands.is_empty() {
            ip_batch(&self.switch, &commands);
        }
        state.segment = after;
    }
}

fn port(index: usize) -> String {
    format!("p{index}")
}

fn bridge(segment: u32) -> String {
    format!("br{segment}")
}

/// Runs `ip -n <ns> -batch -` with `commands`, one per line; panics with ip's error.
fn ip_batch(ns: &Netns, commands: &[String]) {
    let mut child = Command::new("ip")
        .args(["-n", &ns.name, "-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running ip -n {} -batch: {e}", ns.name));
    let script = commands.join("\n") + "\n";
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .unwrap_or_else(|e| panic!("writing to ip -batch: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for ip -batch: {e}"));
    assert!(
        out.status.success(),
        "ip -n {} -batch failed: {}\ncommands:\n{script}",
        ns.name,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A simulated host: a network namespace with `eth0` on a [`Lan`]. Dropping it deletes the
/// namespace (and so its veth pair).
#[derive(Debug)]
pub struct Host {
    pub netns: Netns,
    pub name: String,
    ip: Ipv4Addr,
    index: usize,
    /// The switch namespace of the Lan it is plugged into.
    lan: String,
}

impl Host {
    /// Its address on the LAN.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Runs `f` on a thread inside this host's namespace (sockets it opens live there, and
    /// stay there when returned).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.netns.run(f)
    }

    /// Whether a TCP connection from this host to `to` is accepted within `timeout`.
    pub fn can_connect(&self, to: SocketAddr, timeout: Duration) -> bool {
        self.run(move || TcpStream::connect_timeout(&to, timeout).is_ok())
    }

    /// An HTTP request from this host to `to` (`ip:port`), e.g. another host's agent,
    /// failing after [`HTTP_TIMEOUT`].
    pub fn http(
        &self,
        to: &str,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> std::io::Result<HttpResponse> {
        let (to, method, path) = (to.to_string(), method.to_string(), path.to_string());
        let body = body.map(<[u8]>::to_vec);
        self.run(move || http_with_timeout(&to, &method, &path, body.as_deref(), HTTP_TIMEOUT))
    }

    /// A UDP socket on this host, connected to `to` (an [`EchoServer`]); kept open across
    /// partitions, so its pings show what happens to an established flow.
    pub fn udp_flow(&self, to: SocketAddr) -> UdpFlow {
        let socket = self.run(move || {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.connect(to)?;
            Ok::<_, std::io::Error>(s)
        });
        let socket = socket.unwrap_or_else(|e| panic!("UDP socket to {to}: {e}"));
        UdpFlow { socket, seq: 0 }
    }

    /// A TCP connection from this host to `to` (an [`EchoServer`]), kept open across
    /// partitions.
    pub fn tcp_flow(&self, to: SocketAddr) -> TcpFlow {
        let stream = self
            .run(move || TcpStream::connect_timeout(&to, Duration::from_secs(5)))
            .unwrap_or_else(|e| panic!("TCP connection to {to}: {e}"));
        TcpFlow {
            stream,
            seq: 0,
            buf: Vec::new(),
        }
    }

    /// An echo server for UDP and TCP on this host's address and `port`.
    pub fn echo(&self, port: u16) -> EchoServer {
        let addr = SocketAddr::from((self.ip, port));
        let (udp, tcp) = self
            .run(move || {
                let udp = UdpSocket::bind(addr)?;
                let tcp = TcpListener::bind(addr)?;
                udp.set_nonblocking(true)?;
                tcp.set_nonblocking(true)?;
                Ok::<_, std::io::Error>((udp, tcp))
            })
            .unwrap_or_else(|e| panic!("echo server on {addr}: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || serve_echo(&udp, &tcp, &flag));
        EchoServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

/// Echoes UDP datagrams and TCP bytes until `stop` is set. One thread, non-blocking sockets
/// (created in the host's namespace; the thread itself need not be there).
fn serve_echo(udp: &UdpSocket, tcp: &TcpListener, stop: &AtomicBool) {
    let mut conns: Vec<TcpStream> = Vec::new();
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::SeqCst) {
        let mut busy = false;
        if let Ok((n, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&buf[..n], from);
            busy = true;
        }
        if let Ok((conn, _)) = tcp.accept() {
            if conns.len() < MAX_ECHO_CONNECTIONS && conn.set_nonblocking(true).is_ok() {
                conns.push(conn);
            }
            busy = true;
        }
        conns.retain_mut(|conn| match conn.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                busy = true;
                // Pings are tiny: the send buffer has room unless the peer stopped reading,
                // and then the connection is of no use anyway.
                conn.write_all(&buf[..n]).is_ok()
            }
            Err(e) => e.kind() == ErrorKind::WouldBlock,
        });
        if !busy {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// A UDP/TCP echo server on a host; stops when dropped.
#[derive(Debug)]
pub struct EchoServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An established UDP "flow" to an [`EchoServer`].
#[derive(Debug)]
pub struct UdpFlow {
    socket: UdpSocket,
    seq: u64,
}

impl UdpFlow {
    /// Sends a numbered ping and waits up to `timeout` for its echo (late echoes of earlier
    /// pings are skipped): true when it came back.
    pub fn ping(&mut self, timeout: Duration) -> bool {
        self.seq += 1;
        let wanted = format!("ping {}", self.seq);
        if self.socket.send(wanted.as_bytes()).is_err() {
            return false;
        }
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 256];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.socket.set_read_timeout(Some(left)).is_err() {
                return false;
            }
            match self.socket.recv(&mut buf) {
                Ok(n) if &buf[..n] == wanted.as_bytes() => return true,
                Ok(_) => continue,
                // A timeout, or an ICMP error reported on the connected socket.
                Err(_) => return false,
            }
        }
    }
}

/// An established TCP connection to an [`EchoServer`].
#[derive(Debug)]
pub struct TcpFlow {
    stream: TcpStream,
    seq: u64,
    buf: Vec<u8>,
}

impl TcpFlow {
    /// Sends a numbered ping line and waits up to `timeout` for its echo (echoes of earlier
    /// pings, delivered late by retransmission after a heal, are skipped).
    pub fn ping(&mut self, timeout: Duration) -> bool {
        self.seq += 1;
        let wanted = format!("ping {}\n", self.seq);
        if self.stream.write_all(wanted.as_bytes()).is_err() {
            return false;
        }
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 256];
        loop {
            while let Some(eol) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=eol).collect();
                if line == wanted.as_bytes() {
                    return true;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                return false;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return false,
            }
        }
    }
}

/// TLS files for an agent's `tls` block.
#[derive(Debug, Clone)]
pub struct TlsPaths {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// An HCL string literal: JSON's escaping is HCL's, and `${`/`%{` are escaped so that paths
/// and names are never read as templates.
fn hcl_str(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_string()).to_string();
    quoted.replace("${", "$${").replace("%{", "%%{")
}

/// A server agent's config in Nomad's agent HCL, for a multi-server region: advertises and
/// binds `host_ip`, joins `retry_join` (`ip:port` of the other servers' RPC), and speaks
/// mutual TLS on RPC when `tls` is given. `data_dir` is left out: [`ClusterAgent`] sets it
/// (a directory of the agent's own, kept across restarts).
///
/// These keys (`advertise`, `server_join`, `tls`, `bootstrap_expect` > 1) are what
/// multi-server noded reads; a single-server noded refuses them (see
/// [`server_and_client_config`] for what runs today).
pub fn server_config(
    host_ip: Ipv4Addr,
    name: &str,
    region: &str,
    bootstrap_expect: u32,
    retry_join: &[String],
    tls: Option<&TlsPaths>,
) -> String {
    let ip = hcl_str(&host_ip.to_string());
    let join = retry_join
        .iter()
        .map(|a| hcl_str(a))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = format!(
        r#"name       = {name}
region     = {region}
datacenter = "dc1"
bind_addr  = {ip}
log_level  = "debug"

advertise {{
  http = {ip}
  rpc  = {ip}
}}

ports {{
  http = {HTTP_PORT}
  rpc  = 4647
}}

server {{
  enabled          = true
  bootstrap_expect = {bootstrap_expect}

  server_join {{
    retry_join     = [{join}]
    retry_interval = "1s"
  }}
}}

client {{
  enabled = false
}}
"#,
        name = hcl_str(name),
        region = hcl_str(region),
    );
    if let Some(tls) = tls {
        text.push_str(&format!(
            r#"
tls {{
  rpc                    = true
  ca_file                = {}
  cert_file              = {}
  key_file               = {}
  verify_server_hostname = true
}}
"#,
            hcl_str(&tls.ca_file.display().to_string()),
            hcl_str(&tls.cert_file.display().to_string()),
            hcl_str(&tls.key_file.display().to_string()),
        ));
    }
    text
}

/// What a single agent on a host runs today: a one-server region with its own client (a
/// server-only agent has no node to place jobs on, a client-only one no servers to join),
/// bound to `host_ip`, raw_exec enabled. `data_dir` and `client.cgroup_parent` are set by
/// [`ClusterAgent`].
pub fn server_and_client_config(host_ip: Ipv4Addr, name: &str, tls: &TlsPaths) -> String {
    format!(
        r#"name       = {name}
datacenter = "dc1"
bind_addr  = {ip}
log_level  = "info"

ports {{
  http = {HTTP_PORT}
}}

server {{
  enabled          = true
  bootstrap_expect = 1
}}

client {{
  enabled = true
}}

plugin "raw_exec" {{
  config {{
    enabled = true
  }}
}}

tls {{
  rpc       = true
  ca_file   = {ca}
  cert_file = {cert}
  key_file  = {key}
}}
"#,
        name = hcl_str(name),
        ip = hcl_str(&host_ip.to_string()),
        ca = hcl_str(&tls.ca_file.display().to_string()),
        cert = hcl_str(&tls.cert_file.display().to_string()),
        key = hcl_str(&tls.key_file.display().to_string()),
    )
}

/// Starts one server on each host (named `s0`, `s1`, …), each listing the others in
/// `retry_join` and expecting all of them (`bootstrap_expect`), over mutual TLS: a region
/// as an operator would start it.
pub fn start_servers(hosts: &[Host], region: &str, tls: &TlsPaths) -> Vec<ClusterAgent> {
    let expect = u32::try_from(hosts.len()).expect("a handful of servers");
    hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let others: Vec<String> = hosts
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, other)| format!("{}:4647", other.ip()))
                .collect();
            let name = format!("s{i}");
            let config = server_config(host.ip(), &name, region, expect, &others, Some(tls));
            ClusterAgent::start(host, &name, &config)
        })
        .collect()
}

/// Makes a CA and one server certificate for `region` in `dir` with `noded tls`, as an
/// operator would, and returns their paths.
pub fn server_certificates(dir: &Path, region: &str) -> TlsPaths {
    let noded = binary("noded");
    for args in [
        vec!["tls", "ca", "create"],
        vec!["tls", "cert", "create", "-server", "-region", region],
    ] {
        let out = Command::new(&noded)
            .args(&args)
            .current_dir(dir)
            .output()
            .expect("running noded tls");
        assert!(
            out.status.success(),
            "noded {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    TlsPaths {
        ca_file: dir.join("noded-agent-ca.pem"),
        cert_file: dir.join(format!("{region}-server-noded.pem")),
        key_file: dir.join(format!("{region}-server-noded-key.pem")),
    }
}

/// Makes a client certificate for `region` in `dir` (which must hold the CA that
/// [`server_certificates`] made) with `noded tls cert create -client`.
pub fn client_certificate(dir: &Path, region: &str) -> TlsPaths {
    let out = Command::new(binary("noded"))
        .args(["tls", "cert", "create", "-client", "-region", region])
        .current_dir(dir)
        .output()
        .expect("running noded tls");
    assert!(
        out.status.success(),
        "noded tls cert create -client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    TlsPaths {
        ca_file: dir.join("noded-agent-ca.pem"),
        cert_file: dir.join(format!("{region}-client-noded.pem")),
        key_file: dir.join(format!("{region}-client-noded-key.pem")),
    }
}

/// A client-only agent's config: binds `host_ip`, registers with `servers` (`ip:port` of
/// their RPC) over mutual TLS with a client certificate, raw_exec enabled. `data_dir` and
/// `client.cgroup_parent` are set by [`ClusterAgent`].
pub fn client_config(
    host_ip: Ipv4Addr,
    name: &str,
    region: &str,
    servers: &[String],
    tls: &TlsPaths,
) -> String {
    let servers = servers
        .iter()
        .map(|a| hcl_str(a))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"name       = {name}
region     = {region}
datacenter = "dc1"
bind_addr  = {ip}
log_level  = "debug"

ports {{
  http = {HTTP_PORT}
}}

server {{
  enabled = false
}}

client {{
  enabled = true
  servers = [{servers}]
}}

plugin "raw_exec" {{
  config {{
    enabled = true
  }}
}}

tls {{
  rpc       = true
  ca_file   = {ca}
  cert_file = {cert}
  key_file  = {key}
}}
"#,
        name = hcl_str(name),
        region = hcl_str(region),
        ip = hcl_str(&host_ip.to_string()),
        ca = hcl_str(&tls.ca_file.display().to_string()),
        cert = hcl_str(&tls.cert_file.display().to_string()),
        key = hcl_str(&tls.key_file.display().to_string()),
    )
}

/// A `noded agent -config …` process on a [`Host`], with a directory of its own (config,
/// log, `data/`) that outlives restarts and goes when the guard drops.
///
/// The agent gets two config files: the test's, then the harness's own (`data_dir` inside
/// the agent's directory, and a `client.cgroup_parent` unique to the run, so cleanup finds
/// every task cgroup). A later file overrides an earlier one key by key, so the test's
/// config must not rely on setting those two.
#[derive(Debug)]
pub struct ClusterAgent {
    pub name: String,
    netns: PathBuf,
    ip: Ipv4Addr,
    dir: PathBuf,
    config_files: [PathBuf; 2],
    data_dir: PathBuf,
    log: PathBuf,
    cgroup_parent: String,
    child: Option<Child>,
    /// Every task supervisor the agent reported: a client's supervisor outlives the agent
    /// (tasks survive a restart), so the guard stops them itself.
    supervisors: BTreeSet<i32>,
}

impl ClusterAgent {
    /// Writes `config_text` and starts the agent inside `host`; returns once its HTTP API
    /// answers (any status: a server waiting for peers is up, if not yet useful).
    pub fn start(host: &Host, name: &str, config_text: &str) -> ClusterAgent {
        let dir = std::env::temp_dir().join(unique_name(&format!("agent-{name}")));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("creating the agent dir {}: {e}", dir.display()));
        let data_dir = dir.join("data");
        let cgroup_parent = unique_name(&format!("cg-{name}"));
        let config = dir.join("agent.hcl");
        let harness = dir.join("harness.hcl");
        std::fs::write(&config, config_text).expect("write agent config");
        std::fs::write(
            &harness,
            format!(
                "data_dir = {}\n\nclient {{\n  cgroup_parent = {}\n}}\n",
                hcl_str(&data_dir.display().to_string()),
                hcl_str(&cgroup_parent)
            ),
        )
        .expect("write harness config");
        let mut agent = ClusterAgent {
            name: name.to_string(),
            netns: host.netns.path(),
            ip: host.ip(),
            log: dir.join("agent.log"),
            dir,
            config_files: [config, harness],
            data_dir,
            cgroup_parent,
            child: None,
            supervisors: BTreeSet::new(),
        };
        agent.launch();
        agent
    }

    fn launch(&mut self) {
        let mut args: Vec<std::ffi::OsString> = vec!["agent".into()];
        for file in &self.config_files {
            args.push("-config".into());
            args.push(file.clone().into_os_string());
        }
        self.child = Some(spawn_in_netns(
            &self.netns,
            &binary("noded"),
            &args,
            &[],
            &self.log,
        ));
        let deadline = Instant::now() + Duration::from_secs(30);
        let info = loop {
            if let Ok(r) = self.get("/v1/agent/self") {
                break r;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!(
                    "agent {} exited at start ({status}):\n{}",
                    self.name,
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "agent {}: no HTTP answer on {} in 30s (is ports.http {HTTP_PORT}?):\n{}",
                self.name,
                self.http_addr(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        if info.status == 200 {
            if let Some(pid) = info.json()["client"]["SupervisorPid"]
                .as_i64()
                .and_then(|p| i32::try_from(p).ok())
            {
                self.supervisors.insert(pid);
            }
        }
    }

    /// The host's address, which the agent binds.
    pub fn address(&self) -> Ipv4Addr {
        self.ip
    }

    /// `ip:4646`.
    pub fn http_addr(&self) -> String {
        format!("{}:{HTTP_PORT}", self.ip)
    }

    /// The agent's data dir (`data/` in its directory), kept across restarts.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The agent's directory: its config files, `agent.log`, `data/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cgroup every task cgroup of this agent's client is created under.
    pub fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }

    /// The task supervisors the agent has reported (a client's outlives the agent).
    pub fn supervisor_pids(&self) -> Vec<i32> {
        self.supervisors.iter().copied().collect()
    }

    /// The agent process's pid, while the harness has it running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a crash or `kill -9` would; waits for the process. The data dir and the
    /// task supervisor stay, as they would on a real host.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the process stays, its sockets stay open, and it answers nothing.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// SIGCONT after [`ClusterAgent::pause`].
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("agent {} is not running: cannot send {signal}", self.name));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)
            .unwrap_or_else(|e| panic!("agent {} (pid {pid}): {signal}: {e}", self.name));
    }

    /// SIGTERM (a graceful shutdown), SIGKILL after 15 s; waits for the process.
    pub fn stop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(15));
    }

    /// Starts the agent again with the same config and data dir (stopping it first if it
    /// still runs); returns once its HTTP API answers.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Whether the process the harness started is still alive (a paused one is).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_)) | Err(_)) | None => false,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An HTTP request from inside the host to the agent's own address, failing after
    /// [`HTTP_TIMEOUT`] without an answer.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> std::io::Result<HttpResponse> {
        self.http_with_timeout(method, path, body, HTTP_TIMEOUT)
    }

    /// [`ClusterAgent::http`] with a timeout of the caller's.
    pub fn http_with_timeout(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> std::io::Result<HttpResponse> {
        let file = std::fs::File::open(&self.netns)?;
        let addr = self.http_addr();
        let (method, path, body) = (
            method.to_string(),
            path.to_string(),
            body.map(<[u8]>::to_vec),
        );
        std::thread::spawn(move || {
            use std::os::fd::AsFd;
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            http_with_timeout(&addr, &method, &path, body.as_deref(), timeout)
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the request thread panicked")))
    }

    pub fn get(&self, path: &str) -> std::io::Result<HttpResponse> {
        self.http("GET", path, None)
    }

    /// Runs the `noded` CLI inside the host against this agent.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli_in_netns(&self.netns, &self.http_addr(), args)
    }

    /// Polls `f` until it returns `Some`; after `timeout`, panics naming `what`, with the
    /// agent's log.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&ClusterAgent) -> Option<T>,
    ) -> T {
        poll_until(
            &format!("{what} (agent {})", self.name),
            timeout,
            || f(self),
            || self.log_text(),
        )
    }
}

impl Drop for ClusterAgent {
    fn drop(&mut self) {
        self.stop();
        for pid in std::mem::take(&mut self.supervisors) {
            stop_supervisor(pid);
        }
        remove_agent_leftovers(&self.cgroup_parent, &self.data_dir);
        remove_dir_with_mounts(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_config_has_nomads_keys_with_the_hosts_address() {
        let tls = TlsPaths {
            ca_file: "/t/ca.pem".into(),
            cert_file: "/t/a.pem".into(),
            key_file: "/t/a-key.pem".into(),
        };
        let text = server_config(
            Ipv4Addr::new(10, 1, 2, 3),
            "a",
            "eu",
            3,
            &["10.1.2.4:4647".to_string(), "10.1.2.5:4647".to_string()],
            Some(&tls),
        );
        for wanted in [
            "name       = \"a\"",
            "region     = \"eu\"",
            "bind_addr  = \"10.1.2.3\"",
            "  rpc  = \"10.1.2.3\"",
            "bootstrap_expect = 3",
            "retry_join     = [\"10.1.2.4:4647\", \"10.1.2.5:4647\"]",
            "ca_file                = \"/t/ca.pem\"",
            "verify_server_hostname = true",
        ] {
            assert!(text.contains(wanted), "{wanted:?} missing from:\n{text}");
        }
        assert!(!server_config(Ipv4Addr::LOCALHOST, "a", "eu", 1, &[], None).contains("tls"));
    }

    #[test]
    fn hcl_strings_are_never_templates() {
        assert_eq!(hcl_str("a\"b"), r#""a\"b""#);
        assert_eq!(hcl_str("/x/${y}"), r#""/x/$${y}""#);
    }
}
