//! quinn and rustls configuration: TLS 1.3 with the ring provider, mutual
//! authentication against the cluster CA only, ALPN, and the liveness
//! timers.

use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;

use crate::certs::TlsIdentity;
use crate::config::NetConfig;
use crate::error::NetError;
use crate::wire::ALPN;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // Always the ring provider, explicitly: relying on a process-wide default
    // panics when two providers end up compiled in.
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(identity: &TlsIdentity) -> Result<Arc<RootCertStore>, NetError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(identity.ca.clone())
        .map_err(|e| NetError::Tls(format!("cluster CA: {e}")))?;
    Ok(Arc::new(roots))
}

fn transport(config: &NetConfig) -> Result<Arc<quinn::TransportConfig>, NetError> {
    let mut t = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(config.idle_timeout)
        .map_err(|_| NetError::Config("idle_timeout is too large".into()))?;
    t.max_idle_timeout(Some(idle));
    t.keep_alive_interval(Some(config.keep_alive));
    // A peer needs two streams each way (and a few for write retries): the
    // cap bounds what a misbehaving peer can make us buffer.
    t.max_concurrent_uni_streams(16u32.into());
    t.max_concurrent_bidi_streams(4u32.into());
    Ok(Arc::new(t))
}

/// The quinn configuration of the accepting side: presents the node
/// certificate, requires one from the peer, signed by the cluster CA.
pub fn server(identity: &TlsIdentity, config: &NetConfig) -> Result<quinn::ServerConfig, NetError> {
    let tls_err = |e: rustls::Error| NetError::Tls(e.to_string());
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(identity)?, provider())
        .build()
        .map_err(|e| NetError::Tls(e.to_string()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(tls_err)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicServerConfig::try_from(tls).map_err(|e| NetError::Tls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    server.transport_config(transport(config)?);
    Ok(server)
}

/// The quinn configuration of the dialing side: verifies the peer against
/// the cluster CA, presents the node certificate.
pub fn client(identity: &TlsIdentity, config: &NetConfig) -> Result<quinn::ClientConfig, NetError> {
    let tls_err = |e: rustls::Error| NetError::Tls(e.to_string());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_root_certificates(roots(identity)?)
        .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(tls_err)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|e| NetError::Tls(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    client.transport_config(transport(config)?);
    Ok(client)
}
