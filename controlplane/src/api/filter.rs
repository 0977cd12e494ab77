//! Filter expressions (`?filter=`), in the language of HashiCorp's go-bexpr that Nomad's list
//! endpoints take, evaluated over the JSON form of each object the endpoint lists: a selector
//! is a path of JSON member names (`Status`, `Meta.rack`, `Meta["rack name"]`).
//!
//! ```text
//! expr    := or
//! or      := and ("or" and)*
//! and     := unary ("and" unary)*
//! unary   := "not" unary | "(" or ")" | match
//! match   := selector ("==" | "!=") value
//!          | selector ["not"] ("contains" | "matches") value
//!          | selector "is" ["not"] "empty"
//!          | value ["not"] "in" selector
//! value   := "quoted" | `raw` | number | true | false | bare-word
//! ```
//!
//! Pure and bounded, so it can take anything a caller sends: at most [`MAX_FILTER_BYTES`] of
//! text, [`MAX_DEPTH`] levels of nesting, and regular expressions under a compiled-size
//! limit. A parse error names the byte position it was found at.
//!
//! Semantics, where go-bexpr leaves room: a selector naming nothing (a missing member) makes
//! `==`, `contains`, `in` and `matches` false, their negations true, and `is empty` true.
//! `==` compares with the selected value's own type: a string as text, a number numerically,
//! a boolean as `true`/`false`; an array or object is never equal to a literal. `contains`
//! and `in` look for an element of an array, a key of an object, or a substring of a string.

use std::fmt;

use serde_json::Value;

/// The longest filter accepted, in bytes.
pub const MAX_FILTER_BYTES: usize = 4096;
/// The deepest nesting (parentheses and `not`) accepted.
pub const MAX_DEPTH: usize = 32;
/// The compiled size a `matches` regular expression may take.
const MAX_REGEX_BYTES: usize = 256 * 1024;

/// A filter that did not parse: what, and at which byte of the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter expression: at position {position}: {message}")]
pub struct FilterError {
    pub position: usize,
    pub message: String,
}

/// A parsed filter expression.
#[derive(Clone)]
pub struct Filter {
    source: String,
    expr: Expr,
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Filter").field(&self.source).finish()
    }
}

impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

#[derive(Clone)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Match(Match),
}

#[derive(Clone)]
enum Match {
    Equal(Vec<String>, String),
    NotEqual(Vec<String>, String),
    Contains(Vec<String>, String),
    Matches(Vec<String>, Box<regex::Regex>),
    IsEmpty(Vec<String>),
    In(String, Vec<String>),
}

impl Filter {
    /// Parses `text`; empty text is an error (an absent filter is `None`, not an empty one).
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        if text.len() > MAX_FILTER_BYTES {
            return Err(FilterError {
                position: MAX_FILTER_BYTES,
                message: format!(
                    "the expression is {} bytes long; the limit is {MAX_FILTER_BYTES}",
                    text.len()
                ),
            });
        }
        let tokens = lex(text)?;
        let mut parser = Parser {
            tokens,
            next: 0,
            end: text.len(),
        };
        let expr = parser.or(0)?;
        if let Some(token) = parser.peek() {
            return Err(FilterError {
                position: token.position,
                message: format!(
                    "unexpected {}; expected \"and\", \"or\" or the end",
                    token.kind
                ),
            });
        }
        Ok(Filter {
            source: text.to_string(),
            expr,
        })
    }

    /// The expression as given.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `value` (an object's JSON form) matches.
    pub fn matches(&self, value: &Value) -> bool {
        eval(&self.expr, value)
    }
}

fn eval(expr: &Expr, value: &Value) -> bool {
    match expr {
        Expr::Or(a, b) => eval(a, value) || eval(b, value),
        Expr::And(a, b) => eval(a, value) && eval(b, value),
        Expr::Not(a) => !eval(a, value),
        Expr::Match(m) => eval_match(m, value),
    }
}

fn select<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, name| match v {
        Value::Object(map) => map.get(name),
        Value::Array(items) => name.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn eval_match(m: &Match, value: &Value) -> bool {
    match m {
        Match::Equal(path, literal) => select(value, path).is_some_and(|v| equals(v, literal)),
        Match::NotEqual(path, literal) => !select(value, path).is_some_and(|v| equals(v, literal)),
        Match::Contains(path, literal) => select(value, path).is_some_and(|v| contains(v, literal)),
        Match::In(literal, path) => select(value, path).is_some_and(|v| contains(v, literal)),
        Match::Matches(path, re) => {
            select(value, path).is_some_and(|v| v.as_str().is_some_and(|s| re.is_match(s)))
        }
        Match::IsEmpty(path) => match select(value, path) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(o)) => o.is_empty(),
            Some(_) => false,
        },
    }
}

fn equals(value: &Value, literal: &str) -> bool {
    match value {
        Value::String(s) => s == literal,
        Value::Bool(b) => literal.parse::<bool>().is_ok_and(|l| l == *b),
        Value::Number(n) => match (n.as_f64(), literal.parse::<f64>()) {
            (Some(a), Ok(b)) => a == b,
            _ => false,
        },
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

fn contains(value: &Value, literal: &str) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|i| equals(i, literal)),
        Value::Object(map) => map.contains_key(literal),
        Value::String(s) => s.contains(literal),
        _ => false,
    }
}

// ---- lexing ----

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// A bare word: a selector segment, a keyword, or an unquoted value.
    Word(String),
    /// A quoted or raw string.
    Str(String),
    Number(String),
    Eq,
    NotEq,
    Dot,
    LParen,
    RParen,
    LBracket,
    RBracket,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Word(w) => write!(f, "{w:?}"),
            Kind::Str(s) => write!(f, "string {s:?}"),
            Kind::Number(n) => write!(f, "number {n}"),
            Kind::Eq => f.write_str("\"==\""),
            Kind::NotEq => f.write_str("\"!=\""),
            Kind::Dot => f.write_str("\".\""),
            Kind::LParen => f.write_str("\"(\""),
            Kind::RParen => f.write_str("\")\""),
            Kind::LBracket => f.write_str("\"[\""),
            Kind::RBracket => f.write_str("\"]\""),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    position: usize,
}

fn lex(text: &str) -> Result<Vec<Token>, FilterError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    let err = |position: usize, message: String| FilterError { position, message };
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let kind = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'=' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                Kind::Eq
            }
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                Kind::NotEq
            }
            b'.' => {
                i += 1;
                Kind::Dot
            }
            b'(' => {
                i += 1;
                Kind::LParen
            }
            b')' => {
                i += 1;
                Kind::RParen
            }
            b'[' => {
                i += 1;
                Kind::LBracket
            }
            b']' => {
                i += 1;
                Kind::RBracket
            }
            b'"' => {
                let (s, end) = quoted(text, i)?;
                i = end;
                Kind::Str(s)
            }
            b'`' => {
                let close = text[i + 1..]
                    .find('`')
                    .ok_or_else(|| err(start, "a raw string (`...`) is not closed".to_string()))?;
                let s = text[i + 1..i + 1 + close].to_string();
                i += close + 2;
                Kind::Str(s)
            }
            b'-' | b'0'..=b'9' => {
                i += 1;
                let digits = |i: &mut usize| {
                    while *i < bytes.len() && bytes[*i].is_ascii_digit() {
                        *i += 1;
                    }
                };
                digits(&mut i);
                // A fraction only when a digit follows the dot: `List.0.Name` is a path.
                if bytes.get(i) == Some(&b'.') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                    digits(&mut i);
                }
                let n = &text[start..i];
                if n == "-" || n.parse::<f64>().is_err() {
                    return Err(err(start, format!("{n:?} is not a number")));
                }
                Kind::Number(n.to_string())
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'-')
                {
                    i += 1;
                }
                Kind::Word(text[start..i].to_string())
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return Err(err(start, format!("unexpected character {ch:?}")));
            }
        };
        tokens.push(Token {
            kind,
            position: start,
        });
    }
    Ok(tokens)
}

/// A `"..."` string starting at `start`, with Go's common escapes; returns it and the byte
/// after the closing quote.
fn quoted(text: &str, start: usize) -> Result<(String, usize), FilterError> {
    let mut out = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((offset, c)) = chars.next() {
        match c {
            '"' => return Ok((out, start + 1 + offset + 1)),
            '\\' => {
                let escaped = match chars.next() {
                    Some((_, '"')) => '"',
                    Some((_, '\\')) => '\\',
                    Some((_, 'n')) => '\n',
                    Some((_, 't')) => '\t',
                    Some((_, 'r')) => '\r',
                    Some((_, other)) => {
                        return Err(FilterError {
                            position: start + 1 + offset,
                            message: format!("unknown escape \\{other} in a quoted string"),
                        })
                    }
                    None => break,
                };
                out.push(escaped);
            }
            c => out.push(c),
        }
    }
    Err(FilterError {
        position: start,
        message: "a quoted string is not closed".to_string(),
    })
}

// ---- parsing ----

struct Parser {
    tokens: Vec<Token>,
    next: usize,
    /// The text's length: where "the end" is.
    end: usize,
}

fn is_keyword(word: &str) -> bool {
    matches!(
        word,
        "and" | "or" | "not" | "in" | "is" | "empty" | "contains" | "matches"
    )
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next)
    }

    fn peek_word(&self, offset: usize) -> Option<&str> {
        match self.tokens.get(self.next + offset).map(|t| &t.kind) {
            Some(Kind::Word(w)) => Some(w),
            _ => None,
        }
    }

    fn position(&self) -> usize {
        self.peek().map(|t| t.position).unwrap_or(self.end)
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, FilterError> {
        let found = match self.peek() {
            Some(t) => format!("found {}", t.kind),
            None => "found the end of the expression".to_string(),
        };
        Err(FilterError {
            position: self.position(),
            message: format!("{}; {found}", message.into()),
        })
    }

    fn take_word(&mut self, word: &str) -> bool {
        if self.peek_word(0) == Some(word) {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn take(&mut self, kind: &Kind) -> bool {
        if self.peek().is_some_and(|t| &t.kind == kind) {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut left = self.and(depth)?;
        while self.take_word("or") {
            let right = self.and(depth)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut left = self.unary(depth)?;
        while self.take_word("and") {
            let right = self.unary(depth)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, FilterError> {
        if depth >= MAX_DEPTH {
            return Err(FilterError {
                position: self.position(),
                message: format!("the expression nests deeper than {MAX_DEPTH} levels"),
            });
        }
        // `not in` after a bare-word value is handled in `matcher`; a leading `not` here
        // always negates what follows.
        if self.peek_word(0) == Some("not") {
            self.next += 1;
            return Ok(Expr::Not(Box::new(self.unary(depth + 1)?)));
        }
        if self.take(&Kind::LParen) {
            let inner = self.or(depth + 1)?;
            if !self.take(&Kind::RParen) {
                return self.error("expected \")\"");
            }
            return Ok(inner);
        }
        self.matcher()
    }

    fn matcher(&mut self) -> Result<Expr, FilterError> {
        // A literal first: `value [not] in selector`.
        if let Some(Kind::Str(s) | Kind::Number(s)) = self.peek().map(|t| t.kind.clone()) {
            self.next += 1;
            return self.in_selector(s);
        }
        let start = self.next;
        let path = self.selector()?;
        // A bare word before `in` is a value, not a selector (`web in TaskGroups`).
        if path.len() == 1
            && (self.peek_word(0) == Some("in")
                || (self.peek_word(0) == Some("not") && self.peek_word(1) == Some("in")))
            && matches!(self.tokens[start].kind, Kind::Word(_))
        {
            let value = path.into_iter().next().unwrap_or_default();
            return self.in_selector(value);
        }
        if self.take(&Kind::Eq) {
            return Ok(Expr::Match(Match::Equal(path, self.value()?)));
        }
        if self.take(&Kind::NotEq) {
            return Ok(Expr::Match(Match::NotEqual(path, self.value()?)));
        }
        if self.take_word("is") {
            let negated = self.take_word("not");
            if !self.take_word("empty") {
                return self.error("expected \"empty\" after \"is\"");
            }
            return Ok(maybe_negate(Match::IsEmpty(path), negated));
        }
        let negated = self.take_word("not");
        let m = if self.take_word("contains") {
            Match::Contains(path, self.value()?)
        } else if self.take_word("matches") {
            let position = self.position();
            let pattern = self.value()?;
            let re = regex::RegexBuilder::new(&pattern)
                .size_limit(MAX_REGEX_BYTES)
                .build()
                .map_err(|e| FilterError {
                    position,
                    message: format!("{pattern:?} is not a valid regular expression: {e}"),
                })?;
            Match::Matches(path, Box::new(re))
        } else if negated {
            return self.error("expected \"contains\", \"matches\" or \"in\" after \"not\"");
        } else {
            return self.error(
                "expected an operator (==, !=, contains, matches, in, is empty) after the selector",
            );
        };
        Ok(maybe_negate(m, negated))
    }

    fn in_selector(&mut self, value: String) -> Result<Expr, FilterError> {
        let negated = self.take_word("not");
        if !self.take_word("in") {
            return self.error("expected \"in\" after a value (value in Selector)");
        }
        let m = Match::In(value, self.selector()?);
        Ok(maybe_negate(m, negated))
    }

    /// `Name(.Name | ["key"])*`.
    fn selector(&mut self) -> Result<Vec<String>, FilterError> {
        let mut path = Vec::new();
        match self.peek().map(|t| t.kind.clone()) {
            Some(Kind::Word(w)) if !is_keyword(&w) => {
                self.next += 1;
                path.push(w);
            }
            _ => return self.error("expected a selector (a field name such as Status)"),
        }
        loop {
            if self.take(&Kind::Dot) {
                match self.peek().map(|t| t.kind.clone()) {
                    Some(Kind::Word(w)) => {
                        self.next += 1;
                        path.push(w);
                    }
                    Some(Kind::Number(n)) if n.bytes().all(|b| b.is_ascii_digit()) => {
                        self.next += 1;
                        path.push(n);
                    }
                    _ => return self.error("expected a field name after \".\""),
                }
            } else if self.take(&Kind::LBracket) {
                match self.peek().map(|t| t.kind.clone()) {
                    Some(Kind::Str(s)) => {
                        self.next += 1;
                        path.push(s);
                    }
                    _ => return self.error("expected a quoted key after \"[\""),
                }
                if !self.take(&Kind::RBracket) {
                    return self.error("expected \"]\"");
                }
            } else {
                return Ok(path);
            }
        }
    }

    fn value(&mut self) -> Result<String, FilterError> {
        match self.peek().map(|t| t.kind.clone()) {
            Some(Kind::Str(s) | Kind::Number(s)) => {
                self.next += 1;
                Ok(s)
            }
            Some(Kind::Word(w)) if !is_keyword(&w) => {
                self.next += 1;
                Ok(w)
            }
            _ => self.error("expected a value (a quoted string, a number, true or false)"),
        }
    }
}

/// `Selector not contains X` and friends: the match, negated.
fn negate(m: Match) -> Expr {
    match m {
        Match::Equal(p, v) => Expr::Match(Match::NotEqual(p, v)),
        other => Expr::Not(Box::new(Expr::Match(other))),
    }
}

fn maybe_negate(m: Match, negated: bool) -> Expr {
    if negated {
        negate(m)
    } else {
        Expr::Match(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval_json() -> Value {
        json!({
            "ID": "5f0c1d2e",
            "JobID": "web-frontend",
            "Status": "blocked",
            "Priority": 50,
            "Stop": false,
            "TaskGroups": ["web", "cache"],
            "Meta": {"rack": "r1", "rack name": "north"},
            "FailedTGAllocs": {},
            "NextEval": "",
            "Nested": {"List": [{"Name": "a"}]},
        })
    }

    #[test]
    fn a_table_of_expressions_over_an_object() {
        let v = eval_json();
        let cases: &[(&str, bool)] = &[
            (r#"Status == "blocked""#, true),
            (r#"Status == "pending""#, false),
            (r#"Status != "pending""#, true),
            ("Status == blocked", true),
            (r#"JobID matches "^web""#, true),
            (r#"JobID not matches "^api""#, true),
            (r#"JobID matches "^api""#, false),
            (r#""web" in TaskGroups"#, true),
            ("web in TaskGroups", true),
            (r#""api" in TaskGroups"#, false),
            (r#""api" not in TaskGroups"#, true),
            (r#"TaskGroups contains "cache""#, true),
            (r#"TaskGroups not contains "cache""#, false),
            (r#"JobID contains "front""#, true),
            (r#""rack" in Meta"#, true),
            (r#"Meta.rack == "r1""#, true),
            (r#"Meta["rack name"] == "north""#, true),
            ("Priority == 50", true),
            ("Priority == 50.0", true),
            ("Priority != 70", true),
            ("Stop == false", true),
            ("Stop == true", false),
            ("FailedTGAllocs is empty", true),
            ("NextEval is empty", true),
            ("TaskGroups is not empty", true),
            ("Missing is empty", true),
            (r#"Missing == "x""#, false),
            (r#"Missing != "x""#, true),
            ("Nested.List.0.Name == a", true),
            (
                r#"Status == "blocked" and (JobID == "x" or Priority == 50)"#,
                true,
            ),
            (
                r#"Status == "blocked" and JobID == "x" or Priority == 50"#,
                true,
            ),
            (
                r#"Status == "blocked" and (JobID == "x" or Priority == 70)"#,
                false,
            ),
            (r#"not Status == "blocked""#, false),
            (r#"not (Status == "pending" or Stop == true)"#, true),
            ("JobID matches `^web-[a-z]+$`", true),
            (r#"Status == "a\"b""#, false),
        ];
        for (expr, want) in cases {
            let filter = Filter::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
            assert_eq!(filter.matches(&v), *want, "{expr}");
        }
    }

    #[test]
    fn parse_errors_name_the_position() {
        let cases: &[(&str, usize, &str)] = &[
            ("Status ==", 9, "expected a value"),
            ("Status = 1", 7, "unexpected character"),
            (r#"Status == "open"#, 10, "not closed"),
            (r#"(Status == "a""#, 14, "expected \")\""),
            (r#"Status == "a" junk"#, 14, "unexpected"),
            (r#"Status "a""#, 7, "expected an operator"),
            (r#"JobID matches "(""#, 14, "regular expression"),
            ("Status is full", 10, "expected \"empty\""),
            ("and == 1", 0, "expected a selector"),
            ("", 0, "expected a selector"),
        ];
        for (expr, position, words) in cases {
            let e = match Filter::parse(expr) {
                Ok(_) => panic!("{expr:?} parsed"),
                Err(e) => e,
            };
            assert_eq!(e.position, *position, "{expr:?}: {e}");
            assert!(e.to_string().contains(words), "{expr:?}: {e}");
            assert!(e.to_string().contains(&format!("position {position}")));
        }
    }

    #[test]
    fn bounds_hold() {
        let long = format!("Status == \"{}\"", "x".repeat(MAX_FILTER_BYTES));
        assert!(Filter::parse(&long)
            .unwrap_err()
            .message
            .contains("limit is 4096"));
        let deep = format!("{}Status == a{}", "(".repeat(100), ")".repeat(100));
        assert!(Filter::parse(&deep)
            .unwrap_err()
            .message
            .contains("deeper than"));
        let nots = format!("{}Status == a", "not ".repeat(100));
        assert!(Filter::parse(&nots).is_err());
        let ok = format!("{}Status == blocked{}", "(".repeat(10), ")".repeat(10));
        assert!(Filter::parse(&ok).unwrap().matches(&eval_json()));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every prefix and a few mutations of valid expressions.
        let seeds = [
            r#"Status == "blocked" and ("web" not in TaskGroups or Meta["a b"] is not empty)"#,
            "JobID matches `^(a|b)+$` or not Priority != 3.5",
        ];
        for seed in seeds {
            for end in 0..=seed.len() {
                if let Some(prefix) = seed.get(..end) {
                    if let Ok(f) = Filter::parse(prefix) {
                        f.matches(&eval_json());
                    }
                }
            }
            for (i, _) in seed.char_indices() {
                for junk in ["\"", "(", ")", "[", "\\", "é", "`", "-"] {
                    let mut s = seed.to_string();
                    s.insert_str(i, junk);
                    if let Ok(f) = Filter::parse(&s) {
                        f.matches(&eval_json());
                    }
                }
            }
        }
    }
}
