//! A scope's health check, counters and protocol statistics.

use std::sync::atomic::Ordering;
use std::time::Duration;

use pg_core::NodeId;

use super::Scope;

/// The result of a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The check's name: `pg.broadcast_recent.<scope>`.
    pub name: String,
    /// Whether broadcast traffic was seen within `broadcast_health_window`
    /// (a scope younger than the window counts as healthy).
    pub healthy: bool,
    /// Time since the last broadcast sent or received, if any.
    pub since_last_broadcast: Option<Duration>,
    /// The worst lateness of the scope's timer work since the previous
    /// check (loop lag).
    pub loop_lag: Duration,
}

impl Scope {
    /// The `pg.broadcast_recent.<scope>` health check, with loop lag.
    pub fn health(&self) -> Health {
        let s = &self.shared;
        let age = s.created.elapsed();
        let last = s.counters.last_broadcast_us.load(Ordering::Relaxed);
        let since = (last > 0).then(|| age.saturating_sub(Duration::from_micros(last)));
        let window = s.options.broadcast_health_window;
        let healthy = age < window || since.is_some_and(|d| d < window);
        let lag = s.counters.loop_lag_us.swap(0, Ordering::Relaxed);
        Health {
            name: format!("pg.broadcast_recent.{}", s.id),
            healthy,
            since_last_broadcast: since,
            loop_lag: Duration::from_micros(lag),
        }
    }

    /// Counters: events delivered to subscribers, subscribers ended with
    /// `Lagged`, frames the transport refused, writer time spent cleaning
    /// up after ended processes.
    pub fn counters(&self) -> ScopeCounters {
        let c = &self.shared.counters;
        ScopeCounters {
            events_delivered: c.events_delivered.load(Ordering::Relaxed),
            subscribers_lagged: c.subscribers_lagged.load(Ordering::Relaxed),
            frames_unsent: c.frames_unsent.load(Ordering::Relaxed),
            exit_cleanup: Duration::from_nanos(c.exit_cleanup_ns.load(Ordering::Relaxed)),
        }
    }

    /// The core's protocol counters.
    pub fn protocol_stats(&self) -> pg_core::ScopeStats {
        self.shared.core.lock().scope.stats().clone()
    }

    /// The peers this scope exchanges state with: the connected nodes that
    /// run it (no other node receives its traffic).
    pub fn peers(&self) -> Vec<NodeId> {
        self.shared.core.lock().scope.peers().cloned().collect()
    }
}

/// A copy of a scope's counters (more may be added).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScopeCounters {
    /// Events handed to subscribers (one per subscriber per event).
    pub events_delivered: u64,
    /// Subscriptions ended with `Lagged`.
    pub subscribers_lagged: u64,
    /// Protocol frames the transport did not take.
    pub frames_unsent: u64,
    /// Time the scope's writer has spent cleaning up after ended
    /// processes since the scope opened: the exit task's steps, from
    /// taking the writer lock to the end of their publication (waiting
    /// for the lock is not counted). A step is counted before it wakes
    /// `flush_exits` callers. Wall-clock time, for reporting only (a
    /// mass exit's cost to everybody else).
    pub exit_cleanup: Duration,
}

impl super::ScopeShared {
    /// Adds one exit step's time with the writer to the counters.
    pub(super) fn count_exit_cleanup(&self, spent: Duration) {
        let ns = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        self.counters
            .exit_cleanup_ns
            .fetch_add(ns, Ordering::Relaxed);
    }
}
