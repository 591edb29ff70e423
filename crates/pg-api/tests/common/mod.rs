//! Helpers shared by the pg-api integration tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pg_api::{DevCa, Node, ScopeOptions};

/// Three nodes `a`, `b`, `c` over QUIC + mutual TLS on loopback, each
/// running scope `app:pg`, seeded at `a`.
pub(crate) fn three_nodes() -> Vec<Node> {
    let ca = DevCa::generate("t").unwrap();
    let start = |name: &str, seeds: &[SocketAddr]| {
        Node::builder()
            .name(name)
            .listen("t", "127.0.0.1:0".parse().unwrap())
            .seeds(seeds)
            .tls(ca.issue(name).unwrap())
            .scope("app:pg", ScopeOptions::default())
            .start()
            .unwrap()
    };
    let a = start("a", &[]);
    let seed = [a.local_addr().unwrap()];
    let b = start("b", &seed);
    let c = start("c", &seed);
    vec![a, b, c]
}

/// Polls `done` until it holds; fails the test after 20 s.
pub(crate) async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
