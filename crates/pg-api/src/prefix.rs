//! Counts, prefix reads and pattern monitors on an [`Instance`]: "how many
//! in `room/42`", "who is under `chat/`", "tell me of every change under
//! `user/`". Each is checked against the policy with its own permission,
//! on the group name or the prefix (docs/semantics.md#permissions); a
//! prefix call then answers only for the groups on which the caller holds
//! the matching per-group permission, so a rule that denies some groups
//! cannot be got round with a shorter prefix.

use pg_core::{GroupName, MAX_GROUP_NAME_LEN, Members};
use pg_runtime::{GroupsSnapshot, Pattern, Subscription};

use crate::error::PgError;
use crate::instance::Instance;
use crate::permission::Permission;

impl Instance {
    /// Checks a prefix: non-empty (for every group, use the unfiltered
    /// call) and no longer than a group name can be.
    fn prefix(&self, prefix: &str, permission: Permission) -> Result<(), PgError> {
        if prefix.is_empty() {
            return Err(PgError::invalid(
                "empty prefix (every group: use the call without a prefix)",
            ));
        }
        if prefix.len() > MAX_GROUP_NAME_LEN {
            return Err(PgError::invalid(format!(
                "prefix of {} bytes is longer than any group name ({MAX_GROUP_NAME_LEN})",
                prefix.len()
            )));
        }
        self.check(permission, prefix)
    }

    /// Memberships of `group` on every node, join counts included: the
    /// length of [`get_members`](Self::get_members), in O(1)
    /// (`pg.count`).
    pub fn count(&self, group: &str) -> Result<usize, PgError> {
        self.live()?;
        self.group(group, Permission::Count)?;
        Ok(self.scope.count(group))
    }

    /// Memberships of `group` on this node (`pg.local_count`).
    pub fn local_count(&self, group: &str) -> Result<usize, PgError> {
        self.live()?;
        self.group(group, Permission::LocalCount)?;
        Ok(self.scope.local_count(group))
    }

    /// The groups under `prefix` (each with its members) on which the
    /// caller holds `per_group`.
    fn permitted(&self, prefix: &str, per_group: Permission) -> GroupsSnapshot {
        let mut groups = self.scope.members_prefix(prefix);
        groups.retain(|(group, _)| self.allows(per_group, group.as_str()));
        groups
    }

    /// Memberships of every group whose name starts with `prefix`, on every
    /// node; a process in two matching groups counts in each
    /// (`pg.count_prefix` on the prefix; groups without `pg.count` are not
    /// counted).
    pub fn count_prefix(&self, prefix: &str) -> Result<usize, PgError> {
        self.live()?;
        self.prefix(prefix, Permission::CountPrefix)?;
        let groups = self.permitted(prefix, Permission::Count);
        Ok(groups.iter().map(|(_, m)| m.len()).sum())
    }

    /// As [`count_prefix`](Self::count_prefix), on this node
    /// (`pg.local_count_prefix`; per group `pg.local_count`).
    pub fn local_count_prefix(&self, prefix: &str) -> Result<usize, PgError> {
        self.live()?;
        self.prefix(prefix, Permission::LocalCountPrefix)?;
        let groups = self.permitted(prefix, Permission::LocalCount);
        Ok(groups.iter().map(|(_, m)| m.local_only().len()).sum())
    }

    /// Every group whose name starts with `prefix` and has a member, in
    /// name order, with its members listed as
    /// [`get_members`](Self::get_members) lists them
    /// (`pg.get_members_prefix` on the prefix; groups without
    /// `pg.get_members` are left out). Each group is its own snapshot.
    pub fn get_members_prefix(&self, prefix: &str) -> Result<GroupsSnapshot, PgError> {
        self.live()?;
        self.prefix(prefix, Permission::GetMembersPrefix)?;
        Ok(self.permitted(prefix, Permission::GetMembers))
    }

    /// As [`get_members_prefix`](Self::get_members_prefix), this node's
    /// members only (`pg.get_local_members_prefix`; per group
    /// `pg.get_local_members`).
    pub fn get_local_members_prefix(&self, prefix: &str) -> Result<GroupsSnapshot, PgError> {
        self.live()?;
        self.prefix(prefix, Permission::GetLocalMembersPrefix)?;
        let mut groups = self.permitted(prefix, Permission::GetLocalMembers);
        for (_, members) in &mut groups {
            *members = members.local_only();
        }
        groups.retain(|(_, members): &(GroupName, Members)| !members.is_empty());
        Ok(groups)
    }

    /// The groups under `prefix` with a member anywhere, in name order
    /// (`pg.which_groups_prefix` on the prefix, and on each group).
    pub fn which_groups_prefix(&self, prefix: &str) -> Result<Vec<GroupName>, PgError> {
        self.live()?;
        self.prefix(prefix, Permission::WhichGroupsPrefix)?;
        let groups = self.permitted(prefix, Permission::WhichGroupsPrefix);
        Ok(groups.into_iter().map(|(group, _)| group).collect())
    }

    /// Subscribes to the joins and leaves of every group under `prefix`,
    /// present and future, and returns those groups with their members,
    /// atomically (`pg.monitor_prefix` on the prefix): applying the events
    /// that follow to the snapshot gives those groups' membership exactly.
    /// Groups on which the caller lacks `pg.monitor` are left out of both.
    /// The subscription ends with the process.
    pub fn monitor_prefix(&self, prefix: &str) -> Result<(Subscription, GroupsSnapshot), PgError> {
        self.live()?;
        self.prefix(prefix, Permission::MonitorPrefix)?;
        let pattern = Pattern::Prefix(prefix.into());
        let allow = self.group_filter(Permission::Monitor);
        Ok(self
            .scope
            .monitor_pattern_where(pattern, Some(allow), Some(self.pid()))?)
    }

    /// Subscribes by [`Pattern`]: one group (`pg.monitor`, like
    /// [`monitor`](Self::monitor) but with the snapshot as a list), a
    /// prefix (`pg.monitor_prefix`), or every group (`pg.events`, like
    /// [`events`](Self::events)).
    pub fn monitor_pattern(
        &self,
        pattern: Pattern,
    ) -> Result<(Subscription, GroupsSnapshot), PgError> {
        self.live()?;
        let allow = match &pattern {
            Pattern::Exact(group) => {
                self.check(Permission::Monitor, group.as_str())?;
                None
            }
            Pattern::Prefix(prefix) => {
                self.prefix(prefix, Permission::MonitorPrefix)?;
                Some(self.group_filter(Permission::Monitor))
            }
            Pattern::All => {
                self.check(Permission::Events, self.id())?;
                None
            }
        };
        Ok(self
            .scope
            .monitor_pattern_where(pattern, allow, Some(self.pid()))?)
    }
}
