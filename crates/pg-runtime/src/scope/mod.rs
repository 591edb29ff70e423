//! One scope on one node: the single writer over a `pg_core::Scope`, its
//! published snapshots, subscriptions and broadcast.
//!
//! The single-writer rule (one mutation at a time, in order) is kept by a
//! lock rather than a thread: the caller runs the core step itself under
//! the scope's lock (flat combining), then drains the core's outputs —
//! events to subscribers, frames to the transport, snapshots to readers —
//! before returning. An idle scope costs a join no thread hop (a parked
//! loop thread costs ~20 µs per wake-up on these machines); under
//! contention, waiting callers queue on the lock, and that queue is what
//! `action_queue_size` / `action_queue_max_size` bound. A timer task wakes
//! only for the core's deadlines.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::Mutex;
use pg_core::{Event, EventDetail, Frame, GroupName, Members, NodeId, Pid};
use rustc_hash::FxHashSet;
use tokio::sync::Notify;

use crate::config::ScopeOptions;
use crate::error::Error;
use crate::exits::{EXIT_STEP_MEMBERSHIPS, ExitQueue};
use crate::node::NodeInner;
use crate::process::ProcessTable;
use crate::subscription::{Pattern, SubShared, Subscription};
use crate::transport::Transport;
use crate::view::View;

mod broadcast;
mod health;
pub use health::{Health, ScopeCounters};
pub use meta::{decode_meta, encode_meta};
pub use registry::{REGISTRY_CONFLICT_TOPIC, Registration, RegistryConflict};
mod flush;
mod meta;
mod prefix;
mod publish;
mod registry;
mod subscribers;
mod tasks;

use publish::Publish;
use subscribers::{close_owned_by, sync_event_detail};
use tasks::{exit_loop, timer_loop};

pub(crate) struct CoreState {
    scope: pg_core::Scope,
    subscribers: Vec<Arc<SubShared>>,
    /// Subscribers to registry events.
    reg_subscribers: Vec<Arc<SubShared<pg_core::RegistryEvent>>>,
    /// The deadline the timer task sleeps until (`None`: none); it is
    /// woken only when the core's next deadline comes earlier.
    armed: Option<Instant>,
    /// A delta was sent and the flush task is due: local changes wait for
    /// it, so a burst leaves as one delta (see `flush.rs`).
    flush_due: bool,
    /// The last delta sent carried a burst (see `flush.rs`): the next
    /// flush waits a little, so the burst leaves in fewer, fuller deltas.
    burst: bool,
    /// The current step is the flush's (see `flush.rs`).
    flushing: bool,
    /// Groups changed by the current step (a buffer kept between steps).
    changed: Vec<GroupName>,
    /// Events of the current step, held until the groups are published.
    events: Vec<Event>,
    /// Groups whose exit cleanup is not yet published (see `publish.rs`).
    held: publish::Held,
    /// When the exit task's current step took the writer (wall clock,
    /// for `ScopeCounters::exit_cleanup`); counted once the step's
    /// publication is done, before `flush_exits` callers are woken.
    exit_step_started: Option<Instant>,
}

/// Counters of one scope (also exported through `metrics`).
#[derive(Debug, Default)]
struct Counters {
    events_delivered: AtomicU64,
    subscribers_lagged: AtomicU64,
    frames_unsent: AtomicU64,
    /// Microseconds since `created` of the last broadcast sent or received.
    last_broadcast_us: AtomicU64,
    /// Worst lateness of a timer, in microseconds, since the last health
    /// check.
    loop_lag_us: AtomicU64,
    /// Nanoseconds the exit task has held the writer, in total.
    exit_cleanup_ns: AtomicU64,
}

/// Metric handles, registered once per scope (install a recorder before
/// opening scopes for them to report).
struct ScopeMetrics {
    queue_depth: metrics::Gauge,
    groups: metrics::Gauge,
    local_memberships: metrics::Gauge,
    subscriber_lag: metrics::Gauge,
    events: metrics::Counter,
    events_delivered: metrics::Counter,
    overloaded: metrics::Counter,
    subscribers_lagged: metrics::Counter,
    frames_unsent: metrics::Counter,
    violations: metrics::Counter,
    exit_backlog: metrics::Gauge,
}

impl ScopeMetrics {
    fn new(scope: &str) -> Self {
        let label = || ("scope", scope.to_owned());
        Self {
            queue_depth: metrics::gauge!("pg_action_queue_depth", &[label()]),
            groups: metrics::gauge!("pg_groups", &[label()]),
            local_memberships: metrics::gauge!("pg_local_memberships", &[label()]),
            subscriber_lag: metrics::gauge!("pg_subscriber_lag", &[label()]),
            events: metrics::counter!("pg_events_total", &[label()]),
            events_delivered: metrics::counter!("pg_events_delivered_total", &[label()]),
            overloaded: metrics::counter!("pg_overloaded_total", &[label()]),
            subscribers_lagged: metrics::counter!("pg_subscribers_lagged_total", &[label()]),
            frames_unsent: metrics::counter!("pg_frames_unsent_total", &[label()]),
            violations: metrics::counter!("pg_protocol_violations_total", &[label()]),
            exit_backlog: metrics::gauge!("pg_exit_backlog", &[label()]),
        }
    }
}

/// What a scope needs of its node. The node itself is held weakly and only
/// outside the writer lock: dropping the last node handle inside a step
/// would shut the scope down from within its own lock.
pub(crate) struct ScopeLinks {
    pub(crate) node: Weak<NodeInner>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) processes: Arc<ProcessTable>,
    pub(crate) runtime: tokio::runtime::Handle,
}

pub(crate) struct ScopeShared {
    id: Arc<str>,
    metrics: ScopeMetrics,
    options: ScopeOptions,
    links: ScopeLinks,
    local: NodeId,
    /// This scope, for the tasks it schedules (weak: they never keep it).
    me: Weak<ScopeShared>,
    core: Mutex<CoreState>,
    waiting: AtomicUsize,
    warned: AtomicBool,
    view: View,
    /// The registry as readers see it.
    registry: registry::RegistryView,
    wake: Notify,
    /// Ended processes this scope has yet to clean up after.
    exits: ExitQueue,
    next_subscriber: AtomicU64,
    closed: AtomicBool,
    /// On tokio's clock, so health can be tested in paused time.
    created: tokio::time::Instant,
    counters: Counters,
}

/// A handle to one scope on this node (cheap to clone).
#[derive(Clone)]
pub struct Scope {
    shared: Arc<ScopeShared>,
}

/// A read-only snapshot of every group and its members.
pub type GroupsSnapshot = Vec<(GroupName, Members)>;

impl ScopeShared {
    pub(crate) fn new(
        id: Arc<str>,
        local: NodeId,
        mut options: ScopeOptions,
        links: ScopeLinks,
        peers: &[NodeId],
        resume_after: u64,
    ) -> Arc<Self> {
        if options.core.rng_seed == 0 {
            options.core.rng_seed = random_seed();
        }
        let now = clock();
        let mut scope = pg_core::Scope::new(local.clone(), options.core.clone(), now);
        // Nobody subscribes yet (see `sync_event_detail`).
        scope.set_event_detail(EventDetail::GroupsOnly);
        scope.set_registry_event_detail(EventDetail::GroupsOnly);
        scope.resume_after(resume_after);
        for peer in peers {
            scope.handle_node_up(peer.clone());
        }
        let shared = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            metrics: ScopeMetrics::new(&id),
            id,
            options,
            links,
            local,
            core: Mutex::new(CoreState {
                scope,
                subscribers: Vec::new(),
                reg_subscribers: Vec::new(),
                armed: None,
                flush_due: false,
                burst: false,
                flushing: false,
                changed: Vec::new(),
                events: Vec::new(),
                held: publish::Held::default(),
                exit_step_started: None,
            }),
            waiting: AtomicUsize::new(0),
            warned: AtomicBool::new(false),
            view: View::default(),
            registry: Default::default(),
            wake: Notify::new(),
            exits: ExitQueue::default(),
            next_subscriber: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            created: tokio::time::Instant::now(),
            counters: Counters::default(),
        });
        shared.links.runtime.spawn(timer_loop(Arc::clone(&shared)));
        shared.links.runtime.spawn(exit_loop(Arc::clone(&shared)));
        shared
    }

    pub(crate) fn options(&self) -> &ScopeOptions {
        &self.options
    }

    /// Runs a caller's command under the writer lock, bounded by the
    /// action queue limits.
    fn act<T>(&self, f: impl FnOnce(&mut CoreState) -> T) -> Result<T, Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::ScopeClosed(self.id.to_string()));
        }
        let waiting = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _slot = WaitSlot(&self.waiting);
        let max = self.options.action_queue_max_size;
        if max > 0 && waiting >= max {
            self.metrics.overloaded.increment(1);
            return Err(Error::Overloaded {
                scope: self.id.to_string(),
                waiting,
                max,
            });
        }
        let warn_at = self.options.action_queue_size;
        if warn_at > 0 && waiting >= warn_at {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(scope = %self.id, waiting, warn_at, max, "scope action queue approaching capacity");
            }
        } else if waiting * 2 < warn_at {
            self.warned.store(false, Ordering::Relaxed);
        }
        // Checked again under the lock: a call that waited through a
        // shutdown must not register anything after it.
        self.step(|core| {
            if self.closed.load(Ordering::Acquire) {
                return Err(Error::ScopeClosed(self.id.to_string()));
            }
            Ok(f(core))
        })
    }

    /// Runs protocol input (frames, peers, timers) under the writer lock.
    /// Never refused: dropping protocol input would lose membership.
    fn step<T>(&self, f: impl FnOnce(&mut CoreState) -> T) -> T {
        self.step_as(Publish::Now, f).0
    }

    /// A step whose publication follows `mode` (see `publish.rs`); says
    /// also whether nothing is held back from readers after it.
    fn step_as<T>(&self, mode: Publish, f: impl FnOnce(&mut CoreState) -> T) -> (T, bool) {
        let _span = tracing::trace_span!("pg.scope.step", scope = %self.id).entered();
        let mut core = self.core.lock();
        self.metrics
            .queue_depth
            .set(self.waiting.load(Ordering::Relaxed) as f64);
        let out = f(&mut core);
        self.drain(&mut core, mode);
        (out, core.held.is_empty())
    }

    /// Hands the core's outputs to their consumers, and publishes the
    /// groups that changed (or holds an exit cleanup's back, see
    /// `publish.rs`) before the lock is released.
    fn drain(&self, core: &mut CoreState, mode: Publish) {
        let mut changed = std::mem::take(&mut core.changed);
        let mut events = std::mem::take(&mut core.events);
        let keep = !core.subscribers.is_empty();
        while let Some(event) = core.scope.poll_event() {
            self.metrics.events.increment(1);
            if changed.last() != Some(&event.group) {
                changed.push(event.group.clone());
            }
            if keep {
                events.push(event);
            }
        }
        // Without a subscriber the core reports group names only.
        while let Some(group) = core.scope.poll_changed_group() {
            if changed.last() != Some(&group) {
                changed.push(group);
            }
        }
        // The registry first: settling below tells `flush_exits` waiters
        // that what was applied is visible, the registry included.
        self.drain_registry(core);
        if !changed.is_empty() || !core.held.is_empty() {
            self.publish_changed(core, &mut changed, mode);
        } else {
            // An exit that changed no group (a process in none) is visible
            // as it is applied.
            self.settle(core);
        }
        core.changed = changed;
        // Subscribers hear of a change only once readers can see it.
        if !events.is_empty() {
            for event in events.drain(..) {
                self.dispatch(core, event);
            }
            let lag = core
                .subscribers
                .iter()
                .map(|s| s.pending().saturating_sub(self.options.monitor_buffer))
                .max()
                .unwrap_or(0);
            self.metrics.subscriber_lag.set(lag as f64);
        }
        core.events = events;
        // A lagging subscriber may just have been dropped.
        sync_event_detail(core);
        // A peer that broke a bound: its frame was refused whole; the link
        // goes, so it reconnects and starts over (or stays refused).
        while let Some((peer, violation)) = core.scope.poll_violation() {
            tracing::warn!(scope = %self.id, %peer, %violation, "protocol violation: frame refused, closing the link");
            self.metrics.violations.increment(1);
            self.links
                .transport
                .disconnect(&peer, &violation.to_string());
        }
        self.send_frames(core);
        let next = core.scope.poll_timeout();
        if next.is_some_and(|at| core.armed.is_none_or(|armed| at < armed)) {
            core.armed = next;
            self.wake.notify_one();
        }
    }

    /// A process of this node must be alive to join or own a subscription,
    /// or nothing would ever clean up after it. Checked under the writer
    /// lock: a process that ends is removed from the table before its
    /// cleanup step, so it is either refused here or cleaned up after.
    fn check_alive(&self, pid: &Pid) -> Result<(), Error> {
        let local = pid.node() == self.local_id();
        if local && !self.links.processes.read().contains_key(&pid.serial()) {
            return Err(Error::NoProcess(pid.clone()));
        }
        Ok(())
    }

    fn local_id(&self) -> &NodeId {
        &self.local
    }

    // ----- input from the node -----------------------------------------

    pub(crate) fn node_up(&self, peer: NodeId) {
        self.step(|c| c.scope.handle_node_up(peer));
    }

    pub(crate) fn node_down(&self, peer: &NodeId) {
        self.step(|c| c.scope.handle_node_down(peer));
    }

    pub(crate) fn link_reset(&self, peer: &NodeId) {
        let now = clock();
        self.step(|c| c.scope.handle_link_reset(peer, now));
    }

    pub(crate) fn frame(&self, from: &NodeId, frame: Frame) {
        let now = clock();
        tracing::trace!(target: "pg_hop", %from, "frame in");
        self.step(|c| c.scope.handle_frame(from, frame, now));
        tracing::trace!(target: "pg_hop", %from, "frame applied");
    }

    /// A local process ended: its memberships and subscriptions go.
    /// Queues the cleanup of an ended process; the exit task applies it
    /// (see `exits.rs`). Never waits for the writer.
    pub(crate) fn process_exited(&self, pid: &Pid) {
        self.exits.push(pid.clone());
    }

    /// Cleans up after a batch of ended processes in one step: their
    /// memberships, and the subscriptions they owned.
    /// Stops after [`EXIT_STEP_MEMBERSHIPS`] memberships removed (a
    /// process is never split): returns how many of `batch` were applied.
    fn apply_exits(core: &mut CoreState, batch: &[Pid]) -> usize {
        let mut removed = 0u64;
        let mut done = 0;
        for pid in batch {
            // Invariant: the node only reports its own processes.
            removed += core.scope.exit(pid).unwrap_or(0);
            done += 1;
            if removed >= EXIT_STEP_MEMBERSHIPS {
                break;
            }
        }
        let batch = &batch[..done];
        let owned_any = core.subscribers.iter().any(|s| s.owner.is_some())
            || core.reg_subscribers.iter().any(|s| s.owner.is_some());
        if owned_any {
            let ended: FxHashSet<&Pid> = batch.iter().collect();
            let ended = |o: &Pid| ended.contains(o);
            close_owned_by(&mut core.subscribers, ended, false);
            close_owned_by(&mut core.reg_subscribers, ended, false);
        }
        done
    }

    pub(crate) fn saw_broadcast(&self) {
        let us = self.created.elapsed().as_micros() as u64;
        self.counters
            .last_broadcast_us
            .store(us.max(1), Ordering::Relaxed);
    }

    /// Whether a process of this node is a member of one of the scope's
    /// groups, or a subscription is open on it (what keeps a leased scope
    /// connected).
    fn interested(core: &CoreState) -> bool {
        core.scope.local_group_count() > 0
            || core.scope.local_registered_count() > 0
            || !core.subscribers.is_empty()
            || !core.reg_subscribers.is_empty()
    }

    /// Marks the scope closed if it has no local interest, atomically with
    /// the check (a call waiting for the writer then fails instead of
    /// landing in a scope about to go); says whether it did.
    pub(crate) fn close_if_idle(&self) -> bool {
        let core = self.core.lock();
        if Self::interested(&core) {
            return false;
        }
        self.closed.store(true, Ordering::Release);
        true
    }

    /// This node's version in the scope (what a later instance of the
    /// scope must start after).
    pub(crate) fn own_seq(&self) -> u64 {
        self.core.lock().scope.version().seq
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let mut core = self.core.lock();
        // The exit task stops: what it held back is published now.
        self.publish_held(&mut core);
        for sub in core.subscribers.drain(..) {
            sub.close(true);
        }
        for sub in core.reg_subscribers.drain(..) {
            sub.close(true);
        }
        drop(core);
        self.wake.notify_one();
        self.exits.close();
    }
}

struct WaitSlot<'a>(&'a AtomicUsize);

impl Drop for WaitSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The time given to the core: tokio's clock (the same as the OS clock,
/// except in paused-time tests, where timers and the core must agree).
fn clock() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS once per process and varies per
    // instance: enough to decorrelate the random choices of scopes.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish() | 1
}

impl Scope {
    pub(crate) fn from_shared(shared: Arc<ScopeShared>) -> Self {
        Self { shared }
    }

    /// The scope id.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    // ----- membership ----------------------------------------------------

    /// `pid` (a process of this node) joins each of `groups` once. Visible
    /// to this node's reads when it returns.
    pub fn join(&self, pid: &Pid, groups: &[GroupName]) -> Result<(), Error> {
        let shared = &self.shared;
        shared.act(|c| {
            shared.check_alive(pid)?;
            Ok(c.scope.join(pid, groups)?)
        })?
    }

    /// Each of `pids` joins `group` once.
    pub fn join_pids(&self, group: &GroupName, pids: &[Pid]) -> Result<(), Error> {
        let shared = &self.shared;
        shared.act(|c| {
            for pid in pids {
                shared.check_alive(pid)?;
            }
            Ok(c.scope.join_pids(group, pids)?)
        })?
    }

    /// `pid` leaves each of `groups` once; an error only if it was in none.
    pub fn leave(&self, pid: &Pid, groups: &[GroupName]) -> Result<(), Error> {
        self.shared
            .act(|c| c.scope.leave(pid, groups))?
            .map_err(Into::into)
    }

    /// Each of `pids` leaves `group` once; an error only if none was in it.
    pub fn leave_pids(&self, group: &GroupName, pids: &[Pid]) -> Result<(), Error> {
        self.shared
            .act(|c| c.scope.leave_pids(group, pids))?
            .map_err(Into::into)
    }

    // ----- reads (never wait for the writer) ----------------------------

    /// Members of `group` on every node, each process once per join, as
    /// Erlang's `pg:get_members/2` (see [`Members`] for the counted and
    /// distinct forms). Copies nothing.
    pub fn members(&self, group: &str) -> Members {
        self.shared.view.members(group)
    }

    /// Members of `group` on this node, as [`members`](Self::members).
    pub fn local_members(&self, group: &str) -> Members {
        self.shared.view.local_members(group)
    }

    /// Groups with a member anywhere, sorted.
    pub fn which_groups(&self) -> Arc<[GroupName]> {
        self.shared.view.which_groups()
    }

    /// Groups with a member on this node, sorted.
    pub fn which_local_groups(&self) -> Arc<[GroupName]> {
        self.shared.view.which_local_groups()
    }

    // ----- subscriptions ---------------------------------------------------

    /// Subscribes to `group`'s events and returns its members (with join
    /// counts), taken in the same step: no change can slip between the two,
    /// none is counted twice, so applying the events to the snapshot yields
    /// the membership exactly. With `owner`, the subscription ends when that
    /// process exits.
    pub fn monitor(
        &self,
        group: &GroupName,
        owner: Option<&Pid>,
    ) -> Result<(Subscription, Members), Error> {
        let shared = &self.shared;
        let (sub, members) = shared.act(|c| {
            let sub = shared.subscribe(c, Pattern::Exact(group.clone()), None, owner)?;
            Ok::<_, Error>((sub, c.scope.members(group.as_str())))
        })??;
        Ok((Subscription::new(sub, Arc::downgrade(shared)), members))
    }

    /// Subscribes to every group's events and returns every group with its
    /// members, taken in the same step.
    pub fn events(&self, owner: Option<&Pid>) -> Result<(Subscription, GroupsSnapshot), Error> {
        let shared = &self.shared;
        let (sub, snapshot) = shared.act(|c| {
            let sub = shared.subscribe(c, Pattern::All, None, owner)?;
            Ok::<_, Error>((sub, c.scope.snapshot()))
        })??;
        Ok((Subscription::new(sub, Arc::downgrade(shared)), snapshot))
    }

    /// Waits until this scope has cleaned up after every process that ended
    /// before the call. A process's end is applied shortly after it (its
    /// memberships, registrations and subscriptions go in a batch with
    /// other exits (the registry's events delivered by then), on
    /// this node at once, on the others through the protocol); code that
    /// must observe it, like a test, awaits this instead of polling.
    pub async fn flush_exits(&self) {
        self.shared.exits.flush().await;
    }

    /// Ended processes this scope has yet to clean up after.
    pub fn exit_backlog(&self) -> u64 {
        self.shared.exits.backlog()
    }

    /// Ends every subscription owned by `owner` in this scope (after the
    /// events already queued).
    pub fn close_owned(&self, owner: &Pid) {
        let mut core = self.shared.core.lock();
        close_owned_by(&mut core.subscribers, |o| o == owner, true);
        close_owned_by(&mut core.reg_subscribers, |o| o == owner, true);
        sync_event_detail(&mut core);
    }
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("id", &self.shared.id)
            .finish()
    }
}
