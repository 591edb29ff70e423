//! The registry in the state machine: local decisions, replication,
//! conflicts resolved the same way everywhere with the loser told once,
//! events, a custom resolver.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use pg_core::{
    Candidate, Choice, CommandError, Frame, GroupName, Meta, Op, RegisterSpec, Registration,
    RegistryEvent, RegistryEventKind, Resolver, Scope, ScopeConfig, UnregisterReason, Violation,
};

mod common;
use common::*;

fn m(text: &str) -> Option<Meta> {
    Some(Meta::from(text))
}

fn reg_events(s: &mut Scope) -> Vec<RegistryEvent> {
    std::iter::from_fn(|| s.poll_registry_event()).collect()
}

#[test]
fn register_lookup_update_unregister_on_one_node() {
    let (mut s, _) = scope("a");
    let p = s.local_node().pid(1).unwrap();
    let q = s.local_node().pid(2).unwrap();
    s.register(&p, &g("session/42"), m("v1")).unwrap();
    assert_eq!(s.lookup("session/42"), Some((p.clone(), m("v1"))));
    assert_eq!(
        s.register(&q, &g("session/42"), None),
        Err(CommandError::Taken {
            key: g("session/42"),
            by: p.clone()
        })
    );
    // Re-registering one's own key updates the metadata in place.
    s.register(&p, &g("session/42"), m("v2")).unwrap();
    let evs = reg_events(&mut s);
    assert_eq!(evs.len(), 2);
    assert_eq!(
        (
            evs[1].kind,
            evs[1].meta.clone(),
            evs[1].previous_meta.clone()
        ),
        (RegistryEventKind::Registered, m("v2"), m("v1"))
    );
    s.register(&p, &g("session/7"), None).unwrap();
    assert_eq!(s.registered_count(), 2);
    assert_eq!(s.local_registrations().len(), 2);
    assert_eq!(s.registrations_prefix("session/4").len(), 1);
    assert_eq!(
        s.unregister(&q, &g("session/42")),
        Err(CommandError::NotRegistered {
            key: g("session/42")
        })
    );
    s.unregister(&p, &g("session/42")).unwrap();
    assert_eq!(s.lookup("session/42"), None);
    // An exit takes the rest.
    let _ = reg_events(&mut s);
    s.exit(&p).unwrap();
    let evs = reg_events(&mut s);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].reason, Some(UnregisterReason::Exit));
    assert_eq!(s.registered_count(), 0);
}

#[test]
fn registrations_replicate_and_go_with_their_node() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    let pa = a.local_node().pid(1).unwrap();
    a.register(&pa, &g("early"), m("x")).unwrap();
    connect(&mut a, &mut b, now);
    assert_eq!(b.lookup("early"), Some((pa.clone(), m("x"))));
    a.register(&pa, &g("late"), None).unwrap();
    pump(&mut [&mut a, &mut b], now);
    assert_eq!(b.lookup("late"), Some((pa.clone(), None)));
    // Taken is decided from what the node knows.
    let pb = b.local_node().pid(1).unwrap();
    assert!(matches!(
        b.register(&pb, &g("late"), None),
        Err(CommandError::Taken { .. })
    ));
    let _ = reg_events(&mut b);
    b.handle_node_down(a.local_node());
    let evs = reg_events(&mut b);
    assert_eq!(evs.len(), 2);
    assert!(
        evs.iter()
            .all(|e| e.reason == Some(UnregisterReason::NodeDown))
    );
    assert_eq!(b.registered_count(), 0);
}

/// Both sides of a partition register the same key: when they meet, both
/// pick the same winner, the loser's node removes it and reports it once,
/// and the events of each side say what its readers saw change.
#[test]
fn a_conflict_resolves_the_same_everywhere_and_the_loser_is_told_once() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    let pa = a.local_node().pid(1).unwrap();
    let pb = b.local_node().pid(1).unwrap();
    a.register(&pa, &g("leader"), m("a")).unwrap();
    b.register(&pb, &g("leader"), m("b")).unwrap();
    let _ = (reg_events(&mut a), reg_events(&mut b));
    connect(&mut a, &mut b, now);
    // Equal timestamps: the smaller node name wins.
    assert_eq!(a.lookup("leader"), Some((pa.clone(), m("a"))));
    assert_eq!(b.lookup("leader"), Some((pa.clone(), m("a"))));
    assert!(a.poll_conflict().is_none());
    let lost = b.poll_conflict().unwrap();
    assert_eq!(
        (lost.pid, lost.winner, lost.meta),
        (pb.clone(), pa.clone(), m("b"))
    );
    assert!(b.poll_conflict().is_none(), "told once");
    pump(&mut [&mut a, &mut b], now);
    assert!(a.poll_conflict().is_none() && b.poll_conflict().is_none());
    assert_eq!(b.local_registrations(), vec![]);
    // b's readers saw its own process lose the key to a's.
    let evs = reg_events(&mut b);
    let seen: Vec<_> = evs
        .iter()
        .map(|e| (e.kind, e.pid.clone(), e.reason))
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                RegistryEventKind::Unregistered,
                pb.clone(),
                Some(UnregisterReason::Conflict)
            ),
            (RegistryEventKind::Registered, pa.clone(), None),
        ]
    );
    // a's readers saw no change.
    assert!(reg_events(&mut a).is_empty());
    // b's part no longer holds it, on both nodes.
    assert_eq!(
        a.registrations(),
        vec![Registration {
            key: g("leader"),
            pid: pa.clone(),
            meta: m("a"),
            tag: None
        }]
    );
}

fn tagged(tag: &str) -> RegisterSpec {
    RegisterSpec {
        tag: Some(g(tag)),
        ..RegisterSpec::default()
    }
}

fn keys(regs: &[Registration]) -> Vec<&str> {
    regs.iter().map(|r| r.key.as_str()).collect()
}

/// Tags replicate with their registrations (deltas and syncs), a
/// re-registration replaces the tag in place with an event, and
/// `match_tag` lists exactly the keys tagged so.
#[test]
fn tags_replicate_and_match() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    let pa = a.local_node().pid(1).unwrap();
    let pb = b.local_node().pid(1).unwrap();
    // Before the peers meet: carried by the sync.
    a.register_spec(&pa, &g("worker/1"), tagged("gpu")).unwrap();
    connect(&mut a, &mut b, now);
    // After: carried by deltas.
    a.register_spec(&pa, &g("worker/2"), tagged("cpu")).unwrap();
    b.register_spec(&pb, &g("worker/3"), tagged("gpu")).unwrap();
    pump(&mut [&mut a, &mut b], now);
    for s in [&a, &b] {
        assert_eq!(keys(&s.match_tag("gpu")), ["worker/1", "worker/3"]);
        assert_eq!(keys(&s.match_tag("cpu")), ["worker/2"]);
        assert!(s.match_tag("tpu").is_empty());
    }
    let _ = reg_events(&mut b);
    // Retagging in place: one registered event, same holder, same stamp.
    a.register_spec(&pa, &g("worker/2"), tagged("gpu")).unwrap();
    pump(&mut [&mut a, &mut b], now);
    let evs = reg_events(&mut b);
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(
        (evs[0].kind, evs[0].tag.clone()),
        (RegistryEventKind::Registered, Some(g("gpu")))
    );
    for s in [&a, &b] {
        assert_eq!(
            keys(&s.match_tag("gpu")),
            ["worker/1", "worker/2", "worker/3"]
        );
        assert!(s.match_tag("cpu").is_empty());
    }
    // Untagging: a plain registration carries no tag.
    a.register(&pa, &g("worker/1"), None).unwrap();
    pump(&mut [&mut a, &mut b], now);
    assert_eq!(keys(&b.match_tag("gpu")), ["worker/2", "worker/3"]);
    assert_eq!(b.registration(&g("worker/1")).unwrap().tag, None);
}

/// A registration that asked to end its process on a loss says so in its
/// conflict; the option stays on the owning node (it is not replicated,
/// so it cannot change what peers see).
#[test]
fn exit_on_loss_is_reported_with_the_conflict() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    let pa = a.local_node().pid(1).unwrap();
    let pb = b.local_node().pid(1).unwrap();
    let pb2 = b.local_node().pid(2).unwrap();
    a.register(&pa, &g("leader"), None).unwrap();
    a.register(&pa, &g("other"), None).unwrap();
    let exit = RegisterSpec {
        exit_on_loss: true,
        ..RegisterSpec::default()
    };
    // Registered plainly, then again with only the option changed: no
    // event, nothing replicated, but the option holds.
    b.register(&pb, &g("leader"), None).unwrap();
    let _ = reg_events(&mut b);
    b.register_spec(&pb, &g("leader"), exit.clone()).unwrap();
    assert!(reg_events(&mut b).is_empty(), "an option change is local");
    b.register(&pb2, &g("other"), None).unwrap();
    // And the other way: set, then cleared.
    b.register_spec(&pb2, &g("other"), exit.clone()).unwrap();
    b.register(&pb2, &g("other"), None).unwrap();
    connect(&mut a, &mut b, now);
    pump(&mut [&mut a, &mut b], now);
    let mut lost: Vec<(GroupName, bool)> = std::iter::from_fn(|| b.poll_conflict())
        .map(|c| (c.key, c.exit))
        .collect();
    lost.sort();
    assert_eq!(lost, vec![(g("leader"), true), (g("other"), false)]);
}

/// A registration made after its node heard of another is later: the
/// earlier one wins even against a smaller node name.
#[test]
fn the_earlier_registration_wins() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    let (mut c, _) = scope("c");
    let pb = b.local_node().pid(1).unwrap();
    let pa = a.local_node().pid(1).unwrap();
    // a's clock moves past b's first stamp by hearing from b.
    b.register(&pb, &g("other"), None).unwrap();
    connect(&mut a, &mut b, now);
    // c registers "k" early (stamp 1); a registers it later (stamp 2).
    let pc = c.local_node().pid(1).unwrap();
    c.register(&pc, &g("k"), None).unwrap();
    a.register(&pa, &g("k"), None).unwrap();
    connect(&mut a, &mut c, now);
    connect(&mut b, &mut c, now);
    pump(&mut [&mut a, &mut b, &mut c], now);
    for s in [&a, &b, &c] {
        assert_eq!(s.lookup("k").unwrap().0, pc, "{:?}", s.local_node());
    }
    assert_eq!(a.poll_conflict().unwrap().pid, pa);
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

#[test]
fn a_custom_resolver_decides() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    for s in [&mut a, &mut b] {
        s.set_resolver(Arc::new(LongestMetaWins)).unwrap();
    }
    let pa = a.local_node().pid(1).unwrap();
    let pb = b.local_node().pid(1).unwrap();
    a.register(&pa, &g("k"), m("short")).unwrap();
    b.register(&pb, &g("k"), m("much longer")).unwrap();
    connect(&mut a, &mut b, now);
    pump(&mut [&mut a, &mut b], now);
    assert_eq!(a.lookup("k").unwrap().0, pb);
    assert_eq!(b.lookup("k").unwrap().0, pb);
    assert_eq!(a.poll_conflict().unwrap().winner, pb);
    assert!(b.poll_conflict().is_none());
}

/// A scope instance that replaces an earlier one on the same node run
/// continues its versions, so peers never see them go back.
#[test]
fn a_resumed_scope_continues_its_versions() {
    let (mut a, _) = scope("a");
    let p = a.local_node().pid(1).unwrap();
    a.register(&p, &g("k"), None).unwrap();
    let last = a.version().seq;
    let (mut again, _) = scope("a");
    again.resume_after(last);
    assert_eq!(again.version().seq, last + 1);
    again.resume_after(0);
    assert_eq!(again.version().seq, last + 1, "never back");
}

/// A resolver that prefers its first argument on a tie still gives one
/// winner everywhere: candidates are offered in a fixed order, whatever
/// order they arrived in on each node.
#[test]
fn a_tie_under_a_custom_resolver_is_broken_the_same_everywhere() {
    let (mut a, now) = scope("a");
    let (mut b, _) = scope("b");
    for s in [&mut a, &mut b] {
        s.set_resolver(Arc::new(LongestMetaWins)).unwrap();
    }
    let pa = a.local_node().pid(1).unwrap();
    let pb = b.local_node().pid(1).unwrap();
    a.register(&pa, &g("k"), m("xx")).unwrap();
    b.register(&pb, &g("k"), m("yy")).unwrap();
    connect(&mut a, &mut b, now);
    pump(&mut [&mut a, &mut b], now);
    assert_eq!(a.lookup("k"), b.lookup("k"));
    assert_eq!(
        a.local_registrations().len() + b.local_registrations().len(),
        1
    );
    // Too late once keys are held.
    assert_eq!(
        a.set_resolver(Arc::new(LongestMetaWins)),
        Err(CommandError::RegistryInUse)
    );
}

/// A peer's stamp past the bound is a violation (it would push this
/// node's clock to overflow); an unregister and a register in one delta
/// net out against the limit.
#[test]
fn peer_stamps_and_counts_are_bounded() {
    let config = ScopeConfig {
        max_registrations: 1,
        ..ScopeConfig::default()
    };
    let (mut a, now) = scope_with("a", config);
    let (mut b, _) = scope("b");
    let pb = b.local_node().pid(1).unwrap();
    b.register(&pb, &g("k1"), None).unwrap();
    connect(&mut a, &mut b, now);
    let base = b.version().seq;
    let swap = Frame::Delta {
        base,
        seq: base + 1,
        ops: vec![
            Op::Unregister {
                key: g("k1"),
                serial: 1,
            },
            Op::Register {
                key: g("k2"),
                serial: 1,
                stamp: 9,
                meta: None,
                tag: None,
            },
        ],
    };
    a.handle_frame(b.local_node(), swap, now);
    assert!(a.poll_violation().is_none());
    assert_eq!(a.lookup("k2").map(|h| h.0), Some(pb.clone()));
    let hostile = Frame::Delta {
        base: base + 1,
        seq: base + 2,
        ops: vec![Op::Register {
            key: g("k2"),
            serial: 1,
            stamp: u64::MAX,
            meta: None,
            tag: None,
        }],
    };
    a.handle_frame(b.local_node(), hostile, now);
    assert!(matches!(
        a.poll_violation(),
        Some((_, Violation::Stamp { .. }))
    ));
    let over = Frame::Delta {
        base: base + 1,
        seq: base + 2,
        ops: vec![Op::Register {
            key: g("k3"),
            serial: 2,
            stamp: 10,
            meta: None,
            tag: None,
        }],
    };
    a.handle_frame(b.local_node(), over, now);
    assert!(matches!(
        a.poll_violation(),
        Some((_, Violation::Registrations { .. }))
    ));
}

/// Without a bound on the count (the default), a peer's registrations
/// are still checked one by one: a stamp past the bound and metadata over
/// `max_meta_size` are violations, and nothing of the frame is applied.
#[test]
fn unbounded_registrations_still_check_each_entry() {
    let config = ScopeConfig {
        max_meta_size: 4,
        ..ScopeConfig::default()
    };
    assert_eq!(config.max_registrations, 0, "the default is unbounded");
    let (mut a, now) = scope_with("a", config);
    let (mut b, _) = scope("b");
    connect(&mut a, &mut b, now);
    let base = b.version().seq;
    let register = |key: &str, stamp: u64, meta: Option<Meta>| Op::Register {
        key: g(key),
        serial: 1,
        stamp,
        meta,
        tag: None,
    };
    let stamp = Frame::Delta {
        base,
        seq: base + 1,
        ops: vec![register("fine", 9, None), register("k", u64::MAX, None)],
    };
    a.handle_frame(b.local_node(), stamp, now);
    assert!(matches!(
        a.poll_violation(),
        Some((_, Violation::Stamp { .. }))
    ));
    let fat = Frame::Delta {
        base,
        seq: base + 1,
        ops: vec![register("fine", 9, None), register("k", 10, m("12345"))],
    };
    a.handle_frame(b.local_node(), fat, now);
    assert!(matches!(
        a.poll_violation(),
        Some((_, Violation::MetaSize { .. }))
    ));
    assert_eq!(a.lookup("fine"), None, "a refused frame is not applied");
    let ok = Frame::Delta {
        base,
        seq: base + 1,
        ops: vec![register("fine", 9, m("1234"))],
    };
    a.handle_frame(b.local_node(), ok, now);
    assert!(a.poll_violation().is_none());
    assert!(a.lookup("fine").is_some());
}

/// A process's keys as they come and go (one, several, back to fewer), and
/// an exit takes exactly what is left.
#[test]
fn a_process_keys_come_and_go() {
    let (mut s, _) = scope("a");
    let p = s.local_node().pid(1).unwrap();
    for _ in 0..3 {
        s.register(&p, &g("only"), None).unwrap();
        s.unregister(&p, &g("only")).unwrap();
    }
    assert_eq!(s.registered_count(), 0);
    for key in ["k1", "k2", "k3"] {
        s.register(&p, &g(key), None).unwrap();
    }
    s.unregister(&p, &g("k2")).unwrap();
    assert_eq!(
        s.unregister(&p, &g("k2")),
        Err(CommandError::NotRegistered { key: g("k2") })
    );
    let _ = reg_events(&mut s);
    s.exit(&p).unwrap();
    let gone: Vec<(String, Option<UnregisterReason>)> = reg_events(&mut s)
        .into_iter()
        .map(|e| (e.key.as_str().to_owned(), e.reason))
        .collect();
    let exit = Some(UnregisterReason::Exit);
    assert_eq!(gone, [("k1".to_owned(), exit), ("k3".to_owned(), exit)]);
    assert_eq!(s.registered_count(), 0);
    // One key, a key it does not hold, then an exit.
    let q = s.local_node().pid(2).unwrap();
    s.register(&q, &g("solo"), None).unwrap();
    assert!(s.unregister(&q, &g("other")).is_err());
    assert_eq!(s.lookup("solo").map(|h| h.0), Some(q.clone()));
    s.exit(&q).unwrap();
    assert_eq!(s.registered_count(), 0);
}
