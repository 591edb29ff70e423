//! Two nodes that dial each other at once, with a slow runtime: nothing a
//! peer sends may reach the runtime before the runtime has taken the link
//! change it was sent on (`node_up`, or `link_reset` for the connection
//! that replaced a crossed duplicate).
//!
//! What this guards: the chaos tool once found a pair of nodes diverged
//! for good after a crossed dial. The replacing connection started reading
//! while the `Up` of the connection it replaced was still queued for the
//! runtime; the peer's scope announcement, read on it, reached the runtime
//! first and was ignored (a peer not yet up), so the two nodes never
//! exchanged anything for their scopes again.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::{LIMIT, config, eventually};
use parking_lot::Mutex;
use pg_core::NodeId;
use pg_net::{DevCa, QuicTransport};
use pg_runtime::{Inbound, Transport, Wire};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Up,
    Reset,
    Down,
    Message,
}

/// A runtime stand-in: takes `node_up` slowly (as a busy runtime would),
/// answers every link change with an announcement (as scopes do), and
/// records what it took, in order.
struct SlowRuntime {
    transport: OnceLock<Arc<QuicTransport>>,
    log: Mutex<Vec<Seen>>,
    /// Where the invariant broke, if it did.
    broken: Mutex<Option<String>>,
}

impl SlowRuntime {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            transport: OnceLock::new(),
            log: Mutex::new(Vec::new()),
            broken: Mutex::new(None),
        })
    }

    fn announce(&self, peer: &NodeId) {
        if let Some(t) = self.transport.get() {
            let _ = t.send(
                peer,
                Wire::Scopes {
                    running: vec![Arc::from("s")],
                },
            );
        }
    }

    /// Whether the peer's announcement arrived after the last link change.
    fn settled(&self) -> bool {
        let log = self.log.lock();
        let last_change = log.iter().rposition(|s| *s != Seen::Message);
        matches!(last_change, Some(i) if log[i] != Seen::Down && log[i + 1..].contains(&Seen::Message))
    }

    fn resets(&self) -> usize {
        self.log
            .lock()
            .iter()
            .filter(|s| **s == Seen::Reset)
            .count()
    }
}

impl Inbound for SlowRuntime {
    fn node_up(&self, peer: NodeId) {
        // The events task is busy in the runtime: anything read meanwhile
        // must wait for it.
        std::thread::sleep(Duration::from_millis(40));
        self.log.lock().push(Seen::Up);
        self.announce(&peer);
    }

    fn node_down(&self, _peer: &NodeId) {
        self.log.lock().push(Seen::Down);
    }

    fn link_reset(&self, peer: &NodeId) {
        self.log.lock().push(Seen::Reset);
        self.announce(peer);
    }

    fn receive(&self, _from: &NodeId, message: Wire) {
        if !matches!(message, Wire::Scopes { .. }) {
            return;
        }
        let mut log = self.log.lock();
        let up = log
            .iter()
            .rev()
            .find(|s| **s != Seen::Message)
            .is_some_and(|s| *s != Seen::Down);
        if !up {
            self.broken
                .lock()
                .get_or_insert_with(|| format!("a message before its link's change: {log:?}"));
        }
        log.push(Seen::Message);
    }
}

/// A free UDP port on 127.0.0.1 (released for the transport to take).
fn free_addr() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

static RUN: AtomicU64 = AtomicU64::new(1);

fn bind(name: &str, ca: &DevCa, at: SocketAddr, seed: SocketAddr) -> Arc<QuicTransport> {
    let mut c = config("test", &[seed]);
    c.listen = at;
    let id = NodeId::parse_name(name, RUN.fetch_add(1, Ordering::Relaxed)).unwrap();
    QuicTransport::bind(id, c, &ca.issue(name).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossed_dials_never_deliver_before_the_runtime_took_the_link() {
    let ca = DevCa::generate("test").unwrap();
    let mut crossed = 0;
    let mut rounds = 0;
    // Both nodes have each other as their only seed and start together,
    // so both dial at once; a round crosses when one side replaces a
    // connection it had taken (a `Reset`).
    while rounds < 40 && crossed < 5 {
        rounds += 1;
        let (addr_a, addr_b) = (free_addr(), free_addr());
        let runtimes = [SlowRuntime::new(), SlowRuntime::new()];
        let transports = [
            bind("a", &ca, addr_a, addr_b),
            bind("b", &ca, addr_b, addr_a),
        ];
        for (t, r) in transports.iter().zip(&runtimes) {
            r.transport.set(Arc::clone(t)).ok();
            t.attach(Arc::clone(r) as Arc<dyn Inbound>);
        }
        eventually("each side has the other's announcement", LIMIT, || {
            for r in &runtimes {
                if let Some(broken) = r.broken.lock().take() {
                    panic!("round {rounds}: {broken}");
                }
            }
            runtimes.iter().all(|r| r.settled())
        })
        .await;
        crossed += runtimes.iter().map(|r| r.resets()).sum::<usize>().min(1);
        for t in &transports {
            t.detach();
        }
    }
    eprintln!("{rounds} rounds, {crossed} with a crossed dial");
    // Without a crossed dial this test tests nothing: two nodes started
    // together with each other as seeds cross in most rounds.
    assert!(crossed > 0, "no crossed dial in {rounds} rounds");
}
