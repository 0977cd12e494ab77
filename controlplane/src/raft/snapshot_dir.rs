//! Snapshot files in `<data_dir>/server/snapshots/`.
//!
//! A snapshot file is [`SNAPSHOT_MAGIC`], one layout byte ([`SNAPSHOT_FILE_FORMAT`]), then a
//! [`codec`](super::codec) value holding `{ meta, state }`: openraft's snapshot metadata (last log
//! id, membership, snapshot id) and the state's own versioned form
//! ([`SnapshotFile`](crate::state::SnapshotFile)). The same bytes are what a snapshot handle
//! gives openraft to send to a peer.
//!
//! Files are written atomically: a temporary file is written and fsynced, renamed into place,
//! and the directory fsynced; a crash leaves either the old set of snapshots or the new one, plus
//! perhaps a temporary file that the next start removes. The newest [`KEEP_SNAPSHOTS`] are kept.
//! Names sort by last log index, so the newest is the last name.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::codec;
use super::error::StoreError;
use super::SnapshotMeta;
use crate::state::{SnapshotFile, State};

/// The directory under `<data_dir>/server/` that holds snapshots.
pub const SNAPSHOT_DIR: &str = "snapshots";
/// The first bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"NODEDSNP";
/// The layout of what follows the magic: bumped if the `{ meta, state }` envelope changes.
pub const SNAPSHOT_FILE_FORMAT: u8 = 1;
/// How many snapshot files are kept (the newest, and one before it in case the newest is
/// damaged and the log behind the older one is still there).
pub const KEEP_SNAPSHOTS: usize = 2;

const FILE_PREFIX: &str = "snapshot-";
const FILE_SUFFIX: &str = ".snap";
const TEMP_PREFIX: &str = ".tmp-";
/// The longest part of a peer-chosen snapshot id that goes into a file name.
const MAX_ID_IN_NAME: usize = 64;

#[derive(Serialize)]
struct EnvelopeRef<'a> {
    meta: &'a SnapshotMeta,
    state: &'a SnapshotFile,
}

#[derive(Deserialize)]
struct Envelope {
    meta: SnapshotMeta,
    state: SnapshotFile,
}

/// A snapshot read back from bytes: its metadata and the state rebuilt from it.
#[derive(Debug)]
pub(crate) struct DecodedSnapshot {
    pub meta: SnapshotMeta,
    pub state: State,
}

/// A snapshot loaded at start.
#[derive(Debug)]
pub(crate) struct LoadedSnapshot {
    pub snapshot: DecodedSnapshot,
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
struct Current {
    meta: SnapshotMeta,
    path: PathBuf,
}

/// The snapshot directory and which file in it is current.
#[derive(Debug)]
pub(crate) struct SnapshotDir {
    dir: PathBuf,
    /// Guards the current snapshot and every change to the set of files, so that a reader never
    /// opens a file that pruning is about to remove.
    current: Mutex<Option<Current>>,
    temp_seq: AtomicU64,
}

impl SnapshotDir {
    /// Opens the directory (creating it), removes temporary files a crash left behind and loads
    /// the newest snapshot, if there is one. Blocking.
    pub(crate) fn open(dir: PathBuf) -> Result<(SnapshotDir, Option<LoadedSnapshot>), StoreError> {
        fs::create_dir_all(&dir).map_err(|source| StoreError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let snapshot_dir = SnapshotDir {
            dir,
            current: Mutex::new(None),
            temp_seq: AtomicU64::new(0),
        };
        snapshot_dir.remove_temporary_files()?;
        let files = snapshot_dir.list()?;
        let Some(newest) = files.last() else {
            return Ok((snapshot_dir, None));
        };
        let older = match files.len() {
            0 | 1 => String::new(),
            n => format!(
                ". An older snapshot {} is kept beside it: moving the damaged file aside lets \
                 the server start from the older one, if the log after it has not been purged",
                files[n - 2].display()
            ),
        };
        let corrupt = |reason: String| StoreError::SnapshotCorrupt {
            path: newest.clone(),
            reason,
            older: older.clone(),
        };
        let bytes = fs::read(newest).map_err(|e| corrupt(format!("cannot read it: {e}")))?;
        let decoded = decode_snapshot(&bytes).map_err(corrupt)?;
        snapshot_dir.set_current(Current {
            meta: decoded.meta.clone(),
            path: newest.clone(),
        });
        Ok((
            snapshot_dir,
            Some(LoadedSnapshot {
                snapshot: decoded,
                path: newest.clone(),
            }),
        ))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes a snapshot built from local state, makes it current and prunes old ones. Blocking.
    pub(crate) fn write_state(
        &self,
        meta: &SnapshotMeta,
        state: &SnapshotFile,
    ) -> Result<PathBuf, StoreError> {
        self.write_atomically(meta, |writer| encode_snapshot_file(writer, meta, state))
    }

    /// Writes the bytes of a snapshot received from a peer (already validated), makes it current
    /// and prunes old ones. Blocking.
    pub(crate) fn write_received(
        &self,
        meta: &SnapshotMeta,
        bytes: &[u8],
    ) -> Result<PathBuf, StoreError> {
        let body = bytes.get(SNAPSHOT_MAGIC.len() + 1..).unwrap_or_default();
        self.write_atomically(meta, |writer| {
            writer.write_all(SNAPSHOT_MAGIC)?;
            writer.write_all(&[SNAPSHOT_FILE_FORMAT])?;
            writer.write_all(body)
        })
    }

    /// Opens the current snapshot for reading. Blocking.
    pub(crate) fn open_current(&self) -> Result<Option<(SnapshotMeta, File)>, StoreError> {
        let guard = match self.current.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let Some(current) = guard.as_ref() else {
            return Ok(None);
        };
        let file = File::open(&current.path)
            .map_err(|e| StoreError::snapshot_io(&current.path, "open", e))?;
        Ok(Some((current.meta.clone(), file)))
    }

    /// A scratch file to receive a snapshot into. It is unlinked at once: it needs no cleanup,
    /// and what is kept is written by [`SnapshotDir::write_received`] after validation. Blocking.
    pub(crate) fn receive_file(&self) -> Result<File, StoreError> {
        let seq = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{TEMP_PREFIX}receive-{seq}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| StoreError::snapshot_io(&path, "create", e))?;
        fs::remove_file(&path).map_err(|e| StoreError::snapshot_io(&path, "unlink", e))?;
        Ok(file)
    }

    fn write_atomically(
        &self,
        meta: &SnapshotMeta,
        write_file: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
    ) -> Result<PathBuf, StoreError> {
        let name = file_name(meta);
        let final_path = self.dir.join(&name);
        let seq = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        let temp_path = self.dir.join(format!("{TEMP_PREFIX}{seq}-{name}"));
        let result = (|| {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&temp_path)
                .map_err(|e| StoreError::snapshot_io(&temp_path, "create", e))?;
            let mut writer = BufWriter::with_capacity(1 << 20, file);
            write_file(&mut writer).map_err(|e| StoreError::snapshot_io(&temp_path, "write", e))?;
            let file = writer
                .into_inner()
                .map_err(|e| StoreError::snapshot_io(&temp_path, "write", e.into_error()))?;
            file.sync_all()
                .map_err(|e| StoreError::snapshot_io(&temp_path, "fsync", e))?;
            drop(file);
            fs::rename(&temp_path, &final_path)
                .map_err(|e| StoreError::snapshot_io(&final_path, "rename into place", e))?;
            sync_dir(&self.dir)
        })();
        if result.is_err() {
            // Best effort: a leftover temporary file is also removed at the next start.
            let _ = fs::remove_file(&temp_path);
        }
        result?;
        self.set_current(Current {
            meta: meta.clone(),
            path: final_path.clone(),
        });
        self.prune()?;
        Ok(final_path)
    }

    fn set_current(&self, current: Current) {
        let mut guard = match self.current.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Some(current);
    }

    /// Removes all but the newest [`KEEP_SNAPSHOTS`] files, never the current one.
    fn prune(&self) -> Result<(), StoreError> {
        let guard = match self.current.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let files = self.list()?;
        let doomed = files.len().saturating_sub(KEEP_SNAPSHOTS);
        let mut removed = false;
        for path in files.iter().take(doomed) {
            if guard.as_ref().is_some_and(|c| &c.path == path) {
                continue;
            }
            fs::remove_file(path).map_err(|e| StoreError::snapshot_io(path, "remove", e))?;
            removed = true;
        }
        drop(guard);
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Snapshot files, oldest first.
    fn list(&self) -> Result<Vec<PathBuf>, StoreError> {
        let entries =
            fs::read_dir(&self.dir).map_err(|e| StoreError::snapshot_io(&self.dir, "list", e))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::snapshot_io(&self.dir, "list", e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(FILE_PREFIX) && name.ends_with(FILE_SUFFIX) {
                files.push(entry.path());
            }
        }
        files.sort();
        Ok(files)
    }

    fn remove_temporary_files(&self) -> Result<(), StoreError> {
        let entries =
            fs::read_dir(&self.dir).map_err(|e| StoreError::snapshot_io(&self.dir, "list", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::snapshot_io(&self.dir, "list", e))?;
            let is_temp = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(TEMP_PREFIX));
            if is_temp {
                let path = entry.path();
                fs::remove_file(&path)
                    .map_err(|e| StoreError::snapshot_io(&path, "remove leftover", e))?;
            }
        }
        Ok(())
    }
}

/// `snapshot-<last index, 20 digits>-<snapshot id>.snap`: sorts by last log index.
fn file_name(meta: &SnapshotMeta) -> String {
    let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
    let id: String = meta
        .snapshot_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_ID_IN_NAME)
        .collect();
    format!("{FILE_PREFIX}{index:020}-{id}{FILE_SUFFIX}")
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::snapshot_io(dir, "fsync directory", e))
}

/// What follows the header: the codec-encoded `{ meta, state }`.
fn encode_body<W: Write>(
    writer: W,
    meta: &SnapshotMeta,
    state: &SnapshotFile,
) -> std::io::Result<()> {
    codec::encode_into(writer, &EnvelopeRef { meta, state })
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Writes a whole snapshot file (magic, layout byte, body) exactly as the snapshot directory
/// stores it and a peer receives it. The golden fixtures pin this format with it.
pub fn encode_snapshot_file<W: Write>(
    mut writer: W,
    meta: &SnapshotMeta,
    state: &SnapshotFile,
) -> std::io::Result<()> {
    writer.write_all(SNAPSHOT_MAGIC)?;
    writer.write_all(&[SNAPSHOT_FILE_FORMAT])?;
    encode_body(writer, meta, state)
}

/// Why the bytes of a snapshot file could not be read, in words for an operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SnapshotDecodeError(pub String);

/// Reads the bytes of a snapshot file back into its metadata and state, checking the header,
/// the layout byte and that both agree on the last index: what the server does at start and
/// when a peer sends a snapshot, short of rebuilding the in-memory indexes.
pub fn decode_snapshot_file(
    bytes: &[u8],
) -> Result<(SnapshotMeta, SnapshotFile), SnapshotDecodeError> {
    let envelope = decode_envelope(bytes).map_err(SnapshotDecodeError)?;
    Ok((envelope.meta, envelope.state))
}

fn decode_envelope(bytes: &[u8]) -> Result<Envelope, String> {
    let header_len = SNAPSHOT_MAGIC.len() + 1;
    if bytes.len() < header_len || !bytes.starts_with(SNAPSHOT_MAGIC) {
        return Err(format!(
            "it does not start with the noded snapshot header {:?} ({} bytes long): it is not a \
             snapshot, or it is damaged",
            String::from_utf8_lossy(SNAPSHOT_MAGIC),
            bytes.len()
        ));
    }
    let layout = bytes[SNAPSHOT_MAGIC.len()];
    if layout != SNAPSHOT_FILE_FORMAT {
        return Err(format!(
            "it has snapshot file format {layout}, this build reads format \
             {SNAPSHOT_FILE_FORMAT}; it was probably written by a newer noded"
        ));
    }
    let envelope: Envelope = codec::decode(&bytes[header_len..])
        .map_err(|e| format!("its body cannot be decoded: {e}"))?;
    let expected_index = envelope.meta.last_log_id.map(|l| l.index).unwrap_or(0);
    if envelope.state.latest_index != expected_index {
        return Err(format!(
            "its state is at index {} but its metadata says index {expected_index}",
            envelope.state.latest_index
        ));
    }
    Ok(envelope)
}

/// Parses snapshot bytes and rebuilds the state they hold. The error says what is wrong, in
/// words for an operator.
pub(crate) fn decode_snapshot(bytes: &[u8]) -> Result<DecodedSnapshot, String> {
    let envelope = decode_envelope(bytes)?;
    let state = State::from_snapshot(envelope.state).map_err(|e| format!("its state: {e}"))?;
    Ok(DecodedSnapshot {
        meta: envelope.meta,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(index: u64, id: &str) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(1, 1),
                index,
            )),
            last_membership: Default::default(),
            snapshot_id: id.to_string(),
        }
    }

    fn state_at(index: u64) -> SnapshotFile {
        let mut file = State::default().to_snapshot();
        file.latest_index = index;
        file
    }

    #[test]
    fn file_names_sort_by_index_and_keep_peer_ids_harmless() {
        assert!(file_name(&meta(9, "a")) < file_name(&meta(10, "a")));
        let name = file_name(&meta(3, "../../etc/passwd"));
        assert!(!name.contains('/'), "{name}");
        assert!(name.starts_with("snapshot-00000000000000000003-"), "{name}");
    }

    #[test]
    fn only_the_newest_two_are_kept_and_the_newest_is_current() {
        let dir = tempfile::tempdir().unwrap();
        let (snapshots, loaded) = SnapshotDir::open(dir.path().join("s")).unwrap();
        assert!(loaded.is_none());
        for index in [5, 9, 14] {
            snapshots
                .write_state(&meta(index, &format!("id{index}")), &state_at(index))
                .unwrap();
        }
        let names = snapshots.list().unwrap();
        assert_eq!(names.len(), KEEP_SNAPSHOTS);
        let (current, _) = snapshots.open_current().unwrap().unwrap();
        assert_eq!(current.last_log_id.unwrap().index, 14);

        let (_, loaded) = SnapshotDir::open(dir.path().join("s")).unwrap();
        let loaded = loaded.unwrap();
        assert_eq!(loaded.snapshot.meta.snapshot_id, "id14");
        assert_eq!(loaded.snapshot.state.latest_index(), 14);
    }

    #[test]
    fn leftover_temporary_files_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        fs::create_dir_all(&path).unwrap();
        fs::write(path.join(".tmp-7-snapshot-x.snap"), b"half written").unwrap();
        let (_snapshots, loaded) = SnapshotDir::open(path.clone()).unwrap();
        assert!(loaded.is_none());
        assert_eq!(fs::read_dir(&path).unwrap().count(), 0);
    }

    #[test]
    fn damaged_bytes_are_described_not_panicked_on() {
        let dir = tempfile::tempdir().unwrap();
        let (snapshots, _) = SnapshotDir::open(dir.path().to_path_buf()).unwrap();
        let path = snapshots.write_state(&meta(4, "x"), &state_at(4)).unwrap();
        let good = fs::read(&path).unwrap();
        assert!(decode_snapshot(&good).is_ok());

        let err = decode_snapshot(b"garbage").unwrap_err();
        assert!(err.contains("header"), "{err}");

        let mut newer = good.clone();
        newer[SNAPSHOT_MAGIC.len()] = 2;
        let err = decode_snapshot(&newer).unwrap_err();
        assert!(err.contains("format 2"), "{err}");

        let truncated = &good[..good.len() - 10];
        let err = decode_snapshot(truncated).unwrap_err();
        assert!(err.contains("cannot be decoded"), "{err}");

        let mismatched = {
            let dir2 = tempfile::tempdir().unwrap();
            let (other, _) = SnapshotDir::open(dir2.path().to_path_buf()).unwrap();
            let p = other.write_state(&meta(4, "y"), &state_at(3)).unwrap();
            fs::read(p).unwrap()
        };
        let err = decode_snapshot(&mismatched).unwrap_err();
        assert!(err.contains("index 3"), "{err}");
    }
}
