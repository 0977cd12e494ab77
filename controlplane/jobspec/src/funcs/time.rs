//! Date and time functions: `timestamp`, `formatdate`, `timeadd`, with Terraform's
//! semantics (which Nomad's HCL2 shares).

use super::{Args, R};
use crate::value::Value;
use model::time::{format_rfc3339, parse_rfc3339};

pub(super) fn timestamp(_: Args<'_>) -> R {
    timestamp_at(model::now_unix_nanos())
}

pub(super) fn formatdate(a: Args<'_>) -> R {
    format_date(&a.str(0)?, &a.str(1)?)
}

pub(super) fn timeadd(a: Args<'_>) -> R {
    add(&a.str(0)?, &a.str(1)?)
}

fn timestamp_at(now_unix_nanos: i64) -> R {
    Ok(Value::String(format_rfc3339(
        now_unix_nanos - now_unix_nanos.rem_euclid(1_000_000_000),
    )))
}

fn add(ts: &str, duration: &str) -> R {
    let base = parse_rfc3339(ts).ok_or_else(|| format!("{ts:?} is not an RFC 3339 timestamp"))?;
    let (negative, text) = match duration.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, duration),
    };
    let d = model::duration::parse_go(text)?;
    let nanos = i64::try_from(d.as_nanos()).map_err(|_| "duration too large".to_string())?;
    let t = if negative {
        base.checked_sub(nanos)
    } else {
        base.checked_add(nanos)
    }
    .ok_or_else(|| "the result is out of range".to_string())?;
    timestamp_at(t)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];

/// Terraform's `formatdate(spec, timestamp)`: YYYY YY MMMM MMM MM M DD D EEEE EEE hh h HH H
/// mm m ss s AA aa ZZZZZ ZZZZ ZZZ Z, text in single quotes, `''` for a quote.
fn format_date(spec: &str, ts: &str) -> R {
    let t = parse_rfc3339(ts).ok_or_else(|| format!("{ts:?} is not an RFC 3339 timestamp"))?;
    let secs = t.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let text = format_rfc3339(days * 86_400 * 1_000_000_000);
    let year: i64 = text.get(0..4).and_then(|s| s.parse().ok()).unwrap_or(1970);
    let month: usize = text.get(5..7).and_then(|s| s.parse().ok()).unwrap_or(1);
    let day: u32 = text.get(8..10).and_then(|s| s.parse().ok()).unwrap_or(1);
    let (hour, minute, second) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let weekday = DAYS[usize::try_from(days.rem_euclid(7)).unwrap_or(0)];
    let month_name = MONTHS[month.saturating_sub(1).min(11)];
    let chars: Vec<char> = spec.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            // Quoted text; `''` inside it is a literal quote too.
            i += 1;
            loop {
                match (chars.get(i), chars.get(i + 1)) {
                    (None, _) => return Err("unterminated quoted text in the format".to_string()),
                    (Some('\''), Some('\'')) => {
                        out.push('\'');
                        i += 2;
                    }
                    (Some('\''), _) => {
                        i += 1;
                        break;
                    }
                    (Some(ch), _) => {
                        out.push(*ch);
                        i += 1;
                    }
                }
            }
            continue;
        }
        if !c.is_ascii_alphabetic() {
            out.push(c);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        let token: String = std::iter::repeat_n(c, run).collect();
        let h12 = if hour % 12 == 0 { 12 } else { hour % 12 };
        let piece = match token.as_str() {
            "YYYY" => format!("{year:04}"),
            "YY" => format!("{:02}", year.rem_euclid(100)),
            "MMMM" => month_name.to_string(),
            "MMM" => month_name[..3].to_string(),
            "MM" => format!("{month:02}"),
            "M" => month.to_string(),
            "DD" => format!("{day:02}"),
            "D" => day.to_string(),
            "EEEE" => weekday.to_string(),
            "EEE" => weekday[..3].to_string(),
            "hh" => format!("{hour:02}"),
            "h" => hour.to_string(),
            "HH" => format!("{h12:02}"),
            "H" => h12.to_string(),
            "mm" => format!("{minute:02}"),
            "m" => minute.to_string(),
            "ss" => format!("{second:02}"),
            "s" => second.to_string(),
            "AA" => if hour < 12 { "AM" } else { "PM" }.to_string(),
            "aa" => if hour < 12 { "am" } else { "pm" }.to_string(),
            "ZZZZZ" => "+00:00".to_string(),
            "ZZZZ" => "+0000".to_string(),
            "ZZZ" => "UTC".to_string(),
            "Z" => "Z".to_string(),
            other => {
                return Err(format!(
                    "invalid date format verb {other:?} (quote literal text with single quotes)"
                ))
            }
        };
        out.push_str(&piece);
        i += run;
    }
    Ok(Value::String(out))
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
            s(timestamp_at(1_700_000_000_123_456_789)),
            "2023-11-14T22:13:20Z"
        );
    }
}
