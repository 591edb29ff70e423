//! The registry in the scope: local registrations decided here, remote
//! ones applied as their owners send them, visible changes reported as
//! events, and this node's losing registrations removed and reported as
//! conflicts (see `registry.rs` for the model).

use std::sync::Arc;

use crate::error::CommandError;
use crate::event::EventDetail;
use crate::frame::{Op, SyncReg};
use crate::group::GroupName;
use crate::id::Pid;
use crate::member_list::Slot;
use crate::membership::LOCAL_SLOT;
use crate::meta::Meta;
use crate::registry::{Holder, RegisterSpec, Registration, Resolver};
use crate::registry_event::{Conflict, RegistryEvent, RegistryEventKind, UnregisterReason};

use super::Scope;

impl Scope {
    // ----- local commands ----------------------------------------------

    /// Process `pid` (of this node) registers `key` with `meta`: see
    /// [`register_spec`](Self::register_spec).
    pub fn register(
        &mut self,
        pid: &Pid,
        key: &GroupName,
        meta: Option<Meta>,
    ) -> Result<(), CommandError> {
        self.register_spec(pid, key, RegisterSpec::with_meta(meta))
    }

    /// Process `pid` (of this node) registers `key` as `spec` says.
    /// Decided here, from what this node knows: fails with
    /// [`CommandError::Taken`] (changing nothing) if another process holds
    /// the key; re-registering its own key replaces its metadata, tag and
    /// options in place (keeping its timestamp). Two nodes that cannot see
    /// each other may both succeed; when they meet, every node picks the
    /// same winner and the loser's node removes the loser's registration
    /// and reports it ([`poll_conflict`](Self::poll_conflict)).
    pub fn register_spec(
        &mut self,
        pid: &Pid,
        key: &GroupName,
        spec: RegisterSpec,
    ) -> Result<(), CommandError> {
        self.check_local(pid)?;
        if let Some(meta) = &spec.meta {
            self.check_meta(meta)?;
        }
        let serial = pid.serial();
        let RegisterSpec {
            meta,
            tag,
            exit_on_loss,
        } = spec;
        let stamp = match self.visible(key.as_str()) {
            Some(h) if h.slot == LOCAL_SLOT && h.serial == serial => {
                if h.meta == meta && h.tag == tag {
                    if h.exit_on_loss != exit_on_loss {
                        // Local only: nothing to replicate or report.
                        self.registry.set_exit_on_loss(key, serial, exit_on_loss);
                    }
                    return Ok(());
                }
                h.stamp
            }
            Some(h) => {
                return Err(CommandError::Taken {
                    key: key.clone(),
                    by: self.table.pid(h.slot, h.serial),
                });
            }
            None => {
                self.check_registration_limit(LOCAL_SLOT, 1)?;
                self.registry.tick()
            }
        };
        let holder = Holder {
            slot: LOCAL_SLOT,
            serial,
            stamp,
            meta: meta.clone(),
            tag: tag.clone(),
            exit_on_loss,
        };
        // Recorded first: should the registration lose at once (a
        // metadata-based resolver and a conflict not yet settled), its
        // removal follows it in the same delta.
        self.record(Op::Register {
            key: key.clone(),
            serial,
            stamp,
            meta,
            tag,
        });
        self.reg_put(key, holder);
        self.bump();
        Ok(())
    }

    /// Process `pid` registers every key of `entries` in one step: all or
    /// nothing (a key held by another process, a key named twice, oversized
    /// metadata or the registration limit fails the whole batch and changes
    /// nothing). Keys it already holds are updated in place.
    pub fn register_many(
        &mut self,
        pid: &Pid,
        entries: &[(GroupName, RegisterSpec)],
    ) -> Result<(), CommandError> {
        self.check_local(pid)?;
        if entries.is_empty() {
            return Err(CommandError::EmptyBatch);
        }
        let mut seen = rustc_hash::FxHashSet::default();
        let mut new = 0;
        for (key, spec) in entries {
            if !seen.insert(key) {
                return Err(CommandError::DuplicateKey { key: key.clone() });
            }
            if let Some(meta) = &spec.meta {
                self.check_meta(meta)?;
            }
            match self.visible(key.as_str()) {
                Some(h) if h.slot == LOCAL_SLOT && h.serial == pid.serial() => {}
                Some(h) => {
                    return Err(CommandError::Taken {
                        key: key.clone(),
                        by: self.table.pid(h.slot, h.serial),
                    });
                }
                None => new += 1,
            }
        }
        self.check_registration_limit(LOCAL_SLOT, new)?;
        for (key, spec) in entries {
            // Checked above: cannot fail.
            self.register_spec(pid, key, spec.clone())?;
        }
        Ok(())
    }

    /// Process `pid` gives up `key`; fails with
    /// [`CommandError::NotRegistered`] if it does not hold it.
    pub fn unregister(&mut self, pid: &Pid, key: &GroupName) -> Result<(), CommandError> {
        self.check_local(pid)?;
        let serial = pid.serial();
        if !self.reg_remove(key, LOCAL_SLOT, serial, UnregisterReason::Unregistered) {
            return Err(CommandError::NotRegistered { key: key.clone() });
        }
        self.record(Op::Unregister {
            key: key.clone(),
            serial,
        });
        self.bump();
        Ok(())
    }

    /// Replaces the rule that picks the winner of a conflict (default:
    /// [`EarliestWins`](crate::EarliestWins)). Every node of the scope must
    /// use the same rule. Only before any key is registered here (the
    /// winners of keys held would change without an event): fails with
    /// [`CommandError::RegistryInUse`] otherwise.
    pub fn set_resolver(&mut self, resolver: Arc<dyn Resolver>) -> Result<(), CommandError> {
        if !self.registry.is_empty() {
            return Err(CommandError::RegistryInUse);
        }
        self.registry.set_resolver(resolver);
        Ok(())
    }

    // ----- reads -------------------------------------------------------

    /// The process holding `key`, with its metadata.
    pub fn lookup(&self, key: &str) -> Option<(Pid, Option<Meta>)> {
        let h = self.visible(key)?;
        Some((self.table.pid(h.slot, h.serial), h.meta.clone()))
    }

    /// The registration of `key`, whole.
    pub fn registration(&self, key: &GroupName) -> Option<Registration> {
        let h = self.visible(key.as_str())?;
        Some(self.reg_entry(key, &h))
    }

    /// Number of keys held (anywhere).
    pub fn registered_count(&self) -> usize {
        self.registry.len()
    }

    /// Every registration, in key order (the whole registry as this node
    /// sees it; sorted on each call: O(n log n)).
    pub fn registrations(&self) -> Vec<Registration> {
        self.registry
            .sorted_keys()
            .into_iter()
            .filter_map(|key| self.registration(key))
            .collect()
    }

    /// Registrations whose key starts with `prefix`, in key order (a scan
    /// of every key: O(n), then sorted; keys are hashed for the sake of
    /// changes, and a driver serving many readers keeps its own ordered
    /// view).
    pub fn registrations_prefix(&self, prefix: &str) -> Vec<Registration> {
        self.registry
            .sorted_keys_with_prefix(prefix)
            .into_iter()
            .filter_map(|key| self.registration(key))
            .collect()
    }

    /// Registrations tagged `tag`, in key order (a scan of every key's
    /// winner, then the matches sorted: the runtime keeps an index for its
    /// readers).
    pub fn match_tag(&self, tag: &str) -> Vec<Registration> {
        let table = &self.table;
        let mut out: Vec<Registration> = self
            .registry
            .keys()
            .filter(|key| {
                self.registry
                    .winner(key.as_str(), |h| table.pid(h.slot, h.serial))
                    .and_then(|h| h.tag.as_ref())
                    .is_some_and(|t| t.as_str() == tag)
            })
            .filter_map(|key| self.registration(key))
            .collect();
        out.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Number of keys this node's processes hold.
    pub fn local_registered_count(&self) -> usize {
        self.registry.count(LOCAL_SLOT)
    }

    /// The keys this node's processes hold, in key order.
    pub fn local_registrations(&self) -> Vec<Registration> {
        self.registry
            .part(LOCAL_SLOT)
            .into_iter()
            .filter_map(|(key, serial)| {
                let h = self.registry.held(key.as_str(), LOCAL_SLOT, serial)?;
                Some(self.reg_entry(&key, h))
            })
            .collect()
    }

    fn reg_entry(&self, key: &GroupName, h: &Holder) -> Registration {
        Registration {
            key: key.clone(),
            pid: self.table.pid(h.slot, h.serial),
            meta: h.meta.clone(),
            tag: h.tag.clone(),
        }
    }

    /// The next registry change for local subscribers, if any.
    pub fn poll_registry_event(&mut self) -> Option<RegistryEvent> {
        self.reg_events.pop()
    }

    /// Sets how registry changes are reported from now on: as events
    /// ([`EventDetail::Full`], the default), or only as the keys that
    /// changed ([`EventDetail::GroupsOnly`], for a driver with no registry
    /// subscriber, which needs only to know what to republish). Whatever
    /// is queued stays, to be polled as it was reported.
    pub fn set_registry_event_detail(&mut self, detail: EventDetail) {
        self.reg_events.set_detail(detail);
    }

    /// The next key whose registration changed while reporting
    /// [`EventDetail::GroupsOnly`], in the order of the changes, a key
    /// changed several times in a row named once.
    pub fn poll_changed_key(&mut self) -> Option<GroupName> {
        self.reg_events.pop_key()
    }

    /// The next registration of this node that lost a conflict, if any:
    /// it is already removed; tell its process.
    pub fn poll_conflict(&mut self) -> Option<Conflict> {
        self.conflicts.pop_front()
    }

    // ----- shared by local and remote changes ---------------------------

    /// The winning holder of `key`.
    pub(super) fn visible(&self, key: &str) -> Option<Holder> {
        self.visible_of(key).0
    }

    /// The winning holder of `key`, and how many hold it (one probe).
    fn visible_of(&self, key: &str) -> (Option<Holder>, usize) {
        let table = &self.table;
        let holders = self.registry.holders(key);
        let winner = self
            .registry
            .winner_among(key, holders, |h| table.pid(h.slot, h.serial));
        (winner.cloned(), holders.len())
    }

    /// Adds or replaces a registration, with events.
    pub(super) fn reg_put(&mut self, key: &GroupName, holder: Holder) {
        let before = self.visible(key.as_str());
        self.registry.put(key, holder);
        self.reg_changed(key, before, UnregisterReason::Unregistered);
    }

    /// Removes a registration, with events; says whether it was held.
    pub(super) fn reg_remove(
        &mut self,
        key: &GroupName,
        slot: Slot,
        serial: u64,
        reason: UnregisterReason,
    ) -> bool {
        let before = self.visible(key.as_str());
        if self.registry.remove(key.as_str(), slot, serial).is_none() {
            return false;
        }
        self.reg_changed(key, before, reason);
        true
    }

    /// Removes every key `serial` of `slot` holds (an exit).
    pub(super) fn reg_remove_process(
        &mut self,
        slot: Slot,
        serial: u64,
        reason: UnregisterReason,
    ) -> usize {
        let keys = self.registry.keys_of(slot, serial);
        for key in &keys {
            self.reg_remove(key, slot, serial, reason);
        }
        keys.len()
    }

    /// Removes every key the part in `slot` holds (a node down).
    pub(super) fn reg_remove_part(&mut self, slot: Slot, reason: UnregisterReason) {
        for (key, serial) in self.registry.part(slot) {
            self.reg_remove(&key, slot, serial, reason);
        }
    }

    /// Makes the registrations of the part in `slot` equal to `regs`.
    pub(super) fn reg_apply_sync(&mut self, slot: Slot, regs: Vec<SyncReg>) {
        let mut held = self.registry.part(slot).into_iter().peekable();
        let mut incoming = regs.into_iter().peekable();
        loop {
            // Both lists are sorted by key, one entry per key.
            let order = match (held.peek(), incoming.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((k, _)), Some(r)) => k.cmp(&r.key),
            };
            match order {
                std::cmp::Ordering::Less => {
                    if let Some((key, serial)) = held.next() {
                        self.reg_remove(&key, slot, serial, UnregisterReason::Resync);
                    }
                }
                std::cmp::Ordering::Equal | std::cmp::Ordering::Greater => {
                    let Some(reg) = incoming.next() else { break };
                    if order == std::cmp::Ordering::Equal
                        && let Some((key, serial)) = held.next()
                        && serial != reg.serial
                    {
                        self.reg_remove(&key, slot, serial, UnregisterReason::Resync);
                    }
                    self.registry.witness(reg.stamp);
                    let holder = Holder {
                        slot,
                        serial: reg.serial,
                        stamp: reg.stamp,
                        meta: reg.meta,
                        tag: reg.tag,
                        exit_on_loss: false,
                    };
                    if self.registry.held(reg.key.as_str(), slot, reg.serial) != Some(&holder) {
                        self.reg_put(&reg.key, holder);
                    }
                }
            }
        }
    }

    /// This node's registrations for a sync, sorted by key.
    pub(super) fn local_sync_regs(&self) -> Vec<SyncReg> {
        self.registry
            .part(LOCAL_SLOT)
            .into_iter()
            .filter_map(|(key, serial)| {
                let h = self.registry.held(key.as_str(), LOCAL_SLOT, serial)?;
                Some(SyncReg {
                    key,
                    serial,
                    stamp: h.stamp,
                    meta: h.meta.clone(),
                    tag: h.tag.clone(),
                })
            })
            .collect()
    }

    /// Reports what changed in `key`'s visible holder since `before`, then
    /// settles a conflict this node owns a losing side of.
    fn reg_changed(&mut self, key: &GroupName, before: Option<Holder>, reason: UnregisterReason) {
        let (after, holders) = self.visible_of(key.as_str());
        let same = |a: &Holder, b: &Holder| a.slot == b.slot && a.serial == b.serial;
        match (before, &after) {
            (None, None) => {}
            (None, Some(a)) => self.reg_event_registered(key, a, None),
            (Some(b), None) => self.reg_event_unregistered(key, &b, reason),
            (Some(b), Some(a)) if same(&b, a) => {
                if b.meta != a.meta || b.tag != a.tag {
                    self.reg_event_registered(key, a, b.meta.clone());
                }
            }
            (Some(b), Some(a)) => {
                // Displaced while still a holder: it lost a conflict.
                let why = if self.registry.held(key.as_str(), b.slot, b.serial).is_some() {
                    UnregisterReason::Conflict
                } else {
                    reason
                };
                self.reg_event_unregistered(key, &b, why);
                self.reg_event_registered(key, a, None);
            }
        }
        let Some(winner) = after else { return };
        if holders == 1 {
            // The winner alone: nobody lost.
            return;
        }
        let losers: Vec<Holder> = self
            .registry
            .holders(key.as_str())
            .iter()
            .filter(|h| h.slot == LOCAL_SLOT && !same(h, &winner))
            .cloned()
            .collect();
        for loser in losers {
            // Not visible (it lost): no event; removed, replicated, told.
            self.registry.remove(key.as_str(), LOCAL_SLOT, loser.serial);
            self.record(Op::Unregister {
                key: key.clone(),
                serial: loser.serial,
            });
            self.bump();
            self.conflicts.push_back(Conflict {
                key: key.clone(),
                pid: self.table.pid(LOCAL_SLOT, loser.serial),
                meta: loser.meta,
                winner: self.table.pid(winner.slot, winner.serial),
                exit: loser.exit_on_loss,
            });
        }
    }

    fn reg_event_registered(&mut self, key: &GroupName, h: &Holder, previous: Option<Meta>) {
        if !self.reg_events.detailed() {
            self.reg_events.touch(key);
            return;
        }
        self.reg_events.push(RegistryEvent {
            kind: RegistryEventKind::Registered,
            key: key.clone(),
            pid: self.table.pid(h.slot, h.serial),
            meta: h.meta.clone(),
            tag: h.tag.clone(),
            previous_meta: previous,
            reason: None,
        });
    }

    fn reg_event_unregistered(&mut self, key: &GroupName, h: &Holder, reason: UnregisterReason) {
        if !self.reg_events.detailed() {
            self.reg_events.touch(key);
            return;
        }
        self.reg_events.push(RegistryEvent {
            kind: RegistryEventKind::Unregistered,
            key: key.clone(),
            pid: self.table.pid(h.slot, h.serial),
            meta: h.meta.clone(),
            tag: h.tag.clone(),
            previous_meta: None,
            reason: Some(reason),
        });
    }
}
