//! Invariant checkers, kept apart from the code they check.

use std::collections::BTreeMap;
use std::fmt;

use rustc_hash::FxHashMap;

use crate::{Event, EventKind, GroupName, Meta, NodeId, Pid, Scope};

/// A membership's join count and metadata.
pub type Entry = (u32, Option<Meta>);

/// One membership with its join count and metadata, sorted for stable
/// comparison.
pub type View = BTreeMap<(GroupName, Pid), Entry>;

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
        for (pid, count, meta) in members.iter_with_meta() {
            out.insert((group.clone(), pid), (count, meta));
        }
    }
    out
}

/// The part `scope` owns: its own processes' memberships.
pub fn own_part(scope: &Scope) -> View {
    let mut out = View::new();
    for group in scope.which_local_groups() {
        for (pid, count, meta) in scope.local_members(group.as_str()).iter_with_meta() {
            out.insert((group.clone(), pid), (count, meta));
        }
    }
    out
}

/// Replays a scope's events from empty. The replay must always equal the
/// scope's state: every event is a real change, and every change has its
/// event, with multiplicity and metadata (a join's or update's
/// `previous_meta` is the metadata held before it, a left event carries the
/// metadata held when it left).
#[derive(Debug, Default, Clone)]
pub struct EventReplay {
    entries: FxHashMap<(GroupName, Pid), Entry>,
}

impl EventReplay {
    /// Applies one event; a `Left` for a reference the replay does not
    /// hold, or metadata that does not follow from what it holds, is a
    /// violation.
    pub fn apply(&mut self, event: &Event) -> Result<(), Violation> {
        let no_change =
            |detail: String| Err(Violation::new("no event without a state change", detail));
        let wrong_meta =
            |detail: String| Err(Violation::new("event metadata follows the state", detail));
        if !event.metas.is_empty() && event.metas.len() != event.members.len() {
            return wrong_meta(format!(
                "{} metas for {} members",
                event.metas.len(),
                event.members.len()
            ));
        }
        if (event.kind == EventKind::Left) != event.reason.is_some() {
            return wrong_meta(format!(
                "{} event with reason {:?}",
                event.kind, event.reason
            ));
        }
        for (i, (pid, n)) in event.members.iter().enumerate() {
            let (meta, previous) = (event.meta(i), event.previous_meta(i));
            let key = (event.group.clone(), pid.clone());
            let (held, held_meta) = self.entries.get(&key).cloned().unwrap_or((0, None));
            let group = &event.group;
            match event.kind {
                EventKind::Joined => {
                    if previous != held_meta.as_ref() {
                        return wrong_meta(format!(
                            "{pid} joined {group:?} with previous {previous:?}, held {held_meta:?}"
                        ));
                    }
                    self.entries.insert(key, (held + n, meta.cloned()));
                }
                EventKind::Left => {
                    if held < *n || *n == 0 {
                        return no_change(format!(
                            "{pid} left {group:?} {n} times holding {held} joins"
                        ));
                    }
                    if meta != held_meta.as_ref() || previous.is_some() {
                        return wrong_meta(format!(
                            "{pid} left {group:?} with {meta:?} (previous {previous:?}), held {held_meta:?}"
                        ));
                    }
                    if held == *n {
                        self.entries.remove(&key);
                    } else {
                        self.entries.insert(key, (held - n, held_meta));
                    }
                }
                EventKind::Updated => {
                    if held == 0 || *n != 0 || meta == held_meta.as_ref() {
                        return no_change(format!(
                            "{pid} updated in {group:?} to {meta:?} holding {held} joins with {held_meta:?}"
                        ));
                    }
                    if previous != held_meta.as_ref() {
                        return wrong_meta(format!(
                            "{pid} updated in {group:?} with previous {previous:?}, held {held_meta:?}"
                        ));
                    }
                    self.entries.insert(key, (held, meta.cloned()));
                }
            }
        }
        Ok(())
    }

    /// The join count and metadata the replay holds for `(group, pid)`.
    pub fn entry(&self, group: &GroupName, pid: &Pid) -> Entry {
        self.entries
            .get(&(group.clone(), pid.clone()))
            .cloned()
            .unwrap_or((0, None))
    }

    /// The join count the replay holds for `(group, pid)`.
    pub fn count(&self, group: &GroupName, pid: &Pid) -> u32 {
        self.entry(group, pid).0
    }

    /// Checks the replay against the scope's whole state.
    pub fn check(&self, scope: &Scope) -> Result<(), Violation> {
        let replay: View = self
            .entries
            .iter()
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect();
        compare("event replay equals state", &replay, &view(scope))
    }
}

/// Checks that the events of one input moved each touched membership by
/// exactly its change of state (metadata included), in one direction only
/// when `one_way` (metadata updates aside).
pub fn check_events_of_input(
    before: &EventReplay,
    after: &EventReplay,
    events: &[Event],
    scope: &Scope,
    one_way: bool,
) -> Result<(), Violation> {
    let mut direction: FxHashMap<(&GroupName, &Pid), Option<EventKind>> = FxHashMap::default();
    for event in events {
        for (pid, _) in &event.members {
            let slot = direction.entry((&event.group, pid)).or_default();
            if event.kind == EventKind::Updated {
                continue;
            }
            if let Some(prev) = slot.replace(event.kind)
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
        let state = (
            scope.join_count(pid, group.as_str()),
            scope.meta_of(pid, group.as_str()),
        );
        if after.entry(group, pid) != state {
            return Err(Violation::new(
                "event replay equals state",
                format!(
                    "{pid} in {group:?}: events say {:?} (was {:?}), state says {state:?}",
                    after.entry(group, pid),
                    before.entry(group, pid)
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
            "holds {p} in {g:?} as {c:?}, expected {:?}",
            want.get(&(g.clone(), p.clone()))
        ),
        (None, Some(((g, p), c))) => format!("lacks {p} in {g:?} as {c:?}"),
        (None, None) => "views differ".to_owned(),
    };
    Err(Violation::new(
        invariant,
        format!("{detail} ({} vs {} memberships)", got.len(), want.len()),
    ))
}
