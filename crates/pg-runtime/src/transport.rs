//! The network boundary: everything the runtime knows of other nodes.

use std::sync::Arc;

use bytes::Bytes;
use pg_core::{Frame, NodeId, Pid};
use thiserror::Error;

/// A message between the runtimes of two nodes.
#[derive(Debug, Clone)]
pub enum Wire {
    /// A protocol frame for one scope (membership traffic: ordered per
    /// origin, and never stuck behind a payload).
    Scope {
        /// The scope id.
        scope: Arc<str>,
        /// The frame, shared by every peer it goes to.
        frame: Arc<Frame>,
    },
    /// The scopes the sending node runs, whole: sent to a peer when its
    /// link comes up or is reset, and to every peer whenever this node
    /// connects to or disconnects from a scope. Ordered with scope frames
    /// (the same channel), so a peer learns that a scope runs here before
    /// its first frame, and that it stopped after its last. A node sends a
    /// scope's traffic only to the peers that announced that scope.
    Scopes {
        /// Scope ids: a node runs at most [`MAX_ANNOUNCED_SCOPES`] (pg-net
        /// refuses a longer list; a receiver takes that many of any other).
        running: Vec<Arc<str>>,
    },
    /// A payload for some processes of the receiving node: one per remote
    /// node per broadcast, or one per send.
    Deliver {
        /// The scope of a broadcast (its `broadcast_timeout` and health
        /// apply); `None` for a direct send.
        scope: Option<Arc<str>>,
        /// The sending process.
        from: Pid,
        /// Serials of the receiving processes on that node run.
        to: Vec<u64>,
        /// The topic.
        topic: Arc<str>,
        /// The payload, shared, never copied per recipient.
        payload: Bytes,
    },
}

/// Most scopes a peer's announcement is taken for; the rest are ignored
/// (and counted). A node runs a handful of scopes in practice.
pub const MAX_ANNOUNCED_SCOPES: usize = 1024;

/// Why a message was not taken by the transport. The transport has logged
/// and counted it; the runtime counts it as a failed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SendError {
    /// No connection to that node run (down, partitioned, unknown, or an
    /// older or newer run of that name).
    #[error("peer unreachable")]
    Unreachable,
    /// The link to that peer is full.
    #[error("link to peer overloaded")]
    Overloaded,
    /// The message is larger than the transport carries.
    #[error("message too large for the transport")]
    TooLarge,
}

/// What the transport calls into: the node's runtime. The transport must
/// report a peer up before it delivers any message from it, and deliver the
/// messages of one peer in the order they were sent.
pub trait Inbound: Send + Sync + 'static {
    /// A connection to `peer` is up.
    fn node_up(&self, peer: NodeId);
    /// The connection to `peer` is gone.
    fn node_down(&self, peer: &NodeId);
    /// The connection to `peer` was replaced by another without the peer
    /// going down; messages in flight on the old one may be lost, so the
    /// scopes re-send their state.
    fn link_reset(&self, peer: &NodeId);
    /// A message from `from`.
    fn receive(&self, from: &NodeId, message: Wire);
}

/// A way to reach other nodes: pg-net over QUIC, or
/// [`MemoryNetwork`](crate::MemoryNetwork) in one process.
pub trait Transport: Send + Sync + 'static {
    /// Starts delivering to `inbound`. Called once, by [`Node::start`](crate::Node::start).
    fn attach(&self, inbound: Arc<dyn Inbound>);
    /// Queues `message` for `to` without blocking. Called under a scope's
    /// writer lock (so frames leave in version order): it must not block,
    /// and must not call back into [`Inbound`] before it returns.
    fn send(&self, to: &NodeId, message: Wire) -> Result<(), SendError>;
    /// Leaves the network: peers are told this node is down at once
    /// (graceful shutdown).
    fn detach(&self);
    /// Closes the link to `peer`, which broke the protocol (`reason` says
    /// how); the peer is then reported down as for any lost link. Called
    /// under a scope's writer lock: it must not block or call back into
    /// [`Inbound`]. The default does nothing (a transport without links).
    fn disconnect(&self, peer: &NodeId, reason: &str) {
        let _ = (peer, reason);
    }
}
