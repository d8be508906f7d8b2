//! `flow-service healthcheck`: one `grpc.health.v1.Health/Check` to the service on this
//! host, over TLS when the service has it. Health needs neither the bearer token nor
//! a client certificate, so the check carries none.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Asks `addr` whether `service` (empty: the whole server) is SERVING; `tls_cert_pem`
/// is the certificate chain the service serves when TLS is on, and the only server
/// certificate the check accepts (it talks to itself, whatever name or CA the
/// certificate has).
pub async fn check(
    addr: SocketAddr,
    tls_cert_pem: Option<&[u8]>,
    service: String,
    timeout: Duration,
) -> anyhow::Result<()> {
    let check = async {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?.connect_timeout(timeout);
        let channel = match tls_cert_pem {
            None => endpoint.connect().await,
            Some(pem) => connect_tls(&endpoint, addr, pem)?.await,
        }
        .with_context(|| format!("cannot connect to {addr}"))?;
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: service.clone(),
        });
        // A real deadline, so a stuck server also gives up on its side.
        request.set_timeout(timeout);
        let answer = HealthClient::new(channel)
            .check(request)
            .await
            .with_context(|| format!("health check of {addr} failed"))?;
        anyhow::Ok(answer.into_inner().status())
    };
    let status = tokio::time::timeout(timeout, check)
        .await
        .with_context(|| format!("no answer from {addr} within {timeout:?}"))??;
    let name = if service.is_empty() {
        "the server"
    } else {
        &service
    };
    anyhow::ensure!(
        status == ServingStatus::Serving,
        "{addr}: {name} is {}",
        status.as_str_name()
    );
    println!("{addr}: {name} is SERVING");
    Ok(())
}

/// A TLS connection to `addr` that accepts only the first certificate of `pem`.
fn connect_tls<'a>(
    endpoint: &'a Endpoint,
    addr: SocketAddr,
    pem: &[u8],
) -> anyhow::Result<impl Future<Output = Result<Channel, tonic::transport::Error>> + 'a> {
    let own = CertificateDer::pem_slice_iter(pem)
        .next()
        .context("no certificate in FLOW_SERVICE_TLS_CERT")?
        .context("FLOW_SERVICE_TLS_CERT")?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { own, provider }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    Ok(endpoint.connect_with_connector(tower::service_fn(move |_| {
        let connector = connector.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let tls = connector
                .connect(ServerName::IpAddress(addr.ip().into()), tcp)
                .await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    })))
}

/// Accepts exactly one server certificate, with a valid handshake signature by its key.
#[derive(Debug)]
struct Pinned {
    own: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.own.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server's certificate is not the one in FLOW_SERVICE_TLS_CERT".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
