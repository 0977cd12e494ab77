//! A job diff as `job plan` and `job history -p` print it (Nomad's `formatJobDiff`): `+`, `-`
//! and `+/-` markers, blocks in braces, names and values aligned per block, update counts per
//! group and each task's annotation. Colours only when asked for (a terminal, no -no-color).

use controlplane::jobdiff::{
    words, DiffType, FieldDiff, JobDiff, ObjectDiff, TaskDiff, TaskGroupDiff,
};

/// Terminal colours, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

#[derive(Debug, Clone, Copy)]
enum Paint {
    Bold,
    Green,
    Red,
    Yellow,
    LightYellow,
    Blue,
    Cyan,
}

impl Style {
    /// Colours for standard output when it is a terminal and `-no-color` was not given.
    pub fn for_stdout(no_color: bool) -> Style {
        Style {
            color: !no_color && crate::terminal::stdout_is_terminal(),
        }
    }

    fn paint(self, how: Paint, text: &str) -> String {
        if !self.color {
            return text.to_string();
        }
        let code = match how {
            Paint::Bold => "1",
            Paint::Green => "32",
            Paint::Red => "31",
            Paint::Yellow => "33",
            Paint::LightYellow => "93",
            Paint::Blue => "34",
            Paint::Cyan => "36",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    pub fn bold(self, text: &str) -> String {
        self.paint(Paint::Bold, text)
    }

    pub fn green(self, text: &str) -> String {
        self.paint(Paint::Green, text)
    }

    pub fn yellow(self, text: &str) -> String {
        self.paint(Paint::Yellow, text)
    }

    /// The marker of a difference and its printed width (`+/- ` is 4).
    fn marker(self, t: DiffType) -> (String, usize) {
        match t {
            DiffType::Added => (format!("{} ", self.paint(Paint::Green, "+")), 2),
            DiffType::Deleted => (format!("{} ", self.paint(Paint::Red, "-")), 2),
            DiffType::Edited => (format!("{} ", self.paint(Paint::LightYellow, "+/-")), 4),
            DiffType::None => (String::new(), 0),
        }
    }

    fn annotations(self, notes: &[String]) -> String {
        notes
            .iter()
            .map(|n| match n.as_str() {
                words::FORCES_CREATE => self.paint(Paint::Green, n),
                words::FORCES_DESTROY => self.paint(Paint::Red, n),
                words::FORCES_IN_PLACE => self.paint(Paint::Cyan, n),
                words::FORCES_DESTRUCTIVE => self.paint(Paint::Yellow, n),
                _ => n.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn update(self, kind: &str, count: u64) -> String {
        let text = format!("{count} {kind}");
        match kind {
            words::CREATE => self.paint(Paint::Green, &text),
            words::DESTROY => self.paint(Paint::Red, &text),
            words::MIGRATE => self.paint(Paint::Blue, &text),
            words::IN_PLACE_UPDATE => self.paint(Paint::Cyan, &text),
            words::DESTRUCTIVE_UPDATE => self.paint(Paint::Yellow, &text),
            words::CANARY => self.paint(Paint::LightYellow, &text),
            _ => text,
        }
    }
}

/// A string quoted as Go's `%q` quotes it: what Nomad prints around names and values.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn spaces(n: usize) -> String {
    " ".repeat(n)
}

/// The whole diff. `verbose` expands added and deleted groups and tasks, and shows an
/// unchanged job's own fields.
pub fn format_job_diff(job: &JobDiff, verbose: bool, style: Style) -> String {
    let (marker, _) = style.marker(job.diff_type);
    let mut out = format!(
        "{marker}{}\n",
        style.bold(&format!("Job: {}", go_quote(&job.id)))
    );
    let (longest_field, mut longest_marker) = longest(&job.fields, &job.objects, style);
    for g in &job.task_groups {
        longest_marker = longest_marker.max(style.marker(g.diff_type).1);
    }
    if job.diff_type == DiffType::Edited || verbose {
        let fo = aligned(
            &job.fields,
            &job.objects,
            0,
            longest_field,
            longest_marker,
            style,
        );
        if !fo.is_empty() {
            out.push_str(&fo);
            out.push('\n');
        }
    }
    for g in &job.task_groups {
        let prefix = longest_marker - style.marker(g.diff_type).1;
        out.push_str(&format_group(g, prefix, verbose, style));
        out.push('\n');
    }
    out
}

fn format_group(g: &TaskGroupDiff, prefix: usize, verbose: bool, style: Style) -> String {
    let (marker, _) = style.marker(g.diff_type);
    let mut out = format!(
        "{marker}{}{}",
        spaces(prefix),
        style.bold(&format!("Task Group: {}", go_quote(&g.name)))
    );
    if g.updates.is_empty() {
        out.push('\n');
    } else {
        // BTreeMap order is Nomad's: update kinds sorted by name.
        let updates: Vec<String> = g.updates.iter().map(|(k, n)| style.update(k, *n)).collect();
        out.push_str(&format!(" ({})\n", updates.join(", ")));
    }
    let (longest_field, mut longest_marker) = longest(&g.fields, &g.objects, style);
    for t in &g.tasks {
        longest_marker = longest_marker.max(style.marker(t.diff_type).1);
    }
    let sub = prefix + 2;
    if g.diff_type == DiffType::Edited || verbose {
        let fo = aligned(
            &g.fields,
            &g.objects,
            sub,
            longest_field,
            longest_marker,
            style,
        );
        if !fo.is_empty() {
            out.push_str(&fo);
            out.push('\n');
        }
    }
    for t in &g.tasks {
        let task_prefix = longest_marker - style.marker(t.diff_type).1;
        out.push_str(&format_task(t, sub, task_prefix, verbose, style));
        out.push('\n');
    }
    out
}

fn format_task(t: &TaskDiff, start: usize, prefix: usize, verbose: bool, style: Style) -> String {
    let (marker, _) = style.marker(t.diff_type);
    let mut out = format!(
        "{}{marker}{}{}",
        spaces(start),
        spaces(prefix),
        style.bold(&format!("Task: {}", go_quote(&t.name)))
    );
    if !t.annotations.is_empty() {
        out.push_str(&format!(" ({})", style.annotations(&t.annotations)));
    }
    let collapsed = matches!(t.diff_type, DiffType::Added | DiffType::Deleted) && !verbose;
    if t.diff_type == DiffType::None || collapsed {
        return out;
    }
    out.push('\n');
    let (longest_field, longest_marker) = longest(&t.fields, &t.objects, style);
    out.push_str(&aligned(
        &t.fields,
        &t.objects,
        start + 2,
        longest_field,
        longest_marker,
        style,
    ));
    out
}

fn format_object(o: &ObjectDiff, start: usize, key_prefix: usize, style: Style) -> String {
    let (marker, marker_len) = style.marker(o.diff_type);
    let mut out = format!(
        "{}{marker}{}{} {{\n",
        spaces(start),
        spaces(key_prefix),
        o.name
    );
    let (longest_field, longest_marker) = longest(&o.fields, &o.objects, style);
    out.push_str(&aligned(
        &o.fields,
        &o.objects,
        start + key_prefix + 2,
        longest_field,
        longest_marker,
        style,
    ));
    format!("{out}\n{}}}", spaces(start + marker_len + key_prefix))
}

fn format_field(
    f: &FieldDiff,
    start: usize,
    key_prefix: usize,
    value_prefix: usize,
    style: Style,
) -> String {
    let (marker, _) = style.marker(f.diff_type);
    let value = match f.diff_type {
        DiffType::Added => go_quote(&f.new),
        DiffType::Deleted => go_quote(&f.old),
        DiffType::Edited => format!("{} => {}", go_quote(&f.old), go_quote(&f.new)),
        DiffType::None => go_quote(&f.new),
    };
    let mut out = format!(
        "{}{marker}{}{}: {}{value}",
        spaces(start),
        spaces(key_prefix),
        f.name,
        spaces(value_prefix)
    );
    if !f.annotations.is_empty() {
        out.push_str(&format!(" ({})", style.annotations(&f.annotations)));
    }
    out
}

/// Fields, then blocks, one per line (no newline after the last), names and markers padded
/// to the widest of the block.
fn aligned(
    fields: &[FieldDiff],
    objects: &[ObjectDiff],
    start: usize,
    longest_field: usize,
    longest_marker: usize,
    style: Style,
) -> String {
    let mut out = String::new();
    for (i, f) in fields.iter().enumerate() {
        let key_prefix = longest_marker - style.marker(f.diff_type).1;
        let value_prefix = longest_field - f.name.len();
        out.push_str(&format_field(f, start, key_prefix, value_prefix, style));
        if i + 1 != fields.len() || !objects.is_empty() {
            out.push('\n');
        }
    }
    for (i, o) in objects.iter().enumerate() {
        let key_prefix = longest_marker - style.marker(o.diff_type).1;
        out.push_str(&format_object(o, start, key_prefix, style));
        if i + 1 != objects.len() {
            out.push('\n');
        }
    }
    out
}

/// The longest field name and the widest marker among fields and blocks.
fn longest(fields: &[FieldDiff], objects: &[ObjectDiff], style: Style) -> (usize, usize) {
    let field = fields.iter().map(|f| f.name.len()).max().unwrap_or(0);
    let marker = fields
        .iter()
        .map(|f| f.diff_type)
        .chain(objects.iter().map(|o| o.diff_type))
        .map(|t| style.marker(t).1)
        .max()
        .unwrap_or(0);
    (field, marker)
}
