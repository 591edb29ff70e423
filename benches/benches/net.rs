//! Two nodes over QUIC + mutual TLS on 127.0.0.1, in one process: payload
//! messages per second (broadcasts to one remote member, each one message
//! on the wire) and membership deltas per second (joins seen by the peer).
//! Prints one JSON line per measurement.

// A benchmark whose set-up fails must stop loudly.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pg_core::{GroupName, NodeId};
use pg_net::{DevCa, NetConfig, QuicTransport};
use pg_runtime::{Node, NodeOptions, ScopeOptions};

fn start(ca: &DevCa, name: &str, seeds: Vec<std::net::SocketAddr>) -> (Node, Arc<QuicTransport>) {
    let id = NodeId::parse_name(name, 1).unwrap();
    let mut config = NetConfig::new("bench", "127.0.0.1:0".parse().unwrap());
    config.seeds = seeds;
    let transport = QuicTransport::bind(id.clone(), config, &ca.issue(name).unwrap()).unwrap();
    let options = NodeOptions {
        mailbox_capacity: 1 << 20,
        ..NodeOptions::default()
    };
    let node = Node::start_as(id, Arc::clone(&transport) as _, options).unwrap();
    (node, transport)
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(60), "bench timed out");
        tokio::task::yield_now().await;
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ca = DevCa::generate("bench").unwrap();
        let (a, ta) = start(&ca, "a", vec![]);
        let (b, _tb) = start(&ca, "b", vec![ta.local_addr()]);
        wait_until(|| a.peers().len() == 1 && b.peers().len() == 1).await;
        let sa = a.open_scope("s", ScopeOptions::default()).unwrap();
        let sb = b.open_scope("s", ScopeOptions::default()).unwrap();
        let group = GroupName::new("w").unwrap();
        let mut member = b.spawn();
        sb.join(member.pid(), std::slice::from_ref(&group)).unwrap();
        wait_until(|| sa.members("w").len() == 1).await;

        for size in [100usize, 4096] {
            let n = if size == 100 { 200_000 } else { 50_000 };
            let sender = a.spawn();
            let payload = Bytes::from(vec![0u8; size]);
            let bytes_before = ta.stats().bytes_sent;
            let start = Instant::now();
            let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let counter = Arc::clone(&received);
            let receiver = tokio::spawn(async move {
                for _ in 0..n {
                    member.recv().await.unwrap();
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                member
            });
            // Keep at most a window in flight: the peer queue refuses more
            // (Overloaded, counted) rather than buffering without bound.
            let window = 16_384;
            for i in 0..n {
                while i - received.load(std::sync::atomic::Ordering::Relaxed) >= window {
                    tokio::task::yield_now().await;
                }
                sa.broadcast(sender.pid(), "w", "t", payload.clone()).unwrap();
            }
            assert_eq!(a.deliveries().failed, 0, "no message may be refused in the window");
            member = receiver.await.unwrap();
            let secs = start.elapsed().as_secs_f64();
            let wire = ta.stats().bytes_sent - bytes_before;
            println!(
                "{{\"system\":\"pg-rs\",\"workload\":\"net_remote_messages\",\"payload_bytes\":{size},\"messages\":{n},\"messages_per_s\":{:.0},\"wire_bytes_per_s\":{:.0}}}",
                n as f64 / secs,
                wire as f64 / secs
            );
        }

        // Direct sends, a to one process on b, windowed like the above.
        {
            let n = 200_000usize;
            let sender = a.spawn();
            let to = member.pid().clone();
            let payload = Bytes::from(vec![0u8; 100]);
            let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let counter = Arc::clone(&received);
            let start = Instant::now();
            let receiver = tokio::spawn(async move {
                for _ in 0..n {
                    member.recv().await.unwrap();
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                member
            });
            for i in 0..n {
                while i - received.load(std::sync::atomic::Ordering::Relaxed) >= 16_384 {
                    tokio::task::yield_now().await;
                }
                sender.send(&to, "t", payload.clone()).unwrap();
            }
            member = receiver.await.unwrap();
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{{\"system\":\"pg-rs\",\"workload\":\"net_remote_sends\",\"payload_bytes\":100,\"messages\":{n},\"sends_per_s\":{:.0}}}",
                n as f64 / secs
            );
        }

        // Membership: joins on a, seen on b.
        let n = 20_000;
        let procs: Vec<_> = (0..n).map(|_| a.spawn()).collect();
        let frames_before = ta.stats().messages_sent;
        let start = Instant::now();
        for p in &procs {
            sa.join(p.pid(), std::slice::from_ref(&group)).unwrap();
        }
        wait_until(|| sb.members("w").len() == n + 1).await;
        let secs = start.elapsed().as_secs_f64();
        let frames = ta.stats().messages_sent - frames_before;
        println!(
            "{{\"system\":\"pg-rs\",\"workload\":\"net_membership\",\"joins\":{n},\"converged_ms\":{:.1},\"joins_per_s\":{:.0},\"frames\":{frames}}}",
            secs * 1000.0,
            n as f64 / secs
        );
        drop(member);
    });
}
