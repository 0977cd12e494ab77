//! Where each key of a config file is written: the dotted path of every attribute, block and
//! object key (`server.raft_multiplier`, `plugin.exec.config.allow_caps`) → its 1-based line.
//! serde says *which* key is wrong; this says *where* it is.

use std::collections::BTreeMap;

use hcl::edit::expr::{Expression, ObjectKey};
use hcl::edit::structure::{BlockLabel, Body, Structure};
use hcl::edit::Span;

/// Dotted key path → line. A block written more than once is a list to serde, so its keys
/// are recorded with the block's index (`server[1].enabled`) and also without it, at the
/// last occurrence: the one whose value wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyLines(BTreeMap<String, usize>);

impl KeyLines {
    /// The line of `path`, or of its nearest written ancestor (an element of a list, or an
    /// unknown key that serde reports by its parent).
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(line) = self.0.get(p) {
                return Some(*line);
            }
            p = if p.ends_with(']') {
                &p[..p.rfind('[')?]
            } else {
                &p[..p.rfind('.')?]
            };
        }
    }

    /// Whether the file writes `path` itself.
    pub fn contains(&self, path: &str) -> bool {
        self.0.contains_key(path)
    }

    fn record(&mut self, path: String, line: usize) {
        if path.contains('[') {
            self.0.insert(strip_indices(&path), line);
        }
        self.0.entry(path).or_insert(line);
    }

    /// The keys of an HCL body that has already been parsed.
    pub fn of_hcl(text: &str, body: &Body) -> KeyLines {
        let mut out = KeyLines::default();
        let lines = LineIndex::new(text);
        walk_body(body, "", &lines, &mut out);
        out
    }

    /// The keys of a JSON document that serde_json has already accepted.
    pub fn of_json(text: &str) -> KeyLines {
        enum Frame {
            Object { path: String, key: Option<String> },
            Array { path: String, index: usize },
        }
        let value_path = |stack: &[Frame]| match stack.last() {
            Some(Frame::Object { path, key: Some(k) }) => join(path, k),
            Some(Frame::Array { path, index }) => format!("{path}[{index}]"),
            Some(Frame::Object { path, key: None }) => path.clone(),
            None => String::new(),
        };
        let mut out = KeyLines::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut line = 1;
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '\n' => line += 1,
                '"' => {
                    let mut s = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '"' => break,
                            // An escaped character is taken as written: keys with escapes
                            // are rare and only their line matters here.
                            '\\' => s.extend(chars.next()),
                            c => s.push(c),
                        }
                    }
                    if let Some(Frame::Object { path, key }) = stack.last_mut() {
                        if key.is_none() {
                            out.record(join(path, &s), line);
                            *key = Some(s);
                        }
                    }
                }
                '{' => stack.push(Frame::Object {
                    path: value_path(&stack),
                    key: None,
                }),
                '[' => stack.push(Frame::Array {
                    path: value_path(&stack),
                    index: 0,
                }),
                '}' | ']' => {
                    stack.pop();
                }
                ',' => match stack.last_mut() {
                    Some(Frame::Object { key, .. }) => *key = None,
                    Some(Frame::Array { index, .. }) => *index += 1,
                    None => {}
                },
                _ => {}
            }
        }
        out
    }
}

/// `server[1].server_join` → `server.server_join`.
pub fn strip_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn walk_body(body: &Body, prefix: &str, lines: &LineIndex, out: &mut KeyLines) {
    // How often each block (name and labels) is written here, and how many seen so far.
    let block_key = |b: &hcl::edit::structure::Block| {
        let mut k = b.ident.as_str().to_string();
        for label in &b.labels {
            k.push('\0');
            k.push_str(label_text(label));
        }
        k
    };
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for b in body.iter().filter_map(Structure::as_block) {
        counts.entry(block_key(b)).or_default().0 += 1;
    }
    for structure in body.iter() {
        match structure {
            Structure::Attribute(a) => {
                let path = join(prefix, a.key.as_str());
                if let Some(line) = lines.line(a.key.span()) {
                    out.record(path.clone(), line);
                }
                walk_expr(&a.value, &path, lines, out);
            }
            Structure::Block(b) => {
                let mut path = join(prefix, b.ident.as_str());
                let line = lines.line(b.ident.span());
                if let Some(line) = line {
                    out.record(path.clone(), line);
                }
                for label in &b.labels {
                    path = join(&path, label_text(label));
                    if let Some(line) = lines.line(label.span()).or(line) {
                        out.record(path.clone(), line);
                    }
                }
                if let Some((total, seen)) = counts.get_mut(&block_key(b)) {
                    if *total > 1 {
                        path = format!("{path}[{seen}]");
                        *seen += 1;
                        if let Some(line) = line {
                            out.record(path.clone(), line);
                        }
                    }
                }
                walk_body(&b.body, &path, lines, out);
            }
        }
    }
}

fn label_text(label: &BlockLabel) -> &str {
    match label {
        BlockLabel::Ident(i) => i.as_str(),
        BlockLabel::String(s) => s.as_str(),
    }
}

/// Object values (`ports = { http = 1 }`, `chroot_env = { "/bin" = "/bin" }`) hold keys too.
fn walk_expr(expr: &Expression, prefix: &str, lines: &LineIndex, out: &mut KeyLines) {
    let Expression::Object(object) = expr else {
        return;
    };
    for (key, value) in object.iter() {
        let (name, span) = match key {
            ObjectKey::Ident(i) => (i.as_str().to_string(), i.span()),
            ObjectKey::Expression(Expression::String(s)) => (s.as_str().to_string(), s.span()),
            ObjectKey::Expression(_) => continue,
        };
        let path = join(prefix, &name);
        if let Some(line) = lines.line(span) {
            out.record(path.clone(), line);
        }
        walk_expr(value.expr(), &path, lines, out);
    }
}

/// Byte offset → 1-based line.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    fn line(&self, span: Option<std::ops::Range<usize>>) -> Option<usize> {
        let offset = span?.start;
        Some(self.starts.partition_point(|&s| s <= offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcl_keys_blocks_labels_and_objects_have_lines() {
        let text = "data_dir = \"/x\"\nserver {\n  enabled = true\n\n  server_join {\n    retry_join = [\"a\"]\n  }\n}\nplugin \"exec\" {\n  config {\n    allow_caps = []\n  }\n}\nports = {\n  http = 1\n}\n";
        let body = hcl::edit::parser::parse_body(text).unwrap();
        let k = KeyLines::of_hcl(text, &body);
        assert_eq!(k.line_of("data_dir"), Some(1));
        assert_eq!(k.line_of("server"), Some(2));
        assert_eq!(k.line_of("server.enabled"), Some(3));
        assert_eq!(k.line_of("server.server_join.retry_join"), Some(6));
        assert_eq!(k.line_of("plugin.exec.config.allow_caps"), Some(11));
        assert_eq!(k.line_of("ports.http"), Some(15));
        // An unknown key is placed at its nearest written parent.
        assert_eq!(k.line_of("server.server_join.nope"), Some(5));
        assert_eq!(k.line_of("nope"), None);
    }

    #[test]
    fn a_repeated_block_is_indexed_and_its_last_occurrence_wins() {
        let text = "server {\n  enabled = true\n}\nserver {\n  enabled = false\n  retry_join = [\"a\"]\n}\n";
        let body = hcl::edit::parser::parse_body(text).unwrap();
        let k = KeyLines::of_hcl(text, &body);
        assert_eq!(k.line_of("server[0].enabled"), Some(2));
        assert_eq!(k.line_of("server[1].enabled"), Some(5));
        assert_eq!(k.line_of("server.enabled"), Some(5));
        assert_eq!(k.line_of("server[1].retry_join[0]"), Some(6));
        let json = "{\"server\": [\n  {\"enabled\": true},\n  {\"enabled\": false}\n]}";
        let k = KeyLines::of_json(json);
        assert_eq!(k.line_of("server[0].enabled"), Some(2));
        assert_eq!(k.line_of("server[1].enabled"), Some(3));
        assert_eq!(k.line_of("server.enabled"), Some(3));
    }

    #[test]
    fn json_keys_have_lines() {
        let text = "{\n  \"data_dir\": \"/x\",\n  \"server\": {\n    \"enabled\": true,\n    \"server_join\": {\"retry_join\": [\"a\", {\"x\": 1}]},\n    \"raft_multiplier\": 11\n  },\n  \"name\": \"n\"\n}\n";
        let k = KeyLines::of_json(text);
        assert_eq!(k.line_of("data_dir"), Some(2));
        assert_eq!(k.line_of("server.enabled"), Some(4));
        assert_eq!(k.line_of("server.server_join.retry_join"), Some(5));
        assert_eq!(k.line_of("server.raft_multiplier"), Some(6));
        assert_eq!(k.line_of("name"), Some(8));
    }
}
