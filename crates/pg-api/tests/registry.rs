//! The registry through the public API, over three nodes on QUIC + mutual
//! TLS: register on one node and look up on another, the same key on both
//! sides of a partition with exactly one winner everywhere and the loser
//! told once, a custom resolver, keys going with their process and node.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::sync::Arc;
use std::time::Duration;

use pg_api::{
    Candidate, Choice, ErrorKind, Meta, Node, NodeName, Pattern, REGISTRY_CONFLICT_TOPIC,
    RegisterOptions, RegisterOutcome, RegistryConflict, RegistryEventKind, Resolver,
    UnregisterReason,
};

mod common;
use common::{eventually, three_nodes};

fn name(node: &Node) -> NodeName {
    node.id().name.clone()
}

/// Cuts node `x` off from the others (both directions), or heals it.
fn isolate(nodes: &[Node], x: usize, cut: bool) {
    for (i, other) in nodes.iter().enumerate() {
        if i == x {
            continue;
        }
        if cut {
            nodes[x].block(&name(other));
            other.block(&name(&nodes[x]));
        } else {
            nodes[x].unblock(&name(other));
            other.unblock(&name(&nodes[x]));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_on_one_node_look_up_on_another() {
    let nodes = three_nodes();
    eventually("a full mesh", || nodes.iter().all(|n| n.peers().len() == 2)).await;
    let (pa, pb, pc) = (
        nodes[0].spawn("app"),
        nodes[1].spawn("app"),
        nodes[2].spawn("app"),
    );
    let (a, b, c) = (
        pa.open("app:pg").unwrap(),
        pb.open("app:pg").unwrap(),
        pc.open("app:pg").unwrap(),
    );
    let (mut watch, snapshot) = c
        .monitor_registry(Pattern::Prefix("session/".into()))
        .unwrap();
    assert!(snapshot.is_empty());
    assert_eq!(
        a.register_with_meta("session/42", "v1").unwrap(),
        RegisterOutcome::Registered
    );
    eventually("c sees the key", || {
        c.lookup("session/42").unwrap().is_some()
    })
    .await;
    assert_eq!(
        c.lookup("session/42").unwrap(),
        Some((pa.pid().clone(), Some(Meta::from("v1"))))
    );
    eventually("b sees it too", || {
        b.lookup("session/42").unwrap().is_some()
    })
    .await;
    assert_eq!(
        b.register("session/42").unwrap(),
        RegisterOutcome::Taken {
            by: pa.pid().clone()
        }
    );
    let registered = tokio::time::timeout(Duration::from_secs(10), watch.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (registered.kind, registered.pid.clone()),
        (RegistryEventKind::Registered, pa.pid().clone())
    );
    // Metadata updated in place, seen with the previous one.
    a.register_with_meta("session/42", "v2").unwrap();
    let updated = tokio::time::timeout(Duration::from_secs(10), watch.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.previous_meta, Some(Meta::from("v1")));
    // Views: counts, dump, local, contains, bulk.
    a.register_many(&[("session/1", None), ("session/2", Some(Meta::from("x")))])
        .unwrap();
    eventually("c has three keys", || c.registered_count().unwrap() == 3).await;
    assert_eq!(a.local_registered_count().unwrap(), 3);
    assert_eq!(c.local_registered_count().unwrap(), 0);
    assert_eq!(c.dump().unwrap().len(), 3);
    assert_eq!(c.registrations_prefix("session/4").unwrap().len(), 1);
    assert_eq!(
        c.contains_keys(&["session/1", "nope", "session/2"])
            .unwrap()
            .len(),
        2
    );
    assert_eq!(a.unregister_many(&["session/1", "nope"]).unwrap(), 1);
    assert_eq!(a.unregister("nope").unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(a.register("").unwrap_err().kind(), ErrorKind::Invalid);
    // The process ends: its keys go everywhere.
    drop((a, pa));
    eventually("a's keys gone on c", || c.registered_count().unwrap() == 0).await;
    let mut reasons = Vec::new();
    while let Some(e) = watch.try_recv() {
        let e = e.unwrap();
        if e.kind == RegistryEventKind::Unregistered {
            reasons.push(e.reason);
        }
    }
    assert!(
        reasons.contains(&Some(UnregisterReason::Exit)),
        "{reasons:?}"
    );
    // A node going down takes its keys with it.
    b.register("on-b").unwrap();
    eventually("c sees b's key", || c.lookup("on-b").unwrap().is_some()).await;
    nodes[1].shutdown();
    eventually("b's key gone on c", || c.lookup("on-b").unwrap().is_none()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_winner_after_a_partition_and_the_loser_told_once() {
    let nodes = three_nodes();
    eventually("a full mesh", || nodes.iter().all(|n| n.peers().len() == 2)).await;
    isolate(&nodes, 0, true);
    eventually("the cut seen", || nodes[0].peers().is_empty()).await;
    let mut pa = nodes[0].spawn("app");
    let mut pb = nodes[1].spawn("app");
    let a = pa.open("app:pg").unwrap();
    let b = pb.open("app:pg").unwrap();
    assert_eq!(
        a.register_with_meta("leader", "a").unwrap(),
        RegisterOutcome::Registered
    );
    assert_eq!(
        b.register_with_meta("leader", "b").unwrap(),
        RegisterOutcome::Registered
    );
    isolate(&nodes, 0, false);
    eventually("one winner everywhere", || {
        let holders: Vec<_> = nodes
            .iter()
            .map(|n| n.runtime().scope("app:pg").unwrap().lookup("leader"))
            .collect();
        holders.iter().all(|h| h.is_some() && *h == holders[0])
    })
    .await;
    // Equal Lamport times: the smaller node name ("a") wins.
    assert_eq!(a.lookup("leader").unwrap().unwrap().0, *pa.pid());
    let notice = tokio::time::timeout(Duration::from_secs(10), pb.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*notice.topic, REGISTRY_CONFLICT_TOPIC);
    let conflict: RegistryConflict = notice.decode().unwrap();
    assert_eq!(
        (conflict.key.as_str(), conflict.winner, conflict.meta),
        ("leader", pa.pid().clone(), Some(b"b".to_vec()))
    );
    assert_eq!(b.local_registered_count().unwrap(), 0);
    // Told once, and the winner is told nothing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(pb.try_recv().is_none());
    assert!(pa.try_recv().is_none());
}

struct LongestMetaWins;

impl Resolver for LongestMetaWins {
    fn resolve(&self, _key: &str, a: Candidate<'_>, b: Candidate<'_>) -> Choice {
        let len = |c: &Candidate<'_>| c.meta.map_or(0, |m| m.len());
        if len(&a) >= len(&b) {
            Choice::First
        } else {
            Choice::Second
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_resolver_picks_the_winner() {
    let nodes = three_nodes();
    for node in &nodes {
        node.set_registry_resolver("app:pg", Arc::new(LongestMetaWins))
            .unwrap();
    }
    eventually("a full mesh", || nodes.iter().all(|n| n.peers().len() == 2)).await;
    isolate(&nodes, 0, true);
    eventually("the cut seen", || nodes[0].peers().is_empty()).await;
    let mut pa = nodes[0].spawn("app");
    let pb = nodes[1].spawn("app");
    pa.open("app:pg")
        .unwrap()
        .register_with_meta("k", "short")
        .unwrap();
    pb.open("app:pg")
        .unwrap()
        .register_with_meta("k", "much longer")
        .unwrap();
    isolate(&nodes, 0, false);
    eventually("b's registration wins everywhere", || {
        nodes.iter().all(|n| {
            n.runtime()
                .scope("app:pg")
                .unwrap()
                .lookup("k")
                .map(|h| h.0)
                == Some(pb.pid().clone())
        })
    })
    .await;
    let notice = tokio::time::timeout(Duration::from_secs(10), pa.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*notice.topic, REGISTRY_CONFLICT_TOPIC);
}

/// Tags replicate: `match_tag` on any node lists every key tagged so,
/// whichever node registered it, and follows a retag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_matched_cluster_wide() {
    let nodes = three_nodes();
    eventually("a full mesh", || nodes.iter().all(|n| n.peers().len() == 2)).await;
    let (pa, pc) = (nodes[0].spawn("app"), nodes[2].spawn("app"));
    let (a, c) = (pa.open("app:pg").unwrap(), pc.open("app:pg").unwrap());
    let b = nodes[1].spawn("app");
    let b = b.open("app:pg").unwrap();
    a.register_with("worker/a", RegisterOptions::new().tag("gpu").meta("8GB"))
        .unwrap();
    c.register_many_with(&[
        ("worker/c1", RegisterOptions::new().tag("gpu")),
        ("worker/c2", RegisterOptions::new().tag("cpu")),
    ])
    .unwrap();
    let keys = |regs: Vec<pg_api::Registration>| -> Vec<String> {
        regs.into_iter().map(|r| r.key.to_string()).collect()
    };
    eventually("b matches both gpu workers", || {
        keys(b.match_tag("gpu").unwrap()) == ["worker/a", "worker/c1"]
    })
    .await;
    let r = b.registration("worker/a").unwrap().unwrap();
    assert_eq!(
        (r.pid, r.meta, r.tag.map(|t| t.to_string())),
        (
            pa.pid().clone(),
            Some(Meta::from("8GB")),
            Some("gpu".to_owned())
        )
    );
    assert_eq!(keys(b.match_tag("cpu").unwrap()), ["worker/c2"]);
    // Retagged in place.
    c.register_with("worker/c2", RegisterOptions::new().tag("gpu"))
        .unwrap();
    eventually("b follows the retag", || {
        b.match_tag("cpu").unwrap().is_empty() && b.match_tag("gpu").unwrap().len() == 3
    })
    .await;
    // A tagged key that goes (unregistered, or with its process) leaves
    // its tag's listing; registered again under another tag, it is listed
    // there only.
    c.unregister("worker/c1").unwrap();
    c.register_with("worker/c1", RegisterOptions::new().tag("tpu"))
        .unwrap();
    drop((a, pa));
    eventually("b sees the untagging and the exit", || {
        keys(b.match_tag("gpu").unwrap()) == ["worker/c2"]
            && keys(b.match_tag("tpu").unwrap()) == ["worker/c1"]
    })
    .await;
    assert_eq!(b.match_tag("").unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(
        c.register_with("k", RegisterOptions::new().tag(""))
            .unwrap_err()
            .kind(),
        ErrorKind::Invalid
    );
}

/// A registration made with `exit_on_loss` that loses a conflict ends its
/// process: the notice arrives, then the mailbox ends, and everything the
/// process held (memberships, other keys) goes everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loser_that_asked_to_exit_ends() {
    let nodes = three_nodes();
    eventually("a full mesh", || nodes.iter().all(|n| n.peers().len() == 2)).await;
    isolate(&nodes, 0, true);
    eventually("the cut seen", || nodes[0].peers().is_empty()).await;
    let pa = nodes[0].spawn("app");
    let mut pb = nodes[1].spawn("app");
    let a = pa.open("app:pg").unwrap();
    let b = pb.open("app:pg").unwrap();
    a.register("leader").unwrap();
    b.register_with("leader", RegisterOptions::new().exit_on_loss(true))
        .unwrap();
    b.register("b-only").unwrap();
    b.join("workers").unwrap();
    isolate(&nodes, 0, false);
    let notice = tokio::time::timeout(Duration::from_secs(10), pb.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*notice.topic, REGISTRY_CONFLICT_TOPIC);
    let ended = tokio::time::timeout(Duration::from_secs(10), pb.recv())
        .await
        .unwrap();
    assert!(ended.is_none(), "the mailbox ends after the notice");
    eventually("everything b held is gone everywhere", || {
        nodes.iter().all(|n| {
            let scope = n.runtime().scope("app:pg").unwrap();
            scope.lookup("b-only").is_none()
                && scope.members("workers").is_empty()
                && scope.lookup("leader").map(|h| h.0) == Some(pa.pid().clone())
        })
    })
    .await;
    assert!(b.join("again").is_err(), "the process has ended");
}
