//! Membership events for local subscribers.

use std::collections::VecDeque;
use std::fmt;

use crate::group::GroupName;
use crate::id::Pid;
use crate::meta::{LeaveReason, Meta};

/// What happened to the members of an [`Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `member.joined`: join references added (a new member, or a member
    /// joining again, maybe with new metadata).
    Joined,
    /// `member.left`: join references removed.
    Left,
    /// `member.updated`: metadata changed while the join count did not.
    /// Local joins never produce it (metadata changes with a join); it
    /// comes from a full-state resync that finds a remote member's
    /// metadata changed while this node was not listening. Counts are 0.
    Updated,
}

impl EventKind {
    /// The event kind's conventional name: `member.joined`, `member.left`,
    /// `member.updated`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Joined => "member.joined",
            EventKind::Left => "member.left",
            EventKind::Updated => "member.updated",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The metadata side of one member of an [`Event`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaChange {
    /// The member's metadata after a join or update; the metadata it had
    /// when it left.
    pub meta: Option<Meta>,
    /// The metadata it had before a join or update (`None` for a new
    /// member); always `None` on a left event.
    pub previous: Option<Meta>,
}

/// A change of one group's membership, with multiplicity: a process that
/// joined three times and exits is listed with a count of 3. Counts keep an
/// event's size proportional to the change, whatever the join counts.
#[must_use = "an event that is not delivered leaves a subscriber out of date"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Joined, left or updated.
    pub kind: EventKind,
    /// The group that changed.
    pub group: GroupName,
    /// The affected processes, each with the number of join references that
    /// joined or left (at least 1; 0 for [`EventKind::Updated`]).
    pub members: Vec<(Pid, u32)>,
    /// Metadata of each member, parallel to `members`; empty when none of
    /// them has or had metadata (read it through [`meta`](Self::meta) and
    /// [`previous_meta`](Self::previous_meta)).
    pub metas: Vec<MetaChange>,
    /// Why the members left (`Some` exactly on [`EventKind::Left`]).
    pub reason: Option<LeaveReason>,
}

impl Event {
    /// The affected pids with multiplicity: each pid as many times as its
    /// count (the `PIDs` list of Erlang-style events).
    pub fn pids(&self) -> impl Iterator<Item = &Pid> {
        self.members
            .iter()
            .flat_map(|(pid, count)| std::iter::repeat_n(pid, *count as usize))
    }

    /// Total join references in the event.
    pub fn references(&self) -> u64 {
        self.members.iter().map(|&(_, c)| u64::from(c)).sum()
    }

    /// The metadata of the `i`th member (see [`MetaChange::meta`]).
    pub fn meta(&self, i: usize) -> Option<&Meta> {
        self.metas.get(i).and_then(|m| m.meta.as_ref())
    }

    /// The metadata the `i`th member had before (see
    /// [`MetaChange::previous`]).
    pub fn previous_meta(&self, i: usize) -> Option<&Meta> {
        self.metas.get(i).and_then(|m| m.previous.as_ref())
    }

    /// Each member with its count and metadata.
    pub fn entries(&self) -> impl Iterator<Item = EventEntry<'_>> {
        self.members
            .iter()
            .enumerate()
            .map(|(i, (pid, count))| EventEntry {
                pid,
                count: *count,
                meta: self.meta(i),
                previous_meta: self.previous_meta(i),
            })
    }
}

/// One member of an [`Event`], as [`Event::entries`] yields it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventEntry<'a> {
    /// The process.
    pub pid: &'a Pid,
    /// Join references that joined or left (0 for an update).
    pub count: u32,
    /// Its metadata (after a join or update; when it left).
    pub meta: Option<&'a Meta>,
    /// Its metadata before a join or update.
    pub previous_meta: Option<&'a Meta>,
}

/// One member's change, as the table reports it to the queue.
pub(crate) struct Change<'a> {
    pub(crate) kind: EventKind,
    pub(crate) group: &'a GroupName,
    pub(crate) pid: Pid,
    pub(crate) count: u32,
    pub(crate) meta: Option<Meta>,
    pub(crate) previous: Option<Meta>,
    pub(crate) reason: Option<LeaveReason>,
}

/// How much a [`Scope`](crate::Scope) reports about membership changes.
///
/// An event costs an allocation, a pid and a group name per change, all
/// dropped at once by a driver that has no subscriber to hand it to: a
/// mass exit spent about a third of its writer time building and
/// dropping events. A driver that only needs to know which groups to
/// republish asks for [`GroupsOnly`](Self::GroupsOnly) while nobody
/// subscribes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventDetail {
    /// Every change as an [`Event`], through
    /// [`Scope::poll_event`](crate::Scope::poll_event) (the default).
    #[default]
    Full,
    /// Only the names of the groups that changed, through
    /// [`Scope::poll_changed_group`](crate::Scope::poll_changed_group);
    /// no event is built.
    GroupsOnly,
}

/// Pending events, merging consecutive changes of the same kind (and
/// reason) to the same group into one event (a sync or a node-down
/// produces few, large events); or, with [`EventDetail::GroupsOnly`],
/// the groups that changed, consecutive repeats merged.
#[derive(Debug, Default)]
pub(crate) struct EventQueue {
    events: VecDeque<Event>,
    changed: ChangedNames,
}

/// What a queue of changes reports ([`EventDetail`]) and, in
/// [`EventDetail::GroupsOnly`], the names that changed (consecutive
/// repeats merged). Shared by membership events (group names) and
/// registry events (keys).
#[derive(Debug, Default)]
pub(crate) struct ChangedNames {
    detail: EventDetail,
    names: VecDeque<GroupName>,
}

impl ChangedNames {
    /// Whether changes are wanted as events rather than as names.
    pub(crate) fn detailed(&self) -> bool {
        self.detail == EventDetail::Full
    }

    /// Sets what later changes are reported as; what is queued stays.
    pub(crate) fn set_detail(&mut self, detail: EventDetail) {
        self.detail = detail;
    }

    /// Records that `name` changed.
    pub(crate) fn touch(&mut self, name: &GroupName) {
        if self.names.back() != Some(name) {
            self.names.push_back(name.clone());
        }
    }

    /// The next name recorded by [`touch`](Self::touch).
    pub(crate) fn pop(&mut self) -> Option<GroupName> {
        let name = self.names.pop_front();
        if name.is_none() {
            shrink_drained(&mut self.names);
        }
        name
    }
}

/// Gives back the room a burst left (a node down or a resync of a million
/// changes) once a queue is drained.
pub(crate) fn shrink_drained<T>(queue: &mut VecDeque<T>) {
    if queue.capacity() > 1024 {
        queue.shrink_to(64);
    }
}

impl EventQueue {
    /// Whether changes are wanted as events ([`push`](Self::push)) rather
    /// than as group names ([`touch`](Self::touch)).
    pub(crate) fn detailed(&self) -> bool {
        self.changed.detailed()
    }

    /// Sets what later changes are reported as; what is queued stays.
    pub(crate) fn set_detail(&mut self, detail: EventDetail) {
        self.changed.set_detail(detail);
    }

    /// Records that `group` changed (in [`EventDetail::GroupsOnly`]).
    pub(crate) fn touch(&mut self, group: &GroupName) {
        self.changed.touch(group);
    }

    /// The next group recorded by [`touch`](Self::touch).
    pub(crate) fn pop_group(&mut self) -> Option<GroupName> {
        self.changed.pop()
    }

    /// Reports one change: as an event, or as its group's name only.
    pub(crate) fn push(&mut self, change: Change<'_>) {
        if !self.detailed() {
            if change.count > 0 || change.kind == EventKind::Updated {
                self.touch(change.group);
            }
            return;
        }
        let Change {
            kind,
            group,
            pid,
            count,
            meta,
            previous,
            reason,
        } = change;
        if count == 0 && kind != EventKind::Updated {
            return;
        }
        let has_meta = meta.is_some() || previous.is_some();
        if let Some(last) = self.events.back_mut()
            && last.kind == kind
            && last.reason == reason
            && last.group == *group
        {
            let n = last.members.len();
            if let Some((p, c)) = last.members.last_mut()
                && *p == pid
            {
                // The same member again: counts add up, the metadata is
                // the latest, the previous one stays the first.
                *c = c.saturating_add(count);
                if has_meta || !last.metas.is_empty() {
                    last.metas.resize_with(n, MetaChange::default);
                    if let Some(slot) = last.metas.last_mut() {
                        slot.meta = meta;
                    }
                }
                return;
            }
            last.members.push((pid, count));
            if has_meta {
                last.metas.resize_with(n, MetaChange::default);
                last.metas.push(MetaChange { meta, previous });
            } else if !last.metas.is_empty() {
                last.metas.push(MetaChange::default());
            }
            return;
        }
        let metas = if has_meta {
            vec![MetaChange { meta, previous }]
        } else {
            Vec::new()
        };
        self.events.push_back(Event {
            kind,
            group: group.clone(),
            members: vec![(pid, count)],
            metas,
            reason,
        });
    }

    pub(crate) fn pop(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }
}
