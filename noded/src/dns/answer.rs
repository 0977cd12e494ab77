//! The answer to one DNS query, as a pure function of the view and the query's bytes. The
//! question is parsed by hand (no allocation: the name is lowercased into a stack buffer),
//! answers are copies of the view's pre-encoded messages patched with the query's id, RD
//! bit and question (its case kept, as resolvers that randomise case expect). Any input
//! gives a reply, `Forward` or `Drop`, never a panic: every index is checked.

use super::view::{View, MAX_NAME_WIRE};

const HEADER: usize = 12;
const TYPE_A: u16 = 1;
const TYPE_SOA: u16 = 6;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
const CLASS_ANY: u16 = 255;

/// DNS response codes (RFC 1035 §4.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NxDomain = 3,
    NotImp = 4,
    Refused = 5,
}

/// How the query came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What to do with a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `out` holds the reply.
    Reply,
    /// The name is outside the domain and forwarding is on: send the query upstream.
    Forward,
    /// Not a query (too short for a header, or a response): no reply, so that two servers
    /// never answer each other's answers.
    Drop,
}

/// The parsed question: where it ends, the lowercase name and where the domain starts in it.
struct Question {
    /// Offset just past QTYPE and QCLASS.
    end: usize,
    name: [u8; MAX_NAME_WIRE],
    name_len: usize,
    qtype: u16,
    qclass: u16,
    /// Offset (in the name) of each label, at most 128 of them in 255 bytes.
    labels: [u8; 128],
    label_count: usize,
}

impl Question {
    fn name(&self) -> &[u8] {
        &self.name[..self.name_len]
    }

    /// The name without its first `n` labels.
    fn suffix(&self, n: usize) -> &[u8] {
        match self.labels.get(n) {
            Some(&start) if n < self.label_count => &self.name[usize::from(start)..self.name_len],
            _ => &self.name[self.name_len.saturating_sub(1)..self.name_len],
        }
    }

    fn label(&self, i: usize) -> &[u8] {
        let start = usize::from(self.labels[i]);
        let len = usize::from(self.name[start]);
        &self.name[start + 1..start + 1 + len]
    }
}

/// Why a question could not be read.
enum Malformed {
    /// Fewer than 12 bytes: not even an id to answer to.
    NoHeader,
    /// A header, but no question that parses (FORMERR).
    BadQuestion,
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

fn parse_question(query: &[u8]) -> Result<Question, Malformed> {
    if query.len() < HEADER {
        return Err(Malformed::NoHeader);
    }
    let mut q = Question {
        end: 0,
        name: [0; MAX_NAME_WIRE],
        name_len: 0,
        qtype: 0,
        qclass: 0,
        labels: [0; 128],
        label_count: 0,
    };
    let mut i = HEADER;
    loop {
        let len = usize::from(*query.get(i).ok_or(Malformed::BadQuestion)?);
        // 0x40/0x80: a compression pointer or an extended label type, neither of which a
        // question's name may use here; also what a label over 63 bytes would look like.
        if len & 0xC0 != 0 {
            return Err(Malformed::BadQuestion);
        }
        if q.name_len + 1 + len > MAX_NAME_WIRE {
            return Err(Malformed::BadQuestion);
        }
        if len == 0 {
            q.name[q.name_len] = 0;
            q.name_len += 1;
            i += 1;
            break;
        }
        let label = query
            .get(i + 1..i + 1 + len)
            .ok_or(Malformed::BadQuestion)?;
        let slot = q
            .labels
            .get_mut(q.label_count)
            .ok_or(Malformed::BadQuestion)?;
        *slot = u8::try_from(q.name_len).map_err(|_| Malformed::BadQuestion)?;
        q.label_count += 1;
        q.name[q.name_len] = len as u8;
        for (dst, src) in q.name[q.name_len + 1..q.name_len + 1 + len]
            .iter_mut()
            .zip(label)
        {
            *dst = src.to_ascii_lowercase();
        }
        q.name_len += 1 + len;
        i += 1 + len;
    }
    q.qtype = u16_at(query, i).ok_or(Malformed::BadQuestion)?;
    q.qclass = u16_at(query, i + 2).ok_or(Malformed::BadQuestion)?;
    q.end = i + 4;
    Ok(q)
}

/// Writes the reply to `query` into `out` (cleared first), or says to forward or drop it.
pub fn answer(view: &View, query: &[u8], transport: Transport, out: &mut Vec<u8>) -> Verdict {
    out.clear();
    let Some(flags) = u16_at(query, 2) else {
        return Verdict::Drop;
    };
    if flags & 0x8000 != 0 {
        return Verdict::Drop;
    }
    let opcode = (flags >> 11) & 0xF;
    if opcode != 0 {
        header_only(view, query, Rcode::NotImp, out);
        return Verdict::Reply;
    }
    if u16_at(query, 4) != Some(1) {
        header_only(view, query, Rcode::FormErr, out);
        return Verdict::Reply;
    }
    let q = match parse_question(query) {
        Ok(q) => q,
        Err(Malformed::NoHeader) => return Verdict::Drop,
        Err(Malformed::BadQuestion) => {
            header_only(view, query, Rcode::FormErr, out);
            return Verdict::Reply;
        }
    };
    let domain = view.domain_wire.as_slice();
    let domain_labels = count_labels(domain);
    let in_domain =
        q.label_count >= domain_labels && q.suffix(q.label_count - domain_labels) == domain;
    if !in_domain {
        if view.settings.forward && q.qclass == CLASS_IN {
            return Verdict::Forward;
        }
        negative(view, query, &q, Rcode::Refused, None, out);
        return Verdict::Reply;
    }
    if q.qclass != CLASS_IN && q.qclass != CLASS_ANY {
        negative(view, query, &q, Rcode::Refused, None, out);
        return Verdict::Reply;
    }
    let soa_at = HEADER
        + usize::from(
            q.labels
                .get(q.label_count - domain_labels)
                .copied()
                .unwrap_or(0),
        );
    let tcp = transport == Transport::Tcp;
    if let Some(entry) = view.names.get(q.name()) {
        let records = match q.qtype {
            TYPE_A => &entry.a,
            TYPE_AAAA => &entry.aaaa,
            TYPE_SRV => &entry.srv,
            TYPE_ANY if !entry.a.is_empty() => &entry.a,
            TYPE_ANY if !entry.aaaa.is_empty() => &entry.aaaa,
            TYPE_ANY => &entry.srv,
            TYPE_SOA if q.name() == domain => {
                soa_answer(view, query, &q, out);
                return Verdict::Reply;
            }
            _ => {
                negative(view, query, &q, Rcode::NoError, Some(soa_at), out);
                return Verdict::Reply;
            }
        };
        match records.pick(tcp) {
            Some(msg) => patch(msg, query, &q, out),
            None => negative(view, query, &q, Rcode::NoError, Some(soa_at), out),
        }
        return Verdict::Reply;
    }
    if addr_answer(view, query, &q, domain_labels, soa_at, out) {
        return Verdict::Reply;
    }
    negative(view, query, &q, Rcode::NxDomain, Some(soa_at), out);
    Verdict::Reply
}

fn count_labels(wire: &[u8]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while let Some(&len) = wire.get(i) {
        if len == 0 {
            break;
        }
        n += 1;
        i += 1 + usize::from(len);
    }
    n
}

/// A pre-encoded answer with the query's id, RD bit and question (same length: the same
/// name in another case, the same type and class).
fn patch(msg: &[u8], query: &[u8], q: &Question, out: &mut Vec<u8>) {
    out.extend_from_slice(msg);
    if out.len() < q.end || query.len() < q.end {
        // Cannot happen for a message built for this name; answer nothing rather than junk.
        out.clear();
        header_only_raw(query, Rcode::ServFail, false, out);
        return;
    }
    out[0] = query[0];
    out[1] = query[1];
    out[2] = (out[2] & !0x01) | (query[2] & 0x01);
    out[HEADER..q.end].copy_from_slice(&query[HEADER..q.end]);
}

/// The reply header: the query's id and RD, QR, AA for our own zone, RA when forwarding.
fn write_header(
    query: &[u8],
    rcode: Rcode,
    aa: bool,
    ra: bool,
    counts: [u16; 4],
    out: &mut Vec<u8>,
) {
    let rd = query.get(2).copied().unwrap_or(0) & 0x01;
    let opcode = query.get(2).copied().unwrap_or(0) & 0x78;
    out.push(query.first().copied().unwrap_or(0));
    out.push(query.get(1).copied().unwrap_or(0));
    out.push(0x80 | opcode | if aa { 0x04 } else { 0 } | rd);
    out.push(if ra { 0x80 } else { 0 } | rcode as u8);
    for c in counts {
        out.extend_from_slice(&c.to_be_bytes());
    }
}

fn header_only_raw(query: &[u8], rcode: Rcode, ra: bool, out: &mut Vec<u8>) {
    write_header(query, rcode, false, ra, [0; 4], out);
}

fn header_only(view: &View, query: &[u8], rcode: Rcode, out: &mut Vec<u8>) {
    header_only_raw(query, rcode, view.settings.forward, out);
}

/// NXDOMAIN, NODATA or REFUSED: the question, and for our own zone the SOA in the
/// authority section (owner: a pointer to the domain within the question), so resolvers
/// cache the negative answer for the TTL.
fn negative(
    view: &View,
    query: &[u8],
    q: &Question,
    rcode: Rcode,
    soa_at: Option<usize>,
    out: &mut Vec<u8>,
) {
    let ns = u16::from(soa_at.is_some());
    write_header(
        query,
        rcode,
        soa_at.is_some(),
        view.settings.forward,
        [1, 0, ns, 0],
        out,
    );
    out.extend_from_slice(&query[HEADER..q.end]);
    if let Some(at) = soa_at {
        push_pointer(at, out);
        out.extend_from_slice(&view.soa_tail);
    }
}

/// An authoritative NOERROR reply with one answer: the header, the question, and the
/// answer's owner (a pointer to the question's name); the caller writes the rest.
fn one_answer_start(view: &View, query: &[u8], q: &Question, out: &mut Vec<u8>) {
    write_header(
        query,
        Rcode::NoError,
        true,
        view.settings.forward,
        [1, 1, 0, 0],
        out,
    );
    out.extend_from_slice(&query[HEADER..q.end]);
    push_pointer(HEADER, out);
}

fn soa_answer(view: &View, query: &[u8], q: &Question, out: &mut Vec<u8>) {
    one_answer_start(view, query, q, out);
    out.extend_from_slice(&view.soa_tail);
}

fn push_pointer(at: usize, out: &mut Vec<u8>) {
    let p = 0xC000u16 | u16::try_from(at).unwrap_or(0).min(0x3FFF);
    out.extend_from_slice(&p.to_be_bytes());
}

/// `<hex>.addr.<domain>`: A for 8 hex digits, AAAA for 32 (the targets of SRV answers).
fn addr_answer(
    view: &View,
    query: &[u8],
    q: &Question,
    domain_labels: usize,
    soa_at: usize,
    out: &mut Vec<u8>,
) -> bool {
    if q.label_count != domain_labels + 2 || q.label(1) != b"addr" {
        return false;
    }
    let hex = q.label(0);
    let rdata: ([u8; 16], usize, u16) = match hex.len() {
        8 => match parse_hex::<4>(hex) {
            Some(b) => {
                let mut r = [0; 16];
                r[..4].copy_from_slice(&b);
                (r, 4, TYPE_A)
            }
            None => return false,
        },
        32 => match parse_hex::<16>(hex) {
            Some(b) => (b, 16, TYPE_AAAA),
            None => return false,
        },
        _ => return false,
    };
    let (bytes, len, rtype) = rdata;
    if q.qtype != rtype && q.qtype != TYPE_ANY {
        negative(view, query, q, Rcode::NoError, Some(soa_at), out);
        return true;
    }
    one_answer_start(view, query, q, out);
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&view.settings.ttl_secs.to_be_bytes());
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&bytes[..len]);
    true
}

fn parse_hex<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    if hex.len() != N * 2 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// REFUSED for `query`: a name outside the domain asked on a listener that does not forward
/// (one bound outside loopback, which must never be an open resolver). Empty when the query
/// has no header to answer to.
pub fn refused(query: &[u8], out: &mut Vec<u8>) {
    question_only(query, Rcode::Refused, false, out);
}

/// SERVFAIL for `query` (an upstream did not answer, or too many forwards are in flight).
/// Empty when the query has no header to answer to.
pub fn servfail(query: &[u8], out: &mut Vec<u8>) {
    question_only(query, Rcode::ServFail, true, out);
}

/// A reply of `rcode` holding the query's question (or only a header when the question
/// cannot be read); empty when the query has no header.
fn question_only(query: &[u8], rcode: Rcode, ra: bool, out: &mut Vec<u8>) {
    out.clear();
    if query.len() < HEADER {
        return;
    }
    match parse_question(query) {
        Ok(q) => {
            write_header(query, rcode, false, ra, [1, 0, 0, 0], out);
            out.extend_from_slice(&query[HEADER..q.end]);
        }
        Err(_) => header_only_raw(query, rcode, ra, out),
    }
}
