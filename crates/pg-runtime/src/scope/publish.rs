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
//! the oldest has waited [`HOLD_MAX`], or when [`HOLD_MAX_GROUPS`] are
//! held, and due groups are published [`PUBLISH_CHUNK`] per step, so no
//! step holds the writer much longer than an exit batch. In between, each
//! held group's list is changed in place.
//!
//! Why readers may see a held group late: an ended process may be listed
//! until its cleanup is applied (docs/semantics.md), and that cleanup was
//! already asynchronous; holding adds about [`HOLD_MAX`] to it (plus the
//! steps publishing the due chunks). A
//! publication is always of the group's current state, so a step that
//! changes a held group publishes it whole and nothing ever goes back.
//! `flush_exits` returns only once what it waited for is published.
//!
//! Why only without membership subscribers: a subscriber must not hear of
//! a change before readers can see it, and held events would make every
//! other step wait for them. A step that subscribes publishes everything
//! held first ([`ScopeShared::publish_held`]), so its snapshot, the view
//! and the events it will receive agree.

use std::time::{Duration, Instant};

use pg_core::GroupName;
use rustc_hash::FxHashSet;

use super::{CoreState, ScopeShared, clock};

/// Longest an exit cleanup's groups are held before their publication
/// starts.
pub(super) const HOLD_MAX: Duration = Duration::from_millis(50);

/// Most groups held at once (bounds the set's memory): reaching it starts
/// their publication as [`HOLD_MAX`] does.
pub(super) const HOLD_MAX_GROUPS: usize = 65_536;

/// Groups published per step once due: a step that publishes is as short
/// as an exit batch, so a caller waiting for the writer still waits for
/// one batch at most.
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
    /// Due: published [`PUBLISH_CHUNK`] per step. A group changed again
    /// meanwhile is in `groups` too, and published again later.
    due: Vec<GroupName>,
}

impl Held {
    /// Whether nothing is held back.
    pub(super) fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.due.is_empty()
    }

    /// Moves every held group to the due list.
    fn make_due(&mut self) {
        self.since = None;
        self.due.extend(self.groups.drain());
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
        let hold = mode == Publish::ExitCleanup && core.subscribers.is_empty();
        if hold {
            let held = &mut core.held;
            held.groups.extend(changed.drain(..));
            let now = clock();
            let since = *held.since.get_or_insert(now);
            if !self.exits.has_pending() {
                // The queue ran dry: everything goes, a chunk per step.
                held.make_due();
            } else if held.due.is_empty()
                && (held.groups.len() >= HOLD_MAX_GROUPS
                    || now.saturating_duration_since(since) >= HOLD_MAX)
            {
                held.make_due();
            }
            self.publish_due(core);
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
            if !core.subscribers.is_empty() {
                self.publish_held(core);
            }
        }
        self.view.prune(core.scope.group_count());
        self.metrics.groups.set(core.scope.group_count() as f64);
        let local = core.scope.part_memberships(core.scope.local_node());
        self.metrics.local_memberships.set(local as f64);
    }

    /// Publishes up to [`PUBLISH_CHUNK`] due groups; says whether anything
    /// is still held back.
    fn publish_due(&self, core: &mut CoreState) -> bool {
        let from = core.held.due.len().saturating_sub(PUBLISH_CHUNK);
        let chunk: Vec<GroupName> = core.held.due.drain(from..).collect();
        for group in &chunk {
            let all = core.scope.members(group.as_str());
            self.view.publish(group, all);
        }
        !core.held.is_empty()
    }

    /// The exit queue is empty: makes everything held due and publishes a
    /// chunk of it; says whether anything is still held back (then the
    /// exit task calls again after letting others in).
    pub(super) fn publish_rest(&self, core: &mut CoreState) -> bool {
        core.held.make_due();
        self.publish_due(core)
    }

    /// Publishes every group held back at once (a subscriber is about to
    /// read or hear of them).
    pub(super) fn publish_held(&self, core: &mut CoreState) {
        core.held.make_due();
        for group in std::mem::take(&mut core.held.due) {
            let all = core.scope.members(group.as_str());
            self.view.publish(&group, all);
        }
    }
}
