//! Test certificates made at test time with rcgen: a CA and a `localhost`
//! server certificate it signed (also written to a temporary directory for
//! external clients: curl, openssl, Python).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use ringloop::tls::{self, TlsAcceptor, TlsConnector, pki_types::CertificateDer};

pub struct TestPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// Directory holding `ca.pem`, `cert.pem`, `key.pem`.
    pub dir: PathBuf,
}

impl TestPki {
    pub fn new() -> TestPki {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ringloop test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca cert");

        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &ca).expect("signed cert");

        let dir = std::env::temp_dir().join(format!(
            "ringloop-tls-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let pki = TestPki {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            dir,
        };
        std::fs::write(pki.dir.join("ca.pem"), &pki.ca_pem).expect("write ca");
        std::fs::write(pki.dir.join("cert.pem"), &pki.cert_pem).expect("write cert");
        std::fs::write(pki.dir.join("key.pem"), &pki.key_pem).expect("write key");
        pki
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn roots(&self) -> Vec<CertificateDer<'static>> {
        tls::certs_from_pem(self.ca_pem.as_bytes()).expect("ca pem")
    }

    /// A server config from the PEM files (exercises the file loaders).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<tls::rustls::ServerConfig> {
        let certs = tls::load_certs(self.dir.join("cert.pem")).expect("load certs");
        let key = tls::load_private_key(self.dir.join("key.pem")).expect("load key");
        tls::server_config(certs, key, alpn).expect("server config")
    }

    pub fn acceptor(&self, alpn: &[&[u8]]) -> TlsAcceptor {
        TlsAcceptor::new(self.server_config(alpn))
    }

    pub fn connector(&self, alpn: &[&[u8]]) -> TlsConnector {
        TlsConnector::new(tls::client_config(self.roots(), alpn).expect("client config"))
    }

    /// A connector that only speaks `version`.
    pub fn connector_version(
        &self,
        version: &'static tls::rustls::SupportedProtocolVersion,
        alpn: &[&[u8]],
    ) -> TlsConnector {
        let mut roots = tls::rustls::RootCertStore::empty();
        for c in self.roots() {
            roots.add(c).expect("root");
        }
        let mut config = tls::rustls::ClientConfig::builder_with_provider(tls::crypto_provider())
            .with_protocol_versions(&[version])
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsConnector::new(Arc::new(config))
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether `tool` can be run (`tool --version`-like probe `args`).
pub fn have_tool(tool: &str, args: &[&str]) -> bool {
    std::process::Command::new(tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
