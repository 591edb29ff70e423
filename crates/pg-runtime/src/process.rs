//! Processes: a pid plus a mailbox, and per-topic listeners.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use pg_core::Pid;
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::mailbox::{Mailbox, TryPutError};
use crate::node::{Deliveries, NodeInner};

/// A message in a mailbox: who sent it, under which topic, and the payload
/// (shared by every recipient of a broadcast).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The sender.
    pub from: Pid,
    /// The topic.
    pub topic: Arc<str>,
    /// The payload.
    pub payload: Bytes,
}

impl Envelope {
    /// Decodes a payload sent with `send_typed` or `broadcast_typed`; bytes
    /// left over mean the wrong type was asked for, and are an error.
    pub fn decode<'a, T: Deserialize<'a>>(&'a self) -> Result<T, Error> {
        let (value, rest) =
            postcard::take_from_bytes(&self.payload).map_err(|e| Error::Encoding(e.to_string()))?;
        if !rest.is_empty() {
            return Err(Error::Encoding(format!(
                "{} bytes left over: not the type that was sent",
                rest.len()
            )));
        }
        Ok(value)
    }
}

/// Encodes a typed payload with postcard.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Bytes, Error> {
    postcard::to_allocvec(value)
        .map(Bytes::from)
        .map_err(|e| Error::Encoding(e.to_string()))
}

/// The node's live processes by serial, shared with its scopes (which
/// check that a joining process is alive).
pub(crate) type ProcessTable = RwLock<FxHashMap<u64, Arc<ProcessSlot>>>;

/// A topic listener's registration: its id and channel.
type TopicRoute = (u64, mpsc::Sender<Envelope>);

/// Messages that found the mailbox full, in arrival order, each with the
/// time it may wait until.
#[derive(Default)]
struct Overflow {
    queue: VecDeque<(Instant, Envelope)>,
    draining: bool,
}

/// Where one message goes, and whether it got there at once.
enum Routed {
    Done,
    Full(Envelope),
    Closed,
}

/// Whether a process is still alive, read without a lock (see
/// [`Process::liveness`]).
#[derive(Clone)]
pub struct Liveness(Arc<Mailbox>);

impl Liveness {
    /// False once the process has ended (dropped, ended by the node, or
    /// the node shut down).
    pub fn is_alive(&self) -> bool {
        self.0.alive.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Liveness").field(&self.is_alive()).finish()
    }
}

/// The delivery side of a process, kept in the node's process table.
pub(crate) struct ProcessSlot {
    mailbox: Arc<Mailbox>,
    topics: Mutex<FxHashMap<Arc<str>, TopicRoute>>,
    /// Number of listeners, so the common case (none) takes no lock.
    listeners: AtomicUsize,
    next_listener: AtomicU64,
    overflow: Mutex<Overflow>,
    /// Most messages waiting in `overflow`.
    overflow_cap: usize,
}

impl ProcessSlot {
    /// The node let go of the process: liveness checks fail from now on.
    pub(crate) fn mark_ended(&self) {
        self.mailbox.alive.store(false, Ordering::Release);
    }

    /// The listener of `topic`, if any (no lock when there is none).
    fn listener_for(&self, topic: &str) -> Option<mpsc::Sender<Envelope>> {
        if self.listeners.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.topics.lock().get(topic).map(|(_, tx)| tx.clone())
    }

    fn try_route(&self, envelope: Envelope) -> Routed {
        match self.listener_for(&envelope.topic) {
            Some(tx) => match tx.try_send(envelope) {
                Ok(()) => Routed::Done,
                Err(TrySendError::Full(envelope)) => Routed::Full(envelope),
                Err(TrySendError::Closed(_)) => Routed::Closed,
            },
            None => match self.mailbox.try_put(envelope) {
                Ok(()) => Routed::Done,
                Err(TryPutError::Full(envelope)) => Routed::Full(envelope),
                Err(TryPutError::Closed) => Routed::Closed,
            },
        }
    }

    /// Delivers `envelope` waiting for room until `at`; `Ok(false)` if the
    /// process (or its listener) is gone, `Err` on timeout.
    async fn route_until(&self, at: Instant, envelope: Envelope) -> Result<bool, ()> {
        match self.listener_for(&envelope.topic) {
            Some(tx) => tokio::time::timeout_at(at, tx.send(envelope))
                .await
                .map(|sent| sent.is_ok())
                .map_err(drop),
            None => tokio::time::timeout_at(at, self.mailbox.put(envelope))
                .await
                .map(|put| put.is_ok())
                .map_err(drop),
        }
    }

    /// Puts `envelope` in the mailbox (or its topic's listener), in order
    /// with every earlier message to this process. A full mailbox is waited
    /// on for at most `timeout` by one task per process, so a slow process
    /// delays nobody else and its messages keep their order; past
    /// `overflow_cap` waiting messages, new ones are dropped and counted.
    pub(crate) fn deliver(
        self: &Arc<Self>,
        envelope: Envelope,
        timeout: Duration,
        runtime: &tokio::runtime::Handle,
        deliveries: &Arc<Deliveries>,
    ) {
        let mut overflow = self.overflow.lock();
        if overflow.queue.is_empty() {
            match self.try_route(envelope) {
                Routed::Done => return deliveries.delivered(),
                Routed::Closed => return deliveries.failed(1, "no_process"),
                Routed::Full(envelope) => {
                    overflow.queue.push_back((deadline(timeout), envelope));
                }
            }
        } else if overflow.queue.len() >= self.overflow_cap {
            self.mailbox.dropped.fetch_add(1, Ordering::Relaxed);
            return deliveries.failed(1, "mailbox_overflow");
        } else {
            overflow.queue.push_back((deadline(timeout), envelope));
        }
        if !overflow.draining {
            overflow.draining = true;
            let (slot, deliveries) = (Arc::clone(self), Arc::clone(deliveries));
            runtime.spawn(async move { slot.drain_overflow(&deliveries).await });
        }
    }

    async fn drain_overflow(&self, deliveries: &Deliveries) {
        loop {
            // The message stays queued until sent, so a new delivery cannot
            // overtake it.
            let (at, envelope) = {
                let mut overflow = self.overflow.lock();
                match overflow.queue.front() {
                    Some((at, envelope)) => (*at, envelope.clone()),
                    None => {
                        overflow.draining = false;
                        return;
                    }
                }
            };
            match self.route_until(at, envelope).await {
                Ok(true) => deliveries.delivered(),
                Ok(false) => deliveries.failed(1, "no_process"),
                Err(()) => {
                    self.mailbox.dropped.fetch_add(1, Ordering::Relaxed);
                    deliveries.failed(1, "mailbox_timeout");
                }
            }
            self.overflow.lock().queue.pop_front();
        }
    }
}

impl Drop for ProcessSlot {
    /// The node let go of the process (it ended, or the node shut down):
    /// its receiver drains what is queued, then sees the end.
    fn drop(&mut self) {
        self.mark_ended();
        self.mailbox.close_senders();
    }
}

fn deadline(timeout: Duration) -> Instant {
    let now = Instant::now();
    // A timeout too long to represent waits a year, i.e. in practice until
    // the process drains its mailbox or ends.
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// A lightweight process: a [`Pid`] and a mailbox. Dropping it ends the
/// process: every membership and subscription it holds is cleaned up, on
/// this node and, through the protocol, on every other. The cleanup is
/// asynchronous (queued, applied in batches by each scope; see
/// [`Scope::flush_exits`](crate::Scope::flush_exits)), so dropping never
/// waits for the scope's writer.
pub struct Process {
    pid: Pid,
    mailbox: Arc<Mailbox>,
    /// Weak, so shutting the node down closes the mailbox.
    slot: Weak<ProcessSlot>,
    node: Weak<NodeInner>,
    capacity: usize,
}

impl Process {
    pub(crate) fn new(
        pid: Pid,
        capacity: usize,
        node: Weak<NodeInner>,
    ) -> (Self, Arc<ProcessSlot>) {
        let capacity = capacity.max(1);
        let mailbox = Arc::new(Mailbox::new(capacity));
        let slot = Arc::new(ProcessSlot {
            mailbox: Arc::clone(&mailbox),
            topics: Mutex::new(FxHashMap::default()),
            listeners: AtomicUsize::new(0),
            next_listener: AtomicU64::new(0),
            overflow: Mutex::new(Overflow::default()),
            overflow_cap: capacity.saturating_mul(4),
        });
        let process = Self {
            pid,
            mailbox,
            slot: Arc::downgrade(&slot),
            node,
            capacity,
        };
        (process, slot)
    }

    /// This process's id.
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// A handle that tells, without a lock, whether this process is still
    /// alive: the same answer as [`Node::is_alive`](crate::Node::is_alive)
    /// for its pid, at the cost of one atomic load.
    pub fn liveness(&self) -> Liveness {
        Liveness(Arc::clone(&self.mailbox))
    }

    /// Messages to this process dropped so far because its mailbox stayed
    /// full: past `broadcast_timeout` waiting for room, or beyond the
    /// `4 x mailbox_capacity` messages that may wait at once (a process
    /// that reads slowly learns here what it missed).
    pub fn dropped(&self) -> u64 {
        self.mailbox.dropped.load(Ordering::Relaxed)
    }

    /// The next message not taken by a topic listener; `None` once the node
    /// has shut down.
    pub async fn recv(&mut self) -> Option<Envelope> {
        self.mailbox.take().await
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Option<Envelope> {
        self.mailbox.try_take()
    }

    /// Sends `payload` under `topic` to `to` (see [`Node::send`](crate::Node::send)).
    pub fn send(&self, to: &Pid, topic: &str, payload: Bytes) -> Result<(), Error> {
        let node = self.node.upgrade().ok_or(Error::NodeClosed)?;
        node.send(&self.pid, to, topic, payload)
    }

    /// Sends `value`, encoded with postcard, under `topic` to `to`.
    pub fn send_typed<T: Serialize>(&self, to: &Pid, topic: &str, value: &T) -> Result<(), Error> {
        self.send(to, topic, encode(value)?)
    }

    /// Routes every message under `topic` to the returned listener (seed
    /// 000's `process.listen(topic)`) until it is dropped. Listening again
    /// on the same topic replaces the previous listener. After the node
    /// shut down, the listener is closed at once.
    pub fn listen(&self, topic: &str) -> Listener {
        let (tx, rx) = mpsc::channel(self.capacity);
        let topic: Arc<str> = Arc::from(topic);
        let mut id = 0;
        if let Some(slot) = self.slot.upgrade() {
            id = slot.next_listener.fetch_add(1, Ordering::Relaxed);
            let previous = slot.topics.lock().insert(Arc::clone(&topic), (id, tx));
            if previous.is_none() {
                slot.listeners.fetch_add(1, Ordering::AcqRel);
            }
        }
        Listener {
            topic,
            id,
            rx,
            slot: self.slot.clone(),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.mailbox.alive.store(false, Ordering::Release);
        self.mailbox.close_receiver();
        if let Some(node) = self.node.upgrade() {
            node.process_exited(&self.pid);
        }
    }
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process").field("pid", &self.pid).finish()
    }
}

/// The messages of one topic for one process.
pub struct Listener {
    topic: Arc<str>,
    id: u64,
    rx: mpsc::Receiver<Envelope>,
    slot: Weak<ProcessSlot>,
}

impl Listener {
    /// The topic listened to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The next message under the topic; `None` once the process ended.
    pub async fn recv(&mut self) -> Option<Envelope> {
        self.rx.recv().await
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Option<Envelope> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.upgrade() {
            let mut topics = slot.topics.lock();
            // Only remove our own registration, not a newer listener's.
            if topics
                .get(&self.topic)
                .is_some_and(|(id, _)| *id == self.id)
            {
                topics.remove(&self.topic);
                slot.listeners.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}
