//! Serving the public and admin listeners: our own accept loop over hyper-util's
//! HTTP/1 + HTTP/2 connection builder and tokio-rustls, because no kept crate
//! offers the caps and timeouts we need together. axum-server has handshake and
//! first-request timeouts, but no idle timeout for HTTP/2 connections with no
//! stream open (nor for HTTP/1 beyond hyper's header timer), and it spawns a task
//! for each connection before any cap could refuse it; `tower::limit` counts
//! requests, not connections.
//!
//! What a connection may cost:
//! - [`slots`]: a connection cap per listener, below the open-file limit so the
//!   process always keeps descriptors, and an optional cap per client address.
//!   Beyond a cap, a connection is accepted and closed at once, before TLS: the
//!   excess costs a descriptor for microseconds, never the service.
//! - [`connection`]: a handshake timeout, a first-request (header) timeout and an
//!   idle timeout, so every slot held without a request in flight comes back.
//! - [`limits`]: the settings, [`ConnectionLimits`].
//!
//! Shutdown: the listeners close, every connection finishes what it has in flight
//! (HTTP/2 GOAWAY, HTTP/1 closes after its request) for up to the grace period,
//! then whatever remains is closed.

mod connection;
mod limits;
mod slots;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

pub use limits::{ConnectionLimits, RESERVED_DESCRIPTORS};
use slots::{Slot, Slots, Throttle};

/// Where the server is in its life; every connection follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Shutdown: finish what is in flight, take nothing new.
    Draining,
    /// The grace period is over: close everything.
    Closed,
}

/// One listener to serve.
#[derive(Debug)]
pub struct Endpoint {
    /// `public` or `admin`: the `listener` label of the connection metrics.
    pub name: &'static str,
    pub listener: std::net::TcpListener,
    pub router: Router,
    /// `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Open connections at most.
    pub max_connections: usize,
    /// Open connections from one IP address at most; 0 is no limit.
    pub max_connections_per_address: usize,
}

/// Serves `endpoints` until `shutdown` completes, then lets in-flight requests
/// finish for up to `grace`.
pub async fn serve(
    endpoints: Vec<Endpoint>,
    limits: &ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let (phase, phase_rx) = watch::channel(Phase::Serving);
    // Every accept loop and connection holds a sender: when all are gone, the
    // drain is complete.
    let (done, mut drained) = mpsc::channel::<()>(1);
    let mut all_slots = Vec::new();
    for endpoint in endpoints {
        endpoint.listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(endpoint.listener)?;
        let slots = Slots::new(
            endpoint.name,
            endpoint.max_connections,
            endpoint.max_connections_per_address,
        );
        tracing::debug!(
            listener = endpoint.name,
            max_connections = endpoint.max_connections,
            max_connections_per_address = endpoint.max_connections_per_address,
            "connection caps"
        );
        all_slots.push(slots.clone());
        let shared = Arc::new(connection::Listener {
            name: endpoint.name,
            router: endpoint.router,
            tls: endpoint.tls.map(tokio_rustls::TlsAcceptor::from),
            http: connection::http_builder(limits),
            http1: connection::http1_builder(),
            limits: limits.clone(),
        });
        tokio::spawn(accept_loop(
            listener,
            shared,
            slots,
            phase_rx.clone(),
            done.clone(),
        ));
    }
    drop(done);
    shutdown.await;
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: draining in-flight requests"
    );
    let _ = phase.send(Phase::Draining);
    if tokio::time::timeout(grace, drained.recv()).await.is_err() {
        let open: usize = all_slots.iter().map(|s| s.open()).sum();
        tracing::warn!(open, "grace period over: closing the remaining connections");
        let _ = phase.send(Phase::Closed);
        drained.recv().await;
    }
    Ok(())
}

/// Accepts connections until shutdown; each gets a task, or is closed at once
/// when a cap is reached.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<connection::Listener>,
    slots: Arc<Slots>,
    mut phase: watch::Receiver<Phase>,
    done: mpsc::Sender<()>,
) {
    let name = shared.name;
    let mut refused_log = Throttle::new(Duration::from_secs(10));
    let mut failed_log = Throttle::new(Duration::from_secs(10));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = phase.wait_for(|p| *p != Phase::Serving) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or memory, or a connection reset before it was
                // accepted: none of it is the listener's end, so wait a moment (the
                // pending connection would fail the same way at once) and go on.
                if let Some(count) = failed_log.note() {
                    tracing::warn!(listener = name, count, "cannot accept connections: {e}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match slots.acquire(peer.ip()) {
            Ok(slot) => {
                tokio::spawn(connection::serve(
                    stream,
                    shared.clone(),
                    slot,
                    phase.clone(),
                    done.clone(),
                ));
            }
            Err(refusal) => {
                // Closed before any TLS or HTTP work: the descriptor is back at once.
                drop(stream);
                telemetry_refused(name, refusal, &mut refused_log, &slots);
            }
        }
    }
    // Dropping the listener now refuses new connections instead of leaving them
    // in the backlog until the process exits.
    drop(listener);
}

fn telemetry_refused(
    name: &'static str,
    refusal: slots::Refusal,
    log: &mut Throttle,
    slots: &Slots,
) {
    crate::telemetry::connection_refused(name, refusal.label());
    if let Some(count) = log.note() {
        tracing::warn!(
            listener = name,
            reason = refusal.label(),
            count,
            open = slots.open(),
            max = slots.max(),
            "refusing connections: at the connection cap"
        );
    }
}
