//! What the gateway brings to every replica besides its address: TLS for `https://`
//! backends (a CA bundle to trust, else the system's roots; a client certificate for
//! mutual TLS) and the bearer token every `flowgate.v1` call carries
//! (`authorization: Bearer <token>`, see `flow.proto`). Health watches carry no token:
//! `grpc.health.v1` stays open.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::config::Secret;

/// The credentials and trust of the gRPC hop; the default is plaintext-ready, no token.
#[derive(Clone, Default)]
pub struct Hop {
    /// Used for `https://` backends only.
    pub tls: HopTls,
    pub token: Option<Secret>,
}

impl fmt::Debug for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hop")
            .field("tls", &self.tls)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// TLS towards `https://` backends, as PEM.
#[derive(Clone, Default)]
pub struct HopTls {
    /// CA bundle to trust; `None`: the system's roots.
    pub ca: Option<Vec<u8>>,
    /// Client certificate chain and key, for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for HopTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HopTls")
            .field("ca", &self.ca.as_ref().map_or("system roots", |_| "given"))
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

/// Why the hop's TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum HopTlsError {
    #[error("the CA bundle holds no certificate")]
    NoCa,
    #[error("no system root certificate could be loaded")]
    NoSystemRoots,
    #[error("the CA bundle: {0}")]
    Ca(String),
    #[error("the client certificate or key: {0}")]
    Identity(String),
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}

impl HopTls {
    /// The client configuration of every connection to a replica (rustls on
    /// aws-lc-rs, ALPN `h2`); which name a replica's certificate must carry is given
    /// per connection.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, HopTlsError> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca {
            Some(pem) => {
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| HopTlsError::Ca(e.to_string()))?;
                    roots
                        .add(cert)
                        .map_err(|e| HopTlsError::Ca(e.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(HopTlsError::NoCa);
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(native.certs);
                if added == 0 {
                    return Err(HopTlsError::NoSystemRoots);
                }
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let identity =
                    |e: rustls::pki_types::pem::Error| HopTlsError::Identity(e.to_string());
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(identity)?;
                let key = PrivateKeyDer::from_pem_slice(key).map_err(identity)?;
                builder.with_client_auth_cert(chain, key)?
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Adds the bearer token to every call of a client.
#[derive(Clone, Default)]
pub struct Auth(Option<AsciiMetadataValue>);

impl Auth {
    /// `None` adds nothing. The token was checked at start (printable ASCII).
    pub fn new(token: Option<&Secret>) -> Self {
        Self(token.map(|token| {
            let mut value = MetadataValue::try_from(format!("Bearer {}", token.expose()))
                .expect("a checked token is a valid header value");
            value.set_sensitive(true);
            value
        }))
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Auth(***)"
        } else {
            "Auth(none)"
        })
    }
}

impl Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}
