//! Rules of the scope state machine, one at a time, through the public API.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::time::{Duration, Instant};

use pg_core::{
    CommandError, Event, EventKind, Frame, LeaveReason, Limit, Op, Pid, Scope, ScopeConfig,
    SyncGroup, Transmit,
};

mod common;

use common::*;

// ----- local commands ----------------------------------------------------

#[test]
fn multi_join_counts_and_needs_as_many_leaves() {
    let (mut s, _) = scope("a");
    let pid = s.local_node().pid(1).unwrap();
    s.join(&pid, &[g("w")]).unwrap();
    s.join(&pid, &[g("w"), g("w")]).unwrap();
    assert_eq!(s.join_count(&pid, "w"), 3);
    // Listed once per join, as Erlang's pg does.
    assert_eq!(s.members("w").len(), 3);
    assert_eq!(s.members("w").distinct_len(), 1);
    assert_eq!(s.members("w").to_vec(), vec![pid.clone(); 3]);
    assert_eq!(
        s.members("w").iter_counted().collect::<Vec<_>>(),
        vec![(pid.clone(), 3)]
    );
    s.leave(&pid, &[g("w")]).unwrap();
    assert_eq!(s.members("w").to_vec(), vec![pid.clone(); 2]);
    s.leave(&pid, &[g("w")]).unwrap();
    assert_eq!(s.members("w").to_vec(), vec![pid.clone()]);
    s.leave(&pid, &[g("w")]).unwrap();
    assert!(s.members("w").is_empty());
    assert!(s.which_groups().is_empty(), "an empty group disappears");
    assert_eq!(s.leave(&pid, &[g("w")]), Err(CommandError::NotMember));
    let evs = events(&mut s);
    let joined: u64 = evs
        .iter()
        .filter(|e| e.kind == EventKind::Joined)
        .map(Event::references)
        .sum();
    let left: u64 = evs
        .iter()
        .filter(|e| e.kind == EventKind::Left)
        .map(Event::references)
        .sum();
    assert_eq!((joined, left), (3, 3));
}

#[test]
fn batch_leave_errors_only_when_in_none() {
    let (mut s, _) = scope("a");
    let pid = s.local_node().pid(1).unwrap();
    s.join(&pid, &[g("x")]).unwrap();
    let _ = events(&mut s);
    s.leave(&pid, &[g("nope"), g("x"), g("other")]).unwrap();
    assert_eq!(events(&mut s), vec![left("x", &[&pid], LeaveReason::Left)]);
    assert_eq!(
        s.leave(&pid, &[g("x"), g("nope")]),
        Err(CommandError::NotMember)
    );
    assert!(events(&mut s).is_empty());
    assert_eq!(s.leave(&pid, &[]), Err(CommandError::EmptyBatch));
}

#[test]
fn batch_by_pids() {
    let (mut s, _) = scope("a");
    let pids: Vec<Pid> = (1..=3).map(|i| s.local_node().pid(i).unwrap()).collect();
    s.join_pids(&g("x"), &pids).unwrap();
    assert_eq!(s.members("x").len(), 3);
    s.leave_pids(&g("x"), &pids[..2]).unwrap();
    assert_eq!(s.members("x").to_vec(), vec![pids[2].clone()]);
    assert_eq!(
        s.leave_pids(&g("x"), &pids[..2]),
        Err(CommandError::NotMember)
    );
    assert_eq!(s.join_pids(&g("x"), &[]), Err(CommandError::EmptyBatch));
    assert_eq!(s.leave_pids(&g("x"), &[]), Err(CommandError::EmptyBatch));
}

#[test]
fn exit_leaves_everything_with_multiplicity() {
    let (mut s, _) = scope("a");
    let pid = s.local_node().pid(1).unwrap();
    let other = s.local_node().pid(2).unwrap();
    s.join(&pid, &[g("x"), g("x"), g("x"), g("y")]).unwrap();
    s.join(&other, &[g("y")]).unwrap();
    let _ = events(&mut s);
    assert_eq!(s.exit(&pid), Ok(4));
    let mut evs = events(&mut s);
    evs.sort_by(|a, b| a.group.cmp(&b.group));
    assert_eq!(
        evs,
        vec![
            left("x", &[&pid, &pid, &pid], LeaveReason::Exit),
            left("y", &[&pid], LeaveReason::Exit),
        ]
    );
    assert_eq!(s.which_groups(), vec![g("y")]);
    assert!(s.groups_of(&pid).is_empty());
    assert_eq!(s.exit(&pid), Ok(0), "exit of a process in no group");
}

#[test]
fn foreign_pids_are_refused() {
    let (mut s, _) = scope("a");
    let foreign = node("b", 1).pid(1).unwrap();
    let old_run = node("a", 0).pid(1).unwrap();
    for pid in [&foreign, &old_run] {
        assert!(matches!(
            s.join(pid, &[g("x")]),
            Err(CommandError::NotLocal { .. })
        ));
        assert!(matches!(
            s.leave(pid, &[g("x")]),
            Err(CommandError::NotLocal { .. })
        ));
        assert!(matches!(s.exit(pid), Err(CommandError::NotLocal { .. })));
    }
    let pid = s.local_node().pid(1).unwrap();
    assert_eq!(s.join(&pid, &[]), Err(CommandError::EmptyBatch));
    assert!(matches!(
        s.join_pids(&g("x"), &[pid, foreign]),
        Err(CommandError::NotLocal { .. })
    ));
    assert!(s.which_groups().is_empty());
    assert!(events(&mut s).is_empty());
}

#[test]
fn limits_reject_and_leave_state_untouched() {
    let config = ScopeConfig {
        max_groups: 2,
        max_members_per_group: 3,
        ..ScopeConfig::default()
    };
    let (mut s, _) = scope_with("a", config);
    let p1 = s.local_node().pid(1).unwrap();
    let p2 = s.local_node().pid(2).unwrap();
    s.join(&p1, &[g("x"), g("x")]).unwrap();
    s.join(&p2, &[g("y")]).unwrap();
    let before = s.snapshot();
    let _ = events(&mut s);

    let err = s.join(&p1, &[g("x"), g("z")]).unwrap_err();
    assert_eq!(
        err,
        CommandError::LimitExceeded(Limit::MaxGroups { limit: 2 })
    );
    // Multi-joins count: x holds 2, a batch adding 2 more would make 4.
    let err = s.join(&p2, &[g("y"), g("x"), g("x")]).unwrap_err();
    assert_eq!(
        err,
        CommandError::LimitExceeded(Limit::MaxMembersPerGroup {
            group: g("x"),
            limit: 3
        })
    );
    assert!(s.join_pids(&g("x"), &[p1.clone(), p2.clone()]).is_err());
    assert_eq!(format!("{:?}", s.snapshot()), format!("{before:?}"));
    assert!(events(&mut s).is_empty(), "a refused join emits nothing");
    // Up to the limit is fine.
    s.join(&p2, &[g("x")]).unwrap();
    assert_eq!(s.join_count(&p2, "x"), 1);
}

#[test]
fn queries() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    connect(&mut a, &mut b, now);
    let pa = a.local_node().pid(1).unwrap();
    let pb = b.local_node().pid(1).unwrap();
    a.join(&pa, &[g("shared"), g("a-only")]).unwrap();
    b.join(&pb, &[g("shared"), g("shared")]).unwrap();
    pump(&mut [&mut a, &mut b], now);

    let mut groups = a.which_groups();
    groups.sort();
    assert_eq!(groups, vec![g("a-only"), g("shared")]);
    assert_eq!(b.which_local_groups(), vec![g("shared")]);
    assert_eq!((b.group_count(), b.local_group_count()), (2, 1));
    let mut shared = a.members("shared").to_vec();
    shared.sort();
    assert_eq!(shared, vec![pa.clone(), pb.clone(), pb.clone()]);
    assert_eq!(
        b.local_members("shared").to_vec(),
        vec![pb.clone(), pb.clone()]
    );
    assert_eq!(a.members("shared").count_of(&pb), 2);
    assert_eq!(a.local_members("shared").to_vec(), vec![pa.clone()]);
    assert_eq!(b.local_members("a-only").to_vec(), Vec::<Pid>::new());
    assert!(a.members("unknown").is_empty());
    assert_eq!(a.groups_of(&pb), vec![(g("shared"), 2)]);
    assert_eq!(a.join_count(&pb, "shared"), 2);
    assert!(a.members("shared").contains(&pb));
    let snapshot = b.snapshot();
    assert_eq!(snapshot.len(), 2);
}

#[test]
fn snapshots_are_unaffected_by_later_changes() {
    let (mut s, _) = scope("a");
    let pids: Vec<Pid> = (1..=100).map(|i| s.local_node().pid(i).unwrap()).collect();
    s.join_pids(&g("x"), &pids).unwrap();
    let before = s.members("x");
    let local_before = s.local_members("x");
    for pid in &pids[..50] {
        s.exit(pid).unwrap();
    }
    assert_eq!(before.len(), 100);
    assert_eq!(before.to_vec(), pids, "a snapshot is frozen");
    assert_eq!(local_before.len(), 100);
    assert_eq!(s.members("x").len(), 50);
}

// ----- remote input ------------------------------------------------------

#[test]
fn deltas_apply_in_order_and_duplicates_are_ignored() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    connect(&mut a, &mut b, now);
    let _ = events(&mut b);
    let pa = a.local_node().pid(1).unwrap();
    a.join(&pa, &[g("x")]).unwrap();
    a.join(&pa, &[g("y")]).unwrap();
    let ts = transmits(&mut a);
    assert_eq!(ts.len(), 1, "two commands, one delta");
    let Frame::Delta { base, seq, ops } = &*ts[0].frame else {
        panic!("expected a delta, got {:?}", ts[0].frame);
    };
    assert_eq!((*base, *seq, ops.len()), (0, 2, 2));
    let from = a.local_node().clone();
    b.handle_frame(&from, (*ts[0].frame).clone(), now);
    b.handle_frame(&from, (*ts[0].frame).clone(), now);
    assert_eq!(b.stats().deltas_applied, 1);
    assert_eq!(b.stats().deltas_stale, 1);
    assert_eq!(b.join_count(&pa, "x"), 1);
    assert_eq!(events(&mut b).len(), 2);
    assert!(transmits(&mut b).is_empty(), "nothing to ask for");
}

#[test]
fn a_gap_asks_for_a_sync_which_repairs() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    connect(&mut a, &mut b, now);
    let pa = a.local_node().pid(1).unwrap();
    a.join(&pa, &[g("x")]).unwrap();
    let _lost = transmits(&mut a);
    a.join(&pa, &[g("y")]).unwrap();
    let ts = transmits(&mut a);
    let from = a.local_node().clone();
    b.handle_frame(&from, (*ts[0].frame).clone(), now);
    assert_eq!(b.stats().deltas_out_of_order, 1);
    assert!(
        b.members("y").is_empty(),
        "an out-of-order delta is not applied"
    );
    let asks = transmits(&mut b);
    assert!(matches!(&*asks[0].frame, Frame::SyncRequest));
    // A second gap within protocol_timeout does not ask again.
    b.handle_frame(&from, (*ts[0].frame).clone(), now);
    assert!(transmits(&mut b).is_empty());
    a.handle_frame(b.local_node(), Frame::SyncRequest, now);
    pump(&mut [&mut a, &mut b], now);
    assert_eq!(b.groups_of(&pa).len(), 2);
    // After the timeout, a new gap may ask again.
    b.handle_frame(
        &from,
        Frame::Delta {
            base: 10,
            seq: 11,
            ops: vec![],
        },
        now + Duration::from_secs(6),
    );
    assert!(matches!(&*transmits(&mut b)[0].frame, Frame::SyncRequest));
}

#[test]
fn unknown_part_asks_for_sync() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    // b knows a is up, but never got its part.
    b.handle_node_up(a.local_node().clone());
    let _ = transmits(&mut b);
    let delta = Frame::Delta {
        base: 0,
        seq: 1,
        ops: vec![Op::Join {
            group: g("x"),
            serial: 1,
            count: 1,
            meta: None,
        }],
    };
    b.handle_frame(a.local_node(), delta, now);
    assert!(b.members("x").is_empty());
    assert!(matches!(&*transmits(&mut b)[0].frame, Frame::SyncRequest));
    let _ = &mut a;
}

#[test]
fn frames_from_nodes_that_are_not_up_are_ignored() {
    let (mut b, now) = scope("b");
    let stranger = node("a", 1);
    let sync = Frame::Sync {
        seq: 1,
        known: None,
        groups: vec![SyncGroup {
            group: g("x"),
            members: vec![(1, 1)],
            metas: Vec::new(),
        }],
        registrations: Vec::new(),
    };
    b.handle_frame(&stranger, sync.clone(), now);
    b.handle_node_up(node("a", 2));
    b.handle_frame(&stranger, sync, now); // an older run of an up node
    assert_eq!(b.stats().frames_ignored, 2);
    assert!(b.which_groups().is_empty());
}

#[test]
fn sync_is_differential() {
    let (mut b, now) = scope("b");
    let a = node("a", 1);
    b.handle_node_up(a.clone());
    let _ = transmits(&mut b);
    let p = |i| a.pid(i).unwrap();
    let sync = |seq, groups: Vec<(&str, Vec<(u64, u32)>)>| Frame::Sync {
        seq,
        known: Some(0),
        groups: groups
            .into_iter()
            .map(|(name, members)| SyncGroup {
                group: g(name),
                members,
                metas: Vec::new(),
            })
            .collect(),
        registrations: Vec::new(),
    };
    b.handle_frame(
        &a,
        sync(3, vec![("x", vec![(1, 2), (2, 1)]), ("y", vec![(1, 1)])]),
        now,
    );
    let mut evs = events(&mut b);
    evs.sort_by(|l, r| l.group.cmp(&r.group));
    assert_eq!(
        evs,
        vec![
            event(EventKind::Joined, "x", &[&p(1), &p(1), &p(2)]),
            event(EventKind::Joined, "y", &[&p(1)]),
        ]
    );
    // Same content at a newer version: no events at all.
    b.handle_frame(
        &a,
        sync(4, vec![("y", vec![(1, 1)]), ("x", vec![(2, 1), (1, 2)])]),
        now,
    );
    assert!(events(&mut b).is_empty());
    // One count down, one member gone, one new group.
    b.handle_frame(
        &a,
        sync(5, vec![("x", vec![(1, 1)]), ("z", vec![(3, 1)])]),
        now,
    );
    let mut evs = events(&mut b);
    evs.sort_by_key(|l| (l.group.clone(), l.members.clone()));
    assert_eq!(
        evs,
        vec![
            left("x", &[&p(1)], LeaveReason::Resync),
            left("x", &[&p(2)], LeaveReason::Resync),
            left("y", &[&p(1)], LeaveReason::Resync),
            event(EventKind::Joined, "z", &[&p(3)]),
        ]
    );
    assert_eq!(b.join_count(&p(1), "x"), 1);
    // An older sync is stale and ignored.
    b.handle_frame(&a, sync(2, vec![]), now);
    assert_eq!(b.stats().syncs_stale, 1);
    assert_eq!(b.members("z").len(), 1);
}

#[test]
fn sync_is_answered_only_when_the_sender_lacks_our_part() {
    let now = Instant::now();
    let mut b = Scope::new(node("b", 1), ScopeConfig::default(), now);
    let a = node("a", 1);
    b.handle_node_up(a.clone()); // before discovery: nothing pushed yet
    let pb = b.local_node().pid(1).unwrap();
    b.join(&pb, &[g("x")]).unwrap();
    let ts = transmits(&mut b);
    assert!(
        matches!(&*ts[0].frame, Frame::Delta { .. }),
        "only the delta"
    );
    let is_sync = |ts: &[Transmit]| ts.len() == 1 && matches!(&*ts[0].frame, Frame::Sync { .. });
    // a lacks b's part and b never sent it: b answers.
    b.handle_frame(
        &a,
        Frame::Sync {
            seq: 1,
            known: None,
            groups: vec![],
            registrations: Vec::new(),
        },
        now,
    );
    assert!(is_sync(&transmits(&mut b)));
    // a is up to date, or merely behind (deltas in flight): no answer.
    b.handle_frame(
        &a,
        Frame::Sync {
            seq: 2,
            known: Some(1),
            groups: vec![],
            registrations: Vec::new(),
        },
        now,
    );
    assert!(transmits(&mut b).is_empty());
    b.join(&pb, &[g("y")]).unwrap();
    let _ = transmits(&mut b);
    b.handle_frame(
        &a,
        Frame::Sync {
            seq: 3,
            known: Some(1),
            groups: vec![],
            registrations: Vec::new(),
        },
        now,
    );
    assert!(
        transmits(&mut b).is_empty(),
        "a stale known is not answered"
    );
    // a lost b's part (a down b never saw): b answers again.
    b.handle_frame(
        &a,
        Frame::Sync {
            seq: 4,
            known: None,
            groups: vec![],
            registrations: Vec::new(),
        },
        now,
    );
    assert!(is_sync(&transmits(&mut b)));
}

#[test]
fn crossing_pushes_at_node_up_are_not_answered() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    let pa = a.local_node().pid(1).unwrap();
    let pb = b.local_node().pid(1).unwrap();
    a.join(&pa, &[g("x")]).unwrap();
    b.join(&pb, &[g("x")]).unwrap();
    a.handle_node_up(b.local_node().clone());
    b.handle_node_up(a.local_node().clone());
    let from_a = transmits(&mut a);
    let from_b = transmits(&mut b);
    assert_eq!((from_a.len(), from_b.len()), (1, 1));
    b.handle_frame(a.local_node(), (*from_a[0].frame).clone(), now);
    a.handle_frame(b.local_node(), (*from_b[0].frame).clone(), now);
    assert!(transmits(&mut a).is_empty() && transmits(&mut b).is_empty());
    assert_eq!(a.members("x").len(), 2);
    assert_eq!(b.members("x").len(), 2);
}

#[test]
fn inconsistent_delta_asks_for_sync() {
    let (mut b, now) = scope("b");
    let a = node("a", 1);
    b.handle_node_up(a.clone());
    b.handle_frame(
        &a,
        Frame::Sync {
            seq: 1,
            known: Some(0),
            groups: vec![],
            registrations: Vec::new(),
        },
        now,
    );
    let _ = transmits(&mut b);
    let leave = Frame::Delta {
        base: 1,
        seq: 2,
        ops: vec![Op::Leave {
            group: g("x"),
            serial: 1,
            count: 1,
        }],
    };
    b.handle_frame(&a, leave, now);
    assert_eq!(b.stats().deltas_inconsistent, 1);
    assert!(
        events(&mut b).is_empty(),
        "nothing changed, nothing reported"
    );
    assert!(matches!(&*transmits(&mut b)[0].frame, Frame::SyncRequest));
    // Until repaired, further deltas are not applied on a broken part.
    let join = Frame::Delta {
        base: 2,
        seq: 3,
        ops: vec![Op::Join {
            group: g("y"),
            serial: 2,
            count: 1,
            meta: None,
        }],
    };
    b.handle_frame(&a, join.clone(), now);
    assert!(b.members("y").is_empty());
    // The answer to the request carries the same version as the broken
    // part: it is applied all the same, and repairs it.
    let repair = Frame::Sync {
        seq: 2,
        known: Some(0),
        groups: vec![SyncGroup {
            group: g("z"),
            members: vec![(3, 1)],
            metas: Vec::new(),
        }],
        registrations: Vec::new(),
    };
    b.handle_frame(&a, repair.clone(), now);
    assert_eq!(b.members("z").to_vec(), vec![a.pid(3).unwrap()]);
    // Repaired: the same version again is stale, and deltas apply again.
    b.handle_frame(&a, repair, now);
    assert_eq!(b.stats().syncs_stale, 1);
    b.handle_frame(&a, join, now);
    assert_eq!(b.members("y").len(), 1);
}

#[test]
fn invalid_frames_from_memory_are_dropped_not_applied() {
    let (mut b, now) = scope("b");
    let a = node("a", 1);
    b.handle_node_up(a.clone());
    let bad = [
        Frame::Sync {
            seq: 1,
            known: None,
            groups: vec![SyncGroup {
                group: g("x"),
                members: vec![(u64::MAX, 1)],
                metas: Vec::new(),
            }],
            registrations: Vec::new(),
        },
        Frame::Sync {
            seq: 1,
            known: None,
            groups: vec![SyncGroup {
                group: g("x"),
                members: vec![(1, 3), (1, 1)],
                metas: Vec::new(),
            }],
            registrations: Vec::new(),
        },
        Frame::Delta {
            base: 0,
            seq: 1,
            ops: vec![Op::Join {
                group: g("x"),
                serial: (1 << 48) | 5,
                count: 1,
                meta: None,
            }],
        },
        Frame::Delta {
            base: 1,
            seq: 1,
            ops: vec![],
        },
    ];
    for frame in bad {
        b.handle_frame(&a, frame, now);
    }
    assert_eq!(b.stats().frames_invalid, 4);
    assert!(b.which_groups().is_empty());
}

#[test]
fn enormous_durations_do_not_overflow() {
    let now = Instant::now();
    let config = ScopeConfig {
        anti_entropy_interval: Duration::MAX,
        protocol_timeout: Duration::MAX,
        ..ScopeConfig::default()
    };
    let mut s = Scope::new(node("a", 1), config, now);
    s.handle_timeout(now);
    assert_eq!(s.poll_timeout(), None);
    s.handle_node_up(node("b", 1));
    for _ in 0..2 {
        s.handle_frame(
            &node("b", 1),
            Frame::Delta {
                base: 4,
                seq: 5,
                ops: vec![],
            },
            now,
        );
    }
    assert_eq!(s.stats().sync_requests_sent, 1);
}

#[test]
fn a_digest_repeating_a_stale_entry_for_us_sends_nothing() {
    let (mut b, now) = scope("b");
    let a = node("a", 1);
    b.handle_node_up(a.clone());
    let pb = b.local_node().pid(1).unwrap();
    b.join(&pb, &[g("x")]).unwrap();
    let _ = transmits(&mut b);
    let stale = pg_core::PartVersion {
        node: b.local_node().clone(),
        seq: 0,
    };
    let digest = Frame::Digest {
        reply: true,
        parts: vec![stale; 1000],
    };
    b.handle_frame(&a, digest, now);
    assert!(
        transmits(&mut b).is_empty(),
        "the holder pulls; the origin never pushes on a digest"
    );
}

// ----- issue 19: a converged cluster exchanges only digests ---------------
//
// Each test replays, between two scopes, the smallest exchange behind one
// of the seeds that sent an extra sync after convergence.

/// Seeds 201624, 204779, 206594: a's delta to b and b's anti-entropy
/// digest cross. The digest shows a's part one version behind only because
/// the delta is still on its way; a must not push its whole part for it.
#[test]
fn a_digest_crossing_our_delta_does_not_push() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    connect(&mut a, &mut b, now);
    let pa = a.local_node().pid(1).unwrap();
    a.join(&pa, &[g("x")]).unwrap();
    let delta = transmits(&mut a);
    assert!(matches!(&*delta[0].frame, Frame::Delta { .. }));
    // b's timer fires before the delta lands: its digest holds a at 0.
    b.handle_timeout(now + ScopeConfig::default().anti_entropy_interval * 2);
    let digest = transmits(&mut b);
    assert!(matches!(
        &*digest[0].frame,
        Frame::Digest { reply: false, .. }
    ));
    b.handle_frame(a.local_node(), (*delta[0].frame).clone(), now);
    assert!(transmits(&mut b).is_empty());
    // The digest reaches a, which only answers with its own digest...
    a.handle_frame(b.local_node(), (*digest[0].frame).clone(), now);
    let reply = transmits(&mut a);
    assert_eq!(reply.len(), 1, "{reply:?}");
    assert!(matches!(
        &*reply[0].frame,
        Frame::Digest { reply: true, .. }
    ));
    // ...which b, already up to date, does not act on.
    b.handle_frame(a.local_node(), (*reply[0].frame).clone(), now);
    assert!(transmits(&mut b).is_empty());
    assert_eq!(b.members("x").to_vec(), vec![pa]);
}

/// Seed 200535: b saw a gap and asked a for its part; a's own digest left
/// before the request arrived, and b's reply to it, built before a's sync
/// landed, shows a's part stale. The sync is crossing the reply: no push.
#[test]
fn a_digest_reply_crossing_our_sync_does_not_push() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    connect(&mut a, &mut b, now);
    let pa = a.local_node().pid(1).unwrap();
    a.join(&pa, &[g("x")]).unwrap();
    let _lost = transmits(&mut a);
    a.join(&pa, &[g("y")]).unwrap();
    let second = transmits(&mut a);
    b.handle_frame(a.local_node(), (*second[0].frame).clone(), now);
    let request = transmits(&mut b);
    assert!(matches!(&*request[0].frame, Frame::SyncRequest));
    // a's anti-entropy digest leaves before the request arrives.
    a.handle_timeout(now + ScopeConfig::default().anti_entropy_interval);
    let digest = transmits(&mut a);
    assert!(matches!(
        &*digest[0].frame,
        Frame::Digest { reply: false, .. }
    ));
    a.handle_frame(b.local_node(), (*request[0].frame).clone(), now);
    let sync = transmits(&mut a);
    assert!(matches!(&*sync[0].frame, Frame::Sync { seq: 2, .. }));
    // b answers the digest while the sync is still in flight (its request
    // is outstanding, so it does not ask again).
    b.handle_frame(a.local_node(), (*digest[0].frame).clone(), now);
    let reply = transmits(&mut b);
    assert_eq!(reply.len(), 1, "{reply:?}");
    b.handle_frame(a.local_node(), (*sync[0].frame).clone(), now);
    assert!(transmits(&mut b).is_empty());
    assert_eq!(b.groups_of(&pa).len(), 2);
    // The stale reply reaches a: nothing to send.
    a.handle_frame(b.local_node(), (*reply[0].frame).clone(), now);
    assert!(transmits(&mut a).is_empty());
}

/// Seed 203950: over a reordering network, b receives a's sync at
/// version 2 and then, late, a's older sync at version 1, both saying
/// a lacks b's part. The late one is out of date: b must not answer it.
#[test]
fn an_overtaken_sync_is_not_answered() {
    let (mut b, now) = scope("b");
    let a = node("a", 1);
    let pb = b.local_node().pid(1).unwrap();
    b.join(&pb, &[g("x")]).unwrap();
    b.handle_node_up(a.clone()); // b pushes its part
    assert_eq!(transmits(&mut b).len(), 1);
    let sync = |seq| Frame::Sync {
        seq,
        known: None,
        groups: vec![],
        registrations: Vec::new(),
    };
    // Crossing b's push: not answered.
    b.handle_frame(&a, sync(2), now);
    assert!(transmits(&mut b).is_empty());
    b.handle_frame(&a, sync(1), now);
    assert!(transmits(&mut b).is_empty(), "answered an overtaken sync");
    assert_eq!(b.stats().syncs_stale, 1);
    // Overtaken by a delta works the same way.
    b.handle_frame(
        &a,
        Frame::Delta {
            base: 2,
            seq: 3,
            ops: vec![],
        },
        now,
    );
    b.handle_frame(&a, sync(2), now);
    assert!(transmits(&mut b).is_empty(), "answered an overtaken sync");
}

#[test]
fn node_down_drops_its_members_with_multiplicity() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    connect(&mut a, &mut b, now);
    let pb = b.local_node().pid(1).unwrap();
    b.join(&pb, &[g("x"), g("x")]).unwrap();
    pump(&mut [&mut a, &mut b], now);
    let _ = events(&mut a);
    // A down for another run of b changes nothing.
    a.handle_node_down(&node("b", 0));
    assert_eq!(a.members("x").to_vec(), vec![pb.clone(), pb.clone()]);
    a.handle_node_down(b.local_node());
    assert_eq!(
        events(&mut a),
        vec![left("x", &[&pb, &pb], LeaveReason::NodeDown)]
    );
    assert!(a.which_groups().is_empty());
    assert_eq!(a.peers().count(), 0);
    // Heal: node up again, b's sync restores the members.
    connect(&mut a, &mut b, now);
    assert_eq!(a.join_count(&pb, "x"), 2);
}

#[test]
fn new_incarnation_replaces_the_old_one() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    connect(&mut a, &mut b, now);
    let old = b.local_node().pid(1).unwrap();
    b.join(&old, &[g("x")]).unwrap();
    pump(&mut [&mut a, &mut b], now);
    let _ = events(&mut a);
    // b restarts: its new run comes up before the old one was seen down.
    let b2_id = node("b", 2);
    a.handle_node_up(b2_id.clone());
    assert_eq!(
        events(&mut a),
        vec![left("x", &[&old], LeaveReason::NodeDown)]
    );
    // A late up for the old run is ignored.
    a.handle_node_up(node("b", 1));
    assert_eq!(a.peers().cloned().collect::<Vec<_>>(), vec![b2_id]);
}

#[test]
fn digest_repairs_stale_parts_both_ways() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    let (mut c, _) = scope("c");
    connect(&mut a, &mut b, now);
    connect(&mut a, &mut c, now);
    connect(&mut b, &mut c, now);
    let pc = c.local_node().pid(1).unwrap();
    c.join(&pc, &[g("x")]).unwrap();
    // c's delta reaches b only.
    for t in transmits(&mut c) {
        if t.to == *b.local_node() {
            b.handle_frame(c.local_node(), (*t.frame).clone(), now);
        }
    }
    assert!(a.members("x").is_empty());
    // b's digest tells a that c's part moved on: a asks c directly.
    let digest = Frame::Digest {
        reply: false,
        parts: b.parts().collect(),
    };
    a.handle_frame(b.local_node(), digest, now);
    let ts = transmits(&mut a);
    assert!(
        ts.iter()
            .any(|t| t.to == *c.local_node() && matches!(&*t.frame, Frame::SyncRequest))
    );
    assert!(
        ts.iter()
            .any(|t| t.to == *b.local_node()
                && matches!(&*t.frame, Frame::Digest { reply: true, .. }))
    );
    for t in ts {
        if t.to == *c.local_node() {
            c.handle_frame(a.local_node(), (*t.frame).clone(), now);
        }
    }
    pump(&mut [&mut a, &mut b, &mut c], now);
    assert_eq!(a.members("x").to_vec(), vec![pc.clone()]);

    // A digest showing a stale copy of the receiver's own part: the
    // receiver answers with its digest only, and the stale holder pulls.
    let pa = a.local_node().pid(1).unwrap();
    a.join(&pa, &[g("y")]).unwrap();
    let _lost = transmits(&mut a);
    let digest = Frame::Digest {
        reply: false,
        parts: b.parts().collect(),
    };
    a.handle_frame(b.local_node(), digest, now);
    let ts = transmits(&mut a);
    assert_eq!(ts.len(), 1, "{ts:?}");
    assert!(matches!(&*ts[0].frame, Frame::Digest { reply: true, .. }));
    b.handle_frame(a.local_node(), (*ts[0].frame).clone(), now);
    let ts = transmits(&mut b);
    assert_eq!(ts.len(), 1, "{ts:?}");
    assert!(matches!(&*ts[0].frame, Frame::SyncRequest));
    a.handle_frame(b.local_node(), (*ts[0].frame).clone(), now);
    pump(&mut [&mut a, &mut b], now);
    assert_eq!(b.members("y").to_vec(), vec![pa]);
}

#[test]
fn startup_discovery_contacts_a_capped_random_subset() {
    let now = Instant::now();
    let config = ScopeConfig {
        discovery_fanout: 3,
        ..ScopeConfig::default()
    };
    let mut s = Scope::new(node("a", 1), config, now);
    for i in 0..10 {
        s.handle_node_up(node(&format!("p{i}"), 1));
    }
    assert!(
        transmits(&mut s).is_empty(),
        "nothing is pushed before discovery"
    );
    s.handle_timeout(now);
    let ts = transmits(&mut s);
    assert_eq!(ts.len(), 3);
    assert!(ts.iter().all(|t| matches!(&*t.frame, Frame::Discover)));
    let mut to: Vec<_> = ts.iter().map(|t| t.to.clone()).collect();
    to.dedup();
    assert_eq!(to.len(), 3, "distinct peers");
    // A peer that comes up later is sent our part directly.
    s.handle_node_up(node("late", 1));
    let ts = transmits(&mut s);
    assert!(matches!(&*ts[0].frame, Frame::Sync { .. }));
    // A different seed picks a different subset (over a few tries).
    let pick = |seed| {
        let config = ScopeConfig {
            discovery_fanout: 3,
            rng_seed: seed,
            ..ScopeConfig::default()
        };
        let mut s = Scope::new(node("a", 1), config, now);
        for i in 0..10 {
            s.handle_node_up(node(&format!("p{i}"), 1));
        }
        s.handle_timeout(now);
        transmits(&mut s)
            .into_iter()
            .map(|t| t.to)
            .collect::<Vec<_>>()
    };
    assert_eq!(pick(5), pick(5));
    assert!((6..12).any(|seed| pick(seed) != pick(5)));
}

#[test]
fn discover_is_answered_with_part_and_digest() {
    let (mut b, now) = scope("b");
    let a = node("a", 1);
    b.handle_node_up(a.clone());
    let _ = transmits(&mut b);
    b.handle_frame(&a, Frame::Discover, now);
    let ts = transmits(&mut b);
    assert!(matches!(&*ts[0].frame, Frame::Sync { .. }));
    assert!(matches!(&*ts[1].frame, Frame::Digest { reply: true, .. }));
}

#[test]
fn anti_entropy_sends_one_digest_per_interval() {
    let now = Instant::now();
    let interval = Duration::from_secs(30);
    let mut s = Scope::new(node("a", 1), ScopeConfig::default(), now);
    s.handle_timeout(now);
    for i in 0..5 {
        s.handle_node_up(node(&format!("p{i}"), 1));
    }
    let _ = transmits(&mut s);
    assert_eq!(s.poll_timeout(), Some(now + interval));
    s.handle_timeout(now + interval - Duration::from_millis(1));
    assert!(transmits(&mut s).is_empty());
    s.handle_timeout(now + interval);
    let ts = transmits(&mut s);
    assert_eq!(ts.len(), 1);
    assert!(matches!(&*ts[0].frame, Frame::Digest { reply: false, .. }));
    assert_eq!(s.poll_timeout(), Some(now + interval * 2));

    let config = ScopeConfig {
        anti_entropy_interval: Duration::ZERO,
        ..ScopeConfig::default()
    };
    let mut off = Scope::new(node("a", 1), config, now);
    off.handle_timeout(now);
    assert_eq!(off.poll_timeout(), None, "0 disables anti-entropy");
}

#[test]
fn changes_without_peers_send_nothing_and_new_peers_get_a_sync() {
    let (mut a, now) = scope("a");
    let pa = a.local_node().pid(1).unwrap();
    a.join(&pa, &[g("x")]).unwrap();
    assert!(transmits(&mut a).is_empty());
    let (mut b, _) = scope("b");
    connect(&mut a, &mut b, now);
    assert_eq!(b.members("x").to_vec(), vec![pa]);
}

#[test]
fn a_part_missing_from_a_digest_is_pulled_by_its_holder() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    a.handle_node_up(b.local_node().clone());
    b.handle_node_up(a.local_node().clone());
    let pb = b.local_node().pid(1).unwrap();
    b.join(&pb, &[g("x")]).unwrap();
    // Everything so far is lost: neither holds the other's part.
    let _ = transmits(&mut a);
    let _ = transmits(&mut b);
    a.handle_timeout(now + ScopeConfig::default().anti_entropy_interval);
    let digest = transmits(&mut a);
    b.handle_frame(a.local_node(), (*digest[0].frame).clone(), now);
    let ts = transmits(&mut b);
    // b asks for a's part, and answers with its digest only.
    assert_eq!(ts.len(), 2, "{ts:?}");
    assert!(matches!(&*ts[0].frame, Frame::SyncRequest));
    assert!(matches!(&*ts[1].frame, Frame::Digest { reply: true, .. }));
    a.handle_frame(b.local_node(), (*ts[0].frame).clone(), now);
    a.handle_frame(b.local_node(), (*ts[1].frame).clone(), now);
    // a answers the request, and pulls b's part, named in the digest.
    let ts = transmits(&mut a);
    assert_eq!(ts.len(), 2, "{ts:?}");
    assert!(matches!(&*ts[0].frame, Frame::Sync { .. }));
    assert!(matches!(&*ts[1].frame, Frame::SyncRequest));
    for t in ts {
        b.handle_frame(a.local_node(), (*t.frame).clone(), now);
    }
    pump(&mut [&mut a, &mut b], now);
    assert_eq!(a.members("x").to_vec(), vec![pb]);
    assert!(b.parts().any(|p| p.node == *a.local_node()));
}

#[test]
fn a_link_reset_resends_parts_both_ways_without_churn() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    connect(&mut a, &mut b, now);
    let pa = a.local_node().pid(1).unwrap();
    a.join(&pa, &[g("x")]).unwrap();
    // The delta is lost with the old connection.
    let _lost = transmits(&mut a);
    let _ = events(&mut a);
    a.handle_link_reset(b.local_node(), now);
    b.handle_link_reset(a.local_node(), now);
    pump(&mut [&mut a, &mut b], now);
    assert_eq!(b.members("x").to_vec(), vec![pa]);
    let evs = events(&mut b);
    assert!(
        evs.iter().all(|e| e.kind == EventKind::Joined),
        "no leave-and-rejoin churn: {evs:?}"
    );
    // A reset for a peer that is not up does nothing.
    a.handle_link_reset(&node("zz", 1), now);
    assert!(transmits(&mut a).is_empty());
}

/// A first sync (the bulk path) indexes each process's groups, whatever
/// the width of its serial and however sparse the serials (3 and 7:
/// sorted in 8-byte pairs; 2^40 + 3: in 16-byte pairs): reads by pid, a
/// later differential sync and a process leaving all see them.
#[test]
fn first_sync_indexes_processes_by_serial_of_any_width() {
    for big in [3u64, 7, (1 << 40) + 3] {
        let (mut b, now) = scope("b");
        let a = node("a", 1);
        b.handle_node_up(a.clone());
        let _ = transmits(&mut b);
        let group = |name: &str, members: Vec<(u64, u32)>| SyncGroup {
            group: g(name),
            members,
            metas: Vec::new(),
        };
        let sync = |seq, groups| Frame::Sync {
            seq,
            known: None,
            groups,
            registrations: Vec::new(),
        };
        b.handle_frame(
            &a,
            sync(
                1,
                vec![
                    group("x", vec![(2, 1), (big, 2)]),
                    group("y", vec![(big, 1)]),
                ],
            ),
            now,
        );
        let _ = events(&mut b);
        let p = a.pid(big).unwrap();
        assert_eq!(b.groups_of(&p), vec![(g("x"), 2), (g("y"), 1)]);
        assert_eq!(b.join_count(&p, "x"), 2);
        // The differential path finds `big` through the index: it leaves
        // y and stays in x.
        b.handle_frame(&a, sync(2, vec![group("x", vec![(2, 1), (big, 2)])]), now);
        assert_eq!(b.groups_of(&p), vec![(g("x"), 2)]);
        assert!(b.members("y").is_empty());
        assert_eq!(b.members("x").len(), 3);
    }
}
