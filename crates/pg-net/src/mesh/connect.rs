//! Making connections: accepting and dialing, the hello exchange, the
//! dial task that follows the [`DialPolicy`](crate::dial::DialPolicy), and
//! the task that resolves seed names.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pg_core::NodeName;
use rustls::pki_types::CertificateDer;

use super::streams::{read_message, write_message};
use super::{HANDSHAKE_MAX, Mesh, bump, clock, code};
use crate::backoff::Backoff;
use crate::certs::{NODE_SERVER_NAME, certificate_node_name};
use crate::dial::DialOutcome;
use crate::handshake::{Chain, Failure, HandshakeError, HelloError};
use crate::peers;
use crate::wire::{Hello, NetMessage};

impl Mesh {
    pub(super) async fn accept_loop(mesh: Arc<Mesh>) {
        while let Some(incoming) = mesh.endpoint.accept().await {
            if mesh.closed.load(Ordering::Acquire) {
                incoming.refuse();
                continue;
            }
            let Ok(slot) = Arc::clone(&mesh.handshakes).try_acquire_owned() else {
                incoming.refuse();
                let refused = mesh
                    .counters
                    .handshakes_refused_busy
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                metrics::counter!("pg_net_handshakes_refused_busy_total").increment(1);
                // A flood must not become a flood of log lines: the first
                // refusal, then every 1024th.
                if refused % 1024 == 1 {
                    tracing::warn!(
                        node = %mesh.hello.node,
                        refused,
                        max = super::MAX_CONCURRENT_HANDSHAKES,
                        "refused incoming connections: too many handshakes in flight"
                    );
                }
                continue;
            };
            let m = Arc::clone(&mesh);
            mesh.runtime.spawn(async move {
                // Held until the link is registered and reported up.
                let _slot = slot;
                match Mesh::accept_one(&m, incoming).await {
                    Ok(()) | Err(Failure::Benign) => {}
                    Err(Failure::Refused(error)) => {
                        bump(&m.counters.handshakes_failed, "pg_net_handshakes_failed_total", 1);
                        let reason = Chain(&error);
                        tracing::warn!(node = %m.hello.node, %reason, "refused an incoming connection");
                    }
                }
            });
        }
    }

    pub(super) async fn accept_one(
        mesh: &Arc<Mesh>,
        incoming: quinn::Incoming,
    ) -> Result<(), Failure> {
        let mut conn_seen = None;
        let result = Mesh::accept_inner(mesh, incoming, &mut conn_seen).await;
        Failure::classify(result, conn_seen.as_ref())
    }

    pub(super) async fn accept_inner(
        mesh: &Arc<Mesh>,
        incoming: quinn::Incoming,
        conn_seen: &mut Option<quinn::Connection>,
    ) -> Result<(), HandshakeError> {
        let timeout = mesh.config.protocol_timeout;
        let conn = tokio::time::timeout(timeout, incoming)
            .await
            .map_err(|_| HandshakeError::Timeout("the TLS handshake"))??;
        *conn_seen = Some(conn.clone());
        let (mut send, mut recv) = tokio::time::timeout(timeout, conn.accept_bi())
            .await
            .map_err(|_| HandshakeError::Timeout("waiting for the hello"))??;
        let first = tokio::time::timeout(timeout, read_message(&mut recv, HANDSHAKE_MAX))
            .await
            .map_err(|_| HandshakeError::Timeout("waiting for the hello"))??;
        let Some(NetMessage::Hello(hello)) = first else {
            conn.close(code::PROTOCOL.into(), b"expected hello");
            return Err(HandshakeError::Unexpected("a hello"));
        };
        if let Err(refused) = mesh.check_hello(&hello, &conn) {
            bump(&mesh.counters.rejected, "pg_net_rejected_total", 1);
            let reason = refused.to_string();
            // Bounded: a peer that grants no credit must not hold a
            // handshake slot.
            let reject = NetMessage::Reject {
                reason: reason.clone(),
            };
            let _ = tokio::time::timeout(timeout, write_message(&mut send, &reject)).await;
            let _ = send.finish();
            // Give the reject a moment to leave before the close.
            let _ = tokio::time::timeout(timeout, send.stopped()).await;
            conn.close(code::REJECTED.into(), reason.as_bytes());
            return Err(refused.into());
        }
        let welcome = NetMessage::Welcome(mesh.hello.clone());
        tokio::time::timeout(timeout, write_message(&mut send, &welcome))
            .await
            .map_err(|_| HandshakeError::Timeout("sending the welcome"))??;
        let _ = send.finish();
        Mesh::register(mesh, conn, hello, false).await
    }

    pub(super) async fn dial_once(mesh: &Arc<Mesh>, addr: SocketAddr) -> Result<NodeName, Failure> {
        let mut conn_seen = None;
        let result = Mesh::dial_inner(mesh, addr, &mut conn_seen).await;
        Failure::classify(result, conn_seen.as_ref())
    }

    pub(super) async fn dial_inner(
        mesh: &Arc<Mesh>,
        addr: SocketAddr,
        conn_seen: &mut Option<quinn::Connection>,
    ) -> Result<NodeName, HandshakeError> {
        let timeout = mesh.config.protocol_timeout;
        let client = mesh.tls.read().client.clone();
        let connecting = mesh.endpoint.connect_with(client, addr, NODE_SERVER_NAME)?;
        let conn = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| HandshakeError::Timeout("connecting"))??;
        *conn_seen = Some(conn.clone());
        // Our own certificate: this address is ours (a seed name that also
        // lists this node, in another address form).
        let ours = conn
            .peer_identity()
            .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
            .is_some_and(|chain| {
                chain.first().map(AsRef::as_ref) == Some(&mesh.tls.read().own_certificate[..])
            });
        if ours {
            conn.close(code::REJECTED.into(), b"dialed itself");
            return Err(HelloError::OwnName(mesh.hello.node.name.clone()).into());
        }
        let exchange = async {
            let (mut send, mut recv) = conn.open_bi().await?;
            write_message(&mut send, &NetMessage::Hello(mesh.hello.clone())).await?;
            let _ = send.finish();
            // A certificate the peer refused shows here, on the first read.
            Ok::<_, HandshakeError>(read_message(&mut recv, HANDSHAKE_MAX).await?)
        };
        let reply = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| HandshakeError::Timeout("the hello exchange"))??;
        match reply {
            Some(NetMessage::Welcome(hello)) => {
                if let Err(refused) = mesh.check_hello(&hello, &conn) {
                    conn.close(code::REJECTED.into(), refused.to_string().as_bytes());
                    return Err(refused.into());
                }
                let name = hello.node.name.clone();
                Mesh::register(mesh, conn, hello, true).await.map(|()| name)
            }
            Some(NetMessage::Reject { reason }) => {
                // The peer's words, bounded before they reach a log.
                let reason: String = reason.chars().take(200).collect();
                tracing::warn!(node = %mesh.hello.node, %addr, %reason, "refused by the peer");
                Err(HandshakeError::RefusedByPeer(reason))
            }
            _ => {
                conn.close(code::PROTOCOL.into(), b"expected welcome");
                Err(HandshakeError::Unexpected("a welcome or a reject"))
            }
        }
    }

    /// Checks a peer's hello ([`peers::check_hello`]) with the node name
    /// its certificate was issued to.
    pub(super) fn check_hello(
        &self,
        hello: &Hello,
        conn: &quinn::Connection,
    ) -> Result<(), HelloError> {
        let certified = conn
            .peer_identity()
            .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
            .and_then(|chain| chain.first().and_then(certificate_node_name));
        let blocked = self.blocked.lock().contains(&hello.node.name);
        peers::check_hello(&self.hello, hello, certified.as_deref(), blocked)
    }

    /// Dials what the policy says is due, reports each outcome back, and
    /// sleeps until the next deadline or a new input.
    pub(super) async fn dial_loop(mesh: Arc<Mesh>) {
        loop {
            if mesh.closed.load(Ordering::Acquire) {
                return;
            }
            let notified = mesh.discovery.dial_wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (due, next) = {
                let mut policy = mesh.discovery.dial.lock();
                (policy.poll_dials(clock()), policy.poll_timeout())
            };
            for addr in due {
                let m = Arc::clone(&mesh);
                mesh.runtime.spawn(async move {
                    let outcome = match Mesh::dial_once(&m, addr).await {
                        Ok(name) => DialOutcome::Connected(name),
                        Err(Failure::Benign) => DialOutcome::Failed,
                        Err(Failure::Refused(HandshakeError::Hello(HelloError::OwnName(_)))) => {
                            tracing::debug!(node = %m.hello.node, %addr, "this address is our own; not dialing it again");
                            DialOutcome::Own
                        }
                        Err(Failure::Refused(error)) => {
                            bump(
                                &m.counters.handshakes_failed,
                                "pg_net_handshakes_failed_total",
                                1,
                            );
                            let reason = Chain(&error);
                            // A certificate problem needs an operator: WARN,
                            // once per address until it connects.
                            if error.is_tls() && m.tls_warned(addr) {
                                tracing::warn!(
                                    node = %m.hello.node, %addr, %reason,
                                    "TLS refused the connection: certificates must be signed by the cluster CA and carry the DNS name `pg-node` (see docs/configuration.md)"
                                );
                            } else {
                                tracing::debug!(node = %m.hello.node, %addr, %reason, "dial failed");
                            }
                            DialOutcome::Failed
                        }
                    };
                    if matches!(outcome, DialOutcome::Connected(_)) {
                        m.discovery.tls_warned_about.lock().remove(&addr);
                    }
                    m.discovery.dial.lock().handle_dial_result(addr, outcome, clock());
                    m.discovery.dial_wake.notify_one();
                });
            }
            match next {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => {}
                        () = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

impl Mesh {
    /// Resolves the seed names (`host:port`) now and every `dns_refresh`,
    /// and hands each answer to the dial policy. A name that does not
    /// resolve keeps its last answer, is logged (at WARN once per failing
    /// streak) and is tried again sooner; it is never fatal.
    pub(super) async fn resolve_loop(mesh: Arc<Mesh>) {
        let names = mesh.config.seed_names.clone();
        if names.is_empty() {
            return;
        }
        let own = mesh.hello.listen;
        let resolver = SeedResolver::new(&mesh.config.dns_servers);
        let mut failing: Vec<bool> = vec![false; names.len()];
        let mut retry = Backoff::new(
            mesh.config.retry_base_delay.max(Duration::from_millis(500)),
            mesh.config.dns_refresh,
            mesh.jitter_seed.fetch_add(1, Ordering::Relaxed),
        );
        loop {
            // Armed before the check: a shutdown between the two still
            // wakes it.
            let stop = mesh.discovery.stop.notified();
            tokio::pin!(stop);
            stop.as_mut().enable();
            if mesh.closed.load(Ordering::Acquire) {
                return;
            }
            let mut any_failed = false;
            for (name, failed) in names.iter().zip(failing.iter_mut()) {
                match resolver.resolve(name).await {
                    Ok(found) => {
                        // A headless Service lists this node too.
                        let addrs: Vec<SocketAddr> =
                            found.into_iter().filter(|a| Some(*a) != own).collect();
                        if *failed {
                            tracing::info!(node = %mesh.hello.node, seed = %name, "seed name resolves again");
                        }
                        *failed = false;
                        tracing::debug!(node = %mesh.hello.node, seed = %name, ?addrs, "seed name resolved");
                        mesh.discovery
                            .dial
                            .lock()
                            .handle_resolved(name, &addrs, clock());
                        mesh.discovery.dial_wake.notify_one();
                    }
                    Err(error) => {
                        any_failed = true;
                        if !*failed {
                            tracing::warn!(node = %mesh.hello.node, seed = %name, %error, "seed name does not resolve; retrying");
                        }
                        *failed = true;
                    }
                }
            }
            let wait = if any_failed {
                retry.next_delay()
            } else {
                retry = Backoff::new(
                    mesh.config.retry_base_delay.max(Duration::from_millis(500)),
                    mesh.config.dns_refresh,
                    mesh.jitter_seed.fetch_add(1, Ordering::Relaxed),
                );
                mesh.config.dns_refresh
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = &mut stop => return,
            }
        }
    }
}

/// How seed names are resolved: the system's resolver, or given servers.
enum SeedResolver {
    System,
    Servers(Box<hickory_resolver::TokioResolver>),
}

impl SeedResolver {
    fn new(servers: &[SocketAddr]) -> Self {
        use hickory_resolver::config::{
            NameServerConfig, NameServerConfigGroup, ResolverConfig, ResolverOpts,
        };
        use hickory_resolver::proto::xfer::Protocol;
        if servers.is_empty() {
            return SeedResolver::System;
        }
        let mut group = NameServerConfigGroup::new();
        for server in servers {
            for protocol in [Protocol::Udp, Protocol::Tcp] {
                group.push(NameServerConfig::new(*server, protocol));
            }
        }
        let mut options = ResolverOpts::default();
        // Answers change (pods come and go): ask every time.
        options.cache_size = 0;
        let config = ResolverConfig::from_parts(None, Vec::new(), group);
        let resolver = hickory_resolver::Resolver::builder_with_config(
            config,
            hickory_resolver::name_server::TokioConnectionProvider::default(),
        )
        .with_options(options)
        .build();
        SeedResolver::Servers(Box::new(resolver))
    }

    /// The addresses `name` (`host:port`) stands for now.
    async fn resolve(&self, name: &str) -> Result<Vec<SocketAddr>, String> {
        match self {
            SeedResolver::System => tokio::net::lookup_host(name)
                .await
                .map(Iterator::collect)
                .map_err(|e| e.to_string()),
            SeedResolver::Servers(resolver) => {
                let (host, port) = name
                    .rsplit_once(':')
                    .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
                    .ok_or_else(|| format!("{name:?} is not host:port"))?;
                let found = resolver.lookup_ip(host).await.map_err(|e| e.to_string())?;
                Ok(found.iter().map(|ip| SocketAddr::new(ip, port)).collect())
            }
        }
    }
}
