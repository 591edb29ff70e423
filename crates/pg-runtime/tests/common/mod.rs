//! Shared helpers of the runtime tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use pg_core::{GroupName, NodeId};
use pg_runtime::{MemoryNetwork, Node, NodeOptions, Scope, ScopeOptions};

pub(crate) fn g(name: &str) -> GroupName {
    GroupName::new(name).unwrap()
}

pub(crate) fn node_on(net: &MemoryNetwork, name: &str, options: NodeOptions) -> Node {
    let id = NodeId::parse_name(name, 1).unwrap();
    Node::start_as(id.clone(), net.transport(&id), options).unwrap()
}

/// Three nodes a, b, c on one network, each with scope "s" open.
pub(crate) async fn cluster(options: ScopeOptions) -> (MemoryNetwork, Vec<Node>, Vec<Scope>) {
    let net = MemoryNetwork::new();
    let nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|n| node_on(&net, n, NodeOptions::default()))
        .collect();
    let scopes: Vec<Scope> = nodes
        .iter()
        .map(|n| n.open_scope("s", options.clone()).unwrap())
        .collect();
    eventually("a full mesh", || nodes.iter().all(|n| n.peers().len() == 2)).await;
    (net, nodes, scopes)
}

/// Waits (in the test's virtual time) until `done` holds, or fails after
/// 10 virtual seconds.
pub(crate) async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("timed out waiting for {what}");
}
