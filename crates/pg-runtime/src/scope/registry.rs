//! The registry on a scope: registrations decided by the scope's writer,
//! reads from a published view (never waiting for the writer), registry
//! events to subscribers with an atomic snapshot, and losing processes
//! told on a reserved topic.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::RwLock;
use pg_core::{GroupName, Meta, NodeId, Pid, RegisterSpec, RegistryEvent};
use serde::{Deserialize, Serialize};

use super::subscribers::sync_event_detail;
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

/// One key's registration, as readers see it.
pub type Registration = pg_core::Registration;

/// A key's holder, metadata and tag in the published view.
#[derive(Clone)]
struct Entry {
    pid: Pid,
    meta: Option<Meta>,
    tag: Option<GroupName>,
}

/// The registry as readers see it: replaced key by key by the writer in
/// the step that changes it, before the caller returns.
#[derive(Default)]
pub(crate) struct RegistryView {
    inner: RwLock<Published>,
}

#[derive(Default)]
struct Published {
    /// Key -> registration: a lookup is one hash probe whatever the
    /// registry's size (an ordered map of 10k keys made it 300 ns of
    /// string compares).
    keys: FxHashMap<GroupName, Entry>,
    /// The same keys in order, for listings and prefix queries.
    order: BTreeSet<GroupName>,
    /// Tag -> keys registered with it, for `match_tag`.
    tags: FxHashMap<GroupName, BTreeSet<GroupName>>,
    /// How many keys this node's processes hold (kept as keys change, so
    /// `local_registered_count` is not a walk of every key).
    local: usize,
}

impl Published {
    /// Publishes `key`'s registration as `now` (none: unregistered);
    /// `local` is this node, whose keys are counted as they change.
    fn set(&mut self, key: &GroupName, now: Option<Registration>, local: &NodeId) {
        let is_local = |e: &Entry| e.pid.node() == local;
        let (old, now_local, new_tag) = match now {
            Some(r) => {
                if let Some(tag) = &r.tag {
                    self.tags
                        .entry(tag.clone())
                        .or_default()
                        .insert(key.clone());
                }
                let entry = Entry {
                    pid: r.pid,
                    meta: r.meta,
                    tag: r.tag,
                };
                let (now_local, new_tag) = (is_local(&entry), entry.tag.clone());
                let old = self.keys.insert(key.clone(), entry);
                if old.is_none() {
                    self.order.insert(key.clone());
                }
                (old, now_local, new_tag)
            }
            None => {
                let old = self.keys.remove(key.as_str());
                if old.is_some() {
                    self.order.remove(key.as_str());
                    // Memory back after a mass unregistration (a hash
                    // map keeps its capacity otherwise).
                    if self.keys.capacity() > 1024 && self.keys.len() < self.keys.capacity() / 4 {
                        self.keys.shrink_to(self.keys.len() * 2);
                    }
                }
                (old, false, None)
            }
        };
        debug_assert_eq!(self.order.len(), self.keys.len(), "the two indexes agree");
        let was_local = old.as_ref().is_some_and(is_local);
        match (was_local, now_local) {
            (false, true) => self.local += 1,
            (true, false) => self.local -= 1,
            _ => {}
        }
        if let Some(tag) = old
            .and_then(|old| old.tag)
            .filter(|t| Some(t) != new_tag.as_ref())
            && let Some(keys) = self.tags.get_mut(&tag)
        {
            keys.remove(key);
            if keys.is_empty() {
                self.tags.remove(&tag);
            }
        }
    }

    /// Every key with its entry, in key order.
    fn ordered(&self) -> impl Iterator<Item = (&GroupName, &Entry)> {
        self.order
            .iter()
            .filter_map(|key| self.keys.get_key_value(key.as_str()))
    }

    fn entry(&self, key: &GroupName, e: &Entry) -> Registration {
        Registration {
            key: key.clone(),
            pid: e.pid.clone(),
            meta: e.meta.clone(),
            tag: e.tag.clone(),
        }
    }
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
        // Without a registry subscriber the core reports keys only.
        let mut key = core.scope.poll_changed_key();
        if !events.is_empty() || key.is_some() {
            let mut view = self.registry.inner.write();
            for event in &events {
                view.set(&event.key, core.scope.registration(&event.key), &self.local);
            }
            while let Some(changed) = key {
                view.set(&changed, core.scope.registration(&changed), &self.local);
                key = core.scope.poll_changed_key();
            }
            drop(view);
            for event in events {
                self.deliver(&mut core.reg_subscribers, event);
            }
        }
        let mut lost_all = Vec::new();
        while let Some(lost) = core.scope.poll_conflict() {
            tracing::info!(scope = %self.id, key = %lost.key.as_str(), loser = %lost.pid, winner = %lost.winner, "registration lost a conflict");
            lost_all.push(lost);
        }
        if lost_all.is_empty() {
            return;
        }
        // One task for the step's losses, in order: every notice first, then
        // the ends asked for, once per process. Delivered outside the
        // writer's lock: holding the node there could make this step the
        // one that drops it, and closing the node takes this very lock.
        let mut notices = Vec::with_capacity(lost_all.len());
        let mut ending: Vec<Pid> = Vec::new();
        for lost in lost_all {
            if lost.exit && !ending.contains(&lost.pid) {
                ending.push(lost.pid.clone());
            }
            let notice = RegistryConflict {
                key: lost.key.as_str().to_owned(),
                meta: lost.meta.map(|m| m.as_bytes().to_vec()),
                winner: lost.winner.clone(),
            };
            match crate::process::encode(&notice) {
                Ok(payload) => notices.push((
                    lost.pid.serial(),
                    Envelope {
                        from: lost.winner,
                        topic: Arc::from(REGISTRY_CONFLICT_TOPIC),
                        payload,
                    },
                )),
                Err(e) => {
                    tracing::warn!(scope = %self.id, error = %e, "conflict notice not encoded")
                }
            }
        }
        let node = self.links.node.clone();
        let timeout = self.options.broadcast_timeout;
        self.links.runtime.spawn(async move {
            let Some(node) = node.upgrade() else { return };
            for (serial, envelope) in &notices {
                node.deliver_local_many([*serial], envelope, timeout);
            }
            for pid in ending {
                // After its notices: the mailbox hands them over, then
                // ends; everything the process held is cleaned up as on
                // any exit.
                tracing::info!(pid = %pid, "a process that lost its registration ends, as it asked");
                node.process_exited(&pid);
            }
        });
    }
}

impl Scope {
    /// `pid` (a process of this node) registers `key` with `meta`: see
    /// [`register_spec`](Self::register_spec).
    pub fn register(&self, pid: &Pid, key: &GroupName, meta: Option<Meta>) -> Result<(), Error> {
        self.register_spec(pid, key, RegisterSpec::with_meta(meta))
    }

    /// `pid` (a process of this node) registers `key` as `spec` says (its
    /// metadata, tag, and whether to end the process should it lose):
    /// `Ok`, or [`Taken`](pg_core::CommandError::Taken) naming the holder.
    /// Re-registering its own key replaces all of that in place. Decided
    /// here from what this node knows, then replicated: two nodes that
    /// cannot see each other may both succeed; when they meet, every node
    /// keeps the same winner, and the loser's node removes the loser and
    /// tells it once on [`REGISTRY_CONFLICT_TOPIC`] (then ends it, with
    /// [`RegisterSpec::exit_on_loss`]: its mailbox yields the notice, then
    /// `None`).
    pub fn register_spec(
        &self,
        pid: &Pid,
        key: &GroupName,
        spec: RegisterSpec,
    ) -> Result<(), Error> {
        let shared = &self.shared;
        shared.act(|c| {
            shared.check_alive(pid)?;
            Ok(c.scope.register_spec(pid, key, spec)?)
        })?
    }

    /// Registers every key of `entries` for `pid` in one step, all or
    /// nothing.
    pub fn register_many(
        &self,
        pid: &Pid,
        entries: &[(GroupName, RegisterSpec)],
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
        let view = self.shared.registry.inner.read();
        view.keys.get(key).map(|e| (e.pid.clone(), e.meta.clone()))
    }

    /// The registry's own name for `key` while it is registered: a
    /// reference to it, not a copy (from the published view).
    pub fn registered_name(&self, key: &str) -> Option<GroupName> {
        let view = self.shared.registry.inner.read();
        view.keys.get_key_value(key).map(|(name, _)| name.clone())
    }

    /// The registration of `key`, whole (metadata and tag).
    pub fn registration(&self, key: &str) -> Option<Registration> {
        let view = self.shared.registry.inner.read();
        let (key, e) = view.keys.get_key_value(key)?;
        Some(view.entry(key, e))
    }

    /// Those of `keys` that are registered.
    pub fn contains_keys(&self, keys: &[&str]) -> Vec<GroupName> {
        let view = self.shared.registry.inner.read();
        keys.iter()
            .filter_map(|k| view.keys.get_key_value(*k).map(|(k, _)| k.clone()))
            .collect()
    }

    /// Number of keys registered.
    pub fn registered_count(&self) -> usize {
        self.shared.registry.inner.read().keys.len()
    }

    /// Number of keys held by this node's processes.
    pub fn local_registered_count(&self) -> usize {
        self.shared.registry.inner.read().local
    }

    /// Every registration, in key order (the whole registry).
    pub fn registrations(&self) -> Vec<Registration> {
        let view = self.shared.registry.inner.read();
        view.ordered().map(|(k, e)| view.entry(k, e)).collect()
    }

    /// Registrations whose key starts with `prefix`, in key order.
    pub fn registrations_prefix(&self, prefix: &str) -> Vec<Registration> {
        let view = self.shared.registry.inner.read();
        view.order
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|k| k.as_str().starts_with(prefix))
            .filter_map(|k| view.keys.get_key_value(k.as_str()))
            .map(|(k, e)| view.entry(k, e))
            .collect()
    }

    /// Registrations tagged `tag`, in key order: O(matches), from
    /// an index kept with the published view.
    pub fn match_tag(&self, tag: &str) -> Vec<Registration> {
        let view = self.shared.registry.inner.read();
        view.tags
            .get(tag)
            .into_iter()
            .flatten()
            .filter_map(|key| view.keys.get_key_value(key.as_str()))
            .map(|(k, e)| view.entry(k, e))
            .collect()
    }

    /// The keys this node's processes hold.
    pub fn local_registrations(&self) -> Vec<Registration> {
        let local = self.shared.local_id();
        let view = self.shared.registry.inner.read();
        view.ordered()
            .filter(|(_, e)| e.pid.node() == local)
            .map(|(k, e)| view.entry(k, e))
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
            // Every change from here on is an event it may need.
            sync_event_detail(c);
            // The published view is the core's state as of the last step
            // (each step republishes what it changed), and it keeps keys
            // in order: a prefix costs O(log n + matches) there.
            let snapshot: Vec<Registration> = match &pattern {
                Pattern::Exact(key) => c.scope.registration(key).into_iter().collect(),
                Pattern::Prefix(prefix) => self.registrations_prefix(prefix),
                Pattern::All => self.registrations(),
            };
            let snapshot = snapshot
                .into_iter()
                .filter(|r| allow.as_ref().is_none_or(|a| a(r.key.as_str())))
                .collect();
            Ok::<_, Error>((sub, snapshot))
        })??;
        Ok((Subscription::new(sub, Arc::downgrade(shared)), snapshot))
    }
}
