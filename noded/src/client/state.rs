//! The client's own durable state: `<state_dir>/client.db` (redb).
//!
//! What a node daemon needs to come back after a crash without asking anyone: per allocation
//! the [`Allocation`] as last received and what was last reported about it; per task its
//! handle in the supervisor (task id, pid, start time), what the runner was doing (about to
//! start it, running it, done with it), its last [`TaskState`] (restart count, events) and the
//! restart tracker's interval. Servers stay the source of truth for what *should* run; this
//! file is the source of truth for what this node *did*.
//!
//! Tables: `meta` (the schema version), `allocs` (alloc id → JSON [`AllocRecord`]), `tasks`
//! ((alloc id, task name) → JSON [`TaskRecord`]). Each write is its own small transaction
//! with redb's default durability (fsync before `commit` returns): a record written before
//! acting is on disk before the act. Values are JSON so that a field added later (with
//! `#[serde(default)]`) reads old records; a layout change bumps [`SCHEMA_VERSION`].
//!
//! A file that cannot be opened or read (damaged, or written by a newer schema) is moved aside
//! to `client.db.corrupt-<unix seconds>` and a fresh one is made: recovery then falls back to
//! what the supervisor and the allocation directories say (see [`super::recovery`]).
//!
//! Calls block (fsync): call them off the async runtime (`spawn_blocking`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use controlplane::model::{AllocDeploymentStatus, Allocation, ClientStatus, TaskState};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::client::network::record::AllocNetwork;

/// The file name of the client state inside the client's state dir.
pub const CLIENT_DB_FILE: &str = "client.db";

/// Bumped when the tables' layout or a record's meaning changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const ALLOCS_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("allocs");
const TASKS_TABLE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("tasks");
const KEY_SCHEMA_VERSION: &str = "schema_version";

/// redb's page cache for this small file.
const CACHE_SIZE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("client state {path}: another node daemon has it open (is one already running on this data dir?)")]
    Locked { path: PathBuf },
    #[error("client state {path}: {what}: {message}")]
    Redb {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    #[error("client state {path}: schema version {found} is not the {expected} this node daemon reads (written by another version of noded)")]
    Schema {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("client state {path}: {what} is unreadable: {source}")]
    Decode {
        path: PathBuf,
        what: String,
        source: serde_json::Error,
    },
    #[error("client state {path}: encoding {what}: {source}")]
    Encode {
        path: PathBuf,
        what: String,
        source: serde_json::Error,
    },
    #[error("client state {path}: moving the unreadable file aside to {aside}: {source}")]
    MoveAside {
        path: PathBuf,
        aside: PathBuf,
        source: std::io::Error,
    },
}

impl StateError {
    fn redb(path: &Path, what: &'static str, e: impl std::fmt::Display) -> StateError {
        StateError::Redb {
            path: path.to_path_buf(),
            what,
            message: e.to_string(),
        }
    }

    /// Whether the file itself is at fault (move it aside), rather than the situation (it is
    /// locked by a running daemon, or the disk refuses a rename).
    fn is_unreadable_file(&self) -> bool {
        matches!(
            self,
            StateError::Redb { .. } | StateError::Schema { .. } | StateError::Decode { .. }
        )
    }
}

/// What was last reported to the servers about an allocation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Reported {
    pub client_status: ClientStatus,
    pub client_description: String,
    pub task_states: BTreeMap<String, TaskState>,
    /// The deployment health last reported (the client does not report it yet: always `None`
    /// until it does).
    #[serde(default)]
    pub deployment_status: Option<AllocDeploymentStatus>,
}

/// One allocation, as this node knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocRecord {
    /// As last received from the servers (job included): enough to run it with no server.
    pub alloc: Allocation,
    #[serde(default)]
    pub reported: Option<Reported>,
    /// When its runner ended here (unix nanoseconds): the allocation is terminal on this node
    /// and its directory waits for garbage collection, oldest first.
    #[serde(default)]
    pub terminal_at_unix_nanos: Option<i64>,
    /// The allocation's network objects on this node (namespace, veth, leased address, port
    /// mappings): written before they are made, cleared once they are gone.
    #[serde(default)]
    pub network: Option<AllocNetwork>,
}

impl AllocRecord {
    pub fn new(alloc: Allocation) -> AllocRecord {
        AllocRecord {
            alloc,
            reported: None,
            terminal_at_unix_nanos: None,
            network: None,
        }
    }

    /// Whether this node has nothing more to run for it: its runner ended, or what was last
    /// reported is terminal.
    pub fn is_finished(&self) -> bool {
        self.terminal_at_unix_nanos.is_some()
            || self
                .reported
                .as_ref()
                .is_some_and(|r| r.client_status.is_terminal())
    }
}

/// What a task runner was doing when it last wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskIntent {
    /// About to ask the supervisor to start it (written before asking): after a crash, the
    /// supervisor's list says whether the start happened.
    Start,
    /// Started; `handle` says which process.
    Run,
    /// Between runs (exited, waiting to restart) or not started yet.
    Wait,
    /// Finished for good (its state is dead).
    Done,
}

/// A started task, as the supervisor knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskHandle {
    /// `<alloc id>.<task name>`: the supervisor's id, and its cgroup's name.
    pub task_id: String,
    pub pid: i32,
    /// Unix nanoseconds.
    pub started_at: i64,
}

/// The restart tracker's state (see [`super::restart::RestartTracker`]), in wall-clock time so
/// that it means the same after a restart of the node daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RestartState {
    pub interval_start_unix_nanos: Option<i64>,
    pub count_in_interval: i64,
}

/// One task of an allocation, as this node last knew it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub intent: TaskIntent,
    #[serde(default)]
    pub handle: Option<TaskHandle>,
    /// Restart count and events included.
    #[serde(default)]
    pub state: TaskState,
    #[serde(default)]
    pub restart: RestartState,
}

/// Everything in the file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientState {
    pub allocs: BTreeMap<String, AllocRecord>,
    /// By allocation id, then task name.
    pub tasks: BTreeMap<String, BTreeMap<String, TaskRecord>>,
}

/// How the file was opened.
#[derive(Debug)]
pub struct Opened {
    pub store: StateStore,
    /// What was in it (empty for a new file or one moved aside).
    pub state: ClientState,
    /// Where an unreadable file was moved, and why it was unreadable.
    pub moved_aside: Option<(PathBuf, String)>,
}

/// The open state file.
pub struct StateStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl StateStore {
    /// Opens `<state_dir>/client.db` and reads it; a file that cannot be opened or read is
    /// moved aside (`client.db.corrupt-<unix seconds>`) and replaced by an empty one. A file
    /// another daemon holds open is an error (never moved). Blocking.
    pub fn open_or_recover(state_dir: &Path) -> Result<Opened, StateError> {
        let path = state_dir.join(CLIENT_DB_FILE);
        let first = StateStore::open(&path).and_then(|store| {
            let state = store.load()?;
            Ok((store, state))
        });
        match first {
            Ok((store, state)) => Ok(Opened {
                store,
                state,
                moved_aside: None,
            }),
            Err(e) if e.is_unreadable_file() => {
                let why = e.to_string();
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let mut aside = state_dir.join(format!("{CLIENT_DB_FILE}.corrupt-{stamp}"));
                // Two in one second (a crash loop): never overwrite an earlier one.
                let mut n = 1;
                while aside.exists() && n < 1000 {
                    aside = state_dir.join(format!("{CLIENT_DB_FILE}.corrupt-{stamp}.{n}"));
                    n += 1;
                }
                std::fs::rename(&path, &aside).map_err(|source| StateError::MoveAside {
                    path: path.clone(),
                    aside: aside.clone(),
                    source,
                })?;
                let store = StateStore::open(&path)?;
                Ok(Opened {
                    store,
                    state: ClientState::default(),
                    moved_aside: Some((aside, why)),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Opens (or creates) the file at `path` and checks its schema version.
    pub fn open(path: &Path) -> Result<StateStore, StateError> {
        // redb can panic on some damaged files rather than return an error; a panic here must
        // not take the node daemon down: it is an unreadable file like any other.
        let built = std::panic::catch_unwind(|| {
            redb::Builder::new()
                .set_cache_size(CACHE_SIZE_BYTES)
                .create(path)
        });
        let db = match built {
            Ok(Ok(db)) => db,
            Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
                return Err(StateError::Locked {
                    path: path.to_path_buf(),
                })
            }
            Ok(Err(e)) => return Err(StateError::redb(path, "open", e)),
            Err(_) => return Err(StateError::redb(path, "open", "redb panicked reading it")),
        };
        let store = StateStore {
            db,
            path: path.to_path_buf(),
        };
        store.init()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One write transaction: `body` writes, then it commits (fsync'd); an error from `body`
    /// aborts it, so nothing it wrote stays.
    fn write(
        &self,
        commit_what: &'static str,
        body: impl FnOnce(&redb::WriteTransaction) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let path = &self.path;
        let txn = self
            .db
            .begin_write()
            .map_err(|e| StateError::redb(path, "begin write", e))?;
        body(&txn)?;
        txn.commit()
            .map_err(|e| StateError::redb(path, commit_what, e))
    }

    fn init(&self) -> Result<(), StateError> {
        let path = &self.path;
        self.write("commit table creation", |txn| {
            let mut meta = txn
                .open_table(META_TABLE)
                .map_err(|e| StateError::redb(path, "open table meta", e))?;
            let found = meta
                .get(KEY_SCHEMA_VERSION)
                .map_err(|e| StateError::redb(path, "read schema version", e))?
                .map(|v| v.value().to_vec());
            match found {
                None => {
                    meta.insert(KEY_SCHEMA_VERSION, SCHEMA_VERSION.to_le_bytes().as_slice())
                        .map_err(|e| StateError::redb(path, "write schema version", e))?;
                }
                Some(bytes) => {
                    let found = <[u8; 4]>::try_from(bytes.as_slice())
                        .map(u32::from_le_bytes)
                        .unwrap_or(0);
                    if found != SCHEMA_VERSION {
                        return Err(StateError::Schema {
                            path: path.clone(),
                            found,
                            expected: SCHEMA_VERSION,
                        });
                    }
                }
            }
            txn.open_table(ALLOCS_TABLE)
                .map_err(|e| StateError::redb(path, "open table allocs", e))?;
            txn.open_table(TASKS_TABLE)
                .map_err(|e| StateError::redb(path, "open table tasks", e))?;
            Ok(())
        })
    }

    /// Every record. A record that does not decode makes the whole file unreadable: half a
    /// state would restart tasks the other half says are running.
    pub fn load(&self) -> Result<ClientState, StateError> {
        let path = &self.path;
        let txn = self
            .db
            .begin_read()
            .map_err(|e| StateError::redb(path, "begin read", e))?;
        let mut state = ClientState::default();
        let allocs = txn
            .open_table(ALLOCS_TABLE)
            .map_err(|e| StateError::redb(path, "open table allocs", e))?;
        for row in allocs
            .iter()
            .map_err(|e| StateError::redb(path, "read allocs", e))?
        {
            let (k, v) = row.map_err(|e| StateError::redb(path, "read allocs", e))?;
            let id = k.value().to_string();
            let record: AllocRecord =
                serde_json::from_slice(v.value()).map_err(|source| StateError::Decode {
                    path: path.clone(),
                    what: format!("allocation {id}"),
                    source,
                })?;
            state.allocs.insert(id, record);
        }
        let tasks = txn
            .open_table(TASKS_TABLE)
            .map_err(|e| StateError::redb(path, "open table tasks", e))?;
        for row in tasks
            .iter()
            .map_err(|e| StateError::redb(path, "read tasks", e))?
        {
            let (k, v) = row.map_err(|e| StateError::redb(path, "read tasks", e))?;
            let (alloc, task) = k.value();
            let record: TaskRecord =
                serde_json::from_slice(v.value()).map_err(|source| StateError::Decode {
                    path: path.clone(),
                    what: format!("task {alloc}.{task}"),
                    source,
                })?;
            state
                .tasks
                .entry(alloc.to_string())
                .or_default()
                .insert(task.to_string(), record);
        }
        Ok(state)
    }

    fn encode<T: Serialize>(
        &self,
        what: impl Fn() -> String,
        v: &T,
    ) -> Result<Vec<u8>, StateError> {
        serde_json::to_vec(v).map_err(|source| StateError::Encode {
            path: self.path.clone(),
            what: what(),
            source,
        })
    }

    /// Writes allocation records, all in one transaction.
    pub fn put_allocs(&self, records: &[&AllocRecord]) -> Result<(), StateError> {
        if records.is_empty() {
            return Ok(());
        }
        let path = &self.path;
        let mut encoded = Vec::with_capacity(records.len());
        for r in records {
            encoded.push((
                r.alloc.id.as_str(),
                self.encode(|| format!("allocation {}", r.alloc.id), r)?,
            ));
        }
        self.write("commit allocations", |txn| {
            let mut table = txn
                .open_table(ALLOCS_TABLE)
                .map_err(|e| StateError::redb(path, "open table allocs", e))?;
            for (id, bytes) in &encoded {
                table
                    .insert(*id, bytes.as_slice())
                    .map_err(|e| StateError::redb(path, "write allocation", e))?;
            }
            Ok(())
        })
    }

    /// Changes one allocation's record in place (read, `change`, write in one transaction).
    /// No record: nothing is written (it was garbage collected meanwhile).
    pub fn update_alloc(
        &self,
        alloc_id: &str,
        change: impl FnOnce(&mut AllocRecord),
    ) -> Result<(), StateError> {
        let path = &self.path;
        self.write("commit allocation", |txn| {
            let mut table = txn
                .open_table(ALLOCS_TABLE)
                .map_err(|e| StateError::redb(path, "open table allocs", e))?;
            let current = table
                .get(alloc_id)
                .map_err(|e| StateError::redb(path, "read allocation", e))?
                .map(|v| v.value().to_vec());
            let Some(current) = current else {
                return Ok(());
            };
            let mut record: AllocRecord =
                serde_json::from_slice(&current).map_err(|source| StateError::Decode {
                    path: path.clone(),
                    what: format!("allocation {alloc_id}"),
                    source,
                })?;
            change(&mut record);
            let bytes = self.encode(|| format!("allocation {alloc_id}"), &record)?;
            table
                .insert(alloc_id, bytes.as_slice())
                .map_err(|e| StateError::redb(path, "write allocation", e))?;
            Ok(())
        })
    }

    pub fn put_task(
        &self,
        alloc_id: &str,
        task: &str,
        record: &TaskRecord,
    ) -> Result<(), StateError> {
        let path = &self.path;
        let bytes = self.encode(|| format!("task {alloc_id}.{task}"), record)?;
        self.write("commit task", |txn| {
            let mut table = txn
                .open_table(TASKS_TABLE)
                .map_err(|e| StateError::redb(path, "open table tasks", e))?;
            table
                .insert((alloc_id, task), bytes.as_slice())
                .map_err(|e| StateError::redb(path, "write task", e))?;
            Ok(())
        })
    }

    /// Forgets an allocation and its tasks (garbage collected).
    pub fn delete_alloc(&self, alloc_id: &str) -> Result<(), StateError> {
        let path = &self.path;
        self.write("commit deletion", |txn| {
            let mut allocs = txn
                .open_table(ALLOCS_TABLE)
                .map_err(|e| StateError::redb(path, "open table allocs", e))?;
            allocs
                .remove(alloc_id)
                .map_err(|e| StateError::redb(path, "delete allocation", e))?;
            let mut tasks = txn
                .open_table(TASKS_TABLE)
                .map_err(|e| StateError::redb(path, "open table tasks", e))?;
            let names: Vec<String> = tasks
                .range((alloc_id, "")..)
                .map_err(|e| StateError::redb(path, "read tasks", e))?
                .map_while(|row| {
                    let (k, _) = row.ok()?;
                    let (a, t) = k.value();
                    (a == alloc_id).then(|| t.to_string())
                })
                .collect();
            for name in names {
                tasks
                    .remove((alloc_id, name.as_str()))
                    .map_err(|e| StateError::redb(path, "delete task", e))?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use controlplane::model::TaskLifecycleState;

    fn alloc(id: &str) -> Allocation {
        Allocation {
            id: id.to_string(),
            task_group: "g".into(),
            ..Default::default()
        }
    }

    fn task(pid: i32, restarts: u64) -> TaskRecord {
        TaskRecord {
            intent: TaskIntent::Run,
            handle: Some(TaskHandle {
                task_id: "a1.t".into(),
                pid,
                started_at: 42,
            }),
            state: TaskState {
                state: TaskLifecycleState::Running,
                restarts,
                ..Default::default()
            },
            restart: RestartState {
                interval_start_unix_nanos: Some(7),
                count_in_interval: 2,
            },
        }
    }

    #[test]
    fn records_round_trip_through_the_file_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let opened = StateStore::open_or_recover(dir.path()).unwrap();
            assert!(opened.moved_aside.is_none());
            assert_eq!(opened.state, ClientState::default());
            let mut a = AllocRecord::new(alloc("a1"));
            a.reported = Some(Reported {
                client_status: ClientStatus::Running,
                ..Default::default()
            });
            opened
                .store
                .put_allocs(&[&a, &AllocRecord::new(alloc("a2"))])
                .unwrap();
            opened.store.put_task("a1", "t", &task(100, 3)).unwrap();
            opened.store.put_task("a2", "u", &task(200, 0)).unwrap();
            opened
                .store
                .update_alloc("a1", |r| r.terminal_at_unix_nanos = Some(9))
                .unwrap();
            // An update of a record that is not there writes nothing.
            opened
                .store
                .update_alloc("zz", |r| r.terminal_at_unix_nanos = Some(1))
                .unwrap();
        }
        let opened = StateStore::open_or_recover(dir.path()).unwrap();
        let s = opened.state;
        assert_eq!(s.allocs.len(), 2);
        assert_eq!(s.allocs["a1"].terminal_at_unix_nanos, Some(9));
        assert_eq!(
            s.allocs["a1"].reported.as_ref().unwrap().client_status,
            ClientStatus::Running
        );
        assert_eq!(s.tasks["a1"]["t"], task(100, 3));
        assert_eq!(s.tasks["a2"]["u"].handle.as_ref().unwrap().pid, 200);

        opened.store.delete_alloc("a1").unwrap();
        let s = opened.store.load().unwrap();
        assert_eq!(s.allocs.keys().collect::<Vec<_>>(), ["a2"]);
        assert_eq!(s.tasks.keys().collect::<Vec<_>>(), ["a2"]);
    }

    #[test]
    fn a_second_open_of_the_same_file_is_refused_not_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let _first = StateStore::open_or_recover(dir.path()).unwrap();
        let second = StateStore::open_or_recover(dir.path()).unwrap_err();
        assert!(matches!(second, StateError::Locked { .. }), "{second}");
        assert!(dir.path().join(CLIENT_DB_FILE).exists());
    }

    fn corrupt_files(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("client.db.corrupt-"))
            })
            .collect()
    }

    #[test]
    fn a_garbage_file_is_moved_aside_and_replaced_by_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let garbage: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 + 13) as u8).collect();
        std::fs::write(dir.path().join(CLIENT_DB_FILE), &garbage).unwrap();
        let opened = StateStore::open_or_recover(dir.path()).unwrap();
        let (aside, why) = opened.moved_aside.clone().unwrap();
        assert_eq!(corrupt_files(dir.path()), vec![aside.clone()]);
        assert_eq!(std::fs::read(&aside).unwrap(), garbage, "kept as it was");
        assert!(why.contains("client.db"), "{why}");
        assert_eq!(opened.state, ClientState::default());
        // The fresh file works.
        opened
            .store
            .put_allocs(&[&AllocRecord::new(alloc("a"))])
            .unwrap();
        assert_eq!(opened.store.load().unwrap().allocs.len(), 1);
    }

    #[test]
    fn an_unknown_schema_version_or_an_undecodable_record_moves_the_file_aside() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = StateStore::open(&dir.path().join(CLIENT_DB_FILE)).unwrap();
            let txn = store.db.begin_write().unwrap();
            {
                let mut meta = txn.open_table(META_TABLE).unwrap();
                meta.insert(KEY_SCHEMA_VERSION, 99u32.to_le_bytes().as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let opened = StateStore::open_or_recover(dir.path()).unwrap();
        let (_, why) = opened.moved_aside.clone().unwrap();
        assert!(why.contains("schema version 99"), "{why}");
        {
            let txn = opened.store.db.begin_write().unwrap();
            {
                let mut allocs = txn.open_table(ALLOCS_TABLE).unwrap();
                allocs.insert("bad", b"{not json".as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        drop(opened);
        let opened = StateStore::open_or_recover(dir.path()).unwrap();
        let (_, why) = opened.moved_aside.unwrap();
        assert!(why.contains("allocation bad"), "{why}");
        assert_eq!(corrupt_files(dir.path()).len(), 2);
    }
}
