//! A first sync is applied without its process index, which is built in
//! the next step: whatever reaches the part first (a read by pid, a leave,
//! an exit, a differential sync, the node going down, or that step), the
//! outcome is the same as with the index built at once.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Instant;

use common::*;
use pg_core::{Frame, NodeId, Op, Scope, SyncGroup};

/// `b` holding a first sync of `a`'s part: x {1, 2, 3}, y {2 (twice), 3},
/// z {3}.
fn first_sync() -> (Scope, NodeId, Instant) {
    let (mut b, now) = scope("b");
    let a = node("a", 1);
    b.handle_node_up(a.clone());
    let _ = transmits(&mut b);
    let group = |name: &str, members: Vec<(u64, u32)>| SyncGroup {
        group: g(name),
        members,
        metas: Vec::new(),
    };
    let sync = Frame::Sync {
        seq: 1,
        known: None,
        groups: vec![
            group("x", vec![(1, 1), (2, 1), (3, 1)]),
            group("y", vec![(2, 2), (3, 1)]),
            group("z", vec![(3, 1)]),
        ],
        registrations: Vec::new(),
    };
    b.handle_frame(&a, sync, now);
    let _ = events(&mut b);
    (b, a, now)
}

fn delta(seq: u64, op: Op) -> Frame {
    Frame::Delta {
        base: seq - 1,
        seq,
        ops: vec![op],
    }
}

/// What `b` lists of process `serial` of `a`.
fn groups(b: &Scope, a: &NodeId, serial: u64) -> Vec<(String, u32)> {
    b.groups_of(&a.pid(serial).unwrap())
        .into_iter()
        .map(|(g, n)| (g.to_string(), n))
        .collect()
}

fn pairs(list: &[(&str, u32)]) -> Vec<(String, u32)> {
    list.iter().map(|&(g, n)| (g.to_owned(), n)).collect()
}

#[test]
fn reads_by_pid_before_and_after_the_index_is_built() {
    let (mut b, a, now) = first_sync();
    let want = |b: &Scope| {
        assert_eq!(groups(b, &a, 2), pairs(&[("x", 1), ("y", 2)]));
        assert_eq!(groups(b, &a, 3), pairs(&[("x", 1), ("y", 1), ("z", 1)]));
        assert!(groups(b, &a, 4).is_empty());
    };
    want(&b);
    assert!(b.poll_timeout().is_some_and(|at| at <= now), "due at once");
    b.handle_timeout(now);
    want(&b);
}

#[test]
fn an_exit_or_a_leave_before_the_index_is_built() {
    let (mut b, a, now) = first_sync();
    b.handle_frame(&a, delta(2, Op::Exit { serial: 3 }), now);
    assert!(groups(&b, &a, 3).is_empty());
    assert!(b.members("z").is_empty());
    assert_eq!(b.members("x").len(), 2);
    let leave = Op::Leave {
        group: g("y"),
        serial: 2,
        count: 2,
    };
    b.handle_frame(&a, delta(3, leave), now);
    assert_eq!(groups(&b, &a, 2), pairs(&[("x", 1)]));
    assert!(b.members("y").is_empty());
    assert_eq!(b.part_memberships(&a), 2);
    // A later exit finds what is left through the index.
    b.handle_frame(&a, delta(4, Op::Exit { serial: 2 }), now);
    assert_eq!(b.members("x").len(), 1);
    assert_eq!(b.stats().sync_requests_sent, 0);
}

#[test]
fn a_differential_sync_before_the_index_is_built() {
    let (mut b, a, now) = first_sync();
    let sync = Frame::Sync {
        seq: 5,
        known: None,
        groups: vec![SyncGroup {
            group: g("x"),
            members: vec![(1, 1), (3, 4)],
            metas: Vec::new(),
        }],
        registrations: Vec::new(),
    };
    b.handle_frame(&a, sync, now);
    assert_eq!(groups(&b, &a, 3), pairs(&[("x", 4)]));
    assert!(groups(&b, &a, 2).is_empty());
    assert_eq!(b.which_groups(), vec![g("x")]);
    assert_eq!(b.part_memberships(&a), 5);
}

#[test]
fn a_node_down_before_the_index_is_built() {
    let (mut b, a, now) = first_sync();
    b.handle_node_down(&a);
    while b.poll_timeout().is_some_and(|at| at <= now) {
        b.handle_timeout(now);
    }
    assert!(b.which_groups().is_empty());
    assert_eq!(b.part_memberships(&a), 0);
    // The same run back: its part starts empty and is indexed anew.
    b.handle_node_up(a.clone());
    let _ = transmits(&mut b);
    b.handle_frame(
        &a,
        Frame::Sync {
            seq: 9,
            known: None,
            groups: vec![SyncGroup {
                group: g("x"),
                members: vec![(7, 1)],
                metas: Vec::new(),
            }],
            registrations: Vec::new(),
        },
        now,
    );
    b.handle_timeout(now);
    b.handle_frame(&a, delta(10, Op::Exit { serial: 7 }), now);
    assert!(b.which_groups().is_empty());
}
