//! Just enough of the DNS wire format (RFC 1035, SRV from RFC 2782) for the load generator:
//! one question out, the answer and additional sections back, with name compression.
//!
//! Parsing never trusts the packet: every read is bounds-checked, a compression pointer may
//! only point backwards and at most [`MAX_POINTERS`] are followed per name, so a hostile or
//! broken server makes a query "wrong", never the bench crash or loop.

use std::net::Ipv4Addr;

/// The record types the bench asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QType {
    A,
    Srv,
}

impl QType {
    pub fn code(self) -> u16 {
        match self {
            QType::A => 1,
            QType::Srv => 33,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            QType::A => "A",
            QType::Srv => "SRV",
        }
    }
}

const TYPE_A: u16 = 1;
const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;
/// Compression pointers followed in one name: a name has at most 127 labels.
const MAX_POINTERS: usize = 128;
/// RFC 1035's limit on a name in wire form.
const MAX_NAME_BYTES: usize = 255;
/// Records read from one answer (the bench's zone has a handful).
const MAX_RECORDS: usize = 64;

/// A query for `name` (absolute, `web.service.noded.`) of type `qtype`, recursion desired
/// (as dig sends it), with id 0: [`set_id`] patches the id into a copy per query.
pub fn query(name: &str, qtype: QType) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{name:?} has an empty or over-long label"));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    if out.len() - 12 > MAX_NAME_BYTES {
        return Err(format!("{name:?} is longer than {MAX_NAME_BYTES} bytes"));
    }
    out.extend_from_slice(&qtype.code().to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(out)
}

pub fn set_id(packet: &mut [u8], id: u16) {
    if packet.len() >= 2 {
        packet[..2].copy_from_slice(&id.to_be_bytes());
    }
}

/// The id of a packet, if it is long enough to have one.
pub fn id_of(packet: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*packet.first()?, *packet.get(1)?]))
}

/// One SRV record: its port and target name (lower case, absolute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub port: u16,
    pub target: String,
}

/// What a response says, as far as the bench checks it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub id: u16,
    pub rcode: u8,
    pub truncated: bool,
    /// The question echoed back: name (lower case, absolute) and type.
    pub question: Option<(String, u16)>,
    /// A records of the answer section, with their owner names.
    pub a: Vec<(String, Ipv4Addr)>,
    pub srv: Vec<Srv>,
    /// A records of the additional section (the SRV targets' addresses), with owner names.
    pub additional_a: Vec<(String, Ipv4Addr)>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| format!("truncated packet (need {n} bytes at offset {})", self.pos))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A (possibly compressed) name, lower case with a trailing dot.
    fn name(&mut self) -> Result<String, String> {
        let mut name = String::new();
        let mut at = self.pos;
        // Where reading continues after the name: just past its first pointer, if any.
        let mut resume = None;
        let mut pointers = 0;
        loop {
            let len = *self
                .buf
                .get(at)
                .ok_or_else(|| format!("name runs past the packet at offset {at}"))?;
            match len & 0xc0 {
                0x00 if len == 0 => {
                    at += 1;
                    break;
                }
                0x00 => {
                    let label = self
                        .buf
                        .get(at + 1..at + 1 + usize::from(len))
                        .ok_or_else(|| format!("label runs past the packet at offset {at}"))?;
                    name.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
                    name.push('.');
                    if name.len() > MAX_NAME_BYTES {
                        return Err(format!("name longer than {MAX_NAME_BYTES} bytes"));
                    }
                    at += 1 + usize::from(len);
                }
                0xc0 => {
                    let low = *self
                        .buf
                        .get(at + 1)
                        .ok_or_else(|| "compression pointer cut short".to_string())?;
                    let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                    pointers += 1;
                    if target >= at || pointers > MAX_POINTERS {
                        return Err(format!("bad compression pointer at offset {at}"));
                    }
                    resume.get_or_insert(at + 2);
                    at = target;
                }
                _ => return Err(format!("unknown label type {len:#x} at offset {at}")),
            }
        }
        if name.is_empty() {
            name.push('.');
        }
        self.pos = resume.unwrap_or(at);
        Ok(name)
    }
}

/// Parses a response: header, the question, the answer and additional sections (A and SRV
/// records; others are skipped).
pub fn parse(packet: &[u8]) -> Result<Response, String> {
    let mut r = Reader {
        buf: packet,
        pos: 0,
    };
    let id = r.u16()?;
    let flags = r.u16()?;
    if flags & 0x8000 == 0 {
        return Err("not a response (QR bit clear)".into());
    }
    let qdcount = r.u16()?;
    let ancount = usize::from(r.u16()?);
    let nscount = usize::from(r.u16()?);
    let arcount = usize::from(r.u16()?);
    if ancount + nscount + arcount > MAX_RECORDS {
        return Err(format!(
            "{} records in one answer (more than {MAX_RECORDS})",
            ancount + nscount + arcount
        ));
    }
    let mut response = Response {
        id,
        rcode: (flags & 0x000f) as u8,
        truncated: flags & 0x0200 != 0,
        ..Response::default()
    };
    for _ in 0..qdcount.min(1) {
        let name = r.name()?;
        let qtype = r.u16()?;
        let _class = r.u16()?;
        response.question = Some((name, qtype));
    }
    if qdcount > 1 {
        return Err(format!("{qdcount} questions in a response to one"));
    }
    for section in 0..3 {
        let count = [ancount, nscount, arcount][section];
        for _ in 0..count {
            let owner = r.name()?;
            let rtype = r.u16()?;
            let class = r.u16()?;
            let _ttl = r.u32()?;
            let rdlength = usize::from(r.u16()?);
            let rdata_start = r.pos;
            match (section, rtype, class) {
                (0 | 2, TYPE_A, CLASS_IN) => {
                    let b = r.bytes(rdlength)?;
                    let [a, b2, c, d] = <[u8; 4]>::try_from(b)
                        .map_err(|_| format!("A record of {rdlength} bytes"))?;
                    let addr = Ipv4Addr::new(a, b2, c, d);
                    if section == 0 {
                        response.a.push((owner, addr));
                    } else {
                        response.additional_a.push((owner, addr));
                    }
                }
                (0, TYPE_SRV, CLASS_IN) => {
                    let _priority = r.u16()?;
                    let _weight = r.u16()?;
                    let port = r.u16()?;
                    let target = r.name()?;
                    if r.pos != rdata_start + rdlength {
                        return Err("SRV record length does not match its data".into());
                    }
                    response.srv.push(Srv { port, target });
                }
                _ => {
                    r.bytes(rdlength)?;
                }
            }
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response to `query` with one A record (owner compressed to the question) and one SRV
    /// record whose target is a fresh name, plus the target's A in the additional section.
    fn sample(query: &[u8]) -> Vec<u8> {
        let mut p = query.to_vec();
        p[2] |= 0x80; // QR
        p[7] = 2; // ANCOUNT
        p[11] = 1; // ARCOUNT
        p.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 7]);
        let target = [2, b'i', b'0', 0xc0, 12];
        p.extend_from_slice(&[0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 5]);
        p.extend_from_slice(&(6 + target.len() as u16).to_be_bytes());
        p.extend_from_slice(&[0, 1, 0, 1, 0x4e, 0x20]);
        let target_at = p.len() as u8;
        p.extend_from_slice(&target);
        p.extend_from_slice(&[0xc0, target_at, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 8]);
        p
    }

    #[test]
    fn a_query_is_what_dig_sends_and_a_response_parses_with_compression() {
        let mut q = query("Web.service.noded.", QType::Srv).unwrap();
        set_id(&mut q, 0xbeef);
        assert_eq!(&q[..4], &[0xbe, 0xef, 0x01, 0x00]);
        assert_eq!(&q[q.len() - 4..], &[0, 33, 0, 1]);
        let r = parse(&sample(&q)).unwrap();
        assert_eq!(r.id, 0xbeef);
        assert_eq!(r.rcode, 0);
        assert_eq!(r.question, Some(("web.service.noded.".to_string(), 33)));
        assert_eq!(
            r.a,
            vec![("web.service.noded.".to_string(), Ipv4Addr::new(10, 0, 0, 7))]
        );
        assert_eq!(
            r.srv,
            vec![Srv {
                port: 20000,
                target: "i0.web.service.noded.".into()
            }]
        );
        assert_eq!(
            r.additional_a,
            vec![(
                "i0.web.service.noded.".to_string(),
                Ipv4Addr::new(10, 0, 0, 8)
            )]
        );
    }

    #[test]
    fn broken_packets_are_errors_not_panics() {
        let q = query("web.service.noded", QType::A).unwrap();
        let good = sample(&q);
        // Every truncation of a good response fails cleanly.
        for len in 0..good.len() {
            assert!(parse(&good[..len]).is_err(), "a {len}-byte prefix parsed");
        }
        // A pointer to itself (a loop) and a pointer forwards are refused.
        let mut looped = good.clone();
        let at = q.len();
        looped[at + 1] = at as u8;
        assert!(parse(&looped).is_err());
        // A query (QR clear) is not a response.
        assert!(parse(&q).is_err());
        assert!(query("a..b", QType::A).is_err());
        assert!(query(&"x".repeat(64), QType::A).is_err());
    }
}
