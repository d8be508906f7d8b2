//! One self-signed certificate for `localhost`, made at start and served by every
//! server under test (gateway, baseline, uvicorn), so the load generator verifies a
//! real TLS handshake against exactly that certificate.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The certificate and key, in memory and as PEM files.
#[derive(Debug, Clone)]
pub struct Cert {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Cert {
    /// Generates the pair and writes `cert.pem` and `key.pem` into `dir`.
    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()])
            .context("generating a certificate")?;
        let cert = Self {
            cert_pem: generated.cert.pem(),
            key_pem: generated.signing_key.serialize_pem(),
            cert_file: dir.join("cert.pem"),
            key_file: dir.join("key.pem"),
        };
        std::fs::write(&cert.cert_file, &cert.cert_pem)?;
        std::fs::write(&cert.key_file, &cert.key_pem)?;
        Ok(cert)
    }
}
