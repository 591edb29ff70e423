//! A hostile peer: a client with a valid certificate of the cluster that
//! speaks the wire format, but lies. Each attack is refused and counted,
//! costs the node no more memory than the bytes really sent, and the node
//! keeps serving its other peers.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use std::net::SocketAddr;

use common::{LIMIT, config, eventually, g, handshake, send_raw, start};
use pg_core::{Frame, NodeId, NodeName, SyncGroup};
use pg_net::{DevCa, NetMessage, wire};

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_is_refused_counted_and_does_not_hurt_the_others() {
    let ca = DevCa::generate("test").unwrap();
    let a = start("a", &ca.issue("a").unwrap(), config("test", &[]));
    let b = start(
        "b",
        &ca.issue("b").unwrap(),
        config("test", &[a.transport.local_addr()]),
    );
    eventually("a and b connected", LIMIT, || a.node.peers().len() == 1).await;
    let addr = a.transport.local_addr();
    let still_serving = |round: u64| {
        let (b_scope, a_scope) = (b.scope.clone(), a.scope.clone());
        let p = b.node.spawn();
        let group = g(&format!("alive-{round}"));
        b_scope.join(p.pid(), std::slice::from_ref(&group)).unwrap();
        async move {
            eventually("a still hears from b", LIMIT, || {
                a_scope.members(group.as_str()).len() == 1
            })
            .await;
            drop(p);
        }
    };

    // 1. A length prefix of u32::MAX: refused before any allocation.
    let conn = handshake(&ca, "h", addr).await;
    let _stream = send_raw(&conn, &u32::MAX.to_le_bytes()).await;
    let reason = conn.closed().await;
    assert!(reason.to_string().contains("limit"), "closed: {reason}");
    assert_eq!(a.transport.stats().oversized, 1);
    still_serving(1).await;

    // 2. A flood of peer addresses: refused while decoding (one list over
    // the bound), nothing dialed.
    let conn = handshake(&ca, "h", addr).await;
    let flood: Vec<(NodeName, SocketAddr)> = (0..(wire::MAX_PEERS as u32 * 4))
        .map(|i| {
            let name = NodeName::new(&format!("fake{i}")).unwrap();
            (
                name,
                SocketAddr::from(([10, 9, (i >> 8) as u8, i as u8], 9)),
            )
        })
        .collect();
    let mut buf = Vec::new();
    wire::encode_data_into(0, &NetMessage::Peers { peers: flood }, &mut buf);
    let _stream = send_raw(&conn, &buf).await;
    conn.closed().await;
    assert_eq!(a.transport.stats().malformed, 1);
    eventually("the hostile peer gone, b kept", LIMIT, || {
        a.node.peers().len() == 1
    })
    .await;
    still_serving(2).await;

    // 3. Many streams each announcing the largest allowed frame and never
    // sending it: reading costs what arrives, not what is announced.
    let conn = handshake(&ca, "h", addr).await;
    let max = config("test", &[]).max_frame_size as u32;
    let before = resident_bytes();
    let mut streams = Vec::new();
    for _ in 0..16 {
        streams.push(send_raw(&conn, &max.to_le_bytes()).await);
    }
    still_serving(3).await;
    let grown = resident_bytes().saturating_sub(before);
    assert!(
        grown < 32 << 20,
        "16 announced frames of {max} bytes grew the node by {grown} bytes"
    );
    conn.close(0u32.into(), b"done");
    drop(streams);

    // 4. A join count far over max_join_count, in a well-formed sync: a
    // protocol violation, refused whole (never expanded into a member
    // list), and the link closed.
    let conn = handshake(&ca, "h", addr).await;
    let h = NodeId::parse_name("h", 1).unwrap();
    eventually("the hostile peer is up in the scope", LIMIT, || {
        a.node.peers().contains(&h)
    })
    .await;
    let sync = Frame::Sync {
        seq: 1,
        known: Some(0),
        groups: vec![SyncGroup {
            group: g("victim"),
            members: vec![(1, u32::MAX)],
            metas: Vec::new(),
        }],
        registrations: Vec::new(),
    };
    let mut buf = Vec::new();
    // It says it runs the scope (a node's frames for a scope count only
    // after that), then sends the sync.
    let announce = NetMessage::Scopes {
        running: vec!["s".into()],
    };
    wire::encode_data_into(0, &announce, &mut buf);
    let message = NetMessage::Scope {
        scope: "s".into(),
        frame: sync.encode().into(),
    };
    wire::encode_data_into(1, &message, &mut buf);
    let _stream = send_raw(&conn, &buf).await;
    let reason = conn.closed().await;
    assert!(
        reason.to_string().contains("max_join_count"),
        "closed: {reason}"
    );
    assert_eq!(a.scope.protocol_stats().violations, 1);
    assert!(a.scope.members("victim").is_empty());
    still_serving(4).await;

    // The honest peer stays; nothing was dialed for the flood.
    eventually("only b left", LIMIT, || a.node.peers().len() == 1).await;
    assert_eq!(b.node.peers().len(), 1);
}

/// Connections that finish TLS and then say nothing each hold a handshake
/// slot until the protocol timeout: past the bound the node refuses more
/// (counted), keeps its links, and takes connections again once they go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_silent_connections_is_refused_past_the_bound() {
    let ca = DevCa::generate("test").unwrap();
    let mut patient = config("test", &[]);
    // Long enough that no silent connection times out during the test.
    patient.protocol_timeout = std::time::Duration::from_secs(60);
    let a = start("a", &ca.issue("a").unwrap(), patient);
    let b = start(
        "b",
        &ca.issue("b").unwrap(),
        config("test", &[a.transport.local_addr()]),
    );
    eventually("a and b connected", LIMIT, || a.node.peers().len() == 1).await;
    let addr = a.transport.local_addr();
    let identity = ca.issue("h").unwrap();
    let client = pg_net::client_config(&identity, &config("test", &[])).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(client);
    // In waves, so that no handshake times out on a busy test machine.
    let (mut silent, mut refused) = (Vec::new(), 0u64);
    for _ in 0..10 {
        let mut attempts = tokio::task::JoinSet::new();
        for _ in 0..30 {
            attempts.spawn(endpoint.connect(addr, pg_net::NODE_SERVER_NAME).unwrap());
        }
        while let Some(outcome) = attempts.join_next().await {
            match outcome.unwrap() {
                Ok(conn) => silent.push(conn),
                Err(e) => {
                    assert!(
                        matches!(e, quinn::ConnectionError::ConnectionClosed(_)),
                        "{e}"
                    );
                    refused += 1;
                }
            }
        }
    }
    assert!(
        silent.len() <= 256 && refused >= 300 - 256,
        "{} held, {refused} refused",
        silent.len()
    );
    // At least ours (b may have redialled into a full house too).
    assert!(a.transport.stats().handshakes_refused_busy >= refused);
    // The honest link is untouched.
    let p = b.node.spawn();
    b.scope.join(p.pid(), &[g("during-flood")]).unwrap();
    eventually("a still hears from b", LIMIT, || {
        a.scope.members("during-flood").len() == 1
    })
    .await;
    // Once the silent ones leave, their slots are free again.
    for conn in silent.drain(..) {
        conn.close(0u32.into(), b"bye");
    }
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match endpoint
            .connect(addr, pg_net::NODE_SERVER_NAME)
            .unwrap()
            .await
        {
            Ok(_) => break,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "still refused after the flood left: {e}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(b.node.peers().len(), 1);
}
