//! Helpers shared by the pg-core integration tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::Instant;

use pg_core::{
    Event, EventKind, Frame, GroupName, LeaveReason, NodeId, Pid, Scope, ScopeConfig, Transmit,
};

pub(crate) fn g(name: &str) -> GroupName {
    GroupName::new(name).unwrap()
}

pub(crate) fn node(name: &str, inc: u64) -> NodeId {
    NodeId::parse_name(name, inc).unwrap()
}

pub(crate) fn scope_with(name: &str, config: ScopeConfig) -> (Scope, Instant) {
    let now = Instant::now();
    let mut s = Scope::new(node(name, 1), config, now);
    s.handle_timeout(now); // start-up discovery, with no peer yet
    (s, now)
}

pub(crate) fn scope(name: &str) -> (Scope, Instant) {
    scope_with(name, ScopeConfig::default())
}

pub(crate) fn events(s: &mut Scope) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

pub(crate) fn transmits(s: &mut Scope) -> Vec<Transmit> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

/// Every frame `s` has to send at `now`, a sync's later pieces included
/// (the steps that build them are due at once).
pub(crate) fn sent(s: &mut Scope, now: Instant) -> Vec<Transmit> {
    let mut out = transmits(s);
    while s.poll_timeout().is_some_and(|at| at <= now) {
        s.handle_timeout(now);
        out.extend(transmits(s));
    }
    out
}

pub(crate) fn event(kind: EventKind, group: &str, pids: &[&Pid]) -> Event {
    let mut members: Vec<(Pid, u32)> = Vec::new();
    for &pid in pids {
        match members.last_mut() {
            Some((p, c)) if p == pid => *c += 1,
            _ => members.push((pid.clone(), 1)),
        }
    }
    Event {
        kind,
        group: g(group),
        members,
        metas: Vec::new(),
        reason: None,
    }
}

/// A left event for `pids`, for `reason`.
pub(crate) fn left(group: &str, pids: &[&Pid], reason: LeaveReason) -> Event {
    Event {
        reason: Some(reason),
        ..event(EventKind::Left, group, pids)
    }
}

/// Delivers every frame between the scopes until none is left.
pub(crate) fn pump(scopes: &mut [&mut Scope], now: Instant) {
    loop {
        let mut moved = false;
        for i in 0..scopes.len() {
            for t in sent(scopes[i], now) {
                let from = scopes[i].local_node().clone();
                if let Some(to) = scopes.iter_mut().find(|s| *s.local_node() == t.to) {
                    let frame = Frame::decode(&t.frame.encode()).unwrap();
                    to.handle_frame(&from, frame, now);
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
}

pub(crate) fn connect(a: &mut Scope, b: &mut Scope, now: Instant) {
    a.handle_node_up(b.local_node().clone());
    b.handle_node_up(a.local_node().clone());
    pump(&mut [a, b], now);
}
