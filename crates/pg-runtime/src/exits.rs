//! Ended processes waiting for their scope to clean up after them.
//!
//! A process that ends (its handle dropped, its task over) must leave every
//! group it was in, on every node. Doing that inside `Drop` made the caller
//! pay for the whole cleanup, under the scope's writer lock, once per
//! process: dropping 100k processes blocked a thread for seconds and kept
//! the writer busy with one small step after another. Instead `Drop` only
//! queues the pid here (no lock of the writer, no wait); the scope's exit
//! task applies the queue in bounded batches, one writer step per batch,
//! letting other callers in between, so a join during a mass exit stays
//! prompt and each changed group is published once per batch.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use pg_core::Pid;
use tokio::sync::Notify;

/// Most processes cleaned up in one writer step: small enough that a
/// caller waiting for the writer waits for one batch at most (about a
/// millisecond at 10 groups per process), large enough to amortize the
/// step and the publication of the groups it changed.
pub(crate) const EXIT_BATCH: usize = 128;

#[derive(Default)]
pub(crate) struct ExitQueue {
    pending: Mutex<VecDeque<Pid>>,
    /// Wakes the exit task: something was queued, or the scope closed.
    ready: Notify,
    /// Pids ever queued, and ever applied: `flush` waits for the second to
    /// reach what the first was when it was called.
    queued: AtomicU64,
    applied: AtomicU64,
    /// Wakes `flush` callers after each batch.
    progressed: Notify,
}

impl ExitQueue {
    /// Queues an ended process (never blocks on the writer).
    pub(crate) fn push(&self, pid: Pid) {
        self.pending.lock().push_back(pid);
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.ready.notify_one();
    }

    /// Up to [`EXIT_BATCH`] queued pids, oldest first.
    pub(crate) fn take_batch(&self) -> Vec<Pid> {
        let mut pending = self.pending.lock();
        let n = pending.len().min(EXIT_BATCH);
        let batch = pending.drain(..n).collect();
        if pending.is_empty() && pending.capacity() > 4 * EXIT_BATCH {
            *pending = VecDeque::new();
        }
        batch
    }

    /// Records that `n` taken pids were cleaned up.
    pub(crate) fn applied(&self, n: usize) {
        self.applied.fetch_add(n as u64, Ordering::AcqRel);
        self.progressed.notify_waiters();
    }

    /// Pids queued and not yet cleaned up.
    pub(crate) fn backlog(&self) -> u64 {
        let queued = self.queued.load(Ordering::Acquire);
        queued.saturating_sub(self.applied.load(Ordering::Acquire))
    }

    /// Waits until every process queued before the call is cleaned up.
    pub(crate) async fn flush(&self) {
        let target = self.queued.load(Ordering::Acquire);
        loop {
            let progressed = self.progressed.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            if self.applied.load(Ordering::Acquire) >= target {
                return;
            }
            progressed.await;
        }
    }

    /// Waits for something to do.
    pub(crate) async fn wait_ready(&self) {
        self.ready.notified().await;
    }

    /// Wakes the exit task (to see that its scope closed).
    pub(crate) fn wake(&self) {
        self.ready.notify_one();
    }
}
