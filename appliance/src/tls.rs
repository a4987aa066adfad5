//! TLS on the TCP protocol (rustls, ring provider), when `security.tls_cert` and
//! `security.tls_key` are set. The frames inside are the same; clients wrap their stream in a
//! TLS client (any rustls/OpenSSL client: the protocol crate's clients take any stream).

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

use crate::settings::{SecuritySettings, SettingsError};

/// The acceptor for the configured certificate, or `None` when TLS is off.
pub fn acceptor(s: &SecuritySettings) -> Result<Option<TlsAcceptor>, SettingsError> {
    let (Some(cert), Some(key)) = (&s.tls_cert, &s.tls_key) else {
        return Ok(None);
    };
    let config = server_config(cert, key)?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, SettingsError> {
    let bad = |what: &str, p: &Path, e: &dyn std::fmt::Display| {
        SettingsError::Invalid(format!("TLS {what} {}: {e}", p.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("certificate", cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("certificate", cert, &e))?;
    if certs.is_empty() {
        return Err(bad("certificate", cert, &"no certificate in the file"));
    }
    // The key's error never includes the key.
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("configuration for", cert, &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad("certificate and key", cert, &e))
}
