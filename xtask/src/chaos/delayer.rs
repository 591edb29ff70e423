//! The NFQUEUE delayer: delay, jitter and reordering for kernels without
//! netem (this machine's has none). The chaos lab sends a node's packets
//! to a netfilter queue (`iptables -j NFQUEUE`, in the node's namespace)
//! and runs this program there (`xtask nfq-delay`, hidden): it takes each
//! packet from the queue, holds it for the delay plus a random share of
//! the jitter, and then lets it go. Verdicts are given in release order,
//! not arrival order, so a jitter larger than the gap between two packets
//! reorders them, as netem does.
//!
//! It stops when its stdin closes (the lab drops it at heal time), after
//! releasing every packet it holds: a heal must not turn into a loss.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use nfq::{Queue, Verdict};

/// Packets the kernel may hold for us before it drops (counted as loss:
/// a link this slow is a lossy link).
const QUEUE_MAX_LEN: u32 = 16_384;

/// Packets read from the queue between two release passes.
const MAX_READS_PER_PASS: usize = 1024;

/// Runs the delayer on queue `queue` until stdin closes.
pub(crate) fn run(queue: u16, delay: Duration, jitter: Duration, seed: u64) -> anyhow::Result<()> {
    let mut q = Queue::open().context("opening a netfilter queue socket (root?)")?;
    q.bind(queue).context("binding the netfilter queue")?;
    q.set_queue_max_len(queue, QUEUE_MAX_LEN)?;
    // Only the verdict is needed, not the packet's bytes.
    q.set_copy_range(queue, 0)?;
    // A slow reader loses packets, as a congested link does; it is not an
    // error of the delayer.
    q.set_recv_enobufs(false)?;
    q.set_nonblocking(true);
    let closed = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&closed);
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        flag.store(true, Ordering::Release);
    });
    let mut rng = fastrand::Rng::with_seed(seed);
    // (release time, arrival number) -> packet.
    let mut held: BTreeMap<(Instant, u64), nfq::Message> = BTreeMap::new();
    let mut arrivals = 0u64;
    loop {
        // Read before draining: the lab flushes the rules before it closes
        // stdin, so once this is seen, the drain below reads every packet
        // ever queued, and none is left in the socket to be dropped.
        let stopping = closed.load(Ordering::Acquire);
        // Bounded per pass while running, so a flood cannot starve the
        // releases; whole at the end.
        let mut reads = 0;
        while stopping || reads < MAX_READS_PER_PASS {
            match q.recv() {
                Ok(msg) => {
                    let extra = jitter.mul_f64(rng.f64());
                    held.insert((Instant::now() + delay + extra, arrivals), msg);
                    arrivals += 1;
                    reads += 1;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("reading the netfilter queue"),
            }
        }
        let now = Instant::now();
        while let Some(entry) = held.first_entry() {
            if !stopping && entry.key().0 > now {
                break;
            }
            let mut msg = entry.remove();
            msg.set_verdict(Verdict::Accept);
            q.verdict(msg).context("releasing a packet")?;
        }
        if stopping {
            return Ok(());
        }
        if reads >= MAX_READS_PER_PASS {
            // More is waiting: no sleep.
            continue;
        }
        // Polling at a fifth of a millisecond: the delays are tens of
        // milliseconds, and the queue socket has no timeout of its own.
        let next = held.keys().next().map_or(Duration::from_millis(1), |k| {
            k.0.saturating_duration_since(now)
        });
        std::thread::sleep(next.clamp(Duration::from_micros(200), Duration::from_millis(1)));
    }
}
