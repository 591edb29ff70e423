//! A handshaken connection becoming the link to its node (or closed, as
//! [`peers::decide`](crate::peers::decide) says), and the link's end.

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use pg_core::{NodeId, NodeName};
use tokio::sync::mpsc;

use super::channels::Channels;
use super::{Link, Mesh, PeerEvent, STREAM_BULK, STREAM_MEMBERSHIP, clock, code};
use crate::breaker::CircuitBreaker;
use crate::handshake::HandshakeError;
use crate::peers::{self, LinkDecision, LinkInfo};
use crate::wire::{self, Hello, NetMessage};

impl Mesh {
    /// Makes a handshaken connection the link to its node, or closes it.
    pub(super) async fn register(
        mesh: &Arc<Mesh>,
        conn: quinn::Connection,
        hello: Hello,
        dialed: bool,
    ) -> Result<(), HandshakeError> {
        let peer = hello.node.clone();
        if let Some(listen) = hello.listen {
            mesh.remember(&peer.name, listen);
        }
        let open = |kind: u8| {
            let conn = conn.clone();
            async move {
                let mut stream = conn.open_uni().await?;
                stream.write_all(&[kind]).await?;
                Ok::<_, HandshakeError>(stream)
            }
        };
        let streams = async {
            Ok::<_, HandshakeError>((open(STREAM_MEMBERSHIP).await?, open(STREAM_BULK).await?))
        };
        let (membership, bulk) = tokio::time::timeout(mesh.config.protocol_timeout, streams)
            .await
            .map_err(|_| HandshakeError::Timeout("opening the streams"))??;
        let me = &mesh.hello.node.name;
        let initiator = if dialed {
            me.clone()
        } else {
            peer.name.clone()
        };
        let (mem_tx, mem_rx) = mpsc::channel(mesh.config.peer_queue.max(1));
        let (bulk_tx, bulk_rx) = mpsc::channel(mesh.config.peer_queue.max(1));
        let breaker = Arc::new(Mutex::new(CircuitBreaker::new(
            mesh.config.circuit_breaker_failures,
            mesh.config.circuit_breaker_reset_time,
        )));
        let channels = Arc::new(Channels::new(mesh.config.link));
        let link = Link {
            node: peer.clone(),
            conn: conn.clone(),
            initiator,
            membership: mem_tx,
            bulk: bulk_tx,
            breaker: Arc::clone(&breaker),
            channels: Arc::clone(&channels),
        };
        let (reported_tx, reported_rx) = tokio::sync::oneshot::channel();
        let reported = {
            let mut peers = mesh.peers.lock();
            let current = peers.get(&peer.name).map(|old| LinkInfo {
                peer: old.node.clone(),
                initiator: old.initiator.clone(),
            });
            let new = LinkInfo {
                peer: peer.clone(),
                initiator: link.initiator.clone(),
            };
            let (report, replaced, reset) = match peers::decide(me, current.as_ref(), &new) {
                LinkDecision::StaleRun => {
                    conn.close(
                        code::REPLACED.into(),
                        b"a newer run of this node is connected",
                    );
                    return Ok(());
                }
                LinkDecision::DuplicateLoses => {
                    conn.close(code::DUPLICATE.into(), b"duplicate connection");
                    return Ok(());
                }
                // Both dialed: the connection dialed by the smaller name
                // stays, on both sides alike. What was in flight on the
                // other may be lost: the scopes re-send their state.
                LinkDecision::ReplacesDuplicate => match peers.get(&peer.name) {
                    Some(old) => {
                        old.conn
                            .close(code::DUPLICATE.into(), b"duplicate connection");
                        (false, None, Some(Arc::clone(&old.channels)))
                    }
                    None => (true, None, None),
                },
                LinkDecision::ReplacesOlderRun => match peers.get(&peer.name) {
                    Some(old) => {
                        old.conn
                            .close(code::REPLACED.into(), b"replaced by a newer run");
                        (true, Some(Arc::clone(&old.channels)), None)
                    }
                    None => (true, None, None),
                },
                LinkDecision::New => (true, None, None),
            };
            peers.insert(peer.name.clone(), link.clone());
            mesh.discovery
                .dial
                .lock()
                .handle_connected(&peer.name, hello.listen, clock());
            // Queued under the lock, so ups, resets and downs reach the
            // runtime in the order the links changed; either way this link
            // reads nothing until the runtime has taken the event (and
            // every one before it: the `Up` of a link this one replaces
            // may still be queued).
            if report {
                let up = PeerEvent::Up(peer.clone(), reported_tx, replaced);
                let _ = mesh.events.send(up);
                Some(reported_rx)
            } else if let Some(old) = reset {
                let _ = mesh
                    .events
                    .send(PeerEvent::Reset(peer.clone(), reported_tx, old));
                Some(reported_rx)
            } else {
                None
            }
        };
        for (kind, stream, rx, guard) in [
            (STREAM_MEMBERSHIP, membership, mem_rx, None),
            (STREAM_BULK, bulk, bulk_rx, Some(Arc::clone(&breaker))),
        ] {
            let m = Arc::clone(mesh);
            let conn = conn.clone();
            let channels = Arc::clone(&channels);
            mesh.runtime
                .spawn(async move { m.write_loop(conn, kind, stream, rx, guard, channels).await });
        }
        if let Some(reported) = reported {
            // The runtime hears of the peer before any of its messages.
            if reported.await.is_err() {
                return Ok(());
            }
        }
        tracing::info!(node = %mesh.hello.node, %peer, dialed, "peer connected");
        // Tell the new peer whom we know, and everyone else about it.
        let (known, others): (Vec<(NodeName, SocketAddr)>, Vec<Link>) = {
            let listen_of = mesh.discovery.listen_of.lock();
            let peers = mesh.peers.lock();
            let known = peers
                .keys()
                .filter(|n| **n != peer.name)
                .filter_map(|n| listen_of.get(n).map(|a| (n.clone(), *a)))
                .collect();
            let others = peers.values().filter(|l| l.node != peer).cloned().collect();
            (known, others)
        };
        // In lists the receiver accepts, however large the cluster.
        for chunk in known.chunks(wire::MAX_PEERS) {
            let peers = chunk.to_vec();
            let _ = link.membership.try_send(NetMessage::Peers { peers }.into());
        }
        if let Some(listen) = hello.listen {
            for other in others {
                let news = vec![(peer.name.clone(), listen)];
                let _ = other
                    .membership
                    .try_send(NetMessage::Peers { peers: news }.into());
            }
        }
        let m = Arc::clone(mesh);
        let (c, p) = (conn.clone(), peer.clone());
        mesh.runtime
            .spawn(async move { m.read_streams(c, p, channels).await });
        let m = Arc::clone(mesh);
        mesh.runtime.spawn(async move { m.watch(conn, peer).await });
        Ok(())
    }

    /// Reports the peer down when its connection closes, and redials it.
    pub(super) async fn watch(self: Arc<Self>, conn: quinn::Connection, peer: NodeId) {
        let reason = conn.closed().await;
        {
            let mut peers = self.peers.lock();
            let current = peers
                .get(&peer.name)
                .is_some_and(|l| l.conn.stable_id() == conn.stable_id());
            if !current {
                return; // a duplicate or replaced connection: nothing changed
            }
            if let Some(link) = peers.remove(&peer.name) {
                let _ = self
                    .events
                    .send(PeerEvent::Down(peer.clone(), link.channels));
            }
            // Both sides redial (the smaller name first): a link comes back
            // whoever restarted, and whatever their seeds. Told under the
            // peers lock, as register tells of a link up, so the policy
            // sees ups and downs in the order the links changed.
            self.discovery
                .dial
                .lock()
                .handle_disconnected(&peer.name, clock());
        }
        tracing::info!(node = %self.hello.node, %peer, %reason, "peer disconnected");
        self.discovery.dial_wake.notify_one();
    }
}
