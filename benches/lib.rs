//! Shared set-up of the pg-rs criterion benchmarks.

use std::time::Instant;

use pg_core::{GroupName, NodeId, Pid, Scope, ScopeConfig};

/// A node id for benchmarks.
pub fn node(name: &str) -> NodeId {
    // Invariant: benchmark names are valid node names.
    NodeId::parse_name(name, 1).expect("valid node name")
}

/// A group name for benchmarks.
pub fn group(name: &str) -> GroupName {
    // Invariant: benchmark group names are non-empty and short.
    GroupName::new(name).expect("valid group name")
}

/// Process `serial` of `node`.
pub fn pid(node: &NodeId, serial: u64) -> Pid {
    // Invariant: benchmark serials are far below the 48-bit limit.
    node.pid(serial).expect("serial in range")
}

/// A fresh scope for `node` whose start-up discovery has run.
pub fn scope(node: &NodeId) -> (Scope, Instant) {
    let now = Instant::now();
    let mut scope = Scope::new(node.clone(), ScopeConfig::default(), now);
    scope.handle_timeout(now);
    (scope, now)
}

/// Drops every pending event (what a runtime with no subscriber does).
pub fn drain_events(scope: &mut Scope) {
    while scope.poll_event().is_some() {}
}
