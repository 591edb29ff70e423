//! A peer going down: its members leave every group, with exactly one
//! event per membership (replayed, the events equal the state), whether a
//! group's remote members were all the peer's (the list goes at once) or
//! shared with another peer (the peer's go one by one), and nothing else
//! changes.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Instant;

use pg_core::sim::check::{self, EventReplay};
use pg_core::{EventDetail, Frame, GroupName, NodeId, Scope, ScopeConfig, SyncGroup};
use proptest::prelude::*;

const GROUPS: usize = 4;
const PROCS: u64 = 5;

type Part = BTreeMap<(usize, u64), u32>;

fn part() -> impl Strategy<Value = Part> {
    proptest::collection::btree_map((0..GROUPS, 1..=PROCS), 1..4u32, 0..16)
}

fn sync(names: &[GroupName], part: &Part) -> Frame {
    let mut groups: BTreeMap<usize, Vec<(u64, u32)>> = BTreeMap::new();
    for (&(g, s), &c) in part {
        groups.entry(g).or_default().push((s, c));
    }
    Frame::Sync {
        seq: 1,
        known: None,
        groups: groups
            .into_iter()
            .map(|(g, members)| SyncGroup {
                group: names[g].clone(),
                members,
                metas: Vec::new(),
            })
            .collect(),
        registrations: Vec::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_downed_peer_leaves_with_one_event_per_membership(
        gone in part(),
        stays in part(),
        local in proptest::collection::btree_map((0..GROUPS, 1..=PROCS), 1..3u32, 0..6),
    ) {
        let now = Instant::now();
        let me = NodeId::parse_name("b", 1).unwrap();
        let (a, c) = (NodeId::parse_name("a", 1).unwrap(), NodeId::parse_name("c", 1).unwrap());
        let names: Vec<GroupName> = (0..GROUPS).map(|g| GroupName::new(&format!("g{g}")).unwrap()).collect();
        let mut full = Scope::new(me.clone(), ScopeConfig::default(), now);
        let mut lean = Scope::new(me.clone(), ScopeConfig::default(), now);
        lean.set_event_detail(EventDetail::GroupsOnly);
        for scope in [&mut full, &mut lean] {
            for (&(g, s), &n) in &local {
                for _ in 0..n {
                    scope.join(&me.pid(s).unwrap(), std::slice::from_ref(&names[g])).unwrap();
                }
            }
            scope.handle_node_up(a.clone());
            scope.handle_node_up(c.clone());
            scope.handle_frame(&a, sync(&names, &gone), now);
            scope.handle_frame(&c, sync(&names, &stays), now);
        }
        let mut replay = EventReplay::default();
        while let Some(e) = full.poll_event() {
            replay.apply(&e).map_err(|v| TestCaseError::fail(v.to_string()))?;
        }
        while lean.poll_changed_group().is_some() {}

        for scope in [&mut full, &mut lean] {
            scope.handle_node_down(&a);
        }
        let mut left: BTreeMap<(GroupName, u64), u32> = BTreeMap::new();
        let mut named = Vec::new();
        while let Some(e) = full.poll_event() {
            replay.apply(&e).map_err(|v| TestCaseError::fail(v.to_string()))?;
            for (pid, count) in &e.members {
                prop_assert_eq!(pid.node(), &a, "only the downed peer's members leave");
                prop_assert!(left.insert((e.group.clone(), pid.serial()), *count).is_none(), "one event per membership");
            }
            if named.last() != Some(&e.group) {
                named.push(e.group.clone());
            }
        }
        replay.check(&full).map_err(|v| TestCaseError::fail(v.to_string()))?;
        let want: BTreeMap<(GroupName, u64), u32> =
            gone.iter().map(|(&(g, s), &n)| ((names[g].clone(), s), n)).collect();
        prop_assert_eq!(left, want);
        // What is left: the local members and the other peer's, exactly.
        let view = check::view(&full);
        for (g, name) in names.iter().enumerate() {
            for s in 1..=PROCS {
                let at = |node: &NodeId| view.get(&(name.clone(), node.pid(s).unwrap())).map_or(0, |(count, _)| *count);
                prop_assert_eq!(at(&a), 0);
                prop_assert_eq!(at(&c), stays.get(&(g, s)).copied().unwrap_or(0));
                prop_assert_eq!(at(&me), local.get(&(g, s)).copied().unwrap_or(0));
            }
        }
        // The lean twin ends the same and names the changed groups.
        prop_assert_eq!(format!("{:?}", lean.snapshot()), format!("{:?}", full.snapshot()));
        let mut touched: Vec<GroupName> = std::iter::from_fn(|| lean.poll_changed_group()).collect();
        touched.sort();
        touched.dedup();
        let mut want_named = named.clone();
        want_named.sort();
        want_named.dedup();
        prop_assert_eq!(touched, want_named);
    }
}
