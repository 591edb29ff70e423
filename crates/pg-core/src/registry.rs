//! The registry table: unique keys, each held by at most one process
//! cluster wide once conflicts are resolved.
//!
//! Every node owns its processes' registrations (part of its *part*, with
//! its memberships) and replicates them with the same deltas and syncs.
//! A key may briefly have several *holders* (registrations made
//! concurrently on nodes that had not yet heard of each other, or on both
//! sides of a partition); every node then picks the same *winner* from the
//! same holders, so readers everywhere agree as soon as they hold the same
//! registrations. The node that owns a losing registration removes it and
//! tells its process (see `scope/registry.rs`).
//!
//! Winner: by default the earliest registration, by a Lamport timestamp
//! carried with it (so it does not depend on wall clocks agreeing: a
//! registration made after its node heard of another is later than it),
//! ties broken by node name, then process serial. A [`Resolver`] may
//! decide instead.

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::group::GroupName;
use crate::id::Pid;
use crate::member_list::Slot;
use crate::meta::Meta;

/// Largest registration timestamp a peer may send: far beyond any real
/// count of registrations, and far below overflow.
pub const MAX_STAMP: u64 = 1 << 62;

/// A key's holders: one but for a conflict not yet settled, so kept
/// inline (no allocation per key).
type Holders = smallvec::SmallVec<[Holder; 1]>;

/// One registration of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    pub(crate) slot: Slot,
    pub(crate) serial: u64,
    /// Lamport timestamp of the registration (kept when its metadata is
    /// updated in place).
    pub(crate) stamp: u64,
    pub(crate) meta: Option<Meta>,
    /// A label `match_tag` finds registrations by.
    pub(crate) tag: Option<GroupName>,
    /// Local registrations only (never replicated): end the process if
    /// the registration loses a conflict.
    pub(crate) exit_on_loss: bool,
}

/// What a process registers a key with (besides the key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterSpec {
    /// Metadata, read back by lookups and events (at most `max_meta_size`
    /// bytes).
    pub meta: Option<Meta>,
    /// A label to find the registration by: `match_tag(tag)` lists every
    /// key registered with it. Replicated with the registration.
    pub tag: Option<GroupName>,
    /// Should this registration lose a conflict, end its process (the
    /// runtime closes its mailbox after the conflict notice and cleans up
    /// everything it holds), as a supervisor-style registry kills the
    /// loser. Known only to the process's own node, which is the one that
    /// acts on a loss.
    pub exit_on_loss: bool,
}

impl RegisterSpec {
    /// A registration with metadata only.
    pub fn with_meta(meta: Option<Meta>) -> Self {
        Self {
            meta,
            ..Self::default()
        }
    }
}

/// One key's registration as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The key.
    pub key: GroupName,
    /// The process holding it.
    pub pid: Pid,
    /// Its metadata.
    pub meta: Option<Meta>,
    /// Its tag.
    pub tag: Option<GroupName>,
}

/// A registration as a [`Resolver`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The registered process.
    pub pid: &'a Pid,
    /// Its metadata.
    pub meta: Option<&'a Meta>,
    /// Its Lamport timestamp: a registration made after its node heard of
    /// another has a larger one.
    pub stamp: u64,
}

/// Which of two registrations of one key wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The first.
    First,
    /// The second.
    Second,
}

/// Decides which of two registrations of one key wins. Called inside the
/// scope's step, on every node holding both: it must return quickly, and
/// the same answer everywhere for the same arguments (decide from the
/// candidates alone, never from local state or the time). Candidates are
/// offered in a fixed order (earliest timestamp, then node name, then
/// serial, first), the winner so far against the next, so every node folds
/// the same sequence; a rule that is a consistent preference (if `a` beats
/// `b` and `b` beats `c`, `a` beats `c`) picks the same winner whatever
/// order the registrations arrived in.
pub trait Resolver: Send + Sync + 'static {
    /// The winner of `a` and `b` for `key`.
    fn resolve(&self, key: &str, a: Candidate<'_>, b: Candidate<'_>) -> Choice;
}

/// The default rule: the earlier registration wins (smaller timestamp),
/// then the smaller node name, then the smaller process serial.
#[derive(Debug, Clone, Copy, Default)]
pub struct EarliestWins;

impl Resolver for EarliestWins {
    fn resolve(&self, _key: &str, a: Candidate<'_>, b: Candidate<'_>) -> Choice {
        let order = |c: &Candidate<'_>| (c.stamp, c.pid.node().name.clone(), c.pid.serial());
        if order(&a) <= order(&b) {
            Choice::First
        } else {
            Choice::Second
        }
    }
}

/// Every registration held, by key, and by owner for exits and downs.
///
/// Keys are hashed, not ordered: a registration is looked up several
/// times per change (before, after, losers, the driver's republication),
/// and string compares down an ordered tree were a fifth of a node's time
/// receiving a stream of registrations. Listings in key order sort on
/// demand; a driver keeps its own ordered view for readers.
pub(crate) struct Registry {
    keys: FxHashMap<GroupName, Holders>,
    /// Slot -> process serial -> keys it holds.
    /// A key per process, or a set for one that holds several (see
    /// `ProcessKeys`). A slot's map stays while empty (slots are few, and
    /// a part that registers and unregisters in turn would otherwise
    /// rebuild it each time); it shrinks when sparse.
    owned: FxHashMap<Slot, FxHashMap<u64, ProcessKeys>>,
    /// Slot -> registrations it holds.
    counts: FxHashMap<Slot, usize>,
    /// The Lamport clock: above every timestamp seen.
    clock: u64,
    resolver: Arc<dyn Resolver>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("keys", &self.keys.len())
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            keys: FxHashMap::default(),
            owned: FxHashMap::default(),
            counts: FxHashMap::default(),
            clock: 0,
            resolver: Arc::new(EarliestWins),
        }
    }
}

impl Registry {
    pub(crate) fn set_resolver(&mut self, resolver: Arc<dyn Resolver>) {
        self.resolver = resolver;
    }

    /// A timestamp for a new local registration.
    pub(crate) fn tick(&mut self) -> u64 {
        // Remote stamps are bounded by MAX_STAMP: this cannot overflow.
        self.clock = self.clock.saturating_add(1);
        self.clock
    }

    /// Takes a remote timestamp (at most [`MAX_STAMP`], checked on
    /// arrival) into the clock.
    pub(crate) fn witness(&mut self, stamp: u64) {
        self.clock = self.clock.max(stamp.min(MAX_STAMP));
    }

    /// Whether no key has a holder.
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn holders(&self, key: &str) -> &[Holder] {
        self.keys.get(key).map_or(&[], |h| h.as_slice())
    }

    /// The winning holder of `key`, given how to name a slot's pids.
    pub(crate) fn winner<'a>(
        &'a self,
        key: &str,
        pid: impl Fn(&Holder) -> Pid,
    ) -> Option<&'a Holder> {
        self.winner_among(key, self.holders(key), pid)
    }

    /// The winner among `holders`, the holders of `key` (for a caller
    /// that has them already).
    pub(crate) fn winner_among<'a>(
        &self,
        key: &str,
        holders: &'a [Holder],
        pid: impl Fn(&Holder) -> Pid,
    ) -> Option<&'a Holder> {
        let first = holders.first()?;
        if holders.len() == 1 {
            return Some(first);
        }
        // A fixed order, whatever order the holders arrived in here.
        let mut ordered: Vec<(&Holder, Pid)> = holders.iter().map(|h| (h, pid(h))).collect();
        ordered.sort_by(|(a, pa), (b, pb)| {
            (a.stamp, &pa.node().name, a.serial).cmp(&(b.stamp, &pb.node().name, b.serial))
        });
        let mut ordered = ordered.into_iter();
        let (mut best, mut best_pid) = ordered.next()?;
        for (other, other_pid) in ordered {
            let a = Candidate {
                pid: &best_pid,
                meta: best.meta.as_ref(),
                stamp: best.stamp,
            };
            let b = Candidate {
                pid: &other_pid,
                meta: other.meta.as_ref(),
                stamp: other.stamp,
            };
            if self.resolver.resolve(key, a, b) == Choice::Second {
                best = other;
                best_pid = other_pid;
            }
        }
        Some(best)
    }

    /// The registration of `key` by `serial` of `slot`, if any.
    pub(crate) fn held(&self, key: &str, slot: Slot, serial: u64) -> Option<&Holder> {
        self.holders(key)
            .iter()
            .find(|h| h.slot == slot && h.serial == serial)
    }

    /// Adds or replaces the registration of `key` by `holder`'s process. A
    /// part holds a key once: another process of the same part holding it
    /// is replaced (an honest owner never sends that).
    pub(crate) fn put(&mut self, key: &GroupName, holder: Holder) {
        let (slot, serial) = (holder.slot, holder.serial);
        // One probe of the key (a clone of a name is a reference count).
        let holders = self.keys.entry(key.clone()).or_default();
        let mut displaced = None;
        match holders.iter_mut().find(|h| h.slot == slot) {
            Some(existing) => {
                if existing.serial != serial {
                    displaced = Some(existing.serial);
                }
                *existing = holder;
            }
            None => {
                holders.push(holder);
                *self.counts.entry(slot).or_default() += 1;
            }
        }
        let owned = self.owned.entry(slot).or_default();
        if let Some(old) = displaced {
            forget(owned, old, key.as_str());
        }
        owned
            .entry(serial)
            .and_modify(|keys| keys.insert(key))
            .or_insert_with(|| ProcessKeys::One(key.clone()));
    }

    /// Sets the local-only option of a local registration.
    pub(crate) fn set_exit_on_loss(&mut self, key: &GroupName, serial: u64, exit: bool) {
        if let Some(h) = self.keys.get_mut(key.as_str()).and_then(|holders| {
            holders
                .iter_mut()
                .find(|h| h.slot == crate::membership::LOCAL_SLOT && h.serial == serial)
        }) {
            h.exit_on_loss = exit;
        }
    }

    /// Removes the registration of `key` by `serial` of `slot`; returns it.
    pub(crate) fn remove(&mut self, key: &str, slot: Slot, serial: u64) -> Option<Holder> {
        let holders = self.keys.get_mut(key)?;
        let at = holders
            .iter()
            .position(|h| h.slot == slot && h.serial == serial)?;
        let holder = holders.swap_remove(at);
        if holders.is_empty() {
            self.keys.remove(key);
            shrink_sparse!(&mut self.keys);
        }
        if let Some(count) = self.counts.get_mut(&slot) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&slot);
            }
        }
        if let Some(owned) = self.owned.get_mut(&slot) {
            forget(owned, serial, key);
            shrink_sparse!(owned);
        }
        Some(holder)
    }

    /// Keys registered by `serial` of `slot`, in key order.
    pub(crate) fn keys_of(&self, slot: Slot, serial: u64) -> Vec<GroupName> {
        let mut keys: Vec<GroupName> = self
            .owned
            .get(&slot)
            .and_then(|o| o.get(&serial))
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default();
        keys.sort_unstable();
        keys
    }

    /// Every `(key, serial)` registered by the part in `slot`.
    pub(crate) fn part(&self, slot: Slot) -> Vec<(GroupName, u64)> {
        let mut out: Vec<(GroupName, u64)> = self
            .owned
            .get(&slot)
            .into_iter()
            .flat_map(|o| o.iter())
            .flat_map(|(&serial, keys)| keys.iter().map(move |k| (k.clone(), serial)))
            .collect();
        out.sort();
        out
    }

    /// Registrations held by the part in `slot`.
    pub(crate) fn count(&self, slot: Slot) -> usize {
        self.counts.get(&slot).copied().unwrap_or(0)
    }

    /// Number of keys with at least one holder.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Keys, in no particular order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &GroupName> {
        self.keys.keys()
    }

    /// Keys, in key order (sorted here: O(n log n)).
    pub(crate) fn sorted_keys(&self) -> Vec<&GroupName> {
        let mut keys: Vec<&GroupName> = self.keys.keys().collect();
        keys.sort_unstable();
        keys
    }

    /// Keys starting with `prefix`, in key order (a scan of every key).
    pub(crate) fn sorted_keys_with_prefix(&self, prefix: &str) -> Vec<&GroupName> {
        let mut keys: Vec<&GroupName> = self
            .keys
            .keys()
            .filter(|k| k.as_str().starts_with(prefix))
            .collect();
        keys.sort_unstable();
        keys
    }
}

fn forget(owned: &mut FxHashMap<u64, ProcessKeys>, serial: u64, key: &str) {
    if let Some(keys) = owned.get_mut(&serial)
        && keys.remove(key)
    {
        owned.remove(&serial);
    }
}

/// The keys one process holds. Most hold one, kept as it is: a set of one
/// was an allocation per registration and a free per unregistration (a
/// process that takes and gives up a key in turn paid both every time).
enum ProcessKeys {
    /// The one key it holds.
    One(GroupName),
    /// Several (a registry of services held by one process): adding or
    /// dropping one must not scan the others.
    Many(FxHashSet<GroupName>),
}

impl ProcessKeys {
    fn insert(&mut self, key: &GroupName) {
        match self {
            Self::One(held) if held == key => {}
            Self::One(held) => {
                let set = [held.clone(), key.clone()].into_iter().collect();
                *self = Self::Many(set);
            }
            Self::Many(set) => {
                set.insert(key.clone());
            }
        }
    }

    /// Drops `key` if held; says whether none is left.
    fn remove(&mut self, key: &str) -> bool {
        match self {
            Self::One(held) => held.as_str() == key,
            Self::Many(set) => {
                set.remove(key);
                shrink_sparse!(&mut *set);
                set.is_empty()
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &GroupName> {
        let (one, many) = match self {
            Self::One(key) => (Some(key), None),
            Self::Many(set) => (None, Some(set)),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

/// Gives back most of a map's room once it is mostly empty (a quarter
/// full), keeping twice what it holds so that churn around one size does
/// not reallocate each time.
macro_rules! shrink_sparse {
    ($map:expr) => {{
        let map = $map;
        if map.capacity() > 64 && map.len() < map.capacity() / 4 {
            map.shrink_to(map.len() * 2);
        }
    }};
}
use shrink_sparse;
