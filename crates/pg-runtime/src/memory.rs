//! An in-memory transport: nodes in one process, with switchable
//! partitions and delays. Used by tests, examples, single-process nodes and
//! the simulator's real-time mode.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use pg_core::{NodeId, NodeName};
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::transport::{Inbound, SendError, Transport, Wire};

enum Item {
    Up(NodeId),
    Down(NodeId),
    Message(NodeId, Wire),
}

struct Member {
    id: NodeId,
    queue: mpsc::UnboundedSender<(Instant, Item)>,
}

#[derive(Default)]
struct NetState {
    members: FxHashMap<NodeName, Member>,
    /// Pairs of node names that cannot reach each other (smaller first).
    blocked: FxHashSet<(NodeName, NodeName)>,
    delay: Duration,
}

impl NetState {
    fn connected(&self, a: &NodeName, b: &NodeName) -> bool {
        !self.blocked.contains(&ordered(a, b))
    }

    fn tell(&self, to: &NodeName, item: Item) {
        if let Some(member) = self.members.get(to) {
            // A closed queue means the node's delivery task ended with it.
            let _ = member.queue.send((Instant::now(), item));
        }
    }
}

fn ordered(a: &NodeName, b: &NodeName) -> (NodeName, NodeName) {
    if a <= b {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    }
}

/// A network of nodes in one process. Every node gets its own
/// [`MemoryTransport`]; messages between two nodes arrive in order, after
/// the configured delay; partitions drop traffic and report the peers down
/// on both sides, healing reports them up again.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    state: Arc<Mutex<NetState>>,
    dropped: Arc<AtomicU64>,
}

impl MemoryNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// The transport for node run `node`.
    pub fn transport(&self, node: &NodeId) -> Arc<MemoryTransport> {
        Arc::new(MemoryTransport {
            network: self.clone(),
            me: node.clone(),
        })
    }

    /// Delays every message from now on by `delay` (at most a day).
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().delay = delay.min(Duration::from_secs(24 * 3600));
    }

    /// Cuts every link between `side` and the other nodes.
    pub fn partition(&self, side: &[&NodeName]) {
        let mut state = self.state.lock();
        let names: Vec<NodeName> = state.members.keys().cloned().collect();
        for a in side {
            for b in names.iter().filter(|b| !side.contains(b)) {
                Self::block(&mut state, a, b);
            }
        }
    }

    /// Cuts the link between `a` and `b`.
    pub fn cut(&self, a: &NodeName, b: &NodeName) {
        Self::block(&mut self.state.lock(), a, b);
    }

    fn block(state: &mut NetState, a: &NodeName, b: &NodeName) {
        if a == b || !state.blocked.insert(ordered(a, b)) {
            return;
        }
        let ids = (state.members.get(a), state.members.get(b));
        if let (Some(ma), Some(mb)) = ids {
            let (ia, ib) = (ma.id.clone(), mb.id.clone());
            state.tell(a, Item::Down(ib));
            state.tell(b, Item::Down(ia));
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        let mut state = self.state.lock();
        let blocked: Vec<_> = state.blocked.drain().collect();
        for (a, b) in blocked {
            let ids = (state.members.get(&a), state.members.get(&b));
            if let (Some(ma), Some(mb)) = ids {
                let (ia, ib) = (ma.id.clone(), mb.id.clone());
                state.tell(&a, Item::Up(ib));
                state.tell(&b, Item::Up(ia));
            }
        }
    }

    /// Messages dropped because their destination was unreachable.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// One node's end of a [`MemoryNetwork`].
pub struct MemoryTransport {
    network: MemoryNetwork,
    me: NodeId,
}

impl Transport for MemoryTransport {
    fn attach(&self, inbound: Arc<dyn Inbound>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Item)>();
        let delay = Arc::clone(&self.network.state);
        tokio::spawn(async move {
            while let Some((sent, item)) = rx.recv().await {
                let wait = delay.lock().delay;
                if !wait.is_zero() {
                    tokio::time::sleep_until(sent + wait).await;
                }
                match item {
                    Item::Up(peer) => inbound.node_up(peer),
                    Item::Down(peer) => inbound.node_down(&peer),
                    Item::Message(from, message) => inbound.receive(&from, message),
                }
            }
        });
        let mut state = self.network.state.lock();
        let me = &self.me.name;
        // A newer run of this node replaces the old one.
        if let Some(old) = state.members.remove(me) {
            let peers: Vec<NodeName> = state.members.keys().cloned().collect();
            for peer in peers.iter().filter(|p| state.connected(me, p)) {
                state.tell(peer, Item::Down(old.id.clone()));
            }
        }
        state.members.insert(
            me.clone(),
            Member {
                id: self.me.clone(),
                queue: tx,
            },
        );
        let peers: Vec<NodeId> = state
            .members
            .values()
            .filter(|m| m.id.name != *me && state.connected(me, &m.id.name))
            .map(|m| m.id.clone())
            .collect();
        for peer in peers {
            state.tell(&peer.name, Item::Up(self.me.clone()));
            state.tell(me, Item::Up(peer));
        }
    }

    fn send(&self, to: &NodeId, message: Wire) -> Result<(), SendError> {
        let state = self.network.state.lock();
        let reachable = state
            .members
            .get(&to.name)
            .is_some_and(|m| m.id == *to && state.connected(&self.me.name, &to.name))
            && state
                .members
                .get(&self.me.name)
                .is_some_and(|m| m.id == self.me);
        if !reachable {
            self.network.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(from = %self.me, %to, "memory transport: peer unreachable, message dropped");
            return Err(SendError::Unreachable);
        }
        state.tell(&to.name, Item::Message(self.me.clone(), message));
        Ok(())
    }

    fn detach(&self) {
        let mut state = self.network.state.lock();
        let me = &self.me.name;
        if state.members.get(me).is_none_or(|m| m.id != self.me) {
            return;
        }
        state.members.remove(me);
        let peers: Vec<NodeName> = state.members.keys().cloned().collect();
        for peer in peers.iter().filter(|p| state.connected(me, p)) {
            state.tell(peer, Item::Down(self.me.clone()));
        }
    }
}
