//! The Raft state machine: committed entries go to the [`StateStore`], in log order; snapshots
//! of it go to files.
//!
//! The state itself lives in memory; it is made durable by snapshot files plus the log behind
//! them. `last_applied` and the last membership are not written on every apply: on start they
//! come from the newest snapshot, and openraft replays the committed log after it.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::{RaftStateMachine, SnapshotSignature};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, Snapshot,
    StorageIOError,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::error::StoreError;
use super::snapshot_dir::{decode_snapshot, LoadedSnapshot, SnapshotDir};
use super::{Entry, Liveness, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::state::{CommandResponse, State, StateStore};

/// The state machine openraft drives.
#[derive(Debug)]
pub struct StateMachineStore {
    store: Arc<StateStore>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    snapshots: Arc<SnapshotDir>,
}

impl StateMachineStore {
    /// Opens the snapshot directory and, if it holds a snapshot, restores the newest one into
    /// `store`. `store` must be empty: it is filled from the snapshot here and from the log by
    /// openraft. Blocking.
    pub fn open(
        snapshot_dir: std::path::PathBuf,
        store: Arc<StateStore>,
    ) -> Result<StateMachineStore, StoreError> {
        let (snapshots, loaded) = SnapshotDir::open(snapshot_dir)?;
        let mut machine = StateMachineStore {
            store,
            last_applied: None,
            last_membership: StoredMembership::default(),
            snapshots: Arc::new(snapshots),
        };
        if let Some(LoadedSnapshot { snapshot, path }) = loaded {
            tracing::info!(
                path = %path.display(),
                last_log_id = ?snapshot.meta.last_log_id,
                "restoring state from snapshot"
            );
            machine.last_applied = snapshot.meta.last_log_id;
            machine.last_membership = snapshot.meta.last_membership.clone();
            machine.store.restore(snapshot.state);
        }
        Ok(machine)
    }

    /// The directory snapshots are written to.
    pub fn snapshot_dir(&self) -> &std::path::Path {
        self.snapshots.path()
    }

    /// Whether the snapshot directory is still used by anyone (this machine, or a snapshot being
    /// built in the background).
    pub(crate) fn snapshot_liveness(&self) -> Liveness {
        Liveness::of(&self.snapshots)
    }

    /// The last log id applied (from a snapshot or an entry).
    pub fn last_applied(&self) -> Option<LogId> {
        self.last_applied
    }

    /// The membership in effect at the last applied entry.
    pub fn last_membership(&self) -> &StoredMembership {
        &self.last_membership
    }
}

fn snapshot_error(
    signature: Option<SnapshotSignature<u64>>,
    verb: ErrorVerb,
    e: StoreError,
) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(signature), verb, AnyError::new(&e)).into()
}

async fn blocking<T, F>(what: &'static str, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task {
            what,
            reason: e.to_string(),
        })?
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries = entries.into_iter();
        let mut responses = Vec::with_capacity(entries.size_hint().0);
        for entry in entries {
            let index = entry.log_id.index;
            // openraft applies each committed entry once, in log order. Checked here, where
            // `last_applied` is written, and again in the state (`State::apply`), which keeps
            // its own index: a log applied twice or out of order must stop this server before
            // its state drifts from every other server's.
            assert!(
                self.last_applied.is_none_or(|last| index > last.index),
                "raft entry {} applied after {:?}",
                entry.log_id,
                self.last_applied
            );
            let response = match entry.payload {
                EntryPayload::Normal(command) => self.store.apply(index, &command),
                EntryPayload::Blank => {
                    self.store.note_index(index);
                    CommandResponse {
                        index,
                        ..Default::default()
                    }
                }
                EntryPayload::Membership(membership) => {
                    self.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    self.store.note_index(index);
                    CommandResponse {
                        index,
                        ..Default::default()
                    }
                }
            };
            self.last_applied = Some(entry.log_id);
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // Everything the snapshot holds is taken now, in the state machine's own task, so it is
        // consistent: `state` is a structurally shared copy at exactly `last_applied`.
        SnapshotBuilder {
            state: self.store.snapshot(),
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let snapshots = self.snapshots.clone();
        let file = blocking("creating a file to receive a snapshot", move || {
            snapshots.receive_file()
        })
        .await
        .map_err(|e| snapshot_error(None, ErrorVerb::Write, e))?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        mut snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        // openraft installs a snapshot only past what it has committed, hence past what was
        // applied: `last_applied` never goes back here either, checked before anything is
        // written (`StateStore::restore` checks the state's own index). The snapshot it already
        // has, installed again, changes nothing and is let through.
        assert!(
            meta.last_log_id.map(|l| l.index) >= self.last_applied.map(|l| l.index),
            "snapshot {meta} installed over a state already at {:?}",
            self.last_applied
        );
        let signature = Some(meta.signature());
        let io_error = |op: &'static str, e: std::io::Error| {
            snapshot_error(
                signature.clone(),
                ErrorVerb::Read,
                StoreError::SnapshotIo {
                    path: self.snapshots.path().to_path_buf(),
                    op,
                    source: e,
                },
            )
        };
        // The handle may have just been written to (a transfer): finish that, then read it all.
        snapshot
            .flush()
            .await
            .map_err(|e| io_error("flush received snapshot", e))?;
        snapshot
            .seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(|e| io_error("seek received snapshot", e))?;
        let mut bytes = Vec::new();
        snapshot
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| io_error("read received snapshot", e))?;
        drop(snapshot);

        let snapshots = self.snapshots.clone();
        let expected = meta.clone();
        let decoded = blocking("installing a snapshot", move || {
            let invalid = |reason: String| StoreError::SnapshotInvalid {
                snapshot_id: expected.snapshot_id.clone(),
                reason,
            };
            let decoded = decode_snapshot(&bytes).map_err(invalid)?;
            if decoded.meta != expected {
                return Err(invalid(format!(
                    "its metadata ({}) differs from the metadata it was sent with ({})",
                    decoded.meta, expected
                )));
            }
            // Durable first, then live: a crash in between restarts from this snapshot.
            snapshots.write_received(&expected, &bytes)?;
            Ok(decoded)
        })
        .await
        .map_err(|e| snapshot_error(signature.clone(), ErrorVerb::Write, e))?;

        tracing::info!(snapshot = %meta, "installed snapshot");
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        self.store.restore(decoded.state);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let snapshots = self.snapshots.clone();
        let current = blocking("opening the current snapshot", move || {
            snapshots.open_current()
        })
        .await
        .map_err(|e| snapshot_error(None, ErrorVerb::Read, e))?;
        Ok(current.map(|(meta, file)| Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        }))
    }
}

/// Builds a snapshot from a state captured when the builder was made.
#[derive(Debug)]
pub struct SnapshotBuilder {
    state: State,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    snapshots: Arc<SnapshotDir>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let unique = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let snapshot_id = match self.last_applied {
            Some(l) => format!(
                "{}-{}-{}-{unique}",
                l.leader_id.term, l.leader_id.node_id, l.index
            ),
            None => format!("empty-{unique}"),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id,
        };
        let state = self.state.clone();
        let snapshots = self.snapshots.clone();
        let write_meta = meta.clone();
        let file = blocking("building a snapshot", move || {
            let path = snapshots.write_state(&write_meta, &state.to_snapshot())?;
            std::fs::File::open(&path).map_err(|e| StoreError::snapshot_io(&path, "open", e))
        })
        .await
        .map_err(|e| snapshot_error(Some(meta.signature()), ErrorVerb::Write, e))?;
        tracing::info!(snapshot = %meta, "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        })
    }
}
