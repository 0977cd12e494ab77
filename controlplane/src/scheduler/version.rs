//! Versions and version constraints as Nomad's `version` and `semver` constraint operators read
//! them: HashiCorp's go-version (any number of numeric segments, a pre-release, metadata;
//! constraints `=`, `!=`, `>`, `<`, `>=`, `<=`, `~>` joined by commas) and Nomad's strict
//! semver constraints (the same versions, no `~>`, no pre-release restriction).

use std::cmp::Ordering;

/// A parsed version: numeric segments (at least three, padded with zeros as go-version
/// does), how many were written, and the pre-release (metadata is ignored in comparisons).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    segments: Vec<u64>,
    written: usize,
    pre: String,
}

/// The most segments a version may have: bounds what an attribute can make us allocate.
const MAX_SEGMENTS: usize = 16;

impl Version {
    /// Parses like go-version's `NewVersion`: an optional `v`, dot-separated numbers, then
    /// `-pre` (or a pre-release glued on, `1.2beta`) and `+meta`.
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        let (rest, _meta) = match text.split_once('+') {
            Some((r, m)) if valid_ident_list(m) => (r, m),
            Some(_) => return None,
            None => (text, ""),
        };
        let digits_end = rest
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
            .map_or(rest.len(), |(i, _)| i);
        let (core, pre) = rest.split_at(digits_end);
        let core = core
            .strip_suffix('.')
            .filter(|_| !pre.is_empty())
            .unwrap_or(core);
        let mut segments = Vec::new();
        for part in core.split('.') {
            if segments.len() == MAX_SEGMENTS {
                return None;
            }
            segments.push(part.parse::<u64>().ok()?);
        }
        let pre = pre.strip_prefix('-').unwrap_or(pre);
        if !pre.is_empty() && !valid_ident_list(pre) {
            return None;
        }
        let written = segments.len();
        while segments.len() < 3 {
            segments.push(0);
        }
        Some(Version {
            segments,
            written,
            pre: pre.to_string(),
        })
    }

    /// Strict semver as Nomad's semver constraints take it: one to three segments.
    fn parse_semver(text: &str) -> Option<Version> {
        let v = Version::parse(text)?;
        (v.written <= 3).then_some(v)
    }

    fn compare(&self, other: &Version) -> Ordering {
        let n = self.segments.len().max(other.segments.len());
        for i in 0..n {
            let a = self.segments.get(i).copied().unwrap_or(0);
            let b = other.segments.get(i).copied().unwrap_or(0);
            match a.cmp(&b) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        compare_pre(&self.pre, &other.pre)
    }
}

fn valid_ident_list(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '~')
        })
}

/// go-version's pre-release order: none sorts after any; otherwise part by part, numbers
/// numerically and below words, words lexically, fewer parts first.
fn compare_pre(a: &str, b: &str) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    let (pa, pb): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    for (x, y) in pa.iter().zip(pb.iter()) {
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(i), Ok(j)) => i.cmp(&j),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    pa.len().cmp(&pb.len())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Pessimistic,
}

/// A parsed constraint: every part must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraints {
    parts: Vec<(Op, Version)>,
    /// Nomad's semver flavour: no pre-release restriction.
    semver: bool,
}

impl Constraints {
    /// go-version's `NewConstraint`.
    pub fn parse_version(text: &str) -> Option<Constraints> {
        Constraints::parse(text, false)
    }

    /// Nomad's `semver.NewConstraint`.
    pub fn parse_semver(text: &str) -> Option<Constraints> {
        Constraints::parse(text, true)
    }

    fn parse(text: &str, semver: bool) -> Option<Constraints> {
        let mut parts = Vec::new();
        for single in text.split(',') {
            let single = single.trim();
            let (op, rest) = [
                (">=", Op::Ge),
                ("<=", Op::Le),
                ("!=", Op::Ne),
                ("~>", Op::Pessimistic),
                (">", Op::Gt),
                ("<", Op::Lt),
                ("=", Op::Eq),
            ]
            .iter()
            .find_map(|(p, op)| single.strip_prefix(p).map(|r| (*op, r)))
            .unwrap_or((Op::Eq, single));
            if semver && op == Op::Pessimistic {
                return None;
            }
            let v = if semver {
                Version::parse_semver(rest)?
            } else {
                Version::parse(rest)?
            };
            parts.push((op, v));
        }
        Some(Constraints { parts, semver })
    }

    pub fn check(&self, v: &Version) -> bool {
        self.parts.iter().all(|(op, c)| {
            if self.semver {
                check_semver(*op, v, c)
            } else {
                check_go_version(*op, v, c)
            }
        })
    }
}

fn check_semver(op: Op, v: &Version, c: &Version) -> bool {
    let o = v.compare(c);
    match op {
        Op::Eq => o == Ordering::Equal,
        Op::Ne => o != Ordering::Equal,
        Op::Gt => o == Ordering::Greater,
        Op::Lt => o == Ordering::Less,
        Op::Ge => o != Ordering::Less,
        Op::Le => o != Ordering::Greater,
        Op::Pessimistic => false,
    }
}

/// go-version: a pre-release version only satisfies an ordering against a constraint with a
/// pre-release on the same base version.
fn prerelease_ok(v: &Version, c: &Version) -> bool {
    match (v.pre.is_empty(), c.pre.is_empty()) {
        (false, false) => v.segments == c.segments,
        (false, true) => false,
        _ => true,
    }
}

fn check_go_version(op: Op, v: &Version, c: &Version) -> bool {
    let o = v.compare(c);
    match op {
        Op::Eq => o == Ordering::Equal,
        Op::Ne => o != Ordering::Equal,
        Op::Gt => prerelease_ok(v, c) && o == Ordering::Greater,
        Op::Lt => prerelease_ok(v, c) && o == Ordering::Less,
        Op::Ge => prerelease_ok(v, c) && o != Ordering::Less,
        Op::Le => prerelease_ok(v, c) && o != Ordering::Greater,
        Op::Pessimistic => {
            if !prerelease_ok(v, c) || (!c.pre.is_empty() && v.pre.is_empty()) {
                return false;
            }
            if o == Ordering::Less {
                return false;
            }
            // `~> 1.2.3` is `>= 1.2.3, < 1.3`: every written segment but the last must
            // match exactly, the last may only grow.
            let n = c.written.max(1);
            let seg = |x: &Version, i: usize| x.segments.get(i).copied().unwrap_or(0);
            (0..n - 1).all(|i| seg(v, i) == seg(c, i)) && seg(c, n - 1) <= seg(v, n - 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(v: &str, c: &str) -> bool {
        Constraints::parse_version(c)
            .unwrap()
            .check(&Version::parse(v).unwrap())
    }

    fn semver(v: &str, c: &str) -> bool {
        Constraints::parse_semver(c)
            .unwrap()
            .check(&Version::parse(v).unwrap())
    }

    #[test]
    fn go_version_constraints() {
        assert!(version("1.2.3", ">= 1.2, < 2.0"));
        assert!(!version("2.0.0", ">= 1.2, < 2.0"));
        assert!(version("1.2", "= 1.2.0"));
        assert!(version("1.2.9", "~> 1.2.3"));
        assert!(!version("1.3.0", "~> 1.2.3"));
        assert!(version("1.9", "~> 1.2"));
        assert!(!version("2.0", "~> 1.2"));
        assert!(!version("1.2.3-beta", ">= 1.0"));
        assert!(version("1.2.3-beta", ">= 1.2.3-alpha"));
        assert!(!version("1.2.4-beta", ">= 1.2.3-alpha"));
        assert!(version("v1.10.0+ent", "> 1.9"));
        assert!(version("1.2.3", "!= 1.2.4"));
        assert!(Constraints::parse_version(">= banana").is_none());
        assert!(Version::parse("linux").is_none());
    }

    #[test]
    fn semver_constraints() {
        assert!(semver("1.2.3-beta", ">= 1.0.0"));
        assert!(semver("1.2.3", "> 1.2.3-rc.1"));
        assert!(!semver("1.2.3-rc.1", ">= 1.2.3"));
        assert!(Constraints::parse_semver("~> 1.2.3").is_none());
        assert!(Constraints::parse_semver(">= 1.2.3.4").is_none());
        assert!(semver("1.2.3-rc.10", "> 1.2.3-rc.9"));
    }
}
