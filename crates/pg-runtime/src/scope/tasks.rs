//! The scope's two background tasks: the timer (anti-entropy, discovery)
//! and the cleanup of ended processes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Publish, ScopeShared, clock};

/// Wakes for the core's deadlines (anti-entropy, discovery).
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
/// A batch counts as published (what `flush_exits` waits for) once readers
/// can see it: its publication may be held back while more exits wait
/// (see `publish.rs`).
pub(super) async fn exit_loop(shared: Arc<ScopeShared>) {
    let mut unpublished = 0;
    loop {
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        let batch = shared.exits.take_batch();
        if batch.is_empty() {
            if unpublished > 0 {
                if shared.step(|c| shared.publish_rest(c)) {
                    tokio::task::yield_now().await;
                    continue;
                }
                shared.exits.published(std::mem::take(&mut unpublished));
            }
            shared.metrics.exit_backlog.set(0.0);
            shared.exits.wait_ready().await;
            continue;
        }
        let (done, published) = shared.step_as(Publish::ExitCleanup, |c| {
            ScopeShared::apply_exits(c, &batch)
        });
        if let Some(rest) = batch.get(done..)
            && !rest.is_empty()
        {
            shared.exits.put_back(rest.to_vec());
        }
        shared.exits.applied(done);
        unpublished += done;
        if published {
            shared.exits.published(std::mem::take(&mut unpublished));
        }
        shared
            .metrics
            .exit_backlog
            .set(shared.exits.backlog() as f64);
        tokio::task::yield_now().await;
    }
}
