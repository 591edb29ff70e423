//! The receiving half of a channel: in-order delivery, duplicates dropped,
//! cumulative acknowledgements.

use std::time::Instant;

use super::{LinkConfig, Seq};

/// What to do with a message that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Arrival {
    /// The next in order: deliver it.
    Deliver,
    /// Delivered before (a retransmission): drop it.
    Duplicate,
    /// Beyond the next expected: the peer broke the sequence (a
    /// retransmitting sender never skips); close the link.
    Gap {
        /// The number expected.
        expected: Seq,
        /// The number that came.
        got: Seq,
    },
}

/// The receiving half of one channel of one link run.
#[derive(Debug)]
pub struct Inbox {
    config: LinkConfig,
    /// The next number to deliver; everything below was delivered.
    next: Seq,
    /// The last acknowledgement handed out.
    acked: Seq,
    since_ack_bytes: usize,
    /// When the pending acknowledgement is due at the latest.
    deadline: Option<Instant>,
    /// A duplicate or a probe arrived, or an acknowledgement may be lost:
    /// tell the sender at once how far we got.
    urgent: bool,
}

impl Inbox {
    /// A channel expecting message 0.
    pub fn new(config: LinkConfig) -> Self {
        Self {
            config,
            next: 0,
            acked: 0,
            since_ack_bytes: 0,
            deadline: None,
            urgent: false,
        }
    }

    /// Message `seq` of `size` bytes arrived at `now`.
    pub fn handle_data(&mut self, seq: Seq, size: usize, now: Instant) -> Arrival {
        if seq < self.next {
            self.urgent = true;
            return Arrival::Duplicate;
        }
        if seq > self.next {
            return Arrival::Gap {
                expected: self.next,
                got: seq,
            };
        }
        self.next += 1;
        self.since_ack_bytes = self.since_ack_bytes.saturating_add(size);
        if self.deadline.is_none() {
            self.deadline = Some(now + self.config.ack_delay);
        }
        Arrival::Deliver
    }

    /// The next acknowledgement goes out at once, even if it repeats the
    /// last one: the peer probed (it heard none), or the write that
    /// carried the last one failed.
    pub fn repeat_ack(&mut self) {
        self.urgent = true;
    }

    /// Whether an acknowledgement is due at `now`.
    pub fn ack_due(&self, now: Instant) -> bool {
        self.urgent
            || self.next - self.acked >= u64::from(self.config.ack_messages)
            || self.since_ack_bytes >= self.config.ack_bytes
            || self.deadline.is_some_and(|d| now >= d)
    }

    /// An acknowledgement to send now, if one is due: everything below the
    /// returned number was delivered.
    #[must_use]
    pub fn poll_ack(&mut self, now: Instant) -> Option<Seq> {
        if self.ack_due(now) {
            self.ack_now()
        } else {
            None
        }
    }

    /// An acknowledgement of everything delivered, if anything is
    /// unacknowledged (to piggyback on a write that happens anyway).
    #[must_use]
    pub fn ack_now(&mut self) -> Option<Seq> {
        let repeat = std::mem::take(&mut self.urgent);
        if self.next == self.acked && !repeat {
            return None;
        }
        self.acked = self.next;
        self.since_ack_bytes = 0;
        self.deadline = None;
        Some(self.next)
    }

    /// When [`poll_ack`](Self::poll_ack) will have something at the latest.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// The next number to deliver.
    pub fn expected(&self) -> Seq {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config() -> LinkConfig {
        LinkConfig {
            window: 1 << 20,
            ack_messages: 3,
            ack_bytes: 1000,
            ack_delay: Duration::from_millis(5),
            probe_delay: Duration::from_millis(100),
        }
    }

    #[test]
    fn delivers_in_order_drops_duplicates_refuses_gaps() {
        let now = Instant::now();
        let mut inbox = Inbox::new(config());
        assert_eq!(inbox.handle_data(0, 1, now), Arrival::Deliver);
        assert_eq!(inbox.handle_data(0, 1, now), Arrival::Duplicate);
        assert_eq!(
            inbox.handle_data(2, 1, now),
            Arrival::Gap {
                expected: 1,
                got: 2
            }
        );
        assert_eq!(inbox.handle_data(1, 1, now), Arrival::Deliver);
        assert_eq!(inbox.expected(), 2);
    }

    #[test]
    fn acks_by_count_bytes_time_and_after_a_duplicate() {
        let t0 = Instant::now();
        let mut inbox = Inbox::new(config());
        assert_eq!(inbox.poll_ack(t0), None);
        let _ = inbox.handle_data(0, 1, t0);
        let _ = inbox.handle_data(1, 1, t0);
        assert_eq!(inbox.poll_ack(t0), None);
        assert_eq!(inbox.poll_timeout(), Some(t0 + Duration::from_millis(5)));
        assert_eq!(inbox.poll_ack(t0 + Duration::from_millis(5)), Some(2));
        assert_eq!(inbox.poll_timeout(), None);
        for seq in 2..5 {
            let _ = inbox.handle_data(seq, 1, t0);
        }
        assert_eq!(inbox.poll_ack(t0), Some(5), "by count");
        let _ = inbox.handle_data(5, 1000, t0);
        assert_eq!(inbox.poll_ack(t0), Some(6), "by bytes");
        let _ = inbox.handle_data(3, 1, t0);
        assert_eq!(inbox.poll_ack(t0), Some(6), "a duplicate is answered");
        assert_eq!(inbox.poll_ack(t0), None);
        inbox.repeat_ack();
        assert_eq!(inbox.poll_ack(t0), Some(6), "a probe is answered");
    }
}
