//! The operator's snapshot archive (`noded operator snapshot save|restore|inspect`,
//! `GET/PUT /v1/operator/snapshot`): the state's versioned [`SnapshotFile`] framed so that a
//! damaged or foreign file is recognised before anything is changed.
//!
//! Layout (integers big-endian):
//!
//! ```text
//! "NODEDSNP"            8 bytes, the magic
//! archive version       u32 (ARCHIVE_VERSION)
//! meta length           u32, at most MAX_META_BYTES
//! meta                  JSON ArchiveMeta (id, index, term, counts: what `inspect` prints)
//! state length          u64
//! state                 JSON SnapshotFile (the same body Raft snapshots use)
//! checksum              32 bytes, SHA-256 of everything before it
//! ```
//!
//! Reading checks, in order, the magic, the version, the lengths against the bytes present
//! (truncation), the checksum, then decodes; each failure names what is wrong.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{SnapshotFile, State};

/// The first bytes of every archive.
pub const ARCHIVE_MAGIC: &[u8; 8] = b"NODEDSNP";
/// Bumped when the framing changes; readers refuse archives newer than they know.
pub const ARCHIVE_VERSION: u32 = 1;
/// Largest metadata block accepted (it holds a few numbers).
pub const MAX_META_BYTES: u32 = 64 * 1024;
const CHECKSUM_BYTES: usize = 32;
/// Magic, version, meta length.
const PREFIX_BYTES: usize = 8 + 4 + 4;

/// What an archive says about itself, readable without decoding the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ArchiveMeta {
    /// `<term>-<index>-<unix millis>`, as Nomad names its snapshots.
    #[serde(rename = "ID")]
    pub id: String,
    /// The Raft index of the state saved.
    pub index: u64,
    /// The Raft term of the server that saved it (0 when unknown).
    pub term: u64,
    /// When it was saved, Unix nanoseconds.
    pub created: i64,
    /// The state's [`SnapshotFile`] format version.
    pub version: u32,
    pub jobs: usize,
    pub allocs: usize,
    pub nodes: usize,
    pub evals: usize,
}

/// A verified archive.
#[derive(Debug, Clone, PartialEq)]
pub struct Archive {
    pub meta: ArchiveMeta,
    pub state: SnapshotFile,
    /// The SHA-256 checksum, lower-case hex.
    pub checksum: String,
    /// The archive's length in bytes.
    pub size: usize,
}

/// Why an archive was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    #[error("snapshot is {len} bytes, too short to be a noded snapshot archive (at least {min})")]
    TooShort { len: usize, min: usize },
    #[error("snapshot does not start with noded's magic {:?}: not a noded snapshot archive (or not one made by `noded operator snapshot save`)", String::from_utf8_lossy(ARCHIVE_MAGIC))]
    BadMagic,
    #[error("snapshot archive version {found} was written by a newer noded; this build reads version {ARCHIVE_VERSION}: restore it with a newer noded")]
    NewerVersion { found: u32 },
    #[error("snapshot archive version {found} is not valid (versions start at 1)")]
    BadVersion { found: u32 },
    #[error("snapshot metadata claims {len} bytes, more than the limit of {MAX_META_BYTES}: the file is damaged")]
    MetaTooLarge { len: u32 },
    #[error(
        "snapshot is truncated: its header promises {expected} bytes but the file has {actual}"
    )]
    Truncated { expected: u64, actual: u64 },
    #[error("snapshot has {extra} bytes after its checksum: the file is damaged or two files were joined")]
    TrailingBytes { extra: u64 },
    #[error("snapshot checksum mismatch: the file says sha256:{expected} but its contents hash to sha256:{actual}; the file is damaged")]
    ChecksumMismatch { expected: String, actual: String },
    #[error("snapshot metadata is not readable: {0}")]
    Meta(String),
    #[error("snapshot state is not readable: {0}")]
    Body(String),
    #[error("encoding the snapshot: {0}")]
    Encode(String),
}

/// Frames `state` as an archive; `term` is the saving server's Raft term (0 if unknown),
/// `now` the time of saving in Unix nanoseconds.
pub fn write_archive(state: &State, term: u64, now: i64) -> Result<Vec<u8>, ArchiveError> {
    let file = state.to_snapshot();
    let meta = ArchiveMeta {
        id: format!("{term}-{}-{}", file.latest_index, now / 1_000_000),
        index: file.latest_index,
        term,
        created: now,
        version: file.format_version,
        jobs: file.jobs.len(),
        allocs: file.allocs.len(),
        nodes: file.nodes.len(),
        evals: file.evals.len(),
    };
    let meta = serde_json::to_vec(&meta).map_err(|e| ArchiveError::Encode(e.to_string()))?;
    let body = serde_json::to_vec(&file).map_err(|e| ArchiveError::Encode(e.to_string()))?;
    let meta_len = u32::try_from(meta.len())
        .ok()
        .filter(|l| *l <= MAX_META_BYTES)
        .ok_or_else(|| ArchiveError::Encode("metadata too large".to_string()))?;
    let mut out = Vec::with_capacity(PREFIX_BYTES + meta.len() + 8 + body.len() + 32);
    out.extend_from_slice(ARCHIVE_MAGIC);
    out.extend_from_slice(&ARCHIVE_VERSION.to_be_bytes());
    out.extend_from_slice(&meta_len.to_be_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    out.extend_from_slice(&body);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

/// Verifies and decodes an archive: magic, version, lengths, checksum, then the contents.
/// Nothing is trusted before the checksum matched.
pub fn read_archive(bytes: &[u8]) -> Result<Archive, ArchiveError> {
    let min = PREFIX_BYTES + 8 + CHECKSUM_BYTES;
    if bytes.len() < ARCHIVE_MAGIC.len() || &bytes[..ARCHIVE_MAGIC.len()] != ARCHIVE_MAGIC {
        return Err(
            if bytes.len() < ARCHIVE_MAGIC.len() && ARCHIVE_MAGIC.starts_with(bytes) {
                ArchiveError::TooShort {
                    len: bytes.len(),
                    min,
                }
            } else {
                ArchiveError::BadMagic
            },
        );
    }
    if bytes.len() < min {
        return Err(ArchiveError::TooShort {
            len: bytes.len(),
            min,
        });
    }
    let version = be_u32(&bytes[8..12]);
    if version == 0 {
        return Err(ArchiveError::BadVersion { found: version });
    }
    if version > ARCHIVE_VERSION {
        return Err(ArchiveError::NewerVersion { found: version });
    }
    let meta_len = be_u32(&bytes[12..16]);
    if meta_len > MAX_META_BYTES {
        return Err(ArchiveError::MetaTooLarge { len: meta_len });
    }
    let actual = bytes.len() as u64;
    let meta_end = PREFIX_BYTES as u64 + u64::from(meta_len);
    // The state's length field, then at least the checksum, must follow the metadata.
    if meta_end + 8 + CHECKSUM_BYTES as u64 > actual {
        return Err(ArchiveError::Truncated {
            expected: meta_end + 8 + CHECKSUM_BYTES as u64,
            actual,
        });
    }
    let meta_end = meta_end as usize;
    let body_len = be_u64(&bytes[meta_end..meta_end + 8]);
    let expected = (meta_end as u64 + 8)
        .checked_add(body_len)
        .and_then(|n| n.checked_add(CHECKSUM_BYTES as u64))
        .ok_or(ArchiveError::Truncated {
            expected: u64::MAX,
            actual,
        })?;
    if expected > actual {
        return Err(ArchiveError::Truncated { expected, actual });
    }
    if expected < actual {
        return Err(ArchiveError::TrailingBytes {
            extra: actual - expected,
        });
    }
    let summed = bytes.len() - CHECKSUM_BYTES;
    let computed = hex(&Sha256::digest(&bytes[..summed]));
    let stored = hex(&bytes[summed..]);
    if computed != stored {
        return Err(ArchiveError::ChecksumMismatch {
            expected: stored,
            actual: computed,
        });
    }
    let meta: ArchiveMeta = serde_json::from_slice(&bytes[PREFIX_BYTES..meta_end])
        .map_err(|e| ArchiveError::Meta(e.to_string()))?;
    let state: SnapshotFile = serde_json::from_slice(&bytes[meta_end + 8..summed])
        .map_err(|e| ArchiveError::Body(e.to_string()))?;
    Ok(Archive {
        meta,
        state,
        checksum: computed,
        size: bytes.len(),
    })
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
