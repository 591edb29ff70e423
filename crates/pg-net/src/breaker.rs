//! A per-peer circuit breaker, driven by the time passed in
//! (`circuit_breaker_failures`, `circuit_breaker_reset_time`):
//! after `failures` consecutive failures it opens and sends are skipped;
//! after `reset_time` one test send is allowed (half-open), whose outcome
//! closes or re-opens it.

use std::time::{Duration, Instant};

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Sends go through.
    Closed,
    /// Sends are skipped until the given time.
    Open {
        /// When one test send becomes allowed.
        until: Instant,
    },
    /// One test send is in flight; others are skipped until it resolves.
    HalfOpen,
}

/// A circuit breaker for one peer.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    threshold: u32,
    reset_time: Duration,
    consecutive: u32,
    state: BreakerState,
}

impl CircuitBreaker {
    /// A closed breaker that opens after `threshold` consecutive failures
    /// (0 disables it) and allows a test send after `reset_time`.
    pub fn new(threshold: u32, reset_time: Duration) -> Self {
        Self {
            threshold,
            reset_time,
            consecutive: 0,
            state: BreakerState::Closed,
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether a send may go now. An open breaker whose time has come lets
    /// exactly one test send through (and is half-open until it resolves).
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen => false,
        }
    }

    /// A send succeeded: the breaker closes.
    pub fn success(&mut self) {
        self.consecutive = 0;
        self.state = BreakerState::Closed;
    }

    /// A send failed: counts towards opening; a failed test send re-opens.
    pub fn failure(&mut self, now: Instant) {
        self.consecutive = self.consecutive.saturating_add(1);
        let trip = match self.state {
            BreakerState::HalfOpen => true,
            BreakerState::Closed => self.threshold > 0 && self.consecutive >= self.threshold,
            BreakerState::Open { .. } => false,
        };
        if trip {
            let until = now.checked_add(self.reset_time).unwrap_or(now);
            self.state = BreakerState::Open { until };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_half_opens_once() {
        let t0 = Instant::now();
        let reset = Duration::from_secs(10);
        let mut b = CircuitBreaker::new(3, reset);
        assert!(b.allow(t0));
        b.failure(t0);
        b.failure(t0);
        assert_eq!(b.state(), BreakerState::Closed);
        b.success(); // resets the count
        b.failure(t0);
        b.failure(t0);
        assert!(b.allow(t0));
        b.failure(t0);
        assert_eq!(b.state(), BreakerState::Open { until: t0 + reset });
        assert!(!b.allow(t0 + reset - Duration::from_millis(1)));
        assert!(b.allow(t0 + reset), "one test send");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(!b.allow(t0 + reset), "only one");
        b.failure(t0 + reset);
        assert_eq!(
            b.state(),
            BreakerState::Open {
                until: t0 + reset * 2
            }
        );
        assert!(b.allow(t0 + reset * 2));
        b.success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow(t0 + reset * 2));
    }

    #[test]
    fn zero_threshold_never_opens() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(0, Duration::from_secs(1));
        for _ in 0..100 {
            b.failure(t0);
        }
        assert!(b.allow(t0));
    }
}
