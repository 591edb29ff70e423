//! The process-group API (docs/semantics.md) on one node.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{eventually, g, node_on};
use pg_core::{CommandError, EventKind, NodeId};
use pg_runtime::{
    ErrorKind, Inbound, MemoryNetwork, Node, NodeOptions, RecvError, ScopeOptions, SendError,
    Transport, Wire,
};

fn single(options: NodeOptions) -> Node {
    node_on(&MemoryNetwork::new(), "solo", options)
}

#[tokio::test(start_paused = true)]
async fn group_lists_are_sorted_and_follow_emptied_groups() {
    let node = single(NodeOptions::default());
    let scope = node.open_scope("app:pg", ScopeOptions::default()).unwrap();
    let p = node.spawn();
    // Joined out of order, with names whose hash order is not their order.
    let names = ["m", "b", "zz", "a", "b1", "a:2", "a:10", "y"];
    for name in names {
        scope.join(p.pid(), &[g(name)]).unwrap();
    }
    let mut sorted: Vec<_> = names.iter().map(|n| g(n)).collect();
    sorted.sort();
    assert_eq!(&*scope.which_groups(), sorted.as_slice());
    assert_eq!(&*scope.which_local_groups(), sorted.as_slice());
    scope.leave(p.pid(), &[g("b"), g("zz")]).unwrap();
    sorted.retain(|n| n.as_str() != "b" && n.as_str() != "zz");
    assert_eq!(&*scope.which_groups(), sorted.as_slice());
    assert_eq!(&*scope.which_local_groups(), sorted.as_slice());
}

#[tokio::test(start_paused = true)]
async fn joins_are_visible_at_once_and_multi_join_counts() {
    let node = single(NodeOptions::default());
    let scope = node.open_scope("app:pg", ScopeOptions::default()).unwrap();
    let p = node.spawn();
    scope.join(p.pid(), &[g("w"), g("w")]).unwrap();
    assert_eq!(scope.members("w").to_vec(), vec![p.pid().clone(); 2]);
    assert_eq!(scope.local_members("w").len(), 2);
    assert_eq!(scope.local_members("w").distinct_len(), 1);
    assert_eq!(&*scope.which_groups(), &[g("w")]);
    assert_eq!(&*scope.which_local_groups(), &[g("w")]);
    scope.leave(p.pid(), &[g("w")]).unwrap();
    assert_eq!(
        scope.members("w").to_vec(),
        vec![p.pid().clone()],
        "joined twice, left once"
    );
    scope.leave(p.pid(), &[g("w"), g("other")]).unwrap();
    assert!(scope.members("w").is_empty());
    assert!(scope.which_groups().is_empty());
    let err = scope.leave(p.pid(), &[g("w")]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert_eq!(err, pg_runtime::Error::Command(CommandError::NotMember));
}

#[tokio::test(start_paused = true)]
async fn process_end_cleans_up_memberships_and_subscriptions() {
    let node = single(NodeOptions::default());
    let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
    let p = node.spawn();
    scope.join(p.pid(), &[g("a"), g("b")]).unwrap();
    let (mut owned, _) = scope.monitor(&g("a"), Some(p.pid())).unwrap();
    assert_eq!(scope.counters().exit_cleanup, Duration::ZERO);
    drop(p);
    // The exit is queued, not applied inside drop; flush_exits awaits it.
    scope.flush_exits().await;
    assert_eq!(scope.exit_backlog(), 0);
    assert!(
        scope.counters().exit_cleanup > Duration::ZERO,
        "the cleanup's writer time is counted by the time flush_exits returns"
    );
    assert!(scope.which_groups().is_empty());
    assert_eq!(
        owned.recv().await,
        Err(RecvError::Closed),
        "owned subscription ends with its owner"
    );
    // A task's process ends with the task.
    let scope2 = scope.clone();
    let handle = node.spawn_task(move |p| async move {
        scope2.join(p.pid(), &[g("t")]).unwrap();
        p.pid().clone()
    });
    let pid = handle.await.unwrap();
    scope.flush_exits().await;
    assert!(scope.members("t").is_empty(), "{pid} left with its task");
}

/// Dropping 100k processes only queues their cleanup; a join right after
/// is applied (and visible) before that cleanup, which then completes in
/// batches, leaving the later join in place.
#[tokio::test(flavor = "current_thread")]
async fn a_join_does_not_wait_for_100k_exits() {
    let node = single(NodeOptions::default());
    let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
    let n = 100_000;
    let procs: Vec<_> = (0..n).map(|_| node.spawn()).collect();
    let groups: Vec<_> = (0..10).map(|i| g(&format!("room{i}"))).collect();
    for (i, p) in procs.iter().enumerate() {
        scope
            .join(p.pid(), std::slice::from_ref(&groups[i % 10]))
            .unwrap();
    }
    let (mut sub, _) = scope.monitor(&groups[0], None).unwrap();
    drop(procs);
    assert_eq!(
        scope.exit_backlog(),
        n as u64,
        "drop cleaned nothing up itself"
    );
    let late = node.spawn();
    scope.join(late.pid(), &[groups[0].clone()]).unwrap();
    assert_eq!(
        scope.members("room0").len(),
        n / 10 + 1,
        "the join did not wait"
    );
    scope.flush_exits().await;
    assert_eq!(scope.members("room0").to_vec(), vec![late.pid().clone()]);
    assert_eq!(scope.which_groups().len(), 1);
    // The subscriber saw the join first, then the exits, exactly.
    let first = sub.recv().await.unwrap();
    assert_eq!(
        (first.kind, first.members.clone()),
        (EventKind::Joined, vec![(late.pid().clone(), 1)])
    );
    let mut left = 0;
    while let Some(event) = sub.try_recv() {
        let event = event.unwrap();
        assert_eq!(event.kind, EventKind::Left);
        left += event.references();
    }
    assert_eq!(left, n as u64 / 10);
}

#[tokio::test(start_paused = true)]
async fn broadcast_reaches_each_member_once() {
    let node = single(NodeOptions::default());
    let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
    let mut members: Vec<_> = (0..3).map(|_| node.spawn()).collect();
    let outsider = node.spawn();
    for m in &members {
        scope.join(m.pid(), &[g("w"), g("w")]).unwrap();
    }
    let sent = scope
        .broadcast(outsider.pid(), "w", "job", Bytes::from_static(b"x"))
        .unwrap();
    assert_eq!(sent, 3);
    for m in &mut members {
        let msg = m.recv().await.unwrap();
        assert_eq!(
            (&msg.from, &*msg.topic, &msg.payload[..]),
            (outsider.pid(), "job", &b"x"[..])
        );
        assert!(m.try_recv().is_none(), "once, whatever the join count");
    }
    assert_eq!(
        scope
            .broadcast_local(outsider.pid(), "w", "t", Bytes::new())
            .unwrap(),
        3
    );
    assert_eq!(
        scope
            .broadcast(outsider.pid(), "nobody", "t", Bytes::new())
            .unwrap(),
        0
    );
    assert_eq!(
        scope
            .broadcast(outsider.pid(), "", "t", Bytes::new())
            .unwrap_err()
            .kind(),
        ErrorKind::Invalid
    );
    assert_eq!(
        scope
            .broadcast(outsider.pid(), "w", "", Bytes::new())
            .unwrap_err()
            .kind(),
        ErrorKind::Invalid
    );
    assert!(scope.health().healthy);
}

#[tokio::test(start_paused = true)]
async fn listen_routes_a_topic() {
    let node = single(NodeOptions::default());
    let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
    let mut p = node.spawn();
    let from = node.spawn();
    scope.join(p.pid(), &[g("w")]).unwrap();
    let mut jobs = p.listen("job");
    scope
        .broadcast(from.pid(), "w", "job", Bytes::from_static(b"1"))
        .unwrap();
    scope
        .broadcast(from.pid(), "w", "chat", Bytes::from_static(b"2"))
        .unwrap();
    assert_eq!(&jobs.recv().await.unwrap().payload[..], b"1");
    assert_eq!(&p.recv().await.unwrap().payload[..], b"2");
    drop(jobs);
    scope
        .broadcast(from.pid(), "w", "job", Bytes::from_static(b"3"))
        .unwrap();
    assert_eq!(
        &p.recv().await.unwrap().payload[..],
        b"3",
        "back to the mailbox"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_mailbox_times_out_for_that_member_only() {
    let node = single(NodeOptions {
        mailbox_capacity: 1,
        ..NodeOptions::default()
    });
    let options = ScopeOptions {
        broadcast_timeout: Duration::from_millis(50),
        ..ScopeOptions::default()
    };
    let scope = node.open_scope("s", options).unwrap();
    let stuck = node.spawn();
    let mut live = node.spawn();
    let from = node.spawn();
    scope.join(stuck.pid(), &[g("w")]).unwrap();
    scope.join(live.pid(), &[g("w")]).unwrap();
    for i in 0..3u8 {
        scope
            .broadcast(from.pid(), "w", "n", Bytes::from(vec![i]))
            .unwrap();
        assert_eq!(
            live.recv().await.unwrap().payload[0],
            i,
            "the live member is not held up"
        );
    }
    eventually("two timed-out deliveries", || node.deliveries().failed == 2).await;
    assert_eq!(node.deliveries().delivered, 4);
    drop(stuck);
}

#[tokio::test(start_paused = true)]
async fn monitor_is_atomic_with_its_snapshot() {
    let node = single(NodeOptions::default());
    let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
    let procs: Vec<_> = (0..200).map(|_| node.spawn()).collect();
    // Joins race the subscription from other tasks.
    let joiners: Vec<_> = procs
        .iter()
        .map(|p| {
            let (scope, pid) = (scope.clone(), p.pid().clone());
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                scope.join(&pid, &[g("w")]).unwrap();
            })
        })
        .collect();
    tokio::task::yield_now().await;
    let (mut sub, snapshot) = scope.monitor(&g("w"), None).unwrap();
    for j in joiners {
        j.await.unwrap();
    }
    let mut seen: Vec<_> = snapshot.to_vec();
    while seen.len() < 200 {
        let event = sub.recv().await.unwrap();
        assert_eq!(event.kind, EventKind::Joined);
        seen.extend(event.pids().cloned());
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 200, "no join missed, none counted twice");
    assert!(sub.try_recv().is_none());
}

/// Events are built only while a subscriber exists: a subscriber opened
/// after the last one closed, and changes made with none open, still
/// give it an exact snapshot and every later change.
#[tokio::test(start_paused = true)]
async fn a_subscriber_opened_after_changes_with_none_hears_every_later_change() {
    let node = single(NodeOptions::default());
    let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
    let (p, q) = (node.spawn(), node.spawn());
    let (mut first, _) = scope.events(None).unwrap();
    scope.join(p.pid(), &[g("a")]).unwrap();
    assert_eq!(first.recv().await.unwrap().group, g("a"));
    drop(first);
    // Nobody listens to these.
    scope.join(p.pid(), &[g("b"), g("b")]).unwrap();
    scope.join(q.pid(), &[g("b")]).unwrap();
    let (mut sub, snapshot) = scope.monitor(&g("b"), None).unwrap();
    let mut listed = snapshot.to_vec();
    listed.sort();
    let mut want = vec![p.pid().clone(), p.pid().clone(), q.pid().clone()];
    want.sort();
    assert_eq!(listed, want);
    scope.leave(p.pid(), &[g("b")]).unwrap();
    let q_pid = q.pid().clone();
    drop(q);
    let left = sub.recv().await.unwrap();
    assert_eq!((left.kind, left.references()), (EventKind::Left, 1));
    assert_eq!(left.pids().next(), Some(p.pid()));
    let exited = sub.recv().await.unwrap();
    assert_eq!(exited.kind, EventKind::Left);
    assert_eq!(exited.pids().collect::<Vec<_>>(), vec![&q_pid]);
    assert!(sub.try_recv().is_none());
    assert_eq!(scope.members("b").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn exit_is_reported_with_multiplicity() {
    let node = single(NodeOptions::default());
    let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
    let p = node.spawn();
    let pid = p.pid().clone();
    let (mut sub, _) = scope.events(None).unwrap();
    scope.join(&pid, &[g("w"), g("w"), g("w")]).unwrap();
    drop(p);
    let mut left = 0;
    while left < 3 {
        let e = sub.recv().await.unwrap();
        if e.kind == EventKind::Left {
            left += e.pids().filter(|p| **p == pid).count();
        }
    }
    assert_eq!(left, 3);
}

#[tokio::test(start_paused = true)]
async fn a_slow_subscriber_stalls_only_itself_then_lags_at_the_cap() {
    let node = single(NodeOptions::default());
    let options = ScopeOptions {
        monitor_buffer: 4,
        monitor_max_pending: 100,
        ..ScopeOptions::default()
    };
    let scope = node.open_scope("s", options).unwrap();
    let (mut slow, _) = scope.monitor(&g("w"), None).unwrap();
    let (mut fast, _) = scope.events(None).unwrap();
    let p = node.spawn();
    for _ in 0..50 {
        scope.join(p.pid(), &[g("w")]).unwrap();
        assert!(fast.recv().await.is_ok());
    }
    assert_eq!(slow.pending(), 50, "queued in order past the buffer");
    for _ in 0..50 {
        assert_eq!(slow.recv().await.unwrap().kind, EventKind::Joined);
    }
    for _ in 0..150 {
        scope.join(p.pid(), &[g("w")]).unwrap();
        assert!(fast.recv().await.is_ok(), "the other subscriber keeps up");
    }
    for _ in 0..100 {
        assert!(
            slow.recv().await.is_ok(),
            "what was queued before the cap arrives"
        );
    }
    assert_eq!(slow.recv().await, Err(RecvError::Lagged));
    assert_eq!(scope.counters().subscribers_lagged, 1, "only the slow one");
    assert!(fast.try_recv().is_none());
}

#[tokio::test(start_paused = true)]
async fn close_with_flush_delivers_what_is_queued() {
    let node = single(NodeOptions::default());
    let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
    let (mut sub, _) = scope.events(None).unwrap();
    let p = node.spawn();
    scope.join(p.pid(), &[g("a"), g("b")]).unwrap();
    sub.close_flush();
    scope.join(p.pid(), &[g("c")]).unwrap();
    assert!(sub.recv().await.is_ok());
    assert!(sub.recv().await.is_ok());
    assert_eq!(
        sub.recv().await,
        Err(RecvError::Closed),
        "nothing after the close"
    );
    let (sub, _) = scope.events(None).unwrap();
    scope.join(p.pid(), &[g("d")]).unwrap();
    sub.close();
}

#[tokio::test(start_paused = true)]
async fn limits_are_limit_exceeded() {
    let node = single(NodeOptions::default());
    let mut options = ScopeOptions::default();
    options.core.max_members_per_group = 2;
    let scope = node.open_scope("s", options).unwrap();
    let p = node.spawn();
    scope.join(p.pid(), &[g("w"), g("w")]).unwrap();
    let err = scope.join(p.pid(), &[g("w")]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitExceeded);
    assert!(err.limit().is_some());
    assert_eq!(scope.members("w").len(), 2, "the limit counts joins");
}

#[tokio::test(start_paused = true)]
async fn scope_lookup_and_conflicts() {
    let node = single(NodeOptions::default());
    assert_eq!(
        node.open_scope("", ScopeOptions::default())
            .unwrap_err()
            .kind(),
        ErrorKind::Invalid
    );
    assert_eq!(node.scope("nope").unwrap_err().kind(), ErrorKind::NotFound);
    node.open_scope("s", ScopeOptions::default()).unwrap();
    node.open_scope("s", ScopeOptions::default()).unwrap();
    let other = ScopeOptions {
        monitor_buffer: 1,
        ..ScopeOptions::default()
    };
    assert_eq!(
        node.open_scope("s", other).unwrap_err().kind(),
        ErrorKind::Invalid
    );
    node.shutdown();
    assert_eq!(
        node.open_scope("t", ScopeOptions::default())
            .unwrap_err()
            .kind(),
        ErrorKind::Closed
    );
}

/// A transport whose sends block until released, to hold a scope's writer.
struct BlockingTransport {
    gate: Arc<(parking_lot::Mutex<bool>, parking_lot::Condvar)>,
    entered: Arc<std::sync::Barrier>,
}

impl Transport for BlockingTransport {
    fn attach(&self, inbound: Arc<dyn Inbound>) {
        let peer = NodeId::parse_name("peer", 1).unwrap();
        inbound.node_up(peer.clone());
        // The peer runs scope "s", so the scope sends it its changes.
        inbound.receive(
            &peer,
            Wire::Scopes {
                running: vec!["s".into()],
            },
        );
    }
    fn send(&self, _to: &NodeId, message: Wire) -> Result<(), SendError> {
        if matches!(message, Wire::Scope { .. }) {
            let (lock, cvar) = &*self.gate;
            let mut open = lock.lock();
            if !*open {
                self.entered.wait();
                while !*open {
                    cvar.wait(&mut open);
                }
            }
        }
        Ok(())
    }
    fn detach(&self) {}
}

#[test]
fn a_full_action_queue_fails_fast_with_overloaded() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let gate = Arc::new((parking_lot::Mutex::new(false), parking_lot::Condvar::new()));
    let entered = Arc::new(std::sync::Barrier::new(2));
    let transport = Arc::new(BlockingTransport {
        gate: Arc::clone(&gate),
        entered: Arc::clone(&entered),
    });
    let id = NodeId::parse_name("n", 1).unwrap();
    let node = Node::start_as(id, transport, NodeOptions::default()).unwrap();
    let options = ScopeOptions {
        action_queue_size: 1,
        action_queue_max_size: 1,
        ..ScopeOptions::default()
    };
    let mut core = options.core.clone();
    // No timer traffic: the only frame sent is the first join's delta, so
    // the thread blocked in the transport is that join's, not the timer's.
    core.anti_entropy_interval = Duration::ZERO;
    core.discovery_fanout = 0;
    let scope = node
        .open_scope("s", ScopeOptions { core, ..options })
        .unwrap();
    let p = node.spawn();
    let q = node.spawn();
    let (s2, pid) = (scope.clone(), p.pid().clone());
    let holder = std::thread::spawn(move || s2.join(&pid, &[common::g("w")]));
    entered.wait();
    let err = scope.join(q.pid(), &[common::g("w")]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Overloaded);
    assert!(
        scope.members("w").to_vec().iter().all(|m| m != q.pid()),
        "nothing was done"
    );
    *gate.0.lock() = true;
    gate.1.notify_all();
    holder.join().unwrap().unwrap();
    scope.join(q.pid(), &[common::g("w")]).unwrap();
    assert_eq!(scope.members("w").len(), 2);
}

#[test]
fn monitor_is_atomic_under_joins_from_other_threads() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let node = single(NodeOptions::default());
        let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
        let procs: Vec<_> = (0..2000).map(|_| node.spawn()).collect();
        let pids: Vec<_> = procs.iter().map(|p| p.pid().clone()).collect();
        let barrier = Arc::new(std::sync::Barrier::new(3));
        let threads: Vec<_> = pids
            .chunks(1000)
            .map(|chunk| {
                let (scope, chunk, barrier) = (scope.clone(), chunk.to_vec(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    for pid in &chunk {
                        scope.join(pid, &[g("w")]).unwrap();
                    }
                })
            })
            .collect();
        barrier.wait();
        let (mut sub, snapshot) = scope.monitor(&g("w"), None).unwrap();
        for t in threads {
            t.join().unwrap();
        }
        let mut seen: Vec<_> = snapshot.to_vec();
        let before = seen.len();
        while seen.len() < 2000 {
            seen.extend(sub.recv().await.unwrap().pids().cloned());
        }
        let total = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(
            (seen.len(), total),
            (2000, 2000),
            "snapshot had {before}: none missed, none twice"
        );
        assert!(sub.try_recv().is_none());
    });
}

#[tokio::test(start_paused = true)]
async fn health_reports_a_scope_without_broadcasts() {
    let node = single(NodeOptions::default());
    let options = ScopeOptions {
        broadcast_health_window: Duration::from_secs(1),
        ..ScopeOptions::default()
    };
    let scope = node.open_scope("hc", options).unwrap();
    let health = scope.health();
    assert_eq!(health.name, "pg.broadcast_recent.hc");
    assert!(health.healthy, "a young scope is healthy");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !scope.health().healthy,
        "no broadcast for longer than the window"
    );
    let p = node.spawn();
    scope
        .broadcast(p.pid(), "nobody", "t", Bytes::new())
        .unwrap();
    assert!(
        !scope.health().healthy,
        "a broadcast that reached no one is not traffic"
    );
    scope.join(p.pid(), &[g("w")]).unwrap();
    scope.broadcast(p.pid(), "w", "t", Bytes::new()).unwrap();
    assert!(scope.health().healthy);
}

#[tokio::test(start_paused = true)]
async fn dead_or_unknown_local_pids_cannot_join_or_own() {
    let node = single(NodeOptions::default());
    let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
    let p = node.spawn();
    let pid = p.pid().clone();
    drop(p);
    let never = node.id().pid(999_999).unwrap();
    for ghost in [&pid, &never] {
        let err = scope.join(ghost, &[g("w")]).unwrap_err();
        assert_eq!(err, pg_runtime::Error::NoProcess(ghost.clone()));
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(
            scope
                .join_pids(&g("w"), std::slice::from_ref(ghost))
                .is_err()
        );
        assert!(scope.monitor(&g("w"), Some(ghost)).is_err());
    }
    assert!(scope.which_groups().is_empty(), "no ghost membership");
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_mailboxes_and_subscriptions() {
    let node = single(NodeOptions::default());
    let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
    let mut p = node.spawn();
    let (mut sub, _) = scope.events(None).unwrap();
    node.shutdown();
    assert_eq!(p.recv().await, None);
    assert_eq!(sub.recv().await, Err(RecvError::Closed));
    assert_eq!(
        scope.join(p.pid(), &[g("w")]).unwrap_err().kind(),
        ErrorKind::Closed
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_mailbox_keeps_order_and_bounds_what_waits() {
    let node = single(NodeOptions {
        mailbox_capacity: 1,
        ..NodeOptions::default()
    });
    let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
    let mut slow = node.spawn();
    let from = node.spawn();
    scope.join(slow.pid(), &[g("w")]).unwrap();
    // 1 fits the mailbox, 4 (4 x capacity) wait in order, 5 are dropped.
    for i in 0..10u8 {
        scope
            .broadcast(from.pid(), "w", "n", Bytes::from(vec![i]))
            .unwrap();
    }
    assert_eq!(node.deliveries().failed, 5);
    for i in 0..5u8 {
        assert_eq!(slow.recv().await.unwrap().payload[0], i, "in order");
    }
    // With the backlog gone, new messages go straight in again.
    scope
        .broadcast(from.pid(), "w", "n", Bytes::from(vec![42]))
        .unwrap();
    assert_eq!(slow.recv().await.unwrap().payload[0], 42);
    assert_eq!(node.deliveries().delivered, 6);
}

/// While 30k exits are cleaned up on a multi-threaded runtime, joins from
/// another task keep completing between batches: some complete while the
/// cleanup is under way (backlog strictly between none and all).
#[test]
fn joins_interleave_with_the_batches_of_a_mass_exit() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let node = single(NodeOptions::default());
        let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
        let n = 30_000u64;
        let procs: Vec<_> = (0..n).map(|_| node.spawn()).collect();
        let groups: Vec<_> = (0..5).map(|i| g(&format!("room{i}"))).collect();
        for p in &procs {
            scope.join(p.pid(), &groups).unwrap();
        }
        let probe = node.spawn();
        let probe_group = [g("probe")];
        drop(procs);
        let mut during = 0;
        let mut probes = 0;
        while scope.exit_backlog() > 0 {
            scope.join(probe.pid(), &probe_group).unwrap();
            let backlog = scope.exit_backlog();
            scope.leave(probe.pid(), &probe_group).unwrap();
            probes += 1;
            if backlog > 0 && backlog < n {
                during += 1;
            }
            tokio::task::yield_now().await;
        }
        assert!(
            during > 0,
            "no join completed mid-cleanup ({probes} probes)"
        );
        scope.flush_exits().await;
        assert!(scope.which_groups().is_empty());
    });
}

/// After shutdown nothing is cleaned up any more, and waiting for the
/// cleanup returns instead of hanging.
#[tokio::test(flavor = "current_thread")]
async fn flush_exits_returns_after_shutdown() {
    let node = single(NodeOptions::default());
    let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
    let procs: Vec<_> = (0..10).map(|_| node.spawn()).collect();
    for p in &procs {
        scope.join(p.pid(), &[g("w")]).unwrap();
    }
    drop(procs); // queued; the exit task has not run yet
    node.shutdown();
    let late = node.spawn();
    drop(late); // after shutdown: not queued at all
    scope.flush_exits().await;
    node.flush_exits().await;
    assert_eq!(scope.exit_backlog(), 0);
}

/// A writer step of exits removes a bounded number of memberships, not a
/// fixed number of processes: 64 processes in 1000 groups each are
/// cleaned up over several steps, other callers getting the writer in
/// between.
#[tokio::test(flavor = "current_thread")]
async fn exits_of_processes_in_many_groups_take_several_steps() {
    let node = single(NodeOptions::default());
    let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
    let groups: Vec<_> = (0..1000).map(|i| g(&format!("g{i}"))).collect();
    let procs: Vec<_> = (0..64).map(|_| node.spawn()).collect();
    for p in &procs {
        scope.join(p.pid(), &groups).unwrap();
    }
    drop(procs);
    assert_eq!(scope.exit_backlog(), 64);
    tokio::task::yield_now().await; // the exit task runs one step
    let after_one = scope.exit_backlog();
    assert!(
        after_one > 0 && after_one < 64,
        "one step took {} processes of 1000 groups",
        64 - after_one
    );
    scope.flush_exits().await;
    assert!(scope.which_groups().is_empty());
}
