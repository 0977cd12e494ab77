//! The durable Raft log: `<data_dir>/server/raft.redb`.
//!
//! Two redb tables: `raft_log` maps a log index to an encoded entry, `raft_meta` holds the vote,
//! the committed log id, the last purged log id and the store's format. Values go through
//! [`codec`](super::codec), so each carries its own format byte.
//!
//! Durability: appends, truncations, purges and votes commit with redb's default durability
//! (`Immediate`: fsync before `commit` returns); openraft is told an append is flushed only after
//! that. The committed log id is written with `Durability::None`: redb makes it durable with the
//! next durable commit (the next append, at the latest at close). Losing it in a crash is safe
//! (Raft does not need the commit index to survive; it only saves replay work at start: a
//! restarted leader re-commits the rest), and it saves one fsync per proposal.
//!
//! redb calls block, so every call runs on tokio's blocking pool.

use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError, Vote,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Deserialize;

use super::codec;
use super::error::StoreError;
use super::{Entry, Liveness, LogId, StorageError, TypeConfig};

/// The file name of the log inside `<data_dir>/server/`.
pub const RAFT_DB_FILE: &str = "raft.redb";

/// Bumped when the layout of the tables changes (not the encoding of values: that is the codec's
/// format byte).
const STORE_FORMAT: u8 = 1;

const LOG_TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const KEY_STORE_FORMAT: &str = "store_format";
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";

/// The page cache redb may use for the log. The log is read at start and by replication; most
/// reads hit recent entries.
const CACHE_SIZE_BYTES: usize = 64 * 1024 * 1024;

/// The redb-backed log store. Cloning is cheap and shares the database (openraft's log reader is
/// such a clone).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    path: PathBuf,
    committed: CommitTracker,
}

/// The newest committed index the log store was told of, readable without the Raft core (for
/// stats). Shared by clones.
#[derive(Debug, Clone, Default)]
pub(crate) struct CommitTracker(Arc<AtomicU64>);

impl CommitTracker {
    /// The committed index, if any.
    pub(crate) fn get(&self) -> Option<u64> {
        // Stored as index + 1 so that 0 means "none" (index 0 is a real openraft index).
        self.0.load(Ordering::Acquire).checked_sub(1)
    }

    fn set(&self, committed: Option<&LogId>) {
        let value = committed.map(|c| c.index.saturating_add(1)).unwrap_or(0);
        self.0.store(value, Ordering::Release);
    }
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// An entry's log id, decoded without building the payload.
#[derive(Deserialize)]
struct EntryHead {
    log_id: LogId,
}

impl LogStore {
    /// Opens (or creates) the log at `path`. Blocking.
    pub fn open(path: &Path) -> Result<LogStore, StoreError> {
        // Checking on every open (not only after a crash) turns a file damaged outside redb into
        // an error instead of a panic; the log is kept short by purging, so the read is cheap.
        let db = redb::Builder::new()
            .set_cache_size(CACHE_SIZE_BYTES)
            .set_check_integrity_on_open(true)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                    path: path.to_path_buf(),
                },
                other => StoreError::Open {
                    path: path.to_path_buf(),
                    source: Box::new(other),
                },
            })?;
        let store = LogStore {
            inner: Arc::new(Inner {
                db,
                path: path.to_path_buf(),
                committed: CommitTracker::default(),
            }),
        };
        store.init_tables()?;
        let committed: Option<Option<LogId>> = store.read_meta(KEY_COMMITTED)?;
        store.note_committed(committed.flatten().as_ref());
        Ok(store)
    }

    /// Where the log lives.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The newest committed index this store has been told of (for stats).
    pub fn committed_index(&self) -> Option<u64> {
        self.inner.committed.get()
    }

    pub(crate) fn commit_tracker(&self) -> CommitTracker {
        self.inner.committed.clone()
    }

    /// Whether any clone of this store is still alive: lets a caller wait until the file is
    /// closed (and its lock released).
    pub(crate) fn liveness(&self) -> Liveness {
        Liveness::of(&self.inner)
    }

    fn note_committed(&self, committed: Option<&LogId>) {
        self.inner.committed.set(committed);
    }

    /// Creates the tables on a new file and checks the format of an existing one.
    fn init_tables(&self) -> Result<(), StoreError> {
        let path = &self.inner.path;
        let txn = self
            .inner
            .db
            .begin_write()
            .map_err(|e| StoreError::redb(path, "begin write transaction", e))?;
        {
            let mut meta = txn
                .open_table(META_TABLE)
                .map_err(|e| StoreError::redb(path, "open table raft_meta", e))?;
            let existing = meta
                .get(KEY_STORE_FORMAT)
                .map_err(|e| StoreError::redb(path, "read store format", e))?
                .map(|v| v.value().to_vec());
            match existing {
                None => {
                    meta.insert(KEY_STORE_FORMAT, [STORE_FORMAT].as_slice())
                        .map_err(|e| StoreError::redb(path, "write store format", e))?;
                }
                Some(found) if found.as_slice() == [STORE_FORMAT] => {}
                Some(found) => {
                    return Err(StoreError::StoreFormat {
                        path: path.clone(),
                        found: format!("{found:?}"),
                        expected: STORE_FORMAT,
                    })
                }
            }
            txn.open_table(LOG_TABLE)
                .map_err(|e| StoreError::redb(path, "open table raft_log", e))?;
        }
        txn.commit()
            .map_err(|e| StoreError::redb(path, "commit table creation", e))
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &'static str,
    ) -> Result<Option<T>, StoreError> {
        let path = &self.inner.path;
        let txn = self
            .inner
            .db
            .begin_read()
            .map_err(|e| StoreError::redb(path, "begin read transaction", e))?;
        let table = txn
            .open_table(META_TABLE)
            .map_err(|e| StoreError::redb(path, "open table raft_meta", e))?;
        let Some(raw) = table
            .get(key)
            .map_err(|e| StoreError::redb(path, "read raft_meta", e))?
        else {
            return Ok(None);
        };
        codec::decode(raw.value())
            .map(Some)
            .map_err(|source| StoreError::Decode {
                path: path.clone(),
                what: format!("raft_meta key {key:?}"),
                source,
            })
    }

    fn write_meta<T: serde::Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durability: Durability,
    ) -> Result<(), StoreError> {
        let path = &self.inner.path;
        let bytes = codec::encode(value).map_err(|source| StoreError::Encode {
            path: path.clone(),
            what: format!("raft_meta key {key:?}"),
            source,
        })?;
        let mut txn = self
            .inner
            .db
            .begin_write()
            .map_err(|e| StoreError::redb(path, "begin write transaction", e))?;
        txn.set_durability(durability)
            .map_err(|e| StoreError::redb(path, "set durability", redb::Error::from(e)))?;
        {
            let mut table = txn
                .open_table(META_TABLE)
                .map_err(|e| StoreError::redb(path, "open table raft_meta", e))?;
            table
                .insert(key, bytes.as_slice())
                .map_err(|e| StoreError::redb(path, "write raft_meta", e))?;
        }
        txn.commit()
            .map_err(|e| StoreError::redb(path, "commit raft_meta", e))
    }

    /// Entries with index in `[start, end)` (`end = None`: to the last one). Blocking.
    fn read_entries(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry>, StoreError> {
        let path = &self.inner.path;
        if end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        let txn = self
            .inner
            .db
            .begin_read()
            .map_err(|e| StoreError::redb(path, "begin read transaction", e))?;
        let table = txn
            .open_table(LOG_TABLE)
            .map_err(|e| StoreError::redb(path, "open table raft_log", e))?;
        let iter = match end {
            Some(end) => table.range(start..end),
            None => table.range(start..),
        }
        .map_err(|e| StoreError::redb(path, "read raft_log", e))?;
        let mut out = Vec::new();
        for item in iter {
            let (key, value) = item.map_err(|e| StoreError::redb(path, "read raft_log", e))?;
            let index = key.value();
            let entry: Entry =
                codec::decode(value.value()).map_err(|source| StoreError::Decode {
                    path: path.clone(),
                    what: format!("log entry {index}"),
                    source,
                })?;
            if entry.log_id.index != index {
                return Err(StoreError::Decode {
                    path: path.clone(),
                    what: format!("log entry {index}"),
                    source: codec::CodecError::Json(serde::de::Error::custom(format!(
                        "the entry stored under index {index} claims index {}",
                        entry.log_id.index
                    ))),
                });
            }
            out.push(entry);
        }
        Ok(out)
    }

    /// The last purged and last log ids. Blocking.
    pub(crate) fn log_state(&self) -> Result<LogState<TypeConfig>, StoreError> {
        let path = &self.inner.path;
        let last_purged: Option<LogId> = self.read_meta(KEY_LAST_PURGED)?;
        let txn = self
            .inner
            .db
            .begin_read()
            .map_err(|e| StoreError::redb(path, "begin read transaction", e))?;
        let table = txn
            .open_table(LOG_TABLE)
            .map_err(|e| StoreError::redb(path, "open table raft_log", e))?;
        let last = table
            .last()
            .map_err(|e| StoreError::redb(path, "read last log entry", e))?;
        let last_log_id = match last {
            Some((key, value)) => {
                let head: EntryHead =
                    codec::decode(value.value()).map_err(|source| StoreError::Decode {
                        path: path.clone(),
                        what: format!("log entry {}", key.value()),
                        source,
                    })?;
                Some(head.log_id)
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    fn append_entries(&self, entries: &[Entry]) -> Result<(), StoreError> {
        let path = &self.inner.path;
        let mut encoded = Vec::with_capacity(entries.len());
        for entry in entries {
            let bytes = codec::encode(entry).map_err(|source| StoreError::Encode {
                path: path.clone(),
                what: format!("log entry {}", entry.log_id.index),
                source,
            })?;
            encoded.push((entry.log_id.index, bytes));
        }
        let txn = self
            .inner
            .db
            .begin_write()
            .map_err(|e| StoreError::redb(path, "begin write transaction", e))?;
        {
            let mut table = txn
                .open_table(LOG_TABLE)
                .map_err(|e| StoreError::redb(path, "open table raft_log", e))?;
            for (index, bytes) in &encoded {
                table
                    .insert(*index, bytes.as_slice())
                    .map_err(|e| StoreError::redb(path, "append to raft_log", e))?;
            }
        }
        txn.commit()
            .map_err(|e| StoreError::redb(path, "commit appended entries", e))
    }

    /// Deletes entries with index `>= from`.
    fn truncate_from(&self, from: u64) -> Result<(), StoreError> {
        let path = &self.inner.path;
        let txn = self
            .inner
            .db
            .begin_write()
            .map_err(|e| StoreError::redb(path, "begin write transaction", e))?;
        {
            let mut table = txn
                .open_table(LOG_TABLE)
                .map_err(|e| StoreError::redb(path, "open table raft_log", e))?;
            table
                .retain_in(from.., |_, _| false)
                .map_err(|e| StoreError::redb(path, "truncate raft_log", e))?;
        }
        txn.commit()
            .map_err(|e| StoreError::redb(path, "commit truncation", e))
    }

    /// Records `upto` as purged and deletes entries with index `<= upto.index`, in one
    /// transaction so that the log state never shows a hole.
    fn purge_upto(&self, upto: &LogId) -> Result<(), StoreError> {
        let path = &self.inner.path;
        let bytes = codec::encode(upto).map_err(|source| StoreError::Encode {
            path: path.clone(),
            what: "last purged log id".to_string(),
            source,
        })?;
        let txn = self
            .inner
            .db
            .begin_write()
            .map_err(|e| StoreError::redb(path, "begin write transaction", e))?;
        {
            let mut meta = txn
                .open_table(META_TABLE)
                .map_err(|e| StoreError::redb(path, "open table raft_meta", e))?;
            meta.insert(KEY_LAST_PURGED, bytes.as_slice())
                .map_err(|e| StoreError::redb(path, "write last purged log id", e))?;
            let mut table = txn
                .open_table(LOG_TABLE)
                .map_err(|e| StoreError::redb(path, "open table raft_log", e))?;
            table
                .retain_in(..=upto.index, |_, _| false)
                .map_err(|e| StoreError::redb(path, "purge raft_log", e))?;
        }
        txn.commit()
            .map_err(|e| StoreError::redb(path, "commit purge", e))
    }

    /// Runs a blocking storage call on tokio's blocking pool.
    async fn blocking<T, F>(&self, what: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(LogStore) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(store))
            .await
            .map_err(|e| StoreError::Task {
                what,
                reason: e.to_string(),
            })?
    }
}

fn storage_error(subject: ErrorSubject<u64>, verb: ErrorVerb, e: StoreError) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

/// `[start, end)` of a range of indexes; `end = None` is unbounded.
fn index_bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.checked_add(1),
        Bound::Excluded(e) => Some(*e),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = index_bounds(&range);
        self.blocking("reading log entries", move |s| s.read_entries(start, end))
            .await
            .map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Read, e))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.blocking("reading the log state", |s| s.log_state())
            .await
            .map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Read, e))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        let vote = *vote;
        self.blocking("saving the vote", move |s| {
            s.write_meta(KEY_VOTE, &vote, Durability::Immediate)
        })
        .await
        .map_err(|e| storage_error(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        self.blocking("reading the vote", |s| s.read_meta(KEY_VOTE))
            .await
            .map_err(|e| storage_error(ErrorSubject::Vote, ErrorVerb::Read, e))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.blocking("saving the committed log id", move |s| {
            // Not durable on its own: see the module doc. The next durable commit (an append)
            // persists it.
            s.write_meta(KEY_COMMITTED, &committed, Durability::None)?;
            s.note_committed(committed.as_ref());
            Ok(())
        })
        .await
        .map_err(|e| storage_error(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.blocking("reading the committed log id", |s| {
            let committed: Option<Option<LogId>> = s.read_meta(KEY_COMMITTED)?;
            let committed = committed.flatten();
            s.note_committed(committed.as_ref());
            Ok(committed)
        })
        .await
        .map_err(|e| storage_error(ErrorSubject::Store, ErrorVerb::Read, e))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if entries.is_empty() {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        let result = self
            .blocking("appending log entries", move |s| s.append_entries(&entries))
            .await;
        match result {
            Ok(()) => {
                // The redb transaction is durable: only now may openraft count these entries.
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let message = e.to_string();
                callback.log_io_completed(Err(std::io::Error::other(message)));
                Err(storage_error(ErrorSubject::Logs, ErrorVerb::Write, e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking("truncating the log", move |s| s.truncate_from(log_id.index))
            .await
            .map_err(|e| storage_error(ErrorSubject::Log(log_id), ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking("purging the log", move |s| s.purge_upto(&log_id))
            .await
            .map_err(|e| storage_error(ErrorSubject::Log(log_id), ErrorVerb::Delete, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_bounds_cover_every_range_shape() {
        assert_eq!(index_bounds(&(3..7)), (3, Some(7)));
        assert_eq!(index_bounds(&(3..=7)), (3, Some(8)));
        assert_eq!(index_bounds(&(3..)), (3, None));
        assert_eq!(index_bounds(&(..7)), (0, Some(7)));
        assert_eq!(index_bounds(&(..)), (0, None));
        assert_eq!(index_bounds(&(5..=u64::MAX)), (5, None));
        assert_eq!(
            index_bounds(&(Bound::Excluded(4u64), Bound::Included(6u64))),
            (5, Some(7))
        );
    }

    #[test]
    fn a_second_open_of_the_same_file_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RAFT_DB_FILE);
        let _first = LogStore::open(&path).unwrap();
        let err = LogStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("another noded"), "{message}");
    }

    fn blank(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: openraft::EntryPayload::Blank,
        }
    }

    #[test]
    fn a_log_damaged_on_disk_is_an_error_naming_the_file_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RAFT_DB_FILE);
        {
            let store = LogStore::open(&path).unwrap();
            let entries: Vec<Entry> = (0..2000).map(blank).collect();
            store.append_entries(&entries).unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let len = bytes.len();
        for b in &mut bytes[len / 3..len / 3 + 8192] {
            *b ^= 0xA5;
        }
        std::fs::write(&path, &bytes).unwrap();
        let err = LogStore::open(&path).unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_redb_database_is_an_open_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RAFT_DB_FILE);
        std::fs::write(&path, b"this is not a database, just some bytes").unwrap();
        let err = LogStore::open(&path).unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}
