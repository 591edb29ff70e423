//! One side (this node's or the other nodes') of one group's members, with
//! join counts, kept so that a snapshot is O(1) and a change O(log n).
//!
//! Members are [`MemberKey`]s in a persistent vector, those joined more than
//! once first: `keys[..counts.len()]` have their count in `counts` (each at
//! least 2), the rest are joined once. Most members are joined once, so the
//! counts cost nothing until a member joins twice, and a count that moves
//! between 1 and 2 moves its member across the boundary with one swap.
//! Removal swaps with the last member. A list past one leaf keeps its
//! positions in a writer-only map, which readers never see; a smaller one
//! is scanned (see [`MemberList`]).
//!
//! Metadata lives in a third vector, parallel to the keys, created the
//! first time a member of the list gets metadata (so groups without any
//! cost nothing for it) and moved along with every swap.

use hashbrown::HashTable;

use crate::id::MAX_PID_SERIAL;
use crate::meta::Meta;
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

/// A member for [`MemberList::fill_new`]: its key, join count and
/// metadata.
pub(crate) type NewMember = (MemberKey, u32, Option<Meta>);

/// The members of one side of a group, as readers see them: shares storage
/// with the list it was taken from.
#[derive(Clone, Default)]
pub(crate) struct ListSnapshot {
    keys: PVec<MemberKey>,
    counts: PVec<u32>,
    /// Empty while no member has metadata; then one entry per key.
    metas: PVec<Option<Meta>>,
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

    /// Metadata of each distinct member, in the order of [`iter`](Self::iter);
    /// `None` when the list holds no metadata at all.
    pub(crate) fn metas(&self) -> Option<pvec::Iter<'_, Option<Meta>>> {
        (self.metas.len() > 0).then(|| self.metas.iter())
    }

    /// Each distinct member with its join count and metadata.
    pub(crate) fn iter_meta(
        &self,
    ) -> impl ExactSizeIterator<Item = (MemberKey, u32, Option<Meta>)> {
        let mut metas = self.metas();
        self.iter().map(move |(key, count)| {
            let meta = metas.as_mut().and_then(|m| m.next()).flatten();
            (key, count, meta)
        })
    }

    /// Whether any member of the list has (or had) metadata.
    pub(crate) fn has_metas(&self) -> bool {
        self.metas.len() > 0
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

/// The position of `key` in `keys`, compared eight at a time with no
/// early exit inside a chunk, which the compiler turns into vector
/// compares (a plain `position` stops to branch at every key: a scan of a
/// 100-member leaf took twice as long).
fn scan(keys: &[MemberKey], key: MemberKey) -> Option<usize> {
    let mut chunks = keys.chunks_exact(8);
    for (i, chunk) in chunks.by_ref().enumerate() {
        if chunk.iter().fold(false, |hit, &k| hit | (k == key)) {
            return chunk.iter().position(|&k| k == key).map(|j| i * 8 + j);
        }
    }
    let rest = chunks.remainder();
    let start = keys.len() - rest.len();
    rest.iter().position(|&k| k == key).map(|j| start + j)
}

/// One side of a group's members (writer's copy).
///
/// The index maps a member to its position without storing the member
/// again: it holds only positions (4 bytes each), hashed and compared
/// through the key vector, the way `indexmap` does. A member's count is
/// 1 unless it sits in the counted prefix.
///
/// A list of at most [`INDEX_ABOVE`] members (one leaf) has no index: a
/// lookup scans the leaf. Most groups are that small, and in a table too
/// big for the cache a hashed lookup costs three dependent misses (the
/// control bytes, the position, the key it points to) and a swap-remove a
/// fourth, where a scan streams one leaf of consecutive lines: a mass
/// exit spent most of its removals in those misses. The index is built
/// when the list grows past one leaf, and dropped when it shrinks to
/// [`UNINDEX_AT`] (not at once below the threshold, so a list that hovers
/// around it does not rebuild it at every change).
#[derive(Default)]
pub(crate) struct MemberList {
    list: ListSnapshot,
    /// Empty (and unallocated) unless `indexed`.
    index: HashTable<u32>,
    indexed: bool,
}

/// Members past which a list keeps a position index.
const INDEX_ABOVE: usize = pvec::LEAF;
/// Members at which a list drops its index again.
const UNINDEX_AT: usize = INDEX_ABOVE / 2;

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

    /// Each distinct member with its join count and metadata.
    pub(crate) fn iter_meta(
        &self,
    ) -> impl ExactSizeIterator<Item = (MemberKey, u32, Option<Meta>)> {
        self.list.iter_meta()
    }

    /// The position of `key`, if a member.
    fn position(&self, key: MemberKey) -> Option<u32> {
        let keys = &self.list.keys;
        if !self.indexed {
            // At most one leaf; positions fit in u32 as the index's do.
            let found = match keys.as_leaf() {
                Some(leaf) => scan(leaf, key),
                None => keys.iter().position(|k| k == key),
            };
            return found.map(|pos| pos as u32);
        }
        self.index
            .find(hash(key), |&pos| keys.get(pos as usize) == Some(key))
            .copied()
    }

    /// Builds the position index (the list just grew past one leaf).
    fn build_index(&mut self) {
        let MemberList { list, index, .. } = self;
        let keys = &list.keys;
        *index = HashTable::with_capacity(keys.len() * 2);
        for (pos, key) in keys.iter().enumerate() {
            index.insert_unique(hash(key), pos as u32, |&p| {
                keys.get(p as usize).map_or(0, hash)
            });
        }
        self.indexed = true;
    }

    /// The count of the member at `pos`.
    fn count_at(&self, pos: u32) -> u32 {
        self.list.counts.get(pos as usize).unwrap_or(1)
    }

    /// Join count of `key` (0 if not a member).
    pub(crate) fn count(&self, key: MemberKey) -> u32 {
        self.position(key).map_or(0, |pos| self.count_at(pos))
    }

    /// Metadata of `key` (`None` if not a member or without metadata).
    pub(crate) fn meta(&self, key: MemberKey) -> Option<Meta> {
        if self.list.metas.len() == 0 {
            return None; // the common case: no lookup at all
        }
        let pos = self.position(key)?;
        self.list.metas.get(pos as usize).flatten()
    }

    /// Sets the metadata of member `key` (does nothing if not a member);
    /// returns the metadata it had. The first metadata in a list costs
    /// O(list) once, to lay out the parallel vector.
    pub(crate) fn set_meta(&mut self, key: MemberKey, meta: Option<Meta>) -> Option<Meta> {
        let pos = self.position(key)? as usize;
        let metas = &mut self.list.metas;
        if metas.len() == 0 {
            meta.as_ref()?;
            for _ in 0..self.list.keys.len() {
                metas.push(None);
            }
        }
        let previous = metas.get(pos).flatten();
        if previous != meta {
            metas.set(pos, meta);
        }
        previous
    }

    /// Points the index entry of the member at `from` to `to`.
    fn moved(&mut self, key: MemberKey, from: u32, to: u32) {
        if !self.indexed {
            return;
        }
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
                self.append(key, n, None);
                true
            }
        }
    }

    /// Appends `key`, which the caller knows is not a member (a part's
    /// first sync: none of its members is in any list yet), with `n` (>= 1)
    /// join references and `meta`: no position lookup.
    pub(crate) fn push_new(&mut self, key: MemberKey, n: u32, meta: Option<Meta>) {
        debug_assert!(n > 0 && self.position(key).is_none());
        self.list.total += u64::from(n);
        self.append(key, n, meta);
    }

    /// Fills this list, which holds no member, with `entries` (keys not
    /// members of it, each with `n` >= 1 join references and its
    /// metadata): the list [`push_new`](Self::push_new) would leave, in
    /// the same order, laid out in plain vectors first and made
    /// persistent once (a first sync fills thousands of lists; pushed one
    /// by one, each leaf grows through every size on the way).
    pub(crate) fn fill_new(&mut self, entries: impl ExactSizeIterator<Item = NewMember>) {
        debug_assert!(self.list.keys.len() == 0 && !self.indexed);
        let len = entries.len();
        let mut keys = Vec::with_capacity(len);
        let mut counts = Vec::new();
        // Laid out only once some member has metadata, as `append` does.
        let mut metas: Vec<Option<Meta>> = Vec::new();
        let mut total = 0u64;
        for (pos, (key, n, meta)) in entries.enumerate() {
            debug_assert!(n > 0);
            total += u64::from(n);
            keys.push(key);
            if !metas.is_empty() || meta.is_some() {
                if metas.is_empty() {
                    // Exactly one entry per member, laid out once.
                    metas.reserve_exact(len);
                }
                metas.resize(pos, None);
                metas.push(meta);
            }
            if n > 1 {
                // Promoted as `recount` does: swapped with the first
                // member joined once.
                let multi = counts.len();
                keys.swap(pos, multi);
                if !metas.is_empty() {
                    metas.swap(pos, multi);
                }
                counts.push(n);
            }
        }
        self.list.total = total;
        self.list.keys = PVec::from_vec(keys);
        self.list.counts = PVec::from_vec(counts);
        self.list.metas = PVec::from_vec(metas);
        if self.list.keys.len() > INDEX_ABOVE {
            self.build_index();
        }
    }

    /// Appends `key`, not a member, with `n` join references and `meta`
    /// (the metadata vector is laid out only once some member has any),
    /// and indexes it. `total` is the caller's.
    fn append(&mut self, key: MemberKey, n: u32, meta: Option<Meta>) {
        let pos = self.list.keys.len() as u32;
        self.list.keys.push(key);
        if self.list.metas.len() > 0 || meta.is_some() {
            if self.list.metas.len() == 0 {
                for _ in 0..pos {
                    self.list.metas.push(None);
                }
            }
            self.list.metas.push(meta);
        }
        if self.indexed {
            let MemberList { list, index, .. } = self;
            let keys = &list.keys;
            index.insert_unique(hash(key), pos, |&p| keys.get(p as usize).map_or(0, hash));
        } else if self.list.keys.len() > INDEX_ABOVE {
            self.build_index();
        }
        if n > 1 {
            self.recount(pos, 1, n);
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
        if self.indexed
            && let Ok(entry) = self.index.find_entry(hash(key), |&p| p == pos)
        {
            entry.remove();
        }
        let last = (self.list.keys.len() - 1) as u32;
        if pos != last
            && let Some(moved) = self.list.keys.get(last as usize)
        {
            self.list.keys.set(pos as usize, moved);
            self.moved(moved, last, pos);
            if let Some(meta) = self.list.metas.get(last as usize) {
                self.list.metas.set(pos as usize, meta);
            }
        }
        self.list.keys.pop();
        self.list.metas.pop();
        if self.list.keys.len() == 0 {
            // Metadata starts afresh with the next member.
            self.list.metas = PVec::default();
        }
        if self.indexed && self.list.keys.len() <= UNINDEX_AT {
            self.index = HashTable::new();
            self.indexed = false;
        } else if self.index.capacity() > 64 && self.index.len() < self.index.capacity() / 4 {
            let MemberList { list, index, .. } = self;
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
        let metas = &mut self.list.metas;
        if let (Some(ma), Some(mb)) = (metas.get(a as usize), metas.get(b as usize))
            && ma != mb
        {
            metas.set(a as usize, mb);
            metas.set(b as usize, ma);
        }
        if !self.indexed {
            return;
        }
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
mod tests;
