//! Durations as Nomad writes them: integer nanoseconds in the API (serde helpers), Go's
//! `1h30m` in jobspecs and the CLI. Parsing builds a jiff `SignedDuration`; printing Go's
//! `Duration.String()` form ("1h0m0s") stays here, since jiff prints no such form.

use std::time::Duration;

use jiff::SignedDuration;
use serde::{Deserialize, Deserializer, Serializer};

/// `Duration` <-> integer nanoseconds. Negative or non-integer values are an error.
pub mod nanos {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let n = i64::deserialize(d)?;
        if n < 0 {
            return Err(serde::de::Error::custom(format!(
                "duration must not be negative (got {n} ns)"
            )));
        }
        Ok(Duration::from_nanos(n.unsigned_abs()))
    }
}

/// `Option<Duration>` <-> integer nanoseconds or null.
pub mod opt_nanos {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::nanos::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let n = Option::<i64>::deserialize(d)?;
        match n {
            None => Ok(None),
            Some(n) if n < 0 => Err(serde::de::Error::custom(format!(
                "duration must not be negative (got {n} ns)"
            ))),
            Some(n) => Ok(Some(Duration::from_nanos(n.unsigned_abs()))),
        }
    }
}

/// Formats a duration the way Go's `time.Duration.String()` does ("1m30s", "250ms", "0s"),
/// which is what Nomad users read in CLI output and write in jobspecs.
pub fn format_go(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return trim_float(nanos as f64 / 1e3, "µs");
    }
    if nanos < 1_000_000_000 {
        return trim_float(nanos as f64 / 1e6, "ms");
    }
    let total_secs = d.as_secs();
    let h = total_secs / 3600;
    let m = (total_secs % 3600) / 60;
    let s = (total_secs % 60) as f64 + f64::from(d.subsec_nanos()) / 1e9;
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&trim_float(s, "s"));
    out
}

fn trim_float(v: f64, unit: &str) -> String {
    let mut s = format!("{v:.9}");
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    format!("{s}{unit}")
}

/// Parses a Go duration that must not be negative ("10s", "1m30s", "250ms", "1.5h", "0"):
/// Go's `time.ParseDuration` (see [`parse_go_signed`]), which Nomad's jobspec uses.
pub fn parse_go(input: &str) -> Result<Duration, String> {
    let d = parse_go_signed(input)?;
    if d.is_negative() {
        return Err(format!("duration {input:?} must not be negative"));
    }
    Ok(d.unsigned_abs())
}

/// Go's `time.ParseDuration`, exactly: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+` with units ns, us
/// (or µs, μs), ms, s, m, h; a bare "0"; a result within ±2^63 ns.
///
/// jiff's own duration parser (the "friendly" format) is not used because its grammar is
/// not Go's: it needs a unit after "0", allows a fraction only on the last unit ("1.5h30m"
/// is valid Go), and also takes spaces, words ("1 hour") and ISO 8601 ("PT1H"), which Nomad
/// refuses. This thin front reads Go's grammar and builds a jiff `SignedDuration`.
pub fn parse_go_signed(input: &str) -> Result<SignedDuration, String> {
    let invalid = |why: &str| format!("duration {input:?} {why}");
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(SignedDuration::ZERO);
    }
    if rest.is_empty() {
        return Err(if input.is_empty() {
            "empty duration".to_string()
        } else {
            invalid("is not a number followed by a unit")
        });
    }
    // Go sums the parts as an unsigned count of nanoseconds, at most 2^63.
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let (nanos, after) = go_part(rest).map_err(|why| invalid(&why))?;
        total = total
            .checked_add(nanos)
            .filter(|t| *t <= 1 << 63)
            .ok_or_else(|| invalid("is too large"))?;
        rest = after;
    }
    let signed = if negative {
        0i64.checked_sub_unsigned(total)
    } else {
        i64::try_from(total).ok()
    };
    signed
        .map(SignedDuration::from_nanos)
        .ok_or_else(|| invalid("is too large"))
}

/// One `number unit` part of a Go duration: its nanoseconds and the text after it.
fn go_part(s: &str) -> Result<(u64, &str), String> {
    if !s.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
        return Err("is not a number followed by a unit".to_string());
    }
    let int_len = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let whole: u64 = if int_len == 0 {
        0
    } else {
        s[..int_len]
            .parse()
            .map_err(|_| "is too large".to_string())?
    };
    let mut rest = &s[int_len..];
    let (mut fraction, mut scale, mut frac_len) = (0u64, 1f64, 0);
    if let Some(after_dot) = rest.strip_prefix('.') {
        frac_len = after_dot
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after_dot.len());
        // Go's leadingFraction: keep the digits while they fit, drop the rest.
        for d in after_dot[..frac_len].bytes() {
            if fraction > i64::MAX as u64 / 10 {
                break;
            }
            let next = fraction * 10 + u64::from(d - b'0');
            if next > 1 << 63 {
                break;
            }
            fraction = next;
            scale *= 10.0;
        }
        rest = &after_dot[frac_len..];
    }
    if int_len == 0 && frac_len == 0 {
        return Err("has a malformed number".to_string());
    }
    let unit_len = rest
        .find(|c: char| c == '.' || c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (unit, after) = rest.split_at(unit_len);
    let per_unit: u64 = match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "" => return Err("is missing a unit (ns, us, ms, s, m, h)".to_string()),
        other => {
            return Err(format!(
                "has unknown unit {other:?} (use ns, us, ms, s, m or h)"
            ))
        }
    };
    let mut nanos = whole
        .checked_mul(per_unit)
        .filter(|n| *n <= 1 << 63)
        .ok_or_else(|| "is too large".to_string())?;
    if fraction > 0 {
        // The same float arithmetic as Go, so fractions round exactly as Nomad's do.
        nanos = nanos
            .checked_add((fraction as f64 * (per_unit as f64 / scale)) as u64)
            .filter(|n| *n <= 1 << 63)
            .ok_or_else(|| "is too large".to_string())?;
    }
    Ok((nanos, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_round_trip() {
        for (text, d) in [
            ("0s", Duration::ZERO),
            ("5s", Duration::from_secs(5)),
            ("1m30s", Duration::from_secs(90)),
            ("250ms", Duration::from_millis(250)),
            ("1h0m0s", Duration::from_secs(3600)),
            ("30m0s", Duration::from_secs(1800)),
        ] {
            assert_eq!(format_go(d), text);
            assert_eq!(parse_go(text).unwrap(), d);
        }
        assert_eq!(parse_go("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_go("10s500ms").unwrap(), Duration::from_millis(10_500));
    }

    #[test]
    fn bad_durations_are_rejected_with_the_input_named() {
        for bad in [
            "", "10", "-5s", "5x", "s", "1.2.3s", ".s", "+", "-", " 5s", "5s ", "1h 30m", "1 hour",
            "PT1H",
        ] {
            let err = parse_go(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
        assert!(parse_go("5 parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse_go("10").unwrap_err().contains("missing a unit"));
        assert!(parse_go("-5s")
            .unwrap_err()
            .contains("must not be negative"));
    }

    /// Cases from Go's own `time.ParseDuration` tests (src/time/time_test.go).
    #[test]
    fn go_grammar_and_arithmetic_are_go_s() {
        let ns = |n: i64| SignedDuration::from_nanos(n);
        for (text, want) in [
            ("0", ns(0)),
            ("5s", ns(5_000_000_000)),
            ("30s", ns(30_000_000_000)),
            ("1478s", ns(1_478_000_000_000)),
            ("-5s", ns(-5_000_000_000)),
            ("+5s", ns(5_000_000_000)),
            ("-0", ns(0)),
            ("+0", ns(0)),
            ("5.0s", ns(5_000_000_000)),
            ("5.6s", ns(5_600_000_000)),
            ("5.s", ns(5_000_000_000)),
            (".5s", ns(500_000_000)),
            ("1.0s", ns(1_000_000_000)),
            ("1.00s", ns(1_000_000_000)),
            ("1.004s", ns(1_004_000_000)),
            ("1.0040s", ns(1_004_000_000)),
            ("100.00100s", ns(100_001_000_000)),
            ("10ns", ns(10)),
            ("11us", ns(11_000)),
            ("12µs", ns(12_000)),
            ("12μs", ns(12_000)),
            ("13ms", ns(13_000_000)),
            ("14s", ns(14_000_000_000)),
            ("15m", ns(900_000_000_000)),
            ("16h", ns(57_600_000_000_000)),
            ("3h30m", ns(12_600_000_000_000)),
            ("10.5s4m", ns(250_500_000_000)),
            ("-2m3.4s", ns(-123_400_000_000)),
            ("1h2m3s4ms5us6ns", ns(3_723_004_005_006)),
            ("39h9m14.425s", ns(140_954_425_000_000)),
            ("52763797000ns", ns(52_763_797_000)),
            ("0.3333333333333333333h", ns(1_200_000_000_000)),
            ("9007199254740993ns", ns(9_007_199_254_740_993)),
            ("9223372036854775807ns", ns(i64::MAX)),
            ("9223372036854775.807us", ns(i64::MAX)),
            ("9223372036s854ms775us807ns", ns(i64::MAX)),
            ("-9223372036854775808ns", ns(i64::MIN)),
            ("-9223372036854775.808us", ns(i64::MIN)),
            ("-9223372036s854ms775us808ns", ns(i64::MIN)),
            ("-2562047h47m16.854775808s", ns(i64::MIN)),
            ("0.100000000000000000000h", ns(360_000_000_000)),
            ("0.830103483285477580700h", ns(2_988_372_539_827)),
            ("1.5h30m", ns(7_200_000_000_000)),
        ] {
            assert_eq!(parse_go_signed(text), Ok(want), "{text}");
        }
        for bad in [
            "",
            "3",
            "-",
            "s",
            ".",
            "-.",
            ".s",
            "+.s",
            "1d",
            "\u{85}\u{85}",
            "9223372036854775810ns",
            "9223372036854775808ns",
            "-9223372036854775809ns",
            "9223372036854775.808us",
            "3000000h",
        ] {
            assert!(parse_go_signed(bad).is_err(), "{bad}");
        }
    }
}

/// `Duration` <-> Go's duration string ("200ms", "10s"): how Nomad's API writes the
/// durations of its autopilot configuration and server health (their `MarshalJSON`). An
/// empty string reads as zero, as Go's decoder leaves an unset field; integer nanoseconds are
/// accepted too, since every other duration in the API is written that way.
pub mod go_string {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_go(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Nanos(i64),
        }
        match Option::<Either>::deserialize(d)? {
            None => Ok(Duration::ZERO),
            Some(Either::Text(t)) if t.is_empty() => Ok(Duration::ZERO),
            Some(Either::Text(t)) => parse_go(&t).map_err(serde::de::Error::custom),
            Some(Either::Nanos(n)) if n < 0 => Err(serde::de::Error::custom(format!(
                "duration must not be negative (got {n} ns)"
            ))),
            Some(Either::Nanos(n)) => Ok(Duration::from_nanos(n.unsigned_abs())),
        }
    }
}
