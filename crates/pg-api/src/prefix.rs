//! Counts, prefix reads and pattern monitors on an [`Instance`]: "how many
//! in `room/42`", "who is under `chat/`", "tell me of every change under
//! `user/`". Each is checked against the policy with its own permission,
//! on the group name or the prefix (docs/semantics.md#permissions).

use pg_core::{GroupName, MAX_GROUP_NAME_LEN};
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

    /// Memberships of every group whose name starts with `prefix`, on every
    /// node; a process in two matching groups counts in each
    /// (`pg.count_prefix` on the prefix).
    pub fn count_prefix(&self, prefix: &str) -> Result<usize, PgError> {
        self.live()?;
        self.prefix(prefix, Permission::CountPrefix)?;
        Ok(self.scope.count_prefix(prefix))
    }

    /// As [`count_prefix`](Self::count_prefix), on this node
    /// (`pg.local_count_prefix`).
    pub fn local_count_prefix(&self, prefix: &str) -> Result<usize, PgError> {
        self.live()?;
        self.prefix(prefix, Permission::LocalCountPrefix)?;
        Ok(self.scope.local_count_prefix(prefix))
    }

    /// Every group whose name starts with `prefix` and has a member, in
    /// name order, with its members listed as
    /// [`get_members`](Self::get_members) lists them
    /// (`pg.get_members_prefix` on the prefix). Each group is its own
    /// snapshot; O(log groups + matching groups).
    pub fn get_members_prefix(&self, prefix: &str) -> Result<GroupsSnapshot, PgError> {
        self.live()?;
        self.prefix(prefix, Permission::GetMembersPrefix)?;
        Ok(self.scope.members_prefix(prefix))
    }

    /// As [`get_members_prefix`](Self::get_members_prefix), this node's
    /// members only (`pg.get_local_members_prefix`).
    pub fn get_local_members_prefix(&self, prefix: &str) -> Result<GroupsSnapshot, PgError> {
        self.live()?;
        self.prefix(prefix, Permission::GetLocalMembersPrefix)?;
        Ok(self.scope.local_members_prefix(prefix))
    }

    /// The groups under `prefix` with a member anywhere, in name order
    /// (`pg.which_groups_prefix`).
    pub fn which_groups_prefix(&self, prefix: &str) -> Result<Vec<GroupName>, PgError> {
        self.live()?;
        self.prefix(prefix, Permission::WhichGroupsPrefix)?;
        Ok(self.scope.which_groups_prefix(prefix))
    }

    /// Subscribes to the joins and leaves of every group under `prefix`,
    /// present and future, and returns those groups with their members,
    /// atomically (`pg.monitor_prefix` on the prefix): applying the events
    /// that follow to the snapshot gives those groups' membership exactly.
    /// The subscription ends with the process.
    pub fn monitor_prefix(&self, prefix: &str) -> Result<(Subscription, GroupsSnapshot), PgError> {
        self.live()?;
        self.prefix(prefix, Permission::MonitorPrefix)?;
        let pattern = Pattern::Prefix(prefix.into());
        Ok(self.scope.monitor_pattern(pattern, Some(self.pid()))?)
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
        match &pattern {
            Pattern::Exact(group) => self.check(Permission::Monitor, group.as_str())?,
            Pattern::Prefix(prefix) => self.prefix(prefix, Permission::MonitorPrefix)?,
            Pattern::All => self.check(Permission::Events, self.id())?,
        }
        Ok(self.scope.monitor_pattern(pattern, Some(self.pid()))?)
    }
}
