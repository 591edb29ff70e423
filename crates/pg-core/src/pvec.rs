//! A persistent vector: O(1) clone, O(log n) changes by path copying.
//!
//! Group member lists live here. Readers hold clones (snapshots) while the
//! writer keeps changing the table, so a change must not copy the whole
//! list: it copies only the nodes on the path to the changed element, and
//! only those a snapshot still shares (`Arc` reference counts tell).
//!
//! Shape: leaves of up to [`LEAF`] elements under branches of up to
//! [`BRANCH`] children, filled left to right (a radix tree indexed by
//! position, like Clojure's vector without its tail). Only `push`, `pop` and
//! `set` exist: the membership table removes by swapping with the last
//! element, so the tree never has holes.
//!
//! Why not `imbl::Vector`: its chunks are fixed at 64 slots, so a group of
//! seven members allocates a 528-byte chunk (our groups are mostly small and
//! memory per membership is a target), and its branches of 64 children make
//! every path copy bump 64 reference counts per level. Here a lone leaf
//! grows like a `Vec` (a one-member group costs two small allocations: the
//! shared header and the buffer) and a path copy at a million members
//! touches four branches of 16 children and one leaf of 128 elements.

use std::fmt;
use std::sync::Arc;

const LEAF_BITS: u32 = 7;
/// Elements per leaf.
pub(crate) const LEAF: usize = 1 << LEAF_BITS;
const BRANCH_BITS: u32 = 4;
/// Children per branch.
const BRANCH: usize = 1 << BRANCH_BITS;

enum Node<T> {
    Leaf(Arc<Vec<T>>),
    Branch(Arc<Vec<Node<T>>>),
}

impl<T> Clone for Node<T> {
    fn clone(&self) -> Self {
        match self {
            Node::Leaf(v) => Node::Leaf(Arc::clone(v)),
            Node::Branch(c) => Node::Branch(Arc::clone(c)),
        }
    }
}

/// A persistent vector (elements are cloned out: keep them cheap to clone). Cloning shares everything;
/// changing a clone copies the changed path only.
pub(crate) struct PVec<T> {
    root: Option<Node<T>>,
    len: u32,
    /// Branch levels above the leaves (0: the root is a leaf).
    height: u32,
}

impl<T> Clone for PVec<T> {
    fn clone(&self) -> Self {
        Self {
            root: self.root.clone(),
            len: self.len,
            height: self.height,
        }
    }
}

impl<T> Default for PVec<T> {
    fn default() -> Self {
        Self {
            root: None,
            len: 0,
            height: 0,
        }
    }
}

/// Elements a tree of `height` branch levels holds.
fn capacity(height: u32) -> usize {
    LEAF << (BRANCH_BITS * height)
}

/// Shift that selects the child of a branch at `height` (>= 1) for an index.
fn shift(height: u32) -> u32 {
    LEAF_BITS + BRANCH_BITS * (height - 1)
}

fn child_index(index: usize, height: u32) -> usize {
    (index >> shift(height)) & (BRANCH - 1)
}

/// The vector behind `arc`, copied first if a snapshot shares it. A copy
/// gets room for one more element, rounded to a power of two and capped at
/// `max`, so a shared leaf that keeps growing does not reallocate twice and
/// a full leaf never carries spare room.
fn unshare<U: Clone>(arc: &mut Arc<Vec<U>>, max: usize) -> &mut Vec<U> {
    if Arc::get_mut(arc).is_none() {
        let cap = (arc.len() + 1).next_power_of_two().min(max).max(arc.len());
        let mut copy = Vec::with_capacity(cap);
        copy.extend_from_slice(arc);
        *arc = Arc::new(copy);
    }
    // Invariant: `arc` was just replaced by a fresh, unshared Arc if it was
    // shared, and nothing else can take a reference in between.
    Arc::get_mut(arc).expect("unshared after copy")
}

impl<T: Clone> PVec<T> {
    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// The element at `index`, if in range.
    pub(crate) fn get(&self, index: usize) -> Option<T> {
        if index >= self.len() {
            return None;
        }
        let mut node = self.root.as_ref()?;
        let mut height = self.height;
        loop {
            match node {
                Node::Leaf(items) => return items.get(index & (LEAF - 1)).cloned(),
                Node::Branch(children) => {
                    node = children.get(child_index(index, height))?;
                    height -= 1;
                }
            }
        }
    }

    /// Replaces the element at `index`; does nothing if out of range.
    pub(crate) fn set(&mut self, index: usize, value: T) {
        if index >= self.len() {
            return;
        }
        let Some(mut node) = self.root.as_mut() else {
            return;
        };
        let mut height = self.height;
        loop {
            match node {
                Node::Leaf(items) => {
                    if let Some(slot) = unshare(items, LEAF).get_mut(index & (LEAF - 1)) {
                        *slot = value;
                    }
                    return;
                }
                Node::Branch(children) => {
                    let i = child_index(index, height);
                    match unshare(children, BRANCH).get_mut(i) {
                        Some(child) => node = child,
                        None => return,
                    }
                    height -= 1;
                }
            }
        }
    }

    /// A vector holding `items`, built in one pass: the same shape as
    /// pushing them one by one, without growing each leaf through the
    /// sizes on the way (a first sync fills thousands of lists at once).
    /// A list of one leaf keeps `items`' buffer as it is.
    pub(crate) fn from_vec(items: Vec<T>) -> Self {
        let len = items.len();
        debug_assert!(u32::try_from(len).is_ok());
        if len == 0 {
            return Self::default();
        }
        let mut level: Vec<Node<T>> = if len <= LEAF {
            vec![Node::Leaf(Arc::new(items))]
        } else {
            items
                .chunks(LEAF)
                .map(|leaf| Node::Leaf(Arc::new(leaf.to_vec())))
                .collect()
        };
        let mut height = 0;
        while level.len() > 1 {
            let mut parents = Vec::with_capacity(level.len().div_ceil(BRANCH));
            let mut children = level.into_iter().peekable();
            while children.peek().is_some() {
                let branch: Vec<Node<T>> = children.by_ref().take(BRANCH).collect();
                parents.push(Node::Branch(Arc::new(branch)));
            }
            level = parents;
            height += 1;
        }
        Self {
            root: level.pop(),
            len: len as u32,
            height,
        }
    }

    /// Appends `value`. Positions are `u32`: a vector stops growing at
    /// `u32::MAX` elements (the membership table bounds groups far below).
    pub(crate) fn push(&mut self, value: T) {
        debug_assert!(self.len < u32::MAX);
        if self.len() == capacity(self.height)
            && let Some(full) = self.root.take()
        {
            self.root = Some(Node::Branch(Arc::new(vec![full])));
            self.height += 1;
        }
        let Some(root) = self.root.as_mut() else {
            let mut items = Vec::with_capacity(4);
            items.push(value);
            self.root = Some(Node::Leaf(Arc::new(items)));
            self.len = 1;
            return;
        };
        Self::push_into(root, self.height, self.len as usize, value);
        self.len += 1;
    }

    fn push_into(node: &mut Node<T>, height: u32, index: usize, value: T) {
        match node {
            Node::Leaf(items) => {
                let items = unshare(items, LEAF);
                if items.len() == items.capacity() {
                    // Doubling, as `Vec` would, but never past a leaf: a
                    // leaf built at its exact size (`from_vec`) grows as
                    // one pushed element by element, to LEAF and no more.
                    let room = (items.len() * 2).clamp(4, LEAF);
                    items.reserve_exact(room.saturating_sub(items.len()));
                }
                items.push(value);
            }
            Node::Branch(children) => {
                let children = unshare(children, BRANCH);
                let i = child_index(index, height);
                match children.get_mut(i) {
                    Some(child) => Self::push_into(child, height - 1, index, value),
                    None => children.push(Self::path_to(height - 1, value)),
                }
            }
        }
    }

    /// A new rightmost path of `height` branch levels ending in a leaf
    /// holding `value`.
    fn path_to(height: u32, value: T) -> Node<T> {
        if height == 0 {
            let mut items = Vec::with_capacity(LEAF);
            items.push(value);
            return Node::Leaf(Arc::new(items));
        }
        Node::Branch(Arc::new(vec![Self::path_to(height - 1, value)]))
    }

    /// Removes and returns the last element.
    pub(crate) fn pop(&mut self) -> Option<T> {
        let index = (self.len as usize).checked_sub(1)?;
        let root = self.root.as_mut()?;
        let (value, emptied) = Self::pop_from(root, self.height, index);
        self.len -= 1;
        if emptied || self.len == 0 {
            self.root = None;
            self.height = 0;
            return value;
        }
        // A root branch with one child: drop a level.
        while let Some(Node::Branch(children)) = &self.root
            && children.len() == 1
        {
            let only = children.first().cloned();
            self.root = only;
            self.height -= 1;
        }
        if self.height == 0
            && let Some(Node::Leaf(items)) = self.root.as_mut()
            && items.capacity() > 16
            && items.len() < items.capacity() / 4
        {
            // A power of two, so later growth lands on LEAF exactly.
            let len = items.len();
            unshare(items, LEAF).shrink_to((len * 2).next_power_of_two());
        }
        value
    }

    /// Pops the element at `index` (the last) below `node`; says whether
    /// `node` is left empty.
    fn pop_from(node: &mut Node<T>, height: u32, index: usize) -> (Option<T>, bool) {
        match node {
            Node::Leaf(items) => {
                if items.len() == 1 {
                    // Dropped whole by the parent: no need to copy it.
                    return (items.first().cloned(), true);
                }
                let items = unshare(items, LEAF);
                (items.pop(), items.is_empty())
            }
            Node::Branch(children) => {
                let children = unshare(children, BRANCH);
                let i = child_index(index, height);
                let Some(child) = children.get_mut(i) else {
                    return (None, children.is_empty());
                };
                let (value, emptied) = Self::pop_from(child, height - 1, index);
                if emptied {
                    children.truncate(i);
                }
                (value, children.is_empty())
            }
        }
    }

    /// All the elements as one slice, when they fit in one leaf (a
    /// vector of at most [`LEAF`] elements always does).
    pub(crate) fn as_leaf(&self) -> Option<&[T]> {
        match &self.root {
            None => Some(&[]),
            Some(Node::Leaf(items)) => Some(items),
            Some(Node::Branch(_)) => None,
        }
    }

    /// The elements in order.
    pub(crate) fn iter(&self) -> Iter<'_, T> {
        let mut iter = Iter {
            stack: Vec::new(),
            leaf: [].iter(),
            remaining: self.len(),
        };
        match &self.root {
            Some(Node::Leaf(items)) => iter.leaf = items.iter(),
            Some(Node::Branch(children)) => iter.stack.push((&children[..], 0)),
            None => {}
        }
        iter
    }
}

impl<T: Clone + fmt::Debug> fmt::Debug for PVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Iterator over a [`PVec`], leaf by leaf.
pub(crate) struct Iter<'a, T> {
    /// Branches being walked, with the next child to visit.
    stack: Vec<(&'a [Node<T>], usize)>,
    leaf: std::slice::Iter<'a, T>,
    remaining: usize,
}

impl<T: Clone> Iterator for Iter<'_, T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        if let Some(value) = self.leaf.next() {
            self.remaining -= 1;
            return Some(value.clone());
        }
        self.next_leaf()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<T: Clone> Iter<'_, T> {
    /// Moves to the next leaf and returns its first element (the slow path
    /// of `next`, once per leaf).
    #[cold]
    fn next_leaf(&mut self) -> Option<T> {
        loop {
            if let Some(value) = self.leaf.next() {
                self.remaining -= 1;
                return Some(value.clone());
            }
            let (children, next) = self.stack.last_mut()?;
            let Some(child) = children.get(*next) else {
                self.stack.pop();
                continue;
            };
            *next += 1;
            match child {
                Node::Leaf(items) => self.leaf = items.iter(),
                Node::Branch(grandchildren) => self.stack.push((&grandchildren[..], 0)),
            }
        }
    }
}

impl<T: Clone> ExactSizeIterator for Iter<'_, T> {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Push(u64),
        Pop,
        Set(usize, u64),
        Snapshot,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => any::<u64>().prop_map(Op::Push),
            3 => Just(Op::Pop),
            2 => (any::<usize>(), any::<u64>()).prop_map(|(i, v)| Op::Set(i, v)),
            1 => Just(Op::Snapshot),
        ]
    }

    fn check(v: &PVec<u64>, model: &[u64]) {
        assert_eq!(v.len(), model.len());
        assert_eq!(v.iter().len(), model.len());
        assert_eq!(v.iter().collect::<Vec<_>>(), model);
        for (i, want) in model.iter().enumerate().step_by(37) {
            assert_eq!(v.get(i), Some(*want));
        }
        assert_eq!(v.get(model.len()), None);
    }

    proptest! {
        /// Every operation matches a `Vec`, and every snapshot taken along
        /// the way keeps the contents it had.
        #[test]
        fn matches_vec_and_snapshots_stay(
            prefill in 0usize..5000,
            bulk in any::<bool>(),
            ops in proptest::collection::vec(op(), 0..400),
        ) {
            let mut v = PVec::default();
            let model: Vec<u64> = (0..prefill as u64).collect();
            for &i in &model {
                v.push(i);
            }
            if bulk {
                // Built at once: the same shape as pushed one by one.
                let built = PVec::from_vec(model.clone());
                prop_assert_eq!(built.height, v.height);
                v = built;
            }
            let mut model = model;
            let mut snapshots = vec![(v.clone(), model.clone())];
            for op in ops {
                match op {
                    Op::Push(x) => {
                        v.push(x);
                        model.push(x);
                    }
                    Op::Pop => assert_eq!(v.pop(), model.pop()),
                    Op::Set(i, x) if !model.is_empty() => {
                        let i = i % model.len();
                        v.set(i, x);
                        model[i] = x;
                    }
                    Op::Set(i, x) => v.set(i, x),
                    Op::Snapshot => snapshots.push((v.clone(), model.clone())),
                }
            }
            check(&v, &model);
            for (snapshot, contents) in &snapshots {
                check(snapshot, contents);
            }
        }
    }

    /// A leaf built at its exact size grows as a pushed one does: never
    /// with room past a leaf.
    #[test]
    fn a_leaf_built_at_once_grows_no_further_than_a_leaf() {
        for len in [1usize, 3, 100, LEAF - 1] {
            let mut v = PVec::from_vec((0..len as u64).collect());
            for i in len..LEAF {
                v.push(i as u64);
                let Some(Node::Leaf(items)) = &v.root else {
                    panic!("one leaf expected");
                };
                assert!(
                    items.capacity() <= LEAF,
                    "{len} + {i}: {}",
                    items.capacity()
                );
            }
            assert_eq!(
                v.iter().collect::<Vec<_>>(),
                (0..LEAF as u64).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn grows_and_shrinks_through_levels() {
        let mut v = PVec::default();
        let n = capacity(2) + 3;
        for i in 0..n as u64 {
            v.push(i);
        }
        assert_eq!(v.height, 3);
        let snapshot = v.clone();
        for i in (0..n as u64).rev() {
            assert_eq!(v.pop(), Some(i));
        }
        assert_eq!(v.pop(), None);
        assert!(v.root.is_none());
        assert_eq!(snapshot.iter().count(), n);
        assert_eq!(snapshot.get(n - 1), Some(n as u64 - 1));
    }

    #[test]
    fn a_change_copies_only_its_path() {
        let mut v = PVec::default();
        for i in 0..capacity(1) as u64 * 2 {
            v.push(i);
        }
        let snapshot = v.clone();
        v.set(5, 99);
        let (Some(Node::Branch(old)), Some(Node::Branch(new))) = (&snapshot.root, &v.root) else {
            panic!("two levels expected");
        };
        assert!(!Arc::ptr_eq(old, new), "the root was copied");
        let (Node::Branch(old_right), Node::Branch(new_right)) = (&old[1], &new[1]) else {
            panic!("branches expected");
        };
        assert!(
            Arc::ptr_eq(old_right, new_right),
            "the untouched half is shared"
        );
    }
}
