//! The process-group API (docs/semantics.md) across three nodes over the in-memory transport.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use common::{cluster, eventually, g, node_on};
use pg_core::{EventKind, NodeId, Pid};
use pg_runtime::{Node, NodeOptions, ScopeOptions};

fn set(members: &pg_core::Members) -> BTreeSet<Pid> {
    members.iter().collect()
}

#[tokio::test(start_paused = true)]
async fn joins_leaves_and_exits_reach_every_node() {
    let (_net, nodes, scopes) = cluster(ScopeOptions::default()).await;
    let procs: Vec<_> = nodes.iter().map(Node::spawn).collect();
    for (scope, p) in scopes.iter().zip(&procs) {
        scope.join(p.pid(), &[g("all"), g("all")]).unwrap();
    }
    let want: BTreeSet<Pid> = procs.iter().map(|p| p.pid().clone()).collect();
    eventually("every node sees every member", || {
        scopes.iter().all(|s| set(&s.members("all")) == want)
    })
    .await;
    for (i, s) in scopes.iter().enumerate() {
        // Joined twice: listed twice, as Erlang's pg does.
        assert_eq!(
            s.local_members("all").to_vec(),
            vec![procs[i].pid().clone(); 2]
        );
        assert_eq!(s.members("all").len(), 6);
        assert_eq!(&*s.which_local_groups(), &[g("all")]);
    }
    // Multi-join: one leave keeps the member everywhere.
    scopes[1].leave(procs[1].pid(), &[g("all")]).unwrap();
    let mut procs = procs;
    let gone = procs.remove(1);
    let gone_pid = gone.pid().clone();
    drop(gone); // process end: cleaned up everywhere
    eventually("the ended process is gone everywhere", || {
        scopes
            .iter()
            .all(|s| !s.members("all").contains(&gone_pid) && s.members("all").len() == 4)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn remote_monitor_sees_joins_and_exit_multiplicity() {
    let (_net, nodes, scopes) = cluster(ScopeOptions::default()).await;
    let (mut sub, snapshot) = scopes[2].monitor(&g("w"), None).unwrap();
    assert!(snapshot.is_empty());
    let p = nodes[0].spawn();
    let pid = p.pid().clone();
    scopes[0].join(&pid, &[g("w"), g("w"), g("w")]).unwrap();
    let mut joined = 0;
    while joined < 3 {
        let e = sub.recv().await.unwrap();
        assert_eq!(e.kind, EventKind::Joined);
        joined += e.pids().count();
    }
    drop(p);
    let mut left = 0;
    while left < 3 {
        let e = sub.recv().await.unwrap();
        assert_eq!(e.kind, EventKind::Left);
        left += e.pids().filter(|x| **x == pid).count();
    }
}

#[tokio::test(start_paused = true)]
async fn broadcast_reaches_exactly_the_members() {
    let (_net, nodes, scopes) = cluster(ScopeOptions::default()).await;
    let mut members: Vec<_> = nodes.iter().map(Node::spawn).collect();
    let mut outsiders: Vec<_> = nodes.iter().map(Node::spawn).collect();
    for (s, m) in scopes.iter().zip(&members) {
        s.join(m.pid(), &[g("w"), g("w")]).unwrap();
    }
    eventually("membership converged", || {
        scopes.iter().all(|s| s.members("w").distinct_len() == 3)
    })
    .await;
    let sender = nodes[0].spawn();
    assert_eq!(
        scopes[0]
            .broadcast(sender.pid(), "w", "t", Bytes::from_static(b"hi"))
            .unwrap(),
        3
    );
    for m in &mut members {
        let msg = m.recv().await.unwrap();
        assert_eq!((&msg.from, &msg.payload[..]), (sender.pid(), &b"hi"[..]));
    }
    assert_eq!(
        scopes[0]
            .broadcast_local(sender.pid(), "w", "t", Bytes::new())
            .unwrap(),
        1
    );
    assert!(members[0].recv().await.is_some());
    eventually("deliveries counted", || {
        nodes[1].deliveries().delivered == 1 && nodes[2].deliveries().delivered == 1
    })
    .await;
    for m in &mut members {
        assert!(m.try_recv().is_none(), "exactly once");
    }
    for o in &mut outsiders {
        assert!(o.try_recv().is_none(), "non-members get nothing");
    }
    assert!(
        scopes[1].health().since_last_broadcast.is_some(),
        "receivers saw broadcast traffic"
    );
}

#[tokio::test(start_paused = true)]
async fn partition_then_heal_converges() {
    let (net, nodes, scopes) = cluster(ScopeOptions::default()).await;
    let procs: Vec<_> = nodes.iter().map(Node::spawn).collect();
    for (s, p) in scopes.iter().zip(&procs) {
        s.join(p.pid(), &[g("all")]).unwrap();
    }
    eventually("converged", || {
        scopes.iter().all(|s| s.members("all").len() == 3)
    })
    .await;
    net.partition(&[&nodes[2].id().name]);
    eventually("each side dropped the other", || {
        scopes[0].members("all").len() == 2 && scopes[2].members("all").len() == 1
    })
    .await;
    // Changes on both sides while apart.
    let late = nodes[2].spawn();
    scopes[2].join(late.pid(), &[g("all")]).unwrap();
    scopes[0].leave(procs[0].pid(), &[g("all")]).unwrap();
    net.heal();
    let want: BTreeSet<Pid> = [procs[1].pid(), procs[2].pid(), late.pid()]
        .into_iter()
        .cloned()
        .collect();
    eventually("healed views agree", || {
        scopes.iter().all(|s| set(&s.members("all")) == want)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_is_cleaned_up_at_once() {
    let (_net, nodes, scopes) = cluster(ScopeOptions::default()).await;
    let p = nodes[2].spawn();
    scopes[2].join(p.pid(), &[g("w")]).unwrap();
    eventually("joined everywhere", || scopes[0].members("w").len() == 1).await;
    nodes[2].shutdown();
    eventually("gone on the others", || {
        scopes[0].members("w").is_empty() && scopes[1].members("w").is_empty()
    })
    .await;
    assert_eq!(nodes[0].peers().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_node_resyncs_as_a_new_run() {
    let (net, nodes, scopes) = cluster(ScopeOptions::default()).await;
    let p = nodes[1].spawn();
    scopes[1].join(p.pid(), &[g("w")]).unwrap();
    let kept = nodes[0].spawn();
    scopes[0].join(kept.pid(), &[g("w")]).unwrap();
    eventually("converged", || scopes[2].members("w").len() == 2).await;
    // b comes back as a new run without a clean shutdown.
    let b2_id = NodeId::parse_name("b", 2).unwrap();
    let b2 = Node::start_as(b2_id.clone(), net.transport(&b2_id), NodeOptions::default()).unwrap();
    let s2 = b2.open_scope("s", ScopeOptions::default()).unwrap();
    eventually("the old run's members are gone", || {
        scopes[0].members("w").len() == 1 && scopes[2].members("w").len() == 1
    })
    .await;
    eventually("the new run learnt the cluster", || {
        s2.members("w").to_vec() == vec![kept.pid().clone()]
    })
    .await;
    let q = b2.spawn();
    s2.join(q.pid(), &[g("w")]).unwrap();
    eventually("the new run's members spread", || {
        scopes[2].members("w").len() == 2
    })
    .await;
    drop(p);
}

#[tokio::test(start_paused = true)]
async fn a_scope_opened_late_discovers_the_cluster() {
    let net = pg_runtime::MemoryNetwork::new();
    let a = node_on(&net, "a", NodeOptions::default());
    let b = node_on(&net, "b", NodeOptions::default());
    let sa = a.open_scope("s", ScopeOptions::default()).unwrap();
    let p = a.spawn();
    sa.join(p.pid(), &[g("w")]).unwrap();
    eventually("connected", || b.peers().len() == 1).await;
    // b's scope starts after the connection came up.
    let sb = b.open_scope("s", ScopeOptions::default()).unwrap();
    eventually("b learnt a's members", || sb.members("w").len() == 1).await;
}

#[tokio::test(start_paused = true)]
async fn network_delay_delays_propagation() {
    let (net, nodes, scopes) = cluster(ScopeOptions::default()).await;
    let first = nodes[0].spawn();
    scopes[0].join(first.pid(), &[g("w")]).unwrap();
    eventually("converged before the delay", || {
        scopes[1].members("w").len() == 1
    })
    .await;
    net.set_delay(std::time::Duration::from_millis(200));
    let p = nodes[0].spawn();
    scopes[0].join(p.pid(), &[g("w")]).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert_eq!(scopes[1].members("w").len(), 1, "not before the delay");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(scopes[1].members("w").len(), 2, "after it");
}

/// A burst of single changes from one caller leaves as a few deltas, each
/// at most 2048 changes (the runtime's cap), and the tail of the burst
/// arrives with no further activity (the scheduled flush sends it).
#[tokio::test(start_paused = true)]
async fn a_burst_of_changes_leaves_as_a_few_deltas() {
    let (_net, nodes, scopes) = cluster(ScopeOptions::default()).await;
    let p = nodes[0].spawn();
    let before = scopes[1].protocol_stats().deltas_applied;
    let n = 5000;
    // No await in the loop: the flush cannot run until it ends, so only
    // the first change and the cap cut deltas meanwhile.
    for i in 0..n {
        scopes[0]
            .join(p.pid(), &[g(&format!("burst-{i}"))])
            .unwrap();
    }
    eventually("b sees the whole burst", || {
        scopes[1].members(&format!("burst-{}", n - 1)).len() == 1
            && scopes[1].which_groups().len() == n
    })
    .await;
    let deltas = scopes[1].protocol_stats().deltas_applied - before;
    assert!(
        (n / 2048..=8).contains(&(deltas as usize)),
        "{deltas} deltas for {n} changes"
    );
    // B took thousands of new groups per step: every read path lists
    // them.
    assert_eq!(scopes[1].which_groups_prefix("burst-12").len(), 111);
    assert_eq!(scopes[1].count_prefix("burst-"), n);
    assert_eq!(scopes[1].members_prefix("burst-4999").len(), 1);
}

/// One step of many changes (a process joining 40 groups at once) is sent
/// on its own and is no burst: a single change after it is not held for
/// the burst's timer.
#[tokio::test(start_paused = true)]
async fn one_step_of_many_changes_is_no_burst() {
    let (_net, nodes, scopes) = cluster(ScopeOptions::default()).await;
    let p = nodes[0].spawn();
    let many: Vec<_> = (0..40).map(|i| g(&format!("many-{i}"))).collect();
    let start = tokio::time::Instant::now();
    scopes[0].join(p.pid(), &many).unwrap();
    let all_seen = seen_with_no_time_passing(|| scopes[1].which_groups().len() == many.len());
    assert!(all_seen.await, "the 40 changes waited for a timer");
    let_the_flush_run().await;
    scopes[0].join(p.pid(), &[g("single")]).unwrap();
    let seen = seen_with_no_time_passing(|| scopes[1].members("single").len() == 1);
    assert!(seen.await, "the single change waited for a timer");
    assert_eq!(start.elapsed(), Duration::ZERO);
}

/// After a burst (whose flushes wait on the timer), single changes spaced
/// apart are each sent at once again: B sees each before any virtual time
/// passes, where one held for a flush would wait a millisecond.
#[tokio::test(start_paused = true)]
async fn single_changes_after_a_burst_are_not_held() {
    let (_net, nodes, scopes) = cluster(ScopeOptions::default()).await;
    let p = nodes[0].spawn();
    let n = 3000;
    for i in 0..n {
        scopes[0]
            .join(p.pid(), &[g(&format!("burst-{i}"))])
            .unwrap();
    }
    eventually("b sees the whole burst", || {
        scopes[1].which_groups().len() == n
    })
    .await;
    // Let the burst's last flush run and find nothing left.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let start = tokio::time::Instant::now();
    for name in ["single-1", "single-2", "single-3"] {
        scopes[0].join(p.pid(), &[g(name)]).unwrap();
        let seen = seen_with_no_time_passing(|| scopes[1].members(name).len() == 1);
        assert!(seen.await, "{name} waited for a timer");
        // As a caller's next change would come some time later.
        let_the_flush_run().await;
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
}

/// Whether `done` comes to hold while tasks run and the virtual clock
/// stands still (only yields, no sleep): what a change sent at once
/// does, and one held for a timer does not.
async fn seen_with_no_time_passing(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..10_000 {
        if done() {
            return true;
        }
        tokio::task::yield_now().await;
    }
    false
}

/// Room for the flush a change scheduled to run (and find nothing), with
/// no virtual time passing.
async fn let_the_flush_run() {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}
