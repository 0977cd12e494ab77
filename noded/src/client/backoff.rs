//! Retry schedules: capped exponential backoff with jitter, as a pure value (the caller owns
//! the clock and the randomness, so the schedule is tested without sleeping).

use std::time::Duration;

/// A capped exponential schedule: `first`, then ×`factor` per failure up to `cap`, each wait
/// shortened at random by up to `jitter` of itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BackoffPolicy {
    pub first: Duration,
    pub factor: u32,
    pub cap: Duration,
    /// Up to this fraction of each wait is taken off at random (Nomad staggers its retries
    /// the same way), so that clients that failed together do not retry together. Taken off
    /// rather than added, so that `cap` is the longest wait.
    pub jitter: f64,
}

/// Doublings past which any wait is at its cap (2^64 of the shortest wait is past any cap).
const MAX_GROWTH_STEPS: u32 = 64;

impl BackoffPolicy {
    /// The wait before the next attempt after `failures` failures in a row (at least 1),
    /// before jitter.
    pub fn base_delay(&self, failures: u32) -> Duration {
        let mut delay = self.first.min(self.cap);
        for _ in 1..failures.min(MAX_GROWTH_STEPS) {
            delay = delay.saturating_mul(self.factor).min(self.cap);
            if delay == self.cap {
                break;
            }
        }
        delay
    }

    /// The wait after `failures` failures, `stagger` (in [0, 1), clamped) choosing how much
    /// of the jitter is taken off.
    pub fn delay(&self, failures: u32, stagger: f64) -> Duration {
        let base = self.base_delay(failures);
        let off = unit(self.jitter) * unit(stagger);
        base.saturating_sub(base.mul_f64(off))
    }
}

/// `x` clamped to [0, 1], NaN as 0 (`Duration::mul_f64` panics on what is not finite).
fn unit(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

/// A retry loop's place in its schedule: how many attempts have failed in a row.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Backoff {
        Backoff {
            policy,
            failures: 0,
        }
    }

    /// Counts one more failure and returns the wait before the next attempt.
    pub fn failed(&mut self, stagger: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.policy.delay(self.failures, stagger)
    }

    /// An attempt succeeded: the next failure waits the shortest time again.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// A random number in [0, 1) for [`Backoff::failed`]. From std's `RandomState`, whose keys are
/// random per process and differ per call: jitter needs no better randomness than that, and
/// noded then needs no random number crate.
pub(crate) fn stagger() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    // The top 53 bits, as the mantissa of a double in [0, 1).
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BackoffPolicy = BackoffPolicy {
        first: Duration::from_millis(250),
        factor: 2,
        cap: Duration::from_secs(30),
        jitter: 0.25,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn waits_double_from_the_first_up_to_the_cap() {
        let waits: Vec<Duration> = (1..=10).map(|n| POLICY.base_delay(n)).collect();
        assert_eq!(
            waits,
            [
                ms(250),
                ms(500),
                ms(1000),
                ms(2000),
                ms(4000),
                ms(8000),
                ms(16000),
                ms(30000),
                ms(30000),
                ms(30000)
            ]
        );
        assert_eq!(
            POLICY.base_delay(0),
            ms(250),
            "no failure yet reads as the first"
        );
        assert_eq!(POLICY.base_delay(u32::MAX), ms(30000));
    }

    #[test]
    fn jitter_only_shortens_and_by_at_most_its_fraction() {
        for failures in [1, 3, 8, 100] {
            let base = POLICY.base_delay(failures);
            assert_eq!(POLICY.delay(failures, 0.0), base);
            for stagger in [0.1, 0.5, 0.999_999] {
                let d = POLICY.delay(failures, stagger);
                assert!(d <= base && d >= base.mul_f64(0.75), "{d:?} from {base:?}");
            }
            // Out-of-range staggers are clamped, never past the cap nor below zero.
            assert!(POLICY.delay(failures, 7.0) >= base.mul_f64(0.75));
            assert_eq!(POLICY.delay(failures, -1.0), base);
            assert_eq!(POLICY.delay(failures, f64::NAN), base);
        }
    }

    #[test]
    fn a_success_starts_the_schedule_again() {
        let mut backoff = Backoff::new(POLICY);
        let first: Vec<Duration> = (0..4).map(|_| backoff.failed(0.0)).collect();
        assert_eq!(first, [ms(250), ms(500), ms(1000), ms(2000)]);
        assert_eq!(backoff.failures(), 4);
        backoff.succeeded();
        assert_eq!(backoff.failures(), 0);
        assert_eq!(backoff.failed(0.0), ms(250));
    }

    #[test]
    fn a_long_outage_stays_at_the_cap() {
        let mut backoff = Backoff::new(POLICY);
        let mut last = Duration::ZERO;
        for _ in 0..10_000 {
            last = backoff.failed(0.0);
        }
        assert_eq!(last, POLICY.cap);
    }

    #[test]
    fn stagger_is_in_the_unit_interval_and_varies() {
        let draws: Vec<f64> = (0..64).map(|_| stagger()).collect();
        assert!(draws.iter().all(|s| (0.0..1.0).contains(s)), "{draws:?}");
        assert!(draws.windows(2).any(|w| w[0] != w[1]), "{draws:?}");
    }
}
