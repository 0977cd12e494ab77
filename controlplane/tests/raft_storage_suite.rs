//! openraft's storage conformance suite against the redb log store and the state machine, each
//! run on a fresh temporary data dir; plus the durability of the vote and the committed log id
//! across a reopen of the log, and a snapshot handed from one state machine to another.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use controlplane::model::Node;
use controlplane::raft::{
    Entry, LogStore, StateMachineStore, StorageError, TypeConfig, RAFT_DB_FILE,
};
use controlplane::state::{Command, StateStore};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    AnyError, CommittedLeaderId, EntryPayload, LogId, Membership, RaftSnapshotBuilder,
    StorageIOError, Vote,
};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

struct TempDirStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempDirStores {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        fn failed(e: impl std::error::Error + 'static) -> StorageError {
            StorageIOError::write(AnyError::new(&e)).into()
        }
        let dir = tempfile::tempdir().map_err(failed)?;
        let log = LogStore::open(&dir.path().join(RAFT_DB_FILE)).map_err(failed)?;
        let machine =
            StateMachineStore::open(dir.path().join("snapshots"), Arc::new(StateStore::new()))
                .map_err(failed)?;
        Ok((dir, log, machine))
    }
}

#[test]
fn log_store_and_state_machine_pass_the_openraft_storage_suite() {
    Suite::test_all(TempDirStores).unwrap();
}

#[tokio::test]
async fn vote_and_committed_log_id_survive_reopening_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(RAFT_DB_FILE);
    let vote = Vote::new_committed(7, 3);
    let committed = LogId::new(CommittedLeaderId::new(7, 3), 42);
    {
        let mut log = LogStore::open(&path).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), None);
        assert_eq!(log.read_committed().await.unwrap(), None);
        log.save_vote(&vote).await.unwrap();
        log.save_committed(Some(committed)).await.unwrap();
        assert_eq!(log.committed_index(), Some(42));
    }
    let mut log = LogStore::open(&path).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(log.read_committed().await.unwrap(), Some(committed));
    assert_eq!(log.committed_index(), Some(42));

    // A newer vote replaces the old one.
    let newer = Vote::new(8, 3);
    log.save_vote(&newer).await.unwrap();
    drop(log);
    let mut log = LogStore::open(&path).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(newer));
}

fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload,
    }
}

fn node_register(id: &str) -> Command {
    Command::NodeRegister {
        node: Node {
            id: id.into(),
            name: id.into(),
            datacenter: "dc1".into(),
            ..Default::default()
        }
        .into(),
        now: 1_000_000_000,
    }
}

#[tokio::test]
async fn a_snapshot_streamed_to_another_state_machine_reproduces_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let source_store = Arc::new(StateStore::new());
    let mut source = StateMachineStore::open(dir.path().join("a"), source_store.clone()).unwrap();
    let members = BTreeMap::from([(
        1,
        controlplane::raft::ServerNode::new("127.0.0.1:4647", "a"),
    )]);
    let membership = Membership::new(vec![BTreeSet::from([1])], members);
    let responses = source
        .apply([
            entry(0, EntryPayload::Membership(membership)),
            entry(1, EntryPayload::Blank),
            entry(2, EntryPayload::Normal(node_register("n1"))),
            entry(3, EntryPayload::Normal(node_register("n2"))),
        ])
        .await
        .unwrap();
    assert_eq!(responses.len(), 4);
    assert_eq!(responses[2].index, 2);
    let snapshot = source
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(snapshot.meta.last_log_id.unwrap().index, 3);

    // Receive it the way a transfer does: write the bytes into the handle openraft is given.
    let target_store = Arc::new(StateStore::new());
    let mut target = StateMachineStore::open(dir.path().join("b"), target_store.clone()).unwrap();
    let mut sent = snapshot.snapshot;
    let mut received = target.begin_receiving_snapshot().await.unwrap();
    tokio::io::copy(&mut sent, &mut *received).await.unwrap();
    target
        .install_snapshot(&snapshot.meta, received)
        .await
        .unwrap();
    assert_eq!(
        target_store.snapshot().to_snapshot(),
        source_store.snapshot().to_snapshot()
    );
    assert_eq!(
        target.applied_state().await.unwrap(),
        source.applied_state().await.unwrap()
    );
    let current = target.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snapshot.meta);

    // Bytes that do not match the metadata they come with are refused and change nothing.
    let mut other_meta = snapshot.meta.clone();
    other_meta.last_log_id = Some(LogId::new(CommittedLeaderId::new(1, 1), 9));
    let mut resend = source
        .get_current_snapshot()
        .await
        .unwrap()
        .unwrap()
        .snapshot;
    let mut received = target.begin_receiving_snapshot().await.unwrap();
    tokio::io::copy(&mut resend, &mut *received).await.unwrap();
    let err = target
        .install_snapshot(&other_meta, received)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("differs"), "{err}");
    let mut received = target.begin_receiving_snapshot().await.unwrap();
    received.write_all(b"NODEDSNP\x01{not json").await.unwrap();
    assert!(target
        .install_snapshot(&snapshot.meta, received)
        .await
        .is_err());
    assert_eq!(
        target_store.snapshot().to_snapshot(),
        source_store.snapshot().to_snapshot()
    );
    assert_eq!(
        target.get_current_snapshot().await.unwrap().unwrap().meta,
        snapshot.meta
    );
}

#[tokio::test]
#[should_panic(expected = "applied after")]
async fn an_entry_applied_out_of_order_stops_the_state_machine() {
    let dir = tempfile::tempdir().unwrap();
    let mut machine =
        StateMachineStore::open(dir.path().join("snapshots"), Arc::new(StateStore::new())).unwrap();
    machine
        .apply([entry(1, EntryPayload::Blank), entry(2, EntryPayload::Blank)])
        .await
        .unwrap();
    let _ = machine
        .apply([entry(2, EntryPayload::Normal(node_register("n1")))])
        .await;
}

#[tokio::test]
#[should_panic(expected = "installed over a state already at")]
async fn a_snapshot_older_than_the_state_stops_the_state_machine() {
    let dir = tempfile::tempdir().unwrap();
    let mut source =
        StateMachineStore::open(dir.path().join("a"), Arc::new(StateStore::new())).unwrap();
    source
        .apply([entry(1, EntryPayload::Normal(node_register("n1")))])
        .await
        .unwrap();
    let old = source
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let mut target =
        StateMachineStore::open(dir.path().join("b"), Arc::new(StateStore::new())).unwrap();
    target
        .apply([entry(1, EntryPayload::Blank), entry(2, EntryPayload::Blank)])
        .await
        .unwrap();
    let mut sent = old.snapshot;
    let mut received = target.begin_receiving_snapshot().await.unwrap();
    tokio::io::copy(&mut sent, &mut *received).await.unwrap();
    let _ = target.install_snapshot(&old.meta, received).await;
}
