//! Serves a set of flows over gRPC, with `grpc.health.v1` and reflection, until
//! shutdown; sheds load beyond a limit of flow calls in flight, and drains on shutdown.
//!
//! Every call passes one stack of stock tower layers, outermost first:
//!
//! 1. `CallMetricsLayer` (every call): `flow_service_calls_total` and
//!    `flow_service_call_duration_seconds` by method — an allow-list of the methods
//!    served, `other` for any other path — and gRPC status code (a refused caller is
//!    counted with `code="Unauthenticated"`);
//! 2. [`CallerCheckLayer`] (every call but health): the bearer token and the client
//!    certificate, when the options ask for them, else `UNAUTHENTICATED`;
//! 3. tonic's router, by the method's service: `flowgate.v1.FlowService/…` calls take
//!    the flow-call stack below; health and reflection go straight to their services,
//!    so a busy replica is never reported dead;
//! 4. `TraceLayer` (flow calls): the server span, a child of the caller's trace from
//!    the gRPC metadata, carrying the call's fields (see `src/pipeline.rs`);
//! 5. `HandleErrorLayer` (flow calls): a shed call is answered `RESOURCE_EXHAUSTED` (the
//!    gateway's 503 with `Retry-After`) at once, and counted in `flow_service_shed_total`;
//! 6. `LoadShed` (flow calls): refuses rather than queues a call beyond the limit;
//! 7. `GlobalConcurrencyLimit` (flow calls): at most `max_in_flight` flow calls at
//!    once, across all connections;
//! 8. the `FlowService` itself ([`FlowServer`]).
//!
//! Under the stack, the listener speaks TLS when [`ServeOptions::tls`] is set.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::error_handling::HandleErrorLayer;
use flowgate_proto::v1::flow_service_server::FlowServiceServer;
use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::service::LayerExt;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;
use tracing::field::Empty;

use crate::auth::{AuthToken, CallerCheckLayer};
use crate::pipeline::Calls;
use crate::service::{FlowServer, Flows};
use crate::store::{MemoryStore, Store};

/// How often expired outcomes and sessions are deleted.
const CLEANUP_EVERY: Duration = Duration::from_secs(60);

/// The gRPC name of the flow service, as health reports it.
const FLOW_SERVICE_NAME: &str =
    <FlowServiceServer<FlowServer> as tonic::server::NamedService>::NAME;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("cannot listen: {0}")]
    Io(std::io::Error),
    #[error("unusable TLS certificate or key: {0}")]
    Tls(tonic::transport::Error),
}

/// How long a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// TLS for the gRPC listener, with client certificates required or not.
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: tonic::transport::ServerTlsConfig,
    client_certificates: bool,
}

impl ServerTls {
    /// From PEM: the certificate chain and its private key; with `client_ca`, every
    /// call but `grpc.health.v1` must come over a connection whose client certificate
    /// that CA signed. A certificate presented is always verified; a connection
    /// without one is accepted, so that health stays open, and its other calls are
    /// answered `UNAUTHENTICATED` (see [`crate::auth`]).
    pub fn from_pem(cert: &[u8], key: &[u8], client_ca: Option<&[u8]>) -> Result<Self, ServeError> {
        let mut config = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert, key))
            .timeout(TLS_HANDSHAKE_TIMEOUT);
        if let Some(ca) = client_ca {
            config = config
                .client_ca_root(tonic::transport::Certificate::from_pem(ca))
                .client_auth_optional(true);
        }
        // Built once here so that a bad file fails at start, not at the first call.
        tonic::transport::Server::builder()
            .tls_config(config.clone())
            .map_err(ServeError::Tls)?;
        Ok(Self {
            config,
            client_certificates: client_ca.is_some(),
        })
    }

    /// Whether callers must present a client certificate.
    pub fn requires_client_certificates(&self) -> bool {
        self.client_certificates
    }
}

/// How a server behaves under load and at shutdown, and whom it serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How long to keep serving after reporting NOT_SERVING, so that gateways move
    /// traffic away before connections close.
    pub drain_delay: Duration,
    /// Flow calls handled at once; beyond, `RESOURCE_EXHAUSTED` at once.
    pub max_in_flight: usize,
    /// The bearer token every call but health must carry; `None` asks for none.
    pub auth: Option<AuthToken>,
    /// TLS for the listener; `None` serves plaintext HTTP/2.
    pub tls: Option<ServerTls>,
    /// Closes the flows' store ([`Store::close`]) once the last call has been answered,
    /// before [`run_with`] returns: a SQLite file takes in its write-ahead log, so that
    /// the file alone then holds everything, and PostgreSQL sees its sessions end. Off
    /// by default, since the caller may share the store; the `flow-service` binary,
    /// whose store is its own, turns it on.
    pub close_store: bool,
    /// How long, once every connection has closed, the calls whose caller went away
    /// (they run on by themselves, each until done or past its deadline) may still
    /// run, so that what they write lands before the store closes and [`run_with`]
    /// returns. The gateway's calls end within its request budget, 10 s by default
    /// (`FLOW_SERVICE_SETTLE_TIMEOUT` in the binary).
    pub settle_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            drain_delay: Duration::from_secs(2),
            max_in_flight: 512,
            auth: None,
            tls: None,
            close_store: false,
            settle_timeout: Duration::from_secs(10),
        }
    }
}

/// The one call a flow author needs: binds `addr` and serves `flows` with default
/// options until SIGTERM or SIGINT (Ctrl-C), then drains as [`run_with`] does.
pub async fn serve(addr: impl tokio::net::ToSocketAddrs, flows: Flows) -> Result<(), ServeError> {
    let shutdown = flowgate_cli::shutdown_signal().map_err(ServeError::Io)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(ServeError::Io)?;
    tracing::info!(address = ?listener.local_addr().ok(), "serving flows");
    run(listener, flows, shutdown).await
}

/// [`run_with`] and default options.
pub async fn run(
    listener: tokio::net::TcpListener,
    flows: Flows,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    run_with(listener, flows, shutdown, ServeOptions::default()).await
}

/// Serves `flows` on `listener` until `shutdown` completes. Then: health for the
/// whole server (`""`) and for `flowgate.v1.FlowService` turns NOT_SERVING; calls
/// are still served for `drain_delay`; then the listener closes, connections are
/// told to go away, and calls in flight finish before this returns, as do calls
/// whose caller went away (within [`ServeOptions::settle_timeout`]).
///
/// State goes to the flows' [`Store`](Flows::store); without one, to a private
/// [`MemoryStore`] that lives as long as this server (logged as a warning).
/// Expired outcomes and sessions are deleted every minute until shutdown. With
/// [`ServeOptions::close_store`], the store is closed before this returns.
pub async fn run_with(
    listener: tokio::net::TcpListener,
    flows: Flows,
    shutdown: impl Future<Output = ()> + Send,
    options: ServeOptions,
) -> Result<(), ServeError> {
    // Metrics recorded before a recorder exists are lost: install it first.
    flowgate_telemetry::metrics_recorder();
    // What may fail comes first, so that a failure leaves nothing running.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(flowgate_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let mut builder = tonic::transport::Server::builder();
    let client_certificates = match options.tls {
        Some(tls) => {
            builder = builder.tls_config(tls.config).map_err(ServeError::Tls)?;
            tls.client_certificates
        }
        None => false,
    };
    let store = match flows.get_store() {
        Some(store) => store.clone(),
        None => {
            tracing::warn!(
                "no store configured: completions and sessions are kept in memory and lost on exit"
            );
            Arc::new(MemoryStore::default())
        }
    };
    let cleanup = tokio::spawn(cleanup(store.clone()));
    let closing = options.close_store.then(|| store.clone());
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<FlowServiceServer<FlowServer>>().await;
    let drain_delay = options.drain_delay;
    let shutdown = async move {
        shutdown.await;
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        health
            .set_not_serving::<FlowServiceServer<FlowServer>>()
            .await;
        tracing::info!(
            drain_ms = drain_delay.as_millis() as u64,
            "draining: reported NOT_SERVING"
        );
        tokio::time::sleep(drain_delay).await;
        // Health watch streams never end by themselves and would hold their connections
        // open forever: dropping the statuses ends them, so the connections can close.
        let mut health = health;
        health.clear_service_status("").await;
        health.clear_service_status(FLOW_SERVICE_NAME).await;
        tracing::info!("closing connections once calls in flight finish");
    };
    // The span alone: the pipeline logs each call, and failures are answers, not errors.
    let server_span = TraceLayer::new_for_grpc()
        .make_span_with(server_span)
        .on_request(())
        .on_response(record_status::<axum::body::Body>)
        .on_eos(())
        .on_failure(());
    let permits = Arc::new(Semaphore::new(options.max_in_flight));
    let server = FlowServer::new(flows, store);
    let calls = server.calls();
    // Only flow calls take this stack: tonic routes them here by the method's service.
    let flow_calls = ServiceBuilder::new()
        // The server span of each flow call, continuing the caller's trace.
        .layer(server_span)
        // A shed call is answered RESOURCE_EXHAUSTED at once, and counted.
        .layer(HandleErrorLayer::new(answer_shed))
        // Beyond the limit, refuse at once rather than queue.
        .load_shed()
        // At most `max_in_flight` flow calls at once, across all connections.
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(permits))
        .named_layer(FlowServiceServer::new(server));
    let served = builder
        // Every call, flow or not, counted by method (allow-listed) and status code.
        .layer(CallMetricsLayer)
        // Every call but health: the token and the client certificate, when asked for.
        .layer(CallerCheckLayer::new(options.auth, client_certificates))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(flow_calls)
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await;
    cleanup.abort();
    // Every connection has closed. A call whose caller went away may still be running
    // (detached, until done or past its deadline): what it writes must land before
    // the store closes.
    settle(&calls, options.settle_timeout).await;
    if let Some(store) = closing {
        store.close().await;
    }
    served?;
    Ok(())
}

/// Waits, at most `limit`, for the calls still running after every connection closed.
async fn settle(calls: &Calls, limit: Duration) {
    let running = calls.running();
    if running == 0 {
        return;
    }
    tracing::info!(calls = running, "waiting for calls whose caller went away");
    if tokio::time::timeout(limit, calls.settled()).await.is_err() {
        tracing::warn!(
            calls = calls.running(),
            limit_ms = limit.as_millis() as u64,
            "calls whose caller went away still run at shutdown: what they write once the \
             store has closed is lost"
        );
    }
}

/// The connections `listener` accepts, with Nagle's algorithm off. An answer's HEADERS,
/// DATA and trailers frames can leave in separate writes; with Nagle on, a later one
/// waits for the caller to acknowledge the first, and Linux delays that acknowledgement
/// by up to 40 ms. (tonic sets this option only on listeners it binds itself.)
fn incoming(listener: tokio::net::TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// The span of a flow call: named for the gRPC method like the caller's client span,
/// made a child of the trace in the request's metadata before it is first entered, and
/// carrying that trace's id for the log lines (as the gateway's request span does).
/// The call's own fields start empty; the pipeline records them once it knows them.
fn server_span(request: &http::Request<Body>) -> Span {
    let method = known_method(request.uri().path());
    let span = tracing::info_span!(
        target: flowgate_telemetry::TRACE,
        "flowgate.v1.FlowService",
        otel.name = method.map_or("flowgate.v1.FlowService/other", |m| &m.path[1..]),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = method.map_or("other", |m| m.label),
        rpc.grpc.status_code = Empty,
        trace_id = Empty,
        flow = Empty,
        action = Empty,
        screen = Empty,
        token_hash = Empty,
        request_id = Empty,
        attempt = Empty,
        outcome = Empty,
    );
    flowgate_telemetry::propagation::set_parent_from(&span, request.headers());
    flowgate_telemetry::record_trace_id(&span, &span);
    span
}

/// Records the call's gRPC status code on its span.
fn record_status<B>(response: &http::Response<B>, _latency: Duration, span: &Span) {
    span.record("rpc.grpc.status_code", grpc_code(response) as i32);
}

/// Turns a call refused by `LoadShed` into the gRPC answer the gateway expects of a
/// replica at capacity; any other error (there is none below) becomes its status.
async fn answer_shed(error: tower::BoxError) -> http::Response<Body> {
    if error.is::<tower::load_shed::error::Overloaded>() {
        metrics::counter!("flow_service_shed_total").increment(1);
        return tonic::Status::resource_exhausted("the flow service is at capacity").into_http();
    }
    tonic::Status::from_error(error).into_http()
}

/// A gRPC method this server answers, and how metrics name it.
#[derive(Debug)]
struct KnownMethod {
    path: &'static str,
    label: &'static str,
}

/// The methods counted under their own name; every other path is `other`, so that
/// made-up paths cannot create metric series. Flow methods keep their short names.
const METHODS: &[KnownMethod] = &[
    KnownMethod {
        path: "/flowgate.v1.FlowService/Init",
        label: "Init",
    },
    KnownMethod {
        path: "/flowgate.v1.FlowService/DataExchange",
        label: "DataExchange",
    },
    KnownMethod {
        path: "/flowgate.v1.FlowService/Back",
        label: "Back",
    },
    KnownMethod {
        path: "/flowgate.v1.FlowService/NotifyError",
        label: "NotifyError",
    },
    KnownMethod {
        path: "/flowgate.v1.FlowService/ListFlows",
        label: "ListFlows",
    },
    KnownMethod {
        path: "/flowgate.v1.FlowService/GetFlow",
        label: "GetFlow",
    },
    KnownMethod {
        path: "/grpc.health.v1.Health/Check",
        label: "grpc.health.v1.Health/Check",
    },
    KnownMethod {
        path: "/grpc.health.v1.Health/Watch",
        label: "grpc.health.v1.Health/Watch",
    },
    KnownMethod {
        path: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        label: "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    },
];

fn known_method(path: &str) -> Option<&'static KnownMethod> {
    METHODS.iter().find(|method| method.path == path)
}

/// A response's gRPC status: errors travel in the headers (trailers-only); a success
/// says nothing there.
fn grpc_code<B>(response: &http::Response<B>) -> tonic::Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32)
}

/// Counts every call in `flow_service_calls_total` and
/// `flow_service_call_duration_seconds`, by method ([`METHODS`] or `other`) and gRPC
/// status code.
#[derive(Debug, Clone, Copy)]
struct CallMetricsLayer;

impl<S> tower::Layer<S> for CallMetricsLayer {
    type Service = CallMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallMetrics { inner }
    }
}

#[derive(Debug, Clone)]
struct CallMetrics<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for CallMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = known_method(request.uri().path()).map_or("other", |m| m.label);
        let started = Instant::now();
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await;
            let code = response.as_ref().map_or(tonic::Code::Internal, grpc_code);
            let labels = [("method", method), ("code", code_label(code))];
            metrics::counter!("flow_service_calls_total", &labels).increment(1);
            metrics::histogram!("flow_service_call_duration_seconds", &labels)
                .record(started.elapsed().as_secs_f64());
            response
        })
    }
}

/// A gRPC status code as the `code` label writes it: the code's name, as its `Debug`
/// prints it. Static, so that counting a call copies no label text.
fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "Ok",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The admin router: `GET /metrics` (Prometheus text, `flow_service_*`) and `GET /healthz`.
pub fn admin_router(flows: Flows) -> axum::Router {
    let handle = flowgate_telemetry::metrics_recorder();
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let (handle, flows) = (handle.clone(), flows.clone());
                async move {
                    metrics::counter!("flow_service_contract_violations_total")
                        .absolute(flows.violations());
                    (
                        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        handle.render(),
                    )
                }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }))
}
/// Deletes expired outcomes and sessions now and then. A failure is logged and
/// retried at the next tick: the rows are only kept longer.
async fn cleanup(store: Arc<dyn Store>) {
    let mut every = tokio::time::interval(CLEANUP_EVERY);
    loop {
        every.tick().await;
        match store.cleanup_expired().await {
            Ok(0) => {}
            Ok(rows) => tracing::debug!(rows, "expired outcomes and sessions deleted"),
            Err(error) => tracing::warn!(%error, "cleanup of expired rows failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The allow-list keeps up with the contract: every `FlowService` method in the
    /// proto has its own label, and nothing else of the flow service does.
    #[test]
    fn the_allow_list_names_every_flow_method() {
        let set = prost_types::FileDescriptorSet::decode(flowgate_proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set decodes");
        let mut in_proto: Vec<String> = set
            .file
            .iter()
            .flat_map(|file| file.service.iter().map(move |s| (file.package(), s)))
            .filter(|(package, service)| {
                format!("{package}.{}", service.name()) == FLOW_SERVICE_NAME
            })
            .flat_map(|(_, service)| service.method.iter())
            .map(|method| format!("/{FLOW_SERVICE_NAME}/{}", method.name()))
            .collect();
        in_proto.sort();
        let prefix = format!("/{FLOW_SERVICE_NAME}/");
        let mut listed: Vec<String> = METHODS
            .iter()
            .filter(|m| m.path.starts_with(&prefix))
            .map(|m| m.path.to_owned())
            .collect();
        listed.sort();
        assert_eq!(listed, in_proto);
    }

    /// Accepted connections send small frames at once (no Nagle delay).
    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        use tokio_stream::StreamExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accepted = incoming(listener);
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let server_side = accepted.next().await.unwrap().unwrap();
        assert!(server_side.nodelay().unwrap());
        // The option is the accepted socket's own, not inherited from the client's.
        assert!(!client.nodelay().unwrap());
    }

    /// Every code's label is the name the metrics have always carried.
    #[test]
    fn code_labels_are_the_codes_names() {
        for value in 0..=16 {
            let code = tonic::Code::from_i32(value);
            assert_eq!(code_label(code), format!("{code:?}"), "{value}");
        }
        assert_eq!(tonic::Code::from_i32(17), tonic::Code::Unknown);
    }

    /// Calls to made-up paths — a method the flow service does not have, a service
    /// nobody serves — are counted as `other`: they add no series of their own.
    #[tokio::test]
    async fn made_up_methods_add_no_metric_series() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = ServeOptions {
            drain_delay: Duration::ZERO,
            ..ServeOptions::default()
        };
        let server = tokio::spawn(run_with(
            listener,
            // Any flow will do: the calls below never reach a handler.
            Flows::new().register(
                "hello",
                flowgate_sdk::Router::new(
                    flowgate_sdk::FlowJson::parse(include_str!("../../examples/hello.json"))
                        .unwrap(),
                ),
            ),
            async {
                let _ = stopped.await;
            },
            options,
        ));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        for (path, code) in [
            (
                "/flowgate.v1.FlowService/MadeUpMethod",
                tonic::Code::Unimplemented,
            ),
            ("/made.up.Service/Method", tonic::Code::Unimplemented),
            // An empty INIT: no flow token.
            (
                "/flowgate.v1.FlowService/Init",
                tonic::Code::InvalidArgument,
            ),
        ] {
            grpc.ready().await.unwrap();
            let status = grpc
                .unary::<(), (), _>(
                    tonic::Request::new(()),
                    http::uri::PathAndQuery::from_static(path),
                    tonic_prost::ProstCodec::default(),
                )
                .await
                .unwrap_err();
            assert_eq!(status.code(), code, "{path}: {status:?}");
        }
        let metrics = flowgate_telemetry::metrics_recorder().render();
        for expected in [
            r#"flow_service_calls_total{method="other",code="Unimplemented"} 2"#,
            r#"flow_service_calls_total{method="Init",code="InvalidArgument"} 1"#,
        ] {
            assert!(metrics.contains(expected), "no {expected} in:\n{metrics}");
        }
        for made_up in ["MadeUpMethod", "made.up"] {
            assert!(!metrics.contains(made_up), "{made_up} in:\n{metrics}");
        }
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
