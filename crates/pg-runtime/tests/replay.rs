//! Snapshot + events replay exactly: whatever races a `monitor` or `events`
//! call (joins, multi-joins, batch joins, leaves, exits from several OS
//! threads, other nodes' changes, a node going down and coming back), the
//! subscriber that starts from the snapshot's counts and applies every
//! event after it holds exactly the group's membership, with multiplicity.
//!
//! `PG_REPLAY_CASES` raises the number of generated cases.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{eventually, g, node_on};
use pg_core::{Event, EventKind, GroupName, Members, Pid};
use pg_runtime::{MemoryNetwork, Node, NodeOptions, Process, Scope, ScopeOptions, Subscription};

type Counts = BTreeMap<Pid, u32>;

fn cases(default: u64) -> u64 {
    std::env::var("PG_REPLAY_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator (xorshift), so a failing case replays
/// from its number.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn counted(members: &Members) -> Counts {
    let counts: Counts = members.iter_counted().collect();
    assert_eq!(
        counts.values().map(|&c| c as usize).sum::<usize>(),
        members.len(),
        "len() counts every join"
    );
    counts
}

/// A subscriber's idea of one group: the snapshot, then every event.
struct Replay {
    group: GroupName,
    counts: Counts,
    sub: Subscription,
}

impl Replay {
    fn monitor(scope: &Scope, group: &GroupName) -> Self {
        let (sub, members) = scope.monitor(group, None).unwrap();
        Self {
            group: group.clone(),
            counts: counted(&members),
            sub,
        }
    }

    fn events(scope: &Scope, group: &GroupName) -> Self {
        let (sub, snapshot) = scope.events(None).unwrap();
        let counts = snapshot
            .iter()
            .find(|(name, _)| name == group)
            .map(|(_, members)| counted(members))
            .unwrap_or_default();
        Self {
            group: group.clone(),
            counts,
            sub,
        }
    }

    fn apply(&mut self, event: &Event) {
        if event.group != self.group {
            return;
        }
        for (pid, n) in &event.members {
            match event.kind {
                EventKind::Joined => *self.counts.entry(pid.clone()).or_default() += n,
                EventKind::Left => {
                    let have = self.counts.get_mut(pid).unwrap_or_else(|| {
                        panic!("{pid} left {} without having joined", self.group)
                    });
                    assert!(*have >= *n, "{pid} left more times than it joined");
                    *have -= n;
                    if *have == 0 {
                        self.counts.remove(pid);
                    }
                }
                EventKind::Updated => assert!(self.counts.contains_key(pid)),
            }
        }
    }

    /// Applies every event queued so far.
    fn drain(&mut self) {
        while let Some(event) = self.sub.try_recv() {
            self.apply(&event.unwrap());
        }
    }
}

/// One thread's share of a case: processes of its own, random commands on
/// them. Returns the model of what they hold, and the processes (which must
/// outlive the final check).
fn churn(
    node: &Node,
    scope: &Scope,
    group: &GroupName,
    seed: u64,
    ops: usize,
) -> (Counts, Vec<Process>) {
    let mut rng = Rng::new(seed);
    let mut procs: Vec<(Process, u32)> = (0..4).map(|_| (node.spawn(), 0)).collect();
    let other = g("other");
    for _ in 0..ops {
        let i = rng.below(procs.len() as u64) as usize;
        let pid = procs[i].0.pid().clone();
        match rng.below(10) {
            0..=2 => {
                scope.join(&pid, std::slice::from_ref(group)).unwrap();
                procs[i].1 += 1;
            }
            3 => {
                // A batch that joins this group twice and another once.
                scope
                    .join(&pid, &[group.clone(), other.clone(), group.clone()])
                    .unwrap();
                procs[i].1 += 2;
            }
            4 => {
                // Several local processes at once, one of them twice.
                let j = rng.below(procs.len() as u64) as usize;
                let pids = [pid.clone(), procs[j].0.pid().clone(), pid.clone()];
                scope.join_pids(group, &pids).unwrap();
                procs[i].1 += 2;
                procs[j].1 += 1;
            }
            5 | 6 if procs[i].1 > 0 => {
                scope.leave(&pid, std::slice::from_ref(group)).unwrap();
                procs[i].1 -= 1;
            }
            7 => {
                let held: Vec<Pid> = procs
                    .iter()
                    .filter(|(_, c)| *c > 0)
                    .map(|(p, _)| p.pid().clone())
                    .collect();
                if !held.is_empty() {
                    scope.leave_pids(group, &held).unwrap();
                    for p in &mut procs {
                        p.1 = p.1.saturating_sub(1);
                    }
                }
            }
            8 => {
                // Exit: every membership goes at once.
                procs[i] = (node.spawn(), 0);
            }
            _ => {}
        }
    }
    let held = procs
        .iter()
        .filter(|(_, c)| *c > 0)
        .map(|(p, c)| (p.pid().clone(), *c))
        .collect();
    (held, procs.into_iter().map(|(p, _)| p).collect())
}

/// Returns once every step that ran before it has finished handing its
/// events to subscribers (a subscription takes the scope's writer lock).
fn settle(scope: &Scope) {
    drop(scope.monitor(&g("settle"), None).unwrap());
}

fn generous() -> ScopeOptions {
    ScopeOptions {
        monitor_buffer: 1 << 20,
        monitor_max_pending: 1 << 20,
        ..ScopeOptions::default()
    }
}

/// Threads churn one group on one node while the main thread subscribes at
/// random moments; every subscriber replays to the exact final membership.
#[test]
fn replay_is_exact_under_commands_from_threads() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let net = MemoryNetwork::new();
    let node = node_on(&net, "a", NodeOptions::default());
    let scope = node.open_scope("s", generous()).unwrap();
    for case in 0..cases(1500) {
        let group = g(&format!("case-{case}"));
        let mut rng = Rng::new(case);
        let threads = 2 + rng.below(3) as usize;
        let barrier = Arc::new(Barrier::new(threads + 1));
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (node, scope, group) = (node.clone(), scope.clone(), group.clone());
                let barrier = Arc::clone(&barrier);
                let seed = case * 16 + t as u64;
                std::thread::spawn(move || {
                    barrier.wait();
                    churn(&node, &scope, &group, seed, 40)
                })
            })
            .collect();
        barrier.wait();
        let mut replays = Vec::new();
        for _ in 0..1 + rng.below(4) {
            for _ in 0..rng.below(200) {
                std::hint::spin_loop();
            }
            replays.push(if rng.below(2) == 0 {
                Replay::monitor(&scope, &group)
            } else {
                Replay::events(&scope, &group)
            });
        }
        let mut want = Counts::new();
        let mut keep = Vec::new();
        for worker in workers {
            let (held, procs) = worker.join().unwrap();
            want.extend(held);
            keep.push(procs);
        }
        rt.block_on(scope.flush_exits());
        settle(&scope);
        let members = counted(&scope.members(group.as_str()));
        assert_eq!(members, want, "case {case}: the scope holds the model");
        assert_eq!(counted(&scope.local_members(group.as_str())), want);
        for (k, replay) in replays.iter_mut().enumerate() {
            replay.drain();
            assert_eq!(replay.counts, want, "case {case}, subscriber {k}");
        }
        drop(keep);
    }
}

/// Three nodes churn one group each from their own threads; subscribers on
/// every node start at random moments, one node is cut off and healed in
/// the middle; after convergence every subscriber replays to the view its
/// node holds, and every view equals the union of the parts.
#[test]
fn replay_is_exact_across_three_nodes_and_a_partition() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let net = MemoryNetwork::new();
        let nodes: Vec<Node> = ["a", "b", "c"]
            .iter()
            .map(|n| node_on(&net, n, NodeOptions::default()))
            .collect();
        let scopes: Vec<Scope> = nodes
            .iter()
            .map(|n| n.open_scope("s", generous()).unwrap())
            .collect();
        eventually("a full mesh", || nodes.iter().all(|n| n.peers().len() == 2)).await;
        let c_name = nodes[2].id().name.clone();
        for case in 0..cases(40) {
            let group = g(&format!("case-{case}"));
            let mut rng = Rng::new(1000 + case);
            let workers: Vec<_> = (0..3)
                .map(|i| {
                    let (node, scope, group) = (nodes[i].clone(), scopes[i].clone(), group.clone());
                    let seed = case * 16 + i as u64;
                    std::thread::spawn(move || churn(&node, &scope, &group, seed, 60))
                })
                .collect();
            let mut replays = Vec::new();
            let cut = rng.below(2) == 0;
            for step in 0..6 {
                let at = rng.below(3) as usize;
                replays.push((at, Replay::monitor(&scopes[at], &group)));
                if cut && step == 2 {
                    net.partition(&[&c_name]);
                }
                if cut && step == 4 {
                    net.heal();
                }
                tokio::task::yield_now().await;
            }
            net.heal();
            let mut want = Counts::new();
            let mut keep = Vec::new();
            for worker in workers {
                let (held, procs) = worker.join().unwrap();
                want.extend(held);
                keep.push(procs);
            }
            for scope in &scopes {
                scope.flush_exits().await;
            }
            // Views and replays are compared until they agree: the
            // network delivers a partition's downs and a heal's ups
            // asynchronously, so a view can match the union for a moment
            // before a late down takes a part away (and a resync brings it
            // back). A replay that lost an event never matches.
            let mut last = String::new();
            let mut agreed = false;
            for _ in 0..10_000 {
                scopes.iter().for_each(settle);
                let views_agree = scopes
                    .iter()
                    .all(|s| counted(&s.members(group.as_str())) == want);
                let mut replays_agree = true;
                for (k, (at, replay)) in replays.iter_mut().enumerate() {
                    replay.drain();
                    if replay.counts != want {
                        replays_agree = false;
                        last = format!("subscriber {k} on node {at}: {:?}", replay.counts);
                    }
                }
                if views_agree && replays_agree {
                    agreed = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            assert!(agreed, "case {case}: want {want:?}, last {last}");
            drop(keep);
        }
    });
}
