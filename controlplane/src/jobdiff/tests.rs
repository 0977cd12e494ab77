use std::time::Duration;

use super::*;
use crate::model::{Service, Task, TaskGroup};

fn job(args: &[&str]) -> Job {
    let mut config = serde_json::Map::new();
    config.insert("command".into(), "/bin/sleep".into());
    config.insert("args".into(), serde_json::json!(args));
    let mut job = Job {
        id: "web".into(),
        datacenters: vec!["dc1".into()],
        task_groups: vec![TaskGroup {
            name: "g".into(),
            count: 1,
            tasks: vec![Task {
                name: "t".into(),
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

#[test]
fn a_changed_config_argument_is_named_by_its_index() {
    let old = job(&["1", "old"]);
    let new = job(&["1", "new"]);
    let diff = job_diff(Some(&old), Some(&new), true).unwrap();
    assert_eq!(diff.diff_type, DiffType::Edited);
    let task = &diff.task_groups[0].tasks[0];
    assert_eq!(task.diff_type, DiffType::Edited);
    let config = &task.objects[0];
    assert_eq!(
        (config.name.as_str(), config.diff_type),
        ("Config", DiffType::Edited)
    );
    let changed: Vec<_> = config
        .fields
        .iter()
        .filter(|f| f.diff_type != DiffType::None)
        .collect();
    assert_eq!(changed.len(), 1);
    assert_eq!(
        (
            changed[0].name.as_str(),
            changed[0].old.as_str(),
            changed[0].new.as_str()
        ),
        ("args[1]", "old", "new")
    );
    // Contextual: the unchanged neighbours are there, unmarked.
    assert!(config
        .fields
        .iter()
        .any(|f| f.name == "command" && f.diff_type == DiffType::None && f.new == "/bin/sleep"));
    let mut annotated = diff.clone();
    annotate(&mut annotated, &BTreeMap::new());
    assert_eq!(
        annotated.task_groups[0].tasks[0].annotations,
        vec![words::FORCES_DESTRUCTIVE]
    );
}

#[test]
fn an_unchanged_job_is_no_difference_even_with_new_bookkeeping() {
    let old = job(&["1"]);
    let mut new = old.clone();
    new.version = 7;
    new.job_modify_index = 99;
    new.submit_time = 12345;
    new.stable = true;
    let diff = job_diff(Some(&old), Some(&new), true).unwrap();
    assert_eq!(diff.diff_type, DiffType::None, "{diff:#?}");
    assert!(diff.fields.is_empty() && diff.objects.is_empty());
    assert_eq!(diff.task_groups[0].diff_type, DiffType::None);
}

#[test]
fn a_new_job_is_added_with_all_its_fields() {
    let new = job(&["1"]);
    let diff = job_diff(None, Some(&new), false).unwrap();
    assert_eq!(diff.diff_type, DiffType::Added);
    assert_eq!(diff.id, "web");
    let names: Vec<_> = diff.fields.iter().map(|f| f.name.as_str()).collect();
    assert!(
        names.contains(&"Priority") && names.contains(&"Type"),
        "{names:?}"
    );
    assert!(!names.contains(&"Version") && !names.contains(&"ID"));
    assert!(diff.fields.iter().all(|f| f.diff_type == DiffType::Added));
    let dcs = &diff.objects[0];
    assert_eq!(
        (dcs.name.as_str(), dcs.diff_type),
        ("Datacenters", DiffType::Added)
    );
    assert_eq!(diff.task_groups[0].diff_type, DiffType::Added);
    let mut annotated = diff.clone();
    let desired = BTreeMap::from([(
        "g".to_string(),
        DesiredUpdates {
            place: 1,
            ..Default::default()
        },
    )]);
    annotate(&mut annotated, &desired);
    let group = &annotated.task_groups[0];
    assert_eq!(group.updates, BTreeMap::from([("create".to_string(), 1)]));
    assert_eq!(group.tasks[0].annotations, vec![words::FORCES_CREATE]);
    let count = group.fields.iter().find(|f| f.name == "Count").unwrap();
    assert_eq!(count.annotations, vec![words::FORCES_CREATE]);
}

#[test]
fn kill_timeout_and_services_update_in_place_count_forces_destroy() {
    let old = job(&["1"]);
    let mut new = old.clone();
    new.task_groups[0].count = 0;
    let task = &mut new.task_groups[0].tasks[0];
    task.kill_timeout = Some(Duration::from_secs(9));
    task.services.push(Service {
        name: "web".into(),
        tags: vec!["a".into()],
        ..Default::default()
    });
    let mut diff = job_diff(Some(&old), Some(&new), true).unwrap();
    annotate(&mut diff, &BTreeMap::new());
    let group = &diff.task_groups[0];
    let count = group.fields.iter().find(|f| f.name == "Count").unwrap();
    assert_eq!((count.old.as_str(), count.new.as_str()), ("1", "0"));
    assert_eq!(count.annotations, vec![words::FORCES_DESTROY]);
    let task = &group.tasks[0];
    assert_eq!(task.annotations, vec![words::FORCES_IN_PLACE], "{task:#?}");
    let service = task.objects.iter().find(|o| o.name == "Service").unwrap();
    assert_eq!(service.diff_type, DiffType::Added);
    let tags = service.objects.iter().find(|o| o.name == "Tags").unwrap();
    assert_eq!(tags.fields[0].new, "a");
}

#[test]
fn blocks_meta_and_constraints_are_named_as_nomad_names_them() {
    let old = job(&["1"]);
    let mut new = old.clone();
    new.meta.insert("owner".into(), "ops".into());
    new.constraints.push(crate::model::Constraint {
        l_target: "${attr.kernel.name}".into(),
        r_target: "linux".into(),
        operand: "=".into(),
    });
    let group = &mut new.task_groups[0];
    if let Some(u) = &mut group.update {
        u.max_parallel = Some(2);
    }
    let diff = job_diff(Some(&old), Some(&new), true).unwrap();
    let meta = diff
        .fields
        .iter()
        .find(|f| f.name == "Meta[owner]")
        .unwrap();
    assert_eq!(
        (meta.diff_type, meta.new.as_str()),
        (DiffType::Added, "ops")
    );
    let c = diff
        .objects
        .iter()
        .find(|o| o.name == "Constraint")
        .unwrap();
    assert_eq!(c.diff_type, DiffType::Added);
    assert!(c
        .fields
        .iter()
        .any(|f| f.name == "RTarget" && f.new == "linux"));
    let update = diff.task_groups[0]
        .objects
        .iter()
        .find(|o| o.name == "Update")
        .unwrap();
    assert_eq!(update.diff_type, DiffType::Edited);
    let mp = update
        .fields
        .iter()
        .find(|f| f.name == "MaxParallel")
        .unwrap();
    assert_eq!((mp.old.as_str(), mp.new.as_str()), ("1", "2"));
    assert!(update.fields.iter().all(|f| f.name != "Stagger"));
}

#[test]
fn jobs_with_different_ids_are_refused() {
    let a = job(&[]);
    let mut b = a.clone();
    b.id = "other".into();
    assert!(matches!(
        job_diff(Some(&a), Some(&b), false),
        Err(DiffError::DifferentIds(_, _))
    ));
}
