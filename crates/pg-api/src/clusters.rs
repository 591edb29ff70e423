//! Named clusters from a process: connect this node to a scope at run
//! time (optionally on a lease), disconnect from scopes, ask whether it is
//! connected and which nodes run a scope. Each call is checked as the
//! process's principal (`pg.connect`, `pg.disconnect`, `pg.nodes`, on the
//! scope id); see docs/semantics.md#named-clusters.

use std::time::Duration;

use pg_core::NodeId;

use crate::error::PgError;
use crate::instance::Groups;
use crate::permission::Permission;
use crate::process::Process;

impl Process {
    fn scope_id<'a>(&self, id: &'a str, permission: Permission) -> Result<&'a str, PgError> {
        if id.is_empty() {
            return Err(PgError::invalid("scope id is empty"));
        }
        self.node().check(self.principal(), permission, id)?;
        Ok(id)
    }

    /// Connects this node to scope `id` (`pg.connect`), with the options
    /// the configuration gives it (an entry with `auto_start: false` is
    /// connected here) or the defaults: the nodes running it exchange its
    /// state with this one, and [`open`](Self::open) works on it. A scope
    /// already connected is a cheap no-op.
    pub fn connect(&self, id: &str) -> Result<(), PgError> {
        self.connect_inner(id, None)
    }

    /// As [`connect`](Self::connect), on a lease: a scope this call
    /// connects stays connected at least `ttl`, then disconnects as soon
    /// as no process of this node is a member of one of its groups and no
    /// subscription is open on it. Connecting again does not refresh the
    /// lease (nor add one to a scope connected without).
    pub fn connect_leased(&self, id: &str, ttl: Duration) -> Result<(), PgError> {
        if ttl.is_zero() {
            return Err(PgError::invalid("a lease must last longer than zero"));
        }
        self.connect_inner(id, Some(ttl))
    }

    fn connect_inner(&self, id: &str, ttl: Option<Duration>) -> Result<(), PgError> {
        let id = self.scope_id(id, Permission::Connect)?;
        let node = self.node();
        node.runtime()
            .connect_scope(id, node.configured_options(id), ttl)
            .map(drop)
            .map_err(Into::into)
    }

    /// Disconnects this node from one scope or several (`pg.disconnect` on
    /// each, all checked first): each closes here (its subscriptions end,
    /// its instances fail with `Closed`, this node's memberships in it go)
    /// and the other nodes see this node's part of it leave, with `left`
    /// events (reason `node_down`). Returns how many were connected.
    pub fn disconnect(&self, ids: impl Groups) -> Result<usize, PgError> {
        let ids = ids.names();
        if ids.is_empty() {
            return Err(PgError::invalid("no scope named"));
        }
        for id in &ids {
            self.scope_id(id, Permission::Disconnect)?;
        }
        Ok(ids
            .into_iter()
            .filter(|id| self.node().runtime().disconnect_scope(id))
            .count())
    }

    /// Whether this node is connected to scope `id` (`pg.nodes`).
    pub fn is_connected(&self, id: &str) -> Result<bool, PgError> {
        let id = self.scope_id(id, Permission::Nodes)?;
        Ok(self.node().runtime().is_connected(id))
    }

    /// The nodes running scope `id` that this node is connected to, this
    /// node first if it runs it (`pg.nodes`).
    pub fn nodes(&self, id: &str) -> Result<Vec<NodeId>, PgError> {
        let id = self.scope_id(id, Permission::Nodes)?;
        Ok(self.node().runtime().scope_nodes(id))
    }
}
