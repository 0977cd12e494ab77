//! Snapshot archives: a round trip reproduces the state; damage of every kind is refused by
//! name, and a refused restore changes nothing.

use super::archive::{read_archive, write_archive, ArchiveError, ARCHIVE_VERSION};
use super::*;
use crate::model::*;

/// A state with a node, a job, its evaluation and an allocation, built through `apply`.
fn populated() -> State {
    let mut s = State::default();
    let node = Node {
        id: "node-1".into(),
        name: "n1".into(),
        status: NodeStatus::Ready,
        ..Default::default()
    };
    s.apply(
        1,
        &Command::NodeRegister {
            node: Box::new(node),
            now: 1,
        },
    );
    let job = Job {
        id: "web".into(),
        namespace: "default".into(),
        ..Default::default()
    };
    let eval = Evaluation {
        id: "eval-1".into(),
        namespace: "default".into(),
        job_id: "web".into(),
        status: EvalStatus::Pending,
        ..Default::default()
    };
    s.apply(
        2,
        &Command::JobRegister {
            job: Box::new(job),
            eval: Some(eval),
            now: 2,
            enforce_index: None,
            tracked_versions: None,
        },
    );
    let alloc = Allocation {
        id: "alloc-1".into(),
        namespace: "default".into(),
        job_id: "web".into(),
        node_id: "node-1".into(),
        desired_status: DesiredStatus::Run,
        client_status: ClientStatus::Pending,
        ..Default::default()
    };
    let plan = PlanResult {
        allocs: vec![alloc],
        now: 3,
        ..Default::default()
    };
    let (r, _) = s.apply(3, &Command::PlanApply(Box::new(plan)));
    assert_eq!(r.error, None);
    s
}

fn ids(s: &State) -> (Vec<String>, Vec<String>, Vec<String>, Vec<String>) {
    (
        s.jobs(None).iter().map(|j| j.id.clone()).collect(),
        s.allocs().iter().map(|a| a.id.clone()).collect(),
        s.nodes().iter().map(|n| n.id.clone()).collect(),
        s.evals().iter().map(|e| e.id.clone()).collect(),
    )
}

#[test]
fn save_then_restore_onto_a_fresh_state_reproduces_everything() {
    let source = populated();
    let bytes = write_archive(&source, 4, 1_700_000_000_000_000_000).unwrap();
    let archive = read_archive(&bytes).unwrap();
    assert_eq!(archive.meta.index, 3);
    assert_eq!(archive.meta.term, 4);
    assert_eq!(archive.meta.id, "4-3-1700000000000");
    assert_eq!(
        (
            archive.meta.jobs,
            archive.meta.allocs,
            archive.meta.nodes,
            archive.meta.evals
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(archive.checksum.len(), 64);

    // A fresh cluster is at a lower index than the one saved: indexes are lowered to it.
    let mut fresh = State::default();
    fresh.note_index(1);
    let (r, effects) = fresh.apply(
        2,
        &Command::RestoreState {
            snapshot: Box::new(archive.state.clone()),
        },
    );
    assert_eq!(r.error, None);
    assert_eq!(ids(&fresh), ids(&source));
    assert_eq!(fresh.latest_index(), 2);
    for table in Table::ALL {
        assert_eq!(fresh.table_index(table), 2, "{}", table.name());
    }
    assert!(fresh
        .allocs()
        .iter()
        .all(|a| a.modify_index <= 2 && a.create_index <= a.modify_index));
    assert!(effects.state_replaced && effects.capacity_changed);
    assert_eq!(
        effects.pending_evals.len(),
        1,
        "the broker is told of the pending evaluation"
    );
    // Apart from the indexes, every object is as saved.
    let strip = |mut a: Allocation| {
        a.create_index = 0;
        a.modify_index = 0;
        a.alloc_modify_index = 0;
        a
    };
    assert_eq!(
        strip((*fresh.alloc("alloc-1").unwrap()).clone()),
        strip((*source.alloc("alloc-1").unwrap()).clone())
    );

    // Restored onto a cluster already past it, nothing is lowered and indexes keep growing.
    let mut later = populated();
    later.note_index(10);
    later.apply(
        11,
        &Command::RestoreState {
            snapshot: Box::new(archive.state),
        },
    );
    assert_eq!(later.latest_index(), 11);
    assert_eq!(later.alloc("alloc-1").unwrap().create_index, 3);
    assert_eq!(later.table_index(Table::Jobs), 11);
    // The state goes on applying after a restore.
    later.apply(
        12,
        &Command::EvalUpdate {
            evals: vec![],
            now: 5,
        },
    );
}

#[test]
fn damaged_archives_are_refused_by_what_is_wrong() {
    let good = write_archive(&populated(), 1, 0).unwrap();
    let flip = |at: usize| {
        let mut b = good.clone();
        b[at] ^= 0x01;
        b
    };
    // A byte of the state changed.
    let middle = good.len() / 2;
    assert!(matches!(
        read_archive(&flip(middle)),
        Err(ArchiveError::ChecksumMismatch { .. })
    ));
    // The checksum itself changed.
    assert!(matches!(
        read_archive(&flip(good.len() - 1)),
        Err(ArchiveError::ChecksumMismatch { .. })
    ));
    // Truncated anywhere.
    for cut in [good.len() - 1, good.len() - 40, 30, 17] {
        let e = read_archive(&good[..cut]).unwrap_err();
        assert!(
            matches!(
                e,
                ArchiveError::Truncated { .. } | ArchiveError::TooShort { .. }
            ),
            "cut at {cut}: {e}"
        );
        assert!(
            e.to_string().contains("truncated") || e.to_string().contains("too short"),
            "{e}"
        );
    }
    assert!(matches!(
        read_archive(&good[..4]),
        Err(ArchiveError::TooShort { .. })
    ));
    // Extra bytes.
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(
        read_archive(&longer),
        Err(ArchiveError::TrailingBytes { extra: 1 })
    ));
    // Wrong magic.
    let e = read_archive(&flip(0)).unwrap_err();
    assert_eq!(e, ArchiveError::BadMagic);
    assert!(e.to_string().contains("not a noded snapshot"));
    // A newer version.
    let mut newer = good.clone();
    newer[8..12].copy_from_slice(&(ARCHIVE_VERSION + 1).to_be_bytes());
    let e = read_archive(&newer).unwrap_err();
    assert_eq!(
        e,
        ArchiveError::NewerVersion {
            found: ARCHIVE_VERSION + 1
        }
    );
    assert!(e.to_string().contains("newer noded"));
    assert!(read_archive(&good).is_ok());
}

#[test]
fn a_restore_the_state_cannot_rebuild_changes_nothing() {
    let mut s = populated();
    let before = s.to_snapshot();
    let mut bad = before.clone();
    bad.format_version = SNAPSHOT_FORMAT_VERSION + 1;
    let (r, effects) = s.apply(
        4,
        &Command::RestoreState {
            snapshot: Box::new(bad),
        },
    );
    assert!(r.error.unwrap().contains("snapshot format"));
    assert!(!effects.state_replaced);
    let mut after = s.to_snapshot();
    after.latest_index = before.latest_index;
    assert_eq!(after, before);
}

#[test]
fn autopilot_configuration_is_check_and_set() {
    let mut s = State::default();
    assert!(s.autopilot_config().cleanup_dead_servers);
    let mut config = AutopilotConfiguration {
        max_trailing_logs: 10,
        ..Default::default()
    };
    let (r, _) = s.apply(
        1,
        &Command::AutopilotSetConfig {
            config: config.clone(),
            cas: None,
        },
    );
    assert!(!r.cas_mismatch);
    assert_eq!(s.autopilot_config().modify_index, 1);
    assert_eq!(s.autopilot_config().create_index, 1);
    config.max_trailing_logs = 20;
    let (r, _) = s.apply(
        2,
        &Command::AutopilotSetConfig {
            config: config.clone(),
            cas: Some(0),
        },
    );
    assert!(r.cas_mismatch, "a stale cas index writes nothing");
    assert_eq!(s.autopilot_config().max_trailing_logs, 10);
    assert_eq!(s.table_index(Table::AutopilotConfig), 1);
    let (r, _) = s.apply(
        3,
        &Command::AutopilotSetConfig {
            config,
            cas: Some(1),
        },
    );
    assert!(!r.cas_mismatch);
    assert_eq!(s.autopilot_config().max_trailing_logs, 20);
    assert_eq!(s.autopilot_config().create_index, 1);
    assert_eq!(s.autopilot_config().modify_index, 3);
    // It survives a snapshot.
    let back = State::from_snapshot(s.to_snapshot()).unwrap();
    assert_eq!(back.autopilot_config(), s.autopilot_config());
}
