//! The HTTP surface: the Flows endpoint routes and the admin routes
//! (`GET /healthz`, `GET /readyz`).
//!
//! A request goes: read the body (bounded in size and time) → open the envelope
//! → [`translate::parse`] → the flow service over [`Upstream`] → [`translate::answer`]
//! → seal the envelope. Every step's failure is a [`GatewayError`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flowgate_proto::token_hash;
use flowgate_proto::v1::RequestContext;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{Config, FlowSource, ModeConfig, valid_flow_name};
use crate::envelope::Envelope;
use crate::error::GatewayError;
use crate::telemetry;
use crate::translate::{self, Inbound};
use crate::upstream::{Reply, Upstream};

/// The largest request body accepted (WhatsApp requests are a few KiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The header that carries the request id, in and out.
const REQUEST_ID: &str = "x-request-id";

/// One endpoint path and what serves it.
#[derive(Debug, Clone)]
pub struct Route {
    /// An exact path, or one ending in `/{flow}`.
    pub path: String,
    pub flow: FlowSource,
    pub envelope: Envelope,
    pub upstream: Upstream,
}

/// Requests handled at once unless configured otherwise (`FLOWGATE_MAX_IN_FLIGHT`).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub routes: Vec<Route>,
    /// The whole budget of a request, from arrival to answer.
    pub request_timeout: Duration,
    /// Admission: a request that finds no permit is refused at once (503, `Retry-After`)
    /// instead of queueing towards the platform's deadline.
    pub in_flight: Arc<Semaphore>,
}

impl AppState {
    /// The usual layout: `path` reaches the default flow and `/flows/{flow}` the
    /// others, both with the same envelope and flow service.
    pub fn single(
        path: &str,
        envelope: Envelope,
        upstream: Upstream,
        request_timeout: Duration,
    ) -> Self {
        let route = |path: &str, flow| Route {
            path: path.into(),
            flow,
            envelope: envelope.clone(),
            upstream: upstream.clone(),
        };
        Self {
            routes: vec![
                route(path, FlowSource::Default),
                route("/flows/{flow}", FlowSource::FromPath),
            ],
            request_timeout,
            in_flight: Arc::new(Semaphore::new(DEFAULT_MAX_IN_FLIGHT)),
        }
    }

    /// Admits at most `n` requests at once.
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.in_flight = Arc::new(Semaphore::new(n));
        self
    }

    /// Builds the routes of a configuration: reads key files and prepares one
    /// channel per distinct flow service. Must be called inside a Tokio runtime.
    pub fn from_config(config: &Config) -> Result<Self, StartError> {
        let mut upstreams: Vec<Upstream> = Vec::new();
        let mut routes = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let upstream = match upstreams.iter().find(|u| u.url() == route.backend) {
                Some(upstream) => upstream.clone(),
                None => {
                    let upstream =
                        Upstream::new(&route.backend, config.dns_refresh).map_err(|e| {
                            StartError {
                                origin: route.origin.clone(),
                                reason: e.to_string(),
                            }
                        })?;
                    upstreams.push(upstream.clone());
                    upstream
                }
            };
            let envelope = Envelope::load(&route.mode).map_err(|e| StartError {
                origin: route.origin.clone(),
                reason: e.to_string(),
            })?;
            if let ModeConfig::Meta(meta) = &route.mode {
                if meta.app_secrets.is_empty() {
                    tracing::warn!(
                        route = %route.path,
                        "no app secret configured (FLOWGATE_APP_SECRET): request signatures are not checked"
                    );
                }
            }
            routes.push(Route {
                path: route.path.clone(),
                flow: route.flow.clone(),
                envelope,
                upstream,
            });
        }
        Ok(Self {
            routes,
            request_timeout: config.request_timeout,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
        })
    }

    /// Every distinct flow service the routes call.
    pub fn upstreams(&self) -> Vec<Upstream> {
        let mut upstreams: Vec<Upstream> = Vec::new();
        for route in &self.routes {
            if !upstreams.iter().any(|u| u.same_backend(&route.upstream)) {
                upstreams.push(route.upstream.clone());
            }
        }
        upstreams
    }
}

/// A route that cannot be served, found at start.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {reason}")]
pub struct StartError {
    pub origin: String,
    pub reason: String,
}

/// Shared by the handlers of one route.
#[derive(Debug)]
struct RouteState {
    route: Route,
    request_timeout: Duration,
    in_flight: Arc<Semaphore>,
}

impl RouteState {
    /// Time kept back from the gRPC deadline to write the answer: a tenth of the
    /// budget, at most 500 ms.
    fn answer_margin(&self) -> Duration {
        (self.request_timeout / 10).min(Duration::from_millis(500))
    }
}

/// The public router.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new();
    for route in state.routes {
        let path = route.path.clone();
        let shared = Arc::new(RouteState {
            route,
            request_timeout: state.request_timeout,
            in_flight: state.in_flight.clone(),
        });
        router = match &shared.route.flow {
            FlowSource::FromPath => router.route(
                &path,
                post(
                    move |Path(flow): Path<String>, headers: HeaderMap, body: Body| async move {
                        if !valid_flow_name(&flow) {
                            return GatewayError::NotFound.into_response();
                        }
                        handle(&shared, &flow, &headers, body).await
                    },
                ),
            ),
            FlowSource::Default | FlowSource::Named(_) => router.route(
                &path,
                post(move |headers: HeaderMap, body: Body| async move {
                    let flow = match &shared.route.flow {
                        FlowSource::Named(name) => name.clone(),
                        _ => String::new(),
                    };
                    handle(&shared, &flow, &headers, body).await
                }),
            ),
        };
    }
    router
        .fallback(|| async { GatewayError::NotFound })
        .method_not_allowed_fallback(|| async { GatewayError::MethodNotAllowed })
}

/// The admin router: liveness, and readiness (every flow service serving).
pub fn admin_app(upstreams: Vec<Upstream>) -> Router {
    let upstreams = Arc::new(upstreams);
    Router::new()
        .route(
            "/metrics",
            get(|| async {
                let text = flowgate_telemetry::metrics_recorder().render();
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    text,
                )
            }),
        )
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route(
            "/readyz",
            get(move || async move {
                for upstream in upstreams.iter() {
                    if !upstream.serving().await {
                        return (
                            StatusCode::SERVICE_UNAVAILABLE,
                            axum::Json(json!({"status": "not_ready"})),
                        );
                    }
                }
                (StatusCode::OK, axum::Json(json!({"status": "ready"})))
            }),
        )
        .fallback(|| async { GatewayError::NotFound })
}

async fn handle(state: &RouteState, flow: &str, headers: &HeaderMap, body: Body) -> Response {
    let route = state.route.path.as_str();
    // Shed load before spending anything on the request, decryption included.
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        telemetry::shed();
        return GatewayError::GatewayBusy.into_response();
    };
    let _in_flight = telemetry::InFlight::start();
    let started = Instant::now();
    let deadline = started + state.request_timeout;
    let request_id = request_id(headers);
    let span = tracing::info_span!(
        "flowgate.request",
        otel.name = "POST flow endpoint",
        otel.kind = "server",
        request_id = %request_id,
        trace_id = tracing::field::Empty,
        route,
        flow,
        action = tracing::field::Empty,
        screen = tracing::field::Empty,
        token = tracing::field::Empty,
        outcome = tracing::field::Empty,
        http.status = tracing::field::Empty,
    );
    // A remote parent must be set before the span is first entered.
    flowgate_telemetry::propagation::set_parent_from(&span, headers);
    if let Some(trace_id) = flowgate_telemetry::trace_id(&span) {
        span.record("trace_id", trace_id.as_str());
    }

    let (outcome, action, mut response) = async {
        let body = match read_body(body, deadline).await {
            Ok(body) => body,
            Err(e) => return (e.code(), "", e.into_response()),
        };
        let opened = match state.route.envelope.open(headers, body) {
            Ok(opened) => opened,
            Err(e) => return (e.code(), "", e.into_response()),
        };
        let sealer = opened.sealer;
        let inbound = match translate::parse(&opened.payload) {
            Ok(inbound) => inbound,
            Err(e) => return (e.code(), "", sealer.seal_error(e)),
        };
        let action = inbound.action();
        let span = tracing::Span::current();
        span.record("action", action);
        if let Some(screen) = inbound.screen() {
            span.record("screen", screen);
        }
        if let Some(token) = inbound.flow_token() {
            span.record("token", token_hash(token).as_str());
        }
        if let Inbound::ErrorNotification(notification) = &inbound {
            telemetry::error_notification(&notification.error_key);
        }
        let mut context = RequestContext {
            flow: flow.to_owned(),
            request_id: request_id.clone(),
            attempt: 1,
            idempotency_key: translate::idempotency_key(flow, &inbound),
            version: inbound.version().to_owned(),
            signature_verified: opened.signature_verified,
            flow_token_signature: 0,
        };
        if let Some(jwt) = inbound.flow_token_signature() {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            context.set_flow_token_signature(state.route.envelope.check_token_signature(
                jwt,
                inbound.flow_token(),
                now,
            ));
        }
        let deadline = deadline - state.answer_margin();
        match exchange(state, flow, &inbound, context, deadline).await {
            Ok((status, answer)) => {
                let outcome = translate::outcome(status, &answer);
                (outcome, action, sealer.seal(status, &answer))
            }
            Err(e) => (e.code(), action, sealer.seal_error(e)),
        }
    }
    .instrument(span.clone())
    .await;
    let status = response.status().as_u16();
    span.record("outcome", outcome);
    span.record("http.status", status);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let elapsed = started.elapsed();
    telemetry::request(route, action, outcome, status, elapsed);
    span.in_scope(|| {
        tracing::info!(
            action,
            outcome,
            status,
            elapsed_ms = elapsed.as_millis() as u64,
            "flow request",
        )
    });
    response
}

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`] and giving up at the deadline.
async fn read_body(body: Body, deadline: Instant) -> Result<Bytes, GatewayError> {
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    match tokio::time::timeout_at(deadline, limited.collect()).await {
        Err(_) => Err(GatewayError::BodyTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(GatewayError::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            })
        }
        Ok(Err(e)) => Err(GatewayError::BodyUnreadable(e.to_string())),
    }
}

/// Answers one validated request.
async fn exchange(
    state: &RouteState,
    flow: &str,
    inbound: &Inbound,
    context: RequestContext,
    deadline: Instant,
) -> Result<(StatusCode, Value), GatewayError> {
    let upstream = &state.route.upstream;
    let Some(call) = translate::to_call(inbound, context)? else {
        // A ping: WhatsApp asks whether the endpoint can serve, so ask the flow service.
        // Bounded by the request's deadline: at start, health may still be unknown.
        return match tokio::time::timeout_at(deadline, upstream.serving()).await {
            Ok(true) => Ok((StatusCode::OK, translate::ping_answer())),
            Ok(false) => Err(GatewayError::Unavailable {
                detail: "health check: not serving".into(),
            }),
            Err(_) => Err(GatewayError::Timeout),
        };
    };
    let reply = upstream.call(call, deadline).await.map_err(|e| match e {
        GatewayError::UnknownFlow(_) => GatewayError::UnknownFlow(flow.to_owned()),
        e => e,
    })?;
    match reply {
        Reply::Acknowledged => Ok((StatusCode::OK, translate::acknowledged_answer())),
        Reply::Flow(response) => {
            translate::answer(response, inbound.flow_token().unwrap_or_default())
        }
    }
}

/// The caller's `X-Request-Id` when it is short and plain, else a new UUID.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_names() {
        for ok in ["signup", "booking-v2", "a", "A_1"] {
            assert!(valid_flow_name(ok), "{ok}");
        }
        for bad in ["", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(!valid_flow_name(bad), "{bad}");
        }
    }

    #[test]
    fn request_ids_are_taken_only_when_plain() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&headers), "abc-123");
        headers.insert(REQUEST_ID, HeaderValue::from_static("has space"));
        assert_ne!(request_id(&headers), "has space");
        assert_eq!(request_id(&HeaderMap::new()).len(), 36);
    }
}
