//! Read snapshots published by a scope's writer, read without waiting for
//! it.
//!
//! Each group has a cell (`ArcSwap`) holding its current members; the
//! writer replaces the cells of the groups a step changed, before the step's
//! caller returns (read-your-writes). Readers load a cell: two reference
//! counts, whatever the group's size. The map of cells only takes a write
//! lock when a group name is seen for the first time; cells of groups that
//! emptied stay (empty) and are pruned in bulk when they outnumber live
//! groups. Group lists are rebuilt by a reader only after their epoch moved.
//! An ordered index of the same cells serves prefix reads in
//! O(log groups + matches), never a scan of every group (matches include
//! emptied groups not yet pruned: at most the live ones plus 1024, except
//! during a mass exit whose publication is held, when pruning waits for
//! the held groups to be published).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};
use pg_core::{GroupName, Members};
use rustc_hash::FxHashMap;

/// One group as readers see it: every node's members (this node's are
/// taken from it on read, so a cell holds one snapshot, not two).
#[derive(Debug, Clone, Default)]
pub(crate) struct GroupView {
    pub(crate) all: Members,
}

type Cell = Arc<ArcSwap<GroupView>>;

/// A group list and the epoch it was built at.
type ListCache = Mutex<Option<(u64, Arc<[GroupName]>)>>;

#[derive(Default)]
pub(crate) struct View {
    groups: RwLock<FxHashMap<GroupName, Cell>>,
    /// The same cells, by name: written only with `groups`' write lock
    /// held, so both always hold the same names.
    ordered: RwLock<BTreeMap<GroupName, Cell>>,
    /// Number of cells in `groups`, read without its lock.
    cells: AtomicUsize,
    empty: Arc<GroupView>,
    groups_epoch: AtomicU64,
    local_epoch: AtomicU64,
    all_cache: ListCache,
    local_cache: ListCache,
}

impl View {
    /// Publishes `group`'s members (writer only). The group-set epochs
    /// move here, when a cell turns empty or non-empty, after the cell is
    /// stored: a reader that sees the new epoch sees the cell, and the
    /// epochs describe the cells even while some groups' publication is
    /// held back (see `scope/publish.rs`).
    pub(crate) fn publish(&self, group: &GroupName, all: Members) {
        let (empty, has_local) = (all.is_empty(), all.has_local());
        let view = Arc::new(GroupView { all });
        let stored = match self.groups.read().get(group) {
            Some(cell) => Ok(cell.swap(view)),
            None => Err(view),
        };
        let old = match stored {
            Ok(old) => old,
            Err(view) => {
                let mut groups = self.groups.write();
                let old = match groups.get(group) {
                    Some(cell) => cell.swap(view),
                    None => {
                        // A new cell starts out holding the view: a swap
                        // would pay arc-swap's debts (a walk over every
                        // reader thread's slots), for each of the 10k
                        // groups a first sync brings in.
                        let cell: Cell = Arc::new(ArcSwap::new(view));
                        self.ordered
                            .write()
                            .insert(group.clone(), Arc::clone(&cell));
                        groups.insert(group.clone(), cell);
                        Arc::clone(&self.empty)
                    }
                };
                self.cells.store(groups.len(), Ordering::Relaxed);
                old
            }
        };
        if empty != old.all.is_empty() {
            self.groups_epoch.fetch_add(1, Ordering::Release);
        }
        if has_local != old.all.has_local() {
            self.local_epoch.fetch_add(1, Ordering::Release);
        }
    }

    /// Prunes empty cells when they outnumber the live groups (writer
    /// only).
    pub(crate) fn prune(&self, live_groups: usize) {
        if self.cells.load(Ordering::Relaxed) > 2 * live_groups + 1024 {
            let mut groups = self.groups.write();
            groups.retain(|_, cell| !cell.load().all.is_empty());
            self.ordered
                .write()
                .retain(|name, _| groups.contains_key(name.as_str()));
            self.cells.store(groups.len(), Ordering::Relaxed);
        }
    }

    fn group(&self, group: &str) -> Arc<GroupView> {
        match self.groups.read().get(group) {
            Some(cell) => cell.load_full(),
            None => Arc::clone(&self.empty),
        }
    }

    pub(crate) fn members(&self, group: &str) -> Members {
        self.group(group).all.clone()
    }

    pub(crate) fn local_members(&self, group: &str) -> Members {
        self.group(group).all.local_only()
    }

    /// Every non-empty group whose name starts with `prefix`, in name
    /// order, with its members (each group its own snapshot).
    pub(crate) fn prefix(&self, prefix: &str) -> Vec<(GroupName, Members)> {
        self.ordered
            .read()
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(name, _)| name.as_str().starts_with(prefix))
            .map(|(name, cell)| (name.clone(), cell.load().all.clone()))
            .filter(|(_, members)| !members.is_empty())
            .collect()
    }

    /// The sum of `f` over the non-empty groups under `prefix`, without
    /// collecting them.
    pub(crate) fn prefix_sum(&self, prefix: &str, f: impl Fn(&Members) -> usize) -> usize {
        self.ordered
            .read()
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(name, _)| name.as_str().starts_with(prefix))
            .map(|(_, cell)| f(&cell.load().all))
            .sum()
    }

    pub(crate) fn which_groups(&self) -> Arc<[GroupName]> {
        self.cached(&self.all_cache, &self.groups_epoch, |v| !v.all.is_empty())
    }

    pub(crate) fn which_local_groups(&self) -> Arc<[GroupName]> {
        self.cached(&self.local_cache, &self.local_epoch, |v| v.all.has_local())
    }

    fn cached(
        &self,
        cache: &ListCache,
        epoch: &AtomicU64,
        keep: impl Fn(&GroupView) -> bool,
    ) -> Arc<[GroupName]> {
        let epoch = epoch.load(Ordering::Acquire);
        if let Some((at, list)) = cache.lock().as_ref()
            && *at == epoch
        {
            return Arc::clone(list);
        }
        // Built from the cells, which are at least as new as `epoch`, in
        // the ordered index's order: sorted without a sort (a rebuild of
        // 10k names sorting them cost a millisecond).
        let list: Arc<[GroupName]> = self
            .ordered
            .read()
            .iter()
            .filter(|(_, cell)| keep(&cell.load()))
            .map(|(name, _)| name.clone())
            .collect();
        *cache.lock() = Some((epoch, Arc::clone(&list)));
        list
    }
}
