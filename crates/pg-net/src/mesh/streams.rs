//! Moving bytes on a link: queueing a message for a peer (a scope frame
//! encoded once for every peer), the readers of the channel streams, and
//! length-prefixed messages read with memory bounded by what arrives. The
//! writers are in `channels.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_core::NodeId;
use tokio::sync::mpsc;

use bytes::Bytes;
use pg_core::Frame;
use pg_runtime::{SendError, Wire};

use super::channels::{Channels, Queued};
use super::{FRAME_OVERHEAD, Mesh, STREAM_BULK, STREAM_MEMBERSHIP, bump, clock, code, dropped};
use crate::link::Arrival;
use crate::wire::{self, NetMessage, Record};

impl Mesh {
    /// Queues `message` for `to`'s writer. Encoded (a sync piece: by the
    /// writer, see `Queued::Piece`) before the peers lock,
    /// then queued under it without cloning the link (a clone of its QUIC
    /// connection takes that connection's own lock, twice per send, against
    /// its driver).
    pub(super) fn send(&self, to: &NodeId, message: Wire) -> Result<(), SendError> {
        let c = &self.counters;
        let limit = self.config.max_frame_size - FRAME_OVERHEAD;
        let (message, payload) = match message {
            // A sync piece goes to this peer alone, sized well under the
            // frame limit by the scope: its writer encodes it (see
            // `Queued::Piece`), and counts it if it is over after all.
            Wire::Scope { scope, frame } if matches!(*frame, Frame::SyncPart { .. }) => {
                let scope = scope.to_string();
                (Queued::Piece { scope, frame }, false)
            }
            Wire::Scope { scope, frame } => {
                let frame = self.encode_frame(&frame);
                if frame.len() > limit {
                    bump(&c.oversized, "pg_net_oversized_total", 1);
                    return Err(SendError::TooLarge);
                }
                let message = NetMessage::Scope {
                    scope: scope.to_string(),
                    frame,
                };
                (message.into(), false)
            }
            Wire::Scopes { running } => {
                // Ids and their length prefixes, about.
                let size: usize = running.iter().map(|s| s.len() + 4).sum();
                if size > limit || running.len() > crate::wire::MAX_SCOPES {
                    bump(&c.oversized, "pg_net_oversized_total", 1);
                    return Err(SendError::TooLarge);
                }
                let running: Vec<String> = running.iter().map(|s| s.to_string()).collect();
                (NetMessage::Scopes { running }.into(), false)
            }
            Wire::Deliver {
                scope,
                from,
                to,
                topic,
                payload,
            } => {
                if payload.len() + topic.len() + to.len() * 10 > limit {
                    bump(&c.oversized, "pg_net_oversized_total", 1);
                    return Err(SendError::TooLarge);
                }
                let message = NetMessage::Deliver {
                    scope: scope.map(|s| s.to_string()),
                    from,
                    to,
                    topic: topic.to_string(),
                    payload,
                };
                (message.into(), true)
            }
        };
        let peers = self.peers.lock();
        let Some(link) = peers.get(&to.name).filter(|l| l.node == *to) else {
            drop(peers);
            dropped(&c.dropped_unreachable, "unreachable");
            return Err(SendError::Unreachable);
        };
        // Payloads go on the bulk channel, behind the circuit breaker;
        // membership traffic is never held back by payload trouble.
        let queue = if payload {
            if !link.breaker.lock().allow(Instant::now()) {
                drop(peers);
                dropped(&c.dropped_breaker, "circuit_open");
                return Err(SendError::Unreachable);
            }
            &link.bulk
        } else {
            &link.membership
        };
        match queue.try_send(message) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                if payload {
                    link.breaker.lock().failure(Instant::now());
                }
                drop(peers);
                dropped(&c.dropped_overloaded, "overloaded");
                Err(SendError::Overloaded)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                drop(peers);
                dropped(&c.dropped_unreachable, "unreachable");
                Err(SendError::Unreachable)
            }
        }
    }

    /// A scope frame goes to every peer in turn: encode it once.
    pub(super) fn encode_frame(&self, frame: &Arc<Frame>) -> Bytes {
        let mut cache = self.encoded.lock();
        if let Some((cached, bytes)) = cache.as_ref()
            && Arc::ptr_eq(cached, frame)
        {
            return bytes.clone();
        }
        let bytes = Bytes::from(frame.encode());
        *cache = Some((Arc::clone(frame), bytes.clone()));
        bytes
    }
}

impl Mesh {
    pub(super) async fn read_streams(
        self: Arc<Self>,
        conn: quinn::Connection,
        peer: NodeId,
        channels: Arc<Channels>,
    ) {
        while let Ok(recv) = conn.accept_uni().await {
            let m = Arc::clone(&self);
            let (c, p, ch) = (conn.clone(), peer.clone(), Arc::clone(&channels));
            self.runtime
                .spawn(async move { m.read_stream(c, p, ch, recv).await });
        }
    }

    /// Reads one channel stream. Streams of one channel may overlap (a
    /// retransmission on a fresh stream while the old one's tail is still
    /// arriving): the channel's inbox, locked while a message is handed
    /// on, lets each message through once and in order.
    pub(super) async fn read_stream(
        self: Arc<Self>,
        conn: quinn::Connection,
        peer: NodeId,
        channels: Arc<Channels>,
        mut recv: quinn::RecvStream,
    ) {
        let mut tag = [0u8; 1];
        if recv.read_exact(&mut tag).await.is_err() {
            return;
        }
        if tag[0] != STREAM_MEMBERSHIP && tag[0] != STREAM_BULK {
            return self.protocol_error(&conn, &peer, "unknown stream kind");
        }
        let k = usize::from(tag[0]);
        self.read_records(&conn, &peer, &channels, k, &mut recv)
            .await;
        // A stream that ends (or fails) while a delivery awaits its delayed
        // acknowledgement takes that timer with it: acknowledge now.
        let mut inbox = channels.inbox[k].lock();
        if inbox.poll_timeout().is_some() {
            inbox.repeat_ack();
            drop(inbox);
            channels.wake[usize::from(STREAM_MEMBERSHIP)].notify_one();
        }
    }

    /// Reads channel `k`'s records from one stream until it ends or the
    /// peer breaks the protocol.
    async fn read_records(
        self: &Arc<Self>,
        conn: &quinn::Connection,
        peer: &NodeId,
        channels: &Arc<Channels>,
        k: usize,
        recv: &mut quinn::RecvStream,
    ) {
        let max = self.config.max_frame_size;
        // One timer for the whole stream, re-armed only when the deadline
        // moves: registering a timer per message would cost more than the
        // message.
        let ack_timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(ack_timer);
        let mut armed: Option<Instant> = None;
        loop {
            // While a delivery is unacknowledged, the wait for the next
            // message is also the delayed acknowledgement's timer.
            let ack_at = channels.inbox[k].lock().poll_timeout();
            if ack_at != armed {
                if let Some(at) = ack_at {
                    ack_timer.as_mut().reset(at.into());
                }
                armed = ack_at;
            }
            let read = match armed {
                None => read_body(recv, max).await,
                Some(_) => {
                    let read = read_body(recv, max);
                    tokio::pin!(read);
                    tokio::select! {
                        biased;
                        read = &mut read => read,
                        () = &mut ack_timer => {
                            if channels.inbox[k].lock().ack_due(clock()) {
                                channels.wake[usize::from(STREAM_MEMBERSHIP)].notify_one();
                            }
                            // Fired: not polled again until re-armed.
                            armed = None;
                            read.await
                        }
                    }
                }
            };
            let body = match read {
                Ok(Some(body)) => body,
                Ok(None) => return,
                Err(ReadError::Wire(wire::WireError::TooLarge { len, max })) => {
                    bump(&self.counters.oversized, "pg_net_oversized_total", 1);
                    return self.protocol_error(
                        conn,
                        peer,
                        &format!("frame of {len} bytes over the {max} limit"),
                    );
                }
                Err(ReadError::Wire(e)) => {
                    bump(&self.counters.malformed, "pg_net_malformed_total", 1);
                    return self.protocol_error(conn, peer, &e.to_string());
                }
                Err(ReadError::Stream(_)) => return,
            };
            let size = body.len();
            let record = match wire::decode_record(&body) {
                Ok(record) => record,
                Err(e) => {
                    bump(&self.counters.malformed, "pg_net_malformed_total", 1);
                    return self.protocol_error(conn, peer, &e.to_string());
                }
            };
            drop(body);
            let now = clock();
            let verdict = match record {
                Record::Data { seq, message } => {
                    tracing::trace!(target: "pg_hop", %peer, channel = k, seq, "record read");
                    self.receive_data(peer, channels, k, seq, size, message, now)
                }
                Record::Probe => {
                    channels.inbox[k].lock().repeat_ack();
                    channels.wake[usize::from(STREAM_MEMBERSHIP)].notify_one();
                    Ok(())
                }
                Record::Ack { channel, next } => {
                    let Some(out) = channels.out.get(usize::from(channel)) else {
                        return self.protocol_error(conn, peer, "ack of an unknown channel");
                    };
                    let mut out = out.lock();
                    let was_full = !out.has_room();
                    match out.handle_ack(next, now) {
                        Ok(_) => {
                            // Only a writer waiting for room needs waking.
                            if was_full && out.has_room() {
                                drop(out);
                                channels.wake[usize::from(channel)].notify_one();
                            }
                            Ok(())
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
            };
            if let Err(reason) = verdict {
                return self.protocol_error(conn, peer, &reason);
            }
        }
    }

    /// Message `seq` of channel `k` arrived: hand it on if it is the next.
    #[allow(clippy::too_many_arguments)] // one call site, all distinct
    fn receive_data(
        self: &Arc<Self>,
        peer: &NodeId,
        channels: &Channels,
        k: usize,
        seq: u64,
        size: usize,
        message: NetMessage,
        now: Instant,
    ) -> Result<(), String> {
        let mut inbox = channels.inbox[k].lock();
        match inbox.handle_data(seq, size, now) {
            Arrival::Deliver => {
                // A replaced or closed run delivers nothing more: its
                // successor starts over with a resync.
                if !channels.is_retired() {
                    bump(
                        &self.counters.messages_received,
                        "pg_net_messages_received_total",
                        1,
                    );
                    self.dispatch(peer, message)?;
                }
                // The membership writer sends acknowledgements not carried
                // by other writes: wake it when one falls due.
                let wake = inbox.ack_due(now);
                drop(inbox);
                if wake {
                    channels.wake[usize::from(STREAM_MEMBERSHIP)].notify_one();
                }
                Ok(())
            }
            Arrival::Duplicate => {
                drop(inbox);
                bump(
                    &self.counters.duplicates_dropped,
                    "pg_net_duplicates_dropped_total",
                    1,
                );
                channels.wake[usize::from(STREAM_MEMBERSHIP)].notify_one();
                Ok(())
            }
            Arrival::Gap { expected, got } => Err(format!(
                "channel {k}: message {got} while expecting {expected}"
            )),
        }
    }

    pub(super) fn protocol_error(&self, conn: &quinn::Connection, peer: &NodeId, reason: &str) {
        tracing::warn!(node = %self.hello.node, %peer, %reason, "protocol error: closing the connection");
        conn.close(code::PROTOCOL.into(), reason.as_bytes());
    }
}

/// Why a message could not be read from a stream.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The bytes were not a valid message (the peer misbehaves).
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    /// The stream or connection failed.
    #[error("stream failed")]
    Stream(#[source] quinn::ReadExactError),
}

/// Bytes read into a message body at a time: a body grows as its bytes
/// arrive, so an announced length costs nothing until it is sent.
const READ_CHUNK: usize = 64 * 1024;

/// Reads one length-prefixed handshake message; `None` when the stream
/// ends cleanly before it.
pub(super) async fn read_message(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<Option<NetMessage>, ReadError> {
    match read_body(recv, max).await? {
        Some(body) => Ok(Some(wire::decode(&body)?)),
        None => Ok(None),
    }
}

/// Reads one length-prefixed body; `None` when the stream ends cleanly
/// between bodies.
async fn read_body(recv: &mut quinn::RecvStream, max: usize) -> Result<Option<Vec<u8>>, ReadError> {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(ReadError::Stream(e)),
    }
    let len = wire::body_len(prefix, max)?;
    let mut body = Vec::with_capacity(len.min(READ_CHUNK));
    while body.len() < len {
        let start = body.len();
        let want = (len - start).min(READ_CHUNK);
        // Doubling as bytes arrive, but never past what the message needs.
        let target = (start + want)
            .max(body.capacity().saturating_mul(2))
            .min(len);
        body.reserve_exact(target - start);
        body.resize(start + want, 0);
        recv.read_exact(&mut body[start..])
            .await
            .map_err(ReadError::Stream)?;
    }
    Ok(Some(body))
}

pub(super) async fn write_message(
    send: &mut quinn::SendStream,
    message: &NetMessage,
) -> Result<(), quinn::WriteError> {
    let mut buf = Vec::new();
    wire::encode_into(message, &mut buf);
    send.write_all(&buf).await
}
