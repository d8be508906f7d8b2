//! What the gateway brings to every replica besides its address: TLS for `https://`
//! backends (a CA bundle to trust, else the system's roots; a client certificate for
//! mutual TLS) and the bearer token every `flowgate.v1` call carries
//! (`authorization: Bearer <token>`, see `flow.proto`). Health watches carry no token:
//! `grpc.health.v1` stays open.

use std::fmt;

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};
use tonic::{Request, Status};

use crate::config::Secret;

/// How long the TLS handshake with a replica may take.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

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

/// TLS towards `https://` backends.
#[derive(Clone, Default)]
pub struct HopTls {
    /// PEM CA bundle to trust; `None`: the system's roots.
    pub ca: Option<Certificate>,
    /// Client certificate and key (PEM), for mutual TLS.
    pub identity: Option<Identity>,
}

impl fmt::Debug for HopTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HopTls")
            .field("ca", &self.ca.as_ref().map_or("system roots", |_| "given"))
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

impl HopTls {
    /// The client TLS of a connection to `domain`: the name (or IP address) the
    /// replica's certificate must carry.
    pub fn client_config(&self, domain: &str) -> ClientTlsConfig {
        let config = ClientTlsConfig::new()
            .domain_name(domain)
            .timeout(HANDSHAKE_TIMEOUT);
        let config = match &self.ca {
            Some(ca) => config.ca_certificate(ca.clone()),
            None => config.with_native_roots(),
        };
        match &self.identity {
            Some(identity) => config.identity(identity.clone()),
            None => config,
        }
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
        f.write_str(if self.0.is_some() { "Auth(***)" } else { "Auth(none)" })
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
