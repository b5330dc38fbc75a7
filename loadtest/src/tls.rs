//! TLS material for tests: a throwaway CA and a `localhost`/`127.0.0.1` server
//! certificate generated at runtime with rcgen, plus rustls configs (ring provider).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Failures building TLS material or configs.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen could not generate a key or certificate.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM input contained no certificate.
    #[error("no certificate found in PEM input")]
    NoCertificate,
    /// A PEM input contained no private key.
    #[error("no private key found in PEM input")]
    NoPrivateKey,
    /// Reading a PEM file failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// PEM decoding failed.
    #[error("invalid PEM: {0}")]
    Pem(std::io::Error),
    /// rustls rejected the configuration (bad key, bad CA…).
    #[error("rustls configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A CA and a server certificate for `localhost` and `127.0.0.1`, signed by it.
#[derive(Debug, Clone)]
pub struct TestTls {
    /// Server certificate chain (leaf only), PEM.
    pub cert_pem: String,
    /// Server private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The CA certificate clients must trust, PEM.
    pub ca_pem: String,
}

/// Generates fresh test TLS material (ECDSA P-256, ~1 ms).
pub fn test_tls() -> Result<TestTls, TlsError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tollgate-loadtest test CA");
    let ca = ca_params.self_signed(&ca_key)?;

    let key = KeyPair::generate()?;
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    Ok(TestTls {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        ca_pem: ca.pem(),
    })
}

impl TestTls {
    /// A rustls server config serving this certificate.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        server_config_from_pem(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
    }

    /// A rustls client config trusting only this CA.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        client_config(self.ca_pem.as_bytes())
    }

    /// Writes `cert.pem`, `key.pem` and `ca.pem` into `dir`; returns their paths
    /// in that order.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<(PathBuf, PathBuf, PathBuf)> {
        let paths = (
            dir.join("cert.pem"),
            dir.join("key.pem"),
            dir.join("ca.pem"),
        );
        std::fs::write(&paths.0, &self.cert_pem)?;
        std::fs::write(&paths.1, &self.key_pem)?;
        std::fs::write(&paths.2, &self.ca_pem)?;
        Ok(paths)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::Pem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certs)
}

/// A rustls server config (ALPN `http/1.1`) from PEM certificate chain and key.
pub fn server_config_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certs(cert_pem)?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(TlsError::Pem)?
        .ok_or(TlsError::NoPrivateKey)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A rustls server config from PEM files.
pub fn server_config_from_files(
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    server_config_from_pem(&read(cert)?, &read(key)?)
}

/// A rustls client config that trusts exactly the CA certificates in `ca_pem`.
pub fn client_config(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca_pem)? {
        roots.add(c)?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_material_builds_both_configs() {
        let t = test_tls().expect("generate");
        assert!(t.cert_pem.contains("BEGIN CERTIFICATE"));
        assert!(t.key_pem.contains("PRIVATE KEY"));
        assert_ne!(t.cert_pem, t.ca_pem);
        t.server_config().expect("server config");
        t.client_config().expect("client config");
    }

    #[test]
    fn garbage_pem_is_rejected() {
        assert!(matches!(
            server_config_from_pem(b"nope", b"nope"),
            Err(TlsError::NoCertificate)
        ));
        let t = test_tls().expect("generate");
        assert!(matches!(
            server_config_from_pem(t.cert_pem.as_bytes(), b"nope"),
            Err(TlsError::NoPrivateKey)
        ));
    }
}
