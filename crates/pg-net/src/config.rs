//! Options of the QUIC mesh (the documented network fields, with defaults).

use std::net::SocketAddr;
use std::time::Duration;

use crate::link::LinkConfig;

/// How a node joins and keeps its mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// Nodes of other clusters are refused at the handshake.
    pub cluster: String,
    /// Where to accept connections (port 0: any free port).
    pub listen: SocketAddr,
    /// The address to announce to peers (default: the bound address).
    pub advertise: Option<SocketAddr>,
    /// Static seed addresses; peer exchange finds the rest.
    pub seeds: Vec<SocketAddr>,
    /// Seeds as DNS names, `host:port` (a Kubernetes headless Service):
    /// resolved at start and every `dns_refresh`; every address an answer
    /// yields is a seed, and one it stops yielding is not any more. A name
    /// that does not resolve is retried and logged, never fatal.
    pub seed_names: Vec<String>,
    /// How often seed names are resolved again. Default 30 s.
    pub dns_refresh: Duration,
    /// DNS servers to resolve seed names with (UDP and TCP, no cache);
    /// empty (the default): the system's resolver.
    pub dns_servers: Vec<SocketAddr>,
    /// Largest message accepted or sent, in bytes: room for the runtime's
    /// `max_payload_size` (8 MiB) and headers. Default 9 MiB.
    pub max_frame_size: usize,
    /// A peer silent this long is declared down. A peer that dies without
    /// a word is detected within about `idle_timeout + keep_alive` (our own
    /// keep-alive to the dead peer restarts QUIC's idle timer once): 950 ms
    /// with the defaults. Default 750 ms.
    pub idle_timeout: Duration,
    /// Keep-alive cadence, well under `idle_timeout`. Default 200 ms.
    pub keep_alive: Duration,
    /// Bound of a dial or handshake. Default 5 s.
    pub protocol_timeout: Duration,
    /// Consecutive send failures that open a peer's circuit. Default 3.
    pub circuit_breaker_failures: u32,
    /// Wait before an open circuit lets a test send through. Default 10 s.
    pub circuit_breaker_reset_time: Duration,
    /// Retries of a failed stream write (0 disables). Default 3.
    pub max_retries: u32,
    /// First backoff delay of retries and redials. Default 100 ms.
    pub retry_base_delay: Duration,
    /// Largest backoff delay. Default 1 s.
    pub retry_max_delay: Duration,
    /// Seeds dialed at once on start; the rest follow after a delay.
    /// Default 3.
    pub discovery_fanout: usize,
    /// Messages queued per peer and stream before sends report
    /// `Overloaded`. Default 65 536.
    pub peer_queue: usize,
    /// Acknowledgement timing and the unacknowledged-bytes window of each
    /// channel (see [`link`](crate::link)).
    pub link: LinkConfig,
}

impl NetConfig {
    /// Defaults for cluster `cluster`, listening on `listen`.
    pub fn new(cluster: &str, listen: SocketAddr) -> Self {
        Self {
            cluster: cluster.to_owned(),
            listen,
            advertise: None,
            seeds: Vec::new(),
            seed_names: Vec::new(),
            dns_refresh: Duration::from_secs(30),
            dns_servers: Vec::new(),
            max_frame_size: 9 << 20,
            idle_timeout: Duration::from_millis(750),
            keep_alive: Duration::from_millis(200),
            protocol_timeout: Duration::from_secs(5),
            circuit_breaker_failures: 3,
            circuit_breaker_reset_time: Duration::from_secs(10),
            max_retries: 3,
            retry_base_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_secs(1),
            discovery_fanout: 3,
            peer_queue: 65_536,
            link: LinkConfig::default(),
        }
    }
}
