//! Invariant checkers, kept apart from the code they check.

use std::collections::BTreeMap;
use std::fmt;

use rustc_hash::FxHashMap;

use crate::{Event, EventKind, GroupName, NodeId, Pid, Scope};

/// One membership and its join count, sorted for stable comparison.
pub type View = BTreeMap<(GroupName, Pid), u32>;

/// A broken invariant, with what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant.
    pub invariant: &'static str,
    /// What was wrong.
    pub detail: String,
}

impl Violation {
    pub(crate) fn new(invariant: &'static str, detail: impl Into<String>) -> Self {
        Self {
            invariant,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

impl std::error::Error for Violation {}

/// Everything `scope` believes, cluster wide.
pub fn view(scope: &Scope) -> View {
    let mut out = View::new();
    for (group, members) in scope.snapshot() {
        // Counts come from the read snapshot, so the checks cover what
        // readers see, not only the table.
        for (pid, count) in members.iter_counted() {
            out.insert((group.clone(), pid), count);
        }
    }
    out
}

/// The part `scope` owns: its own processes' memberships.
pub fn own_part(scope: &Scope) -> View {
    let mut out = View::new();
    for group in scope.which_local_groups() {
        for (pid, count) in scope.local_members(group.as_str()).iter_counted() {
            out.insert((group.clone(), pid), count);
        }
    }
    out
}

/// Replays a scope's events from empty. The replay must always equal the
/// scope's state: every event is a real change, and every change has its
/// event, with multiplicity.
#[derive(Debug, Default, Clone)]
pub struct EventReplay {
    counts: FxHashMap<(GroupName, Pid), u32>,
}

impl EventReplay {
    /// Applies one event; a `Left` for a reference the replay does not hold
    /// is a violation (an event without a state change).
    pub fn apply(&mut self, event: &Event) -> Result<(), Violation> {
        for (pid, n) in &event.members {
            let key = (event.group.clone(), pid.clone());
            match event.kind {
                EventKind::Joined => *self.counts.entry(key).or_default() += n,
                EventKind::Left => match self.counts.get_mut(&key) {
                    Some(count) if *count >= *n => {
                        *count -= n;
                        if *count == 0 {
                            self.counts.remove(&key);
                        }
                    }
                    held => {
                        return Err(Violation::new(
                            "no event without a state change",
                            format!(
                                "{pid} left {:?} {n} times holding {} joins",
                                event.group,
                                held.map_or(0, |c| *c)
                            ),
                        ));
                    }
                },
            }
        }
        Ok(())
    }

    /// The join count the replay holds for `(group, pid)`.
    pub fn count(&self, group: &GroupName, pid: &Pid) -> u32 {
        self.counts
            .get(&(group.clone(), pid.clone()))
            .copied()
            .unwrap_or(0)
    }

    /// Checks the replay against the scope's whole state.
    pub fn check(&self, scope: &Scope) -> Result<(), Violation> {
        let replay: View = self.counts.iter().map(|(k, &c)| (k.clone(), c)).collect();
        compare("event replay equals state", &replay, &view(scope))
    }
}

/// Checks that the events of one input moved each touched membership by
/// exactly its change of state, in one direction only when `one_way`.
pub fn check_events_of_input(
    before: &EventReplay,
    after: &EventReplay,
    events: &[Event],
    scope: &Scope,
    one_way: bool,
) -> Result<(), Violation> {
    let mut direction: FxHashMap<(&GroupName, &Pid), EventKind> = FxHashMap::default();
    for event in events {
        for (pid, _) in &event.members {
            if let Some(prev) = direction.insert((&event.group, pid), event.kind)
                && one_way
                && prev != event.kind
            {
                return Err(Violation::new(
                    "no event without a state change",
                    format!(
                        "{pid} both joined and left {:?} in one sync or node change",
                        event.group
                    ),
                ));
            }
        }
    }
    for (group, pid) in direction.keys() {
        let state = scope.join_count(pid, group.as_str());
        if after.count(group, pid) != state {
            return Err(Violation::new(
                "event replay equals state",
                format!(
                    "{pid} in {group:?}: events say {} (was {}), state says {state}",
                    after.count(group, pid),
                    before.count(group, pid)
                ),
            ));
        }
    }
    Ok(())
}

/// Checks that no member belongs to a node run outside `live`.
pub fn check_no_dead_members(view: &View, live: &[NodeId]) -> Result<(), Violation> {
    match view.keys().find(|(_, pid)| !live.contains(pid.node())) {
        Some((group, pid)) => Err(Violation::new(
            "no member of a dead node remains",
            format!("{pid} is still listed in {group:?}"),
        )),
        None => Ok(()),
    }
}

/// Compares two views and names the first difference.
pub fn compare(invariant: &'static str, got: &View, want: &View) -> Result<(), Violation> {
    if got == want {
        return Ok(());
    }
    let extra = got.iter().find(|(k, v)| want.get(*k) != Some(v));
    let missing = want.iter().find(|(k, v)| got.get(*k) != Some(v));
    let detail = match (extra, missing) {
        (Some(((g, p), c)), _) => format!(
            "holds {p} in {g:?} x{c}, expected x{}",
            want.get(&(g.clone(), p.clone())).copied().unwrap_or(0)
        ),
        (None, Some(((g, p), c))) => format!("lacks {p} in {g:?} x{c}"),
        (None, None) => "views differ".to_owned(),
    };
    Err(Violation::new(
        invariant,
        format!("{detail} ({} vs {} memberships)", got.len(), want.len()),
    ))
}
