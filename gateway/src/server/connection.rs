//! One accepted connection, from the TLS handshake to its close: each stage that
//! waits on the client is timed, so a connection never holds its slot unused for
//! longer than the handshake, header or idle timeout.
//!
//! An idle HTTP/1 connection (the usual keep-alive client) is *parked*: once nothing
//! has been in flight for [`PARK_AFTER`] and hyper has written out its last answer
//! and waits for bytes, hyper's connection state and its read and write buffers
//! (16 KiB) are dropped and only the socket (and its TLS session) is kept; the next
//! bytes build a new HTTP/1 connection on it, replaying what hyper had read.
//!
//! What a parked TLS connection keeps, about 8 KiB in all: rustls's record buffer
//! (4 KiB, which rustls offers no way to release), the boxed TLS stream (1.2 KiB),
//! the AES-GCM keys of both directions (1.2 KiB), the connection's task (under
//! 1 KiB) and a few small allocations (socket registration, the request counter, the
//! drain signal).
//! Large values that move from one future into the next (the handshake, the TLS
//! stream, hyper's connection) are boxed: a future keeps room for everything it
//! holds at any await, for as long as the connection lives.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tower::ServiceExt;

use super::activity::{Activity, Idle, OnWake};
use super::{ConnectionLimits, Phase, Slot};
use crate::telemetry;

/// How long an HTTP/1 connection stays idle before it is parked. Under load the
/// next request comes sooner, so busy connections are never rebuilt.
pub(super) const PARK_AFTER: Duration = Duration::from_millis(200);

/// What every connection of one listener shares.
pub(super) struct Listener {
    pub name: &'static str,
    pub router: Router,
    pub tls: Option<TlsAcceptor>,
    /// HTTP/1 or HTTP/2, told apart by the first bytes (plain HTTP, or TLS without ALPN).
    pub http: auto::Builder<TokioExecutor>,
    /// HTTP/1.1 chosen by ALPN.
    pub http1: http1::Builder,
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

/// The settings of an HTTP/1.1 connection chosen by ALPN: hyper's, with its header
/// timer off (as in [`http_builder`]: `drive_http1` times the stages itself).
pub(super) fn http1_builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder.header_read_timeout(None);
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
    // Boxed: the handshake's state is large and short-lived, and the task would
    // otherwise keep room for it for the whole life of the connection.
    let handshake = Box::pin(tokio::time::timeout(
        listener.limits.handshake_timeout,
        acceptor.accept(stream),
    ));
    let stream = tokio::select! {
        result = handshake => match result {
            // Boxed: the stream (rustls's connection state, over a KiB) is moved
            // from this future into `drive_http1`'s and into hyper's connection,
            // and every future it passes through would keep room for it.
            Ok(Ok(stream)) => Box::new(stream),
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
    if stream.get_ref().1.alpn_protocol() == Some(b"http/1.1") {
        drive_http1(stream, &listener, phase).await;
    } else {
        drive(stream, &listener, phase).await;
    }
}

/// A request service that counts the requests in flight on its connection.
fn counted(
    router: Router,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ Unpin
+ 'static {
    hyper::service::service_fn(move |request: Request<Incoming>| {
        let active = activity.begin();
        let response = router.clone().oneshot(request);
        async move {
            let response = response.await;
            drop(active);
            response
        }
    })
}

/// Speaks HTTP on `io` and closes it when it has waited too long for a request:
/// `header_timeout` for the first one, then `idle_timeout` from the end of the
/// last one whenever nothing is in flight.
async fn drive<I>(io: I, listener: &Listener, mut phase: watch::Receiver<Phase>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = &listener.limits;
    let activity = Activity::new();
    let service = counted(listener.router.clone(), activity.clone());
    // Boxed: hyper's connection is large, and lives only as long as the connection.
    let mut connection = Box::pin(listener.http.serve_connection(TokioIo::new(io), service));

    // Due at once: its first look sets it.
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let draining = draining(&phase);
    tokio::pin!(draining);
    let reason = loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            () = &mut timer => match next(&activity, limits, Instant::now()) {
                Ok(look) => timer.as_mut().reset(look),
                Err(reason) => break reason,
            },
            () = &mut draining => {
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
    closing(listener, reason);
    // Nothing is in flight: HTTP/2 sends GOAWAY, HTTP/1 closes, and a connection
    // still in its first request's headers is dropped. An HTTP/2 peer may have sent
    // a request before it saw the GOAWAY, and the GOAWAY accepts it (RFC 9113, 6.8):
    // it is answered, within its own budget. The bound is for a peer that will not
    // read the GOAWAY, counted again while a request is in flight.
    connection.as_mut().graceful_shutdown();
    let mut bound = Instant::now() + close_bound(limits);
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            () = tokio::time::sleep_until(bound) => match activity.idle() {
                Idle::No => bound = Instant::now() + close_bound(limits),
                _ => return,
            },
            // The grace period of a drain that began meanwhile is over.
            () = until(&mut phase, |p| p == Phase::Closed) => return,
        }
    }
}

/// [`drive`] for HTTP/1.1, which also parks the connection while it is idle (see
/// the module's documentation). The timeouts are the same.
async fn drive_http1(
    io: Box<TlsStream<TcpStream>>,
    listener: &Listener,
    mut phase: watch::Receiver<Phase>,
) {
    let limits = &listener.limits;
    let activity = Activity::new();
    let service = counted(listener.router.clone(), activity.clone());
    let state = Arc::new(AtomicU8::new(0));
    let mut io = Tracked {
        io,
        replay: Bytes::new(),
        state: state.clone(),
    };
    // Due at once: its first look sets it.
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let draining = draining(&phase);
    tokio::pin!(draining);
    // The end of the answer the connection last parked after: it parks once per answer.
    let mut parked_after = None;
    loop {
        // Boxed: dropped whenever the connection parks.
        let mut connection = Box::new(
            listener
                .http1
                .serve_connection(TokioIo::new(io), service.clone()),
        );
        let park = loop {
            tokio::select! {
                _ = Pin::new(&mut *connection) => return,
                () = &mut timer => {
                    let now = Instant::now();
                    match next_http1(&activity, limits, now, parked_after) {
                        Http1Timer::Later(deadline) => timer.as_mut().reset(deadline),
                        Http1Timer::Park { after, idle_until } if parkable(&state) => {
                            parked_after = Some(after);
                            timer.as_mut().reset(idle_until);
                            break None;
                        }
                        // hyper is still writing its answer out: try again shortly.
                        Http1Timer::Park { idle_until, .. } => {
                            timer.as_mut().reset(later(now, PARK_AFTER).min(idle_until));
                        }
                        Http1Timer::Close(reason) => break Some(reason),
                    }
                }
                () = &mut draining => {
                    // Draining: close after the request in flight, unless the grace
                    // period ends first.
                    Pin::new(&mut *connection).graceful_shutdown();
                    tokio::select! {
                        _ = Pin::new(&mut *connection) => {}
                        () = until(&mut phase, |p| p == Phase::Closed) => {}
                    }
                    return;
                }
            }
        };
        if let Some(reason) = park {
            closing(listener, reason);
            // Nothing is in flight: HTTP/1 closes, and a connection still in its
            // first request's headers is dropped.
            Pin::new(&mut *connection).graceful_shutdown();
            let _ = tokio::time::timeout(close_bound(limits), Pin::new(&mut *connection)).await;
            return;
        }
        // Taken apart in a block of its own, with the box moved into it: a partly
        // moved value is dropped only at the end of its scope, so the rest of
        // hyper's connection (its 8 KiB read buffer) and the emptied box would
        // otherwise stay allocated for as long as the connection is parked.
        io = {
            let connection = connection;
            let parts = connection.into_parts();
            let mut io = parts.io.into_inner();
            // Bytes hyper had read of a next request are read again by the next
            // one. Copied: hyper's read buffer is what parking lets go of, and even
            // empty, its `Bytes` would hold on to it.
            if !parts.read_buf.is_empty() {
                io.replay = Bytes::copy_from_slice(&parts.read_buf);
            }
            io
        };
        let _parked = Parked::start(listener.name);
        // Served again, the timer looks at once, and then every `PARK_AFTER` at most.
        if !io.replay.is_empty() {
            timer.as_mut().reset(Instant::now());
            continue;
        }
        tokio::select! {
            _ = io.readable() => {
                timer.as_mut().reset(Instant::now());
                continue;
            }
            () = &mut timer => closing(listener, "idle_timeout"),
            () = &mut draining => {}
        }
        // Parked, so nothing is in flight: send TLS close_notify and close.
        let _ = tokio::time::timeout(close_bound(limits), io.shutdown()).await;
        return;
    }
}

/// What an HTTP/1 connection's timer found when it fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Http1Timer {
    /// Nothing due yet: look again then.
    Later(Instant),
    /// Idle for [`PARK_AFTER`] since the answer that ended at `after`: park, if
    /// hyper is done writing and waits for bytes, until the idle timeout.
    Park { after: Instant, idle_until: Instant },
    /// Waited too long for a request: close.
    Close(&'static str),
}

/// The timer of a connection served by [`drive`]: the header timeout until the first
/// request starts, then the idle timeout from the end of the last request. `Ok` is
/// when to look again, `Err` why to close.
fn next(
    activity: &Activity,
    limits: &ConnectionLimits,
    now: Instant,
) -> Result<Instant, &'static str> {
    timeouts(activity.idle(), limits, now, limits.idle_timeout)
}

/// The header and idle timeouts of every connection, from `idle` at `now`. `Ok` is
/// when to look again, never more than `every` away (and, once a request has ended,
/// the idle timeout's deadline): a request may start and end between two looks
/// without the timer being told, so the look after it must come no later than what
/// is due after it. `Err` is why to close.
fn timeouts(
    idle: Idle,
    limits: &ConnectionLimits,
    now: Instant,
    every: Duration,
) -> Result<Instant, &'static str> {
    let look = later(now, every);
    match idle {
        // Busy: whenever the requests end, the idle timeout counts from then.
        Idle::No => Ok(look),
        Idle::BeforeFirst { since } => {
            let deadline = later(since, limits.header_timeout);
            if deadline <= now {
                Err("header_timeout")
            } else {
                Ok(deadline.min(look))
            }
        }
        Idle::Since(since) => {
            let deadline = later(since, limits.idle_timeout);
            if deadline <= now {
                Err("idle_timeout")
            } else {
                Ok(deadline)
            }
        }
    }
}

/// The timer of an HTTP/1 connection: [`timeouts`], looking every [`PARK_AFTER`] (or
/// the idle timeout, if shorter) so that a request that starts and ends between two
/// looks is parked after on time, and parking `PARK_AFTER` after the last answer.
/// `parked_after` is the end of the answer the connection last parked after: it parks
/// once per answer, not again and again while the next request's head trickles in.
fn next_http1(
    activity: &Activity,
    limits: &ConnectionLimits,
    now: Instant,
    parked_after: Option<Instant>,
) -> Http1Timer {
    let every = PARK_AFTER.min(limits.idle_timeout);
    let idle = activity.idle();
    let look = match timeouts(idle, limits, now, every) {
        Ok(look) => look,
        Err(reason) => return Http1Timer::Close(reason),
    };
    // Busy, or before the first request: nothing to park yet.
    let Idle::Since(since) = idle else {
        return Http1Timer::Later(look);
    };
    // After an answer, `timeouts` looks next at the idle timeout's deadline.
    let idle_until = look;
    let park_at = since + PARK_AFTER;
    if park_at > now {
        Http1Timer::Later(park_at.min(idle_until))
    } else if parked_after == Some(since) {
        // Parked after this answer already: only the idle timeout, or a next answer.
        Http1Timer::Later(later(now, every).min(idle_until))
    } else {
        Http1Timer::Park {
            after: since,
            idle_until,
        }
    }
}

/// `at + wait`, or thirty years after `at` where that would overflow (as tokio's
/// own timers do with a far deadline): a configured timeout may be enormous.
fn later(at: Instant, wait: Duration) -> Instant {
    at.checked_add(wait)
        .unwrap_or_else(|| at + Duration::from_secs(30 * 365 * 24 * 3600))
}

/// A parked connection, counted in `flowgate_connections_parked` while it lives.
struct Parked(&'static str);

impl Parked {
    fn start(listener: &'static str) -> Self {
        telemetry::connections_parked(listener, 1.0);
        Self(listener)
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        telemetry::connections_parked(self.0, -1.0);
    }
}

/// Completes once the server stops serving (or is gone), polled only when the phase
/// changes: see [`OnWake`].
fn draining(phase: &watch::Receiver<Phase>) -> OnWake<impl Future<Output = ()> + use<>> {
    let mut phase = phase.clone();
    OnWake::new(async move { until(&mut phase, |p| p != Phase::Serving).await })
}

/// Counts and logs the close of a connection that waited too long.
fn closing(listener: &Listener, reason: &'static str) {
    telemetry::connection_closed(listener.name, reason);
    tracing::debug!(
        listener = listener.name,
        reason,
        "closing an unused connection"
    );
}

/// How long a connection closed for waiting too long may take to close.
fn close_bound(limits: &ConnectionLimits) -> Duration {
    Duration::from_secs(1).min(limits.header_timeout)
}

/// Completes when the phase satisfies `done` (or the server is gone).
async fn until(phase: &mut watch::Receiver<Phase>, done: impl Fn(Phase) -> bool) {
    let _ = phase.wait_for(|p| done(*p)).await;
}

/// [`Tracked::state`]: hyper has written since it last flushed.
const UNFLUSHED: u8 = 1;
/// [`Tracked::state`]: hyper's last read found nothing to read.
const READ_WAITING: u8 = 2;

/// The connection's stream as hyper sees it: replays bytes hyper had read before the
/// connection parked, and notes whether hyper is done writing and waits for bytes.
struct Tracked<I> {
    io: I,
    replay: Bytes,
    /// [`UNFLUSHED`] and [`READ_WAITING`]; shared with `drive_http1`, which cannot
    /// reach the stream while hyper holds it.
    state: Arc<AtomicU8>,
}

/// Whether hyper has flushed everything it wrote and waits for a next request.
fn parkable(state: &AtomicU8) -> bool {
    state.load(Ordering::Relaxed) == READ_WAITING
}

impl<I> Tracked<I> {
    fn set(&self, flag: u8, on: bool) {
        if on {
            self.state.fetch_or(flag, Ordering::Relaxed);
        } else {
            self.state.fetch_and(!flag, Ordering::Relaxed);
        }
    }
}

impl Tracked<Box<TlsStream<TcpStream>>> {
    /// Completes when the client has sent something (or closed, or failed).
    async fn readable(&self) -> io::Result<()> {
        self.io.get_ref().0.readable().await
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        this.set(READ_WAITING, result.is_pending());
        result
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.set(UNFLUSHED, true);
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.set(UNFLUSHED, true);
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_flush(cx);
        if matches!(result, Poll::Ready(Ok(()))) {
            this.set(UNFLUSHED, false);
        }
        result
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::slots::Slots;

    /// A connection's task keeps room for the largest state of its future for as
    /// long as the connection lives, idle or not: what is large is boxed, so ten
    /// thousand idle connections do not each keep kilobytes of room unused.
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(tcp.local_addr().unwrap()).await.unwrap();
        let limits = ConnectionLimits::default();
        let listener = Arc::new(Listener {
            name: "test",
            router: Router::new(),
            tls: None,
            http: http_builder(&limits),
            http1: http1_builder(),
            limits,
        });
        let slot = Slots::new("test", 1, 0)
            .acquire(std::net::Ipv4Addr::LOCALHOST.into())
            .unwrap();
        let (_phase, phase) = watch::channel(Phase::Serving);
        let (done, _drained) = tokio::sync::mpsc::channel(1);
        let task = serve(stream, listener, slot, phase, done);
        let size = std::mem::size_of_val(&task);
        // In a release build: 912 bytes with the boxes, 5,848 when the TLS stream
        // was kept inline (debug builds are larger still).
        assert!(size <= 2048, "the connection future takes {size} bytes");
    }

    /// An HTTP/1 connection's timer: the header timeout until the first request
    /// starts; then, counted from the end of the last request, parking after
    /// `PARK_AFTER` and closing at the idle timeout; while a request is in flight,
    /// only a later look.
    #[tokio::test(start_paused = true)]
    async fn the_http1_timer_counts_from_the_start_then_from_the_last_answer() {
        let limits = ConnectionLimits {
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            ..ConnectionLimits::default()
        };
        let activity = Activity::new();
        let start = Instant::now();
        let at = |seconds: f64| start + Duration::from_secs_f64(seconds);
        let next = |seconds: f64| next_http1(&activity, &limits, at(seconds), None);

        // Before the first request: a look every `PARK_AFTER`, so that a request
        // that comes and goes between two looks is parked on time.
        assert_eq!(next(0.0), Http1Timer::Later(at(0.0) + PARK_AFTER));
        assert_eq!(next(4.9), Http1Timer::Later(at(5.0)));
        assert_eq!(next(5.0), Http1Timer::Close("header_timeout"));

        tokio::time::advance(Duration::from_secs(1)).await;
        let request = activity.begin();
        assert_eq!(next(6.0), Http1Timer::Later(at(6.0) + PARK_AFTER));
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(request);
        // The last answer at 2 s: park at 2.2 s, close at 32 s.
        assert_eq!(next(2.1), Http1Timer::Later(at(2.0) + PARK_AFTER));
        let (after, idle_until) = (at(2.0), at(32.0));
        assert_eq!(next(2.2), Http1Timer::Park { after, idle_until });
        assert_eq!(next(31.9), Http1Timer::Park { after, idle_until });
        assert_eq!(next(32.0), Http1Timer::Close("idle_timeout"));

        // Parked after that answer, and woken by bytes that are not yet a request:
        // no second park, a look every `PARK_AFTER` until the idle timeout.
        let once = |seconds: f64| next_http1(&activity, &limits, at(seconds), Some(after));
        assert_eq!(once(3.0), Http1Timer::Later(at(3.0) + PARK_AFTER));
        assert_eq!(once(31.9), Http1Timer::Later(idle_until));
        assert_eq!(once(32.0), Http1Timer::Close("idle_timeout"));
        // A next answer, at 40 s in this clock, parks again.
        tokio::time::advance(Duration::from_secs(38)).await;
        drop(activity.begin());
        assert_eq!(
            once(40.2),
            Http1Timer::Park {
                after: at(40.0),
                idle_until: at(70.0)
            }
        );
    }

    /// With an idle timeout shorter than `PARK_AFTER`, an idle connection closes and
    /// never parks; a timeout too large for the clock does not overflow it.
    #[tokio::test(start_paused = true)]
    async fn the_http1_timer_with_short_and_enormous_timeouts() {
        let activity = Activity::new();
        let start = Instant::now();
        drop(activity.begin());
        let short = ConnectionLimits {
            idle_timeout: Duration::from_millis(100),
            ..ConnectionLimits::default()
        };
        let at = |millis: u64| start + Duration::from_millis(millis);
        assert_eq!(
            next_http1(&activity, &short, at(50), None),
            Http1Timer::Later(at(100))
        );
        assert_eq!(
            next_http1(&activity, &short, at(100), None),
            Http1Timer::Close("idle_timeout")
        );

        let enormous = ConnectionLimits {
            header_timeout: Duration::MAX,
            idle_timeout: Duration::MAX,
            ..ConnectionLimits::default()
        };
        assert!(matches!(
            next_http1(&activity, &enormous, at(300), None),
            Http1Timer::Park { .. }
        ));
        assert!(next(&Activity::new(), &enormous, at(300)).is_ok());
    }

    /// The timer of an HTTP/2 (or plain) connection: the same stages without parking,
    /// looking at least once an idle timeout.
    #[tokio::test(start_paused = true)]
    async fn the_timer_counts_from_the_start_then_from_the_last_answer() {
        let limits = ConnectionLimits {
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(2),
            ..ConnectionLimits::default()
        };
        let activity = Activity::new();
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let look = |seconds: u64| next(&activity, &limits, at(seconds));

        assert_eq!(look(0), Ok(at(2)), "the idle timeout is the shorter");
        assert_eq!(look(4), Ok(at(5)));
        assert_eq!(look(5), Err("header_timeout"));

        tokio::time::advance(Duration::from_secs(1)).await;
        let request = activity.begin();
        assert_eq!(look(1), Ok(at(3)));
        tokio::time::advance(Duration::from_secs(3)).await;
        drop(request);
        assert_eq!(look(5), Ok(at(6)));
        assert_eq!(look(6), Err("idle_timeout"));
    }
}
