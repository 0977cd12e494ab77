//! Bounds on what one jobspec may hold, each with a name and an error that says which was hit.
//! The parser is recursive, so nesting is checked on the raw text before parsing: deeply
//! nested garbage is rejected in linear time instead of overflowing the stack.

/// The limits a parse enforces. [`Limits::default`] holds noded's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest jobspec (or variable file) in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of `{`, `[` and `(`.
    pub max_depth: usize,
    /// Longest list (datacenters, args, …).
    pub max_list_len: usize,
    /// Most blocks in one jobspec.
    pub max_blocks: usize,
    /// Largest `count` of a task group.
    pub max_count: i64,
    /// Most task groups in a job, and most tasks in a group.
    pub max_groups: usize,
}

pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;
pub const DEFAULT_MAX_DEPTH: usize = 64;
pub const DEFAULT_MAX_LIST_LEN: usize = 10_000;
pub const DEFAULT_MAX_BLOCKS: usize = 20_000;
pub const DEFAULT_MAX_COUNT: i64 = 50_000;
pub const DEFAULT_MAX_GROUPS: usize = 1_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: DEFAULT_MAX_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
            max_list_len: DEFAULT_MAX_LIST_LEN,
            max_blocks: DEFAULT_MAX_BLOCKS,
            max_count: DEFAULT_MAX_COUNT,
            max_groups: DEFAULT_MAX_GROUPS,
        }
    }
}

/// The byte offset where HCL nesting first exceeds `max_depth`, if it does. Counts brackets
/// and `${`/`%{` template openings, skipping the rest of strings, heredocs and comments. May
/// over-count on malformed text (which is rejected either way) but never under-counts, so the
/// recursive parser never goes deeper than the limit.
pub(crate) fn nesting_exceeds(text: &str, max_depth: usize) -> Option<usize> {
    #[derive(PartialEq)]
    enum Frame {
        Bracket,
        Template,
        Str,
    }
    let b = text.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let in_str = stack.last() == Some(&Frame::Str);
        if in_str {
            match c {
                b'\\' => i += 1,
                b'"' | b'\n' => {
                    stack.pop();
                }
                b'$' | b'%' if b.get(i + 1) == Some(&b'{') => {
                    if b.get(i + 2) != Some(&c) && !(i > 0 && b[i - 1] == c) {
                        stack.push(Frame::Template);
                        depth += 1;
                        if depth > max_depth {
                            return Some(i);
                        }
                    }
                    i += 1;
                }
                _ => {}
            }
            i += 1;
            continue;
        }
        match c {
            b'"' => stack.push(Frame::Str),
            b'{' | b'[' | b'(' => {
                stack.push(Frame::Bracket);
                depth += 1;
                if depth > max_depth {
                    return Some(i);
                }
            }
            b'}' | b']' | b')' => {
                if matches!(stack.last(), Some(Frame::Bracket | Frame::Template)) {
                    stack.pop();
                    depth -= 1;
                }
            }
            b'#' => i = skip_line(b, i),
            b'/' if b.get(i + 1) == Some(&b'/') => i = skip_line(b, i),
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = text[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 1);
            }
            b'<' if b.get(i + 1) == Some(&b'<') => {
                // A heredoc: only its templates nest.
                let rest = &text[i + 2..];
                let rest = rest.strip_prefix('-').unwrap_or(rest);
                let marker: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !marker.is_empty() {
                    let body_start = text[i..].find('\n').map_or(b.len(), |n| i + n + 1);
                    let mut pos = body_start;
                    let mut extra = 0usize;
                    while pos < b.len() {
                        let end = text[pos..].find('\n').map_or(b.len(), |n| pos + n);
                        let line = &text[pos..end];
                        if line.trim() == marker {
                            break;
                        }
                        for (j, w) in line.as_bytes().windows(2).enumerate() {
                            if (w == b"${" || w == b"%{") && depth + extra + 1 > max_depth {
                                return Some(pos + j);
                            } else if w == b"${" || w == b"%{" {
                                extra += 1;
                            } else if w[0] == b'}' {
                                extra = extra.saturating_sub(1);
                            }
                        }
                        pos = end + 1;
                    }
                    i = pos;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn skip_line(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b'\n' {
        i += 1;
    }
    i
}

/// How deep a job's API JSON may nest: HCL's free-form blocks become `[{…}]` pairs, so the
/// JSON of a job is deeper than its HCL.
pub(crate) fn json_depth_limit(limits: &Limits) -> usize {
    limits.max_depth.saturating_mul(4)
}

/// The nesting depth of a JSON value.
pub(crate) fn json_depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(json_depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The byte offset where JSON nesting first exceeds `max_depth`: strings are skipped.
pub(crate) fn json_nesting_exceeds(text: &str, max_depth: usize) -> Option<usize> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut in_str = false;
    let mut i = 0;
    while i < b.len() {
        match (b[i], in_str) {
            (b'\\', true) => i += 1,
            (b'"', _) => in_str = !in_str,
            (b'{' | b'[', false) => {
                depth += 1;
                if depth > max_depth {
                    return Some(i);
                }
            }
            (b'}' | b']', false) => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_measured_on_raw_text() {
        assert_eq!(nesting_exceeds("a { b { c = [1] } }", 3), None);
        assert_eq!(nesting_exceeds("a { b { c = [[1]] } }", 3), Some(13));
        let deep = "[".repeat(100_000);
        assert_eq!(nesting_exceeds(&deep, 64), Some(64));
        // Brackets inside strings and comments do not nest; templates inside strings do.
        assert_eq!(nesting_exceeds(r#"a = "[[[[[[" # {{{{{{"#, 3), None);
        assert_eq!(nesting_exceeds(r#"a = "${"${"${x}"}"}""#, 2), Some(11));
        assert_eq!(
            nesting_exceeds("a = <<EOT\n{{{{{{\n${${${x}}}\nEOT\n", 2),
            Some(21)
        );
        assert_eq!(
            json_nesting_exceeds(r#"{"a": "[[[[[[[[", "b": [[1]]}"#, 3),
            None
        );
        assert_eq!(json_nesting_exceeds("[[[[1]]]]", 3), Some(3));
    }
}
