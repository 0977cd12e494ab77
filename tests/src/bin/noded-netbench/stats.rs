//! Latency samples and their nearest-rank percentiles, in milliseconds (as xtask's benches
//! print them).

use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<Duration>,
}

impl Samples {
    pub fn push(&mut self, value: Duration) {
        self.values.push(value);
    }

    /// The nearest-rank percentile `p` (0 < p ≤ 100) in ms; NaN without samples.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let mut sorted = self.values.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        rank.checked_sub(1)
            .map(|i| i.min(sorted.len().saturating_sub(1)))
            .and_then(|i| sorted.get(i))
            .or_else(|| sorted.first())
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    }

    pub fn p50(&self) -> f64 {
        self.percentile_ms(50.0)
    }

    pub fn p99(&self) -> f64 {
        self.percentile_ms(99.0)
    }
}

impl fmt::Display for Samples {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:>7.3}  p90 {:>7.3}  p99 {:>7.3}  max {:>7.3} ms  (n={})",
            self.p50(),
            self.percentile_ms(90.0),
            self.p99(),
            self.percentile_ms(100.0),
            self.values.len()
        )
    }
}

/// Three decimals, for a RESULT pair.
pub fn num(value: f64) -> String {
    format!("{value:.3}")
}

/// `a / b`, NaN when `b` is not positive.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// The 1-minute load average (NaN when unreadable).
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut s = Samples::default();
        for v in (1..=100).rev() {
            s.push(Duration::from_millis(v));
        }
        assert_eq!(s.p50(), 50.0);
        assert_eq!(s.p99(), 99.0);
        assert_eq!(s.percentile_ms(100.0), 100.0);
        assert!(Samples::default().p50().is_nan());
        assert!(ratio(1.0, 0.0).is_nan());
    }
}
