//! A mass exit whose publication is held back between batches
//! (`scope/publish.rs`): what readers and subscribers see stays exact.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use std::collections::BTreeMap;

use common::{g, node_on};
use pg_core::{EventKind, Pid};
use pg_runtime::{MemoryNetwork, Node, NodeOptions, Pattern, Process, Scope, ScopeOptions};

const ROOMS: usize = 50;

/// 2000 processes, each in two of 50 rooms, so that every exit batch
/// touches most rooms and the cleanup takes about 16 batches.
fn crowded() -> (Node, Scope, Vec<Process>) {
    let node = node_on(&MemoryNetwork::new(), "solo", NodeOptions::default());
    let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
    let procs: Vec<Process> = (0..2000).map(|_| node.spawn()).collect();
    for (i, p) in procs.iter().enumerate() {
        let rooms = [
            g(&format!("room:{}", i % ROOMS)),
            g(&format!("room:{}", (i + 1) % ROOMS)),
        ];
        scope.join(p.pid(), &rooms).unwrap();
    }
    (node, scope, procs)
}

/// After `flush_exits` every reader sees every exit, whatever was held.
#[tokio::test(flavor = "current_thread")]
async fn flush_exits_returns_once_readers_see_the_whole_exit() {
    let (_node, scope, procs) = crowded();
    drop(procs);
    for _ in 0..4 {
        tokio::task::yield_now().await; // a few batches, maybe held
    }
    scope.flush_exits().await;
    assert_eq!(scope.exit_backlog(), 0);
    for i in 0..ROOMS {
        assert!(scope.members(&format!("room:{i}")).is_empty(), "room:{i}");
    }
    assert!(scope.which_groups().is_empty());
    assert!(scope.which_local_groups().is_empty());
    assert!(scope.which_groups_prefix("room:").is_empty());
}

/// A prefix monitor opened in the middle of a mass exit takes its snapshot
/// from the readers' view: that view must hold nothing back at that
/// moment, or the snapshot would list members whose `left` events the new
/// subscriber never receives. Replaying the events onto the snapshot must
/// give exactly the final state (every room empty).
#[tokio::test(flavor = "current_thread")]
async fn a_prefix_monitor_opened_mid_exit_replays_exactly() {
    let (node, scope, procs) = crowded();
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
