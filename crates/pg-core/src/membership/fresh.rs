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
//! and the process index (each process's groups) is not built in the
//! sync's step at all: that was more than half of the step. The part
//! records the groups it was added to, in sync order, and the index is
//! built from their lists in a later step ([`Membership::build_pending_indexes`],
//! due at once), so readers see the sync that much sooner. Anything that
//! needs the index before then (a change to the part, a differential sync,
//! a node down) builds it first; a read by pid looks through the recorded
//! groups instead. The index gathers each process's groups in sync order
//! (as the general path would leave them) into one exact-size vector per
//! process: by a counting sort when serials are dense (they are given out
//! in order), which stores no pair, else by a stable radix sort of the
//! (process, group) pairs. Events are the same as the general path's, in
//! the same order.

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
        // Built by `build_pending_indexes` from these groups' lists.
        self.ensure_index(slot);
        let mut added_to: Vec<GroupId> = Vec::with_capacity(groups.len());
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
            added += members.iter().map(|&(_, n)| u64::from(n)).sum::<u64>();
            added_to.push(gid);
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
        part.unindexed = added_to;
    }

    /// Builds every process index a first sync left for later.
    pub(crate) fn build_pending_indexes(&mut self) {
        for slot in 0..self.parts.len() {
            // Slots are u16 (at most 65 536 parts).
            self.ensure_index(slot as Slot);
        }
    }

    /// Builds the process index of the part in `slot` if a first sync left
    /// it for later: before anything reads or changes it.
    pub(crate) fn ensure_index(&mut self, slot: Slot) {
        let Some(part) = self
            .parts
            .get_mut(usize::from(slot))
            .and_then(Option::as_mut)
        else {
            return;
        };
        if part.unindexed.is_empty() {
            return;
        }
        let added_to = std::mem::take(&mut part.unindexed);
        // This part's (serial, group) pairs, group by group in sync order;
        // nothing changed the part since, so each group is still there.
        let each = |this: &Self, f: &mut dyn FnMut(u64, GroupId)| {
            for &gid in &added_to {
                let Some(group) = this.groups.get(gid as usize).and_then(Option::as_ref) else {
                    continue;
                };
                for (key, _) in group.remote.iter() {
                    if key.slot() == slot {
                        f(key.serial(), gid);
                    }
                }
            }
        };
        let (mut entries, mut max_serial) = (0usize, 0u64);
        each(self, &mut |serial, _| {
            entries += 1;
            max_serial = max_serial.max(serial);
        });
        let mut pairs = Pairs::new(entries, max_serial);
        if pairs.counts() {
            each(self, &mut |serial, _| pairs.count(serial));
            pairs.counted();
        }
        each(self, &mut |serial, gid| pairs.push(serial, gid));
        let index = pairs.into_index();
        self.part_mut(slot).processes = index;
    }

    /// The groups of process `serial` of `slot` while its index waits to
    /// be built (a read cannot build it): looked up in each group the
    /// first sync added to, in sync order, as the index would list them.
    pub(super) fn unindexed_groups_of(&self, slot: Slot, serial: u64) -> Option<Vec<GroupId>> {
        let part = self.part(slot);
        if part.unindexed.is_empty() {
            return None;
        }
        let key = MemberKey::new(slot, serial);
        let gids = part
            .unindexed
            .iter()
            .copied()
            .filter(|&gid| self.group(gid).remote.count(key) > 0)
            .collect();
        Some(gids)
    }
}

/// The (process serial, group) pairs of a part, gathered into one group
/// vector per process (each in the order pushed).
enum Pairs {
    /// Serials below twice the number of entries (a node's serials are
    /// given out in order, so a part's are dense): a counting sort, with
    /// no sort and no pair stored. `ends[s]` is where serial `s`'s groups
    /// go next in `gids` (counted first, then advanced as they land).
    Counted {
        ends: Vec<u32>,
        gids: Vec<GroupId>,
    },
    /// (serial, group) pairs in push order, for a radix sort by serial,
    /// kept in 8 bytes each when every serial fits in 32 bits (any node
    /// short of four billion processes): half the memory to fill and sort
    /// of the 16-byte form.
    Narrow(Vec<(u32, GroupId)>),
    Wide(Vec<(u64, GroupId)>),
}

impl Pairs {
    /// Room for `entries` pairs whose largest serial is `max_serial`; a
    /// counting sort is ready once every serial is [`count`](Self::count)ed
    /// and [`counted`](Self::counted) is called.
    fn new(entries: usize, max_serial: u64) -> Self {
        let dense = u32::try_from(entries).is_ok()
            && usize::try_from(max_serial).is_ok_and(|m| m < entries.saturating_mul(2));
        if dense {
            return Self::Counted {
                ends: vec![0u32; max_serial as usize + 2],
                gids: vec![0; entries],
            };
        }
        if u32::try_from(max_serial).is_ok() {
            Self::Narrow(Vec::with_capacity(entries))
        } else {
            Self::Wide(Vec::with_capacity(entries))
        }
    }

    /// Whether serials must be counted before the pairs are pushed.
    fn counts(&self) -> bool {
        matches!(self, Self::Counted { .. })
    }

    /// Counts one pair of `serial` (counting sort only), one slot up.
    fn count(&mut self, serial: u64) {
        if let Self::Counted { ends, .. } = self
            && let Some(next) = ends.get_mut(serial as usize + 1)
        {
            *next += 1;
        }
    }

    /// Every serial counted: serial s's groups start where s - 1's end.
    fn counted(&mut self) {
        if let Self::Counted { ends, .. } = self {
            let mut sum = 0u32;
            for end in ends {
                sum += *end;
                *end = sum;
            }
        }
    }

    fn push(&mut self, serial: u64, gid: GroupId) {
        match self {
            Self::Counted { ends, gids } => {
                // Every serial was counted first (the part did not change
                // in between): its slot is in range.
                if let Some(end) = ends.get_mut(serial as usize)
                    && let Some(place) = gids.get_mut(*end as usize)
                {
                    *place = gid;
                    *end += 1;
                }
                return;
            }
            Self::Narrow(v) => match u32::try_from(serial) {
                Ok(narrow) => return v.push((narrow, gid)),
                // Only if the largest serial given was wrong: widen, never
                // truncate.
                Err(_) => {
                    let wide = v.iter().map(|&(s, g)| (u64::from(s), g)).collect();
                    *self = Self::Wide(wide);
                }
            },
            Self::Wide(_) => {}
        }
        if let Self::Wide(v) = self {
            v.push((serial, gid));
        }
    }

    /// Process serial -> its groups, in push order: one exact-size vector
    /// per process.
    fn into_index(self) -> FxHashMap<u64, Vec<GroupId>> {
        match self {
            Self::Counted { ends, gids } => {
                // After the pushes serial s's groups end where serial s +
                // 1's begin: `ends[s]` and `ends[s - 1]` bound them.
                // Sized once: a serial holds groups where its end moved.
                let mut processes = FxHashMap::default();
                let held = ends.windows(2).filter(|w| w[1] > w[0]).count()
                    + usize::from(ends.first().is_some_and(|&e| e > 0));
                processes.reserve(held);
                let mut start = 0usize;
                // The last slot counts no serial of its own.
                for (serial, &end) in ends.iter().take(ends.len() - 1).enumerate() {
                    let end = end as usize;
                    if end > start
                        && let Some(groups) = gids.get(start..end)
                    {
                        processes.insert(serial as u64, groups.to_vec());
                    }
                    start = start.max(end);
                }
                processes
            }
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
