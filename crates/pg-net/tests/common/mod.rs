//! Helpers shared by the pg-net integration tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pg_core::{GroupName, NodeId};
use pg_net::{DevCa, NetConfig, QuicTransport, TlsIdentity};
use pg_runtime::{Node, NodeOptions, Scope, ScopeOptions};

static INCARNATION: AtomicU64 = AtomicU64::new(1);

pub(crate) fn g(name: &str) -> GroupName {
    GroupName::new(name).unwrap()
}

pub(crate) fn config(cluster: &str, seeds: &[SocketAddr]) -> NetConfig {
    let mut c = NetConfig::new(cluster, "127.0.0.1:0".parse().unwrap());
    c.seeds = seeds.to_vec();
    c.retry_base_delay = Duration::from_millis(20);
    c.retry_max_delay = Duration::from_millis(200);
    c
}

pub(crate) struct TestNode {
    pub(crate) node: Node,
    pub(crate) transport: Arc<QuicTransport>,
    pub(crate) scope: Scope,
}

pub(crate) fn start(name: &str, identity: &TlsIdentity, config: NetConfig) -> TestNode {
    start_with(name, identity, config, NodeOptions::default())
}

pub(crate) fn start_with(
    name: &str,
    identity: &TlsIdentity,
    config: NetConfig,
    options: NodeOptions,
) -> TestNode {
    let id = NodeId::parse_name(name, INCARNATION.fetch_add(1, Ordering::Relaxed)).unwrap();
    let transport = QuicTransport::bind(id.clone(), config, identity).unwrap();
    let node = Node::start_as(id, Arc::clone(&transport) as _, options).unwrap();
    let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
    TestNode {
        node,
        transport,
        scope,
    }
}

/// Waits in real time (QUIC has no virtual clock) until `done`, or fails.
pub(crate) async fn eventually(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

pub(crate) const LIMIT: Duration = Duration::from_secs(10);

pub(crate) async fn mesh_of_three(ca: &DevCa) -> Vec<TestNode> {
    let a = start("a", &ca.issue("a").unwrap(), config("test", &[]));
    let seed = [a.transport.local_addr()];
    let b = start("b", &ca.issue("b").unwrap(), config("test", &seed));
    let c = start("c", &ca.issue("c").unwrap(), config("test", &seed));
    let nodes = vec![a, b, c];
    eventually("a full mesh from one seed", LIMIT, || {
        nodes.iter().all(|n| n.node.peers().len() == 2)
    })
    .await;
    nodes
}
