//! Who to dial, and when: the mesh's dial policy, without IO.
//!
//! The rule it keeps: *if two live nodes of one cluster can reach each other
//! and either knows the other's address (as a seed, from peer exchange, or
//! from a past connection), they end up connected within a bounded time
//! after the network lets them*, whatever their names, seed lists, restart
//! order, and however long a cut lasted.
//!
//! So no address a node may need is ever given up:
//! - a node once connected, or heard of through peer exchange, is redialed
//!   while it is not connected, with capped exponential backoff and jitter.
//!   Names decide only who dials *first*: the smaller name at once, the
//!   larger after [`DialConfig::yield_delay`], so a healed link usually
//!   comes back as one connection (two crossing dials are resolved by the
//!   handshake anyway);
//! - an address never reached backs off more slowly (up to
//!   [`DialConfig::unreached_max`]), so a flood of made-up addresses costs
//!   little; hearing of it again (peer exchange re-announces addresses on
//!   every new connection) dials it again soon;
//! - seeds are dialed at start (a capped random subset at once, the rest a
//!   little later) until some node answers there, and all of them again
//!   whenever the node has no peer left. A seed may be a DNS name (a
//!   Kubernetes headless Service): whatever it resolves to now is a seed
//!   ([`DialPolicy::handle_resolved`]), and an address it stops yielding
//!   stops being one (a pod that went away is not dialed for ever).
//!
//! Memory is bounded: at most [`MAX_KNOWN`] node addresses are remembered,
//! so peer exchange cannot grow the tables without limit.
//!
//! Driving it: feed `handle_*` with what happened (`now` passed in), take
//! the addresses to dial from [`DialPolicy::poll_dials`], report each
//! attempt's end with [`DialPolicy::handle_dial_result`], and sleep until
//! [`DialPolicy::poll_timeout`] or the next input.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pg_core::NodeName;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::backoff::Backoff;

/// Node addresses remembered at most.
pub const MAX_KNOWN: usize = 16 * 1024;

/// Dials running at once at most (a flood of addresses is dialed a batch
/// at a time).
pub const MAX_IN_FLIGHT: usize = 64;

/// Addresses kept from one DNS answer at most.
pub const MAX_RESOLVED: usize = 256;

/// Timing of the dial policy.
#[derive(Debug, Clone)]
pub struct DialConfig {
    /// First delay after a failed dial.
    pub base: Duration,
    /// Longest delay between dials of a node that was reached before (or a
    /// seed).
    pub max: Duration,
    /// Longest delay between dials of an address never reached.
    pub unreached_max: Duration,
    /// How long the larger name of two waits before dialing the smaller,
    /// leaving it the first try.
    pub yield_delay: Duration,
    /// Seeds dialed at once at start; the others after `max`.
    pub fanout: usize,
    /// Seed of the jitter.
    pub seed: u64,
}

impl Default for DialConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            unreached_max: Duration::from_secs(30),
            yield_delay: Duration::from_secs(1),
            fanout: 3,
            seed: 1,
        }
    }
}

/// One address being dialed.
#[derive(Debug)]
struct Target {
    /// A configured seed (or an address given to `dial`).
    seed: bool,
    /// The node known to listen here, if any.
    node: Option<NodeName>,
    /// Whether a node was ever connected from this address.
    reached: bool,
    next_at: Instant,
    in_flight: bool,
    backoff: Backoff,
}

/// The dial policy of one node (see the module docs).
#[derive(Debug)]
pub struct DialPolicy {
    me: NodeName,
    config: DialConfig,
    /// Seeds given as addresses (configured, or added at run time).
    seeds: Vec<SocketAddr>,
    /// Addresses found to be this node's own.
    own: FxHashSet<SocketAddr>,
    /// What each seed name resolved to last.
    resolved: FxHashMap<String, Vec<SocketAddr>>,
    /// Where each node known listens.
    listen_of: FxHashMap<NodeName, SocketAddr>,
    /// Nodes that answered at an address (a seed's node, a past link).
    reached: FxHashSet<SocketAddr>,
    /// Nodes connected, and since when.
    connected: FxHashMap<NodeName, Instant>,
    /// Nodes refused on purpose (fault injection).
    blocked: FxHashSet<NodeName>,
    targets: FxHashMap<SocketAddr, Target>,
    jitter: u64,
}

/// How a dial ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialOutcome {
    /// A link to this node is up (through this dial or a crossing one).
    Connected(NodeName),
    /// No link came of it.
    Failed,
    /// The address is this node's own (it presented our own certificate: a
    /// seed name that lists us under another address form, say): it is
    /// never dialed again, unless a peer says another node listens there.
    Own,
}

impl DialPolicy {
    /// A policy for node `me` with `seeds`; the first seeds are due at once.
    pub fn new(me: NodeName, seeds: &[SocketAddr], config: DialConfig, now: Instant) -> Self {
        let mut policy = Self {
            me,
            jitter: config.seed,
            config,
            seeds: Vec::new(),
            own: FxHashSet::default(),
            resolved: FxHashMap::default(),
            listen_of: FxHashMap::default(),
            reached: FxHashSet::default(),
            connected: FxHashMap::default(),
            blocked: FxHashSet::default(),
            targets: FxHashMap::default(),
        };
        let mut seeds = seeds.to_vec();
        seeds.sort_unstable();
        seeds.dedup();
        fastrand::Rng::with_seed(policy.jitter).shuffle(&mut seeds);
        let later = now + policy.config.max;
        for (i, addr) in seeds.iter().enumerate() {
            let at = if i < policy.config.fanout.max(1) {
                now
            } else {
                later
            };
            policy.want_seed(*addr, at);
        }
        policy.seeds = seeds;
        policy
    }

    /// Adds a seed at run time; it is due at once.
    pub fn add_seed(&mut self, addr: SocketAddr, now: Instant) {
        if !self.seeds.contains(&addr) {
            self.seeds.push(addr);
        }
        self.want_seed(addr, now);
    }

    /// Seed name `name` (host:port) resolves to `addrs` now: addresses new
    /// to it are seeds, due at once; addresses it no longer yields (and
    /// that no other name or configured seed gives) stop being seeds. At
    /// most [`MAX_RESOLVED`] addresses of one answer are kept. A failed
    /// resolution is not reported: the last answer stands.
    pub fn handle_resolved(&mut self, name: &str, addrs: &[SocketAddr], now: Instant) {
        let mut addrs = addrs.to_vec();
        addrs.sort_unstable();
        addrs.dedup();
        addrs.truncate(MAX_RESOLVED);
        addrs.retain(|a| !self.own.contains(a));
        let old = self
            .resolved
            .insert(name.to_owned(), addrs.clone())
            .unwrap_or_default();
        // A first answer is dialed like the configured seeds: a capped
        // subset at once, the rest a little later (a cluster starting at
        // once does not dial N² at once); later newcomers at once.
        let fresh = old.is_empty();
        let later = now + self.config.max;
        let mut new: Vec<SocketAddr> = addrs.iter().filter(|a| !old.contains(a)).copied().collect();
        fastrand::Rng::with_seed(self.jitter).shuffle(&mut new);
        for (i, addr) in new.into_iter().enumerate() {
            let at = if fresh && i >= self.config.fanout.max(1) {
                later
            } else {
                now
            };
            self.want_seed(addr, at);
        }
        for addr in old.iter().filter(|a| !addrs.contains(a)) {
            let still_seed = self.seeds.contains(addr)
                || self.resolved.values().any(|answer| answer.contains(addr));
            if !still_seed && let Some(target) = self.targets.get_mut(addr) {
                target.seed = false;
            }
        }
        self.prune();
    }

    /// A link to `name` is up; `listen` is where it says it listens (its
    /// own word, which gossip does not overwrite while it is connected).
    pub fn handle_connected(&mut self, name: &NodeName, listen: Option<SocketAddr>, now: Instant) {
        self.connected.insert(name.clone(), now);
        if let Some(addr) = listen {
            self.forget_others_at(name, addr);
            self.remember(name, addr);
            self.reached.insert(addr);
        }
    }

    /// The link to `name` went down: redial it (the smaller name first).
    /// A link that dies within `max` of coming up (the peer refuses what we
    /// send, or speaks another version) is redialed only after `max`, so a
    /// link that cannot hold does not flap at handshake speed.
    /// With no peer left, the seeds are dialed again too.
    pub fn handle_disconnected(&mut self, name: &NodeName, now: Instant) {
        let since = self.connected.remove(name);
        let short_lived =
            since.is_some_and(|at| now.saturating_duration_since(at) < self.config.max);
        let when = if short_lived {
            now + self.config.max
        } else {
            now
        };
        self.want_node(name, when);
        if self.connected.is_empty() {
            let resolved = self.resolved.values().flatten().copied();
            let all: Vec<SocketAddr> = self.seeds.iter().copied().chain(resolved).collect();
            for addr in all {
                self.want_seed(addr, now);
            }
        }
    }

    /// A peer says `name` listens at `addr` (peer exchange).
    pub fn handle_heard(&mut self, name: &NodeName, addr: SocketAddr, now: Instant) {
        // A connected node said itself where it listens; gossip may be
        // stale (about an older run of it).
        if *name == self.me || self.connected.contains_key(name) || !self.remember(name, addr) {
            return;
        }
        // Another node listens where we once found ourselves.
        self.own.remove(&addr);
        let first = now + self.first_delay(name);
        if let Some(target) = self.targets.get_mut(&addr)
            && !target.in_flight
            && !target.reached
        {
            // Heard again: an address backing off slowly gets a fresh try.
            target.backoff.reset();
            target.next_at = target.next_at.min(first);
        }
        self.want_node(name, now);
    }

    /// Stops dialing `name` and refuses it until `handle_unblocked`.
    pub fn handle_blocked(&mut self, name: &NodeName) {
        self.blocked.insert(name.clone());
    }

    /// Dials `name` again (the smaller name first).
    pub fn handle_unblocked(&mut self, name: &NodeName, now: Instant) {
        self.blocked.remove(name);
        self.want_node(name, now);
    }

    /// A dial of `addr` handed out by `poll_dials` ended.
    pub fn handle_dial_result(&mut self, addr: SocketAddr, outcome: DialOutcome, now: Instant) {
        let max = self.config.max;
        if outcome == DialOutcome::Own {
            if self.own.len() < MAX_KNOWN {
                self.own.insert(addr);
            }
            self.seeds.retain(|a| *a != addr);
            for answer in self.resolved.values_mut() {
                answer.retain(|a| *a != addr);
            }
            self.targets.remove(&addr);
            return;
        }
        if let DialOutcome::Connected(name) = &outcome {
            self.reached.insert(addr);
            // Whoever answered is who listens here now: a node we expected
            // at this address is not (it moved, or another took its place).
            self.forget_others_at(name, addr);
            if let Some(target) = self.targets.get_mut(&addr) {
                target.node = Some(name.clone());
                // Not due again at once, whatever the bookkeeping says.
                target.next_at = target.next_at.max(now + max);
            }
        }
        let reached = self.reached.contains(&addr);
        let Some(target) = self.targets.get_mut(&addr) else {
            return;
        };
        target.in_flight = false;
        target.reached |= reached;
        match outcome {
            DialOutcome::Connected(_) => target.backoff.reset(),
            DialOutcome::Own => {}
            DialOutcome::Failed => {
                // The backoff is capped at `unreached_max`; seeds and nodes
                // once reached keep to the shorter `max`.
                let mut delay = target.backoff.next_delay();
                if target.seed || target.reached {
                    delay = delay.min(max);
                }
                target.next_at = now + delay;
            }
        }
    }

    /// The addresses to dial now (each is then in flight until
    /// `handle_dial_result`); at most [`MAX_IN_FLIGHT`] dials run at once.
    #[must_use]
    pub fn poll_dials(&mut self, now: Instant) -> Vec<SocketAddr> {
        self.prune();
        let in_flight = self.targets.values().filter(|t| t.in_flight).count();
        let room = MAX_IN_FLIGHT.saturating_sub(in_flight);
        let mut due: Vec<(Instant, SocketAddr)> = self
            .targets
            .iter()
            .filter(|(_, t)| !t.in_flight && t.next_at <= now)
            .map(|(addr, t)| (t.next_at, *addr))
            .collect();
        due.sort_unstable();
        due.truncate(room);
        for (_, addr) in &due {
            if let Some(target) = self.targets.get_mut(addr) {
                target.in_flight = true;
            }
        }
        due.into_iter().map(|(_, addr)| addr).collect()
    }

    /// When the next dial is due, if any is waiting. `None` while every
    /// dial slot is taken: a dial that ends wakes the driver anyway, and a
    /// deadline already past would make it spin.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.targets.values().filter(|t| t.in_flight).count() >= MAX_IN_FLIGHT {
            return None;
        }
        self.targets
            .iter()
            .filter(|(addr, t)| !t.in_flight && self.wanted(**addr, t))
            .map(|(_, t)| t.next_at)
            .min()
    }

    /// Where `name` listens, if known.
    pub fn listen_of(&self, name: &NodeName) -> Option<SocketAddr> {
        self.listen_of.get(name).copied()
    }

    /// Addresses with a dial pending or in flight.
    pub fn pending(&self) -> usize {
        self.targets.len()
    }

    /// Forgets every node other than `name` believed to listen at `addr`.
    fn forget_others_at(&mut self, name: &NodeName, addr: SocketAddr) {
        self.listen_of.retain(|n, a| *a != addr || n == name);
    }

    /// Records where `name` listens; false if the table is full.
    fn remember(&mut self, name: &NodeName, addr: SocketAddr) -> bool {
        if self.listen_of.len() >= MAX_KNOWN && !self.listen_of.contains_key(name) {
            return false;
        }
        self.listen_of.insert(name.clone(), addr);
        true
    }

    /// The smaller name dials first; the larger leaves it a head start.
    fn first_delay(&self, name: &NodeName) -> Duration {
        if self.me < *name {
            Duration::ZERO
        } else {
            self.config.yield_delay
        }
    }

    fn want_node(&mut self, name: &NodeName, now: Instant) {
        if self.connected.contains_key(name) || self.blocked.contains(name) {
            return;
        }
        let Some(&addr) = self.listen_of.get(name) else {
            return;
        };
        let at = now + self.first_delay(name);
        let reached = self.reached.contains(&addr);
        let target = self.target(addr, at);
        target.node = Some(name.clone());
        target.reached |= reached;
        if !target.in_flight {
            target.next_at = target.next_at.min(at);
        }
    }

    fn want_seed(&mut self, addr: SocketAddr, at: Instant) {
        if self.own.contains(&addr) {
            return;
        }
        let target = self.target(addr, at);
        target.seed = true;
        if !target.in_flight {
            target.next_at = target.next_at.min(at);
        }
    }

    fn target(&mut self, addr: SocketAddr, at: Instant) -> &mut Target {
        let (base, max) = (self.config.base, self.config.unreached_max);
        self.jitter = self.jitter.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let seed = self.jitter;
        self.targets.entry(addr).or_insert_with(|| Target {
            seed: false,
            node: None,
            reached: false,
            next_at: at,
            in_flight: false,
            backoff: Backoff::new(base, max, seed),
        })
    }

    /// Whether a dial of `addr` is still needed: its node (or, for a seed
    /// whose node is unknown, any node answering there) is not connected.
    fn wanted(&self, addr: SocketAddr, target: &Target) -> bool {
        match &target.node {
            Some(name) => {
                !self.connected.contains_key(name)
                    && !self.blocked.contains(name)
                    && (target.seed || self.listen_of.get(name) == Some(&addr))
            }
            None => target.seed,
        }
    }

    /// Drops targets no longer needed (in-flight ones end with their dial).
    fn prune(&mut self) {
        let unwanted: Vec<SocketAddr> = self
            .targets
            .iter()
            .filter(|(addr, t)| !t.in_flight && !self.wanted(**addr, t))
            .map(|(addr, _)| *addr)
            .collect();
        for addr in unwanted {
            self.targets.remove(&addr);
        }
    }
}
