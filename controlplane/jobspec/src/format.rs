//! `noded fmt`: canonical layout of HCL files, as `nomad fmt` (hclwrite) does it: two-space
//! indentation by nesting, one space around operators and after commas, `=` aligned across
//! consecutive attribute lines, comments and blank lines kept, heredoc bodies untouched.
//! Idempotent, and the result parses to the same job (both tested on the corpus).
//!
//! Works on tokens rather than the syntax tree so that every comment survives wherever it is.

use super::error::{JobspecError, JobspecErrors};
use super::limits::Limits;
use super::source::Source;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Ident,
    Number,
    /// A quoted string, with any `${…}` inside, verbatim.
    Str,
    /// A heredoc from `<<EOT` to its closing marker, verbatim.
    Heredoc,
    Comment,
    /// A `/* … */` comment that spans lines, verbatim.
    BlockComment,
    Newline,
    Punct,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: Tok,
    text: &'a str,
}

/// Formats HCL text. Refuses text that does not parse, naming where.
pub fn format_hcl(src: &str) -> Result<String, JobspecErrors> {
    let source = Source::new("<input>", src);
    super::hcl::parse_syntax(&source, &Limits::default())?;
    let tokens = tokenize(src).map_err(|at| {
        JobspecErrors::from(JobspecError::new(
            Some(source.pos(at)),
            "",
            "cannot format: unterminated string, heredoc or comment",
        ))
    })?;
    let out = render(&tokens);
    // Never hand back something that no longer parses.
    let check = Source::new("<formatted>", &out);
    if super::hcl::parse_syntax(&check, &Limits::default()).is_err() {
        return Err(JobspecErrors::one(
            "",
            "internal error: formatting produced invalid HCL; the input is left as it was",
        ));
    }
    Ok(out)
}

fn tokenize(s: &str) -> Result<Vec<Token<'_>>, usize> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let kind = match c {
            b'\n' => {
                i += 1;
                Tok::Newline
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                i = line_end(b, i);
                Tok::Comment
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i = line_end(b, i);
                Tok::Comment
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = s[i + 2..].find("*/").ok_or(i)?;
                i = i + 2 + end + 2;
                if s[start..i].contains('\n') {
                    Tok::BlockComment
                } else {
                    Tok::Comment
                }
            }
            b'"' => {
                i = string_end(b, i)?;
                Tok::Str
            }
            b'<' if b.get(i + 1) == Some(&b'<') && heredoc_start(b, i + 2) => {
                i = heredoc_end(s, i)?;
                Tok::Heredoc
            }
            b'0'..=b'9' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    if b[i] == b'.' && !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                        break;
                    }
                    if (b[i] == b'e' || b[i] == b'E') && matches!(b.get(i + 1), Some(b'+' | b'-')) {
                        i += 1;
                    }
                    i += 1;
                }
                Tok::Number
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'-'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                Tok::Ident
            }
            _ => {
                const OPS: &[&str] = &["...", "==", "!=", "<=", ">=", "&&", "||", "=>"];
                let op = OPS.iter().find(|op| s[i..].starts_with(**op));
                i += op.map_or(1, |op| op.len());
                while !s.is_char_boundary(i) {
                    i += 1;
                }
                Tok::Punct
            }
        };
        out.push(Token {
            kind,
            text: &s[start..i],
        });
    }
    Ok(out)
}

fn line_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b'\n' {
        i += 1;
    }
    i
}

/// The end (exclusive) of the quoted string starting at `i`, through nested `${ … }`.
fn string_end(b: &[u8], mut i: usize) -> Result<usize, usize> {
    let start = i;
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Ok(i + 1),
            b'\n' => return Err(start),
            b'$' | b'%' if b.get(i + 1) == Some(&b'{') => {
                if i > 0 && b[i - 1] == b[i] {
                    i += 2; // `$${` / `%%{` escape
                    continue;
                }
                i = template_end(b, i + 2).ok_or(start)?;
            }
            _ => i += 1,
        }
    }
    Err(start)
}

/// Skips an interpolation body, from just after `${` to just after its `}`.
fn template_end(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 1;
    while i < b.len() {
        match b[i] {
            b'"' => i = string_end(b, i).ok()?,
            b'{' => {
                depth += 1;
                i += 1;
            }
            b'}' => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

fn heredoc_start(b: &[u8], i: usize) -> bool {
    let j = if b.get(i) == Some(&b'-') { i + 1 } else { i };
    b.get(j)
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
}

/// The end of a heredoc starting at `i` (`<<`), just after its closing marker.
fn heredoc_end(s: &str, i: usize) -> Result<usize, usize> {
    let rest = &s[i + 2..];
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let marker: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    let first_nl = s[i..].find('\n').ok_or(i)? + i + 1;
    let mut pos = first_nl;
    loop {
        let end = s[pos..].find('\n').map_or(s.len(), |n| pos + n);
        if s[pos..end].trim() == marker {
            let close = pos + s[pos..end].find(marker.as_str()).unwrap_or(0) + marker.len();
            return Ok(close);
        }
        if end >= s.len() {
            return Err(i);
        }
        pos = end + 1;
    }
}

fn is_open(t: &str) -> bool {
    matches!(t, "{" | "[" | "(")
}

fn is_close(t: &str) -> bool {
    matches!(t, "}" | "]" | ")")
}

/// Tokens after which `-` and `!` are unary.
fn before_unary(t: Option<&Token<'_>>) -> bool {
    match t {
        None => true,
        Some(t) => {
            t.kind == Tok::Punct && !is_close(t.text)
                || t.kind == Tok::Ident && matches!(t.text, "in" | "if")
        }
    }
}

fn render(tokens: &[Token<'_>]) -> String {
    // Split into lines.
    let mut lines: Vec<Vec<Token<'_>>> = vec![Vec::new()];
    for t in tokens {
        if t.kind == Tok::Newline {
            lines.push(Vec::new());
        } else if let Some(l) = lines.last_mut() {
            l.push(*t);
        }
    }
    // Indentation and the text of each line.
    let mut depth: i64 = 0;
    let mut rendered: Vec<(i64, String, Option<usize>)> = Vec::new();
    for line in &lines {
        if line.is_empty() {
            rendered.push((0, String::new(), None));
            continue;
        }
        let leading_closes = line
            .iter()
            .take_while(|t| t.kind == Tok::Punct && is_close(t.text))
            .count() as i64;
        let indent = (depth - leading_closes).max(0);
        for t in line {
            if t.kind == Tok::Punct {
                if is_open(t.text) {
                    depth += 1;
                } else if is_close(t.text) {
                    depth -= 1;
                }
            }
        }
        let (text, key_len) = render_line(line);
        rendered.push((indent, text, key_len));
    }
    // Align `=` over runs of attribute lines at the same depth.
    let mut i = 0;
    while i < rendered.len() {
        if rendered[i].2.is_none() {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < rendered.len() && rendered[j].2.is_some() && rendered[j].0 == rendered[i].0 {
            j += 1;
        }
        let width = rendered[i..j].iter().filter_map(|r| r.2).max().unwrap_or(0);
        for r in &mut rendered[i..j] {
            if let Some(k) = r.2 {
                let (key, rest) = r.1.split_at(k);
                r.1 = format!("{key}{}{}", " ".repeat(width - k), rest);
            }
        }
        i = j;
    }
    let mut out = String::new();
    let mut blank_run = 0;
    for (indent, text, _) in rendered.iter() {
        if text.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            for _ in 0..blank_run {
                out.push('\n');
            }
        }
        blank_run = 0;
        out.push_str(&"  ".repeat(*indent as usize));
        out.push_str(text);
        out.push('\n');
    }
    out
}

/// The text of one line with canonical spacing; for an attribute line, the key's length.
fn render_line(line: &[Token<'_>]) -> (String, Option<usize>) {
    let mut out = String::new();
    let mut unary_pending = false;
    for (i, t) in line.iter().enumerate() {
        let prev = if i == 0 { None } else { line.get(i - 1) };
        if let Some(p) = prev {
            if space_between(p, t, unary_pending, prev_of(line, i)) {
                out.push(' ');
            }
        }
        unary_pending = t.kind == Tok::Punct && matches!(t.text, "-" | "!") && before_unary(prev);
        out.push_str(t.text);
    }
    let is_attr = line.len() >= 2
        && matches!(line[0].kind, Tok::Ident | Tok::Str)
        && line[1].kind == Tok::Punct
        && line[1].text == "="
        && line.len() > 2;
    (out, is_attr.then(|| line[0].text.len()))
}

fn prev_of<'a>(line: &'a [Token<'a>], i: usize) -> Option<&'a Token<'a>> {
    if i >= 2 {
        line.get(i - 2)
    } else {
        None
    }
}

fn space_between(
    p: &Token<'_>,
    n: &Token<'_>,
    after_unary: bool,
    before_p: Option<&Token<'_>>,
) -> bool {
    let (pt, nt) = (p.text, n.text);
    let pp = p.kind == Tok::Punct;
    let np = n.kind == Tok::Punct;
    if n.kind == Tok::Comment || n.kind == Tok::BlockComment {
        return true;
    }
    if after_unary {
        return false;
    }
    if np && nt == "," {
        return false;
    }
    if pp && pt == "," {
        return true;
    }
    if pp && (pt == "(" || pt == "[") {
        return false;
    }
    if np && (nt == ")" || nt == "]") {
        return false;
    }
    if pp && pt == "." || np && (nt == "." || nt == "...") {
        return false;
    }
    if np && nt == "*" && pp && pt == "["
        || pp && pt == "*" && before_p.is_some_and(|b| b.text == "[" || b.text == ".")
    {
        return false;
    }
    if np && nt == "(" {
        return !(p.kind == Tok::Ident);
    }
    if np && nt == "[" {
        return !(matches!(p.kind, Tok::Ident | Tok::Str | Tok::Number) || pp && is_close(pt));
    }
    if pp && pt == "{" && np && nt == "}" {
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacing_and_alignment_follow_hclwrite() {
        let src = "  job    \"j\"   {\n  type          = \"service\"\n  datacenters = [   \"dc1\"  ,\"dc2\"]\n  count=-1\n  x = a.b[0][*].c\n  y = upper( \"a\" )\n  z = !true\n  e = {}\n  s = \"${ var.a }\" # keep\n  h = <<-EOT\n      body  stays\n    EOT\n  m = {for k, v in local.m : k => v...}\n  t = a ? -1 : b * 2\n}\n";
        let out = format_hcl(src).unwrap();
        assert_eq!(
            out,
            "job \"j\" {\n  type        = \"service\"\n  datacenters = [\"dc1\", \"dc2\"]\n  count       = -1\n  x           = a.b[0][*].c\n  y           = upper(\"a\")\n  z           = !true\n  e           = {}\n  s           = \"${ var.a }\" # keep\n  h           = <<-EOT\n      body  stays\n    EOT\n  m           = { for k, v in local.m : k => v... }\n  t           = a ? -1 : b * 2\n}\n"
        );
        assert_eq!(format_hcl(&out).unwrap(), out);
    }

    #[test]
    fn invalid_hcl_is_refused() {
        assert!(format_hcl("job \"j\" {").is_err());
    }
}
