//! The QUIC mesh: one connection per peer, shared by every scope.
//!
//! - **Handshake.** The dialer opens a bidirectional stream and sends
//!   `Hello` (protocol version, cluster, node run, listen address); the
//!   acceptor answers `Welcome` or `Reject { reason }` and closes.
//! - **Streams.** Each side then opens two unidirectional streams, tagged
//!   *membership* (scope frames, in order per origin) and *bulk*
//!   (broadcast and send payloads), so a large payload never delays
//!   membership. Writers coalesce queued messages into large writes. Each
//!   stream carries numbered records and acknowledgements
//!   ([`link`](crate::link)): in order and once per link run.
//! - **Peers.** A connection up is reported to the runtime before any of
//!   its messages; when it closes (idle timeout: the peer died; application
//!   close: it shut down) the peer is reported down at once. Two nodes that
//!   dial each other keep the connection dialed by the smaller name.
//! - **Discovery.** Seeds (a random subset of at most `discovery_fanout`
//!   at once; addresses, or DNS names resolved again every `dns_refresh`),
//!   then peer exchange on every new connection. Who is dialed
//!   and when is decided by the sans-IO [`DialPolicy`](crate::dial): no
//!   address a node may need is ever given up, so a mesh always heals.
//! - **Faults.** Per-peer circuit breakers skip sends to a failing peer;
//!   failed writes are retried on a fresh stream with backoff, from the
//!   first unacknowledged message; malformed or oversized input closes the connection with a logged, counted
//!   error.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use pg_core::{Frame, NodeId, NodeName};
use pg_runtime::{Inbound, SendError, Transport, Wire};
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::mpsc;

use crate::breaker::CircuitBreaker;
use crate::certs::TlsIdentity;
use crate::config::NetConfig;
use crate::dial::{DialConfig, DialPolicy};
use crate::error::NetError;
use crate::tls;
use crate::wire::{Hello, NET_PROTOCOL_VERSION, NetMessage};

mod channels;
mod connect;
mod links;
mod streams;

use channels::{Channels, Queued};

pub(crate) use streams::ReadError;

/// Application close codes, so the other side can log why.
pub(crate) mod code {
    pub(crate) const SHUTDOWN: u32 = 0;
    pub(crate) const DUPLICATE: u32 = 1;
    pub(crate) const REJECTED: u32 = 2;
    pub(crate) const PROTOCOL: u32 = 3;
    pub(crate) const REPLACED: u32 = 4;
    pub(crate) const BLOCKED: u32 = 5;
    pub(crate) const LINK_FAILED: u32 = 6;
}

const STREAM_MEMBERSHIP: u8 = 0;
const STREAM_BULK: u8 = 1;
/// Coalesce queued messages up to this many bytes per write.
const WRITE_BATCH: usize = 64 * 1024;
/// Largest handshake message: a hello is small, and it is read before the
/// peer is known.
const HANDSHAKE_MAX: usize = 64 * 1024;
/// Addresses remembered at most (peer exchange cannot grow it further).
const MAX_KNOWN_ADDRESSES: usize = 16 * 1024;
/// Longest wait between dials of an address that never answered.
const UNREACHED_DIAL_MAX: Duration = Duration::from_secs(30);
/// Incoming connections handshaking at once; more are refused (the dialer
/// retries with backoff). This bounds the tasks a flood of connections can
/// make us run, and with them the peer events waiting for the runtime: an
/// event is queued by a handshake holding a slot (a link up) or by the end
/// of a link that was reported up.
const MAX_CONCURRENT_HANDSHAKES: usize = 256;
/// Room left in a frame for everything but the payload.
const FRAME_OVERHEAD: usize = 4096;

/// A change of a peer, handed to the runtime in the order it happened.
/// Each carries the link run it ends (if any), retired before the runtime
/// hears of the change, so nothing of an old run arrives after it.
enum PeerEvent {
    /// A new run of the peer is up (replacing an older run's link, if any).
    Up(
        NodeId,
        tokio::sync::oneshot::Sender<()>,
        Option<Arc<Channels>>,
    ),
    Down(NodeId, Arc<Channels>),
    /// A duplicate connection replaced the link: messages may be lost.
    /// Acknowledged like `Up`: the replacing link reads nothing before,
    /// so its messages cannot overtake the `Up` of the link it replaced
    /// (the runtime ignores the scope announcements of a peer it has not
    /// heard is up).
    Reset(NodeId, tokio::sync::oneshot::Sender<()>, Arc<Channels>),
}

/// Counters of the mesh (also exported through `metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Connections whose TLS handshake or hello exchange failed.
    pub handshakes_failed: u64,
    /// Incoming connections refused because too many were handshaking.
    pub handshakes_refused_busy: u64,
    /// Peers refused at the hello (version, cluster).
    pub rejected: u64,
    /// Inbound messages that did not decode.
    pub malformed: u64,
    /// Messages over `max_frame_size`, in or out.
    pub oversized: u64,
    /// Sends to a peer not connected.
    pub dropped_unreachable: u64,
    /// Sends skipped by an open circuit breaker.
    pub dropped_breaker: u64,
    /// Sends refused because the peer's queue was full.
    pub dropped_overloaded: u64,
    /// Messages numbered and handed to a link (written at least once, or
    /// counted in `unconfirmed_at_close` if their run ended first).
    pub messages_sent: u64,
    /// Bytes written.
    pub bytes_sent: u64,
    /// Messages handed to the runtime (each once, in order, per link run).
    pub messages_received: u64,
    /// Writes retried on a fresh stream.
    pub write_retries: u64,
    /// Links closed because writes kept failing after every retry (their
    /// unacknowledged messages count in `unconfirmed_at_close`; the scopes
    /// resynchronise).
    pub writes_failed: u64,
    /// Messages received again after a retransmission, and dropped.
    pub duplicates_dropped: u64,
    /// Messages sent and never acknowledged when their link run ended
    /// (the peer may not have them; the scopes resynchronise).
    pub unconfirmed_at_close: u64,
}

#[derive(Default)]
struct Counters {
    handshakes_failed: AtomicU64,
    handshakes_refused_busy: AtomicU64,
    rejected: AtomicU64,
    malformed: AtomicU64,
    oversized: AtomicU64,
    dropped_unreachable: AtomicU64,
    dropped_breaker: AtomicU64,
    dropped_overloaded: AtomicU64,
    messages_sent: AtomicU64,
    bytes_sent: AtomicU64,
    messages_received: AtomicU64,
    write_retries: AtomicU64,
    writes_failed: AtomicU64,
    duplicates_dropped: AtomicU64,
    unconfirmed_at_close: AtomicU64,
}

fn bump(counter: &AtomicU64, name: &'static str, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
    metrics::counter!(name).increment(n);
}

/// A send refused, counted under `pg_net_dropped_total{reason}`.
fn dropped(counter: &AtomicU64, reason: &'static str) {
    counter.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("pg_net_dropped_total", "reason" => reason).increment(1);
}

#[derive(Clone)]
struct Link {
    node: NodeId,
    conn: quinn::Connection,
    initiator: NodeName,
    membership: mpsc::Sender<Queued>,
    bulk: mpsc::Sender<Queued>,
    /// Guards payload sends only: membership traffic is never held back
    /// by payload trouble (and is repaired by the protocol if lost).
    breaker: Arc<Mutex<CircuitBreaker>>,
    /// The link run's numbered channels.
    channels: Arc<Channels>,
}

struct Mesh {
    config: NetConfig,
    hello: Hello,
    endpoint: quinn::Endpoint,
    runtime: tokio::runtime::Handle,
    inbound: OnceLock<Arc<dyn Inbound>>,
    peers: Mutex<FxHashMap<NodeName, Link>>,
    /// Who is where, and who to dial.
    discovery: Discovery,
    /// The TLS material dials use (replaced by `reload_identity`).
    tls: parking_lot::RwLock<DialTls>,
    /// The last scope frame encoded, reused for the next peer it goes to.
    encoded: Mutex<Option<(Arc<Frame>, Bytes)>>,
    counters: Counters,
    closed: AtomicBool,
    /// Nodes this one refuses to talk to (fault injection).
    blocked: Mutex<FxHashSet<NodeName>>,
    jitter_seed: AtomicU64,
    events: mpsc::UnboundedSender<PeerEvent>,
    events_rx: Mutex<Option<mpsc::UnboundedReceiver<PeerEvent>>>,
    /// Slots for incoming handshakes ([`MAX_CONCURRENT_HANDSHAKES`]).
    handshakes: Arc<tokio::sync::Semaphore>,
}

/// What a dial presents and trusts, and how it knows it reached itself.
struct DialTls {
    client: quinn::ClientConfig,
    /// This node's certificate (DER): a dial that meets it reached itself.
    own_certificate: Vec<u8>,
}

/// What the mesh knows of other nodes' addresses, and its dialing.
struct Discovery {
    /// Where each node ever met listens.
    listen_of: Mutex<FxHashMap<NodeName, SocketAddr>>,
    /// Who to dial and when (sans-IO); the dial task drives it.
    dial: Mutex<DialPolicy>,
    /// Wakes the dial task: the policy may have something due sooner.
    dial_wake: tokio::sync::Notify,
    /// Addresses whose TLS refusal was logged at WARN (until they connect).
    tls_warned_about: Mutex<FxHashSet<SocketAddr>>,
    /// Wakes every discovery task on shutdown (`notify_waiters`).
    stop: tokio::sync::Notify,
}

/// A node's end of the QUIC mesh; implements pg-runtime's [`Transport`].
pub struct QuicTransport {
    mesh: Arc<Mesh>,
}

impl QuicTransport {
    /// Binds the endpoint for node run `me`. Must run inside a tokio
    /// runtime; dialing starts when the runtime attaches.
    pub fn bind(
        me: NodeId,
        config: NetConfig,
        identity: &TlsIdentity,
    ) -> Result<Arc<Self>, NetError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NetError::NoRuntime)?;
        if config.keep_alive >= config.idle_timeout {
            return Err(NetError::Config(
                "keep_alive must be shorter than idle_timeout".into(),
            ));
        }
        let server = tls::server(identity, &config)?;
        let client = tls::client(identity, &config)?;
        let mut endpoint =
            quinn::Endpoint::server(server, config.listen).map_err(|e| NetError::Bind {
                addr: config.listen.to_string(),
                reason: e.to_string(),
            })?;
        endpoint.set_default_client_config(client.clone());
        let local = endpoint.local_addr().map_err(|e| NetError::Bind {
            addr: config.listen.to_string(),
            reason: e.to_string(),
        })?;
        if config.advertise.is_none() && local.ip().is_unspecified() {
            return Err(NetError::Config(format!(
                "listening on {local}: set `advertise` to an address peers can reach"
            )));
        }
        config.link.validate().map_err(NetError::Config)?;
        for name in &config.seed_names {
            let port = name.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
            if !matches!(port, Some(Ok(_))) {
                return Err(NetError::Config(format!(
                    "seed name {name:?} must be host:port"
                )));
            }
        }
        if config.dns_refresh.is_zero() {
            return Err(NetError::Config("dns_refresh must not be zero".into()));
        }
        if config.retry_base_delay.is_zero() {
            return Err(NetError::Config("retry_base_delay must not be zero".into()));
        }
        if config.max_frame_size > u32::MAX as usize || config.max_frame_size < 2 * FRAME_OVERHEAD {
            return Err(NetError::Config(format!(
                "max_frame_size must be between {} and {} bytes",
                2 * FRAME_OVERHEAD,
                u32::MAX
            )));
        }
        let (events, events_rx) = mpsc::unbounded_channel();
        let listen = config.advertise.unwrap_or(local);
        let jitter = me.incarnation ^ u64::from(local.port());
        // A node's own address among its seeds (one config for all pods)
        // is not dialed.
        let seeds: Vec<SocketAddr> = config
            .seeds
            .iter()
            .copied()
            .filter(|a| *a != listen)
            .collect();
        let dial = DialPolicy::new(
            me.name.clone(),
            &seeds,
            DialConfig {
                base: config.retry_base_delay,
                max: config.retry_max_delay,
                unreached_max: UNREACHED_DIAL_MAX.max(config.retry_max_delay),
                // Long enough for the smaller name's dial to land first
                // most of the time, short enough that a mesh forms fast
                // when only the larger name heard of the other.
                yield_delay: config.retry_base_delay.saturating_mul(2),
                fanout: config.discovery_fanout,
                seed: jitter,
            },
            clock(),
        );
        let hello = Hello {
            version: NET_PROTOCOL_VERSION,
            cluster: config.cluster.clone(),
            node: me.clone(),
            listen: Some(listen),
        };
        Ok(Arc::new(Self {
            mesh: Arc::new(Mesh {
                jitter_seed: AtomicU64::new(jitter),
                config,
                hello,
                endpoint,
                runtime,
                inbound: OnceLock::new(),
                peers: Mutex::new(FxHashMap::default()),
                tls: parking_lot::RwLock::new(DialTls {
                    client,
                    own_certificate: identity
                        .chain
                        .first()
                        .map(|c| c.as_ref().to_vec())
                        .unwrap_or_default(),
                }),
                discovery: Discovery {
                    listen_of: Mutex::new(FxHashMap::default()),
                    dial: Mutex::new(dial),
                    dial_wake: tokio::sync::Notify::new(),
                    tls_warned_about: Mutex::new(FxHashSet::default()),
                    stop: tokio::sync::Notify::new(),
                },
                encoded: Mutex::new(None),
                counters: Counters::default(),
                closed: AtomicBool::new(false),
                blocked: Mutex::new(FxHashSet::default()),
                events,
                events_rx: Mutex::new(Some(events_rx)),
                handshakes: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HANDSHAKES)),
            }),
        }))
    }

    /// Takes new TLS material (a renewed certificate, a rotated CA): every
    /// handshake from now on, accepted or dialed, uses it; links already
    /// up keep theirs. Fails, changing nothing, if the material does not
    /// make a TLS configuration.
    pub fn reload_identity(&self, identity: &TlsIdentity) -> Result<(), NetError> {
        let server = tls::server(identity, &self.mesh.config)?;
        let client = tls::client(identity, &self.mesh.config)?;
        self.mesh.endpoint.set_server_config(Some(server));
        let mut tls = self.mesh.tls.write();
        tls.client = client;
        if let Some(cert) = identity.chain.first() {
            tls.own_certificate = cert.as_ref().to_vec();
        }
        drop(tls);
        tracing::info!(node = %self.mesh.hello.node, "TLS identity reloaded");
        Ok(())
    }

    /// The address peers can dial.
    pub fn local_addr(&self) -> SocketAddr {
        self.mesh.hello.listen.unwrap_or(self.mesh.config.listen)
    }

    /// The node runs currently connected.
    pub fn connected(&self) -> Vec<NodeId> {
        self.mesh
            .peers
            .lock()
            .values()
            .map(|l| l.node.clone())
            .collect()
    }

    /// Adds `addr` as a seed: dialed now, and again with backoff until a
    /// node answers there (and whenever this node has no peer left).
    pub fn dial(&self, addr: SocketAddr) {
        if Some(addr) != self.mesh.hello.listen {
            self.mesh.discovery.dial.lock().add_seed(addr, clock());
            self.mesh.discovery.dial_wake.notify_one();
        }
    }

    /// Fault injection: cuts the link to node `name` (any run) and refuses
    /// it, dialing or dialed, until [`unblock`](Self::unblock). Blocking a
    /// node on both sides makes a partition; the runtime sees the peer go
    /// down and, after unblocking, come back.
    pub fn block(&self, name: &NodeName) {
        self.mesh.blocked.lock().insert(name.clone());
        self.mesh.discovery.dial.lock().handle_blocked(name);
        let link = self.mesh.peers.lock().get(name).cloned();
        if let Some(link) = link {
            link.conn
                .close(code::BLOCKED.into(), b"link cut by fault injection");
        }
    }

    /// Ends fault injection for node `name`: the link comes back.
    pub fn unblock(&self, name: &NodeName) {
        self.mesh.blocked.lock().remove(name);
        // As after any disconnection: both redial, the smaller name first.
        self.mesh
            .discovery
            .dial
            .lock()
            .handle_unblocked(name, clock());
        self.mesh.discovery.dial_wake.notify_one();
    }

    /// The mesh's counters.
    pub fn stats(&self) -> NetStats {
        let c = &self.mesh.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NetStats {
            handshakes_failed: get(&c.handshakes_failed),
            handshakes_refused_busy: get(&c.handshakes_refused_busy),
            rejected: get(&c.rejected),
            malformed: get(&c.malformed),
            oversized: get(&c.oversized),
            dropped_unreachable: get(&c.dropped_unreachable),
            dropped_breaker: get(&c.dropped_breaker),
            dropped_overloaded: get(&c.dropped_overloaded),
            messages_sent: get(&c.messages_sent),
            bytes_sent: get(&c.bytes_sent),
            messages_received: get(&c.messages_received),
            write_retries: get(&c.write_retries),
            writes_failed: get(&c.writes_failed),
            duplicates_dropped: get(&c.duplicates_dropped),
            unconfirmed_at_close: get(&c.unconfirmed_at_close),
        }
    }
}

impl Transport for QuicTransport {
    fn attach(&self, inbound: Arc<dyn Inbound>) {
        if self.mesh.inbound.set(inbound).is_err() {
            tracing::warn!("QuicTransport attached twice; keeping the first runtime");
            return;
        }
        if let (Some(mut rx), Some(inbound)) = (
            self.mesh.events_rx.lock().take(),
            self.mesh.inbound().cloned(),
        ) {
            // One task reports peers up and down, in the order they changed.
            let mesh = Arc::clone(&self.mesh);
            self.mesh.runtime.spawn(async move {
                while let Some(event) = rx.recv().await {
                    match event {
                        PeerEvent::Up(peer, reported, replaced) => {
                            if let Some(old) = replaced {
                                mesh.end_run(&old);
                            }
                            inbound.node_up(peer);
                            let _ = reported.send(());
                        }
                        PeerEvent::Down(peer, old) => {
                            mesh.end_run(&old);
                            inbound.node_down(&peer);
                        }
                        PeerEvent::Reset(peer, reported, old) => {
                            mesh.end_run(&old);
                            inbound.link_reset(&peer);
                            let _ = reported.send(());
                        }
                    }
                }
            });
        }
        let mesh = Arc::clone(&self.mesh);
        self.mesh.runtime.spawn(Mesh::accept_loop(mesh));
        // The policy dialed a capped random subset of the seeds first: a
        // cluster restarting at once does not dial N².
        let mesh = Arc::clone(&self.mesh);
        self.mesh.runtime.spawn(Mesh::dial_loop(mesh));
        let mesh = Arc::clone(&self.mesh);
        self.mesh.runtime.spawn(Mesh::resolve_loop(mesh));
    }

    fn send(&self, to: &NodeId, message: Wire) -> Result<(), SendError> {
        self.mesh.send(to, message)
    }

    fn disconnect(&self, peer: &NodeId, reason: &str) {
        let link = self.mesh.peers.lock().get(&peer.name).cloned();
        if let Some(link) = link
            && link.node == *peer
        {
            // Bounded like any close reason on the wire.
            let reason: String = reason.chars().take(200).collect();
            link.conn.close(code::PROTOCOL.into(), reason.as_bytes());
        }
    }

    fn detach(&self) {
        if self.mesh.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // An application close reaches every peer at once: they clean up
        // without waiting for the idle timeout.
        self.mesh
            .endpoint
            .close(code::SHUTDOWN.into(), b"node shutting down");
        self.mesh.discovery.dial_wake.notify_one();
        self.mesh.discovery.stop.notify_waiters();
    }
}

impl Drop for QuicTransport {
    fn drop(&mut self) {
        self.detach();
    }
}

impl Mesh {
    fn inbound(&self) -> Option<&Arc<dyn Inbound>> {
        self.inbound.get()
    }

    /// Ends a link run: it delivers nothing more, and what it sent without
    /// an acknowledgement is counted (the scopes resynchronise over the
    /// next run).
    fn end_run(&self, channels: &Channels) {
        let unconfirmed = channels.retire() as u64;
        if unconfirmed > 0 {
            bump(
                &self.counters.unconfirmed_at_close,
                "pg_net_unconfirmed_at_close_total",
                unconfirmed,
            );
        }
    }

    /// Whether a TLS refusal at `addr` is news worth a WARN (bounded like
    /// the address table).
    fn tls_warned(&self, addr: SocketAddr) -> bool {
        let mut warned = self.discovery.tls_warned_about.lock();
        warned.len() < MAX_KNOWN_ADDRESSES && warned.insert(addr)
    }

    /// Remembers where `name` listens (bounded: peer exchange cannot grow
    /// the table without limit).
    fn remember(&self, name: &NodeName, addr: SocketAddr) {
        let mut listen_of = self.discovery.listen_of.lock();
        if listen_of.len() < MAX_KNOWN_ADDRESSES || listen_of.contains_key(name) {
            listen_of.insert(name.clone(), addr);
        }
    }

    fn dispatch(self: &Arc<Self>, peer: &NodeId, message: NetMessage) -> Result<(), String> {
        let Some(inbound) = self.inbound() else {
            return Ok(());
        };
        match message {
            NetMessage::Scope { scope, frame } => {
                let frame = Frame::decode(&frame).map_err(|e| {
                    bump(&self.counters.malformed, "pg_net_malformed_total", 1);
                    format!("scope frame: {e}")
                })?;
                inbound.receive(
                    peer,
                    Wire::Scope {
                        scope: Arc::from(scope),
                        frame: Arc::new(frame),
                    },
                );
            }
            NetMessage::Scopes { running } => inbound.receive(
                peer,
                Wire::Scopes {
                    running: running.into_iter().map(Arc::from).collect(),
                },
            ),
            NetMessage::Deliver {
                scope,
                from,
                to,
                topic,
                payload,
            } if from.node() == peer => inbound.receive(
                peer,
                Wire::Deliver {
                    scope: scope.map(Arc::from),
                    from,
                    to,
                    topic: Arc::from(topic),
                    payload,
                },
            ),
            NetMessage::Peers { peers } => {
                let now = clock();
                // At most MAX_PEERS: a longer list does not decode.
                for (name, addr) in peers {
                    if name == self.hello.node.name {
                        continue;
                    }
                    self.remember(&name, addr);
                    // The policy dials it if not connected, the smaller
                    // name first.
                    self.discovery.dial.lock().handle_heard(&name, addr, now);
                }
                self.discovery.dial_wake.notify_one();
            }
            NetMessage::Deliver { from, .. } => {
                return Err(format!("payload from {from}, a process of another node"));
            }
            NetMessage::Hello(_) | NetMessage::Welcome(_) | NetMessage::Reject { .. } => {
                return Err("handshake message after the handshake".into());
            }
        }
        Ok(())
    }
}

/// The time given to the dial policy: tokio's clock (the OS clock, except
/// in paused-time tests).
fn clock() -> Instant {
    tokio::time::Instant::now().into_std()
}
