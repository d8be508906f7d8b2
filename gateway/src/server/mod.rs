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
//! Threads: each accepted connection goes to the runtime, among the endpoint's
//! [`Shard`]s (each on a thread of its own, [`workers`]) and the caller's, that serves
//! the fewest connections (the caller's last on a tie), and stays there: all of a
//! connection's requests, HTTP/2 streams included, run on that one thread.
//!
//! Shutdown: the listeners close, every connection finishes what it has in flight
//! (HTTP/2 GOAWAY, HTTP/1 closes after its request) for up to the grace period,
//! then whatever remains is closed.

mod activity;
mod connection;
mod limits;
mod slots;
mod workers;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};

pub use limits::{ConnectionLimits, DESCRIPTORS_PER_THREAD, RESERVED_DESCRIPTORS};
use slots::{Slot, Slots, Throttle};
pub use workers::Workers;

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
    /// The router of the connections served on the caller's runtime.
    pub router: Router,
    /// Other runtimes that take a share of the connections, each with its router.
    pub shards: Vec<Shard>,
    /// `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Open connections at most.
    pub max_connections: usize,
    /// Open connections from one IP address at most; 0 is no limit.
    pub max_connections_per_address: usize,
}

/// A runtime besides the caller's that serves some of an endpoint's connections
/// (a thread of [`Workers`]), with the router they get there: one whose state was
/// made on that runtime, so that its HTTP/2 connections to the flow service run
/// there too.
#[derive(Debug)]
pub struct Shard {
    pub runtime: Handle,
    pub router: Router,
}

/// Where a connection may be served, and how many are served there now.
#[derive(Debug)]
struct Target {
    /// `None`: the caller's runtime, where the accept loop runs.
    runtime: Option<Handle>,
    listener: Arc<connection::Listener>,
    open: Arc<AtomicUsize>,
}

/// Counts a connection on its target until dropped.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn on(target: &Target) -> Self {
        target.open.fetch_add(1, Ordering::Relaxed);
        Open(target.open.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
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
        let tls = endpoint.tls.map(tokio_rustls::TlsAcceptor::from);
        let target = |runtime, router| Target {
            runtime,
            listener: Arc::new(connection::Listener {
                name: endpoint.name,
                router,
                tls: tls.clone(),
                http: connection::http_builder(limits),
                http1: connection::http1_builder(),
                limits: limits.clone(),
            }),
            open: Arc::default(),
        };
        // The caller's runtime last: it wins only when it serves fewer connections than
        // every other, since it also runs the accept loops and the admin listener.
        let caller = target(None, endpoint.router);
        let targets = endpoint
            .shards
            .into_iter()
            .map(|shard| target(Some(shard.runtime), shard.router))
            .chain(std::iter::once(caller))
            .collect();
        tokio::spawn(accept_loop(
            listener,
            targets,
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
    targets: Vec<Target>,
    slots: Arc<Slots>,
    mut phase: watch::Receiver<Phase>,
    done: mpsc::Sender<()>,
) {
    let name = targets[0].listener.name;
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
                // The first of those serving the fewest connections.
                let target = targets
                    .iter()
                    .min_by_key(|t| t.open.load(Ordering::Relaxed))
                    .expect("the caller's runtime is always a target");
                let open = Open::on(target);
                let listener = target.listener.clone();
                let (phase, done) = (phase.clone(), done.clone());
                let serve = move |stream| async move {
                    let _open = open;
                    connection::serve(stream, listener, slot, phase, done).await;
                };
                match &target.runtime {
                    None => drop(tokio::spawn(serve(stream))),
                    Some(runtime) => move_to(runtime, stream, serve),
                }
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

/// Serves `stream` on another runtime: its socket leaves this runtime's reactor and
/// joins that one's, where the connection's every task then runs.
fn move_to<F, S>(runtime: &Handle, stream: TcpStream, serve: S)
where
    S: FnOnce(TcpStream) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(e) => {
            tracing::debug!("cannot hand a connection to its thread: {e}");
            return;
        }
    };
    // Registered there, from a task of that runtime.
    drop(runtime.spawn(async move {
        match TcpStream::from_std(stream) {
            Ok(stream) => serve(stream).await,
            Err(e) => tracing::debug!("cannot hand a connection to its thread: {e}"),
        }
    }));
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
