//! flowgate gateway: the HTTPS edge of a WhatsApp Flows endpoint.
//!
//! It speaks the WhatsApp Flows endpoint contract exactly, translates each
//! request into a `flowgate.v1` call to a flow service, and translates the
//! answer back. It holds no flow state.
//!
//! Reading order:
//! - [`config`] — typed configuration from environment variables and flags.
//! - [`routes`] — the endpoint handler and the admin routes; [`app`] builds the router,
//!   each endpoint route under one middleware stack.
//! - [`layers`] — the layers of that stack: budget, request id, span, metrics, body,
//!   signature, admission.
//! - [`envelope`] — how bodies are wrapped on the wire: plain JSON or Meta's encryption (pure).
//! - [`crypto`] — RSA keys, AES-GCM with a 16-byte IV, signatures (pure, aws-lc-rs).
//! - [`translate`] — WhatsApp JSON ⇄ `flowgate.v1` messages (pure).
//! - [`upstream`] — the gRPC client: deadlines, health, status mapping.
//! - [`error`] — [`GatewayError`](error::GatewayError), mapped once to HTTP.
//! - [`tls`] — rustls configuration, from files or generated.
//! - [`telemetry`] — the `flowgate_*` metrics (logs and traces: `flowgate-telemetry`).
//! - [`run`] — serves the public and admin listeners until shutdown.

pub mod config;
pub mod crypto;
pub mod envelope;
pub mod error;
pub mod layers;
pub mod routes;
pub mod telemetry;
pub mod tls;
pub mod translate;
pub mod upstream;

use std::future::Future;
use std::time::Duration;

pub use routes::{AppState, admin_app, app};

/// The listeners the gateway serves; the caller binds them, so tests can use port 0.
#[derive(Debug)]
pub struct Listeners {
    pub public: std::net::TcpListener,
    pub admin: Option<std::net::TcpListener>,
}

/// Serves until `shutdown` completes, then stops accepting connections and lets
/// in-flight requests finish for up to `grace`.
///
/// `tls` of `None` serves plain HTTP (behind a TLS-terminating proxy).
pub async fn run(
    listeners: Listeners,
    state: AppState,
    tls: Option<tls::Tls>,
    shutdown: impl Future<Output = ()> + Send,
    grace: Duration,
) -> std::io::Result<()> {
    // Metrics recorded before a recorder exists are lost: install it first.
    flowgate_telemetry::metrics_recorder();
    let handle = axum_server::Handle::new();
    let admin_handle = axum_server::Handle::new();
    let admin = listeners.admin.map(|listener| {
        let service = admin_app(state.upstreams()).into_make_service();
        let server = axum_server::from_tcp(listener).map(|s| s.handle(admin_handle.clone()));
        async move { server?.serve(service).await }
    });
    let service = app(state).into_make_service();
    let public = async {
        match tls {
            Some(tls) => {
                let config = axum_server::tls_rustls::RustlsConfig::from_config(tls.config);
                axum_server::from_tcp_rustls(listeners.public, config)?
                    .handle(handle.clone())
                    .serve(service)
                    .await
            }
            None => {
                axum_server::from_tcp(listeners.public)?
                    .handle(handle.clone())
                    .serve(service)
                    .await
            }
        }
    };
    let admin = async {
        match admin {
            Some(admin) => admin.await,
            None => Ok(()),
        }
    };
    let servers = async { tokio::try_join!(public, admin).map(|_| ()) };
    tokio::pin!(servers);
    tokio::select! {
        // A server that stops by itself has failed (its listener broke).
        result = &mut servers => return result,
        () = shutdown => {}
    }
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: draining in-flight requests"
    );
    handle.graceful_shutdown(Some(grace));
    admin_handle.graceful_shutdown(Some(grace));
    servers.await
}
