//! TLS material: a development cluster CA and node certificates (rcgen),
//! and loading the same from PEM files. No private key is ever committed:
//! tests, examples and the simulator generate theirs.

use std::path::Path;

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// The name every node certificate carries and every dialer checks: trust
/// comes from the cluster CA, not from host names (nodes move).
pub const NODE_SERVER_NAME: &str = "pg-node";

/// A node's TLS identity: the cluster CA it trusts, its certificate chain
/// and its private key.
#[derive(Debug)]
pub struct TlsIdentity {
    /// The cluster CA certificate (the only root trusted).
    pub ca: CertificateDer<'static>,
    /// The node's certificate, then any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The node's private key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        Self {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsIdentity {
    /// Loads PEM files: the CA certificate, the node's certificate chain
    /// and its private key.
    pub fn from_pem_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, CertError> {
        let unreadable = |path: &Path| {
            let path = path.display().to_string();
            move |e: rustls::pki_types::pem::Error| CertError::Unreadable {
                path: path.clone(),
                reason: e.to_string(),
            }
        };
        let ca = CertificateDer::from_pem_file(ca).map_err(unreadable(ca))?;
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(unreadable(cert))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(unreadable(cert))?;
        if chain.is_empty() {
            return Err(CertError::Unreadable {
                path: cert.display().to_string(),
                reason: "no certificate in file".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(unreadable(key))?;
        Ok(Self { ca, chain, key })
    }
}

/// The node name a certificate was issued to: its subject's common name.
pub fn certificate_node_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// Why TLS material could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CertError {
    /// Generating a key or certificate failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// A PEM file is missing or does not hold what it should.
    #[error("cannot read {path}: {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

impl From<rcgen::Error> for CertError {
    fn from(e: rcgen::Error) -> Self {
        CertError::Generate(e.to_string())
    }
}

/// A cluster CA: generated ([`generate`](Self::generate)) or loaded from
/// the PEM files it was saved to ([`from_pem`](Self::from_pem)), so that
/// nodes added later get certificates from the same CA. It issues node
/// certificates as every node expects them: the node's name as subject
/// common name, the DNS name [`NODE_SERVER_NAME`] (and `localhost`) as
/// subjectAltName, usable for TLS server and client authentication.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
    key_pem: String,
    /// The CA's own expiry: no certificate it issues outlives it.
    not_after: std::time::SystemTime,
}

/// Longest validity accepted: a hundred years.
pub const MAX_VALIDITY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How long a CA made by [`DevCa::generate`] is valid: ten years.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a node certificate is valid by default: one year.
pub const NODE_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

impl DevCa {
    /// A new CA for cluster `cluster`, valid for [`CA_VALIDITY`].
    pub fn generate(cluster: &str) -> Result<Self, CertError> {
        Self::generate_valid_for(cluster, CA_VALIDITY)
    }

    /// A new CA for cluster `cluster`, valid from now for `validity`.
    pub fn generate_valid_for(cluster: &str, validity: Duration) -> Result<Self, CertError> {
        let not_after = valid_until(validity)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("pg-rs cluster CA {cluster}"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, not_after);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Self {
            der: CertificateDer::from(cert.der().to_vec()),
            pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
            not_after,
        })
    }

    /// A CA saved earlier: its certificate and its private key, as PEM.
    /// The key must be the certificate's (a wrong key would issue
    /// certificates no node accepts).
    pub fn from_pem(certificate_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let unreadable = |reason: String| CertError::Unreadable {
            path: "CA certificate".into(),
            reason,
        };
        let key = KeyPair::from_pem(key_pem)?;
        let der = CertificateDer::from_pem_slice(certificate_pem.as_bytes())
            .map_err(|e| unreadable(e.to_string()))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| unreadable(e.to_string()))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(unreadable("the key is not this certificate's".into()));
        }
        let not_after = std::time::UNIX_EPOCH
            + Duration::from_secs(
                u64::try_from(parsed.validity().not_after.timestamp()).unwrap_or(0),
            );
        let issuer = Issuer::from_ca_cert_pem(certificate_pem, key)?;
        Ok(Self {
            der,
            pem: certificate_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            issuer,
            not_after,
        })
    }

    /// The CA certificate.
    pub fn certificate(&self) -> CertificateDer<'static> {
        self.der.clone()
    }

    /// The CA certificate as PEM.
    pub fn certificate_pem(&self) -> String {
        self.pem.clone()
    }

    /// The CA's private key as PEM, to save it (keep it secret; whoever
    /// holds it can make nodes of the cluster).
    pub fn key_pem(&self) -> String {
        self.key_pem.clone()
    }

    /// A certificate and key for node `node`, usable to accept and to dial.
    pub fn issue(&self, node: &str) -> Result<TlsIdentity, CertError> {
        let (cert, key) = self.issue_raw(node, NODE_VALIDITY)?;
        Ok(TlsIdentity {
            ca: self.certificate(),
            chain: vec![CertificateDer::from(cert.der().to_vec())],
            key: PrivateKeyDer::try_from(key.serialize_der())
                .map_err(|e| CertError::Generate(e.to_string()))?,
        })
    }

    /// The same as [`issue`](Self::issue), as PEM strings (certificate,
    /// key), for writing the files a configuration points to.
    pub fn issue_pem(&self, node: &str) -> Result<(String, String), CertError> {
        self.issue_pem_valid_for(node, NODE_VALIDITY)
    }

    /// As [`issue_pem`](Self::issue_pem), valid from now for `validity`.
    pub fn issue_pem_valid_for(
        &self,
        node: &str,
        validity: Duration,
    ) -> Result<(String, String), CertError> {
        let (cert, key) = self.issue_raw(node, validity)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    fn issue_raw(
        &self,
        node: &str,
        validity: Duration,
    ) -> Result<(rcgen::Certificate, KeyPair), CertError> {
        let mut params =
            CertificateParams::new(vec![NODE_SERVER_NAME.to_owned(), "localhost".to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, node);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let not_after = valid_until(validity)?.min(self.not_after);
        set_validity(&mut params, not_after);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert, key))
    }
}

/// The end of a validity starting now: at least a second, at most
/// [`MAX_VALIDITY`].
fn valid_until(validity: Duration) -> Result<std::time::SystemTime, CertError> {
    if validity.is_zero() || validity > MAX_VALIDITY {
        return Err(CertError::Generate(format!(
            "a validity must be above zero and at most {} days",
            MAX_VALIDITY.as_secs() / 86_400
        )));
    }
    Ok(std::time::SystemTime::now() + validity)
}

/// Valid from a minute ago (clocks differ a little) until `not_after`.
fn set_validity(params: &mut CertificateParams, not_after: std::time::SystemTime) {
    let from = std::time::SystemTime::now() - Duration::from_secs(60);
    params.not_before = from.into();
    params.not_after = not_after.into();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_ca_loads_only_with_its_own_key_and_bounds_validity() {
        let ca = DevCa::generate("t").unwrap();
        let other = DevCa::generate("t").unwrap();
        assert!(DevCa::from_pem(&ca.certificate_pem(), &ca.key_pem()).is_ok());
        assert!(matches!(
            DevCa::from_pem(&ca.certificate_pem(), &other.key_pem()),
            Err(CertError::Unreadable { .. })
        ));
        assert!(ca.issue_pem_valid_for("n", Duration::ZERO).is_err());
        assert!(ca.issue_pem_valid_for("n", MAX_VALIDITY * 2).is_err());
        assert!(DevCa::generate_valid_for("t", Duration::MAX).is_err());
        // A node certificate never outlives its CA.
        let short = DevCa::generate_valid_for("t", Duration::from_secs(3600)).unwrap();
        let (pem, _) = short.issue_pem_valid_for("n", NODE_VALIDITY).unwrap();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let ends = cert.validity().not_after.timestamp();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(ends <= now + 3600, "the node certificate outlives its CA");
    }
}
