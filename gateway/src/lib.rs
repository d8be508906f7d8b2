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
//! - [`preview`] — the flow preview on the admin listener (`FLOWGATE_PREVIEW`).
//! - [`tls`] — rustls configuration, from files or generated.
//! - [`telemetry`] — the `flowgate_*` metrics (logs and traces: `flowgate-telemetry`).
//! - [`server`] — connections: caps, timeouts, graceful shutdown.
//! - [`run`] — serves the public and admin listeners until shutdown.

pub mod config;
pub mod crypto;
pub mod envelope;
pub mod error;
pub mod layers;
pub mod preview;
pub mod routes;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod translate;
pub mod upstream;

use std::future::Future;
use std::time::Duration;

pub use routes::{AppState, admin, admin_app, app};

/// The listeners the gateway serves; the caller binds them, so tests can use port 0.
#[derive(Debug)]
pub struct Listeners {
    pub public: std::net::TcpListener,
    pub admin: Option<std::net::TcpListener>,
}

/// Serves until `shutdown` completes, then stops accepting connections and lets
/// in-flight requests finish for up to `grace`. `limits` bound what each
/// connection may cost (see [`server`]).
///
/// `tls` of `None` serves plain HTTP (behind a TLS-terminating proxy). The public
/// connections are shared between this runtime, with `state`, and each of `threads`
/// (other runtimes, [`server::Workers`]), with the state made for it on that runtime
/// ([`AppState::for_thread`], called there); the admin listener is served here,
/// ready while every thread has a serving replica of each flow service.
pub async fn run(
    listeners: Listeners,
    state: AppState,
    threads: Vec<(tokio::runtime::Handle, AppState)>,
    tls: Option<tls::Tls>,
    limits: server::ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
    grace: Duration,
) -> std::io::Result<()> {
    // Metrics recorded before a recorder exists are lost: install it first.
    flowgate_telemetry::metrics_recorder();
    let mut endpoints = Vec::new();
    // Ready while every thread, not only this one, has a replica of each flow service.
    let mut readiness = state.upstreams();
    for (_, state) in &threads {
        readiness.extend(state.upstreams());
    }
    if let Some(listener) = listeners.admin {
        endpoints.push(server::Endpoint {
            name: "admin",
            listener,
            router: routes::admin_ready_on(&state, readiness),
            shards: Vec::new(),
            tls: None,
            max_connections: limits.max_admin_connections,
            max_connections_per_address: 0,
        });
    }
    let public_cap = limits.public_cap(1 + threads.len());
    endpoints.push(server::Endpoint {
        name: "public",
        listener: listeners.public,
        router: app(state),
        shards: threads
            .into_iter()
            .map(|(runtime, state)| server::Shard {
                router: app(state),
                runtime,
            })
            .collect(),
        tls: tls.map(|tls| tls.config),
        max_connections: public_cap,
        max_connections_per_address: limits.max_connections_per_address,
    });
    server::serve(endpoints, &limits, shutdown, grace).await
}
