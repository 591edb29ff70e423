//! Processes as users see them: a pid, a mailbox, and a principal.

use std::sync::Arc;

use bytes::Bytes;
use pg_core::Pid;
use pg_runtime::{Envelope, Listener};
use serde::Serialize;

use crate::error::PgError;
use crate::node::Node;

/// A process: a pid, a mailbox, and the principal its calls are checked
/// as. Dropping it ends it: every membership, subscription and scope
/// instance it holds goes, on every node, shortly after (the cleanup is
/// queued and applied in batches; [`Node::flush_exits`] awaits it).
pub struct Process {
    inner: pg_runtime::Process,
    principal: Arc<str>,
    node: Node,
}

impl Process {
    pub(crate) fn new(inner: pg_runtime::Process, principal: &str, node: Node) -> Self {
        Self {
            inner,
            principal: Arc::from(principal),
            node,
        }
    }

    /// The process id.
    pub fn pid(&self) -> &Pid {
        self.inner.pid()
    }

    /// Messages to this process dropped because its mailbox stayed full
    /// (past `broadcast_timeout`, or beyond `4 x mailbox_capacity` waiting
    /// at once).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped()
    }

    /// Whether this process is alive, checked with one atomic load.
    pub(crate) fn liveness(&self) -> pg_runtime::Liveness {
        self.inner.liveness()
    }

    /// The principal permission checks see.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// The node it runs on.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Opens scope `id` for this process (permission `pg.open`; see
    /// docs/semantics.md).
    pub fn open(&self, id: &str) -> Result<crate::Instance, PgError> {
        self.node.open(self, id)
    }

    /// The next message (broadcast or send) not taken by a listener.
    pub async fn recv(&mut self) -> Option<Envelope> {
        self.inner.recv().await
    }

    /// The next message, if one is waiting.
    pub fn try_recv(&mut self) -> Option<Envelope> {
        self.inner.try_recv()
    }

    /// Routes `topic` to its own channel instead of the mailbox.
    pub fn listen(&self, topic: &str) -> Listener {
        self.inner.listen(topic)
    }

    /// Sends to any process of the cluster.
    pub fn send(&self, to: &Pid, topic: &str, payload: impl Into<Bytes>) -> Result<(), PgError> {
        self.inner
            .send(to, topic, payload.into())
            .map_err(Into::into)
    }

    /// Sends a value encoded with postcard.
    pub fn send_typed<T: Serialize>(
        &self,
        to: &Pid,
        topic: &str,
        value: &T,
    ) -> Result<(), PgError> {
        self.inner.send_typed(to, topic, value).map_err(Into::into)
    }
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("pid", self.pid())
            .field("principal", &self.principal)
            .finish()
    }
}
