//! The per-scope state machine.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{Rng, SeedableRng};

use crate::config::ScopeConfig;
use crate::error::Violation;
use crate::event::{Event, EventDetail, EventQueue};
use crate::frame::{Frame, Op, PartVersion};
use crate::id::{NodeId, NodeName};
use crate::membership::{LOCAL_SLOT, Membership, MetaUpdate};
use crate::meta::LeaveReason;
use crate::registry::Registry;
use crate::registry_event::{Conflict, RegistryEventQueue, UnregisterReason};
use crate::sync_parts::Assembly;

mod bounds;
mod commands;
mod reads;
mod registry;
mod sync;
mod sync_stream;
use crate::timer::{Timer, TimerTable};

/// A frame to send to one peer. Frames for several peers share one
/// allocation, so the runtime can encode each frame once.
#[must_use = "a transmit that is not sent leaves the peer out of date"]
#[derive(Debug, Clone)]
pub struct Transmit {
    /// The peer (node run) to send to.
    pub to: NodeId,
    /// What to send.
    pub frame: Arc<Frame>,
}

/// Counters of what the scope has seen and done, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScopeStats {
    /// Frames handed to [`Scope::handle_frame`].
    pub frames_received: u64,
    /// Frames ignored because their sender is not an up peer.
    pub frames_ignored: u64,
    /// Frames dropped because they break a frame invariant (see
    /// [`Frame::validate`]); decoding already rejects those from the wire.
    pub frames_invalid: u64,
    /// Frames queued for peers.
    pub frames_sent: u64,
    /// Deltas applied in order.
    pub deltas_applied: u64,
    /// Deltas already covered by what was held (duplicates, late arrivals).
    pub deltas_stale: u64,
    /// Deltas that did not follow what was held (gap or unknown part).
    pub deltas_out_of_order: u64,
    /// Deltas whose ops did not match what was held (a sync repairs it).
    pub deltas_inconsistent: u64,
    /// Syncs applied.
    pub syncs_applied: u64,
    /// Syncs no newer than what was held.
    pub syncs_stale: u64,
    /// Sync requests sent.
    pub sync_requests_sent: u64,
    /// Digests sent.
    pub digests_sent: u64,
    /// Digests received.
    pub digests_received: u64,
    /// Parts of peers not stored because every node slot is in use.
    pub parts_refused: u64,
    /// Frames refused as protocol violations (see [`Violation`]).
    pub violations: u64,
    /// Steps that went on removing a downed node's part after the down's
    /// own (see [`ScopeConfig::part_removal_step`]).
    pub part_removal_steps: u64,
}

#[derive(Debug)]
struct Peer {
    node: NodeId,
    /// When the last sync request went out, while unanswered.
    sync_requested_at: Option<Instant>,
    /// Whether this node's part was sent to this peer run since it came up
    /// (later changes follow as deltas on the same ordered link).
    part_sent: bool,
    /// Whether the part held of this peer failed to match one of its
    /// deltas: its deltas are ignored until a sync replaces the part.
    repairing: bool,
    /// The pieces of a split sync from this peer run received so far.
    assembly: Option<Assembly>,
    /// This node's part being sent to this peer run, a few pieces a step.
    stream: Option<Box<sync_stream::SyncStream>>,
}

/// One scope of process groups on one node: its membership view and the
/// protocol that keeps it in step with the same scope on other nodes.
///
/// `Scope` does no IO and reads no clock. Drive it like this:
///
/// 1. Feed inputs: local commands ([`join`](Self::join),
///    [`leave`](Self::leave), [`exit`](Self::exit), ...), peers coming and
///    going ([`handle_node_up`](Self::handle_node_up),
///    [`handle_node_down`](Self::handle_node_down)), frames from peers
///    ([`handle_frame`](Self::handle_frame)) and expired timers
///    ([`handle_timeout`](Self::handle_timeout)).
/// 2. After any batch of inputs, drain [`poll_event`](Self::poll_event)
///    (for local subscribers) and [`poll_transmit`](Self::poll_transmit)
///    (for the network) until they return `None`. Local changes made since
///    the last drain go out as one delta frame.
/// 3. Sleep until [`poll_timeout`](Self::poll_timeout), or the next input.
///
/// Reads ([`members`](Self::members), ...) are answered from the current
/// state; [`Members`](crate::Members) shares storage with the scope, so reading a large
/// group copies nothing.
pub struct Scope {
    config: ScopeConfig,
    table: Membership,
    registry: Registry,
    reg_events: RegistryEventQueue,
    conflicts: VecDeque<Conflict>,
    peers: BTreeMap<NodeName, Peer>,
    pending_ops: Vec<Op>,
    /// An upper estimate of `pending_ops`' encoded size.
    pending_bytes: usize,
    pending_base: u64,
    transmits: VecDeque<Transmit>,
    /// Whether some peer may have a sync stream unfinished (frames for it
    /// then wait behind it; see `sync_stream.rs`).
    streaming: bool,
    events: EventQueue,
    violations: VecDeque<(NodeId, Violation)>,
    timers: TimerTable,
    rng: Xoshiro256PlusPlus,
    discovering: bool,
    stats: ScopeStats,
    /// The latest `now` passed in. Work that must go on as soon as
    /// possible (removing a downed node's part) is due then: a deadline
    /// already past.
    seen_now: Instant,
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("node", self.local_node())
            .field("seq", &self.table.seq(LOCAL_SLOT))
            .field("groups", &self.table.group_count())
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

impl Scope {
    /// A scope for node run `local`, created at `now`. Register the peers
    /// that are already connected with [`handle_node_up`](Self::handle_node_up)
    /// before the first [`handle_timeout`](Self::handle_timeout): start-up
    /// discovery then asks a random subset of them (at most
    /// `discovery_fanout`) for their state.
    pub fn new(local: NodeId, config: ScopeConfig, now: Instant) -> Self {
        let mut timers = TimerTable::default();
        timers.set(Timer::Discovery, now);
        if !config.anti_entropy_interval.is_zero() {
            // An interval too long to represent means never.
            if let Some(at) = now.checked_add(config.anti_entropy_interval) {
                timers.set(Timer::AntiEntropy, at);
            }
        }
        Self {
            rng: Xoshiro256PlusPlus::seed_from_u64(config.rng_seed),
            config,
            table: Membership::new(local),
            registry: Registry::default(),
            reg_events: RegistryEventQueue::default(),
            conflicts: VecDeque::new(),
            peers: BTreeMap::new(),
            pending_ops: Vec::new(),
            pending_bytes: 0,
            pending_base: 0,
            transmits: VecDeque::new(),
            events: EventQueue::default(),
            violations: VecDeque::new(),
            timers,
            discovering: true,
            stats: ScopeStats::default(),
            seen_now: now,
            streaming: false,
        }
    }

    /// This node run.
    pub fn local_node(&self) -> &NodeId {
        self.table.node(LOCAL_SLOT)
    }

    /// The configuration.
    pub fn config(&self) -> &ScopeConfig {
        &self.config
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &ScopeStats {
        &self.stats
    }

    // ----- peers ------------------------------------------------------

    /// A connection to `peer` is up. A newer run of a known node replaces
    /// the older one (whose members are dropped, with events). The peer is
    /// sent this node's part, unless start-up discovery is still to run.
    /// A node is never its own peer: an up for this node's name does nothing.
    pub fn handle_node_up(&mut self, peer: NodeId) {
        if peer.name == self.local_node().name {
            return;
        }
        if let Some(existing) = self.peers.get(&peer.name)
            && existing.node.incarnation >= peer.incarnation
        {
            return;
        }
        self.flush_delta();
        self.drop_peer(&peer.name);
        self.peers.insert(
            peer.name.clone(),
            Peer {
                node: peer.clone(),
                sync_requested_at: None,
                part_sent: false,
                repairing: false,
                assembly: None,
                stream: None,
            },
        );
        if !self.discovering {
            self.send_own_sync(&peer);
        }
    }

    /// The connection to `peer` is gone (crash, partition, shutdown): every
    /// member of that node run is dropped, with events. A down for an older
    /// run than the one known is ignored.
    pub fn handle_node_down(&mut self, peer: &NodeId) {
        let known = self.peers.get(&peer.name).map(|p| &p.node);
        if known != Some(peer) {
            return;
        }
        self.flush_delta();
        self.drop_peer(&peer.name);
    }

    /// The connection to `peer` was replaced by another one without the
    /// peer going down (frames in flight on the old one may be lost): both
    /// sides send their parts again. The syncs are differential, so nothing
    /// held is dropped and only real differences produce events.
    pub fn handle_link_reset(&mut self, peer: &NodeId, now: Instant) {
        self.saw(now);
        let Some(state) = self.peers.get_mut(&peer.name) else {
            return;
        };
        if state.node != *peer {
            return;
        }
        state.sync_requested_at = None;
        self.rewind_stream(peer);
        self.send_own_sync(peer);
        self.request_sync(peer, now);
    }

    /// Forgets the peer called `name` and drops whatever part of it is held.
    fn drop_peer(&mut self, name: &NodeName) {
        self.peers.remove(name);
        if let Some(slot) = self.table.slot_of_name(name)
            && slot != LOCAL_SLOT
        {
            // Keys first, all at once: a new run of the node must not meet
            // them in a conflict. The memberships go in bounded steps.
            self.reg_remove_part(slot, UnregisterReason::NodeDown);
            self.table.detach_part(slot, LeaveReason::NodeDown);
            self.remove_detached();
        }
    }

    /// One bounded step of removing the parts of nodes gone down (the
    /// first is taken by the down itself, so a small part goes at once);
    /// if more remains, the next step is due right away.
    fn remove_detached(&mut self) {
        let budget = match self.config.part_removal_step {
            0 => u64::MAX,
            step => step as u64,
        };
        if self.table.remove_detached(budget, &mut self.events) {
            self.timers.set(Timer::PartRemoval, self.seen_now);
        }
    }

    fn saw(&mut self, now: Instant) {
        self.seen_now = self.seen_now.max(now);
    }

    /// The peers currently up.
    pub fn peers(&self) -> impl Iterator<Item = &NodeId> {
        self.peers.values().map(|p| &p.node)
    }

    // ----- frames -----------------------------------------------------

    /// A frame from peer `from` (as authenticated by the transport). Frames
    /// from a node run that is not an up peer are ignored and counted.
    pub fn handle_frame(&mut self, from: &NodeId, frame: Frame, now: Instant) {
        self.saw(now);
        self.stats.frames_received += 1;
        if self.peers.get(&from.name).map(|p| &p.node) != Some(from) {
            self.stats.frames_ignored += 1;
            return;
        }
        if frame.validate().is_err() {
            self.stats.frames_invalid += 1;
            return;
        }
        // A delta is checked once it is known to apply (a duplicate of one
        // already applied would otherwise count twice against the bound).
        if !matches!(frame, Frame::Delta { .. })
            && let Err(violation) = self.check_remote(from, &frame)
        {
            return self.refuse(from, violation);
        }
        match frame {
            Frame::Delta { base, seq, ops } => self.on_delta(from, base, seq, ops, now),
            Frame::Sync {
                seq,
                known,
                groups,
                registrations,
            } => self.on_sync(from, seq, known, groups, registrations),
            Frame::SyncPart { .. } => self.on_sync_part(from, frame),
            Frame::SyncRequest => self.send_own_sync(from),
            Frame::Discover => {
                self.send_own_sync(from);
                self.send_digest(from, true);
            }
            Frame::Digest { reply, parts } => self.on_digest(from, reply, parts, now),
        }
    }

    fn on_delta(&mut self, from: &NodeId, base: u64, seq: u64, ops: Vec<Op>, now: Instant) {
        let Some(slot) = self.table.slot_of(from) else {
            self.stats.deltas_out_of_order += 1;
            self.request_sync(from, now);
            return;
        };
        let held = self.table.seq(slot);
        if seq <= held {
            self.stats.deltas_stale += 1;
            return;
        }
        if base != held || self.peer_flag(from, |p| p.repairing) {
            self.stats.deltas_out_of_order += 1;
            self.request_sync(from, now);
            return;
        }
        let delta = Frame::Delta { base, seq, ops };
        if let Err(violation) = self.check_remote(from, &delta) {
            return self.refuse(from, violation);
        }
        let Frame::Delta { ops, .. } = delta else {
            return;
        };
        let mut consistent = true;
        for op in ops {
            match op {
                Op::Join {
                    group,
                    serial,
                    count,
                    meta,
                } => {
                    let held = self.table.count(slot, serial, group.as_str());
                    if held.checked_add(count).is_none() {
                        consistent = false;
                        continue;
                    }
                    let update = meta.map_or(MetaUpdate::Keep, |m| MetaUpdate::Set(Some(m)));
                    self.table
                        .add(slot, serial, &group, count, update, &mut self.events);
                }
                Op::Leave {
                    group,
                    serial,
                    count,
                } => {
                    let removed = match self.table.group_id(group.as_str()) {
                        Some(gid) => self.table.sub(
                            slot,
                            serial,
                            gid,
                            count,
                            LeaveReason::Left,
                            &mut self.events,
                        ),
                        None => 0,
                    };
                    consistent &= removed == count;
                }
                Op::Exit { serial } => {
                    self.table
                        .remove_process(slot, serial, LeaveReason::Exit, &mut self.events);
                    self.reg_remove_process(slot, serial, UnregisterReason::Exit);
                }
                Op::Register {
                    key,
                    serial,
                    stamp,
                    meta,
                    tag,
                } => {
                    self.registry.witness(stamp);
                    let holder = crate::registry::Holder {
                        slot,
                        serial,
                        stamp,
                        meta,
                        tag,
                        exit_on_loss: false,
                    };
                    self.reg_put(&key, holder);
                }
                Op::Unregister { key, serial } => {
                    consistent &=
                        self.reg_remove(&key, slot, serial, UnregisterReason::Unregistered);
                }
            }
        }
        self.table.set_seq(slot, seq);
        self.stats.deltas_applied += 1;
        if !consistent {
            // The part no longer matches its version: take no more deltas
            // and accept the next sync even at this very version.
            self.stats.deltas_inconsistent += 1;
            if let Some(peer) = self.peers.get_mut(&from.name) {
                peer.repairing = true;
            }
            self.request_sync(from, now);
        }
    }

    fn peer_flag(&self, node: &NodeId, flag: impl Fn(&Peer) -> bool) -> bool {
        self.peers.get(&node.name).is_some_and(flag)
    }

    /// Compares a digest with what is held and asks the origins of newer
    /// parts for them. The digest's entry for this node's own part is not
    /// acted on: it may be older only because our deltas or sync to the
    /// sender are crossing the digest, which nothing here can tell apart
    /// from a loss. The sender learns our version from our own digest
    /// (the reply to this one, or our next), which travels behind all our
    /// earlier frames on the ordered link, and pulls if it is still behind.
    fn on_digest(&mut self, from: &NodeId, reply: bool, parts: Vec<PartVersion>, now: Instant) {
        self.stats.digests_received += 1;
        for PartVersion { node, seq } in parts {
            let is_up = self.peers.get(&node.name).map(|p| &p.node) == Some(&node);
            if !is_up {
                // Our own entry, or a run that is not up here.
                continue;
            }
            let held = self.table.slot_of(&node).map(|s| self.table.seq(s));
            if held.is_none_or(|h| h < seq) {
                self.request_sync(&node, now);
            }
        }
        if !reply {
            self.send_digest(from, true);
        }
    }

    // ----- timers -----------------------------------------------------

    /// When [`handle_timeout`](Self::handle_timeout) next wants to run. It
    /// may be in the past (work left over from a step, such as removing a
    /// large part of a node gone down): run it right away, letting other
    /// input in between.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Runs the timers due at `now`: start-up discovery, anti-entropy, the
    /// next step of removing a downed node's part, of sending this node's
    /// part in pieces, and of indexing a part a first sync brought.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.saw(now);
        for timer in self.timers.expire(now) {
            match timer {
                Timer::Discovery => self.discover(),
                Timer::PartRemoval => {
                    self.stats.part_removal_steps += 1;
                    self.remove_detached();
                }
                Timer::SyncStream => self.advance_streams(),
                Timer::PartIndex => self.table.build_pending_indexes(),
                Timer::AntiEntropy => {
                    if let Some(peer) = self.random_peers(1).pop() {
                        self.send_digest(&peer, false);
                    }
                    if let Some(at) = now.checked_add(self.config.anti_entropy_interval) {
                        self.timers.set(Timer::AntiEntropy, at);
                    }
                }
            }
        }
    }

    fn discover(&mut self) {
        self.discovering = false;
        for peer in self.random_peers(self.config.discovery_fanout) {
            self.queue(&peer, Frame::Discover);
        }
    }

    /// Up to `k` distinct up peers, chosen at random.
    fn random_peers(&mut self, k: usize) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self.peers.values().map(|p| p.node.clone()).collect();
        let k = k.min(all.len());
        for i in 0..k {
            let remaining = (all.len() - i) as u64;
            // The remainder is below `remaining`, itself a usize.
            let j = i + (self.rng.next_u64() % remaining) as usize;
            all.swap(i, j);
        }
        all.truncate(k);
        all
    }

    // ----- outputs ----------------------------------------------------

    /// Local changes recorded since the last delta was cut (they go out
    /// as one delta with the next [`poll_transmit`](Self::poll_transmit)
    /// that finds nothing else queued).
    pub fn pending_delta_ops(&self) -> usize {
        self.pending_ops.len()
    }

    /// An upper estimate of the encoded size of those changes.
    pub fn pending_delta_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// The next frame already queued, without cutting a delta of the local
    /// changes recorded since the last one. A driver whose previous delta
    /// is still on its way can let a burst of changes gather into one
    /// delta this way; it must call [`poll_transmit`](Self::poll_transmit)
    /// soon after. Order is kept either way: any other frame is queued
    /// only after the changes before it were cut into a delta.
    pub fn poll_transmit_queued(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next frame to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.transmits.is_empty() {
            self.flush_delta();
        }
        self.transmits.pop_front()
    }

    /// The next protocol violation of a peer, if any: a frame refused whole
    /// because it broke a configured bound. The runtime logs it and closes
    /// the link to that peer.
    pub fn poll_violation(&mut self) -> Option<(NodeId, Violation)> {
        self.violations.pop_front()
    }

    /// The next event for local subscribers, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// Sets how membership changes are reported from now on: as events
    /// ([`EventDetail::Full`], the default), or only as the names of the
    /// groups that changed ([`EventDetail::GroupsOnly`], for a driver with
    /// no subscriber, which needs only to know what to republish).
    /// Whatever is queued stays, to be polled as it was reported.
    pub fn set_event_detail(&mut self, detail: EventDetail) {
        self.events.set_detail(detail);
    }

    /// The next group whose membership changed while reporting
    /// [`EventDetail::GroupsOnly`], in the order of the changes, a group
    /// changed several times in a row named once.
    pub fn poll_changed_group(&mut self) -> Option<crate::GroupName> {
        self.events.pop_group()
    }

    /// Number of events waiting in [`poll_event`](Self::poll_event).
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    fn queue(&mut self, to: &NodeId, frame: Frame) {
        self.flush_delta();
        self.push_transmit(to, Arc::new(frame));
    }

    /// Sends the local changes recorded since the last flush to every peer,
    /// as one delta. Called before anything else is queued, so every peer
    /// sees deltas and syncs in version order.
    fn flush_delta(&mut self) {
        if self.pending_ops.is_empty() {
            return;
        }
        let ops = std::mem::take(&mut self.pending_ops);
        self.pending_bytes = 0;
        let frame = Arc::new(Frame::Delta {
            base: self.pending_base,
            seq: self.table.seq(LOCAL_SLOT),
            ops,
        });
        let peers: Vec<NodeId> = self.peers.values().map(|p| p.node.clone()).collect();
        for peer in &peers {
            self.push_transmit(peer, Arc::clone(&frame));
        }
    }

    fn send_digest(&mut self, to: &NodeId, reply: bool) {
        self.stats.digests_sent += 1;
        let frame = Frame::Digest {
            reply,
            parts: self.parts().collect(),
        };
        self.queue(to, frame);
    }

    fn request_sync(&mut self, peer: &NodeId, now: Instant) {
        let timeout = self.config.protocol_timeout;
        let Some(state) = self.peers.get_mut(&peer.name) else {
            return;
        };
        let pending = state
            .sync_requested_at
            .is_some_and(|at| at.checked_add(timeout).is_none_or(|until| now < until));
        if pending {
            return;
        }
        state.sync_requested_at = Some(now);
        self.stats.sync_requests_sent += 1;
        self.queue(peer, Frame::SyncRequest);
    }
}
