//! TLS for the public listener: rustls on the aws-lc-rs provider, from PEM files
//! or from a self-signed certificate generated at start for local use.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate file {path}: {reason}")]
    Certificate { path: String, reason: String },
    #[error("cannot read private key file {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("the certificate and key do not make a usable TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A TLS configuration for the public listener.
#[derive(Debug, Clone)]
pub struct Tls {
    pub config: Arc<ServerConfig>,
    /// The PEM of a certificate generated at start, so a local client can trust it.
    pub generated_cert_pem: Option<String>,
}

impl Tls {
    /// Loads a certificate chain and private key from PEM files.
    pub fn from_pem_files(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let certs = CertificateDer::pem_file_iter(cert_path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError::Certificate {
                path: cert_path.display().to_string(),
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsError::Certificate {
                path: cert_path.display().to_string(),
                reason: "no CERTIFICATE block found".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::Key {
            path: key_path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            config: server_config(certs, key)?,
            generated_cert_pem: None,
        })
    }

    /// Generates a self-signed certificate for `localhost`, `127.0.0.1` and `::1`.
    pub fn self_signed() -> Result<Self, TlsError> {
        let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
        let generated = rcgen::generate_simple_self_signed(names)?;
        let cert_pem = generated.cert.pem();
        let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der()).map_err(|e| {
            TlsError::Key {
                path: "(generated)".into(),
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            config: server_config(vec![generated.cert.der().clone()], key)?,
            generated_cert_pem: Some(cert_pem),
        })
    }
}

fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_pem_files_and_refuses_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        assert!(Tls::from_pem_files(&cert, &key).is_ok());

        let missing = dir.path().join("missing.pem");
        let err = Tls::from_pem_files(&missing, &key).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        // A certificate where the key should be.
        let err = Tls::from_pem_files(&cert, &cert).unwrap_err();
        assert!(matches!(err, TlsError::Key { .. }), "{err}");
        // A key where the certificate should be.
        let err = Tls::from_pem_files(&key, &key).unwrap_err();
        assert!(matches!(err, TlsError::Certificate { .. }), "{err}");
    }

    #[test]
    fn generates_a_certificate_for_localhost() {
        let tls = Tls::self_signed().unwrap();
        assert!(
            tls.generated_cert_pem
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert_eq!(tls.config.alpn_protocols[0], b"h2");
    }
}
