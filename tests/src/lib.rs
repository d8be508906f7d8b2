//! Harness for end-to-end tests: a real flow service (tonic) and a real gateway
//! (axum + rustls) on 127.0.0.1 port 0, driven by a real HTTPS client that trusts
//! only the certificate generated for the test.

pub mod whatsapp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flow_service::sdk::{ErrorNotice, Flow, FlowError, Outcome, Request};
use flow_service::server::ServeOptions;
use flow_service::service::Flows;
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
        let flows = flow_service::flows::reference()
            .strict(true)
            .register("probe", probe);
        Self::serve(addr, flows).await
    }

    /// Serves any set of flows, draining for 200 ms on [`Service::stop`].
    pub async fn serve(addr: SocketAddr, flows: Flows) -> Self {
        let options = ServeOptions {
            drain_delay: Duration::from_millis(200),
            ..ServeOptions::default()
        };
        Self::serve_with(addr, flows, options).await
    }

    /// Serves any set of flows with the given options.
    pub async fn serve_with(addr: SocketAddr, flows: Flows, options: ServeOptions) -> Self {
        let listener = std::net::TcpListener::bind(addr).expect("bind flow service");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let (kill, killed) = oneshot::channel::<()>();
        let (done_tx, done) = oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
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
        let _ = self.done.take().unwrap().await;
    }

    /// Kills the service at once: no draining, every connection dropped.
    pub async fn kill(mut self) {
        let _ = self.kill.take().unwrap().send(());
        let _ = self.done.take().unwrap().await;
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
}

impl std::fmt::Debug for GatewayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayOptions")
            .field("backend", &self.backend)
            .field("request_timeout", &self.request_timeout)
            .field("tls", &self.tls)
            .field("max_in_flight", &self.max_in_flight)
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
        .with_max_in_flight(options.max_in_flight);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(flowgate_gateway::run(
            Listeners {
                public,
                admin: Some(admin),
            },
            state,
            tls,
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
            read(response).await
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
/// longer valid, `NOT_OBJECT` answers data that is not an object, `DONE` completes
/// with `data` as params, anything else echoes `data` on the same screen.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub notices: Arc<Mutex<Vec<ErrorNotice>>>,
    /// INIT and data_exchange calls received.
    pub calls: Arc<AtomicUsize>,
    /// Calls dropped before they finished: the caller gave up (deadline, cancellation).
    pub cancelled: Arc<AtomicUsize>,
    /// Milliseconds every INIT and data_exchange call waits before answering.
    pub delay_ms: Arc<AtomicU64>,
}

impl Probe {
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
                "flow_token_signature": c.flow_token_signature.as_str_name(),
                "flow_token": request.flow_token,
                "screen": request.screen,
                "data": request.data,
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
            "DONE" => Ok(Outcome::complete(Value::Object(request.data))),
            screen => Ok(Outcome::screen(screen, Value::Object(request.data))),
        }
    }

    async fn on_error(&self, notice: ErrorNotice) -> Result<(), FlowError> {
        self.notices.lock().unwrap().push(notice);
        Ok(())
    }
}

/// A WhatsApp request body.
pub fn whatsapp(action: &str, token: &str, screen: &str, data: Value) -> Value {
    json!({"version": "3.0", "action": action, "flow_token": token, "screen": screen, "data": data})
}
