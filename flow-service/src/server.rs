//! Serves a set of flows over gRPC, with `grpc.health.v1` and reflection, until
//! shutdown; sheds load beyond a limit of calls in flight, and drains on shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use flowgate_proto::v1::flow_service_server::FlowServiceServer;
use tokio::sync::Semaphore;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::ServingStatus;

use crate::service::{FlowServer, Flows};
use crate::store::{Store, StoreError};

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
    #[error("cannot open the in-memory store: {0}")]
    Store(#[from] StoreError),
}

/// How a server behaves under load and at shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// How long to keep serving after reporting NOT_SERVING, so that gateways move
    /// traffic away before connections close.
    pub drain_delay: Duration,
    /// Flow calls handled at once; beyond, `RESOURCE_EXHAUSTED` at once.
    pub max_in_flight: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            drain_delay: Duration::from_secs(2),
            max_in_flight: 512,
        }
    }
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
/// told to go away, and calls in flight finish before this returns.
///
/// State goes to the flows' [`Store`](Flows::store); without one, to a private
/// in-memory SQLite database that lives as long as this server (logged as a warning).
/// Expired outcomes and sessions are deleted every minute until shutdown.
pub async fn run_with(
    listener: tokio::net::TcpListener,
    flows: Flows,
    shutdown: impl Future<Output = ()> + Send,
    options: ServeOptions,
) -> Result<(), ServeError> {
    // Metrics recorded before a recorder exists are lost: install it first.
    flowgate_telemetry::metrics_recorder();
    let store = match flows.get_store() {
        Some(store) => store.clone(),
        None => {
            tracing::warn!(
                "no store configured: completions and sessions are kept in memory and lost on exit"
            );
            Store::memory().await?
        }
    };
    let cleanup = tokio::spawn(cleanup(store.clone()));
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<FlowServiceServer<FlowServer>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(flowgate_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let shutdown = async move {
        shutdown.await;
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        health
            .set_not_serving::<FlowServiceServer<FlowServer>>()
            .await;
        tracing::info!(
            drain_ms = options.drain_delay.as_millis() as u64,
            "draining: reported NOT_SERVING"
        );
        tokio::time::sleep(options.drain_delay).await;
        // Health watch streams never end by themselves and would hold their connections
        // open forever: dropping the statuses ends them, so the connections can close.
        let mut health = health;
        health.clear_service_status("").await;
        health.clear_service_status(FLOW_SERVICE_NAME).await;
        tracing::info!("closing connections once calls in flight finish");
    };
    let served = tonic::transport::Server::builder()
        // Outermost first: every call gets its server span (continuing the caller's
        // trace) and its metrics, then admission.
        .layer(TraceLayer)
        .layer(ShedLayer {
            permits: Arc::new(Semaphore::new(options.max_in_flight)),
        })
        .add_service(health_service)
        .add_service(reflection)
        .add_service(FlowServiceServer::new(FlowServer::new(flows, store)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;
    cleanup.abort();
    served?;
    Ok(())
}

/// Refuses flow calls beyond a number in flight with `RESOURCE_EXHAUSTED` (the
/// gateway's 503 with `Retry-After`) instead of queueing them. Health and
/// reflection are never refused: a busy replica is not a dead one.
#[derive(Debug, Clone)]
struct ShedLayer {
    permits: Arc<Semaphore>,
}

impl<S> tower::Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Shed {
            inner,
            permits: self.permits.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct Shed<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Shed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        if !path.starts_with("/flowgate.") {
            return Box::pin(self.inner.call(request));
        }
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let call = self.inner.call(request);
                Box::pin(async move {
                    let response = call.await;
                    drop(permit);
                    response
                })
            }
            Err(_) => Box::pin(async {
                Ok(
                    tonic::Status::resource_exhausted("the flow service is at capacity")
                        .into_http(),
                )
            }),
        }
    }
}

/// Opens a server span for every flow call, as a child of the trace in the request's
/// `traceparent`, and records `flow_service_calls_total` and
/// `flow_service_call_duration_seconds` by method and gRPC status code.
#[derive(Debug, Clone)]
struct TraceLayer;

impl<S> tower::Layer<S> for TraceLayer {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Traced { inner }
    }
}

#[derive(Debug, Clone)]
struct Traced<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for Traced<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let Some(method) = path
            .strip_prefix("/flowgate.v1.FlowService/")
            .map(str::to_owned)
        else {
            return Box::pin(self.inner.call(request));
        };
        let span = tracing::info_span!(
            "flowgate.v1.FlowService",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        flowgate_telemetry::propagation::set_parent_from(&span, request.headers());
        let started = std::time::Instant::now();
        let call = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        use tracing::Instrument;
        Box::pin(
            async move {
                let response = call.await;
                // Errors travel in the headers (trailers-only); success says nothing there.
                let code = match &response {
                    Ok(response) => response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .map_or(tonic::Code::Ok, tonic::Code::from_i32),
                    Err(_) => tonic::Code::Internal,
                };
                tracing::Span::current().record("rpc.grpc.status_code", code as i32);
                let labels = [("method", method), ("code", format!("{code:?}"))];
                metrics::counter!("flow_service_calls_total", &labels).increment(1);
                metrics::histogram!("flow_service_call_duration_seconds", &labels)
                    .record(started.elapsed().as_secs_f64());
                response
            }
            .instrument(span),
        )
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
async fn cleanup(store: Store) {
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
