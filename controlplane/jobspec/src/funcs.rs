//! The HCL function library of Nomad's jobspec (hcl-rs ships none), following go-cty's
//! stdlib semantics. `try`, `can` and `convert` take unevaluated arguments and live in the
//! evaluator. Filesystem functions work only when the caller allows them
//! ([`FuncCtx::allow_fs`]); a server parsing a submitted job never does.
//!
//! Not provided (each is an error naming it): `bcrypt`, `rsadecrypt`, `yamldecode`,
//! `yamlencode`, `cidrhost`, `cidrnetmask`, `cidrsubnet`, `cidrsubnets`, `formatdate`,
//! `timeadd`, `fileset`.
//!
//! Every function that builds something large checks a bound first (`range` length, `format`
//! width, `setproduct` size), so a hostile spec cannot make the server allocate gigabytes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::value::{values_equal, Number, Value};

/// What functions may touch: the filesystem only when the caller allows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct FuncCtx {
    pub allow_fs: bool,
    pub base_dir: PathBuf,
}

/// Most elements a function may build.
const MAX_ELEMENTS: usize = 100_000;
/// Longest string a function may build.
const MAX_STRING: usize = 1024 * 1024;

type R = Result<Value, String>;

/// Functions Nomad has that noded does not, so the error can say so.
pub(crate) const NOT_PROVIDED: &[&str] = &["bcrypt", "rsadecrypt", "fileset"];

/// Every function the library provides.
pub(crate) const FUNCTIONS: &[&str] = &[
    "abs",
    "ceil",
    "floor",
    "signum",
    "log",
    "pow",
    "max",
    "min",
    "parseint",
    "chomp",
    "format",
    "formatlist",
    "indent",
    "join",
    "lower",
    "upper",
    "title",
    "replace",
    "regex_replace",
    "split",
    "strlen",
    "strrev",
    "substr",
    "trim",
    "trimprefix",
    "trimsuffix",
    "trimspace",
    "chunklist",
    "coalesce",
    "coalescelist",
    "compact",
    "concat",
    "contains",
    "distinct",
    "element",
    "flatten",
    "index",
    "keys",
    "values",
    "length",
    "lookup",
    "merge",
    "range",
    "reverse",
    "setintersection",
    "setunion",
    "setproduct",
    "slice",
    "sort",
    "zipmap",
    "base64encode",
    "base64decode",
    "yamlencode",
    "yamldecode",
    "cidrhost",
    "cidrnetmask",
    "cidrsubnet",
    "cidrsubnets",
    "timestamp",
    "formatdate",
    "timeadd",
    "jsonencode",
    "jsondecode",
    "urlencode",
    "csvdecode",
    "sha256",
    "sha512",
    "uuidv4",
    "uuidv5",
    "abspath",
    "basename",
    "dirname",
    "file",
    "filebase64",
    "fileexists",
    "pathexpand",
];

/// Calls a function by name; `None` when there is no such function.
pub(crate) fn call(name: &str, ctx: &FuncCtx, args: Vec<Value>) -> Option<R> {
    if !FUNCTIONS.contains(&name) && !NOT_PROVIDED.contains(&name) {
        return None;
    }
    Some(dispatch(name, ctx, Args(args)))
}

fn dispatch(name: &str, ctx: &FuncCtx, a: Args) -> R {
    match name {
        // numbers
        "abs" => a.exact(1).and_then(|a| num1(&a.0[0], |x| x.abs())),
        "ceil" => a.exact(1).and_then(|a| num1(&a.0[0], f64::ceil)),
        "floor" => a.exact(1).and_then(|a| num1(&a.0[0], f64::floor)),
        "signum" => a.exact(1).and_then(|a| num1(&a.0[0], |x| if x > 0.0 { 1.0 } else if x < 0.0 { -1.0 } else { 0.0 })),
        "log" => a.exact(2).and_then(|a| {
            let (x, b) = (a.num(0)?, a.num(1)?);
            finite(x.ln() / b.ln())
        }),
        "pow" => a.exact(2).and_then(|a| finite(a.num(0)?.powf(a.num(1)?))),
        "max" | "min" => {
            if a.0.is_empty() {
                Err("needs at least one number".into())
            } else {
                let mut best: Option<Number> = None;
                for (i, v) in a.0.iter().enumerate() {
                    let n = v.to_number().map_err(|m| format!("argument {}: {m}", i + 1))?;
                    best = Some(match best {
                        None => n,
                        Some(b) if (name == "max") == (n.as_f64() > b.as_f64()) => n,
                        Some(b) => b,
                    });
                }
                Ok(Value::Number(best.unwrap_or(Number::Int(0))))
            }
        }
        "parseint" => a.exact(2).and_then(|a| {
            let s = a.str(0)?;
            let base = a.int(1)?;
            if !(2..=62).contains(&base) {
                return Err(format!("base must be between 2 and 62 (got {base})"));
            }
            i64::from_str_radix(&s, base as u32)
                .map(Value::int)
                .map_err(|_| format!("{s:?} is not a base-{base} integer"))
        }),
        // strings
        "chomp" => a.exact(1).and_then(|a| {
            let s = a.str(0)?;
            let t = s.strip_suffix("\r\n").or_else(|| s.strip_suffix('\n')).or_else(|| s.strip_suffix('\r')).unwrap_or(&s);
            Ok(Value::string(t))
        }),
        "format" => a.at_least(1).and_then(|a| format(&a.str(0)?, &a.0[1..]).map(Value::String)),
        "formatlist" => a.at_least(1).and_then(|a| formatlist(&a)),
        "indent" => a.exact(2).and_then(|a| {
            let n = usize::try_from(a.int(0)?).map_err(|_| "the indent must not be negative".to_string())?;
            if n > 1000 {
                return Err("the indent must be at most 1000".into());
            }
            let pad = " ".repeat(n);
            let s = a.str(1)?;
            let out = s.split('\n').enumerate().map(|(i, l)| if i == 0 { l.to_string() } else { format!("{pad}{l}") }).collect::<Vec<_>>().join("\n");
            bounded(out)
        }),
        "join" => a.at_least(2).and_then(|a| {
            let sep = a.str(0)?;
            let mut parts = Vec::new();
            for (i, l) in a.0[1..].iter().enumerate() {
                for v in list_of(l).map_err(|m| format!("argument {}: {m}", i + 2))? {
                    parts.push(v.to_str()?);
                }
            }
            bounded(parts.join(&sep))
        }),
        "lower" => a.exact(1).and_then(|a| Ok(Value::String(a.str(0)?.to_lowercase()))),
        "upper" => a.exact(1).and_then(|a| Ok(Value::String(a.str(0)?.to_uppercase()))),
        "title" => a.exact(1).and_then(|a| {
            let s = a.str(0)?;
            let mut out = String::with_capacity(s.len());
            let mut start = true;
            for c in s.chars() {
                if start && c.is_alphabetic() {
                    out.extend(c.to_uppercase());
                } else {
                    out.push(c);
                }
                start = !c.is_alphanumeric();
            }
            Ok(Value::String(out))
        }),
        "replace" => a.exact(3).and_then(|a| {
            let (s, sub, rep) = (a.str(0)?, a.str(1)?, a.str(2)?);
            if sub.len() > 1 && sub.starts_with('/') && sub.ends_with('/') {
                regex_replace(&s, &sub[1..sub.len() - 1], &rep)
            } else if sub.is_empty() {
                Ok(Value::String(s))
            } else {
                bounded(s.replace(&sub, &rep))
            }
        }),
        "regex_replace" => a.exact(3).and_then(|a| regex_replace(&a.str(0)?, &a.str(1)?, &a.str(2)?)),
        "split" => a.exact(2).and_then(|a| {
            let (sep, s) = (a.str(0)?, a.str(1)?);
            let parts: Vec<Value> = if sep.is_empty() {
                s.chars().map(|c| Value::String(c.to_string())).collect()
            } else {
                s.split(sep.as_str()).map(Value::string).collect()
            };
            Ok(Value::List(parts))
        }),
        "strlen" => a.exact(1).and_then(|a| Ok(Value::int(a.str(0)?.chars().count() as i64))),
        "strrev" => a.exact(1).and_then(|a| Ok(Value::String(a.str(0)?.chars().rev().collect()))),
        "substr" => a.exact(3).and_then(|a| {
            let s: Vec<char> = a.str(0)?.chars().collect();
            let len = s.len() as i64;
            let mut off = a.int(1)?;
            let mut n = a.int(2)?;
            if off < 0 {
                off += len;
            }
            if off < 0 || off > len {
                return Err(format!("offset {} is out of range for a string of {len} characters", a.int(1)?));
            }
            if n < 0 || off + n > len {
                n = len - off;
            }
            Ok(Value::String(s[off as usize..(off + n) as usize].iter().collect()))
        }),
        "trim" => a.exact(2).and_then(|a| {
            let cut: Vec<char> = a.str(1)?.chars().collect();
            Ok(Value::String(a.str(0)?.trim_matches(|c| cut.contains(&c)).to_string()))
        }),
        "trimprefix" => a.exact(2).and_then(|a| {
            let (s, p) = (a.str(0)?, a.str(1)?);
            Ok(Value::String(s.strip_prefix(p.as_str()).unwrap_or(&s).to_string()))
        }),
        "trimsuffix" => a.exact(2).and_then(|a| {
            let (s, p) = (a.str(0)?, a.str(1)?);
            Ok(Value::String(s.strip_suffix(p.as_str()).unwrap_or(&s).to_string()))
        }),
        "trimspace" => a.exact(1).and_then(|a| Ok(Value::String(a.str(0)?.trim().to_string()))),
        // collections
        "chunklist" => a.exact(2).and_then(|a| {
            let items = list_of(&a.0[0])?;
            let size = a.int(1)?;
            if size < 0 {
                return Err("the chunk size must not be negative".into());
            }
            if size == 0 {
                return Ok(Value::List(vec![Value::List(items)]));
            }
            Ok(Value::List(items.chunks(size as usize).map(|c| Value::List(c.to_vec())).collect()))
        }),
        "coalesce" => a.at_least(1).and_then(|a| {
            a.0.into_iter()
                .find(|v| !v.is_null() && v != &Value::string(""))
                .ok_or_else(|| "every argument is null or empty".to_string())
        }),
        "coalescelist" => a.at_least(1).and_then(|a| {
            for v in a.0 {
                if !list_of(&v)?.is_empty() {
                    return Ok(v);
                }
            }
            Err("every list is empty".into())
        }),
        "compact" => a.exact(1).and_then(|a| {
            Ok(Value::List(list_of(&a.0[0])?.into_iter().filter(|v| !v.is_null() && v != &Value::string("")).collect()))
        }),
        "concat" => a.at_least(1).and_then(|a| {
            let mut out = Vec::new();
            for (i, l) in a.0.iter().enumerate() {
                out.extend(list_of(l).map_err(|m| format!("argument {}: {m}", i + 1))?);
                if out.len() > MAX_ELEMENTS {
                    return Err(too_many());
                }
            }
            Ok(Value::List(out))
        }),
        "contains" => a.exact(2).and_then(|a| Ok(Value::Bool(list_of(&a.0[0])?.iter().any(|v| values_equal(v, &a.0[1]))))),
        "distinct" => a.exact(1).and_then(|a| {
            let mut out: Vec<Value> = Vec::new();
            for v in list_of(&a.0[0])? {
                if !out.iter().any(|o| values_equal(o, &v)) {
                    out.push(v);
                }
            }
            Ok(Value::List(out))
        }),
        "element" => a.exact(2).and_then(|a| {
            let items = list_of(&a.0[0])?;
            if items.is_empty() {
                return Err("cannot take an element of an empty list".into());
            }
            let i = a.int(1)?;
            if i < 0 {
                return Err("the index must not be negative".into());
            }
            Ok(items[(i as usize) % items.len()].clone())
        }),
        "flatten" => a.exact(1).and_then(|a| {
            let mut out = Vec::new();
            flatten(&a.0[0], &mut out)?;
            Ok(Value::List(out))
        }),
        "index" => a.exact(2).and_then(|a| {
            list_of(&a.0[0])?
                .iter()
                .position(|v| values_equal(v, &a.0[1]))
                .map(|i| Value::int(i as i64))
                .ok_or_else(|| "the value is not in the list".to_string())
        }),
        "keys" => a.exact(1).and_then(|a| match &a.0[0] {
            Value::Object(m) => Ok(Value::List(m.keys().map(Value::string).collect())),
            other => Err(format!("keys needs a map, got {}", other.describe())),
        }),
        "values" => a.exact(1).and_then(|a| match &a.0[0] {
            Value::Object(m) => Ok(Value::List(m.values().cloned().collect())),
            other => Err(format!("values needs a map, got {}", other.describe())),
        }),
        "length" => a.exact(1).and_then(|a| match &a.0[0] {
            Value::List(l) => Ok(Value::int(l.len() as i64)),
            Value::Object(m) => Ok(Value::int(m.len() as i64)),
            Value::String(s) => Ok(Value::int(s.chars().count() as i64)),
            other => Err(format!("length needs a list, map or string, got {}", other.describe())),
        }),
        "lookup" => {
            if !(2..=3).contains(&a.0.len()) {
                Err(format!("takes 2 or 3 arguments, got {}", a.0.len()))
            } else {
                let key = a.str(1)?;
                match &a.0[0] {
                    Value::Object(m) => match (m.get(&key), a.0.get(2)) {
                        (Some(v), _) => Ok(v.clone()),
                        (None, Some(d)) => Ok(d.clone()),
                        (None, None) => Err(format!("there is no key {key:?}; pass a default as the third argument")),
                    },
                    other => Err(format!("lookup needs a map, got {}", other.describe())),
                }
            }
        }
        "merge" => {
            let mut out = BTreeMap::new();
            for (i, v) in a.0.into_iter().enumerate() {
                match v {
                    Value::Object(m) => out.extend(m),
                    Value::Null => {}
                    other => return Err(format!("argument {}: merge needs maps, got {}", i + 1, other.describe())),
                }
            }
            Ok(Value::Object(out))
        }
        "range" => range(&a),
        "reverse" => a.exact(1).and_then(|a| {
            let mut l = list_of(&a.0[0])?;
            l.reverse();
            Ok(Value::List(l))
        }),
        "setintersection" => a.at_least(1).and_then(|a| {
            let mut acc = dedup(list_of(&a.0[0])?);
            for l in &a.0[1..] {
                let other = list_of(l)?;
                acc.retain(|v| other.iter().any(|o| values_equal(o, v)));
            }
            Ok(Value::List(acc))
        }),
        "setunion" => a.at_least(1).and_then(|a| {
            let mut all = Vec::new();
            for l in &a.0 {
                all.extend(list_of(l)?);
                if all.len() > MAX_ELEMENTS {
                    return Err(too_many());
                }
            }
            Ok(Value::List(dedup(all)))
        }),
        "setproduct" => a.at_least(1).and_then(|a| {
            let lists: Vec<Vec<Value>> = a.0.iter().map(list_of).collect::<Result<_, _>>()?;
            let total = lists.iter().try_fold(1usize, |acc, l| acc.checked_mul(l.len())).unwrap_or(usize::MAX);
            if total > MAX_ELEMENTS {
                return Err(too_many());
            }
            let mut out: Vec<Vec<Value>> = vec![Vec::new()];
            for l in &lists {
                out = out.into_iter().flat_map(|prefix| l.iter().map(move |v| { let mut p = prefix.clone(); p.push(v.clone()); p })).collect();
            }
            Ok(Value::List(out.into_iter().map(Value::List).collect()))
        }),
        "slice" => a.exact(3).and_then(|a| {
            let l = list_of(&a.0[0])?;
            let (s, e) = (a.int(1)?, a.int(2)?);
            if s < 0 || e < s || e as usize > l.len() {
                return Err(format!("slice({s}, {e}) is out of range for a list of {} elements", l.len()));
            }
            Ok(Value::List(l[s as usize..e as usize].to_vec()))
        }),
        "sort" => a.exact(1).and_then(|a| {
            let mut strs: Vec<String> = list_of(&a.0[0])?.iter().map(Value::to_str).collect::<Result<_, _>>()?;
            strs.sort();
            Ok(Value::List(strs.into_iter().map(Value::String).collect()))
        }),
        "zipmap" => a.exact(2).and_then(|a| {
            let (k, v) = (list_of(&a.0[0])?, list_of(&a.0[1])?);
            if k.len() != v.len() {
                return Err(format!("{} keys but {} values", k.len(), v.len()));
            }
            let mut out = BTreeMap::new();
            for (k, v) in k.iter().zip(v) {
                out.insert(k.to_str()?, v);
            }
            Ok(Value::Object(out))
        }),
        // encoding
        "base64encode" => a.exact(1).and_then(|a| Ok(Value::String(base64_encode(a.str(0)?.as_bytes())))),
        "base64decode" => a.exact(1).and_then(|a| {
            let bytes = base64_decode(&a.str(0)?)?;
            String::from_utf8(bytes).map(Value::String).map_err(|_| "the decoded bytes are not UTF-8 text".to_string())
        }),
        "yamlencode" => a.exact(1).and_then(|a| super::funcs_more::yamlencode(&a.0[0])),
        "yamldecode" => a.exact(1).and_then(|a| super::funcs_more::yamldecode(&a.str(0)?)),
        "cidrhost" => a.exact(2).and_then(|a| super::funcs_more::cidrhost(&a.str(0)?, a.int(1)?)),
        "cidrnetmask" => a.exact(1).and_then(|a| super::funcs_more::cidrnetmask(&a.str(0)?)),
        "cidrsubnet" => a.exact(3).and_then(|a| super::funcs_more::cidrsubnet(&a.str(0)?, a.int(1)?, a.int(2)?)),
        "cidrsubnets" => a.at_least(1).and_then(|a| {
            let bits = (1..a.0.len()).map(|i| a.int(i)).collect::<Result<Vec<_>, _>>()?;
            super::funcs_more::cidrsubnets(&a.str(0)?, &bits)
        }),
        "timestamp" => a.exact(0).and_then(|_| super::funcs_more::timestamp(model::now_unix_nanos())),
        "formatdate" => a.exact(2).and_then(|a| super::funcs_more::formatdate(&a.str(0)?, &a.str(1)?)),
        "timeadd" => a.exact(2).and_then(|a| super::funcs_more::timeadd(&a.str(0)?, &a.str(1)?)),
        "jsonencode" => a.exact(1).and_then(|a| a.0[0].to_json().map(|j| Value::String(j.to_string()))),
        "jsondecode" => a.exact(1).and_then(|a| {
            serde_json::from_str::<serde_json::Value>(&a.str(0)?)
                .map(|j| Value::from_json(&j))
                .map_err(|e| format!("invalid JSON: {e}"))
        }),
        "urlencode" => a.exact(1).and_then(|a| {
            let s = a.str(0)?;
            let mut out = String::new();
            for b in s.bytes() {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            Ok(Value::String(out))
        }),
        "csvdecode" => a.exact(1).and_then(|a| csvdecode(&a.str(0)?)),
        // hashing and ids
        "sha256" => a.exact(1).and_then(|a| {
            use sha2::Digest;
            Ok(Value::String(hex(&sha2::Sha256::digest(a.str(0)?.as_bytes()))))
        }),
        "sha512" => a.exact(1).and_then(|a| {
            use sha2::Digest;
            Ok(Value::String(hex(&sha2::Sha512::digest(a.str(0)?.as_bytes()))))
        }),
        "uuidv4" => a.exact(0).map(|_| Value::String(uuid::Uuid::new_v4().to_string())),
        "uuidv5" => a.exact(2).and_then(|a| {
            let ns = match a.str(0)?.as_str() {
                "dns" => uuid::Uuid::NAMESPACE_DNS,
                "url" => uuid::Uuid::NAMESPACE_URL,
                "oid" => uuid::Uuid::NAMESPACE_OID,
                "x500" => uuid::Uuid::NAMESPACE_X500,
                other => uuid::Uuid::parse_str(other).map_err(|_| format!("namespace must be dns, url, oid, x500 or a UUID (got {other:?})"))?,
            };
            Ok(Value::String(uuid::Uuid::new_v5(&ns, a.str(1)?.as_bytes()).to_string()))
        }),
        // filesystem
        "abspath" | "basename" | "dirname" | "file" | "filebase64" | "fileexists" | "pathexpand" => fs(name, ctx, a),
        _ => Err(format!("noded does not provide {name}(); compute the value outside the jobspec and pass it with -var")),
    }
}

struct Args(Vec<Value>);

impl Args {
    fn exact(self, n: usize) -> Result<Args, String> {
        if self.0.len() == n {
            Ok(self)
        } else {
            Err(format!(
                "takes {n} argument{}, got {}",
                if n == 1 { "" } else { "s" },
                self.0.len()
            ))
        }
    }
    fn at_least(self, n: usize) -> Result<Args, String> {
        if self.0.len() >= n {
            Ok(self)
        } else {
            Err(format!(
                "takes at least {n} argument{}, got {}",
                if n == 1 { "" } else { "s" },
                self.0.len()
            ))
        }
    }
    fn str(&self, i: usize) -> Result<String, String> {
        self.0[i]
            .to_str()
            .map_err(|m| format!("argument {}: {m}", i + 1))
    }
    fn num(&self, i: usize) -> Result<f64, String> {
        self.0[i]
            .to_number()
            .map(Number::as_f64)
            .map_err(|m| format!("argument {}: {m}", i + 1))
    }
    fn int(&self, i: usize) -> Result<i64, String> {
        self.0[i]
            .to_i64()
            .map_err(|m| format!("argument {}: {m}", i + 1))
    }
}

fn num1(v: &Value, f: impl Fn(f64) -> f64) -> R {
    match v.to_number()? {
        Number::Int(i) if f(i as f64) == i as f64 => {
            Ok(Value::int(i).clone()).map(|_| Value::Number(Number::from_f64(f(i as f64))))
        }
        n => finite(f(n.as_f64())),
    }
}

fn finite(x: f64) -> R {
    if x.is_finite() {
        Ok(Value::Number(Number::from_f64(x)))
    } else {
        Err("the result is not a finite number".into())
    }
}

fn too_many() -> String {
    format!("the result would have more than {MAX_ELEMENTS} elements")
}

fn bounded(s: String) -> R {
    if s.len() > MAX_STRING {
        Err(format!(
            "the result would be longer than {MAX_STRING} bytes"
        ))
    } else {
        Ok(Value::String(s))
    }
}

fn list_of(v: &Value) -> Result<Vec<Value>, String> {
    match v {
        Value::List(l) => Ok(l.clone()),
        other => Err(format!("a list is required, got {}", other.describe())),
    }
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

fn flatten(v: &Value, out: &mut Vec<Value>) -> Result<(), String> {
    match v {
        Value::List(items) => {
            for i in items {
                if matches!(i, Value::List(_)) {
                    flatten(i, out)?;
                } else {
                    out.push(i.clone());
                }
                if out.len() > MAX_ELEMENTS {
                    return Err(too_many());
                }
            }
            Ok(())
        }
        other => Err(format!("a list is required, got {}", other.describe())),
    }
}

fn range(a: &Args) -> R {
    let nums: Vec<f64> = (0..a.0.len()).map(|i| a.num(i)).collect::<Result<_, _>>()?;
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

/// `format` with Go verbs: %s %d %f %g %t %v %q %x %X %o %b %e %%, with width, precision and flags.
fn format(fmt: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut next = 0usize;
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&f) = chars.peek() {
            if "-+ 0#".contains(f) {
                flags.push(f);
                chars.next();
            } else {
                break;
            }
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek() {
            if d.is_ascii_digit() {
                width.push(d);
                chars.next();
            } else {
                break;
            }
        }
        let mut prec: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek() {
                if d.is_ascii_digit() {
                    p.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let verb = chars.next().ok_or("the format ends with a lone %")?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let w: usize = if width.is_empty() {
            0
        } else {
            width.parse().map_err(|_| "bad width")?
        };
        if w > 1000 || prec.unwrap_or(0) > 1000 {
            return Err("width and precision must be at most 1000".into());
        }
        let arg = args
            .get(next)
            .ok_or_else(|| format!("the format needs more than {} arguments", args.len()))?;
        next += 1;
        let body = match verb {
            's' => {
                let s = arg.to_str()?;
                match prec {
                    Some(p) => s.chars().take(p).collect(),
                    None => s,
                }
            }
            'v' => arg.to_string(),
            'q' => serde_json::Value::String(arg.to_str()?).to_string(),
            't' => arg.to_bool()?.to_string(),
            'd' => {
                let i = arg.to_i64()?;
                if flags.contains('+') && i >= 0 {
                    format!("+{i}")
                } else {
                    i.to_string()
                }
            }
            'x' => format!("{:x}", arg.to_i64()?),
            'X' => format!("{:X}", arg.to_i64()?),
            'o' => format!("{:o}", arg.to_i64()?),
            'b' => format!("{:b}", arg.to_i64()?),
            'f' | 'F' => format!("{:.*}", prec.unwrap_or(6), arg.to_number()?.as_f64()),
            'e' => format!("{:.*e}", prec.unwrap_or(6), arg.to_number()?.as_f64()),
            'g' => arg.to_number()?.to_string(),
            other => return Err(format!("unsupported verb %{other}")),
        };
        let len = body.chars().count();
        if len < w {
            let pad = w - len;
            if flags.contains('-') {
                out.push_str(&body);
                out.push_str(&" ".repeat(pad));
            } else if flags.contains('0') && "dfFeg".contains(verb) {
                let (sign, digits) = body
                    .strip_prefix('-')
                    .map(|d| ("-", d))
                    .unwrap_or(("", body.as_str()));
                out.push_str(sign);
                out.push_str(&"0".repeat(pad));
                out.push_str(digits);
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(&body);
            }
        } else {
            out.push_str(&body);
        }
        if out.len() > MAX_STRING {
            return Err(format!(
                "the result would be longer than {MAX_STRING} bytes"
            ));
        }
    }
    if next < args.len() {
        return Err(format!(
            "{} arguments were given but the format uses {next}",
            args.len()
        ));
    }
    Ok(out)
}

fn formatlist(a: &Args) -> R {
    let fmt = a.str(0)?;
    let rest = &a.0[1..];
    let mut n: Option<usize> = None;
    for v in rest {
        if let Value::List(l) = v {
            match n {
                Some(m) if m != l.len() => {
                    return Err("all list arguments must have the same length".into())
                }
                _ => n = Some(l.len()),
            }
        }
    }
    let n = n.unwrap_or(1);
    if n > MAX_ELEMENTS {
        return Err(too_many());
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let row: Vec<Value> = rest
            .iter()
            .map(|v| match v {
                Value::List(l) => l[i].clone(),
                other => other.clone(),
            })
            .collect();
        out.push(Value::String(format(&fmt, &row)?));
    }
    Ok(Value::List(out))
}

fn regex_replace(s: &str, re: &str, rep: &str) -> R {
    let re = regex::RegexBuilder::new(re)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("invalid regular expression: {e}"))?;
    bounded(re.replace_all(s, rep).into_owned())
}

/// Whether `re` compiles as a regular expression (used by constraint validation).
pub(crate) fn regex_error(re: &str) -> Option<String> {
    regex::RegexBuilder::new(re)
        .size_limit(1 << 20)
        .build()
        .err()
        .map(|e| e.to_string())
}

fn csvdecode(s: &str) -> R {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            ('\r', false) => {}
            (c, _) => field.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    let mut it = rows.into_iter();
    let header = it.next().ok_or("the CSV has no header row")?;
    let mut out = Vec::new();
    for (i, r) in it.enumerate() {
        if r.len() != header.len() {
            return Err(format!(
                "row {} has {} fields, the header has {}",
                i + 2,
                r.len(),
                header.len()
            ));
        }
        out.push(Value::Object(
            header
                .iter()
                .cloned()
                .zip(r.into_iter().map(Value::String))
                .collect(),
        ));
    }
    Ok(Value::List(out))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub(crate) fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].iter().enumerate() {
            if i <= chunk.len() {
                out.push(B64[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let clean: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !clean.len().is_multiple_of(4) {
        return Err("not valid base64 (length is not a multiple of 4)".into());
    }
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        let mut pad = 0;
        for &c in chunk {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b'=' => {
                    pad += 1;
                    0
                }
                _ => return Err(format!("not valid base64 (unexpected {:?})", c as char)),
            };
            n = (n << 6) | u32::from(v);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad.min(2)]);
    }
    Ok(out)
}

fn fs(name: &str, ctx: &FuncCtx, a: Args) -> R {
    if !ctx.allow_fs {
        return Err(format!("{name}() reads the filesystem, which is disabled here; on the command line it is allowed, over the API it never is"));
    }
    let a = a.exact(1)?;
    let p = a.str(0)?;
    let home = super::disk::home_dir;
    let expand = |p: &str| -> PathBuf {
        match p.strip_prefix("~/") {
            Some(rest) => PathBuf::from(home()).join(rest),
            None if p == "~" => PathBuf::from(home()),
            None => PathBuf::from(p),
        }
    };
    let resolve = |p: &str| -> PathBuf {
        let e = expand(p);
        if e.is_absolute() {
            e
        } else {
            ctx.base_dir.join(e)
        }
    };
    match name {
        "pathexpand" => Ok(Value::String(expand(&p).display().to_string())),
        "basename" => Ok(Value::String(
            std::path::Path::new(&p)
                .file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_default(),
        )),
        "dirname" => Ok(Value::String(
            std::path::Path::new(&p)
                .parent()
                .map(|f| f.display().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| ".".into()),
        )),
        "abspath" => Ok(Value::String(resolve(&p).display().to_string())),
        "fileexists" => Ok(Value::Bool(super::disk::is_file(&resolve(&p)))),
        "file" | "filebase64" => {
            let path = resolve(&p);
            let bytes = super::disk::read_bytes_bounded(&path, MAX_STRING)?;
            if name == "filebase64" {
                Ok(Value::String(base64_encode(&bytes)))
            } else {
                String::from_utf8(bytes)
                    .map(Value::String)
                    .map_err(|_| format!("{} is not UTF-8 text; use filebase64", path.display()))
            }
        }
        _ => Err(format!(
            "internal error: {name} is not a filesystem function"
        )),
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the test writes a file for file() to read
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::string(x)
    }
    fn i(x: i64) -> Value {
        Value::int(x)
    }
    fn l(items: Vec<Value>) -> Value {
        Value::List(items)
    }
    fn run(name: &str, args: Vec<Value>) -> R {
        call(name, &FuncCtx::default(), args).unwrap_or_else(|| panic!("no function {name}"))
    }

    #[test]
    fn numeric_functions() {
        assert_eq!(run("abs", vec![i(-3)]).unwrap(), i(3));
        assert_eq!(
            run("ceil", vec![Value::Number(Number::Float(1.2))]).unwrap(),
            i(2)
        );
        assert_eq!(
            run("floor", vec![Value::Number(Number::Float(1.8))]).unwrap(),
            i(1)
        );
        assert_eq!(run("signum", vec![i(-9)]).unwrap(), i(-1));
        assert_eq!(run("log", vec![i(8), i(2)]).unwrap(), i(3));
        assert_eq!(run("pow", vec![i(2), i(10)]).unwrap(), i(1024));
        assert_eq!(run("max", vec![i(1), i(7), i(3)]).unwrap(), i(7));
        assert_eq!(run("min", vec![i(1), i(7), i(3)]).unwrap(), i(1));
        assert_eq!(run("parseint", vec![s("ff"), i(16)]).unwrap(), i(255));
        assert!(run("parseint", vec![s("zz"), i(10)]).is_err());
        assert!(run("max", vec![]).is_err());
    }

    #[test]
    fn string_functions() {
        assert_eq!(run("chomp", vec![s("a\n")]).unwrap(), s("a"));
        assert_eq!(
            run(
                "format",
                vec![
                    s("%s-%03d %.1f %v %q %%"),
                    s("x"),
                    i(7),
                    Value::Number(Number::Float(2.25)),
                    Value::Bool(true),
                    s("q")
                ]
            )
            .unwrap(),
            s("x-007 2.2 true \"q\" %")
        );
        assert!(run("format", vec![s("%s %s"), s("x")]).is_err());
        assert_eq!(
            run(
                "formatlist",
                vec![s("%s=%d"), l(vec![s("a"), s("b")]), l(vec![i(1), i(2)])]
            )
            .unwrap(),
            l(vec![s("a=1"), s("b=2")])
        );
        assert_eq!(run("indent", vec![i(2), s("a\nb")]).unwrap(), s("a\n  b"));
        assert_eq!(
            run("join", vec![s(","), l(vec![s("a"), s("b")])]).unwrap(),
            s("a,b")
        );
        assert_eq!(run("lower", vec![s("AbC")]).unwrap(), s("abc"));
        assert_eq!(run("upper", vec![s("AbC")]).unwrap(), s("ABC"));
        assert_eq!(
            run("title", vec![s("hello world")]).unwrap(),
            s("Hello World")
        );
        assert_eq!(
            run("replace", vec![s("a-b-c"), s("-"), s("+")]).unwrap(),
            s("a+b+c")
        );
        assert_eq!(
            run("replace", vec![s("a1b22"), s("/[0-9]+/"), s("#")]).unwrap(),
            s("a#b#")
        );
        assert_eq!(
            run("regex_replace", vec![s("abc"), s("b"), s("x")]).unwrap(),
            s("axc")
        );
        assert!(run("regex_replace", vec![s("abc"), s("("), s("x")]).is_err());
        assert_eq!(
            run("split", vec![s(","), s("a,b")]).unwrap(),
            l(vec![s("a"), s("b")])
        );
        assert_eq!(run("strlen", vec![s("héllo")]).unwrap(), i(5));
        assert_eq!(run("strrev", vec![s("abc")]).unwrap(), s("cba"));
        assert_eq!(
            run("substr", vec![s("hello"), i(1), i(3)]).unwrap(),
            s("ell")
        );
        assert_eq!(
            run("substr", vec![s("hello"), i(-3), i(-1)]).unwrap(),
            s("llo")
        );
        assert_eq!(run("trim", vec![s("?!a?!"), s("!?")]).unwrap(), s("a"));
        assert_eq!(
            run("trimprefix", vec![s("foobar"), s("foo")]).unwrap(),
            s("bar")
        );
        assert_eq!(
            run("trimsuffix", vec![s("foobar"), s("bar")]).unwrap(),
            s("foo")
        );
        assert_eq!(run("trimspace", vec![s("  a \n")]).unwrap(), s("a"));
    }

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

    #[test]
    fn encoding_and_hash_functions() {
        assert_eq!(
            run("base64encode", vec![s("user:pass")]).unwrap(),
            s("dXNlcjpwYXNz")
        );
        assert_eq!(
            run("base64decode", vec![s("dXNlcjpwYXNz")]).unwrap(),
            s("user:pass")
        );
        for text in ["", "a", "ab", "abc", "abcd"] {
            assert_eq!(
                run(
                    "base64decode",
                    vec![run("base64encode", vec![s(text)]).unwrap()]
                )
                .unwrap(),
                s(text)
            );
        }
        assert_eq!(
            run("jsonencode", vec![l(vec![i(1), s("a")])]).unwrap(),
            s("[1,\"a\"]")
        );
        assert_eq!(
            run("jsondecode", vec![s("{\"a\":[1]}")])
                .unwrap()
                .to_json()
                .unwrap(),
            serde_json::json!({"a": [1]})
        );
        assert_eq!(run("urlencode", vec![s("a b&c")]).unwrap(), s("a%20b%26c"));
        assert_eq!(
            run("csvdecode", vec![s("a,b\n1,\"x,y\"\n")])
                .unwrap()
                .to_json()
                .unwrap(),
            serde_json::json!([{"a": "1", "b": "x,y"}])
        );
        assert_eq!(
            run("sha256", vec![s("")]).unwrap(),
            s("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert!(run("sha512", vec![s("")])
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("cf83e135"));
        assert_eq!(run("uuidv4", vec![]).unwrap().to_str().unwrap().len(), 36);
        assert_eq!(
            run("uuidv5", vec![s("dns"), s("example.com")]).unwrap(),
            s("cfbff0d1-9375-5685-968c-48ce8b15ae17")
        );
    }

    #[test]
    fn filesystem_functions_need_permission() {
        let err = run("file", vec![s("/etc/hostname")]).unwrap_err();
        assert!(err.contains("disabled"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.txt"), "hi").unwrap();
        let ctx = FuncCtx {
            allow_fs: true,
            base_dir: dir.path().to_path_buf(),
        };
        assert_eq!(
            call("file", &ctx, vec![s("f.txt")]).unwrap().unwrap(),
            s("hi")
        );
        assert_eq!(
            call("filebase64", &ctx, vec![s("f.txt")]).unwrap().unwrap(),
            s("aGk=")
        );
        assert_eq!(
            call("fileexists", &ctx, vec![s("nope")]).unwrap().unwrap(),
            Value::Bool(false)
        );
        assert_eq!(
            call("basename", &ctx, vec![s("/a/b.txt")])
                .unwrap()
                .unwrap(),
            s("b.txt")
        );
        assert_eq!(
            call("dirname", &ctx, vec![s("/a/b.txt")]).unwrap().unwrap(),
            s("/a")
        );
        assert!(call("pathexpand", &ctx, vec![s("~/x")])
            .unwrap()
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("/x"));
    }

    #[test]
    fn missing_functions_say_so() {
        assert!(run("bcrypt", vec![s("secret")])
            .unwrap_err()
            .contains("does not provide"));
        assert!(call("nosuch", &FuncCtx::default(), vec![]).is_none());
    }
}
