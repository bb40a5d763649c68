//! Built-in TLS: a rustls server configuration from `server.tls_cert` and `server.tls_key`.
//! ring is the only crypto provider, passed explicitly, so no process-wide default is needed.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS 1.2/1.3 server configuration for the PEM certificate chain at `cert` and the PEM
/// private key (PKCS#8, PKCS#1 or SEC1) at `key`. HTTP/1.1 is offered over ALPN.
///
/// # Errors
///
/// When a file cannot be read, holds no certificate or key, or the key does not match.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("server.tls_cert: cannot read {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("server.tls_cert: {} is not a PEM certificate chain", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "server.tls_cert: {} holds no certificate", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("server.tls_key: {} holds no readable PEM private key", key.display()))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("server.tls_cert/server.tls_key: the key does not fit the certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
