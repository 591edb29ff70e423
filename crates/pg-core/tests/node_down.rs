//! A peer going down: its members leave every group, with exactly one
//! event per membership (replayed, the events equal the state), whether a
//! group's remote members were all the peer's (the list goes at once) or
//! shared with another peer (the peer's go one by one), and nothing else
//! changes; also when the removal takes several steps, and when the node
//! comes back (the same run or a new one) before it is over.

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

/// Runs every timer due at `now` (the steps of a removal among them);
/// returns how many rounds it took.
fn run_due(scope: &mut Scope, now: Instant) -> usize {
    let mut rounds = 0;
    while scope.poll_timeout().is_some_and(|at| at <= now) {
        scope.handle_timeout(now);
        rounds += 1;
        assert!(rounds < 10_000, "a removal that never ends");
    }
    rounds
}

/// No pid is listed twice in a group (under two node slots).
fn listed_once(scope: &Scope) -> Result<(), TestCaseError> {
    for (group, members) in scope.snapshot() {
        let mut pids: Vec<_> = members.iter_with_meta().map(|(pid, _, _)| pid).collect();
        let n = pids.len();
        pids.sort();
        pids.dedup();
        prop_assert_eq!(pids.len(), n, "a pid listed twice in {}", group);
    }
    Ok(())
}

/// What happens while a downed peer's part is being removed.
#[derive(Debug, Clone, Copy)]
enum Meanwhile {
    /// Nothing: the removal runs to its end.
    Nothing,
    /// The same run comes back (a link that flapped) with a new state.
    SameRunBack,
    /// A new run of the node comes back with a state.
    NewRunBack,
    /// A local process joins every group.
    LocalJoin,
}

fn meanwhile() -> impl Strategy<Value = Meanwhile> {
    prop_oneof![
        Just(Meanwhile::Nothing),
        Just(Meanwhile::SameRunBack),
        Just(Meanwhile::NewRunBack),
        Just(Meanwhile::LocalJoin),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_downed_peer_leaves_with_one_event_per_membership(
        earlier in part(),
        gone in part(),
        stays in part(),
        local in proptest::collection::btree_map((0..GROUPS, 1..=PROCS), 1..3u32, 0..6),
        step in 0..6usize,
        (meanwhile, after_steps, back) in (meanwhile(), 0..4usize, part()),
    ) {
        let now = Instant::now();
        let me = NodeId::parse_name("b", 1).unwrap();
        let (a, c) = (NodeId::parse_name("a", 1).unwrap(), NodeId::parse_name("c", 1).unwrap());
        let names: Vec<GroupName> = (0..GROUPS).map(|g| GroupName::new(&format!("g{g}")).unwrap()).collect();
        let config = ScopeConfig { part_removal_step: step, ..ScopeConfig::default() };
        let mut full = Scope::new(me.clone(), config.clone(), now);
        let mut lean = Scope::new(me.clone(), config, now);
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
            run_due(scope, now);
        }
        while let Some(e) = full.poll_event() {
            replay.apply(&e).map_err(|v| TestCaseError::fail(v.to_string()))?;
        }
        while lean.poll_changed_group().is_some() {}

        for scope in [&mut full, &mut lean] {
            scope.handle_node_down(&a);
        }
        let distinct = gone.len();
        if step == 1 && distinct >= 2 {
            // One unit of work per step: the down's own step leaves most
            // of the part in place.
            let view = check::view(&full);
            prop_assert!(view.keys().any(|(_, pid)| pid.node() == &a), "removed in one step");
        }
        if !matches!(meanwhile, Meanwhile::Nothing) {
            return interleaved(full, lean, replay, &names, &a, meanwhile, after_steps, &back, now);
        }
        for scope in [&mut full, &mut lean] {
            run_due(scope, now);
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

/// The rest of the property when something happens while the part is
/// being removed: the events, replayed, still equal the state after every
/// input; no pid is listed twice; a returning same run's members never
/// get a `node_down` after they are back; and at the end the downed run's
/// members are exactly what came back (nothing for a new run).
#[allow(clippy::too_many_arguments)]
fn interleaved(
    mut full: Scope,
    mut lean: Scope,
    mut replay: EventReplay,
    names: &[GroupName],
    a: &NodeId,
    meanwhile: Meanwhile,
    after_steps: usize,
    back: &Part,
    now: Instant,
) -> Result<(), TestCaseError> {
    let me = full.local_node().clone();
    let a2 = NodeId::parse_name("a", 2).unwrap();
    // Whether an event has shown the returned run's members back: no
    // `node_down` for that run may follow it.
    let mut back_seen = false;
    let mut drain = |full: &mut Scope, replay: &mut EventReplay| {
        while let Some(e) = full.poll_event() {
            replay
                .apply(&e)
                .map_err(|v| TestCaseError::fail(v.to_string()))?;
            if e.members.iter().any(|(p, _)| p.node() == a) {
                if e.reason == Some(LeaveReason::NodeDown) {
                    prop_assert!(!back_seen, "a node_down after the run came back");
                } else {
                    back_seen = true;
                }
            }
        }
        replay
            .check(full)
            .map_err(|v| TestCaseError::fail(v.to_string()))?;
        listed_once(full)
    };
    for scope in [&mut full, &mut lean] {
        for _ in 0..after_steps {
            if scope.poll_timeout().is_some_and(|at| at <= now) {
                scope.handle_timeout(now);
            }
        }
    }
    drain(&mut full, &mut replay)?;
    for scope in [&mut full, &mut lean] {
        match meanwhile {
            Meanwhile::SameRunBack => {
                scope.handle_node_up(a.clone());
                scope.handle_frame(a, sync(names, 3, back), now);
            }
            Meanwhile::NewRunBack => {
                scope.handle_node_up(a2.clone());
                scope.handle_frame(&a2, sync(names, 1, back), now);
            }
            Meanwhile::LocalJoin | Meanwhile::Nothing => {
                scope.join(&me.pid(PROCS + 1).unwrap(), names).unwrap();
            }
        }
    }
    let same_run = matches!(meanwhile, Meanwhile::SameRunBack);
    drain(&mut full, &mut replay)?;
    for scope in [&mut full, &mut lean] {
        run_due(scope, now);
    }
    drain(&mut full, &mut replay)?;
    let view = check::view(&full);
    let want: BTreeMap<(GroupName, u64), u32> = match meanwhile {
        Meanwhile::SameRunBack | Meanwhile::NewRunBack => back
            .iter()
            .map(|(&(g, s), &(n, _))| ((names[g].clone(), s), n))
            .collect(),
        _ => BTreeMap::new(),
    };
    let returned = if same_run { a } else { &a2 };
    let got: BTreeMap<(GroupName, u64), u32> = view
        .iter()
        .filter(|((_, pid), _)| pid.node() == returned)
        .map(|((group, pid), (n, _))| ((group.clone(), pid.serial()), *n))
        .collect();
    prop_assert_eq!(got, want);
    if !same_run {
        prop_assert!(
            view.keys().all(|(_, pid)| pid.node() != a),
            "the downed run is gone"
        );
    }
    prop_assert_eq!(
        format!("{:?}", lean.snapshot()),
        format!("{:?}", full.snapshot())
    );
    Ok(())
}
