//! The dial policy in virtual time: a mesh always heals.
//!
//! A small world of 2-5 nodes drives `DialPolicy` the way the QUIC mesh
//! does (a dial reaches a live, uncut node at once; a new link exchanges
//! peers both ways and announces the new node to the others), through every
//! restart order under every seed topology, and cuts shorter and longer than
//! every backoff cap. Each run must end fully meshed within a bound, and a
//! meshed cluster must stop dialing.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pg_core::NodeName;
use pg_net::dial::{DialConfig, DialOutcome, DialPolicy};

const STEP: Duration = Duration::from_millis(50);
/// Full mesh is due this long after the network lets it (the slowest
/// backoff cap plus the larger name's head-start delay, with margin).
const HEAL_BOUND: Duration = Duration::from_secs(40);

#[derive(Debug, Clone, Copy)]
enum Topology {
    /// Every node seeded at the smallest name, which has no seed.
    StarOnSmallest,
    /// Every node seeded at the largest name, which has no seed.
    StarOnLargest,
    /// Each node seeded at the previous one.
    Chain,
}

struct SimNode {
    name: NodeName,
    addr: SocketAddr,
    seeds: Vec<SocketAddr>,
    policy: Option<DialPolicy>,
    runs: u64,
    dials: u64,
}

struct World {
    start: Instant,
    now: Instant,
    nodes: Vec<SimNode>,
    /// Pairs the network refuses (both ways).
    cut: BTreeSet<(usize, usize)>,
    links: BTreeSet<(usize, usize)>,
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl World {
    fn new(n: usize, topology: Topology) -> Self {
        let start = Instant::now();
        let addr = |i: usize| SocketAddr::from(([10, 0, 0, i as u8 + 1], 4000));
        let nodes = (0..n)
            .map(|i| {
                let seeds = match topology {
                    Topology::StarOnSmallest if i > 0 => vec![addr(0)],
                    Topology::StarOnLargest if i < n - 1 => vec![addr(n - 1)],
                    Topology::Chain if i > 0 => vec![addr(i - 1)],
                    _ => Vec::new(),
                };
                SimNode {
                    name: NodeName::new(&format!("n{i}")).unwrap(),
                    addr: addr(i),
                    seeds,
                    policy: None,
                    runs: 0,
                    dials: 0,
                }
            })
            .collect();
        Self {
            start,
            now: start,
            nodes,
            cut: BTreeSet::new(),
            links: BTreeSet::new(),
        }
    }

    fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.runs += 1;
        let config = DialConfig {
            seed: (i as u64 + 1) * 1000 + node.runs,
            ..DialConfig::default()
        };
        node.policy = Some(DialPolicy::new(
            node.name.clone(),
            &node.seeds,
            config,
            self.now,
        ));
    }

    fn crash(&mut self, i: usize) {
        self.nodes[i].policy = None;
        for other in self.linked(i) {
            self.unlink(i, other);
        }
    }

    fn cut(&mut self, a: usize, b: usize) {
        self.cut.insert(pair(a, b));
        if self.links.contains(&pair(a, b)) {
            self.unlink(a, b);
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    fn linked(&self, i: usize) -> Vec<usize> {
        self.links
            .iter()
            .filter_map(|&(a, b)| match (a == i, b == i) {
                (true, _) => Some(b),
                (_, true) => Some(a),
                _ => None,
            })
            .collect()
    }

    fn policy(&mut self, i: usize) -> Option<&mut DialPolicy> {
        self.nodes[i].policy.as_mut()
    }

    fn unlink(&mut self, a: usize, b: usize) {
        self.links.remove(&pair(a, b));
        let now = self.now;
        for (me, other) in [(a, b), (b, a)] {
            let name = self.nodes[other].name.clone();
            if let Some(p) = self.policy(me) {
                p.handle_disconnected(&name, now);
            }
        }
    }

    /// A new link, as the mesh's handshake makes it: both sides learn the
    /// other's listen address, exchange whom they know, and tell their
    /// other peers about the newcomer.
    fn link(&mut self, a: usize, b: usize) {
        let now = self.now;
        let known_a = self.linked(a);
        let known_b = self.linked(b);
        self.links.insert(pair(a, b));
        for (me, other, others_known) in [(a, b, &known_b), (b, a, &known_a)] {
            let (name, addr) = (self.nodes[other].name.clone(), self.nodes[other].addr);
            let heard: Vec<_> = others_known
                .iter()
                .filter(|&&k| k != me)
                .map(|&k| (self.nodes[k].name.clone(), self.nodes[k].addr))
                .collect();
            if let Some(p) = self.policy(me) {
                p.handle_connected(&name, Some(addr), now);
                for (n, ad) in &heard {
                    p.handle_heard(n, *ad, now);
                }
            }
        }
        for (newcomer, host, hosts_peers) in [(b, a, &known_a), (a, b, &known_b)] {
            let _ = host;
            let (name, addr) = (self.nodes[newcomer].name.clone(), self.nodes[newcomer].addr);
            for &k in hosts_peers {
                if k != newcomer
                    && let Some(p) = self.policy(k)
                {
                    p.handle_heard(&name, addr, now);
                }
            }
        }
    }

    fn step(&mut self) {
        self.now += STEP;
        let now = self.now;
        for i in 0..self.nodes.len() {
            let dials = match self.policy(i) {
                Some(p) => p.poll_dials(now),
                None => continue,
            };
            for addr in dials {
                self.nodes[i].dials += 1;
                let target = self.nodes.iter().position(|n| n.addr == addr);
                let outcome = match target {
                    Some(j)
                        if j != i
                            && self.nodes[j].policy.is_some()
                            && !self.cut.contains(&pair(i, j)) =>
                    {
                        if !self.links.contains(&pair(i, j)) {
                            self.link(i, j);
                        }
                        DialOutcome::Connected(self.nodes[j].name.clone())
                    }
                    _ => DialOutcome::Failed,
                };
                if let Some(p) = self.policy(i) {
                    p.handle_dial_result(addr, outcome, now);
                }
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while self.now < until {
            self.step();
        }
    }

    fn full_mesh(&self) -> bool {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].policy.is_some())
            .collect();
        live.iter().enumerate().all(|(k, &a)| {
            live[k + 1..]
                .iter()
                .all(|&b| self.links.contains(&pair(a, b)))
        })
    }

    /// Runs until fully meshed; fails with `what` past the bound.
    fn heals(&mut self, what: &str) -> Duration {
        let from = self.now;
        while !self.full_mesh() {
            assert!(
                self.now - from <= HEAL_BOUND,
                "{what}: not fully meshed {:?} after the network allowed it; links {:?}",
                HEAL_BOUND,
                self.links
            );
            self.step();
        }
        self.now - from
    }

    /// A meshed cluster stops dialing.
    fn quiet(&mut self, what: &str) {
        self.run_for(Duration::from_secs(5));
        let before: Vec<u64> = self.nodes.iter().map(|n| n.dials).collect();
        self.run_for(Duration::from_secs(60));
        let after: Vec<u64> = self.nodes.iter().map(|n| n.dials).collect();
        assert_eq!(
            before,
            after,
            "{what}: dials while fully meshed (at {:?})",
            self.now - self.start
        );
    }

    fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start_node(i);
            self.step();
        }
    }
}

const TOPOLOGIES: [Topology; 3] = [
    Topology::StarOnSmallest,
    Topology::StarOnLargest,
    Topology::Chain,
];

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for rest in permutations(n - 1) {
        for at in 0..=rest.len() {
            let mut p = rest.clone();
            p.insert(at, n - 1);
            out.push(p);
        }
    }
    out
}

#[test]
fn every_restart_order_under_every_seed_topology_ends_fully_meshed() {
    for n in 2..=5 {
        for topology in TOPOLOGIES {
            for order in permutations(n) {
                let what = format!("{n} nodes, {topology:?}, restarts {order:?}");
                let mut w = World::new(n, topology);
                w.start_all();
                w.heals(&what);
                // One at a time: crash, stay down a while, restart.
                for &i in &order {
                    w.crash(i);
                    w.run_for(Duration::from_secs(3));
                    w.start_node(i);
                    w.heals(&format!("{what}, after restarting n{i}"));
                }
                // All down, then back in this order.
                for i in 0..n {
                    w.crash(i);
                }
                for &i in &order {
                    w.start_node(i);
                    w.run_for(Duration::from_millis(300));
                }
                w.heals(&format!("{what}, after a cold restart"));
                w.quiet(&what);
            }
        }
    }
}

#[test]
fn a_restarted_seed_with_no_seeds_of_its_own_is_found_again() {
    // The reported case: n0 is everyone's seed and has none; it restarts,
    // then a new node seeded at n0 joins: one cluster, not two.
    let mut w = World::new(6, Topology::StarOnSmallest);
    for i in 0..5 {
        w.start_node(i);
        w.step();
    }
    w.heals("first start");
    w.crash(0);
    w.run_for(Duration::from_secs(30));
    w.start_node(0);
    w.heals("the seed restarted");
    w.start_node(5);
    w.heals("a new node seeded at the restarted seed");
    w.quiet("six nodes");
}

#[test]
fn cuts_shorter_and_longer_than_every_backoff_cap_heal() {
    for n in 2..=5 {
        for topology in TOPOLOGIES {
            for secs in [1u64, 10, 70, 600] {
                for a in 0..n {
                    for b in a + 1..n {
                        let what = format!("{n} nodes, {topology:?}, n{a}-n{b} cut {secs} s");
                        let mut w = World::new(n, topology);
                        w.start_all();
                        w.heals(&what);
                        w.cut(a, b);
                        w.run_for(Duration::from_secs(secs));
                        w.heal();
                        w.heals(&what);
                    }
                }
            }
        }
    }
}

#[test]
fn a_node_cut_off_before_it_ever_met_a_peer_is_met_after_the_cut() {
    // n4 starts (seeded at n0) while cut from n3: n3 hears of n4 but can
    // never reach it until 70 s later; then they must meet. (A star on the
    // largest name cannot form before n4 starts: not a case here.)
    for topology in [Topology::StarOnSmallest, Topology::Chain] {
        let mut w = World::new(5, topology);
        for i in 0..4 {
            w.start_node(i);
            w.step();
        }
        w.heals("four nodes");
        w.cut(3, 4);
        w.start_node(4);
        w.run_for(Duration::from_secs(70));
        assert!(!w.links.contains(&(3, 4)));
        w.heal();
        w.heals(&format!("{topology:?}: n3 and n4 after a 70 s cut"));
        w.quiet("after the cut");
    }
}

#[test]
fn addresses_are_bounded_and_a_flood_is_dialed_a_batch_at_a_time() {
    let now = Instant::now();
    let mut p = DialPolicy::new(NodeName::new("a").unwrap(), &[], DialConfig::default(), now);
    for i in 0..(pg_net::dial::MAX_KNOWN as u32 + 5000) {
        let name = NodeName::new(&format!("z{i}")).unwrap();
        let addr = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 1));
        p.handle_heard(&name, addr, now);
    }
    assert_eq!(
        p.pending(),
        pg_net::dial::MAX_KNOWN,
        "no more than MAX_KNOWN addresses"
    );
    let batch = p.poll_dials(now);
    assert_eq!(batch.len(), pg_net::dial::MAX_IN_FLIGHT);
    assert!(p.poll_dials(now).is_empty(), "no more until some end");
    for addr in batch {
        p.handle_dial_result(addr, DialOutcome::Failed, now);
    }
    assert_eq!(p.poll_dials(now).len(), pg_net::dial::MAX_IN_FLIGHT);
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 1, 0, i], 4000))
}

fn name(n: &str) -> NodeName {
    NodeName::new(n).unwrap()
}

/// Another node now answers at an address where a known node used to
/// listen: the old node is forgotten there and the address is not dialed
/// again and again.
#[test]
fn another_node_at_a_known_address_is_not_redialed_in_a_loop() {
    let t0 = Instant::now();
    let mut p = DialPolicy::new(name("a"), &[], DialConfig::default(), t0);
    p.handle_connected(&name("x"), Some(addr(1)), t0);
    p.handle_disconnected(&name("x"), t0 + Duration::from_secs(10));
    let mut now = t0 + Duration::from_secs(10);
    let mut dials = 0;
    for _ in 0..200 {
        for a in p.poll_dials(now) {
            dials += 1;
            // y answers at x's old address; x never comes back.
            p.handle_dial_result(a, DialOutcome::Connected(name("y")), now);
            p.handle_connected(&name("y"), Some(addr(1)), now);
        }
        now += Duration::from_millis(10);
    }
    assert_eq!(dials, 1, "x is not expected at y's address any more");
    assert_eq!(p.listen_of(&name("x")), None);
    assert_eq!(p.pending(), 0);
}

/// A link that dies right after it came up is redialed after a hold-off,
/// not at once (a peer that refuses what we send would make it flap).
#[test]
fn a_link_dying_right_after_it_came_up_is_held_off() {
    let t0 = Instant::now();
    let config = DialConfig::default();
    let max = config.max;
    let mut p = DialPolicy::new(name("a"), &[], config, t0);
    p.handle_connected(&name("x"), Some(addr(1)), t0);
    p.handle_disconnected(&name("x"), t0 + Duration::from_millis(5));
    assert!(p.poll_dials(t0 + Duration::from_millis(10)).is_empty());
    assert_eq!(
        p.poll_dials(t0 + max + Duration::from_millis(10)),
        vec![addr(1)]
    );
    // A link that held a while is redialed at once (a is the smaller name).
    let mut q = DialPolicy::new(name("a"), &[], DialConfig::default(), t0);
    q.handle_connected(&name("x"), Some(addr(1)), t0);
    let later = t0 + Duration::from_secs(60);
    q.handle_disconnected(&name("x"), later);
    assert_eq!(q.poll_dials(later), vec![addr(1)]);
}

/// Gossip about a connected node does not overwrite the address it gave
/// itself (the gossip may be about an older run).
#[test]
fn stale_gossip_does_not_move_a_connected_node() {
    let t0 = Instant::now();
    let mut p = DialPolicy::new(name("a"), &[], DialConfig::default(), t0);
    p.handle_connected(&name("x"), Some(addr(2)), t0);
    p.handle_heard(&name("x"), addr(1), t0);
    assert_eq!(p.listen_of(&name("x")), Some(addr(2)));
}

/// With every dial slot taken, there is no deadline to sleep until (a
/// past one would make the driver spin); a dial ending frees a slot.
#[test]
fn no_deadline_while_every_dial_slot_is_taken() {
    let now = Instant::now();
    let mut p = DialPolicy::new(name("a"), &[], DialConfig::default(), now);
    for i in 0..(pg_net::dial::MAX_IN_FLIGHT as u32 + 10) {
        let a = SocketAddr::from(([10, 2, (i >> 8) as u8, i as u8], 1));
        p.handle_heard(&name(&format!("z{i}")), a, now);
    }
    let batch = p.poll_dials(now);
    assert_eq!(batch.len(), pg_net::dial::MAX_IN_FLIGHT);
    assert_eq!(p.poll_timeout(), None, "all slots taken, ten still due");
    p.handle_dial_result(batch[0], DialOutcome::Failed, now);
    assert!(p.poll_timeout().is_some_and(|at| at <= now));
}

/// A blocked node (fault injection) is never dialed, however long the
/// block lasts, even when peer exchange keeps announcing it; unblocked, it
/// is dialed at once (by the smaller name).
#[test]
fn a_blocked_node_is_not_dialed_until_unblocked() {
    let t0 = Instant::now();
    let mut p = DialPolicy::new(name("a"), &[], DialConfig::default(), t0);
    p.handle_connected(&name("x"), Some(addr(1)), t0);
    p.handle_blocked(&name("x"));
    let cut = t0 + Duration::from_secs(60);
    p.handle_disconnected(&name("x"), cut);
    let mut now = cut;
    while now < cut + Duration::from_secs(600) {
        p.handle_heard(&name("x"), addr(1), now);
        assert!(p.poll_dials(now).is_empty(), "dialed a blocked node");
        now += Duration::from_millis(250);
    }
    p.handle_unblocked(&name("x"), now);
    assert_eq!(p.poll_dials(now), vec![addr(1)]);
}

/// A seed given as a DNS name (a headless Service) follows its answers:
/// addresses it starts to yield are dialed at once, an address it stops
/// yielding is not dialed again (a pod that went away), and a node once
/// met is still redialed wherever it listens.
#[test]
fn a_seed_name_follows_its_changing_answers() {
    let t0 = Instant::now();
    let mut p = DialPolicy::new(name("a"), &[], DialConfig::default(), t0);
    p.handle_resolved("peers:4700", &[addr(1), addr(2)], t0);
    let mut first = p.poll_dials(t0);
    first.sort();
    assert_eq!(first, vec![addr(1), addr(2)]);
    for a in first {
        p.handle_dial_result(a, DialOutcome::Failed, t0);
    }
    // Pod 1 went away, pod 3 came.
    let t1 = t0 + Duration::from_secs(1);
    p.handle_resolved("peers:4700", &[addr(2), addr(3)], t1);
    let mut dialed = std::collections::BTreeMap::new();
    let mut now = t1;
    while now < t1 + Duration::from_secs(600) {
        for a in p.poll_dials(now) {
            *dialed.entry(a).or_insert(0) += 1;
            if a == addr(3) && dialed[&a] == 3 {
                // Pod 3 answers as node x, then goes away from DNS too.
                p.handle_dial_result(a, DialOutcome::Connected(name("x")), now);
                p.handle_connected(&name("x"), Some(addr(3)), now);
                p.handle_resolved("peers:4700", &[addr(2)], now);
                p.handle_disconnected(&name("x"), now);
            } else {
                p.handle_dial_result(a, DialOutcome::Failed, now);
            }
        }
        now += Duration::from_millis(250);
    }
    assert_eq!(
        dialed.get(&addr(1)),
        None,
        "an address DNS dropped is not dialed"
    );
    assert!(
        dialed[&addr(2)] > 10,
        "a seed address is dialed until answered"
    );
    assert!(
        dialed[&addr(3)] > 3,
        "a node once met is redialed, whatever DNS says"
    );
}

/// An address found to be our own is never dialed again, whatever DNS
/// keeps answering, until a peer says another node listens there; and a
/// first DNS answer is dialed like configured seeds, a capped few at once.
#[test]
fn own_addresses_are_dropped_and_first_answers_are_capped() {
    let t0 = Instant::now();
    let config = DialConfig {
        fanout: 3,
        ..DialConfig::default()
    };
    let max = config.max;
    let mut p = DialPolicy::new(name("a"), &[], config, t0);
    let answer: Vec<SocketAddr> = (1..=10).map(addr).collect();
    p.handle_resolved("peers:4700", &answer, t0);
    let first = p.poll_dials(t0);
    assert_eq!(first.len(), 3, "a capped subset at once");
    for a in &first {
        let outcome = if *a == first[0] {
            DialOutcome::Own
        } else {
            DialOutcome::Failed
        };
        p.handle_dial_result(*a, outcome, t0);
    }
    let own = first[0];
    let mut dialed_own = 0;
    let mut rest = std::collections::BTreeSet::new();
    let mut now = t0;
    while now < t0 + Duration::from_secs(600) {
        p.handle_resolved("peers:4700", &answer, now);
        for a in p.poll_dials(now) {
            dialed_own += usize::from(a == own);
            if now < t0 + max {
                assert!(first.contains(&a), "only the first few before `max`");
            }
            rest.insert(a);
            p.handle_dial_result(a, DialOutcome::Failed, now);
        }
        now += Duration::from_millis(250);
    }
    assert_eq!(dialed_own, 0, "our own address is not dialed again");
    assert_eq!(rest.len(), 9);
    // A peer says node x listens there now: it is dialed again.
    p.handle_heard(&name("x"), own, now);
    assert!(p.poll_dials(now + Duration::from_secs(60)).contains(&own));
}
