//! The simulated network: per-message delay, loss, duplication, reordering,
//! and which node pairs can reach each other.

use std::time::Duration;

/// Faults and delays of the simulated network. Probabilities are in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct SimNetConfig {
    /// Shortest one-way delay of a frame.
    pub min_delay: Duration,
    /// Longest one-way delay of a frame.
    pub max_delay: Duration,
    /// Chance that a frame is lost.
    pub loss: f64,
    /// Chance that a frame is delivered twice.
    pub duplication: f64,
    /// Whether frames between one pair of nodes may overtake each other
    /// (a real QUIC stream never reorders; a faulty phase may).
    pub reorder: bool,
    /// Time for a connection change (crash, partition, heal, restart) to be
    /// noticed by both ends, as node up/down.
    pub liveness_delay: Duration,
}

impl SimNetConfig {
    /// A well-behaved network: 1-5 ms delays, in order, nothing lost.
    pub fn reliable() -> Self {
        Self {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            loss: 0.0,
            duplication: 0.0,
            reorder: false,
            liveness_delay: Duration::from_millis(200),
        }
    }

    /// A hostile network: 1-50 ms, 5% loss, 5% duplication, reordering.
    pub fn faulty() -> Self {
        Self {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(50),
            loss: 0.05,
            duplication: 0.05,
            reorder: true,
            liveness_delay: Duration::from_millis(200),
        }
    }
}

impl Default for SimNetConfig {
    fn default() -> Self {
        Self::reliable()
    }
}

/// Which nodes can reach which: partition sides plus individually cut links.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reachability {
    side: Vec<u32>,
    cut: rustc_hash::FxHashSet<(usize, usize)>,
}

impl Reachability {
    pub(crate) fn new(nodes: usize) -> Self {
        Self {
            side: vec![0; nodes],
            cut: Default::default(),
        }
    }

    pub(crate) fn connected(&self, a: usize, b: usize) -> bool {
        self.side[a] == self.side[b] && !self.cut.contains(&ordered(a, b))
    }

    /// Puts each listed set of nodes on a side of its own; unlisted nodes
    /// share the remaining side.
    pub(crate) fn partition(&mut self, sides: &[Vec<usize>]) {
        self.side.iter_mut().for_each(|s| *s = 0);
        for (i, nodes) in sides.iter().enumerate() {
            for &n in nodes {
                self.side[n] = i as u32 + 1;
            }
        }
    }

    pub(crate) fn cut(&mut self, a: usize, b: usize) {
        self.cut.insert(ordered(a, b));
    }

    pub(crate) fn heal(&mut self) {
        self.side.iter_mut().for_each(|s| *s = 0);
        self.cut.clear();
    }

    pub(crate) fn is_whole(&self) -> bool {
        self.cut.is_empty() && self.side.iter().all(|&s| s == 0)
    }
}

fn ordered(a: usize, b: usize) -> (usize, usize) {
    if a < b { (a, b) } else { (b, a) }
}
