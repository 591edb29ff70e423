//! The state of one link run's channels, shared by its writers and readers,
//! and the writer of a channel: it numbers queued messages, coalesces them
//! into large writes, carries the acknowledgements this node owes, and
//! repairs a failed stream by writing what is unacknowledged again on a
//! fresh one (the rules live in the sans-IO [`link`](crate::link) module).
//!
//! Acknowledgements ride on any write to the peer; when there is none, the
//! membership writer sends them once due (a reader wakes it: after enough
//! messages, after a duplicate, or when the delay runs out while it waits
//! for the next message).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};

use super::{Mesh, STREAM_MEMBERSHIP, WRITE_BATCH, bump, clock, code};
use crate::breaker::CircuitBreaker;
use crate::link::{Inbox, LinkConfig, Outbox, Retry, RetryDecision};
use crate::wire::{self, NetMessage};
use pg_core::Frame;

/// Both channels of one link run (index: the stream tag).
pub(super) struct Channels {
    /// What this node sent and the peer has not acknowledged.
    pub(super) out: [Mutex<Outbox<Bytes>>; 2],
    /// What this node delivered of the peer's channels.
    pub(super) inbox: [Mutex<Inbox>; 2],
    /// Wakes a channel's writer: room in its window, or (membership) an
    /// acknowledgement to send.
    pub(super) wake: [Notify; 2],
    /// The run ended (closed or replaced): nothing more is delivered.
    pub(super) retired: AtomicBool,
}

impl Channels {
    pub(super) fn new(config: LinkConfig) -> Self {
        let outbox = || Mutex::new(Outbox::new(config.window, config.probe_delay));
        let inbox = || Mutex::new(Inbox::new(config));
        Self {
            out: [outbox(), outbox()],
            inbox: [inbox(), inbox()],
            wake: [Notify::new(), Notify::new()],
            retired: AtomicBool::new(false),
        }
    }

    /// Ends the run: once this returns, nothing more of it is handed to
    /// the runtime (a reader hands a message on only under its channel's
    /// inbox lock, after checking the flag; taking each lock here waits
    /// out any reader inside). Returns how many sent messages were never
    /// acknowledged (the peer may not have them).
    ///
    /// Must not be called under the mesh's peers lock: a reader inside
    /// may be sending (through the runtime) and need it.
    pub(super) fn retire(&self) -> usize {
        self.retired.store(true, Ordering::Release);
        for inbox in &self.inbox {
            drop(inbox.lock());
        }
        self.out.iter().map(|o| o.lock().unacked()).sum()
    }

    pub(super) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// When the writer of `kind` must act without being woken: a probe of
    /// its channel. (Delayed acknowledgements are timed by the readers,
    /// which are awake when one falls due.)
    fn deadline(&self, kind: usize) -> Option<Instant> {
        self.out[kind].lock().poll_timeout()
    }
}

/// What a channel's writer is handed by [`Mesh::send`].
pub(super) enum Queued {
    /// A message, encoded as it is written.
    Message(NetMessage),
    /// A piece of a sync, a scope frame for this peer alone: encoded by
    /// the writer rather than by the sender, so the scope's step that
    /// builds pieces does not also encode them (under the scope's lock)
    /// and the writer encodes the next while the last is on the wire.
    Piece {
        /// The scope id.
        scope: String,
        /// The frame.
        frame: Arc<Frame>,
    },
}

impl From<NetMessage> for Queued {
    fn from(message: NetMessage) -> Self {
        Queued::Message(message)
    }
}

impl Queued {
    /// The message to write, the piece's frame encoded now.
    fn into_message(self) -> NetMessage {
        match self {
            Queued::Message(message) => message,
            Queued::Piece { scope, frame } => NetMessage::Scope {
                scope,
                frame: Bytes::from(frame.encode()),
            },
        }
    }
}

/// What one pass of a writer has to write.
struct Batch {
    chunks: Vec<Bytes>,
    /// Whether it carries messages or a probe (not only acknowledgements).
    data: bool,
}

impl Mesh {
    pub(super) async fn write_loop(
        self: Arc<Self>,
        conn: quinn::Connection,
        kind: u8,
        mut stream: quinn::SendStream,
        mut rx: mpsc::Receiver<Queued>,
        breaker: Option<Arc<Mutex<CircuitBreaker>>>,
        channels: Arc<Channels>,
    ) {
        let c = &self.counters;
        let k = usize::from(kind);
        let mut retry = Retry::new(
            self.config.max_retries,
            self.config.retry_base_delay,
            self.config.retry_max_delay,
            self.jitter_seed.fetch_add(1, Ordering::Relaxed),
        );
        // Acknowledged when the current series of retries began: a series
        // ends when the peer acknowledges something, not when a write is
        // merely buffered (a peer that accepts writes and then kills each
        // stream would otherwise be retried forever).
        let mut series_acked = 0;
        // A message taken from the queue while waiting, written next.
        let mut held: Option<Queued> = None;
        let mut queue_closed = false;
        // Encoding space, reused; each batch is copied out at its exact
        // size, so what the window counts is what is kept.
        let mut scratch = Vec::with_capacity(WRITE_BATCH + 4096);
        loop {
            let now = clock();
            let mut batch = self.take_batch(
                &channels,
                k,
                &mut rx,
                &mut held,
                &mut queue_closed,
                &mut scratch,
                now,
            );
            // Any write carries what this node owes; the membership writer
            // also sends those that fell due while nothing else was written.
            if batch.data || kind == STREAM_MEMBERSHIP {
                let acks = owed_acks(&channels, batch.data, now);
                if !acks.is_empty() {
                    batch.chunks.insert(0, acks);
                }
            }
            if batch.chunks.is_empty() {
                if queue_closed {
                    return;
                }
                let room = channels.out[k].lock().has_room();
                let deadline = channels.deadline(k).map(tokio::time::Instant::from_std);
                tokio::select! {
                    () = channels.wake[k].notified() => {}
                    message = rx.recv(), if room => match message {
                        Some(message) => held = Some(message),
                        None => queue_closed = true,
                    },
                    () = sleep_until(deadline), if deadline.is_some() => {}
                }
                continue;
            }
            let bytes: usize = batch.chunks.iter().map(Bytes::len).sum();
            tracing::trace!(target: "pg_hop", channel = k, bytes, "write start");
            match stream.write_all_chunks(&mut batch.chunks).await {
                Ok(()) => {
                    tracing::trace!(target: "pg_hop", channel = k, "write done");
                    channels.out[k].lock().handle_written(clock());
                    if let Some(breaker) = &breaker {
                        breaker.lock().success();
                    }
                    bump(&c.bytes_sent, "pg_net_bytes_sent_total", bytes as u64);
                    if bytes >= WRITE_BATCH {
                        // Let the connection's driver put this on the wire
                        // before the next batch is encoded: woken from this
                        // worker, it waits in a slot no other worker takes
                        // from, so a writer with a long sync to send would
                        // otherwise encode all of it first. Yielding also
                        // lets an idle worker take this writer over.
                        tokio::task::yield_now().await;
                    }
                }
                Err(e) => {
                    if conn.close_reason().is_some() {
                        return;
                    }
                    if let Some(breaker) = &breaker {
                        breaker.lock().failure(Instant::now());
                    }
                    // Acknowledgements it carried may be lost: repeat them.
                    for inbox in &channels.inbox {
                        inbox.lock().repeat_ack();
                    }
                    let acked = channels.out[k].lock().acked();
                    if acked > series_acked {
                        retry.handle_success();
                        series_acked = acked;
                    }
                    match retry.handle_failure(clock()) {
                        RetryDecision::RetryAt(at) => {
                            bump(&c.write_retries, "pg_net_write_retries_total", 1);
                            tracing::debug!(node = %self.hello.node, error = %e, "write failed; retrying on a fresh stream");
                            tokio::time::sleep_until(at.into()).await;
                            let Ok(mut fresh) = conn.open_uni().await else {
                                return;
                            };
                            // A failed tag write fails the next write too,
                            // which counts as the next attempt.
                            let _ = fresh.write_all(&[kind]).await;
                            channels.out[k].lock().rewind();
                            stream = fresh;
                        }
                        RetryDecision::GiveUp => {
                            let unacked = channels.out[k].lock().unacked();
                            bump(&c.writes_failed, "pg_net_writes_failed_total", 1);
                            tracing::warn!(node = %self.hello.node, error = %e, unacked, "writes to a peer kept failing; closing the link (the scopes resynchronise over the next one)");
                            conn.close(code::LINK_FAILED.into(), b"writes kept failing");
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Numbers and encodes what the queue holds (while the window has
    /// room, up to a write's worth), and returns everything the channel
    /// has to write: the new batch or what a rewind asks for, and a probe
    /// if one is due.
    #[allow(clippy::too_many_arguments)] // one call site; the writer's state
    fn take_batch(
        &self,
        channels: &Channels,
        k: usize,
        rx: &mut mpsc::Receiver<Queued>,
        held: &mut Option<Queued>,
        queue_closed: &mut bool,
        scratch: &mut Vec<u8>,
        now: Instant,
    ) -> Batch {
        let max = self.config.max_frame_size;
        let mut out = channels.out[k].lock();
        scratch.clear();
        let mut spans = Vec::new();
        let first_seq = out.next_seq();
        // The window is checked once per batch: a channel keeps at most a
        // window, a write's worth and one message unacknowledged.
        while out.has_room() && scratch.len() < WRITE_BATCH {
            let message = match held.take() {
                Some(message) => message,
                None => match rx.try_recv() {
                    Ok(message) => message,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        *queue_closed = true;
                        break;
                    }
                },
            };
            let message = match message {
                Queued::Message(message) => message,
                piece @ Queued::Piece { .. } => {
                    // Encoded without the channel's lock, which readers
                    // take to record acknowledgements. Only this writer
                    // numbers and pushes, so `first_seq` still holds.
                    drop(out);
                    let message = piece.into_message();
                    out = channels.out[k].lock();
                    message
                }
            };
            let start = scratch.len();
            let seq = first_seq + spans.len() as u64;
            let len = wire::encode_data_into(seq, &message, scratch);
            if len - 4 > max {
                scratch.truncate(start);
                bump(&self.counters.oversized, "pg_net_oversized_total", 1);
                tracing::warn!(node = %self.hello.node, limit = max, "message over max_frame_size not sent");
                continue;
            }
            spans.push(start..start + len);
        }
        let unwritten_before = out.unwritten();
        let buf = Bytes::copy_from_slice(scratch);
        if scratch.capacity() > 4 * (WRITE_BATCH + 4096) {
            // One huge message grew it: do not keep that much around.
            *scratch = Vec::with_capacity(WRITE_BATCH + 4096);
        }
        let fresh = spans.len() as u64;
        for span in spans {
            out.push(span.len(), buf.slice(span));
        }
        bump(
            &self.counters.messages_sent,
            "pg_net_messages_sent_total",
            fresh,
        );
        let mut chunks = Vec::new();
        if unwritten_before == 0 {
            // The common case: exactly the new batch, in one piece.
            while out.poll_write().is_some() {}
            if !buf.is_empty() {
                chunks.push(buf);
            }
        } else {
            chunks.extend(std::iter::from_fn(|| out.poll_write()).map(|(_, record)| record));
        }
        if out.poll_probe(now) {
            let mut probe = Vec::new();
            wire::encode_probe_into(&mut probe);
            chunks.push(Bytes::from(probe));
        }
        let data = !chunks.is_empty();
        Batch { chunks, data }
    }
}

/// The acknowledgements this node owes the peer: those due, or all of them
/// when a write goes out anyway.
fn owed_acks(channels: &Channels, writing: bool, now: Instant) -> Bytes {
    let mut acks = Vec::new();
    for (channel, inbox) in channels.inbox.iter().enumerate() {
        let mut inbox = inbox.lock();
        let ack = if writing {
            inbox.ack_now()
        } else {
            inbox.poll_ack(now)
        };
        if let Some(next) = ack {
            // Channel indices are the stream tags, 0 and 1.
            wire::encode_ack_into(channel as u8, next, &mut acks);
        }
    }
    Bytes::from(acks)
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
