//! A peer going down: its members leave every group, with exactly one
//! event per membership (replayed, the events equal the state), whether a
//! group's remote members were all the peer's (the list goes at once) or
//! shared with another peer (the peer's go one by one), and nothing else
//! changes.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Instant;

use pg_core::sim::check::{self, EventReplay};
use pg_core::{
    EventDetail, Frame, GroupName, LeaveReason, Meta, NodeId, Scope, ScopeConfig, SyncGroup,
};
use proptest::prelude::*;

const GROUPS: usize = 4;
const PROCS: u64 = 5;

/// (group, serial) -> (join count, metadata byte).
type Part = BTreeMap<(usize, u64), (u32, Option<u8>)>;

fn part() -> impl Strategy<Value = Part> {
    proptest::collection::btree_map(
        (0..GROUPS, 1..=PROCS),
        (1..4u32, proptest::option::of(any::<u8>())),
        0..16,
    )
}

fn meta(m: Option<u8>) -> Option<Meta> {
    m.map(|m| Meta::from(vec![m]))
}

fn sync(names: &[GroupName], seq: u64, part: &Part) -> Frame {
    let mut groups: BTreeMap<usize, SyncGroup> = BTreeMap::new();
    for (&(g, s), &(c, m)) in part {
        let group = groups.entry(g).or_insert_with(|| SyncGroup {
            group: names[g].clone(),
            members: Vec::new(),
            metas: Vec::new(),
        });
        group.members.push((s, c));
        group.metas.push(meta(m));
    }
    Frame::Sync {
        seq,
        known: None,
        groups: groups.into_values().collect(),
        registrations: Vec::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_downed_peer_leaves_with_one_event_per_membership(
        earlier in part(),
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
            // An earlier state of a's part first: the resync to `gone`
            // adds, removes and changes members, as a live part does.
            scope.handle_frame(&a, sync(&names, 1, &earlier), now);
            scope.handle_frame(&c, sync(&names, 1, &stays), now);
            scope.handle_frame(&a, sync(&names, 2, &gone), now);
        }
        let mut replay = EventReplay::default();
        while let Some(e) = full.poll_event() {
            replay.apply(&e).map_err(|v| TestCaseError::fail(v.to_string()))?;
        }
        while lean.poll_changed_group().is_some() {}

        for scope in [&mut full, &mut lean] {
            scope.handle_node_down(&a);
        }
        let mut left: BTreeMap<(GroupName, u64), (u32, Option<Meta>)> = BTreeMap::new();
        let mut named = Vec::new();
        while let Some(e) = full.poll_event() {
            replay.apply(&e).map_err(|v| TestCaseError::fail(v.to_string()))?;
            prop_assert_eq!(e.reason, Some(LeaveReason::NodeDown));
            for (i, (pid, count)) in e.members.iter().enumerate() {
                prop_assert_eq!(pid.node(), &a, "only the downed peer's members leave");
                let had = e.metas.get(i).and_then(|m| m.meta.clone());
                prop_assert!(left.insert((e.group.clone(), pid.serial()), (*count, had)).is_none(), "one event per membership");
            }
            prop_assert!(!named.contains(&e.group), "one event per group");
            named.push(e.group.clone());
        }
        replay.check(&full).map_err(|v| TestCaseError::fail(v.to_string()))?;
        let want: BTreeMap<(GroupName, u64), (u32, Option<Meta>)> =
            gone.iter().map(|(&(g, s), &(n, m))| ((names[g].clone(), s), (n, meta(m)))).collect();
        prop_assert_eq!(left, want);
        // What is left: the local members and the other peer's, exactly.
        let view = check::view(&full);
        for (g, name) in names.iter().enumerate() {
            for s in 1..=PROCS {
                let at = |node: &NodeId| view.get(&(name.clone(), node.pid(s).unwrap())).map_or(0, |(count, _)| *count);
                prop_assert_eq!(at(&a), 0);
                prop_assert_eq!(at(&c), stays.get(&(g, s)).map_or(0, |&(n, _)| n));
                prop_assert_eq!(at(&me), local.get(&(g, s)).copied().unwrap_or(0));
            }
        }
        // The lean twin ends the same and names the changed groups.
        prop_assert_eq!(format!("{:?}", lean.snapshot()), format!("{:?}", full.snapshot()));
        let mut touched: Vec<GroupName> = std::iter::from_fn(|| lean.poll_changed_group()).collect();
        touched.sort();
        touched.dedup();
        named.sort();
        prop_assert_eq!(touched, named);
    }
}
