//! Named clusters through the public API: connecting to a scope at run
//! time, who runs it, traffic only between the nodes that do, leaving it
//! (seen by the others as a part going away), leases that lapse only once
//! local interest is gone, and configured scopes connected later. Three
//! nodes over QUIC + mutual TLS, and one node from YAML.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::time::Duration;

use pg_api::{Config, ErrorKind, EventKind, LeaveReason, Node, NodeId, RecvError};

mod common;
use common::{eventually, three_nodes};

const ROOM: &str = "app:room";

fn ids(nodes: &[&Node]) -> Vec<NodeId> {
    nodes.iter().map(|n| n.id().clone()).collect()
}

fn sorted(mut v: Vec<NodeId>) -> Vec<NodeId> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_disconnect_and_who_runs_a_scope() {
    let nodes = three_nodes();
    let [a, b, c] = [&nodes[0], &nodes[1], &nodes[2]];
    eventually("a full mesh", || nodes.iter().all(|n| n.peers().len() == 2)).await;
    let (pa, pb, pc) = (a.spawn("app"), b.spawn("app"), c.spawn("app"));
    assert!(!pa.is_connected(ROOM).unwrap());
    assert_eq!(pc.open(ROOM).unwrap_err().kind(), ErrorKind::NotFound);

    // a and b connect; c runs the node-wide mesh but not the scope.
    pa.connect(ROOM).unwrap();
    pb.connect(ROOM).unwrap();
    pa.connect(ROOM).unwrap(); // a repeated connect is a no-op
    eventually("everyone knows who runs the room", || {
        sorted(pc.nodes(ROOM).unwrap()) == sorted(ids(&[a, b]))
            && sorted(pa.nodes(ROOM).unwrap()) == sorted(ids(&[a, b]))
    })
    .await;
    assert_eq!(pa.nodes(ROOM).unwrap()[0], *a.id(), "this node first");
    let (room_a, room_b) = (pa.open(ROOM).unwrap(), pb.open(ROOM).unwrap());
    room_a.join_with_meta("lobby", "from a").unwrap();
    eventually("b sees a's member", || room_b.count("lobby").unwrap() == 1).await;
    // Only the nodes running the scope exchange its traffic.
    let peers = |n: &Node| n.runtime().scope(ROOM).unwrap().peers();
    assert_eq!(peers(a), vec![b.id().clone()]);
    assert_eq!(peers(b), vec![a.id().clone()]);

    // c connects later and gets the state.
    pc.connect(ROOM).unwrap();
    let room_c = pc.open(ROOM).unwrap();
    eventually("c has the room's state", || {
        room_c.get_members_with_meta("lobby").unwrap().len() == 1
    })
    .await;
    assert_eq!(
        room_c.get_members_with_meta("lobby").unwrap()[0].2,
        Some(pg_api::Meta::from("from a"))
    );
    eventually("c is a peer of the room everywhere", || {
        peers(a).len() == 2 && peers(b).len() == 2 && peers(c).len() == 2
    })
    .await;

    // b leaves the scope: the others see its part go, with events; its
    // own instances and subscriptions end; the rest of the cluster (the
    // other scope, the mesh) is untouched.
    room_b.join("lobby").unwrap();
    eventually("c sees b's member", || room_c.count("lobby").unwrap() == 2).await;
    let (mut watch_c, _) = room_c.monitor("lobby").unwrap();
    let (mut watch_b, _) = room_b.monitor("lobby").unwrap();
    assert_eq!(pb.disconnect([ROOM, "app:none"]).unwrap(), 1);
    let left = tokio::time::timeout(Duration::from_secs(10), watch_c.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (left.kind, left.reason, left.members[0].0.node()),
        (EventKind::Left, Some(LeaveReason::NodeDown), b.id())
    );
    assert!(matches!(watch_b.recv().await, Err(RecvError::Closed)));
    assert_eq!(room_b.join("x").unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(pb.open(ROOM).unwrap_err().kind(), ErrorKind::NotFound);
    assert!(!pb.is_connected(ROOM).unwrap());
    eventually("b no longer runs the room", || {
        sorted(pa.nodes(ROOM).unwrap()) == sorted(ids(&[a, c])) && peers(a).len() == 1
    })
    .await;
    assert_eq!(room_a.count("lobby").unwrap(), 1);
    assert_eq!(b.peers().len(), 2, "the mesh is untouched");
    let pg_b = pb.open("app:pg").unwrap();
    pg_b.join("still").unwrap();
    eventually("the other scope still works", || {
        pa.open("app:pg").unwrap().count("still").unwrap() == 1
    })
    .await;

    // b connects again: a fresh part, seen by all.
    pb.connect(ROOM).unwrap();
    pb.open(ROOM).unwrap().join("lobby").unwrap();
    eventually("b's new member everywhere", || {
        room_a.count("lobby").unwrap() == 2 && room_c.count("lobby").unwrap() == 2
    })
    .await;
}

/// A leased scope stays while this node has members or subscriptions in
/// it, and disconnects once both are gone; connecting again does not
/// refresh the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_lapses_only_once_interest_is_gone() {
    let nodes = three_nodes();
    let [a, b, _] = [&nodes[0], &nodes[1], &nodes[2]];
    eventually("a full mesh", || nodes.iter().all(|n| n.peers().len() == 2)).await;
    let (pa, pb) = (a.spawn("app"), b.spawn("app"));
    pa.connect(ROOM).unwrap();
    let ttl = Duration::from_millis(200);
    pb.connect_leased(ROOM, ttl).unwrap();
    let room_b = pb.open(ROOM).unwrap();
    room_b.join("lobby").unwrap();
    let (sub, _) = room_b.monitor("other").unwrap();
    // Past the lease, a member and a subscription hold it.
    tokio::time::sleep(ttl * 3).await;
    assert!(pb.is_connected(ROOM).unwrap());
    room_b.leave("lobby").unwrap();
    // The subscription alone still holds it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(pb.is_connected(ROOM).unwrap());
    sub.close();
    eventually("the lease lapsed", || !pb.is_connected(ROOM).unwrap()).await;
    eventually("a sees b gone from the room", || {
        pa.nodes(ROOM).unwrap() == vec![a.id().clone()]
    })
    .await;

    // A repeated connect does not refresh the lease: connecting again with
    // an hour's lease, the short one still lapses.
    pb.connect_leased(ROOM, ttl).unwrap();
    pb.connect_leased(ROOM, Duration::from_secs(3600)).unwrap();
    assert!(pb.is_connected(ROOM).unwrap());
    eventually("the first lease lapsed", || !pb.is_connected(ROOM).unwrap()).await;
    assert_eq!(
        pb.connect_leased(ROOM, Duration::ZERO).unwrap_err().kind(),
        ErrorKind::Invalid
    );
}

/// A scope configured with `auto_start: false` is not connected at start,
/// and `connect` uses its configured options.
#[tokio::test(flavor = "current_thread")]
async fn a_configured_scope_is_connected_later_with_its_options() {
    let config = Config::from_yaml(
        "- name: pg\n  kind: pg.scope\n\
         - name: late\n  kind: pg.scope\n  max_meta_size: 4\n  lifecycle:\n    auto_start: false\n",
    )
    .unwrap();
    let node = Node::from_config(&config).unwrap();
    let p = node.spawn("app");
    assert!(!p.is_connected("app:late").unwrap());
    assert_eq!(p.open("app:late").unwrap_err().kind(), ErrorKind::NotFound);
    p.connect("app:late").unwrap();
    assert_eq!(p.nodes("app:late").unwrap(), vec![node.id().clone()]);
    let late = p.open("app:late").unwrap();
    assert_eq!(
        late.join_with_meta("g", "five!").unwrap_err().kind(),
        ErrorKind::LimitExceeded,
        "the configured max_meta_size applies"
    );
    late.join_with_meta("g", "four").unwrap();
    assert_eq!(p.connect("").unwrap_err().kind(), ErrorKind::Invalid);
    let none: Vec<&str> = Vec::new();
    assert_eq!(p.disconnect(none).unwrap_err().kind(), ErrorKind::Invalid);
}

/// A node runs at most as many scopes as it may announce, with ids of
/// bounded length; past either, connect fails and changes nothing.
#[tokio::test(flavor = "current_thread")]
async fn scope_count_and_id_length_are_bounded() {
    let node =
        Node::from_config(&Config::from_yaml("- name: pg\n  kind: pg.scope\n").unwrap()).unwrap();
    let p = node.spawn("app");
    let long = format!("app:{}", "x".repeat(pg_api::MAX_SCOPE_ID_LEN));
    assert_eq!(p.connect(&long).unwrap_err().kind(), ErrorKind::Invalid);
    for i in 1..pg_api::MAX_ANNOUNCED_SCOPES {
        p.connect(&format!("app:s{i}")).unwrap();
    }
    let err = p.connect("app:one-too-many").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err}");
    assert!(!p.is_connected("app:one-too-many").unwrap());
    p.connect("app:s1").unwrap(); // already connected: still fine
    assert_eq!(p.disconnect("app:s1").unwrap(), 1);
    p.connect("app:one-too-many").unwrap();
}
