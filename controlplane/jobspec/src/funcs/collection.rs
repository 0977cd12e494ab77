//! Collection functions: `chunklist`, `coalesce`, `coalescelist`, `compact`, `concat`,
//! `contains`, `distinct`, `element`, `flatten`, `index`, `keys`, `values`, `length`,
//! `lookup`, `merge`, `range`, `reverse`, `setintersection`, `setunion`, `setproduct`,
//! `slice`, `sort`, `zipmap`. Sets are lists without duplicates, in first-seen order.

use std::collections::BTreeMap;

use super::{list_of, too_many, Args, MAX_ELEMENTS, R};
use crate::value::{values_equal, Number, Value};

pub(super) fn chunklist(a: Args<'_>) -> R {
    let items = a.list(0)?;
    let size = a.int(1)?;
    let Ok(size) = usize::try_from(size) else {
        return Err("the chunk size must not be negative".into());
    };
    if size == 0 {
        return Ok(Value::List(vec![Value::List(items)]));
    }
    Ok(Value::List(
        items
            .chunks(size)
            .map(|c| Value::List(c.to_vec()))
            .collect(),
    ))
}

fn is_null_or_empty(v: &Value) -> bool {
    v.is_null() || matches!(v, Value::String(s) if s.is_empty())
}

pub(super) fn coalesce(a: Args<'_>) -> R {
    a.into_values()
        .into_iter()
        .find(|v| !is_null_or_empty(v))
        .ok_or_else(|| "every argument is null or empty".to_string())
}

pub(super) fn coalescelist(a: Args<'_>) -> R {
    for v in a.into_values() {
        if !list_of(&v)?.is_empty() {
            return Ok(v);
        }
    }
    Err("every list is empty".into())
}

pub(super) fn compact(a: Args<'_>) -> R {
    let items = a.list(0)?;
    Ok(Value::List(
        items.into_iter().filter(|v| !is_null_or_empty(v)).collect(),
    ))
}

pub(super) fn concat(a: Args<'_>) -> R {
    let mut out = Vec::new();
    for (i, l) in a.rest(0).iter().enumerate() {
        out.extend(list_of(l).map_err(|m| format!("argument {}: {m}", i + 1))?);
        if out.len() > MAX_ELEMENTS {
            return Err(too_many());
        }
    }
    Ok(Value::List(out))
}

pub(super) fn contains(a: Args<'_>) -> R {
    let wanted = a.get(1)?;
    Ok(Value::Bool(
        a.list(0)?.iter().any(|v| values_equal(v, wanted)),
    ))
}

pub(super) fn distinct(a: Args<'_>) -> R {
    Ok(Value::List(dedup(a.list(0)?)))
}

/// `element(list, i)`: the index wraps around, as in Terraform.
pub(super) fn element(a: Args<'_>) -> R {
    let items = a.list(0)?;
    if items.is_empty() {
        return Err("cannot take an element of an empty list".into());
    }
    let i = usize::try_from(a.int(1)?).map_err(|_| "the index must not be negative".to_string())?;
    Ok(items[i % items.len()].clone())
}

pub(super) fn flatten(a: Args<'_>) -> R {
    let mut out = Vec::new();
    flatten_into(a.get(0)?, &mut out)?;
    Ok(Value::List(out))
}

fn flatten_into(v: &Value, out: &mut Vec<Value>) -> Result<(), String> {
    let Value::List(items) = v else {
        return Err(format!("a list is required, got {}", v.describe()));
    };
    for i in items {
        if matches!(i, Value::List(_)) {
            flatten_into(i, out)?;
        } else {
            out.push(i.clone());
        }
        if out.len() > MAX_ELEMENTS {
            return Err(too_many());
        }
    }
    Ok(())
}

pub(super) fn index(a: Args<'_>) -> R {
    let wanted = a.get(1)?;
    a.list(0)?
        .iter()
        .position(|v| values_equal(v, wanted))
        .map(|i| Value::int(i as i64))
        .ok_or_else(|| "the value is not in the list".to_string())
}

pub(super) fn keys(a: Args<'_>) -> R {
    match a.get(0)? {
        Value::Object(m) => Ok(Value::List(m.keys().map(Value::string).collect())),
        other => Err(format!("keys needs a map, got {}", other.describe())),
    }
}

pub(super) fn values(a: Args<'_>) -> R {
    match a.get(0)? {
        Value::Object(m) => Ok(Value::List(m.values().cloned().collect())),
        other => Err(format!("values needs a map, got {}", other.describe())),
    }
}

pub(super) fn length(a: Args<'_>) -> R {
    match a.get(0)? {
        Value::List(l) => Ok(Value::int(l.len() as i64)),
        Value::Object(m) => Ok(Value::int(m.len() as i64)),
        Value::String(s) => Ok(Value::int(s.chars().count() as i64)),
        other => Err(format!(
            "length needs a list, map or string, got {}",
            other.describe()
        )),
    }
}

/// `lookup(map, key[, default])`.
pub(super) fn lookup(a: Args<'_>) -> R {
    let key = a.str(1)?;
    let Value::Object(m) = a.get(0)? else {
        return Err(format!("lookup needs a map, got {}", a.get(0)?.describe()));
    };
    match (m.get(&key), a.rest(2).first()) {
        (Some(v), _) => Ok(v.clone()),
        (None, Some(d)) => Ok(d.clone()),
        (None, None) => Err(format!(
            "there is no key {key:?}; pass a default as the third argument"
        )),
    }
}

/// `merge(maps…)`: later keys win; null arguments are skipped.
pub(super) fn merge(a: Args<'_>) -> R {
    let mut out = BTreeMap::new();
    for (i, v) in a.into_values().into_iter().enumerate() {
        match v {
            Value::Object(m) => out.extend(m),
            Value::Null => {}
            other => {
                return Err(format!(
                    "argument {}: merge needs maps, got {}",
                    i + 1,
                    other.describe()
                ))
            }
        }
    }
    Ok(Value::Object(out))
}

/// `range(end)`, `range(start, end)`, `range(start, end, step)`.
pub(super) fn range(a: Args<'_>) -> R {
    let nums: Vec<f64> = (0..a.len()).map(|i| a.num(i)).collect::<Result<_, _>>()?;
    let (start, end, step) = match nums.as_slice() {
        [e] => (0.0, *e, 1.0),
        [s, e] => (*s, *e, if s <= e { 1.0 } else { -1.0 }),
        [s, e, st] => (*s, *e, *st),
        _ => return Err(format!("takes 1 to 3 arguments, got {}", nums.len())),
    };
    if step == 0.0 {
        return Err("the step must not be 0".into());
    }
    if (step > 0.0 && start > end) || (step < 0.0 && start < end) {
        return Err("the step goes away from the end".into());
    }
    let count = ((end - start) / step).ceil();
    if !count.is_finite() || count > MAX_ELEMENTS as f64 {
        return Err(too_many());
    }
    Ok(Value::List(
        (0..count as usize)
            .map(|i| Value::Number(Number::from_f64(start + step * i as f64)))
            .collect(),
    ))
}

pub(super) fn reverse(a: Args<'_>) -> R {
    let mut l = a.list(0)?;
    l.reverse();
    Ok(Value::List(l))
}

pub(super) fn setintersection(a: Args<'_>) -> R {
    let mut acc = dedup(a.list(0)?);
    for l in a.rest(1) {
        let other = list_of(l)?;
        acc.retain(|v| other.iter().any(|o| values_equal(o, v)));
    }
    Ok(Value::List(acc))
}

pub(super) fn setunion(a: Args<'_>) -> R {
    let mut all = Vec::new();
    for l in a.rest(0) {
        all.extend(list_of(l)?);
        if all.len() > MAX_ELEMENTS {
            return Err(too_many());
        }
    }
    Ok(Value::List(dedup(all)))
}

/// Every combination of one element from each list; the size is checked before building.
pub(super) fn setproduct(a: Args<'_>) -> R {
    let lists: Vec<Vec<Value>> = a.rest(0).iter().map(list_of).collect::<Result<_, _>>()?;
    let total = lists
        .iter()
        .try_fold(1usize, |acc, l| acc.checked_mul(l.len()))
        .unwrap_or(usize::MAX);
    if total > MAX_ELEMENTS {
        return Err(too_many());
    }
    let mut out: Vec<Vec<Value>> = vec![Vec::new()];
    for l in &lists {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                l.iter().map(move |v| {
                    let mut p = prefix.clone();
                    p.push(v.clone());
                    p
                })
            })
            .collect();
    }
    Ok(Value::List(out.into_iter().map(Value::List).collect()))
}

pub(super) fn slice(a: Args<'_>) -> R {
    let l = a.list(0)?;
    let (s, e) = (a.int(1)?, a.int(2)?);
    let range = usize::try_from(s).ok().zip(usize::try_from(e).ok());
    match range.and_then(|(s, e)| l.get(s..e)) {
        Some(items) => Ok(Value::List(items.to_vec())),
        None => Err(format!(
            "slice({s}, {e}) is out of range for a list of {} elements",
            l.len()
        )),
    }
}

/// `sort(list)`: strings, in lexical order.
pub(super) fn sort(a: Args<'_>) -> R {
    let mut strs: Vec<String> = a
        .list(0)?
        .iter()
        .map(Value::to_str)
        .collect::<Result<_, _>>()?;
    strs.sort();
    Ok(Value::List(strs.into_iter().map(Value::String).collect()))
}

pub(super) fn zipmap(a: Args<'_>) -> R {
    let (k, v) = (a.list(0)?, a.list(1)?);
    if k.len() != v.len() {
        return Err(format!("{} keys but {} values", k.len(), v.len()));
    }
    let mut out = BTreeMap::new();
    for (k, v) in k.iter().zip(v) {
        out.insert(k.to_str()?, v);
    }
    Ok(Value::Object(out))
}

fn dedup(items: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for v in items {
        if !out.iter().any(|o| values_equal(o, &v)) {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{i, l, run, s};
    use crate::value::Value;

    #[test]
    fn collection_functions() {
        let abc = l(vec![s("a"), s("b"), s("c")]);
        assert_eq!(
            run("chunklist", vec![abc.clone(), i(2)]).unwrap(),
            l(vec![l(vec![s("a"), s("b")]), l(vec![s("c")])])
        );
        assert_eq!(
            run("coalesce", vec![Value::Null, s(""), s("x")]).unwrap(),
            s("x")
        );
        assert_eq!(
            run("coalescelist", vec![l(vec![]), abc.clone()]).unwrap(),
            abc
        );
        assert_eq!(
            run("compact", vec![l(vec![s("a"), s(""), Value::Null])]).unwrap(),
            l(vec![s("a")])
        );
        assert_eq!(
            run("concat", vec![l(vec![i(1)]), l(vec![i(2)])]).unwrap(),
            l(vec![i(1), i(2)])
        );
        assert_eq!(
            run("contains", vec![abc.clone(), s("b")]).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            run("distinct", vec![l(vec![i(1), i(1), i(2)])]).unwrap(),
            l(vec![i(1), i(2)])
        );
        assert_eq!(run("element", vec![abc.clone(), i(4)]).unwrap(), s("b"));
        assert_eq!(
            run("flatten", vec![l(vec![l(vec![i(1), l(vec![i(2)])]), i(3)])]).unwrap(),
            l(vec![i(1), i(2), i(3)])
        );
        assert_eq!(run("index", vec![abc.clone(), s("c")]).unwrap(), i(2));
        let m = Value::Object(
            [("a".to_string(), i(1)), ("b".to_string(), i(2))]
                .into_iter()
                .collect(),
        );
        assert_eq!(
            run("keys", vec![m.clone()]).unwrap(),
            l(vec![s("a"), s("b")])
        );
        assert_eq!(run("values", vec![m.clone()]).unwrap(), l(vec![i(1), i(2)]));
        assert_eq!(run("length", vec![m.clone()]).unwrap(), i(2));
        assert_eq!(run("lookup", vec![m.clone(), s("z"), i(9)]).unwrap(), i(9));
        assert!(run("lookup", vec![m.clone(), s("z")]).is_err());
        assert_eq!(
            run(
                "merge",
                vec![
                    m.clone(),
                    Value::Object([("a".to_string(), i(5))].into_iter().collect())
                ]
            )
            .unwrap()
            .to_json()
            .unwrap(),
            serde_json::json!({"a": 5, "b": 2})
        );
        assert_eq!(run("range", vec![i(3)]).unwrap(), l(vec![i(0), i(1), i(2)]));
        assert_eq!(
            run("range", vec![i(1), i(7), i(3)]).unwrap(),
            l(vec![i(1), i(4)])
        );
        assert!(run("range", vec![i(1_000_000_000)])
            .unwrap_err()
            .contains("more than"));
        assert_eq!(
            run("reverse", vec![abc.clone()]).unwrap(),
            l(vec![s("c"), s("b"), s("a")])
        );
        assert_eq!(
            run(
                "setintersection",
                vec![abc.clone(), l(vec![s("b"), s("z")])]
            )
            .unwrap(),
            l(vec![s("b")])
        );
        assert_eq!(
            run("setunion", vec![l(vec![s("a")]), l(vec![s("a"), s("b")])]).unwrap(),
            l(vec![s("a"), s("b")])
        );
        assert_eq!(
            run("setproduct", vec![l(vec![s("a"), s("b")]), l(vec![i(1)])]).unwrap(),
            l(vec![l(vec![s("a"), i(1)]), l(vec![s("b"), i(1)])])
        );
        assert_eq!(
            run("slice", vec![abc.clone(), i(1), i(3)]).unwrap(),
            l(vec![s("b"), s("c")])
        );
        assert_eq!(
            run("sort", vec![l(vec![s("b"), s("a")])]).unwrap(),
            l(vec![s("a"), s("b")])
        );
        assert_eq!(
            run("zipmap", vec![l(vec![s("k")]), l(vec![i(1)])])
                .unwrap()
                .to_json()
                .unwrap(),
            serde_json::json!({"k": 1})
        );
    }
}
