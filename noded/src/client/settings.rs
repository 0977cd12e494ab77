//! The client's settings that the agent config reads and the client acts on: what is reserved
//! for the host, garbage collection, draining on shutdown, the dynamic port range, and the
//! range strings (`"0-1,3"`, `"22,80,8000-8100"`) Nomad writes cores and ports in.
//!
//! Pure: parsing and arithmetic only, so the agent config and the fingerprint share them.

use std::time::Duration;

/// Nomad's default dynamic port range (`min_dynamic_port`, `max_dynamic_port`).
pub const DEFAULT_MIN_DYNAMIC_PORT: u16 = 20000;
pub const DEFAULT_MAX_DYNAMIC_PORT: u16 = 32000;

/// The highest core id a `cores` range may name: far above any machine, low enough that a
/// typo ("0-99999999") cannot make a list of millions.
pub const MAX_CORE_ID: u32 = 4095;

/// `client { reserved { … } }`: what the host keeps for itself; placement sees the node's
/// resources minus these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReservedConfig {
    /// MHz.
    pub cpu_mhz: u64,
    pub memory_mb: u64,
    pub disk_mb: u64,
    /// Cores no task may reserve (`cores = "0-1"`), sorted, without duplicates.
    pub cores: Vec<u32>,
    /// Ports no task may take, as written (`"22,80,8000-8100"`), checked.
    pub reserved_ports: String,
    /// The same ports, sorted, without duplicates.
    pub ports: Vec<u16>,
}

/// The client's garbage collection of terminal allocations (Nomad's `gc_*` keys). The client
/// removes the oldest terminal allocation directories when one of the limits is passed.
#[derive(Debug, Clone, PartialEq)]
pub struct GcSettings {
    /// `gc_interval`: how often the limits are checked (default 1m).
    pub interval: Duration,
    /// `gc_disk_usage_threshold`: percent of the alloc dir's disk in use above which
    /// allocations are collected (default 80).
    pub disk_usage_threshold: f64,
    /// `gc_inode_usage_threshold`: the same for inodes (default 70).
    pub inode_usage_threshold: f64,
    /// `gc_max_allocs`: allocations (running or not) kept before terminal ones are collected
    /// (default 50).
    pub max_allocs: usize,
    /// `gc_parallel_destroys`: allocations destroyed at once (default 2).
    pub parallel_destroys: usize,
}

impl Default for GcSettings {
    fn default() -> GcSettings {
        GcSettings {
            interval: Duration::from_secs(60),
            disk_usage_threshold: 80.0,
            inode_usage_threshold: 70.0,
            max_allocs: 50,
            parallel_destroys: 2,
        }
    }
}

/// `client { drain_on_shutdown { … } }`: the client drains its node before it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainOnShutdown {
    /// How long the drain may take before the remaining allocations are stopped (default 1h).
    pub deadline: Duration,
    /// Stop every allocation at once, ignoring the jobs' `migrate` blocks.
    pub force: bool,
    /// Leave system jobs' allocations running.
    pub ignore_system_jobs: bool,
}

impl Default for DrainOnShutdown {
    fn default() -> DrainOnShutdown {
        DrainOnShutdown {
            deadline: Duration::from_secs(3600),
            force: false,
            ignore_system_jobs: false,
        }
    }
}

/// Reads a list of numbers and inclusive ranges ("0-1,3", "22, 80, 8000-8100") whose values
/// lie in `min..=max`; sorted, without duplicates. An empty string is an empty list. The
/// message says which part is wrong.
pub fn parse_ranges(spec: &str, min: u32, max: u32) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    if spec.trim().is_empty() {
        return Ok(out);
    }
    let number = |text: &str, part: &str| -> Result<u32, String> {
        let n: u32 = text
            .trim()
            .parse()
            .map_err(|_| format!("{part:?} is not a number or a range such as \"1-3\""))?;
        if n < min || n > max {
            return Err(format!("{n} is outside {min}-{max}"));
        }
        Ok(n)
    };
    for part in spec.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err("an empty entry (two commas, or a trailing one)".to_string());
        }
        match part.split_once('-') {
            None => out.push(number(part, part)?),
            Some((a, b)) => {
                let (start, end) = (number(a, part)?, number(b, part)?);
                if end < start {
                    return Err(format!(
                        "{part:?}: the range ends ({end}) before it starts ({start})"
                    ));
                }
                out.extend(start..=end);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Ports as Nomad's `ParsePortRanges` reads them: 1–65535.
pub fn parse_ports(spec: &str) -> Result<Vec<u16>, String> {
    parse_ranges(spec, 1, u32::from(u16::MAX)).map(|ports| {
        ports
            .into_iter()
            .filter_map(|p| u16::try_from(p).ok())
            .collect()
    })
}

/// Core ids: 0–[`MAX_CORE_ID`].
pub fn parse_cores(spec: &str) -> Result<Vec<u32>, String> {
    parse_ranges(spec, 0, MAX_CORE_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_read_numbers_and_inclusive_ranges_sorted_and_deduplicated() {
        assert_eq!(parse_cores("0-1,3").unwrap(), vec![0, 1, 3]);
        assert_eq!(parse_cores(" 3 , 1-2,2 ").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_cores("").unwrap(), Vec::<u32>::new());
        assert_eq!(
            parse_ports("22,80,8000-8002").unwrap(),
            vec![22, 80, 8000, 8001, 8002]
        );
        assert_eq!(parse_ports("65535").unwrap(), vec![65535]);
    }

    #[test]
    fn bad_ranges_say_what_is_wrong() {
        for (spec, want) in [
            ("0", "0 is outside 1-65535"),
            ("65536", "65536 is outside 1-65535"),
            ("80-22", "ends (22) before it starts (80)"),
            ("22,,80", "an empty entry"),
            ("22,", "an empty entry"),
            ("http", "\"http\" is not a number"),
            ("1-2-3", "\"1-2-3\" is not a number"),
            ("-5", "\"-5\" is not a number"),
        ] {
            let e = parse_ports(spec).unwrap_err();
            assert!(e.contains(want), "{spec}: {e}");
        }
        assert!(parse_cores("0-99999999")
            .unwrap_err()
            .contains("outside 0-4095"));
    }
}
