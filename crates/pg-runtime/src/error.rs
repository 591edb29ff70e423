//! Errors of the runtime, with the kinds DESIGN.md names.

use pg_core::{CommandError, Limit};
use thiserror::Error;

/// What kind of failure an [`Error`](enum@Error) is, for callers that map errors to
/// codes (pg-api maps them to its error kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A missing, empty or malformed argument, or a leave without
    /// membership.
    Invalid,
    /// No such scope.
    NotFound,
    /// The scope's action queue is full; nothing was done.
    Overloaded,
    /// A configured limit would be exceeded; nothing was done.
    LimitExceeded,
    /// The node, scope or subscription is shut down.
    Closed,
}

/// Why a runtime call failed. State is unchanged in every case.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// The scope state machine refused the command.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// More than `action_queue_max_size` calls were waiting on the scope.
    #[error("scope {scope:?} is overloaded: {waiting} calls waiting (max {max})")]
    Overloaded {
        /// The scope.
        scope: String,
        /// Calls waiting when this one arrived.
        waiting: usize,
        /// The configured `action_queue_max_size`.
        max: usize,
    },
    /// No scope with this id runs on the node.
    #[error("scope {0:?} not found")]
    ScopeNotFound(String),
    /// A scope id that is empty.
    #[error("scope id is empty")]
    EmptyScopeId,
    /// A broadcast or send with an empty topic.
    #[error("topic is empty")]
    EmptyTopic,
    /// A prefix read or subscription with an empty prefix (every group:
    /// use the unfiltered call).
    #[error("prefix is empty")]
    EmptyPrefix,
    /// A node name that does not validate.
    #[error("invalid node name: {0}")]
    InvalidNodeName(String),
    /// No tokio runtime to run the node's tasks on.
    #[error("a node must be started inside a tokio runtime")]
    NoRuntime,
    /// A scope was opened twice with different options.
    #[error("scope {0:?} is already open with other options")]
    ScopeConflict(String),
    /// A pid of this node whose process is not alive (it ended, or never
    /// existed): it cannot join or own a subscription.
    #[error("no live process {0} on this node")]
    NoProcess(pg_core::Pid),
    /// A payload over `max_payload_size`; nothing was sent.
    #[error("payload of {size} bytes exceeds max_payload_size ({max})")]
    PayloadTooLarge {
        /// The payload's size.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// A typed payload that does not encode or decode.
    #[error("payload encoding: {0}")]
    Encoding(String),
    /// The node has shut down.
    #[error("the node has shut down")]
    NodeClosed,
    /// A scope id longer than the limit.
    #[error("scope id of {len} bytes, over {max}")]
    ScopeIdTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// This node already runs as many scopes as a node may announce.
    #[error("this node already runs {max} scopes, the most it may")]
    TooManyScopes {
        /// The limit.
        max: usize,
    },
    /// The scope is closed: this node disconnected from it, or shut down.
    #[error("scope {0:?} is closed (disconnected, or the node shut down)")]
    ScopeClosed(String),
}

impl Error {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Command(CommandError::LimitExceeded(_) | CommandError::MetaTooLarge { .. })
            | Error::TooManyScopes { .. } => ErrorKind::LimitExceeded,
            Error::Command(_)
            | Error::EmptyScopeId
            | Error::EmptyTopic
            | Error::EmptyPrefix
            | Error::ScopeIdTooLong { .. }
            | Error::InvalidNodeName(_)
            | Error::NoProcess(_)
            | Error::PayloadTooLarge { .. }
            | Error::Encoding(_)
            | Error::ScopeConflict(_) => ErrorKind::Invalid,
            Error::Overloaded { .. } => ErrorKind::Overloaded,
            Error::ScopeNotFound(_) => ErrorKind::NotFound,
            Error::NodeClosed | Error::ScopeClosed(_) | Error::NoRuntime => ErrorKind::Closed,
        }
    }

    /// The limit exceeded, for [`ErrorKind::LimitExceeded`].
    pub fn limit(&self) -> Option<&Limit> {
        match self {
            Error::Command(CommandError::LimitExceeded(limit)) => Some(limit),
            _ => None,
        }
    }
}
