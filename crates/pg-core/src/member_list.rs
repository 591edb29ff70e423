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

use hashbrown::HashTable;

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

/// The hash of a member key in the position index (Fx's multiply: keys
/// are well spread already, slot in the high bits, serial in the low).
fn hash(key: MemberKey) -> u64 {
    key.0.wrapping_mul(0x517c_c1b7_2722_0a95).rotate_left(26)
}

/// One side of a group's members (writer's copy).
///
/// The index maps a member to its position without storing the member
/// again: it holds only positions (4 bytes each), hashed and compared
/// through the key vector, the way `indexmap` does. A member's count is
/// 1 unless it sits in the counted prefix.
#[derive(Default)]
pub(crate) struct MemberList {
    list: ListSnapshot,
    index: HashTable<u32>,
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

    /// Each distinct member with its join count.
    pub(crate) fn iter(&self) -> CountedKeys<'_> {
        self.list.iter()
    }

    /// The position of `key`, if a member.
    fn position(&self, key: MemberKey) -> Option<u32> {
        let keys = &self.list.keys;
        self.index
            .find(hash(key), |&pos| keys.get(pos as usize) == Some(key))
            .copied()
    }

    /// The count of the member at `pos`.
    fn count_at(&self, pos: u32) -> u32 {
        self.list.counts.get(pos as usize).unwrap_or(1)
    }

    /// Join count of `key` (0 if not a member).
    pub(crate) fn count(&self, key: MemberKey) -> u32 {
        self.position(key).map_or(0, |pos| self.count_at(pos))
    }

    /// Points the index entry of the member at `from` to `to`.
    fn moved(&mut self, key: MemberKey, from: u32, to: u32) {
        if let Some(pos) = self.index.find_mut(hash(key), |&p| p == from) {
            *pos = to;
        }
    }

    /// Adds `n` (>= 1) join references of `key`; says whether `key` is a new
    /// member. The caller has checked that the count cannot overflow.
    pub(crate) fn add(&mut self, key: MemberKey, n: u32) -> bool {
        debug_assert!(n > 0);
        self.list.total += u64::from(n);
        match self.position(key) {
            Some(pos) => {
                let count = self.count_at(pos);
                debug_assert!(count.checked_add(n).is_some());
                self.recount(pos, count, count.saturating_add(n));
                false
            }
            None => {
                let pos = self.list.keys.len() as u32;
                self.list.keys.push(key);
                let MemberList { list, index } = self;
                let keys = &list.keys;
                index.insert_unique(hash(key), pos, |&p| keys.get(p as usize).map_or(0, hash));
                if n > 1 {
                    self.recount(pos, 1, n);
                }
                true
            }
        }
    }

    /// Removes up to `n` join references of `key`; returns how many were
    /// removed and whether `key` is no longer a member.
    pub(crate) fn sub(&mut self, key: MemberKey, n: u32) -> (u32, bool) {
        let Some(pos) = self.position(key) else {
            return (0, false);
        };
        let count = self.count_at(pos);
        let removed = n.min(count);
        if removed == 0 {
            return (0, false);
        }
        self.list.total -= u64::from(removed);
        if removed < count {
            self.recount(pos, count, count - removed);
            return (removed, false);
        }
        // Out of the counted prefix first, then swap with the last.
        let pos = self.recount(pos, count, 1);
        if let Ok(entry) = self.index.find_entry(hash(key), |&p| p == pos) {
            entry.remove();
        }
        let last = (self.list.keys.len() - 1) as u32;
        if pos != last
            && let Some(moved) = self.list.keys.get(last as usize)
        {
            self.list.keys.set(pos as usize, moved);
            self.moved(moved, last, pos);
        }
        self.list.keys.pop();
        if self.index.capacity() > 64 && self.index.len() < self.index.capacity() / 4 {
            let MemberList { list, index } = self;
            let keys = &list.keys;
            index.shrink_to(index.len() * 2, |&p| keys.get(p as usize).map_or(0, hash));
        }
        (removed, true)
    }

    /// Sets the join count of the member at `pos` (counted `count`) to
    /// `new` (>= 1), moving it across the counted boundary when its count
    /// crosses 1; returns its new position.
    fn recount(&mut self, pos: u32, count: u32, new: u32) -> u32 {
        debug_assert!(new > 0);
        let multi = self.list.counts.len() as u32;
        match (count > 1, new > 1) {
            (false, false) => pos,
            (true, true) => {
                self.list.counts.set(pos as usize, new);
                pos
            }
            // Promote: swap with the first joined-once member.
            (false, true) => {
                self.swap_keys(pos, multi);
                self.list.counts.push(new);
                multi
            }
            // Demote: swap with the last joined-more-than-once member.
            (true, false) => {
                let last = multi - 1;
                if pos != last
                    && let Some(last_count) = self.list.counts.get(last as usize)
                {
                    self.list.counts.set(pos as usize, last_count);
                }
                self.swap_keys(pos, last);
                self.list.counts.pop();
                last
            }
        }
    }

    /// Swaps the members at positions `a` and `b`, keeping the index right
    /// (counts are the caller's business).
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
        // Two entries change value; update by key hash and old position.
        let (ha, hb) = (hash(ka), hash(kb));
        if let Some(p) = self.index.find_mut(ha, |&p| p == a) {
            *p = u32::MAX; // parked, so the next lookup cannot confuse the two
        }
        if let Some(p) = self.index.find_mut(hb, |&p| p == b) {
            *p = a;
        }
        if let Some(p) = self.index.find_mut(ha, |&p| p == u32::MAX) {
            *p = b;
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
        prop_assert_eq!(list.index.len(), list.list.keys.len());
        for (pos, key) in list.list.keys.iter().enumerate() {
            prop_assert_eq!(list.position(key), Some(pos as u32));
            let counted = pos < list.list.counts.len();
            prop_assert_eq!(list.count(key) > 1, counted);
        }
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
