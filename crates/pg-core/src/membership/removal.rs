//! Removing a downed node's part in bounded steps.
//!
//! When a peer goes down, every membership of its part goes, each with an
//! event. A part can hold millions of memberships: removed in one step, a
//! part of 1M held the writer (and so every caller waiting to join or
//! leave) for a quarter of a second. Instead the part is *detached* at
//! once and then removed a bounded amount of work per step:
//! - detached, it is no longer found by its node's name, so a new run of
//!   the node gets a slot of its own, and it is left out of the versions a
//!   digest reports; its slot (and so its node id, which names its pids to
//!   readers) stays taken until the last member is gone;
//! - its processes are first indexed by group, then its groups are emptied
//!   in group id order: a group whose remote members are all the part's
//!   loses its remote list at once (its events consecutive, so they merge
//!   into one per group), a group shared with other nodes loses the part's
//!   members one by one, in serial order.
//!
//! Readers and subscribers see the part go group by group, as they see a
//! mass exit go process by process; every membership still gets exactly
//! one event. A step is bounded at group granularity for a group the part
//! holds alone (its list goes whole) and at process granularity while
//! indexing. Point reads by pid (`groups_of`, `join_count`) find a
//! detached run's pids no longer, while member lists still show the ones
//! not yet removed.
//!
//! The one case that cannot wait is the same node run coming back before
//! its old part is gone (a link that flapped): its pids would be listed
//! twice, and a `left` for the old entry would follow the `joined` of the
//! new one, so that removal is finished at once
//! ([`Membership::finish_removal_of`]).

use rustc_hash::FxHashMap;

use super::{GroupId, Membership, Slot};
use crate::event::{Change, EventKind, EventQueue};
use crate::id::NodeId;
use crate::member_list::LOCAL_SLOT;
use crate::meta::LeaveReason;

/// A detached part on its way out.
#[derive(Debug)]
pub(super) struct Removal {
    slot: Slot,
    reason: LeaveReason,
    /// Processes of the part not yet indexed by group.
    unindexed: FxHashMap<u64, Vec<GroupId>>,
    /// How many processes the part had: no group holds more of them.
    processes: usize,
    /// Serials of the part in each group, for the processes indexed.
    by_group: FxHashMap<GroupId, Vec<u64>>,
    /// Groups left to empty, highest id first (taken from the end) once
    /// indexing ends; filled as indexing meets them.
    order: Vec<GroupId>,
    /// Whether the serials of the group at the end of `order` are sorted
    /// (highest first, taken from the end).
    sorted: bool,
}

impl Membership {
    /// Detaches the remote part in `slot` (see the module docs); later
    /// [`remove_detached`](Self::remove_detached) steps remove its members.
    pub(crate) fn detach_part(&mut self, slot: Slot, reason: LeaveReason) {
        debug_assert_ne!(slot, LOCAL_SLOT, "the local part is never detached");
        self.ensure_index(slot);
        let part = self.part_mut(slot);
        part.detached = true;
        let unindexed = std::mem::take(&mut part.processes);
        let processes = unindexed.len();
        let name = part.node.name.clone();
        self.slots.remove(&name);
        self.removals.push_back(Removal {
            slot,
            reason,
            unindexed,
            processes,
            by_group: FxHashMap::default(),
            order: Vec::new(),
            sorted: false,
        });
    }

    /// Whether detached parts still hold members.
    pub(crate) fn removing(&self) -> bool {
        !self.removals.is_empty()
    }

    /// Removes detached parts, oldest first, for about `budget` units of
    /// work (a unit is one membership indexed or removed; a group dropped
    /// whole counts its members); says whether more remains.
    pub(crate) fn remove_detached(&mut self, budget: u64, events: &mut EventQueue) -> bool {
        let mut spent = 0;
        while spent < budget {
            let Some(mut removal) = self.removals.pop_front() else {
                break;
            };
            if self.advance(&mut removal, budget, &mut spent, events) {
                self.free_slot(removal.slot);
            } else {
                self.removals.push_front(removal);
            }
        }
        self.removing()
    }

    /// Finishes at once the removal of node run `node`'s detached part, if
    /// one is under way: that run is back, and its pids must not be listed
    /// twice nor lose a membership to a late event (see the module docs).
    pub(crate) fn finish_removal_of(&mut self, node: &NodeId, events: &mut EventQueue) {
        while let Some(i) = self
            .removals
            .iter()
            .position(|r| self.part(r.slot).node == *node)
        {
            // Invariant: `i` was just found in the queue.
            let mut removal = self.removals.remove(i).expect("removal just found");
            let mut spent = 0;
            let done = self.advance(&mut removal, u64::MAX, &mut spent, events);
            debug_assert!(done, "an unbounded step finishes the removal");
            self.free_slot(removal.slot);
        }
    }

    /// Works on `removal` until `spent` reaches `budget`; says whether the
    /// part is empty.
    fn advance(
        &mut self,
        removal: &mut Removal,
        budget: u64,
        spent: &mut u64,
        events: &mut EventQueue,
    ) -> bool {
        if !removal.unindexed.is_empty() {
            // `extract_if` keeps what the loop does not reach.
            for (serial, gids) in removal.unindexed.extract_if(|_, _| true) {
                *spent += gids.len() as u64;
                for gid in gids {
                    removal
                        .by_group
                        .entry(gid)
                        // Sized for the most it can hold, and listed in
                        // `order` as it comes: no allocation grows late in
                        // the indexing (the part's processes free their
                        // group lists meanwhile, and glibc folds those
                        // frees into one pause at the next large
                        // allocation or free: 9 ms at 100k processes; one
                        // such pause remains, at the end of indexing).
                        .or_insert_with(|| {
                            removal.order.push(gid);
                            let most = self.group(gid).remote.distinct();
                            Vec::with_capacity(most.min(removal.processes))
                        })
                        .push(serial);
                }
                if *spent >= budget {
                    break;
                }
            }
            if !removal.unindexed.is_empty() {
                return false;
            }
            removal.unindexed = FxHashMap::default();
            removal.order.sort_unstable_by(|a, b| b.cmp(a));
        }
        let (slot, reason) = (removal.slot, removal.reason);
        while *spent < budget {
            let Some(&gid) = removal.order.last() else {
                return true;
            };
            // Invariant: `order` and `by_group` hold the same groups.
            let serials = removal.by_group.get_mut(&gid).expect("group indexed");
            // Nothing but this removal takes the part's members out of a
            // group, so all of `serials` are still in it.
            if self.group(gid).remote.distinct() == serials.len() {
                *spent += serials.len() as u64;
                self.drop_remote_list(slot, gid, reason, events);
                serials.clear();
            } else {
                if !removal.sorted {
                    serials.sort_unstable_by(|a, b| b.cmp(a));
                    removal.sorted = true;
                }
                while *spent < budget
                    && let Some(serial) = serials.pop()
                {
                    *spent += 1;
                    self.sub_member(slot, serial, gid, u32::MAX, reason, events, false);
                }
            }
            if serials.is_empty() {
                removal.by_group.remove(&gid);
                removal.order.pop();
                removal.sorted = false;
            }
        }
        removal.order.is_empty()
    }

    /// Drops group `gid`'s remote list, every member of which is the part
    /// in `slot`'s, with one event per member.
    fn drop_remote_list(
        &mut self,
        slot: Slot,
        gid: GroupId,
        reason: LeaveReason,
        events: &mut EventQueue,
    ) {
        let list = std::mem::take(&mut self.group_mut(gid).remote);
        debug_assert!(list.iter().all(|(key, _)| key.slot() == slot));
        self.part_mut(slot).memberships -= list.total();
        let name = self.group(gid).name.clone();
        if events.detailed() {
            for (key, count, meta) in list.iter_meta() {
                events.push(Change {
                    kind: EventKind::Left,
                    group: &name,
                    pid: self.pid(slot, key.serial()),
                    count,
                    meta,
                    previous: None,
                    reason: Some(reason),
                });
            }
        } else {
            events.touch(&name);
        }
        if self.group(gid).total() == 0 {
            self.delete_group(gid);
        }
    }

    /// Frees the slot of a detached part once it is empty.
    fn free_slot(&mut self, slot: Slot) {
        debug_assert_eq!(self.part(slot).memberships, 0);
        self.parts[usize::from(slot)] = None;
        std::sync::Arc::make_mut(&mut self.nodes)[usize::from(slot)] = None;
        self.free_slots.push(slot);
    }
}
