//! Latency samples and their percentiles (nearest-rank), printed in milliseconds.

use std::fmt;
use std::time::Duration;

/// One series of measured durations.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<Duration>,
}

impl Samples {
    pub fn push(&mut self, value: Duration) {
        self.values.push(value);
    }

    /// The samples, in the order they were pushed.
    pub fn values(&self) -> &[Duration] {
        &self.values
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// The nearest-rank percentile `p` (0 < p ≤ 100) in milliseconds; `NaN` without samples.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.values.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.values.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        let index = rank.clamp(1, sorted.len()) - 1;
        sorted
            .get(index)
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or(f64::NAN)
    }

    pub fn p50(&self) -> f64 {
        self.percentile_ms(50.0)
    }

    pub fn p90(&self) -> f64 {
        self.percentile_ms(90.0)
    }

    pub fn p99(&self) -> f64 {
        self.percentile_ms(99.0)
    }

    pub fn max_ms(&self) -> f64 {
        self.percentile_ms(100.0)
    }
}

impl fmt::Display for Samples {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:>7.3}  p90 {:>7.3}  p99 {:>7.3}  max {:>7.3} ms  (n={})",
            self.p50(),
            self.p90(),
            self.p99(),
            self.max_ms(),
            self.len()
        )
    }
}

/// `a / b` rounded for a RESULT line.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// A number for a `key=value` pair: three decimals.
pub fn num(value: f64) -> String {
    format!("{value:.3}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Samples {
        let mut s = Samples::default();
        for v in values {
            s.push(Duration::from_millis(*v));
        }
        s
    }

    #[test]
    fn nearest_rank_percentiles() {
        let s = ms(&(1..=100).rev().collect::<Vec<_>>());
        assert_eq!(s.p50(), 50.0);
        assert_eq!(s.p90(), 90.0);
        assert_eq!(s.p99(), 99.0);
        assert_eq!(s.max_ms(), 100.0);
        let one = ms(&[7]);
        assert_eq!(one.p50(), 7.0);
        assert_eq!(one.p99(), 7.0);
        assert!(Samples::default().p50().is_nan());
    }

    #[test]
    fn ratios_and_numbers() {
        assert_eq!(num(ratio(2.0, 8.0)), "0.250");
        assert!(ratio(1.0, 0.0).is_nan());
    }
}
