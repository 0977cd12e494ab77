//! Date and time functions: `timestamp`, `formatdate`, `timeadd`, with Terraform's
//! semantics (which Nomad's HCL2 shares), computed by jiff. Results are in UTC, whatever
//! offset the input carried.

use jiff::tz::TimeZone;
use jiff::{RoundMode, Timestamp, TimestampRound, Unit};

use super::{Args, R};
use crate::value::Value;

/// The time the caller passed as "now" (`ParseOptions::now_unix_nanos`), to the second:
/// evaluation reads no clock.
pub(super) fn timestamp(a: Args<'_>) -> R {
    Ok(Value::String(rfc3339_seconds(model::time::timestamp(
        a.ctx.now_unix_nanos,
    ))))
}

pub(super) fn formatdate(a: Args<'_>) -> R {
    format_date(&a.str(0)?, &a.str(1)?)
}

/// `timeadd(timestamp, duration)`, the duration in Go's syntax (`"-1h30m"`).
pub(super) fn timeadd(a: Args<'_>) -> R {
    add(&a.str(0)?, &a.str(1)?)
}

fn parse_timestamp(text: &str) -> Result<Timestamp, String> {
    model::time::parse_rfc3339(text)
        .map(model::time::timestamp)
        .ok_or_else(|| format!("{text:?} is not an RFC 3339 timestamp"))
}

/// RFC 3339 in UTC without a fraction, as Terraform's functions print times (Go's
/// `time.RFC3339` layout): the fraction is dropped, rounding towards the past.
fn rfc3339_seconds(t: Timestamp) -> String {
    let floor = TimestampRound::new()
        .smallest(Unit::Second)
        .mode(RoundMode::Floor);
    format!("{:.0}", t.round(floor).unwrap_or(t))
}

fn add(ts: &str, duration: &str) -> R {
    let base = parse_timestamp(ts)?;
    let d = model::duration::parse_go_signed(duration)?;
    let t = base
        .checked_add(d)
        .ok()
        .filter(|t| model::time::unix_nanos(*t).is_some())
        .ok_or_else(|| "the result is out of range".to_string())?;
    Ok(Value::String(rfc3339_seconds(t)))
}

/// Terraform's `formatdate(spec, timestamp)`: YYYY YY MMMM MMM MM M DD D EEEE EEE hh h HH H
/// mm m ss s AA aa ZZZZZ ZZZZ ZZZ Z, text in single quotes, `''` for a quote. The spec is
/// translated to strftime directives and jiff renders them.
fn format_date(spec: &str, ts: &str) -> R {
    let t = parse_timestamp(ts)?;
    let strftime = to_strftime(spec)?;
    jiff::fmt::strtime::format(&strftime, &t.to_zoned_datetime(TimeZone::UTC))
        .map(Value::String)
        .map_err(|e| format!("cannot format the date: {e}"))
}

/// Translates a Terraform date spec into a strftime format.
fn to_strftime(spec: &str) -> Result<String, String> {
    let chars: Vec<char> = spec.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c == '\'' {
            i = quoted(&chars, i, &mut out)?;
        } else if c.is_ascii_alphabetic() {
            let run = chars[i..].iter().take_while(|&&x| x == c).count();
            let token: String = std::iter::repeat_n(c, run).collect();
            out.push_str(directive(&token)?);
            i += run;
        } else {
            literal(c, &mut out);
            i += 1;
        }
    }
    Ok(out)
}

/// Copies the quoted text starting at `chars[start]` (a `'`); `''` is a literal quote,
/// inside quotes or out. Returns where the text after it starts.
fn quoted(chars: &[char], start: usize, out: &mut String) -> Result<usize, String> {
    if chars.get(start + 1) == Some(&'\'') {
        out.push('\'');
        return Ok(start + 2);
    }
    let mut i = start + 1;
    loop {
        match (chars.get(i), chars.get(i + 1)) {
            (None, _) => return Err("unterminated quoted text in the format".to_string()),
            (Some('\''), Some('\'')) => {
                out.push('\'');
                i += 2;
            }
            (Some('\''), _) => return Ok(i + 1),
            (Some(&c), _) => {
                literal(c, out);
                i += 1;
            }
        }
    }
}

/// Text copied as it is: only `%` needs escaping in strftime.
fn literal(c: char, out: &mut String) {
    if c == '%' {
        out.push_str("%%");
    } else {
        out.push(c);
    }
}

/// The strftime directive for one Terraform token. The time is always UTC, so `Z` is the
/// letter itself and `ZZZ` the zone's abbreviation, "UTC".
fn directive(token: &str) -> Result<&'static str, String> {
    Ok(match token {
        "YYYY" => "%Y",
        "YY" => "%y",
        "MMMM" => "%B",
        "MMM" => "%b",
        "MM" => "%m",
        "M" => "%-m",
        "DD" => "%d",
        "D" => "%-d",
        "EEEE" => "%A",
        "EEE" => "%a",
        "hh" => "%H",
        "h" => "%-H",
        "HH" => "%I",
        "H" => "%-I",
        "mm" => "%M",
        "m" => "%-M",
        "ss" => "%S",
        "s" => "%-S",
        "AA" => "%p",
        "aa" => "%P",
        "ZZZZZ" => "%:z",
        "ZZZZ" => "%z",
        "ZZZ" => "%Z",
        "Z" => "Z",
        other => {
            return Err(format!(
                "invalid date format verb {other:?} (quote literal text with single quotes)"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: R) -> String {
        match v.unwrap() {
            Value::String(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn time_functions() {
        let t = "2018-01-02T23:12:01Z";
        assert_eq!(
            s(format_date("DD MMM YYYY hh:mm ZZZ", t)),
            "02 Jan 2018 23:12 UTC"
        );
        assert_eq!(
            s(format_date("EEEE, DD-MMM-YY hh:mm:ss ZZZ", t)),
            "Tuesday, 02-Jan-18 23:12:01 UTC"
        );
        assert_eq!(s(format_date("h:mm aa", t)), "23:12 pm");
        assert_eq!(s(format_date("HH:mm AA", t)), "11:12 PM");
        assert_eq!(s(format_date("MMMM 'o''clock' D", t)), "January o'clock 2");
        assert!(format_date("QQ", t).unwrap_err().contains("QQ"));
        assert_eq!(
            s(add("2017-11-22T00:00:00Z", "10m")),
            "2017-11-22T00:10:00Z"
        );
        assert_eq!(
            s(add("2017-11-22T00:00:00Z", "-1h")),
            "2017-11-21T23:00:00Z"
        );
        assert_eq!(
            rfc3339_seconds(model::time::timestamp(1_700_000_000_123_456_789)),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            rfc3339_seconds(model::time::timestamp(-1)),
            "1969-12-31T23:59:59Z"
        );
    }

    #[test]
    fn every_token_and_literal_text() {
        let t = "2018-01-02T00:05:09.75+01:00"; // 23:05:09.75 on the 1st, in UTC
        assert_eq!(
            s(format_date("YYYY YY MMMM MMM MM M DD D EEEE EEE", t)),
            "2018 18 January Jan 01 1 01 1 Monday Mon"
        );
        assert_eq!(
            s(format_date("hh h HH H mm m ss s AA aa", t)),
            "23 23 11 11 05 5 09 9 PM pm"
        );
        assert_eq!(s(format_date("ZZZZZ ZZZZ ZZZ Z", t)), "+00:00 +0000 UTC Z");
        assert_eq!(s(format_date("h H", "2018-01-02T00:00:00Z")), "0 12");
        assert_eq!(s(format_date("D% 'a%b' ''", t)), "1% a%b '");
        assert!(format_date("'open", t)
            .unwrap_err()
            .contains("unterminated"));
        assert!(format_date("YYYY", "2018-01-02").is_err());
    }

    #[test]
    fn timeadd_takes_go_durations_and_stays_in_range() {
        assert_eq!(
            s(add("2017-11-22T00:00:00Z", "1.5h30m")),
            "2017-11-22T02:00:00Z"
        );
        assert_eq!(
            s(add("2017-11-22T01:00:00+01:00", "1s")),
            "2017-11-22T00:00:01Z"
        );
        assert!(add("2017-11-22T00:00:00Z", "1d").is_err());
        assert!(add("2262-04-11T00:00:00Z", "24h")
            .unwrap_err()
            .contains("out of range"));
    }

    #[test]
    fn timestamp_is_the_time_the_caller_passed() {
        let ctx = super::super::FuncCtx {
            now_unix_nanos: 1_700_000_000_999_999_999,
            ..Default::default()
        };
        assert_eq!(
            super::super::call("timestamp", &ctx, vec![])
                .unwrap()
                .unwrap(),
            Value::string("2023-11-14T22:13:20Z")
        );
    }
}
