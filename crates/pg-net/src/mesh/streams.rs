//! Moving bytes on a link: queueing a message for a peer (a scope frame
//! encoded once for every peer), the coalescing writer of each stream, the
//! readers, and length-prefixed messages read with memory bounded by what
//! arrives.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use parking_lot::Mutex;
use pg_core::NodeId;
use tokio::sync::mpsc;

use bytes::Bytes;
use pg_core::Frame;
use pg_runtime::{SendError, Wire};

use super::{FRAME_OVERHEAD, Mesh, STREAM_BULK, STREAM_MEMBERSHIP, WRITE_BATCH, bump, code};
use crate::backoff::Backoff;
use crate::breaker::CircuitBreaker;
use crate::wire::{self, NetMessage};

impl Mesh {
    pub(super) fn send(&self, to: &NodeId, message: Wire) -> Result<(), SendError> {
        let c = &self.counters;
        let link = self
            .peers
            .lock()
            .get(&to.name)
            .filter(|l| l.node == *to)
            .cloned();
        let Some(link) = link else {
            bump(&c.dropped_unreachable, "pg_net_dropped_total", 1);
            return Err(SendError::Unreachable);
        };
        let limit = self.config.max_frame_size - FRAME_OVERHEAD;
        let (queue, message, guarded) = match message {
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
                (&link.membership, message, false)
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
                if !link.breaker.lock().allow(Instant::now()) {
                    bump(&c.dropped_breaker, "pg_net_dropped_total", 1);
                    return Err(SendError::Unreachable);
                }
                let message = NetMessage::Deliver {
                    scope: scope.map(|s| s.to_string()),
                    from,
                    to,
                    topic: topic.to_string(),
                    payload,
                };
                (&link.bulk, message, true)
            }
        };
        match queue.try_send(message) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                if guarded {
                    link.breaker.lock().failure(Instant::now());
                }
                bump(&c.dropped_overloaded, "pg_net_dropped_total", 1);
                Err(SendError::Overloaded)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                bump(&c.dropped_unreachable, "pg_net_dropped_total", 1);
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
    pub(super) async fn write_loop(
        self: Arc<Self>,
        conn: quinn::Connection,
        kind: u8,
        mut stream: quinn::SendStream,
        mut rx: mpsc::Receiver<NetMessage>,
        breaker: Option<Arc<Mutex<CircuitBreaker>>>,
    ) {
        let c = &self.counters;
        let max = self.config.max_frame_size;
        let mut buf = Vec::with_capacity(WRITE_BATCH);
        while let Some(first) = rx.recv().await {
            buf.clear();
            let mut n = 0u64;
            let mut next = Some(first);
            while let Some(message) = next.take() {
                let start = buf.len();
                wire::encode_into(&message, &mut buf);
                if buf.len() - start - 4 > max {
                    buf.truncate(start);
                    bump(&c.oversized, "pg_net_oversized_total", 1);
                    tracing::warn!(node = %self.hello.node, limit = max, "message over max_frame_size not sent");
                } else {
                    n += 1;
                }
                if buf.len() < WRITE_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            if n == 0 {
                continue;
            }
            let mut attempt = 0;
            let mut backoff = Backoff::new(
                self.config.retry_base_delay,
                self.config.retry_max_delay,
                self.jitter_seed.fetch_add(1, Ordering::Relaxed),
            );
            loop {
                match stream.write_all(&buf).await {
                    Ok(()) => {
                        if let Some(breaker) = &breaker {
                            breaker.lock().success();
                        }
                        bump(&c.messages_sent, "pg_net_messages_sent_total", n);
                        bump(&c.bytes_sent, "pg_net_bytes_sent_total", buf.len() as u64);
                        break;
                    }
                    Err(e) => {
                        let gone = conn.close_reason().is_some();
                        if gone || attempt >= self.config.max_retries {
                            if let Some(breaker) = &breaker {
                                breaker.lock().failure(Instant::now());
                            }
                            bump(&c.writes_failed, "pg_net_writes_failed_total", n);
                            tracing::warn!(node = %self.hello.node, error = %e, messages = n, "write failed; messages dropped");
                            if gone {
                                return;
                            }
                            break;
                        }
                        attempt += 1;
                        bump(&c.write_retries, "pg_net_write_retries_total", 1);
                        tokio::time::sleep(backoff.next_delay()).await;
                        // Retry on a fresh stream of the same kind.
                        let Ok(mut fresh) = conn.open_uni().await else {
                            return;
                        };
                        if fresh.write_all(&[kind]).await.is_err() {
                            continue;
                        }
                        stream = fresh;
                    }
                }
            }
        }
    }

    pub(super) async fn read_streams(self: Arc<Self>, conn: quinn::Connection, peer: NodeId) {
        while let Ok(recv) = conn.accept_uni().await {
            let m = Arc::clone(&self);
            let (c, p) = (conn.clone(), peer.clone());
            self.runtime
                .spawn(async move { m.read_stream(c, p, recv).await });
        }
    }

    pub(super) async fn read_stream(
        self: Arc<Self>,
        conn: quinn::Connection,
        peer: NodeId,
        mut recv: quinn::RecvStream,
    ) {
        let mut tag = [0u8; 1];
        if recv.read_exact(&mut tag).await.is_err() {
            return;
        }
        if tag[0] != STREAM_MEMBERSHIP && tag[0] != STREAM_BULK {
            return self.protocol_error(&conn, &peer, "unknown stream kind");
        }
        loop {
            match read_message(&mut recv, self.config.max_frame_size).await {
                Ok(Some(message)) => {
                    bump(
                        &self.counters.messages_received,
                        "pg_net_messages_received_total",
                        1,
                    );
                    if let Err(reason) = self.dispatch(&peer, message) {
                        return self.protocol_error(&conn, &peer, &reason);
                    }
                }
                Ok(None) => return,
                Err(ReadError::Wire(wire::WireError::TooLarge { len, max })) => {
                    bump(&self.counters.oversized, "pg_net_oversized_total", 1);
                    return self.protocol_error(
                        &conn,
                        &peer,
                        &format!("frame of {len} bytes over the {max} limit"),
                    );
                }
                Err(ReadError::Wire(e)) => {
                    bump(&self.counters.malformed, "pg_net_malformed_total", 1);
                    return self.protocol_error(&conn, &peer, &e.to_string());
                }
                Err(ReadError::Stream(_)) => return,
            }
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

/// Reads one length-prefixed message; `None` when the stream ends cleanly
/// between messages.
pub(super) async fn read_message(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<Option<NetMessage>, ReadError> {
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
    Ok(Some(wire::decode(&body)?))
}

pub(super) async fn write_message(
    send: &mut quinn::SendStream,
    message: &NetMessage,
) -> Result<(), quinn::WriteError> {
    let mut buf = Vec::new();
    wire::encode_into(message, &mut buf);
    send.write_all(&buf).await
}
