//! Why a connection did not become a link: typed errors of the handshake,
//! each with its source, and how a failure is told apart from the benign
//! close of a duplicate connection.

use std::fmt;

use pg_core::NodeName;
use thiserror::Error;

use crate::mesh::{ReadError, code};

/// Why a peer's hello (or welcome) was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HelloError {
    /// The peer speaks another version of the node protocol.
    #[error("protocol version {theirs} is not {ours}")]
    Version {
        /// The peer's version.
        theirs: u16,
        /// Ours.
        ours: u16,
    },
    /// The peer belongs to another cluster.
    #[error("cluster {theirs:?} is not {ours:?}")]
    Cluster {
        /// The peer's cluster name (cut to 64 bytes).
        theirs: String,
        /// Ours.
        ours: String,
    },
    /// The peer claims this node's own name.
    #[error("{0} is this node's own name")]
    OwnName(NodeName),
    /// The peer is refused on purpose (fault injection).
    #[error("{0} is blocked (fault injection)")]
    Blocked(NodeName),
    /// The hello names another node than the certificate does.
    #[error("certificate is issued to {certified:?}, the hello claims {claimed:?}")]
    NameMismatch {
        /// The node name in the certificate.
        certified: String,
        /// The node name in the hello.
        claimed: String,
    },
    /// The peer's certificate carries no node name.
    #[error("no node name in the peer certificate")]
    NoCertifiedName,
}

/// Why a handshake failed.
#[derive(Debug, Error)]
pub(crate) enum HandshakeError {
    /// The connection could not be started.
    #[error("could not connect")]
    Connect(#[from] quinn::ConnectError),
    /// The connection failed (TLS included: a refused certificate shows
    /// here).
    #[error("connection failed")]
    Connection(#[from] quinn::ConnectionError),
    /// A step took longer than `protocol_timeout`.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// Writing a handshake message failed.
    #[error("writing the handshake failed")]
    Write(#[from] quinn::WriteError),
    /// Reading a handshake message failed.
    #[error("reading the handshake failed")]
    Read(#[from] ReadError),
    /// The peer refused us, and said why.
    #[error("refused by the peer: {0}")]
    RefusedByPeer(String),
    /// The peer sent another message than the handshake expects.
    #[error("expected {0}, got another message")]
    Unexpected(&'static str),
    /// We refused the peer's hello.
    #[error("refused the peer")]
    Hello(#[from] HelloError),
}

impl HandshakeError {
    /// Whether TLS refused the connection (a certificate not signed by the
    /// cluster CA, without the `pg-node` name, expired, ...): an operator
    /// must act, so it is logged at WARN, not DEBUG.
    pub(crate) fn is_tls(&self) -> bool {
        // QUIC carries TLS alerts as the transport codes 0x100-0x1ff.
        let crypto = |code: quinn::TransportErrorCode| u64::from(code) & !0xff == 0x100;
        match self {
            HandshakeError::Connection(quinn::ConnectionError::TransportError(e)) => crypto(e.code),
            HandshakeError::Connection(quinn::ConnectionError::ConnectionClosed(close)) => {
                crypto(close.error_code)
            }
            _ => false,
        }
    }
}

/// How a handshake attempt ended badly.
pub(crate) enum Failure {
    /// The connection was closed because another one to the same node won
    /// (both dialed at once): nothing is wrong.
    Benign,
    /// A real failure.
    Refused(HandshakeError),
}

impl Failure {
    /// Tells a real failure from the close of a duplicate connection.
    pub(crate) fn classify<T>(
        result: Result<T, HandshakeError>,
        conn: Option<&quinn::Connection>,
    ) -> Result<T, Failure> {
        let error = match result {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let benign = conn
            .and_then(quinn::Connection::close_reason)
            .is_some_and(|r| match r {
                quinn::ConnectionError::ApplicationClosed(close) => {
                    close.error_code == code::DUPLICATE.into()
                        || close.error_code == code::REPLACED.into()
                }
                _ => false,
            });
        Err(if benign {
            Failure::Benign
        } else {
            Failure::Refused(error)
        })
    }
}

/// An error with its chain of sources, `a: b: c`, for logs.
pub(crate) struct Chain<'a>(pub(crate) &'a dyn std::error::Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_alerts_are_told_apart() {
        let closed = |code| {
            HandshakeError::Connection(quinn::ConnectionError::ConnectionClosed(
                quinn::ConnectionClose {
                    error_code: code,
                    frame_type: None,
                    reason: bytes::Bytes::new(),
                },
            ))
        };
        // bad_certificate (42) and unknown_ca (48), as QUIC carries them.
        assert!(closed(quinn::TransportErrorCode::crypto(42)).is_tls());
        assert!(closed(quinn::TransportErrorCode::crypto(48)).is_tls());
        assert!(!HandshakeError::Timeout("connecting").is_tls());
        assert!(!HandshakeError::Connection(quinn::ConnectionError::TimedOut).is_tls());
    }
}
