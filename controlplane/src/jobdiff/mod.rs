//! The difference between two versions of a job, in Nomad's `structs.JobDiff` shape: what
//! `job plan` and `job history -p` print as `+/-` lines, and what `/v1/job/:id/plan` and
//! `/v1/job/:id/versions?diffs=true` answer.
//!
//! Pure: two jobs in, a tree of differences out. Which fields are compared and how nested
//! blocks are named is one table (`blocks.rs`) read by one walker (`flat.rs`), after Nomad's
//! `nomad/structs/diff.go`: a block's own scalar fields are compared as a flat map (Nomad's
//! `flatmap`, here over the job's API JSON), lists of blocks are matched by a key, by position
//! or as a set, and a task's driver `config` is flattened whole (`args[1]`, `port_map[0][http]`).
//! `annotate` then adds what the scheduler's dry run decided (Nomad's `scheduler.Annotate`):
//! the per-group update counts and whether a task's change is in place or destructive.

mod blocks;
mod flat;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::deployment::DesiredUpdates;
use crate::model::Job;

/// How an object or field differs between the old and the new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum DiffType {
    #[default]
    None,
    Added,
    Deleted,
    Edited,
}

impl DiffType {
    /// Nomad's order when sorting objects of one name: edited, added, deleted, none.
    fn rank(self) -> u8 {
        match self {
            DiffType::Edited => 0,
            DiffType::Added => 1,
            DiffType::Deleted => 2,
            DiffType::None => 3,
        }
    }
}

/// The difference of two jobs (Nomad's `JobDiff`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobDiff {
    #[serde(rename = "Type")]
    pub diff_type: DiffType,
    #[serde(rename = "ID")]
    pub id: String,
    pub fields: Vec<FieldDiff>,
    pub objects: Vec<ObjectDiff>,
    pub task_groups: Vec<TaskGroupDiff>,
}

/// The difference of one task group, with the update counts a plan adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskGroupDiff {
    #[serde(rename = "Type")]
    pub diff_type: DiffType,
    pub name: String,
    pub fields: Vec<FieldDiff>,
    pub objects: Vec<ObjectDiff>,
    pub tasks: Vec<TaskDiff>,
    /// "create", "destroy", "in-place update", … → how many allocations.
    pub updates: BTreeMap<String, u64>,
}

/// The difference of one task; `annotations` say whether it forces a new allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskDiff {
    #[serde(rename = "Type")]
    pub diff_type: DiffType,
    pub name: String,
    pub fields: Vec<FieldDiff>,
    pub objects: Vec<ObjectDiff>,
    pub annotations: Vec<String>,
}

/// The difference of a nested block (`Update`, `Service`, `Config`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ObjectDiff {
    #[serde(rename = "Type")]
    pub diff_type: DiffType,
    pub name: String,
    pub fields: Vec<FieldDiff>,
    pub objects: Vec<ObjectDiff>,
}

/// The difference of one scalar field, its values as Nomad prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct FieldDiff {
    #[serde(rename = "Type")]
    pub diff_type: DiffType,
    pub name: String,
    pub old: String,
    pub new: String,
    pub annotations: Vec<String>,
}

/// Why two jobs cannot be compared.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DiffError {
    #[error("can not diff jobs with different IDs: {0:?} and {1:?}")]
    DifferentIds(String, String),
}

/// Nomad's annotations on a task and a count, and its names for the update types.
pub mod words {
    pub const FORCES_CREATE: &str = "forces create";
    pub const FORCES_DESTROY: &str = "forces destroy";
    pub const FORCES_IN_PLACE: &str = "forces in-place update";
    pub const FORCES_DESTRUCTIVE: &str = "forces create/destroy update";

    pub const IGNORE: &str = "ignore";
    pub const CREATE: &str = "create";
    pub const DESTROY: &str = "destroy";
    pub const MIGRATE: &str = "migrate";
    pub const CANARY: &str = "canary";
    pub const IN_PLACE_UPDATE: &str = "in-place update";
    pub const DESTRUCTIVE_UPDATE: &str = "create/destroy update";
}

/// The difference from `old` to `new`; `None` on either side is a job added or deleted.
/// `contextual` keeps the unchanged fields of a changed block (Nomad's plan and history both
/// ask for it), so a reader sees what a changed line sits beside.
pub fn job_diff(
    old: Option<&Job>,
    new: Option<&Job>,
    contextual: bool,
) -> Result<JobDiff, DiffError> {
    if let (Some(o), Some(n)) = (old, new) {
        if o.id != n.id {
            return Err(DiffError::DifferentIds(o.id.clone(), n.id.clone()));
        }
    }
    let id = new.or(old).map(|j| j.id.clone()).unwrap_or_default();
    let old_v = old.map(to_value);
    let new_v = new.map(to_value);
    let diff_type = presence(old.is_some(), new.is_some());
    let fields = flat::field_diffs(
        &flat::primitives(old_v.as_ref(), &blocks::JOB),
        &flat::primitives(new_v.as_ref(), &blocks::JOB),
        false,
    );
    let objects = flat::children(&blocks::JOB, old_v.as_ref(), new_v.as_ref(), contextual);
    let task_groups = group_diffs(old, new, contextual);
    let mut diff = JobDiff {
        diff_type,
        id,
        fields,
        objects,
        task_groups,
    };
    if diff.diff_type == DiffType::None
        && (diff.fields.iter().any(|f| f.diff_type != DiffType::None)
            || diff.objects.iter().any(|o| o.diff_type != DiffType::None)
            || diff
                .task_groups
                .iter()
                .any(|g| g.diff_type != DiffType::None))
    {
        diff.diff_type = DiffType::Edited;
    }
    Ok(diff)
}

fn to_value<T: Serialize>(v: &T) -> serde_json::Value {
    // Serializing a model type into a `Value` cannot fail: every map key is a string.
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// Added, deleted, or (both present) none until a difference is found.
fn presence(old: bool, new: bool) -> DiffType {
    match (old, new) {
        (false, true) => DiffType::Added,
        (true, false) => DiffType::Deleted,
        _ => DiffType::None,
    }
}

/// Every name on either side, in order, with each side's value and how the named entry
/// changed (added, deleted, edited, or none).
#[allow(clippy::type_complexity)]
fn matched_by_name<'a>(
    olds: &'a BTreeMap<String, serde_json::Value>,
    news: &'a BTreeMap<String, serde_json::Value>,
) -> Vec<(
    &'a String,
    Option<&'a serde_json::Value>,
    Option<&'a serde_json::Value>,
    DiffType,
)> {
    let mut names: Vec<&String> = olds.keys().chain(news.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let (o, n) = (olds.get(name), news.get(name));
            let mut diff_type = presence(o.is_some(), n.is_some());
            if diff_type == DiffType::None && o != n {
                diff_type = DiffType::Edited;
            }
            (name, o, n, diff_type)
        })
        .collect()
}

/// Groups matched by name, in name order.
fn group_diffs(old: Option<&Job>, new: Option<&Job>, contextual: bool) -> Vec<TaskGroupDiff> {
    let by_name = |job: Option<&Job>| -> BTreeMap<String, serde_json::Value> {
        job.map(|j| {
            j.task_groups
                .iter()
                .map(|g| (g.name.clone(), to_value(g)))
                .collect()
        })
        .unwrap_or_default()
    };
    let (olds, news) = (by_name(old), by_name(new));
    matched_by_name(&olds, &news)
        .into_iter()
        .map(|(name, o, n, diff_type)| TaskGroupDiff {
            diff_type,
            name: name.clone(),
            fields: flat::field_diffs(
                &flat::primitives(o, &blocks::GROUP),
                &flat::primitives(n, &blocks::GROUP),
                false,
            ),
            objects: flat::children(&blocks::GROUP, o, n, contextual),
            tasks: task_diffs(o, n, contextual),
            updates: BTreeMap::new(),
        })
        .collect()
}

/// Tasks matched by name, in name order.
fn task_diffs(
    old: Option<&serde_json::Value>,
    new: Option<&serde_json::Value>,
    contextual: bool,
) -> Vec<TaskDiff> {
    let by_name = |group: Option<&serde_json::Value>| -> BTreeMap<String, serde_json::Value> {
        group
            .and_then(|g| g.get("Tasks"))
            .and_then(|t| t.as_array())
            .map(|tasks| {
                tasks
                    .iter()
                    .map(|t| {
                        let name = t.get("Name").and_then(|n| n.as_str()).unwrap_or_default();
                        (name.to_string(), t.clone())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (olds, news) = (by_name(old), by_name(new));
    matched_by_name(&olds, &news)
        .into_iter()
        .map(|(name, o, n, diff_type)| TaskDiff {
            diff_type,
            name: name.clone(),
            fields: flat::field_diffs(
                &flat::primitives(o, &blocks::TASK),
                &flat::primitives(n, &blocks::TASK),
                false,
            ),
            objects: flat::children(&blocks::TASK, o, n, contextual),
            annotations: Vec::new(),
        })
        .collect()
}

/// Adds a plan's per-group update counts to the diff and marks each changed task as forcing
/// an in-place or a destructive update (Nomad's `scheduler.Annotate`); a count change is
/// marked as forcing creates or destroys.
pub fn annotate(diff: &mut JobDiff, desired: &BTreeMap<String, DesiredUpdates>) {
    for group in &mut diff.task_groups {
        if let Some(d) = desired.get(&group.name) {
            let counts = [
                (words::IGNORE, d.ignore),
                (words::CREATE, d.place),
                (words::MIGRATE, d.migrate),
                (words::DESTROY, d.stop),
                (words::CANARY, d.canary),
                (words::IN_PLACE_UPDATE, d.in_place_update),
                (words::DESTRUCTIVE_UPDATE, d.destructive_update),
            ];
            for (word, n) in counts {
                if n != 0 {
                    group.updates.insert(word.to_string(), n);
                }
            }
        }
        if let Some(count) = group.fields.iter_mut().find(|f| f.name == "Count") {
            let parse = |s: &str| s.parse::<i64>().unwrap_or(0);
            let (old, new) = (parse(&count.old), parse(&count.new));
            if old < new {
                count.annotations.push(words::FORCES_CREATE.to_string());
            } else if new < old {
                count.annotations.push(words::FORCES_DESTROY.to_string());
            }
        }
        let parent = group.diff_type;
        for task in &mut group.tasks {
            if let Some(note) = task_annotation(task, parent) {
                task.annotations.push(note.to_string());
            }
        }
    }
}

/// Whether a task's change forces a new allocation: any field but `KillTimeout`, any block
/// but services, constraints, affinities, spreads and log settings other than `Disabled`.
fn task_annotation(task: &TaskDiff, parent: DiffType) -> Option<&'static str> {
    if task.diff_type == DiffType::None {
        return None;
    }
    if matches!(parent, DiffType::Added | DiffType::Deleted) {
        match task.diff_type {
            DiffType::Added => return Some(words::FORCES_CREATE),
            DiffType::Deleted => return Some(words::FORCES_DESTROY),
            _ => {}
        }
    }
    let destructive_field = task.fields.iter().any(|f| f.name != "KillTimeout");
    let destructive_object = task.objects.iter().any(|o| match o.name.as_str() {
        "Service" | "Constraint" | "Affinity" | "Spread" => false,
        "LogConfig" => o.fields.iter().any(|f| f.name == "Disabled"),
        _ => true,
    });
    Some(if destructive_field || destructive_object {
        words::FORCES_DESTRUCTIVE
    } else {
        words::FORCES_IN_PLACE
    })
}
