//! Direct messages: `send` to any process, local or remote.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{cluster, eventually, node_on};
use pg_core::NodeId;
use pg_runtime::{Error, ErrorKind, MemoryNetwork, NodeOptions, ScopeOptions};

#[tokio::test(start_paused = true)]
async fn local_send_with_topics_and_typed_payloads() {
    let node = node_on(&MemoryNetwork::new(), "n", NodeOptions::default());
    let a = node.spawn();
    let mut b = node.spawn();
    let mut jobs = b.listen("job");
    a.send(b.pid(), "hello", Bytes::from_static(b"hi")).unwrap();
    a.send_typed(b.pid(), "job", &(7u32, "seven".to_string()))
        .unwrap();
    let m = b.recv().await.unwrap();
    assert_eq!(
        (&m.from, &*m.topic, &m.payload[..]),
        (a.pid(), "hello", &b"hi"[..])
    );
    let job = jobs.recv().await.unwrap();
    assert_eq!(
        job.decode::<(u32, String)>().unwrap(),
        (7, "seven".to_string())
    );
    assert!(
        job.decode::<(u64, u64, u64)>().is_err(),
        "a wrong type is an error, not a panic"
    );
    assert_eq!(node.deliveries().delivered, 2);
}

#[test]
fn messages_from_one_sender_to_one_receiver_keep_their_order() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let node = node_on(
            &MemoryNetwork::new(),
            "n",
            NodeOptions {
                mailbox_capacity: 1 << 16,
                ..NodeOptions::default()
            },
        );
        let mut receivers: Vec<_> = (0..3).map(|_| node.spawn()).collect();
        let targets: Vec<_> = receivers.iter().map(|r| r.pid().clone()).collect();
        let senders: Vec<_> = (0..4)
            .map(|_| {
                let (sender, targets) = (node.spawn(), targets.clone());
                std::thread::spawn(move || {
                    for seq in 0..2000u32 {
                        for t in &targets {
                            sender
                                .send(t, "seq", Bytes::copy_from_slice(&seq.to_le_bytes()))
                                .unwrap();
                        }
                    }
                    sender
                })
            })
            .collect();
        let senders: Vec<_> = senders.into_iter().map(|s| s.join().unwrap()).collect();
        for r in &mut receivers {
            let mut last: std::collections::HashMap<pg_core::Pid, u32> = Default::default();
            for _ in 0..(4 * 2000) {
                let m = r.recv().await.unwrap();
                let seq = u32::from_le_bytes(m.payload[..].try_into().unwrap());
                if let Some(prev) = last.insert(m.from.clone(), seq) {
                    assert_eq!(seq, prev + 1, "out of order from {}", m.from);
                }
            }
        }
        assert_eq!(node.deliveries().failed, 0);
        drop(senders);
    });
}

#[tokio::test(start_paused = true)]
async fn sends_to_dead_unknown_or_old_pids_are_dropped_and_counted() {
    let node = node_on(&MemoryNetwork::new(), "n", NodeOptions::default());
    let a = node.spawn();
    let gone = node.spawn();
    let gone_pid = gone.pid().clone();
    drop(gone);
    let never = node.id().pid(99_999).unwrap();
    let old_run = NodeId::parse_name("n", 0).unwrap().pid(1).unwrap();
    let nowhere = NodeId::parse_name("elsewhere", 1).unwrap().pid(1).unwrap();
    for to in [&gone_pid, &never, &old_run, &nowhere] {
        a.send(to, "t", Bytes::new()).unwrap();
    }
    assert_eq!(node.deliveries().failed, 4);
}

#[tokio::test(start_paused = true)]
async fn bad_input_is_refused_at_the_sender() {
    let node = node_on(
        &MemoryNetwork::new(),
        "n",
        NodeOptions {
            max_payload_size: 10,
            ..NodeOptions::default()
        },
    );
    let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
    let a = node.spawn();
    let b = node.spawn();
    let err = a.send(b.pid(), "t", Bytes::from(vec![0; 11])).unwrap_err();
    assert_eq!(err, Error::PayloadTooLarge { size: 11, max: 10 });
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert_eq!(
        a.send(b.pid(), "", Bytes::new()).unwrap_err(),
        Error::EmptyTopic
    );
    let err = scope
        .broadcast(a.pid(), "g", "t", Bytes::from(vec![0; 11]))
        .unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { .. }));
    a.send(b.pid(), "t", Bytes::from(vec![0; 10])).unwrap();
    assert_eq!(node.deliveries().failed, 0);
}

#[tokio::test(start_paused = true)]
async fn a_full_mailbox_waits_at_most_the_delivery_timeout() {
    let options = NodeOptions {
        mailbox_capacity: 1,
        delivery_timeout: Duration::from_millis(50),
        ..NodeOptions::default()
    };
    let node = node_on(&MemoryNetwork::new(), "n", options);
    let a = node.spawn();
    let mut b = node.spawn();
    for i in 0..3u8 {
        a.send(b.pid(), "t", Bytes::from(vec![i])).unwrap();
    }
    eventually("two timed out", || node.deliveries().failed == 2).await;
    assert_eq!(b.recv().await.unwrap().payload[0], 0);
    assert!(b.try_recv().is_none());
}

#[tokio::test(start_paused = true)]
async fn remote_sends_in_memory_and_to_a_down_node() {
    let (net, nodes, _scopes) = cluster(ScopeOptions::default()).await;
    let a = nodes[0].spawn();
    let mut c = nodes[2].spawn();
    for i in 0..100u8 {
        a.send(c.pid(), "t", Bytes::from(vec![i])).unwrap();
    }
    for i in 0..100u8 {
        assert_eq!(
            c.recv().await.unwrap().payload[0],
            i,
            "in order across nodes"
        );
    }
    net.partition(&[&nodes[2].id().name]);
    eventually("c seen down", || nodes[0].peers().len() == 1).await;
    a.send(c.pid(), "t", Bytes::new()).unwrap();
    assert_eq!(
        nodes[0].deliveries().failed,
        1,
        "dropped and counted, not an error"
    );
}
