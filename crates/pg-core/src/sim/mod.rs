//! A deterministic multi-node simulator for pg-core (feature `sim`).
//!
//! [`Cluster`] runs N [`Scope`]s over a simulated network in virtual time:
//! per-frame delay, loss, duplication and reordering ([`SimNetConfig`]),
//! partitions, cut links, node crashes and restarts with a new incarnation.
//! Every frame goes through the real codec. All randomness comes from one
//! seed, so a seed reproduces a run exactly; [`scenario`] runs a faulty
//! phase and then a healing phase that must converge within a bound.
//!
//! Invariants are checked apart from the code under test ([`check`]):
//! after healing, every live node's view equals the union of the live
//! nodes' own parts; no member of a dead node remains; the events of every
//! node, replayed from empty, equal its state, and no event is emitted
//! without a state change; once converged, the cluster sends only digests
//! (besides answering requests that were needed when they left, see
//! [`NetStats::requested_syncs`]).
//!
//! ```
//! use pg_core::sim::{Cluster, SimConfig};
//! use pg_core::GroupName;
//! use std::time::Duration;
//!
//! let mut cluster = Cluster::new(SimConfig { nodes: 3, seed: 7, ..SimConfig::default() });
//! cluster.drive_for(Duration::from_secs(1));
//! let pid = cluster.spawn(0);
//! cluster.join(0, &pid, &[GroupName::new("workers")?])?;
//! cluster.drive_for(Duration::from_millis(100));
//! assert_eq!(cluster.scope(2).unwrap().members("workers").to_vec(), vec![pid]);
//! cluster.check_converged()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod check;
mod faults;
mod invariants;
mod network;
pub mod registry;
pub mod scenario;
mod stats;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{Rng, SeedableRng};
use rustc_hash::FxHashMap;

use crate::{
    CommandError, Event, Frame, GroupName, NodeId, NodeName, Pid, Scope, ScopeConfig, Transmit,
};
use check::{EventReplay, Violation};
use network::Reachability;
pub use network::SimNetConfig;
pub use stats::{FrameCounts, NetStats};

/// Why a command given to the simulator did not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// The node is crashed.
    #[error("node {0} is down")]
    NodeDown(usize),
    /// The scope refused the command.
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// How a simulated cluster is built.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of nodes (named `n0`, `n1`, ...).
    pub nodes: usize,
    /// The seed of every random choice.
    pub seed: u64,
    /// The network.
    pub net: SimNetConfig,
    /// Every node's scope configuration (`rng_seed` is derived from `seed`).
    pub scope: ScopeConfig,
    /// Check after every input that its events match its state changes
    /// (costs a little per input).
    pub check_events: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 3,
            seed: 0,
            net: SimNetConfig::reliable(),
            scope: ScopeConfig {
                anti_entropy_interval: Duration::from_secs(1),
                protocol_timeout: Duration::from_millis(500),
                ..ScopeConfig::default()
            },
            check_events: true,
        }
    }
}

#[derive(Debug)]
enum Input {
    Frame {
        from: NodeId,
        to: usize,
        to_incarnation: u64,
        bytes: Arc<[u8]>,
        /// Whether the frame asks for the receiver's part while its
        /// sender, when it sent it, lacked that part's current version.
        needed_request: bool,
    },
    /// Tell both ends of every link whether it is up now.
    Liveness,
    /// Start the scope of node run `(node, incarnation)`, which has been
    /// running (and connected) without it.
    StartScope { node: usize, incarnation: u64 },
}

struct Scheduled {
    at: Duration,
    order: u64,
    input: Input,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// One simulated node.
struct SimNode {
    name: NodeName,
    incarnation: u64,
    /// Whether the node process runs (and can hold connections); its scope
    /// may start later.
    alive: bool,
    scope: Option<Scope>,
    next_serial: u64,
    replay: EventReplay,
    reg_replay: registry::RegistryReplay,
    /// Peers this node's scope was told are up, by index.
    told_up: Vec<Option<u64>>,
}

impl SimNode {
    fn id(&self) -> NodeId {
        NodeId::new(self.name.clone(), self.incarnation)
    }
}

/// N scopes over a simulated network in virtual time.
pub struct Cluster {
    config: SimConfig,
    base: Instant,
    now: Duration,
    rng: Xoshiro256PlusPlus,
    nodes: Vec<SimNode>,
    by_name: FxHashMap<NodeName, usize>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    timers: BinaryHeap<Reverse<(Duration, usize)>>,
    order: u64,
    reach: Reachability,
    /// Latest delivery time per directed link, to keep links in order when
    /// reordering is off.
    link_clock: FxHashMap<(usize, usize), Duration>,
    net_stats: NetStats,
    per_node_sent: Vec<(u64, u64)>,
    violation: Option<Violation>,
    /// Scope starts scheduled and not yet run.
    pending_starts: usize,
    /// When the last liveness pass was scheduled for.
    liveness_at: Option<Duration>,
    /// Node names by index.
    nodes_names: Vec<NodeName>,
    /// Losing registrations reported, until registered anew.
    reported_losers: rustc_hash::FxHashSet<(Pid, GroupName)>,
}

impl Cluster {
    /// Builds and starts every node; links come up after the liveness delay.
    pub fn new(config: SimConfig) -> Self {
        let n = config.nodes;
        let mut cluster = Self {
            base: Instant::now(),
            now: Duration::ZERO,
            rng: Xoshiro256PlusPlus::seed_from_u64(config.seed),
            nodes: Vec::with_capacity(n),
            by_name: FxHashMap::default(),
            queue: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            order: 0,
            reach: Reachability::new(n),
            link_clock: FxHashMap::default(),
            net_stats: NetStats::default(),
            per_node_sent: vec![(0, 0); n],
            violation: None,
            pending_starts: 0,
            liveness_at: None,
            nodes_names: Vec::with_capacity(n),
            reported_losers: Default::default(),
            config,
        };
        for i in 0..n {
            // Invariant: "n" followed by digits is a valid node name.
            let name = NodeName::new(&format!("n{i}")).expect("valid node name");
            cluster.by_name.insert(name.clone(), i);
            cluster.nodes_names.push(name.clone());
            cluster.nodes.push(SimNode {
                name,
                incarnation: 0,
                alive: false,
                scope: None,
                next_serial: 1,
                replay: EventReplay::default(),
                reg_replay: registry::RegistryReplay::default(),
                told_up: vec![None; n],
            });
            cluster.start(i);
        }
        cluster
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    /// The virtual clock as an `Instant`.
    pub fn now(&self) -> Instant {
        self.base + self.now
    }

    /// Number of nodes (live or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s scope, unless it is crashed.
    pub fn scope(&self, i: usize) -> Option<&Scope> {
        self.nodes[i].scope.as_ref()
    }

    /// Whether node `i` is running.
    pub fn is_alive(&self, i: usize) -> bool {
        self.nodes[i].scope.is_some()
    }

    /// The current run of node `i`.
    pub fn node_id(&self, i: usize) -> NodeId {
        self.nodes[i].id()
    }

    /// Network traffic so far.
    pub fn net_stats(&self) -> &NetStats {
        &self.net_stats
    }

    /// Frames and bytes sent by node `i` so far.
    pub fn sent_by(&self, i: usize) -> (u64, u64) {
        self.per_node_sent[i]
    }

    /// The runs of every live node.
    pub fn live_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|n| n.scope.is_some())
            .map(SimNode::id)
            .collect()
    }

    /// A random number in `0..n` (`n` > 0).
    pub fn random_below(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n.max(1)
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    // ----- processes and commands -------------------------------------

    /// A new process on node `i` (which must be alive).
    pub fn spawn(&mut self, i: usize) -> Pid {
        let node = &mut self.nodes[i];
        let serial = node.next_serial;
        node.next_serial += 1;
        Pid::new_unchecked(node.id(), serial)
    }

    /// `pid` joins `groups` on node `i`.
    pub fn join(&mut self, i: usize, pid: &Pid, groups: &[GroupName]) -> Result<(), SimError> {
        self.command(i, |s| s.join(pid, groups))
    }

    /// `pid` joins `group` on node `i` with metadata `meta`.
    pub fn join_with_meta(
        &mut self,
        i: usize,
        pid: &Pid,
        group: &GroupName,
        meta: crate::Meta,
    ) -> Result<(), SimError> {
        self.command(i, |s| s.join_with_meta(pid, group, meta))
    }

    /// `pid` leaves `groups` on node `i`.
    pub fn leave(&mut self, i: usize, pid: &Pid, groups: &[GroupName]) -> Result<(), SimError> {
        self.command(i, |s| s.leave(pid, groups))
    }

    /// `pid` exits on node `i`.
    pub fn exit(&mut self, i: usize, pid: &Pid) -> Result<u64, SimError> {
        self.command(i, |s| s.exit(pid))
    }

    fn command<T>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Scope) -> Result<T, CommandError>,
    ) -> Result<T, SimError> {
        let Some(scope) = self.nodes[i].scope.as_mut() else {
            return Err(SimError::NodeDown(i));
        };
        let result = f(scope);
        self.drain(i, false);
        Ok(result?)
    }

    // ----- driving ----------------------------------------------------

    /// The next live timer deadline, discarding entries made stale by a
    /// crash or a re-armed timer.
    fn next_timer(&mut self) -> Option<Duration> {
        while let Some(&Reverse((at, i))) = self.timers.peek() {
            let live = self.nodes[i]
                .scope
                .as_ref()
                .and_then(Scope::poll_timeout)
                .map(|t| t - self.base);
            if live == Some(at) {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    /// Runs the next input (frame, liveness change or timer) in time
    /// order; `false` when nothing is left to run.
    pub fn step(&mut self) -> bool {
        let next_input = self.queue.peek().map(|Reverse(s)| s.at);
        let next_timer = self.next_timer();
        match (next_input, next_timer) {
            (None, None) => false,
            (Some(a), Some(t)) if t < a => self.run_timer(),
            (None, Some(_)) => self.run_timer(),
            _ => {
                // Invariant: `next_input` is Some on this branch.
                let Some(Reverse(s)) = self.queue.pop() else {
                    return false;
                };
                self.now = self.now.max(s.at);
                self.run_input(s.input);
                true
            }
        }
    }

    fn run_timer(&mut self) -> bool {
        let Some(Reverse((at, i))) = self.timers.pop() else {
            return false;
        };
        self.now = self.now.max(at);
        let now = self.now();
        if let Some(scope) = self.nodes[i].scope.as_mut() {
            scope.handle_timeout(now);
            self.drain(i, false);
        }
        true
    }

    /// Runs every input due within `duration` of virtual time.
    pub fn drive_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        self.drive_until_time(end);
    }

    fn drive_until_time(&mut self, end: Duration) {
        loop {
            let next_timer = self.next_timer();
            let next = [self.queue.peek().map(|Reverse(s)| s.at), next_timer]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(at) if at <= end => {
                    if !self.step() {
                        break;
                    }
                }
                _ => break,
            }
        }
        self.now = self.now.max(end);
    }

    /// Drives until `done` holds (checked every `poll` of virtual time) or
    /// `bound` has passed; returns the time it took, or `None`.
    pub fn drive_until(
        &mut self,
        bound: Duration,
        poll: Duration,
        mut done: impl FnMut(&Cluster) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        loop {
            if done(self) {
                return Some(self.now - start);
            }
            if self.now - start >= bound {
                return None;
            }
            self.drive_for(poll);
        }
    }

    fn run_input(&mut self, input: Input) {
        match input {
            Input::Frame {
                from,
                to,
                to_incarnation,
                bytes,
                needed_request,
            } => {
                let Some(&from_idx) = self.by_name.get(&from.name) else {
                    return;
                };
                let node = &self.nodes[to];
                // A node whose scope has not started drops the frame, as a
                // runtime drops frames for a scope it does not run.
                if node.scope.is_none()
                    || node.incarnation != to_incarnation
                    || !self.reach.connected(from_idx, to)
                {
                    self.net_stats.frames_unreachable += 1;
                    return;
                }
                let frame = match Frame::decode(&bytes) {
                    Ok(frame) => frame,
                    Err(e) => {
                        self.fail(Violation::new("frames decode", e.to_string()));
                        return;
                    }
                };
                self.net_stats.frames_delivered += 1;
                let one_way = matches!(frame, Frame::Sync { .. } | Frame::SyncPart { .. });
                // An overtaken sync is recognisably out of date: its answer
                // is not excused.
                let needed_request = needed_request
                    && match &frame {
                        Frame::Sync { seq, .. } | Frame::SyncPart { seq, .. } => self.nodes[to]
                            .scope
                            .as_ref()
                            .and_then(|s| s.parts().find(|p| p.node == from))
                            .is_none_or(|held| held.seq <= *seq),
                        _ => true,
                    };
                let now = self.now();
                if let Some(scope) = self.nodes[to].scope.as_mut() {
                    scope.handle_frame(&from, frame, now);
                }
                let syncs_before = self.net_stats.by_kind.syncs;
                self.drain(to, one_way);
                if needed_request {
                    self.net_stats.requested_syncs += self.net_stats.by_kind.syncs - syncs_before;
                }
            }
            Input::Liveness => self.apply_liveness(),
            Input::StartScope { node, incarnation } => {
                self.pending_starts -= 1;
                let n = &self.nodes[node];
                if n.alive && n.incarnation == incarnation && n.scope.is_none() {
                    self.start_scope(node);
                }
            }
        }
    }

    fn apply_liveness(&mut self) {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].alive {
                continue;
            }
            for j in 0..self.nodes.len() {
                if i == j {
                    continue;
                }
                let want = (self.nodes[j].alive && self.reach.connected(i, j))
                    .then_some(self.nodes[j].incarnation);
                let told = self.nodes[i].told_up[j];
                if told == want {
                    continue;
                }
                let name = self.nodes[j].name.clone();
                // A restarted peer is sometimes seen up again before it was
                // seen down: the new run must replace the old one.
                let replaced = matches!((told, want), (Some(_), Some(_))) && self.chance(0.5);
                if let (Some(old), Some(scope), false) =
                    (told, self.nodes[i].scope.as_mut(), replaced)
                {
                    scope.handle_node_down(&NodeId::new(name.clone(), old));
                }
                if let (Some(new), Some(scope)) = (want, self.nodes[i].scope.as_mut()) {
                    scope.handle_node_up(NodeId::new(name, new));
                }
                self.nodes[i].told_up[j] = want;
                self.drain(i, true);
            }
        }
    }

    fn schedule_liveness(&mut self) {
        let at = self.now + self.config.net.liveness_delay;
        // One pass covers every change made before it runs.
        if self.liveness_at != Some(at) {
            self.liveness_at = Some(at);
            self.schedule(at, Input::Liveness);
        }
    }

    fn schedule(&mut self, at: Duration, input: Input) {
        self.order += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            order: self.order,
            input,
        }));
    }

    fn arm_timer(&mut self, i: usize) {
        if let Some(at) = self.nodes[i].scope.as_ref().and_then(Scope::poll_timeout) {
            self.timers.push(Reverse((at - self.base, i)));
        }
    }

    /// Takes node `i`'s events (checking them) and frames (sending them).
    fn drain(&mut self, i: usize, one_way: bool) {
        let check = self.config.check_events;
        let node = &mut self.nodes[i];
        let Some(scope) = node.scope.as_mut() else {
            return;
        };
        let before = check.then(|| node.replay.clone());
        let mut events: Vec<Event> = Vec::new();
        while let Some(event) = scope.poll_event() {
            if let Err(v) = node.replay.apply(&event) {
                self.violation.get_or_insert(v);
            }
            if check {
                events.push(event);
            }
        }
        if let Some(before) = before
            && let Err(v) =
                check::check_events_of_input(&before, &node.replay, &events, scope, one_way)
        {
            self.violation.get_or_insert(v);
        }
        self.drain_registry(i);
        let node = &mut self.nodes[i];
        let Some(scope) = node.scope.as_mut() else {
            return;
        };
        let mut transmits: Vec<Transmit> = Vec::new();
        while let Some(t) = scope.poll_transmit() {
            transmits.push(t);
        }
        let from = node.id();
        let mut last: Option<(*const Frame, Arc<[u8]>)> = None;
        for Transmit { to, frame } in transmits {
            self.net_stats.by_kind.count(&frame);
            let bytes = match &last {
                Some((ptr, bytes)) if std::ptr::eq(*ptr, Arc::as_ptr(&frame)) => bytes.clone(),
                _ => {
                    let bytes: Arc<[u8]> = frame.encode().into();
                    last = Some((Arc::as_ptr(&frame), bytes.clone()));
                    bytes
                }
            };
            let asks = matches!(
                &*frame,
                Frame::SyncRequest
                    | Frame::Discover
                    | Frame::Sync { known: None, .. }
                    | Frame::SyncPart { known: None, .. }
            );
            let needed_request = asks && !self.holds_current_part(i, &to);
            self.send(i, &from, &to, bytes, needed_request);
        }
        self.arm_timer(i);
    }

    /// Whether node `i` holds the current version of the part of node run
    /// `of` (false if `of` is not a live run).
    fn holds_current_part(&self, i: usize, of: &NodeId) -> bool {
        let Some(&j) = self.by_name.get(&of.name) else {
            return false;
        };
        let (Some(mine), Some(theirs)) = (&self.nodes[i].scope, &self.nodes[j].scope) else {
            return false;
        };
        let current = theirs.version();
        current.node == *of && mine.parts().any(|p| p == current)
    }

    fn send(
        &mut self,
        i: usize,
        from: &NodeId,
        to: &NodeId,
        bytes: Arc<[u8]>,
        needed_request: bool,
    ) {
        self.net_stats.frames_sent += 1;
        self.net_stats.bytes_sent += bytes.len() as u64;
        self.per_node_sent[i].0 += 1;
        self.per_node_sent[i].1 += bytes.len() as u64;
        let Some(&j) = self.by_name.get(&to.name) else {
            self.net_stats.frames_unreachable += 1;
            return;
        };
        if !self.reach.connected(i, j)
            || !self.nodes[j].alive
            || self.nodes[j].incarnation != to.incarnation
        {
            self.net_stats.frames_unreachable += 1;
            return;
        }
        let net = self.config.net.clone();
        if self.chance(net.loss) {
            self.net_stats.frames_lost += 1;
            return;
        }
        let copies = if self.chance(net.duplication) {
            self.net_stats.frames_duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let spread = net.max_delay.saturating_sub(net.min_delay).as_nanos() as u64;
            let jitter = Duration::from_nanos(self.random_below(spread + 1));
            let mut at = self.now + net.min_delay + jitter;
            if !net.reorder {
                let clock = self.link_clock.entry((i, j)).or_default();
                at = at.max(*clock);
                *clock = at;
            }
            self.schedule(
                at,
                Input::Frame {
                    from: from.clone(),
                    to: j,
                    to_incarnation: to.incarnation,
                    bytes: bytes.clone(),
                    needed_request,
                },
            );
        }
    }
}
