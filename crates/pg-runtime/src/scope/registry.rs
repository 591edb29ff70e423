//! The registry on a scope: registrations decided by the scope's writer,
//! reads from a published view (never waiting for the writer), registry
//! events to subscribers with an atomic snapshot, and losing processes
//! told on a reserved topic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::RwLock;
use pg_core::{GroupName, Meta, Pid, RegistryEvent};
use serde::{Deserialize, Serialize};

use super::{CoreState, Scope, ScopeShared};
use crate::error::Error;
use crate::process::Envelope;
use crate::subscription::{GroupFilter, Pattern, SubShared, Subscription};

/// The topic on which a process that lost a registration conflict is told,
/// with a [`RegistryConflict`] payload.
pub const REGISTRY_CONFLICT_TOPIC: &str = "pg.registry.conflict";

/// What a process that lost a key is told (on
/// [`REGISTRY_CONFLICT_TOPIC`], decode with
/// [`Envelope::decode`](crate::Envelope::decode)); sent once per lost
/// registration, by the process's own node, which has already removed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryConflict {
    /// The key.
    pub key: String,
    /// The metadata the losing registration had.
    pub meta: Option<Vec<u8>>,
    /// The process that holds the key.
    pub winner: Pid,
}

/// A key's holder and metadata, as readers see it.
pub type Registration = (GroupName, Pid, Option<Meta>);

/// The registry as readers see it: replaced key by key by the writer in
/// the step that changes it, before the caller returns.
#[derive(Default)]
pub(crate) struct RegistryView {
    keys: RwLock<BTreeMap<GroupName, (Pid, Option<Meta>)>>,
}

impl ScopeShared {
    /// Publishes the registry changes of a step, hands the events to
    /// subscribers (after readers can see them), and tells this node's
    /// losing processes.
    pub(super) fn drain_registry(&self, core: &mut CoreState) {
        let mut events = Vec::new();
        while let Some(event) = core.scope.poll_registry_event() {
            events.push(event);
        }
        if !events.is_empty() {
            let mut keys = self.registry.keys.write();
            for event in &events {
                match core.scope.lookup(event.key.as_str()) {
                    Some(holder) => keys.insert(event.key.clone(), holder),
                    None => keys.remove(event.key.as_str()),
                };
            }
            drop(keys);
            for event in events {
                self.deliver(&mut core.reg_subscribers, event);
            }
        }
        while let Some(lost) = core.scope.poll_conflict() {
            tracing::info!(scope = %self.id, key = %lost.key.as_str(), loser = %lost.pid, winner = %lost.winner, "registration lost a conflict");
            let notice = RegistryConflict {
                key: lost.key.as_str().to_owned(),
                meta: lost.meta.map(|m| m.as_bytes().to_vec()),
                winner: lost.winner.clone(),
            };
            let payload = match crate::process::encode(&notice) {
                Ok(payload) => payload,
                Err(e) => {
                    tracing::warn!(scope = %self.id, error = %e, "conflict notice not encoded");
                    continue;
                }
            };
            let envelope = Envelope {
                from: lost.winner,
                topic: Arc::from(REGISTRY_CONFLICT_TOPIC),
                payload,
            };
            // Delivered outside the writer's lock: holding the node there
            // could make this step the one that drops it, and closing the
            // node takes this very lock.
            let node = self.links.node.clone();
            let timeout = self.options.broadcast_timeout;
            let serial = lost.pid.serial();
            self.links.runtime.spawn(async move {
                if let Some(node) = node.upgrade() {
                    node.deliver_local_many([serial], &envelope, timeout);
                }
            });
        }
    }
}

impl Scope {
    /// `pid` (a process of this node) registers `key` with `meta`: `Ok`, or
    /// [`Taken`](pg_core::CommandError::Taken) naming the holder.
    /// Re-registering its own key updates the metadata in place. Decided
    /// here from what this node knows, then replicated: two nodes that
    /// cannot see each other may both succeed; when they meet, every node
    /// keeps the same winner, and the loser's node removes the loser and
    /// tells it once on [`REGISTRY_CONFLICT_TOPIC`].
    pub fn register(&self, pid: &Pid, key: &GroupName, meta: Option<Meta>) -> Result<(), Error> {
        let shared = &self.shared;
        shared.act(|c| {
            shared.check_alive(pid)?;
            Ok(c.scope.register(pid, key, meta)?)
        })?
    }

    /// Registers every key of `entries` for `pid` in one step, all or
    /// nothing.
    pub fn register_many(
        &self,
        pid: &Pid,
        entries: &[(GroupName, Option<Meta>)],
    ) -> Result<(), Error> {
        let shared = &self.shared;
        shared.act(|c| {
            shared.check_alive(pid)?;
            Ok(c.scope.register_many(pid, entries)?)
        })?
    }

    /// Replaces the rule that picks the winner of a registry conflict
    /// (default: the earliest registration). Every node of the scope must
    /// use the same rule, set before registrations start.
    pub fn set_resolver(&self, resolver: Arc<dyn pg_core::Resolver>) -> Result<(), Error> {
        self.shared
            .act(|c| c.scope.set_resolver(resolver))?
            .map_err(Into::into)
    }

    /// `pid` gives up `key` (an error if it does not hold it).
    pub fn unregister(&self, pid: &Pid, key: &GroupName) -> Result<(), Error> {
        self.shared
            .act(|c| c.scope.unregister(pid, key))?
            .map_err(Into::into)
    }

    /// `pid` gives up each of `keys` it holds, in one step; returns how
    /// many it held.
    pub fn unregister_many(&self, pid: &Pid, keys: &[GroupName]) -> Result<usize, Error> {
        self.shared.act(|c| {
            keys.iter()
                .filter(|key| c.scope.unregister(pid, key).is_ok())
                .count()
        })
    }

    /// The process holding `key`, with its metadata (from the published
    /// view: never waits for the writer).
    pub fn lookup(&self, key: &str) -> Option<(Pid, Option<Meta>)> {
        self.shared.registry.keys.read().get(key).cloned()
    }

    /// Those of `keys` that are registered.
    pub fn contains_keys(&self, keys: &[&str]) -> Vec<GroupName> {
        let view = self.shared.registry.keys.read();
        keys.iter()
            .filter_map(|k| view.get_key_value(*k).map(|(k, _)| k.clone()))
            .collect()
    }

    /// Number of keys registered.
    pub fn registered_count(&self) -> usize {
        self.shared.registry.keys.read().len()
    }

    /// Number of keys held by this node's processes.
    pub fn local_registered_count(&self) -> usize {
        let local = self.shared.local_id();
        let view = self.shared.registry.keys.read();
        view.values().filter(|(pid, _)| pid.node() == local).count()
    }

    /// Every registration, in key order (the whole registry).
    pub fn registrations(&self) -> Vec<Registration> {
        let view = self.shared.registry.keys.read();
        view.iter()
            .map(|(k, (p, m))| (k.clone(), p.clone(), m.clone()))
            .collect()
    }

    /// Registrations whose key starts with `prefix`, in key order.
    pub fn registrations_prefix(&self, prefix: &str) -> Vec<Registration> {
        let view = self.shared.registry.keys.read();
        view.range::<str, _>((
            std::ops::Bound::Included(prefix),
            std::ops::Bound::Unbounded,
        ))
        .take_while(|(k, _)| k.as_str().starts_with(prefix))
        .map(|(k, (p, m))| (k.clone(), p.clone(), m.clone()))
        .collect()
    }

    /// The keys this node's processes hold.
    pub fn local_registrations(&self) -> Vec<Registration> {
        let local = self.shared.local_id();
        let view = self.shared.registry.keys.read();
        view.iter()
            .filter(|(_, (p, _))| p.node() == local)
            .map(|(k, (p, m))| (k.clone(), p.clone(), m.clone()))
            .collect()
    }

    /// Subscribes to registry events of the keys `pattern` matches, with
    /// their registrations at the same instant: taken in one step of the
    /// writer, so no change slips between the snapshot and the first
    /// event. `allow` filters further, key by key (a permission check);
    /// `owner`'s end closes the subscription.
    pub fn monitor_registry(
        &self,
        pattern: Pattern,
        allow: Option<GroupFilter>,
        owner: Option<&Pid>,
    ) -> Result<(Subscription<RegistryEvent>, Vec<Registration>), Error> {
        let shared = &self.shared;
        let (sub, snapshot) = shared.act(|c| {
            if let Some(owner) = owner {
                shared.check_alive(owner)?;
            }
            let id = shared.next_subscriber.fetch_add(1, Ordering::Relaxed);
            let sub = Arc::new(SubShared::new(
                id,
                pattern.clone(),
                allow.clone(),
                owner.cloned(),
                shared.options.monitor_buffer,
                shared.options.monitor_max_pending,
            ));
            c.reg_subscribers.push(Arc::clone(&sub));
            let snapshot: Vec<Registration> = match &pattern {
                Pattern::Exact(key) => c
                    .scope
                    .lookup(key.as_str())
                    .map(|(p, m)| (key.clone(), p, m))
                    .into_iter()
                    .collect(),
                Pattern::Prefix(prefix) => c.scope.registrations_prefix(prefix),
                Pattern::All => c.scope.registrations(),
            };
            let snapshot = snapshot
                .into_iter()
                .filter(|(k, _, _)| allow.as_ref().is_none_or(|a| a(k.as_str())))
                .collect();
            Ok::<_, Error>((sub, snapshot))
        })??;
        Ok((Subscription::new(sub, Arc::downgrade(shared)), snapshot))
    }
}
