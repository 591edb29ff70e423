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
    /// The event kind as seed 000 names it: `member.joined` / `member.left`.
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
/// joined three times and exits appears three times in `pids`.
#[must_use = "an event that is not delivered leaves a subscriber out of date"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Joined or left.
    pub kind: EventKind,
    /// The group that changed.
    pub group: GroupName,
    /// The affected processes, one entry per join reference.
    pub pids: Vec<Pid>,
}

/// Pending events, merging consecutive changes of the same kind to the same
/// group into one event (a sync or a node-down produces few, large events).
#[derive(Debug, Default)]
pub(crate) struct EventQueue {
    events: VecDeque<Event>,
}

impl EventQueue {
    pub(crate) fn push(&mut self, kind: EventKind, group: &GroupName, pid: &Pid, count: u32) {
        let count = count as usize;
        if count == 0 {
            return;
        }
        if let Some(last) = self.events.back_mut()
            && last.kind == kind
            && last.group == *group
        {
            last.pids.extend(std::iter::repeat_n(pid.clone(), count));
            return;
        }
        self.events.push_back(Event {
            kind,
            group: group.clone(),
            pids: vec![pid.clone(); count],
        });
    }

    pub(crate) fn pop(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }
}
