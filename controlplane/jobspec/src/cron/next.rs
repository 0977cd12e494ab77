//! When a periodic job launches next: the first instant after a given one whose wall-clock
//! time in the job's zone matches the schedule. Pure: the zone's rules come from jiff's
//! bundled database ([`crate::tz`]), the instant from the caller.
//!
//! Clock changes follow jiff's "compatible" rule, which is Go's `time.Date`'s (behind Nomad's
//! cronexpr) for a repeated hour: a wall time skipped by a spring-forward gap (02:30 on a
//! night that jumps from 02:00 to 03:00) runs one gap-length later (03:30, the same instant
//! 02:30 standard time names); a wall time that happens twice in a fall-back fold (01:30)
//! runs once, at its first occurrence.
//!
//! Day fields combine as in cron: when both day of month and day of week are restricted, a
//! day matching either runs.

use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::{parse, Field, Schedule};

/// The last year a cron expression can name; launches are not looked for beyond it.
const LAST_YEAR: i16 = 2099;

/// How far apart in wall-clock time two launches may be and still come in the other order
/// in real time: more than any clock change in the database (the largest are 2 hours).
const CLOCK_CHANGE_MARGIN: SignedDuration = SignedDuration::from_hours(3);

/// The first launch of cron expression `spec` strictly after `after_unix_nanos`, in the
/// IANA zone `time_zone`, as Unix nanoseconds; `None` when the schedule never runs again
/// (before 2100). "Local" is refused: the caller passes its own zone's name instead.
pub fn next_after(
    spec: &str,
    time_zone: &str,
    after_unix_nanos: i64,
) -> Result<Option<i64>, String> {
    let schedule = parse(spec).map_err(|m| format!("cron expression {spec:?}: {m}"))?;
    let zone = crate::tz::zone(time_zone).ok_or_else(|| {
        format!("time zone {time_zone:?} is not an IANA zone name (resolve \"Local\" to the server's zone first)")
    })?;
    let after = model::time::timestamp(after_unix_nanos);
    Ok(schedule
        .next_after(&zone, after)
        .and_then(model::time::unix_nanos))
}

impl Schedule {
    /// The first launch strictly after `after`, in `zone`.
    pub(crate) fn next_after(&self, zone: &TimeZone, after: Timestamp) -> Option<Timestamp> {
        // A wall time before `after`'s can still map to a later instant across a clock change.
        let from = zone
            .to_datetime(after)
            .checked_sub(CLOCK_CHANGE_MARGIN)
            .ok()?;
        let mut best: Option<Timestamp> = None;
        let mut until: Option<DateTime> = None;
        for local in self.wall_times(from) {
            if until.is_some_and(|u| local > u) {
                break;
            }
            let Ok(t) = zone.to_ambiguous_timestamp(local).compatible() else {
                continue;
            };
            if t > after && best.is_none_or(|b| t < b) {
                best = Some(t);
                // Later wall times may still be earlier instants, but only near this one.
                until = until.or(local.checked_add(CLOCK_CHANGE_MARGIN).ok());
            }
        }
        best
    }

    /// Every wall-clock time the schedule allows, from `from` on, in order.
    fn wall_times(&self, from: DateTime) -> impl Iterator<Item = DateTime> + '_ {
        std::iter::successors(Some(from.date()), |d| d.tomorrow().ok())
            .take_while(|d| d.year() <= LAST_YEAR)
            .filter(move |d| self.day_matches(*d))
            .flat_map(move |d| self.times_of(d))
            .filter(move |t| *t >= from)
    }

    /// The day's wall times, in order.
    fn times_of(&self, d: Date) -> impl Iterator<Item = DateTime> + '_ {
        let at = move |h: u32, m: u32, s: u32| {
            let (h, m, s) = (
                i8::try_from(h).ok()?,
                i8::try_from(m).ok()?,
                i8::try_from(s).ok()?,
            );
            DateTime::new(d.year(), d.month(), d.day(), h, m, s, 0).ok()
        };
        self.hour.values.iter().flat_map(move |&h| {
            self.minute
                .values
                .iter()
                .flat_map(move |&m| self.second.values.iter().filter_map(move |&s| at(h, m, s)))
        })
    }

    fn day_matches(&self, d: Date) -> bool {
        let in_year = u32::try_from(d.year()).is_ok_and(|y| self.year.values.contains(&y));
        let in_month = u32::try_from(d.month()).is_ok_and(|m| self.month.values.contains(&m));
        if !in_year || !in_month {
            return false;
        }
        match (self.dom.restricted, self.dow.restricted) {
            (false, false) => true,
            (true, false) => dom_matches(&self.dom, d),
            (false, true) => dow_matches(&self.dow, d),
            (true, true) => dom_matches(&self.dom, d) || dow_matches(&self.dow, d),
        }
    }
}

fn dom_matches(f: &Field, d: Date) -> bool {
    let (day, last) = (d.day(), d.days_in_month());
    let weekday_of = |n: i8| d.weekday().wrapping_add(n - day);
    u32::try_from(day).is_ok_and(|v| f.values.contains(&v))
        || (f.last && day == last)
        || (f.last_weekday && day == workday(last, weekday_of(last), last))
        || f.nearest_weekday.iter().any(|&n| {
            i8::try_from(n).is_ok_and(|n| n <= last && day == workday(n, weekday_of(n), last))
        })
}

/// The weekday nearest day `n` of a month of `last` days, without leaving the month
/// (cronexpr's rule: Saturday → Friday, or Monday the 3rd for a Saturday the 1st; Sunday →
/// Monday, or Friday for a Sunday on the last day).
fn workday(n: i8, weekday: Weekday, last: i8) -> i8 {
    match weekday {
        Weekday::Saturday if n > 1 => n - 1,
        Weekday::Saturday => n + 2,
        Weekday::Sunday if n < last => n + 1,
        Weekday::Sunday => n - 2,
        _ => n,
    }
}

fn dow_matches(f: &Field, d: Date) -> bool {
    let Ok(wd) = u32::try_from(d.weekday().to_sunday_zero_offset()) else {
        return false;
    };
    let nth = u32::try_from((d.day() - 1) / 7 + 1).unwrap_or(0);
    f.values.contains(&wd)
        || (f.last_of_month.contains(&wd) && d.day() + 7 > d.days_in_month())
        || f.nth_of_month.contains(&(wd, nth))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix nanoseconds of an RFC 3339 time.
    fn at(text: &str) -> i64 {
        model::time::parse_rfc3339(text).unwrap()
    }

    fn next(spec: &str, zone: &str, after: &str) -> String {
        let n = next_after(spec, zone, at(after)).unwrap().unwrap();
        model::time::format_rfc3339(n)
    }

    #[test]
    fn plain_schedules_in_utc() {
        assert_eq!(
            next("*/15 * * * *", "UTC", "2024-05-01T10:07:00Z"),
            "2024-05-01T10:15:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "UTC", "2024-05-01T10:15:00Z"),
            "2024-05-01T10:30:00Z"
        );
        assert_eq!(
            next("@daily", "UTC", "2024-05-01T10:07:00Z"),
            "2024-05-02T00:00:00Z"
        );
        assert_eq!(
            next("0 9 * * MON-FRI", "UTC", "2024-05-03T09:00:00Z"),
            "2024-05-06T09:00:00Z"
        );
        assert_eq!(
            next("0 0 * * FRI-MON", "UTC", "2024-05-04T12:00:00Z"),
            "2024-05-05T00:00:00Z"
        );
        assert_eq!(
            next("*/20 * * * * * *", "UTC", "2024-05-01T10:07:41Z"),
            "2024-05-01T10:08:00Z"
        );
        assert_eq!(
            next("0 0 1 1 * 2030", "UTC", "2024-05-01T00:00:00Z"),
            "2030-01-01T00:00:00Z"
        );
        assert_eq!(
            next_after("0 0 30 2 *", "UTC", at("2024-05-01T00:00:00Z")),
            Ok(None)
        );
        assert_eq!(
            next_after("0 0 1 1 * 2020", "UTC", at("2024-05-01T00:00:00Z")),
            Ok(None)
        );
    }

    #[test]
    fn day_forms_and_either_day_field() {
        // May 2024: the 1st is a Wednesday, the 31st a Friday; June 30th is a Sunday.
        assert_eq!(
            next("0 0 L * *", "UTC", "2024-05-01T00:00:00Z"),
            "2024-05-31T00:00:00Z"
        );
        assert_eq!(
            next("0 0 LW * *", "UTC", "2024-06-01T00:00:00Z"),
            "2024-06-28T00:00:00Z"
        );
        assert_eq!(
            next("0 0 1W * *", "UTC", "2024-06-01T00:00:00Z"),
            "2024-06-03T00:00:00Z"
        );
        assert_eq!(
            next("0 0 15W * *", "UTC", "2024-06-01T00:00:00Z"),
            "2024-06-14T00:00:00Z"
        );
        assert_eq!(
            next("0 12 * * 5L", "UTC", "2024-05-01T00:00:00Z"),
            "2024-05-31T12:00:00Z"
        );
        assert_eq!(
            next("0 12 * * 1#2", "UTC", "2024-05-01T00:00:00Z"),
            "2024-05-13T12:00:00Z"
        );
        // Both day fields restricted: the 13th or a Friday, whichever comes first.
        assert_eq!(
            next("0 0 13 * 5", "UTC", "2024-05-01T00:00:00Z"),
            "2024-05-03T00:00:00Z"
        );
        assert_eq!(
            next("0 0 13 * 5", "UTC", "2024-05-10T00:00:00Z"),
            "2024-05-13T00:00:00Z"
        );
    }

    #[test]
    fn a_wall_time_skipped_by_spring_forward_runs_an_hour_later_once() {
        // New York, 2024-03-10: 02:00 EST jumps to 03:00 EDT (07:00Z).
        let ny = "America/New_York";
        assert_eq!(
            next("30 2 * * *", ny, "2024-03-09T17:00:00Z"),
            "2024-03-10T07:30:00Z"
        );
        assert_eq!(
            next("30 2 * * *", ny, "2024-03-10T07:30:00Z"),
            "2024-03-11T06:30:00Z"
        );
        // Hourly: 01:00 EST, then 03:00 EDT (02:00 does not exist and is not run twice).
        assert_eq!(
            next("0 * * * *", ny, "2024-03-10T06:00:00Z"),
            "2024-03-10T07:00:00Z"
        );
        assert_eq!(
            next("0 * * * *", ny, "2024-03-10T07:00:00Z"),
            "2024-03-10T08:00:00Z"
        );
    }

    #[test]
    fn a_wall_time_repeated_by_fall_back_runs_once() {
        // New York, 2024-11-03: 02:00 EDT falls back to 01:00 EST (06:00Z); 01:30 happens
        // at 05:30Z and again at 06:30Z.
        let ny = "America/New_York";
        assert_eq!(
            next("30 1 * * *", ny, "2024-11-02T12:00:00Z"),
            "2024-11-03T05:30:00Z"
        );
        assert_eq!(
            next("30 1 * * *", ny, "2024-11-03T05:30:00Z"),
            "2024-11-04T06:30:00Z"
        );
        assert_eq!(
            next("0 2 * * *", ny, "2024-11-03T05:30:00Z"),
            "2024-11-03T07:00:00Z"
        );
    }

    #[test]
    fn zones_are_named_by_iana_and_local_is_the_callers() {
        assert_eq!(
            next("0 9 * * *", "Europe/Paris", "2024-07-01T00:00:00Z"),
            "2024-07-01T07:00:00Z"
        );
        assert_eq!(
            next("0 9 * * *", "Asia/Kolkata", "2024-07-01T00:00:00Z"),
            "2024-07-01T03:30:00Z"
        );
        assert!(next_after("0 9 * * *", "Local", 0)
            .unwrap_err()
            .contains("Local"));
        assert!(next_after("0 9 * * *", "Mars/Olympus", 0).is_err());
        assert!(next_after("0 25 * * *", "UTC", 0)
            .unwrap_err()
            .contains("hour"));
    }
}
