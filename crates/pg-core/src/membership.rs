//! The membership table: who is in which group, for every node's part.
//!
//! Layout, chosen for O(log n) joins and leaves whatever the group's size,
//! O(1) snapshot reads, and a small footprint per membership:
//! - nodes get a 16-bit slot (slot 0 is this node); a member is one packed
//!   word, slot and 48-bit serial ([`MemberKey`]);
//! - each group keeps this node's members and the other nodes' in two
//!   [`MemberList`]s: persistent vectors with join counts, so a read shares
//!   them (a snapshot) and a change copies only one path of a tree whose
//!   nodes a snapshot still shares, never the whole list;
//! - each node part keeps process serial -> groups, so a process exit or a
//!   node going down costs O(its memberships), the latter spread over
//!   bounded steps (`membership/removal.rs`).

mod fresh;
mod removal;

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::event::{Change, EventKind, EventQueue};
use crate::group::GroupName;
use crate::id::{NodeId, NodeName, Pid};
pub(crate) use crate::member_list::{LOCAL_SLOT, Slot};
use crate::member_list::{ListSnapshot, MemberKey, MemberList};
use crate::members::Members;
use crate::meta::{LeaveReason, Meta};

/// What a join does to the member's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MetaUpdate {
    /// Leaves it as it is (a plain join).
    Keep,
    /// Replaces it (a join with metadata; `None` clears it, as a resync
    /// does for a member whose owner holds none).
    Set(Option<Meta>),
}

/// Index of a group in the table; reused only after the group is empty.
pub(crate) type GroupId = u32;

#[derive(Debug)]
struct Group {
    name: GroupName,
    local: MemberList,
    remote: MemberList,
}

impl Group {
    fn new(name: GroupName) -> Self {
        Self {
            name,
            local: MemberList::default(),
            remote: MemberList::default(),
        }
    }

    fn list(&self, key: MemberKey) -> &MemberList {
        if key.slot() == LOCAL_SLOT {
            &self.local
        } else {
            &self.remote
        }
    }

    fn list_mut(&mut self, key: MemberKey) -> &mut MemberList {
        if key.slot() == LOCAL_SLOT {
            &mut self.local
        } else {
            &mut self.remote
        }
    }

    /// Sum of join counts (what `max_members_per_group` limits).
    fn total(&self) -> u64 {
        self.local.total() + self.remote.total()
    }
}

/// One node run's own memberships.
#[derive(Debug)]
struct Part {
    node: NodeId,
    /// Version of this part: the origin's `seq` it reflects.
    seq: u64,
    /// Process serial -> groups it is in (each once, whatever its count).
    processes: FxHashMap<u64, Vec<GroupId>>,
    /// Sum of all join counts in this part.
    memberships: u64,
    /// The groups a first sync added this part's members to, whose
    /// processes are not in `processes` yet (see `fresh.rs`).
    unindexed: Vec<GroupId>,
    /// Its node went down and it is being removed (`removal.rs`).
    detached: bool,
}

/// Error: all 65 535 remote node slots are in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotsExhausted;

/// Groups and members of every node part known to this scope.
#[derive(Debug)]
pub(crate) struct Membership {
    nodes: Arc<Vec<Option<NodeId>>>,
    slots: FxHashMap<NodeName, Slot>,
    free_slots: Vec<Slot>,
    parts: Vec<Option<Part>>,
    groups: Vec<Option<Group>>,
    group_ids: FxHashMap<GroupName, GroupId>,
    free_groups: Vec<GroupId>,
    /// Groups with at least one local member.
    local_groups: usize,
    /// Bumped whenever a group appears or disappears.
    groups_epoch: u64,
    /// Bumped whenever a group gains its first or loses its last local
    /// member.
    local_groups_epoch: u64,
    /// Detached parts being removed, oldest first (`removal.rs`).
    removals: VecDeque<removal::Removal>,
}

impl Membership {
    pub(crate) fn new(local: NodeId) -> Self {
        let mut slots = FxHashMap::default();
        slots.insert(local.name.clone(), LOCAL_SLOT);
        Self {
            nodes: Arc::new(vec![Some(local.clone())]),
            slots,
            free_slots: Vec::new(),
            parts: vec![Some(Part {
                node: local,
                seq: 0,
                processes: FxHashMap::default(),
                unindexed: Vec::new(),
                memberships: 0,
                detached: false,
            })],
            groups: Vec::new(),
            group_ids: FxHashMap::default(),
            free_groups: Vec::new(),
            local_groups: 0,
            groups_epoch: 0,
            local_groups_epoch: 0,
            removals: VecDeque::new(),
        }
    }

    // ----- node parts -------------------------------------------------

    /// The slot holding exactly this node run, if any.
    pub(crate) fn slot_of(&self, node: &NodeId) -> Option<Slot> {
        let slot = *self.slots.get(&node.name)?;
        (self.part(slot).node.incarnation == node.incarnation).then_some(slot)
    }

    /// The slot holding any run of the node called `name`.
    pub(crate) fn slot_of_name(&self, name: &NodeName) -> Option<Slot> {
        self.slots.get(name).copied()
    }

    /// The node run in `slot`.
    pub(crate) fn node(&self, slot: Slot) -> &NodeId {
        &self.part(slot).node
    }

    fn part(&self, slot: Slot) -> &Part {
        // Invariant: slots handed out by this table always hold a part until
        // a removal frees them (`removal.rs`), and callers only use live slots.
        self.parts[usize::from(slot)]
            .as_ref()
            .expect("slot without a part")
    }

    fn part_mut(&mut self, slot: Slot) -> &mut Part {
        // Invariant: as in `part`.
        self.parts[usize::from(slot)]
            .as_mut()
            .expect("slot without a part")
    }

    pub(crate) fn seq(&self, slot: Slot) -> u64 {
        self.part(slot).seq
    }

    pub(crate) fn set_seq(&mut self, slot: Slot, seq: u64) {
        self.part_mut(slot).seq = seq;
    }

    /// Total join count held by the part in `slot`.
    pub(crate) fn part_memberships(&self, slot: Slot) -> u64 {
        self.part(slot).memberships
    }

    /// Adds an empty part for `node` (no run of that name may be present).
    pub(crate) fn add_part(&mut self, node: NodeId) -> Result<Slot, SlotsExhausted> {
        debug_assert!(!self.slots.contains_key(&node.name));
        let slot = match self.free_slots.pop() {
            Some(slot) => slot,
            None => {
                let next = self.parts.len();
                if next > usize::from(Slot::MAX) {
                    return Err(SlotsExhausted);
                }
                self.parts.push(None);
                Arc::make_mut(&mut self.nodes).push(None);
                next as Slot
            }
        };
        self.slots.insert(node.name.clone(), slot);
        Arc::make_mut(&mut self.nodes)[usize::from(slot)] = Some(node.clone());
        self.parts[usize::from(slot)] = Some(Part {
            node,
            seq: 0,
            processes: FxHashMap::default(),
            unindexed: Vec::new(),
            memberships: 0,
            detached: false,
        });
        Ok(slot)
    }

    /// Slots of every remote part, except detached ones.
    pub(crate) fn remote_slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.parts
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, p)| p.as_ref().is_some_and(|p| !p.detached))
            .map(|(i, _)| i as Slot)
    }

    /// Every membership of the part in `slot` as (group id, serial) -> count.
    pub(crate) fn part_counts(&mut self, slot: Slot) -> FxHashMap<(GroupId, u64), u32> {
        self.ensure_index(slot);
        let part = self.part(slot);
        let mut out = FxHashMap::default();
        out.reserve(part.processes.len());
        for (&serial, gids) in &part.processes {
            let key = MemberKey::new(slot, serial);
            for &gid in gids {
                out.insert((gid, serial), self.group(gid).list(key).count(key));
            }
        }
        out
    }

    // ----- groups -----------------------------------------------------

    fn group(&self, gid: GroupId) -> &Group {
        // Invariant: ids come from `group_ids` or a part's process list, both
        // of which only name live groups.
        self.groups[gid as usize]
            .as_ref()
            .expect("dangling group id")
    }

    fn group_mut(&mut self, gid: GroupId) -> &mut Group {
        // Invariant: as in `group`.
        self.groups[gid as usize]
            .as_mut()
            .expect("dangling group id")
    }

    pub(crate) fn group_id(&self, name: &str) -> Option<GroupId> {
        self.group_ids.get(name).copied()
    }

    /// Sum of join counts in the group (0 for an unknown group).
    pub(crate) fn group_total(&self, name: &str) -> u64 {
        self.group_id(name).map_or(0, |gid| self.group(gid).total())
    }

    /// Number of groups with at least one member.
    pub(crate) fn group_count(&self) -> usize {
        self.group_ids.len()
    }

    /// Number of groups with at least one local member.
    pub(crate) fn local_group_count(&self) -> usize {
        self.local_groups
    }

    /// Changes whenever the set of groups changes.
    pub(crate) fn groups_epoch(&self) -> u64 {
        self.groups_epoch
    }

    /// Changes whenever the set of groups with a local member changes.
    pub(crate) fn local_groups_epoch(&self) -> u64 {
        self.local_groups_epoch
    }

    /// How many times `serial` of `slot` joined `name` (0 if not a member).
    pub(crate) fn count(&self, slot: Slot, serial: u64, name: &str) -> u32 {
        self.group_id(name)
            .map_or(0, |gid| self.count_in(slot, serial, gid))
    }

    /// Join count of `serial` of `slot` in group `gid`.
    pub(crate) fn count_in(&self, slot: Slot, serial: u64, gid: GroupId) -> u32 {
        let key = MemberKey::new(slot, serial);
        self.group(gid).list(key).count(key)
    }

    /// Metadata of `serial` of `slot` in group `gid`.
    pub(crate) fn meta_in(&self, slot: Slot, serial: u64, gid: GroupId) -> Option<Meta> {
        let key = MemberKey::new(slot, serial);
        self.group(gid).list(key).meta(key)
    }

    /// Metadata of `serial` of `slot` in group `name`.
    pub(crate) fn meta(&self, slot: Slot, serial: u64, name: &str) -> Option<Meta> {
        self.group_id(name)
            .and_then(|gid| self.meta_in(slot, serial, gid))
    }

    pub(crate) fn pid(&self, slot: Slot, serial: u64) -> Pid {
        Pid::new_unchecked(self.part(slot).node.clone(), serial)
    }

    /// Adds `n` join references of process `serial` of `slot` to `group`.
    /// The caller has checked that the count does not overflow.
    pub(crate) fn add(
        &mut self,
        slot: Slot,
        serial: u64,
        group: &GroupName,
        n: u32,
        meta: MetaUpdate,
        events: &mut EventQueue,
    ) {
        if n == 0 {
            return;
        }
        self.ensure_index(slot);
        let gid = match self.group_ids.get(group.as_str()) {
            Some(&gid) => gid,
            None => self.create_group(group.clone()),
        };
        let key = MemberKey::new(slot, serial);
        let g = self.group_mut(gid);
        let had_locals = g.local.distinct() > 0;
        let list = g.list_mut(key);
        let new_member = list.add(key, n);
        let detailed = events.detailed();
        let (meta, previous) = match meta {
            MetaUpdate::Keep if !detailed => (None, None),
            MetaUpdate::Keep => {
                let meta = list.meta(key);
                (meta.clone(), meta)
            }
            MetaUpdate::Set(meta) => {
                let previous = list.set_meta(key, meta.clone());
                (meta, previous)
            }
        };
        if slot == LOCAL_SLOT && !had_locals {
            self.local_groups += 1;
            self.local_groups_epoch += 1;
        }
        let part = self.part_mut(slot);
        part.memberships += u64::from(n);
        if new_member {
            part.processes.entry(serial).or_default().push(gid);
        }
        if !detailed {
            events.touch(group);
            return;
        }
        events.push(Change {
            kind: EventKind::Joined,
            group,
            pid: self.pid(slot, serial),
            count: n,
            meta,
            previous,
            reason: None,
        });
    }

    /// Sets the metadata of member `serial` of `slot` in group `gid`,
    /// reporting a change as an update event.
    pub(crate) fn set_meta(
        &mut self,
        slot: Slot,
        serial: u64,
        gid: GroupId,
        meta: Option<Meta>,
        events: &mut EventQueue,
    ) {
        let key = MemberKey::new(slot, serial);
        let list = self.group_mut(gid).list_mut(key);
        if list.count(key) == 0 {
            return;
        }
        let previous = list.set_meta(key, meta.clone());
        if previous == meta {
            return;
        }
        let group = self.group(gid).name.clone();
        events.push(Change {
            kind: EventKind::Updated,
            group: &group,
            pid: self.pid(slot, serial),
            count: 0,
            meta,
            previous,
            reason: None,
        });
    }

    /// Removes up to `n` join references of process `serial` of `slot` from
    /// group `gid`; returns how many were removed.
    pub(crate) fn sub(
        &mut self,
        slot: Slot,
        serial: u64,
        gid: GroupId,
        n: u32,
        reason: LeaveReason,
        events: &mut EventQueue,
    ) -> u32 {
        self.sub_member(slot, serial, gid, n, reason, events, true)
    }

    /// [`Self::sub`]; with `fix_index` false the process's entry in the
    /// pid -> groups index is left alone (the caller removed it whole).
    #[allow(clippy::too_many_arguments)] // one private helper of `sub`
    fn sub_member(
        &mut self,
        slot: Slot,
        serial: u64,
        gid: GroupId,
        n: u32,
        reason: LeaveReason,
        events: &mut EventQueue,
        fix_index: bool,
    ) -> u32 {
        self.ensure_index(slot);
        let key = MemberKey::new(slot, serial);
        let detailed = events.detailed();
        let g = self.group_mut(gid);
        let list = g.list_mut(key);
        let meta = if detailed { list.meta(key) } else { None };
        let (removed, gone) = list.sub(key, n);
        if removed == 0 {
            return 0;
        }
        if gone && slot == LOCAL_SLOT && g.local.distinct() == 0 {
            self.local_groups -= 1;
            self.local_groups_epoch += 1;
        }
        let part = self.part_mut(slot);
        part.memberships -= u64::from(removed);
        if gone
            && fix_index
            && let Some(gids) = part.processes.get_mut(&serial)
        {
            if let Some(i) = gids.iter().position(|&g| g == gid) {
                gids.swap_remove(i);
            }
            if gids.is_empty() {
                part.processes.remove(&serial);
            }
        }
        if detailed {
            let name = self.group(gid).name.clone();
            events.push(Change {
                kind: EventKind::Left,
                group: &name,
                pid: self.pid(slot, serial),
                count: removed,
                meta,
                previous: None,
                reason: Some(reason),
            });
        } else {
            events.touch(&self.group(gid).name);
        }
        if self.group(gid).total() == 0 {
            self.delete_group(gid);
        }
        removed
    }

    /// Removes every membership of process `serial` of `slot`; returns the
    /// number of join references removed.
    pub(crate) fn remove_process(
        &mut self,
        slot: Slot,
        serial: u64,
        reason: LeaveReason,
        events: &mut EventQueue,
    ) -> u64 {
        // The process leaves all of its groups: its index entry goes once,
        // up front, rather than being edited group by group.
        self.ensure_index(slot);
        let Some(gids) = self.part_mut(slot).processes.remove(&serial) else {
            return 0;
        };
        let mut removed = 0;
        for gid in gids {
            removed +=
                u64::from(self.sub_member(slot, serial, gid, u32::MAX, reason, events, false));
        }
        removed
    }

    fn create_group(&mut self, name: GroupName) -> GroupId {
        let group = Group::new(name.clone());
        let gid = match self.free_groups.pop() {
            Some(gid) => {
                self.groups[gid as usize] = Some(group);
                gid
            }
            None => {
                self.groups.push(Some(group));
                (self.groups.len() - 1) as GroupId
            }
        };
        self.group_ids.insert(name, gid);
        self.groups_epoch += 1;
        gid
    }

    fn delete_group(&mut self, gid: GroupId) {
        if let Some(group) = self.groups[gid as usize].take() {
            self.group_ids.remove(&group.name);
            self.free_groups.push(gid);
            self.groups_epoch += 1;
        }
    }

    // ----- reads ------------------------------------------------------

    fn snapshot(&self, group: &Group, local_only: bool) -> Members {
        let remote = if local_only {
            Default::default()
        } else {
            group.remote.snapshot()
        };
        Members::new(group.local.snapshot(), remote, Arc::clone(&self.nodes))
    }

    fn empty_members(&self) -> Members {
        Members::new(
            Default::default(),
            Default::default(),
            Arc::clone(&self.nodes),
        )
    }

    /// Members of `name` on every node (empty for an unknown group).
    pub(crate) fn members(&self, name: &str) -> Members {
        match self.group_id(name) {
            Some(gid) => self.snapshot(self.group(gid), false),
            None => self.empty_members(),
        }
    }

    /// Members of `name` on this node.
    pub(crate) fn local_members(&self, name: &str) -> Members {
        match self.group_id(name) {
            Some(gid) => self.snapshot(self.group(gid), true),
            None => self.empty_members(),
        }
    }

    /// Every group with a member, with its members.
    pub(crate) fn all_groups(&self) -> impl Iterator<Item = (&GroupName, Members)> {
        self.groups
            .iter()
            .flatten()
            .map(move |g| (&g.name, self.snapshot(g, false)))
    }

    /// Every group with a local member, with its local members.
    pub(crate) fn local_groups(&self) -> impl Iterator<Item = (&GroupName, Members)> {
        self.groups
            .iter()
            .flatten()
            .filter(|g| g.local.distinct() > 0)
            .map(move |g| (&g.name, self.snapshot(g, true)))
    }

    /// Join count of `serial` of `slot` in every group it is in.
    pub(crate) fn process_counts(&self, slot: Slot, serial: u64) -> Vec<(GroupName, u32)> {
        let key = MemberKey::new(slot, serial);
        let counts = |gids: &[GroupId]| {
            gids.iter()
                .map(|&gid| {
                    let g = self.group(gid);
                    (g.name.clone(), g.list(key).count(key))
                })
                .collect()
        };
        if let Some(gids) = self.unindexed_groups_of(slot, serial) {
            return counts(&gids);
        }
        self.part(slot)
            .processes
            .get(&serial)
            .map(|gids| counts(gids))
            .unwrap_or_default()
    }
}

impl Membership {
    /// This node's part as it is now, by group name: a snapshot that
    /// copies no member (later changes do not show through it), from
    /// which a sync's pieces are built one at a time.
    pub(crate) fn local_part_snapshot(&self) -> Vec<(GroupName, ListSnapshot)> {
        let mut groups: Vec<_> = self
            .groups
            .iter()
            .flatten()
            .filter(|g| g.local.distinct() > 0)
            .map(|g| (g.name.clone(), g.local.snapshot()))
            .collect();
        groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        groups
    }
}
