//! A node: its processes, its scopes, and the dispatch of what the
//! transport brings.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use pg_core::{Frame, NodeId, NodeName, Pid};
use rustc_hash::FxHashMap;

use crate::clusters::PeerState;
use crate::config::{NodeOptions, ScopeOptions};
use crate::error::Error;
use crate::process::{Envelope, Process, ProcessTable};
use crate::scope::{Scope, ScopeLinks, ScopeShared};
use crate::transport::{Inbound, Transport, Wire};

/// Counters of a node's message deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryCounters {
    /// Messages put in a local mailbox.
    pub delivered: u64,
    /// Messages dropped: recipient gone, mailbox full past the timeout, or
    /// remote node unreachable.
    pub failed: u64,
}

pub(crate) struct NodeInner {
    id: NodeId,
    options: NodeOptions,
    pub(crate) transport: Arc<dyn Transport>,
    next_serial: AtomicU64,
    processes: Arc<ProcessTable>,
    pub(crate) scopes: RwLock<FxHashMap<Arc<str>, Arc<ScopeShared>>>,
    runtime: tokio::runtime::Handle,
    /// Connected peers, with the scopes each announced.
    pub(crate) peers: Mutex<BTreeMap<NodeName, PeerState>>,
    /// The highest version a closed scope instance reached: a new instance
    /// starts after it, so peers never see a scope's version go back.
    pub(crate) closed_seq: AtomicU64,
    closed: AtomicBool,
    deliveries: Arc<Deliveries>,
}

/// Delivery counters, shared with the tasks that wait on full mailboxes.
#[derive(Default)]
pub(crate) struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl Deliveries {
    pub(crate) fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("pg_deliveries_total").increment(1);
    }

    pub(crate) fn failed(&self, n: u64, reason: &'static str) {
        self.failed.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("pg_deliveries_failed_total", "reason" => reason).increment(n);
        tracing::debug!(n, reason, "delivery failed");
    }
}

/// A running node: hosts processes and scopes, and reaches other nodes
/// through its [`Transport`]. Cheap to clone; the node stops at
/// [`shutdown`](Self::shutdown) or when the last handle is dropped.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<NodeInner>,
}

impl Node {
    /// Starts node `name` with an incarnation taken from the wall clock (so
    /// a restart is a newer run). Must run inside a tokio runtime.
    pub fn start(
        name: &str,
        transport: Arc<dyn Transport>,
        options: NodeOptions,
    ) -> Result<Node, Error> {
        let micros = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_micros() as u64;
        let id =
            NodeId::parse_name(name, micros).map_err(|e| Error::InvalidNodeName(e.to_string()))?;
        Self::start_as(id, transport, options)
    }

    /// Starts the node run `id` (tests and simulators choose incarnations).
    pub fn start_as(
        id: NodeId,
        transport: Arc<dyn Transport>,
        options: NodeOptions,
    ) -> Result<Node, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        // Every local pid carries this name: interned, its clones are
        // copies (see `intern.rs`).
        let id = NodeId::new(crate::intern::own_node_name(&id.name), id.incarnation);
        let inner = Arc::new(NodeInner {
            runtime,
            id,
            options,
            transport: Arc::clone(&transport),
            next_serial: AtomicU64::new(1),
            processes: Arc::new(RwLock::new(FxHashMap::default())),
            scopes: RwLock::new(FxHashMap::default()),
            peers: Mutex::new(BTreeMap::new()),
            closed_seq: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            deliveries: Arc::default(),
        });
        transport.attach(Arc::new(InboundAdapter(Arc::downgrade(&inner))));
        Ok(Node { inner })
    }

    /// This node run.
    pub fn id(&self) -> &NodeId {
        &self.inner.id
    }

    /// A new process on this node.
    pub fn spawn(&self) -> Process {
        let serial = self.inner.next_serial.fetch_add(1, Ordering::Relaxed);
        // Invariant: serials count up from 1 by one per spawn and would need
        // 2^48 spawns to leave the valid range.
        let pid = self.inner.id.pid(serial).expect("process serial in range");
        let (process, slot) = Process::new(
            pid,
            self.inner.options.mailbox_capacity,
            Arc::downgrade(&self.inner),
        );
        self.inner.processes.write().insert(serial, slot);
        process
    }

    /// Spawns a process and runs `body` with it on a task; when the task
    /// ends (or panics), the process ends and is cleaned up.
    pub fn spawn_task<F, Fut>(&self, body: F) -> tokio::task::JoinHandle<Fut::Output>
    where
        F: FnOnce(Process) -> Fut,
        Fut: std::future::Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let process = self.spawn();
        self.inner.runtime.spawn(body(process))
    }

    /// Opens scope `id` (or returns it if already open with the same
    /// options): [`connect_scope`](Self::connect_scope) without a lease. It
    /// meets the peers that run it at once.
    pub fn open_scope(&self, id: &str, options: ScopeOptions) -> Result<Scope, Error> {
        self.connect_scope(id, options, None)
    }

    /// Waits until every scope of this node has cleaned up after every
    /// process that ended before the call (see [`Scope::flush_exits`]).
    pub async fn flush_exits(&self) {
        let scopes: Vec<Scope> = self
            .inner
            .scopes()
            .into_iter()
            .map(Scope::from_shared)
            .collect();
        for scope in scopes {
            scope.flush_exits().await;
        }
    }

    /// The open scope `id`.
    pub fn scope(&self, id: &str) -> Result<Scope, Error> {
        self.inner
            .scopes
            .read()
            .get(id)
            .map(|s| Scope::from_shared(Arc::clone(s)))
            .ok_or_else(|| Error::ScopeNotFound(id.to_owned()))
    }

    /// Sends `payload` under `topic` from `from` to process `to`, on this
    /// node or any other. Messages from one sender to one receiver arrive in
    /// the order sent. A message to a process that is dead or unknown, or
    /// whose node is down, is dropped and counted (never an error for the
    /// sender); a full mailbox is waited on for at most `delivery_timeout`.
    /// Errors only for bad input: an empty topic, an oversized payload.
    pub fn send(&self, from: &Pid, to: &Pid, topic: &str, payload: Bytes) -> Result<(), Error> {
        self.inner.send(from, to, topic, payload)
    }

    /// Whether [`shutdown`](Self::shutdown) was called (or the node
    /// stopped).
    pub fn is_shut_down(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Whether `pid` is a live process of this node.
    pub fn is_alive(&self, pid: &Pid) -> bool {
        *pid.node() == self.inner.id && self.inner.processes.read().contains_key(&pid.serial())
    }

    /// The peers currently connected.
    pub fn peers(&self) -> Vec<NodeId> {
        self.inner
            .peers
            .lock()
            .values()
            .map(|p| p.node.clone())
            .collect()
    }

    /// Delivery counters.
    pub fn deliveries(&self) -> DeliveryCounters {
        DeliveryCounters {
            delivered: self.inner.deliveries.delivered.load(Ordering::Relaxed),
            failed: self.inner.deliveries.failed.load(Ordering::Relaxed),
        }
    }

    /// Stops the node gracefully: peers are told at once (and drop its
    /// members), subscriptions end after their queued events, mailboxes
    /// close.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.inner.id).finish()
    }
}

impl NodeInner {
    pub(crate) fn id(&self) -> &NodeId {
        &self.id
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// What a new scope needs of its node.
    pub(crate) fn links(self: &Arc<Self>) -> ScopeLinks {
        ScopeLinks {
            node: Arc::downgrade(self),
            transport: Arc::clone(&self.transport),
            processes: Arc::clone(&self.processes),
            runtime: self.runtime.clone(),
        }
    }

    pub(crate) fn spawn_task(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(task);
    }

    fn scopes(&self) -> Vec<Arc<ScopeShared>> {
        self.scopes.read().values().cloned().collect()
    }

    pub(crate) fn process_exited(&self, pid: &Pid) {
        if let Some(slot) = self.processes.write().remove(&pid.serial()) {
            slot.mark_ended();
        }
        // Only queues the cleanup (no writer lock): safe under this lock.
        for scope in self.scopes.read().values() {
            scope.process_exited(pid);
        }
    }

    /// Puts a copy of `envelope` (the payload is shared) in the mailbox of
    /// each of `serials`, looking the processes up under one read lock. A
    /// full mailbox is waited on for at most `timeout`, by that process's
    /// own overflow task, so one slow recipient delays nobody else.
    pub(crate) fn deliver_local_many(
        &self,
        serials: impl IntoIterator<Item = u64>,
        envelope: &Envelope,
        timeout: Duration,
    ) {
        let processes = self.processes.read();
        for serial in serials {
            match processes.get(&serial) {
                Some(slot) => {
                    slot.deliver(envelope.clone(), timeout, &self.runtime, &self.deliveries)
                }
                None => self.deliveries.failed(1, "no_process"),
            }
        }
    }

    pub(crate) fn send(
        &self,
        from: &Pid,
        to: &Pid,
        topic: &str,
        payload: Bytes,
    ) -> Result<(), Error> {
        self.check_payload(topic, &payload)?;
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::NodeClosed);
        }
        let topic: Arc<str> = Arc::from(topic);
        if *to.node() == self.id {
            let envelope = Envelope {
                from: from.clone(),
                topic,
                payload,
            };
            self.deliver_local_many([to.serial()], &envelope, self.options.delivery_timeout);
            return Ok(());
        }
        if to.node().name == self.id.name {
            // A pid of an earlier run of this node: that process is gone.
            self.deliveries.failed(1, "no_process");
            return Ok(());
        }
        let message = Wire::Deliver {
            scope: None,
            from: from.clone(),
            to: vec![to.serial()],
            topic,
            payload,
        };
        if self.transport.send(to.node(), message).is_err() {
            self.deliveries.failed(1, "unreachable");
        }
        Ok(())
    }

    /// Refuses what no sender may send: an empty topic, an oversized
    /// payload.
    pub(crate) fn check_payload(&self, topic: &str, payload: &Bytes) -> Result<(), Error> {
        if topic.is_empty() {
            return Err(Error::EmptyTopic);
        }
        let max = self.options.max_payload_size;
        if payload.len() > max {
            return Err(Error::PayloadTooLarge {
                size: payload.len(),
                max,
            });
        }
        Ok(())
    }

    pub(crate) fn count_failed_deliveries(&self, n: u64, reason: &'static str) {
        self.deliveries.failed(n, reason);
    }

    fn shutdown(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.transport.detach();
        for scope in self.scopes() {
            scope.close();
        }
        let mut processes = self.processes.write();
        for slot in processes.values() {
            slot.mark_ended();
        }
        processes.clear();
    }
}

impl Drop for NodeInner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The transport's way in: holds the node weakly, so a transport never
/// keeps a stopped node alive.
struct InboundAdapter(Weak<NodeInner>);

impl Inbound for InboundAdapter {
    fn node_up(&self, peer: NodeId) {
        let Some(node) = self.0.upgrade() else { return };
        let replaced = {
            let mut peers = node.peers.lock();
            if peers.get(&peer.name).is_some_and(|p| p.node == peer) {
                None // the same run again: keep what it announced
            } else {
                peers.insert(peer.name.clone(), PeerState::new(peer.clone()))
            }
        };
        // An older run replaced without a down: its parts go now. The new
        // run's scopes meet this node's when it announces them.
        if let Some(old) = replaced {
            for scope in node.scopes() {
                scope.node_down(&old.node);
            }
        }
        node.announce_scopes_to(&peer);
    }

    fn node_down(&self, peer: &NodeId) {
        let Some(node) = self.0.upgrade() else { return };
        {
            let mut peers = node.peers.lock();
            if peers.get(&peer.name).is_some_and(|p| p.node == *peer) {
                peers.remove(&peer.name);
            }
        }
        for scope in node.scopes() {
            scope.node_down(peer);
        }
    }

    fn link_reset(&self, peer: &NodeId) {
        let Some(node) = self.0.upgrade() else { return };
        // Messages in flight may be lost, announcements too: say again
        // which scopes run here, before the scopes resynchronise.
        node.announce_scopes_to(peer);
        for scope in node.scopes() {
            scope.link_reset(peer);
        }
    }

    fn receive(&self, from: &NodeId, message: Wire) {
        let Some(node) = self.0.upgrade() else { return };
        match message {
            Wire::Scope { scope, frame } => {
                let target = node.scopes.read().get(&scope).cloned();
                match target {
                    // Frames arrive shared (one encode for every peer on
                    // the sending side); one just decoded is this
                    // receiver's alone, so the core takes it without a
                    // copy of every op (a copy only if someone else still
                    // holds it, as an in-process transport may).
                    Some(target) => {
                        let frame = Arc::try_unwrap(frame).unwrap_or_else(|f| Frame::clone(&f));
                        target.frame(from, frame)
                    }
                    None => {
                        metrics::counter!("pg_frames_unknown_scope_total").increment(1);
                        tracing::debug!(%from, %scope, "frame for a scope this node does not run");
                    }
                }
            }
            Wire::Scopes { running } => node.on_scopes(from, running),
            Wire::Deliver {
                scope,
                from: sender,
                to,
                topic,
                payload,
            } => {
                let scope = scope.and_then(|s| node.scopes.read().get(&s).cloned());
                let timeout = match &scope {
                    Some(s) => {
                        s.saw_broadcast();
                        s.options().broadcast_timeout
                    }
                    None => node.options.delivery_timeout,
                };
                let envelope = Envelope {
                    from: sender,
                    topic,
                    payload,
                };
                node.deliver_local_many(to, &envelope, timeout);
            }
        }
    }
}
