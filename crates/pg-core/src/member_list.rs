//! One side (this node's or the other nodes') of one group's members, with
//! join counts, kept so that a snapshot is O(1) and a change O(log n).
//!
//! Members are [`MemberKey`]s in a persistent vector, those joined more than
//! once first: `keys[..counts.len()]` have their count in `counts` (each at
//! least 2), the rest are joined once. Most members are joined once, so the
//! counts cost nothing until a member joins twice, and a count that moves
//! between 1 and 2 moves its member across the boundary with one swap.
//! Removal swaps with the last member. Positions live in a writer-only map,
//! which readers never see.

use rustc_hash::FxHashMap;

use crate::id::MAX_PID_SERIAL;
use crate::pvec::{self, PVec};

/// Index of a node run in the table. Slot 0 is the local node.
pub(crate) type Slot = u16;
/// The local node's slot.
pub(crate) const LOCAL_SLOT: Slot = 0;

/// A member: node slot (high 16 bits) and process serial (low 48 bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct MemberKey(u64);

impl MemberKey {
    pub(crate) fn new(slot: Slot, serial: u64) -> Self {
        debug_assert!(serial <= MAX_PID_SERIAL);
        Self((u64::from(slot) << 48) | serial)
    }

    pub(crate) fn slot(self) -> Slot {
        // The shift leaves exactly the 16 slot bits.
        (self.0 >> 48) as Slot
    }

    pub(crate) fn serial(self) -> u64 {
        self.0 & MAX_PID_SERIAL
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    pos: u32,
    count: u32,
}

/// The members of one side of a group, as readers see them: shares storage
/// with the list it was taken from.
#[derive(Clone, Default)]
pub(crate) struct ListSnapshot {
    keys: PVec<MemberKey>,
    counts: PVec<u32>,
    /// Sum of join counts.
    total: u64,
}

impl ListSnapshot {
    /// Sum of join counts.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Number of distinct members.
    pub(crate) fn distinct(&self) -> usize {
        self.keys.len()
    }

    /// Each distinct member with its join count.
    pub(crate) fn iter(&self) -> CountedKeys<'_> {
        CountedKeys {
            keys: self.keys.iter(),
            counts: self.counts.iter(),
            counted_left: self.counts.len(),
        }
    }
}

/// Iterator over `(member, join count)`.
pub(crate) struct CountedKeys<'a> {
    keys: pvec::Iter<'a, MemberKey>,
    counts: pvec::Iter<'a, u32>,
    /// Members still to come that carry a count; the rest are joined once,
    /// so the walk past them never touches `counts`.
    counted_left: usize,
}

impl Iterator for CountedKeys<'_> {
    type Item = (MemberKey, u32);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let key = self.keys.next()?;
        if self.counted_left == 0 {
            return Some((key, 1));
        }
        self.counted_left -= 1;
        Some((key, self.counts.next().unwrap_or(1)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.keys.size_hint()
    }
}

impl ExactSizeIterator for CountedKeys<'_> {}

/// One side of a group's members (writer's copy).
#[derive(Default)]
pub(crate) struct MemberList {
    list: ListSnapshot,
    entries: FxHashMap<MemberKey, Entry>,
}

impl std::fmt::Debug for MemberList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.list.iter()).finish()
    }
}

impl MemberList {
    /// A snapshot sharing this list's storage.
    pub(crate) fn snapshot(&self) -> ListSnapshot {
        self.list.clone()
    }

    /// Sum of join counts.
    pub(crate) fn total(&self) -> u64 {
        self.list.total
    }

    /// Number of distinct members.
    pub(crate) fn distinct(&self) -> usize {
        self.list.keys.len()
    }

    /// Join count of `key` (0 if not a member).
    pub(crate) fn count(&self, key: MemberKey) -> u32 {
        self.entries.get(&key).map_or(0, |e| e.count)
    }

    /// Each distinct member with its join count.
    pub(crate) fn iter(&self) -> CountedKeys<'_> {
        self.list.iter()
    }

    /// Adds `n` (>= 1) join references of `key`; says whether `key` is a new
    /// member. The caller has checked that the count cannot overflow.
    pub(crate) fn add(&mut self, key: MemberKey, n: u32) -> bool {
        debug_assert!(n > 0);
        self.list.total += u64::from(n);
        match self.entries.get(&key).copied() {
            Some(entry) => {
                debug_assert!(entry.count.checked_add(n).is_some());
                self.recount(key, entry, entry.count.saturating_add(n));
                false
            }
            None => {
                let pos = self.list.keys.len() as u32;
                self.list.keys.push(key);
                let entry = Entry { pos, count: 1 };
                self.entries.insert(key, entry);
                if n > 1 {
                    self.recount(key, entry, n);
                }
                true
            }
        }
    }

    /// Removes up to `n` join references of `key`; returns how many were
    /// removed and whether `key` is no longer a member.
    pub(crate) fn sub(&mut self, key: MemberKey, n: u32) -> (u32, bool) {
        let Some(entry) = self.entries.get(&key).copied() else {
            return (0, false);
        };
        let removed = n.min(entry.count);
        if removed == 0 {
            return (0, false);
        }
        self.list.total -= u64::from(removed);
        if removed < entry.count {
            self.recount(key, entry, entry.count - removed);
            return (removed, false);
        }
        let pos = self.recount(key, entry, 1).pos;
        let keys = &mut self.list.keys;
        let last = keys.len() - 1;
        if pos as usize != last
            && let Some(moved) = keys.get(last)
        {
            keys.set(pos as usize, moved);
            if let Some(e) = self.entries.get_mut(&moved) {
                e.pos = pos;
            }
        }
        keys.pop();
        self.entries.remove(&key);
        if self.entries.capacity() > 64 && self.entries.len() < self.entries.capacity() / 4 {
            self.entries.shrink_to(self.entries.len() * 2);
        }
        (removed, true)
    }

    /// Sets the join count of member `key` (currently `entry`) to `count`
    /// (>= 1), moving it across the joined-more-than-once boundary when its
    /// count crosses 1; returns its new entry.
    fn recount(&mut self, key: MemberKey, entry: Entry, count: u32) -> Entry {
        debug_assert!(count > 0);
        let list = &mut self.list;
        let multi = list.counts.len() as u32;
        let pos = match (entry.count > 1, count > 1) {
            (false, false) => entry.pos,
            (true, true) => {
                list.counts.set(entry.pos as usize, count);
                entry.pos
            }
            // Promote: swap with the first joined-once member.
            (false, true) => {
                self.swap_keys(entry.pos, multi);
                self.list.counts.push(count);
                multi
            }
            // Demote: swap with the last joined-more-than-once member.
            (true, false) => {
                let last = multi - 1;
                if entry.pos != last
                    && let Some(last_count) = self.list.counts.get(last as usize)
                {
                    self.list.counts.set(entry.pos as usize, last_count);
                }
                self.swap_keys(entry.pos, last);
                self.list.counts.pop();
                last
            }
        };
        let entry = Entry { pos, count };
        self.entries.insert(key, entry);
        entry
    }

    /// Swaps the members at positions `a` and `b`, keeping their entries'
    /// positions right (counts are the caller's business).
    fn swap_keys(&mut self, a: u32, b: u32) {
        if a == b {
            return;
        }
        let keys = &mut self.list.keys;
        let (Some(ka), Some(kb)) = (keys.get(a as usize), keys.get(b as usize)) else {
            return;
        };
        keys.set(a as usize, kb);
        keys.set(b as usize, ka);
        if let Some(e) = self.entries.get_mut(&ka) {
            e.pos = b;
        }
        if let Some(e) = self.entries.get_mut(&kb) {
            e.pos = a;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn contents(list: &ListSnapshot) -> BTreeMap<u64, u32> {
        list.iter().map(|(k, c)| (k.0, c)).collect()
    }

    fn check_positions(list: &MemberList) -> Result<(), TestCaseError> {
        for (k, e) in &list.entries {
            prop_assert_eq!(list.list.keys.get(e.pos as usize), Some(*k));
            prop_assert_eq!(e.count > 1, (e.pos as usize) < list.list.counts.len());
        }
        prop_assert_eq!(list.entries.len(), list.list.keys.len());
        Ok(())
    }

    proptest! {
        /// Any mix of joins and leaves leaves the list equal to a counting
        /// model, with positions consistent, and earlier snapshots intact;
        /// the prefill spreads members over several leaves and levels, so
        /// swaps cross them.
        #[test]
        fn matches_a_counting_model(
            prefill in prop_oneof![Just(0u64), 1u64..300, 2000u64..2500],
            ops in proptest::collection::vec((any::<bool>(), 0u64..2600, 1u32..4), 0..300),
        ) {
            let mut list = MemberList::default();
            let mut model: BTreeMap<u64, u32> = BTreeMap::new();
            for serial in 0..prefill {
                let key = MemberKey::new(1, serial);
                list.add(key, 1 + (serial % 3 == 0) as u32);
                model.insert(key.0, 1 + (serial % 3 == 0) as u32);
            }
            let mut snapshots = Vec::new();
            for (i, (join, serial, n)) in ops.into_iter().enumerate() {
                // Mostly members that exist, so leaves and re-joins hit.
                let serial = if prefill > 0 && serial % 2 == 0 { serial % prefill } else { serial };
                let key = MemberKey::new(1, serial);
                if join {
                    let new = list.add(key, n);
                    prop_assert_eq!(new, !model.contains_key(&key.0));
                    *model.entry(key.0).or_default() += n;
                } else {
                    let have = model.get(&key.0).copied().unwrap_or(0);
                    let (removed, gone) = list.sub(key, n);
                    prop_assert_eq!(removed, n.min(have));
                    prop_assert_eq!(gone, have > 0 && n >= have);
                    if have > 0 {
                        if n >= have {
                            model.remove(&key.0);
                        } else {
                            model.insert(key.0, have - n);
                        }
                    }
                }
                prop_assert_eq!(list.count(key), model.get(&key.0).copied().unwrap_or(0));
                prop_assert_eq!(list.total(), model.values().map(|&c| u64::from(c)).sum::<u64>());
                if i % 50 == 0 {
                    prop_assert_eq!(contents(&list.list), model.clone());
                    check_positions(&list)?;
                    snapshots.push((list.snapshot(), model.clone()));
                }
            }
            prop_assert_eq!(contents(&list.list), model.clone());
            check_positions(&list)?;
            for (snapshot, want) in snapshots {
                prop_assert_eq!(contents(&snapshot), want);
            }
        }
    }
}
