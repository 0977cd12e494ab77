//! What the jobspec reports back: errors and warnings, each with the field path and, when the
//! job came from a file, the file:line:col it concerns.

use std::fmt;

/// A place in a source file. `line` and `col` are 1-based; `col` counts characters, not bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourcePos {
    pub file: String,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for SourcePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// One thing wrong with a jobspec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobspecError {
    /// Where in the source, when the job came from text with positions.
    pub pos: Option<SourcePos>,
    /// The field path, e.g. `group "web" → task "api" → resources.memory`; empty for the file
    /// as a whole.
    pub path: String,
    /// What is wrong and what would be valid, lower-case.
    pub message: String,
}

impl JobspecError {
    pub fn new(
        pos: Option<SourcePos>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        JobspecError {
            pos,
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for JobspecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_line(f, self.pos.as_ref(), &self.path, &self.message)
    }
}

fn write_line(
    f: &mut fmt::Formatter<'_>,
    pos: Option<&SourcePos>,
    path: &str,
    message: &str,
) -> fmt::Result {
    if let Some(pos) = pos {
        write!(f, "{pos}: ")?;
    }
    if !path.is_empty() {
        write!(f, "{path}: ")?;
    }
    f.write_str(message)
}

/// Something the jobspec allows but the reader should know: a field noded keeps but does not
/// act on yet, a key Nomad removed, a deprecated form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub pos: Option<SourcePos>,
    pub path: String,
    pub message: String,
}

impl Warning {
    pub fn new(
        pos: Option<SourcePos>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Warning {
            pos,
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_line(f, self.pos.as_ref(), &self.path, &self.message)
    }
}

/// Every error found in one jobspec. Never empty when returned as an `Err`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct JobspecErrors(pub Vec<JobspecError>);

impl JobspecErrors {
    /// A single error with no position.
    pub fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        JobspecErrors(vec![JobspecError::new(None, path, message)])
    }

    pub fn iter(&self) -> std::slice::Iter<'_, JobspecError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for JobspecErrors {
    /// One error per line, in source order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl From<JobspecError> for JobspecErrors {
    fn from(e: JobspecError) -> Self {
        JobspecErrors(vec![e])
    }
}

/// Collects errors while a pass keeps going, so that all of them are reported together.
#[derive(Debug, Default)]
pub(crate) struct Diagnostics {
    pub errors: Vec<JobspecError>,
    pub warnings: Vec<Warning>,
}

impl Diagnostics {
    pub fn error(&mut self, pos: Option<SourcePos>, path: &str, message: impl Into<String>) {
        self.errors.push(JobspecError::new(pos, path, message));
    }

    pub fn warn(&mut self, pos: Option<SourcePos>, path: &str, message: impl Into<String>) {
        self.warnings.push(Warning::new(pos, path, message));
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The errors sorted by position (errors without one keep their order, after those with).
    pub fn into_errors(mut self) -> JobspecErrors {
        sort_errors(&mut self.errors);
        JobspecErrors(self.errors)
    }
}

pub(crate) fn sort_errors(errors: &mut [JobspecError]) {
    errors.sort_by(|a, b| match (&a.pos, &b.pos) {
        (Some(x), Some(y)) => (x.line, x.col).cmp(&(y.line, y.col)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
}

/// Renders a field path from its parts: blocks as `group "web"`, attributes joined with `.`
/// after the last block, so a person can find the place in the file.
///
/// Alongside, it carries the API key of the same place (`TaskGroups.0.Tasks.1.Resources`), which
/// the decoder uses to remember where in the file each field was written, so that validation
/// (which sees only the typed job) can still point at file:line:col.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldPath {
    parts: Vec<PathPart>,
    key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathPart {
    /// A block with its label: rendered `group "web"`, joined with ` → `.
    Labeled(String, String),
    /// An attribute or unlabeled block: rendered `resources`, joined with `.`.
    Field(String),
    /// An element of a list: rendered `[2]`.
    Index(usize),
}

impl FieldPath {
    pub fn root() -> Self {
        FieldPath::default()
    }

    pub fn labeled(&self, kind: &str, label: &str) -> Self {
        let mut p = self.clone();
        p.parts
            .push(PathPart::Labeled(kind.to_string(), label.to_string()));
        p
    }

    pub fn field(&self, name: &str) -> Self {
        let mut p = self.clone();
        p.parts.push(PathPart::Field(name.to_string()));
        p
    }

    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.parts.push(PathPart::Index(i));
        p
    }

    /// Appends a segment to the API key.
    pub fn key(&self, segment: &str) -> Self {
        let mut p = self.clone();
        if !p.key.is_empty() {
            p.key.push('.');
        }
        p.key.push_str(segment);
        p
    }

    pub fn api_key(&self) -> &str {
        &self.key
    }
}

/// Where each API key was written in the source file.
pub(crate) type Positions = std::collections::BTreeMap<String, SourcePos>;

/// The position of a key, or of the nearest enclosing key that has one.
pub(crate) fn lookup_pos(positions: &Positions, key: &str) -> Option<SourcePos> {
    let mut k = key;
    loop {
        if let Some(p) = positions.get(k) {
            return Some(p.clone());
        }
        match k.rfind('.') {
            Some(i) => k = &k[..i],
            None if !k.is_empty() => k = "",
            None => return None,
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut prev_block = false;
        for (i, part) in self.parts.iter().enumerate() {
            match part {
                PathPart::Labeled(kind, label) => {
                    if i > 0 {
                        f.write_str(" → ")?;
                    }
                    write!(f, "{kind} {label:?}")?;
                    prev_block = true;
                }
                PathPart::Field(name) => {
                    if i > 0 {
                        f.write_str(if prev_block { " → " } else { "." })?;
                    }
                    f.write_str(name)?;
                    prev_block = false;
                }
                PathPart::Index(n) => {
                    write!(f, "[{n}]")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_blocks_with_arrows_and_fields_with_dots() {
        let p = FieldPath::root()
            .labeled("group", "web")
            .labeled("task", "api")
            .field("resources")
            .field("memory");
        assert_eq!(
            p.to_string(),
            r#"group "web" → task "api" → resources.memory"#
        );
        assert_eq!(
            FieldPath::root()
                .field("update")
                .field("canary")
                .to_string(),
            "update.canary"
        );
        assert_eq!(
            FieldPath::root().field("datacenters").index(2).to_string(),
            "datacenters[2]"
        );
    }

    #[test]
    fn errors_display_one_per_line_with_position_and_path() {
        let errs = JobspecErrors(vec![
            JobspecError::new(
                Some(SourcePos {
                    file: "hello.hcl".into(),
                    line: 12,
                    col: 5,
                }),
                r#"group "web" → task "api" → resources.memory"#,
                "must be at least 10 MB (got 4)",
            ),
            JobspecError::new(None, "", "no job block"),
        ]);
        assert_eq!(
            errs.to_string(),
            "hello.hcl:12:5: group \"web\" → task \"api\" → resources.memory: must be at least 10 MB (got 4)\nno job block"
        );
    }
}
