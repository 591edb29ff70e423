//! Local commands: joins, leaves and exits of this node's processes, each
//! checked whole against the limits before anything applies.

use rustc_hash::FxHashMap;

use crate::error::{CommandError, Limit};
use crate::frame::Op;
use crate::group::GroupName;
use crate::id::Pid;
use crate::membership::{LOCAL_SLOT, MetaUpdate};
use crate::meta::{LeaveReason, MAX_META_SIZE, Meta};
use crate::registry_event::UnregisterReason;

use super::Scope;

impl Scope {
    /// Process `pid` (of this node) joins each of `groups` once; a group
    /// named twice is joined twice. All or nothing: on error nothing changed.
    pub fn join(&mut self, pid: &Pid, groups: &[GroupName]) -> Result<(), CommandError> {
        self.check_local(pid)?;
        self.check_joins(groups.iter().map(|g| (pid, g)))?;
        for group in groups {
            self.local_join(pid.serial(), group, None);
        }
        self.bump();
        Ok(())
    }

    /// Process `pid` (of this node) joins `group` once more, and `meta`
    /// replaces its metadata there (a first join sets it). The joined
    /// event carries `meta` and the metadata it replaced. Fails, changing
    /// nothing, as [`join`](Self::join) does, or with
    /// [`CommandError::MetaTooLarge`].
    pub fn join_with_meta(
        &mut self,
        pid: &Pid,
        group: &GroupName,
        meta: Meta,
    ) -> Result<(), CommandError> {
        self.check_local(pid)?;
        self.check_meta(&meta)?;
        self.check_joins(std::iter::once((pid, group)))?;
        self.local_join(pid.serial(), group, Some(meta));
        self.bump();
        Ok(())
    }

    /// Each of `pids` (of this node) joins `group` once. All or nothing.
    pub fn join_pids(&mut self, group: &GroupName, pids: &[Pid]) -> Result<(), CommandError> {
        for pid in pids {
            self.check_local(pid)?;
        }
        self.check_joins(pids.iter().map(|p| (p, group)))?;
        for pid in pids {
            self.local_join(pid.serial(), group, None);
        }
        self.bump();
        Ok(())
    }

    /// Process `pid` leaves each of `groups` once. Best effort across the
    /// batch: fails with [`CommandError::NotMember`] (and changes nothing)
    /// only if the process was in none of them.
    pub fn leave(&mut self, pid: &Pid, groups: &[GroupName]) -> Result<(), CommandError> {
        self.check_local(pid)?;
        if groups.is_empty() {
            return Err(CommandError::EmptyBatch);
        }
        let serial = pid.serial();
        let mut removed = 0;
        for group in groups {
            removed += self.local_leave(serial, group);
        }
        self.finish_leave(removed)
    }

    /// Each of `pids` leaves `group` once. Fails with
    /// [`CommandError::NotMember`] (and changes nothing) only if none of
    /// them was in it.
    pub fn leave_pids(&mut self, group: &GroupName, pids: &[Pid]) -> Result<(), CommandError> {
        for pid in pids {
            self.check_local(pid)?;
        }
        if pids.is_empty() {
            return Err(CommandError::EmptyBatch);
        }
        let mut removed = 0;
        for pid in pids {
            removed += self.local_leave(pid.serial(), group);
        }
        self.finish_leave(removed)
    }

    /// Process `pid` exited: it leaves every group it is in, and subscribers
    /// see it leave once per join; every key it held is unregistered.
    /// Returns the number of join references removed (0 for a process that
    /// was in no group).
    pub fn exit(&mut self, pid: &Pid) -> Result<u64, CommandError> {
        self.check_local(pid)?;
        let removed = self.table.remove_process(
            LOCAL_SLOT,
            pid.serial(),
            LeaveReason::Exit,
            &mut self.events,
        );
        let keys = self.reg_remove_process(LOCAL_SLOT, pid.serial(), UnregisterReason::Exit);
        if removed > 0 || keys > 0 {
            self.record(Op::Exit {
                serial: pid.serial(),
            });
            self.bump();
        }
        Ok(removed)
    }

    pub(super) fn check_local(&self, pid: &Pid) -> Result<(), CommandError> {
        if pid.node() != self.local_node() {
            return Err(CommandError::NotLocal {
                pid: pid.clone(),
                local: self.local_node().clone(),
            });
        }
        Ok(())
    }

    /// The configured metadata bound, capped by what the wire carries.
    pub(super) fn max_meta_size(&self) -> usize {
        self.config.max_meta_size.min(MAX_META_SIZE)
    }

    pub(super) fn check_registration_limit(
        &self,
        slot: crate::member_list::Slot,
        added: usize,
    ) -> Result<(), CommandError> {
        let limit = self.config.max_registrations;
        if limit > 0 && self.registry.count(slot) + added > limit {
            return Err(CommandError::LimitExceeded(Limit::MaxRegistrations {
                limit,
            }));
        }
        Ok(())
    }

    pub(super) fn check_meta(&self, meta: &Meta) -> Result<(), CommandError> {
        let limit = self.max_meta_size();
        if meta.len() > limit {
            return Err(CommandError::MetaTooLarge {
                len: meta.len(),
                limit,
            });
        }
        Ok(())
    }

    /// Checks a batch of joins against the limits and join-count overflow.
    pub(super) fn check_joins<'a>(
        &self,
        joins: impl ExactSizeIterator<Item = (&'a Pid, &'a GroupName)>,
    ) -> Result<(), CommandError> {
        match joins.len() {
            0 => Err(CommandError::EmptyBatch),
            1 => {
                let mut joins = joins;
                let Some((pid, group)) = joins.next() else {
                    return Err(CommandError::EmptyBatch);
                };
                let new = usize::from(self.table.group_id(group.as_str()).is_none());
                self.check_group_limit(new)?;
                self.check_member_limit(group, 1)?;
                self.check_count(pid, group, 1)
            }
            _ => {
                let mut per_group: FxHashMap<&GroupName, u64> = FxHashMap::default();
                let mut per_member: FxHashMap<(&Pid, &GroupName), u64> = FxHashMap::default();
                for (pid, group) in joins {
                    *per_group.entry(group).or_default() += 1;
                    *per_member.entry((pid, group)).or_default() += 1;
                }
                let new = per_group
                    .keys()
                    .filter(|g| self.table.group_id(g.as_str()).is_none())
                    .count();
                self.check_group_limit(new)?;
                for (group, added) in per_group {
                    self.check_member_limit(group, added)?;
                }
                for ((pid, group), added) in per_member {
                    self.check_count(pid, group, added)?;
                }
                Ok(())
            }
        }
    }

    pub(super) fn check_group_limit(&self, new_groups: usize) -> Result<(), CommandError> {
        let limit = self.config.max_groups;
        if limit > 0 && new_groups > 0 && self.table.group_count() + new_groups > limit {
            return Err(CommandError::LimitExceeded(Limit::MaxGroups { limit }));
        }
        Ok(())
    }

    pub(super) fn check_member_limit(
        &self,
        group: &GroupName,
        added: u64,
    ) -> Result<(), CommandError> {
        let limit = self.config.max_members_per_group;
        if limit > 0 && self.table.group_total(group.as_str()) + added > limit as u64 {
            return Err(CommandError::LimitExceeded(Limit::MaxMembersPerGroup {
                group: group.clone(),
                limit,
            }));
        }
        Ok(())
    }

    pub(super) fn check_count(
        &self,
        pid: &Pid,
        group: &GroupName,
        added: u64,
    ) -> Result<(), CommandError> {
        let count = u64::from(self.table.count(LOCAL_SLOT, pid.serial(), group.as_str()));
        if count + added > u64::from(u32::MAX) {
            return Err(CommandError::JoinCountOverflow {
                pid: pid.clone(),
                group: group.clone(),
            });
        }
        let limit = self.max_join_count();
        if count + added > u64::from(limit) {
            return Err(CommandError::LimitExceeded(Limit::MaxJoinCount {
                group: group.clone(),
                limit,
            }));
        }
        Ok(())
    }

    pub(super) fn max_join_count(&self) -> u32 {
        match self.config.max_join_count {
            0 => u32::MAX,
            limit => limit,
        }
    }

    pub(super) fn local_join(&mut self, serial: u64, group: &GroupName, meta: Option<Meta>) {
        let update = match &meta {
            Some(meta) => MetaUpdate::Set(Some(meta.clone())),
            None => MetaUpdate::Keep,
        };
        self.table
            .add(LOCAL_SLOT, serial, group, 1, update, &mut self.events);
        self.record(Op::Join {
            group: group.clone(),
            serial,
            count: 1,
            meta,
        });
    }

    pub(super) fn local_leave(&mut self, serial: u64, group: &GroupName) -> u32 {
        let Some(gid) = self.table.group_id(group.as_str()) else {
            return 0;
        };
        let removed = self.table.sub(
            LOCAL_SLOT,
            serial,
            gid,
            1,
            LeaveReason::Left,
            &mut self.events,
        );
        if removed > 0 {
            self.record(Op::Leave {
                group: group.clone(),
                serial,
                count: removed,
            });
        }
        removed
    }

    pub(super) fn finish_leave(&mut self, removed: u32) -> Result<(), CommandError> {
        if removed == 0 {
            return Err(CommandError::NotMember);
        }
        self.bump();
        Ok(())
    }

    /// Queues an op for the next delta; with no peer there is no one to
    /// tell (a peer that comes up later receives a full sync).
    pub(super) fn record(&mut self, op: Op) {
        if self.peers.is_empty() {
            return;
        }
        if self.pending_ops.is_empty() {
            self.pending_base = self.table.seq(LOCAL_SLOT);
        }
        self.pending_bytes += op_bytes(&op);
        self.pending_ops.push(op);
    }

    /// Starts this node's versions after `seq`. For a scope that replaces
    /// an earlier instance of itself on the same node run (disconnected,
    /// then connected again): its peers must never see this node's version
    /// go back. Call before any peer is up; a `seq` below the current
    /// version does nothing.
    pub fn resume_after(&mut self, seq: u64) {
        if seq >= self.table.seq(LOCAL_SLOT) {
            self.table.set_seq(LOCAL_SLOT, seq + 1);
        }
    }

    /// Advances the local version after a command that changed something.
    pub(super) fn bump(&mut self) {
        let seq = self.table.seq(LOCAL_SLOT) + 1;
        self.table.set_seq(LOCAL_SLOT, seq);
    }
}

/// An upper estimate of an op's encoded size: names and metadata, plus
/// the varints and tags around them.
fn op_bytes(op: &Op) -> usize {
    const OVERHEAD: usize = 32;
    let meta = |m: &Option<crate::Meta>| m.as_ref().map_or(0, |m| m.len());
    OVERHEAD
        + match op {
            Op::Join { group, meta: m, .. } => group.as_str().len() + meta(m),
            Op::Leave { group, .. } => group.as_str().len(),
            Op::Register {
                key, meta: m, tag, ..
            } => key.as_str().len() + meta(m) + tag.as_ref().map_or(0, |t| t.as_str().len()),
            Op::Unregister { key, .. } => key.as_str().len(),
            Op::Exit { .. } => 0,
        }
}
