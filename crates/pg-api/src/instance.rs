//! A scope instance bound to a process: the operations of
//! docs/semantics.md, method for method.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use pg_core::{GroupName, Members, Meta, Pid};
use pg_runtime::{GroupsSnapshot, Subscription};
use serde::Serialize;

use crate::error::PgError;
use crate::node::Node;
use crate::permission::Permission;
use crate::process::Process;

/// One membership owned by this node, as
/// [`Instance::local_entries`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The group.
    pub group: GroupName,
    /// The process (of this node).
    pub pid: Pid,
    /// How many times it joined.
    pub count: u32,
    /// Its metadata in the group, if it joined with any.
    pub meta: Option<Meta>,
}

/// One group name or several: what `join` and `leave` accept.
pub trait Groups {
    /// The names.
    fn names(&self) -> Vec<&str>;
}

impl Groups for &str {
    fn names(&self) -> Vec<&str> {
        vec![self]
    }
}

impl Groups for String {
    fn names(&self) -> Vec<&str> {
        vec![self.as_str()]
    }
}

impl Groups for &[&str] {
    fn names(&self) -> Vec<&str> {
        self.to_vec()
    }
}

impl<const N: usize> Groups for [&str; N] {
    fn names(&self) -> Vec<&str> {
        self.to_vec()
    }
}

impl Groups for Vec<&str> {
    fn names(&self) -> Vec<&str> {
        self.clone()
    }
}

impl Groups for &[String] {
    fn names(&self) -> Vec<&str> {
        self.iter().map(String::as_str).collect()
    }
}

/// A scope opened by a process (`pg.open("app:pg")`). Every call is checked
/// against the permission policy as the process's principal. Released by
/// [`release`](Self::release) or when the process ends; afterwards every
/// call fails with `Invalid`.
pub struct Instance {
    pub(crate) scope: pg_runtime::Scope,
    pid: Pid,
    principal: Arc<str>,
    node: Node,
    released: AtomicBool,
    /// The process's liveness, read without the process table's lock.
    alive: pg_runtime::Liveness,
}

impl Instance {
    pub(crate) fn new(scope: pg_runtime::Scope, process: &Process, node: Node) -> Self {
        Self {
            scope,
            pid: process.pid().clone(),
            principal: Arc::from(process.principal()),
            node,
            released: AtomicBool::new(false),
            alive: process.liveness(),
        }
    }

    /// The scope id.
    pub fn id(&self) -> &str {
        self.scope.id()
    }

    /// The process the instance is bound to.
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    pub(crate) fn live(&self) -> Result<(), PgError> {
        if self.node.runtime().is_shut_down() {
            return Err(PgError::new(
                crate::ErrorKind::Closed,
                "the node has shut down",
            ));
        }
        if self.released.load(Ordering::Acquire) {
            return Err(PgError::invalid("instance released"));
        }
        if !self.alive.is_alive() {
            return Err(PgError::invalid("instance released: its process has ended"));
        }
        Ok(())
    }

    /// Whether this instance's principal holds `permission` on `resource`.
    pub(crate) fn allows(&self, permission: Permission, resource: &str) -> bool {
        self.node.allows(&self.principal, permission, resource)
    }

    /// A per-group check for the scope's writer: the policy, as this
    /// instance's principal, for `permission` on each group.
    pub(crate) fn group_filter(&self, permission: Permission) -> pg_runtime::GroupFilter {
        let (node, principal) = (self.node.clone(), Arc::clone(&self.principal));
        Arc::new(move |group: &str| node.allows(&principal, permission, group))
    }

    pub(crate) fn check(&self, permission: Permission, resource: &str) -> Result<(), PgError> {
        self.node.check(&self.principal, permission, resource)
    }

    pub(crate) fn group(&self, name: &str, permission: Permission) -> Result<GroupName, PgError> {
        let group = GroupName::new(name).map_err(|e| PgError::invalid(e.to_string()))?;
        self.check(permission, name)?;
        Ok(group)
    }

    fn groups(
        &self,
        groups: &impl Groups,
        permission: Permission,
    ) -> Result<Vec<GroupName>, PgError> {
        let names = groups.names();
        if names.is_empty() {
            return Err(PgError::invalid("no group named"));
        }
        names
            .into_iter()
            .map(|n| self.group(n, permission))
            .collect()
    }

    /// Joins one group or a batch (`pg.join` on each name). Joining N times
    /// needs N leaves.
    pub fn join(&self, groups: impl Groups) -> Result<(), PgError> {
        self.live()?;
        let groups = self.groups(&groups, Permission::Join)?;
        self.scope.join(&self.pid, &groups).map_err(Into::into)
    }

    /// Leaves one group or a batch (`pg.leave` on each name); fails only if
    /// the process was in none of them.
    pub fn leave(&self, groups: impl Groups) -> Result<(), PgError> {
        self.live()?;
        let groups = self.groups(&groups, Permission::Leave)?;
        self.scope.leave(&self.pid, &groups).map_err(Into::into)
    }

    /// Joins many processes of this node to `group` in one step, as Erlang's
    /// `pg:join(Scope, Group, [Pid])`: a service re-homing its connections
    /// joins them all with one call. `pg.join` on `group` is checked once,
    /// as this instance's principal, whatever the principals of the pids
    /// (as in Erlang, any process may join others). Repeating a pid joins
    /// it that many times. All or nothing: a pid of another node or of an ended process,
    /// or a limit, fails the whole batch and changes nothing.
    pub fn join_pids(&self, group: &str, pids: &[Pid]) -> Result<(), PgError> {
        self.live()?;
        let group = self.group(group, Permission::Join)?;
        if pids.is_empty() {
            return Err(PgError::invalid("no process named"));
        }
        self.scope.join_pids(&group, pids).map_err(Into::into)
    }

    /// Takes one join reference of each of `pids` (processes of this node)
    /// out of `group` in one step, as Erlang's `pg:leave(Scope, Group,
    /// [Pid])`; `pg.leave` on `group` is checked once. Best effort: fails
    /// if none of them was a member, or if a pid is of another node.
    pub fn leave_pids(&self, group: &str, pids: &[Pid]) -> Result<(), PgError> {
        self.live()?;
        let group = self.group(group, Permission::Leave)?;
        if pids.is_empty() {
            return Err(PgError::invalid("no process named"));
        }
        self.scope.leave_pids(&group, pids).map_err(Into::into)
    }

    /// Members of `group` on every node (empty for an unknown group). As in
    /// Erlang's `pg`, a process that joined `n` times is listed `n` times;
    /// [`Members::iter_counted`] gives each once with its count.
    pub fn get_members(&self, group: &str) -> Result<Members, PgError> {
        self.live()?;
        self.group(group, Permission::GetMembers)?;
        Ok(self.scope.members(group))
    }

    /// Members of `group` on this node, listed as
    /// [`get_members`](Self::get_members) lists them.
    pub fn get_local_members(&self, group: &str) -> Result<Members, PgError> {
        self.live()?;
        self.group(group, Permission::GetLocalMembers)?;
        Ok(self.scope.local_members(group))
    }

    /// Groups with a member anywhere.
    pub fn which_groups(&self) -> Result<Arc<[GroupName]>, PgError> {
        self.live()?;
        self.check(Permission::WhichGroups, self.id())?;
        Ok(self.scope.which_groups())
    }

    /// Groups with a member on this node.
    pub fn which_local_groups(&self) -> Result<Arc<[GroupName]>, PgError> {
        self.live()?;
        self.check(Permission::WhichLocalGroups, self.id())?;
        Ok(self.scope.which_local_groups())
    }

    /// Every membership this node owns in the scope, with join counts and
    /// metadata, groups in name order (`pg.local_entries` on the scope
    /// id). What this node contributes to the cluster's view; each group
    /// is its own snapshot.
    pub fn local_entries(&self) -> Result<Vec<Entry>, PgError> {
        self.live()?;
        self.check(Permission::LocalEntries, self.id())?;
        let mut entries = Vec::new();
        for group in self.scope.which_local_groups().iter() {
            let members = self.scope.local_members(group.as_str());
            entries.extend(members.iter_with_meta().map(|(pid, count, meta)| Entry {
                group: group.clone(),
                pid,
                count,
                meta,
            }));
        }
        Ok(entries)
    }

    /// Sends `payload` under `topic` to every member of `group` on every
    /// node, once each; returns how many were addressed.
    pub fn broadcast(
        &self,
        group: &str,
        topic: &str,
        payload: impl Into<Bytes>,
    ) -> Result<usize, PgError> {
        self.live()?;
        self.group(group, Permission::Broadcast)?;
        Ok(self
            .scope
            .broadcast(&self.pid, group, topic, payload.into())?)
    }

    /// As [`broadcast`](Self::broadcast), to this node's members only.
    pub fn broadcast_local(
        &self,
        group: &str,
        topic: &str,
        payload: impl Into<Bytes>,
    ) -> Result<usize, PgError> {
        self.live()?;
        self.group(group, Permission::BroadcastLocal)?;
        Ok(self
            .scope
            .broadcast_local(&self.pid, group, topic, payload.into())?)
    }

    /// [`broadcast`](Self::broadcast) of a value encoded with postcard.
    pub fn broadcast_typed<T: Serialize>(
        &self,
        group: &str,
        topic: &str,
        value: &T,
    ) -> Result<usize, PgError> {
        self.live()?;
        self.group(group, Permission::Broadcast)?;
        Ok(self.scope.broadcast_typed(&self.pid, group, topic, value)?)
    }

    /// [`broadcast_local`](Self::broadcast_local) of a value encoded with
    /// postcard.
    pub fn broadcast_local_typed<T: Serialize>(
        &self,
        group: &str,
        topic: &str,
        value: &T,
    ) -> Result<usize, PgError> {
        self.live()?;
        self.group(group, Permission::BroadcastLocal)?;
        Ok(self
            .scope
            .broadcast_local_typed(&self.pid, group, topic, value)?)
    }

    /// Subscribes to `group`'s joins and leaves and returns its current
    /// members with their join counts, atomically (`pg.monitor`): applying
    /// the events that follow to the snapshot gives the membership exactly.
    /// The subscription ends with the process.
    pub fn monitor(&self, group: &str) -> Result<(Subscription, Members), PgError> {
        self.live()?;
        let group = self.group(group, Permission::Monitor)?;
        Ok(self.scope.monitor(&group, Some(&self.pid))?)
    }

    /// Subscribes to every group's changes and returns every group's
    /// members with their join counts, atomically (`pg.events`).
    pub fn events(&self) -> Result<(Subscription, GroupsSnapshot), PgError> {
        self.live()?;
        self.check(Permission::Events, self.id())?;
        Ok(self.scope.events(Some(&self.pid))?)
    }

    /// Releases the instance at once: its subscriptions end (after the
    /// events already queued) and every later call fails. Memberships stay
    /// (they belong to the process). Idempotent: returns whether this call
    /// released it.
    pub fn release(&self) -> bool {
        let first = !self.released.swap(true, Ordering::AcqRel);
        if first {
            self.scope.close_owned(&self.pid);
        }
        first
    }
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("scope", &self.id())
            .field("pid", &self.pid)
            .finish()
    }
}
