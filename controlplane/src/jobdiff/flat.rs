//! The walker: flattens blocks of a job's API JSON into `name → value` maps (Nomad's
//! `flatmap`), compares them field by field, and descends into the nested blocks the table
//! in `blocks.rs` names.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::Value;

use super::blocks::{Block, Kind};
use super::{DiffType, FieldDiff, ObjectDiff};

type Flat = BTreeMap<String, String>;

/// A scalar as Nomad prints it (`true`, `50`, `5000000000`, the string itself); `None` for
/// null (an unset optional field, which Nomad leaves out).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// A block's own scalar fields, minus its filter, plus its string maps as `Meta[key]`.
pub(super) fn primitives(v: Option<&Value>, block: &Block) -> Flat {
    let mut out = Flat::new();
    let Some(Value::Object(fields)) = v else {
        return out;
    };
    for (name, value) in fields {
        if block.filter.contains(&name.as_str()) {
            continue;
        }
        if let Some(s) = scalar(value) {
            out.insert(name.clone(), s);
        } else if let (true, Value::Object(map)) = (block.maps.contains(&name.as_str()), value) {
            for (k, mv) in map {
                if let Some(s) = scalar(mv) {
                    out.insert(format!("{name}[{k}]"), s);
                }
            }
        }
    }
    out
}

/// Everything under `v`, maps as `key[sub]` and lists as `key[0]` (a driver's `config`).
pub(super) fn full(v: Option<&Value>) -> Flat {
    fn walk(prefix: &str, v: &Value, out: &mut Flat) {
        match v {
            Value::Object(map) => {
                for (k, sub) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}[{k}]")
                    };
                    walk(&key, sub, out);
                }
            }
            Value::Array(items) => {
                for (i, sub) in items.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), sub, out);
                }
            }
            Value::Null => {
                out.insert(prefix.to_string(), "nil".to_string());
            }
            other => {
                out.insert(prefix.to_string(), scalar(other).unwrap_or_default());
            }
        }
    }
    let mut out = Flat::new();
    if let Some(v) = v {
        walk("", v, &mut out);
    }
    out
}

fn field_diff(name: &str, old: &str, new: &str, contextual: bool) -> Option<FieldDiff> {
    let diff_type = if old == new {
        if !contextual {
            return None;
        }
        DiffType::None
    } else if old.is_empty() {
        DiffType::Added
    } else if new.is_empty() {
        DiffType::Deleted
    } else {
        DiffType::Edited
    };
    let keep = |s: &str, side: bool| if side { s.to_string() } else { String::new() };
    Some(FieldDiff {
        diff_type,
        name: name.to_string(),
        old: keep(old, diff_type != DiffType::Added),
        new: keep(new, diff_type != DiffType::Deleted),
        annotations: Vec::new(),
    })
}

/// Field by field, in name order; `contextual` keeps the unchanged ones.
pub(super) fn field_diffs(old: &Flat, new: &Flat, contextual: bool) -> Vec<FieldDiff> {
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let o = old.get(name).map(String::as_str).unwrap_or("");
            let n = new.get(name).map(String::as_str).unwrap_or("");
            field_diff(name, o, n, contextual)
        })
        .collect()
}

fn non_null(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// One block: `None` when both sides are equal (or both absent).
pub(super) fn object_diff(
    block: &Block,
    old: Option<&Value>,
    new: Option<&Value>,
    contextual: bool,
) -> Option<ObjectDiff> {
    let (old, new) = (non_null(old), non_null(new));
    if old == new {
        return None;
    }
    let fields = field_diffs(&primitives(old, block), &primitives(new, block), contextual);
    if block.children.is_empty() {
        // Nomad's `primitiveObjectDiff`: the kind follows from the fields alone, and a block
        // whose compared fields are all equal is no difference.
        let any = |t: DiffType| fields.iter().any(|f| f.diff_type == t);
        let diff_type = if any(DiffType::Edited) || (any(DiffType::Added) && any(DiffType::Deleted))
        {
            DiffType::Edited
        } else if any(DiffType::Added) {
            DiffType::Added
        } else if any(DiffType::Deleted) {
            DiffType::Deleted
        } else {
            return None;
        };
        return Some(ObjectDiff {
            diff_type,
            name: block.name.to_string(),
            fields,
            objects: Vec::new(),
        });
    }
    let diff_type = match (old, new) {
        (None, Some(_)) => DiffType::Added,
        (Some(_), None) => DiffType::Deleted,
        _ => DiffType::Edited,
    };
    Some(ObjectDiff {
        diff_type,
        name: block.name.to_string(),
        fields,
        objects: children(block, old, new, contextual),
    })
}

/// The nested blocks of `block` that differ, in the table's order.
pub(super) fn children(
    block: &Block,
    old: Option<&Value>,
    new: Option<&Value>,
    contextual: bool,
) -> Vec<ObjectDiff> {
    let mut out = Vec::new();
    for child in block.children {
        let o = old.and_then(|v| v.get(child.field));
        let n = new.and_then(|v| v.get(child.field));
        match &child.kind {
            Kind::One(b) => out.extend(object_diff(b, o, n, contextual)),
            Kind::Strings {
                name,
                keep_unchanged,
            } => {
                if let Some(d) = string_set_diff(o, n, name, contextual) {
                    if *keep_unchanged || d.diff_type != DiffType::None {
                        out.push(d);
                    }
                }
            }
            Kind::Set(b) => out.extend(sorted(set_diff(b, o, n, contextual))),
            Kind::Keyed(b, key) => out.extend(sorted(keyed_diff(b, key, o, n, contextual))),
            Kind::Indexed(b) => out.extend(sorted(indexed_diff(b, o, n, contextual))),
            Kind::Map(b) => out.extend(map_diff(b, o, n, contextual)),
            Kind::Flat(name) => out.extend(flat_diff(name, o, n, contextual)),
        }
    }
    out
}

fn items(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A list as a set: identical members match (and are no difference), the rest are added or
/// deleted (Nomad's hash-keyed `primitiveObjectSetDiff`).
fn set_diff(
    block: &Block,
    old: Option<&Value>,
    new: Option<&Value>,
    contextual: bool,
) -> Vec<ObjectDiff> {
    let (old, new) = (items(old), items(new));
    let mut out = Vec::new();
    for o in old.iter().filter(|o| !new.contains(o)) {
        out.extend(object_diff(block, Some(o), None, contextual));
    }
    for n in new.iter().filter(|n| !old.contains(n)) {
        out.extend(object_diff(block, None, Some(n), contextual));
    }
    out
}

/// A list matched by the values of `key`'s fields (a check by name, a port by label).
fn keyed_diff(
    block: &Block,
    key: &[&str],
    old: Option<&Value>,
    new: Option<&Value>,
    contextual: bool,
) -> Vec<ObjectDiff> {
    let by_key = |list: &[Value]| -> BTreeMap<String, Value> {
        list.iter()
            .map(|v| {
                let k: Vec<String> = key
                    .iter()
                    .map(|f| v.get(*f).and_then(scalar).unwrap_or_default())
                    .collect();
                (k.join("\u{0}"), v.clone())
            })
            .collect()
    };
    pair_up(block, &by_key(items(old)), &by_key(items(new)), contextual)
}

fn pair_up(
    block: &Block,
    old: &BTreeMap<String, Value>,
    new: &BTreeMap<String, Value>,
    contextual: bool,
) -> Vec<ObjectDiff> {
    let mut out = Vec::new();
    for (k, o) in old {
        out.extend(object_diff(block, Some(o), new.get(k), contextual));
    }
    for (_, n) in new.iter().filter(|(k, _)| !old.contains_key(*k)) {
        out.extend(object_diff(block, None, Some(n), contextual));
    }
    out
}

/// A list matched by position.
fn indexed_diff(
    block: &Block,
    old: Option<&Value>,
    new: Option<&Value>,
    contextual: bool,
) -> Vec<ObjectDiff> {
    let (old, new) = (items(old), items(new));
    (0..old.len().max(new.len()))
        .filter_map(|i| object_diff(block, old.get(i), new.get(i), contextual))
        .collect()
}

/// An object of label → block (a group's volumes).
fn map_diff(
    block: &Block,
    old: Option<&Value>,
    new: Option<&Value>,
    contextual: bool,
) -> Vec<ObjectDiff> {
    let entries = |v: Option<&Value>| -> BTreeMap<String, Value> {
        v.and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    };
    pair_up(block, &entries(old), &entries(new), contextual)
}

/// A free-form block flattened whole: a task's driver `config`, a check's `header`.
fn flat_diff(
    name: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    contextual: bool,
) -> Option<ObjectDiff> {
    let empty = |v: Option<&Value>| match non_null(v) {
        None => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(_) => false,
    };
    let (old, new) = (non_null(old), non_null(new));
    if old == new || (empty(old) && empty(new)) {
        return None;
    }
    let diff_type = if empty(old) {
        DiffType::Added
    } else if empty(new) {
        DiffType::Deleted
    } else {
        DiffType::Edited
    };
    Some(ObjectDiff {
        diff_type,
        name: name.to_string(),
        fields: field_diffs(&full(old), &full(new), contextual),
        objects: Vec::new(),
    })
}

/// A list of strings as a set (datacenters, tags); with `contextual` the unchanged members
/// are listed too, and an unchanged non-empty set is a `None` object.
fn string_set_diff(
    old: Option<&Value>,
    new: Option<&Value>,
    name: &str,
    contextual: bool,
) -> Option<ObjectDiff> {
    let set = |v: Option<&Value>| -> std::collections::BTreeSet<String> {
        items(v).iter().filter_map(scalar).collect()
    };
    let (old, new) = (set(old), set(new));
    if old == new && !contextual {
        return None;
    }
    let mut fields = Vec::new();
    let removed = old.iter().any(|o| !new.contains(o));
    let added = new.iter().any(|n| !old.contains(n));
    for o in &old {
        if !new.contains(o) {
            fields.extend(field_diff(name, o, "", contextual));
        } else if contextual {
            fields.extend(field_diff(name, o, o, contextual));
        }
    }
    for n in new.iter().filter(|n| !old.contains(*n)) {
        fields.extend(field_diff(name, "", n, contextual));
    }
    fields.sort_by(field_cmp);
    let diff_type = match (added, removed) {
        (true, true) => DiffType::Edited,
        (true, false) => DiffType::Added,
        (false, true) => DiffType::Deleted,
        (false, false) if fields.is_empty() => return None,
        (false, false) => DiffType::None,
    };
    Some(ObjectDiff {
        diff_type,
        name: name.to_string(),
        fields,
        objects: Vec::new(),
    })
}

fn field_cmp(a: &FieldDiff, b: &FieldDiff) -> Ordering {
    (&a.name, &a.old, &a.new).cmp(&(&b.name, &b.old, &b.new))
}

/// Nomad's `ObjectDiff.Less`: by name, then kind (edited first), then how many fields and
/// objects, then the fields themselves.
pub(super) fn object_cmp(a: &ObjectDiff, b: &ObjectDiff) -> Ordering {
    a.name
        .cmp(&b.name)
        .then(a.diff_type.rank().cmp(&b.diff_type.rank()))
        .then(a.fields.len().cmp(&b.fields.len()))
        .then(a.objects.len().cmp(&b.objects.len()))
        .then_with(|| {
            a.fields
                .iter()
                .zip(&b.fields)
                .map(|(x, y)| field_cmp(x, y))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        })
        .then_with(|| {
            a.objects
                .iter()
                .zip(&b.objects)
                .map(|(x, y)| object_cmp(x, y))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        })
}

fn sorted(mut diffs: Vec<ObjectDiff>) -> Vec<ObjectDiff> {
    diffs.sort_by(object_cmp);
    diffs
}
