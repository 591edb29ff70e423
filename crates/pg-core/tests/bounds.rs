//! What a peer may send: join counts and parts against the configured
//! bounds, and syncs too large for one frame, sent in pieces.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use std::time::Instant;

use common::*;
use pg_core::{
    CommandError, Event, Frame, GroupName, Limit, Op, Pid, Scope, ScopeConfig, SyncGroup,
};

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
            metas: Vec::new(),
        }],
        registrations: Vec::new(),
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
            registrations: Vec::new(),
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
            meta: None,
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
        registrations: Vec::new(),
    };
    let group = |name: &str, members: Vec<(u64, u32)>| SyncGroup {
        group: g(name),
        members,
        metas: Vec::new(),
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
                    meta: None,
                },
                Op::Join {
                    group: g("y"),
                    serial: 1,
                    count: 1,
                    meta: None,
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
                meta: None,
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
    let pieces: Vec<Frame> = sent(&mut a, now)
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
    let pieces = sent(&mut a, now);
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
            registrations: Vec::new(),
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
            meta: None,
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
    let pieces: Vec<Frame> = sent(&mut a, now)
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
            metas: Vec::new(),
        }],
        registrations: Vec::new(),
    };
    assert!(matches!(
        Frame::decode(&frame.encode()),
        Err(pg_core::DecodeError::Invalid(
            pg_core::FrameInvariant::EmptyGroup
        ))
    ));
}

/// One batch naming a member more often than `max_join_count` allows is
/// refused whole, whether it names the group or the pid repeatedly, and
/// whatever order the batch is in.
#[test]
fn a_batch_repeating_a_member_past_the_bound_is_refused_whole() {
    let config = ScopeConfig {
        max_join_count: 3,
        ..ScopeConfig::default()
    };
    let (mut b, _) = scope_with("b", config);
    let p = b.local_node().pid(1).unwrap();
    let q = b.local_node().pid(2).unwrap();
    for refused in [
        b.join(&p, &[g("x"), g("y"), g("x"), g("x"), g("x")]),
        b.join_pids(
            &g("x"),
            &[p.clone(), q.clone(), p.clone(), p.clone(), p.clone()],
        ),
    ] {
        assert!(
            matches!(
                refused,
                Err(CommandError::LimitExceeded(Limit::MaxJoinCount {
                    limit: 3,
                    ..
                }))
            ),
            "{refused:?}"
        );
    }
    assert_eq!(
        (
            b.join_count(&p, "x"),
            b.join_count(&p, "y"),
            b.join_count(&q, "x")
        ),
        (0, 0, 0)
    );
    assert!(events(&mut b).is_empty(), "nothing applied");
    b.join_pids(&g("x"), &[p.clone(), q.clone(), p.clone()])
        .unwrap();
    b.join(&p, &[g("y"), g("x"), g("y")]).unwrap();
    assert_eq!(
        (
            b.join_count(&p, "x"),
            b.join_count(&p, "y"),
            b.join_count(&q, "x")
        ),
        (3, 2, 1)
    );
}
