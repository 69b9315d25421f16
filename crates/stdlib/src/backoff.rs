//! How long to wait before trying again: one type for every retry loop in Cattle.
//!
//! A [`Backoff`] states its numbers: the first wait, the factor it grows by after
//! each further failure, the cap, and the jitter. The wait after failure `n`
//! (1-based) is `first * factor^(n-1)`, capped at `max`, then moved by a random
//! fraction of itself in `[-jitter, +jitter]`. The randomness comes from the
//! operating system, so a fleet started together does not retry in step.
//!
//! Users and their numbers:
//! - the step runner, between tries of a step: [`Backoff::STEP`];
//! - the agent, after a failed poll: [`Backoff::POLL`], capped at its interval;
//! - the agent, while a local write fails (a full disk): [`Backoff::LOCAL_WRITE`];
//! - `cattle`'s compare-and-swap loop, when another writer got there first:
//!   [`Backoff::CONTENDED`].

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The wait after the first failure.
    pub first: Duration,
    /// Each further failure multiplies the wait by this.
    pub factor: u32,
    /// No wait is longer than this (before jitter).
    pub max: Duration,
    /// Each wait is moved by a random fraction of itself in `[-jitter, +jitter]`;
    /// `0.0` for none. At most `1.0`.
    pub jitter: f64,
}

impl Backoff {
    /// Between tries of a step: 1 s, 2 s, 4 s, … capped at 30 s, ±10 %.
    pub const STEP: Backoff = Backoff {
        first: Duration::from_secs(1),
        factor: 2,
        max: Duration::from_secs(30),
        jitter: 0.1,
    };

    /// After failed polls of the store: 1 s, 2 s, 4 s, … ±10 %; the agent caps it
    /// at its poll interval ([`Backoff::capped`]), so a store that comes back is
    /// seen within one interval.
    pub const POLL: Backoff = Backoff {
        first: Duration::from_secs(1),
        factor: 2,
        max: Duration::from_secs(24 * 3600),
        jitter: 0.1,
    };

    /// While a local write fails (a full or read-only disk): 1 s, 2 s, 4 s, …
    /// capped at 60 s, ±10 %.
    pub const LOCAL_WRITE: Backoff = Backoff {
        first: Duration::from_secs(1),
        factor: 2,
        max: Duration::from_secs(60),
        jitter: 0.1,
    };

    /// When a conditional write lost to another writer: 10 ms, doubling, capped
    /// at 1 s, ±100 % (writers that collided once must not collide again).
    pub const CONTENDED: Backoff = Backoff {
        first: Duration::from_millis(10),
        factor: 2,
        max: Duration::from_secs(1),
        jitter: 1.0,
    };

    /// The same backoff with its cap lowered to `max` (if that is lower).
    pub fn capped(self, max: Duration) -> Backoff {
        Backoff {
            max: self.max.min(max),
            ..self
        }
    }

    /// The same backoff without jitter, for tests that compare exact waits.
    pub fn without_jitter(self) -> Backoff {
        Backoff {
            jitter: 0.0,
            ..self
        }
    }

    /// The wait after failure `failures` (1-based), before jitter.
    pub fn nominal(&self, failures: u32) -> Duration {
        let factor = self
            .factor
            .checked_pow(failures.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.first
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The wait after failure `failures` (1-based), with jitter.
    pub fn delay(&self, failures: u32) -> Duration {
        jittered(self.nominal(failures), self.jitter)
    }
}

/// `base` moved by a random fraction of itself in `[-fraction, +fraction]`.
pub fn jittered(base: Duration, fraction: f64) -> Duration {
    let fraction = fraction.clamp(0.0, 1.0);
    if fraction == 0.0 || base.is_zero() {
        return base;
    }
    // A uniform number in [-1, 1] from the operating system's generator. Should
    // it fail (it does not on Linux), no jitter is better than no retry.
    let unit = getrandom::u64().map_or(0.5, |n| (n >> 11) as f64 / (1u64 << 53) as f64);
    let wait = base.mul_f64(1.0 + fraction * (2.0 * unit - 1.0));
    // Whole milliseconds: nobody sleeps more precisely, and logs read better.
    Duration::from_millis(wait.as_millis() as u64)
}

/// A wait as log lines show it: `50ms`, `0.9s`, `1.1s`, `30s`, `2m 30s`.
pub fn describe(wait: Duration) -> String {
    let ms = wait.as_millis();
    if ms < 100 {
        format!("{ms}ms")
    } else if ms < 10_000 {
        format!("{:.1}s", wait.as_secs_f64())
    } else {
        humantime::format_duration(Duration::from_secs(wait.as_secs())).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stated_numbers() {
        let secs = |b: Backoff, n| b.nominal(n).as_secs_f64();
        let step: Vec<f64> = (1..=7).map(|n| secs(Backoff::STEP, n)).collect();
        assert_eq!(step, [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]);
        assert_eq!(Backoff::STEP.nominal(u32::MAX), Duration::from_secs(30));
        let poll = Backoff::POLL.capped(Duration::from_secs(5));
        let waits: Vec<f64> = (1..=5).map(|n| secs(poll, n)).collect();
        assert_eq!(waits, [1.0, 2.0, 4.0, 5.0, 5.0]);
        assert_eq!(Backoff::CONTENDED.nominal(1), Duration::from_millis(10));
        assert_eq!(Backoff::CONTENDED.nominal(20), Duration::from_secs(1));
        assert_eq!(Backoff::LOCAL_WRITE.nominal(30), Duration::from_secs(60));
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_really_varies() {
        let base = Duration::from_secs(30);
        let waits: Vec<Duration> = (0..1000).map(|_| jittered(base, 0.1)).collect();
        for d in &waits {
            assert!(
                *d >= Duration::from_secs(27) && *d <= Duration::from_secs(33),
                "{d:?}"
            );
        }
        let low = waits.iter().filter(|d| **d < base).count();
        assert!(
            (350..=650).contains(&low),
            "{low} of 1000 below the base: not uniform"
        );
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(
            distinct.len() > 900,
            "only {} distinct waits",
            distinct.len()
        );
        assert_eq!(jittered(base, 0.0), base);
        assert!(jittered(base, 5.0) <= base * 2, "jitter is capped at 100 %");
    }

    #[test]
    fn waits_are_described_briefly() {
        let d = |ms| describe(Duration::from_millis(ms));
        assert_eq!(
            [
                d(50),
                d(870),
                d(994),
                d(1149),
                d(9960),
                d(30_400),
                d(150_000)
            ],
            ["50ms", "0.9s", "1.0s", "1.1s", "10.0s", "30s", "2m 30s"]
        );
    }
}
