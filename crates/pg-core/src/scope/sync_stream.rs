//! Sending this node's part: in one frame when it fits, else as a stream
//! of pieces built a few at a time.
//!
//! A part of a million memberships takes tens of milliseconds to turn into
//! frames. Built all at once, it held the writer for that long and left the
//! first piece off the wire until the last was built, the peer idle. So the
//! sync is cut from sizes alone (`sync_layout.rs`: the number of pieces is
//! known before any is built), taken from a snapshot of the part that
//! copies no member, and [`PIECES_PER_STEP`] pieces are built per step,
//! the next step due at once (as the removal of a downed node's part is
//! paced): other work gets the writer in between, and the driver sends
//! the first pieces while later ones are built.
//!
//! Order per peer is kept: a frame for a peer whose stream is not finished
//! waits behind its last piece, so the peer still sees deltas and syncs in
//! version order. Frames for other peers go at once.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::frame::{Frame, SyncReg};
use crate::group::GroupName;
use crate::id::NodeId;
use crate::member_list::ListSnapshot;
use crate::meta::Meta;
use crate::sync_layout::{Mark, PartSource, Shape, build_piece, layout, reg_size, shape};
use crate::sync_parts::MAX_SYNC_PARTS;
use crate::timer::Timer;

use super::{Scope, Transmit};

/// Pieces of a stream built per step: about a millisecond's work at the
/// default `sync_part_entries`.
pub(crate) const PIECES_PER_STEP: usize = 2;

/// One group's members by serial, and their metadata (empty when the
/// group has none).
type Gathered = (Vec<(u64, u32)>, Vec<Option<Meta>>);

/// This node's part at one version, read group by group.
struct LocalPart {
    groups: Vec<(GroupName, ListSnapshot)>,
    registrations: Vec<SyncReg>,
    /// The group read last, by serial: a group that spans two pieces is
    /// gathered and sorted once.
    current: Option<(usize, Gathered)>,
}

impl PartSource for LocalPart {
    fn group_count(&self) -> usize {
        self.groups.len()
    }

    fn name(&self, g: usize) -> &GroupName {
        // Invariant: callers pass g < group_count().
        &self.groups[g].0
    }

    fn entries(&mut self, g: usize) -> (&[(u64, u32)], &[Option<Meta>]) {
        if self.current.as_ref().map(|c| c.0) != Some(g) {
            let list = &self.groups[g].1;
            let (members, metas) = if list.has_metas() {
                let mut entries: Vec<(u64, u32, Option<Meta>)> = list
                    .iter_meta()
                    .map(|(key, count, meta)| (key.serial(), count, meta))
                    .collect();
                entries.sort_unstable_by_key(|&(serial, _, _)| serial);
                entries
                    .into_iter()
                    .map(|(serial, count, meta)| ((serial, count), meta))
                    .unzip()
            } else {
                let mut members: Vec<(u64, u32)> = list
                    .iter()
                    .map(|(key, count)| (key.serial(), count))
                    .collect();
                members.sort_unstable_by_key(|&(serial, _)| serial);
                (members, Vec::new())
            };
            self.current = Some((g, (members, metas)));
        }
        match &self.current {
            Some((_, (members, metas))) => (members, metas),
            None => (&[], &[]),
        }
    }

    fn registrations(&self) -> &[SyncReg] {
        &self.registrations
    }
}

impl LocalPart {
    /// Where the pieces start, for these budgets. Only groups with
    /// metadata are read for it.
    fn cut(&mut self, per_part: usize, part_bytes: usize) -> Vec<Mark> {
        let shapes: Vec<Shape> = (0..self.groups.len())
            .map(|g| {
                let (name, list) = &self.groups[g];
                if list.has_metas() {
                    shape(self, g)
                } else {
                    Shape {
                        name_len: name.as_str().len(),
                        len: list.distinct(),
                        meta_lens: Vec::new(),
                    }
                }
            })
            .collect();
        let sizes: Vec<usize> = self.registrations.iter().map(reg_size).collect();
        layout(shapes.into_iter(), sizes.into_iter(), per_part, part_bytes)
    }
}

/// A sync to one peer, sent a few pieces per step.
pub(super) struct SyncStream {
    seq: u64,
    known: Option<u64>,
    part: LocalPart,
    marks: Vec<Mark>,
    next: usize,
    /// Frames for the same peer queued meanwhile: they follow the last
    /// piece.
    pub(super) after: VecDeque<Arc<Frame>>,
}

impl std::fmt::Debug for SyncStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncStream")
            .field("seq", &self.seq)
            .field("pieces", &self.marks.len())
            .field("next", &self.next)
            .field("after", &self.after.len())
            .finish()
    }
}

impl SyncStream {
    fn is_done(&self) -> bool {
        self.next >= self.marks.len()
    }

    /// The next piece, built now.
    fn next_frame(&mut self) -> Option<Frame> {
        if self.is_done() {
            return None;
        }
        let piece = build_piece(&mut self.part, &self.marks, self.next);
        let index = self.next as u32;
        self.next += 1;
        Some(Frame::SyncPart {
            seq: self.seq,
            known: self.known,
            index,
            // Past MAX_SYNC_PARTS only for a part too large to number even
            // with grown pieces (see `send_own_sync`): receivers refuse it.
            total: u32::try_from(self.marks.len()).unwrap_or(u32::MAX),
            groups: piece.groups,
            registrations: piece.registrations,
        })
    }
}

impl Scope {
    pub(super) fn send_own_sync(&mut self, to: &NodeId) {
        if let Some(peer) = self.peers.get_mut(&to.name) {
            peer.part_sent = true;
        }
        let known = self.table.slot_of(to).map(|s| self.table.seq(s));
        let seq = self.table.seq(crate::membership::LOCAL_SLOT);
        // This very sync is already on its way (a request crossed it):
        // starting over would only delay it.
        let streaming = self
            .peers
            .get(&to.name)
            .filter(|p| p.node == *to)
            .and_then(|p| p.stream.as_ref());
        if streaming.is_some_and(|s| s.seq == seq && s.known == known) {
            return;
        }
        let mut part = LocalPart {
            groups: self.table.local_part_snapshot(),
            registrations: self.local_sync_regs(),
            current: None,
        };
        let (per_part, part_bytes) = (self.config.sync_part_entries, self.config.sync_part_bytes);
        let mut marks = part.cut(per_part, part_bytes);
        // More than MAX_SYNC_PARTS pieces cannot be numbered: the pieces
        // grow instead. A part too large even then (hundreds of millions
        // of entries) cannot be sent; the receivers refuse what they cannot
        // number, and it is counted there.
        if marks.len() > MAX_SYNC_PARTS as usize {
            let grow = marks.len().div_ceil(MAX_SYNC_PARTS as usize);
            marks = part.cut(
                per_part.saturating_mul(grow),
                part_bytes.saturating_mul(grow),
            );
        }
        if marks.len() == 1 {
            let whole = build_piece(&mut part, &marks, 0);
            let frame = Frame::Sync {
                seq,
                known,
                groups: whole.groups,
                registrations: whole.registrations,
            };
            return self.queue(to, frame);
        }
        // Changes made before this version go first, as a delta.
        self.flush_delta();
        let mut stream = SyncStream {
            seq,
            known,
            part,
            marks,
            next: 0,
            after: VecDeque::new(),
        };
        let Some(peer) = self.peers.get_mut(&to.name).filter(|p| p.node == *to) else {
            // Not a peer (yet): nothing to pace against, all at once.
            while let Some(frame) = stream.next_frame() {
                self.push_transmit(to, Arc::new(frame));
            }
            return;
        };
        // A newer sync replaces one still being sent; what waited behind
        // the old one waits behind this one.
        if let Some(old) = peer.stream.take() {
            stream.after = old.after;
        }
        peer.stream = Some(Box::new(stream));
        self.streaming = true;
        self.advance_streams();
    }

    /// Sends `peer`'s unfinished stream again from its first piece: the
    /// link was replaced, and pieces on the old one may be lost.
    pub(super) fn rewind_stream(&mut self, peer: &NodeId) {
        if let Some(stream) = self
            .peers
            .get_mut(&peer.name)
            .filter(|p| p.node == *peer)
            .and_then(|p| p.stream.as_mut())
        {
            stream.next = 0;
        }
    }

    /// Builds and queues up to [`PIECES_PER_STEP`] more pieces of each
    /// stream; a finished stream's waiting frames follow its last piece.
    /// If any stream is unfinished, the next step is due at once.
    pub(super) fn advance_streams(&mut self) {
        let mut unfinished = false;
        for peer in self.peers.values_mut() {
            let Some(stream) = peer.stream.as_mut() else {
                continue;
            };
            for _ in 0..PIECES_PER_STEP {
                let Some(frame) = stream.next_frame() else {
                    break;
                };
                self.stats.frames_sent += 1;
                self.transmits.push_back(Transmit {
                    to: peer.node.clone(),
                    frame: Arc::new(frame),
                });
            }
            if !stream.is_done() {
                unfinished = true;
                continue;
            }
            // Counted as sent when they were queued.
            for frame in std::mem::take(&mut stream.after) {
                self.transmits.push_back(Transmit {
                    to: peer.node.clone(),
                    frame,
                });
            }
            peer.stream = None;
        }
        self.streaming = unfinished;
        if unfinished {
            self.timers.set(Timer::SyncStream, self.seen_now);
        }
    }

    /// Queues `frame` for `to`, behind `to`'s unfinished stream if it has
    /// one.
    pub(super) fn push_transmit(&mut self, to: &NodeId, frame: Arc<Frame>) {
        self.stats.frames_sent += 1;
        if self.streaming
            && let Some(stream) = self
                .peers
                .get_mut(&to.name)
                .filter(|p| p.node == *to)
                .and_then(|p| p.stream.as_mut())
        {
            stream.after.push_back(frame);
            return;
        }
        self.transmits.push_back(Transmit {
            to: to.clone(),
            frame,
        });
    }
}
