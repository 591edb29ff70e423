//! What the registry tells local subscribers and losing processes.

use std::fmt;

use crate::event::{ChangedNames, shrink_drained};
use crate::group::GroupName;
use crate::id::Pid;
use crate::meta::Meta;

/// Whether a key got or lost its visible holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistryEventKind {
    /// `registered`: the key is now held by `pid` (new, or its metadata
    /// updated in place).
    Registered,
    /// `unregistered`: `pid` no longer holds the key.
    Unregistered,
}

impl RegistryEventKind {
    /// `registered` / `unregistered`.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryEventKind::Registered => "registered",
            RegistryEventKind::Unregistered => "unregistered",
        }
    }
}

/// Why a key lost its holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnregisterReason {
    /// The process unregistered it.
    Unregistered,
    /// The process exited.
    Exit,
    /// The process's node went down, or left the scope.
    NodeDown,
    /// Another registration of the key won (two registered it while they
    /// could not see each other).
    Conflict,
    /// Learned from the owner's whole state after a gap: it unregistered
    /// or exited while this node was not listening.
    Resync,
}

impl UnregisterReason {
    /// `unregistered`, `exit`, `node_down`, `conflict`, `resync`.
    pub fn as_str(self) -> &'static str {
        match self {
            UnregisterReason::Unregistered => "unregistered",
            UnregisterReason::Exit => "exit",
            UnregisterReason::NodeDown => "node_down",
            UnregisterReason::Conflict => "conflict",
            UnregisterReason::Resync => "resync",
        }
    }
}

impl fmt::Display for UnregisterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of which process holds a key, as this node sees it: applying
/// a scope's registry events in order to the snapshot they follow gives
/// the registry exactly.
#[must_use = "an event that is not delivered leaves a subscriber out of date"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEvent {
    /// Registered or unregistered.
    pub kind: RegistryEventKind,
    /// The key.
    pub key: GroupName,
    /// The process that got or lost it.
    pub pid: Pid,
    /// Its metadata (after a registration; when it lost the key).
    pub meta: Option<Meta>,
    /// Its tag (after a registration; when it lost the key).
    pub tag: Option<GroupName>,
    /// On a registration that updates a holder's metadata in place, the
    /// metadata it replaced; `None` otherwise.
    pub previous_meta: Option<Meta>,
    /// Why (`Some` exactly on unregistered).
    pub reason: Option<UnregisterReason>,
}

/// A registration of this node that lost a conflict: it was removed, and
/// its process is to be told (once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The key.
    pub key: GroupName,
    /// The losing process (of this node).
    pub pid: Pid,
    /// Its metadata.
    pub meta: Option<Meta>,
    /// The process that holds the key.
    pub winner: Pid,
    /// The registration asked for its process to end should it lose
    /// (see [`RegisterSpec::exit_on_loss`](crate::RegisterSpec)).
    pub exit: bool,
}

/// Pending registry changes: whole [`RegistryEvent`]s, or, with
/// [`EventDetail::GroupsOnly`](crate::EventDetail::GroupsOnly), only the
/// keys that changed (consecutive repeats merged). A driver with no
/// registry subscriber needs only the keys, to republish them; building
/// an event (a pid, a key, metadata clones) per change for nobody was a
/// sixth of a node's time receiving a stream of registrations.
#[derive(Debug, Default)]
pub(crate) struct RegistryEventQueue {
    events: std::collections::VecDeque<RegistryEvent>,
    keys: ChangedNames,
}

impl RegistryEventQueue {
    /// Whether changes are wanted as whole events.
    pub(crate) fn detailed(&self) -> bool {
        self.keys.detailed()
    }

    /// Sets what later changes are reported as; what is queued stays.
    pub(crate) fn set_detail(&mut self, detail: crate::EventDetail) {
        self.keys.set_detail(detail);
    }

    /// Queues an event (built only when [`detailed`](Self::detailed)).
    pub(crate) fn push(&mut self, event: RegistryEvent) {
        self.events.push_back(event);
    }

    /// Records that `key` changed (when not [`detailed`](Self::detailed)).
    pub(crate) fn touch(&mut self, key: &GroupName) {
        self.keys.touch(key);
    }

    /// The next queued event.
    pub(crate) fn pop(&mut self) -> Option<RegistryEvent> {
        let event = self.events.pop_front();
        if event.is_none() {
            shrink_drained(&mut self.events);
        }
        event
    }

    /// The next queued key.
    pub(crate) fn pop_key(&mut self) -> Option<GroupName> {
        self.keys.pop()
    }
}
