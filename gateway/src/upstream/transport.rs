//! The HTTP/2 connection under a replica's tonic clients: a [`Connection`] is the
//! `tower::Service` that tonic's clients (the `flowgate.v1` calls' `client::Grpc`, the
//! health watch's generated client) send their `http::Request`s through, on one `h2`
//! connection made on first use and made again after it breaks.
//!
//! Why not tonic's `Channel`, which does the same: it costs more per call than the
//! whole rest of the hop's client side. A `Channel` hands each call to a buffer's
//! worker task, which hands it to hyper's connection task, which spawns one more task
//! per call to forward the body and the answer. Here the caller's task opens the
//! stream and writes the request itself, and the connection's one task wakes it with
//! the answer. `flowgate-bench --only hop` measures the difference on a bare hop
//! (`docs/performance.md` has the figures). The `h2` crate does the HTTP/2;
//! what is written here is what `Channel` added on top of it, and only what the
//! gateway uses:
//!
//! - a lazy connection: TCP (`TCP_NODELAY`) within [`CONNECT_TIMEOUT`], then TLS
//!   (rustls, ALPN `h2`) within [`HANDSHAKE_TIMEOUT`] for `https://` backends. Callers
//!   that arrive while a connection is being made wait for it, and all of them get its
//!   failure, rather than each trying again in turn;
//! - a failure to connect, of any kind, is a [`tonic::ConnectError`], as with
//!   `Channel`: tonic turns it into `UNAVAILABLE` and [`super::classify`] into
//!   "nothing was sent";
//! - HTTP/2 pings every [`KEEPALIVE_INTERVAL`], idle or not: a connection whose pong
//!   does not come within [`KEEPALIVE_TIMEOUT`] is dropped, failing its calls as broken;
//! - a connection that ends (closed by the replica, broken, or dropped for a missed
//!   pong) is forgotten, and the next call connects again. A call that finds its
//!   connection refusing new streams before it sent anything (the replica said
//!   GOAWAY, as a draining server or one with a maximum connection age does) forgets
//!   it and connects again at once, as `Channel` did;
//! - a TLS replica must agree to HTTP/2 by ALPN, else the connection counts as not
//!   made; HTTP/2 settings as hyper's client has them (at most 100 streams until the
//!   replica says otherwise, a 16 KiB header list, no server push, 2 MiB / 5 MiB
//!   windows); every call says `user-agent: flowgate-gateway/<version>`.
//!
//! Request bodies are sent as they come, without waiting for flow-control capacity
//! (`h2` queues what the window does not yet allow): every `flowgate.v1` and
//! `grpc.health.v1` call sends one message, bounded by tonic's message size limit.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A refused or unroutable connection must fail fast, well inside any deadline.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the TLS handshake with a replica may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 pings notice half-open connections that TCP alone would not.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Flow-control windows (hyper's client defaults): a large answer such as a Flow
/// JSON arrives without waiting for window updates.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
/// Streams opened before the replica's SETTINGS say how many it takes (hyper's default).
const INITIAL_MAX_SEND_STREAMS: usize = 100;
/// The largest header list an answer may have (hyper's default).
const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
const USER_AGENT: http::HeaderValue =
    http::HeaderValue::from_static(concat!("flowgate-gateway/", env!("CARGO_PKG_VERSION")));

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where and how to connect to one replica.
#[derive(Clone)]
pub struct Dial {
    pub addr: SocketAddr,
    /// For `https://` backends: the client configuration and the name the replica's
    /// certificate must carry.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl std::fmt::Debug for Dial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dial")
            .field("addr", &self.addr)
            .field("tls", &self.tls.as_ref().map(|(_, name)| name))
            .finish()
    }
}

impl Dial {
    /// The origin tonic's clients put in front of each call's path.
    fn origin(&self) -> http::Uri {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
            .parse()
            .expect("a socket address is a valid authority")
    }
}

/// One replica's lazily made HTTP/2 connection; cheap to clone (every clone shares it).
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("dial", &self.shared.dial)
            .finish_non_exhaustive()
    }
}

struct Shared {
    dial: Dial,
    /// `dial`'s origin, for the clients made on this connection.
    origin: http::Uri,
    /// The current connection's sender and its number, when there is one.
    current: Mutex<Option<(u64, SendRequest<Bytes>)>>,
    /// Held while connecting; holds the last failure to connect, with its attempt's
    /// number.
    connecting: tokio::sync::Mutex<Option<Failed>>,
    /// How many connections were attempted: a caller that waited for another's
    /// attempt takes its outcome.
    attempts: AtomicU64,
}

/// A failed attempt to connect: its number, and the error's kind and text.
struct Failed {
    attempt: u64,
    kind: io::ErrorKind,
    message: String,
}

impl Connection {
    /// A connection to `dial`, made on the first call.
    pub fn lazy(dial: Dial) -> Self {
        Self {
            shared: Arc::new(Shared {
                origin: dial.origin(),
                dial,
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(None),
                attempts: AtomicU64::new(0),
            }),
        }
    }

    /// The origin (scheme and authority) a tonic client on this connection is made
    /// with (`with_origin`): h2 needs both on every request.
    pub fn origin(&self) -> http::Uri {
        self.shared.origin.clone()
    }

    /// Sends one request and waits for the answer's headers.
    async fn send(
        shared: Arc<Shared>,
        request: http::Request<tonic::body::Body>,
    ) -> Result<http::Response<ResponseBody>, BoxError> {
        let (number, mut sender) = shared.ready_sender().await?;
        let (mut parts, mut body) = request.into_parts();
        parts.headers.insert(http::header::USER_AGENT, USER_AGENT);
        let request = http::Request::from_parts(parts, ());
        let empty = body.is_end_stream();
        let (answer, mut stream) = sender.send_request(request, empty).inspect_err(|_| {
            // Refused before anything was sent (GOAWAY came since `ready`): the next
            // call connects again.
            shared.forget(number);
        })?;
        if !empty && let Err(error) = send_body(&mut body, &mut stream).await {
            return match error {
                // The body failed: the stream was reset, nothing more comes.
                SendError::Body(status) => Err(status.into()),
                // The replica may have answered and stopped reading (an early
                // refusal): its answer says more than the failed send.
                SendError::H2(error) => match answer.await {
                    Ok(answer) => Ok(answer.map(ResponseBody::new)),
                    Err(_) => Err(error.into()),
                },
            };
        }
        let answer = answer.await?;
        Ok(answer.map(ResponseBody::new))
    }
}

/// Why a request body was not sent whole.
enum SendError {
    Body(tonic::Status),
    H2(h2::Error),
}

/// Sends a request body: each data frame once the next one (or the end) is known, so
/// that the last carries END_STREAM; trailers end the stream.
async fn send_body(
    body: &mut tonic::body::Body,
    stream: &mut h2::SendStream<Bytes>,
) -> Result<(), SendError> {
    let mut held: Option<Bytes> = None;
    loop {
        match body.frame().await {
            None => {
                return stream
                    .send_data(held.take().unwrap_or_default(), true)
                    .map_err(SendError::H2);
            }
            Some(Err(status)) => {
                stream.send_reset(h2::Reason::CANCEL);
                return Err(SendError::Body(status));
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if let Some(previous) = held.replace(data) {
                        stream.send_data(previous, false).map_err(SendError::H2)?;
                    }
                }
                Err(frame) => {
                    if let Some(previous) = held.take() {
                        stream.send_data(previous, false).map_err(SendError::H2)?;
                    }
                    if let Ok(trailers) = frame.into_trailers() {
                        return stream.send_trailers(trailers).map_err(SendError::H2);
                    }
                }
            },
        }
    }
}

impl Shared {
    /// A sender ready for one more stream: on the current connection, or on a new one
    /// when the current one refuses new streams (GOAWAY, or it ended unnoticed yet).
    async fn ready_sender(self: &Arc<Self>) -> Result<(u64, SendRequest<Bytes>), BoxError> {
        let (number, sender) = self.sender().await?;
        match sender.ready().await {
            Ok(sender) => Ok((number, sender)),
            Err(_) => {
                // Nothing was sent on it: connect again, once.
                self.forget(number);
                let (number, sender) = self.sender().await?;
                let sender = sender.ready().await.inspect_err(|_| self.forget(number))?;
                Ok((number, sender))
            }
        }
    }

    /// The current connection's sender, or a new connection's.
    async fn sender(self: &Arc<Self>) -> Result<(u64, SendRequest<Bytes>), BoxError> {
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let seen = self.attempts.load(Ordering::Acquire);
        let mut last_failure = self.connecting.lock().await;
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let latest = self.attempts.load(Ordering::Acquire);
        if latest != seen
            && let Some(failed) = &*last_failure
            && failed.attempt == latest
        {
            // The attempt this caller waited for failed. (One whose caller went away
            // before it ended left no failure; this caller tries again then.)
            return Err(connect_error(io::Error::new(
                failed.kind,
                failed.message.clone(),
            )));
        }
        let number = self.attempts.fetch_add(1, Ordering::AcqRel) + 1;
        match self.connect(number).await {
            Ok(sender) => {
                *last_failure = None;
                Ok((number, sender))
            }
            Err(error) => {
                *last_failure = Some(Failed {
                    attempt: number,
                    kind: error.kind(),
                    message: error.to_string(),
                });
                Err(connect_error(error))
            }
        }
    }

    fn current(&self) -> Option<(u64, SendRequest<Bytes>)> {
        self.current.lock().expect("connection lock").clone()
    }

    /// Forgets connection `number`, if it is still the current one.
    fn forget(&self, number: u64) {
        let mut current = self.current.lock().expect("connection lock");
        if current.as_ref().is_some_and(|(n, _)| *n == number) {
            *current = None;
        }
    }

    /// Connects, makes the connection the current one, and starts its task.
    async fn connect(self: &Arc<Self>, number: u64) -> io::Result<SendRequest<Bytes>> {
        let addr = self.dial.addr;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        tcp.set_nodelay(true)?;
        match &self.dial.tls {
            None => self.handshake(tcp, number).await,
            Some((config, name)) => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let tls =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name.clone(), tcp))
                        .await
                        .map_err(|_| {
                            io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                        })??;
                if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err(io::Error::other(
                        "the replica did not agree to HTTP/2 (ALPN h2) over TLS",
                    ));
                }
                self.handshake(tls, number).await
            }
        }
    }

    async fn handshake<T>(self: &Arc<Self>, io: T, number: u64) -> io::Result<SendRequest<Bytes>>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, mut connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .initial_max_send_streams(INITIAL_MAX_SEND_STREAMS)
            .max_header_list_size(MAX_HEADER_LIST_SIZE)
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(io::Error::other)?;
        let ping = connection.ping_pong().expect("taken once, here");
        // Current before its task starts, so that a connection ending at once is
        // forgotten by that task rather than kept.
        *self.current.lock().expect("connection lock") = Some((number, sender.clone()));
        tokio::spawn(drive(connection, ping, Arc::downgrade(self), number));
        Ok(sender)
    }
}

/// Runs a connection until it ends or misses a pong, then forgets it.
async fn drive<T>(
    connection: h2::client::Connection<T, Bytes>,
    mut ping: h2::PingPong,
    shared: Weak<Shared>,
    number: u64,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let keepalive = async {
        loop {
            tokio::time::sleep(KEEPALIVE_INTERVAL).await;
            match tokio::time::timeout(KEEPALIVE_TIMEOUT, ping.ping(h2::Ping::opaque())).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return "the ping failed",
                Err(_) => return "no pong in time",
            }
        }
    };
    let addr = shared.upgrade().map(|shared| shared.dial.addr);
    tokio::select! {
        ended = connection => match ended {
            Ok(()) => tracing::debug!(replica = ?addr, "connection closed"),
            Err(error) => tracing::debug!(replica = ?addr, %error, "connection broke"),
        },
        why = keepalive => tracing::debug!(replica = ?addr, why, "connection dropped"),
    }
    if let Some(shared) = shared.upgrade() {
        shared.forget(number);
    }
}

/// A failure to connect, as tonic's own connector reports it.
fn connect_error(error: io::Error) -> BoxError {
    Box::new(tonic::ConnectError(Box::new(error)))
}

impl tower::Service<http::Request<tonic::body::Body>> for Connection {
    type Response = http::Response<ResponseBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Stream capacity is waited for inside each call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(Self::send(self.shared.clone(), request))
    }
}

/// An answer's body: its data frames (their window released as they are read), then
/// its trailers.
#[derive(Debug)]
pub struct ResponseBody {
    recv: h2::RecvStream,
    data_done: bool,
}

impl ResponseBody {
    fn new(recv: h2::RecvStream) -> Self {
        Self {
            recv,
            data_done: false,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Only fails once the stream is gone, which the next poll reports.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(error) => Poll::Ready(Some(Err(error))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    /// A `grpc.health.v1` client on a lazy connection to `addr`.
    fn client(addr: SocketAddr) -> HealthClient<Connection> {
        let connection = Connection::lazy(Dial { addr, tls: None });
        HealthClient::with_origin(connection.clone(), connection.origin())
    }

    async fn check(client: &mut HealthClient<Connection>) -> Result<(), tonic::Status> {
        client.check(HealthCheckRequest::default()).await.map(drop)
    }

    /// Serves `grpc.health.v1` on `listener` until the returned sender is dropped or sent.
    fn serve(listener: tokio::net::TcpListener) -> tokio::sync::oneshot::Sender<()> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (_, health) = tonic_health::server::health_reporter();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        stop
    }

    #[tokio::test]
    async fn a_restarted_replica_is_reached_again() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = serve(listener);
        let mut client = client(addr);
        for _ in 0..3 {
            check(&mut client).await.unwrap();
        }

        stop.send(()).unwrap();
        // The server drains (GOAWAY) and goes: calls soon find nothing to connect to,
        // and say so, rather than failing as if something had been sent.
        let gone = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match check(&mut client).await {
                    Err(status)
                        if std::error::Error::source(&status)
                            .is_some_and(|e| e.downcast_ref::<tonic::ConnectError>().is_some()) =>
                    {
                        break status;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        })
        .await
        .expect("calls to a stopped replica end as not connected");
        assert_eq!(gone.code(), tonic::Code::Unavailable, "{gone:?}");

        // Back on the same address: the next call connects again.
        let _stop = serve(tokio::net::TcpListener::bind(addr).await.unwrap());
        check(&mut client).await.unwrap();
    }

    /// Serves one HTTP/2 connection by hand: every stream gets one `SERVING` message.
    /// With `retire`, the first stream is left open (like a health watch) and the
    /// server says GOAWAY right after it; otherwise each stream ends with `grpc-status: 0`.
    async fn serve_by_hand(socket: TcpStream, retire: bool) {
        let mut connection = h2::server::handshake(socket).await.unwrap();
        let mut open = Vec::new();
        while let Some(Ok((_, mut respond))) = connection.accept().await {
            let headers = http::Response::builder()
                .header("content-type", "application/grpc")
                .body(())
                .unwrap();
            let mut stream = respond.send_response(headers, false).unwrap();
            // One length-prefixed HealthCheckResponse { status: SERVING }.
            stream
                .send_data(Bytes::from_static(&[0, 0, 0, 0, 2, 8, 1]), false)
                .unwrap();
            if retire {
                open.push(stream);
                connection.graceful_shutdown();
            } else {
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                stream.send_trailers(trailers).unwrap();
            }
        }
    }

    #[tokio::test]
    async fn a_connection_the_replica_retires_is_replaced_without_failing_a_call() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, mut accepts) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            for number in 1.. {
                let (socket, _) = listener.accept().await.unwrap();
                accepted.send(number).unwrap();
                tokio::spawn(serve_by_hand(socket, number == 1));
            }
        });
        let mut client = client(addr);
        // A watch keeps the first connection open after the replica's GOAWAY.
        let mut watch = client
            .watch(HealthCheckRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(watch.message().await.unwrap().is_some());
        assert_eq!(accepts.recv().await, Some(1));
        tokio::time::sleep(Duration::from_millis(50)).await;

        for _ in 0..3 {
            check(&mut client)
                .await
                .expect("answered on a new connection");
        }
        assert_eq!(accepts.recv().await, Some(2));
        assert!(
            accepts.try_recv().is_err(),
            "one new connection for all calls"
        );
        drop(watch);
    }

    #[tokio::test]
    async fn a_connect_that_times_out_sent_nothing() {
        // A listener that never accepts, its queue full: the kernel drops further SYNs,
        // so a connect hangs until its timeout.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        for _ in 0..4 {
            let connect = tokio::net::TcpStream::connect(addr);
            match tokio::time::timeout(Duration::from_millis(100), connect).await {
                Ok(Ok(stream)) => queued.push(stream),
                _ => break,
            }
        }
        let mut client = client(addr);
        let started = tokio::time::Instant::now();
        let status = check(&mut client).await.unwrap_err();
        let waited = started.elapsed();
        assert!(
            waited >= CONNECT_TIMEOUT && waited < CONNECT_TIMEOUT * 2,
            "failed after {waited:?}: {status:?}"
        );
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert_eq!(
            super::super::classify::classify(&status),
            super::super::classify::Failure::NotConnected,
            "{status:?}"
        );
        drop((queued, listener));
    }

    #[tokio::test]
    async fn callers_waiting_on_a_failed_connect_share_its_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let connection = Connection::lazy(Dial { addr, tls: None });
        let client = HealthClient::with_origin(connection.clone(), connection.origin());
        let calls = (0..8).map(|_| {
            let mut client = client.clone();
            async move { check(&mut client).await.unwrap_err() }
        });
        for status in futures_util::future::join_all(calls).await {
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            let source = std::error::Error::source(&status).expect("the transport's error");
            assert!(
                source.downcast_ref::<tonic::ConnectError>().is_some(),
                "{source:?}"
            );
        }
        let attempts = connection.shared.attempts.load(Ordering::Acquire);
        assert!(attempts < 8, "{attempts} connection attempts for 8 calls");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_stops_answering_pings_is_dropped_and_made_again() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, mut accepts) = tokio::sync::mpsc::unbounded_channel();
        // Accepts and reads everything, answers nothing: a replica gone half-open.
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                accepted.send(()).unwrap();
                tokio::spawn(async move {
                    let mut buffer = [0; 1024];
                    while matches!(socket.read(&mut buffer).await, Ok(n) if n > 0) {}
                });
            }
        });
        let mut client = client(addr);
        let started = tokio::time::Instant::now();
        let status = tokio::time::timeout(Duration::from_secs(60), check(&mut client))
            .await
            .expect("the missed pong ends the call")
            .unwrap_err();
        let waited = started.elapsed();
        assert!(
            waited >= KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT
                && waited < KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT + Duration::from_secs(1),
            "failed after {waited:?}: {status:?}"
        );
        assert_eq!(
            super::super::classify::classify(&status),
            super::super::classify::Failure::Retryable,
            "{status:?}"
        );
        accepts.recv().await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(1), check(&mut client)).await;
        accepts.recv().await.expect("a second connection");
    }

    #[tokio::test]
    async fn a_tls_replica_that_does_not_agree_to_http2_is_not_connected() {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        // No ALPN protocols: an HTTPS server that speaks HTTP/1.1 only.
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (handshaken, mut handshakes) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(socket).await.unwrap();
            handshaken.send(()).unwrap();
            let mut buffer = [0; 1024];
            while matches!(tls.read(&mut buffer).await, Ok(n) if n > 0) {}
        });
        let hop = super::super::hop::HopTls {
            ca: Some(cert.cert.pem().into_bytes()),
            identity: None,
        };
        let dial = Dial {
            addr,
            tls: Some((
                hop.client_config().unwrap(),
                ServerName::try_from("127.0.0.1").unwrap(),
            )),
        };
        let connection = Connection::lazy(dial);
        let mut client = HealthClient::with_origin(connection.clone(), connection.origin());
        let status = tokio::time::timeout(Duration::from_secs(5), check(&mut client))
            .await
            .expect("refused at once, not left waiting for an HTTP/2 answer")
            .unwrap_err();
        handshakes
            .recv()
            .await
            .expect("the TLS handshake itself succeeded");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert_eq!(
            super::super::classify::classify(&status),
            super::super::classify::Failure::NotConnected,
            "{status:?}"
        );
    }
}
