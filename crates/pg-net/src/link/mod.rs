//! Ordered, at-most-once channels over a link, without IO.
//!
//! A *link run* is one QUIC connection between two node runs. On it each
//! side sends on two *channels* (membership and bulk), each a sequence of
//! messages numbered from 0. The promise, per channel and link run:
//!
//! > the receiver hands its runtime a prefix of what the sender queued, in
//! > order, each message once, whatever the stream failures, write
//! > retries and duplicates; and while the link stays up, all of it.
//!
//! How it is kept:
//! - the sender ([`Outbox`]) numbers each message and keeps it until the
//!   receiver acknowledges it; a failed stream write rewinds to the first
//!   unacknowledged message, and everything from there is written again
//!   on a fresh stream (so the receiver may see a message twice, and see
//!   the old stream's tail after the new stream's head);
//! - the receiver ([`Inbox`]) delivers only the next number it expects,
//!   drops anything below it as a duplicate, and refuses anything above
//!   it: a gap cannot come from retransmission (the sender rewinds to
//!   at most what was acknowledged, which is at most what was delivered),
//!   only from a broken peer, so it is a protocol error that closes the
//!   link;
//! - acknowledgements are cumulative ("I have delivered everything below
//!   n"), so a lost or late one is repaired by the next; a receiver acks
//!   after [`LinkConfig::ack_messages`] messages or
//!   [`LinkConfig::ack_bytes`] bytes, at the latest
//!   [`LinkConfig::ack_delay`] after an unacknowledged delivery, and at
//!   once after a duplicate (the sender is retransmitting);
//! - the unacknowledged bytes are bounded by [`LinkConfig::window`]: a
//!   sender with a full window waits (a large sync is streamed with a
//!   bounded number of pieces in flight), and a peer that never acks
//!   costs at most one window per channel;
//! - an acknowledgement lost with a failed stream is not sent again by
//!   itself: a sender that hears none for [`LinkConfig::probe_delay`]
//!   after a write sends a small probe record ([`Outbox::poll_probe`],
//!   backing off while unanswered), which makes the receiver repeat its
//!   acknowledgement ([`Inbox::repeat_ack`]); the probe's write also finds
//!   out a stream that died while idle;
//! - a write that keeps failing ([`Retry`]) ends the link run.
//!
//! A new link run (a reconnection, or a new run of the peer) starts both
//! channels at 0 again. Messages the old run had not seen acknowledged may
//! be lost, never duplicated or reordered: the runtime is told the peer
//! went down (or that the link was reset) and pg-core resynchronises, so
//! membership heals; payloads keep their at-most-once promise. Resuming a
//! channel across connections would need both sides to agree that neither
//! dropped the old run (a second handshake round and session state that
//! outlives connections) to save one resync in the rare case of a
//! replaced connection; the resync is what pg-core's anti-entropy does
//! anyway.
//!
//! Driving it: the writer of a channel takes messages while
//! [`Outbox::has_room`], [`Outbox::push`]es each, writes what
//! [`Outbox::poll_write`] yields (and a probe when
//! [`Outbox::poll_probe`] says so), reports a write that went through
//! with [`Outbox::handle_written`], and on a failed write asks
//! [`Retry::handle_failure`] whether to rewind ([`Outbox::rewind`]) and
//! write again on a fresh stream, or give up. The reader feeds each
//! message's number to [`Inbox::handle_data`], delivers on
//! [`Arrival::Deliver`], calls [`Inbox::repeat_ack`] on a probe, and sends
//! what [`Inbox::poll_ack`] returns; an acknowledgement from the peer goes
//! to [`Outbox::handle_ack`].

mod inbox;
mod outbox;
mod retry;

use std::time::Duration;

pub use inbox::{Arrival, Inbox};
pub use outbox::{AckError, Outbox};
pub use retry::{Retry, RetryDecision};

/// A message's number on its channel.
pub type Seq = u64;

/// Timing and bounds of a link's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkConfig {
    /// Unacknowledged bytes a sender keeps per channel before it waits
    /// (one message larger than this is still sent, alone).
    pub window: usize,
    /// A receiver acks after delivering this many messages...
    pub ack_messages: u32,
    /// ...or this many bytes...
    pub ack_bytes: usize,
    /// ...or at the latest this long after an unacknowledged delivery.
    pub ack_delay: Duration,
    /// A sender that hears no acknowledgement this long after a write
    /// probes the receiver (twice as long before each further probe, up to
    /// 64 times this), which answers with an acknowledgement (one lost with
    /// a failed stream is repaired so).
    pub probe_delay: Duration,
}

impl LinkConfig {
    /// Checks the settings: everything non-zero, delays at most an hour.
    pub fn validate(&self) -> Result<(), String> {
        const HOUR: Duration = Duration::from_secs(3600);
        if self.window == 0 || self.ack_messages == 0 || self.ack_bytes == 0 {
            return Err("link window, ack_messages and ack_bytes must be above zero".into());
        }
        for (name, delay) in [
            ("ack_delay", self.ack_delay),
            ("probe_delay", self.probe_delay),
        ] {
            if delay.is_zero() || delay > HOUR {
                return Err(format!("link {name} must be between 0 and an hour"));
            }
        }
        if self.ack_delay >= self.probe_delay {
            return Err("link ack_delay must be shorter than probe_delay".into());
        }
        Ok(())
    }
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            window: 8 << 20,
            ack_messages: 256,
            ack_bytes: 256 << 10,
            ack_delay: Duration::from_millis(25),
            probe_delay: Duration::from_millis(250),
        }
    }
}
