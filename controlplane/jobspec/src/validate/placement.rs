//! Where a job may run: constraints, affinities (job, group, task and device level) and
//! spreads, with the values each operator needs.

use std::collections::BTreeSet;

use model::{defaults, Affinity, Constraint, Spread};

use super::Validator;
use crate::error::FieldPath;

const CONSTRAINT_OPERATORS: &[&str] = &[
    "=",
    "==",
    "is",
    "!=",
    "not",
    ">",
    ">=",
    "<",
    "<=",
    "regexp",
    "version",
    "semver",
    "distinct_hosts",
    "distinct_property",
    "set_contains",
    "set_contains_all",
    "set_contains_any",
    "is_set",
    "is_not_set",
];
const AFFINITY_OPERATORS: &[&str] = &[
    "=",
    "==",
    "is",
    "!=",
    "not",
    ">",
    ">=",
    "<",
    "<=",
    "regexp",
    "version",
    "semver",
    "set_contains",
    "set_contains_all",
    "set_contains_any",
];

impl Validator<'_> {
    pub(super) fn constraints(&mut self, cs: &[Constraint], parent: &FieldPath) {
        for (i, c) in cs.iter().enumerate() {
            let cp = parent
                .field("constraint")
                .index(i)
                .key("Constraints")
                .key(&i.to_string());
            let op = c.operand.as_str();
            if !CONSTRAINT_OPERATORS.contains(&op) {
                self.err(
                    &cp.field("operator").key("Operand"),
                    format!(
                        "unknown operator {op:?}; use one of {}",
                        CONSTRAINT_OPERATORS.join(" ")
                    ),
                );
                continue;
            }
            self.operator_values(op, &c.l_target, &c.r_target, &cp);
        }
    }

    pub(super) fn affinities(&mut self, afs: &[Affinity], parent: &FieldPath) {
        for (i, a) in afs.iter().enumerate() {
            let ap = parent
                .field("affinity")
                .index(i)
                .key("Affinities")
                .key(&i.to_string());
            let op = a.operand.as_str();
            if !AFFINITY_OPERATORS.contains(&op) {
                self.err(
                    &ap.field("operator").key("Operand"),
                    format!(
                        "unknown affinity operator {op:?}; use one of {}",
                        AFFINITY_OPERATORS.join(" ")
                    ),
                );
            } else {
                self.operator_values(op, &a.l_target, &a.r_target, &ap);
            }
            let w = a.weight.unwrap_or(defaults::AFFINITY_WEIGHT);
            if w == 0 || !(-100..=100).contains(&w) {
                self.err(
                    &ap.field("weight").key("Weight"),
                    format!("weight must be between -100 and 100 and not 0 (got {w})"),
                );
            }
        }
    }

    fn operator_values(&mut self, op: &str, l: &str, r: &str, p: &FieldPath) {
        match op {
            "distinct_hosts" => {
                if !["", "true", "false"].contains(&r) {
                    self.err(
                        &p.field("value").key("RTarget"),
                        format!("distinct_hosts takes true or false (got {r:?})"),
                    );
                }
            }
            "distinct_property" => {
                if l.is_empty() {
                    self.err(
                        &p.field("attribute").key("LTarget"),
                        "distinct_property needs the attribute to spread over",
                    );
                }
                if !r.is_empty() && r.parse::<u64>().map_or(true, |n| n == 0) {
                    self.err(&p.field("value").key("RTarget"), format!("distinct_property's value is how many allocations may share a value: a positive number (got {r:?})"));
                }
            }
            "is_set" | "is_not_set" => {
                if l.is_empty() {
                    self.err(
                        &p.field("attribute").key("LTarget"),
                        format!("{op} needs an attribute"),
                    );
                }
            }
            "regexp" => {
                if let Err(m) = check_regex(r) {
                    self.err(
                        &p.field("value").key("RTarget"),
                        format!("regular expression {r:?} is not valid: {m}"),
                    );
                }
            }
            "version" | "semver" => {
                if let Err(m) = check_version_constraint(r) {
                    self.err(&p.field("value").key("RTarget"), format!("version constraint {r:?} is not valid: {m}; write it like \">= 1.2, < 2.0\""));
                }
            }
            "set_contains" | "set_contains_all" | "set_contains_any" => {
                if r.is_empty() {
                    self.err(
                        &p.field("value").key("RTarget"),
                        format!("{op} needs a comma-separated list of values"),
                    );
                }
            }
            _ => {
                if l.is_empty() && r.is_empty() {
                    self.err(p, format!("operator {op:?} needs an attribute and a value"));
                }
            }
        }
    }

    pub(super) fn spreads(&mut self, ss: &[Spread], parent: &FieldPath) {
        for (i, s) in ss.iter().enumerate() {
            let sp = parent
                .field("spread")
                .index(i)
                .key("Spreads")
                .key(&i.to_string());
            if s.attribute.is_empty() {
                self.err(
                    &sp.field("attribute").key("Attribute"),
                    "a spread needs an attribute, like attribute = \"${node.datacenter}\"",
                );
            }
            let w = s.weight.unwrap_or(defaults::SPREAD_WEIGHT);
            if !(0..=100).contains(&w) {
                self.err(
                    &sp.field("weight").key("Weight"),
                    format!("spread weight must be between 0 and 100 (got {w})"),
                );
            }
            let mut sum = 0;
            let mut seen = BTreeSet::new();
            for (ti, t) in s.spread_target.iter().enumerate() {
                let tp = sp
                    .labeled("target", &t.value)
                    .key("SpreadTarget")
                    .key(&ti.to_string());
                if !seen.insert(&t.value) {
                    self.err(&tp, format!("spread target {:?} is listed twice", t.value));
                }
                if !(0..=100).contains(&t.percent) {
                    self.err(
                        &tp.field("percent").key("Percent"),
                        format!("percent must be between 0 and 100 (got {})", t.percent),
                    );
                }
                sum += t.percent;
            }
            if sum > 100 {
                self.err(
                    &sp,
                    format!("spread target percentages add up to {sum}, more than 100"),
                );
            }
        }
    }
}

/// Regular expressions compile with the `regex` crate, whose syntax matches Go's RE2 for
/// everything a constraint needs.
fn check_regex(r: &str) -> Result<(), String> {
    if r.is_empty() {
        return Err("it is empty".into());
    }
    match crate::funcs::regex_error(r) {
        Some(e) => Err(e.lines().last().unwrap_or("invalid").trim().to_string()),
        None => Ok(()),
    }
}

/// Version constraints as Nomad's go-version reads them: comma-separated `[op] version`.
fn check_version_constraint(r: &str) -> Result<(), String> {
    if r.contains("${") {
        return Ok(());
    }
    if r.trim().is_empty() {
        return Err("it is empty".into());
    }
    for part in r.split(',') {
        let p = part.trim();
        let v = ["~>", ">=", "<=", "!=", "=", ">", "<"]
            .iter()
            .find_map(|op| p.strip_prefix(op))
            .unwrap_or(p)
            .trim();
        let v = v.strip_prefix('v').unwrap_or(v);
        let core = v.split(['-', '+']).next().unwrap_or("");
        let ok = !core.is_empty()
            && core.split('.').count() <= 4
            && core
                .split('.')
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !ok {
            return Err(format!("{p:?} is not an operator followed by a version"));
        }
    }
    Ok(())
}
