//! The HCL function library of Nomad's jobspec (hcl-rs ships none), following go-cty's
//! stdlib semantics. One table, [`FUNCTIONS`], names every function with its arity and
//! implementation; the implementations live in one module per family, the families
//! Terraform's documentation uses (numeric, string, collection, encoding, filesystem, date
//! and time, hash and crypto, IP network).
//!
//! `try`, `can` and `convert` take unevaluated arguments, so the evaluator runs them; the
//! table lists them so that the name list stays whole. Filesystem functions work only when
//! the caller allows them ([`FuncCtx::allow_fs`]); a server parsing a submitted job never
//! does. The few functions Nomad has and noded does not are in the table too, so calling one
//! says so instead of "no such function".
//!
//! Every function that builds something large checks a bound first (`range` length, `format`
//! width, `setproduct` size), so a hostile spec cannot make the server allocate gigabytes.

mod collection;
mod encoding;
mod filesystem;
mod hash_uuid;
mod network;
mod numeric;
mod string;
mod time;

use std::path::PathBuf;

use super::value::{Number, Value};

pub(crate) use string::regex_error;

/// What functions may touch: the filesystem only when the caller allows it, and the instant
/// `timestamp()` returns, which the caller passes in so that evaluation reads no clock.
#[derive(Debug, Clone, Default)]
pub(crate) struct FuncCtx {
    pub allow_fs: bool,
    pub base_dir: PathBuf,
    pub now_unix_nanos: i64,
}

/// Most elements a function may build.
const MAX_ELEMENTS: usize = 100_000;
/// Longest string a function may build.
const MAX_STRING: usize = 1024 * 1024;

type R = Result<Value, String>;

/// How many arguments a function takes. Checked before the function runs, so its body may
/// rely on the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arity {
    Exact(usize),
    AtLeast(usize),
    /// From the first to the second, both included.
    Between(usize, usize),
}

impl Arity {
    fn check(self, got: usize) -> Result<(), String> {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        match self {
            Arity::Exact(n) if got != n => {
                Err(format!("takes {n} argument{}, got {got}", plural(n)))
            }
            Arity::AtLeast(n) if got < n => Err(format!(
                "takes at least {n} argument{}, got {got}",
                plural(n)
            )),
            Arity::Between(lo, hi) if got < lo || got > hi => {
                let join = if hi == lo + 1 { "or" } else { "to" };
                Err(format!("takes {lo} {join} {hi} arguments, got {got}"))
            }
            _ => Ok(()),
        }
    }
}

/// What a function name stands for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Imp {
    /// Called with its evaluated arguments.
    Call(fn(Args<'_>) -> R),
    /// Run by the evaluator, which must not evaluate all arguments first (`try`, `can`,
    /// `convert`).
    Special,
    /// Nomad has it; noded does not.
    Missing,
}

/// One entry of the function table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Func {
    pub name: &'static str,
    pub arity: Arity,
    pub imp: Imp,
}

const fn f(name: &'static str, arity: Arity, call: fn(Args<'_>) -> R) -> Func {
    Func {
        name,
        arity,
        imp: Imp::Call(call),
    }
}

const fn special(name: &'static str, arity: Arity) -> Func {
    Func {
        name,
        arity,
        imp: Imp::Special,
    }
}

const fn missing(name: &'static str) -> Func {
    Func {
        name,
        arity: Arity::AtLeast(0),
        imp: Imp::Missing,
    }
}

use Arity::{AtLeast, Between, Exact};

/// Every function name the jobspec knows, by family: the single source of the name list
/// (calls, "did you mean", the tests that every name works).
pub(crate) const FUNCTIONS: &[Func] = &[
    // Numeric.
    f("abs", Exact(1), numeric::abs),
    f("ceil", Exact(1), numeric::ceil),
    f("floor", Exact(1), numeric::floor),
    f("log", Exact(2), numeric::log),
    f("max", AtLeast(1), numeric::max),
    f("min", AtLeast(1), numeric::min),
    f("parseint", Exact(2), numeric::parseint),
    f("pow", Exact(2), numeric::pow),
    f("signum", Exact(1), numeric::signum),
    // String.
    f("chomp", Exact(1), string::chomp),
    f("format", AtLeast(1), string::format),
    f("formatlist", AtLeast(1), string::formatlist),
    f("indent", Exact(2), string::indent),
    f("join", AtLeast(2), string::join),
    f("lower", Exact(1), string::lower),
    f("regex_replace", Exact(3), string::regex_replace),
    f("replace", Exact(3), string::replace),
    f("split", Exact(2), string::split),
    f("strlen", Exact(1), string::strlen),
    f("strrev", Exact(1), string::strrev),
    f("substr", Exact(3), string::substr),
    f("title", Exact(1), string::title),
    f("trim", Exact(2), string::trim),
    f("trimprefix", Exact(2), string::trimprefix),
    f("trimspace", Exact(1), string::trimspace),
    f("trimsuffix", Exact(2), string::trimsuffix),
    f("upper", Exact(1), string::upper),
    // Collection.
    f("chunklist", Exact(2), collection::chunklist),
    f("coalesce", AtLeast(1), collection::coalesce),
    f("coalescelist", AtLeast(1), collection::coalescelist),
    f("compact", Exact(1), collection::compact),
    f("concat", AtLeast(1), collection::concat),
    f("contains", Exact(2), collection::contains),
    f("distinct", Exact(1), collection::distinct),
    f("element", Exact(2), collection::element),
    f("flatten", Exact(1), collection::flatten),
    f("index", Exact(2), collection::index),
    f("keys", Exact(1), collection::keys),
    f("length", Exact(1), collection::length),
    f("lookup", Between(2, 3), collection::lookup),
    f("merge", AtLeast(0), collection::merge),
    f("range", Between(1, 3), collection::range),
    f("reverse", Exact(1), collection::reverse),
    f("setintersection", AtLeast(1), collection::setintersection),
    f("setproduct", AtLeast(1), collection::setproduct),
    f("setunion", AtLeast(1), collection::setunion),
    f("slice", Exact(3), collection::slice),
    f("sort", Exact(1), collection::sort),
    f("values", Exact(1), collection::values),
    f("zipmap", Exact(2), collection::zipmap),
    // Encoding.
    f("base64decode", Exact(1), encoding::base64decode),
    f("base64encode", Exact(1), encoding::base64encode),
    f("csvdecode", Exact(1), encoding::csvdecode),
    f("jsondecode", Exact(1), encoding::jsondecode),
    f("jsonencode", Exact(1), encoding::jsonencode),
    f("urlencode", Exact(1), encoding::urlencode),
    f("yamldecode", Exact(1), encoding::yamldecode),
    f("yamlencode", Exact(1), encoding::yamlencode),
    // Filesystem (only when the caller allows it).
    f("abspath", Exact(1), filesystem::abspath),
    f("basename", Exact(1), filesystem::basename),
    f("dirname", Exact(1), filesystem::dirname),
    f("file", Exact(1), filesystem::file),
    f("filebase64", Exact(1), filesystem::filebase64),
    f("fileexists", Exact(1), filesystem::fileexists),
    missing("fileset"),
    f("pathexpand", Exact(1), filesystem::pathexpand),
    // Date and time.
    f("formatdate", Exact(2), time::formatdate),
    f("timeadd", Exact(2), time::timeadd),
    f("timestamp", Exact(0), time::timestamp),
    // Hash and crypto.
    missing("bcrypt"),
    missing("rsadecrypt"),
    f("sha256", Exact(1), hash_uuid::sha256),
    f("sha512", Exact(1), hash_uuid::sha512),
    f("uuidv4", Exact(0), hash_uuid::uuidv4),
    f("uuidv5", Exact(2), hash_uuid::uuidv5),
    // IP network.
    f("cidrhost", Exact(2), network::cidrhost),
    f("cidrnetmask", Exact(1), network::cidrnetmask),
    f("cidrsubnet", Exact(3), network::cidrsubnet),
    f("cidrsubnets", AtLeast(1), network::cidrsubnets),
    // Type conversion and errors (run by the evaluator).
    special("can", Exact(1)),
    special("convert", Exact(2)),
    special("try", AtLeast(1)),
];

/// The table entry for a name.
pub(crate) fn lookup(name: &str) -> Option<&'static Func> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

/// The function a misspelt name probably meant, among those that can be called.
pub(crate) fn suggest(name: &str) -> Option<&'static str> {
    let names: Vec<&'static str> = FUNCTIONS
        .iter()
        .filter(|f| !matches!(f.imp, Imp::Missing))
        .map(|f| f.name)
        .collect();
    super::suggest::closest(name, &names)
}

/// Calls a function by name; `None` when there is no such function.
pub(crate) fn call(name: &str, ctx: &FuncCtx, args: Vec<Value>) -> Option<R> {
    let func = lookup(name)?;
    Some(match func.imp {
        Imp::Call(run) => func
            .arity
            .check(args.len())
            .and_then(|()| run(Args { values: args, ctx })),
        Imp::Missing => Err(format!(
            "noded does not provide {name}(); compute the value outside the jobspec and pass it with -var"
        )),
        Imp::Special => Err(format!(
            "internal error: {name}() is run by the evaluator, not called"
        )),
    })
}

/// The arguments of one call, already counted against the function's [`Arity`].
#[derive(Debug)]
pub(crate) struct Args<'a> {
    values: Vec<Value>,
    ctx: &'a FuncCtx,
}

impl Args<'_> {
    /// Argument `i` (from 0). The arity check makes the error unreachable for the
    /// arguments a function's arity guarantees.
    fn get(&self, i: usize) -> Result<&Value, String> {
        self.values
            .get(i)
            .ok_or_else(|| format!("internal error: argument {} is missing", i + 1))
    }
    fn str(&self, i: usize) -> Result<String, String> {
        self.get(i)?
            .to_str()
            .map_err(|m| format!("argument {}: {m}", i + 1))
    }
    fn num(&self, i: usize) -> Result<f64, String> {
        self.get(i)?
            .to_number()
            .map(Number::as_f64)
            .map_err(|m| format!("argument {}: {m}", i + 1))
    }
    fn int(&self, i: usize) -> Result<i64, String> {
        self.get(i)?
            .to_i64()
            .map_err(|m| format!("argument {}: {m}", i + 1))
    }
    /// Argument `i` as a list.
    fn list(&self, i: usize) -> Result<Vec<Value>, String> {
        list_of(self.get(i)?)
    }
    /// The arguments from `i` on.
    fn rest(&self, i: usize) -> &[Value] {
        self.values.get(i..).unwrap_or_default()
    }
    fn len(&self) -> usize {
        self.values.len()
    }
    fn into_values(self) -> Vec<Value> {
        self.values
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn s(x: &str) -> Value {
        Value::string(x)
    }
    pub(super) fn i(x: i64) -> Value {
        Value::int(x)
    }
    pub(super) fn l(items: Vec<Value>) -> Value {
        Value::List(items)
    }
    pub(super) fn run(name: &str, args: Vec<Value>) -> R {
        call(name, &FuncCtx::default(), args).unwrap_or_else(|| panic!("no function {name}"))
    }

    #[test]
    fn every_name_is_in_the_table_once() {
        let mut names: Vec<&str> = FUNCTIONS.iter().map(|f| f.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a name is in the table twice");
    }

    #[test]
    fn the_arity_is_checked_before_the_call() {
        assert_eq!(run("upper", vec![]).unwrap_err(), "takes 1 argument, got 0");
        assert_eq!(
            run("join", vec![s(",")]).unwrap_err(),
            "takes at least 2 arguments, got 1"
        );
        assert_eq!(
            run("lookup", vec![s("x")]).unwrap_err(),
            "takes 2 or 3 arguments, got 1"
        );
        assert_eq!(
            run("range", vec![i(1), i(2), i(3), i(4)]).unwrap_err(),
            "takes 1 to 3 arguments, got 4"
        );
    }

    #[test]
    fn missing_functions_say_so_and_unknown_ones_get_a_suggestion() {
        assert!(run("bcrypt", vec![s("secret")])
            .unwrap_err()
            .contains("does not provide"));
        assert!(call("nosuch", &FuncCtx::default(), vec![]).is_none());
        assert_eq!(suggest("lenght"), Some("length"));
        assert_eq!(suggest("tyr"), Some("try"));
        assert_eq!(
            suggest("bcryp"),
            None,
            "missing functions are not suggested"
        );
    }
}
