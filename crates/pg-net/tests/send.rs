//! Direct messages across three nodes over real QUIC.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::{LIMIT, config, eventually, mesh_of_three, start_with};
use pg_net::DevCa;
use pg_runtime::{Error, NodeOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_and_topics_across_nodes() {
    let ca = DevCa::generate("test").unwrap();
    let nodes = mesh_of_three(&ca).await;
    let a = nodes[0].node.spawn();
    let mut c = nodes[2].node.spawn();
    let mut jobs = c.listen("job");
    a.send(c.pid(), "hello", Bytes::from_static(b"hi")).unwrap();
    a.send_typed(c.pid(), "job", &vec![1u16, 2, 3]).unwrap();
    let m = tokio::time::timeout(LIMIT, c.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (&m.from, &*m.topic, &m.payload[..]),
        (a.pid(), "hello", &b"hi"[..])
    );
    let job = tokio::time::timeout(LIMIT, jobs.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.decode::<Vec<u16>>().unwrap(), vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_pair_order_holds_under_concurrency() {
    let ca = DevCa::generate("test").unwrap();
    let nodes = mesh_of_three(&ca).await;
    let mut receivers: Vec<_> = (0..3).map(|_| nodes[2].node.spawn()).collect();
    let targets: Vec<_> = receivers.iter().map(|r| r.pid().clone()).collect();
    const N: u32 = 1000;
    // Senders on two nodes, in parallel tasks.
    let tasks: Vec<_> = [0usize, 0, 1, 1]
        .into_iter()
        .map(|n| {
            let sender = nodes[n].node.spawn();
            let targets = targets.clone();
            tokio::spawn(async move {
                for seq in 0..N {
                    for t in &targets {
                        sender
                            .send(t, "seq", Bytes::copy_from_slice(&seq.to_le_bytes()))
                            .unwrap();
                    }
                    if seq % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                sender
            })
        })
        .collect();
    let mut senders = Vec::new();
    for t in tasks {
        senders.push(t.await.unwrap());
    }
    for r in &mut receivers {
        let mut last: HashMap<pg_core::Pid, u32> = HashMap::new();
        for _ in 0..(4 * N) {
            let m = tokio::time::timeout(LIMIT, r.recv())
                .await
                .unwrap()
                .unwrap();
            let seq = u32::from_le_bytes(m.payload[..].try_into().unwrap());
            let expected = last.get(&m.from).map_or(0, |p| p + 1);
            assert_eq!(seq, expected, "out of order from {}", m.from);
            last.insert(m.from.clone(), seq);
        }
        assert_eq!(last.len(), 4);
    }
    assert!(nodes.iter().all(|n| n.node.deliveries().failed == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_pids_down_nodes_oversized_and_full_mailboxes() {
    let ca = DevCa::generate("test").unwrap();
    let nodes = mesh_of_three(&ca).await;
    let a = nodes[0].node.spawn();
    // A dead process on another node: dropped and counted there.
    let gone = nodes[1].node.spawn();
    let gone_pid = gone.pid().clone();
    drop(gone);
    a.send(&gone_pid, "t", Bytes::new()).unwrap();
    eventually("counted on b", LIMIT, || {
        nodes[1].node.deliveries().failed == 1
    })
    .await;
    // A node that went down: dropped and counted at the sender.
    let c = nodes[2].node.spawn();
    let c_pid = c.pid().clone();
    nodes[2].node.shutdown();
    eventually("c down", LIMIT, || nodes[0].node.peers().len() == 1).await;
    a.send(&c_pid, "t", Bytes::new()).unwrap();
    assert_eq!(nodes[0].node.deliveries().failed, 1);
    // Oversized: refused at the sender.
    let big = Bytes::from(vec![0u8; (8 << 20) + 1]);
    assert!(matches!(
        a.send(&gone_pid, "t", big),
        Err(Error::PayloadTooLarge { .. })
    ));
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_remote_mailbox_drops_after_the_timeout_only_for_that_receiver() {
    let ca = DevCa::generate("test").unwrap();
    let a = start_with(
        "a",
        &ca.issue("a").unwrap(),
        config("test", &[]),
        NodeOptions::default(),
    );
    let small = NodeOptions {
        mailbox_capacity: 1,
        delivery_timeout: Duration::from_millis(50),
        ..NodeOptions::default()
    };
    let b = start_with(
        "b",
        &ca.issue("b").unwrap(),
        config("test", &[a.transport.local_addr()]),
        small,
    );
    eventually("connected", LIMIT, || a.node.peers().len() == 1).await;
    let sender = a.node.spawn();
    let stuck = b.node.spawn();
    let mut live = b.node.spawn();
    for i in 0..3u8 {
        sender.send(stuck.pid(), "t", Bytes::from(vec![i])).unwrap();
        sender.send(live.pid(), "t", Bytes::from(vec![i])).unwrap();
        assert_eq!(
            tokio::time::timeout(LIMIT, live.recv())
                .await
                .unwrap()
                .unwrap()
                .payload[0],
            i
        );
    }
    eventually("the stuck mailbox's overflow timed out", LIMIT, || {
        b.node.deliveries().failed == 2
    })
    .await;
    // The receiver can learn what it missed; the other lost nothing.
    assert_eq!(stuck.dropped(), 2);
    assert_eq!(live.dropped(), 0);
    drop(stuck);
}
