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

/// The keys named by `full`'s events, consecutive repeats merged.
fn event_keys(full: &mut Scope) -> Vec<GroupName> {
    let mut keys: Vec<GroupName> = Vec::new();
    while let Some(event) = full.poll_registry_event() {
        if keys.last() != Some(&event.key) {
            keys.push(event.key);
        }
    }
    keys
}

fn sorted_set(mut keys: Vec<GroupName>) -> Vec<GroupName> {
    keys.sort();
    keys.dedup();
    keys
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn keys_only_names_the_keys_of_the_events(
        steps in proptest::collection::vec((step(), any::<bool>(), any::<bool>()), 1..60),
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
        // Whether the detail changed since the queues were last drained
        // (what was queued stays as it was reported).
        let mut was_keys_only = false;
        let mut switched = false;
        let mut last = 0;
        for (i, (step, keys_only, drain)) in steps.iter().cloned().enumerate() {
            switched |= keys_only != was_keys_only;
            was_keys_only = keys_only;
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
            if !drain && i + 1 != steps.len() {
                continue;
            }
            let want = event_keys(&mut full);
            let events: Vec<GroupName> = std::iter::from_fn(|| lean.poll_registry_event()).map(|e| e.key).collect();
            let touched: Vec<GroupName> = std::iter::from_fn(|| lean.poll_changed_key()).collect();
            if switched {
                // Both queues may hold changes: the same keys, in whichever
                // queue they were reported to.
                let got = sorted_set(events.into_iter().chain(touched).collect());
                prop_assert_eq!(got, sorted_set(want.clone()), "steps {}..={}", last, i);
            } else if keys_only {
                prop_assert!(events.is_empty(), "an event built while reporting keys only");
                // Repeats in a row are merged where they are recorded.
                prop_assert_eq!(&touched, &want, "steps {}..={}", last, i);
            } else {
                prop_assert!(touched.is_empty(), "a key reported alone while reporting events");
                let mut got: Vec<GroupName> = events;
                got.dedup();
                prop_assert_eq!(&got, &want, "steps {}..={}", last, i);
            }
            switched = false;
            last = i + 1;
            prop_assert_eq!(full.registrations(), lean.registrations());
            let conflicts = |s: &mut Scope| std::iter::from_fn(|| s.poll_conflict()).map(|c| (c.key, c.pid)).collect::<Vec<_>>();
            prop_assert_eq!(conflicts(&mut full), conflicts(&mut lean));
            let _ = std::iter::from_fn(|| peer.poll_registry_event()).count();
            let _ = std::iter::from_fn(|| peer.poll_conflict()).count();
        }
    }
}
