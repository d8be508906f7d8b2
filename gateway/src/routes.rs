//! The HTTP surface: the Flows endpoint (`POST {path}` and `POST /flows/{name}`)
//! and the admin routes (`GET /healthz`, `GET /readyz`).
//!
//! A request goes: read the body (bounded in size and time) → open the envelope
//! → [`translate::parse`] → the flow service over [`Upstream`] → [`translate::answer`]
//! → seal the envelope. Every step's failure is a [`GatewayError`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flowgate_proto::token_hash;
use flowgate_proto::v1::RequestContext;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::Instrument;

use crate::envelope::Envelope;
use crate::error::GatewayError;
use crate::translate::{self, Inbound};
use crate::upstream::{Reply, Upstream};

/// The largest request body accepted (WhatsApp requests are a few KiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The header that carries the request id, in and out.
const REQUEST_ID: &str = "x-request-id";

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub upstream: Upstream,
    pub envelope: Envelope,
    /// The path that reaches the default flow.
    pub path: String,
    /// The whole budget of a request, from arrival to answer.
    pub request_timeout: Duration,
}

impl AppState {
    /// Time kept back from the gRPC deadline to write the answer: a tenth of the
    /// budget, at most 500 ms.
    fn answer_margin(&self) -> Duration {
        (self.request_timeout / 10).min(Duration::from_millis(500))
    }
}

/// The public router.
pub fn app(state: AppState) -> Router {
    let path = state.path.clone();
    Router::new()
        .route(&path, post(default_flow))
        .route("/flows/{name}", post(named_flow))
        .fallback(|| async { GatewayError::NotFound })
        .method_not_allowed_fallback(|| async { GatewayError::MethodNotAllowed })
        .with_state(Arc::new(state))
}

/// The admin router: liveness and readiness.
pub fn admin_app(upstream: Upstream) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route(
            "/readyz",
            get(|State(upstream): State<Upstream>| async move {
                if upstream.serving().await {
                    (StatusCode::OK, axum::Json(json!({"status": "ready"})))
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(json!({"status": "not_ready"})),
                    )
                }
            }),
        )
        .fallback(|| async { GatewayError::NotFound })
        .with_state(upstream)
}

async fn default_flow(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(&state, "", &headers, body).await
}

async fn named_flow(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !valid_flow_name(&name) {
        return GatewayError::NotFound.into_response();
    }
    handle(&state, &name, &headers, body).await
}

/// Flow names are 1–64 ASCII letters, digits, `_` or `-`.
fn valid_flow_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

async fn handle(state: &AppState, flow: &str, headers: &HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let deadline = started + state.request_timeout;
    let request_id = request_id(headers);
    let span = tracing::info_span!("request", request_id = %request_id, flow);

    let (response, action, token) = async {
        let body = match read_body(body, deadline).await {
            Ok(body) => body,
            Err(e) => return (e.into_response(), "", None),
        };
        let (plaintext, sealer) = match state.envelope.open(headers, body) {
            Ok(opened) => opened,
            Err(e) => return (e.into_response(), "", None),
        };
        let inbound = match translate::parse(&plaintext) {
            Ok(inbound) => inbound,
            Err(e) => return (sealer.seal_error(e), "", None),
        };
        let action = inbound.action();
        let token = inbound.flow_token().map(token_hash);
        let result = exchange(
            state,
            flow,
            &request_id,
            &inbound,
            deadline - state.answer_margin(),
        )
        .await;
        let response = match result {
            Ok((status, answer)) => sealer.seal(status, &answer),
            Err(e) => sealer.seal_error(e),
        };
        (response, action, token)
    }
    .instrument(span)
    .await;

    let mut response = response;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    tracing::info!(
        request_id = %request_id,
        flow = if flow.is_empty() { "(default)" } else { flow },
        action,
        token = token.as_deref().unwrap_or("-"),
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "flow request",
    );
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
    state: &AppState,
    flow: &str,
    request_id: &str,
    inbound: &Inbound,
    deadline: Instant,
) -> Result<(StatusCode, Value), GatewayError> {
    let context = RequestContext {
        flow: flow.to_owned(),
        request_id: request_id.to_owned(),
        attempt: 1,
        idempotency_key: translate::idempotency_key(flow, inbound),
        version: inbound.version().to_owned(),
        signature_verified: false,
        flow_token_signature: 0,
    };
    let Some(call) = translate::to_call(inbound, context)? else {
        // A ping: WhatsApp asks whether the endpoint can serve, so ask the flow service.
        return if state.upstream.serving().await {
            Ok((StatusCode::OK, translate::ping_answer()))
        } else {
            Err(GatewayError::Unavailable {
                detail: "health check: not serving".into(),
            })
        };
    };
    let reply = state
        .upstream
        .call(call, deadline)
        .await
        .map_err(|e| match e {
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
