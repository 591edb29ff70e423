//! # pg-net: the QUIC mesh of pg-rs
//!
//! Connects nodes for real and implements pg-runtime's
//! [`Transport`](pg_runtime::Transport): one QUIC connection (quinn +
//! rustls) per peer, shared by every scope.
//!
//! - **Secure by default.** Mutual TLS 1.3: every node presents a
//!   certificate signed by the cluster CA and verifies its peer's; a peer
//!   without one, or with one from another CA, never gets to send a frame.
//!   [`DevCa`] generates a development CA and node certificates; no key is
//!   ever committed.
//! - **Handshake.** Protocol version, cluster name, node run; a mismatch is
//!   refused with a reason the other side logs.
//! - **Framing.** Length-delimited postcard messages with a maximum size;
//!   malformed or oversized input closes the connection with a logged,
//!   counted error, never a panic. Membership and payloads travel on
//!   separate streams; queued messages are coalesced into large writes.
//! - **Channels.** Every message on a link is numbered and kept until the
//!   peer acknowledges it, so a failed write is retried on a fresh stream
//!   without duplicating or reordering anything; the rules are the sans-IO
//!   [`link`] module, property-tested under seeded faults.
//! - **Mesh.** Seeds plus peer exchange; every address ever learnt is
//!   redialed with backoff; per-peer circuit breakers; liveness from QUIC
//!   keep-alives and the idle timeout (a silent peer is down within
//!   `idle_timeout + keep_alive`, 950 ms by default; a shutting-down peer
//!   at once).
//!
//! ## Example
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use pg_net::{DevCa, NetConfig, QuicTransport};
//! use pg_runtime::{Node, NodeOptions};
//!
//! let ca = DevCa::generate("demo")?;
//! let id = pg_core::NodeId::parse_name("a", 1)?;
//! let mut config = NetConfig::new("demo", "127.0.0.1:0".parse()?);
//! config.seeds = vec!["127.0.0.1:4700".parse()?];
//! let transport = QuicTransport::bind(id.clone(), config, &ca.issue("a")?)?;
//! let node = Node::start_as(id, transport, NodeOptions::default())?;
//! # let _ = node;
//! # Ok(())
//! # }
//! ```

mod backoff;
mod breaker;
mod certs;
mod config;
pub mod dial;
mod error;
mod handshake;
pub mod link;
mod mesh;
pub mod peers;
mod tls;
pub mod wire;

pub use backoff::Backoff;
pub use breaker::{BreakerState, CircuitBreaker};
pub use certs::{
    CA_VALIDITY, CertError, DevCa, MAX_VALIDITY, NODE_SERVER_NAME, NODE_VALIDITY, TlsIdentity,
    certificate_node_name,
};
pub use config::NetConfig;
pub use error::NetError;
pub use handshake::HelloError;
pub use mesh::{NetStats, QuicTransport};
pub use tls::{client as client_config, server as server_config};
pub use wire::{ALPN, Hello, NET_PROTOCOL_VERSION, NetMessage, WireError};
