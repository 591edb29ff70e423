//! # pg-runtime: pg-core, running
//!
//! Runs the sans-IO [`pg_core::Scope`] for real, on one node and across
//! nodes. A [`Node`] hosts lightweight [`Process`]es (a pid plus a mailbox)
//! and [`Scope`]s. Through a scope, processes join and leave groups, read
//! members, broadcast, and watch groups change:
//!
//! - **Writes without a hop.** A caller runs the core step itself under the
//!   scope's lock (flat combining), so an uncontended join costs no thread
//!   wake-up; the waiting callers are the bounded action queue
//!   (`action_queue_size` warns, `action_queue_max_size` fails fast with
//!   [`Error::Overloaded`]).
//! - **Reads that never wait.** Every step publishes the groups it changed
//!   before the caller returns (read-your-writes); reads load a snapshot,
//!   the same cost at 1 or 10 000 members.
//! - **Subscriptions that never silently miss.** [`Scope::monitor`] and
//!   [`Scope::events`] return the subscription and the current members
//!   from the same step; a slow subscriber only delays itself, up to a hard
//!   cap that ends it with an explicit [`RecvError::Lagged`].
//! - **Broadcasts that do not stall.** Payloads are [`Bytes`](bytes::Bytes),
//!   shared by all recipients; each remote node gets one message; a full
//!   mailbox is waited on for at most `broadcast_timeout`, alone.
//! - **The network is a trait.** [`Transport`] is all the runtime knows of
//!   other nodes; [`MemoryNetwork`] connects nodes in one process (with
//!   partitions and delays), pg-net over QUIC.
//!
//! ## Example
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use pg_core::GroupName;
//! use pg_runtime::{MemoryNetwork, Node, NodeOptions, ScopeOptions};
//!
//! let net = MemoryNetwork::new();
//! let id = pg_core::NodeId::parse_name("a", 1)?;
//! let node = Node::start_as(id.clone(), net.transport(&id), NodeOptions::default())?;
//! let scope = node.open_scope("app:pg", ScopeOptions::default())?;
//!
//! let mut worker = node.spawn();
//! let workers = GroupName::new("workers")?;
//! scope.join(worker.pid(), &[workers.clone()])?;
//! assert_eq!(scope.members("workers").to_vec(), vec![worker.pid().clone()]);
//!
//! let boss = node.spawn();
//! scope.broadcast(boss.pid(), "workers", "task", "42".into())?;
//! let message = worker.recv().await.expect("a message");
//! assert_eq!((&*message.topic, &message.payload[..]), ("task", &b"42"[..]));
//!
//! drop(worker); // the process ends: its memberships go, shortly after
//! scope.flush_exits().await;
//! assert!(scope.members("workers").is_empty());
//! # Ok(())
//! # }
//! ```

mod clusters;
mod config;
mod error;
mod exits;
mod intern;
mod mailbox;
mod memory;
mod node;
mod process;
mod scope;
mod subscription;
mod transport;
mod view;

pub use clusters::MAX_SCOPE_ID_LEN;
pub use config::{NodeOptions, ScopeOptions};
pub use error::{Error, ErrorKind};
pub use memory::{MemoryNetwork, MemoryTransport};
pub use node::{DeliveryCounters, Node};
pub use process::{Envelope, Listener, Liveness, Process};
pub use scope::{
    GroupsSnapshot, Health, REGISTRY_CONFLICT_TOPIC, Registration, RegistryConflict, Scope,
    ScopeCounters, decode_meta, encode_meta,
};
pub use subscription::{GroupFilter, Keyed, Pattern, RecvError, Subscription};
pub use transport::{Inbound, MAX_ANNOUNCED_SCOPES, SendError, Transport, Wire};
