//! The HTTP/2 connection under a replica's tonic clients: a [`Connection`] is the
//! `tower::Service` that tonic's generated client sends its `http::Request`s through,
//! on one `h2` connection made on first use and made again after it breaks.
//!
//! Why not tonic's `Channel`, which does the same: it costs more per call than the
//! whole rest of the hop's client side. A `Channel` hands each call to a buffer's
//! worker task, which hands it to hyper's connection task, which spawns one more task
//! per call to forward the body and the answer. Here the caller's task opens the
//! stream and writes the request itself, and the connection's one task wakes it with
//! the answer. `flowgate-bench --only hop` measures the difference on a bare hop (the
//! README's Performance section has the figures). The `h2` crate does the HTTP/2;
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
//!   pong) is forgotten, and the next call connects again.
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
    pub fn origin(&self) -> http::Uri {
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
    /// The current connection's sender and its number, when there is one.
    current: Mutex<Option<(u64, SendRequest<Bytes>)>>,
    /// Held while connecting; holds the last failure to connect.
    connecting: tokio::sync::Mutex<Option<(io::ErrorKind, String)>>,
    /// How many connections were attempted: a caller that waited for another's
    /// attempt takes its outcome.
    attempts: AtomicU64,
}

impl Connection {
    /// A connection to `dial`, made on the first call.
    pub fn lazy(dial: Dial) -> Self {
        Self {
            shared: Arc::new(Shared {
                dial,
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(None),
                attempts: AtomicU64::new(0),
            }),
        }
    }

    /// Sends one request and waits for the answer's headers.
    async fn send(
        shared: Arc<Shared>,
        request: http::Request<tonic::body::Body>,
    ) -> Result<http::Response<ResponseBody>, BoxError> {
        let (number, sender) = shared.sender().await?;
        let mut sender = match sender.ready().await {
            Ok(sender) => sender,
            Err(error) => {
                // The connection ended under us: the next call connects again.
                shared.forget(number);
                return Err(error.into());
            }
        };
        let (parts, mut body) = request.into_parts();
        let request = http::Request::from_parts(parts, ());
        let empty = body.is_end_stream();
        let (answer, mut stream) = sender.send_request(request, empty).inspect_err(|_| {
            // Refused before anything was sent (the replica said GOAWAY, or the
            // connection is closing): the next call connects again.
            shared.forget(number);
        })?;
        if !empty {
            // Each data frame goes once the next one (or the end) is known, so that
            // the last carries END_STREAM.
            let mut held: Option<Bytes> = None;
            loop {
                match body.frame().await {
                    None => {
                        stream.send_data(held.take().unwrap_or_default(), true)?;
                        break;
                    }
                    Some(Err(status)) => {
                        stream.send_reset(h2::Reason::CANCEL);
                        return Err(status.into());
                    }
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => {
                            if let Some(previous) = held.replace(data) {
                                stream.send_data(previous, false)?;
                            }
                        }
                        Err(frame) => {
                            if let Some(previous) = held.take() {
                                stream.send_data(previous, false)?;
                            }
                            if let Ok(trailers) = frame.into_trailers() {
                                stream.send_trailers(trailers)?;
                                break;
                            }
                        }
                    },
                }
            }
        }
        let answer = answer.await?;
        Ok(answer.map(|recv| ResponseBody {
            recv,
            data_done: false,
        }))
    }
}

impl Shared {
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
        if self.attempts.load(Ordering::Acquire) != seen
            && let Some((kind, message)) = &*last_failure
        {
            // Another caller's attempt failed while this one waited for it.
            return Err(connect_error(io::Error::new(*kind, message.clone())));
        }
        let number = self.attempts.fetch_add(1, Ordering::AcqRel) + 1;
        match self.connect(number).await {
            Ok(sender) => {
                *last_failure = None;
                *self.current.lock().expect("connection lock") = Some((number, sender.clone()));
                Ok((number, sender))
            }
            Err(error) => {
                *last_failure = Some((error.kind(), error.to_string()));
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

    /// Connects, and starts the connection's task.
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
            .handshake::<_, Bytes>(io)
            .await
            .map_err(io::Error::other)?;
        let ping = connection.ping_pong().expect("taken once, here");
        let shared = Arc::downgrade(self);
        tokio::spawn(drive(connection, ping, shared, number));
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
        let dial = Dial { addr, tls: None };
        let origin = dial.origin();
        HealthClient::with_origin(Connection::lazy(dial), origin)
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
        // The connection ends with the server; a call now fails without an answer.
        let failed = loop {
            match check(&mut client).await {
                Ok(()) => tokio::task::yield_now().await,
                Err(status) => break status,
            }
        };
        assert!(
            failed.code() == tonic::Code::Unavailable || failed.code() == tonic::Code::Unknown,
            "{failed:?}"
        );

        // Back on the same address: the next call connects again.
        let _stop = serve(tokio::net::TcpListener::bind(addr).await.unwrap());
        check(&mut client).await.unwrap();
    }

    #[tokio::test]
    async fn callers_waiting_on_a_failed_connect_share_its_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let dial = Dial { addr, tls: None };
        let origin = dial.origin();
        let connection = Connection::lazy(dial);
        let client = HealthClient::with_origin(connection.clone(), origin);
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
}
