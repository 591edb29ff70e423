//! The mesh over real QUIC on 127.0.0.1: membership, broadcast, failure
//! detection, restarts, refused certificates and clusters, junk input.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pg_core::NodeId;
use pg_net::wire::{self, NetMessage};
use pg_net::{DevCa, NODE_SERVER_NAME, QuicTransport};
use pg_runtime::ScopeOptions;

mod common;
use common::{LIMIT, config, eventually, g, handshake, mesh_of_three, send_raw, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_and_broadcast_over_quic() {
    let ca = DevCa::generate("test").unwrap();
    let nodes = mesh_of_three(&ca).await;
    let mut members: Vec<_> = nodes.iter().map(|n| n.node.spawn()).collect();
    for (n, m) in nodes.iter().zip(&members) {
        n.scope.join(m.pid(), &[g("w"), g("w")]).unwrap();
    }
    eventually("every node sees every member, twice each", LIMIT, || {
        nodes.iter().all(|n| {
            let w = n.scope.members("w");
            (w.len(), w.distinct_len()) == (6, 3)
        })
    })
    .await;
    let sender = nodes[2].node.spawn();
    let payload = Bytes::from(vec![7u8; 100_000]);
    assert_eq!(
        nodes[2]
            .scope
            .broadcast(sender.pid(), "w", "big", payload.clone())
            .unwrap(),
        3
    );
    for m in &mut members {
        let msg = tokio::time::timeout(LIMIT, m.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (&msg.from, &*msg.topic, msg.payload.len()),
            (sender.pid(), "big", 100_000)
        );
    }
    nodes[0].scope.leave(members[0].pid(), &[g("w")]).unwrap();
    drop(members.remove(0));
    eventually("the ended process is gone everywhere", LIMIT, || {
        nodes.iter().all(|n| n.scope.members("w").len() == 4)
    })
    .await;
    // A second scope shares the same connections and stays separate.
    let other: Vec<_> = nodes
        .iter()
        .map(|n| n.node.open_scope("other", ScopeOptions::default()).unwrap())
        .collect();
    let q = nodes[1].node.spawn();
    other[1].join(q.pid(), &[g("w")]).unwrap();
    eventually("the second scope converges", LIMIT, || {
        other.iter().all(|s| s.members("w").len() == 1)
    })
    .await;
    assert!(
        nodes.iter().all(|n| n.scope.members("w").len() == 4),
        "scopes do not mix"
    );
    assert!(
        nodes.iter().all(|n| n.transport.connected().len() == 2),
        "one connection per peer"
    );
    let stats = nodes[2].transport.stats();
    assert!(
        stats.messages_sent > 0 && stats.malformed == 0 && stats.handshakes_failed == 0,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_is_cleaned_up_at_once() {
    let ca = DevCa::generate("test").unwrap();
    let nodes = mesh_of_three(&ca).await;
    let p = nodes[2].node.spawn();
    nodes[2].scope.join(p.pid(), &[g("w")]).unwrap();
    eventually("joined everywhere", LIMIT, || {
        nodes[0].scope.members("w").len() == 1
    })
    .await;
    nodes[2].node.shutdown();
    let took = eventually("cleaned up", LIMIT, || {
        nodes[0].scope.members("w").is_empty() && nodes[1].scope.members("w").is_empty()
    })
    .await;
    eprintln!("graceful cleanup took {took:?}");
    assert!(
        took < Duration::from_millis(500),
        "graceful cleanup took {took:?}"
    );
}

#[test]
fn an_abruptly_dropped_node_is_cleaned_up_within_the_idle_timeout_and_restarts() {
    let ca = DevCa::generate("test").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let nodes = rt.block_on(async {
        let a = start("a", &ca.issue("a").unwrap(), config("test", &[]));
        let b = start(
            "b",
            &ca.issue("b").unwrap(),
            config("test", &[a.transport.local_addr()]),
        );
        eventually("connected", LIMIT, || a.node.peers().len() == 1).await;
        vec![a, b]
    });
    let seed = nodes[0].transport.local_addr();
    // c lives on a runtime of its own, so it can die without a word.
    let c_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let c = c_rt.block_on(async {
        let c = start("c", &ca.issue("c").unwrap(), config("test", &[seed]));
        let p = c.node.spawn();
        c.scope.join(p.pid(), &[g("w")]).unwrap();
        std::mem::forget(p);
        c
    });
    rt.block_on(eventually("c's member seen", LIMIT, || {
        nodes.iter().all(|n| n.scope.members("w").len() == 1)
    }));
    // SIGKILL-like: c's tasks stop, its endpoint never says goodbye.
    std::mem::forget(c);
    c_rt.shutdown_background();
    let took = rt.block_on(eventually("c's member gone", LIMIT, || {
        nodes.iter().all(|n| n.scope.members("w").is_empty())
    }));
    // Detection is bounded by idle_timeout + keep_alive (950 ms by default);
    // the margin absorbs a loaded CI machine.
    eprintln!("failure detection took {took:?} (bound 950 ms)");
    assert!(
        took < Duration::from_millis(1500),
        "failure detection took {took:?}"
    );
    // c restarts as a new run and re-syncs.
    rt.block_on(async {
        let c2 = start("c", &ca.issue("c").unwrap(), config("test", &[seed]));
        let q = c2.node.spawn();
        c2.scope.join(q.pid(), &[g("w")]).unwrap();
        let a_pid = nodes[0].node.spawn();
        nodes[0].scope.join(a_pid.pid(), &[g("w")]).unwrap();
        eventually("the new run's member seen everywhere", LIMIT, || {
            nodes
                .iter()
                .all(|n| n.scope.members("w").to_vec().contains(q.pid()))
        })
        .await;
        eventually("the new run learnt the cluster", LIMIT, || {
            c2.scope.members("w").len() == 2
        })
        .await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_never_joins() {
    let ca = DevCa::generate("test").unwrap();
    let rogue_ca = DevCa::generate("rogue").unwrap();
    let a = start("a", &ca.issue("a").unwrap(), config("test", &[]));
    let rogue = start(
        "r",
        &rogue_ca.issue("r").unwrap(),
        config("test", &[a.transport.local_addr()]),
    );
    // Refused, and refused again on the redial: it never gets in.
    eventually("refused handshakes, twice", LIMIT, || {
        a.transport.stats().handshakes_failed >= 2 && rogue.transport.stats().handshakes_failed >= 2
    })
    .await;
    assert!(a.node.peers().is_empty() && rogue.node.peers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused() {
    let ca = DevCa::generate("test").unwrap();
    let a = start("a", &ca.issue("a").unwrap(), config("test", &[]));
    // A client that trusts the CA but presents no certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.certificate()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![pg_net::ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    let result = async {
        let conn = endpoint
            .connect(a.transport.local_addr(), NODE_SERVER_NAME)?
            .await?;
        // TLS 1.3: the refusal shows on the first stream operation.
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(b"hello?").await?;
        let mut buf = [0u8; 1];
        recv.read_exact(&mut buf).await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    assert!(
        result.is_err(),
        "a client without a certificate got through"
    );
    eventually("the refusal is counted", LIMIT, || {
        a.transport.stats().handshakes_failed > 0
    })
    .await;
    assert!(a.node.peers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cannot_pose_as_another_with_its_own_certificate() {
    let ca = DevCa::generate("test").unwrap();
    let a = start("a", &ca.issue("a").unwrap(), config("test", &[]));
    // Holds b's certificate, claims to be "a" (a newer run, to take over).
    let impostor = start(
        "a",
        &ca.issue("b").unwrap(),
        config("test", &[a.transport.local_addr()]),
    );
    eventually("rejected, twice", LIMIT, || {
        a.transport.stats().rejected >= 2
    })
    .await;
    assert!(a.node.peers().is_empty() && impostor.node.peers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_cluster_is_rejected_with_a_reason() {
    let ca = DevCa::generate("test").unwrap();
    let a = start("a", &ca.issue("a").unwrap(), config("prod", &[]));
    let b = start(
        "b",
        &ca.issue("b").unwrap(),
        config("staging", &[a.transport.local_addr()]),
    );
    eventually("rejected, twice", LIMIT, || {
        a.transport.stats().rejected >= 2
    })
    .await;
    assert!(a.node.peers().is_empty() && b.node.peers().is_empty());
}

/// A client with a valid certificate that completes the hello, then sends
/// `junk` on a membership stream.
async fn misbehave(ca: &DevCa, target: SocketAddr, junk: &[u8]) {
    let conn = handshake(ca, "junk", target).await;
    let mut stream = send_raw(&conn, junk).await;
    let _ = stream.finish();
    // The node closes the connection on the bad input.
    let reason = tokio::time::timeout(LIMIT, conn.closed()).await.unwrap();
    assert!(
        matches!(reason, quinn::ConnectionError::ApplicationClosed(_)),
        "{reason:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_and_oversized_frames_close_the_connection_without_harm() {
    let ca = DevCa::generate("test").unwrap();
    let nodes = mesh_of_three(&ca).await;
    let target = nodes[0].transport.local_addr();
    // Garbage after a plausible length.
    let mut junk = 8u32.to_le_bytes().to_vec();
    junk.extend_from_slice(&[0xff; 8]);
    misbehave(&ca, target, &junk).await;
    eventually("malformed counted", LIMIT, || {
        nodes[0].transport.stats().malformed >= 1
    })
    .await;
    // A length far over the limit.
    misbehave(&ca, target, &u32::MAX.to_le_bytes()).await;
    eventually("oversized counted", LIMIT, || {
        nodes[0].transport.stats().oversized >= 1
    })
    .await;
    // A well-formed message carrying a scope frame that is not one.
    let mut bad_frame = Vec::new();
    wire::encode_data_into(
        0,
        &NetMessage::Scope {
            scope: "s".into(),
            frame: Bytes::from_static(&[1, 2, 3]),
        },
        &mut bad_frame,
    );
    misbehave(&ca, target, &bad_frame).await;
    // A payload claiming to come from a process of another node.
    let mut forged = Vec::new();
    let other = nodes[1].node.spawn();
    wire::encode_data_into(
        0,
        &NetMessage::Deliver {
            scope: None,
            from: other.pid().clone(),
            to: vec![1],
            topic: "t".into(),
            payload: Bytes::new(),
        },
        &mut forged,
    );
    misbehave(&ca, target, &forged).await;
    // The mesh is unharmed.
    let p = nodes[1].node.spawn();
    nodes[1].scope.join(p.pid(), &[g("after")]).unwrap();
    eventually("still converging", LIMIT, || {
        nodes[0].scope.members("after").len() == 1
    })
    .await;
    assert_eq!(nodes[0].node.peers().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_partitions_and_heals() {
    let ca = DevCa::generate("test").unwrap();
    let nodes = mesh_of_three(&ca).await;
    let procs: Vec<_> = nodes.iter().map(|n| n.node.spawn()).collect();
    for (n, p) in nodes.iter().zip(&procs) {
        n.scope.join(p.pid(), &[g("all")]).unwrap();
    }
    eventually("converged", LIMIT, || {
        nodes.iter().all(|n| n.scope.members("all").len() == 3)
    })
    .await;
    // Cut c off from a and b, on both sides.
    let c = nodes[2].node.id().name.clone();
    for n in &nodes[..2] {
        n.transport.block(&c);
        nodes[2].transport.block(&n.node.id().name);
    }
    eventually("each side sees only itself", LIMIT, || {
        nodes[0].scope.members("all").len() == 2 && nodes[2].scope.members("all").len() == 1
    })
    .await;
    // That nothing redials while blocked is the dial policy's rule,
    // tested in virtual time (tests/dial.rs); here the cut is complete.
    assert_eq!(nodes[2].node.peers().len(), 0, "c is cut off");
    for n in &nodes[..2] {
        n.transport.unblock(&c);
        nodes[2].transport.unblock(&n.node.id().name);
    }
    eventually("healed", LIMIT, || {
        nodes.iter().all(|n| n.scope.members("all").len() == 3)
    })
    .await;
}

/// A seed given as a DNS name is resolved and dialed; one that does not
/// resolve is retried in the background, never fatal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_names_are_resolved_and_a_bad_one_is_not_fatal() {
    let ca = DevCa::generate("test").unwrap();
    let a = start("a", &ca.issue("a").unwrap(), config("test", &[]));
    let mut named = config("test", &[]);
    named.seed_names = vec![
        "no-such-host.invalid:4700".to_owned(),
        format!("localhost:{}", a.transport.local_addr().port()),
    ];
    let b = start("b", &ca.issue("b").unwrap(), named);
    eventually("b found a through its name", LIMIT, || {
        b.node.peers().len() == 1 && a.node.peers().len() == 1
    })
    .await;
    let mut bad = config("test", &[]);
    bad.seed_names = vec!["no-port".to_owned()];
    let id = NodeId::parse_name("c", 1).unwrap();
    assert!(QuicTransport::bind(id, bad, &ca.issue("c").unwrap()).is_err());
}
