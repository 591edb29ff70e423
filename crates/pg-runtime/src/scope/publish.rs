//! Publishing the groups a step changed to readers, and holding that back
//! for exit cleanups while a mass exit is under way.
//!
//! A step publishes every group it changed before the lock is released
//! (read-your-writes). For exit cleanups that is a large part of a mass
//! exit's cost: an exit batch removes roughly one membership from each of
//! thousands of groups, and publishing a group means a new snapshot, a
//! cell swap, and, at the next change, a copy of the member list's leaf
//! the snapshot still shares. Published after every batch, a group of 100
//! members that empties over 100 batches is copied and swapped 100 times.
//!
//! So while more exits wait, a cleanup step only records the groups it
//! changed ([`Held`]); they become due when the exit queue runs dry, when
//! the oldest has waited `exit_publish_hold` (200 ms by default), or when
//! [`HOLD_MAX_GROUPS`] are held, and due groups are published [`PUBLISH_CHUNK`] per step, so no
//! step holds the writer much longer than an exit batch. In between, each
//! held group's list is changed in place.
//!
//! Why readers may see a held group late: an ended process may be listed
//! until its cleanup is applied (docs/semantics.md), and that cleanup was
//! already asynchronous; holding adds about `exit_publish_hold` to it
//! (plus the steps publishing the due chunks). A
//! publication is always of the group's current state, so a step that
//! changes a held group publishes it whole and nothing ever goes back.
//! `flush_exits` returns only once what it waited for is published.
//!
//! Why only without membership subscribers (any one, of any group): a
//! subscriber must not hear of a change before readers can see it, and
//! held events would make every other step wait for them. A step that subscribes publishes everything
//! held first ([`ScopeShared::publish_held`]), so its snapshot, the view
//! and the events it will receive agree.

use std::collections::VecDeque;
use std::time::Instant;

use pg_core::GroupName;
use rustc_hash::FxHashSet;

use super::{CoreState, ScopeShared, clock};

/// Most groups held at once (bounds the set's memory): reaching it starts
/// their publication as `exit_publish_hold` elapsing does.
pub(super) const HOLD_MAX_GROUPS: usize = 65_536;

/// Due groups published per step beyond as many as the step itself held
/// back: the due list shrinks by at least this much per step, and a step
/// costs at most about twice an exit batch published at once.
pub(super) const PUBLISH_CHUNK: usize = 2048;

/// How a step's changes reach readers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Publish {
    /// Before the lock is released (every step but exit cleanups).
    Now,
    /// An exit cleanup: may be held back while more exits wait.
    ExitCleanup,
}

/// Groups changed by exit cleanups and not yet published.
#[derive(Default)]
pub(crate) struct Held {
    /// Changed since `since`, not yet due.
    groups: FxHashSet<GroupName>,
    since: Option<Instant>,
    /// Due, oldest first: published a chunk per step. A group changed
    /// again meanwhile is in `groups` too, and published again later.
    due: VecDeque<GroupName>,
    /// Exits applied (`ExitQueue::applied_count`) when the groups now due
    /// were made due: once `due` is empty, that many are visible.
    due_mark: u64,
}

impl Held {
    /// Whether nothing is held back.
    pub(super) fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.due.is_empty()
    }

    /// Moves every held group to the end of the due list; `applied` exits
    /// are then covered by it.
    fn make_due(&mut self, applied: u64) {
        self.since = None;
        self.due.extend(self.groups.drain());
        self.due_mark = applied;
    }

    /// Gives back the memory of a mass exit once it is over.
    fn shrink(&mut self) {
        if self.groups.capacity() > 4 * PUBLISH_CHUNK {
            self.groups = FxHashSet::default();
        }
        if self.due.capacity() > 4 * PUBLISH_CHUNK {
            self.due = VecDeque::new();
        }
    }
}

impl ScopeShared {
    /// Publishes the groups in `changed` (one step's, in any order, maybe
    /// repeated), or holds them back under the rules above. Leaves
    /// `changed` empty.
    pub(super) fn publish_changed(
        &self,
        core: &mut CoreState,
        changed: &mut Vec<GroupName>,
        mode: Publish,
    ) {
        let hold_max = self.options.exit_publish_hold;
        // A closing scope's exit task stops: nothing may be held then.
        let hold = mode == Publish::ExitCleanup
            && core.subscribers.is_empty()
            && !hold_max.is_zero()
            && !self.closed.load(std::sync::atomic::Ordering::Acquire);
        if hold {
            let added = changed.len();
            let held = &mut core.held;
            held.groups.extend(changed.drain(..));
            let now = clock();
            let applied = self.exits.applied_count();
            if !self.exits.has_pending() {
                // The queue ran dry: everything goes.
                held.make_due(applied);
            } else if !held.groups.is_empty() {
                let since = *held.since.get_or_insert(now);
                if held.groups.len() >= HOLD_MAX_GROUPS
                    || now.saturating_duration_since(since) >= hold_max
                {
                    held.make_due(applied);
                }
            }
            self.publish_due(core, PUBLISH_CHUNK + added);
        } else {
            changed.sort_unstable();
            changed.dedup();
            for group in changed.drain(..) {
                if !core.held.groups.is_empty() {
                    core.held.groups.remove(&group);
                }
                let all = core.scope.members(group.as_str());
                self.view.publish(&group, all);
            }
            if core.held.groups.is_empty() {
                core.held.since = None;
            }
            if !core.subscribers.is_empty() {
                self.publish_held(core);
            }
            self.settle(core);
        }
        self.metrics.groups.set(core.scope.group_count() as f64);
        let local = core.scope.part_memberships(core.scope.local_node());
        self.metrics.local_memberships.set(local as f64);
    }

    /// Publishes up to `n` due groups, oldest first; says whether anything
    /// is still held back.
    fn publish_due(&self, core: &mut CoreState, n: usize) -> bool {
        for _ in 0..n {
            let Some(group) = core.held.due.pop_front() else {
                break;
            };
            let all = core.scope.members(group.as_str());
            self.view.publish(&group, all);
        }
        self.settle(core);
        !core.held.is_empty()
    }

    /// Tells `flush_exits` how far readers see the exits: all of them when
    /// nothing is held, those made due when the due list is done.
    /// Prunes the view's empty cells too, once nothing is held (a held
    /// group may be empty in the core and not yet in the view, so the
    /// live count would not describe the cells).
    pub(super) fn settle(&self, core: &mut CoreState) {
        // Counted before anybody is woken, so a `flush_exits` caller
        // reads a counter that includes the step that woke it.
        if let Some(start) = core.exit_step_started.take() {
            self.count_exit_cleanup(start.elapsed());
        }
        if core.held.is_empty() {
            self.exits.published_up_to(self.exits.applied_count());
            core.held.shrink();
            self.view.prune(core.scope.group_count());
        } else if core.held.due.is_empty() {
            self.exits.published_up_to(core.held.due_mark);
        }
    }

    /// The exit queue is empty: makes everything held due and publishes a
    /// chunk of it; says whether anything is still held back (then the
    /// exit task calls again after letting others in).
    pub(super) fn publish_rest(&self, core: &mut CoreState) -> bool {
        core.held.make_due(self.exits.applied_count());
        self.publish_due(core, PUBLISH_CHUNK)
    }

    /// Publishes every group held back at once (a subscriber is about to
    /// read or hear of them, or the scope closes). Unbounded: a monitor
    /// opened in the middle of a mass exit pays for publishing what was
    /// held (at most [`HOLD_MAX_GROUPS`] plus the due list) in its step.
    pub(super) fn publish_held(&self, core: &mut CoreState) {
        core.held.make_due(self.exits.applied_count());
        let n = core.held.due.len();
        self.publish_due(core, n);
    }
}
