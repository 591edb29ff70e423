//! [`Members`]: a read-only snapshot of one group's members.

use std::fmt;
use std::sync::Arc;

use crate::id::{NodeId, Pid};
use crate::member_list::{CountedKeys, ListSnapshot, MemberKey};
use crate::meta::Meta;

/// A snapshot of one group's members (every node's, or this node's only),
/// with join counts. Taking it copies nothing: it shares storage with the
/// table, and later changes to the group do not show through it.
///
/// Like Erlang's `pg:get_members/2`, a process that joined the group `n`
/// times is a member `n` times: [`iter`](Self::iter) yields it `n` times and
/// [`len`](Self::len) counts it `n` times. [`iter_counted`](Self::iter_counted)
/// yields each distinct process once with its count, and
/// [`distinct_len`](Self::distinct_len) counts distinct processes. Together
/// with the events that follow a `monitor` snapshot (which carry counts too),
/// a subscriber can replay the membership exactly.
///
/// Order: this node's members first, then the other nodes'; otherwise
/// unspecified (it changes as members come and go).
#[derive(Clone)]
pub struct Members {
    local: ListSnapshot,
    /// Empty for a this-node-only snapshot.
    remote: ListSnapshot,
    nodes: Arc<Vec<Option<NodeId>>>,
}

impl Members {
    pub(crate) fn new(
        local: ListSnapshot,
        remote: ListSnapshot,
        nodes: Arc<Vec<Option<NodeId>>>,
    ) -> Self {
        Self {
            local,
            remote,
            nodes,
        }
    }

    /// The same snapshot restricted to the members of the node it was taken
    /// on (what [`Scope::local_members`](crate::Scope::local_members) gives).
    /// Copies nothing.
    pub fn local_only(&self) -> Members {
        Members {
            local: self.local.clone(),
            remote: ListSnapshot::default(),
            nodes: Arc::clone(&self.nodes),
        }
    }

    /// Number of memberships: each process as many times as it joined
    /// (Erlang's `length(pg:get_members(G))`).
    pub fn len(&self) -> usize {
        // Counts fit in memory as pids would: the table bounds them by u32
        // per member and by the member count per group.
        usize::try_from(self.local.total() + self.remote.total()).unwrap_or(usize::MAX)
    }

    /// Number of distinct processes.
    pub fn distinct_len(&self) -> usize {
        self.local.distinct() + self.remote.distinct()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.distinct_len() == 0
    }

    /// Whether a member of the node the snapshot was taken on is among
    /// them (`!local_only().is_empty()`, without building the snapshot).
    pub fn has_local(&self) -> bool {
        self.local.distinct() > 0
    }

    /// The members with multiplicity: a process that joined `n` times is
    /// yielded `n` times, one after the other.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            counted: self.iter_counted(),
            repeat: (MemberKey::new(0, 0), 0),
            remaining: self.len(),
        }
    }

    /// Each distinct member once, with how many times it joined (at least 1).
    pub fn iter_counted(&self) -> IterCounted<'_> {
        IterCounted {
            local: self.local.iter(),
            remote: self.remote.iter(),
            nodes: &self.nodes,
        }
    }

    /// Each distinct member once (what a broadcast delivers to).
    pub fn iter_distinct(&self) -> impl ExactSizeIterator<Item = Pid> + '_ {
        self.iter_counted().map(|(pid, _)| pid)
    }

    /// Each distinct member once, with its join count and metadata (`None`
    /// for a member that joined without any).
    pub fn iter_with_meta(&self) -> impl Iterator<Item = (Pid, u32, Option<Meta>)> + '_ {
        let nodes = &self.nodes;
        self.local
            .iter_meta()
            .chain(self.remote.iter_meta())
            .map(move |(key, count, meta)| (pid_of(nodes, key), count, meta))
    }

    /// The metadata of `pid` (`None` if not a member or joined without any;
    /// a linear scan).
    pub fn meta_of(&self, pid: &Pid) -> Option<Meta> {
        self.iter_with_meta()
            .find(|(p, _, _)| p == pid)
            .and_then(|(_, _, meta)| meta)
    }

    /// The members with multiplicity, as a vector (Erlang's list).
    pub fn to_vec(&self) -> Vec<Pid> {
        self.iter().collect()
    }

    /// How many times `pid` joined (0 if not a member; a linear scan).
    pub fn count_of(&self, pid: &Pid) -> u32 {
        self.iter_counted()
            .find(|(p, _)| p == pid)
            .map_or(0, |(_, count)| count)
    }

    /// Whether `pid` is a member (a linear scan).
    pub fn contains(&self, pid: &Pid) -> bool {
        self.count_of(pid) > 0
    }
}

impl Default for Members {
    /// No members.
    fn default() -> Self {
        Members {
            local: ListSnapshot::default(),
            remote: ListSnapshot::default(),
            nodes: Arc::new(Vec::new()),
        }
    }
}

impl fmt::Debug for Members {
    /// Each distinct member with its count (never expanded: a count may be
    /// in the billions).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter_counted()).finish()
    }
}

impl<'a> IntoIterator for &'a Members {
    type Item = Pid;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over `(pid, join count)`, each distinct member once; see
/// [`Members::iter_counted`].
pub struct IterCounted<'a> {
    local: CountedKeys<'a>,
    remote: CountedKeys<'a>,
    nodes: &'a [Option<NodeId>],
}

impl IterCounted<'_> {
    #[inline]
    fn next_key(&mut self) -> Option<(MemberKey, u32)> {
        match self.local.next() {
            Some(item) => Some(item),
            None => self.remote.next(),
        }
    }
}

impl Iterator for IterCounted<'_> {
    type Item = (Pid, u32);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (key, count) = self.next_key()?;
        Some((pid_of(self.nodes, key), count))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.local.len() + self.remote.len();
        (n, Some(n))
    }
}

impl ExactSizeIterator for IterCounted<'_> {}

#[inline]
fn pid_of(nodes: &[Option<NodeId>], key: MemberKey) -> Pid {
    // Invariant: a snapshot pairs member lists with the node table of the
    // same instant, and a slot is cleared only after its last member left
    // every group.
    let node = nodes[usize::from(key.slot())]
        .as_ref()
        .expect("member of a node without a slot");
    Pid::new_unchecked(node.clone(), key.serial())
}

/// Iterator over the members with multiplicity; see [`Members::iter`].
pub struct Iter<'a> {
    counted: IterCounted<'a>,
    /// The member being repeated and how many more times.
    repeat: (MemberKey, u32),
    remaining: usize,
}

impl Iterator for Iter<'_> {
    type Item = Pid;

    #[inline]
    fn next(&mut self) -> Option<Pid> {
        let key = if self.repeat.1 > 0 {
            self.repeat.1 -= 1;
            self.repeat.0
        } else {
            let (key, count) = self.counted.next_key()?;
            self.repeat = (key, count - 1);
            key
        };
        self.remaining = self.remaining.saturating_sub(1);
        Some(pid_of(self.counted.nodes, key))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Iter<'_> {}
