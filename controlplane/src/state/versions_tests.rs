//! Stored versions: pruning (tags, the current and the newest stable version survive it),
//! stability, tags, and `EnforceIndex` checked when a registration is applied.

use super::*;
use crate::model::*;

fn job(count: i64) -> Job {
    let mut job = Job {
        id: "web".into(),
        task_groups: vec![TaskGroup {
            name: "g".into(),
            count,
            tasks: vec![Task {
                name: "t".into(),
                driver: "exec".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    job.canonicalize();
    job
}

fn register(job: Job, enforce_index: Option<u64>, tracked_versions: Option<u64>) -> Command {
    Command::JobRegister {
        eval: Some(Evaluation {
            id: format!("eval-{}", job.task_groups[0].count),
            namespace: job.namespace.clone(),
            job_id: job.id.clone(),
            eval_type: "service".into(),
            triggered_by: trigger::JOB_REGISTER.into(),
            status: EvalStatus::Pending,
            ..Default::default()
        }),
        job: Box::new(job),
        now: 100,
        enforce_index,
        tracked_versions,
    }
}

/// Applies commands at the next indexes; returns each answer's error.
struct Log {
    state: State,
    index: u64,
}

impl Log {
    fn new() -> Log {
        Log {
            state: State::default(),
            index: 0,
        }
    }
    fn apply(&mut self, command: Command) -> Option<String> {
        self.index += 1;
        self.state.apply(self.index, &command).0.error
    }
    /// Registers versions with counts `from..to` (each a new version).
    fn versions(&mut self, counts: std::ops::Range<i64>) {
        for count in counts {
            assert_eq!(self.apply(register(job(count), None, None)), None);
        }
    }
    fn kept(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .state
            .job_versions("default", "web")
            .iter()
            .map(|j| j.version)
            .collect();
        v.sort_unstable();
        v
    }
    fn tag(&mut self, version: u64, name: &str, tag: bool) -> Option<String> {
        self.apply(Command::JobVersionTag {
            namespace: "default".into(),
            job_id: "web".into(),
            version,
            name: name.into(),
            tag: tag.then(|| JobVersionTag {
                name: name.into(),
                description: format!("{name} at {version}"),
                tagged_time: 7,
            }),
        })
    }
    fn stable(&mut self, version: u64, stable: bool) -> Option<String> {
        self.apply(Command::JobStability {
            namespace: "default".into(),
            job_id: "web".into(),
            version,
            stable,
        })
    }
}

#[test]
fn the_newest_untagged_versions_are_kept_and_tagged_ones_survive_pruning() {
    let mut log = Log::new();
    log.versions(1..4); // versions 0, 1, 2
    assert_eq!(log.tag(0, "golden", true), None);
    log.versions(4..12); // versions 3..=10
                         // Six untagged (5..=10) and the tagged 0, which does not count against the limit.
    assert_eq!(log.kept(), vec![0, 5, 6, 7, 8, 9, 10]);
    let golden = log
        .state
        .job_version_by_tag("default", "web", "golden")
        .unwrap();
    assert_eq!(golden.version, 0);
    assert_eq!(
        golden.version_tag.as_ref().unwrap().description,
        "golden at 0"
    );

    // Untagged again, it counts, and the oldest beyond the limit goes.
    assert_eq!(log.tag(0, "golden", false), None);
    assert_eq!(log.kept(), vec![5, 6, 7, 8, 9, 10]);
}

#[test]
fn the_newest_stable_version_is_kept_in_place_of_the_oldest() {
    let mut log = Log::new();
    log.versions(1..3); // 0, 1
    assert_eq!(log.stable(1, true), None);
    log.versions(3..12); // 2..=10
                         // The limit holds (6), with stable 1 in place of 5.
    assert_eq!(log.kept(), vec![1, 6, 7, 8, 9, 10]);
    assert!(log.state.job_version("default", "web", 1).unwrap().stable);
}

#[test]
fn the_limit_travels_in_the_registration_and_binds_later_commands() {
    let mut log = Log::new();
    assert_eq!(log.apply(register(job(1), None, Some(2))), None);
    log.versions(2..6);
    assert_eq!(log.kept(), vec![3, 4]);
    assert_eq!(log.state.job_tracked_versions(), 2);
    // A stop writes a version too: pruned with the limit the state holds.
    log.apply(Command::JobDeregister {
        namespace: "default".into(),
        job_id: "web".into(),
        purge: false,
        eval: None,
        now: 1,
    });
    assert_eq!(log.kept(), vec![4, 5]);
    // A snapshot carries it, so a server installing one prunes alike.
    let restored = State::from_snapshot(log.state.to_snapshot()).unwrap();
    assert_eq!(restored.job_tracked_versions(), 2);
    // A limit of 0 from a proposer is read as 1: the version written is never pruned.
    assert_eq!(log.apply(register(job(9), None, Some(0))), None);
    assert_eq!(log.kept(), vec![6]);
    assert_eq!(log.state.job("default", "web").unwrap().version, 6);
}

#[test]
fn stability_is_set_on_the_version_and_on_the_current_job_only_when_it_is_that_one() {
    let mut log = Log::new();
    log.versions(1..4); // 0, 1, 2
    assert_eq!(log.stable(1, true), None);
    assert!(log.state.job_version("default", "web", 1).unwrap().stable);
    let current = log.state.job("default", "web").unwrap();
    assert_eq!(current.version, 2);
    assert!(!current.stable, "the current job is another version");

    let before = log.state.table_index(Table::JobVersions);
    assert_eq!(log.stable(2, true), None);
    let current = log.state.job("default", "web").unwrap();
    assert!(current.stable);
    assert_eq!(current.version, 2, "no new version");
    assert_eq!(current.job_modify_index, 3, "not a spec change");
    assert!(log.state.job_version("default", "web", 2).unwrap().stable);
    assert!(log.state.table_index(Table::JobVersions) > before);

    // A version that is not kept: refused, nothing written.
    let before = log.state.table_index(Table::JobVersions);
    let error = log.stable(9, true).unwrap();
    assert!(
        error.contains("job \"web\" at version 9 not found"),
        "{error}"
    );
    assert!(error.contains("kept versions: 0, 1, 2"), "{error}");
    assert_eq!(log.state.table_index(Table::JobVersions), before);
}

#[test]
fn a_tag_name_is_unique_per_job_and_can_be_moved_only_after_it_is_unset() {
    let mut log = Log::new();
    log.versions(1..4); // 0, 1, 2
    assert_eq!(log.tag(0, "golden", true), None);
    let before = log.state.table_index(Table::JobVersions);
    let error = log.tag(1, "golden", true).unwrap();
    assert!(
        error.contains("tag \"golden\" already exists on a different version of the job"),
        "{error}"
    );
    assert_eq!(log.state.table_index(Table::JobVersions), before);
    assert!(log
        .state
        .job_version("default", "web", 1)
        .unwrap()
        .version_tag
        .is_none());

    // The same version again replaces the description.
    assert_eq!(log.tag(0, "golden", true), None);
    // The current version's tag shows on the job too.
    assert_eq!(log.tag(2, "now", true), None);
    let current = log.state.job("default", "web").unwrap();
    assert_eq!(current.version_tag.as_ref().unwrap().name, "now");

    // Unset by name: only the version carrying it.
    let error = log.tag(1, "golden", false).unwrap();
    assert!(
        error.contains("tag \"golden\" not found on job \"web\""),
        "{error}"
    );
    assert_eq!(log.tag(0, "golden", false), None);
    assert!(log
        .state
        .job_version_by_tag("default", "web", "golden")
        .is_none());
    assert_eq!(log.tag(1, "golden", true), None);
}

#[test]
fn a_tag_is_checked_when_applied_too() {
    let mut log = Log::new();
    log.versions(1..2);
    let long = "x".repeat(MAX_VERSION_TAG_DESCRIPTION_CHARS + 1);
    let error = log
        .apply(Command::JobVersionTag {
            namespace: "default".into(),
            job_id: "web".into(),
            version: 0,
            name: "n".into(),
            tag: Some(JobVersionTag {
                name: "n".into(),
                description: long,
                tagged_time: 1,
            }),
        })
        .unwrap();
    assert!(
        error.contains("Tagged version description must be under 1000 characters, currently 1001"),
        "{error}"
    );
    assert!(log.tag(0, "", true).unwrap().contains("name is required"));
    let error = log.tag(5, "n", true).unwrap();
    assert!(error.contains("at version 5 not found"), "{error}");
}

#[test]
fn a_new_version_starts_untagged_and_an_unchanged_resubmission_writes_nothing() {
    let mut log = Log::new();
    log.versions(1..2);
    assert_eq!(log.tag(0, "first", true), None);
    assert_eq!(log.stable(0, true), None);
    let stored = log.state.job("default", "web").unwrap();
    // Resubmitting what `job inspect` printed (tag, stable, indexes and all) is no change.
    let mut again = (*stored).clone();
    again.submit_time += 1;
    again.modify_index += 5;
    again.version_tag = Some(JobVersionTag {
        name: "other".into(),
        ..Default::default()
    });
    again.stable = false;
    assert_eq!(log.apply(register(again, None, None)), None);
    assert_eq!(log.kept(), vec![0]);
    assert_eq!(
        log.state
            .job("default", "web")
            .unwrap()
            .version_tag
            .as_ref()
            .unwrap()
            .name,
        "first"
    );
    // A changed spec carrying the old tag: a new version without it.
    let mut changed = (*stored).clone();
    changed.task_groups[0].count = 5;
    assert_eq!(log.apply(register(changed, None, None)), None);
    let current = log.state.job("default", "web").unwrap();
    assert_eq!(current.version, 1);
    assert!(current.version_tag.is_none());
    assert!(!current.stable);
}

#[test]
fn of_two_registrations_enforcing_the_same_index_only_the_first_is_applied() {
    let mut log = Log::new();
    log.versions(1..2);
    let seen = log.state.job("default", "web").unwrap().job_modify_index;
    // Both submitters read `seen`; both entries reach the log.
    assert_eq!(log.apply(register(job(2), Some(seen), None)), None);
    let after_first = log.state.clone();
    let error = log.apply(register(job(3), Some(seen), None)).unwrap();
    assert!(
        error.contains(&format!("enforcing job modify index {seen}")),
        "{error}"
    );
    assert!(
        error.contains(&format!("conflicting job modify index: {}", seen + 1)),
        "{error}"
    );
    // Nothing of the second was written: no version, no evaluation.
    let current = log.state.job("default", "web").unwrap();
    assert_eq!(current.version, 1);
    assert_eq!(current.task_groups[0].count, 2);
    assert!(log.state.eval("eval-3").is_none());
    for table in Table::ALL {
        assert_eq!(log.state.table_index(table), after_first.table_index(table));
    }
    // 0 means "only if new".
    let error = log.apply(register(job(4), Some(0), None)).unwrap();
    assert!(error.contains("enforcing job modify index 0"), "{error}");
    let mut other = job(1);
    other.id = "api".into();
    assert_eq!(log.apply(register(other, Some(0), None)), None);
}
