//! Harness for end-to-end tests: a real flow service (tonic) and a real gateway
//! (axum + rustls) on 127.0.0.1 port 0, driven by a real HTTPS client that trusts
//! only the certificate generated for the test.
//!
//! # Which flow service: `FLOWGATE_E2E_FLOW_SERVICE`
//!
//! The portable tests (`tests/e2e/portable.rs`) need only what the `flowgate.v1`
//! contract promises and the reference `signup` flow, so they run against any
//! implementation through [`backend::Backend`]:
//!
//! - unset or `rust`: the in-process Rust service (the default);
//! - `python`: `python3 examples/python/flow_service.py` as a child process on a
//!   free 127.0.0.1 port (`python3` from `PATH`, with the example's requirements
//!   installed); stopping it sends SIGTERM and waits for the process to exit.
//!
//! Every other test needs the Rust service's internals (the [`Probe`] flow, its
//! store, its options) and starts [`Service`] directly, which the switch does not
//! change. Run the portable ones against Python with
//! `FLOWGATE_E2E_FLOW_SERVICE=python cargo nextest run -p flowgate-e2e -E 'binary(e2e) & test(/^portable::/)'`.

pub mod backend;
pub mod spawned;
pub mod whatsapp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flow_service::sdk::{ErrorNotice, Flow, FlowError, Outcome, Request};
use flow_service::server::ServeOptions;
use flow_service::service::Flows;
use flow_service::store::StoreOptions;
use flow_service::tokens::TokenPolicy;
use flowgate_gateway::envelope::Envelope;
use flowgate_gateway::tls::Tls;
use flowgate_gateway::upstream::Upstream;
use flowgate_gateway::{AppState, Listeners};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A flow service running in this process, on a Tokio runtime of its own so that
/// [`Service::kill`] can drop every connection at once, as a dying process would.
#[derive(Debug)]
pub struct Service {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    kill: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<()>>,
}

impl Service {
    /// Starts the reference flows plus the [`Probe`] flow as `probe`, in strict mode:
    /// an answer that breaks its flow's Flow JSON fails the test with a 503.
    pub async fn start(probe: Probe) -> Self {
        Self::start_at("127.0.0.1:0".parse().unwrap(), probe).await
    }

    /// Starts on a given address (to come back on the same port after a stop).
    pub async fn start_at(addr: SocketAddr, probe: Probe) -> Self {
        Self::start_with(
            probe,
            ServiceOptions {
                addr,
                ..ServiceOptions::default()
            },
        )
        .await
    }

    /// Starts the reference flows and `probe` (strict mode) as `options` say: a
    /// database, a token policy, serving options.
    pub async fn start_with(probe: Probe, options: ServiceOptions) -> Self {
        let flows = flow_service::flows::reference()
            .strict(true)
            .register("probe", probe)
            .tokens(options.tokens);
        let database = options.database_url.map(|url| (url, options.store));
        Self::serve_with(options.addr, flows, database, options.serve).await
    }

    /// Serves any set of flows, with a private in-memory store, draining for 200 ms
    /// on [`Service::stop`].
    pub async fn serve(addr: SocketAddr, flows: Flows) -> Self {
        Self::serve_with(addr, flows, None, test_serve_options()).await
    }

    /// Serves any set of flows, with the database at `url` when given. The store is
    /// opened on the service's own runtime, so that [`Service::kill`] drops its
    /// connections too; this returns once it is open and migrated.
    pub async fn serve_with(
        addr: SocketAddr,
        flows: Flows,
        database: Option<(String, StoreOptions)>,
        options: ServeOptions,
    ) -> Self {
        let listener = std::net::TcpListener::bind(addr).expect("bind flow service");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let (kill, killed) = oneshot::channel::<()>();
        let (done_tx, done) = oneshot::channel::<()>();
        let (ready_tx, ready) = oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let flows = match database {
                    Some((url, options)) => flows.store(
                        flow_service::store::connect(&url, options)
                            .await
                            .expect("the test database opens"),
                    ),
                    None => flows,
                };
                let _ = ready_tx.send(());
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let stopped = async {
                    let _ = stopped.await;
                };
                let serve = flow_service::server::run_with(listener, flows, stopped, options);
                tokio::select! {
                    result = serve => result.expect("flow service runs"),
                    _ = killed => {}
                }
            });
            // Dropping the runtime drops every connection task with it.
            drop(runtime);
            let _ = done_tx.send(());
        });
        ready.await.expect("the flow service starts");
        Self {
            addr,
            stop: Some(stop),
            kill: Some(kill),
            done: Some(done),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the service gracefully (NOT_SERVING, then drain) and waits until it is gone.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.ended().await;
    }

    /// Kills the service at once: no draining, every connection dropped.
    pub async fn kill(mut self) {
        let _ = self.kill.take().unwrap().send(());
        self.ended().await;
    }

    /// Waits until the service's thread is done; it fails the test if that thread
    /// panicked (the service's `run_with` returned an error, say), which would
    /// otherwise go unseen.
    async fn ended(&mut self) {
        self.done
            .take()
            .unwrap()
            .await
            .expect("the flow service's thread ended cleanly (see its panic above)");
    }
}

/// Serving options for tests: a short drain.
pub fn test_serve_options() -> ServeOptions {
    ServeOptions {
        drain_delay: Duration::from_millis(200),
        ..ServeOptions::default()
    }
}

/// How [`Service::start_with`] runs the service.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// `127.0.0.1:0` unless a test comes back on a port.
    pub addr: SocketAddr,
    /// `None`: a private in-memory store.
    pub database_url: Option<String>,
    pub store: StoreOptions,
    pub tokens: TokenPolicy,
    pub serve: ServeOptions,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            database_url: None,
            store: StoreOptions::default(),
            tokens: TokenPolicy::Open,
            serve: test_serve_options(),
        }
    }
}

impl ServiceOptions {
    pub fn database(url: impl Into<String>) -> Self {
        Self {
            database_url: Some(url.into()),
            ..Self::default()
        }
    }
}

/// Gateway options for a test.
#[derive(Clone)]
pub struct GatewayOptions {
    pub backend: String,
    pub request_timeout: Duration,
    pub tls: bool,
    pub grace: Duration,
    /// How bodies are wrapped: plain JSON unless a test sets Meta's encryption.
    pub envelope: Envelope,
    pub max_in_flight: usize,
    /// Resolves backend names; the system's unless set.
    pub resolver: Option<flowgate_gateway::upstream::pool::Resolver>,
    /// Serves the flow preview on the admin listener (`FLOWGATE_PREVIEW`); off unless set.
    pub preview: bool,
}

impl std::fmt::Debug for GatewayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayOptions")
            .field("backend", &self.backend)
            .field("request_timeout", &self.request_timeout)
            .field("tls", &self.tls)
            .field("max_in_flight", &self.max_in_flight)
            .field("preview", &self.preview)
            .finish_non_exhaustive()
    }
}

impl GatewayOptions {
    pub fn new(backend: impl Into<String>) -> Self {
        Self {
            backend: backend.into(),
            request_timeout: Duration::from_secs(5),
            tls: true,
            grace: Duration::from_secs(5),
            envelope: Envelope::Plain,
            max_in_flight: flowgate_gateway::routes::DEFAULT_MAX_IN_FLIGHT,
            resolver: None,
            preview: false,
        }
    }
}

/// A gateway running in this process, with an HTTPS client that trusts it.
#[derive(Debug)]
pub struct Gateway {
    pub base: String,
    pub admin_base: String,
    pub client: reqwest::Client,
    /// The generated certificate the gateway serves, when TLS is on.
    pub cert_pem: Option<String>,
    upstream: Upstream,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Gateway {
    pub async fn start(options: GatewayOptions) -> Self {
        let public = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (port, admin_port) = (
            public.local_addr().unwrap().port(),
            admin.local_addr().unwrap().port(),
        );
        let tls = options
            .tls
            .then(|| Tls::self_signed().expect("generate certificate"));
        let cert_pem = tls.as_ref().and_then(|t| t.generated_cert_pem.clone());
        let client = match &tls {
            Some(tls) => https_builder(tls.generated_cert_pem.as_deref().unwrap(), Alpn::Both)
                .build()
                .unwrap(),
            None => reqwest::Client::new(),
        };
        let scheme = if options.tls { "https" } else { "http" };
        let refresh = Duration::from_millis(100);
        let upstream = match options.resolver {
            Some(resolver) => Upstream::with_resolver(&options.backend, refresh, resolver),
            None => Upstream::new(&options.backend, refresh),
        }
        .unwrap();
        let state = AppState::single(
            "/flow-endpoint",
            options.envelope,
            upstream.clone(),
            options.request_timeout,
        )
        .with_max_in_flight(options.max_in_flight)
        .with_preview(options.preview);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(flowgate_gateway::run(
            Listeners {
                public,
                admin: Some(admin),
            },
            state,
            Vec::new(),
            tls,
            flowgate_gateway::server::ConnectionLimits::default(),
            async {
                let _ = stopped.await;
            },
            options.grace,
        ));
        Self {
            base: format!("{scheme}://localhost:{port}"),
            admin_base: format!("http://127.0.0.1:{admin_port}"),
            client,
            cert_pem,
            upstream,
            stop: Some(stop),
            task,
        }
    }

    /// POSTs a JSON body to `path` and returns the status, the JSON answer and the response headers.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, body.to_string().into_bytes()).await
    }

    /// POSTs raw bytes.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request reaches the gateway");
        read(response).await
    }

    /// POSTs a sealed request, signed with `secret` when given, and returns the status
    /// with the answer: decrypted when the gateway sealed it (`text/plain`), else the
    /// plain JSON error.
    pub async fn post_sealed(
        &self,
        path: &str,
        sealed: &whatsapp::Sealed,
        secret: Option<&str>,
    ) -> (u16, Value) {
        let signature = secret.map(|s| whatsapp::sign(s, &sealed.body));
        self.post_signed(path, sealed, signature.as_deref()).await
    }

    /// POSTs a sealed request with a given `X-Hub-Signature-256` header, or none.
    pub async fn post_signed(
        &self,
        path: &str,
        sealed: &whatsapp::Sealed,
        signature: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .body(sealed.body.clone());
        request = request.header("content-type", "application/json");
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        let response = request.send().await.expect("request reaches the gateway");
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        if content_type.as_deref() == Some("text/plain") {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            (status, sealed.open(&text))
        } else {
            // Only an answer made before the request was decrypted may be plain JSON:
            // once decrypted, every answer is encrypted, errors included.
            let (status, body) = read(response).await;
            let code = body["error"]["code"].as_str().unwrap_or_default();
            assert!(
                PLAIN_BEFORE_DECRYPTION.contains(&code),
                "status {status}: a plain answer to a request the gateway could decrypt: {body}"
            );
            (status, body)
        }
    }

    pub async fn admin(&self, path: &str) -> (u16, Value) {
        read(
            reqwest::get(format!("{}{path}", self.admin_base))
                .await
                .expect("admin answers"),
        )
        .await
    }

    /// POSTs a JSON body to the admin listener.
    pub async fn admin_post(&self, path: &str, body: &Value) -> (u16, Value) {
        read(
            reqwest::Client::new()
                .post(format!("{}{path}", self.admin_base))
                .json(body)
                .send()
                .await
                .expect("admin answers"),
        )
        .await
    }

    /// The replica addresses the gateway currently knows for its default route.
    pub fn replica_addrs(&self) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = self
            .upstream
            .pool()
            .replicas()
            .iter()
            .map(|r| r.addr)
            .collect();
        addrs.sort();
        addrs
    }

    /// Begins a graceful shutdown and returns the server task, which ends once drained.
    pub fn shutdown(mut self) -> JoinHandle<std::io::Result<()>> {
        let _ = self.stop.take().unwrap().send(());
        self.task
    }
}

/// The error codes of the refusals a Meta route answers in plain JSON, before it has
/// decrypted the request (its body, signature, envelope or an admission slot).
const PLAIN_BEFORE_DECRYPTION: &[&str] = &[
    "payload_too_large",
    "body_timeout",
    "body_unreadable",
    "invalid_signature",
    "cannot_decrypt",
    "overloaded",
    "not_found",
    "method_not_allowed",
];

/// Reads a response as JSON, checking that it says so.
pub async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text}"));
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "status {status}: {text}"
    );
    (status, value)
}

/// The HTTP versions a client offers in the TLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    Both,
    Http1,
    Http2,
}

/// An HTTPS client builder that trusts exactly `cert_pem`, over the aws-lc-rs provider.
pub fn https_builder(cert_pem: &str, alpn: Alpn) -> reqwest::ClientBuilder {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = match alpn {
        Alpn::Both => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        Alpn::Http1 => vec![b"http/1.1".to_vec()],
        Alpn::Http2 => vec![b"h2".to_vec()],
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .no_proxy()
}

/// A flow for tests: it echoes what it receives and misbehaves on request.
///
/// INIT answers screen `CONTEXT` with the request context and fields as data.
/// `data_exchange` acts on the screen name: `SLOW` sleeps `data.ms` then answers,
/// `FAIL` fails (INTERNAL), `DOWN` reports a dependency down (UNAVAILABLE),
/// `INVALID` refuses the request (INVALID_ARGUMENT), `EXPIRED` says the token is no
/// longer valid, `NOT_OBJECT` answers data that is not an object, `DONE` sleeps
/// `data.ms` (if any) then completes with `data` as params (counted in
/// [`Probe::completions`]), `REMEMBER` stores `data` in the session, `RECALL`
/// answers the session, anything else echoes `data` on the same screen.
/// Every handler run is counted in [`Probe::runs`].
#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub notices: Arc<Mutex<Vec<ErrorNotice>>>,
    /// INIT, BACK and data_exchange calls received (handler runs).
    pub calls: Arc<AtomicUsize>,
    /// Calls dropped before they finished: the caller gave up (deadline, cancellation).
    pub cancelled: Arc<AtomicUsize>,
    /// Milliseconds every INIT and data_exchange call waits before answering.
    pub delay_ms: Arc<AtomicU64>,
    completions: Arc<AtomicUsize>,
}

impl Probe {
    /// How many times a handler ran (INIT, BACK or data_exchange).
    pub fn runs(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// How many times the `DONE` handler ran: the side effect of completing.
    pub fn completions(&self) -> usize {
        self.completions.load(Ordering::SeqCst)
    }

    /// Counts the call, waits `delay_ms` and then `extra`, and counts a cancellation if
    /// the call is dropped while waiting.
    async fn wait(&self, extra: Duration) {
        /// Counts a cancellation unless disarmed.
        struct Guard(Arc<AtomicUsize>, bool);
        impl Drop for Guard {
            fn drop(&mut self) {
                if self.1 {
                    self.0.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        let total = Duration::from_millis(self.delay_ms.load(Ordering::SeqCst)) + extra;
        if total.is_zero() {
            return;
        }
        let mut guard = Guard(self.cancelled.clone(), true);
        tokio::time::sleep(total).await;
        guard.1 = false;
    }
}

#[async_trait::async_trait]
impl Flow for Probe {
    async fn init(&self, request: Request) -> Result<Outcome, FlowError> {
        self.wait(Duration::ZERO).await;
        let c = &request.context;
        Ok(Outcome::screen(
            "CONTEXT",
            json!({
                "flow": c.flow,
                "request_id": c.request_id,
                "attempt": c.attempt,
                "idempotency_key": c.idempotency_key,
                "version": c.version,
                "signature_verified": c.signature_verified,
                "flow_token_signature": flow_service::wire::token_signature_to_proto(c.flow_token_signature).as_str_name(),
                "flow_token": request.flow_token,
                "screen": request.screen,
                "data": request.data,
                "subject": request.claims.as_ref().and_then(|c| c.subject.clone()),
            }),
        ))
    }

    async fn data_exchange(&self, request: Request) -> Result<Outcome, FlowError> {
        let ms = match request.screen.as_str() {
            "SLOW" => request.data.get("ms").and_then(Value::as_u64).unwrap_or(0),
            _ => 0,
        };
        self.wait(Duration::from_millis(ms)).await;
        match request.screen.as_str() {
            "SLOW" => Ok(Outcome::screen("SLOW", json!({"slept_ms": ms}))),
            "FAIL" => Err(FlowError::Internal("the probe failed on purpose".into())),
            "DOWN" => Err(FlowError::Unavailable(
                "the probe's database is down".into(),
            )),
            "INVALID" => Err(FlowError::Invalid("the probe refuses this".into())),
            "EXPIRED" => Ok(Outcome::token_invalid("This sign-up link has expired.")),
            "NOT_OBJECT" => Ok(Outcome::screen("NOT_OBJECT", json!([1, 2]))),
            "DONE" => {
                let ms = request.data.get("ms").and_then(Value::as_u64).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                self.completions.fetch_add(1, Ordering::SeqCst);
                Ok(Outcome::complete(Value::Object(request.data)))
            }
            "REMEMBER" => {
                for (key, value) in &request.data {
                    request.session.set(key.clone(), value.clone());
                }
                Ok(Outcome::screen("REMEMBER", json!({})))
            }
            "RECALL" => Ok(Outcome::screen(
                "RECALL",
                Value::Object(request.session.values()),
            )),
            screen => Ok(Outcome::screen(screen, Value::Object(request.data))),
        }
    }

    async fn on_error(&self, notice: ErrorNotice) -> Result<(), FlowError> {
        self.notices.lock().unwrap().push(notice);
        Ok(())
    }
}

/// The PostgreSQL server the tests use, from `FLOWGATE_TEST_POSTGRES_URL`
/// (`scripts/test.sh` starts a throwaway one and sets it).
///
/// Unset, a test that needs it prints a notice and passes on — unless `CI` is set,
/// where it fails: CI must never skip the PostgreSQL tests silently.
pub fn postgres_url() -> Option<String> {
    match std::env::var("FLOWGATE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "FLOWGATE_TEST_POSTGRES_URL is not set, and CI is: the PostgreSQL tests must run \
             (scripts/test.sh starts a server and sets it)"
        ),
        _ => {
            eprintln!(
                "SKIPPED: FLOWGATE_TEST_POSTGRES_URL is not set; run scripts/test.sh to include \
                 the PostgreSQL tests"
            );
            None
        }
    }
}

/// A schema of its own in the test PostgreSQL database, so that tests run in parallel
/// without seeing each other's rows. Dropped with everything in it when this is.
#[derive(Debug)]
pub struct PgSchema {
    /// Connects with this schema as the search path.
    pub url: String,
    admin_url: String,
    name: String,
}

impl PgSchema {
    /// A new empty schema, or `None` when the tests have no PostgreSQL (see [`postgres_url`]).
    pub async fn create() -> Option<Self> {
        use sqlx::Connection;
        let admin_url = postgres_url()?;
        let name = format!("t_{}", unique());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("FLOWGATE_TEST_POSTGRES_URL accepts connections");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut admin)
            .await
            .expect("create a test schema");
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        Some(Self {
            url: format!("{admin_url}{separator}options[search_path]={name}"),
            admin_url,
            name,
        })
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs outside async code: use a small runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                use sqlx::Connection;
                if let Ok(mut admin) = sqlx::PgConnection::connect(&url).await {
                    let drop = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join();
    }
}

/// 32 random hex digits, for names that must not collide between parallel tests.
pub fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A TCP proxy on 127.0.0.1:0 in front of a real server, which a test can cut (every
/// connection dropped, new ones closed at once) and restore: the network going away
/// between the service and its database, without disturbing other tests.
#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (open, connections) = (open.clone(), connections.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().unwrap().push(task);
                }
            }
        });
        Self {
            addr,
            open,
            connections,
            accept,
        }
    }

    /// Drops every connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Retries `check` every 50 ms for up to five seconds, then fails the test.
pub async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A WhatsApp request body.
pub fn whatsapp(action: &str, token: &str, screen: &str, data: Value) -> Value {
    json!({"version": "3.0", "action": action, "flow_token": token, "screen": screen, "data": data})
}
