//! Traffic counters of the simulated network.

use crate::Frame;

/// Traffic counters of the simulated network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames handed to the network.
    pub frames_sent: u64,
    /// Encoded bytes handed to the network.
    pub bytes_sent: u64,
    /// Frames delivered to a node.
    pub frames_delivered: u64,
    /// Frames lost to injected loss.
    pub frames_lost: u64,
    /// Frames dropped because the link was down or the receiver gone.
    pub frames_unreachable: u64,
    /// Extra copies delivered by injected duplication.
    pub frames_duplicated: u64,
    /// Frames sent, by kind.
    pub by_kind: FrameCounts,
    /// Syncs sent in answer to a request for the receiver's part (a
    /// `SyncRequest`, a `Discover`, or a `Sync` with `known: None`) whose
    /// sender, when it asked, did not hold the receiver's current part.
    /// Such a request was needed when it left, so its answer goes out even
    /// if the asker caught up meanwhile (a reordered delta filling the gap,
    /// a duplicated request): a request cannot be recalled. A sync older
    /// than the receiver's copy of its sender's part does not count: the
    /// receiver can tell it is out of date and must not answer it.
    pub requested_syncs: u64,
}

/// Frames sent, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// `Delta` frames.
    pub deltas: u64,
    /// Syncs: `Sync` frames, and syncs split into `SyncPart`s (counted
    /// once each, by their first piece).
    pub syncs: u64,
    /// `SyncRequest` frames.
    pub sync_requests: u64,
    /// `Discover` frames.
    pub discovers: u64,
    /// `Digest` frames.
    pub digests: u64,
}

impl FrameCounts {
    pub(super) fn count(&mut self, frame: &Frame) {
        let counter = match frame {
            Frame::Delta { .. } => &mut self.deltas,
            // A split sync counts once, by its first piece: its later
            // pieces leave in later steps, which would not be credited to
            // the request that asked for it.
            Frame::Sync { .. } | Frame::SyncPart { index: 0, .. } => &mut self.syncs,
            Frame::SyncPart { .. } => return,
            Frame::SyncRequest => &mut self.sync_requests,
            Frame::Discover => &mut self.discovers,
            Frame::Digest { .. } => &mut self.digests,
        };
        *counter += 1;
    }
}
