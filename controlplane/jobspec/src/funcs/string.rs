//! String functions: `chomp`, `format`, `formatlist`, `indent`, `join`, `lower`, `upper`,
//! `title`, `replace`, `regex_replace`, `split`, `strlen`, `strrev`, `substr`, `trim`,
//! `trimprefix`, `trimsuffix`, `trimspace`.

use std::iter::Peekable;
use std::str::Chars;

use super::{bounded, list_of, too_many, Args, MAX_ELEMENTS, MAX_STRING, R};
use crate::value::Value;

/// Largest `regex` program a jobspec may compile.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Widest field, longest precision and deepest indent a function may be asked for.
const MAX_WIDTH: usize = 1000;

pub(super) fn chomp(a: Args<'_>) -> R {
    let s = a.str(0)?;
    let t = s
        .strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .or_else(|| s.strip_suffix('\r'))
        .unwrap_or(&s);
    Ok(Value::string(t))
}

pub(super) fn format(a: Args<'_>) -> R {
    format_go(&a.str(0)?, a.rest(1)).map(Value::String)
}

pub(super) fn formatlist(a: Args<'_>) -> R {
    let fmt = a.str(0)?;
    let rest = a.rest(1);
    let mut n: Option<usize> = None;
    for v in rest {
        if let Value::List(l) = v {
            match n {
                Some(m) if m != l.len() => {
                    return Err("all list arguments must have the same length".into())
                }
                _ => n = Some(l.len()),
            }
        }
    }
    let n = n.unwrap_or(1);
    if n > MAX_ELEMENTS {
        return Err(too_many());
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let row: Vec<Value> = rest
            .iter()
            .map(|v| match v {
                Value::List(l) => l.get(i).cloned().unwrap_or_default(),
                other => other.clone(),
            })
            .collect();
        out.push(Value::String(format_go(&fmt, &row)?));
    }
    Ok(Value::List(out))
}

pub(super) fn indent(a: Args<'_>) -> R {
    let n =
        usize::try_from(a.int(0)?).map_err(|_| "the indent must not be negative".to_string())?;
    if n > MAX_WIDTH {
        return Err(format!("the indent must be at most {MAX_WIDTH}"));
    }
    let pad = " ".repeat(n);
    let s = a.str(1)?;
    let lines: Vec<String> = s
        .split('\n')
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                l.to_string()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect();
    bounded(lines.join("\n"))
}

pub(super) fn join(a: Args<'_>) -> R {
    let sep = a.str(0)?;
    let mut parts = Vec::new();
    for (i, l) in a.rest(1).iter().enumerate() {
        for v in list_of(l).map_err(|m| format!("argument {}: {m}", i + 2))? {
            parts.push(v.to_str()?);
        }
    }
    bounded(parts.join(&sep))
}

pub(super) fn lower(a: Args<'_>) -> R {
    Ok(Value::String(a.str(0)?.to_lowercase()))
}

pub(super) fn upper(a: Args<'_>) -> R {
    Ok(Value::String(a.str(0)?.to_uppercase()))
}

pub(super) fn title(a: Args<'_>) -> R {
    let s = a.str(0)?;
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    Ok(Value::String(out))
}

/// `replace(s, sub, rep)`; a `sub` written `/like this/` is a regular expression.
pub(super) fn replace(a: Args<'_>) -> R {
    let (s, sub, rep) = (a.str(0)?, a.str(1)?, a.str(2)?);
    match sub.strip_prefix('/').and_then(|r| r.strip_suffix('/')) {
        Some(re) if sub.len() > 1 => replace_regex(&s, re, &rep),
        _ if sub.is_empty() => Ok(Value::String(s)),
        _ => bounded(s.replace(&sub, &rep)),
    }
}

pub(super) fn regex_replace(a: Args<'_>) -> R {
    replace_regex(&a.str(0)?, &a.str(1)?, &a.str(2)?)
}

pub(super) fn split(a: Args<'_>) -> R {
    let (sep, s) = (a.str(0)?, a.str(1)?);
    let parts: Vec<Value> = if sep.is_empty() {
        s.chars().map(|c| Value::String(c.to_string())).collect()
    } else {
        s.split(sep.as_str()).map(Value::string).collect()
    };
    Ok(Value::List(parts))
}

pub(super) fn strlen(a: Args<'_>) -> R {
    Ok(Value::int(a.str(0)?.chars().count() as i64))
}

pub(super) fn strrev(a: Args<'_>) -> R {
    Ok(Value::String(a.str(0)?.chars().rev().collect()))
}

/// `substr(s, offset, length)`: a negative offset counts from the end, a negative length
/// (or one past the end) takes the rest.
pub(super) fn substr(a: Args<'_>) -> R {
    let s: Vec<char> = a.str(0)?.chars().collect();
    let len = s.len() as i64;
    let given = a.int(1)?;
    let off = if given < 0 { given + len } else { given };
    if off < 0 || off > len {
        return Err(format!(
            "offset {given} is out of range for a string of {len} characters"
        ));
    }
    let mut n = a.int(2)?;
    // Compared as `n > len - off`, not `off + n > len`, which overflows for a huge length.
    if n < 0 || n > len - off {
        n = len - off;
    }
    let range = usize::try_from(off).unwrap_or(0)..usize::try_from(off + n).unwrap_or(0);
    Ok(Value::String(
        s.get(range).unwrap_or_default().iter().collect(),
    ))
}

pub(super) fn trim(a: Args<'_>) -> R {
    let cut: Vec<char> = a.str(1)?.chars().collect();
    Ok(Value::String(
        a.str(0)?.trim_matches(|c| cut.contains(&c)).to_string(),
    ))
}

pub(super) fn trimprefix(a: Args<'_>) -> R {
    let (s, p) = (a.str(0)?, a.str(1)?);
    Ok(Value::String(
        s.strip_prefix(p.as_str()).unwrap_or(&s).to_string(),
    ))
}

pub(super) fn trimsuffix(a: Args<'_>) -> R {
    let (s, p) = (a.str(0)?, a.str(1)?);
    Ok(Value::String(
        s.strip_suffix(p.as_str()).unwrap_or(&s).to_string(),
    ))
}

pub(super) fn trimspace(a: Args<'_>) -> R {
    Ok(Value::String(a.str(0)?.trim().to_string()))
}

fn compile(re: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(re)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

fn replace_regex(s: &str, re: &str, rep: &str) -> R {
    let re = compile(re).map_err(|e| format!("invalid regular expression: {e}"))?;
    bounded(re.replace_all(s, rep).into_owned())
}

/// Whether `re` compiles as a regular expression (used by constraint validation).
pub(crate) fn regex_error(re: &str) -> Option<String> {
    compile(re).err().map(|e| e.to_string())
}

/// One `%` directive of a format string.
#[derive(Debug, Default)]
struct Directive {
    flags: String,
    width: usize,
    precision: Option<usize>,
    verb: char,
}

/// `format` with Go verbs: %s %d %f %g %t %v %q %x %X %o %b %e %%, with width, precision
/// and flags.
fn format_go(fmt: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut next = 0usize;
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let d = directive(&mut chars)?;
        if d.verb == '%' {
            out.push('%');
            continue;
        }
        let arg = args
            .get(next)
            .ok_or_else(|| format!("the format needs more than {} arguments", args.len()))?;
        next += 1;
        pad(&d, &render(&d, arg)?, &mut out);
        if out.len() > MAX_STRING {
            return Err(format!(
                "the result would be longer than {MAX_STRING} bytes"
            ));
        }
    }
    if next < args.len() {
        return Err(format!(
            "{} arguments were given but the format uses {next}",
            args.len()
        ));
    }
    Ok(out)
}

/// Reads flags, width, precision and verb after a `%`.
fn directive(chars: &mut Peekable<Chars<'_>>) -> Result<Directive, String> {
    let flags = take_while(chars, |f| "-+ 0#".contains(f));
    let width = take_while(chars, |d| d.is_ascii_digit());
    let mut precision = None;
    if chars.peek() == Some(&'.') {
        chars.next();
        precision = Some(
            take_while(chars, |d| d.is_ascii_digit())
                .parse()
                .unwrap_or(0),
        );
    }
    let verb = chars.next().ok_or("the format ends with a lone %")?;
    let width: usize = if width.is_empty() || verb == '%' {
        0
    } else {
        width.parse().map_err(|_| "bad width")?
    };
    if verb != '%' && (width > MAX_WIDTH || precision.unwrap_or(0) > MAX_WIDTH) {
        return Err(format!("width and precision must be at most {MAX_WIDTH}"));
    }
    Ok(Directive {
        flags,
        width,
        precision,
        verb,
    })
}

fn take_while(chars: &mut Peekable<Chars<'_>>, keep: impl Fn(char) -> bool) -> String {
    let mut out = String::new();
    while let Some(&c) = chars.peek() {
        if !keep(c) {
            break;
        }
        out.push(c);
        chars.next();
    }
    out
}

/// The text of one argument under one verb, before padding.
fn render(d: &Directive, arg: &Value) -> Result<String, String> {
    Ok(match d.verb {
        's' => {
            let s = arg.to_str()?;
            match d.precision {
                Some(p) => s.chars().take(p).collect(),
                None => s,
            }
        }
        'v' => arg.to_string(),
        'q' => serde_json::Value::String(arg.to_str()?).to_string(),
        't' => arg.to_bool()?.to_string(),
        'd' => {
            let i = arg.to_i64()?;
            if d.flags.contains('+') && i >= 0 {
                format!("+{i}")
            } else {
                i.to_string()
            }
        }
        'x' => format!("{:x}", arg.to_i64()?),
        'X' => format!("{:X}", arg.to_i64()?),
        'o' => format!("{:o}", arg.to_i64()?),
        'b' => format!("{:b}", arg.to_i64()?),
        'f' | 'F' => format!("{:.*}", d.precision.unwrap_or(6), arg.to_number()?.as_f64()),
        'e' => format!(
            "{:.*e}",
            d.precision.unwrap_or(6),
            arg.to_number()?.as_f64()
        ),
        'g' => arg.to_number()?.to_string(),
        other => return Err(format!("unsupported verb %{other}")),
    })
}

/// Pads `body` to the directive's width: left-aligned with `-`, zero-filled after the sign
/// with `0` for numbers, right-aligned otherwise.
fn pad(d: &Directive, body: &str, out: &mut String) {
    let len = body.chars().count();
    if len >= d.width {
        out.push_str(body);
        return;
    }
    let fill = d.width - len;
    if d.flags.contains('-') {
        out.push_str(body);
        out.push_str(&" ".repeat(fill));
    } else if d.flags.contains('0') && "dfFeg".contains(d.verb) {
        let (sign, digits) = body.strip_prefix('-').map_or(("", body), |r| ("-", r));
        out.push_str(sign);
        out.push_str(&"0".repeat(fill));
        out.push_str(digits);
    } else {
        out.push_str(&" ".repeat(fill));
        out.push_str(body);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{i, l, run, s};
    use super::*;
    use crate::value::Number;

    #[test]
    fn string_functions() {
        assert_eq!(run("chomp", vec![s("a\n")]).unwrap(), s("a"));
        assert_eq!(
            run(
                "format",
                vec![
                    s("%s-%03d %.1f %v %q %%"),
                    s("x"),
                    i(7),
                    Value::Number(Number::Float(2.25)),
                    Value::Bool(true),
                    s("q")
                ]
            )
            .unwrap(),
            s("x-007 2.2 true \"q\" %")
        );
        assert!(run("format", vec![s("%s %s"), s("x")]).is_err());
        assert_eq!(
            run(
                "format",
                vec![s("[%-4s|%4s|%+d|%05.1f]"), s("a"), s("b"), i(3), i(-2)]
            )
            .unwrap(),
            s("[a   |   b|+3|-02.0]")
        );
        assert!(run("format", vec![s("%5000d"), i(1)])
            .unwrap_err()
            .contains("at most 1000"));
        assert_eq!(
            run(
                "formatlist",
                vec![s("%s=%d"), l(vec![s("a"), s("b")]), l(vec![i(1), i(2)])]
            )
            .unwrap(),
            l(vec![s("a=1"), s("b=2")])
        );
        assert_eq!(run("indent", vec![i(2), s("a\nb")]).unwrap(), s("a\n  b"));
        assert_eq!(
            run("join", vec![s(","), l(vec![s("a"), s("b")])]).unwrap(),
            s("a,b")
        );
        assert_eq!(run("lower", vec![s("AbC")]).unwrap(), s("abc"));
        assert_eq!(run("upper", vec![s("AbC")]).unwrap(), s("ABC"));
        assert_eq!(
            run("title", vec![s("hello world")]).unwrap(),
            s("Hello World")
        );
    }

    #[test]
    fn replacing_splitting_and_trimming() {
        assert_eq!(
            run("replace", vec![s("a-b-c"), s("-"), s("+")]).unwrap(),
            s("a+b+c")
        );
        assert_eq!(
            run("replace", vec![s("a1b22"), s("/[0-9]+/"), s("#")]).unwrap(),
            s("a#b#")
        );
        assert_eq!(
            run("replace", vec![s("a/b"), s("/"), s("|")]).unwrap(),
            s("a|b")
        );
        assert_eq!(
            run("regex_replace", vec![s("abc"), s("b"), s("x")]).unwrap(),
            s("axc")
        );
        assert!(run("regex_replace", vec![s("abc"), s("("), s("x")]).is_err());
        assert_eq!(
            run("split", vec![s(","), s("a,b")]).unwrap(),
            l(vec![s("a"), s("b")])
        );
        assert_eq!(run("strlen", vec![s("héllo")]).unwrap(), i(5));
        assert_eq!(run("strrev", vec![s("abc")]).unwrap(), s("cba"));
        assert_eq!(
            run("substr", vec![s("hello"), i(1), i(3)]).unwrap(),
            s("ell")
        );
        assert_eq!(
            run("substr", vec![s("hello"), i(-3), i(-1)]).unwrap(),
            s("llo")
        );
        assert!(run("substr", vec![s("hello"), i(9), i(1)]).is_err());
        assert_eq!(
            run("substr", vec![s("hello"), i(1), i(i64::MAX)]).unwrap(),
            s("ello")
        );
        assert_eq!(run("trim", vec![s("?!a?!"), s("!?")]).unwrap(), s("a"));
        assert_eq!(
            run("trimprefix", vec![s("foobar"), s("foo")]).unwrap(),
            s("bar")
        );
        assert_eq!(
            run("trimsuffix", vec![s("foobar"), s("bar")]).unwrap(),
            s("foo")
        );
        assert_eq!(run("trimspace", vec![s("  a \n")]).unwrap(), s("a"));
    }
}
