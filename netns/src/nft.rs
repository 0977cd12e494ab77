//! nftables: masquerade for allocations' egress, isolation between allocations, and the
//! port-map fallback (DNAT) when eBPF is unavailable.
//!
//! Everything lives in two tables, `ip noded` and `bridge noded`; cleanup deletes them.
//! Changes go to the `nft` binary as one JSON batch each (`nft -j -f -`), which the kernel
//! applies atomically: a rule set is never half-written. Rules are written once per
//! [`Firewall::ensure`] / [`NftPortMapper::ensure`] (chains flushed and refilled in the same
//! batch, so ensuring twice leaves one copy); per-allocation changes only add or delete
//! elements of the named set `mapped` and map `portmap`.
//!
//! nft runs in the network namespace of the calling thread (a spawned process starts in its
//! spawning thread's namespaces).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::bridge::Bridge;
use crate::cidr::Ipv4Cidr;
use crate::error::{Error, Result};
use crate::portmap::{Mapping, PortMapBackend, PortMapError, Proto};
use crate::sysctl;

/// The name of both tables (`ip noded`, `bridge noded`).
pub const TABLE: &str = "noded";
/// The set of mapped allocation endpoints (`ipv4_addr . inet_proto . inet_service`) in
/// `bridge noded`.
pub const MAPPED_SET: &str = "mapped";
/// The port-map of the nftables fallback in `ip noded`:
/// `ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service`.
pub const PORTMAP_MAP: &str = "portmap";
/// The same mappings keyed by `inet_proto . inet_service` only, for clients on this host that
/// connect to `127.0.0.1:host_port` (the loopback address is in no `portmap` key).
pub const PORTMAP_LOCAL_MAP: &str = "portmap_local";

/// Bound on nft's output kept in an error or parsed from a listing.
const MAX_NFT_OUTPUT_BYTES: usize = 16 << 20;

/// An allocation endpoint in the isolation set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub proto: Proto,
    pub port: u16,
}

impl Endpoint {
    /// The allocation side of a mapping.
    pub fn of(m: &Mapping) -> Self {
        Endpoint {
            ip: m.alloc_ip,
            proto: m.proto,
            port: m.alloc_port,
        }
    }
}

/// Where the `nft` binary is: the agent may run with a PATH without the sbin directories.
fn nft_binary() -> &'static str {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft", "/bin/nft"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("nft")
}

/// How a batch is written.
enum Input<'a> {
    Json(&'a Value),
    /// nft's own syntax, only where nft's JSON parser fails (see [`NftPortMapper::ensure`]).
    Text(&'a str),
}

/// Writes the batch to a spawned nft and waits for it.
fn finish(
    what: &str,
    mut child: std::process::Child,
    batch: Option<Input<'_>>,
) -> Result<std::process::Output> {
    if let (Some(batch), Some(mut stdin)) = (batch, child.stdin.take()) {
        let text = match batch {
            Input::Json(v) => v.to_string(),
            Input::Text(t) => t.to_string(),
        };
        stdin.write_all(text.as_bytes()).map_err(|e| Error::Nft {
            what: what.to_string(),
            stderr: format!("cannot write the batch to nft: {e}"),
        })?;
    }
    let out = child.wait_with_output().map_err(|e| Error::Nft {
        what: what.to_string(),
        stderr: format!("cannot wait for nft: {e}"),
    })?;
    Ok(out)
}

/// Pids of the `nft` processes this process runs and waits for. A program that reaps its
/// children itself (the agent is a child subreaper and reaps the orphans it inherits) must
/// leave these to their `wait`: [`is_awaited`].
static AWAITED: std::sync::Mutex<std::collections::BTreeSet<u32>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn awaited() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<u32>> {
    AWAITED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `pid` is an `nft` this process waits for (a reaper must not reap it). Taken under
/// the same lock as the spawn, so a child that exits before it is registered is still seen.
pub fn is_awaited(pid: u32) -> bool {
    awaited().contains(&pid)
}

/// Whether nft can run here (the masquerade, the isolation and the fallback need it).
pub fn probe() -> Result<()> {
    nft("list the tables (probing nft)", &["list", "tables"], None).map(|_| ())
}

/// Runs `nft` with `args` and, when given, a batch on stdin (`-j` for JSON input and for
/// every listing); returns stdout.
fn nft(what: &str, args: &[&str], batch: Option<Input<'_>>) -> Result<String> {
    let bin = nft_binary();
    let mut command = Command::new(bin);
    if !matches!(batch, Some(Input::Text(_))) {
        command.arg("-j");
    }
    let mut registry = awaited();
    let child = command
        .args(args)
        .stdin(if batch.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Nft {
            what: what.to_string(),
            stderr: format!("cannot run {bin}: {e}; install nftables (apt-get install nftables)"),
        })?;
    let pid = child.id();
    registry.insert(pid);
    drop(registry);
    let out = finish(what, child, batch);
    awaited().remove(&pid);
    let out = out?;
    if !out.status.success() {
        let stderr =
            String::from_utf8_lossy(&out.stderr[..out.stderr.len().min(MAX_NFT_OUTPUT_BYTES)]);
        return Err(Error::Nft {
            what: what.to_string(),
            stderr: format!("{} ({})", stderr.trim(), out.status),
        });
    }
    if out.stdout.len() > MAX_NFT_OUTPUT_BYTES {
        return Err(Error::Nft {
            what: what.to_string(),
            stderr: format!("nft printed more than {MAX_NFT_OUTPUT_BYTES} bytes"),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn apply(what: &str, commands: Vec<Value>) -> Result<()> {
    nft(
        what,
        &["-f", "-"],
        Some(Input::Json(&json!({ "nftables": commands }))),
    )
    .map(drop)
}

/// Whether nft failed because the object it was asked about does not exist.
fn is_missing(e: &Error) -> bool {
    matches!(e, Error::Nft { stderr, .. } if stderr.contains("No such file or directory"))
}

// JSON expression builders, in the shape `nft -j list ruleset` prints them.

fn payload(protocol: &str, field: &str) -> Value {
    json!({ "payload": { "protocol": protocol, "field": field } })
}

fn prefix(net: Ipv4Cidr) -> Value {
    json!({ "prefix": { "addr": net.network().to_string(), "len": net.prefix() } })
}

fn matches(op: &str, left: Value, right: Value) -> Value {
    json!({ "match": { "op": op, "left": left, "right": right } })
}

fn l4_tuple(addr: &str, port: &str) -> Value {
    json!({ "concat": [payload("ip", addr), { "meta": { "key": "l4proto" } }, payload("th", port)] })
}

fn rule(family: &str, chain: &str, expr: Vec<Value>) -> Value {
    json!({ "add": { "rule": { "family": family, "table": TABLE, "chain": chain, "expr": expr } } })
}

/// `add chain` + `flush chain` of a base chain: the chain exists with no rules, in the same
/// batch that then adds them.
fn base_chain(family: &str, name: &str, kind: &str, hook: &str, prio: i32) -> [Value; 2] {
    [
        json!({ "add": { "chain": {
            "family": family, "table": TABLE, "name": name,
            "type": kind, "hook": hook, "prio": prio, "policy": "accept"
        } } }),
        json!({ "flush": { "chain": { "family": family, "table": TABLE, "name": name } } }),
    ]
}

fn add_table(family: &str) -> Value {
    json!({ "add": { "table": { "family": family, "name": TABLE } } })
}

/// `tcp 172.26.64.2:8080, udp 172.26.64.2:8080` for error messages.
fn describe(endpoints: &[Endpoint]) -> String {
    endpoints
        .iter()
        .map(|e| format!("{} {}:{}", e.proto, e.ip, e.port))
        .collect::<Vec<_>>()
        .join(", ")
}

fn endpoint_elem(e: &Endpoint) -> Value {
    json!({ "concat": [e.ip.to_string(), e.proto.as_str(), e.port] })
}

/// Masquerade and isolation for one bridge.
#[derive(Debug, Clone)]
pub struct Firewall {
    bridge: String,
    subnet: Ipv4Cidr,
}

/// Netfilter priorities (`srcnat`, `dstnat`, bridge `filter`).
const PRIO_SRCNAT: i32 = 100;
const PRIO_DSTNAT: i32 = -100;
const PRIO_BRIDGE_FILTER: i32 = -200;

impl Firewall {
    /// Writes (or rewrites) the rules in one atomic batch, keeping the elements of the set
    /// `mapped`:
    /// - `ip noded` chain `postrouting` (nat, srcnat):
    ///   `ip saddr <subnet> ip daddr != <subnet> masquerade`;
    /// - `bridge noded` chain `forward` (filter): frames other than IPv4/IPv6 (ARP) pass;
    ///   IPv6 between allocations is dropped (they have no IPv6 address to offer services
    ///   on, and link-local addresses would bypass the set); IPv4 passes when its destination
    ///   or source `(ip, l4proto, port)` is in `mapped`, else it is dropped.
    pub fn ensure(bridge: &Bridge) -> Result<Firewall> {
        let subnet = bridge.subnet;
        let mut batch = vec![add_table("ip")];
        batch.extend(base_chain(
            "ip",
            "postrouting",
            "nat",
            "postrouting",
            PRIO_SRCNAT,
        ));
        batch.push(rule(
            "ip",
            "postrouting",
            vec![
                matches("==", payload("ip", "saddr"), prefix(subnet)),
                matches("!=", payload("ip", "daddr"), prefix(subnet)),
                json!({ "masquerade": null }),
            ],
        ));
        batch.push(add_table("bridge"));
        batch.push(json!({ "add": { "set": {
            "family": "bridge", "table": TABLE, "name": MAPPED_SET,
            "type": ["ipv4_addr", "inet_proto", "inet_service"]
        } } }));
        batch.extend(base_chain(
            "bridge",
            "forward",
            "filter",
            "forward",
            PRIO_BRIDGE_FILTER,
        ));
        batch.push(rule(
            "bridge",
            "forward",
            vec![
                matches(
                    "!=",
                    payload("ether", "type"),
                    json!({ "set": ["ip", "ip6"] }),
                ),
                json!({ "accept": null }),
            ],
        ));
        batch.push(rule(
            "bridge",
            "forward",
            vec![
                matches("==", payload("ether", "type"), json!("ip6")),
                json!({ "drop": null }),
            ],
        ));
        for (addr, port) in [("daddr", "dport"), ("saddr", "sport")] {
            batch.push(rule(
                "bridge",
                "forward",
                vec![
                    matches("==", l4_tuple(addr, port), json!(format!("@{MAPPED_SET}"))),
                    json!({ "accept": null }),
                ],
            ));
        }
        batch.push(rule("bridge", "forward", vec![json!({ "drop": null })]));
        apply(
            &format!(
                "write the masquerade and isolation rules for bridge {}",
                bridge.name
            ),
            batch,
        )?;
        Ok(Firewall {
            bridge: bridge.name.clone(),
            subnet,
        })
    }

    pub fn subnet(&self) -> Ipv4Cidr {
        self.subnet
    }

    /// Lets other allocations reach the allocation side of `m` (idempotent).
    pub fn allow(&self, m: &Mapping) -> Result<()> {
        self.allow_endpoints(&[Endpoint::of(m)])
    }

    /// Lets other allocations reach every endpoint of `endpoints`, in one nft run (an
    /// allocation's ports are allowed together: each run costs milliseconds). Idempotent.
    pub fn allow_endpoints(&self, endpoints: &[Endpoint]) -> Result<()> {
        if endpoints.is_empty() {
            return Ok(());
        }
        let elems: Vec<Value> = endpoints.iter().map(endpoint_elem).collect();
        apply(
            &format!("allow {} on bridge {}", describe(endpoints), self.bridge),
            vec![json!({ "add": { "element": {
                "family": "bridge", "table": TABLE, "name": MAPPED_SET, "elem": elems
            } } })],
        )
    }

    /// Takes the allocation side of `m` out of the set (idempotent).
    pub fn disallow(&self, m: &Mapping) -> Result<()> {
        self.disallow_endpoints(&[Endpoint::of(m)])
    }

    /// Takes every endpoint of `endpoints` out of the set, in one nft run; those not in it
    /// are skipped (idempotent).
    pub fn disallow_endpoints(&self, endpoints: &[Endpoint]) -> Result<()> {
        let present = self.list_allowed()?;
        let gone: Vec<Endpoint> = endpoints
            .iter()
            .filter(|e| present.contains(e))
            .copied()
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        let elems: Vec<Value> = gone.iter().map(endpoint_elem).collect();
        let result = apply(
            &format!("disallow {} on bridge {}", describe(&gone), self.bridge),
            vec![json!({ "delete": { "element": {
                "family": "bridge", "table": TABLE, "name": MAPPED_SET, "elem": elems
            } } })],
        );
        match result {
            Err(e) if is_missing(&e) => Ok(()),
            other => other,
        }
    }

    /// The endpoints in the set `mapped` (empty when the table does not exist).
    pub fn list_allowed(&self) -> Result<Vec<Endpoint>> {
        list_allowed()
    }

    /// Deletes both tables (`ip noded`, `bridge noded`) with every rule, set and map in them:
    /// the fallback's port-map too. Missing tables are fine.
    pub fn remove_all() -> Result<()> {
        for family in ["ip", "bridge"] {
            let result = apply(
                &format!("delete table {family} {TABLE}"),
                vec![json!({ "delete": { "table": { "family": family, "name": TABLE } } })],
            );
            match result {
                Err(e) if is_missing(&e) => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// The tables named `noded` that exist, as `(family, name)`.
    pub fn list_tables() -> Result<Vec<(String, String)>> {
        let out = nft("list tables", &["list", "tables"], None)?;
        let value: Value = parse(&out, "list tables")?;
        Ok(objects(&value, "table")
            .filter_map(|t| {
                Some((
                    t.get("family")?.as_str()?.to_string(),
                    t.get("name")?.as_str()?.to_string(),
                ))
            })
            .filter(|(_, name)| name == TABLE)
            .collect())
    }
}

fn parse(out: &str, what: &str) -> Result<Value> {
    serde_json::from_str(out).map_err(|e| Error::Nft {
        what: what.to_string(),
        stderr: format!("cannot parse nft's JSON output: {e}"),
    })
}

/// The objects of one kind (`"table"`, `"set"`, `"map"`) in an `nft -j list` output.
fn objects<'a>(value: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> {
    value
        .get("nftables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(move |o| o.get(kind))
}

fn proto_of(v: &Value) -> Option<Proto> {
    match v {
        Value::String(s) if s == "tcp" => Some(Proto::Tcp),
        Value::String(s) if s == "udp" => Some(Proto::Udp),
        Value::Number(n) if n.as_u64() == Some(6) => Some(Proto::Tcp),
        Value::Number(n) if n.as_u64() == Some(17) => Some(Proto::Udp),
        _ => None,
    }
}

fn concat(v: &Value) -> Option<&Vec<Value>> {
    v.get("concat")?.as_array()
}

fn ip_of(v: &Value) -> Option<Ipv4Addr> {
    v.as_str()?.parse().ok()
}

fn port_of(v: &Value) -> Option<u16> {
    u16::try_from(v.as_u64()?).ok()
}

fn list_allowed() -> Result<Vec<Endpoint>> {
    let what = format!("list set bridge {TABLE} {MAPPED_SET}");
    let out = match nft(&what, &["list", "set", "bridge", TABLE, MAPPED_SET], None) {
        Ok(out) => out,
        Err(e) if is_missing(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let value = parse(&out, &what)?;
    let mut endpoints = Vec::new();
    for set in objects(&value, "set") {
        for elem in set
            .get("elem")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let parsed = concat(elem).and_then(|c| match c.as_slice() {
                [ip, proto, port] => Some(Endpoint {
                    ip: ip_of(ip)?,
                    proto: proto_of(proto)?,
                    port: port_of(port)?,
                }),
                _ => None,
            });
            endpoints.push(parsed.ok_or_else(|| Error::Nft {
                what: what.clone(),
                stderr: format!("unexpected element {elem} (not written by noded?)"),
            })?);
        }
    }
    endpoints.sort();
    Ok(endpoints)
}

/// The nftables port-mapping backend: DNAT through the map `portmap` of `ip noded`.
#[derive(Debug, Clone)]
pub struct NftPortMapper {
    bridge: String,
    subnet: Ipv4Cidr,
}

impl NftPortMapper {
    /// Writes the fallback's rules in one batch (elements of `portmap` kept), in the calling
    /// thread's namespace:
    /// - chains `portmap_prerouting` (dstnat; clients from elsewhere) and `portmap_output`
    ///   (nat output; clients on this host): `dnat ip to ip daddr . meta l4proto . th dport
    ///   map @portmap`; and in `portmap_output`, for `ip daddr 127.0.0.0/8`, the same
    ///   through `meta l4proto . th dport map @portmap_local`;
    /// - chain `portmap_postrouting` (srcnat): `ip saddr 127.0.0.0/8 ip daddr <subnet>
    ///   masquerade` (a reply to 127.0.0.1 could not leave the allocation), and hairpin
    ///   `ip saddr <subnet> ip daddr <subnet> ct status dnat masquerade` (an allocation that
    ///   reaches another through a host port must get the reply from the host address it
    ///   connected to, not straight over the bridge);
    /// - `net.ipv4.conf.<bridge>.route_localnet=1`: the kernel otherwise refuses to route a
    ///   packet with a 127.0.0.0/8 address out of, or back in through, the bridge.
    pub fn ensure(bridge: &Bridge) -> Result<NftPortMapper> {
        let subnet = bridge.subnet;
        // nft's own syntax rather than JSON: nft 1.0.6 crashes (SIGSEGV) parsing a JSON
        // `dnat` whose address is a concatenated map lookup. Still one batch, one atomic
        // transaction; every value below is a typed address or number, nothing user-written.
        let dnat = format!("dnat ip to ip daddr . meta l4proto . th dport map @{PORTMAP_MAP}");
        let mut text = format!(
            "add table ip {TABLE}\n\
             add map ip {TABLE} {PORTMAP_MAP} {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service ; }}\n\
             add map ip {TABLE} {PORTMAP_LOCAL_MAP} {{ type inet_proto . inet_service : ipv4_addr . inet_service ; }}\n"
        );
        for (chain, hook, prio) in [
            ("portmap_prerouting", "prerouting", PRIO_DSTNAT),
            ("portmap_output", "output", PRIO_DSTNAT),
            ("portmap_postrouting", "postrouting", PRIO_SRCNAT),
        ] {
            text.push_str(&format!(
                "add chain ip {TABLE} {chain} {{ type nat hook {hook} priority {prio} ; policy accept ; }}\n\
                 flush chain ip {TABLE} {chain}\n"
            ));
        }
        text.push_str(&format!("add rule ip {TABLE} portmap_prerouting {dnat}\n"));
        text.push_str(&format!("add rule ip {TABLE} portmap_output {dnat}\n"));
        text.push_str(&format!(
            "add rule ip {TABLE} portmap_output ip daddr 127.0.0.0/8 dnat ip to meta l4proto . th dport map @{PORTMAP_LOCAL_MAP}\n"
        ));
        text.push_str(&format!(
            "add rule ip {TABLE} portmap_postrouting ip saddr 127.0.0.0/8 ip daddr {subnet} masquerade\n\
             add rule ip {TABLE} portmap_postrouting ip saddr {subnet} ip daddr {subnet} ct status dnat masquerade\n"
        ));
        nft(
            &format!("write the port-map rules for bridge {}", bridge.name),
            &["-f", "-"],
            Some(Input::Text(&text)),
        )?;
        sysctl::write_ipv4_conf(&bridge.name, "route_localnet", "1")?;
        Ok(NftPortMapper {
            bridge: bridge.name.clone(),
            subnet,
        })
    }

    fn batch_err(what: String, e: Error) -> PortMapError {
        let reason = match e {
            Error::Nft { stderr, .. } => format!("nft refused: {stderr}"),
            other => other.to_string(),
        };
        PortMapError::new(what, reason)
    }
}

fn map_elem(m: &Mapping) -> Value {
    json!([
        { "concat": [m.host_ip.to_string(), m.proto.as_str(), m.host_port] },
        { "concat": [m.alloc_ip.to_string(), m.alloc_port] }
    ])
}

fn local_elem(m: &Mapping) -> Value {
    json!([
        { "concat": [m.proto.as_str(), m.host_port] },
        { "concat": [m.alloc_ip.to_string(), m.alloc_port] }
    ])
}

/// The commands that add (or delete) `m` in both maps: always together, in one batch.
fn element_commands(verb: &str, m: &Mapping) -> [Value; 2] {
    [
        json!({ verb: { "element": {
            "family": "ip", "table": TABLE, "name": PORTMAP_MAP, "elem": [map_elem(m)]
        } } }),
        json!({ verb: { "element": {
            "family": "ip", "table": TABLE, "name": PORTMAP_LOCAL_MAP, "elem": [local_elem(m)]
        } } }),
    ]
}

fn list_portmap() -> Result<Vec<Mapping>> {
    let what = format!("list map ip {TABLE} {PORTMAP_MAP}");
    let out = match nft(&what, &["list", "map", "ip", TABLE, PORTMAP_MAP], None) {
        Ok(out) => out,
        Err(e) if is_missing(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let value = parse(&out, &what)?;
    let mut mappings = Vec::new();
    for map in objects(&value, "map") {
        for elem in map
            .get("elem")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let parsed = elem.as_array().and_then(|pair| match pair.as_slice() {
                [key, data] => match (concat(key)?.as_slice(), concat(data)?.as_slice()) {
                    ([host_ip, proto, host_port], [alloc_ip, alloc_port]) => Some(Mapping {
                        proto: proto_of(proto)?,
                        host_ip: ip_of(host_ip)?,
                        host_port: port_of(host_port)?,
                        alloc_ip: ip_of(alloc_ip)?,
                        alloc_port: port_of(alloc_port)?,
                    }),
                    _ => None,
                },
                _ => None,
            });
            mappings.push(parsed.ok_or_else(|| Error::Nft {
                what: what.clone(),
                stderr: format!("unexpected element {elem} (not written by noded?)"),
            })?);
        }
    }
    mappings.sort();
    Ok(mappings)
}

impl PortMapBackend for NftPortMapper {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn insert(&self, m: &Mapping) -> Result<(), PortMapError> {
        let what = format!("map {m} (nftables, bridge {})", self.bridge);
        let present = list_portmap().map_err(|e| Self::batch_err(what.clone(), e))?;
        let same_key = |p: &&Mapping| {
            p.proto == m.proto && p.host_ip == m.host_ip && p.host_port == m.host_port
        };
        let mut batch = Vec::new();
        match present.iter().find(same_key) {
            Some(p) if p == m => return Ok(()),
            // The host port now goes elsewhere: replace the element in the same batch.
            Some(p) => batch.extend(element_commands("delete", p)),
            None => {}
        }
        batch.extend(element_commands("add", m));
        apply(&what, batch).map_err(|e| Self::batch_err(what, e))
    }

    fn remove(&self, m: &Mapping) -> Result<(), PortMapError> {
        let what = format!("unmap {m} (nftables, bridge {})", self.bridge);
        let present = list_portmap().map_err(|e| Self::batch_err(what.clone(), e))?;
        if !present.contains(m) {
            return Ok(());
        }
        match apply(&what, element_commands("delete", m).to_vec()) {
            Ok(()) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(Self::batch_err(what, e)),
        }
    }

    fn list(&self) -> Result<Vec<Mapping>, PortMapError> {
        list_portmap().map_err(|e| {
            Self::batch_err(
                format!("list the nftables port-map of bridge {}", self.bridge),
                e,
            )
        })
    }
}

impl NftPortMapper {
    pub fn subnet(&self) -> Ipv4Cidr {
        self.subnet
    }
}
