//! # pg-api: distributed process groups, for users
//!
//! One crate to depend on, shaped like Erlang's `pg` API in Rust (every operation is specified in
//! docs/semantics.md): start a
//! [`Node`], spawn [`Process`]es, open a scope, join, read, broadcast,
//! watch.
//!
//! - **Nodes** come from [`Node::builder`] or a YAML file in the documented
//!   shape ([`Config`]): in memory for a single process, or over QUIC with
//!   mutual TLS when given a listen address; the API is the same.
//! - **Scope instances** ([`Instance`]) are bound to a process and offer
//!   `join`, `leave`, `get_members`, `get_local_members`, `which_groups`,
//!   `which_local_groups`, `broadcast`, `broadcast_local`, `monitor`,
//!   `events` and `release`, with typed payload helpers; member metadata
//!   (`join_with_meta`, `get_members_with_meta`), counts and prefix reads,
//!   pattern monitors, and the registry (`register`, `lookup`,
//!   `monitor_registry`, ...).
//! - **Named clusters**: a [`Process`] connects its node to a scope at run
//!   time (`connect`, `connect_leased`), leaves it (`disconnect`), and asks
//!   who runs it (`nodes`).
//! - **Permissions**: every call is checked against a [`Policy`] (docs/semantics.md's
//!   table); the default allows everything, [`RulePolicy`] allows or denies
//!   by principal, permission and resource pattern, from code or YAML.
//! - **Errors** carry a [`ErrorKind`]: `Invalid`, `PermissionDenied`,
//!   `NotFound`, `Overloaded`, `LimitExceeded`, `Timeout`, `Closed`,
//!   `Internal`.
//!
//! ## Example
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use pg_api::{Config, Node};
//!
//! let config = Config::from_yaml(
//!     "- name: pg\n  kind: pg.scope\n  max_members_per_group: 10000\n",
//! )?;
//! let node = Node::from_config(&config)?;
//!
//! let mut worker = node.spawn("worker");
//! let group = worker.open("app:pg")?;
//! group.join(["workers", "all"])?;
//! assert_eq!(group.get_members("workers")?.len(), 1);
//!
//! let boss = node.spawn("boss");
//! boss.open("app:pg")?.broadcast("workers", "task", "42")?;
//! let task = worker.recv().await.expect("a task");
//! assert_eq!(&task.payload[..], b"42");
//!
//! group.release();
//! assert!(group.join("workers").is_err(), "released instances refuse calls");
//! # Ok(())
//! # }
//! ```

mod clusters;
mod config;
mod error;
mod instance;
mod meta;
mod node;
mod permission;
mod prefix;
mod process;
mod registry;
mod tls_reload;

pub use config::{AppEntry, Config, ConfigError, MeshSettings, NodeConfig, ScopeEntry, expand_env};
pub use error::{ErrorKind, PgError};
pub use instance::{Entry, Groups, Instance};
pub use node::{Node, NodeBuilder};
pub use permission::{AllowAll, Effect, Permission, Policy, Rule, RulePolicy, glob};
pub use process::Process;
pub use registry::{RegisterOptions, RegisterOutcome};
pub use tls_reload::TlsFiles;

pub use pg_core::{
    Candidate, Choice, Event, EventEntry, EventKind, GroupName, LeaveReason, MAX_GROUP_NAME_LEN,
    MAX_META_SIZE, Members, Meta, MetaChange, NodeId, NodeName, Pid, RegistryEvent,
    RegistryEventKind, Resolver, ScopeStats, UnregisterReason,
};
pub use pg_net::{DevCa, NetConfig, NetStats, TlsIdentity};
pub use pg_runtime::{
    Envelope, GroupsSnapshot, Listener, MAX_ANNOUNCED_SCOPES, MAX_SCOPE_ID_LEN, NodeOptions,
    Pattern, REGISTRY_CONFLICT_TOPIC, RecvError, Registration, RegistryConflict, ScopeOptions,
    Subscription, decode_meta,
};
