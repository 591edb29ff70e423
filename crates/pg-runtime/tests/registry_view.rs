//! The registry's published view on one node: point lookups and the
//! ordered listings agree with what was registered, in key order, after
//! registrations, unregistrations, re-registrations and exits.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use common::{g, node_on};
use pg_core::Meta;
use pg_runtime::{MemoryNetwork, NodeOptions, ScopeOptions};

fn keys(regs: Vec<pg_core::Registration>) -> Vec<String> {
    regs.into_iter()
        .map(|r| r.key.as_str().to_owned())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn lookups_and_ordered_listings_follow_every_change() {
    let node = node_on(&MemoryNetwork::new(), "solo", NodeOptions::default());
    let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
    let (p, q) = (node.spawn(), node.spawn());
    // Registered out of order, with many keys around them.
    for name in ["b", "a/2", "c", "a/10", "a/1", "ab"] {
        scope.register(p.pid(), &g(name), None).unwrap();
    }
    for i in 0..1000 {
        scope
            .register(q.pid(), &g(&format!("z/{i:04}")), None)
            .unwrap();
    }
    assert_eq!(scope.registered_count(), 1006);
    assert_eq!(scope.local_registered_count(), 1006);
    assert_eq!(
        keys(scope.registrations_prefix("a")),
        ["a/1", "a/10", "a/2", "ab"]
    );
    assert_eq!(
        keys(scope.registrations_prefix("a/")),
        ["a/1", "a/10", "a/2"]
    );
    let all = keys(scope.registrations());
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "in key order");
    assert_eq!(all.len(), 1006);
    assert_eq!(
        scope.lookup("a/10").map(|(pid, _)| pid),
        Some(p.pid().clone())
    );
    assert_eq!(
        scope.lookup("z/0999").map(|(pid, _)| pid),
        Some(q.pid().clone())
    );
    assert!(scope.lookup("a").is_none());

    // Unregistered keys leave every view; a re-registration updates the
    // metadata in place without listing the key twice.
    scope.unregister(p.pid(), &g("a/10")).unwrap();
    let meta = Meta::from(b"v2".to_vec());
    scope
        .register(p.pid(), &g("b"), Some(meta.clone()))
        .unwrap();
    assert!(scope.lookup("a/10").is_none());
    assert_eq!(scope.lookup("b"), Some((p.pid().clone(), Some(meta))));
    assert_eq!(keys(scope.registrations_prefix("a/")), ["a/1", "a/2"]);
    assert_eq!(
        keys(scope.registrations())
            .iter()
            .filter(|k| *k == "b")
            .count(),
        1
    );

    // An exit removes all of the process's keys.
    drop(q);
    node.flush_exits().await;
    assert_eq!(keys(scope.registrations()), ["a/1", "a/2", "ab", "b", "c"]);
    assert!(scope.lookup("z/0000").is_none());
    assert_eq!(scope.registered_count(), 5);
    assert_eq!(scope.local_registered_count(), 5);
    assert_eq!(
        keys(scope.local_registrations()),
        ["a/1", "a/2", "ab", "b", "c"]
    );
}

/// With no registry monitor open the writer records only which keys
/// changed; a monitor opened later still gets a snapshot of exactly the
/// registrations at that instant and an event for every change after it;
/// after the last monitor closes, changes still reach the view and the
/// next monitor's snapshot.
#[tokio::test(start_paused = true)]
async fn a_monitor_opened_after_unmonitored_changes_sees_all_later_ones() {
    use pg_core::RegistryEventKind::{Registered, Unregistered};
    use pg_runtime::Pattern;

    let node = node_on(&MemoryNetwork::new(), "solo", NodeOptions::default());
    let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
    let (p, q) = (node.spawn(), node.spawn());
    for name in ["room/2", "room/1", "lobby"] {
        scope.register(p.pid(), &g(name), None).unwrap();
    }
    scope.register(q.pid(), &g("room/3"), None).unwrap();
    scope.unregister(p.pid(), &g("room/2")).unwrap();

    let drain = |sub: &mut pg_runtime::Subscription<pg_core::RegistryEvent>| {
        std::iter::from_fn(|| sub.try_recv())
            .map(|e| {
                let e = e.unwrap();
                (e.kind, e.key.as_str().to_owned())
            })
            .collect::<Vec<_>>()
    };
    let (mut rooms, snapshot) = scope
        .monitor_registry(Pattern::Prefix("room/".into()), None, None)
        .unwrap();
    assert_eq!(keys(snapshot), ["room/1", "room/3"]);
    let (all, snapshot) = scope.monitor_registry(Pattern::All, None, None).unwrap();
    assert_eq!(keys(snapshot), ["lobby", "room/1", "room/3"]);
    assert!(drain(&mut rooms).is_empty(), "nothing before the snapshot");

    scope.register(p.pid(), &g("room/4"), None).unwrap();
    scope.register(p.pid(), &g("hall"), None).unwrap();
    drop(q);
    node.flush_exits().await;
    assert_eq!(
        drain(&mut rooms),
        [
            (Registered, "room/4".to_owned()),
            (Unregistered, "room/3".to_owned())
        ]
    );

    // The last monitors go; unmonitored changes again; a new monitor's
    // snapshot has them all.
    rooms.close();
    all.close();
    scope.unregister(p.pid(), &g("room/1")).unwrap();
    scope.register(p.pid(), &g("room/5"), None).unwrap();
    let (mut rooms, snapshot) = scope
        .monitor_registry(Pattern::Prefix("room/".into()), None, None)
        .unwrap();
    assert_eq!(keys(snapshot), ["room/4", "room/5"]);
    scope.unregister(p.pid(), &g("room/4")).unwrap();
    assert_eq!(drain(&mut rooms), [(Unregistered, "room/4".to_owned())]);
}

/// `flush_exits` returns only once an ended process's keys are gone from
/// the view and their events delivered, on a runtime whose exit task runs
/// on another thread than the waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_exits_waits_for_the_registry_too() {
    use pg_runtime::Pattern;

    let node = node_on(&MemoryNetwork::new(), "solo", NodeOptions::default());
    let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
    let (mut sub, _) = scope.monitor_registry(Pattern::All, None, None).unwrap();
    for round in 0..200 {
        let key = g(&format!("k/{round}"));
        let p = node.spawn();
        scope.register(p.pid(), &key, None).unwrap();
        drop(p);
        node.flush_exits().await;
        assert!(scope.lookup(key.as_str()).is_none(), "round {round}");
        assert_eq!(scope.local_registered_count(), 0);
        let events: Vec<_> = std::iter::from_fn(|| sub.try_recv())
            .map(|e| e.unwrap().kind)
            .collect();
        assert_eq!(
            events,
            [
                pg_core::RegistryEventKind::Registered,
                pg_core::RegistryEventKind::Unregistered
            ],
            "round {round}"
        );
    }
}
