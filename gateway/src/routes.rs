//! The HTTP surface: the Flows endpoint routes and the admin routes
//! (`GET /healthz`, `GET /readyz`, `GET /metrics`, and the [`preview`](crate::preview)
//! when on).
//!
//! [`app`] builds each endpoint route as one middleware stack around the `endpoint` handler:
//! every cross-cutting concern (budget, request id, span, metrics, body, signature,
//! admission) is a layer there, in order. The handler itself only opens the envelope →
//! [`translate::parse`] → calls the flow service over [`Upstream`] →
//! [`translate::answer`] → seals the envelope. Every step's failure is a [`GatewayError`].
//! The steps between the envelopes are [`respond`], which the preview shares.

use flowgate_sdk::excerpt::{LOG_EXCERPT_CHARS, excerpt};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::error_handling::HandleErrorLayer;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router, middleware};
use flowgate_proto::token_hash;
use flowgate_proto::v1::RequestContext;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};

use crate::config::{Config, FlowSource, ModeConfig, valid_flow_name};
use crate::envelope::Envelope;
use crate::error::GatewayError;
use crate::layers::body::{BodyLimits, BufferBodyLayer};
use crate::layers::deadline::{self, Deadline};
use crate::layers::metrics::RequestMetricsLayer;
use crate::layers::request_id::{self, X_REQUEST_ID};
use crate::layers::signature::{CheckSignatureLayer, SignatureVerified};
use crate::layers::{admission, span};
use crate::telemetry::{self, Labels};
use crate::translate::{self, Answer, Inbound};
use crate::upstream::{Reply, Upstream};

/// The largest request body accepted (WhatsApp requests are a few KiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

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
    /// instead of queueing towards the platform's deadline. Shared by every route.
    pub in_flight: Arc<Semaphore>,
    /// Serve the flow preview on the admin listener (`FLOWGATE_PREVIEW`).
    pub preview: bool,
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
            preview: false,
        }
    }

    /// Serves the flow preview at `/preview/` on the admin listener when `on`.
    pub fn with_preview(mut self, on: bool) -> Self {
        self.preview = on;
        self
    }

    /// Admits at most `n` requests at once.
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.in_flight = Arc::new(Semaphore::new(n));
        self
    }

    /// Builds the routes of a configuration: reads key files and prepares one
    /// channel per distinct flow service. Must be called inside a Tokio runtime.
    pub fn from_config(config: &Config) -> Result<Self, StartError> {
        // Every route's keys are loaded and checked before any upstream is made: an
        // upstream starts background tasks (DNS refresh, health watch), and a
        // configuration error should stop the gateway before anything runs.
        let envelopes = config
            .routes
            .iter()
            .map(|route| {
                Envelope::load(&route.mode).map_err(|e| StartError {
                    origin: route.origin.clone(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // One upstream per distinct flow service, shared by the routes that call it.
        let backends = config
            .routes
            .iter()
            .map(|route| (route.backend.as_str(), route.origin.as_str()));
        let upstreams = one_per_backend(backends, |i| {
            Upstream::with_hop(
                &config.routes[i].backend,
                config.dns_refresh,
                crate::upstream::pool::system_resolver(),
                &config.hop,
            )
        })?;
        let mut routes = Vec::with_capacity(config.routes.len());
        for ((route, envelope), upstream) in config.routes.iter().zip(envelopes).zip(upstreams) {
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
        if config.preview {
            if let Some(admin) = config.admin_listen.filter(|a| !a.ip().is_loopback()) {
                tracing::warn!(
                    %admin,
                    "the flow preview (FLOWGATE_PREVIEW=on) is served on an admin listener that is not on loopback: anyone who reaches it can run flows without Meta's signature"
                );
            }
        }
        Ok(Self {
            routes,
            request_timeout: config.request_timeout,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            preview: config.preview,
        })
    }

    /// The same routes, keys, admission and retry budgets for another thread, with
    /// upstreams of its own ([`Upstream::for_thread`]): their connections to the flow
    /// services, and the tasks that follow the replicas, are made on the runtime this
    /// is called in, and run there. `config` is the configuration `self` was made from
    /// (its name refresh and hop settings).
    pub fn for_thread(&self, config: &Config) -> Result<Self, StartError> {
        let backends = self
            .routes
            .iter()
            .map(|route| (route.upstream.url(), route.path.as_str()));
        let upstreams = one_per_backend(backends, |i| {
            self.routes[i].upstream.for_thread(
                config.dns_refresh,
                crate::upstream::pool::system_resolver(),
                &config.hop,
            )
        })?;
        let routes = self
            .routes
            .iter()
            .zip(upstreams)
            .map(|(route, upstream)| Route {
                upstream,
                ..route.clone()
            })
            .collect();
        Ok(Self {
            routes,
            ..self.clone()
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

/// For each `(backend, origin)` in order, the upstream made by `make(i)` for the first
/// of them (`i` its index) with that backend, shared by the later ones.
fn one_per_backend<'a>(
    backends: impl Iterator<Item = (&'a str, &'a str)>,
    mut make: impl FnMut(usize) -> Result<Upstream, crate::upstream::BackendError>,
) -> Result<Vec<Upstream>, StartError> {
    let mut upstreams: Vec<Upstream> = Vec::new();
    for (i, (backend, origin)) in backends.enumerate() {
        let upstream = match upstreams.iter().find(|u| u.url() == backend) {
            Some(upstream) => upstream.clone(),
            None => make(i).map_err(|e| StartError {
                origin: origin.to_owned(),
                reason: e.to_string(),
            })?,
        };
        upstreams.push(upstream);
    }
    Ok(upstreams)
}

/// A route that cannot be served, found at start.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {reason}")]
pub struct StartError {
    pub origin: String,
    pub reason: String,
}

/// The flow a request is for, resolved from its route before the span is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow(pub String);

/// The public router: each endpoint route is the `endpoint` handler under one middleware stack.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new();
    for route in state.routes {
        let path = route.path.clone();
        // Shared by the layers and the handler of the route.
        let shared = Arc::new(route);
        let body_limits = BodyLimits {
            max_bytes: MAX_BODY_BYTES,
            budget: state.request_timeout,
        };
        // Outermost first: a request passes these top to bottom, its answer bottom to top.
        let stack = ServiceBuilder::new()
            // The request's budget (`FLOWGATE_REQUEST_TIMEOUT`) starts on arrival.
            .map_request(deadline::start(state.request_timeout))
            // A caller's `x-request-id` is kept only when plain...
            .map_request(request_id::keep_only_plain)
            // ...else a new UUID takes its place...
            .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeRequestUuid))
            // ...and the id goes back on every answer, refusals included.
            .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
            // The flow: configured, or the path's last segment; a malformed name is 404 here.
            .layer(middleware::map_request_with_state(
                shared.clone(),
                resolve_flow,
            ))
            // The server span, continuing an incoming `traceparent`; one log line per answer.
            .layer(span::layer(&path))
            // `flowgate_requests_total` and `flowgate_request_duration_seconds`.
            .layer(RequestMetricsLayer::new(&path))
            // The body, whole, within 1 MiB (413) and its time budget (408).
            .layer(BufferBodyLayer::new(body_limits))
            // Meta mode: the signature over the raw body (432), before admission.
            .option_layer(CheckSignatureLayer::for_envelope(&shared.envelope))
            // Admission: a refusal becomes 503 `overloaded` with `Retry-After: 1`...
            .layer(HandleErrorLayer::new(admission::refuse))
            // ...made at once when no slot is free, instead of queueing...
            .layer(LoadShedLayer::new())
            // ...for at most `FLOWGATE_MAX_IN_FLIGHT` requests across all routes.
            .layer(GlobalConcurrencyLimitLayer::with_semaphore(
                state.in_flight.clone(),
            ))
            // `flowgate_in_flight`: the admitted requests.
            .map_future(admission::count_in_flight)
            // The buffered body, handed to the handler.
            .map_request(|request: axum::http::Request<Bytes>| request.map(Body::from));
        router = router.route(&path, post(endpoint).with_state(shared).route_layer(stack));
    }
    router
        .fallback(|| async { GatewayError::NotFound })
        .method_not_allowed_fallback(|| async { GatewayError::MethodNotAllowed })
}

/// Names the flow of a request, for the span and the handler.
async fn resolve_flow(
    State(route): State<Arc<Route>>,
    // Any rejection (no parameter, a name that is not UTF-8) is a malformed name.
    path: Result<Path<String>, PathRejection>,
    mut request: Request,
) -> Result<Request, GatewayError> {
    let flow = match (&route.flow, path) {
        (FlowSource::FromPath, Ok(Path(flow))) if valid_flow_name(&flow) => flow,
        (FlowSource::FromPath, _) => return Err(GatewayError::NotFound),
        (FlowSource::Named(name), _) => name.clone(),
        (FlowSource::Default, _) => String::new(),
    };
    request.extensions_mut().insert(Flow(flow));
    Ok(request)
}

/// The admin router of a gateway: [`admin_app`], and the flow preview under
/// `/preview/` when [`AppState::preview`] is on.
pub fn admin(state: &AppState) -> Router {
    admin_ready_on(state, state.upstreams())
}

/// [`admin`], ready only while each of `upstreams` has a replica serving: with
/// several threads, every thread's upstreams, so that a thread that reaches no
/// replica (whose requests would fail) makes the gateway not ready.
pub fn admin_ready_on(state: &AppState, upstreams: Vec<Upstream>) -> Router {
    let router = admin_routes(upstreams);
    let router = if state.preview {
        router.merge(crate::preview::router(state))
    } else {
        router
    };
    router.fallback(|| async { GatewayError::NotFound })
}

/// The admin router: liveness, and readiness (every flow service serving).
pub fn admin_app(upstreams: Vec<Upstream>) -> Router {
    admin_routes(upstreams).fallback(|| async { GatewayError::NotFound })
}

fn admin_routes(upstreams: Vec<Upstream>) -> Router {
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
}

/// The endpoint: open the envelope → parse → call the flow service → answer → seal.
/// The labels of the outcome go on the answer, for the metrics layer and the span.
async fn endpoint(
    State(route): State<Arc<Route>>,
    Extension(Flow(flow)): Extension<Flow>,
    Extension(Deadline(deadline)): Extension<Deadline>,
    Extension(request_id): Extension<RequestId>,
    verified: Option<Extension<SignatureVerified>>,
    body: Bytes,
) -> Response {
    let request_id = request_id.header_value().to_str().unwrap_or_default();
    let verified = verified.is_some_and(|Extension(SignatureVerified(v))| v);
    let (labels, mut response) =
        exchange(&route, &flow, request_id, deadline, verified, body).await;
    response.extensions_mut().insert(labels);
    response
}

async fn exchange(
    route: &Route,
    flow: &str,
    request_id: &str,
    deadline: Instant,
    signature_verified: bool,
    body: Bytes,
) -> (Labels, Response) {
    let labels = |action, outcome| Labels { action, outcome };
    let opened = match route.envelope.open_checked(body, signature_verified) {
        Ok(opened) => opened,
        Err(e) => return (labels("", e.code()), e.into_response()),
    };
    let sealer = opened.sealer;
    let (action, result) = respond(
        route,
        flow,
        request_id,
        deadline,
        opened.signature_verified,
        &opened.payload,
    )
    .await;
    match result {
        Ok(answer) => (
            labels(action, answer.kind.label()),
            sealer.seal(answer.status, &answer.json),
        ),
        Err(e) => (labels(action, e.code()), sealer.seal_error(e)),
    }
}

/// What the endpoint answers to an opened request: parse → call the flow service by
/// `deadline` → answer, with the request's action (empty when it did not parse).
/// The one path from WhatsApp JSON to WhatsApp JSON, shared by the endpoint and the
/// preview (which has no envelope).
pub(crate) async fn respond(
    route: &Route,
    flow: &str,
    request_id: &str,
    deadline: Instant,
    signature_verified: bool,
    payload: &[u8],
) -> (&'static str, Result<Answer, GatewayError>) {
    let inbound = match translate::parse(payload) {
        Ok(inbound) => inbound,
        Err(e) => return ("", Err(e)),
    };
    let action = inbound.action();
    // The span is the server span of the stack; these fields are known only now.
    // One record for the three (a field given `None` stays empty): each record is a
    // round of every layer's bookkeeping.
    let span = tracing::Span::current();
    let token = inbound.flow_token().map(token_hash);
    tracing::record_all!(
        span,
        action = action,
        screen = inbound.screen(),
        token = token.as_deref(),
    );
    if let Inbound::ErrorNotification(notification) = &inbound {
        telemetry::error_notification(&notification.error_key);
        // The client's text, escaped and cut: raw, a newline would forge a log line.
        let quote = |text: &str| excerpt(text, LOG_EXCERPT_CHARS);
        tracing::info!(
            error_key = %quote(&notification.error_key),
            screen = %quote(&notification.screen),
            error_message = %quote(&notification.error_message),
            "the WhatsApp client reported an error",
        );
    }
    let mut context = RequestContext {
        flow: flow.to_owned(),
        request_id: request_id.to_owned(),
        attempt: 1,
        idempotency_key: translate::idempotency_key(flow, &inbound),
        version: inbound.version().to_owned(),
        signature_verified,
        flow_token_signature: 0,
    };
    if let Some(jwt) = inbound.flow_token_signature() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        context.set_flow_token_signature(route.envelope.check_token_signature(
            jwt,
            inbound.flow_token(),
            now,
        ));
    }
    (action, call(route, flow, inbound, context, deadline).await)
}

/// Answers one validated request.
async fn call(
    route: &Route,
    flow: &str,
    inbound: Inbound,
    context: RequestContext,
    deadline: Instant,
) -> Result<Answer, GatewayError> {
    let upstream = &route.upstream;
    // The call takes the request's fields; a completion's answer carries the token back.
    let flow_token = inbound.flow_token().unwrap_or_default().to_owned();
    let Some(call) = translate::to_call(inbound, context)? else {
        // A ping: WhatsApp asks whether the endpoint can serve, so ask the flow service.
        // Bounded by the request's deadline: at start, health may still be unknown.
        return match tokio::time::timeout_at(deadline, upstream.serving()).await {
            Ok(true) => Ok(translate::ping_answer()),
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
        Reply::Acknowledged => Ok(translate::acknowledged_answer()),
        Reply::Flow(response) => translate::answer(response, &flow_token),
        Reply::Flows(_) | Reply::FlowJson(_) => Err(GatewayError::BadUpstreamResponse {
            detail: "a flow call was answered as a preview call".into(),
        }),
    }
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
}
