//! # pg-core: the sans-IO heart of pg-rs
//!
//! Distributed process groups in the manner of Erlang/OTP `pg`, as a pure
//! state machine. A [`Scope`] holds one scope's membership view, cluster
//! wide, and speaks the protocol that keeps it in step with the same scope
//! on other nodes. It does no IO, spawns nothing, takes no lock and reads no
//! clock: inputs are method calls with the time passed in, outputs are
//! values the caller drains. The same inputs always give the same outputs,
//! so tests and the simulator ([`sim`], feature `sim`) drive it
//! deterministically, and `pg-runtime` drives it for real.
//!
//! ## Model
//! - Each node is the only writer of its own processes' memberships (its
//!   *part*), versioned by `(incarnation, seq)`; the view is the union of
//!   the parts of every connected node.
//! - Local changes travel as ordered [`Frame::Delta`]s; a gap or an unknown
//!   incarnation asks for a [`Frame::Sync`], applied differentially (events
//!   only for real changes). Anti-entropy compares [`Frame::Digest`]s.
//! - A node going down takes its members with it; a newer incarnation
//!   replaces an older one.
//!
//! ## Example
//! ```
//! use std::time::Instant;
//! use pg_core::{EventKind, GroupName, NodeId, Scope, ScopeConfig};
//!
//! let now = Instant::now();
//! let node = NodeId::parse_name("a", 1)?;
//! let mut scope = Scope::new(node.clone(), ScopeConfig::default(), now);
//! let pid = node.pid(7)?;
//! let workers = GroupName::new("workers")?;
//!
//! scope.join(&pid, &[workers.clone(), workers.clone()])?; // joined twice
//! // Listed once per join, as Erlang's `pg:get_members/2` does.
//! assert_eq!(scope.members("workers").to_vec(), vec![pid.clone(), pid.clone()]);
//! assert_eq!(scope.members("workers").distinct_len(), 1);
//! assert_eq!(scope.join_count(&pid, "workers"), 2);
//!
//! scope.exit(&pid)?; // leaves everything, reported once per join
//! let mut left = 0;
//! while let Some(event) = scope.poll_event() {
//!     if event.kind == EventKind::Left {
//!         left += event.pids().count();
//!     }
//! }
//! assert_eq!(left, 2);
//! assert!(scope.members("workers").is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod config;
mod error;
mod event;
mod frame;
mod group;
mod id;
mod member_list;
mod members;
mod membership;
mod meta;
mod pvec;
mod registry;
mod registry_event;
mod scope;
mod sync_layout;
mod sync_parts;
mod timer;

#[cfg(feature = "sim")]
pub mod sim;

pub use config::ScopeConfig;
pub use error::{CommandError, DecodeError, FrameInvariant, IdError, Limit, Violation};
pub use event::{Event, EventDetail, EventEntry, EventKind, MetaChange};
pub use frame::{Frame, Op, PROTOCOL_VERSION, PartVersion, SyncGroup, SyncReg};
pub use group::{GroupName, MAX_GROUP_NAME_LEN};
pub use id::{MAX_NODE_NAME_LEN, MAX_PID_SERIAL, NodeId, NodeName, Pid};
pub use members::{Iter as MembersIter, IterCounted as MembersIterCounted, Members};
pub use meta::{LeaveReason, MAX_META_SIZE, Meta};
pub use registry::{
    Candidate, Choice, EarliestWins, MAX_STAMP, RegisterSpec, Registration, Resolver,
};
pub use registry_event::{Conflict, RegistryEvent, RegistryEventKind, UnregisterReason};
pub use scope::{Scope, ScopeStats, Transmit};
pub use sync_parts::{MAX_SYNC_PART_ENTRIES, MAX_SYNC_PARTS};
