//! A mass exit whose publication is held back between batches
//! (`scope/publish.rs`): what readers and subscribers see stays exact.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use std::collections::BTreeMap;

use common::{g, node_on};
use pg_core::{EventKind, Pid};
use pg_runtime::{MemoryNetwork, Node, NodeOptions, Pattern, Process, Scope, ScopeOptions};

/// `n` processes, process `i` in rooms `i * per` to `i * per + per - 1`
/// (of `rooms`, wrapping).
/// Exits held until the queue runs dry, whatever the machine's speed.
fn long_hold() -> ScopeOptions {
    ScopeOptions {
        exit_publish_hold: std::time::Duration::from_secs(3600),
        ..ScopeOptions::default()
    }
}

fn crowded_with(
    n: usize,
    rooms: usize,
    per: usize,
    options: ScopeOptions,
) -> (Node, Scope, Vec<Process>) {
    let node = node_on(&MemoryNetwork::new(), "solo", NodeOptions::default());
    let scope = node.open_scope("s", options).unwrap();
    let procs: Vec<Process> = (0..n).map(|_| node.spawn()).collect();
    for (i, p) in procs.iter().enumerate() {
        let mine: Vec<_> = (0..per)
            .map(|k| g(&format!("room:{}", (i * per + k) % rooms)))
            .collect();
        scope.join(p.pid(), &mine).unwrap();
    }
    (node, scope, procs)
}

/// After `flush_exits` every reader sees every exit, whatever was held:
/// 5000 rooms, so the cleanup ends with more held groups than one step
/// publishes.
#[tokio::test(flavor = "current_thread")]
async fn flush_exits_returns_once_readers_see_the_whole_exit() {
    let rooms = 5000;
    let (_node, scope, procs) = crowded_with(5000, rooms, 2, long_hold());
    drop(procs);
    scope.flush_exits().await;
    assert_eq!(scope.exit_backlog(), 0);
    for i in 0..rooms {
        assert!(scope.members(&format!("room:{i}")).is_empty(), "room:{i}");
    }
    assert!(scope.which_groups().is_empty());
    assert!(scope.which_local_groups().is_empty());
    assert!(scope.which_groups_prefix("room:").is_empty());
}

/// `flush_exits` waits for the exits queued before it, not for the queue
/// to run dry: it returns while more processes keep ending faster than
/// one batch per step, and by then readers see the exits it waited for.
/// (Before the due mark, it waited for a moment when nothing at all was
/// held; this test catches that only when no such moment comes.)
#[tokio::test(flavor = "current_thread")]
async fn flush_exits_returns_while_exits_keep_coming() {
    // Each exit batch changes more groups (128 x 30) than a step
    // publishes beyond its own, so what is held is never all published
    // at once while exits keep coming.
    // Held long enough (even in a debug build) for many batches' groups
    // to be due at once.
    let options = ScopeOptions {
        exit_publish_hold: std::time::Duration::from_millis(300),
        ..ScopeOptions::default()
    };
    let rooms = 60_000;
    let (node, scope, procs) = crowded_with(3000, rooms, 30, options);
    let waited: Vec<Pid> = procs.iter().map(|p| p.pid().clone()).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (node, scope, stop) = (node.clone(), scope.clone(), std::sync::Arc::clone(&stop));
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // More than one exit batch (128) per round, in rooms of
                // their own (a join into a held group publishes it).
                let more: Vec<Process> = (0..150).map(|_| node.spawn()).collect();
                for p in &more {
                    let pair: Vec<_> = (0..30)
                        .map(|k| g(&format!("other:{}", (i * 30 + k) % rooms)))
                        .collect();
                    scope.join(p.pid(), &pair).unwrap();
                    i += 1;
                }
                drop(more);
                tokio::task::yield_now().await;
            }
        })
    };
    tokio::task::yield_now().await;
    drop(procs);
    let flushed =
        tokio::time::timeout(std::time::Duration::from_secs(30), scope.flush_exits()).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();
    assert!(
        flushed.is_ok(),
        "flush_exits waited for the queue to run dry"
    );
    let listed: Vec<Pid> = (0..rooms)
        .flat_map(|i| scope.members(&format!("room:{i}")).to_vec())
        .filter(|p| waited.contains(p))
        .collect();
    assert!(
        listed.is_empty(),
        "{} waited-for exits still listed",
        listed.len()
    );
}

/// A prefix monitor opened in the middle of a mass exit (2000 processes in
/// 50 rooms: every exit batch touches most rooms) takes its snapshot
/// from the readers' view: that view must hold nothing back at that
/// moment, or the snapshot would list members whose `left` events the new
/// subscriber never receives. Replaying the events onto the snapshot must
/// give exactly the final state (every room empty).
#[tokio::test(flavor = "current_thread")]
async fn a_prefix_monitor_opened_mid_exit_replays_exactly() {
    let (node, scope, procs) = crowded_with(2000, 50, 2, long_hold());
    drop(procs);
    for _ in 0..4 {
        tokio::task::yield_now().await; // some batches applied, not all
    }
    assert!(scope.exit_backlog() > 0, "the cleanup ran to its end early");
    let watcher = node.spawn();
    let (mut sub, snapshot) = scope
        .monitor_pattern(Pattern::Prefix("room:".into()), Some(watcher.pid()))
        .unwrap();
    let mut state: BTreeMap<(String, Pid), u64> = BTreeMap::new();
    for (group, members) in snapshot {
        for (pid, count) in members.iter_counted() {
            state.insert((group.to_string(), pid), u64::from(count));
        }
    }
    scope.flush_exits().await;
    while let Some(event) = sub.try_recv() {
        let event = event.unwrap();
        assert_eq!(event.kind, EventKind::Left);
        for (pid, count) in &event.members {
            let key = (event.group.to_string(), pid.clone());
            let held = state
                .get_mut(&key)
                .expect("a left event for a member not listed");
            *held = held
                .checked_sub(u64::from(*count))
                .expect("left more than joined");
            if *held == 0 {
                state.remove(&key);
            }
        }
    }
    assert!(
        state.is_empty(),
        "{} memberships left after the replay",
        state.len()
    );
}

/// Processes in no group end: their cleanup changes no group, and
/// `flush_exits` still returns (it once waited for a step that published
/// something).
#[tokio::test(flavor = "current_thread")]
async fn flush_exits_returns_for_processes_in_no_group() {
    let node = node_on(&MemoryNetwork::new(), "solo", NodeOptions::default());
    let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
    let procs: Vec<Process> = (0..300).map(|_| node.spawn()).collect();
    drop(procs);
    let flushed =
        tokio::time::timeout(std::time::Duration::from_secs(30), scope.flush_exits()).await;
    assert!(flushed.is_ok(), "flush_exits never returned");
    assert_eq!(scope.exit_backlog(), 0);
}

/// While more exits wait, what the applied batches changed is not yet
/// published (that is the point); `flush_exits` then shows all of it.
#[tokio::test(flavor = "current_thread")]
async fn a_mass_exit_is_held_until_the_queue_runs_dry() {
    let rooms = 50;
    let (_node, scope, procs) = crowded_with(2000, rooms, 2, long_hold());
    let listed = |scope: &Scope| -> usize {
        (0..rooms)
            .map(|i| scope.members(&format!("room:{i}")).len())
            .sum()
    };
    drop(procs);
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    assert!(scope.exit_backlog() < 2000, "no batch was applied");
    assert!(scope.exit_backlog() > 0, "the cleanup ran to its end early");
    assert_eq!(listed(&scope), 4000, "a batch was published while held");
    scope.flush_exits().await;
    assert_eq!(listed(&scope), 0);
}

/// A monitor opened in the middle of a held mass exit takes its snapshot
/// from the core; the step publishes what was held, so readers see
/// exactly that snapshot.
#[tokio::test(flavor = "current_thread")]
async fn an_exact_monitor_opened_mid_exit_agrees_with_readers() {
    let (node, scope, procs) = crowded_with(2000, 50, 2, long_hold());
    drop(procs);
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    assert!(scope.exit_backlog() > 0, "the cleanup ran to its end early");
    let watcher = node.spawn();
    let (_sub, snapshot) = scope.monitor(&g("room:0"), Some(watcher.pid())).unwrap();
    assert_eq!(
        scope.members("room:0").to_vec(),
        snapshot.to_vec(),
        "readers and the monitor's snapshot disagree"
    );
}
