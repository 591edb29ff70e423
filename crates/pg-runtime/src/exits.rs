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
//! prompt; a batch's changed groups are published after it, or held for a
//! while during a mass exit (`scope/publish.rs`).

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

/// Memberships removed in one writer step at most (a process is never
/// split, so one with more is removed whole): 128 processes in thousands
/// of groups each must not hold the writer for seconds.
pub(crate) const EXIT_STEP_MEMBERSHIPS: u64 = 4096;

#[derive(Default)]
struct Pending {
    pids: VecDeque<Pid>,
    /// The scope closed: nothing will be applied any more, so nothing is
    /// kept and nobody waits.
    closed: bool,
}

#[derive(Default)]
pub(crate) struct ExitQueue {
    pending: Mutex<Pending>,
    /// Wakes the exit task: something was queued, or the scope closed.
    ready: Notify,
    /// Pids ever queued, ever applied, and ever published to readers
    /// (publication may lag a mass exit's steps, see `scope/publish.rs`):
    /// `flush` waits for the third to reach what the first was when it was
    /// called.
    queued: AtomicU64,
    applied: AtomicU64,
    published: AtomicU64,
    /// Wakes `flush` callers when the published count moves.
    progressed: Notify,
}

impl ExitQueue {
    /// Queues an ended process (never blocks on the writer); dropped if
    /// the scope has closed.
    pub(crate) fn push(&self, pid: Pid) {
        let mut pending = self.pending.lock();
        if pending.closed {
            return;
        }
        pending.pids.push_back(pid);
        // Counted under the lock, so `queued` follows the queue's order
        // and `applied` never runs ahead of it.
        self.queued.fetch_add(1, Ordering::AcqRel);
        drop(pending);
        self.ready.notify_one();
    }

    /// Replaces `batch` with up to [`EXIT_BATCH`] queued pids, oldest
    /// first. The caller reuses one buffer: during a mass exit the heap is
    /// busy freeing the ended processes, and a fresh allocation per batch
    /// showed up in profiles.
    pub(crate) fn take_batch(&self, batch: &mut Vec<Pid>) {
        batch.clear();
        let mut pending = self.pending.lock();
        let n = pending.pids.len().min(EXIT_BATCH);
        batch.extend(pending.pids.drain(..n));
        if pending.pids.is_empty() && pending.pids.capacity() > 4 * EXIT_BATCH {
            pending.pids = VecDeque::new();
        }
    }

    /// Whether ended processes are queued and not yet taken.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.lock().pids.is_empty()
    }

    /// Puts pids taken but not applied back at the front, in order.
    pub(crate) fn put_back(&self, rest: Vec<Pid>) {
        let mut pending = self.pending.lock();
        if pending.closed {
            drop(pending);
            self.applied(rest.len());
            self.published_up_to(self.applied_count());
            return;
        }
        for pid in rest.into_iter().rev() {
            pending.pids.push_front(pid);
        }
    }

    /// The scope closed: drop what is queued, refuse what comes, and
    /// release every `flush` waiter (nothing will be applied any more).
    pub(crate) fn close(&self) {
        let dropped = {
            let mut pending = self.pending.lock();
            pending.closed = true;
            std::mem::take(&mut pending.pids)
        };
        self.applied
            .fetch_add(dropped.len() as u64, Ordering::AcqRel);
        self.published_up_to(self.applied_count());
        self.ready.notify_one();
        self.progressed.notify_waiters();
    }

    /// Records that `n` taken pids were cleaned up (by the exit step
    /// itself, under the writer lock, so its publication can count them).
    pub(crate) fn applied(&self, n: usize) {
        self.applied.fetch_add(n as u64, Ordering::AcqRel);
    }

    /// Pids ever cleaned up.
    pub(crate) fn applied_count(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Records that the cleanup of the first `applied` pids (in the order
    /// they were applied) is visible to readers.
    pub(crate) fn published_up_to(&self, applied: u64) {
        // Called after every writer step: a plain load when nothing moved,
        // no read-modify-write on the join path.
        if self.published.load(Ordering::Acquire) >= applied {
            return;
        }
        if self.published.fetch_max(applied, Ordering::AcqRel) < applied {
            self.progressed.notify_waiters();
        }
    }

    /// Pids queued and not yet cleaned up.
    pub(crate) fn backlog(&self) -> u64 {
        let queued = self.queued.load(Ordering::Acquire);
        queued.saturating_sub(self.applied.load(Ordering::Acquire))
    }

    /// Waits until every process queued before the call is cleaned up and
    /// readers see it (or the scope closed).
    pub(crate) async fn flush(&self) {
        let target = self.queued.load(Ordering::Acquire);
        loop {
            let progressed = self.progressed.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            if self.published.load(Ordering::Acquire) >= target || self.pending.lock().closed {
                return;
            }
            progressed.await;
        }
    }

    /// Waits for something to do.
    pub(crate) async fn wait_ready(&self) {
        self.ready.notified().await;
    }
}
