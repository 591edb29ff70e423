//! A remote part's first sync, added in bulk.
//!
//! When a peer is new (or restarted), its part arrives whole and this node
//! holds nothing of it: every member it lists is new. The general path
//! ([`Membership::add`]) looks each member up in its group's list three
//! times (its current count, where to add it, its metadata) and its
//! process entry once, in the sync's order, which is by group. With a
//! million memberships over 100k processes, that last lookup is a cache
//! miss per membership into a table of 100k entries, each growing its
//! group vector one push at a time: half of the whole apply.
//!
//! Here each group's members are appended without a lookup (none is a
//! member; a group that holds no remote member yet gets its list built at
//! once, see [`MemberList::fill_new`](crate::member_list::MemberList::fill_new)),
//! and the (process, group) pairs are collected, radix-sorted by
//! process (stable, so each process keeps its groups in sync order, as
//! the general path would leave them) and stored one exact-size vector
//! per process, one table insertion each. Events are the same as the
//! general path's, in the same order.

use rustc_hash::FxHashMap;

use super::{GroupId, Membership, Slot};
use crate::event::{Change, EventKind, EventQueue};
use crate::frame::SyncGroup;
use crate::member_list::{LOCAL_SLOT, MemberKey};

impl Membership {
    /// Whether the part in `slot` holds no membership (its sync can take
    /// [`add_fresh_part`](Self::add_fresh_part)).
    pub(crate) fn part_is_empty(&self, slot: Slot) -> bool {
        self.part(slot).memberships == 0
    }

    /// Adds every membership of `groups` (a validated sync: groups by
    /// name, members by serial, each once) to the remote part in `slot`,
    /// which holds nothing yet.
    pub(crate) fn add_fresh_part(
        &mut self,
        slot: Slot,
        groups: Vec<SyncGroup>,
        events: &mut EventQueue,
    ) {
        debug_assert!(slot != LOCAL_SLOT && self.part_is_empty(slot));
        let entries: usize = groups.iter().map(|g| g.members.len()).sum();
        // Members are by serial: each group's last is its largest.
        let max_serial = groups
            .iter()
            .filter_map(|g| g.members.last())
            .map(|&(serial, _)| serial)
            .max()
            .unwrap_or(0);
        let mut pairs = Pairs::with_capacity(entries, max_serial);
        let detailed = events.detailed();
        let mut added = 0u64;
        for SyncGroup {
            group,
            members,
            metas,
        } in groups
        {
            if members.is_empty() {
                continue;
            }
            let gid = match self.group_ids.get(group.as_str()) {
                Some(&gid) => gid,
                None => self.create_group(group.clone()),
            };
            for &(serial, n) in &members {
                added += u64::from(n);
                pairs.push(serial, gid);
            }
            if detailed {
                let mut metas = metas.iter();
                for &(serial, n) in &members {
                    events.push(Change {
                        kind: EventKind::Joined,
                        group: &group,
                        pid: self.pid(slot, serial),
                        count: n,
                        meta: metas.next().cloned().flatten(),
                        previous: None,
                        reason: None,
                    });
                }
            }
            let remote = &mut self.group_mut(gid).remote;
            let mut metas = metas.into_iter();
            let entries = members
                .into_iter()
                .map(|(serial, n)| (MemberKey::new(slot, serial), n, metas.next().flatten()));
            if remote.distinct() == 0 {
                // A group none of whose remote members came first (always,
                // on a node that is new to the cluster): filled at once.
                remote.fill_new(entries);
            } else {
                for (key, n, meta) in entries {
                    remote.push_new(key, n, meta);
                }
            }
            if !detailed {
                events.touch(&group);
            }
        }
        let part = self.part_mut(slot);
        part.memberships += added;
        part.processes = pairs.into_index();
    }
}

/// (process serial, group) pairs in sync order, kept in 8 bytes each when
/// every serial fits in 32 bits (any node short of four billion
/// processes): half the memory to fill and sort of the 16-byte form.
enum Pairs {
    Narrow(Vec<(u32, GroupId)>),
    Wide(Vec<(u64, GroupId)>),
}

impl Pairs {
    fn with_capacity(entries: usize, max_serial: u64) -> Self {
        if u32::try_from(max_serial).is_ok() {
            Self::Narrow(Vec::with_capacity(entries))
        } else {
            Self::Wide(Vec::with_capacity(entries))
        }
    }

    fn push(&mut self, serial: u64, gid: GroupId) {
        if let Self::Narrow(v) = self {
            match u32::try_from(serial) {
                Ok(narrow) => return v.push((narrow, gid)),
                // Only if the largest serial given was wrong (it is read
                // from validated, sorted groups): widen, never truncate.
                Err(_) => {
                    let wide = v.iter().map(|&(s, g)| (u64::from(s), g)).collect();
                    *self = Self::Wide(wide);
                }
            }
        }
        if let Self::Wide(v) = self {
            v.push((serial, gid));
        }
    }

    /// Process serial -> its groups, in sync order: a stable sort by
    /// serial, then one exact-size vector per process.
    fn into_index(self) -> FxHashMap<u64, Vec<GroupId>> {
        match self {
            Self::Narrow(mut v) => {
                radsort::sort_by_key(&mut v, |&(serial, _)| serial);
                index(&v, |&(serial, _)| u64::from(serial))
            }
            Self::Wide(mut v) => {
                radsort::sort_by_key(&mut v, |&(serial, _)| serial);
                index(&v, |&(serial, _)| serial)
            }
        }
    }
}

/// The index of pairs sorted by serial.
fn index<S: PartialEq + Copy>(
    sorted: &[(S, GroupId)],
    serial: impl Fn(&(S, GroupId)) -> u64,
) -> FxHashMap<u64, Vec<GroupId>> {
    let runs = || sorted.chunk_by(|a, b| a.0 == b.0);
    let mut processes = FxHashMap::default();
    processes.reserve(runs().count());
    for run in runs() {
        let groups: Vec<GroupId> = run.iter().map(|&(_, gid)| gid).collect();
        processes.insert(serial(&run[0]), groups);
    }
    processes
}
