//! Time zones of periodic jobs (`periodic.time_zone`): names checked against, and rules
//! read from, the IANA database compiled into jiff (feature `tzdb-bundle-always`), never
//! the host's `/usr/share/zoneinfo` or `TZ`: validation stays a pure function of the job,
//! and every server agrees on which names exist and when their clocks change.

use std::sync::OnceLock;

use jiff::tz::{TimeZone, TimeZoneDatabase};

/// The bundled database, asked for by name: jiff's global `tz::db()` would prefer the
/// host's copy whenever another crate in the build enables jiff's `tzdb-zoneinfo`.
fn bundled() -> &'static TimeZoneDatabase {
    static DB: OnceLock<TimeZoneDatabase> = OnceLock::new();
    DB.get_or_init(TimeZoneDatabase::bundled)
}

/// The zone an IANA name stands for, as Go's `time.LoadLocation` (which Nomad uses) reads
/// it on Linux: the exact name, case included ("utc" is not a zone), links like
/// "US/Pacific" too. `None` for "Local": that is whatever zone the server runs in, which
/// the caller must look up itself.
pub(crate) fn zone(name: &str) -> Option<TimeZone> {
    let tz = bundled().get(name).ok()?;
    // jiff looks names up ignoring case; Go on Linux opens a file by that name.
    (tz.iana_name() == Some(name)).then_some(tz)
}

/// Whether `name` is a time zone Nomad would accept: an IANA name or "Local".
pub(crate) fn is_valid(name: &str) -> bool {
    name == "Local" || zone(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_names_are_checked() {
        for ok in [
            "UTC",
            "America/New_York",
            "Europe/Paris",
            "Local",
            "Asia/Kolkata",
            "US/Pacific",
            "Etc/GMT+5",
        ] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in [
            "",
            "Mars/Olympus",
            "utc ",
            "utc",
            "america/new_york",
            "America/New York",
            "Etc/Unknown",
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
        assert!(
            zone("Local").is_none(),
            "the server's zone is the caller's business"
        );
    }

    /// The database has the zones the old compiled-in list had (597 names from tzdata 2025).
    #[test]
    fn the_bundled_database_is_complete() {
        assert!(bundled().available().count() >= 597);
        assert!(zone("America/Ciudad_Juarez").is_some(), "a 2022 zone");
    }
}
