//! Membership events for local subscribers.

use std::collections::VecDeque;
use std::fmt;

use crate::group::GroupName;
use crate::id::Pid;

/// Whether members joined or left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `member.joined`
    Joined,
    /// `member.left`
    Left,
}

impl EventKind {
    /// The event kind's conventional name: `member.joined` / `member.left`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Joined => "member.joined",
            EventKind::Left => "member.left",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of one group's membership, with multiplicity: a process that
/// joined three times and exits is listed with a count of 3. Counts keep an
/// event's size proportional to the change, whatever the join counts.
#[must_use = "an event that is not delivered leaves a subscriber out of date"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Joined or left.
    pub kind: EventKind,
    /// The group that changed.
    pub group: GroupName,
    /// The affected processes, each with the number of join references that
    /// joined or left (at least 1).
    pub members: Vec<(Pid, u32)>,
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
}

/// Pending events, merging consecutive changes of the same kind to the same
/// group into one event (a sync or a node-down produces few, large events).
#[derive(Debug, Default)]
pub(crate) struct EventQueue {
    events: VecDeque<Event>,
}

impl EventQueue {
    pub(crate) fn push(&mut self, kind: EventKind, group: &GroupName, pid: &Pid, count: u32) {
        if count == 0 {
            return;
        }
        if let Some(last) = self.events.back_mut()
            && last.kind == kind
            && last.group == *group
        {
            match last.members.last_mut() {
                Some((p, c)) if p == pid => *c = c.saturating_add(count),
                _ => last.members.push((pid.clone(), count)),
            }
            return;
        }
        self.events.push_back(Event {
            kind,
            group: group.clone(),
            members: vec![(pid.clone(), count)],
        });
    }

    pub(crate) fn pop(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }
}
