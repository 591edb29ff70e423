//! Reads and subscriptions by group-name prefix (`"chat/"`: every group
//! under `chat/`), and counts. Served from the published snapshots through
//! their ordered index: O(log groups + matching groups), never a scan of
//! every group, and never waiting for the writer.
//!
//! Each group in a prefix read is its own atomic snapshot; the groups are
//! not one atomic cut (a change to two groups may show in one and not yet
//! in the other). A prefix *subscription*'s snapshot is one cut: it is
//! taken in the writer's step that registers the subscription.

use std::sync::Arc;

use pg_core::{GroupName, Members, Pid};

use super::{GroupsSnapshot, Scope};
use crate::error::Error;
use crate::subscription::{GroupFilter, Pattern, Subscription};

impl Scope {
    /// Every group whose name starts with `prefix` and has a member, in
    /// name order, with its members (a pid once per join).
    pub fn members_prefix(&self, prefix: &str) -> GroupsSnapshot {
        self.shared.view.prefix(prefix)
    }

    /// As [`members_prefix`](Self::members_prefix), this node's members
    /// only (groups without one here are left out).
    pub fn local_members_prefix(&self, prefix: &str) -> GroupsSnapshot {
        self.shared
            .view
            .prefix(prefix)
            .into_iter()
            .map(|(group, members)| (group, members.local_only()))
            .filter(|(_, members)| !members.is_empty())
            .collect()
    }

    /// The groups under `prefix` with a member anywhere, in name order.
    pub fn which_groups_prefix(&self, prefix: &str) -> Vec<GroupName> {
        self.shared
            .view
            .prefix(prefix)
            .into_iter()
            .map(|(group, _)| group)
            .collect()
    }

    /// Memberships of `group` on every node, join counts included (the
    /// length of [`members`](Self::members)). O(1).
    pub fn count(&self, group: &str) -> usize {
        self.shared.view.members(group).len()
    }

    /// Memberships of `group` on this node. O(1).
    pub fn local_count(&self, group: &str) -> usize {
        self.shared.view.local_members(group).len()
    }

    /// Memberships of every group under `prefix`, on every node (a process
    /// in two matching groups counts in each).
    pub fn count_prefix(&self, prefix: &str) -> usize {
        self.shared.view.prefix_sum(prefix, Members::len)
    }

    /// Memberships of every group under `prefix`, on this node.
    pub fn local_count_prefix(&self, prefix: &str) -> usize {
        self.shared
            .view
            .prefix_sum(prefix, |members| members.local_only().len())
    }

    /// Subscribes to the events of every group matching `pattern` and
    /// returns those groups with their members, taken in the same writer
    /// step: no change is missed between the snapshot and the first event,
    /// or counted in both. Fails with [`Error::EmptyPrefix`] for an empty
    /// prefix (use [`Pattern::All`]).
    pub fn monitor_pattern(
        &self,
        pattern: Pattern,
        owner: Option<&Pid>,
    ) -> Result<(Subscription, GroupsSnapshot), Error> {
        self.monitor_pattern_where(pattern, None, owner)
    }

    /// As [`monitor_pattern`](Self::monitor_pattern), restricted to the
    /// groups `allow` accepts, in the snapshot and in the events (pg-api
    /// checks a permission per group with it).
    pub fn monitor_pattern_where(
        &self,
        pattern: Pattern,
        allow: Option<GroupFilter>,
        owner: Option<&Pid>,
    ) -> Result<(Subscription, GroupsSnapshot), Error> {
        if matches!(&pattern, Pattern::Prefix(p) if p.is_empty()) {
            return Err(Error::EmptyPrefix);
        }
        let shared = &self.shared;
        let (sub, snapshot) = shared.act(|c| {
            let snapshot = match &pattern {
                Pattern::Exact(group) => {
                    let members = c.scope.members(group.as_str());
                    if members.is_empty() {
                        Vec::new()
                    } else {
                        vec![(group.clone(), members)]
                    }
                }
                // The view is the core's state between steps once nothing
                // is held back from it (see `publish.rs`): every step
                // publishes what it changed before the lock is released.
                Pattern::Prefix(prefix) => {
                    shared.publish_held(c);
                    shared.view.prefix(prefix)
                }
                Pattern::All => c.scope.snapshot(),
            };
            let snapshot = match &allow {
                Some(allow) => snapshot
                    .into_iter()
                    .filter(|(g, _)| allow(g.as_str()))
                    .collect(),
                None => snapshot,
            };
            let sub = shared.subscribe(c, pattern, allow, owner)?;
            Ok::<_, Error>((sub, snapshot))
        })??;
        Ok((Subscription::new(sub, Arc::downgrade(shared)), snapshot))
    }
}
