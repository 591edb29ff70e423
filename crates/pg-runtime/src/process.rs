//! Processes: a pid plus a mailbox, and per-topic listeners.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;
use pg_core::Pid;
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::node::NodeInner;

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

/// A topic listener's registration: its id and channel.
type TopicRoute = (u64, mpsc::Sender<Envelope>);

/// A delivery that did not fit: why, and the channel to wait on.
pub(crate) type RouteError = (TrySendError<Envelope>, mpsc::Sender<Envelope>);

/// The delivery side of a process, kept in the node's process table.
pub(crate) struct ProcessSlot {
    mailbox: mpsc::Sender<Envelope>,
    /// Topic -> (listener id, its channel).
    topics: Mutex<FxHashMap<Arc<str>, TopicRoute>>,
    /// Number of listeners, so the common case (none) takes no lock.
    listeners: AtomicUsize,
    next_listener: AtomicU64,
}

impl ProcessSlot {
    /// Puts `envelope` where its topic goes: a listener, or the mailbox.
    /// A full channel hands the envelope back with a sender to wait on.
    pub(crate) fn try_deliver(&self, envelope: Envelope) -> Result<(), RouteError> {
        if self.listeners.load(Ordering::Acquire) > 0 {
            let listener = self
                .topics
                .lock()
                .get(&envelope.topic)
                .map(|(_, tx)| tx.clone());
            if let Some(tx) = listener {
                return tx.try_send(envelope).map_err(|e| (e, tx));
            }
        }
        self.mailbox
            .try_send(envelope)
            .map_err(|e| (e, self.mailbox.clone()))
    }
}

/// A lightweight process: a [`Pid`] and a mailbox. Dropping it ends the
/// process: every membership and subscription it holds is cleaned up, on
/// this node and, through the protocol, on every other.
pub struct Process {
    pid: Pid,
    mailbox: mpsc::Receiver<Envelope>,
    slot: Arc<ProcessSlot>,
    node: Weak<NodeInner>,
    capacity: usize,
}

impl Process {
    pub(crate) fn new(
        pid: Pid,
        capacity: usize,
        node: Weak<NodeInner>,
    ) -> (Self, Arc<ProcessSlot>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let slot = Arc::new(ProcessSlot {
            mailbox: tx,
            topics: Mutex::new(FxHashMap::default()),
            listeners: AtomicUsize::new(0),
            next_listener: AtomicU64::new(0),
        });
        let process = Self {
            pid,
            mailbox: rx,
            slot: Arc::clone(&slot),
            node,
            capacity,
        };
        (process, slot)
    }

    /// This process's id.
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// The next message not taken by a topic listener; `None` once the node
    /// has shut down.
    pub async fn recv(&mut self) -> Option<Envelope> {
        self.mailbox.recv().await
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Option<Envelope> {
        self.mailbox.try_recv().ok()
    }

    /// Routes every message under `topic` to the returned listener (seed
    /// 000's `process.listen(topic)`) until it is dropped. Listening again
    /// on the same topic replaces the previous listener.
    pub fn listen(&self, topic: &str) -> Listener {
        let (tx, rx) = mpsc::channel(self.capacity.max(1));
        let topic: Arc<str> = Arc::from(topic);
        let id = self.slot.next_listener.fetch_add(1, Ordering::Relaxed);
        let previous = self.slot.topics.lock().insert(Arc::clone(&topic), (id, tx));
        if previous.is_none() {
            self.slot.listeners.fetch_add(1, Ordering::AcqRel);
        }
        Listener {
            topic,
            id,
            rx,
            slot: Arc::downgrade(&self.slot),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
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
