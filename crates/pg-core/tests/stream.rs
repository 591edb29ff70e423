//! A sync in pieces is built a few pieces per step (the next step due at
//! once): frames for that peer queued meanwhile follow its last piece,
//! frames for other peers do not wait, a peer that goes down gets nothing
//! more, and a newer sync replaces an unfinished one.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use pg_core::{Frame, Pid, Scope, ScopeConfig, Transmit};

/// Scopes `a` (200 members in `w`, so 25 pieces of 8), `b` and `c`, with
/// `a` and `c` connected.
fn setup() -> (Scope, Scope, Scope, Vec<Pid>, std::time::Instant) {
    let config = ScopeConfig {
        sync_part_entries: 8,
        ..ScopeConfig::default()
    };
    let (mut a, now) = scope_with("a", config.clone());
    let (b, _) = scope_with("b", config.clone());
    let (mut c, _) = scope_with("c", config);
    let node = a.local_node().clone();
    let pids: Vec<Pid> = (1..=201).map(|s| node.pid(s).unwrap()).collect();
    a.join_pids(&g("w"), &pids[..200]).unwrap();
    let _ = events(&mut a);
    connect(&mut a, &mut c, now);
    (a, b, c, pids, now)
}

fn to<'a>(frames: &'a [Transmit], scope: &Scope) -> Vec<&'a Frame> {
    frames
        .iter()
        .filter(|t| t.to == *scope.local_node())
        .map(|t| t.frame.as_ref())
        .collect()
}

fn piece_index(frame: &Frame) -> Option<u32> {
    match frame {
        Frame::SyncPart { index, total, .. } => {
            assert_eq!(*total, 25);
            Some(*index)
        }
        _ => None,
    }
}

#[test]
fn a_change_made_while_a_sync_streams_follows_its_last_piece() {
    let (mut a, mut b, c, pids, now) = setup();
    a.handle_node_up(b.local_node().clone());
    b.handle_node_up(a.local_node().clone());
    // The first step sends the first pieces only; the next is due now.
    let first = transmits(&mut a);
    let pieces = to(&first, &b).len();
    assert!(
        (1..25).contains(&pieces),
        "{pieces} pieces in the first step"
    );
    assert!(a.poll_timeout().is_some_and(|at| at <= now));

    // A change meanwhile: c hears of it at once, b only after the sync.
    a.join(&pids[200], &[g("w")]).unwrap();
    let mid = transmits(&mut a);
    assert!(matches!(to(&mid, &c)[..], [Frame::Delta { .. }]));
    assert!(to(&mid, &b).is_empty(), "held behind the stream");

    let rest = sent(&mut a, now);
    let all: Vec<&Frame> = to(&first, &b).into_iter().chain(to(&rest, &b)).collect();
    let indices: Vec<u32> = all.iter().filter_map(|f| piece_index(f)).collect();
    assert_eq!(
        indices,
        (0..25).collect::<Vec<_>>(),
        "every piece, in order"
    );
    assert!(
        matches!(all.last(), Some(Frame::Delta { .. })),
        "the change last"
    );
    assert!(
        a.poll_timeout().is_none_or(|at| at > now),
        "nothing more due"
    );

    let from = a.local_node().clone();
    for frame in all {
        b.handle_frame(&from, frame.clone(), now);
    }
    assert_eq!(b.members("w").len(), 201);
    let stats = b.stats();
    assert_eq!((stats.syncs_applied, stats.deltas_stale), (1, 0));
    assert_eq!(stats.sync_requests_sent, 0, "no gap seen");
}

#[test]
fn a_peer_that_goes_down_mid_stream_gets_nothing_more() {
    let (mut a, b, c, pids, now) = setup();
    a.handle_node_up(b.local_node().clone());
    let first = transmits(&mut a);
    assert!(!to(&first, &b).is_empty());
    a.join(&pids[200], &[g("w")]).unwrap();
    a.handle_node_down(b.local_node());
    let rest = sent(&mut a, now);
    assert!(to(&rest, &b).is_empty());
    assert!(matches!(to(&rest, &c)[..], [Frame::Delta { .. }]));
    assert!(a.poll_timeout().is_none_or(|at| at > now));
}

#[test]
fn a_newer_sync_replaces_an_unfinished_one() {
    let (mut a, mut b, _c, pids, now) = setup();
    a.handle_node_up(b.local_node().clone());
    b.handle_node_up(a.local_node().clone());
    let first = transmits(&mut a);
    a.join(&pids[200], &[g("w")]).unwrap();
    let _ = transmits(&mut a);
    // The link is replaced: the part goes again, from its new version.
    a.handle_link_reset(b.local_node(), now);
    let rest = sent(&mut a, now);
    let again: Vec<&Frame> = to(&rest, &b);
    let seqs: Vec<u64> = again
        .iter()
        .filter_map(|f| match f {
            Frame::SyncPart { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs.len(), 26, "a whole new sync of 201 members");
    assert!(seqs.iter().all(|&s| s == seqs[0]));
    // The change queued behind the old stream still comes after the new
    // one's last piece (stale there, and harmless).
    let tail = again.iter().rposition(|f| piece_index_any(f)).unwrap();
    assert!(
        again[tail + 1..]
            .iter()
            .any(|f| matches!(f, Frame::Delta { .. }))
    );

    let from = a.local_node().clone();
    for frame in to(&first, &b).into_iter().chain(again) {
        b.handle_frame(&from, frame.clone(), now);
    }
    assert_eq!(b.members("w").len(), 201);
    assert_eq!(b.part_memberships(&from), 201);
}

fn piece_index_any(frame: &Frame) -> bool {
    matches!(frame, Frame::SyncPart { .. })
}

#[test]
fn a_request_for_the_version_being_sent_does_not_start_it_over() {
    let (mut a, b, _c, _pids, now) = setup();
    a.handle_node_up(b.local_node().clone());
    let first = transmits(&mut a);
    let sent_first: Vec<u32> = to(&first, &b)
        .iter()
        .filter_map(|f| piece_index(f))
        .collect();
    // b asks (its request crossed the stream): the stream goes on.
    a.handle_frame(b.local_node(), Frame::SyncRequest, now);
    let rest = sent(&mut a, now);
    let sent_rest: Vec<u32> = to(&rest, &b)
        .iter()
        .filter_map(|f| piece_index(f))
        .collect();
    let all: Vec<u32> = sent_first.into_iter().chain(sent_rest).collect();
    assert_eq!(all, (0..25).collect::<Vec<_>>(), "each piece once");
}

#[test]
fn a_replaced_link_gets_the_stream_from_its_first_piece() {
    let (mut a, b, _c, _pids, now) = setup();
    a.handle_node_up(b.local_node().clone());
    let first = transmits(&mut a);
    assert!(!to(&first, &b).is_empty());
    a.handle_link_reset(b.local_node(), now);
    let rest = sent(&mut a, now);
    let again: Vec<u32> = to(&rest, &b)
        .iter()
        .filter_map(|f| piece_index(f))
        .collect();
    assert_eq!(again, (0..25).collect::<Vec<_>>(), "from the first piece");
}
