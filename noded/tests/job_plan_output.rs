//! Golden tests of what `job plan` and `job history -p` print, in Nomad's `+/-` shape, for
//! each update type. Inputs are fixed: two job versions diffed by `controlplane::jobdiff`,
//! annotated with the counts a dry run would give, rendered without colours. The files in
//! `tests/fixtures/plan/` hold the expected text; `NODED_BLESS_FIXTURES=1 cargo test -p noded
//! --test job_plan_output` rewrites them after an intended change (read the diff first).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use controlplane::jobdiff::{annotate, job_diff};
use controlplane::model::{
    AllocMetric, DesiredUpdates, Job, JobVersionTag, PeriodicConfig, Service, Task, TaskGroup,
};
use controlplane::server::plan::ZERO_TIME;
use controlplane::server::{JobPlanResponse, PlanAnnotations};
use noded::cli::job::diff::{format_job_diff, Style};
use noded::cli::job::history::format_versions;
use noded::cli::job::plan::{format_plan, PlanOutput};

const BLESS_ENV: &str = "NODED_BLESS_FIXTURES";
const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
const PLAIN: Style = Style { color: false };

fn job(count: i64, args: &[&str]) -> Job {
    let mut config = serde_json::Map::new();
    config.insert("command".into(), "/bin/sleep".into());
    config.insert("args".into(), serde_json::json!(args));
    let mut job = Job {
        id: "web".into(),
        datacenters: vec!["dc1".into()],
        task_groups: vec![TaskGroup {
            name: "cache".into(),
            count,
            tasks: vec![Task {
                name: "redis".into(),
                driver: "exec".into(),
                config,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    job.canonicalize();
    job
}

fn response(old: Option<&Job>, new: &Job, desired: DesiredUpdates) -> JobPlanResponse {
    let desired = BTreeMap::from([("cache".to_string(), desired)]);
    let mut diff = job_diff(old, Some(new), true).unwrap();
    annotate(&mut diff, &desired);
    JobPlanResponse {
        annotations: Some(PlanAnnotations {
            desired_tg_updates: desired,
            preempted_allocs: Vec::new(),
        }),
        job_modify_index: old.map_or(0, |_| 17),
        diff: Some(diff),
        next_periodic_launch: ZERO_TIME.to_string(),
        ..Default::default()
    }
}

fn output(verbose: bool) -> PlanOutput {
    PlanOutput {
        diff: true,
        verbose,
        style: PLAIN,
        run_args: String::new(),
        path: "web.nomad.hcl".into(),
        now_unix_nanos: T0,
    }
}

/// Compares `actual` with the fixture `name`, or writes it when blessing.
fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/plan")
        .join(format!("{name}.txt"));
    if std::env::var_os(BLESS_ENV).is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; bless with {BLESS_ENV}=1", path.display()));
    assert_eq!(
        actual, expected,
        "{name}: output changed; if intended, bless with {BLESS_ENV}=1"
    );
}

#[test]
fn create_a_new_job() {
    let new = job(2, &["1000"]);
    let r = response(
        None,
        &new,
        DesiredUpdates {
            place: 2,
            ..Default::default()
        },
    );
    assert_eq!(r.exit_code(), 1);
    let text = format_plan(&new, &r, &output(false));
    // A new job's own fields are shown only with -verbose, as Nomad does.
    assert!(text.starts_with("+ Job: \"web\"\n+ Task Group"), "{text}");
    assert!(
        text.contains("+ Task Group: \"cache\" (2 create)\n"),
        "{text}"
    );
    assert!(
        text.contains("  + Task: \"redis\" (forces create)\n"),
        "{text}"
    );
    assert!(
        text.contains("noded job run -check-index 0 web.nomad.hcl\n"),
        "{text}"
    );
    golden("create", &text);
    let verbose = format_plan(&new, &r, &output(true));
    assert!(
        verbose.starts_with("+ Job: \"web\"\n+ AllAtOnce: "),
        "{verbose}"
    );
    golden("create_verbose", &verbose);
}

#[test]
fn destroy_on_scale_down() {
    let old = job(3, &["1000"]);
    let new = job(1, &["1000"]);
    let r = response(
        Some(&old),
        &new,
        DesiredUpdates {
            stop: 2,
            in_place_update: 1,
            ..Default::default()
        },
    );
    assert_eq!(r.exit_code(), 1);
    let text = format_plan(&new, &r, &output(false));
    assert!(
        text.starts_with(
            "+/- Job: \"web\"\n+/- Task Group: \"cache\" (2 destroy, 1 in-place update)\n  +/- Count: \"3\" => \"1\" (forces destroy)\n      Task: \"redis\"\n"
        ),
        "{text}"
    );
    golden("destroy", &text);
}

#[test]
fn in_place_update() {
    let old = job(2, &["1000"]);
    let mut new = old.clone();
    let task = &mut new.task_groups[0].tasks[0];
    task.kill_timeout = Some(Duration::from_secs(30));
    task.services.push(Service {
        name: "redis".into(),
        tags: vec!["cache".into()],
        provider: "nomad".into(),
        ..Default::default()
    });
    let r = response(
        Some(&old),
        &new,
        DesiredUpdates {
            in_place_update: 2,
            ..Default::default()
        },
    );
    assert_eq!(r.exit_code(), 0);
    let text = format_plan(&new, &r, &output(false));
    assert!(
        text.contains("  +/- Task: \"redis\" (forces in-place update)\n"),
        "{text}"
    );
    assert!(
        text.contains("    +/- KillTimeout: \"5000000000\" => \"30000000000\"\n"),
        "{text}"
    );
    golden("in_place_update", &text);
}

#[test]
fn create_destroy_update() {
    let old = job(2, &["1", "old"]);
    let new = job(2, &["1", "new"]);
    let r = response(
        Some(&old),
        &new,
        DesiredUpdates {
            destructive_update: 2,
            ..Default::default()
        },
    );
    assert_eq!(r.exit_code(), 1);
    let text = format_plan(&new, &r, &output(false));
    let expected_diff = "\
+/- Job: \"web\"
+/- Task Group: \"cache\" (2 create/destroy update)
  +/- Task: \"redis\" (forces create/destroy update)
    +/- Config {
          args[0]: \"1\"
      +/- args[1]: \"old\" => \"new\"
          command: \"/bin/sleep\"
        }

Scheduler dry-run:
- All tasks successfully allocated.

Job Modify Index: 17
To submit the job with version verification run:

noded job run -check-index 17 web.nomad.hcl
";
    assert!(text.starts_with(expected_diff), "{text}");
    golden("create_destroy_update", &text);
}

#[test]
fn ignore_when_nothing_changed() {
    let old = job(2, &["1000"]);
    let r = response(
        Some(&old),
        &old,
        DesiredUpdates {
            ignore: 2,
            ..Default::default()
        },
    );
    assert_eq!(r.exit_code(), 0);
    let text = format_plan(&old, &r, &output(false));
    assert!(
        text.starts_with("Job: \"web\"\nTask Group: \"cache\" (2 ignore)\n  Task: \"redis\"\n\nScheduler dry-run:\n"),
        "{text}"
    );
    golden("ignore", &text);
}

#[test]
fn canary_and_migrate_counts_and_a_failed_placement() {
    let old = job(3, &["1", "old"]);
    let new = job(3, &["1", "new"]);
    let mut r = response(
        Some(&old),
        &new,
        DesiredUpdates {
            canary: 1,
            migrate: 1,
            ignore: 2,
            ..Default::default()
        },
    );
    r.failed_tg_allocs.insert(
        "cache".into(),
        AllocMetric {
            nodes_evaluated: 2,
            nodes_exhausted: 2,
            dimension_exhausted: [("memory".to_string(), 2)].into(),
            ..Default::default()
        },
    );
    assert_eq!(r.exit_code(), 1);
    let text = format_plan(&new, &r, &output(false));
    assert!(
        text.contains("+/- Task Group: \"cache\" (1 canary, 2 ignore, 1 migrate)\n"),
        "{text}"
    );
    assert!(text.contains(
        "- WARNING: Failed to place all allocations.\n  Task Group \"cache\" (failed to place 1 allocation):\n    * Resources exhausted on 2 nodes\n    * Dimension \"memory\" exhausted on 2 nodes\n\nJob Modify Index: 17"
    ), "{text}");
    golden("canary_migrate_failed", &text);
}

#[test]
fn periodic_job_shows_its_next_launch() {
    let mut new = job(1, &["1"]);
    new.periodic = Some(PeriodicConfig {
        spec: "0 * * * *".into(),
        ..Default::default()
    });
    new.canonicalize();
    let mut r = response(None, &new, DesiredUpdates::default());
    r.annotations = None;
    r.next_periodic_launch = "2026-01-01T01:00:00Z".into();
    let text = format_plan(&new, &r, &output(false));
    assert!(text.contains(
        "- All tasks successfully allocated.\n- If submitted now, next periodic launch would be at 2026-01-01T01:00:00Z (1h0m0s from now).\n"
    ), "{text}");
    assert_eq!(r.exit_code(), 0, "a periodic parent places nothing itself");
}

#[test]
fn history_p_shows_each_change_against_the_version_before() {
    let mut v0 = job(1, &["1", "old"]);
    v0.submit_time = T0;
    let mut v1 = job(1, &["1", "new"]);
    v1.version = 1;
    v1.submit_time = T0 + 60_000_000_000;
    v1.version_tag = Some(JobVersionTag {
        name: "golden".into(),
        description: "the new argument".into(),
        tagged_time: T0,
    });
    // Newest first, and Diffs[i] compares versions[i + 1] to versions[i], as the API answers.
    let versions = vec![v1.clone(), v0.clone()];
    let diffs = vec![job_diff(Some(&v0), Some(&v1), true).unwrap()];
    let text = format_versions(&versions, &diffs, false, PLAIN).unwrap();
    let expected = "\
Version         = 1
Stable          = false
Submit Date     = 2026-01-01T00:01:00Z
Tag Name        = golden
Tag Description = the new argument
Diff            = 
+/- Job: \"web\"
+/- Task Group: \"cache\"
  +/- Task: \"redis\"
    +/- Config {
          args[0]: \"1\"
      +/- args[1]: \"old\" => \"new\"
          command: \"/bin/sleep\"
        }

Version     = 0
Stable      = false
Submit Date = 2026-01-01T00:00:00Z
";
    assert_eq!(text, expected);
    golden("history_p", &text);
    // Colours only when asked: the same text wrapped in escapes.
    let coloured = format_job_diff(&diffs[0], false, Style { color: true });
    assert!(coloured.contains("\x1b[93m+/-\x1b[0m"), "{coloured:?}");
}
