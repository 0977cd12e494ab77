//! Time as Nomad's API writes it: RFC 3339 strings (UTC, nanoseconds) for task timestamps.
//! The calendar arithmetic is jiff's; this module keeps the API's shape (Unix nanoseconds
//! in, strings out) so its callers need not know jiff.

use jiff::Timestamp;

/// Unix nanoseconds as a jiff timestamp. Every `i64` of nanoseconds (years 1677 to 2262)
/// lies inside jiff's range (years -9999 to 9999), so the fallback is never taken.
pub fn timestamp(unix_nanos: i64) -> Timestamp {
    Timestamp::from_nanosecond(i128::from(unix_nanos)).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A jiff timestamp as Unix nanoseconds, `None` outside the years `i64` nanoseconds reach.
pub fn unix_nanos(t: Timestamp) -> Option<i64> {
    i64::try_from(t.as_nanosecond()).ok()
}

/// Formats Unix nanoseconds as `2024-05-01T12:00:00.123456789Z`: nine fraction digits, or
/// none when the time is a whole second.
pub fn format_rfc3339(unix_nanos: i64) -> String {
    let t = timestamp(unix_nanos);
    if t.subsec_nanosecond() == 0 {
        format!("{t:.0}")
    } else {
        format!("{t:.9}")
    }
}

/// Parses an RFC 3339 time (`Z` or a `±hh:mm` offset, up to nine fraction digits) to Unix
/// nanoseconds, as Go's `time.Parse(time.RFC3339, …)` reads it.
///
/// jiff's own parser also takes a space or a lower-case `t` for the `T`, minutes without
/// seconds, `+0100`, and `[zone]` annotations; Nomad's Go parser takes none of them, so the
/// text's shape is checked here first and jiff then checks the calendar (no February 30th).
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    if !is_rfc3339_shape(text) {
        return None;
    }
    unix_nanos(text.parse::<Timestamp>().ok()?)
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)` with a second below 60 (Go refuses leap
/// seconds; jiff would clamp them).
fn is_rfc3339_shape(text: &str) -> bool {
    let b = text.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let fixed = digits(0..4)
        && at(4, b'-')
        && digits(5..7)
        && at(7, b'-')
        && digits(8..10)
        && at(10, b'T')
        && digits(11..13)
        && at(13, b':')
        && digits(14..16)
        && at(16, b':')
        && digits(17..19)
        && b[17] < b'6';
    if !fixed {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return false;
        }
        rest = &frac[n..];
    }
    match rest {
        b"Z" => true,
        [sign, h1, h2, b':', m1, m2] => {
            matches!(sign, b'+' | b'-') && [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            format_rfc3339(1_700_000_000_120_000_000),
            "2023-11-14T22:13:20.120000000Z"
        );
        assert_eq!(
            format_rfc3339(951_782_400_000_000_000),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(format_rfc3339(i64::MIN), "1677-09-21T00:12:43.145224192Z");
        assert_eq!(format_rfc3339(i64::MAX), "2262-04-11T23:47:16.854775807Z");
    }

    #[test]
    fn round_trip_and_offsets() {
        for n in [
            0i64,
            1,
            -1,
            1_700_000_000_123_456_789,
            4_102_444_800_000_000_000,
            i64::MIN,
            i64::MAX,
        ] {
            assert_eq!(parse_rfc3339(&format_rfc3339(n)), Some(n));
        }
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.5Z"),
            Some(1_700_000_000_500_000_000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn only_what_go_reads_as_rfc3339_is_accepted() {
        for bad in [
            "2023-11-14 22:13:20Z",
            "2023-11-14t22:13:20Z",
            "2023-11-14T22:13Z",
            "2023-11-14T22:13:20+0100",
            "2023-11-14T22:13:20Z[UTC]",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20.1234567891Z",
            "2023-02-30T22:13:20Z",
            "2023-13-14T22:13:20Z",
            "2023-11-14T24:00:00Z",
            "2016-12-31T23:59:60Z",
            "+002023-11-14T22:13:20Z",
            "3000-01-01T00:00:00Z",
            "",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
