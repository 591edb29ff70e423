//! The sending half of a channel: numbering, keeping what is not yet
//! acknowledged, rewinding after a failed stream.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::Seq;

/// An acknowledgement that cannot be true.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AckError {
    /// The peer acknowledged messages that were never sent (state is
    /// unchanged; the peer is broken or hostile).
    #[error("acknowledged up to {acked}, but only {sent} messages were sent")]
    Unsent {
        /// The acknowledged count.
        acked: Seq,
        /// Messages sent so far.
        sent: Seq,
    },
}

/// The sending half of one channel of one link run.
///
/// Holds each message (`T`, with its size in bytes) from
/// [`push`](Self::push) until an acknowledgement covers it. A cursor marks
/// the next message to write on the current stream: new messages are
/// written in turn, and [`rewind`](Self::rewind) moves the cursor back to
/// the first unacknowledged message for a fresh stream.
#[derive(Debug)]
pub struct Outbox<T> {
    /// Messages `acked..next`, in order, with their sizes.
    unacked: VecDeque<(usize, T)>,
    unacked_bytes: usize,
    /// Everything below is acknowledged.
    acked: Seq,
    /// The number the next pushed message gets.
    next: Seq,
    /// The next message to write on the current stream.
    cursor: Seq,
    window: usize,
    /// When the peer is asked for an acknowledgement, if they stop.
    probe_at: Option<Instant>,
    probe_delay: Duration,
    /// Probes sent since the last acknowledgement that freed something:
    /// each waits twice as long as the one before (up to 64 times the
    /// delay), so a silent peer costs a few small records, not a stream.
    probes: u32,
}

/// Probes back off up to this many doublings of the probe delay.
const MAX_PROBE_BACKOFF: u32 = 6;

impl<T: Clone> Outbox<T> {
    /// An empty channel keeping at most `window` unacknowledged bytes,
    /// probing the peer when acknowledgements stop for `probe_delay`.
    pub fn new(window: usize, probe_delay: Duration) -> Self {
        Self {
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            acked: 0,
            next: 0,
            cursor: 0,
            window,
            probe_at: None,
            probe_delay,
            probes: 0,
        }
    }

    /// Whether another message may be pushed: the unacknowledged bytes are
    /// under the window (or nothing is unacknowledged, so one message of
    /// any size can go alone).
    pub fn has_room(&self) -> bool {
        self.unacked.is_empty() || self.unacked_bytes < self.window
    }

    /// The number the next pushed message gets.
    pub fn next_seq(&self) -> Seq {
        self.next
    }

    /// Queues a message of `size` bytes at `now`; returns its number. It
    /// is written after everything pushed before it.
    pub fn push(&mut self, size: usize, message: T) -> Seq {
        let seq = self.next;
        self.unacked.push_back((size, message));
        self.unacked_bytes += size;
        self.next += 1;
        seq
    }

    /// The next message to write on the current stream, with its number;
    /// `None` when everything pushed has been written.
    #[must_use]
    pub fn poll_write(&mut self) -> Option<(Seq, T)> {
        if self.cursor >= self.next {
            return None;
        }
        // Invariant: acked <= cursor < next, so the index is in range.
        let index = usize::try_from(self.cursor - self.acked).ok()?;
        let (_, message) = self.unacked.get(index)?;
        let seq = self.cursor;
        self.cursor += 1;
        Some((seq, message.clone()))
    }

    /// The peer has delivered every message below `next` (told at `now`):
    /// forget them. Returns how many were freed (0 for a stale or repeated
    /// ack).
    pub fn handle_ack(&mut self, next: Seq, now: Instant) -> Result<usize, AckError> {
        if next > self.next {
            return Err(AckError::Unsent {
                acked: next,
                sent: self.next,
            });
        }
        let mut freed = 0;
        while self.acked < next {
            if let Some((size, _)) = self.unacked.pop_front() {
                self.unacked_bytes -= size;
            }
            self.acked += 1;
            freed += 1;
        }
        self.cursor = self.cursor.max(self.acked);
        if freed > 0 {
            self.probes = 0;
            self.probe_at = (!self.unacked.is_empty()).then(|| now + self.probe_delay);
        }
        Ok(freed)
    }

    /// What was polled from [`poll_write`](Self::poll_write) reached the
    /// stream at `now`: if the peer's acknowledgement does not follow
    /// within the probe delay, it is asked for one.
    pub fn handle_written(&mut self, now: Instant) {
        if self.probe_at.is_none() && self.cursor > self.acked {
            self.probe_at = Some(now + self.probe_delay);
        }
    }

    /// Whether to ask the peer for an acknowledgement now (a small probe
    /// record, answered at once): written messages stayed unacknowledged
    /// for the probe delay. An acknowledgement lost with a failed stream
    /// of the peer is repaired so, and a stream that died while idle is
    /// found out by the probe's write. Backs off while unanswered.
    #[must_use]
    pub fn poll_probe(&mut self, now: Instant) -> bool {
        let due = self.probe_at.is_some_and(|at| now >= at) && self.cursor > self.acked;
        if due {
            self.probes = (self.probes + 1).min(MAX_PROBE_BACKOFF);
            self.probe_at = Some(now + self.probe_delay * (1 << self.probes));
        }
        due
    }

    /// When [`poll_probe`](Self::poll_probe) may have something.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.probe_at.filter(|_| self.cursor > self.acked)
    }

    /// The current stream failed: write everything unacknowledged again,
    /// from the first, on the next stream.
    pub fn rewind(&mut self) {
        self.cursor = self.acked;
    }

    /// Messages pushed and not yet written on the current stream.
    pub fn unwritten(&self) -> u64 {
        self.next - self.cursor
    }

    /// Messages pushed and not acknowledged (those a link run that ends
    /// now may have lost).
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// Bytes pushed and not acknowledged.
    pub fn unacked_bytes(&self) -> usize {
        self.unacked_bytes
    }

    /// Everything below this number is acknowledged.
    pub fn acked(&self) -> Seq {
        self.acked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE: Duration = Duration::from_millis(100);

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn writes_in_order_and_rewinds_to_the_first_unacked() {
        let mut out = Outbox::new(100, PROBE);
        for m in 0..5u32 {
            assert_eq!(out.push(10, m), Seq::from(m));
        }
        let written: Vec<_> = std::iter::from_fn(|| out.poll_write()).collect();
        assert_eq!(written, (0..5).map(|m| (m, m as u32)).collect::<Vec<_>>());
        assert_eq!(out.handle_ack(2, t0()), Ok(2));
        out.rewind();
        let again: Vec<_> = std::iter::from_fn(|| out.poll_write())
            .map(|w| w.0)
            .collect();
        assert_eq!(again, vec![2, 3, 4]);
        assert_eq!(out.unacked(), 3);
        assert_eq!(out.unacked_bytes(), 30);
    }

    #[test]
    fn stale_acks_are_harmless_and_impossible_ones_refused() {
        let mut out = Outbox::new(100, PROBE);
        out.push(1, ());
        out.push(1, ());
        assert_eq!(out.handle_ack(2, t0()), Ok(2));
        assert_eq!(out.handle_ack(1, t0()), Ok(0));
        assert_eq!(
            out.handle_ack(3, t0()),
            Err(AckError::Unsent { acked: 3, sent: 2 })
        );
        assert_eq!(out.acked(), 2);
    }

    #[test]
    fn the_window_bounds_unacked_bytes_but_lets_one_big_message_through() {
        let mut out = Outbox::new(25, PROBE);
        assert!(out.has_room());
        out.push(1000, ());
        assert!(!out.has_room());
        out.handle_ack(1, t0()).unwrap();
        out.push(10, ());
        out.push(10, ());
        assert!(out.has_room());
        out.push(10, ());
        assert!(!out.has_room());
    }

    #[test]
    fn an_ack_overtaking_the_cursor_skips_what_was_delivered() {
        let mut out = Outbox::new(100, PROBE);
        for _ in 0..4 {
            out.push(1, ());
        }
        // Written once, then the stream failed and the peer turned out to
        // have delivered three of them.
        while out.poll_write().is_some() {}
        out.rewind();
        out.handle_ack(3, t0()).unwrap();
        assert_eq!(out.poll_write().map(|w| w.0), Some(3));
        assert_eq!(out.poll_write(), None);
    }

    #[test]
    fn a_silent_peer_is_probed_with_backoff_after_a_write() {
        let now = Instant::now();
        let mut out = Outbox::new(100, PROBE);
        out.push(1, 'a');
        out.push(1, 'b');
        assert_eq!(out.poll_timeout(), None, "nothing written yet");
        while out.poll_write().is_some() {}
        out.handle_written(now);
        assert_eq!(out.poll_timeout(), Some(now + PROBE));
        assert!(!out.poll_probe(now));
        assert!(out.poll_probe(now + PROBE));
        assert!(!out.poll_probe(now + PROBE), "once per delay");
        // Unanswered: twice as long, then four times.
        assert_eq!(out.poll_timeout(), Some(now + PROBE * 3));
        assert!(out.poll_probe(now + PROBE * 3));
        assert_eq!(out.poll_timeout(), Some(now + PROBE * 7));
        // An answer starts over.
        out.handle_ack(1, now + PROBE * 4).unwrap();
        assert_eq!(out.poll_timeout(), Some(now + PROBE * 5));
        out.handle_ack(2, now + PROBE * 5).unwrap();
        assert_eq!(out.poll_timeout(), None);
    }
}
