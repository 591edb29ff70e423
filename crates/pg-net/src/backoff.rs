//! Exponential backoff with jitter (the configuration's `max_retries`,
//! `retry_base_delay`, `retry_max_delay`).

use std::time::Duration;

/// Delays between attempts: `base * 2^n`, capped at `max`, each drawn with
/// "equal jitter" (uniform in [d/2, d]) so peers that failed together do not
/// retry together.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// A backoff from `base` up to `max`, with jitter from `seed`.
    pub fn new(base: Duration, max: Duration, seed: u64) -> Self {
        Self {
            base,
            max: max.max(base),
            attempt: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// Attempts made so far (delays handed out).
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        let ceiling = self.base.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let spread = (ceiling - half).as_nanos() as u64;
        half + Duration::from_nanos(self.rng.u64(0..=spread))
    }

    /// Starts over (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_with_jitter_up_to_the_cap() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        let mut b = Backoff::new(base, max, 7);
        let ceilings = [100, 200, 400, 800, 1000, 1000, 1000];
        for ms in ceilings {
            let d = b.next_delay();
            let ceiling = Duration::from_millis(ms);
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
        assert_eq!(b.attempts(), 7);
        b.reset();
        assert!(b.next_delay() <= base);
    }

    #[test]
    fn jitter_differs_between_seeds_and_repeats_per_seed() {
        let draw = |seed| {
            let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), seed);
            (0..5).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::MAX, 0);
        for _ in 0..200 {
            let _ = b.next_delay();
        }
    }
}
