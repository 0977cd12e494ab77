//! The DNS view of one catalog version: every name the server answers, lowercased, with its
//! answers already encoded as whole DNS messages. A query then costs a hash lookup and a copy
//! patched with the query's id, flags and question (see [`super::answer`]); nothing is built
//! per query. A view is immutable: the catalog follower builds a new one per catalog index
//! and swaps it in ([`ViewCell`]).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use controlplane::model::{HealthStatus, ServiceRegistration};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// The largest DNS message over UDP without EDNS (RFC 1035 §4.2.1).
pub const MAX_UDP_RESPONSE: usize = 512;
/// The most instances one answer lists: a bound on the TCP message (a record with its
/// additional A stays under 100 bytes, so 256 of them fit the 64 KiB a TCP message allows).
pub const MAX_ANSWER_RECORDS: usize = 256;
/// Pre-encoded orders of the instances per answer: queries take them in turn, so that
/// clients that use the first record spread over the instances.
pub const MAX_ROTATIONS: usize = 8;
/// The longest name in wire format (RFC 1035 §2.3.4).
pub const MAX_NAME_WIRE: usize = 255;
/// The longest label.
pub const MAX_LABEL: usize = 63;
/// The namespace names without a namespace label stand for.
pub const DEFAULT_NAMESPACE: &str = "default";

/// What a view needs from the agent's `dns` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewSettings {
    /// The zone, lowercase, without the trailing dot (`noded`).
    pub domain: String,
    /// The TTL of every answer, and the SOA's negative-caching TTL.
    pub ttl_secs: u32,
    /// Names outside the domain are forwarded (RA is set) rather than refused.
    pub forward: bool,
}

/// One pre-encoded reply: the one that fits UDP, and the full one for TCP.
pub(crate) type Variant = (Arc<[u8]>, Arc<[u8]>);

/// One answer for one (name, type), in each pre-encoded order.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    /// Whole messages (id 0, the canonical lowercase question): the full one for TCP and the
    /// one that fits [`MAX_UDP_RESPONSE`] (the same bytes when the full one fits).
    pub variants: Vec<Variant>,
    next: AtomicUsize,
}

impl Answer {
    pub fn is_empty(&self) -> bool {
        self.variants.is_empty()
    }

    /// The next order, round robin.
    pub fn pick(&self, tcp: bool) -> Option<&[u8]> {
        if self.variants.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.variants.len();
        let (udp, full) = &self.variants[i];
        Some(if tcp { full } else { udp })
    }
}

/// What a name holds. All empty: a name that exists with no record of its own (the domain's
/// apex, `service.<domain>`, a namespace's `service.<ns>.<domain>`…): NODATA, not NXDOMAIN.
#[derive(Debug, Default)]
pub(crate) struct NameEntry {
    pub a: Answer,
    pub aaaa: Answer,
    pub srv: Answer,
}

/// The immutable index of one catalog version.
#[derive(Debug)]
pub struct View {
    pub(crate) settings: ViewSettings,
    /// The domain in wire format, lowercase (`\x05noded\x00`).
    pub(crate) domain_wire: Vec<u8>,
    /// Wire-format lowercase name → its answers.
    pub(crate) names: HashMap<Box<[u8]>, NameEntry>,
    /// The SOA record's type, class, TTL and RDATA (its owner name, the domain, is written
    /// as a pointer into the question): the authority of negative answers.
    pub(crate) soa_tail: Vec<u8>,
    /// The catalog index it was built from.
    pub index: u64,
    /// Instances that answer (passing).
    pub instances: usize,
}

/// A (namespace, service) → its passing instances, in a stable order.
type Grouped<'a> = BTreeMap<(String, String), Vec<&'a ServiceRegistration>>;

impl View {
    /// A view with no service: the apex and `addr` names answer, the rest is NXDOMAIN.
    pub fn empty(settings: ViewSettings) -> View {
        View::build(settings, &[], 0)
    }

    /// The view of `services` (the catalog at `index`). Only `passing` instances answer.
    pub fn build(
        settings: ViewSettings,
        services: &[Arc<ServiceRegistration>],
        index: u64,
    ) -> View {
        let domain_wire = wire_name(settings.domain.split('.').filter(|l| !l.is_empty()));
        let soa_tail = soa_tail(&settings);
        let mut view = View {
            settings,
            domain_wire,
            names: HashMap::new(),
            soa_tail,
            index,
            instances: 0,
        };
        view.names
            .insert(view.domain_wire.clone().into(), NameEntry::default());
        let mut grouped: Grouped<'_> = BTreeMap::new();
        for s in services
            .iter()
            .filter(|s| s.status == HealthStatus::Passing)
        {
            let (ns, name) = (
                s.namespace.to_ascii_lowercase(),
                s.service_name.to_ascii_lowercase(),
            );
            if !is_label(&ns) || !is_label(&name) {
                continue;
            }
            grouped.entry((ns, name)).or_default().push(s);
        }
        for ((ns, name), mut instances) in grouped {
            instances.sort_by(|a, b| a.id.cmp(&b.id));
            view.instances += instances.len();
            let mut tags: BTreeMap<String, Vec<&ServiceRegistration>> = BTreeMap::new();
            for s in &instances {
                for tag in &s.tags {
                    let tag = tag.to_ascii_lowercase();
                    if is_label(&tag) {
                        let list = tags.entry(tag).or_default();
                        // A tag written twice on one instance lists it once.
                        if list.last().map(|l| l.id.as_str()) != Some(s.id.as_str()) {
                            list.push(s);
                        }
                    }
                }
            }
            let mut forms: Vec<Vec<&str>> = Vec::new();
            if ns == DEFAULT_NAMESPACE {
                forms.push(vec![&name, "service"]);
            }
            forms.push(vec![&name, "service", &ns]);
            for form in &forms {
                view.insert(form, &instances);
                for (tag, tagged) in &tags {
                    let mut labels = vec![tag.as_str()];
                    labels.extend(form.iter().copied());
                    view.insert(&labels, tagged);
                }
            }
        }
        view
    }

    /// Inserts the name `labels` + domain answering `instances`, and its ancestors within
    /// the domain as names with no records. The first writer of a name keeps it (a
    /// namespace called `service` could otherwise collide with a default-namespace tag).
    fn insert(&mut self, labels: &[&str], instances: &[&ServiceRegistration]) {
        let domain: Vec<&str> = self
            .settings
            .domain
            .split('.')
            .filter(|l| !l.is_empty())
            .collect();
        let all: Vec<&str> = labels
            .iter()
            .copied()
            .chain(domain.iter().copied())
            .collect();
        let wire = wire_name(all.iter().copied());
        if wire.len() > MAX_NAME_WIRE || self.names.contains_key(wire.as_slice()) {
            return;
        }
        for skip in 1..labels.len() {
            let ancestor = wire_name(all[skip..].iter().copied());
            self.names.entry(ancestor.into()).or_default();
        }
        let name = match Name::from_labels(all.iter().map(|l| l.as_bytes())) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(name = ?all, "dns: skipping a name hickory refuses: {e}");
                return;
            }
        };
        let take = &instances[..instances.len().min(MAX_ANSWER_RECORDS)];
        let entry = NameEntry {
            a: self.encode_answer(&name, RecordType::A, take),
            aaaa: self.encode_answer(&name, RecordType::AAAA, take),
            srv: self.encode_answer(&name, RecordType::SRV, take),
        };
        self.names.insert(wire.into(), entry);
    }

    fn encode_answer(
        &self,
        name: &Name,
        rtype: RecordType,
        instances: &[&ServiceRegistration],
    ) -> Answer {
        let usable: Vec<&ServiceRegistration> = instances
            .iter()
            .copied()
            .filter(|s| match (rtype, s.address.parse::<IpAddr>()) {
                (RecordType::A, Ok(IpAddr::V4(_))) | (RecordType::AAAA, Ok(IpAddr::V6(_))) => true,
                (RecordType::SRV, ip) => ip.is_ok() || self.hostname_target(&s.address).is_some(),
                _ => false,
            })
            .collect();
        let n = usable.len();
        if n == 0 {
            return Answer::default();
        }
        let rotations = n.min(MAX_ROTATIONS);
        let mut variants = Vec::with_capacity(rotations);
        for r in 0..rotations {
            let start = r * n / rotations;
            let order: Vec<&ServiceRegistration> = usable[start..]
                .iter()
                .chain(usable[..start].iter())
                .copied()
                .collect();
            match self.encode_variant(name, rtype, &order) {
                Some(v) => variants.push(v),
                None => return Answer::default(),
            }
        }
        Answer {
            variants,
            next: AtomicUsize::new(0),
        }
    }

    /// The full message and the one for UDP (fewer records and TC when the full one is
    /// over 512 bytes). `None` only if hickory cannot encode the message.
    fn encode_variant(
        &self,
        name: &Name,
        rtype: RecordType,
        order: &[&ServiceRegistration],
    ) -> Option<Variant> {
        let full: Arc<[u8]> = self.encode_message(name, rtype, order, false)?.into();
        if full.len() <= MAX_UDP_RESPONSE {
            return Some((full.clone(), full));
        }
        // The most records that fit, by bisection over the count (the size grows with it).
        let (mut lo, mut hi) = (0usize, order.len());
        let mut best = self.encode_message(name, rtype, &[], true)?;
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            let msg = self.encode_message(name, rtype, &order[..mid], true)?;
            if msg.len() <= MAX_UDP_RESPONSE {
                best = msg;
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Some((best.into(), full))
    }

    fn encode_message(
        &self,
        name: &Name,
        rtype: RecordType,
        order: &[&ServiceRegistration],
        truncated: bool,
    ) -> Option<Vec<u8>> {
        let ttl = self.settings.ttl_secs;
        let mut msg = Message::new();
        msg.set_id(0)
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_authoritative(true)
            .set_truncated(truncated)
            .set_recursion_available(self.settings.forward)
            .set_response_code(ResponseCode::NoError)
            .add_query(Query::query(name.clone(), rtype));
        for s in order {
            match (rtype, s.address.parse::<IpAddr>()) {
                (RecordType::A, Ok(IpAddr::V4(ip))) => {
                    msg.add_answer(Record::from_rdata(name.clone(), ttl, RData::A(A(ip))));
                }
                (RecordType::AAAA, Ok(IpAddr::V6(ip))) => {
                    msg.add_answer(Record::from_rdata(name.clone(), ttl, RData::AAAA(AAAA(ip))));
                }
                (RecordType::SRV, ip) => {
                    let target = match ip {
                        Ok(ip) => self.addr_name(ip)?,
                        Err(_) => self.hostname_target(&s.address)?,
                    };
                    let srv = SRV::new(1, 1, s.port, target.clone());
                    msg.add_answer(Record::from_rdata(name.clone(), ttl, RData::SRV(srv)));
                    match ip {
                        Ok(IpAddr::V4(ip)) => {
                            msg.add_additional(Record::from_rdata(target, ttl, RData::A(A(ip))));
                        }
                        Ok(IpAddr::V6(ip)) => {
                            msg.add_additional(Record::from_rdata(
                                target,
                                ttl,
                                RData::AAAA(AAAA(ip)),
                            ));
                        }
                        Err(_) => {}
                    }
                }
                _ => {}
            }
        }
        match msg.to_vec() {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::warn!(%name, "dns: encoding an answer: {e}");
                None
            }
        }
    }

    /// `<hex>.addr.<domain>.`: the SRV target of an instance at `ip`, which this server
    /// answers with A (8 hex digits) or AAAA (32), as Consul names them.
    fn addr_name(&self, ip: IpAddr) -> Option<Name> {
        let hex = match ip {
            IpAddr::V4(v4) => format!("{:08x}", u32::from(v4)),
            IpAddr::V6(v6) => format!("{:032x}", u128::from(v6)),
        };
        Name::from_ascii(format!("{hex}.addr.{}.", self.settings.domain)).ok()
    }

    /// An instance advertised at a host name (`address = "db.example.com"`): the SRV target
    /// is that name, resolved by whoever asked.
    fn hostname_target(&self, address: &str) -> Option<Name> {
        let valid = !address.is_empty() && address.split('.').all(is_hostname_label);
        if !valid {
            return None;
        }
        Name::from_ascii(format!("{}.", address.trim_end_matches('.'))).ok()
    }

    /// The names this view answers with records, as text (for logs and tests).
    pub fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .names
            .iter()
            .filter(|(_, e)| !(e.a.is_empty() && e.aaaa.is_empty() && e.srv.is_empty()))
            .map(|(k, _)| wire_to_text(k))
            .collect();
        out.sort();
        out
    }
}

/// A service, namespace or tag usable as one DNS label: 1–63 of `a-z0-9-_` (lowercased
/// before). Others (tags with dots or spaces) are not reachable by name and are skipped.
pub fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LABEL
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn is_hostname_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LABEL
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `labels` in wire format, lowercased: length-prefixed labels and the root's zero.
pub fn wire_name<'a>(labels: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut out = Vec::new();
    for l in labels {
        let bytes = l.as_bytes();
        out.push(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
        out.extend(bytes.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out
}

fn wire_to_text(wire: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while let Some(&len) = wire.get(i) {
        if len == 0 {
            break;
        }
        let end = (i + 1 + usize::from(len)).min(wire.len());
        out.push_str(&String::from_utf8_lossy(&wire[i + 1..end]));
        out.push('.');
        i = end;
    }
    out
}

/// The SOA of the domain after its owner name: `ns.<domain>. hostmaster.<domain>.`, serial
/// 1, and the TTL as the minimum (what resolvers cache NXDOMAIN and NODATA for).
fn soa_tail(settings: &ViewSettings) -> Vec<u8> {
    let domain: Vec<&str> = settings
        .domain
        .split('.')
        .filter(|l| !l.is_empty())
        .collect();
    let mname = wire_name(std::iter::once("ns").chain(domain.iter().copied()));
    let rname = wire_name(std::iter::once("hostmaster").chain(domain.iter().copied()));
    let ttl = settings.ttl_secs;
    let mut rdata = Vec::new();
    rdata.extend_from_slice(&mname);
    rdata.extend_from_slice(&rname);
    for v in [1u32, 3600, 600, 86400, ttl] {
        rdata.extend_from_slice(&v.to_be_bytes());
    }
    let mut out = Vec::with_capacity(10 + rdata.len());
    out.extend_from_slice(&6u16.to_be_bytes()); // SOA
    out.extend_from_slice(&1u16.to_be_bytes()); // IN
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&u16::try_from(rdata.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(&rdata);
    out
}

/// The current view, swapped whole by the catalog follower and read by every listener.
/// Readers keep their own `Arc` and look at the generation counter per query (one atomic
/// load, no lock, no shared write): only when it moved do they take the lock to re-read.
#[derive(Debug)]
pub struct ViewCell {
    generation: AtomicU64,
    current: RwLock<Arc<View>>,
}

impl ViewCell {
    pub fn new(view: View) -> ViewCell {
        ViewCell {
            generation: AtomicU64::new(0),
            current: RwLock::new(Arc::new(view)),
        }
    }

    pub fn store(&self, view: View) {
        let mut slot = self.current.write().unwrap_or_else(|p| p.into_inner());
        *slot = Arc::new(view);
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn load(&self) -> Arc<View> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// A listener thread's copy of the current view, refreshed when the cell's generation moves.
#[derive(Debug)]
pub struct ViewReader {
    cell: Arc<ViewCell>,
    seen: u64,
    view: Arc<View>,
}

impl ViewReader {
    pub fn new(cell: Arc<ViewCell>) -> ViewReader {
        let seen = cell.generation();
        let view = cell.load();
        ViewReader { cell, seen, view }
    }

    pub fn get(&mut self) -> &View {
        let now = self.cell.generation();
        if now != self.seen {
            self.seen = now;
            self.view = self.cell.load();
        }
        &self.view
    }
}
