//! Named clusters: which peers run which scope, and connecting to and
//! disconnecting from scopes at run time, optionally on a lease.
//!
//! Every node announces the scopes it runs to each peer (a whole list, on
//! the ordered membership channel: when the link comes up or is reset, and
//! to every peer whenever the list changes). A scope treats as its peers
//! exactly the connected nodes that announced it, so only they receive
//! its traffic, and a node that disconnects from a scope is seen by the
//! others as that scope's part going away, with `left` events.

use std::sync::Arc;
use std::time::Duration;

use pg_core::NodeId;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::config::ScopeOptions;
use crate::error::Error;
use crate::node::{Node, NodeInner};
use crate::scope::{Scope, ScopeShared};
use crate::transport::{MAX_ANNOUNCED_SCOPES, SendError, Wire};

/// Longest scope id, in bytes.
pub const MAX_SCOPE_ID_LEN: usize = 255;

/// A connected peer and the scopes it announced.
#[derive(Debug)]
pub(crate) struct PeerState {
    pub(crate) node: NodeId,
    pub(crate) scopes: FxHashSet<Arc<str>>,
}

impl PeerState {
    pub(crate) fn new(node: NodeId) -> Self {
        Self {
            node,
            scopes: FxHashSet::default(),
        }
    }
}

type ScopeMap = FxHashMap<Arc<str>, Arc<ScopeShared>>;

fn running(scopes: &ScopeMap) -> Vec<Arc<str>> {
    scopes.keys().cloned().collect()
}

impl NodeInner {
    /// Tells `peer` which scopes this node runs. Called under the scopes'
    /// lock, so lists go out in the order they changed.
    pub(crate) fn announce_to(&self, peer: &NodeId, running: Vec<Arc<str>>) {
        match self.transport.send(peer, Wire::Scopes { running }) {
            // A peer that is unreachable learns it when its link comes up.
            Ok(()) | Err(SendError::Unreachable) => {}
            // A lost announcement would leave the peer wrong about this
            // node's scopes for good: reset the link, whose coming back
            // announces again.
            Err(e) => {
                tracing::warn!(%peer, error = %e, "scope announcement not sent; resetting the link");
                self.transport
                    .disconnect(peer, "scope announcement not sent");
            }
        }
    }

    /// Tells every peer which scopes this node runs. Called under the
    /// scopes' write lock, so lists go out in the order they changed.
    fn announce_all(&self, scopes: &ScopeMap) {
        let running = running(scopes);
        let peers: Vec<NodeId> = self.peers.lock().values().map(|p| p.node.clone()).collect();
        for peer in peers {
            self.announce_to(&peer, running.clone());
        }
    }

    /// Announces this node's scopes to a peer whose link came up or was
    /// reset (a reset may have lost an earlier announcement).
    pub(crate) fn announce_scopes_to(&self, peer: &NodeId) {
        // Sent under the lock: a list read before a connect or disconnect
        // must not overtake the one that change sends.
        let scopes = self.scopes.read();
        self.announce_to(peer, running(&scopes));
    }

    /// A peer's announcement: the scopes it now runs. Scopes it started
    /// running here meet it; scopes it stopped running see it go.
    pub(crate) fn on_scopes(&self, from: &NodeId, running: Vec<Arc<str>>) {
        if running.len() > MAX_ANNOUNCED_SCOPES {
            metrics::counter!("pg_scopes_announced_refused_total").increment(1);
            tracing::warn!(%from, scopes = running.len(), max = MAX_ANNOUNCED_SCOPES,
                "peer announced too many scopes; taking the first ones");
        }
        let now: FxHashSet<Arc<str>> = running.into_iter().take(MAX_ANNOUNCED_SCOPES).collect();
        let (started, stopped) = {
            let mut peers = self.peers.lock();
            let Some(state) = peers.get_mut(&from.name).filter(|p| p.node == *from) else {
                return; // an older run, or a peer already down
            };
            let started: Vec<Arc<str>> = now.difference(&state.scopes).cloned().collect();
            let stopped: Vec<Arc<str>> = state.scopes.difference(&now).cloned().collect();
            state.scopes = now;
            (started, stopped)
        };
        // Looked up after the peer's list changed: a scope opened here
        // meanwhile either saw the new list or is found now.
        for id in started {
            if let Some(scope) = self.scopes.read().get(&id).cloned() {
                scope.node_up(from.clone());
            }
        }
        for id in stopped {
            if let Some(scope) = self.scopes.read().get(&id).cloned() {
                scope.node_down(from);
            }
        }
    }

    /// The connected peers that run scope `id`.
    pub(crate) fn peers_running(&self, id: &str) -> Vec<NodeId> {
        self.peers
            .lock()
            .values()
            .filter(|p| p.scopes.contains(id))
            .map(|p| p.node.clone())
            .collect()
    }

    /// Opens scope `id`, or returns the open one (with the same options,
    /// or a conflict) and `false`.
    pub(crate) fn connect(
        self: &Arc<Self>,
        id: &str,
        options: ScopeOptions,
    ) -> Result<(Arc<ScopeShared>, bool), Error> {
        if id.is_empty() {
            return Err(Error::EmptyScopeId);
        }
        if id.len() > MAX_SCOPE_ID_LEN {
            return Err(Error::ScopeIdTooLong {
                len: id.len(),
                max: MAX_SCOPE_ID_LEN,
            });
        }
        if self.is_closed() {
            return Err(Error::NodeClosed);
        }
        let mut scopes = self.scopes.write();
        if let Some(existing) = scopes.get(id) {
            // The same options, whatever seed was drawn for the first open.
            let mut want = options;
            want.core.rng_seed = existing.options().core.rng_seed;
            if *existing.options() != want {
                return Err(Error::ScopeConflict(id.to_owned()));
            }
            return Ok((Arc::clone(existing), false));
        }
        if scopes.len() >= MAX_ANNOUNCED_SCOPES {
            return Err(Error::TooManyScopes {
                max: MAX_ANNOUNCED_SCOPES,
            });
        }
        let id: Arc<str> = Arc::from(id);
        // Announced before the scope exists, so that its first frame to
        // any peer follows the announcement on the ordered channel.
        let mut list = running(&scopes);
        list.push(Arc::clone(&id));
        let peers: Vec<NodeId> = self.peers.lock().values().map(|p| p.node.clone()).collect();
        for peer in &peers {
            self.announce_to(peer, list.clone());
        }
        let shared = ScopeShared::new(
            Arc::clone(&id),
            self.id().clone(),
            options,
            self.links(),
            &self.peers_running(&id),
            self.closed_seq.load(std::sync::atomic::Ordering::Acquire),
        );
        scopes.insert(id, Arc::clone(&shared));
        Ok((shared, true))
    }

    /// Closes scope `id` here and tells every peer; returns whether it
    /// was open.
    pub(crate) fn disconnect(&self, id: &str) -> bool {
        let mut scopes = self.scopes.write();
        let Some(scope) = scopes.remove(id) else {
            return false;
        };
        self.forget_scope(scopes, &scope);
        tracing::info!(scope = id, "disconnected from scope");
        true
    }

    /// Disconnects from `leased` if it is still the instance of its id and
    /// has no local interest, checked and closed atomically; says whether
    /// it did (or the instance is gone anyway).
    fn disconnect_if_idle(&self, leased: &Arc<ScopeShared>) -> bool {
        let mut scopes = self.scopes.write();
        let current = scopes.get(leased.id()).cloned();
        if !current.is_some_and(|c| Arc::ptr_eq(&c, leased)) {
            return true;
        }
        if !leased.close_if_idle() {
            return false;
        }
        scopes.remove(leased.id());
        self.forget_scope(scopes, leased);
        tracing::info!(
            scope = leased.id(),
            "scope lease lapsed with no local member or subscription"
        );
        true
    }

    /// Tells every peer the scope is gone, and closes it; a later instance
    /// of any scope starts its versions after this one's.
    fn forget_scope(
        &self,
        scopes: parking_lot::RwLockWriteGuard<'_, ScopeMap>,
        scope: &Arc<ScopeShared>,
    ) {
        self.announce_all(&scopes);
        self.closed_seq
            .fetch_max(scope.own_seq(), std::sync::atomic::Ordering::AcqRel);
        drop(scopes);
        scope.close();
    }
}

impl Node {
    /// Connects this node to scope `id` (opens it, and tells every peer,
    /// so the peers running it exchange its state with this node); returns
    /// the scope. Connecting to a scope already open is a cheap no-op
    /// (with the same options; other options are a
    /// [`ScopeConflict`](Error::ScopeConflict)).
    ///
    /// With a `lease`, a scope this call opens stays connected at least
    /// that long; then it disconnects as soon as no process of this node
    /// is a member of one of its groups and no subscription is open on it
    /// (checked at the lease's end, then every second, or every `lease`
    /// if shorter). A repeated connect does not refresh a lease, nor add
    /// one to a scope opened without.
    pub fn connect_scope(
        &self,
        id: &str,
        options: ScopeOptions,
        lease: Option<Duration>,
    ) -> Result<Scope, Error> {
        let (shared, opened) = self.inner.connect(id, options)?;
        if opened && let Some(ttl) = lease {
            self.spawn_lease(&shared, ttl);
        }
        Ok(Scope::from_shared(shared))
    }

    /// Disconnects this node from scope `id`: the scope closes here (its
    /// subscriptions end, calls on it fail with `Closed`, and this node's
    /// memberships in it are gone), and every peer sees this node's part
    /// of it leave, with `left` events (reason `node_down`). Returns
    /// whether it was connected.
    pub fn disconnect_scope(&self, id: &str) -> bool {
        self.inner.disconnect(id)
    }

    /// Whether this node is connected to scope `id`.
    pub fn is_connected(&self, id: &str) -> bool {
        self.inner.scopes.read().contains_key(id)
    }

    /// The nodes running scope `id` that this node is connected to, this
    /// node first if it runs it.
    pub fn scope_nodes(&self, id: &str) -> Vec<NodeId> {
        let mut nodes = Vec::new();
        if self.is_connected(id) {
            nodes.push(self.inner.id().clone());
        }
        nodes.extend(self.inner.peers_running(id));
        nodes
    }

    fn spawn_lease(&self, shared: &Arc<ScopeShared>, ttl: Duration) {
        let node = Arc::downgrade(&self.inner);
        let leased = Arc::downgrade(shared);
        let recheck = ttl.clamp(Duration::from_millis(10), Duration::from_secs(1));
        self.inner.spawn_task(async move {
            tokio::time::sleep(ttl).await;
            loop {
                let (Some(node), Some(leased)) = (node.upgrade(), leased.upgrade()) else {
                    return;
                };
                // Done when disconnected meanwhile, connected again anew
                // (that connection has its own lease, or none), or idle.
                if node.disconnect_if_idle(&leased) {
                    return;
                }
                drop((node, leased));
                tokio::time::sleep(recheck).await;
            }
        });
    }
}
