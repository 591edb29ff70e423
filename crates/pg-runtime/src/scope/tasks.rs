//! The scope's two background tasks: the timer (anti-entropy, discovery,
//! and the work the core paces in steps due at once: removing a downed
//! node's part, sending this node's part in pieces, indexing a part a
//! first sync brought) and the cleanup of ended processes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Publish, ScopeShared, clock};
use crate::exits::EXIT_BATCH;

/// Wakes for the core's deadlines (anti-entropy, discovery, paced steps).
pub(super) async fn timer_loop(shared: Arc<ScopeShared>) {
    loop {
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        let notified = shared.wake.notified();
        let deadline = {
            let mut core = shared.core.lock();
            core.armed = core.scope.poll_timeout();
            core.armed
        };
        match deadline {
            // Work left over from a step (a big node-down's removal, a
            // bounded step at a time): other callers get the writer in
            // between, without a trip through the timer wheel.
            Some(at) if at <= clock() => {
                tokio::task::yield_now().await;
                let now = clock();
                shared.step(|c| c.scope.handle_timeout(now));
            }
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => {}
                    () = notified => continue,
                }
                let now = clock();
                let late = now.saturating_duration_since(at).as_micros() as u64;
                shared
                    .counters
                    .loop_lag_us
                    .fetch_max(late, Ordering::Relaxed);
                shared.step(|c| c.scope.handle_timeout(now));
            }
            None => notified.await,
        }
    }
}

/// Cleans up after ended processes, a bounded batch per writer step,
/// yielding between batches so other callers get the writer promptly.
/// Each step's time with the writer (from taking the lock to the end of
/// its publication; not the wait for the lock) is counted in
/// `ScopeCounters::exit_cleanup`. It is wall-clock time, real even
/// under a paused test clock, and used for nothing but reporting.
/// Publication may be held back while more exits wait (see `publish.rs`);
/// once the queue is empty, what is held is published a chunk per step.
pub(super) async fn exit_loop(shared: Arc<ScopeShared>) {
    let mut held = false;
    let mut batch = Vec::with_capacity(EXIT_BATCH);
    loop {
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        shared.exits.take_batch(&mut batch);
        if batch.is_empty() {
            if held {
                held = shared.step(|c| {
                    c.exit_step_started = Some(Instant::now());
                    shared.publish_rest(c)
                });
                tokio::task::yield_now().await;
                continue;
            }
            shared.metrics.exit_backlog.set(0.0);
            shared.exits.wait_ready().await;
            continue;
        }
        let ((), nothing_held) = shared.step_as(Publish::ExitCleanup, |c| {
            c.exit_step_started = Some(Instant::now());
            let done = ScopeShared::apply_exits(c, &batch);
            // Counted, and the rest put back, under the lock: the step's
            // publication sees both (what is applied, whether more waits).
            shared.exits.applied(done);
            if let Some(rest) = batch.get(done..)
                && !rest.is_empty()
            {
                shared.exits.put_back(rest.to_vec());
            }
        });
        held = !nothing_held;
        shared
            .metrics
            .exit_backlog
            .set(shared.exits.backlog() as f64);
        tokio::task::yield_now().await;
    }
}
