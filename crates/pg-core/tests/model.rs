//! Property tests: the scope against a deliberately simple model.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use pg_core::sim::check::{self, EventReplay};
use pg_core::{
    CommandError, EventDetail, Frame, GroupName, Limit, Meta, NodeId, Scope, ScopeConfig, SyncGroup,
};
use proptest::prelude::*;

const GROUPS: usize = 5;
const PROCS: u64 = 6;

/// A remote part: (group, serial) -> (join count, metadata).
type Part = BTreeMap<(usize, u64), (u32, Option<Meta>)>;

/// One group of a sync: members with counts, and their metadata.
type SyncColumns = (Vec<(u64, u32)>, Vec<Option<Meta>>);

/// Metadata a synced member may carry (mostly none).
fn meta() -> impl Strategy<Value = Option<Meta>> {
    prop_oneof![
        3 => Just(None),
        1 => (0u8..3).prop_map(|b| Some(Meta::new(vec![b]))),
    ]
}

#[derive(Debug, Clone)]
enum Cmd {
    Join(u64, Vec<usize>),
    JoinPids(usize, Vec<u64>),
    Leave(u64, Vec<usize>),
    LeavePids(usize, Vec<u64>),
    Exit(u64),
}

fn cmd() -> impl Strategy<Value = Cmd> {
    let serial = 1..=PROCS;
    let group = 0..GROUPS;
    let groups = proptest::collection::vec(0..GROUPS, 0..4);
    let serials = proptest::collection::vec(1..=PROCS, 0..4);
    prop_oneof![
        4 => (serial.clone(), groups.clone()).prop_map(|(s, g)| Cmd::Join(s, g)),
        2 => (group.clone(), serials.clone()).prop_map(|(g, s)| Cmd::JoinPids(g, s)),
        3 => (serial.clone(), groups).prop_map(|(s, g)| Cmd::Leave(s, g)),
        1 => (group, serials).prop_map(|(g, s)| Cmd::LeavePids(g, s)),
        1 => serial.prop_map(Cmd::Exit),
    ]
}

/// Join counts by (group, serial): the whole truth, with no cleverness.
#[derive(Default, Debug)]
struct Model {
    counts: BTreeMap<(usize, u64), u32>,
    max_groups: usize,
    max_members: usize,
}

impl Model {
    fn groups(&self) -> BTreeSet<usize> {
        self.counts.keys().map(|&(g, _)| g).collect()
    }

    fn total(&self, group: usize) -> u64 {
        self.counts
            .iter()
            .filter(|((g, _), _)| *g == group)
            .map(|(_, &c)| u64::from(c))
            .sum()
    }

    /// The error kind expected for a batch of joins, or applies it.
    fn join(&mut self, pairs: &[(usize, u64)]) -> Result<(), &'static str> {
        if pairs.is_empty() {
            return Err("empty");
        }
        let existing = self.groups();
        let batch_groups: BTreeSet<usize> = pairs.iter().map(|&(g, _)| g).collect();
        let new = batch_groups.difference(&existing).count();
        if self.max_groups > 0 && new > 0 && existing.len() + new > self.max_groups {
            return Err("max_groups");
        }
        for &g in &batch_groups {
            let added = pairs.iter().filter(|&&(x, _)| x == g).count() as u64;
            if self.max_members > 0 && self.total(g) + added > self.max_members as u64 {
                return Err("max_members");
            }
        }
        for &key in pairs {
            *self.counts.entry(key).or_default() += 1;
        }
        Ok(())
    }

    fn leave(&mut self, pairs: &[(usize, u64)]) -> Result<(), &'static str> {
        if pairs.is_empty() {
            return Err("empty");
        }
        let mut removed = 0;
        for key in pairs {
            if let Some(c) = self.counts.get_mut(key) {
                *c -= 1;
                removed += 1;
                if *c == 0 {
                    self.counts.remove(key);
                }
            }
        }
        if removed == 0 {
            Err("not_member")
        } else {
            Ok(())
        }
    }

    fn exit(&mut self, serial: u64) {
        self.counts.retain(|&(_, s), _| s != serial);
    }
}

fn kind(e: &CommandError) -> &'static str {
    match e {
        CommandError::EmptyBatch => "empty",
        CommandError::NotMember => "not_member",
        CommandError::LimitExceeded(Limit::MaxGroups { .. }) => "max_groups",
        CommandError::LimitExceeded(Limit::MaxMembersPerGroup { .. }) => "max_members",
        other => panic!("unexpected error {other:?}"),
    }
}

/// A step of the groups-only test: a local command, a full resync of a
/// peer's part (group, serial) -> (count, metadata byte), or the peer
/// going down and coming back.
#[derive(Debug, Clone)]
enum Step {
    Local(Cmd),
    Sync(BTreeMap<(usize, u64), (u32, Option<u8>)>),
    Down,
}

fn remote_or_local() -> impl Strategy<Value = Step> {
    let part = proptest::collection::btree_map(
        (0..GROUPS, 1..=PROCS),
        (1..3u32, proptest::option::of(0u8..2)),
        0..8,
    );
    prop_oneof![
        6 => cmd().prop_map(Step::Local),
        3 => part.prop_map(Step::Sync),
        1 => Just(Step::Down),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random local commands agree with the model, errors included, and the
    /// event stream replayed from empty always equals the state.
    #[test]
    fn local_commands_match_the_model(
        cmds in proptest::collection::vec(cmd(), 1..60),
        max_groups in prop_oneof![Just(0usize), 1..4usize],
        max_members in prop_oneof![Just(0usize), 1..8usize],
    ) {
        let node = NodeId::parse_name("a", 1).unwrap();
        let config = ScopeConfig { max_groups, max_members_per_group: max_members, ..ScopeConfig::default() };
        let mut scope = Scope::new(node.clone(), config, Instant::now());
        let mut model = Model { max_groups, max_members, ..Model::default() };
        let mut replay = EventReplay::default();
        let names: Vec<GroupName> = (0..GROUPS).map(|g| GroupName::new(&format!("g{g}")).unwrap()).collect();
        let pid = |s: u64| node.pid(s).unwrap();

        let mut cached_groups = (scope.groups_epoch(), scope.which_groups());
        let mut cached_local = (scope.local_groups_epoch(), scope.which_local_groups());
        for cmd in cmds {
            let before = scope.snapshot();
            let frozen = format!("{before:?}");
            let (got, want) = match &cmd {
                Cmd::Join(s, gs) => {
                    let groups: Vec<_> = gs.iter().map(|&g| names[g].clone()).collect();
                    let pairs: Vec<_> = gs.iter().map(|&g| (g, *s)).collect();
                    (scope.join(&pid(*s), &groups), model.join(&pairs))
                }
                Cmd::JoinPids(g, ss) => {
                    let pids: Vec<_> = ss.iter().map(|&s| pid(s)).collect();
                    let pairs: Vec<_> = ss.iter().map(|&s| (*g, s)).collect();
                    (scope.join_pids(&names[*g], &pids), model.join(&pairs))
                }
                Cmd::Leave(s, gs) => {
                    let groups: Vec<_> = gs.iter().map(|&g| names[g].clone()).collect();
                    let pairs: Vec<_> = gs.iter().map(|&g| (g, *s)).collect();
                    (scope.leave(&pid(*s), &groups), model.leave(&pairs))
                }
                Cmd::LeavePids(g, ss) => {
                    let pids: Vec<_> = ss.iter().map(|&s| pid(s)).collect();
                    let pairs: Vec<_> = ss.iter().map(|&s| (*g, s)).collect();
                    (scope.leave_pids(&names[*g], &pids), model.leave(&pairs))
                }
                Cmd::Exit(s) => {
                    let want = model.counts.iter().filter(|((_, x), _)| x == s).map(|(_, &c)| u64::from(c)).sum::<u64>();
                    model.exit(*s);
                    let got = scope.exit(&pid(*s));
                    prop_assert_eq!(got.clone(), Ok(want));
                    (got.map(drop), Ok(()))
                }
            };
            prop_assert_eq!(got.as_ref().map_err(kind).err(), want.err(), "{:?}", cmd);
            // Snapshots taken before the command are frozen.
            prop_assert_eq!(format!("{before:?}"), frozen);

            while let Some(event) = scope.poll_event() {
                replay.apply(&event).map_err(|v| TestCaseError::fail(v.to_string()))?;
            }
            replay.check(&scope).map_err(|v| TestCaseError::fail(v.to_string()))?;

            // A cached group list stays right until its epoch moves.
            if scope.groups_epoch() == cached_groups.0 {
                prop_assert_eq!(&cached_groups.1, &scope.which_groups());
            }
            cached_groups = (scope.groups_epoch(), scope.which_groups());
            if scope.local_groups_epoch() == cached_local.0 {
                prop_assert_eq!(&cached_local.1, &scope.which_local_groups());
            }
            cached_local = (scope.local_groups_epoch(), scope.which_local_groups());

            let want_groups: BTreeSet<GroupName> = model.groups().into_iter().map(|g| names[g].clone()).collect();
            prop_assert_eq!(scope.which_groups().into_iter().collect::<BTreeSet<_>>(), want_groups.clone());
            prop_assert_eq!(scope.which_local_groups().into_iter().collect::<BTreeSet<_>>(), want_groups);
            for (g, name) in names.iter().enumerate() {
                // Reads list a pid once per join (Erlang's multiplicity).
                let want: BTreeMap<_, u32> = model.counts.iter().filter(|(k, _)| k.0 == g).map(|(k, &c)| (pid(k.1), c)).collect();
                let mut want_listed: Vec<_> = want.iter().flat_map(|(p, &c)| std::iter::repeat_n(p.clone(), c as usize)).collect();
                want_listed.sort();
                for members in [scope.members(name.as_str()), scope.local_members(name.as_str())] {
                    let counted: BTreeMap<_, u32> = members.iter_counted().collect();
                    prop_assert_eq!(&counted, &want);
                    prop_assert_eq!(members.distinct_len(), want.len());
                    prop_assert_eq!(members.len(), want_listed.len());
                    prop_assert_eq!(members.iter().len(), want_listed.len());
                    let mut listed = members.to_vec();
                    listed.sort();
                    prop_assert_eq!(&listed, &want_listed);
                }
                for s in 1..=PROCS {
                    prop_assert_eq!(scope.join_count(&pid(s), name.as_str()), model.counts.get(&(g, s)).copied().unwrap_or(0));
                }
            }
        }
    }

    /// A scope reporting only changed groups names exactly the groups the
    /// events of a fully reporting twin name (in order, repeats in a row
    /// merged), whenever it switches, and its state never differs.
    #[test]
    fn groups_only_names_the_groups_of_the_events(
        steps in proptest::collection::vec((remote_or_local(), any::<bool>()), 1..60),
    ) {
        let node = NodeId::parse_name("a", 1).unwrap();
        let peer = NodeId::parse_name("p", 1).unwrap();
        let now = Instant::now();
        let mut full = Scope::new(node.clone(), ScopeConfig::default(), now);
        let mut lean = Scope::new(node.clone(), ScopeConfig::default(), now);
        let names: Vec<GroupName> = (0..GROUPS).map(|g| GroupName::new(&format!("g{g}")).unwrap()).collect();
        let pid = |s: u64| node.pid(s).unwrap();
        let mut seq = 0;
        for scope in [&mut full, &mut lean] {
            scope.handle_node_up(peer.clone());
        }
        for (step, groups_only) in steps {
            lean.set_event_detail(if groups_only { EventDetail::GroupsOnly } else { EventDetail::Full });
            seq += 1;
            for scope in [&mut full, &mut lean] {
                // Errors are the same for both; the model test checks them.
                let _ = match &step {
                    Step::Local(Cmd::Join(s, gs)) => scope.join(&pid(*s), &gs.iter().map(|&g| names[g].clone()).collect::<Vec<_>>()),
                    Step::Local(Cmd::JoinPids(g, ss)) => scope.join_pids(&names[*g], &ss.iter().map(|&s| pid(s)).collect::<Vec<_>>()),
                    Step::Local(Cmd::Leave(s, gs)) => scope.leave(&pid(*s), &gs.iter().map(|&g| names[g].clone()).collect::<Vec<_>>()),
                    Step::Local(Cmd::LeavePids(g, ss)) => scope.leave_pids(&names[*g], &ss.iter().map(|&s| pid(s)).collect::<Vec<_>>()),
                    Step::Local(Cmd::Exit(s)) => scope.exit(&pid(*s)).map(drop),
                    // The peer's whole part, with metadata: a resync
                    // joins, leaves and updates (metadata only) at once.
                    Step::Sync(part) => {
                        let mut groups: BTreeMap<usize, SyncGroup> = BTreeMap::new();
                        for (&(g, s), &(count, meta)) in part {
                            let group = groups.entry(g).or_insert_with(|| SyncGroup { group: names[g].clone(), members: Vec::new(), metas: Vec::new() });
                            group.members.push((s, count));
                            group.metas.push(meta.map(|m| pg_core::Meta::from(vec![m])));
                        }
                        let frame = Frame::Sync { seq, known: None, groups: groups.into_values().collect(), registrations: Vec::new() };
                        scope.handle_frame(&peer, frame, now);
                        Ok(())
                    }
                    Step::Down => {
                        scope.handle_node_down(&peer);
                        scope.handle_node_up(peer.clone());
                        Ok(())
                    }
                };
                let _ = std::iter::from_fn(|| scope.poll_transmit()).count();
            }
            let cmd = &step;
            let mut want: Vec<GroupName> = Vec::new();
            while let Some(event) = full.poll_event() {
                if want.last() != Some(&event.group) {
                    want.push(event.group);
                }
            }
            let mut got: Vec<GroupName> = Vec::new();
            if groups_only {
                prop_assert!(lean.poll_event().is_none(), "an event built while reporting groups only");
                got.extend(std::iter::from_fn(|| lean.poll_changed_group()));
            } else {
                prop_assert!(lean.poll_changed_group().is_none());
                while let Some(event) = lean.poll_event() {
                    if got.last() != Some(&event.group) {
                        got.push(event.group);
                    }
                }
            }
            prop_assert_eq!(got, want, "{:?}", cmd);
            prop_assert_eq!(format!("{:?}", lean.snapshot()), format!("{:?}", full.snapshot()));
        }
    }

    /// Applying any sync after any other leaves exactly the second one's
    /// content, and the events replayed equal the state, with no event for
    /// a membership the two syncs agree on. The first sync meets an empty
    /// part (the bulk path of a first sync), the second a full one (the
    /// differential path, which relies on the process index the first
    /// built); metadata rides on both.
    #[test]
    fn differential_sync_between_arbitrary_parts(
        first in proptest::collection::btree_map((0..GROUPS, 1..=PROCS), (1..4u32, meta()), 0..20),
        second in proptest::collection::btree_map((0..GROUPS, 1..=PROCS), (1..4u32, meta()), 0..20),
        local in proptest::collection::btree_map((0..GROUPS, 1..=PROCS), 1..3u32, 0..6),
    ) {
        let now = Instant::now();
        let me = NodeId::parse_name("b", 1).unwrap();
        let a = NodeId::parse_name("a", 1).unwrap();
        let mut scope = Scope::new(me.clone(), ScopeConfig::default(), now);
        let names: Vec<GroupName> = (0..GROUPS).map(|g| GroupName::new(&format!("g{g}")).unwrap()).collect();
        // Local members share the groups and must be untouched by syncs.
        for (&(g, s), &c) in &local {
            for _ in 0..c {
                scope.join(&me.pid(s).unwrap(), std::slice::from_ref(&names[g])).unwrap();
            }
        }
        scope.handle_node_up(a.clone());
        let to_frame = |seq, part: &Part| {
            let mut groups: BTreeMap<usize, SyncColumns> = BTreeMap::new();
            for (&(g, s), (c, meta)) in part {
                let (members, metas) = groups.entry(g).or_default();
                members.push((s, *c));
                metas.push(meta.clone());
            }
            Frame::Sync {
                seq,
                known: None,
                groups: groups
                    .into_iter()
                    .map(|(g, (members, metas))| {
                        // A group without metadata sends none.
                        let metas = if metas.iter().all(Option::is_none) { Vec::new() } else { metas };
                        SyncGroup { group: names[g].clone(), members, metas }
                    })
                    .collect(),
                registrations: Vec::new(),
            }
        };
        // The remote part as `scope` lists it, against `part`.
        let remote_matches = |scope: &Scope, part: &Part| -> Result<(), TestCaseError> {
            let view = check::view(scope);
            for (g, name) in names.iter().enumerate() {
                for s in 1..=PROCS {
                    let remote = view.get(&(name.clone(), a.pid(s).unwrap())).cloned();
                    prop_assert_eq!(remote, part.get(&(g, s)).cloned());
                }
            }
            Ok(())
        };
        let mut replay = EventReplay::default();
        let drain = |scope: &mut Scope, replay: &mut EventReplay| -> Result<Vec<pg_core::Event>, TestCaseError> {
            let mut out = Vec::new();
            while let Some(e) = scope.poll_event() {
                replay.apply(&e).map_err(|v| TestCaseError::fail(v.to_string()))?;
                out.push(e);
            }
            Ok(out)
        };
        drain(&mut scope, &mut replay)?;
        scope.handle_frame(&a, to_frame(1, &first), now);
        drain(&mut scope, &mut replay)?;
        replay.check(&scope).map_err(|v| TestCaseError::fail(v.to_string()))?;
        remote_matches(&scope, &first)?;
        scope.handle_frame(&a, to_frame(2, &second), now);
        let events = drain(&mut scope, &mut replay)?;
        replay.check(&scope).map_err(|v| TestCaseError::fail(v.to_string()))?;

        for event in &events {
            for (pid, _) in &event.members {
                prop_assert_eq!(pid.node(), &a, "a sync only touches its origin's part");
                let g = names.iter().position(|n| *n == event.group).unwrap();
                prop_assert_ne!(first.get(&(g, pid.serial())), second.get(&(g, pid.serial())), "event for an unchanged membership");
            }
        }
        remote_matches(&scope, &second)?;
        let view = check::view(&scope);
        for (g, name) in names.iter().enumerate() {
            for s in 1..=PROCS {
                let mine = view.get(&(name.clone(), me.pid(s).unwrap())).map(|e| e.0);
                prop_assert_eq!(mine, local.get(&(g, s)).copied());
            }
        }
        // The process index the syncs left behind serves a node down:
        // every remote membership goes, and only those.
        scope.handle_node_down(&a);
        while scope.poll_timeout().is_some_and(|t| t <= now) {
            scope.handle_timeout(now);
        }
        drain(&mut scope, &mut replay)?;
        replay.check(&scope).map_err(|v| TestCaseError::fail(v.to_string()))?;
        remote_matches(&scope, &Part::new())?;
    }
}
