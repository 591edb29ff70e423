//! The registry in the simulator: commands, and the invariants it must
//! hold (every node the same winner for every key once healed, at most one
//! holder per key, no key held by a dead node's process, events that
//! replay to the state, each losing registration reported once).

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use crate::{GroupName, Meta, Pid, RegisterSpec, RegistryEvent, RegistryEventKind, Scope};

use super::check::Violation;
use super::{Cluster, SimError};

/// What readers see of one key: holder, metadata and tag.
pub type Held = (Pid, Option<Meta>, Option<GroupName>);

/// Key -> holder, metadata and tag, sorted for stable comparison.
pub type RegistryView = BTreeMap<GroupName, Held>;

/// What a scope holds in its registry, as readers see it.
pub fn registry_view(scope: &Scope) -> RegistryView {
    scope
        .registrations()
        .into_iter()
        .map(|r| (r.key, (r.pid, r.meta, r.tag)))
        .collect()
}

/// Replays a scope's registry events from empty; must always equal its
/// registry.
#[derive(Debug, Default, Clone)]
pub struct RegistryReplay {
    holders: FxHashMap<GroupName, Held>,
}

impl RegistryReplay {
    /// Applies one event, checking it follows from what the replay holds.
    pub fn apply(&mut self, e: &RegistryEvent) -> Result<(), Violation> {
        let wrong =
            |detail: String| Err(Violation::new("registry events follow the state", detail));
        let held = self.holders.get(&e.key);
        match e.kind {
            RegistryEventKind::Registered => {
                let previous = match held {
                    Some((pid, meta, _)) if *pid == e.pid => meta.clone(),
                    Some((pid, _, _)) => {
                        return wrong(format!("{} registered {:?} held by {pid}", e.pid, e.key));
                    }
                    None => None,
                };
                if e.previous_meta != previous || e.reason.is_some() {
                    return wrong(format!("{e:?} after {held:?}"));
                }
                self.holders.insert(
                    e.key.clone(),
                    (e.pid.clone(), e.meta.clone(), e.tag.clone()),
                );
            }
            RegistryEventKind::Unregistered => {
                let expected = (e.pid.clone(), e.meta.clone(), e.tag.clone());
                if held != Some(&expected) || e.reason.is_none() {
                    return wrong(format!("{e:?} while holding {held:?}"));
                }
                self.holders.remove(&e.key);
            }
        }
        Ok(())
    }

    /// Checks the replay against the scope's registry.
    pub fn check(&self, scope: &Scope) -> Result<(), Violation> {
        let replay: RegistryView = self
            .holders
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if replay != registry_view(scope) {
            return Err(Violation::new(
                "registry event replay equals state",
                format!("replay {replay:?}, state {:?}", registry_view(scope)),
            ));
        }
        Ok(())
    }
}

impl Cluster {
    /// `pid` registers `key` on node `i`.
    pub fn register(
        &mut self,
        i: usize,
        pid: &Pid,
        key: &GroupName,
        spec: RegisterSpec,
    ) -> Result<(), SimError> {
        let renewed = self.nodes[i]
            .scope
            .as_ref()
            .is_some_and(|s| s.lookup(key.as_str()).is_some_and(|(p, _)| p == *pid));
        self.command(i, |s| s.register_spec(pid, key, spec))?;
        if !renewed {
            // A new registration: it may lose (and be reported) again.
            self.reported_losers.remove(&(pid.clone(), key.clone()));
        }
        Ok(())
    }

    /// `pid` unregisters `key` on node `i`.
    pub fn unregister(&mut self, i: usize, pid: &Pid, key: &GroupName) -> Result<(), SimError> {
        self.command(i, |s| s.unregister(pid, key))
    }

    /// Takes node `i`'s registry events and conflicts after an input.
    pub(super) fn drain_registry(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let Some(scope) = node.scope.as_mut() else {
            return;
        };
        let mut broken = None;
        while let Some(event) = scope.poll_registry_event() {
            if let Err(v) = node.reg_replay.apply(&event) {
                broken.get_or_insert(v);
            }
        }
        while let Some(lost) = scope.poll_conflict() {
            if scope
                .lookup(lost.key.as_str())
                .is_some_and(|(p, _)| p == lost.pid)
            {
                broken.get_or_insert(Violation::new(
                    "a loser is removed",
                    format!("{} still holds {:?} after losing it", lost.pid, lost.key),
                ));
            }
            if !self
                .reported_losers
                .insert((lost.pid.clone(), lost.key.clone()))
            {
                broken.get_or_insert(Violation::new(
                    "each loser notified exactly once",
                    format!("{} told twice it lost {:?}", lost.pid, lost.key),
                ));
            }
        }
        if let Some(v) = broken {
            self.fail(v);
        }
    }

    /// The registry invariants of a converged cluster: the union of the
    /// live nodes' own registrations holds each key once, and every live
    /// node sees exactly that, with no key of a dead node's process, and
    /// an event replay equal to it.
    pub fn check_registry(&self) -> Result<(), Violation> {
        let mut expected = RegistryView::new();
        for scope in self.nodes.iter().filter_map(|n| n.scope.as_ref()) {
            for r in scope.local_registrations() {
                let (key, pid) = (r.key.clone(), r.pid.clone());
                if let Some((other, _, _)) = expected.insert(r.key, (r.pid, r.meta, r.tag)) {
                    return Err(Violation::new(
                        "at most one holder per key",
                        format!("{key:?} held by {other} and {pid} once healed"),
                    ));
                }
            }
        }
        let live = self.live_nodes();
        for node in &self.nodes {
            let Some(scope) = &node.scope else { continue };
            let view = registry_view(scope);
            if let Some((key, (pid, _, _))) =
                view.iter().find(|(_, (p, _, _))| !live.contains(p.node()))
            {
                return Err(Violation::new(
                    "no key held by a dead node's process",
                    format!("{}: {key:?} held by {pid}", node.name),
                ));
            }
            if view != expected {
                return Err(Violation::new(
                    "every node the same winner for every key",
                    format!("{}: {view:?}, expected {expected:?}", node.name),
                ));
            }
            node.reg_replay
                .check(scope)
                .map_err(|v| Violation::new(v.invariant, format!("{}: {}", node.name, v.detail)))?;
        }
        Ok(())
    }
}
