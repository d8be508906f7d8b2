//! One accepted connection, from the TLS handshake to its close: each stage that
//! waits on the client is timed, so a connection never holds its slot unused for
//! longer than the handshake, header or idle timeout.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::{ConnectionLimits, Phase, Slot};
use crate::telemetry;

/// What every connection of one listener shares.
pub(super) struct Listener {
    pub name: &'static str,
    pub router: Router,
    pub tls: Option<TlsAcceptor>,
    pub http: auto::Builder<TokioExecutor>,
    pub limits: ConnectionLimits,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("name", &self.name)
            .field("tls", &self.tls.is_some())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The HTTP/1 and HTTP/2 settings of every connection.
pub(super) fn http_builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper restarts its header timer whenever a keep-alive connection turns idle,
    // which would close idle HTTP/1 connections after the header timeout instead
    // of the idle timeout; `drive` times both stages itself, for both protocols.
    builder.http1().header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_timeout)
        .max_concurrent_streams(limits.max_concurrent_streams)
        // Modest limits, after Envoy's edge guidance: our requests are small JSON.
        .max_header_list_size(64 * 1024)
        .initial_stream_window_size(256 * 1024)
        .initial_connection_window_size(1024 * 1024);
    builder
}

/// Serves one connection until it closes, a timer ends it, or shutdown does.
/// `slot` is held until then; `_done` tells the server this connection is over.
pub(super) async fn serve(
    stream: TcpStream,
    listener: Arc<Listener>,
    slot: Slot,
    mut phase: watch::Receiver<Phase>,
    _done: tokio::sync::mpsc::Sender<()>,
) {
    let _slot = slot;
    // Answers are small and sent whole: do not let Nagle hold their last segment.
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = listener.tls.clone() else {
        return drive(stream, &listener, phase).await;
    };
    let handshake =
        tokio::time::timeout(listener.limits.handshake_timeout, acceptor.accept(stream));
    let stream = tokio::select! {
        result = handshake => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(listener = listener.name, "TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                telemetry::connection_closed(listener.name, "handshake_timeout");
                tracing::debug!(listener = listener.name, "TLS handshake timed out");
                return;
            }
        },
        // A handshake is no request in flight: shutdown need not wait for it.
        () = until(&mut phase, |p| p != Phase::Serving) => return,
    };
    drive(stream, &listener, phase).await;
}

/// Speaks HTTP on `io` and closes it when it has waited too long for a request:
/// `header_timeout` for the first one, then `idle_timeout` from the end of the
/// last one whenever nothing is in flight.
async fn drive<I>(io: I, listener: &Listener, mut phase: watch::Receiver<Phase>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = &listener.limits;
    let (activity, mut in_flight) = watch::channel(0usize);
    let activity = Arc::new(activity);
    let router = listener.router.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let active = Active::start(activity.clone());
        let response = router.clone().oneshot(request);
        async move {
            let response = response.await;
            drop(active);
            response
        }
    });
    let connection = listener.http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);

    let timer = tokio::time::sleep(limits.header_timeout);
    tokio::pin!(timer);
    let mut waiting = Some("header_timeout");
    let reason = loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            () = &mut timer, if waiting.is_some() => break waiting.unwrap_or_default(),
            Ok(()) = in_flight.changed() => {
                waiting = if *in_flight.borrow_and_update() == 0 {
                    timer.as_mut().reset(Instant::now() + limits.idle_timeout);
                    Some("idle_timeout")
                } else {
                    None
                };
            }
            () = until(&mut phase, |p| p != Phase::Serving) => {
                // Draining: HTTP/2 sends GOAWAY, HTTP/1 closes after the request
                // in flight; both finish what they have, unless the grace period
                // ends first.
                connection.as_mut().graceful_shutdown();
                tokio::select! {
                    _ = connection.as_mut() => {}
                    () = until(&mut phase, |p| p == Phase::Closed) => {}
                }
                return;
            }
        }
    };
    telemetry::connection_closed(listener.name, reason);
    tracing::debug!(
        listener = listener.name,
        reason,
        "closing an unused connection"
    );
    // Nothing is in flight: HTTP/2 sends GOAWAY, HTTP/1 closes, and a connection
    // still in its first request's headers is dropped. The bound is for a peer that
    // will not read the GOAWAY.
    connection.as_mut().graceful_shutdown();
    let closing = Duration::from_secs(1).min(limits.header_timeout);
    let _ = tokio::time::timeout(closing, connection).await;
}

/// Completes when the phase satisfies `done` (or the server is gone).
async fn until(phase: &mut watch::Receiver<Phase>, done: impl Fn(Phase) -> bool) {
    let _ = phase.wait_for(|p| done(*p)).await;
}

/// Counts one request in flight on its connection for as long as it lives.
struct Active(Arc<watch::Sender<usize>>);

impl Active {
    fn start(activity: Arc<watch::Sender<usize>>) -> Self {
        activity.send_modify(|n| *n += 1);
        Self(activity)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}
