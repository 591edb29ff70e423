//! Subscriptions to membership (and registry) events: per-subscriber
//! queues that stall only their own consumer, bounded by a hard cap that
//! ends the subscription with an explicit `Lagged`.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use pg_core::{Event, GroupName, Pid, RegistryEvent};
use thiserror::Error;
use tokio::sync::Notify;

use crate::scope::ScopeShared;

/// Why [`Subscription::recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RecvError {
    /// The subscription was closed (by `close`, by its owner's exit, or by
    /// the node shutting down) and every queued event was delivered.
    #[error("subscription closed")]
    Closed,
    /// The subscriber fell `monitor_max_pending` events behind: the events
    /// queued before that were delivered, later ones were not. Subscribe
    /// again to get a fresh snapshot.
    #[error("subscriber lagged: subscribe again for a fresh snapshot")]
    Lagged,
}

/// An event a subscription may carry: it names the group (or key) that
/// patterns match.
pub trait Keyed: Send + Sync + 'static {
    /// The group name or registry key.
    fn key(&self) -> &str;
}

impl Keyed for Event {
    fn key(&self) -> &str {
        self.group.as_str()
    }
}

impl Keyed for RegistryEvent {
    fn key(&self) -> &str {
        self.key.as_str()
    }
}

struct Queue<E> {
    events: VecDeque<Arc<E>>,
    closed: bool,
    lagged: bool,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Self {
            events: VecDeque::new(),
            closed: false,
            lagged: false,
        }
    }
}

/// The groups a subscription watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// One group.
    Exact(GroupName),
    /// Every group whose name starts with the prefix (`"chat/"`: every
    /// group under `chat/`). Never empty.
    Prefix(Arc<str>),
    /// Every group of the scope.
    All,
}

impl Pattern {
    /// Whether events of `group` match.
    pub fn matches(&self, group: &str) -> bool {
        match self {
            Pattern::Exact(g) => g.as_str() == group,
            Pattern::Prefix(prefix) => group.starts_with(&**prefix),
            Pattern::All => true,
        }
    }
}

/// A further filter on the groups a subscription hears of (a permission
/// check per group, say). Called by the scope's writer for every matching
/// event: it must return quickly.
pub type GroupFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The shared half of a subscription, held by the scope's writer.
pub(crate) struct SubShared<E = Event> {
    pub(crate) id: u64,
    pub(crate) filter: Pattern,
    allow: Option<GroupFilter>,
    pub(crate) owner: Option<Pid>,
    buffer: usize,
    cap: usize,
    queue: Mutex<Queue<E>>,
    notify: Notify,
}

/// What pushing an event did.
pub(crate) enum Pushed {
    Queued,
    /// The subscriber is past its buffer (a slow consumer).
    Behind,
    /// The hard cap was reached: the subscription is over.
    Lagged,
}

impl<E: Keyed> SubShared<E> {
    pub(crate) fn new(
        id: u64,
        filter: Pattern,
        allow: Option<GroupFilter>,
        owner: Option<Pid>,
        buffer: usize,
        cap: usize,
    ) -> Self {
        Self {
            id,
            filter,
            allow,
            owner,
            buffer,
            cap: cap.max(1),
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
        }
    }

    pub(crate) fn wants(&self, event: &E) -> bool {
        let group = event.key();
        self.filter.matches(group) && self.allow.as_ref().is_none_or(|allow| allow(group))
    }

    /// Queues an event (writer only).
    pub(crate) fn push(&self, event: &Arc<E>) -> Pushed {
        let mut q = self.queue.lock();
        if q.closed {
            return Pushed::Queued;
        }
        if q.events.len() >= self.cap {
            q.lagged = true;
            q.closed = true;
            drop(q);
            self.notify.notify_one();
            return Pushed::Lagged;
        }
        q.events.push_back(Arc::clone(event));
        let behind = q.events.len() > self.buffer;
        drop(q);
        self.notify.notify_one();
        if behind {
            Pushed::Behind
        } else {
            Pushed::Queued
        }
    }

    /// Ends the subscription; queued events are kept when `flush`.
    pub(crate) fn close(&self, flush: bool) {
        let mut q = self.queue.lock();
        q.closed = true;
        if !flush {
            q.events.clear();
        }
        drop(q);
        self.notify.notify_one();
    }

    pub(crate) fn pending(&self) -> usize {
        self.queue.lock().events.len()
    }
}

/// A stream of `member.joined` / `member.left` events, for one group
/// ([`Scope::monitor`](crate::Scope::monitor)) or all
/// ([`Scope::events`](crate::Scope::events)), or of registry events
/// (`Subscription<RegistryEvent>`, from
/// [`Scope::monitor_registry`](crate::Scope::monitor_registry)). Events
/// arrive in order, each exactly once; a slow consumer only delays itself.
pub struct Subscription<E: Keyed = Event> {
    shared: Arc<SubShared<E>>,
    scope: Weak<ScopeShared>,
}

impl<E: Keyed> Subscription<E> {
    pub(crate) fn new(shared: Arc<SubShared<E>>, scope: Weak<ScopeShared>) -> Self {
        Self { shared, scope }
    }

    /// The next event. After the subscription ends, the events queued
    /// before the end are still delivered, then the reason.
    pub async fn recv(&mut self) -> Result<Arc<E>, RecvError> {
        loop {
            let notified = self.shared.notify.notified();
            if let Some(out) = self.try_take() {
                return out;
            }
            notified.await;
        }
    }

    /// The next event if one is queued (`None` if none is, and the
    /// subscription is still open).
    pub fn try_recv(&mut self) -> Option<Result<Arc<E>, RecvError>> {
        self.try_take()
    }

    fn try_take(&self) -> Option<Result<Arc<E>, RecvError>> {
        let mut q = self.shared.queue.lock();
        if let Some(event) = q.events.pop_front() {
            return Some(Ok(event));
        }
        if q.lagged {
            return Some(Err(RecvError::Lagged));
        }
        q.closed.then_some(Err(RecvError::Closed))
    }

    /// Events queued and not yet received.
    pub fn pending(&self) -> usize {
        self.shared.pending()
    }

    /// Unsubscribes and drops the queued events.
    pub fn close(self) {
        self.end(false);
    }

    /// Unsubscribes; the events already queued are still delivered by
    /// `recv`, then [`RecvError::Closed`].
    pub fn close_flush(&mut self) {
        self.end(true);
    }

    fn end(&self, flush: bool) {
        if let Some(scope) = self.scope.upgrade() {
            scope.unsubscribe(self.shared.id);
        }
        self.shared.close(flush);
    }
}

impl<E: Keyed> Drop for Subscription<E> {
    fn drop(&mut self) {
        if let Some(scope) = self.scope.upgrade() {
            scope.unsubscribe(self.shared.id);
        }
    }
}

impl<E: Keyed> std::fmt::Debug for Subscription<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("pattern", &self.shared.filter)
            .field("pending", &self.shared.pending())
            .finish()
    }
}
