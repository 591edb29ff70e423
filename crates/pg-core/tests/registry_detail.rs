//! A scope reporting registry changes as keys only (what a driver with no
//! registry subscriber asks for) names exactly the keys a fully reporting
//! twin's events name, through local changes, replication, conflicts,
//! exits and node downs, whenever it switches between the two.

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use pg_core::{EventDetail, Frame, GroupName, Meta, Scope};
use proptest::prelude::*;

mod common;
use common::*;

const KEYS: usize = 4;

#[derive(Debug, Clone)]
enum Step {
    /// On the twins' node: process `.0` registers key `.1` with meta `.2`.
    Register(u64, usize, u8),
    Unregister(u64, usize),
    Exit(u64),
    /// The same on the peer node, replicated to the twins.
    PeerRegister(u64, usize, u8),
    PeerUnregister(u64, usize),
    PeerExit(u64),
    /// The link goes down (changes on either side stay there) ...
    Partition,
    /// ... and comes back: the two sync, conflicts are resolved.
    Heal,
}

fn step() -> impl Strategy<Value = Step> {
    let serial = 1..4u64;
    let key = 0..KEYS;
    prop_oneof![
        (serial.clone(), key.clone(), any::<u8>()).prop_map(|(s, k, m)| Step::Register(s, k, m)),
        (serial.clone(), key.clone()).prop_map(|(s, k)| Step::Unregister(s, k)),
        serial.clone().prop_map(Step::Exit),
        (serial.clone(), key.clone(), any::<u8>())
            .prop_map(|(s, k, m)| Step::PeerRegister(s, k, m)),
        (serial.clone(), key).prop_map(|(s, k)| Step::PeerUnregister(s, k)),
        serial.prop_map(Step::PeerExit),
        Just(Step::Partition),
        Just(Step::Heal),
    ]
}

/// Moves frames between the peer and the twins until none is left: the
/// peer's go to both twins, the full twin answers for both (the lean
/// twin's answers are the same and are dropped).
fn pump3(peer: &mut Scope, full: &mut Scope, lean: &mut Scope, linked: bool, now: Instant) {
    loop {
        let mut moved = false;
        for t in transmits(peer) {
            if !linked {
                continue;
            }
            let bytes = t.frame.encode();
            for twin in [&mut *full, &mut *lean] {
                let frame = Frame::decode(&bytes).unwrap();
                twin.handle_frame(peer.local_node(), frame, now);
            }
            moved = true;
        }
        for t in transmits(full) {
            if linked {
                let frame = Frame::decode(&t.frame.encode()).unwrap();
                peer.handle_frame(full.local_node(), frame, now);
                moved = true;
            }
        }
        let _ = transmits(lean);
        if !moved {
            break;
        }
    }
}

/// The keys `scope` reports as changed, consecutive repeats merged, from
/// events or from changed keys, whichever it reports.
fn changed_keys(scope: &mut Scope) -> Vec<GroupName> {
    let mut keys: Vec<GroupName> = Vec::new();
    let events: Vec<GroupName> = std::iter::from_fn(|| scope.poll_registry_event())
        .map(|e| e.key)
        .collect();
    let touched: Vec<GroupName> = std::iter::from_fn(|| scope.poll_changed_key()).collect();
    for key in events.into_iter().chain(touched) {
        if keys.last() != Some(&key) {
            keys.push(key);
        }
    }
    keys
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn keys_only_names_the_keys_of_the_events(
        steps in proptest::collection::vec((step(), any::<bool>()), 1..60),
    ) {
        let now = Instant::now();
        let mut peer = Scope::new(node("p", 1), Default::default(), now);
        let mut full = Scope::new(node("a", 1), Default::default(), now);
        let mut lean = Scope::new(node("a", 1), Default::default(), now);
        let keys: Vec<GroupName> = (0..KEYS).map(|k| g(&format!("k{k}"))).collect();
        let meta = |m: u8| Some(Meta::from(vec![m]));
        let mut linked = true;
        peer.handle_node_up(node("a", 1));
        for twin in [&mut full, &mut lean] {
            twin.handle_node_up(node("p", 1));
        }
        pump3(&mut peer, &mut full, &mut lean, linked, now);
        for (step, keys_only) in steps {
            lean.set_registry_event_detail(if keys_only { EventDetail::GroupsOnly } else { EventDetail::Full });
            let pid = |s: &Scope, serial: u64| s.local_node().pid(serial).unwrap();
            for twin in [&mut full, &mut lean] {
                // Refusals are the same for both; other tests check them.
                let _ = match &step {
                    Step::Register(s, k, m) => twin.register(&pid(twin, *s), &keys[*k], meta(*m)),
                    Step::Unregister(s, k) => twin.unregister(&pid(twin, *s), &keys[*k]),
                    Step::Exit(s) => twin.exit(&pid(twin, *s)).map(drop),
                    Step::Partition if linked => {
                        twin.handle_node_down(&node("p", 1));
                        Ok(())
                    }
                    Step::Heal if !linked => {
                        twin.handle_node_up(node("p", 1));
                        Ok(())
                    }
                    _ => Ok(()),
                };
            }
            let _ = match &step {
                Step::PeerRegister(s, k, m) => peer.register(&pid(&peer, *s), &keys[*k], meta(*m)),
                Step::PeerUnregister(s, k) => peer.unregister(&pid(&peer, *s), &keys[*k]),
                Step::PeerExit(s) => peer.exit(&pid(&peer, *s)).map(drop),
                Step::Partition if linked => {
                    peer.handle_node_down(&node("a", 1));
                    linked = false;
                    Ok(())
                }
                Step::Heal if !linked => {
                    peer.handle_node_up(node("a", 1));
                    linked = true;
                    Ok(())
                }
                _ => Ok(()),
            };
            pump3(&mut peer, &mut full, &mut lean, linked, now);
            let want = changed_keys(&mut full);
            if keys_only {
                prop_assert!(lean.poll_registry_event().is_none(), "an event built while reporting keys only");
            } else {
                prop_assert!(lean.poll_changed_key().is_none(), "a key reported alone while reporting events");
            }
            let got = changed_keys(&mut lean);
            prop_assert_eq!(&got, &want, "after {:?}", step);
            prop_assert_eq!(full.registrations(), lean.registrations());
            let conflicts = |s: &mut Scope| std::iter::from_fn(|| s.poll_conflict()).map(|c| (c.key, c.pid)).collect::<Vec<_>>();
            prop_assert_eq!(conflicts(&mut full), conflicts(&mut lean));
            let _ = std::iter::from_fn(|| peer.poll_registry_event()).count();
            let _ = std::iter::from_fn(|| peer.poll_conflict()).count();
        }
    }
}
