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
//! and each process's groups are gathered in sync order (as the general
//! path would leave them) into one exact-size vector per process, one
//! table insertion each: by a counting sort when serials are dense (they
//! are given out in order), else by a stable radix sort of the (process,
//! group) pairs. The counting sort stores no pair and needs no scratch
//! copy: 16 MB less fresh memory to touch for a million memberships.
//! Events are the same as the general path's, in the same order.

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
        let mut pairs = Pairs::new(&groups, entries, max_serial);
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

/// The (process serial, group) pairs of a sync, gathered into one group
/// vector per process (each in sync order).
enum Pairs {
    /// Serials below twice the number of entries (a node's serials are
    /// given out in order, so a part's are dense): a counting sort, with
    /// no sort and no pair stored. `ends[s]` is where serial `s`'s groups
    /// go next in `gids` (counted first, then advanced as they land).
    Counted {
        ends: Vec<u32>,
        gids: Vec<GroupId>,
    },
    /// (serial, group) pairs in sync order, for a radix sort by serial,
    /// kept in 8 bytes each when every serial fits in 32 bits (any node
    /// short of four billion processes): half the memory to fill and sort
    /// of the 16-byte form.
    Narrow(Vec<(u32, GroupId)>),
    Wide(Vec<(u64, GroupId)>),
}

impl Pairs {
    /// Room for the `entries` pairs of `groups`, whose largest serial is
    /// `max_serial`.
    fn new(groups: &[SyncGroup], entries: usize, max_serial: u64) -> Self {
        let dense = u32::try_from(entries).is_ok()
            && usize::try_from(max_serial).is_ok_and(|m| m < entries.saturating_mul(2));
        if dense {
            // Serial s's groups start where serial s - 1's end: count
            // each serial's groups one slot up, then sum the counts.
            let mut ends = vec![0u32; max_serial as usize + 2];
            for (serial, _) in groups.iter().flat_map(|g| &g.members) {
                if let Some(next) = ends.get_mut(*serial as usize + 1) {
                    *next += 1;
                }
            }
            let mut sum = 0u32;
            for end in &mut ends {
                sum += *end;
                *end = sum;
            }
            return Self::Counted {
                ends,
                gids: vec![0; entries],
            };
        }
        if u32::try_from(max_serial).is_ok() {
            Self::Narrow(Vec::with_capacity(entries))
        } else {
            Self::Wide(Vec::with_capacity(entries))
        }
    }

    fn push(&mut self, serial: u64, gid: GroupId) {
        match self {
            Self::Counted { ends, gids } => {
                // Every serial was counted in `new` (a validated sync
                // does not change in between): its slot is in range.
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
                // Only if the largest serial given was wrong (it is read
                // from validated, sorted groups): widen, never truncate.
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

    /// Process serial -> its groups, in sync order: one exact-size vector
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
