//! The wire format: every message on a fabric stream is one frame, a fixed 14-byte header
//! and then `len` body bytes.
//!
//! ```text
//!  0      4        6      7       8      10         14
//!  | magic | version | kind | flags | code | len (BE) | body …
//!  "NDFR"   major.minor u8     u8     u16     u32
//! ```
//!
//! `version` is the protocol version, major in the high byte: a peer refuses another major
//! version and accepts any minor one (minor versions only add what an older peer may
//! ignore, such as a flag bit). `code` is the method of a request or stream opening and the
//! error code of an error. Pure functions: this module does no I/O.

use std::fmt;

/// The first bytes of every frame ("noded frame").
pub const MAGIC: [u8; 4] = *b"NDFR";

/// This build's protocol version: 1.0.
pub const PROTOCOL_VERSION: u16 = 0x0100;

/// The size of the fixed header.
pub const HEADER_LEN: usize = 14;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A call; `code` is the method. The caller then finishes its side.
    Request = 1,
    /// A call's successful answer.
    Response = 2,
    /// A call's or stream's failure; `code` is the [`crate::fabric::ErrorCode`], the body
    /// its UTF-8 message.
    Error = 3,
    /// Opens a long-lived stream; `code` is the method.
    Open = 4,
    /// A message on an open stream.
    Data = 5,
}

impl FrameKind {
    fn from_u8(b: u8) -> Option<FrameKind> {
        Some(match b {
            1 => FrameKind::Request,
            2 => FrameKind::Response,
            3 => FrameKind::Error,
            4 => FrameKind::Open,
            5 => FrameKind::Data,
            _ => return None,
        })
    }
}

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub version: u16,
    pub kind: FrameKind,
    pub flags: u8,
    pub code: u16,
    pub len: u32,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame header truncated: {have} of {HEADER_LEN} bytes")]
    Truncated { have: usize },
    #[error("not a noded fabric frame: magic {found:02x?}, expected {MAGIC:02x?} (\"NDFR\")")]
    BadMagic { found: [u8; 4] },
    #[error(
        "peer speaks fabric protocol {}, this agent speaks {}; upgrade the older agent",
        Version(*.theirs), Version(PROTOCOL_VERSION)
    )]
    UnsupportedVersion { theirs: u16 },
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("message of {len} bytes is larger than the limit of {max} bytes (max_message_bytes)")]
    TooLarge { len: u64, max: usize },
}

/// Prints a protocol version as `major.minor`.
struct Version(u16);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 >> 8, self.0 & 0xff)
    }
}

impl FrameHeader {
    /// The header of a `len`-byte message, refused when it exceeds `max_message_bytes` (or a
    /// u32), so a sender never starts writing what the receiver would refuse.
    pub fn new(
        kind: FrameKind,
        code: u16,
        len: usize,
        max_message_bytes: usize,
    ) -> Result<FrameHeader, FrameError> {
        let too_large = FrameError::TooLarge {
            len: len as u64,
            max: max_message_bytes,
        };
        if len > max_message_bytes {
            return Err(too_large);
        }
        let len = u32::try_from(len).map_err(|_| too_large)?;
        Ok(FrameHeader {
            version: PROTOCOL_VERSION,
            kind,
            flags: 0,
            code,
            len,
        })
    }
}

/// The 14 header bytes.
pub fn encode_header(header: &FrameHeader) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[0..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&header.version.to_be_bytes());
    out[6] = header.kind as u8;
    out[7] = header.flags;
    out[8..10].copy_from_slice(&header.code.to_be_bytes());
    out[10..14].copy_from_slice(&header.len.to_be_bytes());
    out
}

/// Reads a header from the first [`HEADER_LEN`] bytes of `buf`, refusing a body longer than
/// `max_message_bytes` before anyone allocates for it.
pub fn decode_header(buf: &[u8], max_message_bytes: usize) -> Result<FrameHeader, FrameError> {
    let Some(bytes) = buf.get(..HEADER_LEN) else {
        return Err(FrameError::Truncated { have: buf.len() });
    };
    let mut magic = [0u8; 4];
    magic.copy_from_slice(&bytes[0..4]);
    if magic != MAGIC {
        return Err(FrameError::BadMagic { found: magic });
    }
    let version = u16::from_be_bytes([bytes[4], bytes[5]]);
    if version >> 8 != PROTOCOL_VERSION >> 8 {
        return Err(FrameError::UnsupportedVersion { theirs: version });
    }
    let kind = FrameKind::from_u8(bytes[6]).ok_or(FrameError::UnknownKind(bytes[6]))?;
    let len = u32::from_be_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]);
    if u64::from(len) > max_message_bytes as u64 {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            max: max_message_bytes,
        });
    }
    Ok(FrameHeader {
        version,
        kind,
        flags: bytes[7],
        code: u16::from_be_bytes([bytes[8], bytes[9]]),
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1024;

    /// The bytes on the wire are a contract with older and newer agents: this test changes
    /// only with the protocol version.
    #[test]
    fn golden_request_header() {
        let header = FrameHeader::new(FrameKind::Request, 1, 300, MAX).unwrap();
        let bytes = encode_header(&header);
        assert_eq!(
            bytes,
            [b'N', b'D', b'F', b'R', 0x01, 0x00, 1, 0, 0x00, 0x01, 0, 0, 0x01, 0x2c]
        );
        assert_eq!(decode_header(&bytes, MAX), Ok(header));
    }

    #[test]
    fn every_kind_round_trips() {
        for kind in [
            FrameKind::Request,
            FrameKind::Response,
            FrameKind::Error,
            FrameKind::Open,
            FrameKind::Data,
        ] {
            let header = FrameHeader::new(kind, 0xBEEF, MAX, MAX).unwrap();
            assert_eq!(decode_header(&encode_header(&header), MAX), Ok(header));
        }
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let good = encode_header(&FrameHeader::new(FrameKind::Data, 0, 10, MAX).unwrap());
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (vec![], FrameError::Truncated { have: 0 }),
            (good[..13].to_vec(), FrameError::Truncated { have: 13 }),
            (
                [b"HTTP".as_slice(), &good[4..]].concat(),
                FrameError::BadMagic { found: *b"HTTP" },
            ),
            (
                [&good[..4], &[0x02, 0x00], &good[6..]].concat(),
                FrameError::UnsupportedVersion { theirs: 0x0200 },
            ),
            (
                [&good[..6], &[9u8], &good[7..]].concat(),
                FrameError::UnknownKind(9),
            ),
            (
                [&good[..10], &[0xff, 0xff, 0xff, 0xff]].concat(),
                FrameError::TooLarge {
                    len: 0xffff_ffff,
                    max: MAX,
                },
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode_header(&bytes, MAX), Err(want));
        }
        let err = FrameError::UnsupportedVersion { theirs: 0x0203 }.to_string();
        assert!(err.contains("2.3") && err.contains("1.0"), "{err}");
        // A newer minor version is accepted.
        let minor = [&good[..4], &[0x01, 0x07], &good[6..]].concat();
        assert_eq!(decode_header(&minor, MAX).unwrap().version, 0x0107);
        assert_eq!(
            FrameHeader::new(FrameKind::Data, 0, MAX + 1, MAX),
            Err(FrameError::TooLarge {
                len: MAX as u64 + 1,
                max: MAX
            })
        );
    }

    /// Garbage of every length never panics and never yields a body over the limit: a
    /// deterministic pseudo-random walk over inputs, plus every truncation of a good header.
    #[test]
    fn garbage_never_panics() {
        let good = encode_header(&FrameHeader::new(FrameKind::Open, 7, 5, MAX).unwrap());
        for n in 0..=HEADER_LEN {
            let r = decode_header(&good[..n], MAX);
            assert_eq!(r.is_ok(), n == HEADER_LEN, "{n}: {r:?}");
        }
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for i in 0..20_000 {
            let len = (next() % 20) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Half the inputs start with the magic so the later checks are exercised too.
            if i % 2 == 0 && buf.len() >= HEADER_LEN {
                buf[..4].copy_from_slice(&MAGIC);
                buf[4] = 1;
                buf[6] = 1 + (next() % 6) as u8;
                buf[10] = 0;
                buf[11] = 0;
                buf[12] &= 0x07;
            }
            if let Ok(h) = decode_header(&buf, MAX) {
                assert!(h.len as usize <= MAX);
                assert_eq!(encode_header(&h)[..], buf[..HEADER_LEN]);
                accepted += 1;
            }
        }
        assert!(accepted > 0, "the walk never produced a valid header");
    }
}
