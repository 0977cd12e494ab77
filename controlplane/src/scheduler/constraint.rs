//! Constraints and affinities against one node: resolving `${attr.…}`, `${meta.…}`,
//! `${node.…}` targets, and every operator as Nomad defines it (`scheduler/feasible`'s
//! `checkConstraint`). `distinct_hosts` and `distinct_property` look at other allocations, not
//! at the node alone: they pass here and are checked by the placement pipeline (`select.rs`).

use std::collections::HashMap;

use regex::Regex;

use super::version::{Constraints as VersionConstraints, Version};
use crate::model::{Constraint, Node};

pub const DISTINCT_HOSTS: &str = "distinct_hosts";
pub const DISTINCT_PROPERTY: &str = "distinct_property";

/// The most regular expressions or version constraints one run caches: a job has few; the
/// bound only keeps a pathological one from growing the cache without end.
const MAX_CACHED: usize = 1024;

/// One run's compiled regular expressions and parsed version constraints, by their text
/// (Nomad's `RegexpCache`, `VersionConstraintCache`, `SemverConstraintCache`). A text that
/// does not compile is cached as `None`: it never matches.
#[derive(Debug, Default)]
pub struct ConstraintCache {
    regexps: HashMap<String, Option<Regex>>,
    versions: HashMap<String, Option<VersionConstraints>>,
    semvers: HashMap<String, Option<VersionConstraints>>,
}

impl ConstraintCache {
    fn regex(&mut self, text: &str) -> Option<&Regex> {
        if !self.regexps.contains_key(text) {
            if self.regexps.len() >= MAX_CACHED {
                self.regexps.clear();
            }
            self.regexps.insert(text.to_string(), Regex::new(text).ok());
        }
        self.regexps.get(text).and_then(Option::as_ref)
    }

    fn version(&mut self, text: &str, semver: bool) -> Option<&VersionConstraints> {
        let map = if semver {
            &mut self.semvers
        } else {
            &mut self.versions
        };
        if !map.contains_key(text) {
            if map.len() >= MAX_CACHED {
                map.clear();
            }
            let parsed = if semver {
                VersionConstraints::parse_semver(text)
            } else {
                VersionConstraints::parse_version(text)
            };
            map.insert(text.to_string(), parsed);
        }
        map.get(text).and_then(Option::as_ref)
    }
}

/// A constraint as Nomad prints it in `ConstraintFiltered`: `${attr.kernel.name} = linux`.
pub fn constraint_string(c: &Constraint) -> String {
    format!("{} {} {}", c.l_target, c.operand, c.r_target)
}

/// Resolves a constraint target against `node`: a literal stays itself; an interpolation
/// gives the node's value, or `None` when the node has none.
pub fn resolve_target<'n>(target: &'n str, node: &'n Node) -> Option<&'n str> {
    if !target.starts_with("${") {
        return Some(target);
    }
    match target {
        "${node.unique.id}" => Some(&node.id),
        "${node.datacenter}" => Some(&node.datacenter),
        "${node.unique.name}" => Some(&node.name),
        "${node.class}" => Some(&node.node_class),
        "${node.pool}" => Some(&node.node_pool),
        _ => {
            let inner = |prefix: &str| {
                target
                    .strip_prefix(prefix)
                    .map(|t| t.strip_suffix('}').unwrap_or(t))
            };
            if let Some(attr) = inner("${attr.") {
                node.attributes.get(attr).map(String::as_str)
            } else if let Some(meta) = inner("${meta.") {
                node.meta.get(meta).map(String::as_str)
            } else {
                None
            }
        }
    }
}

/// Whether a target's value is unique to a node, so that a rule using it cannot be decided
/// once per computed class (Nomad's `constraintTargetEscapes`).
pub fn target_escapes(target: &str) -> bool {
    [
        "${unique.",
        "${node.unique.",
        "${attr.unique.",
        "${meta.unique.",
    ]
    .iter()
    .any(|p| target.starts_with(p))
}

/// Whether a constraint escapes the computed class.
pub fn escapes(c: &Constraint) -> bool {
    target_escapes(&c.l_target) || target_escapes(&c.r_target)
}

/// Whether `node` satisfies `c` (`distinct_*` pass here: they are checked elsewhere).
pub fn meets(cache: &mut ConstraintCache, c: &Constraint, node: &Node) -> bool {
    let l = resolve_target(&c.l_target, node);
    let r = resolve_target(&c.r_target, node);
    check(cache, &c.operand, l, r)
}

/// Nomad's `checkConstraint`; an absent target is `None`.
pub fn check(cache: &mut ConstraintCache, operand: &str, l: Option<&str>, r: Option<&str>) -> bool {
    let both = |f: &mut dyn FnMut(&str, &str) -> bool| match (l, r) {
        (Some(l), Some(r)) => f(l, r),
        _ => false,
    };
    match operand {
        DISTINCT_HOSTS | DISTINCT_PROPERTY => true,
        "=" | "==" | "is" => both(&mut |l, r| l == r),
        // Nomad compares the resolved values as they are: an absent target is the empty
        // value, so `!=` holds unless both resolve to the same string.
        "!=" | "not" => l.unwrap_or("") != r.unwrap_or(""),
        "<" | "<=" | ">" | ">=" => both(&mut |l, r| check_order(operand, l, r)),
        "is_set" => l.is_some(),
        "is_not_set" => l.is_none(),
        "version" | "semver" => {
            let semver = operand == "semver";
            both(&mut |l, r| {
                let Some(v) = Version::parse(l) else {
                    return false;
                };
                cache.version(r, semver).is_some_and(|c| c.check(&v))
            })
        }
        "regexp" => both(&mut |l, r| cache.regex(r).is_some_and(|re| re.is_match(l))),
        "set_contains" | "set_contains_all" => both(&mut |l, r| {
            let have: Vec<&str> = l.split(',').map(str::trim).collect();
            r.split(',').map(str::trim).all(|x| have.contains(&x))
        }),
        "set_contains_any" => both(&mut |l, r| {
            let have: Vec<&str> = l.split(',').map(str::trim).collect();
            r.split(',').map(str::trim).any(|x| have.contains(&x))
        }),
        _ => false,
    }
}

/// Nomad's `checkOrder`: as integers when both parse, else as floats, else lexically.
fn check_order(op: &str, l: &str, r: &str) -> bool {
    fn cmp<T: PartialOrd>(op: &str, a: T, b: T) -> bool {
        match op {
            "<" => a < b,
            "<=" => a <= b,
            ">" => a > b,
            ">=" => a >= b,
            _ => false,
        }
    }
    if let (Ok(a), Ok(b)) = (l.parse::<i64>(), r.parse::<i64>()) {
        return cmp(op, a, b);
    }
    if let (Ok(a), Ok(b)) = (l.parse::<f64>(), r.parse::<f64>()) {
        return cmp(op, a, b);
    }
    cmp(op, l, r)
}

/// Whether a `distinct_hosts` constraint is on: an empty value or one that is not a boolean
/// means on, as in Nomad.
/// The constraints of `job` (job, group and task level; `distinct_*` aside, which depend on
/// placements rather than on a node) that no node in `nodes` satisfies, as Nomad prints
/// them, with the group they apply to (empty for job level). Pure: the submit path warns
/// with it, and the job still waits in a blocked evaluation for a node that fits.
pub fn unsatisfiable(
    job: &crate::model::Job,
    nodes: &[std::sync::Arc<Node>],
) -> Vec<(String, String)> {
    let mut cache = ConstraintCache::default();
    let mut out = Vec::new();
    let mut check = |group: &str, c: &Constraint, out: &mut Vec<(String, String)>| {
        if c.operand == DISTINCT_HOSTS || c.operand == DISTINCT_PROPERTY {
            return;
        }
        if !nodes.iter().any(|n| meets(&mut cache, c, n)) {
            out.push((group.to_string(), constraint_string(c)));
        }
    };
    for c in &job.constraints {
        check("", c, &mut out);
    }
    for g in &job.task_groups {
        let task_level = g.tasks.iter().flat_map(|t| t.constraints.iter());
        for c in g.constraints.iter().chain(task_level) {
            check(&g.name, c, &mut out);
        }
    }
    out
}

pub fn distinct_hosts_enabled(constraints: &[Constraint]) -> bool {
    constraints
        .iter()
        .find(|c| c.operand == DISTINCT_HOSTS)
        .is_some_and(|c| {
            !matches!(
                c.r_target.trim(),
                "false" | "0" | "f" | "F" | "FALSE" | "False"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        let mut n = Node {
            id: "n-1".into(),
            name: "web-1".into(),
            datacenter: "dc1".into(),
            node_class: "large".into(),
            node_pool: "default".into(),
            ..Default::default()
        };
        for (k, v) in [
            ("kernel.name", "linux"),
            ("cpu.numcores", "8"),
            ("cpu.frequency", "2.5"),
            ("nomad.version", "1.7.3"),
            ("os.version", "22.04"),
            ("unique.hostname", "web-1"),
        ] {
            n.attributes.insert(k.into(), v.into());
        }
        n.meta.insert("tags".into(), "ssd, gpu ,fast".into());
        n
    }

    fn holds(l: &str, op: &str, r: &str) -> bool {
        let c = Constraint {
            l_target: l.into(),
            operand: op.into(),
            r_target: r.into(),
        };
        meets(&mut ConstraintCache::default(), &c, &node())
    }

    #[test]
    fn targets_resolve_like_nomad() {
        let n = node();
        assert_eq!(resolve_target("${node.unique.id}", &n), Some("n-1"));
        assert_eq!(resolve_target("${node.unique.name}", &n), Some("web-1"));
        assert_eq!(resolve_target("${node.datacenter}", &n), Some("dc1"));
        assert_eq!(resolve_target("${node.class}", &n), Some("large"));
        assert_eq!(resolve_target("${node.pool}", &n), Some("default"));
        assert_eq!(resolve_target("${attr.kernel.name}", &n), Some("linux"));
        assert_eq!(resolve_target("${meta.tags}", &n), Some("ssd, gpu ,fast"));
        assert_eq!(resolve_target("${attr.missing}", &n), None);
        assert_eq!(resolve_target("${bogus}", &n), None);
        assert_eq!(resolve_target("linux", &n), Some("linux"));
    }

    #[test]
    fn every_operator_passes_and_fails() {
        let cases: &[(&str, &str, &str, bool)] = &[
            ("${attr.kernel.name}", "=", "linux", true),
            ("${attr.kernel.name}", "==", "windows", false),
            ("${attr.kernel.name}", "is", "linux", true),
            ("${attr.missing}", "=", "", false),
            ("${attr.kernel.name}", "!=", "windows", true),
            ("${attr.kernel.name}", "not", "linux", false),
            ("${attr.missing}", "!=", "linux", true),
            // numeric when both parse: 8 > 10 is false although "8" > "10" lexically
            ("${attr.cpu.numcores}", ">", "10", false),
            ("${attr.cpu.numcores}", ">=", "8", true),
            ("${attr.cpu.numcores}", "<", "10", true),
            ("${attr.cpu.frequency}", "<=", "2.4", false),
            ("${attr.cpu.frequency}", ">", "2.4", true),
            // lexical otherwise
            ("${attr.kernel.name}", "<", "mac", true),
            ("${attr.kernel.name}", ">", "mac", false),
            ("${attr.missing}", "<", "mac", false),
            ("${attr.nomad.version}", "version", ">= 1.6, < 2.0", true),
            ("${attr.nomad.version}", "version", "~> 1.6.0", false),
            ("${attr.nomad.version}", "semver", ">= 1.7.0", true),
            ("${attr.nomad.version}", "semver", "< 1.7.0", false),
            ("${attr.kernel.name}", "regexp", "^lin", true),
            ("${attr.kernel.name}", "regexp", "^win", false),
            ("${attr.kernel.name}", "regexp", "(", false),
            ("${meta.tags}", "set_contains", "ssd,fast", true),
            ("${meta.tags}", "set_contains_all", "ssd, nvme", false),
            ("${meta.tags}", "set_contains_any", "nvme, gpu", true),
            ("${meta.tags}", "set_contains_any", "nvme,hdd", false),
            ("${attr.kernel.name}", "is_set", "", true),
            ("${attr.missing}", "is_set", "", false),
            ("${attr.missing}", "is_not_set", "", true),
            ("${attr.kernel.name}", "is_not_set", "", false),
            ("${node.class}", "=", "large", true),
            ("${node.unique.name}", "=", "web-2", false),
            ("${attr.kernel.name}", "bogus_operator", "linux", false),
        ];
        for (l, op, r, want) in cases {
            assert_eq!(holds(l, op, r), *want, "{l} {op} {r}");
        }
    }

    #[test]
    fn regexps_compile_once_per_run() {
        let mut cache = ConstraintCache::default();
        let n = node();
        let c = Constraint {
            l_target: "${attr.kernel.name}".into(),
            operand: "regexp".into(),
            r_target: "^l.*x$".into(),
        };
        assert!(meets(&mut cache, &c, &n));
        assert!(meets(&mut cache, &c, &n));
        assert_eq!(cache.regexps.len(), 1);
    }

    #[test]
    fn printed_like_nomad_and_escapes_on_unique_targets() {
        let c = Constraint {
            l_target: "${attr.kernel.name}".into(),
            operand: "=".into(),
            r_target: "linux".into(),
        };
        assert_eq!(constraint_string(&c), "${attr.kernel.name} = linux");
        assert!(!escapes(&c));
        assert!(target_escapes("${node.unique.id}"));
        assert!(target_escapes("${attr.unique.hostname}"));
        assert!(target_escapes("${meta.unique.rack}"));
    }

    #[test]
    fn distinct_hosts_defaults_to_on() {
        let c = |r: &str| Constraint {
            operand: DISTINCT_HOSTS.into(),
            r_target: r.into(),
            ..Default::default()
        };
        assert!(distinct_hosts_enabled(&[c("")]));
        assert!(distinct_hosts_enabled(&[c("true")]));
        assert!(distinct_hosts_enabled(&[c("yes")]));
        assert!(!distinct_hosts_enabled(&[c("false")]));
        assert!(!distinct_hosts_enabled(&[]));
    }
}
