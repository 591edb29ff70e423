//! Join counts across three nodes over QUIC + mutual TLS, through the public
//! API only: member lists keep multiplicity on every node (as Erlang's `pg`
//! does), and a subscriber that replays snapshot + events holds exactly the
//! membership, whatever raced its subscription.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::collections::BTreeMap;

use pg_api::{EventKind, Instance, Members, Node, Pid, Process, Subscription};

mod common;
use common::{eventually, three_nodes};

type Counts = BTreeMap<Pid, u32>;

fn counted(members: &Members) -> Counts {
    members.iter_counted().collect()
}

/// Snapshot, then every event: the subscriber's idea of one group.
struct Replay {
    counts: Counts,
    sub: Subscription,
}

impl Replay {
    fn start(pg: &Instance, group: &str) -> Self {
        let (sub, members) = pg.monitor(group).unwrap();
        Self {
            counts: counted(&members),
            sub,
        }
    }

    fn drain(&mut self) {
        while let Some(event) = self.sub.try_recv() {
            let event = event.unwrap();
            for (pid, n) in &event.members {
                let count = self.counts.entry(pid.clone()).or_default();
                match event.kind {
                    EventKind::Joined => *count += n,
                    EventKind::Left => {
                        assert!(*count >= *n, "{pid} left more often than it joined");
                        *count -= n;
                    }
                    EventKind::Updated => assert!(*count > 0, "{pid} updated without a join"),
                }
                if *count == 0 {
                    self.counts.remove(pid);
                }
            }
        }
    }
}

/// Returns once each node's scope has finished handing out the events of
/// every step before it (a subscription takes the scope's writer lock).
fn settle(watchers: &[Instance]) {
    for pg in watchers {
        drop(pg.monitor("settle").unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pid_joined_16_times_and_left_4_times_is_listed_12_times_on_every_node() {
    let nodes = three_nodes();
    eventually("a full mesh", || nodes.iter().all(|n| n.peers().len() == 2)).await;
    let watchers: Vec<Process> = nodes.iter().map(|n| n.spawn("watcher")).collect();
    let views: Vec<Instance> = watchers.iter().map(|w| w.open("app:pg").unwrap()).collect();
    let mut replays: Vec<Replay> = views.iter().map(|pg| Replay::start(pg, "g")).collect();

    let p = nodes[0].spawn("p");
    let pg = p.open("app:pg").unwrap();
    pg.join(["g"; 8]).unwrap(); // one batch: eight joins of one group
    for _ in 0..8 {
        pg.join("g").unwrap();
    }
    for _ in 0..4 {
        pg.leave("g").unwrap();
    }
    let want = vec![p.pid().clone(); 12];
    eventually("every node lists the pid 12 times", || {
        views
            .iter()
            .all(|v| v.get_members("g").unwrap().to_vec() == want)
    })
    .await;
    assert_eq!(views[0].get_local_members("g").unwrap().to_vec(), want);
    for view in &views[1..] {
        let members = view.get_members("g").unwrap();
        assert_eq!((members.len(), members.distinct_len()), (12, 1));
        assert_eq!(
            members.iter_counted().collect::<Vec<_>>(),
            vec![(p.pid().clone(), 12)]
        );
        assert!(view.get_local_members("g").unwrap().is_empty());
    }
    settle(&views);
    for replay in &mut replays {
        replay.drain();
        assert_eq!(replay.counts, Counts::from([(p.pid().clone(), 12)]));
    }

    // A late subscriber's snapshot has the count, and the exit takes all 12.
    let mut late = Replay::start(&views[2], "g");
    assert_eq!(late.counts, Counts::from([(p.pid().clone(), 12)]));
    drop(pg);
    drop(p);
    eventually("the exit is seen everywhere", || {
        views.iter().all(|v| v.get_members("g").unwrap().is_empty())
    })
    .await;
    settle(&views);
    late.drain();
    assert!(late.counts.is_empty(), "left 12 times: {:?}", late.counts);
    for node in &nodes {
        node.shutdown();
    }
}

/// Processes on all three nodes join, multi-join, batch-join, leave and exit
/// while subscribers on every node start at random moments; once the views
/// agree, every subscriber's replay equals them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_is_exact_over_quic_under_concurrent_churn() {
    let nodes = three_nodes();
    eventually("a full mesh", || nodes.iter().all(|n| n.peers().len() == 2)).await;
    let watchers: Vec<Process> = nodes.iter().map(|n| n.spawn("watcher")).collect();
    let views: Vec<Instance> = watchers.iter().map(|w| w.open("app:pg").unwrap()).collect();
    let rounds = 12;
    for round in 0..rounds {
        let group = format!("r{round}");
        let workers: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let (node, group) = (node.clone(), group.clone());
                std::thread::spawn(move || churn(&node, &group, round * 3 + i as u64))
            })
            .collect();
        let mut replays = Vec::new();
        for k in 0..6 {
            replays.push(Replay::start(&views[k % 3], &group));
            tokio::task::yield_now().await;
        }
        let mut want = Counts::new();
        let mut keep = Vec::new();
        for worker in workers {
            let (held, procs) = worker.join().unwrap();
            want.extend(held);
            keep.push(procs);
        }
        eventually("every node holds the union", || {
            views
                .iter()
                .all(|v| counted(&v.get_members(&group).unwrap()) == want)
        })
        .await;
        settle(&views);
        for (k, replay) in replays.iter_mut().enumerate() {
            replay.drain();
            assert_eq!(replay.counts, want, "round {round}, subscriber {k}");
        }
        drop(keep);
    }
    for node in &nodes {
        node.shutdown();
    }
}

/// Random commands on a few processes of `node`; returns what they hold
/// (the model) and the processes, which must outlive the check.
fn churn(node: &Node, group: &str, seed: u64) -> (Counts, Vec<Process>) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut below = |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let spawn = |node: &Node| {
        let p = node.spawn("worker");
        let pg = p.open("app:pg").unwrap();
        (p, pg, 0u32)
    };
    let mut procs: Vec<(Process, Instance, u32)> = (0..3).map(|_| spawn(node)).collect();
    for _ in 0..50 {
        let i = below(3) as usize;
        match below(8) {
            0..=2 => {
                procs[i].1.join(group).unwrap();
                procs[i].2 += 1;
            }
            3 => {
                procs[i].1.join([group, "other", group]).unwrap();
                procs[i].2 += 2;
            }
            4 | 5 if procs[i].2 > 0 => {
                procs[i].1.leave(group).unwrap();
                procs[i].2 -= 1;
            }
            6 => procs[i] = spawn(node), // exit: every membership goes
            _ => {}
        }
    }
    let held = procs
        .iter()
        .filter(|(_, _, c)| *c > 0)
        .map(|(p, _, c)| (p.pid().clone(), *c))
        .collect();
    (held, procs.into_iter().map(|(p, _, _)| p).collect())
}
