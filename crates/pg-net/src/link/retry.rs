//! When a failed write is tried again (the configuration's `max_retries`,
//! `retry_base_delay`, `retry_max_delay`), and when the link gives up.

use std::time::{Duration, Instant};

use crate::backoff::Backoff;

/// What to do after a failed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum RetryDecision {
    /// Rewind, open a fresh stream at this time, and write again.
    RetryAt(Instant),
    /// Every retry failed: end the link run (the runtime resynchronises
    /// over the next one), rather than skip messages the receiver would
    /// then wait for forever.
    GiveUp,
}

/// Retries of one channel's writes: up to `max_retries` in a row, with
/// exponential backoff and jitter; a successful write starts over.
#[derive(Debug, Clone)]
pub struct Retry {
    max_retries: u32,
    base: Duration,
    max: Duration,
    seed: u64,
    backoff: Backoff,
}

impl Retry {
    /// `max_retries` retries from `base` up to `max`, jitter from `seed`.
    pub fn new(max_retries: u32, base: Duration, max: Duration, seed: u64) -> Self {
        Self {
            max_retries,
            base,
            max,
            seed,
            backoff: Backoff::new(base, max, seed),
        }
    }

    /// A write failed at `now`.
    pub fn handle_failure(&mut self, now: Instant) -> RetryDecision {
        if self.backoff.attempts() >= self.max_retries {
            return RetryDecision::GiveUp;
        }
        RetryDecision::RetryAt(now + self.backoff.next_delay())
    }

    /// A write went through: the next failure starts a fresh series.
    pub fn handle_success(&mut self) {
        if self.backoff.attempts() > 0 {
            self.seed = self.seed.wrapping_add(1);
            self.backoff = Backoff::new(self.base, self.max, self.seed);
        }
    }

    /// Retries made in the current series.
    pub fn attempts(&self) -> u32 {
        self.backoff.attempts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_up_after_max_retries_in_a_row_and_starts_over_on_success() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let mut retry = Retry::new(2, ms(100), ms(1000), 7);
        for _ in 0..2 {
            let RetryDecision::RetryAt(at) = retry.handle_failure(now) else {
                panic!("gave up too early");
            };
            assert!(at > now && at <= now + ms(1000));
        }
        assert_eq!(retry.handle_failure(now), RetryDecision::GiveUp);
        retry.handle_success();
        assert_eq!(retry.attempts(), 0);
        assert!(matches!(
            retry.handle_failure(now),
            RetryDecision::RetryAt(_)
        ));
        let mut never = Retry::new(0, ms(100), ms(1000), 7);
        assert_eq!(never.handle_failure(now), RetryDecision::GiveUp);
    }
}
