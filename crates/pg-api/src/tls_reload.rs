//! Certificate rotation without a restart: a node started from PEM files
//! reads them again every `tls_reload` and, when their contents changed
//! and load, takes them for every handshake from then on (links already up
//! keep theirs). A renewed certificate (cert-manager rewrites the files
//! before the old one expires) or a rotated CA so needs no restart.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use pg_net::{QuicTransport, TlsIdentity};

/// Where a node's TLS material lives, and how often to look again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA certificate (PEM).
    pub ca: PathBuf,
    /// The node's certificate chain (PEM).
    pub cert: PathBuf,
    /// The node's private key (PEM).
    pub key: PathBuf,
    /// How often the files are read again (`Duration::ZERO`: never).
    pub reload_every: Duration,
}

impl TlsFiles {
    fn contents(&self) -> Option<Vec<Vec<u8>>> {
        [&self.ca, &self.cert, &self.key]
            .into_iter()
            .map(|p| std::fs::read(p).ok())
            .collect()
    }
}

/// Watches `files` for as long as the transport lives.
pub(crate) fn watch(files: TlsFiles, transport: &Arc<QuicTransport>) {
    if files.reload_every.is_zero() {
        return;
    }
    let weak: Weak<QuicTransport> = Arc::downgrade(transport);
    tokio::spawn(async move {
        let mut seen = files.contents();
        let mut failing = false;
        loop {
            tokio::time::sleep(files.reload_every).await;
            let Some(transport) = weak.upgrade() else {
                return;
            };
            let now = files.contents();
            if now.is_none() || now == seen {
                continue;
            }
            match TlsIdentity::from_pem_files(&files.ca, &files.cert, &files.key)
                .map_err(|e| e.to_string())
                .and_then(|identity| {
                    transport
                        .reload_identity(&identity)
                        .map_err(|e| e.to_string())
                }) {
                Ok(()) => {
                    seen = now;
                    failing = false;
                }
                // Half-written files (a rotation in progress) are read
                // again at the next round; the old identity stays.
                Err(error) => {
                    if !failing {
                        tracing::warn!(%error, cert = %files.cert.display(), "changed TLS files do not load; keeping the current ones");
                    }
                    failing = true;
                }
            }
        }
    });
}
