//! Hostile connections against the real `flowgate-gateway` binary, each with a real
//! request served while the attack goes on: a TLS connection that sends nothing,
//! headers trickled line by line, idle HTTP/1 keep-alive and HTTP/2 connections (and a
//! request sent just as an idle HTTP/2 connection closes), an HTTP/2 client that vanishes
//! with a request open, a flood of connections under a low open-file limit, and one
//! address over its cap.
//!
//! The timeouts are set to about a second so the tests run in seconds; the
//! flow service is a real `grpc.health.v1` server, which is all a ping needs.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_stream::StreamExt;

const BIN: &str = env!("CARGO_BIN_EXE_flowgate-gateway");
const PING: &str = r#"{"action":"ping"}"#;

/// A running gateway binary, with a certificate its clients trust.
struct Gateway {
    child: Child,
    public: SocketAddr,
    admin: SocketAddr,
    cert_pem: String,
    /// The "listening" line; the later lines are in `log`.
    listening: String,
    /// Connections the flow service has accepted from the gateway.
    backend_connections: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts the gateway with `env`, under an open-file limit of `nofile` when
    /// given, in front of a health server reporting SERVING, and waits until a
    /// ping is answered.
    async fn start(env: &[(&str, &str)], nofile: Option<u32>) -> Self {
        let (backend, backend_connections) = health_server().await;
        let dir = tempfile::tempdir().unwrap();
        let names = ["localhost", "127.0.0.1"].map(String::from).to_vec();
        let generated = rcgen::generate_simple_self_signed(names).unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();

        // `prlimit` (util-linux) lowers the child's limit without code of our own.
        let mut command = match nofile {
            Some(n) => {
                let mut command = Command::new("prlimit");
                command.arg(format!("--nofile={n}:{n}")).arg("--").arg(BIN);
                command
            }
            None => Command::new(BIN),
        };
        for (key, _) in std::env::vars() {
            if key.starts_with("FLOWGATE_") {
                command.env_remove(key);
            }
        }
        command
            .env("FLOWGATE_LISTEN", "127.0.0.1:0")
            .env("FLOWGATE_ADMIN_LISTEN", "127.0.0.1:0")
            .env("FLOWGATE_BACKEND", &backend)
            .env("FLOWGATE_TLS_CERT", &cert)
            .env("FLOWGATE_TLS_KEY", &key)
            .env("FLOWGATE_SHUTDOWN_GRACE", "1s")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let line = lines
            .find(|l| {
                l.as_ref()
                    .is_ok_and(|l| l.contains("flowgate gateway listening"))
            })
            .expect("the gateway exited early")
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let between = |start: &str, end: char| {
            let rest = &line[line.find(start).unwrap_or_else(|| panic!("{line}")) + start.len()..];
            rest[..rest.find(end).unwrap()]
                .parse::<SocketAddr>()
                .unwrap()
        };
        let gateway = Self {
            child,
            public: between("https://", ' '),
            admin: between("admin=Some(", ')'),
            cert_pem: generated.cert.pem(),
            listening: line.clone(),
            backend_connections,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while gateway.ping().await != Some(200) {
            assert!(Instant::now() < deadline, "never ready: {:?}", gateway.log);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The readiness pings' connections close asynchronously: wait until the
        // gateway has let go of them, so each test starts with every slot free.
        while gateway
            .metric(r#"flowgate_connections_open{listener="public"}"#)
            .await
            > 0.0
        {
            assert!(
                Instant::now() < deadline,
                "a readiness connection stayed open"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gateway
    }

    fn tls_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A real request on a fresh connection: the status, or `None` when the
    /// connection was refused or broke.
    async fn ping(&self) -> Option<u16> {
        self.ping_from(None).await
    }

    async fn ping_from(&self, local: Option<IpAddr>) -> Option<u16> {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured((*self.tls_config(&[b"h2", b"http/1.1"])).clone())
            .no_proxy()
            .local_address(local)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let response = client
            .post(format!("https://{}/flow-endpoint", self.public))
            .header("content-type", "application/json")
            .body(PING)
            .send()
            .await
            .ok()?;
        Some(response.status().as_u16())
    }

    /// A TLS connection with the ALPN protocol `alpn`, handshake done.
    async fn tls(&self, alpn: &[u8]) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.public).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(self.tls_config(&[alpn]));
        let name = ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.unwrap()
    }

    /// The value of one metric line of the admin listener's `/metrics`, labels included.
    async fn metric(&self, name_and_labels: &str) -> f64 {
        let text = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .expect("the admin listener answers")
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// The gateway's open file descriptors, read from `/proc`.
    fn open_descriptors(&self) -> usize {
        // Under `prlimit` the gateway is the child itself: prlimit execs it.
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .count()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `grpc.health.v1` server reporting SERVING, standing in for the flow service.
pub(crate) async fn health_server() -> (String, Arc<AtomicUsize>) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(move |accepted| {
        count.fetch_add(1, Ordering::Relaxed);
        accepted
    });
    tokio::spawn(async move {
        let _reporter = reporter;
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
    });
    (format!("http://{addr}"), accepted)
}

/// How long until the peer closes `stream` (end of stream or reset), reading and
/// discarding whatever it sends; `None` when it stays open for `limit`.
async fn time_to_close<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    let closed = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, closed)
        .await
        .ok()
        .map(|()| started.elapsed())
}

/// How many of `streams` the peer closes within `limit`, watched all at once; the
/// streams come back so the open ones stay open.
async fn closed_within(streams: Vec<TcpStream>, limit: Duration) -> (usize, Vec<TcpStream>) {
    let watching: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let closed = time_to_close(&mut stream, limit).await.is_some();
                (closed, stream)
            })
        })
        .collect();
    let mut closed = 0;
    let mut streams = Vec::new();
    for watch in watching {
        let (was_closed, stream) = watch.await.unwrap();
        closed += usize::from(was_closed);
        streams.push(stream);
    }
    (closed, streams)
}

fn assert_between(elapsed: Option<Duration>, low: Duration, high: Duration, what: &str) {
    let elapsed = elapsed.unwrap_or_else(|| panic!("{what}: still open after {high:?}"));
    assert!(
        low <= elapsed && elapsed <= high,
        "{what}: closed after {elapsed:?}, expected between {low:?} and {high:?}"
    );
}

const SHORT: [(&str, &str); 3] = [
    ("FLOWGATE_HANDSHAKE_TIMEOUT", "1s"),
    ("FLOWGATE_HEADER_TIMEOUT", "1s"),
    ("FLOWGATE_IDLE_TIMEOUT", "2s"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tls_connection_is_closed_after_the_handshake_timeout() {
    let gateway = Gateway::start(&SHORT, None).await;
    let mut silent = TcpStream::connect(gateway.public).await.unwrap();
    let closed =
        tokio::spawn(async move { time_to_close(&mut silent, Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        gateway.ping().await,
        Some(200),
        "a real request during the attack"
    );
    let elapsed = closed.await.unwrap();
    assert_between(
        elapsed,
        Duration::from_millis(900),
        Duration::from_millis(2500),
        "silent TLS connection",
    );
    let closed = gateway
        .metric(
            r#"flowgate_connections_closed_total{listener="public",reason="handshake_timeout"}"#,
        )
        .await;
    assert_eq!(closed, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_headers_are_cut_at_the_header_timeout() {
    let gateway = Gateway::start(&SHORT, None).await;
    let stream = gateway.tls(b"http/1.1").await;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let closed =
        tokio::spawn(async move { time_to_close(&mut reader, Duration::from_secs(6)).await });
    // One header line every 200 ms: each arrives well within any per-read timeout.
    let trickle = tokio::spawn(async move {
        writer
            .write_all(b"POST /flow-endpoint HTTP/1.1\r\nHost: localhost\r\n")
            .await?;
        for i in 0..25 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            writer
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await?;
        }
        std::io::Result::Ok(())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        gateway.ping().await,
        Some(200),
        "a real request during the attack"
    );
    assert_between(
        closed.await.unwrap(),
        Duration::from_millis(800),
        Duration::from_millis(2500),
        "trickled headers",
    );
    assert!(
        trickle.await.unwrap().is_err(),
        "the trickle went on to the end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http1_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let gateway = Gateway::start(&SHORT, None).await;
    let mut stream = gateway.tls(b"http/1.1").await;
    stream
        .write_all(
            format!(
                "POST /flow-endpoint HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{PING}",
                PING.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // Read the whole answer, then stay idle on the kept-alive connection.
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains(r#""status":"active""#) {
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(
            n > 0,
            "closed before answering: {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buffer[..n]);
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let closed =
        tokio::spawn(async move { time_to_close(&mut stream, Duration::from_secs(6)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gateway.ping().await, Some(200), "a real request meanwhile");
    // The idle timeout (2 s), not the header timeout (1 s), ends a kept-alive connection.
    assert_between(
        closed.await.unwrap(),
        Duration::from_millis(1800),
        Duration::from_millis(3500),
        "idle HTTP/1 connection",
    );
}

/// Sends `requests` as they are (one write) and reads until `count` answers to a
/// ping have come back; the answers' text.
async fn exchange<S>(stream: &mut S, requests: &[u8], count: usize) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let done = |text: &str| text.matches(r#""status":"active""#).count() >= count;
    exchange_until(stream, requests, done).await
}

/// Sends `requests` as they are (one write) and reads until the text read so far is
/// `done`, each read within 5 s; that text.
pub(crate) async fn exchange_until<S>(
    stream: &mut S,
    requests: &[u8],
    done: impl Fn(&str) -> bool,
) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(requests).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !done(&String::from_utf8_lossy(&answer)) {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before answering: {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8(answer).unwrap()
}

/// An idle HTTP/1 connection is parked (hyper's state dropped, the TLS session kept)
/// and built again by its next request: the client sees one ordinary keep-alive
/// connection, whether the next request comes whole, pipelined, or in pieces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_http1_connection_answers_its_next_requests() {
    let gateway = Gateway::start(&SHORT, None).await;
    let mut stream = gateway.tls(b"http/1.1").await;
    let request = format!(
        "POST /flow-endpoint HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{PING}",
        PING.len()
    );
    let first = exchange(&mut stream, request.as_bytes(), 1).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Past the parking delay, well within the idle timeout (2 s).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let pipelined = format!("{request}{request}");
    let both = exchange(&mut stream, pipelined.as_bytes(), 2).await;
    assert_eq!(both.matches("HTTP/1.1 200").count(), 2, "{both}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The head of the next request alone, then its body after another pause.
    let (head, body) = request.split_at(request.len() - PING.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let last = exchange(&mut stream, body.as_bytes(), 1).await;
    assert!(last.starts_with("HTTP/1.1 200"), "{last}");
    let closed = gateway
        .metric(r#"flowgate_connections_closed_total{listener="public",reason="idle_timeout"}"#)
        .await;
    assert_eq!(closed, 0.0, "no connection was closed meanwhile");
    // Idle again: closed at the idle timeout after the last answer, as ever.
    let started = Instant::now();
    let elapsed = time_to_close(&mut stream, Duration::from_secs(6)).await;
    assert!(elapsed.is_some(), "still open after 6 s");
    assert!(started.elapsed() >= Duration::from_millis(1800));
}

/// An idle HTTP/1 connection is parked soon after each answer (200 ms after it), however
/// long the header and idle timeouts: counted in `flowgate_connections_parked` while
/// parked, and no longer once the client has closed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http1_connection_is_parked_soon_after_each_answer() {
    let gateway = Gateway::start(
        &[
            ("FLOWGATE_HEADER_TIMEOUT", "5s"),
            ("FLOWGATE_IDLE_TIMEOUT", "10s"),
        ],
        None,
    )
    .await;
    let parked = r#"flowgate_connections_parked{listener="public"}"#;
    // Reads the gauge until it shows `value`; how long that took.
    let until_parked = |value: f64| {
        let gateway = &gateway;
        async move {
            let started = Instant::now();
            while gateway.metric(parked).await != value {
                assert!(
                    started.elapsed() < Duration::from_secs(4),
                    "{parked} did not reach {value}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            started.elapsed()
        }
    };
    let mut stream = gateway.tls(b"http/1.1").await;
    let request = format!(
        "POST /flow-endpoint HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{PING}",
        PING.len()
    );
    // The first answer, then one after the connection was parked and woken.
    for answer in ["first", "after parking"] {
        let reply = exchange(&mut stream, request.as_bytes(), 1).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        let waited = until_parked(1.0).await;
        assert!(
            waited < Duration::from_secs(2),
            "parked {waited:?} after the {answer} answer"
        );
    }
    drop(stream);
    until_parked(0.0).await;
}

/// On SIGTERM, idle HTTP/1.1 TLS connections, parked or not yet, are closed at once and
/// the gateway exits, long before its grace period ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sigterm_idle_http1_connections_parked_or_not_close_at_once() {
    let mut gateway = Gateway::start(
        &[
            ("FLOWGATE_IDLE_TIMEOUT", "30s"),
            ("FLOWGATE_SHUTDOWN_GRACE", "20s"),
        ],
        None,
    )
    .await;
    let request = format!(
        "POST /flow-endpoint HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{PING}",
        PING.len()
    );
    let mut parked = gateway.tls(b"http/1.1").await;
    let reply = exchange(&mut parked, request.as_bytes(), 1).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let started = Instant::now();
    while gateway
        .metric(r#"flowgate_connections_parked{listener="public"}"#)
        .await
        < 1.0
    {
        assert!(started.elapsed() < Duration::from_secs(4), "never parked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut served = gateway.tls(b"http/1.1").await;
    let reply = exchange(&mut served, request.as_bytes(), 1).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(gateway.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    for (name, stream) in [("parked", &mut parked), ("served", &mut served)] {
        let closed = time_to_close(stream, Duration::from_secs(5)).await;
        assert!(
            closed.is_some(),
            "the {name} connection is still open after 5 s"
        );
    }
    let started = Instant::now();
    while gateway.child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the gateway did not exit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// With three threads, pings on six connections open at once are all answered: two
/// connections on each thread, each thread asking the flow service's health over its
/// own connection (the flow service sees three).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_threads_answer_on_every_connection() {
    let gateway = Gateway::start(&[("FLOWGATE_WORKER_THREADS", "3")], None).await;
    assert!(
        gateway.listening.contains("threads=3"),
        "{}",
        gateway.listening
    );
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", gateway.child.id()))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.unwrap().path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| name.starts_with("gateway-"))
        .collect();
    names.sort();
    assert_eq!(names, ["gateway-1", "gateway-2"]);

    let request = format!(
        "POST /flow-endpoint HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{PING}",
        PING.len()
    );
    let mut streams = Vec::new();
    for _ in 0..6 {
        streams.push(gateway.tls(b"http/1.1").await);
    }
    for stream in &mut streams {
        let answers = exchange(stream, format!("{request}{request}").as_bytes(), 2).await;
        assert_eq!(answers.matches("HTTP/1.1 200").count(), 2, "{answers}");
    }
    let open = gateway
        .metric(r#"flowgate_connections_open{listener="public"}"#)
        .await;
    assert_eq!(open, 6.0);
    assert_eq!(gateway.backend_connections.load(Ordering::Relaxed), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let gateway = Gateway::start(&SHORT, None).await;
    let stream = gateway.tls(b"h2").await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut client, connection) = h2::client::handshake(stream).await.unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::post(format!(
        "https://localhost:{}/flow-endpoint",
        gateway.public.port()
    ))
    .header("content-type", "application/json")
    .body(())
    .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    body.send_data(bytes::Bytes::from_static(PING.as_bytes()), true)
        .unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut answer = response.into_body();
    while let Some(chunk) = answer.data().await {
        let chunk = chunk.unwrap();
        answer.flow_control().release_capacity(chunk.len()).unwrap();
    }
    let idle_since = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gateway.ping().await, Some(200), "a real request meanwhile");
    // `client` stays alive: the connection ends because the gateway ends it.
    let ended = tokio::time::timeout(Duration::from_secs(6), connection).await;
    assert!(ended.is_ok(), "idle HTTP/2 connection still open after 6 s");
    assert_between(
        Some(idle_since.elapsed()),
        Duration::from_millis(1800),
        Duration::from_millis(3500),
        "idle HTTP/2 connection",
    );
    drop(client);
}

/// One HTTP/2 frame, written by hand: `h2`'s client would not send on a connection
/// whose GOAWAY it has read, and this test must send just after the GOAWAY arrives.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = u32::try_from(payload.len()).unwrap().to_be_bytes()[1..].to_vec();
    frame.extend([kind, flags]);
    frame.extend(stream.to_be_bytes());
    frame.extend(payload);
    frame
}

/// A ping request's HEADERS block: HPACK literals without indexing or Huffman.
fn ping_headers(authority: &str) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "https"),
        (":path", "/flow-endpoint"),
        (":authority", authority),
        ("content-type", "application/json"),
    ] {
        block.push(0);
        block.push(u8::try_from(name.len()).unwrap());
        block.extend(name.as_bytes());
        block.push(u8::try_from(value.len()).unwrap());
        block.extend(value.as_bytes());
    }
    block
}

/// Reads the next frame: its type, flags, stream and payload.
async fn read_frame<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> std::io::Result<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await?;
    let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0; length];
    stream.read_exact(&mut payload).await?;
    Ok((head[3], head[4], id, payload))
}

const HEADERS: u8 = 1;
const DATA: u8 = 0;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

/// An HTTP/2 connection to `gateway`, written by hand: the preface, empty SETTINGS and
/// the HEADERS of a ping request on stream 1, whose body is still to come. With the
/// `:authority` the request named.
async fn open_h2_ping(gateway: &Gateway) -> (tokio_rustls::client::TlsStream<TcpStream>, String) {
    let mut stream = gateway.tls(b"h2").await;
    let authority = format!("localhost:{}", gateway.public.port());
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    hello.extend(frame(HEADERS, END_HEADERS, 1, &ping_headers(&authority)));
    stream.write_all(&hello).await.unwrap();
    (stream, authority)
}

/// A request the client sent before it read the GOAWAY of an idle close is accepted
/// by that GOAWAY (it names the highest stream id), so it is answered, even when it
/// takes longer than the close's own bound (1 s here): its body comes 1.5 s later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_as_an_idle_http2_connection_closes_is_answered() {
    let gateway = Gateway::start(&SHORT, None).await;
    let (mut stream, authority) = open_h2_ping(&gateway).await;
    let body = frame(DATA, END_STREAM, 1, PING.as_bytes());
    stream.write_all(&body).await.unwrap();

    // The first answer, then nothing until the idle timeout's GOAWAY. The PING that
    // comes with it is never acknowledged, so the GOAWAY stays the graceful one.
    let mut answered = false;
    let goaway = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            let (kind, flags, id, _) = read_frame(&mut stream).await.unwrap();
            match (kind, id) {
                (SETTINGS, 0) if flags & 1 == 0 => {
                    stream.write_all(&frame(SETTINGS, 1, 0, &[])).await.unwrap();
                }
                (HEADERS, 1) => answered = true,
                (GOAWAY, 0) => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(answered, "the first request was answered");
    assert!(goaway.is_ok(), "no GOAWAY within 6 s of idling");

    let headers = frame(HEADERS, END_HEADERS, 3, &ping_headers(&authority));
    stream.write_all(&headers).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let body = frame(DATA, END_STREAM, 3, PING.as_bytes());
    // The old connection may be gone by now: a failed write shows as no answer below.
    let _ = stream.write_all(&body).await;
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match read_frame(&mut stream).await {
                // `:status: 200` is HPACK's static entry 8.
                Ok((HEADERS, _, 3, block)) => return Some(block.first() == Some(&0x88)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    })
    .await;
    assert_eq!(
        answer,
        Ok(Some(true)),
        "the request sent as the connection closed got no 200"
    );
}

/// A client that vanishes with a request open on HTTP/2 (its body never finishes, and it
/// answers no PING) is closed once a ping goes unanswered for the keep-alive timeout,
/// long before the request's own budget (30 s here) would end it.
async fn time_to_close_a_vanished_http2_client(keepalive_timeout: &str) -> Option<Duration> {
    let env = [
        ("FLOWGATE_KEEPALIVE_INTERVAL", "1s"),
        ("FLOWGATE_KEEPALIVE_TIMEOUT", keepalive_timeout),
        ("FLOWGATE_REQUEST_TIMEOUT", "30s"),
    ];
    let gateway = Gateway::start(&env, None).await;
    let (mut stream, _) = open_h2_ping(&gateway).await;
    // From here the client reads (and so sees every PING) but never answers.
    let closed = time_to_close(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(gateway.ping().await, Some(200), "the gateway serves others");
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_vanishes_with_a_request_open_is_closed_by_keepalive() {
    let closed = time_to_close_a_vanished_http2_client("1s").await;
    assert_between(
        closed,
        Duration::from_millis(1500),
        Duration::from_secs(5),
        "a vanished HTTP/2 client",
    );
    // The same client with a keep-alive timeout beyond the wait: nothing else closes it.
    let open = time_to_close_a_vanished_http2_client("60s").await;
    assert_eq!(open, None, "closed by something other than keep-alive");
}

/// The attack that locked everyone out: more idle connections than the process has
/// descriptors. With the cap derived from a 256 open-file limit, the excess is
/// refused at once, the process keeps spare descriptors (the admin listener
/// answers throughout), and a real request is served as soon as the handshake
/// timeout has reaped the idle connections: within that timeout plus a margin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_is_capped_below_the_open_file_limit() {
    // Long enough that no held connection is reaped before the counts are read,
    // even on a loaded machine.
    let env = [
        ("FLOWGATE_HANDSHAKE_TIMEOUT", "4s"),
        ("FLOWGATE_HEADER_TIMEOUT", "1s"),
        // No descriptors kept for more threads.
        ("FLOWGATE_WORKER_THREADS", "1"),
    ];
    let gateway = Gateway::start(&env, Some(256)).await;
    // 256 less the reserve (64) and the admin cap (64).
    let cap = 128;
    let attack = Instant::now();
    let mut held = Vec::new();
    for _ in 0..400 {
        held.push(TcpStream::connect(gateway.public).await.unwrap());
    }
    // Those beyond the cap are closed at once.
    let (refused, held) = closed_within(held, Duration::from_millis(300)).await;
    assert!(refused >= 400 - cap, "only {refused} of 400 refused");
    assert!(
        gateway.open_descriptors() < 256 - 64,
        "{} descriptors open",
        gateway.open_descriptors()
    );
    let open = gateway
        .metric(r#"flowgate_connections_open{listener="public"}"#)
        .await;
    assert!(open <= cap as f64, "{open} open");
    let counted = gateway
        .metric(r#"flowgate_connections_refused_total{listener="public",reason="max_connections"}"#)
        .await;
    assert!(counted >= (400 - cap) as f64, "{counted} counted");

    // A real client, retrying on a fresh connection, is served once the idle
    // connections are reaped; the attackers keep theirs open meanwhile.
    let served = loop {
        if gateway.ping().await == Some(200) {
            break attack.elapsed();
        }
        assert!(
            attack.elapsed() < Duration::from_secs(8),
            "no real request served during the flood: {:?}",
            gateway.log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        served < Duration::from_millis(5500),
        "served after {served:?}"
    );
    let log = gateway.log.lock().unwrap().join("\n");
    assert!(!log.contains("Too many open files"), "{log}");
    // Refusals are logged, but not one line each.
    let lines = log.matches("refusing connections").count();
    assert!((1..=2).contains(&lines), "{lines} refusal lines:\n{log}");
    drop(held);
}

/// With a per-address cap, one address cannot take the slots of the others: a
/// client from another address is served at once, during the attack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_address_cap_when_turned_on() {
    let env = [
        ("FLOWGATE_MAX_CONNECTIONS_PER_ADDRESS", "5"),
        ("FLOWGATE_HANDSHAKE_TIMEOUT", "5s"),
    ];
    let gateway = Gateway::start(&env, None).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(gateway.public).await.unwrap());
    }
    let (refused, held) = closed_within(held, Duration::from_millis(300)).await;
    assert_eq!(refused, 15);
    // 127.0.0.1 is full; another loopback address is not.
    assert_eq!(gateway.ping().await, None);
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    assert_eq!(gateway.ping_from(Some(other)).await, Some(200));
    let counted = gateway
        .metric(r#"flowgate_connections_refused_total{listener="public",reason="max_connections_per_address"}"#)
        .await;
    assert_eq!(counted, 16.0);
    drop(held);
}

#[test]
fn help_lists_the_connection_settings() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for var in [
        "FLOWGATE_HANDSHAKE_TIMEOUT",
        "FLOWGATE_HEADER_TIMEOUT",
        "FLOWGATE_IDLE_TIMEOUT",
        "FLOWGATE_KEEPALIVE_INTERVAL",
        "FLOWGATE_KEEPALIVE_TIMEOUT",
        "FLOWGATE_MAX_CONNECTIONS",
        "FLOWGATE_MAX_CONNECTIONS_PER_ADDRESS",
    ] {
        assert!(help.contains(var), "--help does not mention {var}");
    }
}
