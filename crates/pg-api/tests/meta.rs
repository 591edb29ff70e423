//! Member metadata through the public API: on one node (set, replace,
//! keep, typed, bounded, events) and across three nodes over QUIC + mutual
//! TLS, through a partition during which both sides change metadata.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::collections::BTreeMap;
use std::time::Duration;

use pg_api::{
    Config, ErrorKind, Event, EventKind, GroupsSnapshot, Instance, LeaveReason, Meta, Node,
    NodeName, Pattern, Pid, Subscription,
};
use serde::{Deserialize, Serialize};

mod common;
use common::{eventually, three_nodes};

fn m(text: &str) -> Meta {
    Meta::from(text)
}

/// group -> pid -> (join count, metadata).
type State = BTreeMap<String, BTreeMap<Pid, (u32, Option<Meta>)>>;

fn state(snapshot: &GroupsSnapshot) -> State {
    snapshot
        .iter()
        .map(|(g, members)| {
            let entries = members
                .iter_with_meta()
                .map(|(pid, count, meta)| (pid, (count, meta)))
                .collect();
            (g.to_string(), entries)
        })
        .collect()
}

/// Applies one event to `state`, checking that its metadata follows from
/// what the replay holds (previous_meta on joins and updates, the left
/// member's metadata).
fn apply(state: &mut State, event: &Event) {
    let group = state.entry(event.group.to_string()).or_default();
    for (i, (pid, n)) in event.members.iter().enumerate() {
        let (held, held_meta) = group.get(pid).cloned().unwrap_or((0, None));
        match event.kind {
            EventKind::Joined => {
                assert_eq!(event.previous_meta(i), held_meta.as_ref(), "{event:?}");
                group.insert(pid.clone(), (held + n, event.meta(i).cloned()));
            }
            EventKind::Left => {
                assert!(held >= *n, "{pid} left more often than it joined");
                assert_eq!(event.meta(i), held_meta.as_ref(), "{event:?}");
                assert!(event.reason.is_some());
                if held == *n {
                    group.remove(pid);
                } else {
                    group.insert(pid.clone(), (held - n, held_meta));
                }
            }
            EventKind::Updated => {
                assert!(held > 0);
                assert_eq!(event.previous_meta(i), held_meta.as_ref(), "{event:?}");
                group.insert(pid.clone(), (held, event.meta(i).cloned()));
            }
        }
    }
    if group.is_empty() {
        state.remove(event.group.as_str());
    }
}

fn drain(state: &mut State, sub: &mut Subscription) -> Vec<Event> {
    let mut seen = Vec::new();
    while let Some(event) = sub.try_recv() {
        let event = event.unwrap();
        apply(state, &event);
        seen.push((*event).clone());
    }
    seen
}

fn solo() -> Node {
    let config = Config::from_yaml("- name: pg\n  kind: pg.scope\n  max_meta_size: 64\n").unwrap();
    Node::from_config(&config).unwrap()
}

async fn next(sub: &mut Subscription) -> Event {
    let event = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .expect("an event")
        .unwrap();
    (*event).clone()
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Presence {
    name: String,
    role: String,
}

#[tokio::test(flavor = "current_thread")]
async fn set_replace_keep_and_events_on_one_node() {
    let node = solo();
    let watcher = node.spawn("watch");
    let (mut sub, _) = watcher
        .open("app:pg")
        .unwrap()
        .monitor_pattern(Pattern::Prefix("room/".into()))
        .unwrap();
    let user = node.spawn("user");
    let pg = user.open("app:pg").unwrap();

    pg.join_with_meta("room/1", "guest").unwrap();
    let joined = next(&mut sub).await;
    assert_eq!(joined.kind, EventKind::Joined);
    assert_eq!(
        (joined.meta(0), joined.previous_meta(0)),
        (Some(&m("guest")), None)
    );

    pg.join_with_meta("room/1", "admin").unwrap();
    let rejoined = next(&mut sub).await;
    assert_eq!(
        (rejoined.meta(0), rejoined.previous_meta(0)),
        (Some(&m("admin")), Some(&m("guest")))
    );
    pg.join("room/1").unwrap();
    let plain = next(&mut sub).await;
    assert_eq!(plain.meta(0), Some(&m("admin")), "a plain join keeps it");
    assert_eq!(
        pg.get_members_with_meta("room/1").unwrap(),
        vec![(user.pid().clone(), 3, Some(m("admin")))]
    );
    assert_eq!(
        pg.get_local_members_with_meta("room/1").unwrap(),
        pg.get_members_with_meta("room/1").unwrap()
    );

    // Typed metadata round-trips.
    let me = Presence {
        name: "ada".into(),
        role: "owner".into(),
    };
    pg.join_with_meta_typed("room/2", &me).unwrap();
    let typed = next(&mut sub).await;
    assert_eq!(
        pg_api::decode_meta::<Presence>(typed.meta(0).unwrap()).unwrap(),
        me
    );
    assert!(pg_api::decode_meta::<u8>(typed.meta(0).unwrap()).is_err());

    // Oversized metadata and bad names are refused and change nothing.
    let err = pg.join_with_meta("room/1", vec![0u8; 65]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err}");
    assert_eq!(pg.count("room/1").unwrap(), 3);
    let err = pg.join_with_meta("", "x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(sub.try_recv().is_none(), "a refused join has no event");

    // Leaving for good carries the metadata and a reason; exit says so.
    pg.leave(["room/1", "room/1", "room/1"]).unwrap();
    let left = next(&mut sub).await;
    assert_eq!(
        (left.kind, left.reason, left.meta(0)),
        (EventKind::Left, Some(LeaveReason::Left), Some(&m("admin")))
    );
    drop(pg);
    drop(user);
    let exited = next(&mut sub).await;
    assert_eq!(
        (exited.group.as_str(), exited.reason),
        ("room/2", Some(LeaveReason::Exit))
    );
}

/// Metadata replicates, and survives a partition during which both sides
/// change theirs: after the heal every node holds the same members with
/// the same metadata, and a subscriber's replay of events (checked meta
/// by meta) equals that state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_converges_across_a_partition() {
    let nodes = three_nodes();
    eventually("a full mesh", || nodes.iter().all(|n| n.peers().len() == 2)).await;
    let watcher = nodes[2].spawn("watch");
    let (mut sub, snapshot) = watcher
        .open("app:pg")
        .unwrap()
        .monitor_pattern(Pattern::All)
        .unwrap();
    let mut seen = state(&snapshot);
    let procs: Vec<_> = nodes.iter().map(|n| n.spawn("user")).collect();
    let pg: Vec<Instance> = procs.iter().map(|p| p.open("app:pg").unwrap()).collect();
    pg[0].join_with_meta("room", "a:v1").unwrap();
    pg[0].join("room").unwrap();
    pg[1].join_with_meta("room", "b:v1").unwrap();
    let everywhere = |want: &State| nodes.iter().all(|n| &node_state(n) == want);
    eventually("v1 everywhere", || {
        everywhere(&node_state(&nodes[0])) && node_state(&nodes[0])["room"].len() == 2
    })
    .await;
    assert_eq!(
        node_state(&nodes[2])["room"][procs[0].pid()],
        (2, Some(m("a:v1")))
    );

    // Cut a off from b and c; both sides change metadata meanwhile, and a
    // keeps its count (a re-join with new metadata, then a leave).
    let (a, b, c) = (name(&nodes[0]), name(&nodes[1]), name(&nodes[2]));
    for (x, y) in [
        (&nodes[0], &b),
        (&nodes[0], &c),
        (&nodes[1], &a),
        (&nodes[2], &a),
    ] {
        x.block(y);
    }
    eventually("the cut seen", || {
        nodes[0].peers().is_empty() && nodes[2].peers().len() == 1
    })
    .await;
    pg[0].join_with_meta("room", "a:v2").unwrap();
    pg[0].leave("room").unwrap();
    pg[1].join_with_meta("room", "b:v2").unwrap();
    for (x, y) in [
        (&nodes[0], &b),
        (&nodes[0], &c),
        (&nodes[1], &a),
        (&nodes[2], &a),
    ] {
        x.unblock(y);
    }
    eventually("the heal converged", || {
        let want = node_state(&nodes[1]);
        want.get("room").is_some_and(|r| r.len() == 2)
            && want["room"][procs[0].pid()] == (2, Some(m("a:v2")))
            && want["room"][procs[1].pid()] == (2, Some(m("b:v2")))
            && everywhere(&want)
    })
    .await;
    // The subscriber's replay, checked event by event, equals the state.
    eventually("c's subscriber caught up", || {
        drain(&mut seen, &mut sub);
        seen == node_state(&nodes[2])
    })
    .await;

    // A process exit and a node shutdown reach the others with reasons.
    let mut procs = procs;
    drop(procs.remove(1));
    let exit = loop {
        let event = next(&mut sub).await;
        apply(&mut seen, &event);
        if event.kind == EventKind::Left {
            break event;
        }
    };
    assert_eq!(exit.reason, Some(LeaveReason::Exit));
    assert_eq!(exit.meta(0), Some(&m("b:v2")));
    nodes[0].shutdown();
    let down = loop {
        let event = next(&mut sub).await;
        apply(&mut seen, &event);
        if event.kind == EventKind::Left {
            break event;
        }
    };
    assert_eq!(down.reason, Some(LeaveReason::NodeDown));
    assert_eq!(down.meta(0), Some(&m("a:v2")));
    assert!(seen.is_empty(), "{seen:?}");
}

fn name(node: &Node) -> NodeName {
    node.id().name.clone()
}

fn node_state(node: &Node) -> State {
    let reader = node.runtime().scope("app:pg").unwrap();
    let mut out = State::new();
    for group in reader.which_groups().iter() {
        let entries: BTreeMap<_, _> = reader
            .members(group.as_str())
            .iter_with_meta()
            .map(|(pid, count, meta)| (pid, (count, meta)))
            .collect();
        out.insert(group.to_string(), entries);
    }
    out
}
