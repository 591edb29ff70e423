//! Errors, with the kinds of DESIGN.md.

use std::fmt;

/// The kind of a failure (the conventional process-group error kinds,
/// plus the ones a distributed runtime needs; see docs/semantics.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A missing or empty argument, a leave without membership, a
    /// released instance, a dead process, bad configuration.
    Invalid,
    /// The permission policy refused the call.
    PermissionDenied,
    /// No such scope (some process-group APIs report `INTERNAL`; `NotFound`
    /// says what happened).
    NotFound,
    /// The scope's action queue is full; nothing was done.
    Overloaded,
    /// A configured limit would be exceeded; nothing was done.
    LimitExceeded,
    /// An operation did not finish in time.
    Timeout,
    /// The node or subscription is shut down.
    Closed,
    /// A failure of the machinery itself (network start-up, TLS).
    Internal,
}

impl ErrorKind {
    /// The seed's spelling: `INVALID`, `PERMISSION_DENIED`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "INVALID",
            ErrorKind::PermissionDenied => "PERMISSION_DENIED",
            ErrorKind::NotFound => "NOT_FOUND",
            ErrorKind::Overloaded => "OVERLOADED",
            ErrorKind::LimitExceeded => "LIMIT_EXCEEDED",
            ErrorKind::Timeout => "TIMEOUT",
            ErrorKind::Closed => "CLOSED",
            ErrorKind::Internal => "INTERNAL",
        }
    }
}

/// An error of the pg-api facade: a kind and a message. State is unchanged
/// whenever a call fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgError {
    kind: ErrorKind,
    message: String,
}

impl PgError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for PgError {}

impl From<pg_runtime::Error> for PgError {
    fn from(e: pg_runtime::Error) -> Self {
        use pg_runtime::ErrorKind as K;
        let kind = match e.kind() {
            K::Invalid => ErrorKind::Invalid,
            K::NotFound => ErrorKind::NotFound,
            K::Overloaded => ErrorKind::Overloaded,
            K::LimitExceeded => ErrorKind::LimitExceeded,
            K::Closed => ErrorKind::Closed,
        };
        Self::new(kind, e.to_string())
    }
}

impl From<pg_core::CommandError> for PgError {
    fn from(e: pg_core::CommandError) -> Self {
        PgError::from(pg_runtime::Error::from(e))
    }
}
