//! Helpers shared by the pg-net integration tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pg_core::{GroupName, NodeId};
use pg_net::{
    DevCa, Hello, NET_PROTOCOL_VERSION, NODE_SERVER_NAME, NetConfig, NetMessage, QuicTransport,
    TlsIdentity, wire,
};
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

/// The tag of the membership stream (see mesh.rs).
pub(crate) const STREAM_MEMBERSHIP: u8 = 0;

/// A handshaken connection to `addr` as node `name`.
pub(crate) async fn handshake(ca: &DevCa, name: &str, addr: SocketAddr) -> quinn::Connection {
    let identity = ca.issue(name).unwrap();
    let client = pg_net::client_config(&identity, &config("test", &[])).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(client);
    let conn = endpoint
        .connect(addr, NODE_SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let hello = NetMessage::Hello(Hello {
        version: NET_PROTOCOL_VERSION,
        cluster: "test".into(),
        node: NodeId::parse_name(name, 1).unwrap(),
        listen: None,
    });
    let mut buf = Vec::new();
    wire::encode_into(&hello, &mut buf);
    send.write_all(&buf).await.unwrap();
    let _ = send.finish();
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix).await.unwrap();
    let len = wire::body_len(prefix, 1 << 20).unwrap();
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.unwrap();
    assert!(matches!(wire::decode(&body), Ok(NetMessage::Welcome(_))));
    conn
}

/// Opens a membership stream on `conn` and writes `bytes` to it.
pub(crate) async fn send_raw(conn: &quinn::Connection, bytes: &[u8]) -> quinn::SendStream {
    let mut stream = conn.open_uni().await.unwrap();
    stream.write_all(&[STREAM_MEMBERSHIP]).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}
