//! A scope's subscribers: registering and dropping them, handing them
//! events, and keeping the core's event detail in step with whether
//! anybody listens.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use pg_core::{Event, EventDetail, Pid};

use super::{CoreState, ScopeShared};
use crate::error::Error;
use crate::subscription::{GroupFilter, Pattern, Pushed, SubShared};

impl ScopeShared {
    pub(super) fn dispatch(&self, core: &mut CoreState, event: Event) {
        self.deliver(&mut core.subscribers, event);
    }

    /// Queues `event` for every subscriber that wants it; a subscriber
    /// past `monitor_max_pending` ends with `Lagged` and is dropped.
    pub(super) fn deliver<E: crate::subscription::Keyed>(
        &self,
        subscribers: &mut Vec<Arc<SubShared<E>>>,
        event: E,
    ) {
        let event = Arc::new(event);
        let mut lagged: Vec<u64> = Vec::new();
        for sub in subscribers.iter() {
            if !sub.wants(&event) {
                continue;
            }
            self.counters
                .events_delivered
                .fetch_add(1, Ordering::Relaxed);
            self.metrics.events_delivered.increment(1);
            if let Pushed::Lagged = sub.push(&event) {
                tracing::warn!(scope = %self.id, "subscriber reached monitor_max_pending: ended with Lagged");
                self.counters
                    .subscribers_lagged
                    .fetch_add(1, Ordering::Relaxed);
                self.metrics.subscribers_lagged.increment(1);
                lagged.push(sub.id);
            }
        }
        if !lagged.is_empty() {
            subscribers.retain(|s| !lagged.contains(&s.id));
        }
    }

    pub(crate) fn unsubscribe(&self, id: u64) {
        let mut core = self.core.lock();
        core.subscribers.retain(|s| s.id != id);
        core.reg_subscribers.retain(|s| s.id != id);
        sync_event_detail(&mut core);
    }

    /// Registers a subscriber (under the writer lock); the caller wraps it
    /// in a [`Subscription`] after the lock is released.
    pub(super) fn subscribe(
        &self,
        core: &mut CoreState,
        filter: Pattern,
        allow: Option<GroupFilter>,
        owner: Option<&Pid>,
    ) -> Result<Arc<SubShared>, Error> {
        if let Some(owner) = owner {
            self.check_alive(owner)?;
        }
        let id = self.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(SubShared::new(
            id,
            filter,
            allow,
            owner.cloned(),
            self.options.monitor_buffer,
            self.options.monitor_max_pending,
        ));
        core.subscribers.push(Arc::clone(&shared));
        // Every change from here on is an event it may need.
        sync_event_detail(core);
        Ok(shared)
    }
}

/// Ends (and forgets) the subscriptions whose owner `ended` says ended.
pub(super) fn close_owned_by<E: crate::subscription::Keyed>(
    subs: &mut Vec<Arc<SubShared<E>>>,
    ended: impl Fn(&Pid) -> bool,
    flush: bool,
) {
    subs.retain(|s| {
        let owned = s.owner.as_ref().is_some_and(&ended);
        if owned {
            s.close(flush);
        }
        !owned
    });
}

/// Has the core build membership (registry) events only while a
/// membership (registry) subscriber exists; otherwise it reports the
/// changed groups' names (keys), which is all publication needs.
/// Building an event per change for nobody (an allocation, a pid and a
/// name each, dropped in the same step) was about a third of a mass
/// exit's writer time. Called under
/// the lock wherever the subscribers change, so a subscriber hears of
/// every change after its snapshot.
pub(super) fn sync_event_detail(core: &mut CoreState) {
    let detail = |none: bool| {
        if none {
            EventDetail::GroupsOnly
        } else {
            EventDetail::Full
        }
    };
    core.scope
        .set_event_detail(detail(core.subscribers.is_empty()));
    // The same for registry events, reported as changed keys.
    core.scope
        .set_registry_event_detail(detail(core.reg_subscribers.is_empty()));
}
