//! Reads of the view: members, groups, counts and versions.

use crate::frame::PartVersion;
use crate::group::GroupName;
use crate::id::{NodeId, Pid};
use crate::members::Members;
use crate::membership::LOCAL_SLOT;
use crate::meta::Meta;

use super::Scope;

impl Scope {
    /// Members of `group` on every node, each process once per join, with
    /// counts (empty for an unknown group). Copies nothing.
    pub fn members(&self, group: &str) -> Members {
        self.table.members(group)
    }

    /// Members of `group` on this node, as [`members`](Self::members).
    pub fn local_members(&self, group: &str) -> Members {
        self.table.local_members(group)
    }

    /// Every group with at least one member anywhere.
    pub fn which_groups(&self) -> Vec<GroupName> {
        self.table.all_groups().map(|(g, _)| g.clone()).collect()
    }

    /// Every group with at least one member on this node.
    pub fn which_local_groups(&self) -> Vec<GroupName> {
        self.table.local_groups().map(|(g, _)| g.clone()).collect()
    }

    /// Number of groups with at least one member anywhere.
    pub fn group_count(&self) -> usize {
        self.table.group_count()
    }

    /// Number of groups with at least one member on this node.
    pub fn local_group_count(&self) -> usize {
        self.table.local_group_count()
    }

    /// A number that changes whenever the set [`which_groups`](Self::which_groups)
    /// returns changes, so a runtime can cache that list and rebuild it only
    /// when this moves.
    pub fn groups_epoch(&self) -> u64 {
        self.table.groups_epoch()
    }

    /// As [`groups_epoch`](Self::groups_epoch), for
    /// [`which_local_groups`](Self::which_local_groups).
    pub fn local_groups_epoch(&self) -> u64 {
        self.table.local_groups_epoch()
    }

    /// Every group with its members: the whole view, copying no member list.
    pub fn snapshot(&self) -> Vec<(GroupName, Members)> {
        self.table
            .all_groups()
            .map(|(g, m)| (g.clone(), m))
            .collect()
    }

    /// The groups `pid` is in, with its join count in each (empty for a
    /// process of a node whose part is not held).
    pub fn groups_of(&self, pid: &Pid) -> Vec<(GroupName, u32)> {
        match self.table.slot_of(pid.node()) {
            Some(slot) => self.table.process_counts(slot, pid.serial()),
            None => Vec::new(),
        }
    }

    /// How many times `pid` joined `group` (0 if not a member).
    pub fn join_count(&self, pid: &Pid, group: &str) -> u32 {
        match self.table.slot_of(pid.node()) {
            Some(slot) => self.table.count(slot, pid.serial(), group),
            None => 0,
        }
    }

    /// The metadata of `pid` in `group` (`None` if not a member, or a
    /// member without metadata).
    pub fn meta_of(&self, pid: &Pid, group: &str) -> Option<Meta> {
        let slot = self.table.slot_of(pid.node())?;
        self.table.meta(slot, pid.serial(), group)
    }

    /// This node's version: `(node run, seq)`.
    pub fn version(&self) -> PartVersion {
        PartVersion {
            node: self.local_node().clone(),
            seq: self.table.seq(LOCAL_SLOT),
        }
    }

    /// The version of every part held, this node's first.
    pub fn parts(&self) -> impl Iterator<Item = PartVersion> + '_ {
        std::iter::once(self.version()).chain(self.table.remote_slots().map(|slot| PartVersion {
            node: self.table.node(slot).clone(),
            seq: self.table.seq(slot),
        }))
    }

    /// Join references held for node run `node` (0 if its part is not held).
    pub fn part_memberships(&self, node: &NodeId) -> u64 {
        self.table
            .slot_of(node)
            .map_or(0, |slot| self.table.part_memberships(slot))
    }
}
