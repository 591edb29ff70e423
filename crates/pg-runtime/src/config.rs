//! Options of a node and of its scopes (the documented fields, with defaults).

use std::time::Duration;

use pg_core::ScopeConfig;

/// Everything one scope runs with: the core's settings plus the runtime's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeOptions {
    /// Settings of the state machine: anti-entropy, protocol timeout,
    /// limits, discovery fanout. `rng_seed` 0 means "draw one at start".
    pub core: ScopeConfig,
    /// How long delivering one broadcast or message to one local member may
    /// wait for room in its mailbox. Default 5 s.
    pub broadcast_timeout: Duration,
    /// Calls waiting on the scope at which a warning is logged (once per
    /// crossing). Default 256.
    pub action_queue_size: usize,
    /// Calls waiting on the scope at which new calls fail fast with
    /// `Overloaded`. Default 1024.
    pub action_queue_max_size: usize,
    /// Events a subscriber may have pending before it counts as lagging (a
    /// gauge); they stay queued in order. Default 64.
    pub monitor_buffer: usize,
    /// Hard cap of events pending for one subscriber: reaching it ends the
    /// subscription with `Lagged` after the queued events. Default 65 536.
    pub monitor_max_pending: usize,
    /// With no broadcast seen for this long, the
    /// `pg.broadcast_recent.<scope>` health check reports unhealthy.
    /// Default 5 minutes.
    pub broadcast_health_window: Duration,
    /// During a mass exit with no membership subscriber open, how long
    /// the groups an exit batch changed may wait before readers see them
    /// (grouping their publication; see docs/architecture.md). Zero
    /// publishes after every batch. Default 200 ms: each publication
    /// round of a mass exit publishes every group it touched, so the
    /// hold sets how many rounds it pays for (measured in
    /// docs/benchmarks.md: 50 ms cost X1 about twice as much).
    pub exit_publish_hold: Duration,
}

impl Default for ScopeOptions {
    fn default() -> Self {
        Self {
            core: ScopeConfig::default(),
            broadcast_timeout: Duration::from_secs(5),
            action_queue_size: 256,
            action_queue_max_size: 1024,
            monitor_buffer: 64,
            monitor_max_pending: 65_536,
            broadcast_health_window: Duration::from_secs(300),
            exit_publish_hold: Duration::from_millis(200),
        }
    }
}

/// Options of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeOptions {
    /// Capacity of each process's mailbox (and of each topic listener).
    /// Default 1024.
    pub mailbox_capacity: usize,
    /// How long a message from another node may wait for room in a local
    /// mailbox when it names no scope (a broadcast uses its scope's
    /// `broadcast_timeout`). Default 5 s.
    pub delivery_timeout: Duration,
    /// Largest payload a process may send or broadcast, in bytes; larger
    /// ones are refused at the sender with `PayloadTooLarge`. Keep it below
    /// the transport's frame limit. Default 8 MiB.
    pub max_payload_size: usize,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            mailbox_capacity: 1024,
            delivery_timeout: Duration::from_secs(5),
            max_payload_size: 8 << 20,
        }
    }
}
