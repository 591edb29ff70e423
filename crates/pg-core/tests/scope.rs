//! Rules of the scope state machine, one at a time, through the public API.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::time::{Duration, Instant};

use pg_core::{
    CommandError, Event, EventKind, Frame, GroupName, Limit, NodeId, Op, Pid, Scope, ScopeConfig,
    SyncGroup, Transmit,
};

fn g(name: &str) -> GroupName {
    GroupName::new(name).unwrap()
}

fn node(name: &str, inc: u64) -> NodeId {
    NodeId::parse_name(name, inc).unwrap()
}

fn scope_with(name: &str, config: ScopeConfig) -> (Scope, Instant) {
    let now = Instant::now();
    let mut s = Scope::new(node(name, 1), config, now);
    s.handle_timeout(now); // start-up discovery, with no peer yet
    (s, now)
}

fn scope(name: &str) -> (Scope, Instant) {
    scope_with(name, ScopeConfig::default())
}

fn events(s: &mut Scope) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn transmits(s: &mut Scope) -> Vec<Transmit> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

fn event(kind: EventKind, group: &str, pids: &[&Pid]) -> Event {
    let mut members: Vec<(Pid, u32)> = Vec::new();
    for &pid in pids {
        match members.last_mut() {
            Some((p, c)) if p == pid => *c += 1,
            _ => members.push((pid.clone(), 1)),
        }
    }
    Event {
        kind,
        group: g(group),
        members,
    }
}

/// Delivers every frame between the scopes until none is left.
fn pump(scopes: &mut [&mut Scope], now: Instant) {
    loop {
        let mut moved = false;
        for i in 0..scopes.len() {
            for t in transmits(scopes[i]) {
                let from = scopes[i].local_node().clone();
                if let Some(to) = scopes.iter_mut().find(|s| *s.local_node() == t.to) {
                    let frame = Frame::decode(&t.frame.encode()).unwrap();
                    to.handle_frame(&from, frame, now);
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
}

fn connect(a: &mut Scope, b: &mut Scope, now: Instant) {
    a.handle_node_up(b.local_node().clone());
    b.handle_node_up(a.local_node().clone());
    pump(&mut [a, b], now);
}

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
    assert_eq!(events(&mut s), vec![event(EventKind::Left, "x", &[&pid])]);
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
            event(EventKind::Left, "x", &[&pid, &pid, &pid]),
            event(EventKind::Left, "y", &[&pid]),
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
        }],
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
            })
            .collect(),
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
            event(EventKind::Left, "x", &[&p(1)]),
            event(EventKind::Left, "x", &[&p(2)]),
            event(EventKind::Left, "y", &[&p(1)]),
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
        }],
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
            }],
        },
        Frame::Sync {
            seq: 1,
            known: None,
            groups: vec![SyncGroup {
                group: g("x"),
                members: vec![(1, 3), (1, 1)],
            }],
        },
        Frame::Delta {
            base: 0,
            seq: 1,
            ops: vec![Op::Join {
                group: g("x"),
                serial: (1 << 48) | 5,
                count: 1,
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

/// No bound on join counts (`max_join_count: 0`), as the 32-bit counter
/// allows.
fn unbounded(name: &str) -> (Scope, Instant) {
    scope_with(
        name,
        ScopeConfig {
            max_join_count: 0,
            ..ScopeConfig::default()
        },
    )
}

#[test]
fn huge_join_counts_make_small_events() {
    let (mut b, now) = unbounded("b");
    let a = node("a", 1);
    b.handle_node_up(a.clone());
    let sync = Frame::Sync {
        seq: 1,
        known: Some(0),
        groups: vec![SyncGroup {
            group: g("x"),
            members: vec![(1, u32::MAX)],
        }],
    };
    b.handle_frame(&a, sync, now);
    let evs = events(&mut b);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].members, vec![(a.pid(1).unwrap(), u32::MAX)]);
    assert_eq!(evs[0].references(), u64::from(u32::MAX));
    b.handle_node_down(&a);
    assert_eq!(events(&mut b)[0].references(), u64::from(u32::MAX));
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
        vec![event(EventKind::Left, "x", &[&pb, &pb])]
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
    assert_eq!(events(&mut a), vec![event(EventKind::Left, "x", &[&old])]);
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
fn a_remote_join_count_overflow_is_refused_not_a_panic() {
    let (mut b, now) = unbounded("b");
    let a = node("a", 1);
    b.handle_node_up(a.clone());
    b.handle_frame(
        &a,
        Frame::Sync {
            seq: 1,
            known: Some(0),
            groups: vec![],
        },
        now,
    );
    let join = |base| Frame::Delta {
        base,
        seq: base + 1,
        ops: vec![Op::Join {
            group: g("x"),
            serial: 1,
            count: u32::MAX,
        }],
    };
    b.handle_frame(&a, join(1), now);
    assert_eq!(b.join_count(&a.pid(1).unwrap(), "x"), u32::MAX);
    b.handle_frame(&a, join(2), now);
    // Past the 32-bit counter: a violation, refused whole.
    assert_eq!(b.stats().violations, 1);
    assert!(b.poll_violation().is_some());
    assert_eq!(b.join_count(&a.pid(1).unwrap(), "x"), u32::MAX);
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

#[test]
fn join_counts_over_the_bound_are_refused_locally_and_from_peers() {
    let config = ScopeConfig {
        max_join_count: 3,
        max_groups: 2,
        max_members_per_group: 4,
        ..ScopeConfig::default()
    };
    let (mut b, now) = scope_with("b", config);
    // Locally: a limit, and nothing changes.
    let pb = b.local_node().pid(1).unwrap();
    b.join(&pb, &[g("x"), g("x"), g("x")]).unwrap();
    assert!(matches!(
        b.join(&pb, &[g("x")]),
        Err(CommandError::LimitExceeded(Limit::MaxJoinCount {
            limit: 3,
            ..
        }))
    ));
    assert_eq!(b.join_count(&pb, "x"), 3);
    let _ = events(&mut b);

    // From a peer: the frame is refused whole, counted, and reported.
    let a = node("a", 1);
    b.handle_node_up(a.clone());
    let _ = transmits(&mut b);
    let sync = |seq, groups: Vec<SyncGroup>| Frame::Sync {
        seq,
        known: Some(0),
        groups,
    };
    let group = |name: &str, members: Vec<(u64, u32)>| SyncGroup {
        group: g(name),
        members,
    };
    b.handle_frame(&a, sync(1, vec![group("y", vec![(1, 2)])]), now);
    assert_eq!(
        b.join_count(&a.pid(1).unwrap(), "y"),
        2,
        "within bounds: applied"
    );
    assert_eq!(events(&mut b).len(), 1);
    let refused = [
        sync(2, vec![group("y", vec![(1, 4)])]),
        sync(
            2,
            vec![
                group("p", vec![(1, 1)]),
                group("q", vec![(1, 1)]),
                group("y", vec![(1, 1)]),
            ],
        ),
        sync(2, vec![group("y", vec![(1, 3), (2, 2)])]),
        Frame::Delta {
            base: 1,
            seq: 2,
            ops: vec![
                Op::Join {
                    group: g("y"),
                    serial: 1,
                    count: 1,
                },
                Op::Join {
                    group: g("y"),
                    serial: 1,
                    count: 1,
                },
            ],
        },
        Frame::Delta {
            base: 1,
            seq: 2,
            ops: vec![Op::Join {
                group: g("z"),
                serial: 7,
                count: u32::MAX,
            }],
        },
    ];
    for (i, frame) in refused.into_iter().enumerate() {
        b.handle_frame(&a, frame, now);
        assert_eq!(b.stats().violations, i as u64 + 1);
        let (peer, violation) = b.poll_violation().unwrap();
        assert_eq!(peer, a);
        assert!(!violation.to_string().is_empty());
        assert!(events(&mut b).is_empty(), "frame {i}: nothing applied");
        assert_eq!(b.join_count(&a.pid(1).unwrap(), "y"), 2, "frame {i}");
        assert_eq!(
            b.parts().find(|p| p.node == a).unwrap().seq,
            1,
            "frame {i}: version kept"
        );
    }
    assert!(b.poll_violation().is_none());
    assert!(b.members("z").is_empty());
}

/// A part of 200k memberships (one group of 150k, and 50k single members
/// in 10k groups) reaches a fresh peer as pieces, every one small; nothing
/// applies before the last piece, then the whole part at once, with exact
/// events. The pieces arrive in reverse order with duplicates.
#[test]
fn a_large_part_syncs_in_pieces_applied_at_once() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    let node = a.local_node().clone();
    let big: Vec<Pid> = (1..=150_000).map(|s| node.pid(s).unwrap()).collect();
    a.join_pids(&g("big"), &big).unwrap();
    for s in 150_001..=200_000u64 {
        let group = g(&format!("room{}", s % 10_000));
        a.join(&node.pid(s).unwrap(), &[group]).unwrap();
    }
    a.join(&node.pid(1).unwrap(), &[g("big")]).unwrap(); // a count of 2
    let _ = events(&mut a);
    a.handle_node_up(b.local_node().clone());
    b.handle_node_up(node.clone());
    let pieces: Vec<Frame> = transmits(&mut a)
        .into_iter()
        .filter(|t| t.to == *b.local_node())
        .map(|t| Frame::decode(&t.frame.encode()).unwrap())
        .collect();
    let sizes: Vec<usize> = pieces.iter().map(|f| f.encode().len()).collect();
    assert!(pieces.len() >= 7, "{} pieces", pieces.len());
    assert!(
        sizes.iter().all(|&n| n < 1 << 20),
        "every piece under 1 MiB: {sizes:?}"
    );
    let mut order: Vec<Frame> = pieces.iter().rev().cloned().collect();
    order.insert(2, pieces[3].clone()); // a duplicate
    let last = order.len() - 1;
    for (i, frame) in order.into_iter().enumerate() {
        b.handle_frame(&node, frame, now);
        if i < last {
            assert!(
                b.members("big").is_empty(),
                "piece {i}: nothing applied yet"
            );
            assert_eq!(b.pending_events(), 0);
        }
    }
    assert_eq!(b.members("big").len(), 150_001);
    assert_eq!(b.members("big").distinct_len(), 150_000);
    assert_eq!(b.which_groups().len(), 10_001);
    assert_eq!(b.part_memberships(&node), 200_001);
    let joined: u64 = events(&mut b).iter().map(Event::references).sum();
    assert_eq!(joined, 200_001, "each membership reported once");
}

/// A lost piece leaves the sync unfinished; the sync request that times
/// out brings the part again, and it completes.
#[test]
fn a_lost_piece_is_recovered_by_asking_again() {
    let config = ScopeConfig {
        sync_part_entries: 2,
        ..ScopeConfig::default()
    };
    let (mut a, now) = scope_with("a", config.clone());
    let (mut b, _) = scope_with("b", config);
    let node = a.local_node().clone();
    let pids: Vec<Pid> = (1..=7).map(|s| node.pid(s).unwrap()).collect();
    a.join_pids(&g("w"), &pids).unwrap();
    connect(&mut a, &mut b, now);
    // A change b misses, then a delta it sees: a gap, so b asks for a sync.
    a.join(&pids[0], &[g("w")]).unwrap();
    let _lost = transmits(&mut a);
    a.join(&pids[1], &[g("w")]).unwrap();
    for t in transmits(&mut a) {
        b.handle_frame(&node, t.frame.as_ref().clone(), now);
    }
    let asks = transmits(&mut b);
    assert_eq!(asks.len(), 1);
    a.handle_frame(b.local_node(), asks[0].frame.as_ref().clone(), now);
    let pieces = transmits(&mut a);
    assert!(pieces.len() >= 4);
    for t in pieces.iter().skip(1) {
        b.handle_frame(&node, t.frame.as_ref().clone(), now);
    }
    assert_eq!(b.join_count(&pids[0], "w"), 1, "the first piece was lost");
    // The request times out and goes again; this time every piece arrives.
    let later = now + ScopeConfig::default().protocol_timeout + std::time::Duration::from_secs(1);
    b.handle_timeout(later);
    let mut again = false;
    for t in transmits(&mut b) {
        if matches!(*t.frame, Frame::SyncRequest) {
            again = true;
            a.handle_frame(b.local_node(), Frame::SyncRequest, later);
        }
    }
    if !again {
        // Anti-entropy may ask instead: a digest shows b behind.
        b.handle_frame(
            &node,
            Frame::Digest {
                reply: false,
                parts: a.parts().collect(),
            },
            later,
        );
        for t in transmits(&mut b) {
            a.handle_frame(b.local_node(), t.frame.as_ref().clone(), later);
        }
    }
    pump(&mut [&mut a, &mut b], later);
    assert_eq!(b.join_count(&pids[0], "w"), 2);
    assert_eq!(b.join_count(&pids[1], "w"), 2);
    assert_eq!(b.members("w").len(), 9);
}

/// A duplicate of a delta already applied is stale, not a violation, even
/// when its count plus what is held would pass the bound.
#[test]
fn a_duplicate_delta_near_the_bound_is_stale_not_a_violation() {
    let config = ScopeConfig {
        max_join_count: 3,
        ..ScopeConfig::default()
    };
    let (mut b, now) = scope_with("b", config);
    let a = node("a", 1);
    b.handle_node_up(a.clone());
    let _ = transmits(&mut b);
    b.handle_frame(
        &a,
        Frame::Sync {
            seq: 1,
            known: Some(0),
            groups: vec![],
        },
        now,
    );
    let delta = Frame::Delta {
        base: 1,
        seq: 2,
        ops: vec![Op::Join {
            group: g("x"),
            serial: 1,
            count: 2,
        }],
    };
    b.handle_frame(&a, delta.clone(), now);
    b.handle_frame(&a, delta, now);
    assert_eq!(b.join_count(&a.pid(1).unwrap(), "x"), 2);
    assert_eq!(b.stats().violations, 0);
    assert_eq!(b.stats().deltas_stale, 1);
    assert!(b.poll_violation().is_none());
}

/// Long group names count against a piece's size: 40k single-member
/// groups with 900-byte names travel in pieces of about a megabyte each,
/// under any sane frame limit, and arrive whole.
#[test]
fn pieces_are_bounded_in_bytes_as_well_as_entries() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    let node = a.local_node().clone();
    let p = node.pid(1).unwrap();
    let names: Vec<GroupName> = (0..40_000).map(|i| g(&format!("{i:0>900}"))).collect();
    for chunk in names.chunks(1000) {
        a.join(&p, chunk).unwrap();
    }
    let _ = events(&mut a);
    a.handle_node_up(b.local_node().clone());
    b.handle_node_up(node.clone());
    let pieces: Vec<Frame> = transmits(&mut a)
        .into_iter()
        .filter(|t| t.to == *b.local_node())
        .map(|t| t.frame.as_ref().clone())
        .collect();
    assert!(pieces.len() >= 30, "{} pieces", pieces.len());
    for frame in &pieces {
        assert!(
            frame.encode().len() <= (1 << 20) + 4096,
            "{}",
            frame.encode().len()
        );
    }
    for frame in pieces {
        b.handle_frame(&node, frame, now);
    }
    assert_eq!(b.which_groups().len(), 40_000);
}

#[test]
fn a_sync_group_without_members_is_invalid() {
    let frame = Frame::Sync {
        seq: 1,
        known: None,
        groups: vec![SyncGroup {
            group: g("x"),
            members: vec![],
        }],
    };
    assert!(matches!(
        Frame::decode(&frame.encode()),
        Err(pg_core::DecodeError::Invalid(
            pg_core::FrameInvariant::EmptyGroup
        ))
    ));
}
