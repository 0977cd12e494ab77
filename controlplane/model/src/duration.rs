//! Serde helpers for durations: Nomad's API writes them as integer nanoseconds.

use std::time::Duration;

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

/// Parses a Go-style duration string ("10s", "1m30s", "250ms", "1h", "1.5h", "0").
pub fn parse_go(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty duration".to_string());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.starts_with('-') {
        return Err(format!("duration {input:?} must not be negative"));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("duration {input:?} is missing a unit (ns, us, ms, s, m, h)"))?;
        if num_len == 0 {
            return Err(format!(
                "duration {input:?} is not a number followed by a unit"
            ));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("duration {input:?} has a malformed number"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let factor = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(format!(
                    "duration {input:?} has unknown unit {other:?} (use ns, us, ms, s, m or h)"
                ))
            }
        };
        total += value * factor;
    }
    if !total.is_finite() || total > 1e10 {
        return Err(format!("duration {input:?} is too large"));
    }
    Ok(Duration::from_secs_f64(total))
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
        for bad in ["", "10", "-5s", "5x", "s", "1.2.3s"] {
            let err = parse_go(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
        assert!(parse_go("5 parsecs").unwrap_err().contains("unknown unit"));
    }
}
