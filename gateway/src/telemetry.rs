//! The gateway's metrics, named `flowgate_*`, and where they are recorded. Served as
//! Prometheus text at `GET /metrics` on the admin listener. Labels are bounded: the
//! configured route, the action, stable outcome codes, status codes.
//!
//! Logging and tracing are set up by `flowgate_telemetry::init` (JSON logs with
//! `FLOWGATE_LOG_FORMAT=json`, OTLP export with the standard `OTEL_*` variables).

use std::time::Duration;

use axum::http::Response;

/// How a request ended, in bounded labels: attached to its answer for the metrics
/// layer and the span. The handler sets it; `GatewayError::into_response` sets it for
/// refusals made before the handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Labels {
    /// The action as WhatsApp names it; empty before the payload is parsed.
    pub action: &'static str,
    /// An answer's kind, or an error's stable code.
    pub outcome: &'static str,
}

impl Labels {
    /// The labels attached to `response`; `unknown` where none are.
    pub fn of<B>(response: &Response<B>) -> Self {
        response
            .extensions()
            .get::<Labels>()
            .copied()
            .unwrap_or(Labels {
                action: "",
                outcome: "unknown",
            })
    }
}

/// Counts a request and its latency.
pub fn request(
    route: &str,
    action: &'static str,
    outcome: &'static str,
    status: u16,
    elapsed: Duration,
) {
    let action = if action.is_empty() { "unknown" } else { action };
    metrics::counter!(
        "flowgate_requests_total",
        "route" => route.to_owned(),
        "action" => action,
        "outcome" => outcome,
        "status" => status.to_string(),
    )
    .increment(1);
    metrics::histogram!("flowgate_request_duration_seconds", "route" => route.to_owned(), "action" => action)
        .record(elapsed.as_secs_f64());
    match outcome {
        "cannot_decrypt" => metrics::counter!("flowgate_decrypt_failures_total").increment(1),
        "invalid_signature" => metrics::counter!("flowgate_signature_failures_total").increment(1),
        "token_invalid" => metrics::counter!("flowgate_token_invalid_total").increment(1),
        _ => {}
    }
}

/// Counts an error notification by its key; keys that are not plain words are grouped,
/// so a client cannot create series at will.
pub fn error_notification(error_key: &str) {
    let plain = (1..=64).contains(&error_key.len())
        && error_key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    let key = if plain {
        error_key.to_owned()
    } else {
        "other".to_owned()
    };
    metrics::counter!("flowgate_error_notifications_total", "error_key" => key).increment(1);
}

/// Counts a request refused because the gateway was at `FLOWGATE_MAX_IN_FLIGHT`.
pub fn shed() {
    metrics::counter!("flowgate_shed_total").increment(1);
}

/// One backend call attempt.
pub fn backend_call(method: &'static str, code: &str, elapsed: Duration) {
    metrics::histogram!("flowgate_backend_call_duration_seconds", "method" => method, "code" => code.to_owned())
        .record(elapsed.as_secs_f64());
}

/// One retry of a backend call.
pub fn retry(method: &'static str) {
    metrics::counter!("flowgate_backend_retries_total", "method" => method).increment(1);
}

/// Tracks `flowgate_in_flight` for as long as it lives.
#[derive(Debug)]
pub struct InFlight(());

impl InFlight {
    pub fn start() -> Self {
        metrics::gauge!("flowgate_in_flight").increment(1.0);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("flowgate_in_flight").decrement(1.0);
    }
}

/// Moves `flowgate_connections_open{listener}`, the connections a listener holds
/// open, by `change` (0 makes the series appear before the first connection).
pub fn connections_open(listener: &'static str, change: f64) {
    metrics::gauge!("flowgate_connections_open", "listener" => listener).increment(change);
}

/// Counts a connection closed at once because a connection cap was reached.
pub fn connection_refused(listener: &'static str, reason: &'static str) {
    metrics::counter!("flowgate_connections_refused_total", "listener" => listener, "reason" => reason)
        .increment(1);
}

/// Counts a connection the gateway closed because it held its slot unused
/// (`handshake_timeout`, `header_timeout`, `idle_timeout`).
pub fn connection_closed(listener: &'static str, reason: &'static str) {
    metrics::counter!("flowgate_connections_closed_total", "listener" => listener, "reason" => reason)
        .increment(1);
}
