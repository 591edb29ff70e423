//! Faults a simulated cluster undergoes: crashes, restarts (with a scope
//! that starts late), partitions, cuts and the network's quality.

use std::time::Duration;

use rand_xoshiro::rand_core::Rng;

use crate::{NodeId, Scope, ScopeConfig};

use super::check::EventReplay;
use super::{Cluster, Input, SimNetConfig};

impl Cluster {
    /// Crashes node `i`: its processes and state vanish; peers notice after
    /// the liveness delay.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].alive = false;
        self.nodes[i].scope = None;
        self.nodes[i].told_up.iter_mut().for_each(|t| *t = None);
        self.schedule_liveness();
    }

    /// Restarts node `i` with a new incarnation and no processes.
    pub fn restart(&mut self, i: usize) {
        self.crash(i);
        self.start(i);
    }

    /// Restarts node `i` with a new incarnation whose scope starts only
    /// `delay` later, once its connections are up: the scope then meets
    /// peers that are already up, and runs start-up discovery on them.
    pub fn restart_with_late_scope(&mut self, i: usize, delay: Duration) {
        self.crash(i);
        let node = &mut self.nodes[i];
        node.incarnation += 1;
        node.alive = true;
        node.next_serial = 1;
        node.replay = EventReplay::default();
        node.reg_replay = Default::default();
        let incarnation = node.incarnation;
        self.pending_starts += 1;
        self.schedule(
            self.now + delay,
            Input::StartScope {
                node: i,
                incarnation,
            },
        );
    }

    /// Whether no scope start is pending.
    pub fn is_settled(&self) -> bool {
        self.pending_starts == 0
    }

    /// Splits the cluster: each listed set of nodes on a side of its own,
    /// the rest together.
    pub fn partition(&mut self, sides: &[Vec<usize>]) {
        self.reach.partition(sides);
        self.schedule_liveness();
    }

    /// Cuts the link between `a` and `b` only.
    pub fn cut(&mut self, a: usize, b: usize) {
        self.reach.cut(a, b);
        self.schedule_liveness();
    }

    /// Heals every partition and cut link.
    pub fn heal(&mut self) {
        self.reach.heal();
        self.schedule_liveness();
    }

    /// Whether no partition or cut is in force.
    pub fn is_whole(&self) -> bool {
        self.reach.is_whole()
    }

    /// Replaces the network's fault settings from now on.
    pub fn set_net(&mut self, net: SimNetConfig) {
        self.config.net = net;
    }

    pub(super) fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.incarnation += 1;
        node.alive = true;
        node.next_serial = 1;
        node.replay = EventReplay::default();
        node.reg_replay = Default::default();
        self.start_scope(i);
        self.schedule_liveness();
    }

    /// Creates node `i`'s scope and tells it of the peers already up, as a
    /// runtime does when a scope starts on a running node.
    pub(super) fn start_scope(&mut self, i: usize) {
        let seed = self.rng.next_u64();
        let config = ScopeConfig {
            rng_seed: seed,
            ..self.config.scope.clone()
        };
        let now = self.now();
        let node = &mut self.nodes[i];
        let mut scope = Scope::new(node.id(), config, now);
        for (j, told) in node.told_up.iter().enumerate() {
            if let Some(incarnation) = told {
                scope.handle_node_up(NodeId::new(self.nodes_names[j].clone(), *incarnation));
            }
        }
        node.scope = Some(scope);
        self.drain(i, true);
    }
}
