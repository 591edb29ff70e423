//! Member metadata in the state machine: set, replaced, kept, carried by
//! events, replicated by deltas and syncs, bounded.

#![allow(clippy::unwrap_used)]

use pg_core::{
    CommandError, EventKind, Frame, LeaveReason, Meta, Op, ScopeConfig, SyncGroup, Violation,
};

mod common;
use common::*;

fn m(text: &str) -> Meta {
    Meta::from(text)
}

#[test]
fn a_join_sets_a_rejoin_replaces_a_plain_join_keeps() {
    let (mut s, _) = scope("a");
    let pid = s.local_node().pid(1).unwrap();
    s.join_with_meta(&pid, &g("room"), m("role=guest")).unwrap();
    let evs = events(&mut s);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].kind, EventKind::Joined);
    assert_eq!(evs[0].meta(0), Some(&m("role=guest")));
    assert_eq!(
        evs[0].previous_meta(0),
        None,
        "a new member has no previous"
    );

    s.join_with_meta(&pid, &g("room"), m("role=admin")).unwrap();
    let evs = events(&mut s);
    assert_eq!(evs[0].members, vec![(pid.clone(), 1)]);
    assert_eq!(evs[0].meta(0), Some(&m("role=admin")));
    assert_eq!(evs[0].previous_meta(0), Some(&m("role=guest")));
    assert_eq!(s.join_count(&pid, "room"), 2);

    // A plain join counts once more and keeps the metadata.
    s.join(&pid, &[g("room")]).unwrap();
    let evs = events(&mut s);
    assert_eq!(evs[0].meta(0), Some(&m("role=admin")));
    assert_eq!(evs[0].previous_meta(0), Some(&m("role=admin")));
    assert_eq!(s.meta_of(&pid, "room"), Some(m("role=admin")));
    let members = s.members("room");
    assert_eq!(
        members.iter_with_meta().collect::<Vec<_>>(),
        vec![(pid.clone(), 3, Some(m("role=admin")))]
    );

    // A partial leave keeps it; the last leave carries it, with a reason.
    s.leave(&pid, &[g("room"), g("room")]).unwrap();
    let evs = events(&mut s);
    assert_eq!(evs[0].meta(0), Some(&m("role=admin")));
    assert_eq!(evs[0].reason, Some(LeaveReason::Left));
    assert_eq!(s.meta_of(&pid, "room"), Some(m("role=admin")));
    s.exit(&pid).unwrap();
    let evs = events(&mut s);
    assert_eq!(evs[0].members, vec![(pid.clone(), 1)]);
    assert_eq!(evs[0].meta(0), Some(&m("role=admin")));
    assert_eq!(evs[0].reason, Some(LeaveReason::Exit));
    // Joining again starts without metadata.
    s.join(&pid, &[g("room")]).unwrap();
    assert_eq!(s.meta_of(&pid, "room"), None);
    // Readers' snapshots keep the metadata of their instant.
    let before = s.members("room");
    s.join_with_meta(&pid, &g("room"), m("later")).unwrap();
    assert_eq!(before.meta_of(&pid), None);
    assert_eq!(s.members("room").meta_of(&pid), Some(m("later")));
}

#[test]
fn members_without_metadata_beside_members_with_it() {
    let (mut s, _) = scope("a");
    let pids: Vec<_> = (1..=300).map(|i| s.local_node().pid(i).unwrap()).collect();
    s.join_pids(&g("x"), &pids).unwrap();
    // The first metadata in a big group lays out the parallel list once.
    s.join_with_meta(&pids[150], &g("x"), m("one")).unwrap();
    // Leaves swap members around; metadata follows its member.
    s.leave_pids(&g("x"), &pids[..100]).unwrap();
    let with: Vec<_> = s
        .members("x")
        .iter_with_meta()
        .filter(|(_, _, meta)| meta.is_some())
        .collect();
    assert_eq!(with, vec![(pids[150].clone(), 2, Some(m("one")))]);
    assert_eq!(s.members("x").distinct_len(), 200);
}

#[test]
fn metadata_is_bounded() {
    let config = ScopeConfig {
        max_meta_size: 8,
        ..ScopeConfig::default()
    };
    let (mut s, _) = scope_with("a", config);
    let pid = s.local_node().pid(1).unwrap();
    assert_eq!(
        s.join_with_meta(&pid, &g("x"), m("nine bytes")),
        Err(CommandError::MetaTooLarge { len: 10, limit: 8 })
    );
    assert!(s.members("x").is_empty());
    assert!(events(&mut s).is_empty());
    s.join_with_meta(&pid, &g("x"), m("8 bytes!")).unwrap();
}

#[test]
fn a_peer_s_oversized_metadata_is_a_violation() {
    let (mut a, now) = scope_with(
        "a",
        ScopeConfig {
            max_meta_size: 4,
            ..ScopeConfig::default()
        },
    );
    let (mut b, _) = scope("b");
    connect(&mut a, &mut b, now);
    let delta = Frame::Delta {
        base: 0,
        seq: 1,
        ops: vec![Op::Join {
            group: g("x"),
            serial: 1,
            count: 1,
            meta: Some(m("too long")),
        }],
    };
    a.handle_frame(b.local_node(), delta, now);
    assert!(matches!(
        a.poll_violation(),
        Some((
            _,
            Violation::MetaSize {
                len: 8,
                limit: 4,
                ..
            }
        ))
    ));
    assert!(a.members("x").is_empty());
    let sync = Frame::Sync {
        seq: 1,
        known: None,
        groups: vec![SyncGroup {
            group: g("x"),
            members: vec![(1, 1)],
            metas: vec![Some(m("too long"))],
        }],
        registrations: Vec::new(),
    };
    a.handle_frame(b.local_node(), sync, now);
    assert!(matches!(
        a.poll_violation(),
        Some((_, Violation::MetaSize { .. }))
    ));
    assert!(a.members("x").is_empty());
}

#[test]
fn metadata_replicates_by_delta_and_by_sync() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    let pa = a.local_node().pid(1).unwrap();
    // Before the link: b learns it by a sync.
    a.join_with_meta(&pa, &g("x"), m("first")).unwrap();
    connect(&mut a, &mut b, now);
    assert_eq!(b.meta_of(&pa, "x"), Some(m("first")));
    let evs = events(&mut b);
    assert_eq!(evs[0].meta(0), Some(&m("first")));
    // After: by a delta, with the previous metadata.
    a.join_with_meta(&pa, &g("x"), m("second")).unwrap();
    pump(&mut [&mut a, &mut b], now);
    assert_eq!(b.meta_of(&pa, "x"), Some(m("second")));
    let evs = events(&mut b);
    assert_eq!(evs[0].previous_meta(0), Some(&m("first")));
    // A node going down takes the metadata with it, and says why.
    b.handle_node_down(a.local_node());
    let evs = events(&mut b);
    assert_eq!(evs[0].reason, Some(LeaveReason::NodeDown));
    assert_eq!(evs[0].members, vec![(pa.clone(), 2)]);
    assert_eq!(evs[0].meta(0), Some(&m("second")));
}

#[test]
fn a_sync_updates_metadata_it_missed_with_an_update_event() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    let pa = a.local_node().pid(1).unwrap();
    a.join_with_meta(&pa, &g("x"), m("old")).unwrap();
    a.join(&pa, &[g("x")]).unwrap();
    connect(&mut a, &mut b, now);
    let _ = events(&mut b);
    // b misses a re-join with new metadata and a leave (the partition):
    // the count is the same, the metadata is not.
    a.join_with_meta(&pa, &g("x"), m("new")).unwrap();
    a.leave(&pa, &[g("x")]).unwrap();
    let _ = transmits(&mut a);
    let seq = a.version().seq;
    let sync = Frame::Sync {
        seq,
        known: None,
        groups: vec![SyncGroup {
            group: g("x"),
            members: vec![(1, 2)],
            metas: vec![Some(m("new"))],
        }],
        registrations: Vec::new(),
    };
    b.handle_frame(a.local_node(), sync, now);
    let evs = events(&mut b);
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0].kind, EventKind::Updated);
    assert_eq!(evs[0].members, vec![(pa.clone(), 0)]);
    assert_eq!(evs[0].meta(0), Some(&m("new")));
    assert_eq!(evs[0].previous_meta(0), Some(&m("old")));
    assert_eq!(b.meta_of(&pa, "x"), Some(m("new")));
    // A later sync that drops the metadata clears it (count down too).
    let sync = Frame::Sync {
        seq: seq + 1,
        known: None,
        groups: vec![SyncGroup {
            group: g("x"),
            members: vec![(1, 1)],
            metas: vec![],
        }],
        registrations: Vec::new(),
    };
    b.handle_frame(a.local_node(), sync, now);
    let evs = events(&mut b);
    let kinds: Vec<_> = evs.iter().map(|e| (e.kind, e.reason)).collect();
    assert_eq!(
        kinds,
        vec![
            (EventKind::Left, Some(LeaveReason::Resync)),
            (EventKind::Updated, None)
        ]
    );
    assert_eq!(b.meta_of(&pa, "x"), None);
}
