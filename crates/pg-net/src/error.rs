//! Errors of the mesh.

use thiserror::Error;

use crate::certs::CertError;

/// Why the mesh could not start.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NetError {
    /// TLS material or configuration rejected by rustls/quinn.
    #[error("TLS: {0}")]
    Tls(String),
    /// TLS material could not be made or read.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// A configuration value that cannot work.
    #[error("invalid network configuration: {0}")]
    Config(String),
    /// The socket could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        reason: String,
    },
    /// No tokio runtime to run the mesh on.
    #[error("the mesh must be started inside a tokio runtime")]
    NoRuntime,
}
