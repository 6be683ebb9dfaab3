//! PEM loading and configuration helpers.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

fn pem_error(what: &str, e: rustls_pki_types::pem::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
}

/// Every certificate (`BEGIN CERTIFICATE`) in PEM text, in order; other
/// sections are skipped. No certificate at all is an `InvalidData` error.
pub fn certs_from_pem(pem: &[u8]) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error("bad PEM certificate", e))?;
    if certs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no certificate in the PEM text",
        ));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in PEM text.
pub fn private_key_from_pem(pem: &[u8]) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| pem_error("no usable PEM private key", e))
}

/// [`certs_from_pem`] on a file's contents (read synchronously: meant for
/// start-up).
pub fn load_certs(path: impl AsRef<Path>) -> io::Result<Vec<CertificateDer<'static>>> {
    certs_from_pem(&std::fs::read(path)?)
}

/// [`private_key_from_pem`] on a file's contents (read synchronously).
pub fn load_private_key(path: impl AsRef<Path>) -> io::Result<PrivateKeyDer<'static>> {
    private_key_from_pem(&std::fs::read(path)?)
}

/// rustls' `ring` crypto provider, the one these helpers use (it builds
/// with only a C compiler, unlike aws-lc-rs; rustls deprecates it because
/// it lacks post-quantum key exchange, which the peers then do not get).
#[allow(deprecated)]
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

/// A server configuration: TLS 1.2 and 1.3, no client authentication, the
/// certificate chain `certs` (leaf first) with its `key`, and the ALPN
/// protocols to offer in order of preference (e.g. `&[b"h2", b"http/1.1"]`;
/// empty for none). A key that does not match is `InvalidInput`.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> io::Result<Arc<rustls::ServerConfig>> {
    let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(config_error)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client configuration: TLS 1.2 and 1.3, trusting the certificates
/// `roots` (no system store: pass the CA your servers use, or load one with
/// [`load_certs`]), no client certificate, and the ALPN protocols to ask
/// for. A root that cannot be parsed is `InvalidData`.
pub fn client_config(roots: Vec<CertificateDer<'static>>, alpn: &[&[u8]]) -> io::Result<Arc<rustls::ClientConfig>> {
    let mut store = rustls::RootCertStore::empty();
    for cert in roots {
        store
            .add(cert)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
