//! Configuration of one scope's state machine.

use std::time::Duration;

/// The settings pg-core itself acts on. Transport and delivery settings of
/// the documented configuration (`broadcast_timeout`, circuit breakers, queues) belong to the
/// runtime and network layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeConfig {
    /// Cadence of anti-entropy: one random peer gets a digest per tick.
    /// [`Duration::ZERO`] disables it. Default 30 s.
    pub anti_entropy_interval: Duration,
    /// How long a sync request stays outstanding before another may be sent
    /// to the same peer. Default 5 s.
    pub protocol_timeout: Duration,
    /// Most distinct groups in the scope (0 = unlimited). Default 0.
    pub max_groups: usize,
    /// Most members of one group, counting multi-joins (0 = unlimited).
    /// Default 0. Also bounds each group of a peer's part: a peer that
    /// sends more is refused as a protocol violation.
    pub max_members_per_group: usize,
    /// Most times one process may be joined to one group (0 = the 32-bit
    /// counter's limit). Bounds remote counts too: a peer announcing more
    /// is refused as a protocol violation, never expanded into memory (a
    /// member list repeats a pid once per join). Default 1 000 000.
    pub max_join_count: u32,
    /// Most keys one node's processes may hold in the registry (0 =
    /// unlimited). Bounds local registrations (a typed error) and peers'
    /// parts (a protocol violation). Default 0.
    pub max_registrations: usize,
    /// Largest metadata of one membership or registration, in bytes (at most
    /// [`MAX_META_SIZE`](crate::MAX_META_SIZE)). Bounds local joins (a
    /// typed error) and peers' parts (a protocol violation). Default 4096.
    pub max_meta_size: usize,
    /// Member entries per frame when this node's part is sent whole: a
    /// larger part travels as several [`Frame::SyncPart`](crate::Frame::SyncPart)s
    /// (1 to [`MAX_SYNC_PART_ENTRIES`](crate::MAX_SYNC_PART_ENTRIES)).
    /// Default 32 768 (about 0.5 MB a frame).
    pub sync_part_entries: usize,
    /// Encoded bytes per frame, about, when this node's part is sent whole
    /// (long group names count): keep it well under the transport's frame
    /// limit. Default 1 MiB.
    pub sync_part_bytes: usize,
    /// How many of the peers already connected at start-up are asked for
    /// their state at once (the rest follow through anti-entropy), so a
    /// cluster-wide restart does not become an N² storm. Default 3.
    pub discovery_fanout: usize,
    /// Work in one step of removing the part of a node gone down: a step
    /// indexes or removes about this many memberships, then lets other
    /// input in (see [`Scope::poll_timeout`](crate::Scope::poll_timeout)),
    /// so a join meanwhile waits for one step, not the whole part. 0
    /// removes a part in one step. Default 8192 (about half a millisecond
    /// on a small server).
    pub part_removal_step: usize,
    /// Seed of the scope's random choices (discovery subset, anti-entropy
    /// peer). The runtime draws it from the OS; tests fix it.
    pub rng_seed: u64,
}

impl Default for ScopeConfig {
    fn default() -> Self {
        Self {
            anti_entropy_interval: Duration::from_secs(30),
            protocol_timeout: Duration::from_secs(5),
            max_groups: 0,
            max_members_per_group: 0,
            max_join_count: 1_000_000,
            max_meta_size: 4096,
            max_registrations: 0,
            sync_part_entries: 32_768,
            sync_part_bytes: 1 << 20,
            discovery_fanout: 3,
            part_removal_step: 8192,
            rng_seed: 0,
        }
    }
}
